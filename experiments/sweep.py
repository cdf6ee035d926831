"""``python -m experiments.sweep`` from a checkout: runs the launcher
monosem_jax/experiments/sweep.py (its ``--help`` is the launcher's)."""

from monosem_jax.experiments.sweep import run

if __name__ == '__main__':
  run()
