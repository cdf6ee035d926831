"""The main job: the whole pipeline on the embedded synthetic world.

Run (no downloads, no files needed)::

  python -m experiments.run --workdir=runs/quickstart

Stages: build the synthetic planted-concept world and its protocol split,
and print their statistics. Later stages (recommender, SAE sweep, analysis)
plug in here as they land. Use ``--config.world.n_users=...`` to resize.
"""

import json
import time

from absl import app, flags
from ml_collections import config_flags

from monosem_jax.data import make_split, synthetic

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'experiments/configs/quickstart.py',
    'Quickstart config (get_config in that file).')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/quickstart',
                               'Where outputs are written.')


def main(argv):
  del argv
  cfg = _CONFIG.value
  t0 = time.perf_counter()
  world = synthetic.make_world(synthetic.WorldConfig(**cfg.world))
  split = make_split(world, **cfg.protocol)
  stats = world.summary()
  stats['split'] = {
      'n_train_positives': split.n_train,
      'n_test_positives': len(split.test_users),
      'n_eval_users': len(split.eval_users),
      'n_sae_train_users': len(split.sae_train_users),
      'n_sae_test_users': len(split.sae_test_users),
  }
  stats['elapsed_s'] = round(time.perf_counter() - t0, 3)
  print(json.dumps(stats, indent=1))


if __name__ == '__main__':
  app.run(main)
