"""A sweep as one value (:func:`make_sweep`) and its training loop
(:func:`train_sweep`: epochs, checkpoints, resume, typed hooks).

Usage, as purejaxrl's ``make_train(config)``: everything static is closed
over once, the swept values are arrays::

  spec = SweepSpec(kind=artifact.kind, dim=20, max_dict_size=64) # static
  hparams = SweepHparams.grid(spec, lambda_pred=[0, 1, 2, 5, 10],
                              dict_size=[22, 64])               # (C,) arrays
  inputs = SweepInputs.create(user_emb, item_emb, sae_train_users)
  sweep = make_sweep(spec, artifact.scorer(), inputs,           # frozen
                     Placement(config_mesh()),                  # chosen once
                     Evaluation(test_user_emb, item_emb))
  result = train_sweep(sweep, hparams, key,
                       checkpointing=Checkpointing('runs/sweep'),  # resumes
                       on_epoch=[lambda s: print(s.epoch, s.loss.mean())])
  metrics = sweep.evaluate(result.state, result.hparams)

or by hand: ``state = sweep.init(hparams, key)``, ``hp = sweep.place(
hparams)``, then ``state, history = sweep.epoch(state, hp)`` per epoch.

Same inputs, same machine, same device count: bitwise the same result,
interrupted or not (the state holds everything the next epoch reads; batch
order is ``fold_in(data_key, epoch)``).

Example:
  >>> import jax, numpy as np
  >>> from monosem_jax.recommenders.kinds import make_scorer
  >>> from monosem_jax.sweep.spec import SweepSpec, SweepHparams
  >>> from monosem_jax.sweep.state import SweepInputs
  >>> rng = np.random.default_rng(0)
  >>> inputs = SweepInputs.create(rng.normal(size=(40, 4)),
  ...                             rng.normal(size=(30, 4)), np.arange(32))
  >>> spec = SweepSpec(dim=4, max_dict_size=6,   # the default kind's options
  ...                  scorer_options=dict(batch_users=8, batch_items=8))
  >>> sweep = make_sweep(spec, make_scorer(spec.kind, {}), inputs)
  >>> hparams = SweepHparams.grid(spec, lambda_pred=[0.0, 1.0])
  >>> result = train_sweep(sweep, hparams, epochs=2)
  >>> len(result.histories), result.epoch, result.stopped
  (2, 2, False)
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from monosem_jax.errors import WorkdirError
from monosem_jax.sweep import checkpoint as ckpt
from monosem_jax.sweep import sharding, step
from monosem_jax.sweep.batches import steps_per_epoch
from monosem_jax.sweep.metrics import evaluate_configs
from monosem_jax.sweep.sharding import Placement
from monosem_jax.sweep.spec import (SweepHparams, SweepSpec, epochs_of,
                                    padding_index)
from monosem_jax.sweep.state import SweepInputs, SweepState, init_sweep


@dataclasses.dataclass(frozen=True, eq=False)
class Evaluation:
  """What :meth:`Sweep.evaluate` scores every config on.

  Attributes:
    user_emb: ``(N_u, d)`` the evaluated users' original embeddings (e.g.
      the SAE-test users).
    item_emb: ``(N_i, d)`` every item's original embedding.
    config_chunk: configs per evaluation program (None: all at once).
  """
  user_emb: Any
  item_emb: Any
  config_chunk: int | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Sweep:
  """A sweep's static half, closed over once (:func:`make_sweep`).

  Attributes:
    spec: the static :class:`~monosem_jax.sweep.spec.SweepSpec`.
    scorer: the frozen scorer (placed as ``placement`` says).
    inputs: the :class:`~monosem_jax.sweep.state.SweepInputs` (placed).
    placement: where the configs run (:class:`~monosem_jax.sweep.sharding.
      Placement`).
    evaluation: what :meth:`evaluate` scores on (None: no evaluation).
  """
  spec: SweepSpec
  scorer: Any
  inputs: SweepInputs
  placement: Placement
  evaluation: Evaluation | None = None

  @property
  def steps_per_epoch(self) -> int:
    """Steps of one epoch (:func:`~monosem_jax.sweep.batches.steps_per_epoch`)."""
    return steps_per_epoch(self.spec, self.inputs, self.scorer.paired)

  def init(self, hparams: SweepHparams, key: jax.Array | None = None
           ) -> SweepState:
    """The initial state of ``hparams`` (padded to the device count), placed.

    Raises:
      SweepConfigError: invalid hyper-parameters (before compiling).
    """
    state = init_sweep(self.spec, self.placement.padded(hparams), key)
    return self.place_state(state)

  def place(self, hparams: SweepHparams) -> SweepHparams:
    """``hparams`` padded to the device count and placed, as :meth:`epoch`
    and :meth:`evaluate` take them."""
    hparams = self.placement.padded(hparams)
    if self.placement.mesh is not None:
      sharding.check_divides(hparams.num_configs, self.placement.mesh)
    return self.placement.place(hparams)

  def epoch(self, state: SweepState, hparams: SweepHparams
            ) -> tuple[SweepState, dict[str, jax.Array]]:
    """One epoch of every config: the block program
    (:func:`~monosem_jax.sweep.step.run_epoch`) dispatched by the placement.

    Args:
      state: from :meth:`init` (or a restored checkpoint).
      hparams: from :meth:`place`.

    Returns:
      ``(state, history)``: history as
      :func:`~monosem_jax.sweep.step.epoch`, ``(C,)`` arrays.
    """
    return self.placement.run(functools.partial(step.run_epoch, self.spec),
                              hparams, state, self.inputs, self.scorer)

  def evaluate(self, state: SweepState, hparams: SweepHparams
               ) -> dict[str, np.ndarray]:
    """Every config's metrics on :attr:`evaluation`
    (:func:`~monosem_jax.sweep.metrics.evaluate_configs`)."""
    if self.evaluation is None:
      raise ValueError('this sweep was built without an Evaluation: pass '
                       'make_sweep(..., evaluation=Evaluation(users, items))')
    ev = self.evaluation
    return evaluate_configs(state, self.spec, hparams, self.scorer,
                            ev.user_emb, ev.item_emb,
                            config_chunk=ev.config_chunk)

  def place_state(self, state: SweepState) -> SweepState:
    """A state (e.g. a host copy) placed as :meth:`init` places it."""
    if self.placement.mesh is None:
      return state
    sharding.check_divides(state.num_configs, self.placement.mesh)
    return self.placement.place(state, state.per_config())


def make_sweep(spec: SweepSpec, scorer: Any, inputs: SweepInputs,
               placement: Placement | None = None,
               evaluation: Evaluation | None = None) -> Sweep:
  """Closes over a sweep's static half: the :class:`Sweep`.

  Args:
    spec: static spec.
    scorer: the frozen scorer.
    inputs: the frozen inputs.
    placement: where the configs run (default: one device, all configs in
      one program); the inputs and the scorer are placed here, once.
    evaluation: what :meth:`Sweep.evaluate` scores on.
  """
  placement = Placement() if placement is None else placement
  return Sweep(spec, placement.place(scorer, False),
               placement.place(inputs, False), placement, evaluation)


@dataclasses.dataclass(frozen=True, eq=False)
class EpochStats:
  """What a hook learns after each epoch (host numpy, real configs only).

  Attributes:
    epoch: epochs completed.
    epochs: the epoch count the run trains to.
    first_epoch: the epoch this run started from (a resumed run: > 0).
    num_configs: real configs (the padding is left out of every array).
    steps_per_epoch: steps of one epoch.
    seconds: wall seconds since the previous epoch's hooks (or since the
      loop began: the first epoch's include its compilation).
    elapsed: wall seconds since the loop began.
    loss, l0: ``(num_configs,)`` epoch means.
    finite: ``(num_configs,)`` bool, False once a config diverged.
    history: every ``(num_configs,)`` term of the epoch (see
      :func:`~monosem_jax.sweep.step.epoch`).
  """
  epoch: int
  epochs: int
  first_epoch: int
  num_configs: int
  steps_per_epoch: int
  seconds: float
  elapsed: float
  loss: np.ndarray
  l0: np.ndarray
  finite: np.ndarray
  history: Mapping[str, np.ndarray]

  @property
  def config_steps_per_s(self) -> float:
    """Configs x steps of this epoch per wall second."""
    return self.num_configs * self.steps_per_epoch / max(self.seconds, 1e-9)

  @property
  def last(self) -> bool:
    """Whether this is the run's last epoch."""
    return self.epoch >= self.epochs


