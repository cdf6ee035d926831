"""A recommender trained elsewhere, imported from its embeddings: same
scores as the original matched by id, every refusal, the workdir rules, and
the chain main job (atomic files) -> import -> sweep -> open_sweep -> export
one SAE -> load_sae with the sweep's codes."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ATOMIC_FIXTURE
from monosem_jax.experiments.configs import recommender as rec_configs
from monosem_jax.experiments.configs import sweep as sweep_configs
from monosem_jax import load_sae
from monosem_jax.analysis import export as sweep_export
from monosem_jax.analysis import pipeline, workdirs
from monosem_jax.data import DataError, load_data
from monosem_jax.errors import ConfigError, WorkdirError
from monosem_jax.recommenders import ncf
from monosem_jax.recommenders.artifact import RecommenderArtifact
from monosem_jax.recommenders.imported import import_embeddings
from monosem_jax.sweep.runner import run_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIET = dict(log=lambda _: None)


def _config(model='mf'):
  c = rec_configs.get_config(f'atomic,{model}')
  c.dataset.data_dir = ATOMIC_FIXTURE
  c.dataset.options.concept_field = 'class'
  return c


def _export(art, dataset, path, seed=0, **change):
  """The artifact's embeddings as a .npz, rows in a shuffled order (seed
  None: in the dataset's order), ``change`` replacing or (None) removing
  arrays."""
  rng = np.random.default_rng(seed)
  pu, pi = np.arange(art.n_users), np.arange(art.n_items)
  if seed is not None:
    pu, pi = rng.permutation(art.n_users), rng.permutation(art.n_items)
  p = art.params
  arrays = dict(user_emb=p['user_emb'][pu], item_emb=p['item_emb'][pi],
                user_ids=dataset.user_ids[pu], item_ids=dataset.item_ids[pi],
                user_bias=p['user_bias'][pu], item_bias=p['item_bias'][pi])
  arrays.update(change)
  np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
  return path


@pytest.fixture(scope='module')
def trained(atomic_main_job):
  """The main job's MF recommender on the atomic fixture and its data."""
  workdir, _ = atomic_main_job
  art = RecommenderArtifact.load(workdir / 'mf' / 'recommender' / 'frozen')
  return art, workdirs.open_dataset(art)


@pytest.fixture(scope='module')
def imported(trained, tmp_path_factory):
  """The README command: the launcher imports the shuffled export."""
  art, dataset = trained
  root = tmp_path_factory.mktemp('imported')
  npz = _export(art, dataset, root / 'emb.npz')
  cmd = [sys.executable, '-m', 'experiments.import_recommender',
         '--config=experiments/configs/recommender.py:atomic,mf',
         f'--config.dataset.data_dir={ATOMIC_FIXTURE}',
         '--config.dataset.options.concept_field=class',
         f'--embeddings={npz}', f'--workdir={root / "rec"}']
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  return root, out.stdout


def test_imported_model_scores_as_the_original(trained, imported):
  art, _ = trained
  root, stdout = imported
  assert 'imported mf: ndcg@10' in stdout and 'popularity:' in stdout
  new = RecommenderArtifact.load(root / 'rec' / 'frozen')
  assert new.kind == 'mf' and new.dataset == 'atomic'
  for key in ('user_emb', 'item_emb', 'user_bias', 'item_bias'):
    np.testing.assert_array_equal(new.params[key], art.params[key])
  users = np.arange(art.n_users)
  np.testing.assert_array_equal(new.user_item_logits(users),
                                art.user_item_logits(users))
  # Same split, same evaluation: the metrics of training.
  np.testing.assert_array_equal(new.split.train_items, art.split.train_items)
  assert new.meta['metrics'] == art.meta['metrics']
  with open(root / 'rec' / 'metrics.json') as f:
    metrics = json.load(f)
  assert metrics['final']['model'] == art.meta['metrics']['model']
  assert 'never saw the held-out' in metrics['imported']['note']
  with open(root / 'rec' / 'config.json') as f:
    config = json.load(f)
  assert config['imported']['sha256'] == new.meta['imported']['sha256']
  assert len(new.fingerprint) == 64


