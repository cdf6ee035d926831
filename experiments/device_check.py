r"""The prepared GPU device check (issue 11, item 1): one script, one JSON.

Run when a GPU is lent (one NVIDIA H100, JAX with CUDA; meant to take at
most 8 minutes, never yet run on one). Each stage is timed (wall seconds), records the device's memory
figures (``peak_bytes_in_use``, ``bytes_limit``, ``bytes_in_use`` of
``jax.local_devices()[0].memory_stats()``; None where the device reports
none, e.g. a CPU) and records its failure (``error``, one line; the
traceback goes to stderr) without stopping the stages after it:

1. ``environment``: JAX version, backend, device kind and count, memory
   limit, host, package versions.
2. ``bench_sweep``: :func:`experiments.bench_sweep.bench` for MF and NCF at
   C = ``--configs`` (config-steps/s; FLOPs and bytes per config-step from
   XLA's cost analysis of the step as compiled for this device; roofline
   predictions), each row with the achieved FLOP/s and bytes/s and their
   fractions of the device's peaks in ``bench_sweep.ROOFLINES``
   (``fraction_of_peak_flops``, ``fraction_of_peak_bandwidth``; H100: 67
   TFLOP/s, the float32 peak of the steps' default ``Precision.HIGHEST``,
   and 3.35 TB/s; H200 4.8 TB/s; None for a device kind it does not list),
   beside bench_sweep's own ``fraction_of_peak`` (``fp32`` and ``tf32``,
   from its ``PEAK_FLOPS``).
3. ``recommender``: the ML-1M NCF recommender,
   ``experiments/configs/recommender.py:ml-1m,ncf`` defaults, through
   ``monosem_jax.recommenders.train.run``; its test metrics (from the
   workdir's ``metrics.json``).
4. ``sweep``: a 1,024-config x 18-epoch NCF-SAE sweep on it (lambda_pred 8 x
   dict_size 4 x rho 4 x seed 8), end to end through
   ``monosem_jax.sweep.runner.run_sweep`` (memory plan, compilation,
   checkpoints, evaluation included); configs ok / diverged, config-steps/s.
5. ``analysis``: those configs through the analysis pipeline, as
   ``python -m experiments.analyze`` (``open_sweep``, ``open_dataset``,
   ``analyze_sweep`` with the dataset's defaults); ``report.md`` and CSVs.
6. ``targets``: the issue's targets against the measured figures: MF >=
   1,000,000 config-steps/s at C = 1024 (required), >= 2,000,000 (goal); the
   1,024-config NCF sweep <= 120 s end to end; its analysis <= 60 s.
   ``applies`` is False in ``--small`` mode and off a GPU.

Time limits: ``--budget_s`` (default 450) counts from the start of
:func:`main`; a stage that would start after it is recorded as ``skipped:
budget``. Inside the recommender, sweep and analysis stages the budget (and
``--max_stage_s`` per stage) is checked at every progress line (an epoch, a
tenth of the analysed configs): past it the stage stops there (``error:
budget ...``). A recommender stopped that way is frozen at its last
checkpointed epoch (``truncated: true``) so that the sweep still runs; a
sweep stopped that way leaves its last epoch's checkpoint, which the
analysis then analyses (``partial_sweep: true``). What runs after the last
check of a stage (a sweep's evaluation, an analysis's figures and report)
can pass the budget by some seconds: give the command 540-600 s.

``peak_bytes_in_use`` is the process's peak so far (JAX cannot reset it):
a stage's own peak shows where it raises the figure.

The JSON (``--out``) is written atomically after every stage, so a killed
run leaves the stages done so far; the workdirs (recommender, sweep with its
report) stay under ``--workdir`` (default: a fresh temporary folder).

The GPU image (Python 3.12; its package list as published, not yet seen
by a run of this script) already holds jax (CUDA), flax, optax,
orbax-checkpoint, chex, absl-py, pandas, numpy, scipy, PyYAML and
matplotlib (the analysis draws its
figures with it; the environment stage records its version, and without it
only the analysis stage fails, with the ImportError as its ``error``). It
lacks ml-collections: pure Python (``ml_collections-1.1.0-py3-none-any.whl``),
needing only absl-py and PyYAML. Here, once, in the repository root: its
wheel and the ML-1M files (6 MB), in folders git ignores::

  echo /.whl/ >> .git/info/exclude; echo /.device_data/ >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl ml-collections==1.1.0
  mkdir -p .device_data && cp -r $MONOSEM_DATA_DIR/ml-1m .device_data/

On the GPU machine (carry ``.whl`` and ``.device_data``; timeout 600 s)::

  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:. MONOSEM_DATA_DIR=.device_data PYTHONUNBUFFERED=1 && python3 -m experiments.device_check --out=$OUT/device_check.json

Every stage tiny (synthetic world, C = 1, 8, an 8-config x 2-epoch sweep),
to check the script itself on a CPU (about a minute on 2 cores)::

  python -m experiments.device_check --small --out=/tmp/device_check.json

Without ``--small`` on a machine without a GPU the script refuses in one
line (the full sizes take hours on a CPU) unless ``--allow_cpu`` is given;
without ``$MONOSEM_DATA_DIR`` holding ``ml-1m`` it refuses too, before any
work.
"""

