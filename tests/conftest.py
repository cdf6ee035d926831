"""Shared test helpers: fixture paths, the real-data switch, a small sweep."""

import os

import pytest

from experiments.configs import recommender as rec_configs
from experiments.configs import sweep as sweep_configs
from monosem_jax.recommenders import train
from monosem_jax.sweep.runner import run_sweep

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


def fixture_dir(name: str) -> str:
  return os.path.join(FIXTURES, name)


@pytest.fixture
def real_data_dir():
  """``$MONOSEM_DATA_DIR``, or skip with the reason."""
  path = os.environ.get('MONOSEM_DATA_DIR')
  if not path:
    pytest.skip('MONOSEM_DATA_DIR is not set: real MovieLens/Last.FM tests '
                'need it (CI sets it to ../shared/data)')
  if not os.path.isdir(path):
    pytest.fail(f'MONOSEM_DATA_DIR={path!r} is not a folder')
  return path


def small_sweep_config(rec_dir: str, epochs: int = 2):
  """The config of :func:`sweep_dir`'s sweep (``epochs`` of them)."""
  s = sweep_configs.get_config('synthetic,mf')
  s.recommender_workdir = str(rec_dir)
  s.epochs = epochs
  s.spec.batch_users = s.spec.batch_items = 64
  s.spec.steps_per_epoch = 3
  s.grid = sweep_configs.grid_config(lambda_pred=(0.0, 10.0), dict_size=(8, 16))
  return s


@pytest.fixture(scope='module')
def sweep_dir(tmp_path_factory):
  """A finished 4-config MF sweep (lambda_pred x dict_size) on a small
  synthetic world: ``ROOT/rec`` (recommender) and ``ROOT/sweep``."""
  root = tmp_path_factory.mktemp('analysis')
  quiet = dict(log=lambda _: None)
  cfg = rec_configs.get_config('synthetic,mf')
  cfg.dataset.options.n_users = 300
  cfg.dataset.options.n_items = 120
  cfg.train.epochs = 2
  train.run(cfg, str(root / 'rec'), **quiet)
  run_sweep(small_sweep_config(root / 'rec'), str(root / 'sweep'), **quiet)
  return root


#: RecBole atomic files of an invented movie world (make_fixtures.py).
ATOMIC_FIXTURE = os.path.join(FIXTURES, 'atomic', 'tinymovies')


@pytest.fixture(scope='session')
def atomic_main_job(tmp_path_factory):
  """The main job (experiments.run.run_main_job, in process) on the atomic
  fixture: MF only, 1 epoch, a 2-config grid. ``(workdir, results)``;
  ``workdir/mf/recommender`` is a finished recommender."""
  from experiments import run  # pylint: disable=import-outside-toplevel
  from experiments.configs import quickstart  # pylint: disable=import-outside-toplevel
  workdir = tmp_path_factory.mktemp('atomic_job')
  cfg = quickstart.get_config('atomic,mf')
  cfg.dataset.data_dir = ATOMIC_FIXTURE
  cfg.dataset.options.concept_field = 'class'
  cfg.mf.recommender.train.epochs = 1
  cfg.mf.sweep.epochs = 1
  cfg.mf.sweep.spec.batch_users = cfg.mf.sweep.spec.batch_items = 16
  cfg.mf.sweep.grid = sweep_configs.grid_config(lambda_pred=(0.0, 1.0),
                                                dict_size=(8,))
  return workdir, run.run_main_job(cfg, str(workdir))
