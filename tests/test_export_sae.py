"""One SAE in three lines: export a sweep config, load it, equal codes.

The exported SAE (``python -m experiments.export_sae``, ``load_sae``) must
give the sweep's own codes (the analysis's ``config_activations`` and
``Codec``) for every activation kind, per sample (BatchTopK included), and
decode as ``model.reconstruct``; the writer and the reader refuse what they
cannot stand behind.
"""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
import safetensors.numpy

from monosem_jax.experiments.configs import sweep as sweep_configs
from monosem_jax.experiments.launch import refusals_in_one_line
from monosem_jax import load_sae
from monosem_jax.analysis import export as sweep_export
from monosem_jax.analysis import interventions, pipeline, workdirs
from monosem_jax.errors import MonosemError, WorkdirError
from monosem_jax.sae import export, model
from monosem_jax.sweep.runner import run_sweep
from monosem_jax.sweep.spec import FIELDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def sweeps(sweep_dir):
  """name -> sweep folder: 'relu' (the conftest sweep: MF-SAE, normalised,
  pre-bias, tied; 4 configs, dict_size 8 and 16) and 'batchtopk', a tiny
  sweep on the same recommender with the other options: BatchTopK with
  k = 2 of k_max = 3, Matryoshka prefixes (4, 8), untied, no normalisation,
  no pre-bias; its config 1 diverges (lr 1e30)."""
  s = sweep_configs.get_config('synthetic,mf')
  s.recommender_workdir = str(sweep_dir / 'rec')
  s.epochs = 1
  s.plan_memory = False
  s.spec.batch_users = s.spec.batch_items = 64
  s.spec.steps_per_epoch = 2
  s.spec.update(dict(activation='batchtopk', k_max=3, prefixes=(4, 8),
                     tied=False, normalize=False, pre_bias=False))
  s.grid = sweep_configs.grid_config(dict_size=(8,), k=(2,), lr=(1e-3, 1e30))
  run_sweep(s, str(sweep_dir / 'batchtopk'), log=lambda _: None)
  return {'relu': str(sweep_dir / 'sweep'),
          'batchtopk': str(sweep_dir / 'batchtopk')}


CASES = [('relu', 0), ('relu', 3), ('batchtopk', 0)]


@pytest.mark.parametrize('name,index', CASES)
def test_exported_codes_equal_the_sweeps(sweeps, tmp_path, name, index):
  out = sweep_export.export_config(sweeps[name], index, tmp_path / 'sae')
  sae = load_sae(out)
  view = workdirs.open_sweep(sweeps[name])
  params, hp = view.config(index)
  assert (sae.dim, sae.dict_size) == (view.spec.dim, hp['dict_size'])
  codec = interventions.Codec.of(params, hp)
  art = view.artifact
  for x in (art.item_emb, art.user_emb[:50]):
    codes = sae.encode(x)
    assert isinstance(codes, np.ndarray)
    assert codes.shape == (len(x), hp['dict_size'])
    sweep = pipeline.config_activations(view, x, [index])[0]
    np.testing.assert_allclose(codes, sweep[:, :hp['dict_size']], atol=1e-6,
                               rtol=1e-6)
    assert not sweep[:, hp['dict_size']:].any()
    np.testing.assert_allclose(codes, codec.encode(x)[0], atol=1e-6,
                               rtol=1e-6)
  if name != 'relu':
    assert ((codes > 0).sum(1) <= hp['k']).all()


@pytest.mark.parametrize('name,index', CASES)
def test_decode_is_the_models_reconstruction(sweeps, tmp_path, name, index):
  sae = load_sae(sweep_export.export_config(sweeps[name], index,
                                            tmp_path / 'sae'))
  view = workdirs.open_sweep(sweeps[name])
  params, hp = view.config(index)
  cfg = model.per_sample(model.SAEConfig(**hp['sae_config']))
  x = view.artifact.item_emb
  want = model.reconstruct(params, x, cfg, hp['k'] or None)
  np.testing.assert_allclose(sae.decode(sae.encode(x), x), want, atol=1e-6,
                             rtol=1e-6)
  np.testing.assert_allclose(sae.reconstruct(x), want, atol=1e-6, rtol=1e-6)
  if cfg.normalize:   # each row de-normalised with its own statistics
    with pytest.raises(ValueError, match='pass x'):
      sae.decode(sae.encode(x))
  else:
    np.testing.assert_allclose(sae.decode(sae.encode(x)), want, atol=1e-6,
                               rtol=1e-6)


