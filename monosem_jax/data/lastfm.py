"""Last.FM loaders: HetRec 2011 (``lastfm-2k``) and the authors' MSD variant.

Tags become item concepts (docs/method.md#data): tag strings are normalised
(lower-case, stripped, spaces and hyphens to ``_``), an exclusion list is
applied, assignments are counted per (artist, tag), and each artist keeps its
top-k tags (k = 4; ties broken by tag name). The multi-hot concept table is
over the union of kept tags, sorted by name.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd

from monosem_jax.data import _io
from monosem_jax.data.dataset import DataError, Dataset

#: Tags the paper drops before picking each artist's top tags (docs/method.md#data).
PAPER_EXCLUDED_TAGS = (
    'beautiful', 'indie', 'alternative', 'singer_songwriter', 'oldies',
    'alternative_rock', 'indie_pop', 'pop_rock', 'ambient', 'experimental',
    'electro', 'grunge', 'synthpop', 'rnb', 'seen_live', 'favorites', '00s',
    '90s', '80s', '70s', '60s')


def normalise_tags(tags: pd.Series) -> pd.Series:
  """Lower-case, strip, and turn runs of spaces/hyphens into ``_``."""
  return (tags.astype(str).str.strip().str.lower()
          .str.replace(r'[\s\-]+', '_', regex=True))


def top_k_tags(artist: np.ndarray, tag: np.ndarray, count: np.ndarray,
               k: int) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
  """Keeps each artist's k most counted tags (ties: tag name ascending).

  Args:
    artist: ``(m,)`` artist ids; tag: ``(m,)`` tag strings; count: ``(m,)``
      counts of each distinct (artist, tag) pair.
    k: tags kept per artist.

  Returns:
    ``(tag_names, artist_ids, multi_hot)``: the union of kept tags (sorted),
    the artists that have any, and their ``(n_artists, n_tags)`` bool table.
  """
  df = pd.DataFrame({'artist': artist, 'tag': tag, 'count': count})
  df = df.sort_values(['artist', 'count', 'tag'], ascending=[True, False, True],
                      kind='stable')
  df = df[df.groupby('artist', sort=False).cumcount() < k]
  names = tuple(sorted(df['tag'].unique()))
  a_ids, a_idx = np.unique(df['artist'].to_numpy(), return_inverse=True)
  t_idx = np.searchsorted(np.asarray(names, dtype=object).astype(str),
                          df['tag'].to_numpy().astype(str))
  table = np.zeros((len(a_ids), len(names)), bool)
  table[a_idx, t_idx] = True
  return names, a_ids, table


def _exclusion(exclude_tags: Sequence[str] | str | None) -> set[str]:
  if exclude_tags is None:
    return set()
  if isinstance(exclude_tags, str):
    if exclude_tags != 'paper':
      raise DataError(f"exclude_tags={exclude_tags!r}: expected 'paper', a "
                      'list of tags, or None')
    return set(PAPER_EXCLUDED_TAGS)
  return set(normalise_tags(pd.Series(list(exclude_tags), dtype=object)))


def load_lastfm_2k(data_dir: str, *, top_k: int = 4,
                   exclude_tags: Sequence[str] | str | None = 'paper') -> Dataset:
  """Loads HetRec 2011 Last.FM (``hetrec2011-lastfm-2k``).

  Every ``user_artists.dat`` row is a positive (the play count is kept as
  ``ratings``). Items are the artists listened to, in ascending artist id.

  Args:
    data_dir: folder with ``user_artists.dat``, ``artists.dat``, ``tags.dat``,
      ``user_taggedartists.dat``.
    top_k: tags kept per artist.
    exclude_tags: ``'paper'`` (the list above), a list of tags, or None.
  """
  if top_k < 1:
    raise DataError(f'lastfm-2k: top_k={top_k} must be >= 1')
  upath = _io.find_file(data_dir, ('user_artists.dat',), 'lastfm-2k')
  ua = _io.parse_table(upath, _io.read_text(upath), '\t',
                       ('userID', 'artistID', 'weight'),
                       int_cols=('userID', 'artistID', 'weight'), header=True)
  if len(ua) == 0:
    raise DataError(f'{upath}: no user-artist rows')
  apath = _io.find_file(data_dir, ('artists.dat',), 'lastfm-2k')
  artists = _io.parse_table(apath, _io.read_text(apath), '\t',
                            ('id', 'name', 'url', 'pictureURL'),
                            int_cols=('id',), header=True,
                            allowed_widths=(2, 3, 4))
  tpath = _io.find_file(data_dir, ('tags.dat',), 'lastfm-2k')
  tags = _io.parse_table(tpath, _io.read_text(tpath), '\t',
                         ('tagID', 'tagValue'), int_cols=('tagID',),
                         header=True)
  gpath = _io.find_file(data_dir, ('user_taggedartists.dat',), 'lastfm-2k')
  tagged = _io.parse_table(
      gpath, _io.read_text(gpath), '\t',
      ('userID', 'artistID', 'tagID', 'day', 'month', 'year'),
      int_cols=('userID', 'artistID', 'tagID', 'day', 'month', 'year'),
      header=True)
  unknown = ~tagged['tagID'].isin(tags['tagID'])
  if unknown.any():
    row = int(np.flatnonzero(unknown.to_numpy())[0])
    raise DataError(f'{gpath}, line {row + tagged.attrs["first_line"]}: tagID '
                    f'{tagged["tagID"].iloc[row]} is not in {tpath}')
  tag_value = pd.Series(normalise_tags(tags['tagValue']).to_numpy(),
                        index=tags['tagID'].to_numpy())
  t = pd.DataFrame({'artist': tagged['artistID'].to_numpy(),
                    'tag': tag_value.loc[tagged['tagID'].to_numpy()].to_numpy()})
  excluded = _exclusion(exclude_tags)
  t = t[~t['tag'].isin(excluded) & (t['tag'] != '')]
  counts = t.groupby(['artist', 'tag'], sort=True).size().reset_index(name='n')
  names, a_ids, table = top_k_tags(counts['artist'].to_numpy(),
                                   counts['tag'].to_numpy(),
                                   counts['n'].to_numpy(), top_k)
  return Dataset.from_pairs(
      'lastfm-2k', ua['userID'].to_numpy(), ua['artistID'].to_numpy(),
      ua['weight'].to_numpy(np.float32), concept_names=names,
      concept_table=(a_ids, table),
      title_table=(artists['id'].to_numpy(), artists['name'].to_numpy(object)),
      extras={'n_tags_total': len(tags), 'n_tag_assignments': len(tagged)})


MSD_TRACKS_FILE = 'Music Info.csv'
MSD_LISTENING_FILE = 'User Listening History.csv'


def _read_csv(path: str, required: Sequence[str]) -> pd.DataFrame:
  if not os.path.isfile(path):
    raise DataError(f'{path}: file not found')
  try:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
  except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
    raise DataError(f'{path}: cannot parse as CSV ({e})') from None
  missing = [c for c in required if c not in df.columns]
  if missing:
    raise DataError(f'{path}: missing column(s) {", ".join(missing)}; found '
                    f'{", ".join(map(str, df.columns))}')
  return df


def _int_column(path: str, df: pd.DataFrame, col: str) -> np.ndarray:
  """``df[col]`` as int64, every value an integer >= 0 in digits (spaces and
  tabs around it aside); else a DataError naming the line (vectorised)."""
  values = df[col]
  ok = _io.is_digits(values)
  if not ok.all():                      # strip only where needed
    values = values.str.strip(' \t')
    ok = _io.is_digits(values)
  if not ok.all():
    row = int(np.flatnonzero(~ok)[0])
    raise _io.int_field_error(path, row + 2, col, values.iloc[row])
  long = np.flatnonzero(values.str.len().to_numpy() > 18)
  for row in long:                      # at most a few: int64 overflow check
    _io._check_int(path, row + 2, col, values.iloc[row])
  return values.to_numpy().astype(np.int64)


def load_lastfm_msd(data_dir: str, *, min_artist_users: int = 50,
                    min_user_rows: int = 50, min_artist_users_final: int = 40,
                    top_k: int = 4,
                    exclude_tags: Sequence[str] | str | None = 'paper',
                    tracks_file: str = MSD_TRACKS_FILE,
                    listening_file: str = MSD_LISTENING_FILE) -> Dataset:
  """Loads the authors' Last.FM variant at artist level (docs/method.md#data).

  Files (Kaggle "Million Song Dataset + Spotify + Last.fm"): ``Music
  Info.csv`` (``track_id, name, artist, ..., tags, ..., year, ...``) and
  ``User Listening History.csv`` (``track_id, user_id, playcount``).

  Steps: join on track; keep artists with > ``min_artist_users`` distinct
  users; users with > ``min_user_rows`` remaining rows; artists with >
  ``min_artist_users_final`` distinct users; binarise. Tags are counted over
  the kept interaction rows (listening-weighted) and each artist keeps its
  top-k. An artist's year is the median of its tracks' years.
  """
  tpath = os.path.join(data_dir, tracks_file)
  lpath = os.path.join(data_dir, listening_file)
  tracks = _read_csv(tpath, ('track_id', 'artist', 'tags', 'year'))
  listen = _read_csv(lpath, ('track_id', 'user_id', 'playcount'))
  _int_column(lpath, listen, 'playcount')
  year = pd.to_numeric(tracks['year'], errors='coerce')
  rows = listen[['track_id', 'user_id']].merge(
      tracks[['track_id', 'artist']], on='track_id', how='inner')

  def artist_users(df):
    return df.groupby('artist')['user_id'].nunique()

  n = artist_users(rows)
  rows = rows[rows['artist'].isin(n.index[n > min_artist_users])]
  per_user = rows.groupby('user_id').size()
  rows = rows[rows['user_id'].isin(per_user.index[per_user > min_user_rows])]
  n = artist_users(rows)
  rows = rows[rows['artist'].isin(n.index[n > min_artist_users_final])]
  if len(rows) == 0:
    raise DataError(
        f'lastfm-msd ({data_dir}): no interactions left after the filters '
        f'(artists > {min_artist_users} users, users > {min_user_rows} rows, '
        f'artists > {min_artist_users_final} users)')
  # Listening-weighted tag counts: rows per track x that track's tags.
  per_track = rows.groupby('track_id').size().rename('rows').reset_index()
  tt = tracks[['track_id', 'artist', 'tags']].merge(per_track, on='track_id')
  tt = tt.assign(tag=tt['tags'].str.split(',')).explode('tag')
  tt = tt[tt['tag'].notna()]
  tt['tag'] = normalise_tags(tt['tag'])
  tt = tt[(tt['tag'] != '') & ~tt['tag'].isin(_exclusion(exclude_tags))]
  counts = tt.groupby(['artist', 'tag'])['rows'].sum().reset_index()
  names, a_ids, table = top_k_tags(counts['artist'].to_numpy(),
                                   counts['tag'].to_numpy(),
                                   counts['rows'].to_numpy(), top_k)
  yr = (tracks.assign(y=year)[year.notna() & (year > 0)]
        .groupby('artist')['y'].median().round().astype(np.int32))
  return Dataset.from_pairs(
      'lastfm-msd', rows['user_id'].to_numpy(), rows['artist'].to_numpy(),
      concept_names=names, concept_table=(a_ids.astype(str), table),
      year_table=(yr.index.to_numpy().astype(str), yr.to_numpy()),
      title_table=(np.unique(rows['artist'].to_numpy().astype(str)),
                   np.unique(rows['artist'].to_numpy().astype(str)).astype(object)))
