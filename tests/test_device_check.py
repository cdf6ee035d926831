"""The prepared GPU device check (experiments/device_check.py, issue 11 item
1): its ``--small`` run end to end on a CPU, its refusals, its time budget and
its targets computed from the measured figures."""

import json
import os
import subprocess
import sys
import time

import pytest

from experiments import device_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ('environment', 'bench_sweep', 'recommender', 'sweep', 'analysis',
          'targets')


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

  bench = {r['model']: r for r in stages['bench_sweep']['results']}
  assert set(bench) == {'mf', 'ncf'}
  for res in bench.values():
    assert [row['C'] for row in res['vmapped']] == [1, 8]
    assert res['sequential']['config_steps_per_s'] > 0
    for row in res['vmapped']:
      assert row['config_steps_per_s'] > 0
      assert row['achieved_flops_per_s'] > 0
      assert row['achieved_bytes_per_s'] > 0
      assert row['roofline']['H100']['config_steps_per_s'] > 0
      assert row['roofline']['H100']['bound'] in ('memory', 'compute')
      # A CPU is no known device: fractions of its peaks are unknown.
      assert row['fraction_of_peak_flops'] is None
      assert row['fraction_of_peak_bandwidth'] is None

  rec = stages['recommender']
  assert rec['epochs_trained'] == rec['epochs_asked'] and not rec['truncated']
  assert 0 < rec['test_metrics']['ndcg@10'] <= 1

  sweep = stages['sweep']
  assert sweep['complete'] and sweep['configs'] == sweep['configs_asked'] == 8
  assert sweep['ok'] + sweep['diverged'] == sweep['configs']
  assert sweep['epochs'] == 2 and sweep['config_steps_per_s'] > 0

  analysis = stages['analysis']
  assert analysis['configs'] == 8 and not analysis['partial_sweep']
  assert os.path.isfile(analysis['report'])
  assert os.path.basename(analysis['report']) == 'report.md'

  t = stages['targets']
  assert t['applies'] is False
  for key in ('mf_required_met', 'mf_goal_met', 'sweep_met', 'analysis_met',
              'all_required_met'):
    assert t[key] is False, key      # 8 configs, no C = 1024 row
  assert t['sweep_seconds'] == sweep['seconds_end_to_end']
  assert t['analysis_seconds'] == analysis['seconds_end_to_end']


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


def test_stage_log_stops_at_a_progress_line_past_the_deadline():
  log = device_check.StageLog('sweep', deadline=time.perf_counter() - 1)
  log('sweep: 1024 configs')                       # not a progress line
  log('epoch  18/18  loss median 1.0')             # the last one: finish
  with pytest.raises(device_check.BudgetExceeded, match='3/18'):
    log('epoch   3/18  loss median 1.0')
  with pytest.raises(device_check.BudgetExceeded, match='102/1024'):
    log('  neurons: 102/1024 configs  9.0s  ETA 80s')
  later = device_check.StageLog('sweep', deadline=time.perf_counter() + 60)
  later('epoch   3/18  loss median 1.0')
  assert later.lines == ['epoch   3/18  loss median 1.0']


def _measured(mf_rate, sweep_s, analysis_s, configs=1024):
  row = dict(C=1024, config_steps_per_s=mf_rate)
  return {
      'environment': dict(backend='gpu', device_kind='NVIDIA H100 80GB HBM3'),
      'bench_sweep': dict(results=[dict(model='mf', vmapped=[row])]),
      'sweep': dict(complete=True, configs=configs,
                    seconds_end_to_end=sweep_s),
      'analysis': dict(status='ok', configs=configs, partial_sweep=False,
                       seconds_end_to_end=analysis_s)}


@pytest.mark.parametrize('figures, expect', [
    ((1.5e6, 100.0, 50.0), dict(mf_required_met=True, mf_goal_met=False,
                                sweep_met=True, analysis_met=True,
                                all_required_met=True)),
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
  assert {k: rec[k] for k in expect} == expect
  small = {}
  device_check.stage_targets(small, dict(
      args=device_check.parse_args(['--small']),
      stages=_measured(*figures, configs=8)))
  assert small['applies'] is False
  assert not small['sweep_met'] and not small['analysis_met']
