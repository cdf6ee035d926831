"""Recovery of planted concepts (synthetic world; docs/method.md#concepts).

When the true concept of every item is known (the synthetic world's
``extras['concept_truth']``), each planted concept c with ``n_c`` items is
matched to the neuron that recovers it best, and scored by

* purity@K: the share of the neuron's top-K firing items that carry c;
* recall: the share of c's items among the neuron's top-``n_c`` items
  (R-precision: 1.0 exactly when the neuron ranks c's items first).

Example:
  >>> import numpy as np
  >>> acts = np.array([[3., 0.], [2., 0.], [0., 5.], [1., 4.]])
  >>> truth = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], bool)
  >>> t = planted_recovery(acts, truth, ['a', 'b'], ks=(2,))
  >>> t[['concept', 'neuron', 'recall', 'purity@2']].values.tolist()
  [['a', 0, 1.0, 1.0], ['b', 1, 1.0, 1.0]]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from monosem_jax.analysis import neurons


def recall_matrix(acts: np.ndarray, truth: np.ndarray) -> np.ndarray:
  """``(M, T)`` recall of every (neuron, concept): the share of the concept's
  ``n_c`` items among the neuron's top-``n_c`` firing items."""
  truth = np.asarray(truth, bool)
  size = truth.sum(0)                                          # (T,)
  n_max = int(size.max(initial=0))
  if n_max == 0:
    return np.zeros((np.shape(acts)[1], truth.shape[1]))
  idx, fires = neurons.top_items(acts, n_max)                  # (M, n_max)
  hits = np.cumsum(truth[idx] & fires[..., None], axis=1)      # (M, n, T)
  at = hits[:, np.maximum(size, 1) - 1, np.arange(truth.shape[1])]
  return np.where(size > 0, at / np.maximum(size, 1), 0.0)


def planted_recovery(acts: np.ndarray, truth: np.ndarray,
                     names: Sequence[str], ks: Sequence[int] = (10, 20, 50)
                     ) -> pd.DataFrame:
  """One row per planted concept: the neuron with the best recall (ties: the
  best purity@first K), its recall and purity@K, and the concept's size."""
  recall = recall_matrix(acts, truth)                          # (M, T)
  purity = neurons.concept_scores(acts, truth, ks)['purity']   # (K, M, T)
  t = np.arange(recall.shape[1])
  best = np.lexsort((-purity[0], -recall), axis=0)[0]          # (T,)
  out = {'concept': list(names), 'neuron': best,
         'n_items': np.asarray(truth, bool).sum(0),
         'recall': recall[best, t]}
  for j, k in enumerate(ks):
    out[f'purity@{k}'] = purity[j][best, t]
  return pd.DataFrame(out)
