"""Neuron characterisation on hand-built activations."""

import numpy as np
import pytest
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


def _top_firing(acts, m, top):
  """Reference: neuron m's top items (stable order), firing ones only."""
  order = np.argsort(-acts[:, m], kind='stable')[:top]
  return order[acts[order, m] > 0]


def _relu_acts(rng, n_items, n_neurons):
  acts = np.maximum(rng.normal(size=(n_items, n_neurons)) - 1.0, 0.0)
  acts[:, -1] = 0.0                                 # a dead neuron
  return acts.astype(np.float32)


def test_era_scores_match_a_loop_over_neurons():
  rng = np.random.default_rng(2)
  acts = _relu_acts(rng, 400, 6)                    # ~16 % of items fire
  decade = rng.integers(-1, 5, size=400)            # -1: unknown year
  e = neurons.era_scores(acts, decade, top=100)
  np.testing.assert_allclose(e['base_rate'],
                             [(decade == b).mean() for b in range(5)])
  for m in range(6):
    top = _top_firing(acts, m, 100)
    assert e['n_scored'][m] == len(top)
    share = ([(decade[top] == b).mean() for b in range(5)] if len(top)
             else [0.0] * 5)
    np.testing.assert_allclose(e['share'][m], share, atol=1e-12)
    np.testing.assert_allclose(e['lift'][m],
                               np.array(share) / e['base_rate'], atol=1e-12)
  assert 0 < e['n_scored'][0] < 100 and e['n_scored'][-1] == 0


def test_neuron_table_era_and_user_columns():
  acts, concepts = _world()
  decade = np.array([0, 0, 0, 0, 3, 3, 3, 3, 3, 4])  # items 0-3 are <=1969
  users = np.zeros((5, 4), np.float32)
  users[:2, 0] = [2.0, 4.0]
  users[:, 2] = 1.0
  emb = np.random.default_rng(0).normal(size=(10, 3))
  t = neurons.neuron_table(acts, concepts, ['A', 'B'], emb, np.ones(10),
                           ks=(4,), item_decade=decade, era_top=4,
                           user_acts=users)
  # neuron 2's top 4 are items 9 (2000s+, lift 2.5, p 0.4) and 6-8 (1990s,
  # lift 1.5, p = P(X >= 3) = 55 / 210): the more significant era wins
  assert t.best_era.tolist()[:3] == ['<=1969', '2000s+', '1990s']
  assert t.best_era[3] is None                      # dead
  np.testing.assert_allclose(t.era_share[:3], [1.0, 1.0, 0.75])
  np.testing.assert_allclose(t.era_base_rate[:3], [0.4, 0.1, 0.5])
  np.testing.assert_allclose(t.era_lift[:3], [2.5, 10.0, 1.5])
  np.testing.assert_allclose(t.era_p_value[2], 55 / 210)
  np.testing.assert_allclose(t.user_firing_rate, [0.4, 0.0, 1.0, 0.0])
  np.testing.assert_allclose(t.user_mean_activation, [1.2, 0.0, 1.0, 0.0])
  plain = neurons.neuron_table(acts, concepts, ['A', 'B'], emb, np.ones(10),
                               ks=(4,))                 # Last.FM: no years
  assert not {'best_era', 'user_firing_rate'} & set(plain)
  with pytest.raises(ValueError, match='user_acts'):
    neurons.neuron_table(acts, concepts, ['A', 'B'], emb, np.ones(10),
                         user_acts=users[:, :3])


def test_l0_counts_active_latents_per_row():
  acts = np.array([[1.0, 0.0, 3.0], [0.0, 0.0, 0.0], [2.0, 2.0, 2.0]])
  assert neurons.l0(acts) == (2 + 0 + 3) / 3


def test_concept_table_matches_a_brute_force_search():
  rng = np.random.default_rng(3)
  acts = _relu_acts(rng, 300, 8)
  table = rng.random((300, 5)) < np.array([0.05, 0.2, 0.4, 0.1, 0.02])
  s = neurons.concept_scores(acts, table, ks=(10, 20))
  t = neurons.concept_table(acts, table, list('abcde'), ks=(10, 20))
  for c in range(5):
    key = [(-s['purity'][0, m, c], s['p_value'][0, m, c], m)
           for m in range(8)]
    best = min(key)[2]
    assert t.best_neuron[c] == best
    for j, k in enumerate((10, 20)):
      top = _top_firing(acts, best, k)
      assert t[f'n_scored@{k}'][c] == len(top)
      np.testing.assert_allclose(t[f'purity@{k}'][c],
                                 table[top, c].mean() if len(top) else 0.0)
      np.testing.assert_allclose(t[f'lift@{k}'][c], t[f'purity@{k}'][c]
                                 / table[:, c].mean())
  np.testing.assert_allclose(t.base_rate, table.mean(0))


def test_concept_table_breaks_purity_ties_by_p_value():
  # both neurons are pure for concept A; neuron 0 on one item, neuron 1 on
  # four: four hits out of four is the stronger evidence.
  concepts = np.zeros((10, 1), bool)
  concepts[:5, 0] = True
  acts = np.zeros((10, 2), np.float32)
  acts[0, 0] = 1.0
  acts[1:5, 1] = 1.0
  t = neurons.concept_table(acts, concepts, ['A'], ks=(4,))
  assert t.best_neuron[0] == 1 and t['purity@4'][0] == 1.0
  assert t['n_scored@4'][0] == 4


def test_chunked_concept_scores_equal_unchunked():
  rng = np.random.default_rng(4)
  acts = _relu_acts(rng, 200, 7)
  table = rng.random((200, 37)) < 0.1
  full = neurons.concept_scores(acts, table, ks=(5, 20))
  for max_bytes in (1, 7 * 20 * 4 * 3, 7 * 20 * 4 * 36):  # 1, 3, 36 per chunk
    part = neurons.concept_scores(acts, table, ks=(5, 20), max_bytes=max_bytes)
    for key in full:
      np.testing.assert_array_equal(part[key], full[key])
