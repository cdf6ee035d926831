"""``load_dataset``: the one public entry point to every dataset.

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
from typing import Any, Callable

from monosem_jax.data import atomic, lastfm, movielens, synthetic
from monosem_jax.data.dataset import DataError, Dataset
from monosem_jax.errors import refuse_unknown


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
