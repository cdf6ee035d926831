"""Recommender training configs: ``get_config('DATASET,MODEL')``.

DATASET: synthetic | ml-1m | ml-100k | lastfm-2k | atomic; MODEL: mf | ncf.

Command (ML-1M MF, the paper's settings; about 20 s on a 2-core CPU):

  python -m experiments.train_recommender \\
      --config=experiments/configs/recommender.py:ml-1m,mf --workdir=runs/ml1m_mf

Expected runtimes on a 2-core CPU (training + per-epoch evaluation):

  synthetic,mf   ~15 s      synthetic,ncf  ~30 s
  ml-1m,mf       ~20 s      ml-1m,ncf      ~2-3 min (30 epochs)
  lastfm-2k,mf   ~40 s      lastfm-2k,ncf  ~60 s

Override anything with ``--config.train.epochs=30`` etc. Real datasets read
``dataset.data_dir`` (default ``$MONOSEM_DATA_DIR``, the folder holding
``ml-1m/`` / ``lastfm-2k/``, or the dataset folder itself).

``atomic`` is your own data as RecBole atomic files
(``monosem_jax/data/atomic.py``): ``--config.dataset.data_dir=DIR`` (the
folder ``NAME/`` holding ``NAME.inter``, optional ``NAME.item`` /
``NAME.user``) and ``--config.dataset.options.FIELD=`` for ``atomic_name``,
``concept_field``, ``title_field``, ``year_field``, ``min_rating``,
``user_field``, ``item_field``, ``rating_field`` (None: the loader's
default). It trains with the ML-1M settings::

  python -m experiments.train_recommender \\
      --config=experiments/configs/recommender.py:atomic,mf \\
      --config.dataset.data_dir=DIR --config.dataset.options.concept_field=class \\
      --workdir=runs/mydata_mf

Defaults (docs/method.md#recommenders): ML-1M MF K=20, plain SGD (summed batch gradients),
lr 0.05, L2 0.01 per occurrence, 10 epochs, batch 256; NCF d=20, MLP
[64, 32, 16], (sparse) Adam, 30 epochs, lr 5e-3 (the paper's 0.05 collapses)
on ML-1M and 1e-3 on Last.FM. Last.FM (HetRec 2011): K = d = 100, alpha = 2, artists
with >= 5 listeners and users with >= 10 positives (repeated until stable).
"""

from __future__ import annotations

import os

import ml_collections
from ml_collections import config_dict

from monosem_jax.experiments.configs import parse_dataset_model
from monosem_jax.recommenders import kinds

DATASETS = ('synthetic', 'ml-1m', 'ml-100k', 'lastfm-2k', 'atomic')
#: The options of the 'atomic' loader (monosem_jax/data/atomic.py), each
#: present so that ``--config.dataset.options.FIELD=`` can set it.
ATOMIC_OPTIONS = {'atomic_name': str, 'concept_field': str, 'title_field': str,
                  'year_field': str, 'min_rating': float, 'user_field': str,
                  'item_field': str, 'rating_field': str}
