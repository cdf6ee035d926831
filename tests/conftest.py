"""Shared test helpers: fixture paths, the real-data switch, a small sweep,
the check that every matrix product of a call is exact."""

import contextlib
import os
import pathlib
import re

import jax
import pytest

from monosem_jax.experiments.configs import recommender as rec_configs
from monosem_jax.experiments.configs import sweep as sweep_configs
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
  from monosem_jax.experiments import run  # pylint: disable=import-outside-toplevel
  from monosem_jax.experiments.configs import quickstart  # pylint: disable=import-outside-toplevel
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


_DOT = re.compile(r'stablehlo\.dot(_general)?\b')


def truncate_checkpoint_data(step_dir) -> None:
  """Cuts every array-data file of one orbax checkpoint step (its ``d/``
  folders) to a third: a checkpoint truncated on disk."""
  for root, _, names in os.walk(step_dir):
    if os.path.basename(root) == 'd':
      for name in names:
        path = os.path.join(root, name)
        os.truncate(path, os.path.getsize(path) // 3)


def matrix_products(text: str) -> list[str]:
  """The ``dot_general`` ops of a StableHLO module (pretty or generic)."""
  return [line.strip() for line in text.splitlines() if _DOT.search(line)]


def not_exact(products: list[str]) -> list[str]:
  """The products without ``HIGHEST`` on both operands (pretty form
  ``precision = [HIGHEST, HIGHEST]``, generic ``precision_config =
  [#stablehlo<precision HIGHEST>, ...]``) or with 16-bit operands."""
  return [p for p in products
          if p.count('HIGHEST') != 2 or re.search(r'x(bf|f)16>', p)]


@contextlib.contextmanager
def _lowered(folder: pathlib.Path):
  """Dumps the StableHLO of every program compiled inside into ``folder``
  (after ``jax.clear_caches()``, so that every program is lowered again)."""
  jax.clear_caches()
  old = jax.config.values['jax_dump_ir_to']
  jax.config.update('jax_dump_ir_to', str(folder))
  try:
    yield
  finally:
    jax.config.update('jax_dump_ir_to', old)


def assert_exact_products(run, folder: pathlib.Path) -> None:
  """Runs ``run()`` under a caller's ``jax.default_matmul_precision(
  'tensorfloat32')`` and asserts that every matrix product of every program
  it compiled (jitted or eager) is exact float32 (docs/method.md#precision):
  on a CPU, where every precision computes in float32, the lowered programs
  are where a TF32 product shows. ``folder`` receives the programs."""
  with _lowered(folder), jax.default_matmul_precision('tensorfloat32'):
    run()
  products = [(path.name, p) for path in sorted(folder.glob('*.mlir'))
              for p in matrix_products(path.read_text())]
  assert products, 'no matrix product was lowered (nothing checked)'
  bad = [f'{name}: {p[:240]}' for name, p in products if not_exact([p])]
  assert not bad, (f'{len(bad)} of {len(products)} products are not exact '
                   'float32:\n' + '\n'.join(bad[:12]))
