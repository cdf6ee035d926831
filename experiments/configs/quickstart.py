"""Quickstart: the embedded synthetic world end to end on a laptop CPU.

Run::

  python -m experiments.run --config=experiments/configs/quickstart.py

Expected runtime: a few seconds on 2 CPU cores. ``get_config('ml1m')`` gives
an ML-1M-sized synthetic world instead.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.world = ml_collections.ConfigDict(dict(
      n_users=1000, n_items=600, n_concepts=8, seed=0))
  if arg == 'ml1m':
    c.world.update(n_users=6040, n_items=3706, n_concepts=18,
                   mean_positives=120.0)
  elif arg:
    raise ValueError(f"quickstart config: unknown arg {arg!r}; use '' or 'ml1m'")
  c.protocol = ml_collections.ConfigDict(dict(
      n_holdout=5, n_test_negatives=5, sae_test_fraction=0.2, alpha=1.0,
      seed=42))
  return c
