r"""Benchmark: SAE config-steps per second, vmapped sweep vs sequential runs.

Workloads (issue 4, item 7), on synthetic embeddings of the paper's shapes:

* MF:  d=20, dictionary 64, 256 users x 256 items per step (score-matrix loss
  through the exact Gram form; ``--mf_pred_impl direct`` for the B x B form);
* NCF: d=20, dictionary 22, 256 positive pairs per step through a frozen
  2d-64-32-16-1 MLP.

For each C in ``--configs`` one epoch of ``--steps`` steps trains C configs
in one jitted, vmapped, scanned program (compile excluded; best of
``--repeats``). "Sequential" trains configs one at a time with the C = 1
program (its throughput does not depend on C; measured on ``--seq_configs``
configs). Output: one JSON document (stdout, and ``--out`` if given).

Roofline: XLA's cost analysis of the compiled step gives FLOPs and bytes
accessed per config-step; with the H100's and the TPU v5e's peak FLOP/s and
memory bandwidth (:data:`ROOFLINES`) each line prints whether the step is
memory- or compute-bound there and the predicted config-steps/s, to compare
with a measurement on that device (counts from a CPU compile are a guide
only: XLA fuses differently per backend).

CPU default (2 cores: about a minute or two)::

  python -m experiments.bench_sweep

GPU sizes::

  python -m experiments.bench_sweep --configs=1,2,4,8,16,32,64,128,256,512,1024 \
      --steps=50 --repeats=3 --seq_configs=8 --out=bench_sweep.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import jax
import numpy as np

from monosem_jax.recommenders import ncf
from monosem_jax.recommenders.scorers import make_scorer
from monosem_jax.sweep.batches import epoch_indices
from monosem_jax.sweep.state import SweepInputs, init_sweep
from monosem_jax.sweep.step import run_epoch, sweep_step
from monosem_jax.sweep.spec import SweepHparams, SweepSpec


#: Dense peak FLOP/s by device kind: (float32 on CUDA cores, TF32 tensor
#: cores). A sweep trains at ``SweepSpec.precision='float32'`` by default
#: (``Precision.HIGHEST``: the float32 figure applies); 'tf32' uses the second.
PEAK_FLOPS = {'H100': (67e12, 494.7e12), 'H200': (67e12, 494.7e12),
              'A100': (19.5e12, 156e12)}

#: Roofline of the devices the sweeps are meant for, at the sweep's default
#: (exact float32) precision: the peak FLOP/s of float32 matmuls at
#: ``Precision.HIGHEST`` (CUDA cores on H100 / H200; six bfloat16 passes on a
#: TPU v5e, 197 / 6 TFLOP/s) and the memory bandwidth, from the vendors' data
#: sheets (H100 / H200 SXM; TPU v5e per chip).
ROOFLINES = {
    'H100': dict(flops=67e12, bytes_per_s=3.35e12),
    'H200': dict(flops=67e12, bytes_per_s=4.8e12),
    'TPU v5e': dict(flops=197e12 / 6, bytes_per_s=819e9),
}


def device_peak(kind: str):
  for name, peak in PEAK_FLOPS.items():
    if name in kind:
      return {'fp32': peak[0], 'tf32': peak[1]}
  return None  # unknown (e.g. a CPU): report achieved FLOP/s only


def roofline(flops: float, bytes_accessed: float, peak_flops: float,
             bytes_per_s: float) -> dict:
  """The roofline prediction for one config-step.

  The step takes at least ``flops / peak_flops`` (compute) and
  ``bytes_accessed / bytes_per_s`` (memory); the larger bounds it.

  >>> r = roofline(2e6, 4e5, peak_flops=1e12, bytes_per_s=1e11)
  >>> r['bound'], r['config_steps_per_s'], round(r['arithmetic_intensity'], 1)
  ('memory', 250000.0, 5.0)
  """
  t_compute = flops / peak_flops
  t_memory = bytes_accessed / bytes_per_s
  return dict(bound='memory' if t_memory > t_compute else 'compute',
              config_steps_per_s=1.0 / max(t_compute, t_memory),
              arithmetic_intensity=flops / max(bytes_accessed, 1.0))


def cost_per_config_step(spec, params, data, scorer) -> dict:
  """XLA's FLOP and byte counts of one sweep step, per config.

  Measured on the un-scanned step (XLA counts a loop body once, so the
  epoch program would under-report). The counts come from the backend the
  step is compiled for: on a CPU they predict an accelerator only roughly
  (other fusions), so a device run replaces them.
  """
  state = init_sweep(spec, params, jax.random.PRNGKey(0))
  ix = epoch_indices(spec, data, jax.random.PRNGKey(1), scorer.paired)
  compiled = jax.jit(sweep_step, static_argnums=0).lower(
      spec, params, state, data, scorer, ix.users[0], ix.items[0]).compile()
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  c = params.num_configs
  flops = (cost or {}).get('flops')
  moved = (cost or {}).get('bytes accessed')
  return dict(flops=float(flops) / c if flops else None,
              bytes=float(moved) / c if moved else None)


def _workload(model: str, steps: int, d: int, mf_pred_impl: str):
  rng = np.random.default_rng(0)
  n_items = 3706
  n_users = 256 * steps
  if model == 'mf':
    spec = SweepSpec(kind='mf', dim=d, max_dict_size=64, batch_users=256,
                     batch_items=256, steps_per_epoch=steps,
                     mf_pred_impl=mf_pred_impl)
    data = SweepInputs.create(rng.normal(size=(n_users, d)) / d,
                              rng.normal(size=(n_items, d)) / d,
                              np.arange(n_users))
    scorer = make_scorer('mf', {}, mf_impl=mf_pred_impl)
  else:
    spec = SweepSpec(kind='ncf', dim=d, max_dict_size=22, batch_pairs=256,
                     steps_per_epoch=steps)
    p = ncf.init(jax.random.PRNGKey(0), n_users, n_items, d)
    n_pos = 256 * steps
    data = SweepInputs.create(p['user_emb'], p['item_emb'], np.arange(n_users),
                              rng.integers(0, n_users, n_pos),
                              rng.integers(0, n_items, n_pos))
    scorer = make_scorer('ncf', p)
  return spec, data, scorer


def _params(spec: SweepSpec, c: int) -> SweepHparams:
  """C distinct configs: spread lambda_pred, lr and seeds."""
  i = np.arange(c)
  return SweepHparams.from_list(
      [dict(lambda_pred=float(j % 5), lr=1e-3 * (1 + j % 3), seed=int(j))
       for j in i], spec)


def _time_epochs(spec, params, data, scorer, repeats):
  state = init_sweep(spec, params, jax.random.PRNGKey(0))
  t0 = time.perf_counter()
  state, h = run_epoch(spec, params, state, data, scorer)
  jax.block_until_ready(state)
  first = time.perf_counter() - t0
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    state, h = run_epoch(spec, params, state, data, scorer)
    jax.block_until_ready((state, h))
    best = min(best, time.perf_counter() - t0)
  return first, best, bool(np.all(np.asarray(state.finite)))


def bench(model, configs, steps, repeats, seq_configs, d=20,
          mf_pred_impl='gram'):
  spec, data, scorer = _workload(model, steps, d, mf_pred_impl)
  peak = device_peak(getattr(jax.devices()[0], 'device_kind', ''))
  rows = []
  for c in configs:
    params = _params(spec, c)
    first, best, finite = _time_epochs(spec, params, data, scorer, repeats)
    rate = c * steps / best
    cost = cost_per_config_step(spec, params, data, scorer)
    fpcs, bpcs = cost['flops'], cost['bytes']
    row = dict(C=c, epoch_s=best, compile_and_first_epoch_s=first,
               config_steps_per_s=rate, all_finite=finite,
               flops_per_config_step=fpcs, bytes_per_config_step=bpcs,
               achieved_flops_per_s=None if fpcs is None else fpcs * rate,
               achieved_bytes_per_s=None if bpcs is None else bpcs * rate)
    if peak and fpcs:
      row['fraction_of_peak'] = {k: fpcs * rate / v for k, v in peak.items()}
    line = f'[{model}] C={c:5d}  {rate:12.1f} config-steps/s'
    if fpcs:
      line += (f'  {fpcs * rate / 1e9:8.2f} GFLOP/s  {fpcs / 1e6:.2f} MFLOP'
               f' {(bpcs or 0) / 1e6:.2f} MB per config-step')
    if fpcs and bpcs:
      row['roofline'] = {name: roofline(fpcs, bpcs, r['flops'],
                                        r['bytes_per_s'])
                         for name, r in ROOFLINES.items()}
      line += ''.join(f'  | {name}: {p["bound"]}-bound, predicted '
                      f'{p["config_steps_per_s"]:,.0f}/s'
                      for name, p in row['roofline'].items())
    rows.append(row)
    print(line, file=sys.stderr, flush=True)
  # sequential: C=1 program, one config after another
  allp = _params(spec, seq_configs)
  state_compile = None
  t_total = 0.0
  for j in range(seq_configs):
    p1 = allp.take([j])
    st = init_sweep(spec, p1, jax.random.PRNGKey(0))
    if state_compile is None:        # compile once, outside the timing
      jax.block_until_ready(run_epoch(spec, p1, st, data, scorer))
      state_compile = True
    t0 = time.perf_counter()
    for _ in range(repeats):
      st, h = run_epoch(spec, p1, st, data, scorer)
    jax.block_until_ready(st)
    t_total += time.perf_counter() - t0
  seq = seq_configs * repeats * steps / t_total
  for r in rows:
    r['speedup_vs_sequential'] = r['config_steps_per_s'] / seq
  return dict(model=model, d=d, max_dict_size=spec.max_dict_size,
              batch=('256 users x 256 items' if model == 'mf'
                     else '256 positive pairs'),
              mf_pred_impl=mf_pred_impl if model == 'mf' else None,
              steps_per_epoch=steps, repeats=repeats,
              sequential=dict(configs_measured=seq_configs,
                              config_steps_per_s=seq),
              vmapped=rows)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--models', default='mf,ncf')
  ap.add_argument('--configs', default='1,4,16,64')
  ap.add_argument('--steps', type=int, default=8)
  ap.add_argument('--repeats', type=int, default=2)
  ap.add_argument('--seq_configs', type=int, default=3)
  ap.add_argument('--d', type=int, default=20)
  ap.add_argument('--mf_pred_impl', default='gram', choices=('gram', 'direct'))
  ap.add_argument('--out', default=None)
  a = ap.parse_args(argv)
  configs = [int(c) for c in a.configs.split(',')]
  dev = jax.devices()[0]
  out = dict(
      benchmark='sweep config-steps/s, vmapped vs sequential',
      jax=jax.__version__, backend=jax.default_backend(),
      device=getattr(dev, 'device_kind', str(dev)),
      device_count=jax.device_count(), host=platform.node(),
      device_peak_flops=device_peak(getattr(dev, 'device_kind', '')),
      rooflines=ROOFLINES,
      results=[bench(m, configs, a.steps, a.repeats, a.seq_configs, a.d,
                     a.mf_pred_impl) for m in a.models.split(',')])
  text = json.dumps(out, indent=1)
  print(text)
  if a.out:
    with open(a.out, 'w') as f:
      f.write(text)
  return out


if __name__ == '__main__':
  main()
