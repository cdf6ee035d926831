"""Sharding the config axis of a sweep over every available device.

A one-axis :class:`jax.sharding.Mesh` named ``'cfg'`` spans all devices. Every
per-config array (SAE weights, Adam state, ``finite``, ``SweepHparams``
fields: leading axis C) is placed with ``NamedSharding(mesh, P('cfg'))``; the
inputs (embedding tables, pair arrays), the scorer (the frozen MLP) and the
scalar state (``data_key``, ``epoch``, ``step``) are replicated. Configs
never communicate, so each device trains its C / n_dev configs on the same
(replicated) batch stream.

:func:`~monosem_jax.sweep.driver.run_epoch` sees the sharded state and, by
default, runs :func:`dispatch_per_device`: each device executes the very
executable an unsharded run of its block uses (dispatched asynchronously, so
in parallel) and the results are assembled into global ``P('cfg')`` arrays.
That makes the sharded sweep **bitwise identical** to one-device sweeps of
each device's block of configs. Against one sweep of *all* configs on one
device it agrees to float32 rounding: XLA vectorises the reductions inside
the vmapped step by the block width, so C = 80 and C = 20 may round a loss
term differently (bitwise for C = 8 over 4 devices in the CPU test, ~1 ulp
for C = 80). The alternative
``run_epoch_sharded(..., mode='shard_map')`` compiles one partitioned program
(one compile instead of one per device) but XLA fuses it differently, so it
agrees only to float32 rounding (~1e-8 here).

C must be a multiple of the device count: pad with
``hparams.pad_to(padded_size(C, mesh))`` and drop the padded configs from the
results (they are copies of the last config).

**Multi-host (TPU pod slices, multi-node GPU).** Run the *same* script on every
host and call ``jax.distributed.initialize()`` (no arguments on Cloud TPU;
``coordinator_address=..., num_processes=..., process_id=...`` elsewhere)
before any other JAX call. ``jax.devices()`` then lists the devices of all
hosts, :func:`config_mesh` spans them, and :func:`shard_sweep` builds global
arrays with ``jax.make_array_from_callback`` from the host copies every
process holds (init and data are deterministic, so all processes agree).
Orbax checkpoints of sharded state are written cooperatively. Read results
with :func:`to_host`, which all-gathers arrays that are not fully addressable
(every process must call it). Nothing else changes.

Example:
  >>> mesh = config_mesh()
  >>> mesh.axis_names
  ('cfg',)
  >>> padded_size(5, mesh) % mesh.size
  0
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from monosem_jax.sweep import step
from monosem_jax.sweep.spec import SweepHparams, SweepSpec
from monosem_jax.sweep.state import SweepState

AXIS = 'cfg'


def config_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """One-axis mesh ``('cfg',)`` over ``devices`` (default: all devices)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (AXIS,))


