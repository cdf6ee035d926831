r"""The prepared GPU device check (issues 11 and 19): one script, one JSON.

Run when a GPU is lent (one NVIDIA H200 or H100, JAX with CUDA). It ran once
on an H200 at commit 00e91fe (BENCHMARKS.md, section H200; 325 s, before
the stages of issue 19). Each stage is timed (wall seconds), records the
device's memory figures (``peak_bytes_in_use``, ``bytes_limit``,
``bytes_in_use`` of ``jax.local_devices()[0].memory_stats()``; None where
the device reports none, e.g. a CPU) and records its failure (``error``, one
line; the traceback goes to stderr) without stopping the stages after it.
The stages, the most valuable figures first:

1. ``environment``: JAX version, backend, device kind and count, memory
   limit, host, package versions, the relevant environment variables.
2. ``bench_sweep``: :func:`experiments.bench_sweep.bench` for MF and NCF at
   C = ``--configs`` in float32, then at C = ``--precision_configs`` in the
   other ``--precisions`` (tf32, bfloat16), one result per model and
   precision. Each row: config-steps/s; FLOPs and bytes per config-step
   from XLA's cost analysis of the step as compiled for this device and the
   minimal bytes (weights and Adam state once, the shared batch over C);
   the fractions of the fp32 compute roof, of the row precision's compute
   roof and of the byte roof by either count (``bench_sweep.add_roofs``;
   the issue-11 names ``fraction_of_peak_flops`` and
   ``fraction_of_peak_bandwidth`` kept); roofline predictions.
3. ``recommender``: the ML-1M NCF recommender,
   ``experiments/configs/recommender.py:ml-1m,ncf`` defaults, through
   ``monosem_jax.recommenders.train.run``; its test metrics.
4. ``determinism``: the cost of deterministic recommender training (issue
   19, item 1b): for NCF and MF (``recommender.py:ml-1m,KIND`` settings, on
   the recommender's split) one training epoch compiled with and without
   ``xla_gpu_deterministic_ops`` (``loop.make_epoch_fn(cfg,
   deterministic)``): compile + first epoch, the best of two more epochs
   from the same state, whether those two are bitwise equal, and the
   slowdown.
5. ``sweep``: a 1,024-config x 18-epoch NCF-SAE sweep on it (lambda_pred 8 x
   dict_size 4 x rho 4 x seed 8), end to end through
   ``monosem_jax.sweep.runner.run_sweep`` (memory plan or why it was
   skipped, compilation with its ``compile:`` seconds, checkpoints,
   evaluation included); configs ok / diverged, config-steps/s.
6. ``analysis``: those configs through the analysis pipeline, as
   ``python -m experiments.analyze`` (``open_sweep``, ``open_dataset``,
   ``analyze_sweep`` with the dataset's defaults; ``allow_partial=True``
   where the analysis has that option and the sweep was stopped by the
   budget); ``report.md`` and CSVs.
7. ``tests``: the test suite on the device, last, in a subprocess:
   ``python -m pytest -v -n 8 -p no:cacheprovider -p
   experiments.device_check --ignore=tests/test_notebooks.py <the tests
   that failed on the H200 first> tests`` with
   ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (8 processes share the GPU),
   limited to the rest of the budget (at least ``--tests_s``: the stages
   before it stop in time to leave that much). Passed / failed / errors /
   skipped counts and the failed test ids, from the outcomes this module,
   as that pytest's plugin (:class:`OutcomeRecorder`), records test by test
   (``outcomes``, a JSON-lines file; no output line is parsed), so a run
   stopped by its limit still reports what it did (``complete: false``).
8. ``targets``: the issue's targets (:data:`TARGETS`, per device kind, all
   in the JSON) against the measured figures. H200 (issue 19): MF >=
   2,000,000 config-steps/s at C = 1,024 (required), >= 4,000,000 (goal);
   NCF >= 2,000,000 at C = 1,024; the 1,024-config x 18-epoch NCF sweep <=
   60 s end to end; its analysis <= 30 s; the suite all pass. H100 (issue
   11): MF >= 1,000,000 (goal 2,000,000), sweep <= 120 s, analysis <= 60
   s, the suite all pass. ``applies`` is False in ``--small`` mode, off a
   GPU and on other device kinds (then H200's are shown).

Time limits: ``--budget_s`` (default 510) counts from the start of
:func:`main`; a stage that would start after it is recorded as ``skipped:
budget``; the stages before ``tests`` end ``--tests_s`` (default 150)
earlier. Inside the recommender, sweep and analysis stages the limit (and
``--max_stage_s`` per stage) is checked after every epoch (a
:class:`StageBudget` subscribed to ``train.run``'s ``on_epoch`` hooks; for
the sweep a :class:`SweepBudget` subscribed to ``run_sweep``'s, which also
records every epoch's rate from its typed ``EpochStats``) or after every
block of the analysis's neuron tables (an :class:`AnalysisBudget` subscribed
to ``analyze_sweep``'s ``on_progress`` hooks, reading its typed
``AnalysisProgress``): past it the stage stops there (``error: budget
...``); no log line is parsed. A recommender stopped that way is frozen at its
last checkpointed epoch (``truncated: true``) so that the sweep still runs;
a sweep stopped that way checkpoints its last epoch, which the analysis then
analyses (``partial_sweep: true``). What runs after the last
check of a stage (a sweep's evaluation, an analysis's figures and report)
can pass its limit by some seconds; the tests stage is stopped at the
budget itself, so the whole check ends within about ``--budget_s`` + 15 s
(+ the imports): under 9 minutes with the defaults. Expected on one H200
(from the run at 00e91fe): bench ~110 s, recommender ~30 s, determinism
~25 s, sweep ~70 s, analysis <= 90 s, the suite with the rest.

``peak_bytes_in_use`` is the process's peak so far (JAX cannot reset it):
a stage's own peak shows where it raises the figure.

The JSON (``--out``) is written atomically after every stage, so a killed
run leaves the stages done so far; the workdirs (recommender, sweep with its
report) stay under ``--workdir`` (default: a fresh temporary folder).

The GPU image (Python 3.12, jax with the CUDA plugin, flax, optax,
orbax-checkpoint, chex, absl-py, pandas, numpy, scipy, PyYAML, matplotlib,
pytest and pytest-xdist, as the H200 run recorded it)
lacks ml-collections: pure Python (``ml_collections-1.1.0-py3-none-any.whl``),
needing only absl-py and PyYAML. Here, once, in the repository root: its
wheel and the ML-1M files (6 MB), in folders git ignores::

  echo /.whl/ >> .git/info/exclude; echo /.device_data/ >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl ml-collections==1.1.0
  mkdir -p .device_data && cp -r $MONOSEM_DATA_DIR/ml-1m .device_data/

On the GPU machine (carry ``.whl`` and ``.device_data``; timeout 600 s)::

  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:. MONOSEM_DATA_DIR=.device_data PYTHONUNBUFFERED=1 && python3 -m experiments.device_check --budget_s=510 --out=$OUT/device_check.json

Every stage tiny (synthetic world, C = 1, 8, an 8-config x 2-epoch sweep,
one small test file), to check the script itself on a CPU (about a minute
and a half on 2 cores)::

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
import math
import os
import json
import platform
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from importlib import metadata
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp

from experiments import bench_sweep
from monosem_jax.experiments.configs import analyze as analyze_config
from monosem_jax.experiments.configs import recommender as rec_configs
from monosem_jax.experiments.configs import sweep as sweep_configs
from monosem_jax import compilation, files
from monosem_jax.analysis import pipeline, workdirs
from monosem_jax.analysis.progress import AnalysisStopped
from monosem_jax.data.movielens import ML1M_RATINGS_FILES
from monosem_jax.recommenders import loop, train
from monosem_jax.recommenders.artifact import RecommenderArtifact
from monosem_jax.recommenders.config import TrainConfig
from monosem_jax.sweep import checkpoint
from monosem_jax.sweep.runner import run_sweep

#: The issues' targets per device kind (matched in the device kind's name):
#: config-steps/s of the bench at C = 1,024 (MF required and goal, NCF
#: required), the 1,024-config NCF sweep end to end and its analysis in
#: seconds, and the suite on the device.
TARGETS = {
    'H200': dict(source='issue 19', mf_configs=1024, mf_required=2e6,
                 mf_goal=4e6, ncf_configs=1024, ncf_required=2e6,
                 sweep_configs=1024, sweep_max_s=60.0, analysis_max_s=30.0,
                 tests_all_pass=True),
    'H100': dict(source='issue 11', mf_configs=1024, mf_required=1e6,
                 mf_goal=2e6, sweep_configs=1024, sweep_max_s=120.0,
                 analysis_max_s=60.0, tests_all_pass=True),
}
#: The repository root (the tests stage runs pytest there).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The tests stage is skipped with less time left than this (seconds).
MIN_TESTS_S = 30.0
#: The tests that failed on the H200 at 00e91fe: the suite runs them first.
GPU_FAILED_FIRST = ('tests/test_recommenders_train.py',
                    'tests/test_analysis_interventions.py',
                    'tests/test_sae_losses.py', 'tests/test_sweep_engine.py')

#: The sweep grids: 8 x 4 x 4 x 8 = 1,024 configs; the small one 8.
FULL_GRID = dict(lambda_pred=(0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0),
                 dict_size=(22, 32, 48, 64), rho=(0.01, 0.02, 0.05, 0.1),
                 seed=tuple(range(8)))
SMALL_GRID = dict(lambda_pred=(0.0, 10.0), dict_size=(8, 16),
                  rho=(0.05, 0.1))

_MEMORY_KEYS = ('peak_bytes_in_use', 'bytes_limit', 'bytes_in_use')


class BudgetExceeded(Exception):
  """A stage passed its time limit (its hook stopped it, or between its
  parts)."""


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
  """Log sink of one stage: prints each line and keeps the last ``keep``
  for the JSON's ``log_tail`` (it reads none of them: the stages are timed
  and stopped by their typed hooks)."""

  def __init__(self, name: str, keep: int = 80):
    self.name, self.keep = name, keep
    self.lines: list[str] = []

  def __call__(self, msg: str) -> None:
    self.lines = (self.lines + [msg])[-self.keep:]
    say(f'{self.name}: {msg}')


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
          'XLA_PYTHON_CLIENT_MEM_FRACTION', 'MONOSEM_DATA_DIR',
          loop.NONDETERMINISTIC_ENV, compilation.CACHE_ENV)},
      import_s=ctx['import_s'])


def stage_bench(rec: dict, ctx: dict) -> None:
  """``bench_sweep.bench`` for MF and NCF in float32 at ``--configs``, then
  in the other precisions at ``--precision_configs`` (no sequential
  baseline there); the budget is checked before each."""
  a = ctx['args']
  configs = [int(c) for c in a.configs.split(',')]
  other_cs = [int(c) for c in a.precision_configs.split(',')]
  precisions = a.precisions.split(',')
  kind = getattr(jax.local_devices()[0], 'device_kind', '')
  roof = bench_sweep.device_roof(kind)
  rec.update(configs=configs, steps_per_epoch=a.steps, repeats=a.repeats,
             seq_configs=a.seq_configs, precisions=precisions,
             precision_configs=other_cs,
             precision='float32 (SweepSpec default: Precision.HIGHEST) at '
             '--configs; the other precisions at --precision_configs',
             peaks=peaks_of(kind), device_roof=roof,
             device_peak_flops=bench_sweep.device_peak(kind), results=[])
  for i, precision in enumerate(precisions):
    for model in ('mf', 'ncf'):
      if time.perf_counter() > ctx['stage_deadline']:
        raise BudgetExceeded(f'budget: bench_sweep stopped before {model} '
                             f'{precision}')
      t = time.perf_counter()
      out = bench_sweep.bench(model, configs if i == 0 else other_cs, a.steps,
                              a.repeats, a.seq_configs, precision=precision,
                              sequential=i == 0)
      out['seconds'] = time.perf_counter() - t
      rec['results'].append(out)
      best = max(out['vmapped'], key=lambda r: r['config_steps_per_s'])
      say(f'bench_sweep: {model} {precision} done in {out["seconds"]:.1f}s; '
          f'best {best["config_steps_per_s"]:,.0f} config-steps/s at '
          f'C={best["C"]}')


def peaks_of(device_kind: str) -> dict | None:
  """The roofline peaks of ``bench_sweep.ROOFLINES`` for this device kind."""
  for name, peak in bench_sweep.ROOFLINES.items():
    if name in device_kind:
      return dict(name=name, **peak)
  return None


def recommender_config(small: bool, kind: str = 'ncf'):
  """``recommender.py:ml-1m,KIND`` as it is; small: a 300 x 120 synthetic
  world, 2 epochs (as tests/test_sweep_runner.py)."""
  if small:
    cfg = rec_configs.get_config(f'synthetic,{kind}')
    cfg.dataset.options.n_users = 300
    cfg.dataset.options.n_items = 120
    cfg.train.epochs = 2
    return cfg
  cfg = rec_configs.get_config(f'ml-1m,{kind}')
  cfg.dataset.data_dir = os.path.abspath(os.environ['MONOSEM_DATA_DIR'])
  return cfg


class StageBudget:
  """A stage's ``on_epoch`` hook: stops it after an epoch (not its last)
  once ``deadline`` has passed, and says so in :attr:`stopped`.

  >>> from types import SimpleNamespace as E
  >>> b = StageBudget('recommender', deadline=0.0)        # long passed
  >>> b(E(epoch=3, epochs=3, last=True)), b.stopped
  (False, None)
  >>> b(E(epoch=1, epochs=3, last=False)), b.stopped
  (True, 'budget: recommender stopped at 1/3 (time limit passed)')
  """

  def __init__(self, name: str, deadline: float):
    self.name, self.deadline = name, deadline
    self.stopped: str | None = None

  def __call__(self, stats) -> bool:
    return self.check(stats.last, stats.epoch, stats.epochs)

  def check(self, last: bool, done: int, total: int) -> bool:
    """Whether to stop at ``done`` of ``total`` (never at the ``last``)."""
    if not last and time.perf_counter() > self.deadline:
      self.stopped = (f'budget: {self.name} stopped at {done}/{total} (time '
                      'limit passed)')
      return True
    return False


def stage_recommender(rec: dict, ctx: dict) -> None:
  """Trains and freezes the NCF recommender; its test metrics. Stopped by
  the time limit (its typed hook, :class:`StageBudget`), it is frozen at
  that epoch, which is checkpointed."""
  cfg = recommender_config(ctx['args'].small)
  workdir = os.path.join(ctx['workdir'], 'recommender')
  log = StageLog('recommender')
  budget = StageBudget('recommender', ctx['stage_deadline'])
  rec.update(config=f'{cfg.dataset.name},ncf', workdir=workdir,
             epochs_asked=int(cfg.train.epochs), truncated=False)
  result = train.run(cfg, workdir, log=log, on_epoch=[budget])
  if result.stopped:
    rec.update(truncated=True, stopped=budget.stopped)
    cfg.train.epochs = result.epoch
    say(f'recommender: {budget.stopped}; freezing it at epoch '
        f'{cfg.train.epochs}')
    result = train.run(cfg, workdir, log=lambda m: say(f'recommender: {m}'))
  m = result.metrics
  final = result.final
  rec.update(epochs_trained=len(m['epochs']), test_metrics=final['model'],
             popularity=final['popularity'],
             ndcg10_ratio_to_popularity=final.get(
                 'ndcg@10_ratio_to_popularity'),
             log_tail=log.lines[-6:])
  ctx['rec_dir'] = workdir


def _epoch_timing(cfg, split, deterministic: bool) -> dict:
  """One training epoch of ``cfg`` compiled with or without deterministic
  GPU ops: compile + first epoch, then two epochs from the same state."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')     # the opt-out's "not reproducible"
    epoch = loop.make_epoch_fn(cfg, deterministic)
  args = (jnp.asarray(split.train_users), jnp.asarray(split.train_items),
          split.sampler_tables())
  state = loop.init_state(cfg, split.n_users, split.n_items)
  t = time.perf_counter()
  jax.block_until_ready(epoch(state, *args))
  first = time.perf_counter() - t
  runs, times = [], []
  for _ in range(2):
    t = time.perf_counter()
    out = jax.block_until_ready(epoch(state, *args)[0].params)
    times.append(time.perf_counter() - t)
    runs.append(jax.device_get(out))
  same = all(jax.tree.leaves(jax.tree.map(
      lambda x, y: bool((x == y).all()), *runs)))
  return dict(compile_and_first_epoch_s=first, epoch_s=min(times),
              repeat_bitwise_equal=same)


