"""Hyper-parameter sweeps of SAEs: many configs trained together by vmap.

Layers, each importing only those above it:

``spec``       SweepSpec (static) + SweepHparams (per-config arrays), validation,
               the paper's defaults.
``state``      SweepInputs, SweepState (pytrees), init_sweep.
``batches``    how an epoch's batches are drawn.
``step``       the vmapped objective and Adam update; one jitted epoch.
``sharding``   the config axis over all devices (Mesh + NamedSharding).
``checkpoint`` orbax checkpoints, sweep.json, load_config(workdir, i).
``driver``     train_sweep: epochs, checkpoints, resume.
``metrics``    evaluate_configs (per-config L0, dead fraction, FVE, score MSE).
``runner``     run_sweep: recommender workdir -> sweep_results.csv.

See :mod:`monosem_jax.sweep.driver` for the usage pattern.
"""

from monosem_jax.sweep.driver import run_epoch, train_sweep
from monosem_jax.sweep.metrics import evaluate_configs
from monosem_jax.sweep.spec import (SweepConfigError, SweepHparams, SweepSpec,
                                    validate)
from monosem_jax.sweep.state import SweepInputs, SweepState, init_sweep

__all__ = ['SweepConfigError', 'SweepHparams', 'SweepInputs', 'SweepSpec',
           'SweepState', 'evaluate_configs', 'init_sweep', 'run_epoch',
           'train_sweep', 'validate']
