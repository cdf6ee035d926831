"""``load_dataset``: the one public entry point to every dataset; ``load_data``:
the ``dataset`` and ``split`` sections of a config to ``(dataset, split)``.

Example:
  >>> ds = load_dataset('synthetic', n_users=200, n_items=100)
  >>> ds.name, ds.n_users
  ('synthetic', 200)

Real datasets read local files only (nothing is downloaded here;
``python -m experiments.fetch`` downloads them on request):

  >>> ds = load_dataset('ml-1m', '/data/ml-1m')            # doctest: +SKIP
  >>> ds = load_dataset('lastfm-2k', '/data/lastfm-2k')    # doctest: +SKIP
  >>> ds = load_dataset('atomic', '/data/mymovies',          # doctest: +SKIP
  ...                   concept_field='class')  # RecBole atomic files
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Mapping

import numpy as np

from monosem_jax.data import atomic, lastfm, movielens, protocol, synthetic
from monosem_jax.data.dataset import DataError, Dataset
from monosem_jax.errors import ConfigError, refuse_unknown


def _load_synthetic(data_dir: str | None = None, **options) -> Dataset:
  del data_dir
  refuse_unknown(options, sorted(synthetic.WorldConfig.__dataclass_fields__),
                 "load_dataset('synthetic')", what='option', error=DataError)
  return synthetic.make_world(synthetic.WorldConfig(**options))


#: name -> (loader, default sub-folder of a data root).
DATASETS: dict[str, tuple[Callable[..., Dataset], str | None]] = {
    'ml-1m': (movielens.load_ml1m, 'ml-1m'),
    'ml-100k': (movielens.load_ml100k, 'ml-100k'),
    'lastfm-2k': (lastfm.load_lastfm_2k, 'lastfm-2k'),
    'lastfm-msd': (lastfm.load_lastfm_msd, 'lastfm-msd'),
    'synthetic': (_load_synthetic, None),
    'atomic': (atomic.load_atomic, None),
}


#: name -> the files each label of :data:`~monosem_jax.recommenders.artifact.
#: LABELS` is read from (to name them when they changed since training).
LABEL_FILES: dict[str, dict[str, tuple[str, ...]]] = {
    'ml-1m': dict(item_concepts=('movies.dat',), concept_names=('movies.dat',),
                  item_titles=('movies.dat',), item_year=('movies.dat',),
                  user_features=('users.dat',)),
    'ml-100k': dict(item_concepts=('u.item',), concept_names=('u.item',),
                    item_titles=('u.item',), item_year=('u.item',),
                    user_features=('u.user',)),
    'lastfm-2k': dict(item_concepts=('tags.dat', 'user_taggedartists.dat'),
                      concept_names=('tags.dat', 'user_taggedartists.dat'),
                      item_titles=('artists.dat',)),
    'lastfm-msd': dict(item_concepts=('Music Info.csv',),
                       concept_names=('Music Info.csv',),
                       item_titles=('Music Info.csv',),
                       item_year=('Music Info.csv',)),
}


def resolve_data_dir(name: str, data_dir: str | os.PathLike | None) -> str:
  """The folder holding ``name``'s files.

  ``data_dir`` may be the dataset folder itself or a root that contains it
  under its usual name (e.g. ``$MONOSEM_DATA_DIR`` with ``ml-1m/`` inside).
  When None, ``$MONOSEM_DATA_DIR`` is used.
  """
  if data_dir is None:
    data_dir = os.environ.get('MONOSEM_DATA_DIR')
    if not data_dir:
      raise DataError(f'load_dataset({name!r}): no data_dir given and '
                      'MONOSEM_DATA_DIR is not set')
  data_dir = os.fspath(data_dir)
  if not os.path.isdir(data_dir):
    raise DataError(f'load_dataset({name!r}): data_dir {data_dir!r} does not '
                    'exist or is not a folder')
  sub = DATASETS[name][1]
  if sub and os.path.isdir(os.path.join(data_dir, sub)):
    return os.path.join(data_dir, sub)
  return data_dir


def load_dataset(name: str, data_dir: str | os.PathLike | None = None,
                 **options: Any) -> Dataset:
  """Loads a dataset by name as published (no filtering unless asked).

  Args:
    name: one of :data:`DATASETS` (``'ml-1m'``, ``'ml-100k'``,
      ``'lastfm-2k'``, ``'lastfm-msd'``, ``'synthetic'``, ``'atomic'``: your
      own RecBole atomic files, :mod:`monosem_jax.data.atomic`).
    data_dir: the dataset's folder, or a root containing it; default
      ``$MONOSEM_DATA_DIR``. Ignored for ``'synthetic'``.
    **options: loader options (e.g. ``paper_parity=True`` for ML-1M,
      ``top_k=4`` for Last.FM, ``n_users=`` for the synthetic world).

  Raises:
    DataError: unknown name or option, missing folder or file, malformed file
      (the message names the file and line), or an empty result.
  """
  if name not in DATASETS:
    raise DataError(f'unknown dataset {name!r}; known: {", ".join(DATASETS)}')
  loader, _ = DATASETS[name]
  if name == 'synthetic':
    return loader(**options)
  params = inspect.signature(loader).parameters
  refuse_unknown(options, [k for k in params if k != 'data_dir'],
                 f'load_dataset({name!r})', what='option', error=DataError)
  ds = loader(resolve_data_dir(name, data_dir), **options)
  if ds.n_interactions == 0:
    raise DataError(f'load_dataset({name!r}): the dataset is empty')
  return ds


# ----------------------------------------------------------------------------
# From the ``dataset`` and ``split`` sections of a config.

#: Keys of a config's ``dataset`` section (``exclude_users`` is optional).
DATASET_KEYS = ('name', 'data_dir', 'options', 'min_item_users',
                'min_user_positives', 'exclude_users')


def load_raw_dataset(dataset_cfg: Mapping[str, Any]):
  """The dataset of a ``dataset`` config section as its loader returns it
  (before :func:`select_dataset`); refuses unknown keys."""
  d = dict(dataset_cfg)
  refuse_unknown(d, DATASET_KEYS, 'dataset config')
  options = dict(d.get('options') or {})
  return load_dataset(d['name'], d.get('data_dir') or None, **options)


def select_dataset(dataset, dataset_cfg: Mapping[str, Any]):
  """Applies a ``dataset`` section's selections to a loaded dataset: first
  ``exclude_users`` (raw user ids, e.g. the users an imported recommender
  has no embedding for), then the minimum-count filters."""
  excluded = list(dataset_cfg.get('exclude_users') or ())
  if excluded:
    ids = np.asarray(dataset.user_ids).astype(str)
    wanted = np.asarray(excluded).astype(str)
    unknown = wanted[~np.isin(wanted, ids)]
    if len(unknown):
      raise ConfigError(
          f'config.dataset.exclude_users: {len(unknown)} id(s) are not users '
          f'of {dataset.name} (e.g. {", ".join(unknown[:3])})')
    keep = ~np.isin(ids, wanted)
    dataset = dataset.select(keep[dataset.users])
  min_item_users = int(dataset_cfg.get('min_item_users', 0) or 0)
  min_user_positives = int(dataset_cfg.get('min_user_positives', 0) or 0)
  if min_item_users or min_user_positives:
    dataset = protocol.filter_interactions(
        dataset, min_item_users=min_item_users,
        min_user_positives=min_user_positives)
  return dataset


def load_data(dataset_cfg: Mapping[str, Any], split_cfg: Mapping[str, Any]):
  """Loads, filters and splits a dataset. Returns ``(dataset, split)``.

  Args:
    dataset_cfg: ``name``, ``data_dir`` (None: ``$MONOSEM_DATA_DIR``),
      ``options`` (loader keywords), ``min_item_users``,
      ``min_user_positives`` and, optionally, ``exclude_users``.
    split_cfg: keywords of :func:`monosem_jax.data.protocol.make_split`.
  """
  ds = select_dataset(load_raw_dataset(dataset_cfg), dataset_cfg)
  split = protocol.make_split(ds, **dict(split_cfg))
  return ds, split
