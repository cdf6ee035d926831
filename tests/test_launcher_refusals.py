"""Launchers refuse what they would otherwise get silently wrong.

Each test reproduces one case a demanding user met: a sweep resumed on
another recommender, a config for another model, grid flags, empty axes,
non-positive epochs, unclear workdir failures, concurrent runs, file modes.
"""

import dataclasses
import inspect
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import types

import pandas as pd
import pytest
from absl import flags
from ml_collections import config_flags

from conftest import truncate_checkpoint_data

from experiments import device_check
from monosem_jax.experiments import launch
from monosem_jax.experiments.configs import analyze as analyze_configs
from monosem_jax.experiments.configs import recommender as rec_configs
from monosem_jax.experiments.configs import sweep as sweep_configs
from monosem_jax import files
from monosem_jax.data import DataError
from monosem_jax.analysis import pipeline
from monosem_jax.errors import ConfigError, MonosemError, WorkdirError
from monosem_jax.recommenders import train
from monosem_jax.recommenders.artifact import ArtifactError
from monosem_jax.sweep import checkpoint
from monosem_jax.sweep.runner import RESULTS_CSV, run_sweep
from monosem_jax.sweep.spec import FIELDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIET = dict(log=lambda _: None)


def _rec_config(model='mf', seed=0):
  cfg = rec_configs.get_config(f'synthetic,{model}')
  cfg.dataset.options.n_users = 300
  cfg.dataset.options.n_items = 120
  cfg.train.epochs = 1
  cfg.train.seed = seed
  return cfg


def _train(workdir, model='mf', seed=0):
  train.run(_rec_config(model, seed), str(workdir), **QUIET)
  return str(workdir)


def _sweep_config(rec_dir, arg='synthetic,mf', epochs=1, **grid):
  cfg = sweep_configs.get_config(arg)
  cfg.recommender_workdir = rec_dir
  cfg.epochs = epochs
  cfg.spec.update({k: 64 for k in ('batch_users', 'batch_items',
                                    'batch_pairs') if k in cfg.spec})
  cfg.spec.steps_per_epoch = 2
  cfg.grid = sweep_configs.grid_config(**(grid or {'lambda_pred': (0.0, 1.0)}))
  return cfg


@pytest.fixture(scope='module')
def recs(tmp_path_factory):
  root = tmp_path_factory.mktemp('recs')
  return {'a': _train(root / 'a'), 'b': _train(root / 'b', seed=1)}


def _env():
  env = dict(os.environ)
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  env['JAX_PLATFORMS'] = 'cpu'
  return env


def _launch(*args, cwd=ROOT):
  return subprocess.run([sys.executable, '-m', *args], cwd=cwd, env=_env(),
                        capture_output=True, text=True, timeout=600)


# 1. A sweep records which recommender it explains -------------------------

def test_resume_on_another_recommender_is_refused(recs, tmp_path):
  run_sweep(_sweep_config(recs['a']), str(tmp_path), **QUIET)
  prov = checkpoint.read_sweep_json(str(tmp_path), provenance=True)[2]
  assert prov['recommender']['kind'] == 'mf'
  assert prov['recommender']['dataset'] == 'synthetic'
  assert len(prov['recommender']['fingerprint']) == 64
  with pytest.raises(WorkdirError, match=(
      r'was trained on the recommender mf on synthetic at .*/a .*'
      r'now gives mf on synthetic at .*/b .*would mix')):
    run_sweep(_sweep_config(recs['b'], epochs=2), str(tmp_path), **QUIET)


def test_same_recommender_at_another_path_resumes(recs, tmp_path):
  run_sweep(_sweep_config(recs['a']), str(tmp_path / 'sweep'), **QUIET)
  moved = shutil.copytree(recs['a'], tmp_path / 'moved')
  logs = []
  run_sweep(_sweep_config(str(moved), epochs=2), str(tmp_path / 'sweep'),
            log=logs.append)
  assert any('resuming from the checkpoint of epoch 1' in l for l in logs)


