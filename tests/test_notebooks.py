"""Both notebooks execute top to bottom in a real kernel (nbclient), on a tiny
synthetic config: the Colab pipeline notebook trains, sweeps (sharded over 2
CPU devices) and analyses; the analysis notebook then opens that sweep."""

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow


def _execute(name: str, env: dict) -> nbformat.NotebookNode:
  """Runs a notebook in a fresh kernel; ``env`` (None values: unset) is
  the kernel's environment on top of this process's, restored after."""
  nb = nbformat.read(os.path.join(ROOT, 'notebooks', name), as_version=4)
  old = dict(os.environ)
  for key, value in env.items():   # the kernel inherits the environment
    if value is None:
      os.environ.pop(key, None)
    else:
      os.environ[key] = value
  try:
    NotebookClient(nb, timeout=600, kernel_name='python3',
                   resources={'metadata': {'path': ROOT}}).execute()
  finally:
    os.environ.clear()
    os.environ.update(old)
  return nb


def _text(nb) -> str:
  out = []
  for cell in nb.cells:
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


def test_colab_notebook_runs_the_pipeline_sharded(colab):
  workdir, nb = colab
  text = _text(nb)
  assert '2 CPU device(s)' in text                     # the sharded path ran
  assert '12 configs on 2 CPU device(s)' in text
  assert (workdir / 'sweep' / 'analysis' / 'report.md').exists()
  assert os.listdir(workdir / 'sweep' / 'checkpoints')  # orbax checkpoints
  assert 'image/png' in text                            # the report's figures


def test_analysis_notebook_runs_on_the_colab_sweep(colab):
  workdir, _ = colab
  nb = _execute('analysis.ipynb', {
      'MONOSEM_NOTEBOOK_SWEEP': str(workdir / 'sweep'), 'JAX_PLATFORMS': 'cpu'})
  text = _text(nb)
  assert '12 configs; mf recommender on synthetic' in text
  assert 'before' in text and 'after' in text           # the edited user
  assert 'image/png' in text                            # figures drawn
