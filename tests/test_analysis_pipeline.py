"""The whole analysis of a sweep: experiments.analyze, its parts and report."""

import ast
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from monosem_jax.experiments.configs import sweep as sweep_configs
from monosem_jax.analysis import (figures, interventions, pipeline, planted,
                                  use_cases, workdirs)
from monosem_jax.analysis.progress import AnalysisProgress, AnalysisStopped
from monosem_jax.data import synthetic
from monosem_jax.data.protocol import make_split
from monosem_jax.errors import ConfigError
from monosem_jax.sweep.runner import run_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def launched(sweep_dir):
  """``python -m experiments.analyze`` on ``sweep_dir``'s sweep, once."""
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run(
      [sys.executable, '-m', 'experiments.analyze',
       f'--workdir={sweep_dir / "sweep"}', '--config.k=10'], cwd=ROOT,
      env=env, capture_output=True, text=True, timeout=600)


def test_analyze_launcher_writes_tables_figures_and_report(sweep_dir,
                                                           launched):
  proc = launched
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
  for title in ('## Chosen config', '## Sparsity vs fidelity', '## Concepts',
                '## Interventions', '## Matryoshka hierarchy',
                '## Planted concepts', '![', 'item '):
    assert title in report


def test_report_names_its_sweep_shows_the_configs_once_and_the_rule(
    sweep_dir, launched):
  assert launched.returncode == 0, launched.stderr[-2000:]
  out = sweep_dir / 'sweep' / 'analysis'
  report = (out / 'report.md').read_text()
  table = pd.read_csv(out / 'fidelity.csv')
  assert report.startswith('# Analysis: MF on synthetic, sweep ')
  assert str(sweep_dir) not in report              # relative paths only
  assert 'recommender `../../rec`' in report   # from sweep/analysis/
  assert report.count('| config | status |') == 1  # one config table
  assert 'l0_items_codes' not in table and 'l0_items' in table
  assert set(table.status) == {'ok'} and 'None of the 4 configs diverged' in (
      report)
  # the rule, stated; the chosen config is faithful and uses the pred loss
  assert 'docs/method.md#choosing-a-config' in report
  chosen = int(report.split('**Chosen: config ')[1].split('**')[0])
  row = table.set_index('config').loc[chosen]
  assert row.lambda_pred > 0 and row.rbo_norm >= table.rbo_norm.median()
  assert table.eligible.sum() >= 1 and table.set_index('config').eligible[
      chosen]
  # the Pareto front over (pure concepts, normalised RBO), brute force
  v = -np.stack([table['pure_concepts@10'], table.rbo_norm], 1)
  front = [not any((v[j] <= v[i]).all() and (v[j] < v[i]).any()
                   for j in range(len(v))) for i in range(len(v))]
  assert table.pareto.tolist() == front
  # every intervention level scale is explained, activations shown
  assert 'absolute scale: the neuron is set to the level itself' in report
  assert '| level | activation |' in report


def test_neurons_csv_names_the_chosen_configs_top_items(sweep_dir, launched):
  # An exported SAE's neurons read without the notebook: the chosen
  # config's rows carry the titles of each neuron's top-5 firing items.
  assert launched.returncode == 0, launched.stderr[-2000:]
  out = sweep_dir / 'sweep' / 'analysis'
  rows = pd.read_csv(out / 'neurons.csv', keep_default_na=False)
  report = (out / 'report.md').read_text()
  chosen = int(report.split('**Chosen: config ')[1].split('**')[0])
  assert (rows[rows.config != chosen]['top items'] == '').all()
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  titles = workdirs.open_dataset(view.artifact).item_titles
  m = view.hparams.config(chosen)['dict_size']
  acts = pipeline.config_activations(view, view.artifact.item_emb,
                                     [chosen])[0][:, :m]
  mine = rows[rows.config == chosen].set_index('neuron')['top items']
  assert sorted(mine.index) == list(range(m))
  for n in range(m):                 # brute force: stable order, firing only
    top = np.argsort(-acts[:, n], kind='stable')[:5]
    assert mine[n] == '; '.join(titles[top[acts[top, n] > 0]]), n
  assert (mine != '').sum() >= m // 2   # most neurons fire on some item