@pytest.mark.parametrize('activation', ['relu', 'topk', 'batchtopk'])
@pytest.mark.parametrize('mf', [True, False])
def test_every_architecture_round_trips(tmp_path, activation, mf):
  """write_sae -> load_sae on hand-made SAEs: the analysis's Codec codes and
  model.reconstruct, MF-SAE (normalised, pre-bias, untied) and NCF-SAE (raw,
  tied), each with Matryoshka prefixes."""
  topk = activation != 'relu'
  cfg = model.SAEConfig(dim=6, dict_size=10, activation=activation,
                        k_max=4 if topk else 0, prefixes=(3, 10), tied=not mf,
                        normalize=mf, pre_bias=mf)
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  params = model.init(keys[0], cfg)
  params['b_lat'] = 0.1 * jax.random.normal(keys[1], (10,))
  if mf:
    params['b_pre'] = 0.1 * jax.random.normal(keys[2], (6,))
    params['W_dec'] = params['W_dec'] + 0.1 * jax.random.normal(keys[3],
                                                                (10, 6))
  k = 3 if topk else None
  sae = load_sae(export.write_sae(tmp_path / 'sae', params, cfg, k))
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (20, 6)))
  codes = sae.encode(x)
  np.testing.assert_allclose(codes, interventions.Codec(params, cfg, k)
                             .encode(x)[0], rtol=1e-6, atol=1e-6)
  if topk:
    assert ((codes > 0).sum(1) <= 3).all()
  np.testing.assert_allclose(
      sae.decode(codes, x), model.reconstruct(params, x, model.per_sample(cfg),
                                              k), rtol=1e-6, atol=1e-6)


def test_batchtopk_codes_do_not_depend_on_the_batch(sweeps, tmp_path):
  sae = load_sae(sweep_export.export_config(sweeps['batchtopk'], 0,
                                            tmp_path / 'sae'))
  x = workdirs.open_sweep(sweeps['batchtopk']).artifact.item_emb
  whole = sae.encode(x)
  perm = np.random.default_rng(0).permutation(len(x))
  np.testing.assert_array_equal(sae.encode(x[perm]), whole[perm])
  for rows in (slice(0, 1), slice(0, 7), slice(50, 53)):
    # the same latents; values to float32 rounding (XLA's product kernel
    # for one row is not the one for many)
    part = sae.encode(x[rows])
    np.testing.assert_array_equal(part > 0, whole[rows] > 0)
    np.testing.assert_allclose(part, whole[rows], rtol=1e-6, atol=1e-7)
  # training's batch-wide rule would spend k * batch latents unevenly
  assert sae.cfg['activation'] == 'batchtopk'
  assert sae.cfg['encode_activation'] == 'topk'
  assert ((whole > 0).sum(1) <= sae.cfg['k']).all()


