"""Neuron-to-concept matching: activations and purity@K (docs/method.md#evaluation).

purity@K of neuron k for concept c = the fraction of the K items that
activate k most strongly which carry c. Computed for all neurons x concepts
at once (one ``top_k`` and one matrix product), never in a Python loop.

Example:
  >>> import numpy as np
  >>> acts = np.array([[3., 0.], [2., 1.], [0., 5.], [1., 4.]])  # 4 items, 2 neurons
  >>> concepts = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], bool)
  >>> purity_at_k(acts, concepts, k=2).tolist()
  [[1.0, 0.0], [0.0, 1.0]]
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from monosem_jax.analysis import neurons
from monosem_jax.sae import model


def sae_config_of(hparams: Mapping[str, Any]) -> model.SAEConfig:
  """The :class:`SAEConfig` of a config loaded with ``checkpoint.load_config``."""
  return model.SAEConfig(**hparams['sae_config'])


def activations(sae_params: Mapping[str, Any], cfg: model.SAEConfig,
                embeddings: np.ndarray, k: int | None = None) -> np.ndarray:
  """``(N, dict_size)`` SAE codes of raw embeddings ``(N, d)``."""
  p = jax.tree.map(jnp.asarray, dict(sae_params))
  z = jax.jit(lambda x: model.encode(p, x, cfg, k))(jnp.asarray(embeddings, jnp.float32))
  return np.asarray(z)


def top_items(acts: np.ndarray, k: int) -> np.ndarray:
  """``(n_neurons, k)`` indices of each neuron's k most activating items."""
  return neurons.top_items(acts, k)[0]


def purity_at_k(acts: np.ndarray, item_concepts: np.ndarray, k: int = 10
                ) -> np.ndarray:
  """``(n_neurons, n_concepts)`` purity@k.

  A neuron firing on fewer than k items is scored on those items (never on
  arbitrary non-firing ones); a dead neuron scores 0. See
  :func:`monosem_jax.analysis.neurons.concept_scores` for lift and p-values.

  Args:
    acts: ``(n_items, n_neurons)`` activations.
    item_concepts: ``(n_items, n_concepts)`` bool multi-hot.
    k: list length.
  """
  return neurons.concept_scores(acts, item_concepts, (k,))['purity'][0]


def concept_matches(acts: np.ndarray, item_concepts: np.ndarray,
                    concept_names, k: int = 10) -> pd.DataFrame:
  """For each concept, the neuron with the best purity@k, and the base rate."""
  purity = purity_at_k(acts, item_concepts, k)
  best = purity.argmax(axis=0)
  return pd.DataFrame({
      'concept': list(concept_names),
      'best_neuron': best,
      f'purity@{k}': purity[best, np.arange(purity.shape[1])],
      'base_rate': np.asarray(item_concepts, np.float32).mean(0),
  })
