"""The prepared GPU device check (experiments/device_check.py, issues 11 and
19): its ``--small`` run end to end on a CPU, its refusals, its time budget,
its tests stage and its targets computed from the measured figures."""

import json
import os
import subprocess
import sys
import time

import pytest

from experiments import device_check
from monosem_jax.analysis import pipeline
from monosem_jax.analysis.progress import AnalysisStopped
from monosem_jax.sweep import checkpoint
from monosem_jax.sweep.runner import RESULTS_CSV

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ('environment', 'bench_sweep', 'recommender', 'determinism', 'sweep',
          'analysis', 'tests', 'targets')


def _env(**extra) -> dict:
  env = dict(os.environ)
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  env['JAX_PLATFORMS'] = 'cpu'
  env.update(extra)
  return env


def _check(*args, env=None, timeout=600):
  return subprocess.run(
      [sys.executable, '-m', 'experiments.device_check', *args], cwd=ROOT,
      env=env or _env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def small_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('device_check')
  out = root / 'x.json'
  run = _check('--small', f'--out={out}', f'--workdir={root / "work"}')
  assert run.returncode == 0, run.stderr[-3000:]
  return json.loads(out.read_text()), run.stderr


@pytest.mark.slow
def test_small_run_measures_every_stage(small_run):
  doc, stderr = small_run
  assert doc['small'] is True and doc['complete'] is True
  stages = doc['stages']
  assert tuple(stages) == STAGES
  for name in STAGES:
    rec = stages[name]
    assert rec['status'] == 'ok' and 'error' not in rec, (name, rec)
    assert rec['seconds'] > 0, name
    for key in ('peak_bytes_in_use', 'bytes_limit'):
      assert key in rec      # None on a CPU
    assert f'== {name}: ok in' in stderr
  env = stages['environment']
  assert env['backend'] == 'cpu' and env['device_count'] >= 1

  bench = {(r['model'], r['precision']): r
           for r in stages['bench_sweep']['results']}
  assert list(bench) == [('mf', 'float32'), ('ncf', 'float32'),
                         ('mf', 'tf32'), ('ncf', 'tf32')]
  for (model, precision), res in bench.items():
    first = precision == 'float32'
    assert [row['C'] for row in res['vmapped']] == ([1, 8] if first else [8])
    assert (res['sequential'] is not None) == first
    for row in res['vmapped']:
      assert row['config_steps_per_s'] > 0
      assert row['achieved_flops_per_s'] > 0
      assert row['achieved_bytes_per_s'] > 0
      assert 0 < row['min_bytes_per_config_step'] < row[
          'bytes_per_config_step']
      assert row['roofline']['H100']['config_steps_per_s'] > 0
      assert row['roofline']['H100']['bound'] in ('memory', 'compute')
      # A CPU is no known device: fractions of its peaks are unknown.
      for key in ('fraction_of_peak_flops', 'fraction_of_peak_bandwidth',
                  'fraction_of_fp32_compute_roof', 'fraction_of_byte_roof_min'):
        assert row[key] is None, key

  rec = stages['recommender']
  assert rec['epochs_trained'] == rec['epochs_asked'] and not rec['truncated']
  assert 0 < rec['test_metrics']['ndcg@10'] <= 1

  det = stages['determinism']
  for kind in ('ncf', 'mf'):
    for mode in ('deterministic', 'nondeterministic'):
      assert det[kind][mode]['epoch_s'] > 0
      assert det[kind][mode]['repeat_bitwise_equal'] is True   # a CPU
    assert det[kind]['slowdown'] > 0

  sweep = stages['sweep']
  assert sweep['complete'] and sweep['configs'] == sweep['configs_asked'] == 8
  assert sweep['compile_s'] > 0
  assert sweep['memory_plan'].startswith('memory: the device reports no limit')
  assert sweep['ok'] + sweep['diverged'] == sweep['configs']
  assert sweep['epochs'] == 2 and sweep['config_steps_per_s'] > 0
  # from the sweep's typed result and its on_epoch hook, not from its log
  assert sweep['epochs_trained'] == 2 and sweep['steps_per_epoch'] == 3
  assert [e for e, _ in sweep['epoch_rates']] == [1, 2]
  assert all(rate > 0 for _, rate in sweep['epoch_rates'])
  assert sweep['placement'] == 'one device' and sweep['compile_programs'] > 0

  analysis = stages['analysis']
  assert analysis['configs'] == 8 and not analysis['partial_sweep']
  assert os.path.isfile(analysis['report'])
  assert os.path.basename(analysis['report']) == 'report.md'

  tests = stages['tests']
  assert tests['complete'] and tests['passed'] > 0 and tests['failed'] == 0
  assert tests['failed_ids'] == [] and 'tests/test_progress.py' in (
      tests['command'])

  t = stages['targets']
  assert t['applies'] is False
  assert t['tests_met'] is True
  for key in ('mf_required_met', 'mf_goal_met', 'sweep_met', 'analysis_met',
              'all_required_met'):
    assert t[key] is False, key      # 8 configs, no C = 1024 row
  assert t['sweep_seconds'] == sweep['seconds_end_to_end']
  assert t['analysis_seconds'] == analysis['seconds_end_to_end']


@pytest.mark.slow
def test_the_sweep_stage_is_stopped_by_its_hook_past_the_deadline(
    small_run, tmp_path):
  doc, _ = small_run
  rec = {}
  ctx = dict(args=device_check.parse_args(['--small']), workdir=str(tmp_path),
             rec_dir=doc['stages']['recommender']['workdir'],
             stage_deadline=time.perf_counter() - 1)     # passed already
  with pytest.raises(device_check.BudgetExceeded,
                     match=r'budget: sweep stopped at 1/2'):
    device_check.stage_sweep(rec, ctx)
  assert not rec['complete'] and rec['epochs_trained'] == 1
  assert [e for e, _ in rec['epoch_rates']] == [1]
  # its last epoch is checkpointed (the analysis stage reads it), no CSV
  assert checkpoint.saved_epochs(ctx['sweep_dir']) == [1]
  assert not os.path.exists(os.path.join(ctx['sweep_dir'], RESULTS_CSV))


def test_full_check_on_a_cpu_refuses_in_one_line(tmp_path):
  out = tmp_path / 'y.json'
  run = _check(f'--out={out}', timeout=120)
  assert run.returncode == 1
  lines = run.stderr.strip().splitlines()
  assert len(lines) == 1 and 'GPU' in lines[0], run.stderr
  assert not out.exists()


def test_full_check_without_the_data_refuses_naming_the_variable(
    tmp_path, monkeypatch, capsys):
  out = tmp_path / 'z.json'
  monkeypatch.delenv('MONOSEM_DATA_DIR', raising=False)
  assert device_check.main(['--allow_cpu', f'--out={out}']) == 1
  monkeypatch.setenv('MONOSEM_DATA_DIR', str(tmp_path))   # no ml-1m there
  assert device_check.main(['--allow_cpu', f'--out={out}']) == 1
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 2
  assert all('MONOSEM_DATA_DIR' in line for line in lines), lines
  assert not out.exists()


def test_spent_budget_skips_the_stages_and_still_writes_the_json(tmp_path):
  out = tmp_path / 'b.json'
  assert device_check.main(['--small', '--budget_s=0', f'--out={out}',
                            f'--workdir={tmp_path / "work"}']) == 0
  doc = json.loads(out.read_text())
  assert tuple(doc['stages']) == STAGES
  for name in STAGES[:-1]:
    assert doc['stages'][name] == {'status': 'skipped', 'skipped': 'budget'}
  assert doc['stages']['targets']['status'] == 'ok'
  assert doc['stages']['targets']['mf_required_met'] is False


def test_the_analysis_stage_is_stopped_by_its_typed_hook(sweep_dir,
                                                         monkeypatch):
  """Issue 18: the analysis stage is stopped by its on_progress hook (typed
  AnalysisProgress, no log line read), after a block of the neuron tables
  (not the last), before anything is written."""
  monkeypatch.setattr(pipeline, 'TABLES_BYTES', 1)     # blocks of 1 config
  sweep = str(sweep_dir / 'sweep')
  before = sorted(os.listdir(sweep))
  rec = {}
  ctx = dict(sweep_dir=sweep, stages={'sweep': {'complete': True}},
             stage_deadline=time.perf_counter() - 1)     # passed already
  with pytest.raises(device_check.BudgetExceeded,
                     match=r'^budget: analysis stopped at 1/4 ') as stop:
    device_check.stage_analysis(rec, ctx)
  assert isinstance(stop.value.__cause__, AnalysisStopped)
  assert stop.value.__cause__.progress.stage == 'neurons'
  assert sorted(os.listdir(sweep)) == before
  assert rec['configs'] == 4 and rec['log_tail'][0].startswith('analysis of')


def test_epoch_lines_are_not_parsed_the_recommender_stops_by_its_hook(
    tmp_path):
  """Issue 18: no log text is an API. The recommender's (and the sweep's)
  epoch lines stop nothing; its stage is stopped by a typed hook and frozen
  at that (checkpointed) epoch."""
  rec = {}
  ctx = dict(args=device_check.parse_args(['--small']), workdir=str(tmp_path),
             stage_deadline=time.perf_counter() - 1)     # passed already
  device_check.stage_recommender(rec, ctx)
  assert rec['truncated'] and rec['epochs_trained'] == 1
  assert rec['stopped'] == ('budget: recommender stopped at 1/2 (time limit '
                            'passed)')
  assert os.path.isdir(os.path.join(rec['workdir'], 'frozen'))


def _measured(mf_rate, sweep_s, analysis_s, configs=1024, ncf_rate=None,
              failed=0, kind='NVIDIA H100 80GB HBM3'):
  bench = [dict(model='mf', precision='float32',
                vmapped=[dict(C=1024, config_steps_per_s=mf_rate)]),
           dict(model='mf', precision='bfloat16',     # not the float32 row
                vmapped=[dict(C=1024, config_steps_per_s=9e9)])]
  if ncf_rate is not None:
    bench.append(dict(model='ncf', precision='float32',
                      vmapped=[dict(C=1024, config_steps_per_s=ncf_rate)]))
  return {
      'environment': dict(backend='gpu', device_kind=kind),
      'bench_sweep': dict(results=bench),
      'sweep': dict(complete=True, configs=configs,
                    seconds_end_to_end=sweep_s),
      'analysis': dict(status='ok', configs=configs, partial_sweep=False,
                       seconds_end_to_end=analysis_s),
      'tests': dict(complete=True, passed=290, failed=failed, errors=0)}


@pytest.mark.parametrize('figures, expect', [
    ((1.5e6, 100.0, 50.0), dict(mf_required_met=True, mf_goal_met=False,
                                sweep_met=True, analysis_met=True,
                                tests_met=True, all_required_met=True)),
    ((2.5e6, 130.0, 50.0), dict(mf_required_met=True, mf_goal_met=True,
                                sweep_met=False, analysis_met=True,
                                all_required_met=False)),
    ((9e5, 90.0, 61.0), dict(mf_required_met=False, mf_goal_met=False,
                             sweep_met=True, analysis_met=False,
                             all_required_met=False)),
])
def test_targets_follow_the_measured_figures(figures, expect):
  rec = {}
  args = device_check.parse_args(['--out=unused.json'])
  device_check.stage_targets(rec, dict(args=args, stages=_measured(*figures)))
  assert rec['applies'] is True and 'note' not in rec
  assert rec['target_device'] == 'H100' and rec['ncf_required_met'] is None
  assert {k: rec[k] for k in expect} == expect
  small = {}
  device_check.stage_targets(small, dict(
      args=device_check.parse_args(['--small']),
      stages=_measured(*figures, configs=8)))
  assert small['applies'] is False
  assert not small['sweep_met'] and not small['analysis_met']


@pytest.mark.parametrize('figures, expect', [
    (dict(mf_rate=2.1e6, sweep_s=55.0, analysis_s=29.0, ncf_rate=2.2e6),
     dict(mf_required_met=True, mf_goal_met=False, ncf_required_met=True,
          sweep_met=True, analysis_met=True, tests_met=True,
          all_required_met=True)),
    # The H200 at 00e91fe: 862,619 and 1,123,994 config-steps/s, 84.0 s,
    # 86.9 s, 10 tests failed.
    (dict(mf_rate=862_619, sweep_s=84.0, analysis_s=86.9, ncf_rate=1_123_994,
          failed=10),
     dict(mf_required_met=False, ncf_required_met=False, sweep_met=False,
          analysis_met=False, tests_met=False, all_required_met=False)),
    (dict(mf_rate=4.1e6, sweep_s=50.0, analysis_s=20.0, ncf_rate=2.5e6,
          failed=1),
     dict(mf_goal_met=True, ncf_required_met=True, tests_met=False,
          all_required_met=False)),
])
def test_h200_targets_are_issue_19s(figures, expect):
  rec = {}
  device_check.stage_targets(rec, dict(
      args=device_check.parse_args(['--out=unused.json']),
      stages=_measured(kind='NVIDIA H200', **figures)))
  assert rec['applies'] is True and rec['target_device'] == 'H200'
  assert rec['thresholds'] == device_check.TARGETS['H200']
  assert rec['thresholds']['mf_required'] == 2e6
  assert set(rec['targets_by_device']) == {'H100', 'H200'}
  assert {k: rec[k] for k in expect} == expect


def test_read_outcomes_counts_a_run_cut_short(tmp_path):
  path = tmp_path / 'outcomes.jsonl'
  rows = [('tests/test_a.py::test_one', 'passed'),
          ('tests/test_a.py::test_two[x-1]', 'failed'),
          ('tests/test_b.py::test_three', 'skipped'),
          ('tests/test_b.py::test_four', 'error'),
          ('tests/test_b.py::test_five', 'xfailed')]
  path.write_text(''.join(json.dumps(dict(test=t, outcome=o)) + '\n'
                          for t, o in rows) + '{"test": "tests/te')  # killed
  r = device_check.read_outcomes(str(path))
  assert (r['passed'], r['failed'], r['skipped'], r['errors'],
          r['xfailed']) == (1, 1, 1, 1, 1)
  assert r['failed_ids'] == ['tests/test_a.py::test_two[x-1]',
                             'tests/test_b.py::test_four']
  assert r['summary'] is None and r['exitstatus'] is None
  with open(path, 'a') as f:
    f.write('\n{"exitstatus": 1}\n')
  done = device_check.read_outcomes(str(path))
  assert done['summary'] == '1 failed, 1 passed, 1 skipped, 1 xfailed, 1 error'
  assert done['exitstatus'] == 1


def test_suite_command_runs_the_h200_failures_first():
  args = device_check.parse_args(['--out=unused.json'])
  cmd = device_check.suite_command(args)
  assert cmd[1:] == (['-m', 'pytest', '-v', '-p', 'no:cacheprovider', '-p',
                      'experiments.device_check',
                      '--ignore=tests/test_notebooks.py', '-n', '8']
                     + list(device_check.GPU_FAILED_FIRST) + ['tests'])
  small = device_check.suite_command(device_check.parse_args(['--small']))
  assert '-n' not in small and small[-1] == 'tests/test_progress.py'


def test_tests_stage_stopped_by_the_budget_keeps_what_it_counted(
    monkeypatch, tmp_path):
  monkeypatch.setattr(device_check, 'MIN_TESTS_S', 1.0)
  args = device_check.parse_args([
      '--small', '--tests=tests/test_progress.py,tests/test_sweep_runner.py'])
  rec = {}
  t = time.perf_counter()
  with pytest.raises(device_check.BudgetExceeded, match='tests stopped'):
    device_check.stage_tests(rec, dict(args=args, deadline=t + 20,
                                       workdir=str(tmp_path)))
  assert time.perf_counter() - t < 35          # the process group was ended
  assert rec['complete'] is False and rec['summary'] is None
  assert rec['passed'] >= 1 and rec['failed'] == 0     # test_progress.py's
  assert os.path.dirname(rec['outcomes']) == str(tmp_path)   # its records
