"""``python -m experiments.export_sae`` from a checkout: runs the launcher
monosem_jax/experiments/export_sae.py (its ``--help`` is the launcher's)."""

from monosem_jax.experiments.export_sae import run

if __name__ == '__main__':
  run()
