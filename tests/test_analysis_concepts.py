"""purity@K against a plain numpy loop, and activations of a loaded SAE."""

import jax
import numpy as np

from monosem_jax.analysis import concepts
from monosem_jax.sae import model


def _purity_reference(acts, item_concepts, k):
  n_neurons, n_concepts = acts.shape[1], item_concepts.shape[1]
  out = np.zeros((n_neurons, n_concepts))
  for j in range(n_neurons):
    order = np.argsort(-acts[:, j], kind='stable')[:k]
    for c in range(n_concepts):
      out[j, c] = item_concepts[order, c].mean()
  return out


def test_purity_matches_reference():
  rng = np.random.default_rng(0)
  acts = rng.random((50, 7))
  acts[:, 3] = 0.0  # a dead neuron
  item_concepts = rng.random((50, 4)) < 0.3
  got = concepts.purity_at_k(acts, item_concepts, k=10)
  ref = _purity_reference(acts, item_concepts, 10)
  ref[3] = 0.0
  np.testing.assert_allclose(got, ref, atol=1e-6)


def test_concept_matches_finds_planted_neuron():
  rng = np.random.default_rng(1)
  item_concepts = rng.random((200, 3)) < 0.2
  acts = rng.random((200, 5)) * 0.1
  acts[:, 4] += item_concepts[:, 2]  # neuron 4 fires on concept 2
  table = concepts.concept_matches(acts, item_concepts, ['a', 'b', 'c'], k=10)
  row = table[table.concept == 'c'].iloc[0]
  assert row.best_neuron == 4 and row['purity@10'] == 1.0
  assert 0.1 < row.base_rate < 0.3


def test_activations_shape_and_nonnegative():
  cfg = model.SAEConfig.mf(dim=4, dict_size=6)
  p = model.init(jax.random.PRNGKey(0), cfg)
  z = concepts.activations(p, cfg, np.random.default_rng(0).normal(size=(9, 4)))
  assert z.shape == (9, 6) and (z >= 0).all()
