"""Hyper-parameter sweeps of SAEs: many configs trained together by vmap.

Layers, each importing only those above it:

``spec``       SweepSpec (static) + SweepHparams (per-config arrays), validation,
               the paper's defaults.
``state``      SweepInputs, SweepState (pytrees), init_sweep.
``batches``    how an epoch's batches are drawn.
``step``       the vmapped objective and Adam update; the one jitted block
               program (run_epoch).
``memory``     the memory plan (which block size fits the device).
``sharding``   Placement: one device, blocks of configs, each device's block
               of a mesh (multi-process too), chosen once.
``metrics``    evaluate_configs (per-config L0, dead fraction, FVE, score MSE).
``checkpoint`` orbax checkpoints, sweep.json, load_config(workdir, i).
``workdir``    SweepWorkdir: a sweep folder's file names, lock, provenance,
               recorded recommender and results table.
``driver``     make_sweep -> Sweep (init / epoch / evaluate); train_sweep:
               epochs, checkpoints, resume, typed hooks (EpochStats),
               SweepResult.
``runner``     run_sweep: recommender workdir -> sweep_results.csv.

See :mod:`monosem_jax.sweep.driver` for the usage pattern.
"""

from monosem_jax.sweep.driver import (Checkpointing, EpochStats, Evaluation,
                                      Sweep, SweepResult, make_sweep,
                                      train_sweep)
from monosem_jax.sweep.metrics import evaluate_configs
from monosem_jax.sweep.sharding import Placement
from monosem_jax.sweep.spec import (SweepConfigError, SweepHparams, SweepSpec,
                                    validate)
from monosem_jax.sweep.state import SweepInputs, SweepState, init_sweep

__all__ = ['Checkpointing', 'EpochStats', 'Evaluation', 'Placement', 'Sweep',
           'SweepConfigError', 'SweepHparams', 'SweepInputs', 'SweepResult',
           'SweepSpec', 'SweepState', 'evaluate_configs', 'init_sweep',
           'make_sweep', 'train_sweep', 'validate']
