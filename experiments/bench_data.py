"""Benchmark: load ML-1M, build the protocol, sample one epoch of negatives.

Run::

  MONOSEM_DATA_DIR=/path/to/data python -m experiments.bench_data

Prints one JSON object. Target (issue 2): load + protocol <= 10 s on a
2-core CPU. Without MONOSEM_DATA_DIR it measures the ML-1M-sized synthetic
world instead and says so.
"""

import json
import os
import platform
import time

import jax
import jax.numpy as jnp

from monosem_jax.data import load_dataset, make_split, sample_negatives
from monosem_jax.data.samplers import sample_negatives_unique
from monosem_jax.data import synthetic


def _time_epochs(sampler, tables, users, epochs: int = 3):
  """(first call incl. compile, best later epoch, last output) of a sampler."""
  fn = jax.jit(sampler)
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn(tables, jax.random.PRNGKey(0), users))
  first = time.perf_counter() - t0
  best = float('inf')
  for epoch in range(1, epochs + 1):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(tables, jax.random.PRNGKey(epoch), users))
    best = min(best, time.perf_counter() - t0)
  return first, best, out


def main():
  data_dir = os.environ.get('MONOSEM_DATA_DIR')
  t0 = time.perf_counter()
  if data_dir:
    ds = load_dataset('ml-1m', data_dir, paper_parity=True)
  else:
    ds = synthetic.make_world(synthetic.WorldConfig.ml1m_scale())
  t_load = time.perf_counter() - t0
  t0 = time.perf_counter()
  split = make_split(ds, alpha=1.0, seed=42)
  t_split = time.perf_counter() - t0
  tables = split.sampler_tables()
  users = jnp.asarray(split.train_users)
  t_first, t_plain, (_, ok) = _time_epochs(sample_negatives, tables, users)
  _, t_unique, (_, uok) = _time_epochs(sample_negatives_unique, tables,
                                      users)
  print(json.dumps({
      'dataset': ds.name if data_dir else 'synthetic (ML-1M scale; set MONOSEM_DATA_DIR for ML-1M)',
      'n_users': ds.n_users, 'n_items': ds.n_items,
      'n_interactions': ds.n_interactions, 'n_train': split.n_train,
      'load_s': round(t_load, 3), 'protocol_s': round(t_split, 3),
      'load_plus_protocol_s': round(t_load + t_split, 3),
      'target_load_plus_protocol_s': 10.0,
      'negatives_epoch_first_call_s': round(t_first, 3),
      'negatives_epoch_s': round(t_plain, 3),
      'negatives_valid_fraction': float(ok.mean()),
      'negatives_without_replacement_epoch_s': round(t_unique, 3),
      'negatives_without_replacement_invalid': int((~uok).sum()),
      'machine': f'{platform.machine()} {os.cpu_count()} cpus, {jax.devices()[0].platform}',
      'jax': jax.__version__,
  }, indent=1))


if __name__ == '__main__':
  main()
