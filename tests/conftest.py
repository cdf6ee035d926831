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