def test_report_shows_the_purity_and_the_effect_choice_side_by_side(
    sweep_dir, launched):
  # issue 20: every default use case twice, its neuron chosen by item
  # purity (the paper) and by effect, and one table comparing them
  assert launched.returncode == 0, launched.stderr[-2000:]
  out = sweep_dir / 'sweep' / 'analysis'
  iv = pd.read_csv(out / 'interventions.csv')
  assert set(iv.choice) == {'purity', 'effect'}
  for kind in ('suppress', 'nudge', 'promote'):
    assert set(iv[iv.kind == kind].choice) == {'purity', 'effect'}
  report = (out / 'report.md').read_text()
  assert '**Neuron choice, side by side**' in report
  table = report.split('**Neuron choice, side by side**')[1]
  assert '| case | mode | choice | neuron | purity@10 |' in table
  assert ' by effect (' in table and 'docs/method.md#interventions' in table
  effect = iv[iv.choice == 'effect'].groupby(['case', 'mode']).first()
  assert effect.purity_neuron_effect.notna().all()


def test_launcher_help_names_the_figures_and_the_choice_rule():
  # the launcher's docstring is its --help (read, not imported: importing
  # a launcher defines its flags)
  docs = [ast.get_docstring(ast.parse(open(os.path.join(ROOT, path)).read()))
          for path in ('monosem_jax/experiments/analyze.py',
                       'monosem_jax/experiments/configs/analyze.py')]
  for doc in docs:
    for name in ('fidelity_vs_l0', 'concept_heatmap', 'interventions',
                 'hierarchy'):
      assert name in doc
    assert 'four PNG figures and' not in doc and '~15 s' not in doc
    assert 'docs/method.md#choosing-a-config' in doc


def test_config_activations_match_each_trimmed_config(sweep_dir):
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  item_emb = view.artifact.item_emb
  acts = pipeline.config_activations(view, item_emb, range(view.num_configs))
  for i in range(view.num_configs):
    sae, hp = view.config(i)
    one = interventions.Codec.of(sae, hp).encode(item_emb)[0]
    m = hp['dict_size']
    np.testing.assert_allclose(acts[i][:, :m], one, rtol=1e-5, atol=1e-6)
    assert not acts[i][:, m:].any()        # beyond the dictionary: exactly 0


def _fidelity_table(**columns):
  t = pd.DataFrame({'config': range(6),
                    'lambda_pred': [0., 0., 1., 10., 10., 10.],
                    'pure_concepts@10': [7, 6, 5, 5, 4, 9],
                    'rbo_norm': [.2, .22, .6, .68, .7, .9],
                    'status': ['ok'] * 5 + ['diverged']})
  return t.assign(**columns)


def test_choice_rule_requires_fidelity_and_the_prediction_loss():
  # The most pure concepts come from lambda_pred 0 (RBO 0.2) and from a
  # diverged config: neither is chosen. Finite median RBO: 0.6; eligible:
  # configs 2, 3, 4 (lambda_pred > 0, RBO >= 0.6); most pure: 2 and 3 (5
  # each); tie to the higher RBO: 3.
  t = _fidelity_table()
  assert pipeline.choose_config(t) == 3
  choice = pipeline.choose(t)
  assert choice.config == 3
  assert choice.median_rbo == pytest.approx(0.6) and not choice.by_hand
  assert choice.eligible.tolist() == [False, False, True, True, True, False]
  assert 'λ_pred > 0' in choice.rule and '(0.600)' in choice.rule
  # a sweep of lambda_pred 0 only: said so, and fidelity still required
  only0 = pipeline.choose(_fidelity_table(lambda_pred=0.))
  assert only0.config == 3 and 'only λ_pred = 0 configs' in only0.rule
  # lambda_pred > 0 configs all below the median: the faithful ones count
  low = pipeline.choose(_fidelity_table(lambda_pred=[1., 1., 0., 0., 0., 1.]))
  assert low.config == 3 and 'no λ_pred > 0 config reaches' in low.rule
  # by hand: kept, even a diverged one (the report warns)
  hand = pipeline.choose(t, 5)
  assert hand.config == 5 and hand.by_hand
  # a table without status or lambda_pred (the notebook's): all finite
  assert pipeline.choose_config(t.drop(columns=['status', 'lambda_pred'])) == 5
  with pytest.raises(ConfigError, match='6 of 6 configs diverged.*chosen=N'):
    pipeline.choose(_fidelity_table(status='diverged'))


