"""Sweep checkpoints: orbax for the stacked state, JSON for what it holds.

Layout of a sweep workdir::

  workdir/
    sweep.json              spec + every config's hyper-parameters
    checkpoints/<epoch>/    orbax CheckpointManager steps (numbered by epoch)
      state/                every leaf of the SweepState: stacked SAE weights,
                            Adam state, data RNG key, epoch, step, finite,
                            diverged_step
      meta/                 JSON: epoch, the per-epoch histories so far, the
                            SHA-256 of every state leaf and of sweep.json's
                            spec and configs (:func:`hparams_sha256`)

Both writes are atomic: orbax writes into a temporary directory and renames
it when complete (the training loop saves in the background while the next
epoch runs, :func:`~monosem_jax.sweep.driver.train_sweep`), and
``sweep.json`` is written to a
temporary file then ``os.replace``-d. An interrupted save leaves the previous
checkpoint intact, and a resumed sweep finishes bitwise-identical to an
uninterrupted one (the state holds everything the next epoch reads).

Nothing read back is trusted: a restore (resume or analysis) recomputes the
leaf hashes (:mod:`monosem_jax.checkpoints`) and the hash of ``sweep.json``'s
spec and configs, and refuses, in one line naming the file, a checkpoint or a
``sweep.json`` that was edited, truncated or corrupted since it was written.
``sweep.json``'s provenance also records the epoch count of the latest run
(:func:`record_epochs`), so a reader can tell a finished sweep from one that
was stopped early (:class:`SweepCheckpoint`).

Example:
  >>> # result = driver.train_sweep(driver.make_sweep(spec, scorer, inputs),
  >>> #     hparams, key, checkpointing=driver.Checkpointing("/tmp/w", every=2))
  >>> # sae_i, hp_i = load_config('/tmp/w', 3)   # config 3, trimmed to its size
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from monosem_jax import checkpoints, files
from monosem_jax.errors import WorkdirError
from monosem_jax.sae import model
from monosem_jax.sweep.spec import (FIELDS, SWEEP_JSON, SweepConfigError,
                                    SweepHparams, SweepSpec,
                                    dumps, loads)
from monosem_jax.sweep.state import init_sweep

CKPT_DIR = 'checkpoints'


def write_sweep_json(workdir: str, spec: SweepSpec, hparams: SweepHparams,
                     provenance: Mapping[str, Any] | None = None) -> str:
  """Writes ``workdir/sweep.json`` atomically, or checks the one there
  (:func:`check_sweep_json`); returns the SHA-256 its checkpoints record
  (:func:`stored_sha256`: of the file there, in the layout it was written
  in, else of the one written).

  Args:
    workdir: the sweep folder.
    spec, hparams: the sweep (``hparams``: the real configs, not padded).
    provenance: what the sweep explains, e.g. ``{'recommender': {'kind',
      'dataset', 'fingerprint', 'workdir'}}`` (see
      :func:`~monosem_jax.sweep.runner.run_sweep`), and ``epochs``, the
      count the run trains to (:func:`record_epochs`). On resume the
      recommender ``fingerprint`` must match.

  In a multi-process run every process checks an existing file and only
  process 0 writes a new one.

  Raises:
    WorkdirError: the workdir already describes a different sweep, or the
      same sweep of another recommender; the message names both.
  """
  if check_sweep_json(workdir, spec, hparams, provenance):
    return stored_sha256(workdir)
  if jax.process_index() == 0:  # multi-process: one writer, every one checks
    files.atomic_write_text(os.path.join(workdir, SWEEP_JSON),
                            dumps(spec, hparams, provenance))
  return hparams_sha256(spec, hparams)


def check_sweep_json(workdir: str, spec: SweepSpec, hparams: SweepHparams,
                     provenance: Mapping[str, Any] | None = None) -> bool:
  """Checks ``workdir/sweep.json`` against a sweep, writing nothing.

  Args: as :func:`write_sweep_json` (``provenance`` None: the recommender
    is not checked, e.g. one not trained yet).

  Returns:
    whether the file exists (it then describes this very sweep).

  Raises:
    WorkdirError: it describes another sweep (the first differing setting,
      old and new, is named) or the same sweep of another recommender.
  """
  path = os.path.join(workdir, SWEEP_JSON)
  if not os.path.exists(path):
    return False
  old_spec, old_hparams, old_prov = read_sweep_json(workdir, provenance=True)
  changes = sweep_changes(old_spec, old_hparams, spec, hparams)
  if changes:
    more = f' and {len(changes) - 1} more' if len(changes) > 1 else ''
    raise WorkdirError(f'{path} describes a different sweep ({changes[0]}'
                       f'{more}); use a fresh --workdir to start a new one')
  _check_provenance(path, old_prov, provenance)
  return True


def sweep_changes(old_spec: SweepSpec, old_hparams: SweepHparams,
                  spec: SweepSpec, hparams: SweepHparams) -> list[str]:
  """What differs between two sweeps, one ``'field old -> new'`` each.

  Spec fields first, then per-config fields by their sets of values (the
  grid's axes); ``[]`` when both are the same sweep, config for config.
  """
  out = [f'spec.{f.name} {getattr(old_spec, f.name)!r} -> '
         f'{getattr(spec, f.name)!r}' for f in dataclasses.fields(SweepSpec)
         if getattr(old_spec, f.name) != getattr(spec, f.name)]
  old_cols, new_cols = old_hparams.to_json_dict(), hparams.to_json_dict()
  order_only = []
  for f in FIELDS:
    if json.dumps(old_cols[f]) == json.dumps(new_cols[f]):
      continue
    was, now = tuple(sorted(set(old_cols[f]))), tuple(sorted(set(new_cols[f])))
    if was != now:
      out.append(f'{f} values {was} -> {now}')
    else:
      order_only.append(f'{f} per config (values {was}, {len(old_cols[f])} '
                        f'-> {len(new_cols[f])} configs)')
  return out + order_only


def _describe(rec: Mapping[str, Any]) -> str:
  return (f"{rec.get('kind')} on {rec.get('dataset')} at "
          f"{rec.get('workdir')} (sha256 {str(rec.get('fingerprint'))[:12]})")


def _check_provenance(path: str, old: Mapping[str, Any] | None,
                      new: Mapping[str, Any] | None) -> None:
  old_rec = (old or {}).get('recommender')
  new_rec = (new or {}).get('recommender')
  if new_rec is None:
    return
  if old_rec is None:
    raise WorkdirError(
        f'{path} does not record which recommender it was trained on (an '
        f'older format), so resuming it on {_describe(new_rec)} cannot be '
        'checked; use a fresh --workdir')
  if old_rec.get('fingerprint') != new_rec.get('fingerprint'):
    raise WorkdirError(
        f'{path} was trained on the recommender {_describe(old_rec)}; '
        f'config.recommender_workdir now gives {_describe(new_rec)}: resuming '
        'would mix the two. Point recommender_workdir back at the first one, '
        'or use a fresh --workdir')


def read_sweep_json(workdir: str, provenance: bool = False):
  """``(spec, hparams)`` of a sweep workdir (with ``provenance``: a triple).

  Raises:
    WorkdirError: the file is missing, truncated or not a sweep description
      (one line naming it).
    SweepConfigError: it was written by another format version.
  """
  path = os.path.join(workdir, SWEEP_JSON)
  try:
    with open(path) as f:
      spec, hparams, prov = loads(f.read())
  except FileNotFoundError:
    raise WorkdirError(f'{workdir}: no {SWEEP_JSON}; pass the workdir a sweep '
                       'was trained in') from None
  except SweepConfigError:
    raise
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise WorkdirError(
        f'{path}: cannot be read ({type(e).__name__}: '
        f'{str(e).splitlines()[0][:200] if str(e) else ""}); the file is '
        'truncated or was edited: restore it, or rerun the sweep in a fresh '
        '--workdir') from None
  return (spec, hparams, prov) if provenance else (spec, hparams)


def hparams_sha256(spec: SweepSpec, hparams: SweepHparams) -> str:
  """SHA-256 of a sweep's spec and configs (``hparams``: the real configs,
  as ``sweep.json`` holds them), recorded in every checkpoint."""
  return _digest(spec.to_json_dict(), hparams.to_json_dict())


def _digest(spec_doc: Mapping[str, Any], hparams_doc: Mapping[str, Any]
            ) -> str:
  """SHA-256 of ``sweep.json``'s spec and hparams objects (sorted keys)."""
  doc = {'spec': spec_doc, 'hparams': hparams_doc}
  return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _stored(workdir: str) -> dict:
  with open(os.path.join(workdir, SWEEP_JSON)) as f:
    return json.load(f)


