"""A rerun of the main job never destroys work (issue 16, case 11).

Every stage's settings are checked against what is on disk before any stage
runs: a rerun that would retrain the recommender under an existing sweep, or
that changes the sweep, is refused at once with nothing written; with
``--config.restart_downstream=True`` the stale sweep and analysis are removed
and redone. One first run (one model, a tiny synthetic world, a 2-config
grid) is shared by the tests, each working on a copy of its folder.
"""

import json
import os
import shutil
import time

import pytest

from monosem_jax.experiments import run
from monosem_jax.experiments.configs import quickstart
from monosem_jax.experiments.configs import sweep as sweep_configs
from monosem_jax.errors import WorkdirError
from monosem_jax.recommenders import train
from monosem_jax.recommenders.artifact import RecommenderArtifact

QUIET = dict(log=lambda _: None)


def _config(rec_epochs: int = 1, lambda_pred=(0.0, 10.0)):
  cfg = quickstart.get_config('synthetic,mf')
  cfg.dataset.options.n_users = 300
  cfg.dataset.options.n_items = 120
  cfg.mf.recommender.train.epochs = rec_epochs
  s = cfg.mf.sweep
  s.epochs = 2
  s.spec.steps_per_epoch = 2
  s.spec.batch_users = s.spec.batch_items = 64
  s.grid = sweep_configs.grid_config(lambda_pred=lambda_pred, dict_size=(8,))
  return cfg


def _snapshot(folder) -> dict:
  """``{relative path: (bytes, mtime_ns)}`` of every file under ``folder``."""
  out = {}
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, folder)] = (f.read(),
                                              os.stat(path).st_mtime_ns)
  return out


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
  """A finished main job (MF only): 1 recommender epoch, 2 SAE configs."""
  workdir = tmp_path_factory.mktemp('main_job') / 'run'
  os.makedirs(workdir)
  run.run_main_job(_config(), str(workdir))
  return workdir


@pytest.fixture
def rerun_dir(first_run, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(first_run, workdir)
  # Only the content and the times of this copy matter from here on.
  return workdir


def _refused(cfg, workdir, match):
  before = _snapshot(workdir)
  with pytest.raises(WorkdirError, match=match) as e:
    run.run_main_job(cfg, str(workdir))
  assert '\n' not in str(e.value)
  after = _snapshot(workdir)
  assert after.keys() == before.keys()
  changed = [p for p in before if before[p] != after[p]]
  assert not changed, f'written before the refusal: {changed}'
  return str(e.value)


def test_rerun_with_more_recommender_epochs_is_refused_before_writing(
    rerun_dir):
  msg = _refused(_config(rec_epochs=2), rerun_dir,
                 'MF recommender stage: config.mf.recommender.train.epochs '
                 '1 -> 2 ')
  assert 'restart_downstream=True' in msg
  assert os.path.join(str(rerun_dir), 'mf', 'sweep') in msg


def test_rerun_with_another_grid_is_refused_before_the_recommender_stage(
    rerun_dir):
  msg = _refused(_config(lambda_pred=(0.0, 1.0)), rerun_dir,
                 r'MF sweep stage: .*lambda_pred .*\(0\.0, 10\.0\) -> '
                 r'\(0\.0, 1\.0\)')
  assert 'restart_downstream=True' in msg


def test_rerun_on_an_orphaned_sweep_is_refused(rerun_dir):
  # What the old main job left behind: frozen/ rewritten under a sweep.
  path = rerun_dir / 'mf' / 'sweep' / 'sweep.json'
  doc = json.loads(path.read_text())
  doc['provenance']['recommender']['fingerprint'] = '0' * 64
  path.write_text(json.dumps(doc))
  _refused(_config(), rerun_dir, 'MF sweep stage: .*was trained on the '
           'recommender')


def test_restart_downstream_redoes_the_sweep_and_analysis(rerun_dir):
  sweep_dir = rerun_dir / 'mf' / 'sweep'
  old = RecommenderArtifact.open(str(rerun_dir / 'mf' / 'recommender')).fingerprint
  (sweep_dir / 'stale.txt').write_text('left by an older version')
  cfg = _config(rec_epochs=2)
  cfg.restart_downstream = True
  t0 = time.time_ns()
  run.run_main_job(cfg, str(rerun_dir))
  new = RecommenderArtifact.open(str(rerun_dir / 'mf' / 'recommender')).fingerprint
  assert new != old
  recorded = json.loads((sweep_dir / 'sweep.json').read_text())
  assert recorded['provenance']['recommender']['fingerprint'] == new
  report = (sweep_dir / 'analysis' / 'report.md').read_text()
  assert new[:12] in report and old[:12] not in report
  # Nothing of the old sweep survives: every file was written by this run.
  files = _snapshot(sweep_dir)
  assert 'stale.txt' not in files and 'analysis/report.md' in files
  assert all(mtime >= t0 for _, mtime in files.values())
  assert not [n for n in os.listdir(rerun_dir / 'mf') if n.startswith('.')]


def test_finished_recommender_is_not_rewritten_on_rerun(rerun_dir):
  rec_dir = rerun_dir / 'mf' / 'recommender'
  before = _snapshot(rec_dir / 'frozen')
  with open(rec_dir / 'config.json') as f:
    config = json.load(f)
  train.run(config, str(rec_dir), **QUIET)
  assert _snapshot(rec_dir / 'frozen') == before
