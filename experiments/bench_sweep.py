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
configs, for the first of ``--precisions`` only). Output: one JSON document
(stdout, and ``--out`` if given), one result per model and precision.

Precisions (issue 19, item 2): ``--precisions=float32,tf32,bfloat16`` runs
the same workloads with ``SweepSpec.precision`` set to each, in the same
process (``--precision_configs`` gives the C values of the precisions after
the first; default: ``--configs``). A CPU computes tf32 in float32.

Roofs. Each row holds, with ``rate`` the achieved config-steps/s:

* ``flops_per_config_step``, ``bytes_per_config_step``: XLA's cost analysis
  of the compiled step (the un-scanned step; counts from a CPU compile are a
  guide only, XLA fuses differently per backend);
* ``min_bytes_per_config_step`` (:func:`min_bytes_per_config_step`): the
  bytes a config-step cannot avoid moving. Each config's weights and Adam
  moments are read and written once: ``2 S`` with ``S`` the state's bytes
  per config (:func:`monosem_jax.sweep.memory.state_bytes_per_config`: 3
  float32 copies, weights, mu, nu, of ``P`` parameters, plus 9 bytes of
  count and flags), and the batch shared by all configs is read once per
  step, amortised over C: ``R (4 d + 4) / C`` for ``R`` rows of float32
  embeddings and their int32 indices, plus the frozen scorer's matrices
  (NCF's MLP). MF (d 20, M 64, tied, pre-bias): ``P = M d + M + d = 1,364``,
  ``S = 16,377`` B, ``R = 512`` rows of 84 B = 43,008 B per step: 32,754 +
  43,008 / C B per config-step (32.8 KB at C = 1,024). NCF (d 20, M 22, tied,
  no pre-bias): ``P = 462``, ``S = 5,553`` B; 512 rows (256 pairs) + the
  MLP's 5,136 floats = 63,552 B per step: 11,106 + 63,552 / C B;
* ``fraction_of_fp32_compute_roof`` = ``rate x flops / peak fp32``, and
  ``fraction_of_compute_roof`` against the peak of the row's precision
  (tf32, bf16 tensor cores);
* ``fraction_of_byte_roof_xla`` = ``rate x bytes (XLA) / bandwidth`` and
  ``fraction_of_byte_roof_min`` = ``rate x min bytes / bandwidth``;
* ``roofline`` / ``roofline_min_bytes``: the predicted config-steps/s of
  the devices in :data:`ROOFLINES` by either byte count.

The fractions use the device the bench runs on (:func:`device_roof`: H100,
H200, A100 by device kind); None elsewhere (a CPU).

CPU default (2 cores: about a minute or two)::

  python -m experiments.bench_sweep

GPU sizes::

  python -m experiments.bench_sweep --configs=1,2,4,8,16,32,64,128,256,512,1024 \
      --steps=50 --repeats=3 --seq_configs=8 --precisions=float32,tf32,bfloat16 \
      --precision_configs=1024 --out=bench_sweep.json
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
from monosem_jax.recommenders.kinds import make_scorer
from monosem_jax.sae.model import PRECISIONS
from monosem_jax.sweep.batches import epoch_indices
from monosem_jax.sweep.memory import state_bytes_per_config
from monosem_jax.sweep.state import SweepInputs, init_sweep
from monosem_jax.sweep.step import run_epoch, sweep_step
from monosem_jax.sweep.spec import SweepHparams, SweepSpec


#: Dense peak FLOP/s by device kind: float32 on CUDA cores, TF32 and
#: bfloat16 tensor cores (SXM data sheets, without sparsity). A sweep trains
#: at ``SweepSpec.precision='float32'`` by default (``Precision.HIGHEST``:
#: the float32 figure applies); 'tf32' and 'bfloat16' use the others.
PEAK_FLOPS = {'H100': (67e12, 494.7e12, 989.4e12),
              'H200': (67e12, 494.7e12, 989.4e12),
              'A100': (19.5e12, 156e12, 312e12)}
#: The peak of :data:`PEAK_FLOPS` each ``SweepSpec.precision`` runs at.
PRECISION_PEAK = {'float32': 'fp32', 'tf32': 'tf32', 'bfloat16': 'bf16'}

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
#: Memory bandwidth of the devices of :data:`PEAK_FLOPS` (SXM data sheets).
BANDWIDTH = {'H100': 3.35e12, 'H200': 4.8e12, 'A100': 2.039e12}


def device_peak(kind: str):
  """``{'fp32', 'tf32', 'bf16'}`` peak FLOP/s of a device kind, or None.

  >>> device_peak('NVIDIA H200')['tf32']
  494700000000000.0
  """
  for name, peak in PEAK_FLOPS.items():
    if name in kind:
      return dict(zip(('fp32', 'tf32', 'bf16'), peak))
  return None  # unknown (e.g. a CPU): report achieved FLOP/s only


def device_roof(kind: str) -> dict | None:
  """The roofs of a device kind: ``name``, ``flops`` (:func:`device_peak`)
  and ``bytes_per_s``; None for a kind not listed (e.g. a CPU)."""
  for name, peak in PEAK_FLOPS.items():
    if name in kind:
      return dict(name=name, flops=device_peak(kind),
                  bytes_per_s=BANDWIDTH[name])
  return None


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


def _nbytes(leaves) -> int:
  return int(sum(np.prod(np.shape(x)) * np.dtype(x.dtype).itemsize
                 for x in leaves))


def shared_batch_bytes(spec: SweepSpec, scorer) -> int:
  """Bytes every step must read once for all configs: the batch's rows
  (float32 embedding and int32 index each) and the frozen scorer's matrices
  (its 2-D leaves: NCF's MLP weights; MF has none)."""
  rows = spec.batching.users + spec.batching.items
  mats = [x for x in jax.tree.leaves(scorer) if np.ndim(x) == 2]
  return rows * (4 * spec.dim + 4) + _nbytes(mats)


def batch_description(spec: SweepSpec) -> str:
  """What one step holds, in words.

  >>> batch_description(SweepSpec(kind='ncf'))
  '256 positive pairs'
  """
  b = spec.batching
  return (f'{b.users} {b.pairs} pairs' if b.paired
          else f'{b.users} users x {b.items} items')


def min_bytes_per_config_step(spec: SweepSpec, scorer, configs: int) -> float:
  """The bytes one config-step must move (see the module docstring):
  weights and Adam state read and written once, the shared batch once per
  step over ``configs``.

  >>> from monosem_jax.recommenders.kinds import make_scorer
  >>> spec = SweepSpec(kind='mf', dim=20, max_dict_size=64)
  >>> min_bytes_per_config_step(spec, make_scorer('mf', {}), 1024)
  32796.0
  """
  return (2 * state_bytes_per_config(spec)
          + shared_batch_bytes(spec, scorer) / configs)


def add_roofs(row: dict, roof: dict | None, precision: str) -> None:
  """Adds the roof fractions of one bench row (None where unknown).

  >>> row = dict(config_steps_per_s=1e6, flops_per_config_step=1e7,
  ...            bytes_per_config_step=2e6, min_bytes_per_config_step=4e4)
  >>> add_roofs(row, dict(name='X', flops=dict(fp32=1e14, tf32=5e14,
  ...                                          bf16=1e15), bytes_per_s=4e12),
  ...           'tf32')
  >>> [round(row[k], 3) for k in ('fraction_of_fp32_compute_roof',
  ...  'fraction_of_compute_roof', 'fraction_of_byte_roof_xla',
  ...  'fraction_of_byte_roof_min')]
  [0.1, 0.02, 0.5, 0.01]
  """
  rate = row['config_steps_per_s']
  f, b = row.get('flops_per_config_step'), row.get('bytes_per_config_step')
  m = row.get('min_bytes_per_config_step')
  frac = lambda work, peak: (None if roof is None or work is None
                             else rate * work / peak)
  peaks = roof['flops'] if roof else {}
  row['fraction_of_fp32_compute_roof'] = frac(f, peaks.get('fp32'))
  row['fraction_of_compute_roof'] = frac(f, peaks.get(
      PRECISION_PEAK[precision]))
  bw = roof['bytes_per_s'] if roof else None
  row['fraction_of_byte_roof_xla'] = frac(b, bw)
  row['fraction_of_byte_roof_min'] = frac(m, bw)
  # The names the device check gave these since issue 11.
  row['fraction_of_peak_flops'] = row['fraction_of_fp32_compute_roof']
  row['fraction_of_peak_bandwidth'] = row['fraction_of_byte_roof_xla']


_N_ITEMS = 3706


def _mf_workload(steps: int, d: int, mf_pred_impl: str, precision: str):
  rng = np.random.default_rng(0)
  n_users = 256 * steps
  options = dict(batch_users=256, batch_items=256, mf_pred_impl=mf_pred_impl)
  spec = SweepSpec(kind='mf', dim=d, max_dict_size=64, steps_per_epoch=steps,
                   precision=precision, scorer_options=options)
  data = SweepInputs.create(rng.normal(size=(n_users, d)) / d,
                            rng.normal(size=(_N_ITEMS, d)) / d,
                            np.arange(n_users))
  return spec, data, make_scorer('mf', {}, **options)


def _ncf_workload(steps: int, d: int, mf_pred_impl: str, precision: str):
  del mf_pred_impl  # MF's option
  rng = np.random.default_rng(0)
  n_users = 256 * steps
  spec = SweepSpec(kind='ncf', dim=d, max_dict_size=22, steps_per_epoch=steps,
                   precision=precision, scorer_options=dict(batch_pairs=256))
  p = ncf.init(jax.random.PRNGKey(0), n_users, _N_ITEMS, d)
  n_pos = 256 * steps
  data = SweepInputs.create(p['user_emb'], p['item_emb'], np.arange(n_users),
                            rng.integers(0, n_users, n_pos),
                            rng.integers(0, _N_ITEMS, n_pos))
  return spec, data, make_scorer('ncf', p)


#: The workload of each kind: ``(steps, d, mf_pred_impl, precision) ->
#: (spec, inputs, scorer)``.
WORKLOADS = {'mf': _mf_workload, 'ncf': _ncf_workload}


def _workload(model: str, steps: int, d: int, mf_pred_impl: str,
              precision: str = 'float32'):
  if model not in WORKLOADS:
    raise ValueError(f'--models: {model!r} is not one of '
                     f'{", ".join(WORKLOADS)}')
  return WORKLOADS[model](steps, d, mf_pred_impl, precision)


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
          mf_pred_impl='gram', precision='float32', sequential=True):
  """One workload at one precision: a row per C, and the sequential rate.

  ``sequential=False`` skips the sequential baseline (``sequential`` is then
  None and the rows have no ``speedup_vs_sequential``).
  """
  spec, data, scorer = _workload(model, steps, d, mf_pred_impl, precision)
  kind = getattr(jax.devices()[0], 'device_kind', '')
  peak, roof = device_peak(kind), device_roof(kind)
  rows = []
  for c in configs:
    params = _params(spec, c)
    first, best, finite = _time_epochs(spec, params, data, scorer, repeats)
    rate = c * steps / best
    cost = cost_per_config_step(spec, params, data, scorer)
    fpcs, bpcs = cost['flops'], cost['bytes']
    mpcs = min_bytes_per_config_step(spec, scorer, c)
    row = dict(C=c, epoch_s=best, compile_and_first_epoch_s=first,
               config_steps_per_s=rate, all_finite=finite,
               flops_per_config_step=fpcs, bytes_per_config_step=bpcs,
               min_bytes_per_config_step=mpcs,
               achieved_flops_per_s=None if fpcs is None else fpcs * rate,
               achieved_bytes_per_s=None if bpcs is None else bpcs * rate)
    if peak and fpcs:
      row['fraction_of_peak'] = {k: fpcs * rate / v for k, v in peak.items()}
    add_roofs(row, roof, precision)
    line = f'[{model} {precision}] C={c:5d}  {rate:12.1f} config-steps/s'
    if fpcs:
      line += (f'  {fpcs * rate / 1e9:8.2f} GFLOP/s  {fpcs / 1e6:.2f} MFLOP'
               f' {(bpcs or 0) / 1e6:.2f} MB (XLA) {mpcs / 1e3:.1f} KB (min)'
               ' per config-step')
    if roof:
      line += ''.join(f'  {name} {row[key]:.1%}' for name, key in (
          ('fp32 roof', 'fraction_of_fp32_compute_roof'),
          ('bytes roof (XLA)', 'fraction_of_byte_roof_xla'),
          ('bytes roof (min)', 'fraction_of_byte_roof_min'))
                      if row[key] is not None)
    if fpcs and bpcs:
      row['roofline'] = {name: roofline(fpcs, bpcs, r['flops'],
                                        r['bytes_per_s'])
                         for name, r in ROOFLINES.items()}
      row['roofline_min_bytes'] = {name: roofline(fpcs, mpcs, r['flops'],
                                                  r['bytes_per_s'])
                                   for name, r in ROOFLINES.items()}
      line += ''.join(f'  | {name}: {p["bound"]}-bound, predicted '
                      f'{p["config_steps_per_s"]:,.0f}/s'
                      for name, p in row['roofline'].items())
    rows.append(row)
    print(line, file=sys.stderr, flush=True)
  seq = _sequential(spec, data, scorer, steps, repeats, seq_configs
                    ) if sequential else None
  for r in rows:
    if seq:
      r['speedup_vs_sequential'] = r['config_steps_per_s'] / seq
  return dict(model=model, precision=precision, d=d,
              max_dict_size=spec.max_dict_size,
              batch=batch_description(spec),
              mf_pred_impl=dict(spec.scorer_options).get('mf_pred_impl'),
              steps_per_epoch=steps, repeats=repeats,
              shared_batch_bytes_per_step=shared_batch_bytes(spec, scorer),
              state_bytes_per_config=state_bytes_per_config(spec),
              sequential=None if seq is None else dict(
                  configs_measured=seq_configs, config_steps_per_s=seq),
              vmapped=rows)