def stored_sha256(workdir: str) -> str:
  """SHA-256 of the spec and configs as ``workdir/sweep.json`` holds them:
  :func:`hparams_sha256` of a file in this version's layout, and, for one
  written by an earlier version (an older layout that :func:`loads` still
  reads), the digest that version recorded in the sweep's checkpoints. Call
  it after :func:`read_sweep_json` has checked the file."""
  d = _stored(workdir)
  return _digest(d['spec'], d['hparams'])


def requested_epochs(provenance: Mapping[str, Any] | None) -> int | None:
  """The epoch count of the latest run of a sweep (None: not recorded, a
  sweep written before it was)."""
  epochs = (provenance or {}).get('epochs')
  return None if epochs is None else int(epochs)


def record_epochs(workdir: str, epochs: int) -> None:
  """Records ``epochs`` as the count the sweep is now trained to, in
  ``sweep.json``'s provenance (rewritten atomically when it changes; a
  resume may raise it)."""
  _, _, prov = read_sweep_json(workdir, provenance=True)
  if requested_epochs(prov) == int(epochs) or jax.process_index() != 0:
    return
  # Only the provenance changes: the spec and configs keep the layout the
  # checkpoints' digest is of (stored_sha256).
  d = _stored(workdir)
  d['provenance'] = dict(prov or {}, epochs=int(epochs))
  files.atomic_write_text(os.path.join(workdir, SWEEP_JSON),
                          json.dumps(d, indent=1))


