"""README's recommender and sweep commands, run verbatim on real ML-1M."""

import os
import re
import subprocess

import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def readme_block(heading: str, lang: str = 'bash') -> list[str]:
  """The lines of the first ```lang block under ``heading``."""
  with open(os.path.join(ROOT, 'README.md')) as f:
    text = f.read()
  section = text.split(f'\n## {heading}\n', 1)[1].split('\n## ', 1)[0]
  block = re.search(rf'```{lang}\n(.*?)```', section, re.S).group(1)
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

  # README's analysis: the launcher (first line; the second only re-runs it
  # with other options) and the Python example, verbatim.
  analyze = readme_block('Analysis and report')
  assert [l.split()[2] for l in analyze] == ['experiments.analyze'] * 2
  proc = subprocess.run(analyze[0], shell=True, cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = tmp_path / 'runs' / 'ml1m_mf_sweep' / 'analysis'
  fid = pd.read_csv(out / 'fidelity.csv')
  assert len(fid) == 80 and fid.rbo_norm.between(0, 1).all()
  iv = pd.read_csv(out / 'interventions.csv')
  assert {'Horror', "Children's", 'Romance'} <= set(iv.concept)
  report = (out / 'report.md').read_text()
  assert 'Alice in Wonderland (1951)' in report
  # the config the report describes reproduces the recommender (issue 16)
  chosen = int(report.split('**Chosen: config ')[1].split('**')[0])
  row = fid.set_index('config').loc[chosen]
  assert row.lambda_pred > 0 and row.rbo_norm >= fid.rbo_norm.median()
  code = '\n'.join(readme_block('Analysis and report', 'python'))
  proc = subprocess.run(['python', '-c', code], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'concept_share' in proc.stdout and 'unedited' in proc.stdout