def test_pareto_front_is_over_pure_concepts_and_fidelity_of_finite_configs():
  # README's ML-1M MF sweep: normalised RBO rises with L0 almost
  # monotonically, so an (L0, RBO) front held 57 of 80 configs; this one 4.
  t = pd.DataFrame({'config': range(6), 'l0_items': [4., 8., 9., 2., 5., 6.],
                    'rbo_norm': [.9, .4, .6, .95, .3, .5],
                    'pure_concepts@10': [3, 5, 5, 9, 9, 4],
                    'status': ['ok', 'ok', 'ok', 'diverged', 'ok', 'ok']})
  # config 3 would dominate config 4 but diverged; config 5 is dominated by
  # 2 (more pure, more faithful); L0 does not count
  assert pipeline.pareto_configs(t).tolist() == [True, False, True, False,
                                                 True, False]
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
  # an explicit neuron past the config's own dictionary: one line
  m = view.sae(0).cfg.dict_size
  far = use_cases.UseCase('suppress', 'action', neuron=m, levels=(0.0,))
  with pytest.raises(ConfigError,
                     match=rf'neuron={m} is outside the dictionary \(0\.\.{m - 1}\)'):
    use_cases.run_use_cases(view, 0, dataset, [far])


def test_bad_settings_are_refused_before_any_work(sweep_dir):
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  dataset = workdirs.open_dataset(view.artifact)
  logs = []
  with pytest.raises(ConfigError, match=r'chosen=99: the sweep has 4'):
    pipeline.analyze_sweep(view, dataset, pipeline.AnalysisOptions(chosen=99),
                           log=logs.append)
  with pytest.raises(ConfigError, match="unknown concept 'Horor'"):
    pipeline.analyze_sweep(view, dataset, pipeline.AnalysisOptions(
        use_cases=[use_cases.UseCase('suppress', 'Horor')]), log=logs.append)
  with pytest.raises(ConfigError, match='modes='):
    pipeline.analyze_sweep(view, dataset,
                           pipeline.AnalysisOptions(modes=('add',)),
                           log=logs.append)
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


@pytest.fixture(scope='module')
def diverged_sweep(sweep_dir):
  """``sweep_dir``'s sweep again (the same compiled program), but with
  lambda_pred 1e30 instead of 0: configs 1 and 3 diverge; analysed."""
  s = sweep_configs.get_config('synthetic,mf')
  s.recommender_workdir = str(sweep_dir / 'rec')
  s.epochs = 2
  s.spec.batch_users = s.spec.batch_items = 64
  s.spec.steps_per_epoch = 3
  s.plan_memory = False
  s.grid = sweep_configs.grid_config(lambda_pred=(10.0, 1e30),
                                     dict_size=(8, 16))
  out = sweep_dir / 'diverged'
  run_sweep(s, str(out), log=lambda _: None)
  view = workdirs.open_sweep(str(out))
  dataset = workdirs.open_dataset(view.artifact)
  case = [use_cases.UseCase('suppress', 'action', levels=(None, -1.0))]
  return pipeline.analyze_sweep(view, dataset,
                                pipeline.AnalysisOptions(use_cases=case),
                                log=lambda _: None)


