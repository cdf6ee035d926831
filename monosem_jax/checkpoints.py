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

Example:
  >>> import tempfile, numpy as np
  >>> m = make_manager(tempfile.mkdtemp())
  >>> save(m, 3, {'w': np.arange(4.0)}, {'epoch': 3})
  >>> state, meta = restore(m, {'w': np.zeros(4)})
  >>> state['w'].tolist(), meta['epoch']
  ([0.0, 1.0, 2.0, 3.0], 3)
  >>> m.close()
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from monosem_jax.errors import WorkdirError

#: Layout version of the saved state; a checkpoint of another version is
#: refused in one line instead of failing inside orbax.
FORMAT = 2


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


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         meta: dict, wait: bool = True) -> None:
  """Saves ``state`` and the JSON-able ``meta`` as ``step`` (replacing it).

  Returns when the step is on disk; with an ``async_saves`` manager and
  ``wait=False``, once the arrays are on the host (the write finishes in the
  background).
  """
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(_leaf_dict(state)),
      meta=ocp.args.JsonSave(dict(meta, format=FORMAT))), force=True)
  if wait:
    manager.wait_until_finished()


def restore_meta(manager: ocp.CheckpointManager,
                 step: int | None = None) -> dict:
  """Only the ``meta`` document of ``step`` (default: the latest)."""
  step = manager.latest_step() if step is None else step
  return manager.restore(step, args=ocp.args.Composite(
      meta=ocp.args.JsonRestore()))['meta']


def restore(manager: ocp.CheckpointManager, template: Any,
            step: int | None = None) -> tuple[Any, dict]:
  """``(state, meta)`` of ``step`` (default: the latest).

  Args:
    template: a pytree with the saved structure, shapes and dtypes (and the
      shardings to restore into).

  Raises:
    FileNotFoundError: no checkpoint.
    WorkdirError: the checkpoint was written by another layout version.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'no checkpoint under {manager.directory}')
  found = restore_meta(manager, step).get('format', 1)
  if found != FORMAT:
    raise WorkdirError(
        f'{manager.directory}/{step} was written by another version of '
        f'monosem-jax (checkpoint format {found}, this one reads {FORMAT}); '
        'start again in a fresh --workdir')
  abstract = _leaf_dict(template)
  out = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
  leaves = [out['state'][k] for k in sorted(abstract)]
  return jax.tree.unflatten(jax.tree.structure(template), leaves), out['meta']