def stage_determinism(rec: dict, ctx: dict) -> None:
  """Epoch times with and without ``xla_gpu_deterministic_ops`` for the
  NCF and MF recommenders of :func:`recommender_config` on its split."""
  if not ctx.get('rec_dir'):
    raise Skip('needs the recommender (its stage did not finish)')
  split = RecommenderArtifact.load(os.path.join(ctx['rec_dir'], 'frozen')).split
  rec.update(option='xla_gpu_deterministic_ops (loop.training_compiler_'
             'options)', n_train=int(split.n_train))
  for kind in ('ncf', 'mf'):
    if time.perf_counter() > ctx['stage_deadline']:
      raise BudgetExceeded(f'budget: determinism stopped before {kind}')
    c = recommender_config(ctx['args'].small, kind)
    cfg = TrainConfig.from_mapping({**c.model.to_dict(), **c.train.to_dict()})
    det = _epoch_timing(cfg, split, True)
    non = _epoch_timing(cfg, split, False)
    rec[kind] = dict(batch_size=cfg.batch_size, optimizer=cfg.optimizer,
                     deterministic=det, nondeterministic=non,
                     slowdown=det['epoch_s'] / non['epoch_s'])
    say(f'determinism: {kind} epoch {det["epoch_s"]:.3f}s deterministic, '
        f'{non["epoch_s"]:.3f}s without ({rec[kind]["slowdown"]:.2f}x); '
        f'repeat bitwise equal {det["repeat_bitwise_equal"]} / '
        f'{non["repeat_bitwise_equal"]}')


