"""MovieLens-1M and MovieLens-100K loaders (pure local parsing).

ML-1M (``::``-separated): ``ratings.dat`` ``UserID::MovieID::Rating::Timestamp``
(also gzip-compressed and/or with only ``UserID::MovieID``, e.g.
``ratings_implicit.dat.gz``), ``movies.dat`` (Latin-1, ``MovieID::Title::Genres``),
``users.dat`` (``UserID::Gender::Age::Occupation::Zip``).

ML-100K: ``u.data`` (tab-separated), ``u.item`` (``|``-separated, Latin-1, 19
genre flags), ``u.user``.

Items are the rated movies, in ascending movie id (3,706 on ML-1M); metadata
is looked up by movie id, so it always lines up with the item columns.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from monosem_jax.data import _io
from monosem_jax.data.dataset import DataError, Dataset

#: The 18 ML-1M genres, in the column order of docs/method.md#data.
ML1M_GENRES = ("Children's", 'Drama', 'Action', 'Comedy', 'Adventure',
               'Documentary', 'Animation', 'Crime', 'Fantasy', 'Film-Noir',
               'Mystery', 'Horror', 'Musical', 'Romance', 'Sci-Fi', 'Thriller',
               'War', 'Western')

#: The 19 ML-100K genre flags, in file order.
ML100K_GENRES = ('unknown', 'Action', 'Adventure', 'Animation', "Children's",
                 'Comedy', 'Crime', 'Documentary', 'Drama', 'Fantasy',
                 'Film-Noir', 'Horror', 'Musical', 'Mystery', 'Romance',
                 'Sci-Fi', 'Thriller', 'War', 'Western')

ML1M_RATINGS_FILES = ('ratings.dat', 'ratings.dat.gz', 'ratings_implicit.dat.gz',
                      'ratings_implicit.dat')

#: The heaviest ML-1M user, dropped by the paper (6,039 x 3,706).
PAPER_DROPPED_USER = 4169


def _years_from_titles(titles: pd.Series) -> np.ndarray:
  year = titles.str.extract(r'\((\d{4})\)\s*$', expand=False)
  return pd.to_numeric(year, errors='coerce').fillna(-1).astype(np.int32).to_numpy()


def _multi_hot(path: str, genres: pd.Series, vocabulary: tuple[str, ...],
               first_line: int) -> np.ndarray:
  lists = genres.str.split('|')
  flat = lists.explode()
  flat = flat[flat.notna() & (flat != '')]
  index = {g: k for k, g in enumerate(vocabulary)}
  codes = flat.map(index)
  if codes.isna().any():
    bad_row = int(codes.index[codes.isna().to_numpy()][0])
    raise DataError(f'{path}, line {bad_row + first_line}: unknown genre '
                    f'{_io.quote(flat[codes.isna()].iloc[0])}; known: '
                    f'{", ".join(vocabulary)}')
  out = np.zeros((len(genres), len(vocabulary)), bool)
  out[codes.index.to_numpy(), codes.to_numpy(np.int64)] = True
  return out


def load_ml1m(data_dir: str, *, ratings_file: str | None = None,
              paper_parity: bool = False, min_rating: float | None = None,
              with_users: bool = True) -> Dataset:
  """Loads MovieLens-1M.

  Args:
    data_dir: folder with ``movies.dat``, a ratings file and ``users.dat``.
    ratings_file: file name inside ``data_dir``; default: the first of
      ``ratings.dat``, ``ratings.dat.gz``, ``ratings_implicit.dat.gz``.
    paper_parity: drop user 4169, the heaviest user, as the paper did
      (6,039 users x 3,706 items).
    min_rating: keep only ratings >= this (needs the rating field). Default:
      every rating is a positive, as in the paper.
    with_users: read ``users.dat`` demographics when present.
  """
  rpath = (os.path.join(data_dir, ratings_file) if ratings_file
           else _io.find_file(data_dir, ML1M_RATINGS_FILES, 'ml-1m ratings'))
  names = ('UserID', 'MovieID', 'Rating', 'Timestamp')
  r = _io.parse_table(rpath, _io.read_text(rpath), '::', names,
                      int_cols=('UserID', 'MovieID', 'Rating', 'Timestamp'),
                      allowed_widths=(2, 4))
  if len(r) == 0:
    raise DataError(f'{rpath}: no ratings')
  ratings = r['Rating'].to_numpy(np.float32) if 'Rating' in r else None
  if min_rating is not None:
    if ratings is None:
      raise DataError(f'{rpath}: min_rating={min_rating} needs the Rating '
                      'field, but the file has only UserID::MovieID')
    r = r[ratings >= min_rating]
    ratings = ratings[ratings >= min_rating]
  rated_movies = np.unique(r['MovieID'].to_numpy())
  if paper_parity:
    # The paper keeps the items of the full data (3,706) after the drop.
    keep = r['UserID'].to_numpy() != PAPER_DROPPED_USER
    r, ratings = r[keep], (None if ratings is None else ratings[keep])
  if len(r) == 0:
    raise DataError(f'{rpath}: no ratings left after filtering')
  mpath = _io.find_file(data_dir, ('movies.dat',), 'ml-1m movies')
  m = _io.parse_table(mpath, _io.read_text(mpath, ('latin-1',)), '::',
                      ('MovieID', 'Title', 'Genres'), int_cols=('MovieID',))
  if m['MovieID'].duplicated().any():
    dup = int(np.flatnonzero(m['MovieID'].duplicated().to_numpy())[0])
    raise DataError(f'{mpath}, line {dup + 1}: duplicate MovieID '
                    f'{m["MovieID"].iloc[dup]}')
  genres = _multi_hot(mpath, m['Genres'], ML1M_GENRES, first_line=1)
  movie_ids = m['MovieID'].to_numpy()
  unknown = ~np.isin(r['MovieID'].to_numpy(), movie_ids)
  if unknown.any():
    row = int(np.flatnonzero(unknown)[0])
    raise DataError(f'{rpath}: MovieID {r["MovieID"].iloc[row]} is not in '
                    f'{mpath}')
  user_table = None
  upath = os.path.join(data_dir, 'users.dat')
  if with_users and os.path.isfile(upath):
    u = _io.parse_table(upath, _io.read_text(upath), '::',
                        ('UserID', 'Gender', 'Age', 'Occupation', 'Zip'),
                        int_cols=('UserID', 'Age', 'Occupation'))
    user_table = (u['UserID'].to_numpy(), {
        'gender': u['Gender'].to_numpy(object),
        'age': u['Age'].to_numpy(np.int64),
        'occupation': u['Occupation'].to_numpy(np.int64),
    })
  return Dataset.from_pairs(
      'ml-1m', r['UserID'].to_numpy(), r['MovieID'].to_numpy(), ratings,
      all_item_ids=rated_movies, concept_names=ML1M_GENRES, concept_table=(movie_ids, genres),
      year_table=(movie_ids, _years_from_titles(m['Title'])),
      title_table=(movie_ids, m['Title'].to_numpy(object)),
      user_table=user_table,
      extras={'ratings_file': os.path.basename(rpath),
              'n_catalogue_movies': len(m)})


def load_ml100k(data_dir: str, *, min_rating: float | None = None) -> Dataset:
  """Loads MovieLens-100K (``u.data``, ``u.item``, ``u.user``)."""
  rpath = _io.find_file(data_dir, ('u.data',), 'ml-100k ratings')
  r = _io.parse_table(rpath, _io.read_text(rpath), '\t',
                      ('UserID', 'MovieID', 'Rating', 'Timestamp'),
                      int_cols=('UserID', 'MovieID', 'Rating', 'Timestamp'))
  if min_rating is not None:
    r = r[r['Rating'] >= min_rating]
  if len(r) == 0:
    raise DataError(f'{rpath}: no ratings' +
                    (' left after min_rating' if min_rating is not None else ''))
  ipath = _io.find_file(data_dir, ('u.item',), 'ml-100k items')
  text = _io.read_text(ipath, ('latin-1',))
  n_meta = 5
  first = text.split('\n', 1)[0]
  n = len(first.split('|'))
  if n != n_meta + len(ML100K_GENRES):
    raise DataError(f'{ipath}, line 1: expected {len(ML100K_GENRES)} genre '
                    f'flags after {n_meta} fields, found {n - n_meta}')
  names = ('MovieID', 'Title', 'Release', 'VideoRelease', 'URL') + tuple(
      f'g{k}' for k in range(len(ML100K_GENRES)))
  m = _io.parse_table(ipath, text, '|', names,
                      int_cols=('MovieID',) + names[n_meta:])
  flags = m[list(names[n_meta:])].to_numpy()
  if not np.isin(flags, (0, 1)).all():
    row = int(np.flatnonzero(~np.isin(flags, (0, 1)).all(1))[0])
    raise DataError(f'{ipath}, line {row + 1}: genre flags must be 0 or 1')
  year = pd.to_numeric(m['Release'].str[-4:], errors='coerce')
  year = year.fillna(-1).astype(np.int32).to_numpy()
  title_year = _years_from_titles(m['Title'])
  year = np.where(year > 0, year, title_year)
  movie_ids = m['MovieID'].to_numpy()
  user_table = None
  upath = os.path.join(data_dir, 'u.user')
  if os.path.isfile(upath):
    u = _io.parse_table(upath, _io.read_text(upath), '|',
                        ('UserID', 'Age', 'Gender', 'Occupation', 'Zip'),
                        int_cols=('UserID', 'Age'))
    user_table = (u['UserID'].to_numpy(), {
        'age': u['Age'].to_numpy(np.int64),
        'gender': u['Gender'].to_numpy(object),
        'occupation': u['Occupation'].to_numpy(object)})
  return Dataset.from_pairs(
      'ml-100k', r['UserID'].to_numpy(), r['MovieID'].to_numpy(),
      r['Rating'].to_numpy(np.float32), concept_names=ML100K_GENRES,
      concept_table=(movie_ids, flags.astype(bool)),
      year_table=(movie_ids, year),
      title_table=(movie_ids, m['Title'].to_numpy(object)),
      user_table=user_table)
