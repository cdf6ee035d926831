"""``python -m experiments.train_recommender`` from a checkout: runs the launcher
monosem_jax/experiments/train_recommender.py (its ``--help`` is the launcher's)."""

from monosem_jax.experiments.train_recommender import run

if __name__ == '__main__':
  run()