def sweep_config(small: bool, rec_dir: str):
  """``sweep.py:ml-1m,ncf`` on :data:`FULL_GRID` (or the small one, 2
  epochs of 3 steps of 64 pairs); returns ``(config, number of configs)``."""
  if small:
    cfg = sweep_configs.get_config('synthetic,ncf')
    cfg.epochs = 2
    cfg.spec.batch_pairs = 64
    cfg.spec.steps_per_epoch = 3
    grid = SMALL_GRID
  else:
    cfg = sweep_configs.get_config('ml-1m,ncf')
    grid = FULL_GRID
  cfg.recommender_workdir = rec_dir
  cfg.grid = sweep_configs.grid_config(**grid)
  return cfg, math.prod(len(v) for v in grid.values())


class SweepBudget(StageBudget):
  """The sweep stage's subscriber (an ``on_epoch`` hook of ``run_sweep``):
  records every epoch's config-steps/s and stops the sweep after an epoch
  (not its last) once ``deadline`` has passed (:class:`StageBudget`).

  >>> from types import SimpleNamespace as E
  >>> b = SweepBudget(deadline=0.0)          # long passed
  >>> b(E(epoch=3, epochs=3, last=True, config_steps_per_s=2.0)), b.stopped
  (False, None)
  >>> b(E(epoch=1, epochs=3, last=False, config_steps_per_s=1.0))
  True
  >>> b.stopped, b.rates
  ('budget: sweep stopped at 1/3 (time limit passed)', [[3, 2.0], [1, 1.0]])
  """

  def __init__(self, deadline: float):
    super().__init__('sweep', deadline)
    self.rates: list[list[float]] = []

  def __call__(self, stats) -> bool:
    self.rates.append([stats.epoch, stats.config_steps_per_s])
    return super().__call__(stats)


