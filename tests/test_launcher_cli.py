"""Commands and configs where users expect them (issue 17, part 4).

Every launcher is a console script (pyproject.toml ``[project.scripts]``)
that behaves as ``python -m experiments.X``; ``--config`` takes a shipped
config by its bare name or its repository path from any working directory;
``--help`` lists the config's fields with their defaults and one line each
(experiments/launch.py). Subprocesses cost seconds each: there are four, and
a fifth when the package is installed with its scripts.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from experiments import launch
from experiments.configs import (analyze, quickstart, recommender,
                                 sparse_faithful, sweep)
from monosem_jax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Console script -> the launcher module whose ``run`` it calls.
SCRIPTS = {
    'monosem-run': 'experiments.run',
    'monosem-train': 'experiments.train_recommender',
    'monosem-sweep': 'experiments.sweep',
    'monosem-analyze': 'experiments.analyze',
    'monosem-export-sae': 'experiments.export_sae',
    'monosem-import-recommender': 'experiments.import_recommender',
    'monosem-fetch': 'experiments.fetch',
}
#: Launchers without a console script: measurements for developers, run
#: from a checkout (docs/architecture.md#commands).
NO_SCRIPT = {'bench_checkpoint', 'bench_data', 'bench_precision',
             'bench_recommenders', 'bench_sweep', 'device_check'}


def _env():
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  return env


def _run(args, cwd):
  return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True,
                        text=True, timeout=600)


def test_every_launcher_has_a_console_script():
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    scripts = tomllib.load(f)['project']['scripts']
  assert scripts == {name: f'{module}:run' for name, module in SCRIPTS.items()}
  launchers = set()
  for name in os.listdir(os.path.join(ROOT, 'experiments')):
    if name.endswith('.py'):
      with open(os.path.join(ROOT, 'experiments', name)) as f:
        if re.search(r"^if __name__ == '__main__':", f.read(), re.M):
          launchers.add(name[:-3])
  assert launchers - NO_SCRIPT == {m.split('.')[1] for m in SCRIPTS.values()}


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
      'experiments.run:run': "- config.models = ('mf', 'ncf'): the models",
      'experiments.train_recommender:run':
          '- config.train.epochs = 10: training epochs',
      'experiments.sweep:run': '- config.epochs = 18: SAE training epochs',
      'experiments.analyze:run': '- config.chosen = -1: the config the '
                                 'report details',
      'experiments.import_recommender:run': '- config.split.seed = 42: seed '
                                            'of the split',
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
  shipped = os.path.join(ROOT, 'experiments', 'configs', 'recommender.py')
  assert launch.resolve_config_path('recommender.py') == shipped
  assert os.path.samefile(
      launch.resolve_config_path('experiments/configs/recommender.py'),
      shipped)
  (tmp_path / 'recommender.py').write_text('def get_config(): return {}\n')
  assert launch.resolve_config_path('recommender.py') == 'recommender.py'
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
  """What the console script runs (``from experiments.X import run;
  sys.exit(run())``, its own main module without docstring or flags): its
  ``--help`` shows the launcher's docstring and flags, and the fields of
  the config named by its bare name from another folder."""
  code = ('import sys\nfrom experiments.train_recommender import run\n'
          'sys.exit(run())\n')
  proc = _run([sys.executable, '-c', code,
               '--config=recommender.py:synthetic,mf', '--help'], tmp_path)
  text = ' '.join(proc.stdout.split())
  assert 'Trains a recommender (MF or NCF)' in text, proc.stderr[-2000:]
  assert '--workdir: Output folder' in text
  # synthetic,mf's own defaults (ml-1m,mf, the default, trains 10 epochs)
  assert '- config.train.epochs = 30: training epochs' in text
  assert '- config.dataset.options.n_users = 1000: synthetic world' in text


@pytest.mark.skipif(shutil.which('monosem-train') is None,
                    reason='monosem-train is not on the PATH: install the '
                    'package (pip install -e .) to run its console scripts')
def test_installed_console_script_trains_from_another_folder(tmp_path):
  workdir = tmp_path / 'rec'
  proc = _run(['monosem-train', '--config=recommender.py:synthetic,mf',
               '--config.dataset.options.n_users=300',
               '--config.dataset.options.n_items=120',
               '--config.train.epochs=1', f'--workdir={workdir}'], tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads((workdir / 'metrics.json').read_text())['final']
