"""What each SAE neuron means: concepts, popularity, monosemanticity.

All functions take one config's item activations ``acts`` ``(n_items, M)``
(see :func:`monosem_jax.analysis.concepts.activations`) and work on every
neuron and concept at once (docs/method.md#concepts):

* :func:`concept_scores`: for every (neuron, concept) and each K, purity@K
  (the share of the neuron's top-K items carrying the concept), the concept's
  base rate, lift = purity / base rate, and the hypergeometric p-value of
  seeing that many hits in K draws without replacement (so that a pure
  neuron of a 40 % genre is not mistaken for one of a 2 % genre). A neuron
  that fires on fewer than K items is scored on the items it fires on, and
  flagged (``n_scored < K``), instead of padding its list with arbitrary
  zero-activation items.
* :func:`neuron_table`: per neuron, firing rate, dead flag, its best concept
  (by purity, then p-value) with purity / lift / p-value at each K, the mean
  popularity rank of its top-N items and the Spearman correlation of its
  activation with popularity, and its MS score.
* :func:`ms_scores`: the monosemanticity score of each neuron: with ``a`` its
  activations min-max scaled, T its top-30 items, ``R = a_T a_T^T`` and ``S``
  the cosine similarities of the recommender's item embeddings on T (both
  with zero diagonal), ``MS = sum(R * S) / sum(R)`` (0 for a dead neuron).

Example:
  >>> import numpy as np
  >>> acts = np.array([[3., 0.], [2., 0.], [0., 5.], [1., 4.]])
  >>> concepts = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], bool)
  >>> s = concept_scores(acts, concepts, ks=(2,))
  >>> s['purity'][0].tolist()     # K=2: neuron x concept
  [[1.0, 0.0], [0.0, 1.0]]
  >>> s['n_scored'][0].tolist()   # both neurons fire on >= 2 items
  [2, 2]
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import stats


def top_items(acts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """``(M, k)`` top-k item indices per neuron, and whether each fires."""
  k = min(k, acts.shape[0])
  vals, idx = jax.lax.top_k(jnp.asarray(acts, jnp.float32).T, k)
  return np.asarray(idx), np.asarray(vals) > 0


def concept_scores(acts: np.ndarray, item_concepts: np.ndarray,
                   ks: Sequence[int] = (10, 20, 50)) -> dict[str, np.ndarray]:
  """Purity, lift and p-value of every (neuron, concept) at each K.

  Args:
    acts: ``(n_items, M)`` activations.
    item_concepts: ``(n_items, T)`` bool multi-hot concept table.
    ks: list lengths.

  Returns:
    ``purity``, ``lift``, ``p_value`` ``(len(ks), M, T)``; ``n_scored``
    ``(len(ks), M)`` items actually scored (< K when a neuron fires on fewer
    items; 0 for a dead neuron, whose purity is 0 and p-value 1);
    ``base_rate`` ``(T,)``.
  """
  acts = np.asarray(acts, np.float32)
  table = np.asarray(item_concepts, bool)
  n_items = acts.shape[0]
  count = table.sum(0)                                        # (T,)
  base = count / max(n_items, 1)
  purity, lift, pval, n_scored = [], [], [], []
  for k in ks:  # a handful of list lengths; each vectorised over M x T
    idx, fires = top_items(acts, k)                                # (M, k)
    hits = np.einsum('mk,mkt->mt', fires.astype(np.float32),
                     table[idx].astype(np.float32))
    n = fires.sum(1)                                          # (M,)
    pur = np.where(n[:, None] > 0, hits / np.maximum(n, 1)[:, None], 0.0)
    purity.append(pur)
    lift.append(np.where(base > 0, pur / np.where(base > 0, base, 1), 0.0))
    # P(X >= hits), X ~ Hypergeom(population n_items, successes count, n draws)
    pval.append(np.where(n[:, None] > 0,
                         stats.hypergeom.sf(hits - 1, n_items, count[None, :],
                                            n[:, None]), 1.0))
    n_scored.append(n)
  return {'purity': np.stack(purity), 'lift': np.stack(lift),
          'p_value': np.stack(pval), 'n_scored': np.stack(n_scored),
          'base_rate': base}


def spearman_with(acts: np.ndarray, values: np.ndarray) -> np.ndarray:
  """``(M,)`` Spearman correlation of each neuron's activation with
  ``values`` ``(n_items,)`` (NaN for a constant neuron)."""
  ra = stats.rankdata(np.asarray(acts, np.float64), axis=0)  # (N, M)
  rv = stats.rankdata(np.asarray(values, np.float64))         # (N,)
  ra = ra - ra.mean(0)
  rv = rv - rv.mean()
  denom = np.sqrt((ra ** 2).sum(0) * (rv ** 2).sum())
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(denom > 0, (ra * rv[:, None]).sum(0) / denom, np.nan)


def ms_scores(acts: np.ndarray, item_emb: np.ndarray, top: int = 30
              ) -> np.ndarray:
  """``(M,)`` MS score of each neuron (module docstring); dead -> 0."""
  acts = np.asarray(acts, np.float64)
  lo, hi = acts.min(0), acts.max(0)
  scaled = np.where(hi > lo, (acts - lo) / np.where(hi > lo, hi - lo, 1), 0.0)
  idx, _ = top_items(acts, top)                                    # (M, top)
  a = np.take_along_axis(scaled.T, idx, axis=1)               # (M, top)
  emb = np.asarray(item_emb, np.float64)
  unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
  cos = np.einsum('mid,mjd->mij', unit[idx], unit[idx])       # (M, top, top)
  r = a[:, :, None] * a[:, None, :]
  eye = np.eye(idx.shape[1], dtype=bool)[None]
  r = np.where(eye, 0.0, r)
  cos = np.where(eye, 0.0, cos)
  total = r.sum((1, 2))
  return np.where(total > 0, (r * cos).sum((1, 2)) / np.where(
      total > 0, total, 1), 0.0)


def neuron_table(acts: np.ndarray, item_concepts: np.ndarray,
                 concept_names: Sequence[str], item_emb: np.ndarray,
                 popularity: np.ndarray, ks: Sequence[int] = (10, 20, 50),
                 pop_top: int = 500) -> pd.DataFrame:
  """One row per neuron: firing, best concept, popularity, MS score.

  Args:
    acts: ``(n_items, M)`` item activations of one config.
    item_concepts: ``(n_items, T)`` bool; concept_names: ``T`` names.
    item_emb: ``(n_items, d)`` the recommender's item embeddings (MS score).
    popularity: ``(n_items,)`` users per item.
    ks: purity list lengths (the first one picks the best concept).
    pop_top: N of "mean popularity rank of the top-N items".
  """
  acts = np.asarray(acts, np.float32)
  fires = acts > 0
  s = concept_scores(acts, item_concepts, ks)
  # best concept: highest purity at the first K, then the smallest p-value
  order = np.lexsort((s['p_value'][0], -s['purity'][0]), axis=1)[:, 0]
  m = np.arange(acts.shape[1])
  pop_rank = stats.rankdata(-np.asarray(popularity, np.float64),
                            method='ordinal') - 1           # 0 = most popular
  idx, top_fires = top_items(acts, pop_top)
  n_top = top_fires.sum(1)
  mean_rank = np.where(n_top > 0, (pop_rank[idx] * top_fires).sum(1)
                       / np.maximum(n_top, 1), np.nan)
  out = {'neuron': m, 'firing_rate': fires.mean(0),
         'dead': ~fires.any(0), 'best_concept': np.asarray(
             list(concept_names), dtype=object)[order]}
  for j, k in enumerate(ks):
    out[f'purity@{k}'] = s['purity'][j][m, order]
    out[f'lift@{k}'] = s['lift'][j][m, order]
    out[f'p_value@{k}'] = s['p_value'][j][m, order]
    out[f'n_scored@{k}'] = s['n_scored'][j]
  out['base_rate'] = s['base_rate'][order]
  out[f'mean_pop_rank@{pop_top}'] = mean_rank
  out['spearman_popularity'] = spearman_with(acts, popularity)
  out['ms'] = ms_scores(acts, item_emb)
  return pd.DataFrame(out)