def test_sweep_open_sweep_and_export_on_the_imported_workdir(imported):
  # The chain of issue 17: main job on atomic files (atomic_main_job) ->
  # import its embeddings -> sweep them -> export one SAE -> load_sae gives
  # the sweep's own codes.
  root, _ = imported
  s = sweep_configs.get_config('atomic,mf')
  s.recommender_workdir = str(root / 'rec')
  s.epochs = 1
  s.spec.batch_users = s.spec.batch_items = 16
  s.grid = sweep_configs.grid_config(lambda_pred=(0.0, 1.0), dict_size=(8,))
  run_sweep(s, str(root / 'sweep'), **QUIET)
  view = workdirs.open_sweep(str(root / 'sweep'))
  assert view.num_configs == 2 and view.artifact.dataset == 'atomic'
  dataset = workdirs.open_dataset(view.artifact)   # the analysis' data
  assert dataset.n_concepts == 6
  out = sweep_export.export_config(str(root / 'sweep'), 1, root / 'sae1')
  sae = load_sae(out)
  assert sae.cfg['recommender']['fingerprint'] == view.artifact.fingerprint
  for x in (view.artifact.item_emb, view.artifact.user_emb):
    codes = pipeline.config_activations(view, x, [1])[0]
    np.testing.assert_allclose(sae.encode(x), codes, atol=1e-6, rtol=1e-6)


def test_reimport_is_idempotent_and_other_runs_are_refused(trained, imported,
                                                           atomic_main_job,
                                                           tmp_path):
  art, dataset = trained
  root, _ = imported
  same = root / 'emb.npz'
  before = RecommenderArtifact.load(root / 'rec' / 'frozen').fingerprint
  with open(root / 'rec' / 'config.json') as f:
    config = json.load(f)
  import_embeddings(config, same, root / 'rec', **QUIET)
  assert RecommenderArtifact.load(root / 'rec' / 'frozen').fingerprint == before
  other = _export(art, dataset, tmp_path / 'other.npz', seed=1,
                  user_bias=None)
  with pytest.raises(WorkdirError, match='holds a run of another '
                     'configuration'):
    import_embeddings(_config(), other, root / 'rec', **QUIET)
  trained_dir = atomic_main_job[0] / 'mf' / 'recommender'
  with pytest.raises(WorkdirError, match='holds a run of another'):
    import_embeddings(_config(), same, trained_dir, **QUIET)


def test_drop_missing_users(trained, tmp_path):
  art, dataset = trained
  keep = np.arange(art.n_users) >= 3           # users u01..u03 missing
  p = art.params
  npz = tmp_path / 'some.npz'
  np.savez(npz, user_emb=p['user_emb'][keep], item_emb=p['item_emb'],
           user_ids=dataset.user_ids[keep], item_ids=dataset.item_ids)
  with pytest.raises(DataError, match=r"3 user\(s\) of atomic have no "
                     r"embedding in .*some\.npz \('u01', 'u02', 'u03'\); "
                     r'pass --drop_missing_users'):
    import_embeddings(_config(), npz, tmp_path / 'refused', **QUIET)
  assert not (tmp_path / 'refused' / 'config.json').exists()
  import_embeddings(_config(), npz, tmp_path / 'rec', drop_missing_users=True,
                    **QUIET)
  new = RecommenderArtifact.load(tmp_path / 'rec' / 'frozen')
  assert new.n_users == art.n_users - 3
  config = new.meta['config']
  assert config['dataset']['exclude_users'] == ['u01', 'u02', 'u03']
  # Everything that reloads the data rebuilds the same (smaller) split.
  reloaded = workdirs.open_dataset(new)
  assert reloaded.user_ids[0] == 'u04'
  np.testing.assert_array_equal(new.params['user_emb'],
                                p['user_emb'][keep])
  np.testing.assert_array_equal(new.params['user_bias'], 0.0)


def _bad(art, dataset, tmp_path, **change):
  return _export(art, dataset, tmp_path / 'bad.npz', seed=None, **change)


