"""Where a sweep's configs run: the :class:`Placement`, chosen once.

A one-axis :class:`jax.sharding.Mesh` named ``'cfg'`` spans all devices. Every
per-config array (SAE weights, Adam state, ``finite``, ``SweepHparams``
fields: leading axis C) is placed with ``NamedSharding(mesh, P('cfg'))``; the
inputs (embedding tables, pair arrays), the scorer (the frozen MLP) and the
scalar state (``data_key``, ``epoch``, ``step``) are replicated. Configs
never communicate, so each device trains its C / n_dev configs on the same
(replicated) batch stream.

A :class:`Placement` (one device; sequential blocks of K configs; each
device's block over a mesh; a mesh over several processes) is chosen once,
when :func:`~monosem_jax.sweep.driver.make_sweep` builds the sweep, and
:meth:`Placement.run` dispatches the one block program
(:func:`~monosem_jax.sweep.step.run_epoch`): on one device it runs it on all
configs (or on each block in turn, :func:`run_blocks`); over a mesh each
device executes the very executable an unsharded run of its block uses
(dispatched asynchronously, so in parallel) and the results are assembled
into global ``P('cfg')`` arrays. That makes the sharded sweep **bitwise
identical** to one-device sweeps of each device's block of configs. Against
one sweep of *all* configs on one device it agrees to float32 rounding: XLA
vectorises the reductions inside the vmapped step by the block width, so
C = 80 and C = 20 may round a loss term differently (bitwise for C = 8 over
4 devices in the CPU test, ~1 ulp for C = 80). A partitioned program
(GSPMD / ``shard_map``) would compile once instead of once per device, but
XLA fuses it differently (equal only to rounding), so it is not offered.

C must be a multiple of the device count: :meth:`Placement.padded` pads
with copies of the last config (``hparams.pad_to(padded_size(C, mesh))``);
drop the padded configs from the results.

**Multi-host (TPU pod slices, multi-node GPU).** Run the *same* script on every
host and call ``jax.distributed.initialize()`` (no arguments on Cloud TPU;
``coordinator_address=..., num_processes=..., process_id=...`` elsewhere)
before any other JAX call. ``jax.devices()`` then lists the devices of all
hosts, :func:`config_mesh` spans them, and :func:`shard_sweep` builds global
arrays with ``jax.make_array_from_callback`` from the host copies every
process holds (init and data are deterministic, so all processes agree).
Each process dispatches its own devices' blocks. Orbax checkpoints of
sharded state are written cooperatively. Read results with :func:`to_host`,
which all-gathers arrays that are not fully addressable (every process must
call it). Nothing else changes.

Example:
  >>> mesh = config_mesh()
  >>> mesh.axis_names
  ('cfg',)
  >>> padded_size(5, mesh) % mesh.size
  0
  >>> Placement(chunk=4).describe()
  'one device in blocks of 4'
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from monosem_jax import checkpoints
from monosem_jax.sweep.spec import SweepConfigError, SweepHparams
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


def check_divides(num_configs: int, mesh: Mesh) -> None:
  """Refuses a config count that does not split evenly over ``mesh``.

  Raises:
    ValueError: naming the padding to use.
  """
  if num_configs % mesh.size:
    raise ValueError(f'{num_configs} configs do not split over {mesh.size} '
                     'devices; pad with hparams.pad_to('
                     f'{padded_size(num_configs, mesh)}) and ignore the '
                     'padded configs')


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
  check_divides(state.num_configs, mesh)
  p = Placement(mesh)
  return (p.place(state, state.per_config()), p.place(hparams),
          None if inputs is None else p.place(inputs, False),
          None if scorer is None else p.place(scorer, False))


def _split(c: int, chunk: int | None) -> list[jax.Array] | None:
  """Index arrays of sequential blocks of ``chunk`` of ``c`` configs (the
  last padded by repeating config ``c - 1``), or None for one block."""
  if chunk is None or chunk >= c:
    return None
  return [jnp.minimum(jnp.arange(start, start + chunk), c - 1)
          for start in range(0, c, chunk)]


def run_blocks(program: Callable, chunk: int | None, hparams: SweepHparams,
               state: SweepState, inputs: Any, scorer: Any):
  """``program`` over sequential blocks of ``chunk`` configs of one device.

  The blocks run one after the other through one executable; the padding
  of the last block is dropped. With ``chunk`` None (or >= C) this is one
  call of ``program`` on all configs.

  Args:
    program: ``program(hparams, state, inputs, scorer) -> (state,
      per-config outputs)``, e.g. ``functools.partial(step.run_epoch,
      spec)``.
    chunk: configs per block, or None.
    hparams, state, inputs, scorer: on one device.
  """
  c = state.num_configs
  blocks = _split(c, chunk)
  if blocks is None:
    return program(hparams, state, inputs, scorer)
  flags = state.per_config()
  states, outs = [], []
  for idx in blocks:
    block = jax.tree.map(
        lambda flag, sub: jax.tree.map(lambda x: x[idx] if flag else x, sub),
        flags, state, is_leaf=_is_flag)
    hp = jax.tree.map(lambda x: jnp.asarray(x)[idx], hparams)
    new, out = program(hp, block, inputs, scorer)
    states.append(new)
    outs.append(out)
  join = lambda *xs: jnp.concatenate(xs)[:c]
  state = jax.tree.map(
      lambda flag, *subs: (jax.tree.map(join, *subs) if flag else subs[-1]),
      flags, *states, is_leaf=_is_flag)
  return state, jax.tree.map(join, *outs)


def _is_flag(f) -> bool:
  return isinstance(f, bool)


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


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where a sweep's config axis runs, chosen once (docs/architecture.md).

  * ``Placement()``: one device, every config in one program;
  * ``Placement(chunk=K)``: one device, sequential blocks of K configs
    (what :meth:`~monosem_jax.sweep.memory.MemoryPlan.chunk_for` picks when
    all configs do not fit);
  * ``Placement(mesh)``: each device of a :func:`config_mesh` trains its
    block of C / n_dev configs (in sequential blocks of ``chunk`` when
    given), dispatched asynchronously, so in parallel;
  * the same with a mesh spanning several processes (multi-host, after
    ``jax.distributed.initialize()``): each process dispatches its own
    devices' blocks.

  Every placement runs the same block program
  (:func:`~monosem_jax.sweep.step.run_epoch`) on single-device arrays:
  :meth:`run` only dispatches it. A sharded sweep is therefore bitwise
  identical to one-device sweeps of each device's block (see the module
  docstring).

  Attributes:
    mesh: a :func:`config_mesh`, or None (one device). A mesh of one
      device trains as one device.
    chunk: configs per program per device, or None (all of them).

  Raises:
    SweepConfigError: ``chunk < 1``.
  """
  mesh: Mesh | None = None
  chunk: int | None = None

  def __post_init__(self):
    if self.chunk is not None and self.chunk < 1:
      raise SweepConfigError(f'config_chunk={self.chunk}: must be >= 1 (or '
                             'None for all configs in one program)')

  @property
  def sharded(self) -> bool:
    """Whether configs are split over several devices."""
    return self.mesh is not None and self.mesh.size > 1

  @property
  def devices(self) -> int:
    """How many devices share the configs."""
    return self.mesh.size if self.sharded else 1

  @property
  def multi_process(self) -> bool:
    """Whether the mesh spans devices of other processes."""
    return self.sharded and any(d.process_index != jax.process_index()
                                for d in self.mesh.devices.flat)

  def describe(self) -> str:
    """One phrase: one device / blocks of K / per device / multi-process."""
    blocks = f' in blocks of {self.chunk:,}' if self.chunk else ''
    if not self.sharded:
      return f'one device{blocks}'
    where = (f'{self.devices} devices of {jax.process_count()} processes'
             if self.multi_process else f'{self.devices} devices')
    return f'per device over {where}{blocks}'

  def padded(self, hparams: SweepHparams) -> SweepHparams:
    """``hparams`` padded to a multiple of the device count (copies of the
    last config; a no-op on one device)."""
    if not self.sharded:
      return hparams
    return hparams.pad_to(padded_size(hparams.num_configs, self.mesh))

  def place(self, tree: Any, per_config: Any = True) -> Any:
    """Places a pytree: leaves with the config axis (``per_config``: a bool,
    or a pytree prefix of bools) split over the mesh, the rest replicated;
    unchanged on one device."""
    if self.mesh is None:
      return tree
    return jax.tree.map(
        lambda flag, sub: (shard_configs if flag else replicate)(sub,
                                                                 self.mesh),
        per_config, tree, is_leaf=_is_flag)

  def run(self, program: Callable, hparams: SweepHparams, state: SweepState,
          inputs: Any, scorer: Any):
    """``program`` on every config, dispatched as this placement says.

    Args:
      program: ``program(hparams, state, inputs, scorer) -> (state, out)``
        on single-device arrays; ``out`` a pytree of per-config ``(C, ...)``
        arrays.
      hparams, state: per-config leaves sharded ``P('cfg')`` on a mesh (else
        split here), the rest replicated (else copied here).
      inputs, scorer: replicated.

    Returns:
      ``(state, out)``: global ``P('cfg')`` arrays on a mesh (scalars
      replicated).
    """
    if not self.sharded:
      return run_blocks(program, self.chunk, hparams, state, inputs, scorer)
    devices = list(self.mesh.devices.flat)
    n = len(devices)
    per = state.per_config()
    in_flags = (True, per, False, False)
    outs = []
    for i, dev in enumerate(devices):
      if dev.process_index != jax.process_index():
        continue
      piece = jax.tree.map(
          lambda flag, sub, i=i, dev=dev: jax.tree.map(
              lambda x: _local_piece(x, dev, flag, i, n), sub),
          in_flags, (hparams, state, inputs, scorer), is_leaf=_is_flag)
      outs.append(run_blocks(program, self.chunk, *piece))
    per_sh = NamedSharding(self.mesh, P(AXIS))
    rep_sh = NamedSharding(self.mesh, P())

    def assemble(flag, *leaves):
      shape = leaves[0].shape
      if flag:
        shape = (shape[0] * n,) + shape[1:]
      return jax.make_array_from_single_device_arrays(
          shape, per_sh if flag else rep_sh, list(leaves))

    out_flags = jax.tree.map(lambda f, o: jax.tree.map(lambda _: f, o),
                             (per, True), outs[0], is_leaf=_is_flag)
    return jax.tree.map(assemble, out_flags, *outs)


#: A numpy copy of an array, all-gathered across processes when needed (the
#: one definition is the checkpoints'; re-exported for the sweep's readers).
to_host = checkpoints.to_host