def stage_sweep(rec: dict, ctx: dict) -> None:
  """The whole sweep through ``run_sweep``; configs ok / diverged, rates
  (from its typed result and its hooks, no log line is parsed)."""
  if not ctx.get('rec_dir'):
    raise Skip('needs the recommender (its stage did not finish)')
  cfg, n = sweep_config(ctx['args'].small, ctx['rec_dir'])
  workdir = os.path.join(ctx['workdir'], 'sweep')
  ctx['sweep_dir'] = workdir
  log = StageLog('sweep')
  budget = SweepBudget(ctx['stage_deadline'])
  rec.update(configs_asked=n, grid=cfg.grid.to_dict(), epochs_asked=cfg.epochs,
             precision=cfg.spec.precision, workdir=workdir, complete=False)
  t = time.perf_counter()
  try:
    result = run_sweep(cfg, workdir, log=log, on_epoch=[budget])
  finally:
    rec['seconds_end_to_end'] = time.perf_counter() - t
    rec.update(epoch_rates=budget.rates, log_tail=log.lines[-8:])
  rec.update(epochs=result.epochs, steps_per_epoch=result.steps_per_epoch,
             epochs_trained=result.epoch, memory_plan=result.memory_plan,
             placement=result.placement.describe(),
             compile_s=result.compile_seconds,
             compile_programs=result.compile_programs)
  if result.stopped:
    raise BudgetExceeded(budget.stopped)
  table = result.table
  ok = int((table.status == 'ok').sum())
  rec.update(complete=True, configs=len(table), ok=ok,
             diverged=int(len(table) - ok))
  steps = len(table) * result.epochs * result.steps_per_epoch
  rec.update(config_steps=steps,
             config_steps_per_s=steps / rec['seconds_end_to_end'])


