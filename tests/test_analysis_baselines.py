"""Null baselines of the concept scores (docs/method.md#null-baselines)."""

import jax
import numpy as np
import pandas as pd
import pytest

from monosem_jax.analysis import (baselines, interventions, neurons, pipeline,
                                  workdirs)
from monosem_jax.errors import ConfigError
from monosem_jax.sae import model


def _world(seed=0, n_items=60, n_concepts=5, n_configs=3, m=8):
  """Random codes of a few configs (some latents dead, some firing on fewer
  than 10 items, tied values) and random multi-hot labels."""
  rng = np.random.default_rng(seed)
  acts = np.maximum(rng.normal(size=(n_configs, n_items, m)), 0)
  acts[:, :, 1] = 0                                   # dead latent
  acts[:, 5:, 2] = 0                                  # fires on <= 5 items
  acts[:, :4, 3] = 2.0                                # ties
  acts = acts.astype(np.float32)
  labels = rng.random((n_items, n_concepts)) < 0.3
  labels[:12, 0] = True                               # a common concept
  acts[0, :12, 4] = 10 + np.arange(12)                # ... with a pure latent
  return acts, labels


def test_label_permutations_preserve_base_rates_and_are_reproducible():
  _, labels = _world()
  perms = baselines.label_permutations(len(labels), 20, seed=3)
  assert perms.shape == (20, len(labels)) and perms.dtype == np.int32
  assert (np.sort(perms, 1) == np.arange(len(labels))).all()  # permutations
  for p in perms:
    assert (labels[p].sum(0) == labels.sum(0)).all()        # base rates
    assert (labels[p].sum(1) == labels.sum(1)[p]).all()     # whole rows
  assert len({p.tobytes() for p in perms}) == 20            # all different
  np.testing.assert_array_equal(
      perms, baselines.label_permutations(len(labels), 20, seed=3))


def test_permutation_null_equals_a_loop_over_concept_tables():
  acts, labels = _world()
  dict_size = [8, 5, 8]
  names = [f'c{t}' for t in range(labels.shape[1])]
  perms = np.concatenate([np.arange(len(labels))[None],
                          baselines.label_permutations(len(labels), 4)])
  purity, pure = baselines.best_purity(acts, dict_size, labels, perms, 10)
  assert purity.shape == pure.shape == (3, 5, 5)
  for c, m in enumerate(dict_size):     # the reference: one table at a time
    for r, perm in enumerate(perms):
      table = neurons.concept_table(acts[c][:, :m], labels[perm], names,
                                    ks=(10,))
      np.testing.assert_array_equal(purity[c, r], table['purity@10'])
      np.testing.assert_array_equal(pure[c, r], neurons.is_pure(table, 10))
  assert pure[0, 0, 0]              # the planted pure latent is found ...
  assert not pure[1:, 0, 0].any()   # ... and only where it exists


def test_permutation_p_value_formula():
  null = np.array([[0., 1., 2., 3.], [5., 5., 5., 5.]])
  p = baselines.permutation_p(null, np.array([2., 5.]))
  np.testing.assert_allclose(p, [(1 + 2) / 5, (1 + 4) / 5])   # ties count
  assert baselines.permutation_p(null[:1], np.array([9.]))[0] == 1 / 5
  # along another axis: the null values in the first axis
  np.testing.assert_allclose(
      baselines.permutation_p(null.T, np.array([2., 5.]), axis=0), p)


def test_dimension_baselines_equal_the_neuron_tables_of_the_coordinates():
  rng = np.random.default_rng(1)
  emb = rng.normal(size=(60, 4)) + 3.0        # an offset: centring matters
  _, labels = _world()
  names = [f'c{t}' for t in range(labels.shape[1])]
  acts = baselines.dimension_acts(emb)
  assert acts.shape == (60, 8) and (acts >= 0).all()
  centred = emb - emb.mean(0)
  for j in range(4):   # +x orders items by the coordinate, -x reversed
    top = np.argsort(-centred[:, j], kind='stable')[:10]
    np.testing.assert_array_equal(np.sort(neurons.top_items(acts, 10)[0][j]),
                                  np.sort(top))
    bottom = np.argsort(centred[:, j], kind='stable')[:10]
    np.testing.assert_array_equal(
        np.sort(neurons.top_items(acts, 10)[0][4 + j]), np.sort(bottom))
  chance = baselines.Chance(labels, emb, k=10, permutations=3)
  for name, a in ((baselines.DIMS, acts), (baselines.ROTATED,
                                           baselines.rotated_dimension_acts(
                                               emb))):
    table = neurons.concept_table(a, labels, names, ks=(10,))
    purity, pure = chance.dims[name]
    np.testing.assert_array_equal(purity, table['purity@10'])
    np.testing.assert_array_equal(pure, neurons.is_pure(table, 10))
  q = baselines.random_rotation(4)
  np.testing.assert_allclose(q @ q.T, np.eye(4), atol=1e-12)
  np.testing.assert_array_equal(q, baselines.random_rotation(4))
  assert not np.allclose(q, baselines.random_rotation(4, seed=1))


