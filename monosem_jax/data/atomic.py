"""Your own interactions as RecBole atomic files (dataset ``'atomic'``).

A folder ``DIR/`` named after the dataset (``NAME``, or ``atomic_name``)
holds, in RecBole's atomic-file convention:

``NAME.inter`` (required)
  one interaction per line; fields ``user_id:token`` and ``item_id:token``,
  optionally ``rating:float`` (and ``timestamp:float``, which the protocol's
  random hold-out does not use). Further fields are allowed and ignored.
``NAME.item`` (optional)
  ``item_id:token`` and any ``token`` / ``token_seq`` / ``float`` fields:
  the concept labels (a multi-valued field), the title, the release year.
``NAME.user`` (optional)
  ``user_id:token`` and ``token`` / ``float`` features.

Line 1 of each file is a header of tab-separated ``field:type`` names, the
types being RecBole's ``token``, ``token_seq`` (space-separated tokens),
``float`` and ``float_seq``; every later line is a tab-separated record.
Ids are tokens: they stay strings (``Dataset.user_ids`` / ``item_ids``).

Rules (docs/method.md#data):

* Implicit feedback as for the built-in data: every interaction is a
  positive, or only those with ``rating >= min_rating``; a repeated (user,
  item) pair is one positive (when any of its interactions passes).
* Concepts come from the item field ``concept_field``: its distinct tokens,
  sorted, are the concept columns. Default: the only ``token_seq`` field
  other than the title; several candidates are refused, naming them.
* Titles come from ``title_field``; default: the one field named ``title``
  or ``name`` (or ending in ``_title`` / ``_name``, e.g. RecBole's
  ``movie_title``) if there is exactly one, else the item id. Years come
  from ``year_field``; default: a field named ``year`` or ``release_year``.
  ``''`` switches any of the three off.
* Every id of ``NAME.inter`` must be in ``NAME.item`` and ``NAME.user``
  when those exist.

Bad input raises :class:`~monosem_jax.data.dataset.DataError` in one line
naming the file, line and field. Parsing is pandas' C parser; lines are
scanned in Python only to name the bad one.

Example (``tests/fixtures/atomic/tinymovies``, written by
``tests/fixtures/make_fixtures.py``)::

  ds = load_dataset('atomic', 'tests/fixtures/atomic/tinymovies')
  ds.concept_names     # the tokens of tinymovies.item's class field
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings

import numpy as np
import pandas as pd

from monosem_jax.data import _io
from monosem_jax.data.dataset import DataError, Dataset

#: RecBole's field types.
FIELD_TYPES = ('token', 'token_seq', 'float', 'float_seq')
#: Separators that a header written with the wrong one is tried against.
_OTHER_SEPARATORS = {',': 'commas', ';': 'semicolons', '|': "'|'",
                     ' ': 'spaces'}
_TITLE_NAME = re.compile(r'^(.*_)?(title|name)$')
_YEAR_NAMES = ('year', 'release_year')


@dataclasses.dataclass(frozen=True, eq=False)
class AtomicFile:
  """One parsed atomic file.

  Attributes:
    path: the file, for messages.
    types: field name -> RecBole type, in header order.
    table: ``(n_rows, n_fields)`` DataFrame of strings, one row per record.
    text: the decoded file (to name the line of a bad row, error path only).
  """
  path: str
  types: dict
  table: pd.DataFrame
  text: str

  def line_of(self, row: int) -> int:
    """The file line of record ``row`` (blank lines are not records)."""
    lines = self.text.split('\n')
    seen = -1
    for lineno, line in enumerate(lines[1:], start=2):
      if _is_record(line):
        seen += 1
        if seen == row:
          return lineno
    return len(lines)

  def field(self, name: str, types: tuple[str, ...], what: str) -> pd.Series:
    """Column ``name``, refused unless it exists with one of ``types``."""
    if name not in self.types:
      raise DataError(
          f'{self.path}, line 1: no {what} field {name!r}:{"|".join(types)} '
          f'in the header (fields: {_fields(self.types)})')
    if self.types[name] not in types:
      raise DataError(
          f'{self.path}, line 1: field {name} is :{self.types[name]}; the '
          f'{what} must be :{" or :".join(types)}')
    return self.table[name]

  def tokens(self, name: str, what: str) -> np.ndarray:
    """A ``token`` field as a str array; empty values are refused."""
    col = self.field(name, ('token',), what)
    empty = (col == '').to_numpy()
    if empty.any():
      row = int(np.flatnonzero(empty)[0])
      raise DataError(f'{self.path}, line {self.line_of(row)}: field {name} '
                      f'is empty ({_count(empty.sum(), "such line")})')
    return col.to_numpy(str)

  def floats(self, name: str, what: str, allow_empty: bool = False
             ) -> np.ndarray:
    """A numeric field as float64 (NaN for empty values if allowed)."""
    col = self.table[name]
    values = pd.to_numeric(col, errors='coerce').to_numpy(np.float64)
    empty = (col == '').to_numpy()
    bad = ~np.isfinite(values) & ~(empty & allow_empty)
    if bad.any():
      row = int(np.flatnonzero(bad)[0])
      raise DataError(
          f'{self.path}, line {self.line_of(row)}: field {name} ({what}) is '
          f'not a finite number: {col.iloc[row]!r} '
          f'({_count(bad.sum(), "such line")})')
    return values

  def unique_ids(self, name: str, what: str) -> np.ndarray:
    """A token id column, refusing duplicates (a side file's key)."""
    ids = self.tokens(name, what)
    dup = pd.Series(ids).duplicated().to_numpy()
    if dup.any():
      row = int(np.flatnonzero(dup)[0])
      raise DataError(f'{self.path}, line {self.line_of(row)}: duplicate '
                      f'{name} {str(ids[row])!r}')
    return ids


def _count(n, what: str) -> str:
  """``'1 such line'``, ``'2 such lines'``."""
  return f'{int(n)} {what}{"s" if int(n) != 1 else ""}'


def _is_record(line: str) -> bool:
  """Whether pandas reads a line as a record (it skips empty lines and
  lines of spaces only)."""
  return bool(line.strip(' '))


def _fields(types: dict) -> str:
  return ', '.join(f'{k}:{v}' for k, v in types.items())


def _parse_header(path: str, header: str) -> dict:
  """``{field: type}`` of a header line; refuses a bad one in one line."""
  fields = header.split('\t')
  if len(fields) == 1 and header.count(':') > 1:
    for sep, word in _OTHER_SEPARATORS.items():
      parts = header.split(sep)
      if len(parts) > 1 and all(':' in p for p in parts):
        raise DataError(
            f"{path}, line 1: the header's fields are separated by {word}; "
            'atomic files are tab-separated (wrong separator)')
  types = {}
  for k, raw in enumerate(fields, start=1):
    name, colon, kind = raw.strip().rpartition(':')
    if not colon or not name:
      raise DataError(
          f'{path}, line 1: header field {k} {raw[:40]!r} is not NAME:TYPE '
          f'(types: {", ".join(FIELD_TYPES)}); is line 1 a header?')
    if kind not in FIELD_TYPES:
      raise DataError(f'{path}, line 1: field {name} has unknown type '
                      f'{kind!r}; RecBole types: {", ".join(FIELD_TYPES)}')
    if name in types:
      raise DataError(f'{path}, line 1: field {name} appears twice')
    types[name] = kind
  return types


def read_atomic(path: str) -> AtomicFile:
  """Reads one atomic file strictly (header, separator, field counts).

  Raises:
    DataError: empty file, no records, a bad header, or a line whose field
      count differs from the header's (named by line).
  """
  text = _io.read_text(path)
  if not text.strip():
    raise DataError(f'{path}: file is empty')
  header, _, body = text.partition('\n')
  types = _parse_header(path, header)
  if not body.strip():
    raise DataError(f'{path}: a header but no records')
  names = list(types)
  raw = [f'{k}:{t}' for k, t in types.items()]  # as the header spells them
  table = _io.parse_table(path, text, '\t', raw, header=True)
  table.columns = names
  # pandas pads a short line with empty fields: count the separators (one
  # C-level pass) and scan for the short line only when they disagree.
  n_lines = len(table) + 1
  if text.count('\t') != (len(names) - 1) * n_lines:
    for lineno, line in enumerate(text.split('\n'), start=1):
      if _is_record(line) and line.count('\t') != len(names) - 1:
        raise DataError(
            f"{path}, line {lineno}: expected {len(names)} fields separated "
            f"by '\\t' (as the header), found {line.count(chr(9)) + 1}: "
            f'{line[:80]!r}')
  return AtomicFile(path, types, table, text)


def _resolve_folder(data_dir: str, name: str | None) -> tuple[str, str]:
  """``(folder, NAME)``: ``data_dir`` itself, or ``data_dir/NAME``."""
  folder = os.path.normpath(os.fspath(data_dir))
  name = name or os.path.basename(folder)
  if (not os.path.isfile(os.path.join(folder, f'{name}.inter'))
      and os.path.isdir(os.path.join(folder, name))):
    folder = os.path.join(folder, name)
  if not os.path.isfile(os.path.join(folder, f'{name}.inter')):
    found = sorted(f for f in os.listdir(folder) if f.endswith('.inter'))
    hint = (f'; found {", ".join(found)}: pass options.atomic_name='
            f'{found[0][:-len(".inter")]!r}' if found else '')
    raise DataError(f'atomic: no {name}.inter in {folder!r} (the folder is '
                    f'named after its dataset, or pass options.atomic_name)'
                    f'{hint}')
  return folder, name


def _choose(item: AtomicFile | None, option: str, given: str | None,
            types: tuple[str, ...], auto) -> str | None:
  """The item field an option names: ``given`` (checked), ``''`` for none,
  or the automatic choice ``auto(item)`` when None."""
  if given == '':
    return None
  if given is None:
    return auto(item) if item is not None else None
  if item is None:
    raise DataError(f'atomic: options.{option}={given!r} but there is no '
                    '.item file')
  item.field(given, types, f'options.{option}')
  return given


def _auto_title(item: AtomicFile) -> str | None:
  hits = [k for k, t in item.types.items()
          if _TITLE_NAME.match(k) and t in ('token', 'token_seq')]
  return hits[0] if len(hits) == 1 else None


def _auto_year(item: AtomicFile) -> str | None:
  hits = [k for k in _YEAR_NAMES
          if item.types.get(k) in ('token', 'float')]
  return hits[0] if hits else None


def _concept_candidates(item: AtomicFile, id_field: str,
                        title: str | None) -> list[str]:
  return [k for k, t in item.types.items()
          if t == 'token_seq' and k not in (id_field, title)]


def concept_table(values: pd.Series) -> tuple[tuple[str, ...], np.ndarray]:
  """Multi-hot table of space-separated tokens.

  Args:
    values: ``(m,)`` strings, e.g. ``'Action Comedy'``.

  Returns:
    ``(names, table)``: the distinct tokens, sorted, and the ``(m,
    len(names))`` bool table.

  >>> names, t = concept_table(pd.Series(['b a', '', 'a']))
  >>> names, t.astype(int).tolist()
  (('a', 'b'), [[1, 1], [0, 0], [1, 0]])
  """
  flat = values.reset_index(drop=True).str.split().explode()
  flat = flat[flat.notna() & (flat != '')]
  names, codes = np.unique(flat.to_numpy(str), return_inverse=True)
  table = np.zeros((len(values), len(names)), bool)
  table[flat.index.to_numpy(np.int64), codes] = True
  return tuple(names.tolist()), table


def _check_known(inter: AtomicFile, ids: np.ndarray, known: np.ndarray,
                 field: str, side: AtomicFile) -> None:
  """Refuses an id of ``NAME.inter`` that the side file lacks."""
  missing = ~pd.Series(ids).isin(known).to_numpy()   # hashed, not sorted
  if missing.any():
    row = int(np.flatnonzero(missing)[0])
    n = len(np.unique(ids[missing]))
    raise DataError(
        f'{inter.path}, line {inter.line_of(row)}: {field} '
        f'{str(ids[row])!r} is not in {side.path} ({_count(n, "such id")})')


def _optional(folder: str, name: str, ext: str) -> AtomicFile | None:
  path = os.path.join(folder, f'{name}.{ext}')
  return read_atomic(path) if os.path.exists(path) else None


def load_atomic(data_dir: str, *, atomic_name: str | None = None,
                concept_field: str | None = None,
                title_field: str | None = None,
                year_field: str | None = None,
                min_rating: float | None = None,
                user_field: str | None = None,
                item_field: str | None = None,
                rating_field: str | None = None) -> Dataset:
  """Loads RecBole atomic files (see the module docstring for the rules).

  Args:
    data_dir: the dataset's folder ``NAME/``, or a folder holding it.
    atomic_name: the files' stem NAME; default: the folder's name.
    concept_field: the item field whose tokens are the concepts.
    title_field: the item field of display titles.
    year_field: the item field of release years (``token`` or ``float``).
    min_rating: keep only interactions with ``rating >= min_rating``.
    user_field, item_field, rating_field: field names (default
      ``user_id``, ``item_id``, ``rating``), as RecBole's USER_ID_FIELD /
      ITEM_ID_FIELD / RATING_FIELD.

  Returns:
    A :class:`Dataset` named ``'atomic'`` (``extras['atomic_name']`` is
    NAME) with str ids.
  """
  folder, name = _resolve_folder(data_dir, atomic_name)
  user_field = user_field or 'user_id'
  item_field = item_field or 'item_id'
  rating_field = rating_field or 'rating'
  inter = read_atomic(os.path.join(folder, f'{name}.inter'))
  users = inter.tokens(user_field, 'user id')
  items = inter.tokens(item_field, 'item id')
  ratings = None
  if rating_field in inter.types:
    inter.field(rating_field, ('float',), 'rating')
    ratings = inter.floats(rating_field, 'rating')
  if min_rating is not None:
    if ratings is None:
      raise DataError(f'{inter.path}: min_rating={min_rating} needs a '
                      f'{rating_field}:float field (fields: '
                      f'{_fields(inter.types)})')
    keep = ratings >= float(min_rating)
    if not keep.any():
      raise DataError(f'{inter.path}: no interaction has {rating_field} >= '
                      f'{min_rating}')
    users, items, ratings = users[keep], items[keep], ratings[keep]

  item = _optional(folder, name, 'item')
  title = _choose(item, 'title_field', title_field, ('token', 'token_seq'),
                  _auto_title)
  year = _choose(item, 'year_field', year_field, ('token', 'float'),
                 _auto_year)

  def auto_concepts(item):
    found = _concept_candidates(item, item_field, title)
    if len(found) > 1:
      raise DataError(
          f'{item.path}: several token_seq fields could be the concepts '
          f'({", ".join(found)}); choose one with options.concept_field')
    return found[0] if found else None

  concepts = _choose(item, 'concept_field', concept_field,
                     ('token_seq', 'token'), auto_concepts)
  kw = {}
  if item is not None:
    item_ids = item.unique_ids(item_field, 'item id')
    _check_known(inter, items, item_ids, item_field, item)
    if concepts is not None:
      kw['concept_names'], table = concept_table(item.table[concepts])
      kw['concept_table'] = (item_ids, table)
    if title is not None:
      kw['title_table'] = (item_ids, item.table[title].to_numpy(object))
    if year is not None:
      years = item.floats(year, 'year', allow_empty=True)
      kw['year_table'] = (item_ids, np.where(np.isnan(years), -1,
                                             years).astype(np.int32))
  if concepts is None:
    warnings.warn(f'atomic {name}: no concept field (no .item, or no '
                  'token_seq field in it): the dataset has no concepts to '
                  'match neurons against', stacklevel=2)
  user = _optional(folder, name, 'user')
  if user is not None:
    user_ids = user.unique_ids(user_field, 'user id')
    _check_known(inter, users, user_ids, user_field, user)
    feats = {}
    for k, t in user.types.items():
      if k == user_field or t not in ('token', 'float'):
        continue
      feats[k] = (user.floats(k, 'a float feature', allow_empty=True)
                  if t == 'float' else user.table[k].to_numpy(object))
    kw['user_table'] = (user_ids, feats)
  return Dataset.from_pairs(
      'atomic', users, items, ratings, **kw,
      extras={'atomic_name': name, 'concept_field': concepts,
              'title_field': title, 'year_field': year})