from __future__ import annotations

import time

_T_IMPORT = time.perf_counter()  # the budget's clock starts in main()

# pylint: disable=wrong-import-position
import argparse
import datetime
import json
import math
import os
import platform
import re
import sys
import tempfile
import traceback
from importlib import metadata
from typing import Any, Callable

from absl import logging
import jax

from experiments import bench_sweep
from experiments.configs import analyze as analyze_config
from experiments.configs import recommender as rec_configs
from experiments.configs import sweep as sweep_configs
from monosem_jax import files

#: The issue's targets (issue 4 / 11), for one H100.
TARGETS = dict(mf_configs=1024, mf_required=1e6, mf_goal=2e6,
               sweep_configs=1024, sweep_max_s=120.0, analysis_max_s=60.0)

#: The sweep grids: 8 x 4 x 4 x 8 = 1,024 configs; the small one 8.
FULL_GRID = dict(lambda_pred=(0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0),
                 dict_size=(22, 32, 48, 64), rho=(0.01, 0.02, 0.05, 0.1),
                 seed=tuple(range(8)))
SMALL_GRID = dict(lambda_pred=(0.0, 10.0), dict_size=(8, 16),
                  rho=(0.05, 0.1))

#: A progress line of the recommender / sweep (``epoch E/N``) or of the
#: analysis (``neurons: I/C``): where a stage may be stopped.
_PROGRESS = re.compile(r'\s*(?:epoch|neurons:)\s+(\d+)/(\d+)')
_MEMORY_KEYS = ('peak_bytes_in_use', 'bytes_limit', 'bytes_in_use')


class BudgetExceeded(Exception):
  """A stage passed its time limit (at one of its progress lines)."""


class Skip(Exception):
  """A stage cannot run (what it needs is missing); the message says why."""


# ----------------------------------------------------------------------------
# Small helpers.

def say(msg: str) -> None:
  """One progress line on stderr, with the time since the start, flushed."""
  el = time.perf_counter() - _T_IMPORT
  print(f'[device_check {el:7.1f}s] {msg}', file=sys.stderr, flush=True)


def one_line(e: BaseException) -> str:
  """``Type: first line of the message``."""
  text = str(e).strip().splitlines()
  return f'{type(e).__name__}: {text[0] if text else ""}'.rstrip(': ')


def memory() -> dict:
  """The device's memory figures (None for each where it reports none)."""
  try:
    stats = jax.local_devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    stats = None
  stats = stats or {}
  return {k: (int(stats[k]) if stats.get(k) is not None else None)
          for k in _MEMORY_KEYS}


def clean(x: Any) -> Any:
  """Plain JSON (:func:`files.jsonable`), NaN and infinities as None.

  >>> clean({'a': (float('nan'), 1.5)})
  {'a': [None, 1.5]}
  """

  def finite(v):
    if isinstance(v, dict):
      return {k: finite(w) for k, w in v.items()}
    if isinstance(v, list):
      return [finite(w) for w in v]
    if isinstance(v, float) and not math.isfinite(v):
      return None
    return v

  return finite(files.jsonable(x))


def version(package: str) -> str | None:
  """An installed distribution's version, or None."""
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return None