#: A subscriber of the training loop: True asks it to stop (after this
#: epoch, which is then checkpointed).
Hook = Callable[[EpochStats], 'bool | None']


@dataclasses.dataclass(frozen=True)
class Checkpointing:
  """Where and how often :func:`train_sweep` checkpoints (and resumes).

  Attributes:
    workdir: the sweep folder (``sweep.json``, ``checkpoints/``).
    every: epochs between checkpoints (the last epoch is always saved).
    max_to_keep: checkpoints kept (None: all).
    provenance: what the sweep explains (``sweep.json``, checked on resume;
      see :func:`~monosem_jax.sweep.checkpoint.write_sweep_json`).
  """
  workdir: str
  every: int = 1
  max_to_keep: int | None = 2
  provenance: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class SweepResult:
  """A sweep run: what :func:`train_sweep` trained, and what
  :func:`~monosem_jax.sweep.runner.run_sweep` adds.

  Attributes:
    state: the final state (every config, padding included, as placed).
    hparams: the hyper-parameters as trained (padded to the device count).
    histories: per-epoch host ``(C,)`` terms (padding included).
    num_configs: real configs (the first ``num_configs`` of every axis).
    epochs: the epoch count asked for.
    first_epoch: the epoch the run resumed from (0: a fresh run).
    stopped: a hook stopped the run before ``epochs`` (its last epoch is
      checkpointed; rerunning resumes).
    steps_per_epoch: steps of one epoch.
    seconds: wall seconds of the training loop.
    placement: where the configs ran.
    table: :func:`~monosem_jax.sweep.runner.run_sweep`'s results table
      (a ``pandas.DataFrame``, one row per real config; None when stopped).
    metrics: the per-config evaluation (None when stopped or not run).
    workdir: the sweep folder (None without checkpoints).
    memory_plan: the memory plan's line, or why it was skipped.
    compile_seconds: XLA's compile seconds during training (run_sweep).
    compile_programs: programs compiled (or loaded) during training.
  """
  state: SweepState
  hparams: SweepHparams
  histories: list
  num_configs: int
  epochs: int
  first_epoch: int
  stopped: bool
  steps_per_epoch: int
  seconds: float
  placement: Placement
  table: Any = None
  metrics: Mapping[str, np.ndarray] | None = None
  workdir: str | None = None
  memory_plan: str | None = None
  compile_seconds: float | None = None
  compile_programs: int | None = None

  @property
  def epoch(self) -> int:
    """The epoch the final state reached."""
    return int(np.asarray(self.state.epoch))


