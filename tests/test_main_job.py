"""The README's main command runs end to end (on a smaller world); the
notebooks are executed in a kernel by tests/test_notebooks.py."""

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
