"""``python -m experiments.run`` from a checkout: runs the launcher
monosem_jax/experiments/run.py (its ``--help`` is the launcher's)."""

from monosem_jax.experiments.run import run

if __name__ == '__main__':
  run()