def train_sweep(sweep: Sweep, hparams: SweepHparams,
                key: jax.Array | None = None, *, epochs: int | None = None,
                checkpointing: Checkpointing | None = None,
                on_epoch: Sequence[Hook] = ()) -> SweepResult:
  """Trains every config of ``hparams`` to ``epochs``; checkpoints, resumes.

  If ``checkpointing.workdir`` holds a checkpoint of this sweep it resumes
  from the latest one (bitwise identical to an uninterrupted run on the
  same devices), also when it was written with another device count (then
  equal to float32 rounding, see :mod:`~monosem_jax.sweep.sharding`). It
  refuses a workdir that holds a different spec, hyper-parameters or
  recommender (``provenance``), or more epochs than asked, and (one line
  naming the file) a checkpoint or ``sweep.json`` edited or corrupted since
  it was written (:func:`~monosem_jax.sweep.checkpoint.restore`).
  ``sweep.json`` records the real configs and ``epochs`` as the count this
  run trains to, so a reader can tell a finished sweep from an interrupted
  one. The checkpoints do not depend on the placement's block size.

  Args:
    sweep: from :func:`make_sweep`.
    hparams: the real configs (padded here to the device count).
    key: PRNG key of the shared batch stream (default ``PRNGKey(42)``).
    epochs: the epoch count (default ``sweep.spec.epochs``).
    checkpointing: where to checkpoint and resume (None: in memory only).
    on_epoch: hooks called after every epoch, in order, with its
      :class:`EpochStats` (after its checkpoint is dispatched); one that
      returns True stops the run there (the epoch is checkpointed). In a
      multi-process run process 0's decision holds for every process.

  Returns:
    A :class:`SweepResult`.

  Raises:
    SweepConfigError: ``epochs < 1`` or invalid hyper-parameters.
    WorkdirError: the workdir holds another sweep, or more epochs.
  """
  epochs = epochs_of(sweep.spec, epochs)
  num_real = hparams.num_configs
  host_hparams = sweep.placement.padded(hparams)
  state = sweep.init(host_hparams, key)
  placed = sweep.place(host_hparams)
  histories: list[dict] = []
  saver = None
  if checkpointing is not None:
    saver = _Saver.open(checkpointing, sweep.spec, hparams, epochs)
    if saver.latest is not None:
      try:
        state, histories = _restore(saver, sweep, host_hparams, key, state,
                                    num_real)
      except BaseException:
        saver.close()
        raise
  first = int(state.epoch)
  steps = sweep.steps_per_epoch
  t_start = t_prev = time.perf_counter()
  stopped = False
  try:
    while int(state.epoch) < epochs:
      state, hist = sweep.epoch(state, placed)
      histories.append({k: sharding.to_host(v) for k, v in hist.items()})
      e = int(state.epoch)
      saved = saver is not None and (e % checkpointing.every == 0
                                     or e == epochs)
      if saved:
        # In the background: the next epoch runs while orbax writes this one.
        saver.save(state, histories)
      if not on_epoch:
        continue
      now = time.perf_counter()
      real = {k: np.asarray(v)[:num_real] for k, v in histories[-1].items()}
      stats = EpochStats(
          epoch=e, epochs=epochs, first_epoch=first, num_configs=num_real,
          steps_per_epoch=steps, seconds=now - t_prev, elapsed=now - t_start,
          loss=real['loss'], l0=real['l0'], finite=real['finite'],
          history=real)
      stop = _call_hooks(on_epoch, stats)
      t_prev = time.perf_counter()
      if stop and e < epochs:
        if saver is not None and not saved:
          saver.save(state, histories)
        stopped = True
        break
  finally:  # an interrupted run still finishes the save in flight
    if saver is not None:
      saver.close()
  return SweepResult(
      state=state, hparams=host_hparams, histories=histories,
      num_configs=num_real, epochs=epochs, first_epoch=first, stopped=stopped,
      steps_per_epoch=steps, seconds=time.perf_counter() - t_start,
      placement=sweep.placement, workdir=None if checkpointing is None else checkpointing.workdir)