def test_safetensors_and_cfg_json_fields(sweeps, tmp_path):
  view = workdirs.open_sweep(sweeps['batchtopk'])
  params, hp = view.config(0)
  out = sweep_export.export_config(sweeps['batchtopk'], 0, tmp_path / 'sae')
  assert sorted(os.listdir(out)) == ['cfg.json', 'sae.safetensors']
  t = safetensors.numpy.load_file(os.path.join(out, 'sae.safetensors'))
  d, m = view.spec.dim, hp['dict_size']
  assert {k: v.shape for k, v in t.items()} == {
      'W_enc': (d, m), 'b_enc': (m,), 'W_dec': (m, d), 'b_dec': (d,)}
  np.testing.assert_array_equal(t['W_enc'], np.asarray(params['W']).T)
  np.testing.assert_array_equal(t['W_dec'], params['W_dec'])     # untied
  assert not t['b_dec'].any()                                    # no pre-bias
  with open(os.path.join(out, 'cfg.json')) as f:
    cfg = json.load(f)
  assert cfg['format'] == export.FORMAT
  assert cfg['format_version'] == export.FORMAT_VERSION
  assert (cfg['dim'], cfg['dict_size'], cfg['d_in'], cfg['d_sae']) == (
      d, m, d, m)
  assert (cfg['activation'], cfg['encode_activation'], cfg['k'],
          cfg['prefixes']) == ('batchtopk', 'topk', 2, [4, 8])
  assert (cfg['tied'], cfg['pre_bias'], cfg['normalize']) == (False, False,
                                                              False)
  assert cfg['normalize_activations'] == 'none'
  assert cfg['architecture'] == 'topk' and cfg['activation_fn_kwargs'] == {
      'k': 2}
  assert cfg['hparams'] == {f: hp[f] for f in FIELDS}
  assert cfg['training']['finite'] and cfg['training']['epoch'] == 1
  rec = cfg['recommender']
  assert rec['fingerprint'] == view.artifact.fingerprint
  assert len(rec['fingerprint']) == 64
  assert (rec['kind'], rec['dataset']) == ('mf', 'synthetic')
  assert cfg['sweep'] == {'name': 'batchtopk', 'workdir': view.workdir,
                          'config': 0, 'num_configs': 2}
  # a tied MF-SAE: W_dec is a copy of W_enc^T, b_dec its pre-bias
  params, hp = workdirs.open_sweep(sweeps['relu']).config(3)
  out = sweep_export.export_config(sweeps['relu'], 3, tmp_path / 'b')
  t = safetensors.numpy.load_file(os.path.join(out, 'sae.safetensors'))
  np.testing.assert_array_equal(t['W_dec'], t['W_enc'].T)
  np.testing.assert_array_equal(t['b_dec'], params['b_pre'])
  with open(os.path.join(out, 'cfg.json')) as f:
    cfg = json.load(f)
  assert (cfg['activation'], cfg['k'], cfg['prefixes'], cfg['tied'],
          cfg['normalize'], cfg['normalize_activations']) == (
              'relu', None, [], True, True, 'layer_norm')
  assert cfg['hparams']['lambda_pred'] == 10.0


def test_launcher_writes_the_export(sweeps, tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  out = tmp_path / 'exported' / 'sae3'
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.export_sae',
       f'--workdir={sweeps["relu"]}', '--index=3', f'--out={out}'],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert sorted(os.listdir(out)) == ['cfg.json', 'sae.safetensors']
  assert load_sae(out).cfg['sweep']['config'] == 3
  assert str(out) in proc.stdout


def _refusal(*args, **kwargs):
  """What the launcher prints for ``export_config(*args, **kwargs)``."""
  main = refusals_in_one_line(
      lambda argv: sweep_export.export_config(*args, **kwargs))
  with pytest.raises(SystemExit) as e:
    main([])
  return str(e.value.code)


def test_refusals_in_one_line(sweeps, tmp_path):
  out = tmp_path / 'sae'
  msg = _refusal(sweeps['relu'], 4, out)
  assert msg.startswith('error: ') and '\n' not in msg
  assert '[0, 3]' in msg and '--index=4' in msg
  msg = _refusal(sweeps['relu'], -1, out)
  assert '[0, 3]' in msg
  # a diverged config: refused unless asked for, naming the step
  msg = _refusal(sweeps['batchtopk'], 1, out)
  assert 'diverged at step' in msg and '--allow_diverged' in msg
  assert not out.exists()                      # nothing half-written
  sweep_export.export_config(sweeps['batchtopk'], 1, out, allow_diverged=True)
  assert load_sae(out).cfg['training']['finite'] is False
  # a folder holding something else is never replaced
  foreign = tmp_path / 'mine'
  foreign.mkdir()
  (foreign / 'notes.txt').write_text('keep me')
  msg = _refusal(sweeps['relu'], 0, foreign)
  assert 'notes.txt' in msg and 'not a previous SAE export' in msg
  assert os.listdir(foreign) == ['notes.txt']
  (tmp_path / 'afile').write_text('x')
  with pytest.raises(export.ExportError, match='is a file'):
    sweep_export.export_config(sweeps['relu'], 0, tmp_path / 'afile')
  # an export with an extra file is not "a previous export" either
  prev = sweep_export.export_config(sweeps['relu'], 0, tmp_path / 'prev')
  with open(os.path.join(prev, 'extra.npy'), 'w') as f:
    f.write('x')
  with pytest.raises(export.ExportError, match='extra.npy'):
    sweep_export.export_config(sweeps['relu'], 1, prev)
  with pytest.raises(WorkdirError, match='no sweep.json'):
    sweep_export.export_config(str(tmp_path), 0, tmp_path / 'x')


