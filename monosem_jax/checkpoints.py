"""One orbax checkpoint style for every stage (recommenders and sweeps).

A checkpoint step holds two items: ``state``, every leaf of a pytree (saved
as a flat ``{'leaf_0000': array, ...}`` dict, so any pytree type works and a
template of the same structure restores it, with the template's shardings),
and ``meta``, a JSON document. Orbax writes into a temporary folder and
renames it when complete, so an interrupted save leaves the previous step
intact. Saves are synchronous unless the manager was made with
``async_saves=True``: then :func:`save` returns once the arrays are copied to
the host and the files are written in the background while training goes on
(the next save, ``wait_until_finished`` or ``close`` waits for them).

Every save records in ``meta['state_sha256']`` a SHA-256 of each leaf
(:func:`leaf_sha256`: dtype, shape and bytes of its host copy, taken before
:func:`save` returns, so the digest is of exactly the values written even
while a background save is in flight). :func:`restore` recomputes them on
the restored leaves and refuses, in one line naming the step folder and the
leaf, a checkpoint whose bytes changed since (an edit, a flipped bit, a bad
disk); it also turns orbax's own failures on a truncated or unreadable step
into one line. A step written before hashes were recorded restores
unverified (:func:`verified` says so).

Example:
  >>> import tempfile, numpy as np
  >>> m = make_manager(tempfile.mkdtemp())
  >>> save(m, 3, {'w': np.arange(4.0)}, {'epoch': 3})
  >>> state, meta = restore(m, {'w': np.zeros(4)})
  >>> state['w'].tolist(), meta['epoch'], verified(meta)
  ([0.0, 1.0, 2.0, 3.0], 3, True)
  >>> m.close()
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import sys
import threading
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from monosem_jax.errors import WorkdirError

#: Layout version of the saved state; a checkpoint of another version is
#: refused in one line instead of failing inside orbax.
FORMAT = 2
#: The meta key holding the per-leaf digests.
HASHES = 'state_sha256'


def make_manager(directory: str, max_to_keep: int | None = 2,
                 async_saves: bool = False) -> ocp.CheckpointManager:
  """An orbax CheckpointManager under ``directory`` (synchronous saves
  unless ``async_saves``)."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True,
      enable_async_checkpointing=async_saves)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_names=('state', 'meta'))


def saved_steps(directory: str) -> list[int]:
  """The steps with a finished checkpoint under ``directory`` (sorted)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def _leaf_dict(state) -> dict[str, Any]:
  return {f'leaf_{j:04d}': x for j, x in enumerate(jax.tree.leaves(state))}


def to_host(x: Any) -> np.ndarray:
  """A numpy copy of ``x``; all-gathers across processes when ``x`` is
  sharded over several (every process must call this then)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def host_leaves(state) -> list[np.ndarray]:
  """Every leaf of ``state`` as one host numpy array (:func:`to_host`)."""
  return [to_host(x) for x in jax.tree.leaves(state)]


def leaf_sha256(x: np.ndarray) -> str:
  """SHA-256 (hex) of an array's dtype, shape and C-order bytes.

  >>> leaf_sha256(np.zeros(2)) == leaf_sha256(np.zeros(2))
  True
  >>> leaf_sha256(np.zeros(2)) == leaf_sha256(np.zeros((1, 2)))
  False
  """
  x = np.ascontiguousarray(x)
  h = hashlib.sha256(f'{x.dtype.str}{x.shape}'.encode())
  h.update(memoryview(x).cast('B') if x.size else b'')
  return h.hexdigest()


def state_sha256(state) -> list[str]:
  """:func:`leaf_sha256` of every leaf of ``state`` (in leaf order), the
  leaves hashed side by side on worker threads (hashlib releases the GIL)."""
  leaves = host_leaves(state)
  workers = min(len(leaves), os.cpu_count() or 1, 8)
  if workers <= 1:
    return [leaf_sha256(x) for x in leaves]
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    return list(pool.map(leaf_sha256, leaves))


def verified(meta: dict) -> bool:
  """Whether a restored step carried leaf hashes (and so was verified)."""
  return HASHES in meta


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         meta: dict, wait: bool = True) -> None:
  """Saves ``state`` and the JSON-able ``meta`` as ``step`` (replacing it),
  with the SHA-256 of every leaf in ``meta['state_sha256']``.

  Returns when the step is on disk; with an ``async_saves`` manager and
  ``wait=False``, once the arrays are on the host (the write finishes in the
  background).
  """
  meta = dict(meta, format=FORMAT)
  meta[HASHES] = state_sha256(state)
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(_leaf_dict(state)),
      meta=ocp.args.JsonSave(meta)), force=True)
  if wait:
    manager.wait_until_finished()


def _closed_loop(e: BaseException | None) -> bool:
  return isinstance(e, RuntimeError) and str(e) == 'Event loop is closed'


