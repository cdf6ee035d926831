"""purity@K (neurons.concept_scores) against a plain numpy loop, concept
sets, and the codes of a loaded SAE (interventions.Codec)."""

import jax
import numpy as np
import pytest

from monosem_jax.analysis import concepts, interventions, neurons
from monosem_jax.errors import ConfigError
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
  got = neurons.concept_scores(acts, item_concepts, (10,))['purity'][0]
  ref = _purity_reference(acts, item_concepts, 10)
  ref[3] = 0.0
  np.testing.assert_allclose(got, ref, atol=1e-6)


def test_concept_matches_finds_planted_neuron():
  rng = np.random.default_rng(1)
  item_concepts = rng.random((200, 3)) < 0.2
  acts = rng.random((200, 5)) * 0.1
  acts[:, 4] += item_concepts[:, 2]  # neuron 4 fires on concept 2
  table = neurons.concept_table(acts, item_concepts, ['a', 'b', 'c'], (10,))
  row = table[table.concept == 'c'].iloc[0]
  assert row.best_neuron == 4 and row['purity@10'] == 1.0
  assert 0.1 < row.base_rate < 0.3
  assert {'lift@10', 'p_value@10', 'n_scored@10'} <= set(table)


TAGS = ['heavy_metal', 'death_metal', 'rock', 'pop', 'black_metal']


def test_concept_sets_are_the_union_of_their_tags():
  rng = np.random.default_rng(2)
  table = rng.random((60, 5)) < 0.2
  sets = {'metal (any)': ['heavy_metal', 'death_metal', 'black_metal'],
          'guitars': ['rock', 'heavy_metal']}
  out, names = concepts.concept_sets(table, TAGS, sets)
  assert names == tuple(TAGS) + ('metal (any)', 'guitars')
  np.testing.assert_array_equal(out[:, :5], table)
  np.testing.assert_array_equal(out[:, 5], table[:, [0, 1, 4]].any(1))
  np.testing.assert_array_equal(out[:, 6], table[:, 2] | table[:, 0])
  # scored like any concept: purity = share of top items carrying any tag
  acts = rng.random((60, 3))
  purity = neurons.concept_scores(acts, out, (10,))['purity'][0]
  ref = _purity_reference(acts, out, 10)
  np.testing.assert_allclose(purity[:, 5:], ref[:, 5:], atol=1e-6)


def test_unknown_tags_in_a_set_are_refused_with_a_suggestion():
  table = np.zeros((3, 5), bool)
  with pytest.raises(ConfigError, match=(
      r"set 'metal \(any\)': unknown concept 'death metal'; did you mean "
      r"'death_metal'")):
    concepts.concept_sets(table, TAGS,
                          {'metal (any)': ['heavy_metal', 'death metal']})
  with pytest.raises(ConfigError, match="unknown concept 'zzz'$"):
    concepts.concept_sets(table, TAGS, {'x': ['zzz']})
  with pytest.raises(ConfigError, match="'rock': a concept of that name"):
    concepts.concept_sets(table, TAGS, {'rock': ['rock', 'pop']})
  with pytest.raises(ConfigError, match="'x': expected a list"):
    concepts.concept_sets(table, TAGS, {'x': 'rock'})


def test_codes_shape_and_nonnegative():
  cfg = model.SAEConfig(dim=4, dict_size=6, normalize=True, pre_bias=True)
  codec = interventions.Codec(model.init(jax.random.PRNGKey(0), cfg), cfg)
  z, _ = codec.encode(np.random.default_rng(0).normal(size=(9, 4)))
  assert z.shape == (9, 6) and (np.asarray(z) >= 0).all()