class StageLog:
  """Progress sink of one stage: prints each line, keeps them, and stops the
  stage at a progress line (not its last) once ``deadline`` has passed."""

  def __init__(self, name: str, deadline: float, keep: int = 80):
    self.name, self.deadline, self.keep = name, deadline, keep
    self.lines: list[str] = []

  def __call__(self, msg: str) -> None:
    self.lines = (self.lines + [msg])[-self.keep:]
    say(f'{self.name}: {msg}')
    m = _PROGRESS.match(msg)
    if m and int(m[1]) < int(m[2]) and time.perf_counter() > self.deadline:
      raise BudgetExceeded(f'budget: {self.name} stopped at {m[1]}/{m[2]} '
                           '(time limit passed)')


# ----------------------------------------------------------------------------
# Refusals (before any work).

def refusal(args, backend: str, environ=os.environ) -> str | None:
  """Why the check must not run here (one line), or None: the full sizes
  without a GPU (unless ``--allow_cpu``) or without the ML-1M files; a
  ``--workdir`` that already holds files (a resumed run measures nothing)."""
  if args.workdir and os.path.isdir(args.workdir) and os.listdir(args.workdir):
    return (f'device_check: --workdir={args.workdir} is not empty: give a '
            'fresh folder (a resumed run would not measure anything)')
  if args.small:
    return None
  if backend == 'cpu' and not args.allow_cpu:
    return ('device_check: no GPU (JAX backend cpu): the full sizes take '
            'hours on a CPU; pass --small for the tiny check, or --allow_cpu '
            'to run the full one anyway')
  data = environ.get('MONOSEM_DATA_DIR')
  if not data:
    return ('device_check: MONOSEM_DATA_DIR is not set: point it at the '
            'folder holding ml-1m/ (see the module docstring)')
  folder = os.path.join(data, 'ml-1m')
  if not os.path.isdir(folder):
    folder = data
  from monosem_jax.data.movielens import ML1M_RATINGS_FILES  # pylint: disable=import-outside-toplevel
  if not any(os.path.isfile(os.path.join(folder, f))
             for f in ML1M_RATINGS_FILES):
    return (f'device_check: MONOSEM_DATA_DIR={data} holds no ml-1m ratings '
            f'(none of {", ".join(ML1M_RATINGS_FILES)} in it or in its '
            'ml-1m/)')
  return None


# ----------------------------------------------------------------------------
# Stages. Each fills ``rec`` (so that what it measured survives a failure).

def stage_environment(rec: dict, ctx: dict) -> None:
  """JAX, the device, its memory limit, the host and the packages."""
  dev = jax.local_devices()[0]
  rec.update(
      jax=jax.__version__, jaxlib=version('jaxlib'),
      backend=jax.default_backend(),
      device_kind=getattr(dev, 'device_kind', str(dev)),
      device_count=jax.device_count(),
      memory_limit_bytes=memory()['bytes_limit'],
      host=platform.node(), python=platform.python_version(),
      cpu_count=os.cpu_count(),
      packages={p: version(p) for p in (
          'flax', 'optax', 'orbax-checkpoint', 'chex', 'ml-collections',
          'numpy', 'pandas', 'scipy', 'matplotlib', 'jax-cuda13-plugin',
          'jax-cuda12-plugin')},
      env={k: os.environ.get(k) for k in (
          'JAX_PLATFORMS', 'XLA_FLAGS', 'XLA_PYTHON_CLIENT_PREALLOCATE',
          'XLA_PYTHON_CLIENT_MEM_FRACTION', 'MONOSEM_DATA_DIR')},
      import_s=ctx['import_s'])


def peaks_of(device_kind: str) -> dict | None:
  """The roofline peaks of ``bench_sweep.ROOFLINES`` for this device kind."""
  for name, peak in bench_sweep.ROOFLINES.items():
    if name in device_kind:
      return dict(name=name, **peak)
  return None


def add_fractions(rows: list[dict], peaks: dict | None) -> None:
  """Each bench row's achieved FLOP/s and bytes/s as fractions of the
  device's peaks (None where the device or the figure is unknown)."""
  for row in rows:
    rate = row['config_steps_per_s']
    f, b = row.get('flops_per_config_step'), row.get('bytes_per_config_step')
    row['achieved_flops_per_s'] = None if f is None else f * rate
    row['achieved_bytes_per_s'] = None if b is None else b * rate
    row['fraction_of_peak_flops'] = (
        row['achieved_flops_per_s'] / peaks['flops']
        if peaks and f is not None else None)
    row['fraction_of_peak_bandwidth'] = (
        row['achieved_bytes_per_s'] / peaks['bytes_per_s']
        if peaks and b is not None else None)


