"""README's recommender and sweep commands, run verbatim on real ML-1M."""

import os
import re
import subprocess

import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def readme_block(heading: str) -> list[str]:
  """The command lines of the first ```bash block under ``heading``."""
  with open(os.path.join(ROOT, 'README.md')) as f:
    text = f.read()
  section = text.split(f'\n## {heading}\n', 1)[1].split('\n## ', 1)[0]
  block = re.search(r'```bash\n(.*?)```', section, re.S).group(1)
  return [line for line in block.splitlines() if line.strip()]


def test_readme_sweep_block_names_every_launcher():
  lines = readme_block('SAE sweeps')
  assert [l.split()[2] for l in lines] == [
      'experiments.train_recommender', 'experiments.sweep', 'experiments.sweep']
  assert "--config.grid.seed='(0, 1, 2)'" in lines[2]


def test_readme_sweep_commands_run_verbatim(real_data_dir, tmp_path):
  os.symlink(os.path.join(ROOT, 'experiments'), tmp_path / 'experiments')
  env = dict(os.environ, MONOSEM_DATA_DIR=real_data_dir, JAX_PLATFORMS='cpu')
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  for line in readme_block('SAE sweeps'):
    proc = subprocess.run(line, shell=True, cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (line, proc.stderr[-3000:])
  metrics = tmp_path / 'runs' / 'ml1m_mf' / 'metrics.json'
  assert metrics.exists()
  full = pd.read_csv(tmp_path / 'runs' / 'ml1m_mf_sweep' / 'sweep_results.csv')
  assert len(full) == 80 and (full.status == 'ok').all()
  seeds = pd.read_csv(tmp_path / 'runs' / 'ml1m_mf_seeds' / 'sweep_results.csv')
  assert len(seeds) == 36
  assert sorted(seeds.seed.unique()) == [0, 1, 2]
  assert sorted(seeds.lambda_pred.unique()) == [0.0, 1.0, 10.0]
  assert (seeds.rho == 0.05).all()  # ML-1M MF default, not swept