# 2. DATASET,MODEL is checked against the recommender -----------------------

def test_config_for_another_kind_is_refused(recs, tmp_path):
  with pytest.raises(ConfigError, match=(
      r'sweep config is for NCF .*holds an MF recommender trained on '
      r'synthetic; use --config=experiments/configs/sweep.py:synthetic,mf')):
    run_sweep(_sweep_config(recs['a'], 'synthetic,ncf'), str(tmp_path), **QUIET)
  assert not os.path.exists(tmp_path / 'sweep.json')


def test_config_for_another_dataset_is_refused_unless_allowed(recs, tmp_path):
  cfg = _sweep_config(recs['a'], 'lastfm-2k,mf', lambda_pred=(1.0,),
                      dict_size=(16,))
  with pytest.raises(ConfigError, match=(r'sweep config is for lastfm-2k .*'
                                         r'allow_other_dataset=True')):
    run_sweep(cfg, str(tmp_path / 'refused'), **QUIET)
  cfg.allow_other_dataset = True
  table = run_sweep(cfg, str(tmp_path / 'allowed'), **QUIET).table
  assert table.lambda_emb.tolist() == [8.0]  # Last.FM MF defaults, as asked


# 3, 4. Grid axes from the command line; empty and None axes ----------------

def test_every_per_config_field_is_a_grid_axis():
  grid = sweep_configs.get_config('ml-1m,mf').grid
  assert sorted(grid.keys()) == sorted(FIELDS)


def test_grid_flags_from_the_command_line(recs, tmp_path):
  proc = _launch(
      'experiments.sweep', '--config=experiments/configs/sweep.py:synthetic,mf',
      f'--config.recommender_workdir={recs["a"]}', f'--workdir={tmp_path}',
      '--config.grid.seed=(0, 1, 2)', '--config.grid.lambda_pred=(0., 1.)',
      '--config.grid.dict_size=None', '--config.grid.rho=None',
      '--config.grid.k=None', '--config.epochs=1',
      '--config.spec.steps_per_epoch=2', '--config.spec.batch_users=64')
  assert proc.returncode == 0, proc.stderr[-3000:]
  table = pd.read_csv(tmp_path / RESULTS_CSV)
  assert table.seed.tolist() == [0, 1, 2, 0, 1, 2]
  assert table.lambda_pred.tolist() == [0.0] * 3 + [1.0] * 3
  assert (table.dict_size == 22).all()  # the default, not swept


def test_unknown_grid_field_is_one_line(tmp_path):
  proc = _launch(
      'experiments.sweep', '--config=experiments/configs/sweep.py:synthetic,mf',
      f'--workdir={tmp_path}', '--config.grid.sead=(0, 1)')
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      'error: --config.grid.sead: config.grid.sead is not a config field '
      '(did you mean seed?); valid here: dict_size, k, lambda_emb, lambda_kl, '
      'lambda_l1, lambda_pred, lr, rho, seed']


def test_empty_axis_is_refused_and_none_means_unswept(recs, tmp_path):
  cfg = _sweep_config(recs['a'], lambda_pred=(0.0, 1.0), dict_size=(8, 16))
  cfg.grid.dict_size = ()
  with pytest.raises(ConfigError, match=r'config\.grid\.dict_size=\(\): an '
                     'empty axis sweeps nothing'):
    run_sweep(cfg, str(tmp_path / 'empty'), **QUIET)
  cfg.grid.dict_size = None
  table = run_sweep(cfg, str(tmp_path / 'none'), **QUIET).table
  assert table.lambda_pred.tolist() == [0.0, 1.0]
  cfg.grid.dict_size = (None, 8)
  with pytest.raises(ConfigError, match='None cannot be one value'):
    run_sweep(cfg, str(tmp_path / 'mixed'), **QUIET)