def stage_bench(rec: dict, ctx: dict) -> None:
  """``bench_sweep.bench`` for MF and NCF, with fractions of the peaks."""
  a = ctx['args']
  configs = [int(c) for c in a.configs.split(',')]
  kind = getattr(jax.local_devices()[0], 'device_kind', '')
  peaks = peaks_of(kind)
  rec.update(configs=configs, steps_per_epoch=a.steps, repeats=a.repeats,
             seq_configs=a.seq_configs, precision='float32 (SweepSpec '
             'default: Precision.HIGHEST)', peaks=peaks,
             device_peak_flops=bench_sweep.device_peak(kind), results=[])
  for model in ('mf', 'ncf'):
    if time.perf_counter() > ctx['deadline']:
      raise BudgetExceeded(f'budget: bench_sweep stopped before {model}')
    t = time.perf_counter()
    out = bench_sweep.bench(model, configs, a.steps, a.repeats, a.seq_configs)
    add_fractions(out['vmapped'], peaks)
    out['seconds'] = time.perf_counter() - t
    rec['results'].append(out)
    best = max(out['vmapped'], key=lambda r: r['config_steps_per_s'])
    say(f'bench_sweep: {model} done in {out["seconds"]:.1f}s; best '
        f'{best["config_steps_per_s"]:,.0f} config-steps/s at C={best["C"]}')


def recommender_config(small: bool):
  """``recommender.py:ml-1m,ncf`` as it is; small: a 300 x 120 synthetic
  world, 2 epochs (as tests/test_sweep_runner.py)."""
  if small:
    cfg = rec_configs.get_config('synthetic,ncf')
    cfg.dataset.options.n_users = 300
    cfg.dataset.options.n_items = 120
    cfg.train.epochs = 2
    return cfg
  cfg = rec_configs.get_config('ml-1m,ncf')
  cfg.dataset.data_dir = os.path.abspath(os.environ['MONOSEM_DATA_DIR'])
  return cfg


def stage_recommender(rec: dict, ctx: dict) -> None:
  """Trains and freezes the NCF recommender; its test metrics. Stopped by
  the time limit, it is frozen at its last checkpointed epoch."""
  from monosem_jax import checkpoints  # pylint: disable=import-outside-toplevel
  from monosem_jax.recommenders import train  # pylint: disable=import-outside-toplevel
  cfg = recommender_config(ctx['args'].small)
  workdir = os.path.join(ctx['workdir'], 'recommender')
  log = StageLog('recommender', ctx['stage_deadline'])
  rec.update(config=f'{cfg.dataset.name},ncf', workdir=workdir,
             epochs_asked=int(cfg.train.epochs), truncated=False)
  try:
    train.run(cfg, workdir, log=log)
  except BudgetExceeded as e:
    saved = checkpoints.saved_steps(os.path.join(workdir, 'checkpoints'))
    rec.update(truncated=True, stopped=str(e))
    cfg.train.epochs = max(saved + [1])
    say(f'recommender: {e}; freezing it at epoch {cfg.train.epochs}')
    train.run(cfg, workdir, log=lambda m: say(f'recommender: {m}'))
  with open(os.path.join(workdir, 'metrics.json')) as f:
    m = json.load(f)
  final = m['final']
  rec.update(epochs_trained=len(m['epochs']), test_metrics=final['model'],
             popularity=final['popularity'],
             ndcg10_ratio_to_popularity=final.get(
                 'ndcg@10_ratio_to_popularity'),
             log_tail=log.lines[-6:])
  ctx['rec_dir'] = workdir


def sweep_config(small: bool, rec_dir: str):
  """``sweep.py:ml-1m,ncf`` on :data:`FULL_GRID` (or the small one, 2
  epochs of 3 steps of 64 pairs); returns ``(config, number of configs)``."""
  if small:
    cfg = sweep_configs.get_config('synthetic,ncf')
    cfg.epochs = 2
    cfg.spec.batch_users = cfg.spec.batch_items = cfg.spec.batch_pairs = 64
    cfg.spec.steps_per_epoch = 3
    cfg.plan_memory = False   # two more compiles (~10 s on a CPU)
    grid = SMALL_GRID
  else:
    cfg = sweep_configs.get_config('ml-1m,ncf')
    grid = FULL_GRID
  cfg.recommender_workdir = rec_dir
  cfg.grid = sweep_configs.grid_config(**grid)
  return cfg, math.prod(len(v) for v in grid.values())


