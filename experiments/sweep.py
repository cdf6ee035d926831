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
``--distributed``.
"""

import jax
from absl import app, flags, logging

from experiments.launch import (define_config_file, parse_flags,
                                refusals_in_one_line)
from monosem_jax.analysis.sweep_figures import plot_sweep_workdir
from monosem_jax.sweep.runner import run_sweep

_CONFIG = define_config_file(
    'config', None,
    'Sweep config file (experiments/configs/sweep.py:DATASET,MODEL).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output folder.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False,
    'Call jax.distributed.initialize() first (TPU pod slices, multi-host GPU): '
    'run the same command on every host.')
flags.mark_flags_as_required(['config', 'workdir'])


@refusals_in_one_line
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  run_sweep(_CONFIG.value, _WORKDIR.value)
  print(f'figure: {plot_sweep_workdir(_WORKDIR.value)}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
