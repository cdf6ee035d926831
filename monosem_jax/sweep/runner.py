"""A whole sweep from a recommender workdir to ``sweep_results.csv``.

:func:`run_sweep` is what ``python -m experiments.sweep`` calls:

1. load the frozen recommender (``REC_WORKDIR/frozen``: weights, embeddings
   and the protocol split it was trained on);
2. build the static :class:`~monosem_jax.sweep.spec.SweepSpec` (model kind
   and width from the artifact) and the per-config
   :class:`~monosem_jax.sweep.spec.SweepHparams` grid;
3. choose where the configs run, once (every device; in blocks when the
   memory plan says so) and build the
   :class:`~monosem_jax.sweep.driver.Sweep`;
4. train every config together (:func:`~monosem_jax.sweep.driver.train_sweep`:
   vmapped, orbax checkpoints, automatic resume), with the progress lines
   (:class:`EpochLog`) and the caller's hooks as subscribers;
5. evaluate every config on the SAE-test users and write one CSV row per
   config (atomically). The launcher draws the figure from the CSV
   (:mod:`monosem_jax.analysis.sweep_figures`).

Example (on a synthetic recommender)::

  result = run_sweep(config, workdir='runs/sweep', log=print)
  result.table                       # one row per config, as the CSV
  # stop after 5 minutes of training (the last epoch stays checkpointed):
  deadline = time.perf_counter() + 300
  run_sweep(config, 'runs/sweep',
            on_epoch=[lambda s: time.perf_counter() > deadline])
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
import pandas as pd

from monosem_jax import compilation, files
from monosem_jax.errors import ConfigError
from monosem_jax.progress import Progress
from monosem_jax.recommenders import kinds
from monosem_jax.recommenders.artifact import RecommenderArtifact
from monosem_jax.sweep import checkpoint, memory, sharding
from monosem_jax.sweep.batches import steps_per_epoch
from monosem_jax.sweep.driver import (Checkpointing, EpochStats, Evaluation,
                                      Hook, SweepResult, make_sweep,
                                      train_sweep)
from monosem_jax.sweep.sharding import Placement
from monosem_jax.sweep.spec import (FIELDS, SweepHparams, SweepSpec, epochs_of,
                                    validate)
from monosem_jax.sweep.state import (SweepInputs, build_scorer,
                                     positive_pairs_of)
from monosem_jax.sweep.workdir import (RESULTS_CSV, SweepWorkdir,
                                       recommender_at, recommender_provenance)
#: Per-config columns of the CSV that are not a metric or a final term.
_STATUS_KEYS = ('finite', 'diverged_step', 'dict_size')


def check_recommender(config, artifact: RecommenderArtifact) -> None:
  """Refuses a sweep config written for another recommender kind or dataset.

  ``config.kind`` must equal the artifact's kind; ``config.dataset`` its
  dataset unless ``config.allow_other_dataset``. A config without these
  keys (built by hand), or an artifact without a dataset (a
  :class:`PlannedRecommender`), is not checked on them.

  Raises:
    ConfigError: naming both sides and the matching config argument.
  """
  model = config.get('kind')
  dataset = config.get('dataset')
  rec = (f'{config.recommender_workdir} holds an {artifact.kind.upper()} '
         f'recommender trained on {artifact.dataset}')
  fix = f'use --config=experiments/configs/sweep.py:{artifact.dataset},{artifact.kind}'
  if model is not None and model != artifact.kind:
    raise ConfigError(f'the sweep config is for {model.upper()} '
                      f'(DATASET,MODEL = {dataset},{model}) but {rec}; {fix}')
  if (dataset is not None and artifact.dataset is not None
      and dataset != artifact.dataset
      and not config.get('allow_other_dataset', False)):
    raise ConfigError(f'the sweep config is for {dataset} ({dataset},{model}: '
                      f'its defaults and grid) but {rec}; {fix}, or pass '
                      '--config.allow_other_dataset=True to keep these settings')


def grid_axes(grid: Mapping[str, Any]) -> dict[str, list]:
  """The swept axes of ``config.grid``: field -> list of values.

  A field set to None (or, from the command line, ``(None,)``) is not
  swept. Refuses an unknown field, an empty axis and an axis mixing None
  with values, naming the field.
  """
  axes = {}
  for name, value in dict(grid).items():
    if name not in FIELDS:
      raise ConfigError(f'config.grid.{name}: unknown field; the grid axes '
                        f'are {", ".join(FIELDS)}')
    if value is None:
      continue
    values = list(np.atleast_1d(np.asarray(value, dtype=object)).tolist())
    if values == [None]:
      continue
    if not values:
      raise ConfigError(f'config.grid.{name}=(): an empty axis sweeps '
                        'nothing; give at least one value, or None to '
                        'leave the field unswept')
    if any(v is None for v in values):
      raise ConfigError(f'config.grid.{name}={tuple(values)}: None cannot be '
                        'one value among others')
    axes[name] = values
  return axes


def build_spec(artifact: RecommenderArtifact, spec_cfg: Mapping[str, Any],
               grid: Mapping[str, Any]) -> SweepSpec:
  """Static spec: model and width from the artifact, the rest from config.

  ``config.spec`` holds the spec's fields and, beside them, the options of
  the artifact's kind (``config.spec.ncf_pairs``, ...), which become
  ``scorer_options``; an option of another kind is refused in one line.
  ``max_dict_size`` defaults to the largest ``dict_size`` of the grid.
  """
  kw = dict(spec_cfg)
  known = ({f.name for f in dataclasses.fields(SweepSpec)}
           - {'kind', 'dim', 'scorer_options'})
  options = {k: kw.pop(k) for k in list(kw) if k not in known}
  kind = kinds.get(artifact.kind)
  stray = [k for k in options if k not in kinds.option_names()]
  if stray:
    raise ConfigError(f'config.spec.{stray[0]}: unknown field; known: '
                      f'{", ".join(sorted(known | set(kind.schema)))}')
  kw['scorer_options'] = kind.options(options, where='config.spec')
  sizes = list(grid.get('dict_size', ())) or [kw.get('max_dict_size', 22)]
  kw.setdefault('max_dict_size', int(max(sizes)))
  kw['max_dict_size'] = max(int(kw['max_dict_size']), int(max(sizes)))
  return SweepSpec(kind=artifact.kind, dim=artifact.dim, **kw)


def build_hparams(spec: SweepSpec, defaults: Mapping[str, Any],
                  grid: Mapping[str, Any]) -> SweepHparams:
  """The grid (cartesian product) over ``grid`` with ``defaults`` elsewhere."""
  base = SweepHparams.from_list([{}], spec).config(0)
  base.update({k: v for k, v in defaults.items() if v is not None})
  return SweepHparams.grid(base, **grid)


def build_inputs(artifact: RecommenderArtifact, spec: SweepSpec, scorer
                 ) -> SweepInputs:
  """Embedding tables, SAE-train users and (positive pairs) of the artifact."""
  split = artifact.split
  pos_u = pos_i = None
  if scorer.paired and spec.batching.positives:
    pos_u, pos_i = positive_pairs_of(split.train_users, split.train_items,
                                     split.sae_train_users)
  return SweepInputs.create(artifact.user_emb, artifact.item_emb,
                            split.sae_train_users, pos_u, pos_i)


def config_chunk_of(config) -> int | None:
  """``config.config_chunk`` checked: None (automatic) or an int >= 1."""
  chunk = config.get('config_chunk')
  if chunk is None:
    return None
  if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
    raise ConfigError(f'config.config_chunk={chunk!r}: configs per program '
                      'must be an integer >= 1, or None to let the memory plan '
                      'decide')
  return chunk


def results_table(hparams: SweepHparams, histories: list[dict],
                  metrics: Mapping[str, np.ndarray], n: int) -> pd.DataFrame:
  """One row per config: hyper-parameters, final epoch's terms, metrics, status.

  Every term of the last epoch's history becomes ``final_<term>`` and every
  metric a column of its own (a ``(C, P)`` metric, e.g. Matryoshka prefixes,
  one column per prefix: ``<metric>_<p>``).
  """
  cols: dict[str, Any] = {'config': np.arange(n)}
  for f in FIELDS:
    cols[f] = np.asarray(getattr(hparams, f))[:n]
  last = histories[-1] if histories else {}
  for t, v in last.items():
    if t != 'finite':
      cols[f'final_{t}'] = np.asarray(v)[:n]
  for m, v in metrics.items():
    if m in _STATUS_KEYS:
      continue
    v = np.asarray(v)[:n]
    if v.ndim == 1:
      cols[m] = v
    else:
      for p in range(v.shape[1]):
        cols[f'{m}_{p}'] = v[:, p]
  finite = np.asarray(metrics['finite'])[:n]
  cols['status'] = np.where(finite, 'ok', 'diverged')
  cols['diverged_step'] = np.asarray(metrics['diverged_step'])[:n]
  return pd.DataFrame(cols)


def run_sweep(config, workdir: str, log: Callable[[str], None] = print,
              on_epoch: Sequence[Hook] = ()) -> SweepResult:
  """Runs (or resumes) the sweep described by ``config`` in ``workdir``.

  Args:
    config: a ConfigDict with ``recommender_workdir``, ``spec`` (SweepSpec
      fields except kind/dim, and the kind's options: :func:`build_spec`),
      ``defaults`` (per-config values not swept),
      ``grid`` (field -> list of values), ``seed``, ``epochs``,
      ``checkpoint_every``, ``shard`` (bool), ``plan_memory``,
      ``config_chunk``, ``eval_config_chunk``.
    workdir: output folder: ``sweep.json``, ``checkpoints/``,
      ``sweep_results.csv``.
    log: progress sink (the lines of :class:`EpochLog`, the plan, ...).
    on_epoch: hooks called after every epoch with its
      :class:`~monosem_jax.sweep.driver.EpochStats`; one that returns True
      stops the sweep there (checkpointed; no CSV is written, and a rerun
      resumes).

  Returns:
    A :class:`~monosem_jax.sweep.driver.SweepResult` whose ``table`` is the
    results table (also written to ``workdir/sweep_results.csv``; None when
    a hook stopped the sweep).

  Raises:
    ConfigError / SweepConfigError: invalid settings, or a config for
      another recommender kind or dataset (:func:`check_recommender`).
    ArtifactError: ``recommender_workdir`` holds no finished recommender.
    WorkdirError: ``workdir`` is a file, is in use by another process, or
      holds another sweep (other configs or another recommender).
  """
  artifact = recommender_at(config.recommender_workdir)
  # every setting is checked before a file is written
  plan = plan_sweep(config, artifact)
  if jax.process_index() != 0:  # multi-host: process 0 holds the lock
    return _run_sweep(config, SweepWorkdir(files.prepare_workdir(workdir)),
                      log, on_epoch, artifact, plan)
  with files.locked_workdir(workdir, 'sweep', log) as path:
    workdir = SweepWorkdir(path)
    return _run_sweep(config, workdir, log, on_epoch, artifact, plan)


@dataclasses.dataclass(frozen=True)
class PlannedRecommender:
  """A recommender not trained yet, as far as a sweep's settings go: what
  :func:`plan_sweep` reads of an artifact (no fingerprint, so a sweep
  folder's recommender is not checked against it)."""
  kind: str
  dim: int
  dataset: str | None = None
  fingerprint: str | None = None


def plan_sweep(config, artifact) -> tuple[SweepSpec, SweepHparams, int]:
  """Every setting of a sweep config checked: ``(spec, hparams, epochs)``.

  Args:
    config: as :func:`run_sweep`.
    artifact: the recommender (a
      :class:`~monosem_jax.recommenders.artifact.RecommenderArtifact` or a
      :class:`PlannedRecommender`): its kind, width and dataset.

  Raises:
    ConfigError / SweepConfigError: as :func:`run_sweep`.
  """
  check_recommender(config, artifact)
  grid = grid_axes(config.grid)
  spec = build_spec(artifact, dict(config.spec), grid)
  hparams = build_hparams(spec, dict(config.defaults), grid)
  validate(spec, hparams)
  config_chunk_of(config)
  memory.check_mode(config.get('plan_memory'))
  return spec, hparams, epochs_of(spec, config.get('epochs'), 'config.epochs')


def provenance_of(config, artifact) -> dict:
  """What ``sweep.json`` records of the recommender a sweep explains
  (:func:`~monosem_jax.sweep.workdir.recommender_provenance`)."""
  return recommender_provenance(artifact, config.recommender_workdir)


def check_sweep_workdir(config, workdir: str, artifact) -> None:
  """What :func:`run_sweep` would refuse, checked without writing anything.

  Args:
    config: as :func:`run_sweep`.
    workdir: the sweep folder (missing or empty: nothing to compare).
    artifact: the recommender the sweep would train on, e.g.
      ``recommender_at(config.recommender_workdir)``; a
      :class:`PlannedRecommender` when it is not trained yet (its
      fingerprint is then not compared).

  Raises:
    ConfigError / SweepConfigError: invalid settings (:func:`plan_sweep`).
    WorkdirError: ``workdir`` holds another sweep (the first differing
      field, old and new), the sweep of another recommender (by content
      hash), or more epochs than ``config.epochs``.
  """
  spec, hparams, epochs = plan_sweep(config, artifact)
  if not os.path.isdir(workdir):
    return
  provenance = (provenance_of(config, artifact)
                if artifact.fingerprint is not None else None)
  if checkpoint.check_sweep_json(workdir, spec, hparams, provenance):
    checkpoint.check_saved_epochs(workdir, epochs)


def chunk_of(config, plan: memory.MemoryPlan | None, per_device: int,
             log: Callable[[str], None]) -> int | None:
  """Configs per program per device: ``config.config_chunk``, else what the
  memory plan fits (None: all of them in one program); logged when the
  configs run in blocks."""
  chunk = config_chunk_of(config)
  if plan is not None and chunk is None:
    chunk = plan.chunk_for(per_device)
  if chunk is not None and chunk < per_device:
    log(memory.describe_chunks(per_device, chunk))
  return chunk


class EpochLog:
  """The sweep's progress lines, a subscriber of
  :func:`~monosem_jax.sweep.driver.train_sweep` (never stops it).

  A line for the first, the last and about 20 epochs in between (every
  epoch under ``--verbosity=0``), with the rate since the previous line,
  and, after the first epoch, XLA's compile seconds.

  Args:
    log: the sink.
    epochs: the epoch count the run trains to.
    t_start: when the run began (``time.perf_counter()``).
    compile_clock: the :class:`~monosem_jax.compilation.CompileClock` of
      the training.
  """

  def __init__(self, log: Callable[[str], None], epochs: int, t_start: float,
               compile_clock: compilation.CompileClock):
    self.log, self.t_start, self.compile_clock = log, t_start, compile_clock
    self.lines = Progress.for_launcher(epochs)
    self.seconds, self.epochs_since = 0.0, 0

  def __call__(self, s: EpochStats) -> bool:
    if s.epoch == s.first_epoch + 1:  # its programs compiled in this epoch
      self.log(self.compile_clock.line())
    self.seconds += s.seconds
    self.epochs_since += 1
    if not self.lines.due(s.epoch):
      return False
    ok_loss = s.loss[s.finite] if s.finite.any() else s.loss
    rate = (s.num_configs * s.steps_per_epoch * self.epochs_since
            / max(self.seconds, 1e-9))
    self.seconds, self.epochs_since = 0.0, 0
    self.log(f'epoch {s.epoch:3d}/{s.epochs}  loss median '
             f'{np.median(ok_loss):.4g} [{np.min(ok_loss):.4g}, '
             f'{np.max(ok_loss):.4g}]  L0 {np.median(s.l0):.2f}  '
             f'diverged {int((~s.finite).sum())}  {rate:,.0f} '
             f'config-steps/s  elapsed '
             f'{time.perf_counter() - self.t_start:.1f}s  '
             f'ETA {self.lines.eta(s.epoch, s.first_epoch)}')
    return False


def _run_sweep(config, workdir, log, on_epoch, artifact, plan):
  t_start = time.perf_counter()
  spec, hparams, epochs = plan
  n = hparams.num_configs
  scorer = build_scorer(artifact, spec)
  inputs = build_inputs(artifact, spec, scorer)
  # Where the configs run, chosen once: every device, in blocks when the
  # memory plan (or config.config_chunk) says so.
  mesh = (sharding.config_mesh()
          if config.shard and jax.device_count() > 1 else None)
  padded = Placement(mesh).padded(hparams)
  per_device = padded.num_configs // Placement(mesh).devices
  steps = steps_per_epoch(spec, inputs, scorer.paired)
  log(f'sweep: {n} configs ({padded.num_configs} after padding) on '
      f'{jax.device_count()} {jax.devices()[0].platform} device(s); '
      f'{artifact.kind} d={spec.dim}, M={spec.max_dict_size}, {epochs} epochs '
      f'x {steps} steps')
  mem_plan, memory_line = memory.sweep_plan(
      spec, padded, inputs, scorer, per_device, steps,
      mode=config.get('plan_memory'), workdir=workdir.path, log=log)
  placement = Placement(mesh, chunk_of(config, mem_plan, per_device, log))
  chunk = config.get('eval_config_chunk')
  if chunk is None:
    chunk = scorer.eval_config_chunk(artifact.n_items)
  sweep = make_sweep(spec, scorer, inputs, placement, Evaluation(
      artifact.user_emb[artifact.split.sae_test_users], artifact.item_emb,
      chunk))
  done = workdir.saved_epochs()
  if done:
    log(f'resuming from the checkpoint of epoch {max(done)} in {workdir.path}')
  compile_clock = compilation.CompileClock()
  progress = EpochLog(log, epochs, t_start, compile_clock)
  with compile_clock:
    result = train_sweep(
        sweep, hparams, jax.random.PRNGKey(int(config.seed)), epochs=epochs,
        checkpointing=Checkpointing(
            workdir.path, every=int(config.checkpoint_every),
            provenance=provenance_of(config, artifact)),
        on_epoch=[progress, *on_epoch])
  result = dataclasses.replace(
      result, memory_plan=memory_line,
      compile_seconds=compile_clock.seconds,
      compile_programs=compile_clock.programs)
  if result.stopped:
    log(f'stopped at epoch {result.epoch}/{epochs} (its checkpoint is '
        f'saved; rerunning resumes): no {RESULTS_CSV}; '
        f'{time.perf_counter() - t_start:.1f}s')
    return result
  metrics = sweep.evaluate(result.state, result.hparams)
  table = results_table(result.hparams, result.histories, metrics, n)
  table['epoch'] = result.epoch   # what the table is of
  if jax.process_index() == 0:  # every process holds the same table
    workdir.write_results(table)
  log(f'wrote {workdir.results_csv}: {n} configs, '
      f'{int((table.status == "ok").sum())} ok, '
      f'{int((table.status != "ok").sum())} diverged; '
      f'total {time.perf_counter() - t_start:.1f}s')
  return dataclasses.replace(result, table=table, metrics=metrics)
