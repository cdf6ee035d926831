"""Both notebooks execute top to bottom in a real kernel (nbclient), from the
``notebooks/`` folder, with ``ipywidgets`` installed (Colab ships it), on a
tiny synthetic config: the Colab pipeline notebook trains, sweeps (sharded
over 2 CPU devices) and analyses; the analysis notebook then opens that
sweep. The set-up cells (the Colab notebook's install, Drive and data
cells, the analysis notebook's paths) also run here in-process on the paths
a fresh runtime takes, with ``subprocess.run`` recorded where it would
install into this environment."""

import json
import os
import re
import subprocess
import sys
import types

import nbformat
import pytest
from nbclient import NotebookClient

from tests.test_fetch import Server, make_zip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, 'notebooks')
WIDGET = 'application/vnd.jupyter.widget-view+json'


def _read(name: str) -> nbformat.NotebookNode:
  return nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)


def _execute(name: str, env: dict) -> nbformat.NotebookNode:
  """Runs a notebook in a fresh kernel whose working directory is
  ``notebooks/``; ``env`` (None values: unset) is the kernel's environment
  on top of this process's, restored after."""
  nb = _read(name)
  old = dict(os.environ)
  for key, value in env.items():   # the kernel inherits the environment
    if value is None:
      os.environ.pop(key, None)
    else:
      os.environ[key] = value
  try:
    NotebookClient(nb, timeout=600, kernel_name='python3',
                   resources={'metadata': {'path': NOTEBOOKS}}).execute()
  finally:
    os.environ.clear()
    os.environ.update(old)
  return nb


def _cell(nb, tag: str) -> nbformat.NotebookNode:
  """The one cell tagged ``tag``."""
  cells = [c for c in nb.cells if tag in c.metadata.get('tags', ())]
  assert len(cells) == 1, (tag, len(cells))
  return cells[0]


def _text(nb_or_cell) -> str:
  cells = getattr(nb_or_cell, 'cells', [nb_or_cell])
  out = []
  for cell in cells:
    for o in cell.get('outputs', []):
      out.append(o.get('text', ''))
      out.append(json.dumps(o.get('data', {})))
  return '\n'.join(out)


