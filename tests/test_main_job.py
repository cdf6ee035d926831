"""The README's main command runs end to end (on a smaller world), and the
analysis notebook runs on what it wrote."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def quickstart(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('quickstart')
  cmd = [sys.executable, '-m', 'experiments.run', f'--workdir={workdir}',
         '--config.recommender.dataset.options.n_users=300',
         '--config.recommender.dataset.options.n_items=150',
         '--config.recommender.train.epochs=2', '--config.sweep.epochs=2']
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir, out.stdout


def test_main_job_end_to_end(quickstart):
  workdir, stdout = quickstart
  assert 'planted-concept recovery' in stdout and 'report: ' in stdout
  report = (workdir / 'sweep' / 'report.md').read_text()
  assert '## Planted concepts' in report and '## Interventions' in report
  planted = pd.read_csv(workdir / 'sweep' / 'planted.csv')
  assert len(planted) == 8 and planted.recall.between(0, 1).all()
  table = pd.read_csv(workdir / 'sweep' / 'sweep_results.csv')
  assert len(table) == 20 and (table.status == 'ok').all()
  assert (workdir / 'sweep' / 'sweep_results.png').stat().st_size > 10_000
  assert (workdir / 'recommender' / 'frozen' / 'params.npz').exists()


def run_notebook(path, replacements):
  """Executes a notebook's code cells in order, with its settings replaced."""
  with open(path) as f:
    cells = [c for c in json.load(f)['cells'] if c['cell_type'] == 'code']
  namespace = {}
  for cell in cells:
    source = ''.join(cell['source'])
    for old, new in replacements.items():
      source = source.replace(old, new)
    exec(compile(source, path, 'exec'), namespace)  # pylint: disable=exec-used
  return namespace


def test_analysis_notebook_runs_on_a_quickstart_workdir(quickstart):
  workdir, _ = quickstart
  ns = run_notebook(os.path.join(ROOT, 'notebooks', 'analysis.ipynb'), {
      "'runs/quickstart/sweep'": repr(str(workdir / 'sweep')),
  })
  assert len(ns['matches']) == 8  # one row per planted concept
  assert ns['acts'].shape[0] == 150
  assert len(ns['fid']) == 20 and ns['fid'].rbo.between(0, 1).all()
  assert len(ns['neuron_rows']) == ns['acts'].shape[1]
  assert len(ns['before']) == len(ns['after']) == 10
  assert set(ns['curves']['mode']) == {'replace', 'delta'}
