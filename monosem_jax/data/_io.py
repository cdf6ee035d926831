"""Small, strict text-table reading shared by the loaders.

Fast path: pandas' C parser. Only when it fails (or the data are wrong) do we
scan lines in Python, to name the file, line and field at fault.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from monosem_jax.data.dataset import DataError

_UNIT_SEP = '\x1f'
_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1


def _show(sep: str) -> str:
  return sep.replace('\t', '\\t')


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


def _diagnose(path: str, text: str, sep: str, n_fields: int,
              names: Sequence[str], int_cols: Sequence[str],
              header: bool) -> None:
  """Scans lines to raise a DataError naming the first bad one (error path)."""
  shown = _show(sep)
  for lineno, line in enumerate(text.split('\n'), start=1):
    if header and lineno == 1:
      continue
    if not line.strip():
      continue
    fields = line.split(sep)
    if len(fields) != n_fields:
      raise DataError(
          f'{path}, line {lineno}: expected {n_fields} fields separated by '
          f"'{shown}', found {len(fields)}: {line[:80]!r}")
    for name in int_cols:
      value = fields[list(names).index(name)].strip()
      try:
        number = int(value)
      except ValueError:
        raise DataError(f'{path}, line {lineno}: field {name} is not an '
                        f'integer: {value!r}') from None
      if not _INT64_MIN <= number <= _INT64_MAX:
        raise DataError(f'{path}, line {lineno}: field {name} = {value} is '
                        'outside the 64-bit integer range') from None


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
    int_cols: columns that must be integers (returned as int64).
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
            f'{path}, line 1: header {lines[0][:80]!r} does not name the '
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
  body = text.replace(sep, _UNIT_SEP) if len(sep) > 1 else text
  psep = _UNIT_SEP if len(sep) > 1 else sep
  dtypes = {c: (np.int64 if c in int_cols else str) for c in used}
  try:
    df = pd.read_csv(io.StringIO(body), sep=psep, header=None,
                     skiprows=1 if header else 0, names=used, dtype=dtypes,
                     quoting=csv.QUOTE_NONE, keep_default_na=False,
                     na_filter=False, engine='c')
  except (ValueError, OverflowError, pd.errors.ParserError) as e:
    _diagnose(path, text, sep, n, used, [c for c in int_cols if c in used],
              header)
    raise DataError(f'{path}: cannot parse ({e})') from None
  df.attrs['first_line'] = 2 if header else 1  # file line of row 0
  return df
