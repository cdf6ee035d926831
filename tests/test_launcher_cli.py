"""Commands and configs where users expect them (issue 17, part 4).

Every launcher is a module of the package, ``monosem_jax.experiments.X``,
and a console script (pyproject.toml ``[project.scripts]``); the repository's
``experiments/X.py`` is a shim for ``python -m experiments.X``. ``--config``
takes a shipped config by its bare name or its path (``experiments/configs/``
or ``monosem_jax/experiments/configs/``) from any working directory;
``--help`` lists the config's fields with their defaults and one line each
(monosem_jax/experiments/launch.py). A wheel built from the repository
installs ``monosem_jax`` alone, with its scripts, which run from another
folder. Subprocesses cost seconds each: there are four, and three more with
the wheel (built, installed, run twice).
"""

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from monosem_jax.experiments import launch
from monosem_jax.experiments.configs import (analyze, quickstart, recommender,
                                 sparse_faithful, sweep)
from monosem_jax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Console script -> the launcher module whose ``run`` it calls.
SCRIPTS = {
    'monosem-run': 'monosem_jax.experiments.run',
    'monosem-train': 'monosem_jax.experiments.train_recommender',
    'monosem-sweep': 'monosem_jax.experiments.sweep',
    'monosem-analyze': 'monosem_jax.experiments.analyze',
    'monosem-export-sae': 'monosem_jax.experiments.export_sae',
    'monosem-import-recommender': 'monosem_jax.experiments.import_recommender',
    'monosem-fetch': 'monosem_jax.experiments.fetch',
}
#: Launchers without a console script, in the repository's experiments/
#: only: measurements for developers, run from a checkout
#: (docs/architecture.md#commands).
NO_SCRIPT = {'bench_checkpoint', 'bench_data', 'bench_precision',
             'bench_recommenders', 'bench_sweep', 'device_check'}


def _env(pythonpath=ROOT):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env['PYTHONPATH'] = pythonpath + os.pathsep + env.get('PYTHONPATH', '')
  return env


def _run(args, cwd, pythonpath=ROOT):
  return subprocess.run(args, cwd=cwd, env=_env(pythonpath),
                        capture_output=True, text=True, timeout=600)


def _launchers(folder: str) -> dict[str, str]:
  """Module name -> source of each launcher (a ``__main__`` block) in
  ``folder``."""
  out = {}
  for name in os.listdir(folder):
    if name.endswith('.py'):
      with open(os.path.join(folder, name)) as f:
        text = f.read()
      if re.search(r"^if __name__ == '__main__':", text, re.M):
        out[name[:-3]] = text
  return out


def test_every_launcher_has_a_console_script_and_a_shim():
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    scripts = tomllib.load(f)['project']['scripts']
  assert scripts == {name: f'{module}:run' for name, module in SCRIPTS.items()}
  names = {m.rsplit('.', 1)[1] for m in SCRIPTS.values()}
  assert set(_launchers(os.path.join(ROOT, 'monosem_jax', 'experiments'))) \
      == names
  shims = _launchers(os.path.join(ROOT, 'experiments'))
  assert set(shims) - NO_SCRIPT == names
  for name in names:   # python -m experiments.X runs the package's launcher
    assert (f'from monosem_jax.experiments.{name} import run\n'
            in shims[name]), name


_IMPORT_EACH = r'''
import importlib, json, sys
from absl import flags
out = {}
for target in sys.argv[1:]:
  module_name, attr = target.split(':')
  before = set(flags.FLAGS)
  module = importlib.import_module(module_name)
  out[target] = dict(callable=callable(getattr(module, attr, None)),
                     help=flags.FLAGS.module_help(module_name))
  for name in set(flags.FLAGS) - before:   # the next launcher defines them
    if name in flags.FLAGS:
      delattr(flags.FLAGS, name)
print(json.dumps(out))
'''


