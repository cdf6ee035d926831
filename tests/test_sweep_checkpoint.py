"""Checkpoints: resume is bitwise identical; load_config; sweep.json safety."""

import hashlib
import json
import os
import shutil

import jax
import numpy as np
import pytest

from conftest import truncate_checkpoint_data

from monosem_jax.sae import model
from monosem_jax.sweep import checkpoint as ckpt
from monosem_jax.sweep import spec as spec_lib
from monosem_jax.recommenders.kinds import make_scorer
from monosem_jax.sweep.driver import Checkpointing, make_sweep, train_sweep
from monosem_jax.sweep.state import SweepInputs
from monosem_jax.sweep.spec import SweepHparams, SweepSpec

SPEC = SweepSpec(kind='mf', dim=5, max_dict_size=8, epochs=4,
                 scorer_options=dict(batch_users=12, batch_items=12))


@pytest.fixture(scope='module')
def data():
  rng = np.random.default_rng(0)
  return SweepInputs.create(rng.normal(size=(40, 5)) * 0.3,
                            rng.normal(size=(30, 5)) * 0.3, np.arange(36))


SCORER = make_scorer('mf', {})


@pytest.fixture(scope='module')
def params():
  return SweepHparams.from_list([dict(dict_size=3, seed=1),
                                dict(lambda_pred=5.0, seed=2),
                                dict(lr=1e30, seed=3)], SPEC)   # diverges


class Interrupt(Exception):
  pass


def _train(spec, hparams, data, key=None, *, epochs=None, workdir=None,
           every=1, on_epoch=()):
  """:func:`train_sweep` of a one-device sweep: ``(state, histories)``."""
  result = train_sweep(
      make_sweep(spec, SCORER, data), hparams, key, epochs=epochs,
      checkpointing=None if workdir is None else Checkpointing(workdir, every),
      on_epoch=on_epoch)
  return result.state, result.histories