def make_manager(workdir: str, max_to_keep: int | None = 2,
                 async_saves: bool = False) -> ocp.CheckpointManager:
  """The sweep's CheckpointManager under ``workdir/checkpoints``."""
  return checkpoints.make_manager(os.path.join(workdir, CKPT_DIR), max_to_keep,
                                  async_saves)


def saved_epochs(workdir: str) -> list[int]:
  """The epochs that have a finished checkpoint under ``workdir`` (sorted)."""
  return checkpoints.saved_steps(os.path.join(workdir, CKPT_DIR))


def check_saved_epochs(workdir: str, epochs: int,
                       latest: int | None = None) -> None:
  """Refuses ``epochs`` below the latest checkpoint of the sweep in
  ``workdir`` (``latest``: that epoch, when already known)."""
  if latest is None:
    latest = max(saved_epochs(workdir), default=None)
  if latest is not None and latest > epochs:
    raise WorkdirError(
        f'{workdir} already holds epoch {latest} of this sweep, more than '
        f'epochs={epochs}: ask for >= {latest} epochs (nothing to train) '
        'or use a fresh --workdir')


def _encode_histories(histories):
  return [{k: {'dtype': str(np.asarray(v).dtype),
               'values': np.asarray(v).tolist()} for k, v in h.items()}
          for h in histories]


def _decode_histories(raw):
  return [{k: np.asarray(v['values'], dtype=v['dtype']) for k, v in h.items()}
          for h in raw]