def test_chance_columns_follow_their_definitions():
  acts, labels = _world()
  rng = np.random.default_rng(2)
  untrained = np.maximum(rng.normal(size=acts.shape), 0).astype(np.float32)
  chance = baselines.Chance(labels, rng.normal(size=(60, 4)), permutations=6)
  chance.add(acts[:2], untrained[:2], [8, 5], 2)      # two blocks, the last
  chance.add(acts[2:], untrained[2:], [8], 1)         # one config
  perms = chance.perms
  assert (perms[0] == np.arange(60)).all() and len(perms) == 7
  purity, pure = baselines.best_purity(acts, [8, 5, 8], labels, perms)
  cols = chance.config_columns()
  count = pure.sum(2)
  np.testing.assert_array_equal(cols['mean_purity@10'], purity[:, 0].mean(1))
  np.testing.assert_allclose(cols['pure_concepts@10_null'],
                             count[:, 1:].mean(1))
  np.testing.assert_allclose(cols['pure_concepts@10_p'], [
      (1 + (count[c, 1:] >= count[c, 0]).sum()) / 7 for c in range(3)])
  rp, rpure = baselines.best_purity(untrained, [8, 5, 8], labels, perms[:1])
  np.testing.assert_array_equal(cols['pure_concepts@10_random_sae'],
                                rpure[:, 0].sum(1))
  per_concept = chance.concept_columns()
  np.testing.assert_array_equal(per_concept['purity@10_random_sae'],
                                rp[:, 0].reshape(-1))
  np.testing.assert_allclose(per_concept['p_perm@10'], np.reshape(
      [(1 + (purity[c, 1:, t] >= purity[c, 0, t]).sum()) / 7
       for c in range(3) for t in range(5)], -1))
  summary = chance.summary(0, 8)
  assert summary['pure concepts@10'].iloc[0] == count[0, 0]
  assert list(summary['neurons'].str.split(' ').str[0]) == [
      'config', 'random-init', 'embedding', 'rotated', 'label', 'p-value']


def test_random_sae_baseline_is_an_untrained_sae_of_each_configs_architecture(
    sweep_dir):
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  emb = view.artifact.item_emb
  params = pipeline.random_sae(view, seed=5)
  got = np.asarray(pipeline.random_codes(view, emb, [0, 1, 2, 3], params))
  for c in range(4):
    codec = interventions.Codec.of(*view.config(c))
    untrained = codec.replace(params=model.init(jax.random.PRNGKey(5),
                                                codec.cfg))
    want = untrained.encode(emb)[0]
    np.testing.assert_allclose(got[c][:, :codec.cfg.dict_size], want, rtol=1e-6,
                               atol=1e-6)
    assert (got[c][:, codec.cfg.dict_size:] == 0).all()


def test_analysis_reports_observed_vs_chance(sweep_dir, tmp_path):
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  dataset = workdirs.open_dataset(view.artifact)
  result = pipeline.analyze_sweep(
      view, dataset, pipeline.AnalysisOptions(k=10, permutations=5,
                                              out=str(tmp_path)),
      log=lambda _: None)
  out = tmp_path / 'analysis'
  ct = pd.read_csv(out / 'concepts.csv')
  for col in ('purity@10_null', 'p_perm@10', 'purity@10_random_sae',
              'purity@10_dims', 'purity@10_rotated'):
    assert col in ct and ct[col].notna().all(), col
  assert ct['p_perm@10'].between(1 / 6, 1).all()
  fid = pd.read_csv(out / 'fidelity.csv')
  for col in ('mean_purity@10', 'pure_concepts@10_null', 'pure_concepts@10_p',
              'pure_concepts@10_random_sae', 'mean_purity@10_null',
              'mean_purity@10_p', 'mean_purity@10_random_sae'):
    assert col in fid and fid[col].notna().all(), col
  # the observed scores of the null program are the concept tables'
  np.testing.assert_allclose(
      fid['mean_purity@10'], ct.groupby('config')['purity@10'].mean())
  report = (out / 'report.md').read_text()
  assert '## Observed vs chance' in report
  assert 'label permutations: mean of 5' in report
  assert result.chance['pure concepts@10'].iloc[0] == fid.set_index(
      'config').loc[result.chosen, 'pure_concepts@10']
  assert not (out / 'seeds.csv').exists()      # one seed: no spread
  assert 'by chance' in '\n'.join(pipeline.summary_lines('mf', result))


@pytest.mark.parametrize('bad', [0, -1, 2.5, True])
def test_bad_permutation_counts_are_refused(sweep_dir, bad):
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  dataset = workdirs.open_dataset(view.artifact)
  with pytest.raises(ConfigError, match='permutations='):
    pipeline.analyze_sweep(view, dataset,
                           pipeline.AnalysisOptions(permutations=bad),
                           log=lambda _: None)