def _assert_same(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resume_is_bitwise_identical(tmp_path, data, params):
  key = jax.random.PRNGKey(5)
  full, hist_full = _train(SPEC, params, data, key,
                           workdir=str(tmp_path / 'full'), every=2)

  def stop_at_3(stats):
    if stats.epoch == 3:
      raise Interrupt()

  work = str(tmp_path / 'cut')
  with pytest.raises(Interrupt):
    _train(SPEC, params, data, key, workdir=work, every=2,
           on_epoch=[stop_at_3])
  mgr = ckpt.make_manager(work)
  assert mgr.latest_step() == 2          # epoch 3 was never checkpointed
  mgr.close()
  resumed, hist_res = _train(SPEC, params, data, key, workdir=work, every=2)
  _assert_same(full, resumed)
  assert len(hist_full) == len(hist_res) == 4
  for a, b in zip(hist_full, hist_res):
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  # the diverged config is reported as such and survives the round trip
  assert np.asarray(resumed.finite).tolist() == [True, True, False]
  # nothing half-written is left behind
  leftovers = [f for f in os.listdir(work) if f.startswith('.sweep.json.')]
  assert not leftovers
  assert sorted(os.listdir(os.path.join(work, ckpt.CKPT_DIR))) == ['2', '4']


def test_a_hook_stops_the_run_at_a_checkpointed_epoch(tmp_path, data, params):
  # on_epoch hooks see typed host arrays of every epoch; True stops the run
  # there, checkpointed even between two checkpoint_every epochs, and the
  # rerun resumes to the same bits as an uninterrupted run.
  key = jax.random.PRNGKey(5)
  full, _ = _train(SPEC, params, data, key)
  seen = []

  def stop_at_3(stats):
    seen.append(stats)
    return stats.epoch == 3

  work = str(tmp_path / 'cut')
  sweep = make_sweep(SPEC, SCORER, data)
  result = train_sweep(sweep, params, key, checkpointing=Checkpointing(
      work, every=2), on_epoch=[lambda s: None, stop_at_3])
  assert result.stopped and result.epoch == 3 and result.epochs == 4
  assert ckpt.saved_epochs(work) == [2, 3]
  assert [s.epoch for s in seen] == [1, 2, 3]
  s = seen[-1]
  assert (s.epochs, s.first_epoch, s.num_configs, s.steps_per_epoch) == (
      4, 0, 3, sweep.steps_per_epoch)
  assert s.loss.shape == s.l0.shape == s.finite.shape == (3,)
  assert s.finite.tolist() == [True, True, False] and s.seconds > 0
  np.testing.assert_array_equal(s.loss, result.histories[2]['loss'])
  assert s.config_steps_per_s == pytest.approx(
      3 * sweep.steps_per_epoch / s.seconds)
  again = train_sweep(sweep, params, key, checkpointing=Checkpointing(work),
                      on_epoch=[seen.append])
  assert not again.stopped and again.first_epoch == 3 and again.epoch == 4
  assert seen[-1].first_epoch == 3 and seen[-1].last
  _assert_same(full, again.state)


def test_load_config_and_restore(tmp_path, data, params):
  work = str(tmp_path / 'w')
  state, hist = _train(SPEC, params, data, jax.random.PRNGKey(5),
                       epochs=2, workdir=work)
  sae0, hp0 = ckpt.load_config(work, 0)
  assert sae0['W'].shape == (3, 5) and sae0['b_lat'].shape == (3,)
  np.testing.assert_array_equal(sae0['W'], np.asarray(state.sae['W'])[0, :3])
  np.testing.assert_array_equal(sae0['b_pre'], np.asarray(state.sae['b_pre'])[0])
  assert hp0['dict_size'] == 3 and hp0['seed'] == 1 and hp0['finite']
  assert hp0['epoch'] == 2 and hp0['lambda_emb'] == 0.1
  # the trimmed params are a working size-3 SAE
  cfg = model.SAEConfig(**hp0['sae_config'])
  x = np.asarray(data.item_emb)
  full = model.reconstruct(jax.tree.map(lambda a: a[0], state.sae), x,
                           SPEC.sae, mask=model.latent_mask(3, 8))
  np.testing.assert_allclose(model.reconstruct(sae0, x, cfg), full, rtol=1e-5,
                             atol=1e-6)
  _, hp2 = ckpt.load_config(work, 2)
  assert not hp2['finite'] and hp2['diverged_step'] >= 0
  spec, p2, st2, hist2 = ckpt.restore_sweep(work)
  assert spec == SPEC and p2.configs() == params.configs()
  _assert_same(state, st2)
  with pytest.raises(IndexError):
    ckpt.load_config(work, 3)


def test_workdir_of_another_sweep_is_refused(tmp_path, data, params):
  work = str(tmp_path / 'w')
  _train(SPEC, params, data, epochs=1, workdir=work)
  other = SweepHparams.from_list([dict(seed=9)], SPEC)
  with pytest.raises(ValueError, match='different sweep'):
    _train(SPEC, other, data, epochs=1, workdir=work)


def test_workdirs_of_an_older_format_are_refused_in_one_line(tmp_path, data,
                                                             params):
  from monosem_jax import checkpoints
  from monosem_jax.errors import WorkdirError
  from monosem_jax.sweep.spec import SweepConfigError
  work = str(tmp_path / 'w')
  _train(SPEC, params, data, epochs=1, workdir=work)
  path = os.path.join(work, ckpt.SWEEP_JSON)
  with open(path) as f:
    doc = json.load(f)
  doc.pop('format')
  doc['params'] = doc.pop('hparams')        # the layout before issue 8
  with open(path, 'w') as f:
    json.dump(doc, f)
  with pytest.raises(SweepConfigError, match='sweep.json format 1: written by '
                     'another version'):
    ckpt.restore_sweep(work)
  m = checkpoints.make_manager(str(tmp_path / 'c'))
  m.save(1, args=checkpoints.ocp.args.Composite(
      state=checkpoints.ocp.args.StandardSave({'leaf_0000': np.zeros(2)}),
      meta=checkpoints.ocp.args.JsonSave({'epoch': 1})))   # no format
  with pytest.raises(WorkdirError, match='checkpoint format 1, this one '
                     'reads 2'):
    checkpoints.restore(m, {'w': np.zeros(2)})
  m.close()


#: SPEC as the version before the kind registry wrote it into sweep.json
#: (format 2): one field per option of every kind, the other kind's unused.
FORMAT2_SPEC = {
    'kind': 'mf', 'dim': 5, 'max_dict_size': 8, 'activation': 'relu',
    'k_max': 0, 'prefixes': [], 'tied': True, 'normalize': True,
    'pre_bias': True, 'pred_loss': 'mse', 'ncf_pairs': 'positive',
    'batch_users': 12, 'batch_items': 12, 'batch_pairs': 256,
    'steps_per_epoch': 0, 'epochs': 4, 'mf_pred_impl': 'gram',
    'precision': 'float32', 'mp_signed': False}


def _format2(spec: dict, hparams: SweepHparams) -> str:
  return json.dumps({'format': 2, 'spec': spec,
                     'hparams': hparams.to_json_dict()})


def test_a_format2_spec_loads_with_its_options(params):
  spec, hparams, _ = spec_lib.loads(_format2(FORMAT2_SPEC, params))
  assert spec == SPEC and hparams.configs() == params.configs()
  ncf = dict(FORMAT2_SPEC, kind='ncf', normalize=False, pre_bias=False,
             pred_loss='bce', ncf_pairs='mixed', batch_pairs=32)
  assert spec_lib.loads(_format2(ncf, params))[0] == SweepSpec(
      kind='ncf', dim=5, max_dict_size=8, epochs=4,
      scorer_options=dict(batch_pairs=32, ncf_pairs='mixed'))
  with pytest.raises(spec_lib.SweepConfigError,
                     match=r"ncf_pairs='all': expected one of positive"):
    spec_lib.loads(_format2(dict(ncf, ncf_pairs='all'), params))


def test_a_sweep_of_the_previous_format_opens_and_resumes(tmp_path, data,
                                                          params):
  """A format-2 sweep.json and the checkpoints that recorded its digest (as
  the version before the kind registry wrote them): read verified, resumed
  bitwise, and kept in its format."""
  work = str(tmp_path / 'old')
  _train(SPEC, params, data, epochs=1, workdir=work)
  path = os.path.join(work, ckpt.SWEEP_JSON)
  with open(path) as f:
    doc = json.load(f)
  doc.update(format=2, spec=FORMAT2_SPEC)
  with open(path, 'w') as f:
    json.dump(doc, f, indent=1)
  digest = hashlib.sha256(json.dumps(
      {'spec': doc['spec'], 'hparams': doc['hparams']},
      sort_keys=True).encode()).hexdigest()
  meta_path = os.path.join(work, ckpt.CKPT_DIR, '1', 'meta', 'metadata')
  with open(meta_path) as f:
    meta = json.load(f)
  assert meta['sweep_sha256'] != digest
  meta['sweep_sha256'] = digest            # what that version recorded
  with open(meta_path, 'w') as f:
    json.dump(meta, f)
  read = ckpt.read_sweep(work)
  assert read.spec == SPEC and read.verified
  state, _ = _train(SPEC, params, data, epochs=2, workdir=work)
  fresh, _ = _train(SPEC, params, data, epochs=2,
                    workdir=str(tmp_path / 'fresh'))
  _assert_same(state, fresh)
  with open(path) as f:
    assert json.load(f)['format'] == 2
  assert ckpt.read_sweep(work).verified


def test_the_checkpoint_benchmark_times_both_kinds_of_save(tmp_path):
  from experiments import bench_checkpoint
  out = bench_checkpoint.main(['--configs=3', '--saves=2', '--work_s=0'])
  row = out['results'][0]
  assert row['configs'] == 3
  assert len(row['synchronous']) == len(row['background']) == 2
  assert all(t > 0 for t in row['synchronous'] + row['background'])
  assert len(row['synchronous_unhashed']) == len(row['hash_seconds']) == 2
  assert row['state_mb'] > 0


# Nothing read back is trusted (issue 16, case 7) ----------------------------

#: Leaves large enough for orbax to store them in plain data files (small
#: ones sit inside its CRC-checked b-tree nodes).
BIG = SweepSpec(kind='mf', dim=5, max_dict_size=64, epochs=4,
                scorer_options=dict(batch_users=12, batch_items=12))
DENSE = SweepHparams.from_list([dict(seed=1), dict(lambda_pred=5.0, seed=2)],
                               BIG)
REFUSED = (r'checkpoints/{step}/state(: leaf \d+ \(.*\) does not match the '
           r'SHA-256 recorded when it was saved|: cannot be read)')


def _flip_middle_of_the_data(step_dir: str) -> None:
  """Flips 4 bytes in the middle of every array data file of a step."""
  for root, _, names in os.walk(os.path.join(step_dir, 'state')):
    if os.path.basename(root) != 'd':
      continue
    for name in names:
      path = os.path.join(root, name)
      with open(path, 'r+b') as f:
        data = bytearray(f.read())
        at = len(data) // 2
        f.seek(at)
        f.write(bytes(255 - b for b in data[at:at + 4]))


def _edit_leaf(step_dir: str, leaf: int, edit) -> None:
  """Rewrites a step with leaf ``leaf`` edited and its meta (hashes) kept,
  as a tool editing the checkpoint in place would."""
  from monosem_jax import checkpoints
  m = checkpoints.make_manager(os.path.dirname(step_dir))
  step = int(os.path.basename(step_dir))
  out = m.restore(step, args=checkpoints.ocp.args.Composite(
      state=checkpoints.ocp.args.StandardRestore(),
      meta=checkpoints.ocp.args.JsonRestore()))
  m.close()
  leaves = dict(out['state'])
  key = f'leaf_{leaf:04d}'
  leaves[key] = edit(np.array(leaves[key]))
  shutil.rmtree(step_dir)
  m = checkpoints.make_manager(os.path.dirname(step_dir))
  m.save(step, args=checkpoints.ocp.args.Composite(
      state=checkpoints.ocp.args.StandardSave(leaves),
      meta=checkpoints.ocp.args.JsonSave(out['meta'])), force=True)
  m.wait_until_finished()
  m.close()


def _flip_4_bytes(x):
  raw = x.view(np.uint8).reshape(-1)
  raw[8:12] ^= 0xFF
  return x


def test_an_edited_sweep_json_is_refused_naming_it(tmp_path, data, params):
  from monosem_jax.errors import WorkdirError
  work = str(tmp_path / 'w')
  _train(SPEC, params, data, epochs=1, workdir=work)
  path = os.path.join(work, ckpt.SWEEP_JSON)
  original = open(path).read()
  for field, values in (('lambda_pred', [5.0, 7.0, 1.0]),
                        ('dict_size', [8, 8, 8])):
    doc = json.loads(original)
    doc['hparams'][field] = values
    with open(path, 'w') as f:
      json.dump(doc, f)
    with pytest.raises(WorkdirError, match=r'sweep.json does not describe the '
                       r'configs its checkpoint .*/checkpoints/1 was trained'):
      ckpt.restore_sweep(work)
  with open(path, 'w') as f:
    f.write(original[:len(original) // 2])              # truncated
  with pytest.raises(WorkdirError, match=r'sweep.json: cannot be read \('
                     r'JSONDecodeError.*truncated or was edited'):
    ckpt.restore_sweep(work)
  with open(path, 'w') as f:
    f.write(original)
  assert ckpt.restore_sweep(work)[1].configs() == params.configs()


def test_edited_or_flipped_checkpoint_bytes_are_refused(tmp_path, data):
  from monosem_jax.errors import WorkdirError
  work = str(tmp_path / 'w')
  _train(BIG, DENSE, data, epochs=1, workdir=work)
  step = os.path.join(work, ckpt.CKPT_DIR, '1')
  _edit_leaf(step, 0, _flip_4_bytes)                    # the SAE's W
  with pytest.raises(WorkdirError, match=r"checkpoints/1/state: leaf 0 "
                     r"\(\.sae\['W'\]\) does not match the SHA-256 recorded"):
    ckpt.restore_sweep(work)
  work = str(tmp_path / 'flipped')
  _train(BIG, DENSE, data, epochs=1, workdir=work)
  _flip_middle_of_the_data(os.path.join(work, ckpt.CKPT_DIR, '1'))
  with pytest.raises(WorkdirError, match=REFUSED.format(step=1)):
    ckpt.restore_sweep(work)


def test_flipped_bytes_in_adam_state_refuse_the_resume(tmp_path, data):
  from monosem_jax.errors import WorkdirError
  work = str(tmp_path / 'w')
  key = jax.random.PRNGKey(5)
  _train(BIG, DENSE, data, key, epochs=2, workdir=work)
  _edit_leaf(os.path.join(work, ckpt.CKPT_DIR, '2'), 4, _flip_4_bytes)
  with pytest.raises(WorkdirError, match=r"leaf 4 \(\.opt\.mu\['W'\]\) does "
                     'not match'):   # rather than a healthy config "diverged"
    _train(BIG, DENSE, data, key, epochs=4, workdir=work)
  work = str(tmp_path / 'flipped')
  _train(BIG, DENSE, data, key, epochs=2, workdir=work)
  _flip_middle_of_the_data(os.path.join(work, ckpt.CKPT_DIR, '2'))
  with pytest.raises(WorkdirError, match=REFUSED.format(step=2)):
    _train(BIG, DENSE, data, key, epochs=4, workdir=work)


def test_a_truncated_checkpoint_is_refused_in_one_line(tmp_path, data, params):
  from monosem_jax.errors import WorkdirError
  work = str(tmp_path / 'w')
  _train(SPEC, params, data, epochs=1, workdir=work)
  truncate_checkpoint_data(os.path.join(work, ckpt.CKPT_DIR, '1'))
  with pytest.raises(WorkdirError, match=r'checkpoints/1/state: cannot be '
                     r'read \(.*\); the checkpoint is truncated or corrupt'):
    ckpt.restore_sweep(work)


def test_leaf_hashes_are_of_the_values_saved_in_the_background(tmp_path):
  from monosem_jax import checkpoints
  m = checkpoints.make_manager(str(tmp_path), async_saves=True)
  x = np.arange(6.0).reshape(2, 3)
  checkpoints.save(m, 1, {'x': x}, {}, wait=False)
  x += 1                                   # changed after save() returned
  m.wait_until_finished()
  state, meta = checkpoints.restore(m, {'x': np.zeros((2, 3))})
  m.close()
  np.testing.assert_array_equal(state['x'], np.arange(6.0).reshape(2, 3))
  assert meta['state_sha256'] == [checkpoints.leaf_sha256(state['x'])]


def test_a_checkpoint_without_hashes_restores_unverified(tmp_path):
  from monosem_jax import checkpoints
  m = checkpoints.make_manager(str(tmp_path))
  m.save(1, args=checkpoints.ocp.args.Composite(    # as an older version
      state=checkpoints.ocp.args.StandardSave({'leaf_0000': np.ones(2)}),
      meta=checkpoints.ocp.args.JsonSave({'format': checkpoints.FORMAT})))
  m.wait_until_finished()
  state, meta = checkpoints.restore(m, {'w': np.zeros(2)})
  m.close()
  assert state['w'].tolist() == [1.0, 1.0] and not checkpoints.verified(meta)


def test_a_failed_restore_silences_only_closed_loop_noise(monkeypatch, capsys):
  # After a refused restore, orbax's pending reads report 'Event loop is
  # closed' through any of three hooks (once through sys.excepthook, which
  # printed a traceback beside the launcher's one-line refusal in CI).
  import sys
  import threading
  from types import SimpleNamespace
  from monosem_jax import checkpoints
  for name in ('unraisablehook', 'excepthook'):
    monkeypatch.setattr(sys, name, getattr(sys, '__' + name + '__'))
  monkeypatch.setattr(threading, 'excepthook', threading.__excepthook__)
  checkpoints._drop_closed_loop_noise()
  checkpoints._drop_closed_loop_noise()        # idempotent
  noise, other = RuntimeError('Event loop is closed'), RuntimeError('real')
  sys.excepthook(RuntimeError, noise, None)
  threading.excepthook(SimpleNamespace(exc_type=RuntimeError, exc_value=noise,
                                       exc_traceback=None, thread=None))
  sys.unraisablehook(SimpleNamespace(exc_type=RuntimeError, exc_value=noise,
                                     exc_traceback=None, err_msg=None,
                                     object=None))
  assert capsys.readouterr().err == ''
  sys.excepthook(RuntimeError, other, None)
  assert 'real' in capsys.readouterr().err