def test_unknown_grid_or_spec_field_in_the_api(recs, tmp_path):
  cfg = _sweep_config(recs['a'])
  cfg.grid = {'lambda_pred': (0.0,), 'sead': (1,)}
  with pytest.raises(ConfigError, match=r'config\.grid\.sead: unknown field'):
    run_sweep(cfg, str(tmp_path), **QUIET)
  cfg = _sweep_config(recs['a'])
  cfg.spec.batch_user = 3
  with pytest.raises(ConfigError, match=r'config\.spec\.batch_user: unknown'):
    run_sweep(cfg, str(tmp_path), **QUIET)


# 5. Epochs -----------------------------------------------------------------

@pytest.mark.parametrize('epochs', [0, -3])
def test_non_positive_sweep_epochs_are_refused(recs, tmp_path, epochs):
  with pytest.raises(ConfigError, match=rf'config\.epochs={epochs}: must be'):
    run_sweep(_sweep_config(recs['a'], epochs=epochs), str(tmp_path), **QUIET)
  assert not os.listdir(tmp_path)


def test_sweep_with_fewer_epochs_than_its_checkpoint_is_refused(recs, tmp_path):
  run_sweep(_sweep_config(recs['a'], epochs=2), str(tmp_path), **QUIET)
  with pytest.raises(WorkdirError, match='already holds epoch 2 of this sweep'):
    run_sweep(_sweep_config(recs['a'], epochs=1), str(tmp_path), **QUIET)


def test_recommender_with_zero_epochs_is_refused(tmp_path):
  cfg = _rec_config()
  cfg.train.epochs = 0
  with pytest.raises(ConfigError, match=r'epochs=0: must be >= 1 \(0 would '
                     'freeze an untrained'):
    train.run(cfg, str(tmp_path / 'rec'), **QUIET)
  assert not os.path.exists(tmp_path / 'rec')


def test_recommender_with_fewer_epochs_than_its_checkpoint(tmp_path):
  cfg = _rec_config()
  cfg.train.epochs = 2
  train.run(cfg, str(tmp_path), **QUIET)
  cfg.train.epochs = 1
  with pytest.raises(ConfigError, match=r'train\.epochs=1, but .* already '
                     'holds epoch 2'):
    train.run(cfg, str(tmp_path), **QUIET)


# 7, 8. Workdirs ------------------------------------------------------------

def test_sweep_workdir_that_is_a_file(recs, tmp_path):
  target = tmp_path / 'file'
  target.write_text('x')
  with pytest.raises(WorkdirError, match=r'is a file, not a folder'):
    run_sweep(_sweep_config(recs['a']), str(target), **QUIET)
  with pytest.raises(WorkdirError, match=r'is a file, not a folder'):
    train.run(_rec_config(), str(target / 'sub'), **QUIET)


def test_recommender_workdir_without_a_finished_model(recs, tmp_path):
  unfinished = tmp_path / 'unfinished'
  (unfinished / 'checkpoints').mkdir(parents=True)
  with pytest.raises(ArtifactError, match=r'holds no finished recommender '
                     r'\(no frozen/\): run or finish its training'):
    run_sweep(_sweep_config(str(unfinished)), str(tmp_path / 's1'), **QUIET)
  sweep_dir = tmp_path / 's2'
  run_sweep(_sweep_config(recs['a']), str(sweep_dir), **QUIET)
  with pytest.raises(ArtifactError, match=r'is a sweep workdir, not a '
                     "recommender's"):
    run_sweep(_sweep_config(str(sweep_dir)), str(tmp_path / 's3'), **QUIET)


def test_rerun_after_a_failed_data_load(tmp_path):
  cfg = rec_configs.get_config('ml-1m,mf')
  cfg.dataset.data_dir = str(tmp_path / 'no-data-here')
  cfg.train.epochs = 1
  with pytest.raises(DataError):
    train.run(cfg, str(tmp_path / 'rec'), **QUIET)
  assert not os.path.exists(tmp_path / 'rec' / 'config.json')
  fixtures = os.path.join(ROOT, 'tests', 'fixtures', 'ml-1m')
  cfg.dataset.data_dir = fixtures
  cfg.dataset.options.paper_parity = False
  cfg.split.n_holdout = 1
  cfg.split.n_test_negatives = 1
  train.run(cfg, str(tmp_path / 'rec'), **QUIET)  # the corrected command
  assert os.path.isdir(tmp_path / 'rec' / 'frozen')


