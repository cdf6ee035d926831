"""Sharded sweep == unsharded sweep, on 4 host CPU devices (in a subprocess:
XLA flags must be set before jax is imported)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent('''
    import json
    import tempfile
    import jax, numpy as np
    from monosem_jax.recommenders import ncf
    from monosem_jax.recommenders.kinds import make_scorer
    from monosem_jax.sweep import checkpoint, driver, sharding
    from monosem_jax.sweep.driver import Checkpointing, make_sweep
    from monosem_jax.sweep.sharding import Placement
    from monosem_jax.sweep.metrics import evaluate_configs
    from monosem_jax.sweep.spec import SweepHparams, SweepSpec
    from monosem_jax.sweep.state import (SweepInputs, init_sweep,
                                         positive_pairs_of)

    assert jax.device_count() == 4, jax.devices()
    mesh = sharding.config_mesh()
    out = {}
    p = ncf.init(jax.random.PRNGKey(1), 60, 40, 6)
    rng = np.random.default_rng(1)
    pu, pi = positive_pairs_of(rng.integers(0, 60, 500),
                               rng.integers(0, 40, 500), np.arange(48))
    cases = {
        'mf': (SweepSpec(kind='mf', dim=6, max_dict_size=10,
                         scorer_options=dict(batch_users=16, batch_items=16)),
               SweepInputs.create(p['user_emb'], p['item_emb'], np.arange(48)),
               make_scorer('mf', {})),
        'ncf': (SweepSpec(kind='ncf', dim=6, max_dict_size=10,
                          steps_per_epoch=3,
                          scorer_options=dict(batch_pairs=32)),
                SweepInputs.create(p['user_emb'], p['item_emb'],
                                   np.arange(48), pu, pi),
                make_scorer('ncf', p)),
    }
    def train(spec, params, data, scorer, key, epochs, workdir=None, mesh=None,
              chunk=None):
      """(state, histories) of train_sweep on a placement."""
      r = driver.train_sweep(
          make_sweep(spec, scorer, data, Placement(mesh, chunk)), params, key,
          epochs=epochs,
          checkpointing=workdir and Checkpointing(workdir))
      return r.state, r.histories

    leaves = lambda t: [sharding.to_host(x) for x in jax.tree.leaves(t)]
    same = lambda a, b: all(np.array_equal(x, y)
                            for x, y in zip(leaves(a), leaves(b)))
    for name, (spec, data, scorer) in cases.items():
      params = SweepHparams.grid(spec, lambda_pred=[0.0, 2.0, 5.0],
                                 dict_size=[4, 10], lr=[1e-3])
      params = params.pad_to(sharding.padded_size(params.num_configs, mesh))
      key = jax.random.PRNGKey(7)
      one = make_sweep(spec, scorer, data)
      four = make_sweep(spec, scorer, data, Placement(mesh))
      ref = one.init(params, key)
      sh, sparams = four.init(params, key), four.place(params)
      n_shards = len(sh.sae['W'].sharding.device_set)
      for _ in range(2):
        ref, href = one.epoch(ref, params)
        sh, hsh = four.epoch(sh, sparams)
      out_shards = len(sh.sae['W'].sharding.device_set)
      diffs = [float(np.max(np.abs(a.astype(float) - b.astype(float))))
               for a, b in zip(leaves(ref), leaves(sh))]
      hist_eq = all(np.array_equal(sharding.to_host(href[k]),
                                   sharding.to_host(hsh[k])) for k in href)
      m_ref = evaluate_configs(ref, spec, params, scorer, data.user_emb[48:],
                               data.item_emb)
      m_sh = evaluate_configs(sh, spec, sparams, four.scorer,
                              data.user_emb[48:], data.item_emb)
      metrics_close = all(np.allclose(m_ref[k], m_sh[k], rtol=1e-5,
                                      equal_nan=True) for k in m_ref)
      # the checkpointing driver on the mesh gives the same bits
      with tempfile.TemporaryDirectory() as work:
        tr, _ = train(spec, params, data, scorer, key, 2, work, mesh)
        tr2, _ = train(spec, params, data, scorer, key, 2, work, mesh)
      out[name] = dict(C=params.num_configs, n_shards=n_shards,
                       driver_bitwise=same(ref, tr) and same(ref, tr2),
                       out_shards=out_shards, max_diff=max(diffs),
                       bitwise=same(ref, sh), hist_equal=hist_eq,
                       metrics_close=metrics_close)

    # 80 configs, 20 per device: each device runs the executable of a
    # 20-config sweep, so the sharded run equals four one-device sweeps of
    # 20 configs bit for bit; against one 80-wide sweep (another XLA
    # vectorisation of the reductions) it agrees to float32 rounding.
    close = lambda a, b: all(np.allclose(x, y, rtol=1e-4, atol=1e-6)
                             for x, y in zip(leaves(a), leaves(b)))
    for name, (spec, data, scorer) in cases.items():
      p80 = SweepHparams.grid(spec, lambda_pred=[0.0, 1.0, 2.0, 5.0, 10.0],
                              dict_size=[4, 6, 8, 10],
                              rho=[0.02, 0.05, 0.1, 0.2])
      key = jax.random.PRNGKey(3)
      s1, h1 = train(spec, p80, data, scorer, key, 2)
      s4, h4 = train(spec, p80, data, scorer, key, 2, mesh=mesh)
      blocks = [train(spec, p80.take(np.arange(b, b + 20)), data, scorer, key,
                      2) for b in range(0, 80, 20)]
      s4_blocks = [s4.take(np.arange(b, b + 20)) for b in range(0, 80, 20)]
      out[name]['blocks80_bitwise'] = all(
          same(sb, s4b) for (sb, _), s4b in zip(blocks, s4_blocks)
      ) and all(np.array_equal(h4[e][k][20 * j:20 * (j + 1)], hb[e][k])
                for j, (_, hb) in enumerate(blocks)
                for e in range(2) for k in hb[e])
      # Blocks of 10 configs: per device (2 x 10 on each of 4) or on one
      # device (8 x 10 in turn), the same executables, the same bits.
      c4, _ = train(spec, p80, data, scorer, key, 2, mesh=mesh, chunk=10)
      c1, _ = train(spec, p80, data, scorer, key, 2, chunk=10)
      out[name]['chunked_sharded_bitwise'] = same(c1, c4)
      out[name]['wide80_close'] = close(s1, s4) and all(
          np.allclose(h1[e][k], h4[e][k], rtol=1e-4, atol=1e-6)
          for e in range(2) for k in h1[e])

    # Resuming on another device count: sweep.json holds the 6 real
    # configs; the checkpoint 8 (padded for 4 devices) or 6 (one device).
    spec, data, scorer = cases['mf']
    p6 = SweepHparams.grid(spec, lambda_pred=[0.0, 2.0, 5.0], dict_size=[4, 10])
    key = jax.random.PRNGKey(5)
    ref6, ref6_hist = train(spec, p6, data, scorer, key, 2)
    hist_close = lambda a, b, n: all(
        np.allclose(a[e][k], b[e][k][:n], rtol=1e-4, atol=1e-6)
        for e in range(2) for k in a[e])
    with tempfile.TemporaryDirectory() as work:
      train(spec, p6, data, scorer, key, 1, work, mesh)   # padded to 8
      st, hist = train(spec, p6, data, scorer, key, 2, work)
      _, p_read, st_read, h_read = checkpoint.restore_sweep(work)
      out['resume_4_to_1'] = (
          close(ref6, st) and p_read.num_configs == 6
          and st_read.num_configs == 6 and len(h_read[0]['loss']) == 6
          and int(st.epoch) == 2 and hist_close(ref6_hist, hist, 6))
    with tempfile.TemporaryDirectory() as work:
      train(spec, p6, data, scorer, key, 1, work)
      st, hist = train(spec, p6, data, scorer, key, 2, work, mesh)
      out['resume_1_to_4'] = (close(ref6, st.take(np.arange(6)))
                              and int(st.epoch) == 2
                              and hist_close(ref6_hist, hist, 6))
    try:
      spec0 = cases['mf'][0]
      sharding.shard_sweep(mesh, init_sweep(
          spec0, SweepHparams.grid(spec0, seed=[1, 2, 3])),
          SweepHparams.grid(spec0, seed=[1, 2, 3]))
      out['pad_error'] = None
    except ValueError as e:
      out['pad_error'] = str(e)
    out['init_pads'] = make_sweep(spec0, cases['mf'][2], cases['mf'][1],
                                  Placement(mesh)).init(SweepHparams.grid(
                                      spec0, seed=[1, 2, 3])).num_configs
    print('RESULT' + json.dumps(out))
''')


@pytest.mark.slow
def test_sharded_equals_unsharded():
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                      ' --xla_force_host_platform_device_count=4').strip()
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  proc = subprocess.run([sys.executable, '-c', SCRIPT], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT')][-1]
  out = json.loads(line[len('RESULT'):])
  for name in ('mf', 'ncf'):
    r = out[name]
    assert r['C'] == 8 and r['n_shards'] == 4 and r['out_shards'] == 4, r
    assert r['bitwise'] and r['hist_equal'] and r['driver_bitwise'], r
    assert r['metrics_close'], r
    assert r['blocks80_bitwise'] and r['wide80_close'], r
    assert r['chunked_sharded_bitwise'], r
  assert out['resume_4_to_1'] and out['resume_1_to_4'], out
  assert 'pad with hparams.pad_to(4)' in out['pad_error']
  assert out['init_pads'] == 4      # a Sweep pads to its device count itself
