r"""Downloads official dataset archives, verified, in the loaders' layout.

  python -m experiments.fetch ml-1m --dest data      # or: monosem-fetch ml-1m
  python -m experiments.fetch ml-100k lastfm-2k --dest data
  eval "$(python -m experiments.fetch ml-1m --dest data)"   # sets the variable

Each archive (GroupLens ``ml-1m.zip``, ``ml-100k.zip``, HetRec 2011
``hetrec2011-lastfm-2k.zip``) is checked against its published size and
SHA-256 and unpacked into DEST/ml-1m, DEST/ml-100k, DEST/lastfm-2k; a second
run finds the files verified and downloads nothing. Progress goes to stderr;
stdout gets only the ``export MONOSEM_DATA_DIR=DEST`` line. DEST defaults to
``$MONOSEM_DATA_DIR``, else ``./data``. ``--base_url`` (or
``$MONOSEM_FETCH_BASE_URL``) points at a mirror, ``--url`` at one archive
(``file:///...`` for a copy downloaded by hand). A few seconds per archive on
a fast connection. The logic lives in monosem_jax/data/fetch.py.
"""

from __future__ import annotations

import sys

from absl import app, flags

from monosem_jax.experiments.launch import console_script, refusals_in_one_line
from monosem_jax.data import fetch as fetch_lib

_DEST = flags.DEFINE_string(
    'dest', None, 'Data root to unpack into (default $MONOSEM_DATA_DIR, '
    'else ./data); each dataset lands in DEST/<name>.')
_BASE_URL = flags.DEFINE_string(
    'base_url', None, 'A mirror holding the official file names (default '
    f'${fetch_lib.BASE_URL_ENV}, else the official URLs).')
_URL = flags.DEFINE_string(
    'url', None, 'The full URL of the archive (one dataset only); '
    'file:///path works. Checked against the same checksums.')


def _stderr(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


@refusals_in_one_line
def main(argv):
  names = argv[1:]
  if not names:
    raise app.UsageError('name the dataset(s) to fetch: '
                         f'{" | ".join(fetch_lib.DATASETS)}')
  if _URL.value and len(names) > 1:
    raise app.UsageError('--url names one archive: fetch one dataset at a '
                         'time with it')
  unknown = [n for n in names if n not in fetch_lib.DATASETS]
  if unknown:
    raise fetch_lib.FetchError(
        f'unknown dataset(s) to fetch: {", ".join(unknown)}; known: '
        f'{", ".join(fetch_lib.DATASETS)}')
  root = fetch_lib.data_root(_DEST.value)
  for name in names:
    fetch_lib.fetch(name, root, base_url=_BASE_URL.value, url=_URL.value,
                    log=_stderr)
  print(fetch_lib.export_line(root), flush=True)


#: The console script ``monosem-fetch`` (pyproject.toml).
run = console_script(main)

if __name__ == '__main__':
  run()