def save(manager: ocp.CheckpointManager, state, histories=(),
         wait: bool = True, sweep_sha256: str | None = None) -> None:
  """Saves ``state`` (and the histories so far) as step ``state.epoch``
  (in the background with an ``async_saves`` manager and ``wait=False``),
  recording ``sweep_sha256`` (:func:`hparams_sha256` of the sweep)."""
  epoch = int(np.asarray(state.epoch))
  meta = {'epoch': epoch, 'num_configs': state.num_configs,
          'histories': _encode_histories(histories)}
  if sweep_sha256 is not None:
    meta['sweep_sha256'] = sweep_sha256
  checkpoints.save(manager, epoch, state, meta, wait=wait)


def saved_num_configs(manager: ocp.CheckpointManager,
                      step: int | None = None) -> int | None:
  """How many (padded) configs the checkpoint at ``step`` holds.

  The count depends on the device count it was written with (configs are
  padded to a multiple of it).
  """
  return checkpoints.restore_meta(manager, step).get('num_configs')


def check_sweep_sha256(manager: ocp.CheckpointManager, sweep_sha256: str,
                       step: int | None = None) -> None:
  """Refuses a checkpoint trained with other hyper-parameters than
  ``sweep_sha256`` (:func:`hparams_sha256` of ``sweep.json`` now), e.g. a
  ``sweep.json`` whose λ values or dictionary sizes were edited. A
  checkpoint written before the hash was recorded is not checked."""
  meta = checkpoints.restore_meta(manager, step)
  recorded = meta.get('sweep_sha256')
  if recorded is not None and recorded != sweep_sha256:
    workdir = os.path.dirname(os.fspath(manager.directory))
    raise WorkdirError(
        f'{os.path.join(workdir, SWEEP_JSON)} does not describe the configs '
        f'its checkpoint {manager.directory}/{meta.get("epoch", step)} was '
        f'trained with (spec and configs sha256 {sweep_sha256[:12]}, the '
        f'checkpoint recorded {recorded[:12]}): the file was edited; restore '
        'it, or rerun the sweep in a fresh --workdir')


def restore(manager: ocp.CheckpointManager, template, step: int | None = None,
            sweep_sha256: str | None = None):
  """Restores ``(state, histories)`` from ``step`` (default: the latest),
  verified (every leaf's SHA-256; with ``sweep_sha256``, the hyper-parameters
  it was trained with, :func:`check_sweep_sha256`).

  Args:
    template: a state with the right structure, shapes and shardings (e.g.
      ``init_sweep(spec, hparams)``, placed as the run will be).
  """
  return restore_verified(manager, template, step, sweep_sha256)[:2]


def restore_verified(manager, template, step=None, sweep_sha256=None):
  """:func:`restore` plus whether the state was verified by hash (False for
  a checkpoint written before hashes were recorded)."""
  if sweep_sha256 is not None:
    check_sweep_sha256(manager, sweep_sha256, step)
  state, meta = checkpoints.restore(manager, template, step)
  return (state, _decode_histories(meta['histories']),
          checkpoints.verified(meta) and 'sweep_sha256' in meta)


class SweepCheckpoint(NamedTuple):
  """What a sweep workdir holds (:func:`read_sweep`).

  Attributes:
    spec, hparams: the sweep (real configs only).
    state: the stacked state of the checkpoint read (real configs only).
    histories: per-epoch ``(C,)`` training terms.
    provenance: ``sweep.json``'s provenance (recommender, epochs asked for).
    verified: whether the checkpoint carried hashes (leaves and
      hyper-parameters) and so was verified; False for one written by an
      older version.
  """
  spec: SweepSpec
  hparams: SweepHparams
  state: Any
  histories: list
  provenance: dict | None
  verified: bool

  @property
  def epoch(self) -> int:
    """The epoch of the checkpoint read."""
    return int(np.asarray(self.state.epoch))

  @property
  def epochs(self) -> int | None:
    """The epoch count the sweep was asked for (None: not recorded)."""
    return requested_epochs(self.provenance)