def parse_sweep_log(lines: list[str]) -> dict:
  """Epochs, steps per epoch, the memory plan and the per-line rates."""
  out: dict[str, Any] = dict(epochs=None, steps_per_epoch=None,
                             memory_plan=None, epoch_rates=[])
  for line in lines:
    m = re.search(r'(\d+) epochs x (\d+) steps', line)
    if line.startswith('sweep:') and m:
      out['epochs'], out['steps_per_epoch'] = int(m[1]), int(m[2])
    if line.startswith('memory (XLA'):
      out['memory_plan'] = line
    m = re.match(r'epoch\s+(\d+)/\d+.*?([\d,]+) config-steps/s', line)
    if m:
      out['epoch_rates'].append([int(m[1]), float(m[2].replace(',', ''))])
  return out


def stage_sweep(rec: dict, ctx: dict) -> None:
  """The whole sweep through ``run_sweep``; configs ok / diverged, rates."""
  if not ctx.get('rec_dir'):
    raise Skip('needs the recommender (its stage did not finish)')
  from monosem_jax.sweep.runner import run_sweep  # pylint: disable=import-outside-toplevel
  cfg, n = sweep_config(ctx['args'].small, ctx['rec_dir'])
  workdir = os.path.join(ctx['workdir'], 'sweep')
  ctx['sweep_dir'] = workdir
  log = StageLog('sweep', ctx['stage_deadline'])
  rec.update(configs_asked=n, grid=cfg.grid.to_dict(), epochs_asked=cfg.epochs,
             precision=cfg.spec.precision, workdir=workdir, complete=False)
  t = time.perf_counter()
  try:
    table = run_sweep(cfg, workdir, log=log)
  finally:
    rec['seconds_end_to_end'] = time.perf_counter() - t
    rec.update(parse_sweep_log(log.lines), log_tail=log.lines[-8:])
  ok = int((table.status == 'ok').sum())
  rec.update(complete=True, configs=len(table), ok=ok,
             diverged=int(len(table) - ok))
  if rec['epochs'] and rec['steps_per_epoch']:
    steps = len(table) * rec['epochs'] * rec['steps_per_epoch']
    rec.update(config_steps=steps,
               config_steps_per_s=steps / rec['seconds_end_to_end'])


def analysis_kwargs(dataset_name: str) -> dict:
  """``analyze_sweep``'s keywords as ``experiments.analyze`` resolves the
  default config (the dataset's use cases, concept sets and pop_top)."""
  return analyze_config.analyze_kwargs(analyze_config.get_config(),
                                       dataset_name)


def stage_analysis(rec: dict, ctx: dict) -> None:
  """``analyze_sweep`` on the sweep's last checkpoint, as
  ``experiments.analyze`` (under the sweep's lock)."""
  sweep_dir = ctx.get('sweep_dir')
  from monosem_jax.sweep import checkpoint  # pylint: disable=import-outside-toplevel
  if not sweep_dir or not checkpoint.saved_epochs(sweep_dir):
    raise Skip('needs a sweep with at least one checkpointed epoch')
  from monosem_jax.analysis import pipeline, workdirs  # pylint: disable=import-outside-toplevel
  log = StageLog('analysis', ctx['stage_deadline'])
  t = time.perf_counter()
  with files.WorkdirLock(sweep_dir, 'analysis'):   # before reading it
    # a sweep cut by the time budget is analysed on purpose (noted in it)
    view = workdirs.open_sweep(sweep_dir, allow_partial=True)
    dataset = workdirs.open_dataset(view.artifact)
    rec.update(configs=view.num_configs,
               epochs_of_checkpoint=int(view.state.epoch),
               partial_sweep=not ctx['stages'].get('sweep', {}).get(
                   'complete'),
               seconds_open=time.perf_counter() - t)
    result = pipeline.analyze_sweep(view, dataset,
                                    **analysis_kwargs(dataset.name), log=log)
  rec['seconds_end_to_end'] = time.perf_counter() - t
  fid = result.fidelity
  rec.update(seconds_analyze=result.seconds, report=result.report_path,
             chosen=result.chosen, pareto=int(fid['pareto'].sum()),
             max_pure_concepts=int(fid[pipeline.PURE].max()),
             max_rbo_norm=float(fid['rbo_norm'].max()),
             interventions_rows=len(result.interventions),
             log_tail=log.lines[-8:])


