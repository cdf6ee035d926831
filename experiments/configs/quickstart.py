"""Quickstart: the whole pipeline on the embedded synthetic world.

Run (no downloads, no files)::

  python -m experiments.run --workdir=runs/quickstart

Stages: synthetic planted-concept world -> MF recommender (trained, frozen)
-> a 20-config SAE sweep (lambda_pred x dictionary size, vmapped) ->
``sweep_results.csv`` and ``sweep_results.png``. Expected runtime: well under
a minute on 2 CPU cores. ``get_config('ncf')`` uses an NCF recommender;
``get_config('ml1m')`` an ML-1M-sized synthetic world (a few minutes).
"""

import ml_collections

from experiments.configs import recommender, sweep


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = set(a for a in arg.split(',') if a)
  unknown = args - {'mf', 'ncf', 'ml1m'}
  if unknown:
    raise ValueError(f'quickstart config: unknown arg(s) {sorted(unknown)}; '
                     "use any of 'mf', 'ncf', 'ml1m' (comma-separated)")
  model = 'ncf' if 'ncf' in args else 'mf'
  c = ml_collections.ConfigDict()
  c.recommender = recommender.get_config(f'synthetic,{model}')
  world = c.recommender.dataset.options
  world.n_users, world.n_items, world.seed = 1000, 600, 0
  if 'ml1m' in args:
    world.n_users, world.n_items = 6040, 3706
    world.n_concepts, world.mean_positives = 18, 120.0
  c.sweep = sweep.get_config(f'synthetic,{model}')
  c.sweep.epochs = 18
  c.sweep.spec.batch_users = 64
  c.sweep.spec.batch_items = 256
  c.sweep.spec.batch_pairs = 256
  if model == 'ncf':
    c.sweep.spec.steps_per_epoch = 20
  c.sweep.grid = sweep.grid_config(lambda_pred=(0.0, 1.0, 2.0, 5.0, 10.0),
                                   dict_size=(16, 22, 32, 48))
  return c
