r"""Benchmark: how long a sweep checkpoint stalls training, synchronous vs background.

For C MF configs (d 20, dictionary 64) the sweep state and 18 epochs of
history are saved ``--saves`` times through :func:`monosem_jax.sweep.checkpoint.save`,
with a synchronous manager (the call returns when the step is on disk) and
with the background one the sweep uses (it returns once the arrays are on the
host; ``--work_s`` seconds of "training" stand between saves). Every save
hashes the state's leaves (SHA-256 of the host copy, verified on restore:
:mod:`monosem_jax.checkpoints`); the same saves are also timed with the
hashing stubbed out (``*_unhashed``), and ``hash_seconds`` times
:func:`~monosem_jax.checkpoints.state_sha256` alone. Prints one JSON
document: the blocking seconds of each save.

  python -m experiments.bench_checkpoint --configs=80,1024
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

from monosem_jax import checkpoints
from monosem_jax.sweep import checkpoint as ckpt
from monosem_jax.sweep.spec import SweepHparams, SweepSpec
from monosem_jax.sweep.state import init_sweep

TERMS = ('loss', 'emb', 'pred', 'l1', 'kl', 'n_clamped', 'l0', 'finite')


def _state(c: int):
  spec = SweepSpec(kind='mf', dim=20, max_dict_size=64)
  hp = SweepHparams.from_list([dict(seed=i) for i in range(c)], spec)
  return init_sweep(spec, hp, jax.random.PRNGKey(0))


def blocking_seconds(c: int, saves: int, background: bool,
                     work_s: float, hashing: bool = True) -> list[float]:
  """Seconds each of ``saves`` saves of a C-config sweep blocks the caller
  (``hashing=False``: with the leaf hashes stubbed out, for comparison)."""
  state = _state(c)
  hist = [{t: np.zeros(c, np.float32) for t in TERMS}] * 18
  out = []
  stub = (contextlib.nullcontext() if hashing else
          mock.patch.object(checkpoints, 'state_sha256', lambda s: []))
  with tempfile.TemporaryDirectory() as d, stub:
    manager = ckpt.make_manager(d, async_saves=background)
    for e in range(1, saves + 1):
      state = state.replace(epoch=jnp.asarray(e, jnp.int32))
      t0 = time.perf_counter()
      ckpt.save(manager, state, hist, wait=not background)
      out.append(time.perf_counter() - t0)
      time.sleep(work_s)
    manager.wait_until_finished()
    manager.close()
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--configs', default='80,1024')
  ap.add_argument('--saves', type=int, default=5)
  ap.add_argument('--work_s', type=float, default=0.5)
  a = ap.parse_args(argv)
  rows = []
  for c in (int(x) for x in a.configs.split(',')):
    state = _state(c)
    row = {'configs': c, 'state_mb': round(sum(
        x.nbytes for x in checkpoints.host_leaves(state)) / 2**20, 2)}
    for name, background in (('synchronous', False), ('background', True)):
      for hashing in (True, False):
        key = name if hashing else f'{name}_unhashed'
        row[key] = [round(t, 4) for t in blocking_seconds(
            c, a.saves, background, a.work_s, hashing)]
    hashes = []
    for _ in range(a.saves):
      t0 = time.perf_counter()
      checkpoints.state_sha256(state)
      hashes.append(round(time.perf_counter() - t0, 4))
    row['hash_seconds'] = hashes
    rows.append(row)
  out = dict(benchmark='sweep checkpoint blocking seconds per save',
             jax=jax.__version__, backend=jax.default_backend(), results=rows)
  print(json.dumps(out, indent=1))
  return out


if __name__ == '__main__':
  main()
