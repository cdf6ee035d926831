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
    from monosem_jax.sweep import engine, sharding
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
  assert 'pad with params.pad_to(4)' in out['pad_error']