def analysis_options(dataset_name: str) -> pipeline.AnalysisOptions:
  """``analyze_sweep``'s options as ``experiments.analyze`` resolves the
  default config (the dataset's use cases, concept sets and pop_top). A
  sweep stopped by the budget is opened with ``allow_partial``
  (:func:`stage_analysis`), so that its last checkpoint is analysed."""
  return analyze_config.analysis_options(analyze_config.get_config(),
                                         dataset_name)


class AnalysisBudget(StageBudget):
  """The analysis stage's subscriber (an ``on_progress`` hook of
  ``analyze_sweep``): stops it at a progress event that does not end a
  stage (after a block of its neuron tables) once ``deadline`` has passed
  (:class:`StageBudget`), from the typed ``AnalysisProgress``.

  >>> from monosem_jax.analysis.progress import AnalysisProgress as P
  >>> b = AnalysisBudget(deadline=0.0)          # long passed
  >>> b(P('neurons', 1024, 1024, 9.0)), b.stopped
  (False, None)
  >>> b(P('neurons', 102, 1024, 0.9)), b.stopped
  (True, 'budget: analysis stopped at 102/1024 (time limit passed)')
  """

  def __init__(self, deadline: float):
    super().__init__('analysis', deadline)

  def __call__(self, progress) -> bool:
    return self.check(progress.last, progress.done, progress.total)


def stage_analysis(rec: dict, ctx: dict) -> None:
  """``analyze_sweep`` on the sweep's last checkpoint, as
  ``experiments.analyze`` (under the sweep's lock); stopped by the time
  limit (its typed hook, :class:`AnalysisBudget`) it writes nothing."""
  sweep_dir = ctx.get('sweep_dir')
  if not sweep_dir or not checkpoint.saved_epochs(sweep_dir):
    raise Skip('needs a sweep with at least one checkpointed epoch')
  log = StageLog('analysis')
  budget = AnalysisBudget(ctx['stage_deadline'])
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
    try:
      result = pipeline.analyze_sweep(view, dataset,
                                      analysis_options(dataset.name),
                                      log=log, on_progress=[budget])
    except AnalysisStopped as e:
      rec['log_tail'] = log.lines[-8:]
      raise BudgetExceeded(budget.stopped) from e
  rec['seconds_end_to_end'] = time.perf_counter() - t
  fid = result.fidelity
  rec.update(seconds_analyze=result.seconds, report=result.report_path,
             chosen=result.chosen, pareto=int(fid['pareto'].sum()),
             max_pure_concepts=int(fid[pipeline.PURE].max()),
             max_rbo_norm=float(fid['rbo_norm'].max()),
             interventions_rows=len(result.interventions),
             log_tail=log.lines[-8:])