def read_sweep(workdir: str, step: int | None = None) -> SweepCheckpoint:
  """Everything a workdir holds, verified (:class:`SweepCheckpoint`).

  ``hparams`` and every per-config leaf cover the real configs only (the
  padding a sharded run added is dropped).

  Raises:
    WorkdirError: no ``sweep.json`` or no checkpoint yet; a truncated,
      edited or corrupted ``sweep.json`` or checkpoint (one line naming the
      file).
  """
  spec, hparams, prov = read_sweep_json(workdir, provenance=True)
  if step is None and not saved_epochs(workdir):
    raise WorkdirError(
        f'{workdir} holds no checkpoint yet (the sweep has not finished its '
        'first epoch): run or rerun the sweep command (it resumes)')
  n = hparams.num_configs
  manager = make_manager(workdir, max_to_keep=None)
  try:
    check_sweep_sha256(manager, stored_sha256(workdir), step)
    saved = saved_num_configs(manager, step) or n
    template = init_sweep(spec, hparams.pad_to(saved))
    state, histories, verified = restore_verified(manager, template, step)
  finally:
    manager.close()
  keep = np.arange(n)
  return SweepCheckpoint(
      spec, hparams, state.take(keep),
      [{k: np.asarray(v)[keep] for k, v in h.items()} for h in histories],
      prov, verified)


def restore_sweep(workdir: str, step: int | None = None):
  """``(spec, hparams, state, histories)`` of a workdir (:func:`read_sweep`)."""
  return read_sweep(workdir, step)[:4]


def sae_config_of(spec: SweepSpec, dict_size: int) -> model.SAEConfig:
  """The architecture of a config of ``spec`` with ``dict_size`` latents:
  the spec's (precision included) at its own dictionary size, ``k_max`` and
  the Matryoshka prefixes cut to it."""
  cfg = spec.sae
  return dataclasses.replace(
      cfg, dict_size=int(dict_size), k_max=min(cfg.k_max, int(dict_size)),
      prefixes=tuple(m for m in cfg.prefixes if m < dict_size))


def trained_params(hparams: SweepHparams, state, i: int
                   ) -> dict[str, np.ndarray]:
  """Config ``i``'s SAE weights (numpy), trimmed to its dictionary size.

  Raises:
    IndexError: ``i`` is not a config of the sweep.
  """
  if not 0 <= i < hparams.num_configs:
    raise IndexError(f'config {i} not in [0, {hparams.num_configs})')
  sae = jax.tree.map(lambda x: np.asarray(x)[i], state.sae)
  return model.trim(sae, int(np.asarray(hparams.dict_size)[i]))


def config_from_state(spec: SweepSpec, hparams: SweepHparams, state, i: int
                      ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Config ``i`` of a (restored) sweep as dicts; see :func:`load_config`
  (the analysis reads it typed: ``SweepView.sae(i)``)."""
  sae = trained_params(hparams, state, i)
  hp = hparams.config(i)
  cfg = sae_config_of(spec, hp['dict_size'])
  hp.update(finite=bool(np.asarray(state.finite)[i]),
            diverged_step=int(np.asarray(state.diverged_step)[i]),
            epoch=int(np.asarray(state.epoch)),
            sae_config={f.name: getattr(cfg, f.name)
                        for f in dataclasses.fields(cfg)
                        if f.name != 'precision'})
  return sae, hp


def load_config(workdir: str, i: int, step: int | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Config ``i`` of a checkpointed sweep.

  Returns:
    ``(sae_params, hparams)``: numpy SAE weights trimmed to the config's
    dictionary size (``W`` ``(dict_size, d)``, ...), and its hyper-parameters
    plus ``finite``, ``diverged_step``, ``epoch`` and the static SAE
    architecture fields (``sae_config``: kwargs of
    :class:`~monosem_jax.sae.model.SAEConfig` with ``dict_size = dict_size``).
    To read many configs, :func:`restore_sweep` once and call
    :func:`config_from_state`.
  """
  spec, hparams, state, _ = restore_sweep(workdir, step)
  return config_from_state(spec, hparams, state, i)
