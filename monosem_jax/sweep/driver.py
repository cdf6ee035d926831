"""Epochs, checkpoints and resume: :func:`train_sweep`.

Usage::

  spec = SweepSpec(kind='mf', dim=20, max_dict_size=64)          # static
  hparams = SweepHparams.grid(spec, lambda_pred=[0, 1, 2, 5, 10],
                              dict_size=[22, 64])               # (C,) arrays
  inputs = SweepInputs.create(user_emb, item_emb, sae_train_users)
  scorer = artifact.scorer()                                    # frozen
  state, histories = train_sweep(spec, hparams, inputs, scorer, key,
                                 workdir='runs/sweep')          # resumes
  metrics = evaluate_configs(state, spec, hparams, scorer, test_users, items)

Same inputs, same machine, same device count: bitwise the same result,
interrupted or not (the state holds everything the next epoch reads; batch
order is ``fold_in(data_key, epoch)``).

Example:
  >>> import jax, numpy as np
  >>> from monosem_jax.recommenders.scorers import make_scorer
  >>> from monosem_jax.sweep.spec import SweepSpec, SweepHparams
  >>> from monosem_jax.sweep.state import SweepInputs
  >>> rng = np.random.default_rng(0)
  >>> inputs = SweepInputs.create(rng.normal(size=(40, 4)),
  ...                             rng.normal(size=(30, 4)), np.arange(32))
  >>> spec = SweepSpec(kind='mf', dim=4, max_dict_size=6, batch_users=8,
  ...                  batch_items=8)
  >>> hparams = SweepHparams.grid(spec, lambda_pred=[0.0, 1.0])
  >>> state, hist = train_sweep(spec, hparams, inputs, make_scorer('mf', {}),
  ...                           epochs=2)
  >>> len(hist), int(state.epoch)
  (2, 2)
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from monosem_jax.errors import WorkdirError
from monosem_jax.sweep import checkpoint as ckpt
from monosem_jax.sweep import sharding, step
from monosem_jax.sweep.spec import (SweepConfigError, SweepHparams, SweepSpec,
                                    epochs_of, padding_index)
from monosem_jax.sweep.state import SweepInputs, SweepState, init_sweep


def run_epoch(spec: SweepSpec, hparams: SweepHparams, state: SweepState,
              inputs: SweepInputs, scorer: Any, *, sharded_mode: str = 'dispatch',
              config_chunk: int | None = None
              ) -> tuple[SweepState, dict[str, jax.Array]]:
  """One epoch of every config, on one device or over the state's mesh.

  See :func:`monosem_jax.sweep.step.run_epoch` (one device),
  :func:`monosem_jax.sweep.sharding.run_epoch_sharded` (``sharded_mode``)
  and, with ``config_chunk`` (configs per device per program),
  :func:`monosem_jax.sweep.step.run_epoch_chunked`.
  """
  mesh = sharding.config_mesh_of(state)
  if mesh is None:
    return step.run_epoch_chunked(spec, hparams, state, inputs, scorer,
                                  chunk=config_chunk)
  return sharding.run_epoch_sharded(spec, mesh, hparams, state, inputs, scorer,
                                    sharded_mode, config_chunk=config_chunk)


def train_sweep(spec: SweepSpec, hparams: SweepHparams, inputs: SweepInputs,
                scorer: Any, key: jax.Array | None = None, *,
                epochs: int | None = None, workdir: str | None = None,
                checkpoint_every: int = 1, max_to_keep: int | None = 2,
                mesh=None, num_real: int | None = None,
                config_chunk: int | None = None,
                provenance: dict | None = None,
                callback: Callable[[int, SweepState, dict], None] | None = None
                ) -> tuple[SweepState, list[dict[str, np.ndarray]]]:
  """Runs a sweep to ``epochs``, checkpointing and resuming under ``workdir``.

  If ``workdir`` holds a checkpoint of this sweep it resumes from the latest
  one (bitwise identical to an uninterrupted run on the same devices), also
  when it was written with another device count (then equal to float32
  rounding, see :mod:`~monosem_jax.sweep.sharding`). It refuses a workdir
  that holds a different spec, hyper-parameters or recommender
  (``provenance``), or more epochs than asked, and (one line naming the
  file) a checkpoint or ``sweep.json`` edited or corrupted since it was
  written (:func:`~monosem_jax.sweep.checkpoint.restore`). ``sweep.json``
  records ``epochs`` as the count this run trains to, so a reader can tell
  a finished sweep from an interrupted one. ``mesh`` shards the config
  axis (C must divide evenly: pad with ``SweepHparams.pad_to`` and pass the
  real count as ``num_real``, which is what ``sweep.json`` records).
  ``config_chunk`` trains at most that many configs per device in one
  program, the blocks one after the other (:func:`run_epoch`; what
  :meth:`~monosem_jax.sweep.memory.MemoryPlan.chunk_for` picks when C does
  not fit the device); the checkpoints do not depend on it.

  Returns:
    The final state and the per-epoch histories (host numpy ``(C,)`` arrays).

  Raises:
    SweepConfigError: ``epochs < 1`` or invalid hyper-parameters.
    WorkdirError: the workdir holds another sweep, or more epochs.
  """
  epochs = epochs_of(spec, epochs)
  c = hparams.num_configs
  num_real = c if num_real is None else int(num_real)
  if not 1 <= num_real <= c:
    raise SweepConfigError(f'num_real={num_real}: must lie in [1, {c}]')
  host_hparams = hparams
  state = init_sweep(spec, hparams, key)
  if mesh is not None:
    state, hparams, inputs, scorer = sharding.shard_sweep(
        mesh, state, hparams, inputs, scorer)
  histories: list[dict] = []
  manager = digest = None
  if workdir is not None:
    real = host_hparams.take(np.arange(num_real))
    digest = ckpt.hparams_sha256(spec, real)
    ckpt.write_sweep_json(workdir, spec, real,
                          dict(provenance or {}, epochs=epochs))
    manager = ckpt.make_manager(workdir, max_to_keep=max_to_keep,
                                async_saves=True)
    latest = manager.latest_step()
    try:
      ckpt.check_saved_epochs(workdir, epochs, latest)
    except WorkdirError:
      manager.close()
      raise
    ckpt.record_epochs(workdir, epochs)   # a resume may raise the target
    if latest is not None:
      try:
        state, histories = _restore(manager, spec, host_hparams, key, state,
                                    num_real, mesh, digest)
      except BaseException:
        manager.close()
        raise
  try:
    while int(state.epoch) < epochs:
      state, hist = run_epoch(spec, hparams, state, inputs, scorer,
                              config_chunk=config_chunk)
      histories.append({k: sharding.to_host(v) for k, v in hist.items()})
      e = int(state.epoch)
      if manager is not None and (e % checkpoint_every == 0 or e == epochs):
        # In the background: the next epoch runs while orbax writes this one.
        ckpt.save(manager, state, histories, wait=False, sweep_sha256=digest)
      if callback is not None:
        callback(e, state, histories[-1])
  finally:  # an interrupted run still finishes the save in flight
    if manager is not None:
      manager.wait_until_finished()
      manager.close()
  return state, histories


def _restore(manager, spec, host_hparams, key, template, num_real, mesh,
             digest):
  """The latest checkpoint (verified: its leaves' and hyper-parameters'
  hashes), re-padded when saved with another config count."""
  c = host_hparams.num_configs
  saved = ckpt.saved_num_configs(manager) or c
  if saved == c:
    return ckpt.restore(manager, template, sweep_sha256=digest)
  # Written with another device count: restore its padding, keep the real
  # configs, pad them again for this run.
  state, histories = ckpt.restore(manager, init_sweep(
      spec, host_hparams.take(padding_index(num_real, saved)), key),
      sweep_sha256=digest)
  idx = padding_index(num_real, c)
  state = state.take(idx)
  histories = [{k: np.asarray(v)[idx] for k, v in h.items()}
               for h in histories]
  if mesh is not None:
    state = sharding.shard_sweep(mesh, state, host_hparams)[0]
  return state, histories