def test_a_previous_export_is_replaced_as_one_set(sweeps, tmp_path):
  out = tmp_path / 'sae'
  sweep_export.export_config(sweeps['relu'], 0, out)
  sweep_export.export_config(sweeps['relu'], 3, out)
  sae = load_sae(out)
  assert sae.cfg['sweep']['config'] == 3 and sae.dict_size == 16
  assert sorted(os.listdir(tmp_path)) == ['sae']   # no temporary siblings
  empty = tmp_path / 'empty'
  empty.mkdir()
  assert load_sae(sweep_export.export_config(sweeps['relu'], 0, empty))


def test_load_refusals(sweeps, tmp_path):
  out = sweep_export.export_config(sweeps['batchtopk'], 0, tmp_path / 'sae')
  cfg_path = os.path.join(out, 'cfg.json')
  weights = os.path.join(out, 'sae.safetensors')
  with open(cfg_path) as f:
    cfg = json.load(f)
  tensors = safetensors.numpy.load_file(weights)

  def refused(pattern):
    with pytest.raises(export.ExportError, match=pattern) as e:
      load_sae(out)
    assert '\n' not in str(e.value) and isinstance(e.value, MonosemError)

  def write(c=None, t=None):
    with open(cfg_path, 'w') as f:
      json.dump(c or cfg, f)
    safetensors.numpy.save_file(t or tensors, weights)

  with pytest.raises(export.ExportError, match='no cfg.json or sae.safe'):
    load_sae(tmp_path)
  write({**cfg, 'format_version': 99})
  refused('version 99; this monosem-jax reads .* version 1')
  d = cfg['dim']
  write({**cfg, 'dict_size': 9})
  refused(re.escape(f'W_enc has shape ({d}, 8); cfg.json (dim={d}, '
                    f'dict_size=9) gives ({d}, 9)'))
  write(t={**tensors, 'b_dec': tensors['b_dec'][:-1]})
  refused(re.escape(f'b_dec has shape ({d - 1},)'))
  write(t={k: v for k, v in tensors.items() if k != 'W_dec'})
  refused('tensors .* expected')
  write({**cfg, 'tied': True})
  refused('tied but W_dec != W_enc')
  write({**cfg, 'k': 0})
  refused('k=0')
  write({k: v for k, v in cfg.items() if k != 'prefixes'})
  refused('missing field')
  write(t={**tensors, 'b_dec': np.ones_like(tensors['b_dec'])})
  refused('pre_bias false but b_dec is not zero')
  write(t={**tensors, 'b_enc': np.full_like(tensors['b_enc'], np.nan)})
  refused('b_enc holds NaN')
  write()
  assert load_sae(out).dict_size == 8
  with pytest.raises(ValueError, match=rf'expected \(N, {d}\)'):
    load_sae(out).encode(np.zeros((3, 5), np.float32))


def test_readme_three_lines_run(sweeps, tmp_path, monkeypatch):
  """README's "Take one SAE away" lines, verbatim."""
  with open(os.path.join(ROOT, 'README.md')) as f:
    text = f.read()
  section = text.split('\n### Take one SAE away\n', 1)[1].split('\n#', 1)[0]
  command = re.search(r'```bash\n(.*?)```', section, re.S).group(1)
  assert 'python -m experiments.export_sae' in command
  code = re.search(r'```python\n(.*?)```', section, re.S).group(1)
  path = re.search(r"load_sae\('([^']+)'\)", code).group(1)
  monkeypatch.chdir(tmp_path)
  sweep_export.export_config(sweeps['relu'], 3, path)
  item_emb = workdirs.open_sweep(sweeps['relu']).artifact.item_emb
  scope = {'item_embeddings': item_emb}
  exec(code, scope)  # pylint: disable=exec-used
  assert scope['codes'].shape == (len(item_emb), scope['sae'].dict_size)


def test_load_sae_import_is_light():
  """``from monosem_jax import load_sae`` loads no orbax, flax or matplotlib."""
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  code = ('import sys; from monosem_jax import load_sae; print(sorted({m.split'
          '(".")[0] for m in sys.modules} & {"orbax", "flax", "matplotlib", '
          '"pandas", "optax"}))')
  proc = subprocess.run([sys.executable, '-c', code], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == '[]'
