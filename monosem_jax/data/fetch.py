"""Downloads the official dataset archives, verified, into the loaders' layout.

``fetch('ml-1m', DEST)`` downloads GroupLens's ``ml-1m.zip``, checks its
published size and SHA-256, unpacks it and returns ``DEST/ml-1m``, the folder
:func:`monosem_jax.data.load_dataset` reads (``DEST`` itself is what
``$MONOSEM_DATA_DIR`` should hold). The launcher is
``python -m experiments.fetch ml-1m --dest DEST`` (``monosem-fetch``).
Nothing is downloaded at import or test time: only this call reaches a network.

Guarantees:

* **Verified or refused.** The archive is streamed into a temporary file in
  ``DEST`` (``.NAME.zip.*.part``), refused if the server announces or sends a
  size other than the published one, or if its SHA-256 differs; then unpacked
  into a temporary sibling folder that replaces ``DEST/NAME`` whole
  (:func:`monosem_jax.files.atomic_directory`). On any failure (network,
  checksum, a damaged zip, Ctrl-C) the temporary file and folder are removed
  and ``DEST/NAME`` is left as it was.
* **Idempotent.** The unpacked folder holds ``.fetch.json``: the archive's
  URL and SHA-256 and each unpacked file's size and SHA-256. A second run whose
  files all match does nothing and says so; a damaged or missing file makes it
  download again. A ``DEST/NAME`` that fetch did not write (no
  ``.fetch.json``), or that holds files the archive does not, is refused rather
  than replaced.
* **One line per failure.** Network errors, HTTP errors and mismatches raise
  :class:`FetchError` (a ``DataError``) naming the URL and the fix.
* **Mirrors.** ``base_url`` (or ``$MONOSEM_FETCH_BASE_URL``) replaces the
  folder part of the official URL, ``url`` the whole URL (``file://`` works,
  e.g. for an archive downloaded by hand); the checksums are the same.

Only the standard library is used (urllib, zipfile, hashlib).

Checksums (the archives cannot be downloaded where this was written; each
value is copied from public sources, cross-checked where two exist):

* ``ml-1m.zip``: 5,917,549 bytes, SHA-256 ``a6898adb...f2c54e20``. Size and
  SHA-256: tensorflow/datasets ``tensorflow_datasets/url_checksums/
  movielens.txt`` @1c076ac3c19c8ea83e1d1a75e0623c9a699e0d7c. SHA-256 also in
  ankane/disco-cli ``src/download.rs`` @42f5617a6681a7a6646d914716197fab93c79ba8
  and tensorflow/examples ``lite/examples/recommendation/ml/data/
  example_generation_movielens.py`` @0e19f72fd49f3dc5819a2b1381589075002b702e.
  (GroupLens's published MD5, ``c4d9eecfca2ab87c1945afe126590906``, is in
  eli-osherovich/papers_with_code ``datasets/movielens/dl_config.py``
  @3888fe1b78408bfd0c7791f58b1e4e0cef8b5a4d; not checked here.)
* ``ml-100k.zip``: 4,924,029 bytes, SHA-256 ``50d2a982...6c6a3229``. Size and
  SHA-256: tensorflow/datasets (same file and commit). SHA-256 also in
  ankane/disco-cli (same file and commit) and ISG-Siegen/OmniRec
  ``src/omnirec/data_loaders/movielens_100k.py``
  @79cb11648d108a19116a2dcb5f0985d7b505462f. (Published MD5
  ``0e33842e24a9c977be4e0107933c0723``, papers_with_code as above.)
* ``hetrec2011-lastfm-2k.zip``: 2,589,075 bytes, SHA-256
  ``6738f481...e913c59c``. SHA-256: ISG-Siegen/OmniRec
  ``src/omnirec/data_loaders/hetrec_lastfm.py``
  @79cb11648d108a19116a2dcb5f0985d7b505462f, and the same value in three other
  public repositories found by content. The size comes from a single public
  source (a ``expected_bytes=2_589_075`` table), consistent with GroupLens's
  "2.5 MB"; it is less corroborated than the SHA-256, which is the check that
  matters. (MD5 ``296d61afe4e8632b173fc2dd3be20ce2``: sisinflab/DataRec
  ``datarec/datasets/lastfm/lastfm_2011.py``
  @0cd3f7523702fa207d248e0a2535cbe9c64153b4; not checked here.) This archive
  has no top folder: its files sit at the root.

Example (downloads; tests use a local server instead):

  >>> root = 'data'
  >>> fetch('ml-1m', root)                                   # doctest: +SKIP
  '/home/me/data/ml-1m'
  >>> print(export_line(root))                               # doctest: +SKIP
  export MONOSEM_DATA_DIR=/home/me/data
  >>> load_dataset('ml-1m', root)                            # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import shlex
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from typing import Callable

from monosem_jax.data.dataset import DataError
from monosem_jax.files import (atomic_directory, atomic_write_json,
                               prepare_workdir)

#: The environment variable holding a mirror's base URL.
BASE_URL_ENV = 'MONOSEM_FETCH_BASE_URL'
#: The record of what an unpacked folder holds (inside it).
MANIFEST = '.fetch.json'
#: Seconds before a silent connection is given up.
TIMEOUT_S = 60.0
_BLOCK = 1 << 20


class FetchError(DataError):
  """A download that failed, or an archive that did not verify."""


@dataclasses.dataclass(frozen=True)
class Archive:
  """One official archive.

  Attributes:
    url: where it is published.
    size: its size in bytes.
    sha256: its SHA-256 (hex).
    prefix: the folder inside the zip holding the files (``''``: the root).
    folder: the folder under ``DEST`` the loaders read (``DATASETS`` in
      monosem_jax/data/loaders.py).
    required: files the loader needs; an archive without them is refused.
  """
  url: str
  size: int
  sha256: str
  prefix: str
  folder: str
  required: tuple[str, ...]

  @property
  def filename(self) -> str:
    return posixpath.basename(urllib.parse.urlparse(self.url).path)


#: name -> the archive (sources of each checksum: the module docstring).
DATASETS: dict[str, Archive] = {
    'ml-1m': Archive(
        url='https://files.grouplens.org/datasets/movielens/ml-1m.zip',
        size=5917549,
        sha256=('a6898adb50b9ca05aa231689da44c217'
                'cb524e7ebd39d264c56e2832f2c54e20'),
        prefix='ml-1m/', folder='ml-1m',
        required=('ratings.dat', 'movies.dat', 'users.dat')),
    'ml-100k': Archive(
        url='https://files.grouplens.org/datasets/movielens/ml-100k.zip',
        size=4924029,
        sha256=('50d2a982c66986937beb9ffb3aa76efe'
                '955bf3d5c6b761f4e3a7cd717c6a3229'),
        prefix='ml-100k/', folder='ml-100k',
        required=('u.data', 'u.item', 'u.user')),
    'lastfm-2k': Archive(
        url=('https://files.grouplens.org/datasets/hetrec2011/'
             'hetrec2011-lastfm-2k.zip'),
        size=2589075,
        sha256=('6738f48195667ff03caaab4d32ca9a31'
                '33d8cc026b7c3cdaf6ce1010e913c59c'),
        prefix='', folder='lastfm-2k',
        required=('user_artists.dat', 'artists.dat', 'tags.dat',
                  'user_taggedartists.dat')),
}


def archive_url(name: str, base_url: str | None = None,
                url: str | None = None) -> str:
  """The URL to download ``name`` from.

  ``url`` wins; else ``base_url`` (else ``$MONOSEM_FETCH_BASE_URL``) followed
  by the official file name; else the official URL.

  >>> archive_url('ml-1m', base_url='http://mirror/x/')
  'http://mirror/x/ml-1m.zip'
  """
  archive = _archive(name)
  if url:
    return url
  base = base_url or os.environ.get(BASE_URL_ENV)
  if base:
    return base.rstrip('/') + '/' + archive.filename
  return archive.url


def data_root(dest: str | None) -> str:
  """The data root: ``dest``, else ``$MONOSEM_DATA_DIR``, else ``./data``."""
  return dest or os.environ.get('MONOSEM_DATA_DIR') or 'data'


def export_line(dest: str) -> str:
  """The shell line that points the loaders at ``dest``.

  >>> export_line('/data/my sets')
  "export MONOSEM_DATA_DIR='/data/my sets'"
  """
  return f'export MONOSEM_DATA_DIR={shlex.quote(os.path.abspath(dest))}'


def fetch(name: str, dest: str, base_url: str | None = None,
          url: str | None = None,
          log: Callable[[str], None] = print) -> str:
  """Downloads, verifies and unpacks ``name`` into ``dest/<folder>``.

  Args:
    name: a key of :data:`DATASETS` (``'ml-1m'``, ``'ml-100k'``,
      ``'lastfm-2k'``).
    dest: the data root (created if missing); the dataset lands in
      ``dest/<folder>`` (e.g. ``dest/ml-1m``).
    base_url: a mirror holding the official file names (default
      ``$MONOSEM_FETCH_BASE_URL``, else the official URL).
    url: the archive's full URL (overrides ``base_url``).
    log: where progress lines go.

  Returns:
    The dataset folder (absolute).

  Raises:
    FetchError: unknown name, network or HTTP failure, wrong size or
      SHA-256, a damaged archive or one without the loader's files, or a
      ``dest/<folder>`` that fetch did not write. Nothing is left behind.
    WorkdirError: ``dest`` is a file.
  """
  archive = _archive(name)
  root = prepare_workdir(dest, '--dest')
  target = os.path.join(root, archive.folder)
  source = archive_url(name, base_url, url)
  why = _check_existing(name, archive, target)
  if why is None:
    log(f'{name}: already present and verified in {target} '
        '(nothing downloaded)')
    return target
  if why:
    log(f'{name}: {why}; downloading again')
  fd, part = tempfile.mkstemp(dir=root, prefix=f'.{archive.filename}.',
                              suffix='.part')
  try:
    with os.fdopen(fd, 'wb') as out:
      _download(name, source, archive.size, out, log)
    _verify(name, source, archive, part)
    _unpack(name, source, archive, part, target)
  finally:
    if os.path.exists(part):
      os.remove(part)
  log(f'{name}: verified (SHA-256 {archive.sha256[:12]}...) and unpacked '
      f'into {target}')
  return target


def _archive(name: str) -> Archive:
  if name not in DATASETS:
    raise FetchError(f'unknown dataset {name!r} to fetch; known: '
                     f'{", ".join(DATASETS)}')
  return DATASETS[name]


def _check_existing(name: str, archive: Archive, target: str) -> str | None:
  """Why ``target`` must be (re)written: ``''`` (absent), a reason, or None
  when it already holds this archive's files intact.

  Raises:
    FetchError: ``target`` was not written by fetch, or holds extra files.
  """
  if not os.path.exists(target) or (os.path.isdir(target)
                                    and not os.listdir(target)):
    return ''
  manifest_path = os.path.join(target, MANIFEST)
  if not os.path.isdir(target) or not os.path.isfile(manifest_path):
    raise FetchError(
        f'{name}: {target} exists and was not written by monosem-fetch (no '
        f'{MANIFEST}); move it away, or pass another --dest')
  try:
    with open(manifest_path) as f:
      manifest = json.load(f)
    recorded = manifest['sha256']
    files = {str(rel): (int(size), str(sha))
             for rel, (size, sha) in manifest['files'].items()}
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return f'{manifest_path} is unreadable'
  present = _files_under(target) - {MANIFEST}
  extra = sorted(present - set(files))
  if extra:
    raise FetchError(
        f'{name}: {target} holds files the archive does not '
        f'({", ".join(extra[:5])}); move them away before fetching again')
  if recorded != archive.sha256:
    return f'{target} was unpacked from another archive (SHA-256 {recorded})'
  for rel, (size, sha) in sorted(files.items()):
    path = os.path.join(target, rel)
    if not os.path.isfile(path):
      return f'{path} is missing'
    if os.path.getsize(path) != size or _sha256_file(path) != sha:
      return f'{path} differs from the archive'
  return None


def _files_under(folder: str) -> set[str]:
  """Relative paths (``/``-separated) of every file below ``folder``."""
  out = set()
  for here, _, names in os.walk(folder):
    rel = os.path.relpath(here, folder)
    for n in names:
      out.add(n if rel == '.' else posixpath.join(*rel.split(os.sep), n))
  return out


def _download(name: str, source: str, expected: int, out,
              log: Callable[[str], None]) -> None:
  """Streams ``source`` into ``out``; progress lines at most once a second.

  Raises:
    FetchError: the network or server fails, or the size is not ``expected``.
  """
  log(f'{name}: downloading {source} ({expected / 1e6:.1f} MB)')
  start = last = time.monotonic()
  got = 0
  try:
    with urllib.request.urlopen(source, timeout=TIMEOUT_S) as response:
      announced = response.headers.get('Content-Length')
      if announced is not None and announced.isdigit() and (
          int(announced) != expected):
        raise FetchError(
            f'{name}: {source} announces {int(announced)} bytes, the '
            f'published archive has {expected}; refusing it (wrong URL or '
            'mirror?)')
      while block := response.read(_BLOCK):
        got += len(block)
        if got > expected:
          raise FetchError(
              f'{name}: {source} sent more than the published {expected} '
              'bytes; refusing it (wrong URL or mirror?)')
        out.write(block)
        now = time.monotonic()
        if now - last >= 1.0:
          last = now
          log(f'{name}: {got / 1e6:.1f} / {expected / 1e6:.1f} MB '
              f'({100 * got / expected:.0f}%), '
              f'{got / 1e6 / (now - start):.2f} MB/s')
  except FetchError:
    raise
  except urllib.error.HTTPError as e:
    raise FetchError(f'{name}: {source} answered HTTP {e.code} {e.reason}; '
                     'check the URL (--url / --base_url / '
                     f'${BASE_URL_ENV})') from None
  except urllib.error.URLError as e:
    raise FetchError(f'{name}: cannot reach {source} ({_reason(e.reason)}); '
                     'check the network, or download the archive elsewhere '
                     'and pass --url=file:///path/to/'
                     f'{posixpath.basename(source)}') from None
  except (socket.timeout, TimeoutError) as e:
    raise FetchError(f'{name}: {source} stopped answering after {got} bytes '
                     f'({_reason(e)}); try again') from None
  except (OSError, ValueError) as e:  # reset connection, bad URL scheme
    raise FetchError(f'{name}: downloading {source} failed after {got} bytes '
                     f'({_reason(e)})') from None
  out.flush()
  os.fsync(out.fileno())
  seconds = max(time.monotonic() - start, 1e-9)
  log(f'{name}: downloaded {got / 1e6:.1f} MB in {seconds:.1f} s '
      f'({got / 1e6 / seconds:.2f} MB/s)')


def _reason(e) -> str:
  return str(e) or type(e).__name__


def _verify(name: str, source: str, archive: Archive, part: str) -> None:
  """Size, then SHA-256, of the downloaded file against the table."""
  size = os.path.getsize(part)
  if size != archive.size:
    raise FetchError(
        f'{name}: {source} gave {size} bytes, the published archive has '
        f'{archive.size}; refusing it, nothing was unpacked')
  digest = _sha256_file(part)
  if digest != archive.sha256:
    raise FetchError(
        f'{name}: {source} has SHA-256 {digest}, the published archive '
        f'{archive.sha256} (monosem_jax/data/fetch.py DATASETS); refusing '
        'it, nothing was unpacked')


def _sha256_file(path: str) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(_BLOCK), b''):
      h.update(block)
  return h.hexdigest()


def _member_path(name: str, member: str, prefix: str) -> str | None:
  """The safe relative path of a zip member under ``prefix`` (None: a folder
  or outside ``prefix``).

  Raises:
    FetchError: an absolute path or ``..`` (a zip that would write outside).
  """
  if member.endswith('/') or not member.startswith(prefix):
    return None
  rel = member[len(prefix):]
  parts = rel.split('/')
  if member.startswith('/') or '\\' in member or any(
      p in ('', '.', '..') for p in parts):
    raise FetchError(f'{name}: the archive holds an unsafe path {member!r}; '
                     'refusing it')
  return rel


def _unpack(name: str, source: str, archive: Archive, part: str,
            target: str) -> None:
  """Unpacks ``archive.prefix`` of the zip ``part`` into ``target`` (whole,
  atomically), with a manifest of each file's size and SHA-256."""
  files = {}
  try:
    with zipfile.ZipFile(part) as zf, atomic_directory(target) as tmp:
      for info in zf.infolist():
        rel = _member_path(name, info.filename, archive.prefix)
        if rel is None:
          continue
        path = os.path.join(tmp, *rel.split('/'))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        h, size = hashlib.sha256(), 0
        with zf.open(info) as src, open(path, 'wb') as dst:
          for block in iter(lambda: src.read(_BLOCK), b''):
            h.update(block)
            size += len(block)
            dst.write(block)
        files[rel] = (size, h.hexdigest())
      missing = [f for f in archive.required if f not in files]
      if missing:
        raise FetchError(
            f'{name}: the archive from {source} lacks '
            f'{", ".join(archive.prefix + m for m in missing)}; refusing it')
      atomic_write_json(os.path.join(tmp, MANIFEST), {
          'dataset': name, 'url': source, 'sha256': archive.sha256,
          'size': archive.size, 'files': files})
  except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
    raise FetchError(f'{name}: the archive from {source} is damaged '
                     f'({_reason(e)}); nothing was unpacked') from None


__all__ = ['Archive', 'BASE_URL_ENV', 'DATASETS', 'FetchError', 'MANIFEST',
           'archive_url', 'data_root', 'export_line', 'fetch']
