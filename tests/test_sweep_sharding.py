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
    import jax, numpy as np
    from monosem_jax.recommenders import ncf
    import tempfile
    from monosem_jax.sweep import checkpoint, engine, sharding
    from monosem_jax.sweep.spec import SweepParams, SweepSpec

    assert jax.device_count() == 4, jax.devices()
    mesh = sharding.config_mesh()
    out = {}
    p = ncf.init(jax.random.PRNGKey(1), 60, 40, 6)
    rng = np.random.default_rng(1)
    pu, pi = engine.positive_pairs_of(rng.integers(0, 60, 500),
                                      rng.integers(0, 40, 500), np.arange(48))
    cases = {
        'mf': (SweepSpec(model='mf', d=6, max_latents=10, batch_users=16,
                         batch_items=16),
               engine.SweepData.mf(p['user_emb'], p['item_emb'], np.arange(48))),
        'ncf': (SweepSpec(model='ncf', d=6, max_latents=10, batch_pairs=32,
                          steps_per_epoch=3),
                engine.SweepData.ncf(p['user_emb'], p['item_emb'],
                                     np.arange(48), p['mlp'], pu, pi)),
    }
    for name, (spec, data) in cases.items():
      params = SweepParams.grid(spec, lambda_pred=[0.0, 2.0, 5.0],
                                dict_size=[4, 10], lr=[1e-3])
      params = params.pad_to(sharding.padded_size(params.num_configs, mesh))
      key = jax.random.PRNGKey(7)
      ref = engine.init_sweep(spec, params, key)
      sh, sparams, sdata = sharding.shard_sweep(mesh, ref, params, data)
      n_shards = len(sh.sae['W'].sharding.device_set)
      for _ in range(2):
        ref, href = engine.run_epoch(spec, params, ref, data)
        sh, hsh = engine.run_epoch(spec, sparams, sh, sdata)
      out_shards = len(sh.sae['W'].sharding.device_set)
      diffs = [float(np.max(np.abs(sharding.to_host(a).astype(float)
                                   - sharding.to_host(b).astype(float))))
               for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(sh))]
      bitwise = all(np.array_equal(sharding.to_host(a), sharding.to_host(b))
                    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(sh)))
      hist_eq = all(np.array_equal(sharding.to_host(href[k]),
                                   sharding.to_host(hsh[k])) for k in href)
      m_ref = engine.evaluate_configs(ref, spec, params, data.user_emb[48:],
                                      data.item_emb, mlp=data.mlp)
      m_sh = engine.evaluate_configs(sh, spec, sparams, data.user_emb[48:],
                                     data.item_emb, mlp=data.mlp)
      metrics_close = all(np.allclose(m_ref[k], m_sh[k], rtol=1e-5,
                                      equal_nan=True) for k in m_ref)
      # the checkpointing driver on the mesh gives the same bits
      import tempfile
      with tempfile.TemporaryDirectory() as work:
        tr, _ = engine.train_sweep(spec, params, data, key, epochs=2,
                                   workdir=work, mesh=mesh)
        tr2, _ = engine.train_sweep(spec, params, data, key, epochs=2,
                                    workdir=work, mesh=mesh)   # restores
      driver_bitwise = all(
          np.array_equal(sharding.to_host(a), sharding.to_host(b))
          for t in (tr, tr2)
          for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(t)))
      out[name] = dict(C=params.num_configs, n_shards=n_shards,
                       driver_bitwise=driver_bitwise,
                       out_shards=out_shards, max_diff=max(diffs),
                       bitwise=bitwise, hist_equal=hist_eq,
                       metrics_close=metrics_close)
    # 80 configs, 20 per device: each device runs the executable of a
    # 20-config sweep, so the sharded run equals four one-device sweeps of
    # 20 configs bit for bit; against one 80-wide sweep (another XLA
    # vectorisation of the reductions) it agrees to float32 rounding.
    for name, (spec, data) in cases.items():
      p80 = SweepParams.grid(spec, lambda_pred=[0.0, 1.0, 2.0, 5.0, 10.0],
                             dict_size=[4, 6, 8, 10],
                             rho=[0.02, 0.05, 0.1, 0.2])
      key = jax.random.PRNGKey(3)
      s1, h1 = engine.train_sweep(spec, p80, data, key, epochs=2)
      s4, h4 = engine.train_sweep(spec, p80, data, key, epochs=2, mesh=mesh)
      blocks = [engine.train_sweep(spec, p80.take(np.arange(b, b + 20)), data,
                                   key, epochs=2) for b in range(0, 80, 20)]
      leaves4 = [sharding.to_host(x) for x in jax.tree.leaves(s4)]
      per_config = [np.ndim(x) > 0 and np.shape(x)[0] == 80 for x in leaves4]
      out[name]['blocks80_bitwise'] = all(
          np.array_equal(x4[20 * j:20 * (j + 1)] if pc else x4, np.asarray(xb))
          for j, (sb, _) in enumerate(blocks)
          for x4, xb, pc in zip(leaves4, jax.tree.leaves(sb), per_config)
      ) and all(np.array_equal(h4[e][k][20 * j:20 * (j + 1)], hb[e][k])
                for j, (_, hb) in enumerate(blocks)
                for e in range(2) for k in hb[e])
      out[name]['wide80_close'] = all(
          np.allclose(sharding.to_host(a), sharding.to_host(b), rtol=1e-4,
                      atol=1e-6)
          for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s4))
      ) and all(np.allclose(h1[e][k], h4[e][k], rtol=1e-4, atol=1e-6)
                for e in range(2) for k in h1[e])

    # Resuming on another device count: sweep.json holds the 6 real
    # configs; the checkpoint 8 (padded for 4 devices) or 6 (one device).
    spec, data = cases['mf']
    p6 = SweepParams.grid(spec, lambda_pred=[0.0, 2.0, 5.0], dict_size=[4, 10])
    key = jax.random.PRNGKey(5)
    ref6, ref6_hist = engine.train_sweep(spec, p6, data, key, epochs=2)
    close = lambda a, b: all(
        np.allclose(sharding.to_host(x), sharding.to_host(y), rtol=1e-4,
                    atol=1e-6)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    with tempfile.TemporaryDirectory() as work:
      engine.train_sweep(spec, p6.pad_to(8), data, key, epochs=1,
                         workdir=work, mesh=mesh, num_real=6)
      st, hist = engine.train_sweep(spec, p6, data, key, epochs=2,
                                    workdir=work)
      _, p_read, st_read, h_read = checkpoint.restore_sweep(work)
      out['resume_4_to_1'] = (
          close(ref6, st) and p_read.num_configs == 6
          and st_read.num_configs == 6 and len(h_read[0]['loss']) == 6
          and int(st.epoch) == 2 and len(hist) == 2
          and all(np.allclose(ref6_hist[e][k], hist[e][k], rtol=1e-4,
                              atol=1e-6) for e in range(2) for k in hist[e]))
    with tempfile.TemporaryDirectory() as work:
      engine.train_sweep(spec, p6, data, key, epochs=1, workdir=work)
      st, hist = engine.train_sweep(spec, p6.pad_to(8), data, key, epochs=2,
                                    workdir=work, mesh=mesh, num_real=6)
      out['resume_1_to_4'] = (
          close(ref6, st.take(np.arange(6))) and int(st.epoch) == 2
          and all(np.allclose(ref6_hist[e][k], hist[e][k][:6], rtol=1e-4,
                              atol=1e-6) for e in range(2) for k in hist[e]))
    try:
      sharding.shard_sweep(mesh, engine.init_sweep(
          cases['mf'][0], SweepParams.grid(cases['mf'][0], seed=[1, 2, 3])),
          SweepParams.grid(cases['mf'][0], seed=[1, 2, 3]))
      out['pad_error'] = None
    except ValueError as e:
      out['pad_error'] = str(e)
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
  assert out['resume_4_to_1'] and out['resume_1_to_4'], out
  assert 'pad with params.pad_to(4)' in out['pad_error']