#: Where the tests stage's pytest records each test's outcome (a file named
#: in its environment; :class:`OutcomeRecorder`).
OUTCOMES_ENV = 'DEVICE_CHECK_OUTCOMES'
#: The outcome categories of pytest (``pytest_report_teststatus``) and their
#: counts' keys in the JSON.
_COUNTS = dict(passed='passed', failed='failed', error='errors',
               skipped='skipped', xfailed='xfailed', xpassed='xpassed')


def pytest_configure(config) -> None:
  """pytest hook, this module being the tests stage's plugin (``-p
  experiments.device_check``): records the outcomes into the file
  ``$DEVICE_CHECK_OUTCOMES`` names (in the controlling process only: the
  xdist workers report to it); nothing without it."""
  path = os.environ.get(OUTCOMES_ENV)
  if path and not hasattr(config, 'workerinput'):
    config.pluginmanager.register(OutcomeRecorder(config, path),
                                  'device_check_outcomes')


class OutcomeRecorder:
  """A pytest plugin: appends one JSON object a line to ``path``, a test's
  outcome (``{"test": id, "outcome": category}``, pytest's own category of
  the report: what ``pytest -v`` prints) as it is reported, and the exit
  status at the end (``{"exitstatus": n}``), so that a run stopped by its
  limit keeps what it counted; :func:`read_outcomes` reads them."""

  def __init__(self, config, path: str):
    self.config, self.path = config, path

  def _write(self, **row) -> None:
    with open(self.path, 'a') as f:
      f.write(json.dumps(row) + '\n')

  def pytest_runtest_logreport(self, report) -> None:
    category = self.config.hook.pytest_report_teststatus(
        report=report, config=self.config)[0]
    if category:
      self._write(test=report.nodeid, outcome=category)

  def pytest_collectreport(self, report) -> None:
    if report.failed:
      self._write(test=report.nodeid, outcome='error')

  def pytest_sessionfinish(self, exitstatus) -> None:
    self._write(exitstatus=int(exitstatus))


def read_outcomes(path: str) -> dict:
  """Counts, failed ids and a summary from :class:`OutcomeRecorder`'s
  records (the summary None when the run did not finish; a line cut by a
  kill is left out).

  >>> import tempfile
  >>> with tempfile.NamedTemporaryFile('w', suffix='.jsonl') as f:
  ...   _ = f.write('{"test": "a.py::t1", "outcome": "passed"}\\n'
  ...               '{"test": "a.py::t2", "outcome": "failed"}\\n'
  ...               '{"exitstatus": 1}\\n{"test": "a.py::t')
  ...   f.flush()
  ...   r = read_outcomes(f.name)
  >>> r['passed'], r['failed'], r['failed_ids'], r['summary']
  (1, 1, ['a.py::t2'], '1 failed, 1 passed')
  """
  counts = dict.fromkeys(_COUNTS.values(), 0)
  failed, exitstatus = [], None
  lines = open(path).read().splitlines() if os.path.isfile(path) else []
  for line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      continue
    if 'exitstatus' in row:
      exitstatus = row['exitstatus']
      continue
    counts[_COUNTS[row['outcome']]] += 1
    if row['outcome'] in ('failed', 'error') and row['test'] not in failed:
      failed.append(row['test'])
  summary = None
  if exitstatus is not None:
    summary = ', '.join(f'{counts[k]} {w}' for k, w in (
        ('failed', 'failed'), ('passed', 'passed'), ('skipped', 'skipped'),
        ('xfailed', 'xfailed'), ('xpassed', 'xpassed'), ('errors', 'error'))
                        if counts[k]) or 'no tests ran'
  return dict(counts, failed_ids=failed, summary=summary,
              exitstatus=exitstatus)


def suite_command(args) -> list[str]:
  """The pytest command line of the tests stage."""
  cmd = [sys.executable, '-m', 'pytest', '-v', '-p', 'no:cacheprovider',
         '-p', 'experiments.device_check', '--ignore=tests/test_notebooks.py']
  if args.tests_workers > 0:
    cmd += ['-n', str(args.tests_workers)]
  paths = args.tests.split(',')
  if paths == ['tests']:
    paths = [p for p in GPU_FAILED_FIRST
             if os.path.isfile(os.path.join(ROOT, p))] + paths
  return cmd + paths