def test_never_trained_workdir_takes_new_settings(tmp_path):
  (tmp_path / 'config.json').write_text('{"dataset": {"name": "other"}}')
  logs = []
  train.run(_rec_config(), str(tmp_path), log=logs.append)
  assert any('replacing the settings of a run that never trained' in l
             for l in logs)
  cfg = _rec_config()
  cfg.model.dim = 8
  with pytest.raises(WorkdirError, match='holds a run of another '
                     'configuration'):
    train.run(cfg, str(tmp_path), **QUIET)


# 10. One process per workdir ------------------------------------------------

def test_busy_workdir_is_refused_naming_the_holder(recs, tmp_path):
  os.makedirs(tmp_path / 'rec')
  with files.WorkdirLock(str(tmp_path), 'test'):
    with pytest.raises(WorkdirError, match=rf'in use by process {os.getpid()}'):
      run_sweep(_sweep_config(recs['a']), str(tmp_path), **QUIET)
  with files.WorkdirLock(str(tmp_path / 'rec'), 'test'):
    with pytest.raises(WorkdirError, match=rf'in use by process {os.getpid()}'):
      train.run(_rec_config(), str(tmp_path / 'rec'), **QUIET)
  run_sweep(_sweep_config(recs['a']), str(tmp_path), **QUIET)  # released


def test_analysis_takes_the_sweep_lock_before_reading(recs, tmp_path):
  # A sweep that has just started: sweep.json written, no checkpoint yet.
  from monosem_jax.recommenders.artifact import RecommenderArtifact
  from monosem_jax.sweep.spec import SweepHparams, SweepSpec
  art = RecommenderArtifact.load(os.path.join(recs['a'], 'frozen'))
  spec = SweepSpec(kind='mf', dim=art.dim, max_dict_size=8)
  checkpoint.write_sweep_json(
      str(tmp_path), spec, SweepHparams.from_list([{}], spec),
      {'recommender': {'kind': 'mf', 'dataset': 'synthetic',
                       'fingerprint': art.fingerprint,
                       'workdir': recs['a']}, 'epochs': 2})
  with files.WorkdirLock(str(tmp_path), 'sweep'):
    proc = _launch('experiments.analyze', f'--workdir={tmp_path}')
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and (
      f'is in use by process {os.getpid()}' in lines[0]), proc.stderr[-2000:]


def test_a_truncated_checkpoint_is_one_line_from_the_launcher(recs, tmp_path):
  run_sweep(_sweep_config(recs['a']), str(tmp_path), **QUIET)
  truncate_checkpoint_data(tmp_path / checkpoint.CKPT_DIR)
  proc = _launch('experiments.analyze', f'--workdir={tmp_path}')
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()   # no page of orbax tracebacks
  assert len(lines) == 1 and lines[0].startswith('error: ') and (
      'checkpoints/1/state: cannot be read' in lines[0]), proc.stderr[-2000:]


