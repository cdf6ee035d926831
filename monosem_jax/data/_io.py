"""Small, strict text-table reading shared by the loaders.

Fast path: one regular expression over the whole text finds the first line
that is not a record of the expected layout (in C, no Python loop per line),
then pandas' C parser reads the table. Only when either fails do we look at
lines in Python, to name the file, line and field at fault.

Integer fields (ids, ratings, timestamps, play counts, flags) must be written
as plain digits, ``^[0-9]+$`` after stripping spaces and tabs: ``1e2``,
``1193.0``, ``+5``, ``-5`` or ``1_000`` are refused rather than read as
another number (pandas and ``int()`` would accept some of them). Every
integer field of these data sets is >= 0. A field quoted in a message is cut
to :data:`QUOTE_LIMIT` characters (:func:`quote`).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from monosem_jax.data.dataset import DataError

_UNIT_SEP = '\x1f'
_INT64_MAX = 2**63 - 1
_BLANKS = ' \t'          # stripped around an integer field
#: Longest part of a field that a message quotes.
QUOTE_LIMIT = 80


def _show(sep: str) -> str:
  return sep.replace('\t', '\\t')


def quote(value: str, limit: int = QUOTE_LIMIT) -> str:
  """``repr(value)`` for a one-line message, cut to ``limit`` characters.

  >>> quote('ab' * 100, 4)
  "'abab'...(200 characters)"
  """
  value = str(value)
  if len(value) <= limit:
    return repr(value)
  return f'{value[:limit]!r}...({len(value)} characters)'


def is_digits(values: pd.Series) -> np.ndarray:
  """``(n,)`` bool: which strings are integer literals ``^[0-9]+$`` (ASCII
  digits only; no sign, point, exponent or underscore)."""
  return (values.str.isascii() & values.str.isdigit()).to_numpy(bool)


def int_field_error(path: str, lineno: int, name: str, value: str) -> DataError:
  """The refusal of a malformed integer field (file, line, field, range)."""
  return DataError(f'{path}, line {lineno}: field {name} {quote(value)}: '
                   'expected an integer >= 0, digits 0-9 only')


def _check_int(path: str, lineno: int, name: str, value: str) -> None:
  value = value.strip(_BLANKS)
  if not (value.isascii() and value.isdigit()):
    raise int_field_error(path, lineno, name, value)
  if int(value) > _INT64_MAX:
    raise DataError(f'{path}, line {lineno}: field {name} = '
                    f'{quote(value)[1:-1]} is outside the 64-bit integer range')


def find_file(data_dir: str | os.PathLike, candidates: Sequence[str],
              what: str) -> str:
  """Returns the first existing ``data_dir/candidate``, or raises DataError."""
  for name in candidates:
    path = os.path.join(data_dir, name)
    if os.path.isfile(path):
      return path
  raise DataError(f'{what}: none of {", ".join(candidates)} found in '
                  f'{os.fspath(data_dir)!r}')


def read_text(path: str, encodings: Sequence[str] = ('utf-8', 'latin-1')) -> str:
  """Reads a (possibly gzip-compressed) text file, trying encodings in order.

  CRLF line ends become LF.
  """
  try:
    with open(path, 'rb') as f:
      raw = f.read()
  except FileNotFoundError:
    raise DataError(f'{path}: file not found') from None
  except OSError as e:
    raise DataError(f'{path}: cannot read ({e.strerror})') from None
  if raw[:2] == b'\x1f\x8b':
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
      raise DataError(f'{path}: corrupt gzip data ({e})') from None
  for enc in encodings:
    try:
      text = raw.decode(enc)
      break
    except UnicodeDecodeError:
      continue
  else:
    raise DataError(f'{path}: not decodable as any of {", ".join(encodings)}')
  if text.startswith('\ufeff'):
    text = text[1:]
  text = text.replace('\r\n', '\n')
  if '\r' in text and '\n' not in text.rstrip('\n'):
    raise DataError(
        f'{path}: old Mac line endings (CR only, no LF): every line would '
        "read as one; convert them, e.g. tr '\\r' '\\n' < FILE > FILE.new")
  return text


def _check_line(path: str, lineno: int, fields: Sequence[str], sep: str,
                n_fields: int, names: Sequence[str],
                int_cols: Sequence[str]) -> None:
  """Raises a DataError naming the first fault of one line, if any."""
  if len(fields) != n_fields:
    raise DataError(
        f'{path}, line {lineno}: expected {n_fields} fields separated by '
        f"'{_show(sep)}', found {len(fields)}: {quote(sep.join(fields))}")
  for name in int_cols:
    _check_int(path, lineno, name, fields[list(names).index(name)])


def _diagnose(path: str, text: str, sep: str, n_fields: int,
              names: Sequence[str], int_cols: Sequence[str],
              header: bool) -> None:
  """Scans lines to raise a DataError naming the first bad one (error path)."""
  for lineno, line in enumerate(text.split('\n'), start=1):
    if header and lineno == 1:
      continue
    if not line.strip():
      continue
    _check_line(path, lineno, line.split(sep), sep, n_fields, names, int_cols)


def _record_pattern(psep: str, names: Sequence[str],
                    int_cols: Sequence[str]) -> re.Pattern:
  """Matches at the start of the first line that is neither blank nor a
  record: ``names`` fields separated by the one character ``psep``, those in
  ``int_cols`` digits (spaces and tabs around them allowed)."""
  s = re.escape(psep)
  blank = re.escape(_BLANKS)
  fields = [f'[{blank}]*[0-9]+[{blank}]*' if n in int_cols else f'[^{s}\n]*'
            for n in names]
  return re.compile(f'^(?!(?:{s.join(fields)}|[{blank}]*)$)', re.MULTILINE)


def _check_records(path: str, body: str, start: int, psep: str, sep: str,
                   names: Sequence[str], int_cols: Sequence[str]) -> None:
  """Raises a DataError naming the first malformed line of ``body`` (the text
  with ``sep`` written as ``psep``) from offset ``start`` on.

  One regular-expression scan of the whole text. When every field is an
  integer and the text holds nothing but digits, separators, blanks and line
  ends (checked in C by ``bytes.translate``, 30x faster than the expression
  on ML-1M), that suffices: what can still be wrong (a missing, empty or
  split field) fails pandas' int64 parse, and :func:`_diagnose` names it.
  """
  if all(n in int_cols for n in names):
    allowed = (psep + _BLANKS + '\n0123456789').encode()
    if not body[start:].encode().translate(None, allowed):  # nothing else
      return
  m = _record_pattern(psep, names, int_cols).search(body, start)
  if m is None:
    return
  end = body.find('\n', m.start())
  line = body[m.start():end if end >= 0 else len(body)]
  lineno = body.count('\n', 0, m.start()) + 1
  _check_line(path, lineno, line.split(psep), sep, len(names), names, int_cols)
  raise DataError(f'{path}, line {lineno}: not a record of the fields '
                  f'{", ".join(names)}: {quote(line.replace(psep, sep))}')


def _looks_like_data(fields: Sequence[str], names: Sequence[str],
                     int_cols: Sequence[str]) -> bool:
  """Whether a would-be header line is a record (its integer fields parse)."""
  checked = [i for i, n in enumerate(names[:len(fields)]) if n in int_cols]
  if not checked:
    return False
  for i in checked:
    try:
      int(fields[i].strip())
    except ValueError:
      return False
  return True


def parse_table(path: str, text: str, sep: str, names: Sequence[str],
                int_cols: Sequence[str] = (), header: bool = False,
                allowed_widths: Sequence[int] | None = None) -> pd.DataFrame:
  """Parses a delimited table strictly.

  Args:
    path: file name, for messages.
    text: its decoded contents (LF line ends).
    sep: field separator; may be several characters (e.g. ``'::'``).
    names: column names (the widest layout).
    int_cols: columns that must be integers >= 0 written in digits (returned
      as int64; see the module docstring).
    header: whether line 1 is a header. It must name the columns (case
      aside); a line 1 that is a record instead (the header was dropped) is
      kept as data, with a warning.
    allowed_widths: accepted field counts; the first data line decides which
      one the file uses (its first that many ``names``). Default: all names.

  Returns:
    A DataFrame with the used columns; non-integer columns are str.
    ``df.attrs['first_line']`` is the file line of its first row.
  """
  if not text.strip():
    raise DataError(f'{path}: file is empty')
  widths = tuple(allowed_widths or (len(names),))
  lines = text.split('\n', 2)
  first = lines[1] if header and len(lines) > 1 else lines[0]
  if header:
    hdr = lines[0].split(sep)
    expected = [n.lower() for n in names[:len(hdr)]]
    if len(hdr) in widths and [h.strip().lower() for h in hdr] != expected:
      if _looks_like_data(hdr, names, int_cols):
        # The header line is gone (some public copies drop it): line 1 is
        # the first record, so keep it.
        warnings.warn(f'{path}: no header line; line 1 is read as data',
                      stacklevel=3)
        header = False
        first = lines[0]
      else:
        raise DataError(
            f'{path}, line 1: header {quote(lines[0])} does not name the '
            f"expected columns {sep.join(names[:len(hdr)])!r}; is this the "
            'right file?')
    elif len(hdr) not in widths:
      raise DataError(
          f"{path}, line 1: header has {len(hdr)} fields separated by "
          f"'{_show(sep)}', expected {' or '.join(map(str, widths))}"
          f' ({", ".join(names)}); wrong separator?')
  n = len(first.split(sep))
  if n not in widths:
    raise DataError(
        f"{path}, line {2 if header else 1}: found {n} fields separated by "
        f"'{_show(sep)}', expected "
        f"{' or '.join(map(str, widths))} ({', '.join(names)}); wrong separator?")
  used = list(names[:n])
  ints = [c for c in int_cols if c in used]
  body = text.replace(sep, _UNIT_SEP) if len(sep) > 1 else text
  psep = _UNIT_SEP if len(sep) > 1 else sep
  start = (body.find('\n') + 1 or len(body)) if header else 0
  _check_records(path, body, start, psep, sep, used, ints)
  dtypes = {c: (np.int64 if c in int_cols else str) for c in used}
  try:
    df = pd.read_csv(io.StringIO(body), sep=psep, header=None,
                     skiprows=1 if header else 0, names=used, dtype=dtypes,
                     quoting=csv.QUOTE_NONE, keep_default_na=False,
                     na_filter=False, engine='c')
  except (ValueError, OverflowError, pd.errors.ParserError) as e:
    _diagnose(path, text, sep, n, used, ints, header)
    raise DataError(f'{path}: cannot parse ({quote(str(e), 200)})') from None
  df.attrs['first_line'] = 2 if header else 1  # file line of row 0
  return df