def test_diverged_configs_are_marked_never_chosen_never_on_the_front(
    diverged_sweep):
  result = diverged_sweep
  report = open(result.report_path).read()
  fid = pd.read_csv(result.report_path.replace('report.md', 'fidelity.csv'))
  bad = fid.config[fid.lambda_pred > 1e20].tolist()
  assert len(bad) == 2
  assert f'**2 of 4 configs diverged** ({bad[0]}, {bad[1]})' in report
  assert 'non-finite during training' in report       # what it means
  assert fid.status.tolist() == ['diverged' if c in bad else 'ok'
                                 for c in fid.config]
  for c in bad:
    assert f'| {c} | diverged |' in report            # marked in the table
    assert not fid.pareto[c] and not fid.eligible[c]
  assert result.chosen not in bad
  # chosen by hand: said, and warned about
  hand = pipeline._choice_section(fid, pipeline.choose(fid, bad[0]),
                                  ['lambda_pred'], 4, 'MF', 'synthetic', 30)
  hand = '\n\n'.join(hand.parts)
  assert f'**Chosen: config {bad[0]}**' in hand
  assert f'chosen by hand (`chosen={bad[0]}`)' in hand
  assert f'**Warning: config {bad[0]} diverged in training' in hand
  assert f'would choose {result.chosen}' in hand


def test_intervention_flags_follow_their_rule(diverged_sweep, sweep_dir):
  iv = diverged_sweep.interventions
  view = workdirs.open_sweep(str(sweep_dir / 'diverged'))
  art = view.artifact
  codec = interventions.Codec.of(*view.config(diverged_sweep.chosen))
  users = np.asarray(art.split.sae_test_users)
  codes = np.asarray(codec.encode(art.user_emb[users])[0])
  neuron = int(iv.neuron.iloc[0])
  np.testing.assert_allclose(iv.activation_max, codes[:, neuron].max(),
                             rtol=1e-6)
  assert (iv.inactive == (iv.orig_activation <= 0.05 * iv.activation_max)
          ).all()
  for mode, t in iv.groupby('mode'):
    none = t[t.level.isin(['reconstruction', 'unedited'])].concept_share
    low = t[t.level.astype(str) == '-1.0'].concept_share
    assert t.wrong_sign.iloc[0] == (float(low.iloc[0]) >
                                    float(none.iloc[0]))
    # the activation beside each level: unedited, then the level itself
    assert t.activation.iloc[0] == pytest.approx(t.orig_activation.iloc[0])
    assert t[t.level.astype(str) == '-1.0'].activation.iloc[0] == -1.0


def test_wrong_direction_and_inactive_flags():
  t = pd.DataFrame({'level': ['raw', 'reconstruction', 1.0, 0.0, -1.5],
                    'concept_share': [.89, .84, .6, .85, .92]})
  assert interventions.wrong_direction(t, 'suppress')   # .84 -> .92 at -1.5
  assert interventions.strongest_change(t, 'suppress') == (
      'concept_share', .84, -1.5, .92)
  assert interventions.wrong_direction(t, 'nudge')      # .84 -> .6 at 1.0
  t2 = t.assign(concept_share=[.1, .1, .05, .1, .02])
  assert interventions.wrong_direction(t2, 'nudge')     # .1 -> .05 at 1.0
  assert not interventions.wrong_direction(t2, 'suppress')
  p = pd.DataFrame({'level': ['raw', 'unedited', 0.0, 6.0],
                    'mean_rank': [418., 418., 436., 500.]})
  assert interventions.wrong_direction(p, 'promote')
  flagged = use_cases.flag_case(t.assign(orig_activation=0.0076), 'suppress',
                                1.0)
  assert flagged.inactive.all() and flagged.wrong_sign.all()
  assert flagged.flag.iloc[0] == 'wrong direction, inactive neuron'
  fine = use_cases.flag_case(t.assign(orig_activation=0.4), 'suppress', 1.0)
  assert not fine.inactive.any()