@pytest.fixture(scope='module')
def colab(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('colab')
  env = {'MONOSEM_NOTEBOOK_SMALL': '1', 'MONOSEM_NOTEBOOK_WORKDIR': str(workdir),
         'JAX_PLATFORMS': 'cpu',
         'XLA_FLAGS': None}   # unset: the notebook splits the CPU in two
  return workdir, _execute('colab_pipeline.ipynb', env)


@pytest.mark.slow
def test_colab_notebook_runs_the_pipeline_sharded(colab):
  workdir, nb = colab
  text = _text(nb)
  # From notebooks/, the install cell finds the checkout above it.
  assert f'paths relative to {ROOT}' in _text(_cell(nb, 'install'))
  assert 'synthetic: nothing to download' in _text(_cell(nb, 'data'))
  assert '2 CPU device(s)' in text                     # the sharded path ran
  assert '12 configs on 2 CPU device(s)' in text
  assert (workdir / 'sweep' / 'analysis' / 'report.md').exists()
  assert os.listdir(workdir / 'sweep' / 'checkpoints')  # orbax checkpoints
  assert 'image/png' in text                            # the report's figures


@pytest.mark.slow
def test_analysis_notebook_runs_from_notebooks_with_ipywidgets(colab):
  import ipywidgets  # pylint: disable=import-outside-toplevel,unused-import
  workdir, _ = colab
  # Relative to the repository root, not to notebooks/ (the kernel's cwd).
  sweep = os.path.relpath(workdir / 'sweep', ROOT)
  assert not os.path.isdir(os.path.join(NOTEBOOKS, sweep))
  nb = _execute('analysis.ipynb', {
      'MONOSEM_NOTEBOOK_SWEEP': sweep, 'JAX_PLATFORMS': 'cpu'})
  text = _text(nb)
  assert '12 configs; mf recommender on synthetic' in text
  assert 'before' in text and 'after' in text           # the edited user
  assert WIDGET in _text(_cell(nb, 'widgets'))         # the sliders' branch ran
  # ... and left `show` the figure helper: the use cases' figure is drawn.
  assert 'image/png' in _text(_cell(nb, 'use-cases'))


def test_colab_badges_open_the_notebook_of_repo_url():
  """One placeholder, REPO_URL, defined once; the badges (notebook, README)
  open the notebook of that repository: replacing OWNER everywhere is
  checked here."""
  nb = _read('colab_pipeline.ipynb')
  source = '\n'.join(c.source for c in nb.cells)
  urls = re.findall(r"^REPO_URL = '(https://github\.com/([^/']+/[^/']+))'",
                    source, re.M)
  assert len(urls) == 1 and source.count('REPO_URL = ') == 1
  url, repo = urls[0]
  assert _cell(nb, 'install').source.startswith(f"REPO_URL = '{url}'")
  badge = (f'(https://colab.research.google.com/github/{repo}/blob/main/'
           'notebooks/colab_pipeline.ipynb)')
  assert '[![Open In Colab]' in nb.cells[0].source and badge in (
      nb.cells[0].source)
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  assert f'[![Open In Colab](https://colab.research.google.com/assets/' \
         f'colab-badge.svg)]{badge}' in readme


# ---- the notebooks' set-up cells, as a fresh runtime runs them -------------

def _cell_code(tag: str, name: str = 'colab_pipeline.ipynb') -> str:
  return _cell(_read(name), tag).source


class _Recorder:
  """Stands in for ``subprocess.run``: records each command; ``pip``
  commands succeed and make ``monosem_jax`` importable again."""

  def __init__(self, monkeypatch, module):
    self.calls = []
    self.monkeypatch, self.module = monkeypatch, module

  def __call__(self, cmd, **kwargs):
    self.calls.append(list(cmd))
    if cmd[1:4] == ['-m', 'pip', 'install']:
      self.monkeypatch.setitem(sys.modules, 'monosem_jax', self.module)
    return subprocess.CompletedProcess(cmd, 0, '', '')


@pytest.fixture
def fresh_runtime(monkeypatch):
  """``import monosem_jax`` fails (as on a fresh runtime) until a recorded
  ``pip install``; ``sys.path`` and the environment are restored after."""
  module = sys.modules['monosem_jax']
  monkeypatch.setitem(sys.modules, 'monosem_jax', None)   # ImportError
  monkeypatch.setattr(sys, 'path', list(sys.path))
  recorder = _Recorder(monkeypatch, module)
  monkeypatch.setattr(subprocess, 'run', recorder)
  return recorder


def _run_cells(*sources, **namespace) -> dict:
  for source in sources:
    exec(compile(source, '<notebook cell>', 'exec'), namespace)  # pylint: disable=exec-used
  return namespace


def test_analysis_paths_are_relative_to_the_repository_root(fresh_runtime,
                                                           monkeypatch,
                                                           tmp_path):
  # From notebooks/ of a checkout that is not installed: the checkout is
  # imported and the sweep path is the root's.
  monkeypatch.chdir(NOTEBOOKS)
  monkeypatch.setenv('MONOSEM_NOTEBOOK_SWEEP', 'runs/x/sweep')
  ns = _run_cells(_cell_code('paths', 'analysis.ipynb'))
  assert ns['ROOT'] == ROOT and sys.path[0] == ROOT
  assert ns['WORKDIR'] == os.path.join(ROOT, 'runs', 'x', 'sweep')
  # Outside any checkout, an absolute path is kept.
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv('MONOSEM_NOTEBOOK_SWEEP', str(tmp_path / 'sweep'))
  ns = _run_cells(_cell_code('paths', 'analysis.ipynb'))
  assert ns['WORKDIR'] == str(tmp_path / 'sweep')
  assert fresh_runtime.calls == []            # it never installs anything


def test_install_cell_installs_the_checkout_it_runs_in(fresh_runtime,
                                                       monkeypatch):
  monkeypatch.chdir(NOTEBOOKS)
  ns = _run_cells(_cell_code('install'))
  assert fresh_runtime.calls == [
      [sys.executable, '-m', 'pip', 'install', '-q', '-e', ROOT]]
  assert ns['ROOT'] == ROOT and sys.path[0] == ROOT


def test_install_cell_refuses_the_placeholder_in_one_line(fresh_runtime,
                                                          monkeypatch,
                                                          tmp_path):
  monkeypatch.chdir(tmp_path)                  # no checkout above it
  with pytest.raises(Exception, match=r'REPO_URL is still the placeholder '
                     r'https://github\.com/OWNER/monosem-jax: set REPO_URL') \
      as e:
    _run_cells(_cell_code('install'))
  assert type(e.value).__name__ == 'SetupError'
  assert len(e.value._render_traceback_()) == 1   # no traceback in IPython
  assert fresh_runtime.calls == [] and os.listdir(tmp_path) == []


def test_install_cell_reports_a_failed_clone_in_one_line(monkeypatch,
                                                         tmp_path):
  monkeypatch.setitem(sys.modules, 'monosem_jax', None)
  monkeypatch.chdir(tmp_path)
  missing = (tmp_path / 'no-such-repo').as_uri()   # a real git, no network
  source = _cell_code('install').replace(
      'https://github.com/OWNER/monosem-jax', missing)
  with pytest.raises(Exception, match=rf'git clone {re.escape(missing)} '
                     r'failed \(exit status \d+\): fatal: .*no-such-repo'):
    _run_cells(source)
  assert os.listdir(tmp_path) == []


def _setup_cells(monkeypatch, tmp_path, dataset, **settings):
  """The install, settings and data cells with DATASET = ``dataset`` (the
  package is importable here, so the install cell installs nothing)."""
  monkeypatch.chdir(NOTEBOOKS)
  monkeypatch.setenv('XLA_FLAGS', os.environ.get('XLA_FLAGS', ''))
  monkeypatch.setenv('MONOSEM_DATA_DIR', str(tmp_path / 'data'))
  monkeypatch.setenv('MONOSEM_NOTEBOOK_WORKDIR', str(tmp_path / 'runs'))
  settings_cell = _cell_code('settings').replace(
      "DATASET = 'synthetic'", f'DATASET = {dataset!r}')
  for name, value in settings.items():
    settings_cell += f'\n{name} = {value!r}'
  return _run_cells(_cell_code('install'), settings_cell, _cell_code('data'))


def test_data_cell_reports_a_fetch_refusal_in_one_line(monkeypatch, tmp_path):
  server = Server()
  try:
    server.routes['/data/ml-100k.zip'] = make_zip('ml-100k')  # not the real
    monkeypatch.setenv('MONOSEM_FETCH_BASE_URL', server.base)
    with pytest.raises(Exception, match=r'monosem-fetch ml-100k failed \(exit '
                       r'status 1\): error: ml-100k: .*ml-100k\.zip') as e:
      _setup_cells(monkeypatch, tmp_path, 'ml-100k')
  finally:
    server.httpd.shutdown()
    server.httpd.server_close()
  assert type(e.value).__name__ == 'SetupError'
  assert server.count('ml-100k.zip') == 1
  assert not os.path.exists(tmp_path / 'data' / 'ml-100k')   # nothing partial


def test_data_cell_keeps_your_own_copy_and_mounts_drive_only_on_colab(
    monkeypatch, tmp_path, capsys):
  own = tmp_path / 'data' / 'ml-1m'
  own.mkdir(parents=True)
  ns = _setup_cells(monkeypatch, tmp_path, 'ml-1m', USE_DRIVE=True)
  out = capsys.readouterr().out
  assert f'{own}: your own copy' in out
  assert 'Google Drive mounts only on Colab' in out
  assert ns['WORKDIR'] == str(tmp_path / 'runs')
  mounted = []
  colab = types.ModuleType('google.colab')
  colab.drive = types.SimpleNamespace(mount=mounted.append)
  monkeypatch.setitem(sys.modules, 'google',
                      sys.modules.get('google') or types.ModuleType('google'))
  monkeypatch.setitem(sys.modules, 'google.colab', colab)
  ns = _setup_cells(monkeypatch, tmp_path, 'synthetic', USE_DRIVE=True)
  assert mounted == ['/content/drive']
  assert ns['WORKDIR'] == ns['DRIVE_WORKDIR']
  assert ns['WORKDIR'].startswith('/content/drive/MyDrive/')
