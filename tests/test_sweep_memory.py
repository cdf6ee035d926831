"""Memory planning from XLA's memory analysis, and sweeps run in blocks of
configs when they do not fit (issue 11, item 5)."""

import dataclasses

import jax
import numpy as np
import pytest

from experiments import bench_sweep
from monosem_jax.errors import ConfigError
from monosem_jax.recommenders.kinds import make_scorer
from monosem_jax.sweep import driver, memory, step
from monosem_jax.sweep.sharding import Placement
from monosem_jax.sweep.spec import SweepHparams, SweepSpec
from monosem_jax.sweep.state import SweepInputs


@pytest.fixture(scope='module')
def mf():
  spec, data, scorer = bench_sweep._workload('mf', 2, 20, 'gram')
  return spec, bench_sweep._params(spec, 8), data, scorer


def test_the_fit_predicts_a_larger_program(mf):
  spec, hparams, data, scorer = mf
  p = memory.plan(spec, hparams, data, scorer, device_bytes=None, margin=0.0)
  assert p.per_config_bytes > 0 and p.shared_bytes > 0
  measured = memory._program_bytes(spec, hparams, data, scorer)   # C = 8
  assert p.bytes_for(8) == pytest.approx(measured, rel=0.15)
  # with the default margin the prediction is not below the measurement
  assert memory.MemoryPlan(p.shared_bytes, p.per_config_bytes,
                           None).bytes_for(8) >= measured


def test_max_configs_and_the_log_line():
  p = memory.MemoryPlan(shared_bytes=100e6, per_config_bytes=1e6,
                        device_bytes=1.15 * 1100e6, margin=0.15)
  assert p.max_configs == 1000      # (1100e6 - 100e6) / 1e6
  assert p.bytes_for(1000) == pytest.approx(1.15 * 1100e6)
  assert 'fits up to 1,000 configs' in p.describe(64)
  with_state = memory.MemoryPlan(100e6, 1e6, None, state_bytes_per_config=2**18)
  assert ('(0.250 weights and Adam state, 0.704 activations and gradients)'
          in with_state.describe(4))
  cpu = memory.MemoryPlan(100e6, 1e6, None)
  assert cpu.max_configs is None and 'device limit' not in cpu.describe(4)
  assert np.isclose(cpu.bytes_for(0), 115e6)


def test_chunk_for_keeps_every_state_and_refuses_what_cannot_fit():
  p = memory.MemoryPlan(shared_bytes=100e6, per_config_bytes=1e6,
                        device_bytes=1.15 * 1100e6, margin=0.15,
                        state_bytes_per_config=0.1e6)
  assert p.chunk_for(1000) is None and p.chunk_for(500) is None
  # 4000 configs: 1100e6 - 100e6 - 0.1e6 * 4000 = 600e6 of room -> 600
  assert p.chunk_for(4000) == 600
  with pytest.raises(ConfigError, match='do not fit the device even one block'):
    p.chunk_for(10_001)              # the states alone take 1000.1 MB
  assert memory.MemoryPlan(1, 1, None).chunk_for(10**9) is None   # CPU
  assert 'in 7 sequential blocks of 600' in memory.describe_chunks(4000, 600)


def test_state_bytes_per_config_counts_weights_and_adam_moments():
  spec = SweepSpec(kind='mf', dim=20, max_dict_size=64)
  params = 64 * 20 + 64 + 20          # tied W, encoder bias, pre-bias
  # weights + Adam mu + nu (float32), Adam count (int32), finite (bool),
  # diverged_step (int32)
  assert memory.state_bytes_per_config(spec) == 3 * 4 * params + 4 + 1 + 4


def _chunk_case():
  rng = np.random.default_rng(0)
  inputs = SweepInputs.create(rng.normal(size=(40, 4)),
                              rng.normal(size=(30, 4)), np.arange(32))
  spec = SweepSpec(kind='mf', dim=4, max_dict_size=6,
                   scorer_options=dict(batch_users=8, batch_items=8))
  hparams = SweepHparams.grid(spec, lambda_pred=[0.0, 1.0, 2.0, 1e30, 4.0],
                              dict_size=[3, 6])          # C = 10, one diverges
  return spec, hparams, inputs, make_scorer('mf', {})


