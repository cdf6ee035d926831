"""Trains a grid of SAEs on a frozen recommender, all configs at once.

  python -m experiments.sweep \\
      --config=experiments/configs/sweep.py:ml-1m,mf --workdir=runs/ml1m_mf_sweep

Writes WORKDIR/sweep.json (spec + per-config hyper-parameters),
WORKDIR/checkpoints/ (orbax, every ``checkpoint_every`` epochs; rerunning the
same command resumes), WORKDIR/sweep_results.csv and, drawn from it,
WORKDIR/sweep_results.png. Config i's SAE is
``monosem_jax.sweep.checkpoint.load_config(WORKDIR, i)``.

With several devices the configs are sharded over all of them. On a TPU pod
slice (or several GPU hosts) run the same command on every host with
``--distributed`` (JAX's own distributed runtime: ``jax.distributed.initialize``
finds the coordinator itself on Cloud TPU and under SLURM; elsewhere give it)::

  # Cloud TPU pod slice: on every worker
  gcloud compute tpus tpu-vm ssh NAME --worker=all --command="cd monosem-jax && \
      python -m experiments.sweep --distributed \
      --config=experiments/configs/sweep.py:ml-1m,ncf --workdir=/mnt/shared/sweep"
  # two GPU hosts (host 0 at 10.0.0.1): on host i, i = 0, 1
  python -m experiments.sweep --distributed --coordinator_address=10.0.0.1:1234 \
      --num_processes=2 --process_id=i \
      --config=experiments/configs/sweep.py:ml-1m,ncf --workdir=/shared/sweep

Every process trains its devices' block of configs; orbax writes one
checkpoint cooperatively (the workdir must be a folder every host mounts, e.g.
NFS or Filestore), and process 0 writes ``sweep.json``, the CSV and the
figure.
"""

import jax
from absl import app, flags, logging

from monosem_jax.experiments.launch import (console_script, define_config_file,
                                refusals_in_one_line)
from monosem_jax.analysis.sweep_figures import plot_sweep_workdir
from monosem_jax.sweep.runner import run_sweep

_CONFIG = define_config_file(
    'config', None,
    'Sweep config file (experiments/configs/sweep.py:DATASET,MODEL).',
    fields_of='experiments/configs/sweep.py:ml-1m,mf')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output folder.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False,
    'Call jax.distributed.initialize() first (TPU pod slices, multi-host GPU): '
    'run the same command on every host.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    'With --distributed: HOST:PORT of process 0 (default: found by JAX on '
    'Cloud TPU and SLURM).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'With --distributed: how many processes.')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'With --distributed: this process\'s index.')
flags.mark_flags_as_required(['config', 'workdir'])


@refusals_in_one_line
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  given = {k: f.value for k, f in (('coordinator_address', _COORDINATOR),
                                    ('num_processes', _NUM_PROCESSES),
                                    ('process_id', _PROCESS_ID))
           if f.value is not None}
  if given and not _DISTRIBUTED.value:
    raise app.UsageError(f'--{next(iter(given))} needs --distributed')
  if _DISTRIBUTED.value:
    jax.distributed.initialize(**given)
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  lead = jax.process_index() == 0
  run_sweep(_CONFIG.value, _WORKDIR.value,
            log=print if lead else lambda _: None)
  if lead:
    print(f'figure: {plot_sweep_workdir(_WORKDIR.value)}')


#: The console script ``monosem-sweep`` (pyproject.toml).
run = console_script(main)

if __name__ == '__main__':
  run()