@pytest.mark.parametrize('change,message', [
    (lambda p, d: {'user_emb': p['user_emb'][1:], 'user_ids': d.user_ids[1:],
                   'user_bias': None},
     r"1 user\(s\) of atomic have no embedding .*\('u01'\)"),
    (lambda p, d: {'item_emb': p['item_emb'][:-2],
                   'item_ids': d.item_ids[:-2], 'item_bias': None},
     r"2 item\(s\) of atomic have no embedding .*\('m29', 'm30'\)"),
    (lambda p, d: {'user_ids': np.r_[d.user_ids[:-1], ['zz']]},
     r"1 embedding user id\(s\) are not users of atomic .*user_ids\) "
     r"\('zz'\)"),
    (lambda p, d: {'item_ids': np.r_[['x1', 'x2'], d.item_ids[2:]]},
     r"2 embedding item id\(s\) are not items of atomic .*\('x1', 'x2'\)"),
    (lambda p, d: {'user_emb': np.where(np.arange(60)[:, None] == 4, np.nan,
                                        p['user_emb'])},
     r"user_emb holds 20 NaN or inf value\(s\) \(as float32\) \(rows of ids "
     r"'u05'\)"),
    (lambda p, d: {'item_bias': np.full(30, 1e39)},
     r'item_bias holds 30 NaN or inf value\(s\) \(as float32\)'),
    (lambda p, d: {'user_ids': d.user_ids[:-1]},
     r'user_ids has shape \(59,\), expected \(60,\), one id per embedding '
     r'row'),
    (lambda p, d: {'item_emb': p['item_emb'][:, :5]},
     r'item_emb is float32 of shape \(30, 5\), expected float of shape '
     r'\(\?, 20\)'),
    (lambda p, d: {'user_bias': p['user_bias'][:10]},
     r'user_bias is float32 of shape \(10,\), expected float of shape '
     r'\(60,\)'),
    (lambda p, d: {'item_ids': np.arange(30) + 0.5},
     r'item_ids has dtype float64; ids must be integers or strings'),
    (lambda p, d: {'user_ids': np.r_[['u01'], d.user_ids[1:-1], ['u01']]},
     r"user_ids repeats 1 id\(s\) \('u01'\)"),
    (lambda p, d: {'user_biases': p['user_bias']},
     r'unknown key\(s\) user_biases; known: user_emb'),
    (lambda p, d: {'item_ids': None},
     r'missing key\(s\) item_ids'),
    (lambda p, d: {'mlp/0/w': np.zeros((40, 1))},
     r"holds NCF layers \('mlp/0/w'\) but config\.model\.kind='mf'"),
    (lambda p, d: {'user_ids': d.user_ids.astype(object)},
     r'holds Python objects; save ids with np\.asarray\(ids, dtype=str\)'),
])
def test_refusals(trained, tmp_path, change, message):
  art, dataset = trained
  npz = _bad(art, dataset, tmp_path, **change(art.params, dataset))
  workdir = tmp_path / 'rec'
  with pytest.raises(DataError, match=message):
    import_embeddings(_config(), npz, workdir, **QUIET)
  assert not (workdir / 'config.json').exists()
  assert not (workdir / 'frozen').exists()


def test_missing_file(tmp_path):
  with pytest.raises(DataError, match=r'nope\.npz: embeddings file not found'):
    import_embeddings(_config(), tmp_path / 'nope.npz', tmp_path / 'rec',
                      **QUIET)
  (tmp_path / 'text.npz').write_text('not a zip')
  with pytest.raises(DataError, match=r'text\.npz: not a readable \.npz'):
    import_embeddings(_config(), tmp_path / 'text.npz', tmp_path / 'rec',
                      **QUIET)


# ---- NCF: the MLP travels in the file ------------------------------------