def _drop_closed_loop_noise() -> None:
  """After a failed restore, orbax's other pending reads finish on worker
  threads and report ``RuntimeError('Event loop is closed')`` through
  ``sys.unraisablehook``, ``threading.excepthook`` or, printed by native
  code calling back into Python (``PyErr_Print``), ``sys.excepthook``: a
  page of tracebacks after the one-line refusal. From the first failure on,
  those (and only those) are dropped."""
  previous = sys.unraisablehook
  if not getattr(previous, 'drops_closed_loop', False):
    def hook(unraisable):
      if not _closed_loop(unraisable.exc_value):
        previous(unraisable)
    hook.drops_closed_loop = True
    sys.unraisablehook = hook
  previous_thread = threading.excepthook
  if not getattr(previous_thread, 'drops_closed_loop', False):
    def thread_hook(args):
      if not _closed_loop(args.exc_value):
        previous_thread(args)
    thread_hook.drops_closed_loop = True
    threading.excepthook = thread_hook
  previous_except = sys.excepthook
  if not getattr(previous_except, 'drops_closed_loop', False):
    def except_hook(kind, value, tb):
      if not _closed_loop(value):
        previous_except(kind, value, tb)
    except_hook.drops_closed_loop = True
    sys.excepthook = except_hook


def _unreadable(manager, step, item: str, e: Exception) -> WorkdirError:
  _drop_closed_loop_noise()
  first = str(e).strip().splitlines()[0] if str(e).strip() else ''
  first = first.split(' [tensorstore_spec')[0][:300]
  return WorkdirError(
      f'{manager.directory}/{step}/{item}: cannot be read ({type(e).__name__}'
      f'{": " + first if first else ""}); the checkpoint is truncated or '
      'corrupt: delete that step folder to resume from an earlier one, or '
      'start again in a fresh --workdir')


def restore_meta(manager: ocp.CheckpointManager,
                 step: int | None = None) -> dict:
  """Only the ``meta`` document of ``step`` (default: the latest).

  Raises:
    WorkdirError: no checkpoint, or its meta cannot be read.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    raise WorkdirError(f'{manager.directory}: no checkpoint yet')
  try:
    return manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))['meta']
  except Exception as e:  # orbax, tensorstore, JSON: name the file
    raise _unreadable(manager, step, 'meta', e) from e


def restore(manager: ocp.CheckpointManager, template: Any,
            step: int | None = None) -> tuple[Any, dict]:
  """``(state, meta)`` of ``step`` (default: the latest), verified against
  the leaf hashes recorded when it was saved.

  Args:
    template: a pytree with the saved structure, shapes and dtypes (and the
      shardings to restore into).

  Raises:
    WorkdirError: no checkpoint; one written by another layout version;
      one that cannot be read (truncated) or whose leaves differ from their
      recorded SHA-256 (edited or corrupted); the message names the step
      folder (and the leaf).
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    raise WorkdirError(f'{manager.directory}: no checkpoint yet')
  found = restore_meta(manager, step).get('format', 1)
  if found != FORMAT:
    raise WorkdirError(
        f'{manager.directory}/{step} was written by another version of '
        f'monosem-jax (checkpoint format {found}, this one reads {FORMAT}); '
        'start again in a fresh --workdir')
  abstract = _leaf_dict(template)
  try:
    out = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        meta=ocp.args.JsonRestore()))
  except Exception as e:  # orbax, tensorstore: name the step
    raise _unreadable(manager, step, 'state', e) from e
  leaves = [out['state'][k] for k in sorted(abstract)]
  state = jax.tree.unflatten(jax.tree.structure(template), leaves)
  _verify(manager, step, template, state, out['meta'])
  return state, out['meta']


def _verify(manager, step, template, state, meta: dict) -> None:
  """Refuses restored leaves whose SHA-256 differs from the recorded one."""
  recorded = meta.get(HASHES)
  if recorded is None:
    return
  paths = [jax.tree_util.keystr(p) for p, _ in
           jax.tree_util.tree_flatten_with_path(template)[0]]
  now = state_sha256(state)
  if len(recorded) != len(now):
    raise WorkdirError(
        f'{manager.directory}/{step}/meta records {len(recorded)} leaf hashes '
        f'for a state of {len(now)} leaves; the checkpoint does not belong to '
        'this run: start again in a fresh --workdir')
  for j, (a, b) in enumerate(zip(recorded, now)):
    if a != b:
      raise WorkdirError(
          f'{manager.directory}/{step}/state: leaf {j} ({paths[j] or "state"}) '
          f'does not match the SHA-256 recorded when it was saved ({a[:12]}, '
          f'now {b[:12]}): the checkpoint was edited or corrupted; delete that '
          'step folder to resume from an earlier one, or start again in a '
          'fresh --workdir')