def stage_tests(rec: dict, ctx: dict) -> None:
  """The test suite in a subprocess, stopped at the budget's end; its
  counts from the outcomes its pytest records (:class:`OutcomeRecorder`),
  its output's last lines kept for a person."""
  a = ctx['args']
  limit = ctx['deadline'] - time.perf_counter()
  if limit < MIN_TESTS_S:
    raise Skip(f'budget: {limit:.0f}s left, too little for the suite')
  cmd = suite_command(a)
  fd, outcomes = tempfile.mkstemp(prefix='test_outcomes_', suffix='.jsonl',
                                  dir=ctx.get('workdir'))
  os.close(fd)
  env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE='false',
             PYTHONUNBUFFERED='1', **{OUTCOMES_ENV: outcomes})
  rec.update(command=' '.join(cmd[1:]), limit_s=limit, outcomes=outcomes,
             env={'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'}, complete=False)
  say(f'tests: {rec["command"]} (limit {limit:.0f}s)')
  t = time.perf_counter()
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env,
                          start_new_session=True)
  stopped = False
  try:
    out, _ = proc.communicate(timeout=limit)
  except subprocess.TimeoutExpired:
    stopped = True
    os.killpg(proc.pid, signal.SIGTERM)     # pytest and its workers
    try:
      out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      out, _ = proc.communicate()
  rec['seconds_tests'] = time.perf_counter() - t
  rec['returncode'] = proc.returncode
  rec.update(read_outcomes(outcomes))
  rec['complete'] = rec['summary'] is not None
  rec['tail'] = (out or '').strip().splitlines()[-25:]
  say(f'tests: {rec["summary"] or "stopped"}: {rec["passed"]} passed, '
      f'{rec["failed"]} failed, {rec["errors"]} errors, {rec["skipped"]} '
      f'skipped in {rec["seconds_tests"]:.0f}s')
  for test in rec['failed_ids']:
    say(f'tests: FAILED {test}')
  if stopped:
    raise BudgetExceeded(f'budget: tests stopped after '
                         f'{rec["seconds_tests"]:.0f}s')
  if not rec['complete']:   # e.g. pytest-xdist missing: pytest's own error
    last = rec['tail'][-1] if rec['tail'] else 'no output'
    raise RuntimeError(f'pytest exited with {proc.returncode} without a '
                       f'summary: {last}')


def _bench_rate(stages: dict, model: str, c: int) -> float | None:
  """Config-steps/s of ``model`` at C = ``c`` in float32, or None."""
  for res in stages.get('bench_sweep', {}).get('results', []):
    if res.get('model') == model and res.get('precision',
                                              'float32') == 'float32':
      for row in res.get('vmapped', []):
        if row.get('C') == c:
          return row.get('config_steps_per_s')
  return None


def targets_of(device_kind: str | None) -> tuple[str, dict]:
  """The :data:`TARGETS` entry of a device kind, else H200's."""
  for name, t in TARGETS.items():
    if name in str(device_kind):
      return name, t
  return 'H200', TARGETS['H200']


def stage_targets(rec: dict, ctx: dict) -> None:
  """The issue's targets (:data:`TARGETS`) against the measured figures.

  A criterion a device has no target for is None (and not required).
  """
  stages = ctx['stages']
  env = stages.get('environment', {})
  name, t = targets_of(env.get('device_kind'))
  sweep, analysis = stages.get('sweep', {}), stages.get('analysis', {})
  tests = stages.get('tests', {})
  mf = _bench_rate(stages, 'mf', t['mf_configs'])
  ncf = _bench_rate(stages, 'ncf', t.get('ncf_configs', 1024))
  sweep_s = sweep.get('seconds_end_to_end')
  sweep_full = bool(sweep.get('complete')) and (
      sweep.get('configs') == t['sweep_configs'])
  an_s = analysis.get('seconds_end_to_end')
  an_full = (analysis.get('status') == 'ok' and not analysis.get(
      'partial_sweep') and analysis.get('configs') == t['sweep_configs'])
  tests_ok = bool(tests.get('complete') and tests.get('failed') == 0
                  and tests.get('errors') == 0 and tests.get('passed', 0) > 0)
  rec.update(
      applies=(not ctx['args'].small and env.get('backend') == 'gpu'
               and any(k in str(env.get('device_kind')) for k in TARGETS)),
      device_kind=env.get('device_kind'), target_device=name,
      thresholds=dict(t), targets_by_device=TARGETS,
      mf_config_steps_per_s_at_1024=mf,
      mf_required_met=bool(mf is not None and mf >= t['mf_required']),
      mf_goal_met=bool(mf is not None and mf >= t['mf_goal']),
      ncf_config_steps_per_s_at_1024=ncf,
      ncf_required_met=(None if 'ncf_required' not in t else bool(
          ncf is not None and ncf >= t['ncf_required'])),
      sweep_seconds=sweep_s, sweep_configs=sweep.get('configs'),
      sweep_met=bool(sweep_full and sweep_s is not None
                     and sweep_s <= t['sweep_max_s']),
      analysis_seconds=an_s, analysis_configs=analysis.get('configs'),
      analysis_met=bool(an_full and an_s is not None
                        and an_s <= t['analysis_max_s']),
      tests_passed=tests.get('passed'), tests_failed=tests.get('failed'),
      tests_errors=tests.get('errors'), tests_complete=tests.get('complete'),
      tests_met=None if not t.get('tests_all_pass') else tests_ok)
  required = ('mf_required_met', 'ncf_required_met', 'sweep_met',
              'analysis_met', 'tests_met')
  rec['all_required_met'] = all(rec[k] for k in required
                                if rec[k] is not None)
  if not any(k in str(rec['device_kind']) for k in TARGETS):
    rec['note'] = (f'no targets for this device kind; {name}\'s shown '
                   f'({", ".join(TARGETS)} have targets)')