def test_console_script_targets_are_callables_whose_help_lists_the_config(
    tmp_path):
  """Each target imported (one process; each launcher's flags removed
  before the next defines its own) is callable, and the help of its
  module lists ``--config``'s fields with their defaults and a line each."""
  targets = [f'{m}:run' for m in SCRIPTS.values()]
  proc = _run([sys.executable, '-c', _IMPORT_EACH, *targets], tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  found = json.loads(proc.stdout)
  assert [t for t in targets if not found[t]['callable']] == []
  expected = {  # a field of each config, with its default and its line
      'monosem_jax.experiments.run:run': "- config.models = ('mf', 'ncf'): the models",
      'monosem_jax.experiments.train_recommender:run':
          '- config.train.epochs = 10: training epochs',
      'monosem_jax.experiments.sweep:run': '- config.epochs = 18: SAE training epochs',
      'monosem_jax.experiments.analyze:run':
          '- config.chosen = -1: the config the report details',
      'monosem_jax.experiments.import_recommender:run':
          '- config.split.seed = 42: seed of the split',
  }
  for target, line in expected.items():
    text = ' '.join(found[target]['help'].split())   # unwrapped
    assert '--config:' in text and line in text, (target, text[:600])


@pytest.mark.parametrize('module', [quickstart, recommender, sweep, analyze,
                                    sparse_faithful],
                         ids=lambda m: m.__name__.rsplit('.', 1)[1])
def test_every_config_field_has_a_help_line(module):
  """Each field of each config (every dataset and model) has its line in
  the module's FIELD_HELP, so ``--help`` never lists one bare."""
  args = {quickstart: ['', 'ml1m', *quickstart.DATASETS],
          recommender: [f'{d},{m}' for d in recommender.DATASETS
                        for m in recommender.MODELS],
          sweep: [f'{d},{m}' for d in sweep.DATASETS for m in sweep.MODELS],
          analyze: [None], sparse_faithful: ['ml-1m']}[module]
  missing = set()
  for arg in args:
    config = module.get_config() if arg is None else module.get_config(arg)
    lines = launch.config_fields_help(config, module.FIELD_HELP)
    assert lines
    missing |= {line.split(' =')[0] for line in lines
                if not re.match(r'- config\.\S+ = .+: \S', line)}
  assert not missing, sorted(missing)


def test_config_paths_resolve_from_any_folder(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  shipped = os.path.join(ROOT, 'monosem_jax', 'experiments', 'configs',
                         'recommender.py')
  for path in ('recommender.py', 'experiments/configs/recommender.py',
               './experiments/configs/recommender.py',
               'monosem_jax/experiments/configs/recommender.py'):
    assert os.path.samefile(launch.resolve_config_path(path), shipped), path
  # A user's own file wins, by its name or its path.
  (tmp_path / 'recommender.py').write_text('def get_config(): return {}\n')
  assert launch.resolve_config_path('recommender.py') == 'recommender.py'
  (tmp_path / 'experiments' / 'configs').mkdir(parents=True)
  own = tmp_path / 'experiments' / 'configs' / 'mine.py'
  own.write_text('def get_config(): return {}\n')
  assert launch.resolve_config_path(str(own)) == str(own)
  assert launch.resolve_config_path('experiments/configs/mine.py') == \
      'experiments/configs/mine.py'
  with pytest.raises(ConfigError, match='not found'):
    launch.resolve_config_path('experiments/configs/')
  with pytest.raises(ConfigError, match=r"config file 'nope\.py' not found: "
                     r'.*\(analyze\.py, quickstart\.py, recommender\.py, '
                     r'sparse_faithful\.py, sweep\.py in '):
    launch.resolve_config_path('nope.py')


def test_repository_config_path_from_another_folder(tmp_path):
  """The README's ``--config=experiments/configs/...`` from a folder that
  has no ``experiments/``: the config is read and its override applied
  (the sweep then refuses the missing recommender, in one line); it used to
  be a raw OSError."""
  missing = tmp_path / 'no_recommender'
  proc = _run([sys.executable, '-m', 'experiments.sweep',
               '--config=experiments/configs/sweep.py:synthetic,mf',
               f'--config.recommender_workdir={missing}',
               f'--workdir={tmp_path / "sweep"}'], tmp_path)
  assert proc.returncode == 1
  assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f'error: config.recommender_workdir={missing}: no such folder')


def test_help_of_python_m_lists_the_config_fields(tmp_path):
  proc = _run([sys.executable, '-m', 'experiments.sweep', '--help'], tmp_path)
  text = ' '.join(proc.stdout.split())
  assert 'Trains a grid of SAEs' in text        # the launcher's docstring
  assert '--config: Sweep config file' in text and '--workdir:' in text
  assert '- config.epochs = 18: SAE training epochs' in text
  assert ('- config.grid.lambda_pred = (0.0, 1.0, 2.0, 5.0, 10.0): a tuple of '
          'lambda_pred values to sweep') in text


def test_console_entry_help_with_a_bare_config_name(tmp_path):
  """What the console script runs (``from monosem_jax.experiments.X import run;
  sys.exit(run())``, its own main module without docstring or flags): its
  ``--help`` shows the launcher's docstring and flags, and the fields of
  the config named by its bare name from another folder."""
  code = ('import sys\n'
          'from monosem_jax.experiments.train_recommender import run\n'
          'sys.exit(run())\n')
  proc = _run([sys.executable, '-c', code,
               '--config=recommender.py:synthetic,mf', '--help'], tmp_path)
  text = ' '.join(proc.stdout.split())
  assert 'Trains a recommender (MF or NCF)' in text, proc.stderr[-2000:]
  assert '--workdir: Output folder' in text
  # synthetic,mf's own defaults (ml-1m,mf, the default, trains 10 epochs)
  assert '- config.train.epochs = 30: training epochs' in text
  assert '- config.dataset.options.n_users = 1000: synthetic world' in text


def _setuptools_builds_here() -> bool:
  """Whether the installed setuptools can build pyproject.toml's project
  (its ``build-system.requires``) without an isolated build environment,
  which needs a package index."""
  try:
    return int(importlib.metadata.version('setuptools').split('.')[0]) >= 77
  except importlib.metadata.PackageNotFoundError:
    return False


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
  """The folder into which pip installed a wheel built from the repository
  (a copy of its project files, so that the checkout gets no build/), with
  its console scripts in ``bin/``; on ``PYTHONPATH`` it is the installed
  distribution. Skipped where no setuptools can be had to build it (a
  machine without the package index)."""
  base = tmp_path_factory.mktemp('wheel')
  src = base / 'src'
  src.mkdir()
  for name in os.listdir(ROOT):
    path = os.path.join(ROOT, name)
    if name in ('monosem_jax', 'experiments'):
      shutil.copytree(path, src / name, ignore=shutil.ignore_patterns(
          '__pycache__', '*.pyc'))
    elif name in ('pyproject.toml', 'README.md') or name.startswith(
        'LICEN'):
      shutil.copy(path, src / name)
  build = [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '-q',
           '-w', str(base / 'dist'), str(src)]
  if _setuptools_builds_here():
    build.insert(4, '--no-build-isolation')
  proc = _run(build, base)
  if proc.returncode and 'setuptools' in proc.stderr and (
      'No matching distribution' in proc.stderr):
    pytest.skip('no setuptools to build the wheel with: ' +
                proc.stderr.strip().splitlines()[-1])
  assert proc.returncode == 0, proc.stderr[-3000:]
  (wheel,) = (base / 'dist').glob('monosem_jax-*.whl')
  target = base / 'site'
  proc = _run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q',
               '--no-index', '--no-compile', '--target', str(target),
               str(wheel)], base)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return target


