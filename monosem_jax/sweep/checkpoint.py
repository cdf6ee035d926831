"""Sweep checkpoints: orbax for the stacked state, JSON for what it holds.

Layout of a sweep workdir::

  workdir/
    sweep.json              spec + every config's hyper-parameters
    checkpoints/<epoch>/    orbax CheckpointManager steps (numbered by epoch)
      state/                every leaf of the SweepState: stacked SAE params,
                            Adam state, data RNG key, epoch, step, finite,
                            diverged_step
      meta/                 JSON: epoch and the per-epoch histories so far

Both writes are atomic: orbax writes into a temporary directory and renames
it when complete (synchronous saves here), and ``sweep.json`` is written to a
temporary file then ``os.replace``-d. An interrupted save leaves the previous
checkpoint intact, and a resumed sweep finishes bitwise-identical to an
uninterrupted one (the state holds everything the next epoch reads).

Example:
  >>> # state, hist = engine.train_sweep(spec, params, data, workdir='/tmp/w',
  >>> #                                  checkpoint_every=2)
  >>> # sae_i, hp_i = load_config('/tmp/w', 3)   # config 3, trimmed to its size
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from monosem_jax.sae import model
from monosem_jax.sweep.spec import SweepParams, SweepSpec, dumps, loads

SWEEP_JSON = 'sweep.json'
CKPT_DIR = 'checkpoints'


def write_sweep_json(workdir: str, spec: SweepSpec, params: SweepParams
                     ) -> None:
  """Writes ``workdir/sweep.json`` atomically.

  Raises:
    ValueError: if the workdir already describes a different sweep.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, SWEEP_JSON)
  text = dumps(spec, params)
  if os.path.exists(path):
    old_spec, old_params = read_sweep_json(workdir)
    if (old_spec != spec
        or json.dumps(old_params.to_json_dict()) != json.dumps(params.to_json_dict())):
      raise ValueError(f'{path} describes a different sweep; use a fresh '
                       'workdir to start a new one')
    return
  fd, tmp = tempfile.mkstemp(dir=workdir, prefix='.sweep.json.')
  with os.fdopen(fd, 'w') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_sweep_json(workdir: str) -> tuple[SweepSpec, SweepParams]:
  with open(os.path.join(workdir, SWEEP_JSON)) as f:
    return loads(f.read())


def make_manager(workdir: str, max_to_keep: int | None = 2
                 ) -> ocp.CheckpointManager:
  """An orbax CheckpointManager under ``workdir/checkpoints`` (synchronous)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, CKPT_DIR)),
                               options=options, item_names=('state', 'meta'))


def saved_epochs(workdir: str) -> list[int]:
  """The epochs that have a finished checkpoint under ``workdir`` (sorted)."""
  directory = os.path.join(workdir, CKPT_DIR)
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def _leaf_dict(state) -> dict[str, Any]:
  return {f'leaf_{j:04d}': x for j, x in enumerate(jax.tree.leaves(state))}


def _encode_histories(histories):
  return [{k: {'dtype': str(np.asarray(v).dtype),
               'values': np.asarray(v).tolist()} for k, v in h.items()}
          for h in histories]


def _decode_histories(raw):
  return [{k: np.asarray(v['values'], dtype=v['dtype']) for k, v in h.items()}
          for h in raw]


def save(manager: ocp.CheckpointManager, state, histories=()) -> None:
  """Saves ``state`` (and the histories so far) as step ``state.epoch``."""
  epoch = int(np.asarray(state.epoch))
  manager.save(epoch, args=ocp.args.Composite(
      state=ocp.args.StandardSave(_leaf_dict(state)),
      meta=ocp.args.JsonSave({'epoch': epoch,
                              'histories': _encode_histories(histories)})),
      force=True)
  manager.wait_until_finished()


def restore(manager: ocp.CheckpointManager, template, step: int | None = None):
  """Restores ``(state, histories)`` from ``step`` (default: the latest).

  Args:
    template: a state with the right structure, shapes and shardings (e.g.
      ``init_sweep(spec, params)``, placed as the run will be).
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'no checkpoint under {manager.directory}')
  abstract = _leaf_dict(template)
  out = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
  leaves = [out['state'][k] for k in sorted(abstract)]
  state = jax.tree.unflatten(jax.tree.structure(template), leaves)
  return state, _decode_histories(out['meta']['histories'])


def restore_sweep(workdir: str, step: int | None = None):
  """Everything a workdir holds: ``(spec, params, state, histories)``."""
  from monosem_jax.sweep.engine import init_sweep
  spec, params = read_sweep_json(workdir)
  manager = make_manager(workdir, max_to_keep=None)
  try:
    state, histories = restore(manager, init_sweep(spec, params), step)
  finally:
    manager.close()
  return spec, params, state, histories


def config_from_state(spec: SweepSpec, params: SweepParams, state, i: int
                      ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Config ``i`` of a (restored) sweep; see :func:`load_config`."""
  if not 0 <= i < params.num_configs:
    raise IndexError(f'config {i} not in [0, {params.num_configs})')
  sae = jax.tree.map(lambda x: np.asarray(x)[i], state.sae)
  hp = params.config(i)
  sae = model.trim(sae, hp['dict_size'])
  cfg = spec.sae
  prefixes = tuple(m for m in cfg.prefixes if m < hp['dict_size'])
  hp.update(finite=bool(np.asarray(state.finite)[i]),
            diverged_step=int(np.asarray(state.diverged_step)[i]),
            epoch=int(np.asarray(state.epoch)),
            sae_config=dict(d=cfg.d, n_latents=hp['dict_size'], tied=cfg.tied,
                            normalize=cfg.normalize, pre_bias=cfg.pre_bias,
                            activation=cfg.activation,
                            k_max=min(cfg.k_max, hp['dict_size']),
                            prefixes=prefixes))
  return sae, hp


def load_config(workdir: str, i: int, step: int | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Config ``i`` of a checkpointed sweep.

  Returns:
    ``(sae_params, hparams)``: numpy SAE params trimmed to the config's
    dictionary size (``W`` ``(dict_size, d)``, ...), and its hyper-parameters
    plus ``finite``, ``diverged_step``, ``epoch`` and the static SAE
    architecture fields (``sae_config``: kwargs of
    :class:`~monosem_jax.sae.model.SAEConfig` with ``n_latents = dict_size``).
    To read many configs, :func:`restore_sweep` once and call
    :func:`config_from_state`.
  """
  spec, params, state, _ = restore_sweep(workdir, step)
  return config_from_state(spec, params, state, i)