def _bench_rate(stages: dict, model: str, c: int) -> float | None:
  for res in stages.get('bench_sweep', {}).get('results', []):
    if res.get('model') == model:
      for row in res.get('vmapped', []):
        if row.get('C') == c:
          return row.get('config_steps_per_s')
  return None


def stage_targets(rec: dict, ctx: dict) -> None:
  """The issue's targets (:data:`TARGETS`) against the measured figures."""
  stages, t = ctx['stages'], TARGETS
  env = stages.get('environment', {})
  sweep, analysis = stages.get('sweep', {}), stages.get('analysis', {})
  mf = _bench_rate(stages, 'mf', t['mf_configs'])
  sweep_s = sweep.get('seconds_end_to_end')
  sweep_full = bool(sweep.get('complete')) and (
      sweep.get('configs') == t['sweep_configs'])
  an_s = analysis.get('seconds_end_to_end')
  an_full = (analysis.get('status') == 'ok' and not analysis.get(
      'partial_sweep') and analysis.get('configs') == t['sweep_configs'])
  rec.update(
      applies=(not ctx['args'].small and env.get('backend') == 'gpu'),
      device_kind=env.get('device_kind'), thresholds=dict(t),
      mf_config_steps_per_s_at_1024=mf,
      mf_required_met=bool(mf is not None and mf >= t['mf_required']),
      mf_goal_met=bool(mf is not None and mf >= t['mf_goal']),
      sweep_seconds=sweep_s, sweep_configs=sweep.get('configs'),
      sweep_met=bool(sweep_full and sweep_s is not None
                     and sweep_s <= t['sweep_max_s']),
      analysis_seconds=an_s, analysis_configs=analysis.get('configs'),
      analysis_met=bool(an_full and an_s is not None
                        and an_s <= t['analysis_max_s']))
  rec['all_required_met'] = bool(rec['mf_required_met'] and rec['sweep_met']
                                 and rec['analysis_met'])
  if 'H100' not in str(rec['device_kind']):
    rec['note'] = 'the targets were set for one H100'


STAGES: tuple[tuple[str, Callable[[dict, dict], None]], ...] = (
    ('environment', stage_environment), ('bench_sweep', stage_bench),
    ('recommender', stage_recommender), ('sweep', stage_sweep),
    ('analysis', stage_analysis), ('targets', stage_targets))


# ----------------------------------------------------------------------------
# Driver.

def run_stage(name: str, fn, ctx: dict) -> dict:
  """Runs one stage (or records why not) into ``ctx['stages'][name]``."""
  rec: dict[str, Any] = {}
  ctx['stages'][name] = rec
  now = time.perf_counter()
  if now > ctx['deadline'] and name != 'targets':
    rec.update(status='skipped', skipped='budget')
    say(f'== {name}: skipped (budget of {ctx["args"].budget_s:.0f}s spent)')
    return rec
  ctx['stage_deadline'] = min(ctx['deadline'], now + ctx['args'].max_stage_s)
  say(f'== {name}')
  try:
    fn(rec, ctx)
    rec['status'] = 'ok'
  except Skip as e:
    rec.update(status='skipped', skipped=str(e))
  except BudgetExceeded as e:
    rec.update(status='error', error=str(e))
  except Exception as e:  # pylint: disable=broad-except
    rec.update(status='error', error=one_line(e))
    traceback.print_exc(file=sys.stderr)
  rec['seconds'] = time.perf_counter() - now
  rec.update(memory())
  mem = rec['peak_bytes_in_use']
  say(f'== {name}: {rec["status"]} in {rec["seconds"]:.1f}s'
      + (f', peak {mem / 2**30:.2f} GiB' if mem else '')
      + (f' ({rec.get("error") or rec.get("skipped")})'
         if rec['status'] != 'ok' else ''))
  return rec


def fmt(value, spec: str) -> str:
  return 'n/a' if value is None else format(value, spec)


