"""The whole analysis of a sweep: experiments.analyze, its parts and report."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from monosem_jax.analysis import (concepts, figures, pipeline, planted,
                                  use_cases, workdirs)
from monosem_jax.data import synthetic
from monosem_jax.data.protocol import make_split
from monosem_jax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_analyze_launcher_writes_tables_figures_and_report(sweep_dir):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.analyze',
       f'--workdir={sweep_dir / "sweep"}', '--config.k=10'], cwd=ROOT,
      env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'neurons: 4/4 configs' in proc.stdout   # progress with timing
  out = sweep_dir / 'sweep' / 'analysis'
  table = pd.read_csv(out / 'fidelity.csv')
  assert len(table) == 4 and {'rbo', 'kendall_tau', 'l0_items', 'ndcg@10',
                              'pure_concepts@10', 'pareto'} <= set(table)
  assert table.pareto.any()
  rows = pd.read_csv(out / 'neurons.csv')
  assert len(rows) == 2 * 8 + 2 * 16   # dict sizes 8 and 16, two each
  assert {'best_concept', 'purity@10', 'p_value@10', 'ms', 'best_era',
          'user_firing_rate'} <= set(rows)
  world = pd.read_csv(out / 'concepts.csv')
  assert len(world) == 4 * 8           # 8 planted concepts per config
  iv = pd.read_csv(out / 'interventions.csv')
  assert set(iv['mode']) == {'replace', 'delta'}
  assert set(iv['kind']) == {'suppress', 'nudge', 'promote'}
  plant = pd.read_csv(out / 'planted.csv')
  assert len(plant) == 8 and plant.recall.between(0, 1).all()
  for png in ('fidelity_vs_l0.png', 'concept_heatmap.png',
              'interventions.png'):
    assert (out / png).stat().st_size > 1000
  report = (out / 'report.md').read_text()
  for title in ('## Best configs', '## Sparsity vs fidelity', '## Concepts',
                '## Interventions', '## Matryoshka hierarchy',
                '## Planted concepts', '![', 'item '):
    assert title in report


def test_config_activations_match_each_trimmed_config(sweep_dir):
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  item_emb = view.artifact.item_emb
  acts = pipeline.config_activations(view, item_emb, range(view.num_configs))
  for i in range(view.num_configs):
    sae, hp = view.config(i)
    one = concepts.activations(sae, concepts.sae_config_of(hp), item_emb,
                               hp['k'] or None)
    m = hp['dict_size']
    np.testing.assert_allclose(acts[i][:, :m], one, rtol=1e-5, atol=1e-6)
    assert not acts[i][:, m:].any()        # beyond the dictionary: exactly 0


def test_choose_config_and_pareto_front():
  t = pd.DataFrame({'config': [0, 1, 2, 3], 'pure_concepts@10': [3, 5, 5, 1],
                    'rbo_norm': [.9, .4, .6, .95], 'l0_items': [4., 8., 9., 2.],
                    'status': ['ok', 'ok', 'ok', 'diverged']})
  assert pipeline.choose_config(t) == 2          # most pure, then higher RBO
  rng = np.random.default_rng(0)
  r = pd.DataFrame(rng.integers(0, 5, (40, 3)).astype(float),
                   columns=['a', 'b', 'c'])
  r.loc[3, 'b'] = np.nan
  mask = figures.pareto_front(r, minimize=('a',), maximize=('b', 'c'))
  v = np.stack([r.a, -r.b, -r.c], 1)
  for i in range(len(r)):   # brute force
    dominated = any((v[j] <= v[i]).all() and (v[j] < v[i]).any()
                    for j in range(len(r)) if not np.isnan(v[j]).any())
    assert mask[i] == (not np.isnan(v[i]).any() and not dominated)


def test_planted_recall_against_brute_force():
  rng = np.random.default_rng(1)
  acts = np.maximum(rng.normal(size=(50, 6)), 0)
  truth = rng.random((50, 4)) < 0.3
  rec = planted.recall_matrix(acts, truth)
  for m in range(6):
    order = sorted(range(50), key=lambda i: (-acts[i, m], i))
    for c in range(4):
      n = truth[:, c].sum()
      top = [i for i in order[:n] if acts[i, m] > 0]
      assert rec[m, c] == pytest.approx(truth[top, c].sum() / n)


def _world():
  world = synthetic.make_world(synthetic.WorldConfig(n_users=80, n_items=60))
  return world, make_split(world, seed=0)


def test_use_case_config_refusals():
  with pytest.raises(ConfigError, match="unknown field 'level'"):
    use_cases.UseCase.from_dict({'kind': 'nudge', 'concept': 'x',
                                 'level': (1,)})
  with pytest.raises(ConfigError, match='kind='):
    use_cases.UseCase.from_dict({'kind': 'boost', 'concept': 'x'})
  with pytest.raises(ConfigError, match='needs target'):
    use_cases.UseCase.from_dict({'kind': 'promote', 'concept': 'x'})
  world, split = _world()
  users = np.arange(split.n_users)
  case = use_cases.UseCase('nudge', 'action', users='age<18')
  with pytest.raises(ConfigError, match="no user feature 'age'"):
    use_cases.user_group(case, world, split, users)
  case = use_cases.UseCase('nudge', 'actoin')
  with pytest.raises(ConfigError, match="did you mean 'action'"):
    use_cases.user_group(case, world, split, users)
  case = use_cases.UseCase('nudge', 'action', users='age is young')
  with pytest.raises(ConfigError, match='feature filter'):
    use_cases.user_group(case, world, split, users)


def test_user_groups_and_auto_target():
  world, split = _world()
  users = np.arange(split.n_users)
  ages = np.arange(split.n_users) % 50
  world = world.__class__(**{**world.__dict__,
                             'user_features': {'age': ages}})
  case = use_cases.UseCase('nudge', 'action', users='age<18')
  np.testing.assert_array_equal(
      use_cases.user_group(case, world, split, users), users[ages < 18])
  case = use_cases.UseCase('promote', 'horror', target='auto')
  c = world.concept_index('horror')
  t = use_cases.promotion_target(case, world, c)
  items = np.flatnonzero(world.item_concepts[:, c])
  pop = world.item_popularity
  assert world.item_concepts[t, c]
  assert (pop[items] < pop[t]).sum() <= len(items) // 2 <= (
      pop[items] <= pop[t]).sum()


def test_use_case_names_distinguish_and_repeats_are_refused(sweep_dir):
  a = use_cases.UseCase('promote', 'pop', target='X', scale='minmax')
  b = use_cases.UseCase('promote', 'pop', target='X', group_concept='rock')
  c = use_cases.UseCase('suppress', 'action', users='age<18', neuron=3)
  assert a.name == "promote 'X' via pop (pop users, min-max)"
  assert b.name == "promote 'X' via pop (rock users)"
  assert c.name == 'suppress via action #3 (age<18)'
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  dataset = workdirs.open_dataset(view.artifact)
  case = use_cases.UseCase('suppress', 'action', levels=(0.0,))
  with pytest.raises(ConfigError, match='repeats use case 0'):
    use_cases.run_use_cases(view, 0, dataset, [case, case])


def test_bad_settings_are_refused_before_any_work(sweep_dir):
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  dataset = workdirs.open_dataset(view.artifact)
  logs = []
  with pytest.raises(ConfigError, match=r'chosen=99: the sweep has 4'):
    pipeline.analyze_sweep(view, dataset, chosen=99, log=logs.append)
  with pytest.raises(ConfigError, match="unknown concept 'Horor'"):
    pipeline.analyze_sweep(view, dataset, log=logs.append, use_cases_=[
        use_cases.UseCase('suppress', 'Horor')])
  with pytest.raises(ConfigError, match='modes='):
    pipeline.analyze_sweep(view, dataset, modes=('add',), log=logs.append)
  with pytest.raises(ConfigError, match='scale='):
    use_cases.UseCase.from_dict({'kind': 'nudge', 'concept': 'x',
                                 'scale': 'percent'})
  assert logs == []                       # refused before the first stage


def test_neuron_tables_do_not_depend_on_the_thread_count(sweep_dir):
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  dataset = workdirs.open_dataset(view.artifact)
  cfg = dict(ks=(10, 20, 50), pop_top=50, era_top=50)
  one = pipeline._neuron_tables(view, dataset, dataset.item_concepts,
                                dataset.concept_names, cfg, lambda _: None,
                                threads=1)
  three = pipeline._neuron_tables(view, dataset, dataset.item_concepts,
                                  dataset.concept_names, cfg, lambda _: None,
                                  threads=3)
  assert view.num_configs > 1 and len(one[2]) == view.num_configs
  for a, b in zip(one, three):
    pd.testing.assert_frame_equal(a, b)


def _outputs(folder) -> dict:
  return {n: open(os.path.join(folder, n), 'rb').read()
          for n in sorted(os.listdir(folder))
          if os.path.isfile(os.path.join(folder, n))}


def test_outputs_are_one_set_never_mixed_and_orphans_are_removed(
    sweep_dir, monkeypatch):
  sweep = sweep_dir / 'sweep'
  # what a killed run leaves: a temporary file and a staging folder
  orphan_file = sweep / '.concepts.csv.tmp-k1ll3d'
  orphan_file.write_text('half a table')
  orphan_dir = sweep / '.analysis.tmp-k1ll3d'
  orphan_dir.mkdir()
  (orphan_dir / 'fidelity.csv').write_text('half')
  stale = sweep / 'report.md'     # an older version's layout, beside it
  stale.write_text('# Analysis of another time')
  view = workdirs.open_sweep(str(sweep))
  dataset = workdirs.open_dataset(view.artifact)
  quick = dict(k=10, max_users=50, threads=1, log=lambda _: None)
  first = pipeline.analyze_sweep(view, dataset, **quick)
  assert not orphan_file.exists() and not orphan_dir.exists()
  assert not stale.exists() or os.path.dirname(first.report_path) == str(
      sweep) and 'another time' not in stale.read_text()
  out = os.path.dirname(first.report_path)
  before = _outputs(out)
  assert {'report.md', 'fidelity.csv', 'neurons.csv'} <= set(before)

  def full_disk(*args, **kwargs):
    raise OSError(28, 'No space left on device')

  # a second analysis of another config fails once its CSVs are written
  monkeypatch.setattr(pipeline.figures, 'to_png', full_disk)
  other = (first.chosen + 1) % view.num_configs
  with pytest.raises(OSError, match='No space left'):
    pipeline.analyze_sweep(view, dataset, chosen=other, **quick)
  assert _outputs(out) == before          # the previous set, untouched
  left = [n for n in os.listdir(sweep) + os.listdir(out)
          if '.tmp-' in n or '.old-' in n]
  assert not left
