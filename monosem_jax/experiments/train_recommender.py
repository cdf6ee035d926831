r"""Trains a recommender (MF or NCF) and freezes it for the SAE stage.

  python -m experiments.train_recommender \
      --config=experiments/configs/recommender.py:ml-1m,mf --workdir=runs/ml1m_mf

Writes WORKDIR/checkpoints (orbax, resumable per epoch), WORKDIR/metrics.json
and WORKDIR/frozen (RecommenderArtifact). Re-running with the same workdir
resumes from the last checkpoint. The logic lives in
monosem_jax.recommenders.train.run.
"""

from __future__ import annotations

from absl import flags, logging

from monosem_jax.experiments.launch import (console_script, define_config_file,
                                refusals_in_one_line)
from monosem_jax.recommenders import train

_CONFIG = define_config_file(
    'config', 'experiments/configs/recommender.py:ml-1m,mf',
    'Training config file (DATASET,MODEL argument).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output folder.',
                               required=True)


@refusals_in_one_line
def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO

  def log(msg):
    print(msg, flush=True)

  train.run(_CONFIG.value, _WORKDIR.value, log=log)


#: The console script ``monosem-train`` (pyproject.toml).
run = console_script(main)

if __name__ == '__main__':
  run()