def _sequential(spec, data, scorer, steps, repeats, seq_configs) -> float:
  """Config-steps/s of the C = 1 program, one config after another."""
  allp = _params(spec, seq_configs)
  compiled = False
  t_total = 0.0
  for j in range(seq_configs):
    p1 = allp.take([j])
    st = init_sweep(spec, p1, jax.random.PRNGKey(0))
    if not compiled:        # compile once, outside the timing
      jax.block_until_ready(run_epoch(spec, p1, st, data, scorer))
      compiled = True
    t0 = time.perf_counter()
    for _ in range(repeats):
      st, _ = run_epoch(spec, p1, st, data, scorer)
    jax.block_until_ready(st)
    t_total += time.perf_counter() - t0
  return seq_configs * repeats * steps / t_total


def bench_all(models, configs, steps, repeats, seq_configs, d=20,
              mf_pred_impl='gram', precisions=('float32',),
              precision_configs=None) -> list[dict]:
  """:func:`bench` for every model and precision (the sequential baseline
  and ``configs`` for the first precision; ``precision_configs``, default
  ``configs``, for the others)."""
  out = []
  for i, precision in enumerate(precisions):
    if precision not in PRECISIONS:
      raise ValueError(f'--precisions: {precision!r} is not one of '
                       f'{", ".join(PRECISIONS)}')
    cs = configs if i == 0 else (precision_configs or configs)
    for model in models:
      out.append(bench(model, cs, steps, repeats, seq_configs, d,
                       mf_pred_impl, precision, sequential=i == 0))
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--models', default='mf,ncf')
  ap.add_argument('--configs', default='1,4,16,64')
  ap.add_argument('--steps', type=int, default=8)
  ap.add_argument('--repeats', type=int, default=2)
  ap.add_argument('--seq_configs', type=int, default=3)
  ap.add_argument('--d', type=int, default=20)
  ap.add_argument('--mf_pred_impl', default='gram', choices=('gram', 'direct'))
  ap.add_argument('--precisions', default='float32',
                  help='SweepSpec.precision values, comma-separated '
                  '(float32, tf32, bfloat16)')
  ap.add_argument('--precision_configs', default=None,
                  help='C values of the precisions after the first '
                  '(default: --configs)')
  ap.add_argument('--out', default=None)
  a = ap.parse_args(argv)
  configs = [int(c) for c in a.configs.split(',')]
  pcs = ([int(c) for c in a.precision_configs.split(',')]
         if a.precision_configs else None)
  dev = jax.devices()[0]
  kind = getattr(dev, 'device_kind', str(dev))
  out = dict(
      benchmark='sweep config-steps/s, vmapped vs sequential',
      jax=jax.__version__, backend=jax.default_backend(),
      device=kind, device_count=jax.device_count(), host=platform.node(),
      device_peak_flops=device_peak(kind), device_roof=device_roof(kind),
      rooflines=ROOFLINES,
      results=bench_all(a.models.split(','), configs, a.steps, a.repeats,
                        a.seq_configs, a.d, a.mf_pred_impl,
                        a.precisions.split(','), pcs))
  text = json.dumps(out, indent=1)
  print(text)
  if a.out:
    with open(a.out, 'w') as f:
      f.write(text)
  return out


if __name__ == '__main__':
  main()