def _ncf_npz(path, dataset, d=4, hidden=(6, 3), seed=0, **change):
  key = jax.random.PRNGKey(seed)
  p = jax.device_get(ncf.init(key, dataset.n_users, dataset.n_items, d,
                              hidden=hidden, use_bias=True))
  rng = np.random.default_rng(seed)
  pu, pi = rng.permutation(dataset.n_users), rng.permutation(dataset.n_items)
  arrays = {'user_emb': p['user_emb'][pu], 'item_emb': p['item_emb'][pi],
            'user_ids': dataset.user_ids[pu], 'item_ids': dataset.item_ids[pi],
            'user_bias': rng.normal(size=dataset.n_users)[pu],
            'item_bias': rng.normal(size=dataset.n_items)[pi]}
  for j, layer in enumerate(p['mlp']):
    arrays[f'mlp/{j}/w'], arrays[f'mlp/{j}/b'] = layer['w'], layer['b']
  arrays.update(change)
  np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
  return arrays, pu, pi


def test_ncf_import_scores_with_its_mlp(trained, tmp_path):
  _, dataset = trained
  arrays, pu, pi = _ncf_npz(tmp_path / 'ncf.npz', dataset)
  import_embeddings(_config('ncf'), tmp_path / 'ncf.npz', tmp_path / 'rec',
                    **QUIET)
  new = RecommenderArtifact.load(tmp_path / 'rec' / 'frozen')
  assert new.kind == 'ncf' and new.dim == 4
  assert new.meta['config']['model']['hidden'] == [6, 3]
  inv_u, inv_i = np.argsort(pu), np.argsort(pi)
  params = {'user_emb': arrays['user_emb'][inv_u],
            'item_emb': arrays['item_emb'][inv_i],
            'user_bias': arrays['user_bias'][inv_u].astype(np.float32),
            'item_bias': arrays['item_bias'][inv_i].astype(np.float32),
            'mlp': [{'w': arrays[f'mlp/{j}/w'], 'b': arrays[f'mlp/{j}/b']}
                    for j in range(3)]}
  users = np.arange(dataset.n_users)
  np.testing.assert_allclose(new.user_item_logits(users),
                             ncf.user_item_logits(params, users), rtol=1e-6)


@pytest.mark.parametrize('change,message', [
    ({'mlp/1/w': np.zeros((5, 3))},
     r'mlp/1/w is float64 of shape \(5, 3\), expected float of shape \(6, '
     r'3\)'),
    ({'mlp/2/w': np.zeros((3, 2)), 'mlp/2/b': np.zeros(2)},
     r'the last layer mlp/2/w has 2 outputs, expected 1'),
    ({'mlp/1/b': None}, r'mlp/1/b is missing'),
    ({'mlp/0/w': None, 'mlp/0/b': None, 'mlp/1/w': None, 'mlp/1/b': None,
      'mlp/2/w': None, 'mlp/2/b': None},
     r'no mlp/J/w, mlp/J/b layers, which an NCF needs'),
])
def test_ncf_refusals(trained, tmp_path, change, message):
  _, dataset = trained
  _ncf_npz(tmp_path / 'ncf.npz', dataset, **change)
  with pytest.raises(DataError, match=message):
    import_embeddings(_config('ncf'), tmp_path / 'ncf.npz', tmp_path / 'rec',
                      **QUIET)


def test_exclude_users_must_be_users():
  c = _config()
  c.dataset.exclude_users = ('u01', 'nobody')
  with pytest.raises(ConfigError, match=r'config\.dataset\.exclude_users: 1 '
                     r'id\(s\) are not users of atomic \(e\.g\. nobody\)'):
    load_data(c.dataset.to_dict(), c.split.to_dict())
  c.dataset.exclude_users = ('u01',)
  ds, split = load_data(c.dataset.to_dict(), c.split.to_dict())
  assert ds.n_users == split.n_users == 59 and 'u01' not in ds.user_ids


def test_launcher_refusal_is_one_line(tmp_path):
  np.savez(tmp_path / 'e.npz', user_emb=np.zeros((2, 3)))
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.import_recommender',
       '--config=experiments/configs/recommender.py:atomic,mf',
       f'--embeddings={tmp_path / "e.npz"}', f'--workdir={tmp_path / "rec"}'],
      cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu'),
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and lines[
      0].endswith('e.npz: missing key(s) item_emb, user_ids, item_ids'), (
          proc.stderr)