def _call_hooks(hooks: Sequence[Hook], stats: EpochStats) -> bool:
  """Calls every hook; whether one asked to stop (process 0's answer in a
  multi-process run, so that every process stops at the same epoch)."""
  stop = False
  for hook in hooks:
    stop = bool(hook(stats)) or stop
  if jax.process_count() > 1:
    stop = bool(multihost_utils.broadcast_one_to_all(np.asarray(stop)))
  return stop


@dataclasses.dataclass
class _Saver:
  """A workdir's checkpoint manager, with what every save records."""
  manager: Any
  digest: str
  latest: int | None

  @classmethod
  def open(cls, c: Checkpointing, spec: SweepSpec, real: SweepHparams,
           epochs: int) -> '_Saver':
    """Writes or checks ``sweep.json``, refuses more saved epochs than
    ``epochs``, and records ``epochs``."""
    digest = ckpt.write_sweep_json(c.workdir, spec, real,
                                   dict(c.provenance or {}, epochs=epochs))
    manager = ckpt.make_manager(c.workdir, max_to_keep=c.max_to_keep,
                                async_saves=True)
    latest = manager.latest_step()
    try:
      ckpt.check_saved_epochs(c.workdir, epochs, latest)
    except WorkdirError:
      manager.close()
      raise
    ckpt.record_epochs(c.workdir, epochs)   # a resume may raise the target
    return cls(manager, digest, latest)

  def save(self, state: SweepState, histories: list) -> None:
    ckpt.save(self.manager, state, histories, wait=False,
              sweep_sha256=self.digest)

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _restore(saver: _Saver, sweep: Sweep, host_hparams: SweepHparams, key,
             template: SweepState, num_real: int):
  """The latest checkpoint (verified: its leaves' and hyper-parameters'
  hashes), re-padded when saved with another config count."""
  c = host_hparams.num_configs
  saved = ckpt.saved_num_configs(saver.manager) or c
  if saved == c:
    return ckpt.restore(saver.manager, template, sweep_sha256=saver.digest)
  # Written with another device count: restore its padding, keep the real
  # configs, pad them again for this run.
  state, histories = ckpt.restore(saver.manager, init_sweep(
      sweep.spec, host_hparams.take(padding_index(num_real, saved)), key),
      sweep_sha256=saver.digest)
  idx = padding_index(num_real, c)
  state = state.take(idx)
  histories = [{k: np.asarray(v)[idx] for k, v in h.items()}
               for h in histories]
  return sweep.place_state(state), histories