def test_the_main_job_analyses_under_the_sweep_lock(tmp_path):
  # experiments.run's analysis stage, its other stages stubbed: is the
  # sweep folder locked while analyze_sweep runs?
  script = textwrap.dedent(f'''
      import os, sys, types
      sys.argv = ['run']
      from monosem_jax.experiments import run
      from monosem_jax.experiments.configs import quickstart
      from monosem_jax import files
      from monosem_jax.errors import WorkdirError
      out = {str(tmp_path)!r}

      def analyze_sweep(view, dataset, options, log):
        try:
          files.WorkdirLock(os.path.join(out, 'sweep'), 'probe').acquire()
          print('unlocked')
        except WorkdirError as e:
          print('locked' if 'in use by process' in str(e) else e)

      run.train.run = lambda *a, **k: None
      run.run_sweep = lambda cfg, d, log: os.makedirs(d, exist_ok=True)
      run.plot_sweep_workdir = lambda d: None
      run.workdirs.open_sweep = lambda d, **k: None
      run.pipeline.analyze_sweep = analyze_sweep
      run._run_model(quickstart.get_config(''), 'mf',
                     types.SimpleNamespace(name='synthetic'), out)
  ''')
  proc = subprocess.run([sys.executable, '-c', script], cwd=ROOT, env=_env(),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split() == ['locked']


def test_a_read_only_folder_is_refused_in_one_line(tmp_path, monkeypatch):
  real_open = os.open

  def read_only(path, *args, **kwargs):
    if os.fspath(path).endswith(files.LOCK_FILE):
      raise PermissionError(13, 'Permission denied', path)
    return real_open(path, *args, **kwargs)

  with pytest.raises(WorkdirError, match=r'missing: no such folder'):
    files.WorkdirLock(str(tmp_path / 'missing'), 'sweep').acquire()
  monkeypatch.setattr(files.os, 'open', read_only)   # (root ignores chmod)
  with pytest.raises(WorkdirError, match=rf'{tmp_path}: cannot create its '
                     r'lock file .*\.lock: Permission denied; the analysis '
                     'needs a folder it can write'):
    files.WorkdirLock(str(tmp_path), 'analysis').acquire()


def test_locked_workdir_creates_holds_and_reports_a_taken_over_lock(
    tmp_path):
  run = tmp_path / 'runs' / 'x'
  run.mkdir(parents=True)
  (run / files.LOCK_FILE).write_text('4194399 sweep\n')   # a holder gone
  logs = []
  with files.locked_workdir(str(run), 'sweep', logs.append) as path:
    assert path == str(run)
    with pytest.raises(WorkdirError, match=rf'in use by process {os.getpid()}'):
      files.WorkdirLock(path, 'analysis').acquire()
  assert logs == [f'{run}: taking over the lock of process 4194399, which '
                  'is gone']
  with files.locked_workdir(str(tmp_path / 'new' / 'y'), 'sweep',
                            logs.append) as path:
    assert os.path.isdir(path) and len(logs) == 1
  (tmp_path / 'f').write_text('')
  with pytest.raises(WorkdirError, match='is a file, not a folder'):
    with files.locked_workdir(str(tmp_path / 'f' / 'z'), 'sweep', print):
      pass


def test_stale_lock_of_a_killed_process_is_taken_over(recs, tmp_path):
  holder = subprocess.Popen(
      [sys.executable, '-c', textwrap.dedent(f'''
          import sys, time
          from monosem_jax import files
          files.WorkdirLock({str(tmp_path)!r}, 'sweep').acquire()
          print('locked', flush=True)
          time.sleep(600)
      ''')], env=_env(), stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(WorkdirError, match=rf'in use by process {holder.pid}'):
      run_sweep(_sweep_config(recs['a']), str(tmp_path), **QUIET)
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  logs = []
  run_sweep(_sweep_config(recs['a']), str(tmp_path), log=logs.append)
  assert any(f'taking over the lock of process {holder.pid}' in l
             for l in logs)


# 12. File modes --------------------------------------------------------------

def test_outputs_are_world_readable(recs, tmp_path):
  old = os.umask(0o022)
  try:
    run_sweep(_sweep_config(recs['a']), str(tmp_path), **QUIET)
  finally:
    os.umask(old)
  for name in (checkpoint.SWEEP_JSON, RESULTS_CSV):
    assert oct(os.stat(tmp_path / name).st_mode & 0o777) == oct(0o644), name


def test_every_refusal_is_a_monosem_error():
  for cls in (DataError, ConfigError, WorkdirError, ArtifactError):
    assert issubclass(cls, MonosemError)


def test_refusal_from_the_launcher_is_one_line(tmp_path):
  proc = _launch(
      'experiments.train_recommender',
      '--config=experiments/configs/recommender.py:synthetic,mf',
      f'--workdir={tmp_path / "rec"}', '--config.train.epochs=0')
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and \
      'epochs=0' in lines[0], proc.stderr


def test_unknown_field_of_a_default_config_is_one_line(tmp_path):
  # Without --config, ml_collections applies overrides while the flag is
  # defined; the refusal must still be one line.
  proc = _launch('experiments.run', f'--workdir={tmp_path / "q"}',
                 '--config.mf.sweep.grid.sead=(1,)')
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      'error: --config.mf.sweep.grid.sead: config.mf.sweep.grid.sead is not a '
      'config field (did you mean seed?); valid here: dict_size, k, '
      'lambda_emb, lambda_kl, lambda_l1, lambda_pred, lr, rho, seed']
  assert not os.path.exists(tmp_path / 'q')


def test_default_config_files_are_found_from_any_folder(tmp_path):
  # Launched outside the repository, the default config file still loads
  # (and takes overrides): the refusal is about the value, not the file.
  proc = _launch('experiments.run', f'--workdir={tmp_path / "q"}',
                 "--config.models=('xx',)", cwd=tmp_path)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      "error: config.models=('xx',): choose from mf, ncf"], proc.stderr


