"""``python -m experiments.analyze`` from a checkout: runs the launcher
monosem_jax/experiments/analyze.py (its ``--help`` is the launcher's)."""

from monosem_jax.experiments.analyze import run

if __name__ == '__main__':
  run()
