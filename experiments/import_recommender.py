"""``python -m experiments.import_recommender`` from a checkout: runs the launcher
monosem_jax/experiments/import_recommender.py (its ``--help`` is the launcher's)."""

from monosem_jax.experiments.import_recommender import run

if __name__ == '__main__':
  run()
