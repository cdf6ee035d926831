"""Seeds and stability (docs/method.md#seeds-and-stability)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from monosem_jax.experiments.configs import quickstart
from monosem_jax.experiments.configs import sweep as sweep_configs
from monosem_jax.analysis import pipeline, stability, use_cases, workdirs
from monosem_jax.sae import model


def _orthonormal(n, d, seed=0):
  """``(n, d)`` orthonormal rows (``n <= d``)."""
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
  return q[:n]


def test_hungarian_matching_finds_a_permuted_copy():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(24, 6))        # more neurons than dimensions
  perm = rng.permutation(24)
  match, cos = stability.match_neurons(a, 3.0 * a[perm])   # scale is free
  np.testing.assert_array_equal(perm[match], np.arange(24))
  np.testing.assert_allclose(cos, 1.0)
  matched, same, mean_cos = stability.pair_stability(
      a, a[perm], np.arange(24) % 5, (np.arange(24) % 5)[perm],
      np.ones(24, bool), np.ones(24, bool))
  assert matched == 1.0 and same == 1.0 and mean_cos == pytest.approx(1.0)


def test_matching_with_noise_counts_the_neurons_above_the_threshold():
  a = _orthonormal(8, 16)
  extra = _orthonormal(16, 16, seed=1)
  # a direction orthogonal to every row of a
  out = extra[0] - a.T @ (a @ extra[0])
  out /= np.linalg.norm(out)
  b = a.copy()
  b[:5] += 0.01 * _orthonormal(5, 16, seed=2)      # cosine > 0.99
  for j, c in zip((5, 6, 7), (0.5, 0.85, 0.89)):   # cosine c < 0.9
    b[j] = c * a[j] + np.sqrt(1 - c ** 2) * out
  perm = np.random.default_rng(3).permutation(8)
  match, cos = stability.match_neurons(a, b[perm])
  np.testing.assert_array_equal(perm[match], np.arange(8))
  np.testing.assert_allclose(cos[5:], [0.5, 0.85, 0.89], atol=1e-12)
  concept_a = np.array(list('aabbccdd'))
  concept_b = concept_a.copy()
  concept_b[0] = 'z'                                # one matched neuron moved
  alive_b = np.ones(8, bool)
  alive_b[1] = False                                # one dead: not counted
  matched, same, mean_cos = stability.pair_stability(
      a, b[perm], concept_a, concept_b[perm], np.ones(8, bool), alive_b[perm])
  assert matched == 5 / 8
  assert mean_cos == pytest.approx(cos.mean())
  assert same == 3 / 4             # neurons 2, 3, 4 of the alive 0, 2, 3, 4
  assert stability.pair_stability(a, b, concept_a, concept_b,
                                  np.ones(8, bool), alive_b, 0.8)[0] == 7 / 8


def _fid(seed=0):
  rng = np.random.default_rng(seed)
  grid = [(l, m, s) for l in (0.0, 1.0) for m in (8, 16) for s in (0, 1, 2)]
  fid = pd.DataFrame(grid, columns=['lambda_pred', 'dict_size', 'seed'])
  fid.insert(0, 'config', np.arange(len(fid)))
  fid['rho'] = 0.05                                # not swept
  fid['status'] = 'ok'
  fid.loc[4, 'status'] = 'diverged'
  fid['rbo_norm'] = rng.random(len(fid))
  fid['pure_concepts@10'] = rng.integers(0, 9, len(fid))
  return fid


def test_mean_and_std_over_seeds_equal_pandas_groupby():
  fid = _fid()
  got = stability.over_seeds(fid, ['rbo_norm', 'pure_concepts@10'])
  ok = fid[fid.status == 'ok']
  want = ok.groupby(['lambda_pred', 'dict_size'])[
      ['rbo_norm', 'pure_concepts@10']].agg(['mean', 'std'])
  assert list(got.columns[:2]) == ['lambda_pred', 'dict_size']   # not rho
  assert len(got) == 4
  got = got.set_index(['lambda_pred', 'dict_size'])
  for m in ('rbo_norm', 'pure_concepts@10'):
    np.testing.assert_allclose(got[f'{m}_mean'], want[(m, 'mean')])
    np.testing.assert_allclose(got[f'{m}_std'], want[(m, 'std')])
  assert got.loc[(0.0, 16), 'n_seeds'] == 2
  assert got.loc[(0.0, 16), 'n_diverged'] == 1
  assert got.loc[(0.0, 16), 'seeds'] == '0 1 2'
  assert got.loc[(0.0, 16), 'configs'] == '3 4 5'
  assert stability.has_seeds(fid) and not stability.has_seeds(
      fid[fid.seed == 0])
  assert stability.siblings(fid, 3) == [5]             # 4 diverged


def test_feature_stability_over_the_pairs_of_seeds():
  fid = _fid()
  rng = np.random.default_rng(1)
  decoders, rows = {}, []
  for c, m in zip(fid.config, fid.dict_size):
    base = c - fid.seed[c]                  # seed 0 of the setting
    perm = np.random.default_rng(c).permutation(m)
    w = np.random.default_rng(base).normal(size=(m, 16))
    # seeds 0 and 1 learn the same dictionary; seed 2 another
    decoders[c] = (w[perm] if fid.seed[c] < 2 else rng.normal(size=(m, 16)))
    concept = np.arange(m) % 3 if fid.seed[c] < 2 else np.zeros(m, int)
    rows.append(pd.DataFrame({'config': c, 'neuron': np.arange(m),
                              'dead': False,
                              'best_concept': concept[perm] if fid.seed[c] < 2
                              else concept}))
  got = stability.feature_stability(fid, decoders, pd.concat(rows))
  name = f'matched@{stability.MATCH_COSINE:g}'
  assert list(got.n_pairs) == [3, 1, 3, 3]      # config 4 diverged
  for i in (0, 2, 3):   # pairs (0,1), (0,2), (1,2): 1, ~0, ~0
    assert got[f'{name}_mean'][i] == pytest.approx(1 / 3)
    assert got['same_concept_mean'][i] == 1.0
  assert got[f'{name}_mean'][1] == 0.0           # seeds 0 and 2 only
  assert np.isnan(got[f'{name}_std'][1]) and np.isnan(
      got['same_concept_mean'][1])


def test_intervention_changes_over_seeds():
  def table(share):
    return pd.DataFrame({'case': 'suppress x', 'kind': 'suppress',
                         'neuron': 3, 'mode': 'delta',
                         'level': ['raw', 'no edit', 0.0, -1.0],
                         'concept_share': share})
  changes = stability.intervention_changes({
      0: table([0.8, 0.8, 0.7, 0.5]), 5: table([0.8, 0.8, 0.6, 0.9])})
  assert list(changes.change.round(6)) == [-0.3, 0.1]
  assert list(changes.wrong_direction) == [False, True]
  assert list(changes.level) == [-1.0, -1.0]
  summary = stability.changes_over_seeds(changes)
  assert summary.n_seeds[0] == 2 and summary.wrong_direction[0] == 1
  assert summary.change_mean[0] == pytest.approx(-0.1)
  assert summary.change_std[0] == pytest.approx(np.std([-0.3, 0.1], ddof=1))


def test_quickstart_and_reproduction_grids_run_three_seeds():
  for arg in ('', 'ml-1m', 'lastfm-2k'):
    cfg = quickstart.get_config(arg)
    for m in quickstart.MODELS:
      assert len(cfg[m].sweep.grid.seed) >= 3, (arg, m)
  seeds = sweep_configs.get_config('ml-1m,mf,seeds').grid
  assert tuple(seeds.seed) == sweep_configs.SEEDS and seeds.rho is None
  assert seeds.lambda_pred == sweep_configs.get_config('ml-1m,mf').grid.lambda_pred
  assert sweep_configs.get_config('ml-1m,mf').grid.seed is None   # README's
  with pytest.raises(ValueError, match='DATASET,MODEL,seeds'):
    sweep_configs.get_config('ml-1m,mf,seed')


@pytest.fixture(scope='module')
def seeded(sweep_dir):
  """``sweep_dir``'s 4 configs read as 2 settings (dict sizes 8, 16) of 2
  seeds each (their lambda_pred 0 / 10 relabelled as seeds 0 / 1), and its
  analysis with one use case: no training."""
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  hp = view.hparams
  n = hp.num_configs
  fake = dataclasses.replace(
      hp, seed=np.where(np.asarray(hp.lambda_pred) > 0, 1, 0).astype(np.int32),
      lambda_pred=np.full(n, 10.0, np.float32))
  view = dataclasses.replace(view, hparams=fake)
  dataset = workdirs.open_dataset(view.artifact)
  case = use_cases.UseCase.from_dict(dict(kind='suppress', concept='action',
                                          levels=(None, 0.0, -1.0)))
  out = sweep_dir / 'seeded'
  result = pipeline.analyze_sweep(view, dataset, pipeline.AnalysisOptions(
      use_cases=[case], k=10, modes=('delta',), permutations=3, out=str(out)),
      log=lambda _: None)
  return view, result, out / 'analysis'


def test_analysis_of_several_seeds_reports_the_spread_and_the_stability(
    seeded):
  view, result, out = seeded
  fid = pd.read_csv(out / 'fidelity.csv')
  seeds = pd.read_csv(out / 'seeds.csv')
  assert len(seeds) == 2 and list(seeds.n_seeds) == [2, 2]
  want = fid.groupby('dict_size')['rbo_norm'].agg(['mean', 'std'])
  got = seeds.set_index('dict_size')
  np.testing.assert_allclose(got.rbo_norm_mean, want['mean'])
  np.testing.assert_allclose(got.rbo_norm_std, want['std'])
  assert seeds.chosen.sum() == 1
  chosen = seeds[seeds.chosen].iloc[0]
  assert str(result.chosen) in chosen.configs.split()
  # stability from the decoders, as pair_stability gives it
  rows = pd.read_csv(out / 'neurons.csv')
  dec = np.asarray(model.decoder_weights(view.state.sae, view.spec.sae))
  for _, s in seeds.iterrows():
    a, b = map(int, s.configs.split())
    m = int(s.dict_size)
    na, nb = rows[rows.config == a], rows[rows.config == b]
    want = stability.pair_stability(
        dec[a, :m], dec[b, :m], na.best_concept.to_numpy(),
        nb.best_concept.to_numpy(), ~na.dead.to_numpy(bool),
        ~nb.dead.to_numpy(bool))
    assert s['matched@0.9_mean'] == want[0]
    assert s['match_cosine_mean'] == pytest.approx(want[2])
  # the use case on both seeds of the chosen setting
  change = [c for c in seeds if c.startswith('suppress') and
            c.endswith('change_mean')]
  assert len(change) == 1 and np.isfinite(chosen[change[0]])
  assert seeds.loc[~seeds.chosen, change[0]].isna().all()
  report = (out / 'report.md').read_text()
  assert '## Seeds and stability' in report
  assert 'Over the 2 seeds of the chosen setting' in report
  assert ' ± ' in report
  lines = '\n'.join(pipeline.summary_lines('mf', result))
  assert 'Over the 2 seeds of the chosen setting' in lines