# 13. Argument checks (issue 16): one line naming the field and its range --

def _fake_view(n_items=120, configs=4):
  """Enough of a SweepView for the settings checks, which come first."""
  return types.SimpleNamespace(artifact=types.SimpleNamespace(n_items=n_items),
                               num_configs=configs, workdir='unused')


@pytest.mark.parametrize('setting,needle', [
    (dict(k=0), r'k=0: must be an integer in \[1, 120\]'),  # ZeroDivisionError
    (dict(k=121), r'k=121: must be an integer in \[1, 120\]'),
    (dict(k=2.5), r'k=2.5: must be an integer'),
    (dict(p=1.5), r'p=1.5: the RBO persistence must lie in the open interval '
     r'\(0, 1\)'),
    (dict(p=1.0), r'p=1.0: .*\(0, 1\)'),
    (dict(ks=(10, 0)), r'ks\[1\]=0: must be an integer in \[1, 120\]'),
    (dict(max_users=0), r'max_users=0: must be an integer >= 1 .*or None'),
    (dict(pop_top=0), r'pop_top=0: must be an integer >= 1'),
    (dict(era_top=-1), r'era_top=-1: must be an integer >= 1'),
    (dict(hierarchy_top=0), r'hierarchy_top=0: must be an integer >= 1'),
])
def test_analysis_settings_are_refused_before_any_work(setting, needle):
  with pytest.raises(ConfigError, match=needle):
    pipeline.analyze_sweep(_fake_view(), None,
                           pipeline.AnalysisOptions(**setting))


def test_the_launchers_analyse_with_options_built_in_one_place():
  # Issue 18: analyze_sweep takes one frozen AnalysisOptions (not 16
  # keywords), which the analysis config builds for every launcher.
  options = analyze_configs.analysis_options(analyze_configs.get_config(),
                                             'lastfm-2k')
  assert isinstance(options, pipeline.AnalysisOptions)
  assert options == device_check.analysis_options('lastfm-2k')
  assert options.pop_top == 50 and 'metal (any)' in options.concept_sets
  assert list(inspect.signature(pipeline.analyze_sweep).parameters) == [
      'view', 'dataset', 'options', 'log', 'on_progress']
  small = pipeline.AnalysisOptions().resolved(15)
  assert (small.k, small.ks) == (15, (10,))   # defaults fit the catalogue
  given = pipeline.AnalysisOptions(k=40, ks=[10, 99]).resolved(15)
  assert (given.k, given.ks) == (40, (10, 99))   # checked later, never cut
  with pytest.raises(dataclasses.FrozenInstanceError):
    options.k = 3


