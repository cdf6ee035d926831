"""Hyper-parameter sweeps of SAEs: many configs trained together by vmap.

``spec``: SweepSpec (static) + SweepParams (per-config arrays), validation.
``engine``: init_sweep / run_epoch / train_sweep (the vmapped, scanned step).
``metrics``: evaluate_configs (per-config L0, dead fraction, FVE, score MSE).
``sharding``: config axis over all devices (Mesh + NamedSharding).
``checkpoint``: orbax checkpoints, resume, load_config(workdir, i).

See :mod:`monosem_jax.sweep.engine` for the usage pattern.
"""

from monosem_jax.sweep.engine import (SweepData, SweepState, epoch_indices,
                                      init_sweep, run_epoch, train_sweep)
from monosem_jax.sweep.metrics import evaluate_configs
from monosem_jax.sweep.spec import (SweepConfigError, SweepParams, SweepSpec,
                                    validate)

__all__ = ['SweepConfigError', 'SweepData', 'SweepParams', 'SweepSpec',
           'SweepState', 'epoch_indices', 'evaluate_configs', 'init_sweep',
           'run_epoch', 'train_sweep', 'validate']
