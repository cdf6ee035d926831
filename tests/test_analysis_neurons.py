"""Neuron characterisation on hand-built activations."""

import numpy as np
from scipy import stats

from monosem_jax.analysis import neurons


def _world():
  # 10 items; concept A on items 0-3 (base 0.4), concept B on item 9 (0.1).
  concepts = np.zeros((10, 2), bool)
  concepts[:4, 0] = True
  concepts[9, 1] = True
  acts = np.zeros((10, 4), np.float32)
  acts[:4, 0] = [4, 3, 2, 1]          # neuron 0: all of A first
  acts[9, 1] = 1.0                    # neuron 1: fires on item 9 only (B)
  acts[:, 2] = np.arange(10)          # neuron 2: ramps up to item 9
  # neuron 3 is dead
  return acts, concepts


def test_purity_lift_and_p_value():
  acts, concepts = _world()
  s = neurons.concept_scores(acts, concepts, ks=(4,))
  np.testing.assert_allclose(s['base_rate'], [0.4, 0.1])
  assert s['purity'][0, 0].tolist() == [1.0, 0.0]
  np.testing.assert_allclose(s['lift'][0, 0, 0], 1 / 0.4)
  # all 4 of 4 draws from the 4 A items among 10: 1 / C(10, 4)
  np.testing.assert_allclose(s['p_value'][0, 0, 0], 1 / 210, rtol=1e-9)
  np.testing.assert_allclose(
      s['p_value'][0, 2, 1], stats.hypergeom.sf(0, 10, 1, 4), rtol=1e-9)


def test_neurons_firing_on_fewer_than_k_items_are_scored_on_those():
  acts, concepts = _world()
  s = neurons.concept_scores(acts, concepts, ks=(4,))
  assert s['n_scored'][0].tolist() == [4, 1, 4, 0]
  assert s['purity'][0, 1].tolist() == [0.0, 1.0]     # its one item is B
  assert s['purity'][0, 3].tolist() == [0.0, 0.0]     # dead: nothing scored
  assert (s['p_value'][0, 3] == 1.0).all()


def test_neuron_table_best_concepts_popularity_and_ms():
  acts, concepts = _world()
  rng = np.random.default_rng(0)
  emb = rng.normal(size=(10, 3))
  popularity = np.arange(10, 0, -1)           # item 0 most popular
  t = neurons.neuron_table(acts, concepts, ['A', 'B'], emb, popularity,
                           ks=(4,), pop_top=2)
  assert t.best_concept.tolist()[:2] == ['A', 'B']
  assert t.dead.tolist() == [False, False, False, True]
  np.testing.assert_allclose(t['firing_rate'], [0.4, 0.1, 0.9, 0.0])
  # neuron 0's top-2 items are the two most popular: ranks 0, 1
  assert t['mean_pop_rank@2'][0] == 0.5
  # neuron 2 increases with item index, popularity decreases: rho = -1
  np.testing.assert_allclose(t['spearman_popularity'][2], -1.0)
  assert t['ms'][3] == 0.0                     # dead
  assert -1.0 <= t['ms'][0] <= 1.0


def test_ms_score_of_identical_embeddings_is_one():
  acts = np.zeros((5, 1), np.float32)
  acts[:, 0] = [5, 4, 3, 2, 1]
  emb = np.tile([[1.0, 2.0]], (5, 1))
  np.testing.assert_allclose(neurons.ms_scores(acts, emb, top=3), [1.0])


def test_spearman_matches_scipy():
  rng = np.random.default_rng(1)
  acts = rng.normal(size=(50, 3))
  values = rng.normal(size=50)
  got = neurons.spearman_with(acts, values)
  for m in range(3):
    np.testing.assert_allclose(got[m], stats.spearmanr(acts[:, m], values)[0],
                               rtol=1e-10)