def padded_size(num_configs: int, mesh: Mesh) -> int:
  """The smallest multiple of the mesh size >= num_configs."""
  return -(-num_configs // mesh.size) * mesh.size


def _place(x: Any, sharding: NamedSharding) -> jax.Array:
  host = to_host(x)
  return jax.make_array_from_callback(host.shape, sharding,
                                      lambda idx: host[idx])


def shard_configs(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf split along its leading (config) axis."""
  sh = NamedSharding(mesh, P(AXIS))
  return jax.tree.map(lambda x: _place(x, sh), tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf fully replicated over the mesh."""
  sh = NamedSharding(mesh, P())
  return jax.tree.map(lambda x: _place(x, sh), tree)


def shard_sweep(mesh: Mesh, state: SweepState, hparams: SweepHparams,
                inputs: Any = None, scorer: Any = None):
  """Places a sweep's state and hyper-parameters (and inputs, scorer) on ``mesh``.

  Args:
    mesh: from :func:`config_mesh`.
    state: a :class:`~monosem_jax.sweep.state.SweepState` (unsharded).
    hparams: its :class:`~monosem_jax.sweep.spec.SweepHparams`.
    inputs: optional :class:`~monosem_jax.sweep.state.SweepInputs`
      (replicated).
    scorer: optional frozen scorer (replicated).

  Returns:
    ``(state, hparams, inputs, scorer)`` placed; None stays None.

  Raises:
    ValueError: if C is not a multiple of the device count.
  """
  c = state.num_configs
  if c % mesh.size:
    raise ValueError(f'{c} configs do not split over {mesh.size} devices; pad '
                     f'with hparams.pad_to({padded_size(c, mesh)}) and ignore '
                     'the padded configs')
  state = jax.tree.map(
      lambda flag, sub: (shard_configs if flag else replicate)(sub, mesh),
      state.per_config(), state, is_leaf=lambda f: isinstance(f, bool))
  hparams = shard_configs(hparams, mesh)
  inputs = None if inputs is None else replicate(inputs, mesh)
  scorer = None if scorer is None else replicate(scorer, mesh)
  return state, hparams, inputs, scorer


def config_mesh_of(state) -> Mesh | None:
  """The mesh a state's config axis is sharded over, or None (one device)."""
  sh = getattr(state.finite, 'sharding', None)
  if (isinstance(sh, NamedSharding) and sh.mesh.size > 1
      and tuple(sh.spec) and sh.spec[0] == AXIS):
    return sh.mesh
  return None


def _local_piece(x: Any, device: jax.Device, per_config: bool, index: int,
                 n: int) -> jax.Array:
  """The part of ``x`` that ``device`` (mesh position ``index``) works on."""
  if isinstance(x, jax.Array):
    for shard in x.addressable_shards:
      if shard.device == device:
        data = shard.data
        if per_config and data.shape[:1] == x.shape[:1] and n > 1:
          data = data[index * (x.shape[0] // n):(index + 1) * (x.shape[0] // n)]
        return data
  host = np.asarray(x)
  if per_config:
    c = host.shape[0] // n
    host = host[index * c:(index + 1) * c]
  return jax.device_put(host, device)


def dispatch_per_device(fn, mesh: Mesh, args: tuple, in_per_config: tuple,
                        out_per_config: Any):
  """Runs ``fn`` on every local device of ``mesh`` over its block of configs.

  Each device executes exactly the single-device executable an unsharded run
  of its configs would use (dispatched asynchronously, so devices run in
  parallel); the outputs are assembled into global arrays sharded
  ``P('cfg')`` (or replicated). Unlike a partitioned (GSPMD / shard_map)
  program, whose fusion differs, this is bitwise equal to unsharded runs of
  each block.

  Args:
    fn: ``fn(*args)`` on single-device arrays.
    mesh: a :func:`config_mesh`.
    args: the arguments; per-config leaves sharded ``P('cfg')`` (else split
      here), the rest replicated (else copied here).
    in_per_config: pytree prefix of ``args``, True where a leaf has the
      config axis.
    out_per_config: pytree prefix of ``fn``'s output, likewise.
  """
  devices = list(mesh.devices.flat)
  n = len(devices)
  local = [(i, d) for i, d in enumerate(devices)
           if d.process_index == jax.process_index()]
  is_flag = lambda f: isinstance(f, bool)
  outs = []
  for i, dev in local:
    piece = jax.tree.map(
        lambda flag, sub: jax.tree.map(
            lambda x: _local_piece(x, dev, flag, i, n), sub),
        in_per_config, args, is_leaf=is_flag)
    outs.append(fn(*piece))
  per_sh, rep_sh = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())

  def assemble(flag, *leaves):
    shape = leaves[0].shape
    if flag:
      shape = (shape[0] * n,) + shape[1:]
    return jax.make_array_from_single_device_arrays(
        shape, per_sh if flag else rep_sh, list(leaves))

  flags = jax.tree.map(lambda f, o: jax.tree.map(lambda _: f, o),
                       out_per_config, outs[0], is_leaf=is_flag)
  return jax.tree.map(assemble, flags, *outs)


def run_epoch_sharded(spec: SweepSpec, mesh: Mesh, hparams: SweepHparams,
                      state: SweepState, inputs: Any, scorer: Any,
                      mode: str = 'dispatch', config_chunk: int | None = None):
  """:func:`~monosem_jax.sweep.step.run_epoch` on a sharded state.

  ``mode='dispatch'`` (default): every device runs the one-device executable
  on its block (:func:`dispatch_per_device`), in sequential sub-blocks of
  ``config_chunk`` configs when given
  (:func:`~monosem_jax.sweep.step.run_epoch_chunked`). ``'shard_map'``: one
  partitioned program (one compile instead of one per device; equal to
  rounding; no chunking).
  """
  if mode == 'shard_map':
    if config_chunk is not None:
      raise ValueError("sharded mode='shard_map' does not chunk configs; "
                       "use mode='dispatch'")
    return _run_epoch_shard_map(spec, mesh, hparams, state, inputs, scorer)
  if mode != 'dispatch':
    raise ValueError(f"sharded mode={mode!r}: 'dispatch' | 'shard_map'")
  per = state.per_config()
  return dispatch_per_device(
      functools.partial(step.run_epoch_chunked, spec, chunk=config_chunk),
      mesh,
      (hparams, state, inputs, scorer), (True, per, False, False), (per, True))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run_epoch_shard_map(spec, mesh, hparams, state, inputs, scorer):
  specs = jax.tree.map(lambda f: P(AXIS) if f else P(), state.per_config())
  fn = jax.shard_map(functools.partial(step.run_epoch_impl, spec), mesh=mesh,
                     in_specs=(P(AXIS), specs, P(), P()),
                     out_specs=(specs, P(AXIS)), check_vma=False)
  return fn(hparams, state, inputs, scorer)


def to_host(x: Any) -> np.ndarray:
  """A numpy copy of ``x``; all-gathers across processes when needed."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)