STAGES: tuple[tuple[str, Callable[[dict, dict], None]], ...] = (
    ('environment', stage_environment), ('bench_sweep', stage_bench),
    ('recommender', stage_recommender), ('determinism', stage_determinism),
    ('sweep', stage_sweep), ('analysis', stage_analysis),
    ('tests', stage_tests), ('targets', stage_targets))


# ----------------------------------------------------------------------------
# Driver.

def run_stage(name: str, fn, ctx: dict) -> dict:
  """Runs one stage (or records why not) into ``ctx['stages'][name]``."""
  rec: dict[str, Any] = {}
  ctx['stages'][name] = rec
  now = time.perf_counter()
  # The stages before the tests leave them --tests_s; the tests run to the
  # budget's end.
  end = ctx['deadline'] if name in ('tests', 'targets') else (
      ctx['deadline'] - ctx['args'].tests_s)
  if now > end and name != 'targets':
    rec.update(status='skipped', skipped='budget')
    say(f'== {name}: skipped (its share of the {ctx["args"].budget_s:.0f}s '
        'budget is spent)')
    return rec
  ctx['stage_deadline'] = min(end, now + ctx['args'].max_stage_s)
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
        f'targets ({t.get("target_device")}, applies: {t.get("applies")}): '
        f'MF at C=1024 {fmt(t.get("mf_config_steps_per_s_at_1024"), ",.0f")}'
        f' config-steps/s (required {t.get("mf_required_met")}, goal '
        f'{t.get("mf_goal_met")}); NCF '
        f'{fmt(t.get("ncf_config_steps_per_s_at_1024"), ",.0f")} '
        f'({t.get("ncf_required_met")}); sweep '
        f'{fmt(t.get("sweep_seconds"), ".1f")}s for {t.get("sweep_configs")} '
        f'configs ({t.get("sweep_met")}); analysis '
        f'{fmt(t.get("analysis_seconds"), ".1f")}s ({t.get("analysis_met")});'
        f' tests {t.get("tests_passed")} passed, {t.get("tests_failed")} '
        f'failed ({t.get("tests_met")})')
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
  ap.add_argument('--budget_s', type=float, default=510.0,
                  help='stages starting after this are skipped; the tests '
                  'stage is stopped at it')
  ap.add_argument('--tests_s', type=float, default=150.0,
                  help='the stages before the tests end this much before '
                  'the budget, leaving it to the suite')
  ap.add_argument('--max_stage_s', type=float, default=240.0,
                  help='recommender, sweep and analysis stop at their next '
                  'epoch or block after this')
  ap.add_argument('--configs', default=None,
                  help='bench_sweep C values in float32 (default '
                  '1,1024,4096; small: 1,8)')
  ap.add_argument('--precisions', default=None,
                  help='bench_sweep precisions, float32 first (default '
                  'float32,tf32,bfloat16; small: float32,tf32)')
  ap.add_argument('--precision_configs', default=None,
                  help='C values of the precisions after the first (default '
                  '1024; small: 8)')
  ap.add_argument('--steps', type=int, default=None,
                  help='bench_sweep steps per epoch (default 50; small: 2)')
  ap.add_argument('--repeats', type=int, default=None,
                  help='bench_sweep timed epochs, best kept (default 3; '
                  'small: 1)')
  ap.add_argument('--seq_configs', type=int, default=None,
                  help='configs of the sequential baseline (default 2; '
                  'small: 1)')
  ap.add_argument('--tests', default=None,
                  help='comma-separated test paths of the tests stage '
                  '(default tests, the H200 failures first; small: '
                  'tests/test_progress.py)')
  ap.add_argument('--tests_workers', type=int, default=None,
                  help='pytest-xdist workers (default 8; small: 0 = none)')
  ap.add_argument('--workdir', default=None,
                  help='where the recommender and the sweep are written '
                  '(default: a fresh temporary folder)')
  a = ap.parse_args(argv)
  names = ('configs', 'precisions', 'precision_configs', 'steps', 'repeats',
           'seq_configs', 'tests', 'tests_workers')
  full = ('1,1024,4096', 'float32,tf32,bfloat16', '1024', 50, 3, 2, 'tests',
          8)
  small = ('1,8', 'float32,tf32', '8', 2, 1, 1, 'tests/test_progress.py', 0)
  for name, value in zip(names, small if a.small else full):
    if getattr(a, name) is None:
      setattr(a, name, value)
  if a.precisions.split(',')[0] != 'float32':
    ap.error('--precisions: the first must be float32 (the targets and '
             'the sequential baseline use it)')
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
  doc = dict(check='monosem_jax device check (issues 11 and 19)',
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
