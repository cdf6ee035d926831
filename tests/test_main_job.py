"""The README's main command runs end to end (on a smaller world)."""

import os
import subprocess
import sys

import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_main_job_end_to_end(tmp_path):
  cmd = [sys.executable, '-m', 'experiments.run', f'--workdir={tmp_path}',
         '--config.recommender.dataset.options.n_users=300',
         '--config.recommender.dataset.options.n_items=150',
         '--config.recommender.train.epochs=2', '--config.sweep.epochs=2']
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'planted-concept recovery' in out.stdout
  table = pd.read_csv(tmp_path / 'sweep' / 'sweep_results.csv')
  assert len(table) == 20 and (table.status == 'ok').all()
  assert (tmp_path / 'sweep' / 'sweep_results.png').stat().st_size > 10_000
  assert (tmp_path / 'recommender' / 'frozen' / 'params.npz').exists()
