"""Memory planning for a sweep, from XLA's own accounting.

Before the real program is compiled, :func:`plan` compiles the block program
(:func:`~monosem_jax.sweep.step.run_epoch`) for two small config counts
and reads XLA's memory analysis of each (arguments + outputs + temporaries
- aliased buffers). Memory is affine in the number of configs C, so the two
points give the bytes shared by all configs (embedding tables, batch data)
and the bytes per config (SAE weights, Adam state, activations, gradients),
hence the memory of C configs and the largest C that fits the device, with a
safety margin (the fit from small C slightly under-counts; ~5 % at C = 8 on
the CPU).

When C configs do not fit, :meth:`MemoryPlan.chunk_for` gives the largest
block of configs that does, with the stacked state (weights and Adam moments)
of all C kept on the device; the sweep's
:class:`~monosem_jax.sweep.sharding.Placement` then runs the block program
over sequential blocks of that size.

The plan costs two compilations (13 s of an 84 s sweep on an H200), so a
sweep (:func:`sweep_plan`, ``config.plan_memory``) does it only when it can
matter:

* ``None`` (automatic, the default): skipped when the device reports no
  memory limit (a CPU: nothing would change) or when
  :func:`upper_bound`, a generous bound from the shapes alone, is at most
  :data:`OBVIOUS_FRACTION` of the limit; planned otherwise;
* ``True``: always planned (and its line logged, also on a CPU);
* ``False``: never (configs that do not fit then fail to allocate).

A plan is cached in the sweep's workdir (:data:`PLAN_JSON`), keyed by the
spec, the input and scorer shapes, the device kind, the JAX version and the
two counts, so a resumed sweep does not compile it again.

Example::

  p = plan(spec, hparams, inputs, scorer)
  print(p.describe(hparams.num_configs))
  chunk = p.chunk_for(hparams.num_configs)     # None: one program fits
  placement = Placement(mesh, chunk)           # sweep/sharding.py
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import jax
import numpy as np

from monosem_jax import files
from monosem_jax.errors import ConfigError
from monosem_jax.sweep.spec import SWEEP_JSON, SweepHparams, SweepSpec, loads
from monosem_jax.sweep.state import SweepInputs, init_sweep
from monosem_jax.sweep.step import run_epoch

#: Fraction added to the extrapolated memory before comparing with the
#: device's limit.
MARGIN = 0.15
#: The automatic mode skips the plan when :func:`upper_bound` is at most this
#: fraction of the device's limit.
OBVIOUS_FRACTION = 0.5
#: :func:`upper_bound`'s factors: copies of the stacked state (weights, Adam
#: moments, gradients, the new values), of each row's latent- and
#: reconstruction-sized activations, of the shared inputs; loss terms per
#: step kept by the epoch's scan.
STATE_COPIES, ACTIVATION_COPIES, SHARED_COPIES, TERMS_PER_STEP = 4, 32, 4, 16
#: The plan's cache in a sweep workdir.
PLAN_JSON = 'memory_plan.json'


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
  compiled = run_epoch.lower(spec, hparams, state, inputs, scorer).compile()
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


def _nbytes(tree) -> int:
  return int(sum(np.prod(np.shape(x)) * np.dtype(x.dtype).itemsize
                 for x in jax.tree.leaves(tree)))


def upper_bound(spec: SweepSpec, inputs: SweepInputs, scorer: Any,
                configs: int, steps: int) -> float:
  """A generous upper bound of the epoch program's bytes, from the shapes.

  With ``R`` rows per step (MF: ``batch_users + batch_items``; paired
  scorers: ``2 batch_pairs``), ``M`` latents, ``d`` the width, ``H`` the
  scorer's layer widths (the output dims of its 2-D leaves: NCF's MLP; 0 for
  MF), ``S`` the state's bytes per config
  (:func:`state_bytes_per_config`) and ``T`` the steps of an epoch::

    per config = 4 S + 32 * 4 B * (R (M + d) + batch_pairs H
                                   [+ batch_users batch_items, MF 'direct'])
                 + 16 * 4 B * T                     (the scan's loss terms)
    shared     = 4 (inputs + scorer bytes) + 4 * 4 B * T R   (batch indices)

  (:data:`STATE_COPIES`, :data:`ACTIVATION_COPIES`, :data:`TERMS_PER_STEP`,
  :data:`SHARED_COPIES`). XLA's own figure is far below it (the H200's plan
  of the 1,024-config ML-1M NCF sweep: 0.031 MB per config, this bound 9.0
  MB); tests/test_sweep_memory.py checks it against XLA's memory analysis on
  the CPU.
  """
  paired = bool(scorer.paired)
  batch = spec.batching
  rows = batch.users + batch.items
  widths = sum(int(x.shape[1]) for x in jax.tree.leaves(scorer)
               if np.ndim(x) == 2) if paired else 0
  act = rows * (spec.max_dict_size + spec.dim) + batch.users * widths
  if scorer.batch_score_matrix:
    act += batch.users * batch.items
  per_config = (STATE_COPIES * state_bytes_per_config(spec)
                + ACTIVATION_COPIES * 4 * act + TERMS_PER_STEP * 4 * steps)
  shared = (SHARED_COPIES * (_nbytes(inputs) + _nbytes(scorer))
            + SHARED_COPIES * 4 * steps * rows)
  return float(shared + per_config * configs)


def _cache_key(spec, inputs, scorer, counts) -> dict:
  """What a plan's figures depend on (not the configs' values)."""
  dev = jax.local_devices()[0]
  shapes = lambda tree: [[list(np.shape(x)), str(x.dtype)]
                         for x in jax.tree.leaves(tree)]
  return dict(spec=spec.to_json_dict(), inputs=shapes(inputs),
              scorer=[type(scorer).__name__, shapes(scorer)],
              device=[dev.platform, getattr(dev, 'device_kind', str(dev))],
              jax=jax.__version__, counts=list(counts))


def cached_plan(workdir: str | None, spec: SweepSpec, hparams: SweepHparams,
                inputs: SweepInputs, scorer: Any,
                counts: tuple[int, int] = (2, 4)) -> tuple[MemoryPlan, bool]:
  """:func:`plan`, or its figures from ``workdir/memory_plan.json``.

  Returns ``(plan, from_cache)``. A new plan is written to the workdir
  (atomically, process 0) unless the workdir's ``sweep.json`` describes
  another spec (then the sweep is refused later and nothing is touched).
  The device limit is always read afresh.
  """
  key = _cache_key(spec, inputs, scorer, counts)
  path = os.path.join(workdir, PLAN_JSON) if workdir else None
  if path and os.path.isfile(path):
    try:
      with open(path) as f:
        saved = json.load(f)
    except (OSError, ValueError):
      saved = {}
    if saved.get('key') == key:
      fig = saved['figures']
      return MemoryPlan(fig['shared_bytes'], fig['per_config_bytes'],
                        device_limit(),
                        state_bytes_per_config=fig['state_bytes_per_config']
                        ), True
  p = plan(spec, hparams, inputs, scorer, counts=counts)
  if path and jax.process_index() == 0 and _same_spec_or_new(workdir, spec):
    files.atomic_write_json(path, dict(key=key, figures=dict(
        shared_bytes=p.shared_bytes, per_config_bytes=p.per_config_bytes,
        state_bytes_per_config=p.state_bytes_per_config)))
  return p, False


def _same_spec_or_new(workdir: str, spec: SweepSpec) -> bool:
  """True when ``workdir`` holds no sweep yet, or this spec's."""
  path = os.path.join(workdir, SWEEP_JSON)
  if not os.path.isfile(path):
    return True
  try:
    with open(path) as f:
      return loads(f.read())[0] == spec
  except (OSError, ValueError, TypeError):   # ConfigError is a ValueError
    return False