def summary(doc: dict) -> list[str]:
  """A few lines for a person: each stage and the targets."""
  s = doc['stages']
  lines = []
  for name, rec in s.items():
    line = f'{name:12s} {rec.get("status", "?"):8s}'
    if 'seconds' in rec:
      line += f' {rec["seconds"]:7.1f}s'
    if rec.get('error') or rec.get('skipped'):
      line += f'  {rec.get("error") or rec.get("skipped")}'
    lines.append(line)
  t = s.get('targets', {})
  if t:
    lines.append(
        f'targets (applies: {t.get("applies")}): MF at C=1024 '
        f'{fmt(t.get("mf_config_steps_per_s_at_1024"), ",.0f")} config-steps/s'
        f' (required {t.get("mf_required_met")}, goal {t.get("mf_goal_met")});'
        f' sweep {fmt(t.get("sweep_seconds"), ".1f")}s for '
        f'{t.get("sweep_configs")} configs ({t.get("sweep_met")}); analysis '
        f'{fmt(t.get("analysis_seconds"), ".1f")}s ({t.get("analysis_met")})')
  return lines


def parse_args(argv=None) -> argparse.Namespace:
  """The flags; unset bench sizes take the full or the small defaults."""
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--out', default='device_check.json',
                  help='the JSON document (written after every stage)')
  ap.add_argument('--small', action='store_true',
                  help='every stage tiny (synthetic data; a CPU check)')
  ap.add_argument('--allow_cpu', action='store_true',
                  help='run the full sizes without a GPU (hours)')
  ap.add_argument('--budget_s', type=float, default=450.0,
                  help='stages starting after this are skipped')
  ap.add_argument('--max_stage_s', type=float, default=240.0,
                  help='recommender, sweep and analysis stop at their next '
                  'progress line after this')
  ap.add_argument('--configs', default=None,
                  help='bench_sweep C values (default 1,8,64,256,1024,4096; '
                  'small: 1,8)')
  ap.add_argument('--steps', type=int, default=None,
                  help='bench_sweep steps per epoch (default 50; small: 2)')
  ap.add_argument('--repeats', type=int, default=None,
                  help='bench_sweep timed epochs, best kept (default 3; '
                  'small: 1)')
  ap.add_argument('--seq_configs', type=int, default=None,
                  help='configs of the sequential baseline (default 2; '
                  'small: 1)')
  ap.add_argument('--workdir', default=None,
                  help='where the recommender and the sweep are written '
                  '(default: a fresh temporary folder)')
  a = ap.parse_args(argv)
  full, small = ('1,8,64,256,1024,4096', 50, 3, 2), ('1,8', 2, 1, 1)
  for name, value in zip(('configs', 'steps', 'repeats', 'seq_configs'),
                         small if a.small else full):
    if getattr(a, name) is None:
      setattr(a, name, value)
  return a


def main(argv=None) -> int:
  """Runs every stage; 1 (and one line on stderr) for a refusal, else 0."""
  t0 = time.perf_counter()
  a = parse_args(argv)
  why = refusal(a, jax.default_backend())
  if why:
    print(why, file=sys.stderr, flush=True)
    return 1
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  workdir = files.prepare_workdir(a.workdir or tempfile.mkdtemp(
      prefix='device_check_'))
  out = os.path.abspath(a.out)
  doc = dict(check='monosem_jax device check (issue 11, item 1)',
             small=a.small, argv=sys.argv[1:] if argv is None else list(argv),
             started_utc=datetime.datetime.now(datetime.timezone.utc)
             .isoformat(timespec='seconds'),
             budget_s=a.budget_s, max_stage_s=a.max_stage_s, workdir=workdir,
             stages={}, complete=False)
  ctx = dict(args=a, workdir=workdir, stages=doc['stages'],
             deadline=t0 + a.budget_s, import_s=t0 - _T_IMPORT)
  say(f'device check ({"small" if a.small else "full"}) on '
      f'{jax.default_backend()}: JSON -> {out}, workdirs under {workdir}')
  for name, fn in STAGES:
    run_stage(name, fn, ctx)
    doc['elapsed_s'] = time.perf_counter() - t0
    doc['complete'] = name == STAGES[-1][0]
    files.atomic_write_json(out, clean(doc))
  for line in summary(doc):
    say(line)
  say(f'wrote {out} ({doc["elapsed_s"]:.1f}s)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