def test_chunked_epochs_equal_one_program_and_separate_blocks():
  spec, hparams, inputs, scorer = _chunk_case()
  whole = driver.make_sweep(spec, scorer, inputs)
  blocks = driver.make_sweep(spec, scorer, inputs,
                             Placement(chunk=4))         # 4 + 4 + 2(+2)
  state0 = whole.init(hparams, jax.random.PRNGKey(0))
  w, chunked = state0, state0
  for _ in range(2):
    w, h_whole = whole.epoch(w, hparams)
    chunked, h_chunk = blocks.epoch(chunked, hparams)
  assert not np.asarray(chunked.finite).all()       # the 1e30 config diverged
  np.testing.assert_array_equal(chunked.finite, w.finite)
  np.testing.assert_array_equal(chunked.diverged_step, w.diverged_step)
  assert int(chunked.step) == int(w.step) and int(chunked.epoch) == 2
  for a, b in zip(jax.tree.leaves(chunked.sae), jax.tree.leaves(w.sae)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  for k in h_whole:
    np.testing.assert_allclose(h_chunk[k], h_whole[k], rtol=1e-6)
  # Bitwise what separate sweeps of each block give.
  for block in (np.arange(0, 4), np.arange(4, 8)):
    sub = state0.take(block)
    hp = hparams.take(block)
    for _ in range(2):
      sub, _ = step.run_epoch(spec, hp, sub, inputs, scorer)
    for a, b in zip(jax.tree.leaves(sub.sae), jax.tree.leaves(chunked.sae)):
      np.testing.assert_array_equal(a, np.asarray(b)[block])
  with pytest.raises(ConfigError, match='config_chunk=0'):
    Placement(chunk=0)


def _train(spec, hparams, inputs, scorer, key, chunk, **kw):
  sweep = driver.make_sweep(spec, scorer, inputs, Placement(chunk=chunk))
  result = driver.train_sweep(sweep, hparams, key, **kw)
  return result.state, result.histories


def test_train_sweep_checkpoints_do_not_depend_on_the_chunk(tmp_path):
  spec, hparams, inputs, scorer = _chunk_case()
  key = jax.random.PRNGKey(1)
  ref, ref_hist = _train(spec, hparams, inputs, scorer, key, 3, epochs=2)
  # Half with blocks of 3, resumed with blocks of 7: the same as blocks of 3
  # to rounding, and the checkpoint restores whatever the block size.
  work = driver.Checkpointing(str(tmp_path))
  _train(spec, hparams, inputs, scorer, key, 3, epochs=1, checkpointing=work)
  got, hist = _train(spec, hparams, inputs, scorer, key, 7, epochs=2,
                     checkpointing=work)
  assert len(hist) == 2
  np.testing.assert_array_equal(hist[0]['loss'], ref_hist[0]['loss'])
  for a, b in zip(jax.tree.leaves(got.sae), jax.tree.leaves(ref.sae)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('model, impl', [('mf', 'gram'), ('mf', 'direct'),
                                         ('ncf', 'gram')])
def test_upper_bound_is_above_xla_memory_analysis(model, impl):
  spec, data, scorer = bench_sweep._workload(model, 2, 20, impl)
  for c in (1, 8):
    hparams = bench_sweep._params(spec, c)
    measured = memory._program_bytes(spec, hparams, data, scorer)
    bound = memory.upper_bound(spec, data, scorer, c, spec.steps_per_epoch)
    assert measured < bound < 100 * measured, (c, measured, bound)


def _stub_plan(calls):
  def plan(spec, hparams, inputs, scorer, counts=(2, 4), **_):
    calls.append(spec)
    return memory.MemoryPlan(1e6, 2e5, memory.device_limit(),
                             state_bytes_per_config=1e3)
  return plan


def test_sweep_plan_is_skipped_when_the_configs_obviously_fit(
    mf, tmp_path, monkeypatch):
  spec, hparams, data, scorer = mf
  calls, logs = [], []
  monkeypatch.setattr(memory, 'plan', _stub_plan(calls))
  bound = memory.upper_bound(spec, data, scorer, 8, 2)
  def run(mode, workdir=None):
    plan, line = memory.sweep_plan(spec, hparams, data, scorer, 8, 2,
                                   mode=mode, workdir=workdir,
                                   log=logs.append)
    assert line == (logs[-1] if mode is not False else None)
    return plan

  monkeypatch.setattr(memory, 'device_limit', lambda device=None: None)
  assert run(None) is None and not calls                     # a CPU
  assert 'device reports no limit' in logs[-1]
  assert run(True) is not None and len(calls) == 1           # asked for
  assert run(False) is None and len(calls) == 1
  monkeypatch.setattr(memory, 'device_limit', lambda device=None: 2.1 * bound)
  assert run(None) is None and len(calls) == 1               # fits by far
  assert 'plan skipped' in logs[-1] and f'{bound / 2**20:,.0f} MB' in logs[-1]
  monkeypatch.setattr(memory, 'device_limit', lambda device=None: 1.9 * bound)
  p = run(None, str(tmp_path))                               # not obviously
  assert p.device_bytes == 1.9 * bound and len(calls) == 2
  again = run(None, str(tmp_path))                           # cached
  assert len(calls) == 2 and logs[-1].endswith('(from memory_plan.json)')
  assert (again.shared_bytes, again.per_config_bytes,
          again.state_bytes_per_config) == (1e6, 2e5, 1e3)
  other = dataclasses.replace(spec, max_dict_size=32)        # another key
  memory.sweep_plan(other, hparams, data, scorer, 8, 2, mode=True,
                    workdir=str(tmp_path), log=logs.append)
  assert len(calls) == 3 and not logs[-1].endswith('(from memory_plan.json)')
  with pytest.raises(ConfigError, match="config.plan_memory='yes'"):
    run('yes')