def check_mode(mode) -> None:
  """Refuses a ``config.plan_memory`` other than None, True or False."""
  if mode is not None and not isinstance(mode, bool):
    raise ConfigError(f'config.plan_memory={mode!r}: expected None '
                      '(automatic), True or False')


def sweep_plan(spec: SweepSpec, hparams: SweepHparams, inputs: SweepInputs,
               scorer: Any, configs: int, steps: int, *, mode: bool | None,
               workdir: str | None = None,
               log: Callable[[str], None] = print
               ) -> tuple[MemoryPlan | None, str | None]:
  """The memory plan a sweep of ``configs`` configs per device needs.

  Args:
    mode: ``config.plan_memory``: None (automatic), True or False (see the
      module docstring).
    workdir: where the plan is cached (None: not cached).
    log: gets the plan's line, or why it was skipped.

  Returns:
    ``(plan, line)``: the plan, or None where it was skipped (then nothing
    is chunked), and the line logged (None with ``mode=False``).

  Raises:
    ConfigError: ``mode`` is not None, True or False.
  """
  check_mode(mode)
  if mode is False:
    return None, None
  line = None
  if mode is None:
    limit = device_limit()
    mb = 1 / 2**20
    if limit is None:
      line = ('memory: the device reports no limit: plan skipped '
              '(--config.plan_memory=True prints XLA\'s estimate)')
    else:
      bound = upper_bound(spec, inputs, scorer, configs, steps)
      if bound <= OBVIOUS_FRACTION * limit:
        line = (f'memory: at most {bound * mb:,.0f} MB for {configs:,} '
                'configs by the shapes\' bound, device limit '
                f'{limit * mb:,.0f} MB: plan skipped '
                '(--config.plan_memory=True plans anyway)')
    if line is not None:
      log(line)
      return None, line
  p, from_cache = cached_plan(workdir, spec, hparams, inputs, scorer)
  line = p.describe(configs) + (f' (from {PLAN_JSON})' if from_cache else '')
  log(line)
  return p, line