def test_the_wheel_installs_the_launchers_inside_the_package(installed,
                                                              tmp_path):
  """No top-level ``experiments`` (a generic name another distribution
  could overwrite, docs/architecture.md#where-the-launchers-live); the
  launchers and configs are package files, and a console script run from
  another folder finds a config by the repository path the docs use."""
  top = {p.name for p in installed.iterdir()
         if not p.name.endswith(('.dist-info', '.data'))}
  assert top == {'monosem_jax', 'bin'}, top
  assert (installed / 'monosem_jax' / 'experiments' / 'configs' /
          'sweep.py').is_file()
  proc = _run([str(installed / 'bin' / 'monosem-sweep'),
               '--config=experiments/configs/sweep.py:synthetic,ncf',
               '--help'], tmp_path, pythonpath=str(installed))
  text = ' '.join(proc.stdout.split())
  assert 'Trains a grid of SAEs' in text, proc.stderr[-3000:]
  assert '- config.epochs = ' in text and "- config.spec.ncf_pairs = " in text


def test_installed_console_script_trains_from_another_folder(installed,
                                                            tmp_path):
  workdir = tmp_path / 'rec'
  proc = _run([str(installed / 'bin' / 'monosem-train'),
               '--config=recommender.py:synthetic,mf',
               '--config.dataset.options.n_users=300',
               '--config.dataset.options.n_items=120',
               '--config.train.epochs=1', f'--workdir={workdir}'], tmp_path,
              pythonpath=str(installed))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads((workdir / 'metrics.json').read_text())['final']