def test_analysis_config_keeps_an_explicit_zero_and_checks_use_cases():
  cfg = analyze_configs.get_config()
  cfg.pop_top = 0                 # was silently replaced by the default
  assert analyze_configs.analysis_options(cfg, 'synthetic').pop_top == 0
  cfg.pop_top = None
  cfg.use_cases = ('suppress Horror',)
  with pytest.raises(ConfigError, match=r"config.use_cases\[0\]='suppress "
                     r"Horror': each use case is a dict, e.g."):
    analyze_configs.analysis_options(cfg, 'synthetic')


def test_dicts_on_the_command_line_are_python_literals():
  """``--config.concept_sets=...`` was an UnsupportedOperationError
  traceback; ``dict(...)`` use cases were read as one string."""
  def parse(*args):
    argv = ['prog', '--config=' + os.path.join(
        ROOT, 'monosem_jax/experiments/configs/analyze.py'), *args]
    fv = flags.FlagValues()
    config = config_flags.DEFINE_config_file(
        'config', None, flag_values=fv, lock_config=False, sys_argv=argv)
    fv(argv)
    return config.value

  options = analyze_configs.analysis_options(parse(
      "--config.concept_sets=dict(loud=('rock', 'metal'))",
      "--config.use_cases=(dict(kind='suppress', concept='action', "
      "levels=(None, -1.0)), {'kind': 'nudge', 'concept': 'romance'})"),
                                           'synthetic')
  assert options.concept_sets == {'loud': ('rock', 'metal')}
  assert [(c.kind, c.concept) for c in options.use_cases] == [
      ('suppress', 'action'), ('nudge', 'romance')]
  assert options.use_cases[0].levels == (None, -1.0)
  with pytest.raises(flags.IllegalFlagValueError,
                     match=r"expected a dict as a Python literal, e.g. "
                     r"\{'name': \('tag', 'tag2'\)\} or dict\(name="):
    parse('--config.concept_sets=metal')


def test_bad_command_lines_are_one_line(tmp_path):
  """A missing --workdir and an unparsable value were absl tracebacks; a
  field given twice was concatenated (tuples) or silently overridden. (The
  launchers share monosem_jax/experiments/launch.py; train_recommender starts fastest.)"""
  cases = [
      (['experiments.analyze'],
       'error: --workdir is required: A sweep workdir'),
      (['experiments.train_recommender'],
       'error: --workdir is required: Output folder'),
      (['experiments.train_recommender', f'--workdir={tmp_path / "r"}',
        '--config.train.epochs=1', '--config.train.epochs=2'],
       'error: --config.train.epochs is given twice; give each config field '
       "once (several values as one tuple, e.g. --config.train.epochs='(0.1, "
       "0.2)')"),
      # a value absl cannot parse, met while the default config is loaded
      (['experiments.train_recommender', f'--workdir={tmp_path / "r"}',
        '--config.train.epochs=abc'],
       "error: flag --config.train.epochs=abc: invalid literal for int() with "
       "base 10: 'abc'"),
  ]
  for args, line in cases:
    proc = _launch(*args)
    assert proc.returncode == 1, (args, proc.stderr)
    assert proc.stderr.strip().splitlines() == [line], (args, proc.stderr)
  assert not os.path.exists(tmp_path / 'r')


def test_a_repeated_config_field_is_refused_for_every_launcher():
  # parse_flags and define_config_file share this check
  with pytest.raises(SystemExit, match=r'--config.grid.rho is given twice'):
    launch._exit_if_repeated(['prog', '--config.grid.rho=(0.1,)',
                              '--workdir=x', '--config.grid.rho', '(0.2,)'])
  launch._exit_if_repeated(['prog', '--config.grid.rho=(0.1,)',
                            '--config.grid.seed=(0.2,)', '--',
                            '--config.grid.rho=1'])
