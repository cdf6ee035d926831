"""``python -m experiments.fetch`` from a checkout: runs the launcher
monosem_jax/experiments/fetch.py (its ``--help`` is the launcher's)."""

from monosem_jax.experiments.fetch import run

if __name__ == '__main__':
  run()
