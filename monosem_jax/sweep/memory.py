"""Memory planning for a sweep, from XLA's own accounting.

Before the real program is compiled, :func:`plan` compiles the epoch program
(:func:`~monosem_jax.sweep.step.run_epoch_impl`) for two small config counts
and reads XLA's memory analysis of each (arguments + outputs + temporaries
- aliased buffers). Memory is affine in the number of configs C, so the two
points give the bytes shared by all configs (embedding tables, batch data)
and the bytes per config (SAE weights, Adam state, activations, gradients),
hence the memory of C configs and the largest C that fits the device, with a
safety margin (the fit from small C slightly under-counts; ~5 % at C = 8 on
the CPU).

When C configs do not fit, :meth:`MemoryPlan.chunk_for` gives the largest
block of configs that does, with the stacked state (weights and Adam moments)
of all C kept on the device; the sweep then runs the epoch program over
sequential blocks (:func:`~monosem_jax.sweep.step.run_epoch_chunked`).

Example::

  p = plan(spec, hparams, inputs, scorer)
  print(p.describe(hparams.num_configs))
  chunk = p.chunk_for(hparams.num_configs)     # None: one program fits
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from monosem_jax.errors import ConfigError
from monosem_jax.sweep.spec import SweepHparams, SweepSpec
from monosem_jax.sweep.state import SweepInputs, init_sweep
from monosem_jax.sweep.step import run_epoch_impl

#: Fraction added to the extrapolated memory before comparing with the
#: device's limit.
MARGIN = 0.15


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
  """Bytes of one epoch program: ``shared + per_config * C``.

  Attributes:
    shared_bytes: what every config shares (inputs, batch indices).
    per_config_bytes: what each config adds.
    device_bytes: the device's memory limit (None where JAX does not report
      one, e.g. on a CPU).
    margin: the safety fraction used by :attr:`max_configs`.
    state_bytes_per_config: the stacked state's bytes per config (SAE
      weights, Adam moments, flags), which stay on the device for every
      config when the configs run in blocks.
  """
  shared_bytes: float
  per_config_bytes: float
  device_bytes: float | None
  margin: float = MARGIN
  state_bytes_per_config: float = 0.0

  def bytes_for(self, configs: int) -> float:
    """Predicted bytes of ``configs`` configs, margin included."""
    return (self.shared_bytes + self.per_config_bytes * configs) * (
        1 + self.margin)

  @property
  def max_configs(self) -> int | None:
    """The largest C whose predicted bytes fit the device (None: unknown
    limit)."""
    if self.device_bytes is None or self.per_config_bytes <= 0:
      return None
    room = self.device_bytes / (1 + self.margin) - self.shared_bytes
    return max(0, int(room // self.per_config_bytes))

  def chunk_for(self, configs: int) -> int | None:
    """Configs per program when ``configs`` do not fit at once, else None.

    The block size ``K`` satisfies ``shared + state * configs + per_config *
    K`` (margin included) <= the device's limit: every config's state stays
    on the device, the block's activations come and go.

    Raises:
      ConfigError: even the state of ``configs`` configs (or a block of one)
        does not fit; the message gives the figures.
    """
    if self.device_bytes is None or self.bytes_for(configs) <= self.device_bytes:
      return None
    room = (self.device_bytes / (1 + self.margin) - self.shared_bytes
            - self.state_bytes_per_config * configs)
    chunk = int(room // self.per_config_bytes) if self.per_config_bytes > 0 else 0
    if chunk < 1:
      mb = 1 / 2**20
      raise ConfigError(
          f'{configs:,} configs do not fit the device even one block at a time:'
          f' their weights and Adam state take '
          f'{self.state_bytes_per_config * configs * mb:,.0f} MB and a block of '
          f'one {self.per_config_bytes * mb:,.1f} MB more, against '
          f'{self.device_bytes * mb:,.0f} MB ({self.margin:.0%} margin); sweep '
          'fewer configs per launch or shard them over more devices')
    return min(chunk, configs)

  def describe(self, configs: int) -> str:
    """One line for the launcher's log."""
    mb = 1 / 2**20
    state = min(self.state_bytes_per_config, self.per_config_bytes)
    line = (f'memory (XLA, per device): {self.shared_bytes * mb:,.1f} MB '
            f'shared (embeddings, batch) + {self.per_config_bytes * mb:,.3f} '
            f'MB per config ({state * mb:,.3f} weights and Adam state, '
            f'{(self.per_config_bytes - state) * mb:,.3f} activations and '
            'gradients); '
            f'{configs} configs -> {self.bytes_for(configs) * mb:,.1f} MB '
            f'with a {self.margin:.0%} margin')
    if self.device_bytes is not None:
      line += (f'; device limit {self.device_bytes * mb:,.0f} MB fits up to '
               f'{self.max_configs:,} configs')
    return line


def describe_chunks(configs: int, chunk: int) -> str:
  """The line the sweep logs when it runs ``configs`` in blocks."""
  blocks = -(-configs // chunk)
  return (f'{configs:,} configs per device: training them in {blocks} '
          f'sequential blocks of {chunk:,} (config_chunk) '
          '(same results as one program, to float32 rounding)')


def _program_bytes(spec, hparams, inputs, scorer) -> float:
  state = init_sweep(spec, hparams, jax.random.PRNGKey(0))
  compiled = jax.jit(run_epoch_impl, static_argnums=0).lower(
      spec, hparams, state, inputs, scorer).compile()
  m = compiled.memory_analysis()
  return float(m.argument_size_in_bytes + m.output_size_in_bytes
               + m.temp_size_in_bytes - m.alias_size_in_bytes)


def device_limit(device=None) -> float | None:
  """A local device's memory limit in bytes, or None where not reported."""
  device = device or jax.local_devices()[0]
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  limit = (stats or {}).get('bytes_limit')
  return float(limit) if limit else None


def plan(spec: SweepSpec, hparams: SweepHparams, inputs: SweepInputs,
         scorer: Any, counts: tuple[int, int] = (2, 4),
         device_bytes: float | None = None,
         margin: float = MARGIN) -> MemoryPlan:
  """Fits ``shared + per_config * C`` from two compiled config counts.

  Args:
    spec, hparams, inputs, scorer: the sweep (its first configs are used).
    counts: the two small config counts compiled.
    device_bytes: the limit to plan against (default: the first device's).
    margin: safety fraction.
  """
  a, b = counts
  take = lambda c: hparams.take([i % hparams.num_configs for i in range(c)])
  mem_a = _program_bytes(spec, take(a), inputs, scorer)
  mem_b = _program_bytes(spec, take(b), inputs, scorer)
  per = (mem_b - mem_a) / (b - a)
  return MemoryPlan(shared_bytes=max(mem_a - per * a, 0.0),
                    per_config_bytes=per,
                    device_bytes=(device_limit() if device_bytes is None
                                  else device_bytes), margin=margin,
                    state_bytes_per_config=state_bytes_per_config(spec))


def state_bytes_per_config(spec: SweepSpec) -> float:
  """Bytes of one config's share of the stacked :class:`SweepState`."""
  state = jax.eval_shape(
      lambda: init_sweep(spec, SweepHparams.from_list([{}], spec)))  # C = 1
  sizes = jax.tree.map(
      lambda flag, sub: sum(x.size * np.dtype(x.dtype).itemsize
                            for x in jax.tree.leaves(sub)) if flag else 0,
      state.per_config(), state, is_leaf=lambda f: isinstance(f, bool))
  return float(sum(jax.tree.leaves(sizes)))
