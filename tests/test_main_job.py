"""The README's main command runs end to end (on a smaller world, both
models); the notebooks are executed in a kernel by tests/test_notebooks.py."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from monosem_jax.experiments.configs import quickstart
from monosem_jax.analysis import pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMALL = ['--config.dataset.options.n_users=300',
         '--config.dataset.options.n_items=150',
         '--config.mf.recommender.train.epochs=2',
         '--config.ncf.recommender.train.epochs=2',
         '--config.mf.sweep.epochs=2', '--config.ncf.sweep.epochs=2']


@pytest.fixture(scope='module')
def quickstart_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('quickstart')
  cmd = [sys.executable, '-m', 'experiments.run', f'--workdir={workdir}',
         *SMALL]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir, out.stdout


def test_main_job_end_to_end_for_both_models(quickstart_run):
  workdir, stdout = quickstart_run
  for model in ('mf', 'ncf'):
    m = model.upper()
    assert f'{m}: planted-concept recovery' in stdout
    assert f'{m}: report ' in stdout
    # the suppression line, led by its flags when it went the wrong way
    assert any(line.startswith(f'{m}: ') and 'suppress via' in line
               for line in stdout.splitlines())
    sweep = workdir / model / 'sweep'
    table = pd.read_csv(sweep / 'sweep_results.csv')
    assert len(table) == 18 and (table.status == 'ok').all()
    assert set(table.seed) == {42, 43, 44}        # three seeds of each
    assert set(table.rho) == {0.2}
    assert (sweep / 'sweep_results.png').stat().st_size > 10_000
    assert (workdir / model / 'recommender' / 'frozen' / 'params.npz').exists()
    report = (sweep / 'analysis' / 'report.md').read_text()
    assert '## Planted concepts' in report and '## Interventions' in report
    assert '## Observed vs chance' in report
    assert '## Seeds and stability' in report
    seeds = pd.read_csv(sweep / 'analysis' / 'seeds.csv')
    assert len(seeds) == 6 and (seeds.n_seeds == 3).all()
    assert f'{m}: Over the 3 seeds of the chosen setting' in stdout
    assert any(line.startswith(f'{m}: config ') and 'by chance' in line
               for line in stdout.splitlines())
    planted = pd.read_csv(sweep / 'analysis' / 'planted.csv')
    assert len(planted) == 8 and planted.recall.between(0, 1).all()


def _summary(shares, activation, wrong, inactive):
  # as run_use_cases flags it (tests/test_analysis_pipeline.py)
  iv = pd.DataFrame({'case': 'suppress via action (action users)',
                     'kind': 'suppress', 'neuron': 14, 'mode': 'delta',
                     'level': ['raw', 'unedited', 1.0, 0.0, -1.5],
                     'concept_share': shares, 'orig_activation': activation,
                     'activation_max': 0.97, 'wrong_sign': wrong,
                     'inactive': inactive,
                     'flag': 'wrong direction, inactive neuron' if wrong
                             else ''})
  fid = pd.DataFrame({'config': [0, 1], 'status': 'ok', 'rbo_norm': [.7, .2],
                      'pure_concepts@10': [3, 4]})
  result = pipeline.Analysis(fid, None, None, iv, None, None, 0, 'report.md',
                             1.0)
  lines = pipeline.summary_lines('ncf', result)
  return [line for line in lines if 'suppress via' in line][0]


def test_summary_flags_a_suppression_that_goes_the_wrong_way():
  line = _summary([.89, .89, .70, .89, .925], 0.0076, True, True)
  assert line.startswith('NCF: WRONG DIRECTION, INACTIVE NEURON')
  assert '0.890 -> 0.925 at level -1.5' in line
  assert 'mean activation 0.0076 for these users' in line
  assert 'not a successful suppression' in line
  line = _summary([.89, .89, .80, .75, .66], 0.8, False, False)
  assert line.startswith('NCF: suppress via') and 'WRONG' not in line
  assert '0.890 -> 0.660 at level -1.5' in line


def test_summary_shows_the_effect_choice_beside_the_purity_choice():
  # issue 20, section 5: the main job's summary printed only the purity
  # choice, so an NCF run headlined a wrong-way suppression and never the
  # neuron that steers
  def rows(case, choice, neuron, shares, wrong):
    return pd.DataFrame({
        'case': case, 'choice': choice, 'kind': 'suppress', 'neuron': neuron,
        'mode': 'delta', 'level': ['raw', 'unedited', 0.0, -1.5],
        'concept_share': shares, 'orig_activation': 0.5,
        'activation_max': 1.0, 'wrong_sign': wrong, 'inactive': False,
        'flag': 'wrong direction' if wrong else ''})
  iv = pd.concat([
      rows('suppress via action (action users)', 'purity', 1,
           [.73, .73, .80, .85], True),
      rows('suppress via action by effect (action users)', 'effect', 30,
           [.73, .73, .27, .01], False)], ignore_index=True)
  fid = pd.DataFrame({'config': [0], 'status': 'ok', 'rbo_norm': [.7],
                      'pure_concepts@10': [3]})
  result = pipeline.Analysis(fid, None, None, iv, None, None, 0, 'report.md',
                             1.0)
  lines = [line for line in pipeline.summary_lines('ncf', result)
           if 'suppress via' in line]
  assert len(lines) == 2
  assert lines[0].startswith('NCF: WRONG DIRECTION') and 'neuron 1,' in lines[0]
  assert lines[1].startswith('NCF: suppress via action by effect')
  assert '0.730 -> 0.010 at level -1.5 (neuron 30,' in lines[1]


def test_reproduction_configs_name_real_datasets():
  for arg, dataset in (('ml-1m', 'ml-1m'), ('lastfm-2k', 'lastfm-2k'),
                       ('ml-1m,mf', 'ml-1m')):
    c = quickstart.get_config(arg)
    assert c.dataset.name == dataset
    for model in c.models:
      assert c[model].sweep.dataset == dataset
      assert c[model].recommender.dataset.name == dataset
  assert quickstart.get_config('ml-1m,mf').models == ('mf',)
  assert quickstart.get_config('').models == ('mf', 'ncf')
  with pytest.raises(ValueError, match='unknown arg'):
    quickstart.get_config('movielens')