def test_analysis_refuses_a_dataset_without_concepts(sweep_dir, tmp_path):
  """The library, not only the launchers, refuses before any work (it once
  ended in an IndexError after the fidelity stage)."""
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  ds = workdirs.open_dataset(view.artifact)
  bare = dataclasses.replace(ds, concept_names=(),
                             item_concepts=np.zeros((ds.n_items, 0), bool))
  with pytest.raises(ConfigError, match='no concept labels'):
    pipeline.analyze_sweep(view, bare, pipeline.AnalysisOptions(
        out=str(tmp_path)), log=lambda _: None)
  assert not os.listdir(tmp_path)


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
  quick = pipeline.AnalysisOptions(k=10, max_users=50, threads=1)
  first = pipeline.analyze_sweep(view, dataset, quick, log=lambda _: None)
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
    pipeline.analyze_sweep(view, dataset,
                           dataclasses.replace(quick, chosen=other),
                           log=lambda _: None)
  assert _outputs(out) == before          # the previous set, untouched
  left = [n for n in os.listdir(sweep) + os.listdir(out)
          if '.tmp-' in n or '.old-' in n]
  assert not left


def test_typed_progress_reaches_the_hooks_and_a_stop_writes_nothing(
    sweep_dir, tmp_path):
  """Issue 18: the analysis reports typed progress to its hooks (no log line
  to parse); its text lines are one subscriber of the same events; a hook
  returning True stops it before anything is written."""
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  dataset = workdirs.open_dataset(view.artifact)
  case = [use_cases.UseCase('suppress', 'action', levels=(None, -1.0))]
  quick = pipeline.AnalysisOptions(k=10, max_users=50, threads=1,
                                   use_cases=case, out=str(tmp_path))
  events, lines = [], []
  first = pipeline.analyze_sweep(view, dataset, quick, log=lines.append,
                                 on_progress=[events.append])
  assert all(isinstance(e, AnalysisProgress) for e in events)
  assert [e.stage for e in events if e.last] == [
      'fidelity', 'neurons', 'interventions']     # one seed: no 'seeds'
  neurons = [e for e in events if e.stage == 'neurons']
  assert [e.total for e in neurons] == [4] * len(neurons)
  assert neurons[-1].done == 4 and all(e.seconds >= 0 for e in events)
  assert [(e.done, e.total) for e in events if e.stage != 'neurons'] == [
      (4, 4), (1, 1)]
  assert [l.split('configs')[0].strip() for l in lines
          if 'neurons:' in l] == ['neurons: 4/4']   # AnalysisLog's line
  out = os.path.dirname(first.report_path)
  before = _outputs(out)
  seen = []

  def stop(p):
    return p.stage == 'neurons'

  other = (first.chosen + 1) % view.num_configs
  with pytest.raises(AnalysisStopped, match='neurons'):
    pipeline.analyze_sweep(view, dataset,
                           dataclasses.replace(quick, chosen=other),
                           log=lambda _: None, on_progress=[stop, seen.append])
  assert seen[-1].stage == 'neurons'      # every hook of the call ran
  assert _outputs(out) == before          # the previous set, untouched
  assert sorted(os.listdir(tmp_path)) == ['analysis']


def test_analyze_launcher_recodes_by_pursuit(sweep_dir, tmp_path):
  """--config.encode_method=omp: every config coded by signed OMP with k
  atoms of its own decoder, the analysis in --config.out (the sweep's own
  files untouched), the encoder named in fidelity.csv and report.md; the
  sweep folder as out is refused."""
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  sweep = sweep_dir / 'sweep'
  base = [sys.executable, '-m', 'experiments.analyze', f'--workdir={sweep}',
          '--config.k=10', '--config.encode_method=omp',
          '--config.encode_k=3', '--config.encode_signed=True']
  refused = subprocess.run(base, cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600)
  assert refused.returncode == 1
  assert 'writes its analysis elsewhere' in refused.stderr.strip()
  before = sorted(os.listdir(sweep))
  proc = subprocess.run(base + [f'--config.out={tmp_path / "omp"}'], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert sorted(os.listdir(sweep)) == before
  table = pd.read_csv(tmp_path / 'omp' / 'analysis' / 'fidelity.csv')
  assert (table.encoder == 'omp, signed, k=3').all() and (table.k == 3).all()
  assert (table.l0_items <= 3).all() and 'fve' not in table
  assert 'coded by pursuit on its own trained decoder (omp, signed, k=3)' in (
      tmp_path / 'omp' / 'analysis' / 'report.md').read_text()