MODELS = kinds.NAMES
_ATOMIC = 'atomic (monosem_jax/data/atomic.py):'
#: One line per field, listed with its default by the launchers' ``--help``
#: (monosem_jax/experiments/launch.py config_fields_help).
FIELD_HELP = {
    'dataset.name': 'synthetic | ml-1m | ml-100k | lastfm-2k | atomic',
    'dataset.data_dir': 'the folder holding the dataset folder, or the '
                        'dataset folder (default: $MONOSEM_DATA_DIR)',
    'dataset.options': "the loader's keyword options (none for this "
                       'dataset)',
    'dataset.options.n_users': 'synthetic world: users',
    'dataset.options.n_items': 'synthetic world: items',
    'dataset.options.seed': 'synthetic world: its seed',
    'dataset.options.n_concepts': 'synthetic world: planted concepts',
    'dataset.options.mean_positives': 'synthetic world: mean positives per '
                                      'user',
    'dataset.options.paper_parity': 'ML-1M: drop user 4169 as the paper did '
                                    '(6,039 users)',
    'dataset.options.atomic_name': f"{_ATOMIC} the files' stem NAME (None: "
                                   "the folder's name)",
    'dataset.options.concept_field': f'{_ATOMIC} the item field whose tokens '
                                     'are the concepts (None: the only '
                                     'token_seq field besides the title)',
    'dataset.options.title_field': f"{_ATOMIC} the item field of titles "
                                   "(None: 'title')",
    'dataset.options.year_field': f'{_ATOMIC} the item field of release '
                                  "years (None: 'year' or 'release_year')",
    'dataset.options.min_rating': f'{_ATOMIC} positives are the ratings >= '
                                  'this (None: every interaction)',
    'dataset.options.user_field': f"{_ATOMIC} user id field (None: 'user_id')",
    'dataset.options.item_field': f"{_ATOMIC} item id field (None: 'item_id')",
    'dataset.options.rating_field': f'{_ATOMIC} rating field (None: '
                                    "'rating')",
    'dataset.min_item_users': 'drop items with fewer users (0: none; with '
                              'min_user_positives, repeated until stable)',
    'dataset.min_user_positives': 'drop users with fewer positives (0: none)',
    'split.n_holdout': 'held-out test positives per user',
    'split.n_test_negatives': 'test negatives per user (never training '
                              'negatives)',
    'split.sae_test_fraction': 'fraction of users held out of SAE training',
    'split.alpha': 'temperature of the negative sampler on popularity share '
                   '(0: uniform)',
    'split.seed': 'seed of the split',
    'split.too_few': 'users with too few positives for a hold-out: '
                     'train_only | drop | error',
    'model.kind': f'{" | ".join(MODELS)} (the config argument chooses it)',
    'model.dim': 'embedding width (K for MF, d for NCF)',
    'model.hidden': 'NCF: MLP widths',
    'model.use_bias': 'NCF: user and item biases inside the logit',
    'train.seed': 'seed of initialisation, negatives and shuffling',
    'train.batch_size': 'samples (positives + negatives) per step',
    'train.shuffle': 'epoch shuffle: feistel | sort',
    'train.unique_negatives': "a user's negatives of an epoch are distinct "
                              '(False: independent draws)',
    'train.optimizer': 'sgd | adam | sparse_adam',
    'train.learning_rate': 'step size',
    'train.reg': 'L2 weight, per occurrence on the rows a batch touches',
    'train.reduction': "sum | mean of a batch's per-sample losses",
    'train.epochs': 'training epochs (a rerun with more resumes)',
    'eval.ks': 'list lengths of HR / Recall / NDCG',
    'eval.ties': 'tied scores: index (stable order) | pessimistic',
    'eval.every': 'epochs between evaluations while training (0: none; the '
                  'final one always runs)',
    'eval.block_size': 'users per evaluation block',
    'checkpoint.every': 'epochs between orbax checkpoints',
    'checkpoint.max_to_keep': 'checkpoints kept',
}


def _dataset(name: str) -> ml_collections.ConfigDict:
  d = ml_collections.ConfigDict()
  d.name = name
  d.data_dir = os.environ.get('MONOSEM_DATA_DIR', '') if name != 'synthetic' else ''
  d.options = ml_collections.ConfigDict()
  d.min_item_users = 0
  d.min_user_positives = 0
  if name == 'synthetic':
    d.options.n_users = 1000
    d.options.n_items = 600
    d.options.seed = 0
  elif name == 'ml-1m':
    d.options.paper_parity = True  # drop user 4169: 6,039 x 3,706
  elif name == 'lastfm-2k':
    d.min_item_users = 5
    d.min_user_positives = 10
  elif name == 'atomic':
    for option, kind in ATOMIC_OPTIONS.items():
      d.options[option] = config_dict.placeholder(kind)
  return d


def get_config(arg: str = 'ml-1m,mf') -> ml_collections.ConfigDict:
  """``arg`` = ``'DATASET,MODEL'``."""
  dataset, model = parse_dataset_model(arg, DATASETS, MODELS)
  lastfm = dataset.startswith('lastfm')

  c = ml_collections.ConfigDict()
  c.dataset = _dataset(dataset)

  c.split = ml_collections.ConfigDict()
  c.split.n_holdout = 5
  c.split.n_test_negatives = 5
  c.split.sae_test_fraction = 0.2
  c.split.alpha = 2.0 if lastfm else 1.0
  c.split.seed = 42
  c.split.too_few = 'train_only'

  c.model = ml_collections.ConfigDict()
  c.model.kind = model
  c.model.dim = 100 if lastfm else 20
  c.model.hidden = (64, 32, 16)
  c.model.use_bias = False

  c.train = ml_collections.ConfigDict()
  c.train.seed = 0
  c.train.batch_size = 256
  c.train.shuffle = 'feistel'
  c.train.unique_negatives = True  # docs/method.md#protocol: without replacement per user
  # optimizer, learning_rate, reg, reduction, epochs: the paper's for this
  # kind and dataset (monosem_jax/recommenders/kinds.py, Kind.training).
  kind = kinds.get(model)
  c.train.update(kind.paper_training(dataset))
  if dataset == 'synthetic':
    # 30 epochs: at 5 the model was under-trained and barely beat popularity
    # (NDCG@10 0.160 vs 0.140); at 30, 0.293 (MF) / 0.308 (NCF), 2.1-2.2x.
    c.model.dim = 16
    c.train.epochs = 30

  c.eval = ml_collections.ConfigDict()
  c.eval.ks = (10, 20, 50)
  c.eval.ties = 'index'
  c.eval.every = 1
  c.eval.block_size = kind.eval_block_size

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 1
  c.checkpoint.max_to_keep = 2
  return c
