"""Files and workdirs: atomic writes, an exclusive workdir lock, fingerprints.

Used by every stage that writes a workdir (recommender training, sweeps), so
the guarantees are the same everywhere:

* :func:`atomic_write` / :func:`atomic_write_text` / :func:`atomic_write_json`
  write a temporary sibling, ``fsync`` it and ``os.replace`` it into place:
  a reader sees the old file or the new one, never half of one. The file gets
  the usual permissions (``0o666`` minus the umask, i.e. 0644), not the 0600
  of ``tempfile.mkstemp``.
* :func:`atomic_directory` does the same for a whole folder (e.g. a frozen
  recommender, the analysis of a sweep), and :func:`jsonable` turns configs
  and numpy values into plain JSON data.
* :func:`remove_orphans` removes the temporary siblings (``.NAME.tmp-*``,
  ``.NAME.old-*``) that a writer killed mid-way (SIGKILL, power loss) leaves
  behind; the next run, holding the folder's lock, calls it.
* :func:`prepare_workdir` refuses a path that is a file, in one line.
* :class:`WorkdirLock` takes an exclusive ``flock`` on ``WORKDIR/.lock`` for
  the lifetime of a run. A second process on the same workdir is refused at
  once with the holder's PID. The kernel drops the lock when its holder dies
  (even by SIGKILL), so a stale lock file is taken over silently by the next
  run, which reports the PID it replaced. A folder where the lock file
  cannot be created (missing, read-only) is refused in one line.
* :func:`locked_workdir` is what a run does with its workdir: create it
  (:func:`prepare_workdir`) and hold its :class:`WorkdirLock` for the run,
  saying so when it takes over a stale lock.
* :func:`remove_workdir` deletes a workdir whole under its lock (e.g. a
  stale sweep the main job starts afresh).
* :func:`fingerprint` is a SHA-256 over a folder's files, identifying e.g. a
  frozen recommender by content rather than by path.

Example:
  >>> import tempfile, os
  >>> d = tempfile.mkdtemp()
  >>> atomic_write_text(os.path.join(d, 'a.txt'), 'hello')
  >>> with WorkdirLock(d, 'example') as lock:
  ...   lock.path.endswith('.lock')
  True
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from typing import IO, Any, Callable, Iterator, Mapping

import numpy as np

from monosem_jax.errors import WorkdirError

LOCK_FILE = '.lock'


def _umask() -> int:
  umask = os.umask(0)
  os.umask(umask)
  return umask


def _file_mode() -> int:
  return 0o666 & ~_umask()


def atomic_write(path: str, write: Callable[[IO], None],
                 binary: bool = False) -> None:
  """Writes ``path`` atomically: ``write(f)`` fills a temporary sibling.

  Raises whatever ``write`` raises; the temporary file is removed and
  ``path`` is left as it was.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory,
                             prefix=f'.{os.path.basename(path)}.tmp-')
  try:
    with os.fdopen(fd, 'wb' if binary else 'w') as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, _file_mode())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def atomic_write_text(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
  atomic_write(path, lambda f: f.write(text))


def atomic_write_json(path: str, obj: Any) -> None:
  """Writes ``obj`` as indented JSON (with a final newline) atomically."""
  atomic_write_text(path, json.dumps(obj, indent=2) + '\n')


def jsonable(x: Any) -> Any:
  """Plain JSON data from configs, numpy arrays and scalars, nested.

  ``ConfigDict``-like objects (with ``to_dict``) and mappings become dicts
  with string keys, tuples lists, arrays lists, numpy scalars Python ones.

  >>> jsonable({'a': (np.int64(1), np.arange(2)), 2: np.float32(0.5)})
  {'a': [1, [0, 1]], '2': 0.5}
  """
  if hasattr(x, 'to_dict'):
    x = x.to_dict()
  if isinstance(x, Mapping):
    return {str(k): jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return x.tolist()
  if isinstance(x, np.generic):
    return x.item()
  return x


@contextlib.contextmanager
def atomic_directory(path: str):
  """Yields a temporary sibling folder to fill; on success it replaces
  ``path`` whole (a reader sees the old folder or the new one), on error it
  is removed and ``path`` is left as it was."""
  path = os.path.abspath(os.fspath(path))
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(path)}.tmp-', dir=parent)
  try:
    yield tmp
    for name in os.listdir(tmp):
      full = os.path.join(tmp, name)
      if os.path.isfile(full):
        with open(full, 'rb') as f:
          os.fsync(f.fileno())
    os.chmod(tmp, 0o777 & ~_umask())
    old = None
    if os.path.exists(path):
      old = tempfile.mkdtemp(prefix=f'.{os.path.basename(path)}.old-',
                             dir=parent)
      os.rmdir(old)
      os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def remove_orphans(directory: str, names) -> list[str]:
  """Removes what :func:`atomic_write` / :func:`atomic_directory` leave in
  ``directory`` when killed while writing one of ``names``:
  ``.NAME.tmp-*`` files or folders and ``.NAME.old-*`` folders. Call it only
  while holding the folder's :class:`WorkdirLock` (no writer in flight).

  Returns:
    The names removed.
  """
  directory = os.fspath(directory)
  if not os.path.isdir(directory):
    return []
  prefixes = tuple(f'.{n}.{kind}-' for n in names for kind in ('tmp', 'old'))
  removed = []
  for entry in sorted(os.listdir(directory)):
    if not entry.startswith(prefixes):
      continue
    path = os.path.join(directory, entry)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    removed.append(entry)
  return removed


def prepare_workdir(workdir: str, flag: str = '--workdir') -> str:
  """Creates ``workdir`` (and parents); returns its absolute path.

  Raises:
    WorkdirError: the path (or a parent) exists and is not a folder.
  """
  path = os.path.abspath(os.fspath(workdir))
  probe = path
  while probe and not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if probe and not os.path.isdir(probe):
    raise WorkdirError(f'{flag}={workdir}: {probe} is a file, not a folder; '
                       'pass a folder path (it is created if missing)')
  os.makedirs(path, exist_ok=True)
  return path


class WorkdirLock:
  """Exclusive lock on a workdir for one run (a context manager).

  Args:
    workdir: the folder (must exist).
    what: what holds it, for messages (e.g. ``'sweep'``).
    log: told when the lock of a process that is gone is taken over
      (``'WORKDIR: taking over the lock of process PID, which is gone'``).

  Attributes:
    path: the lock file.
    stale_pid: the PID recorded by a previous holder that is gone (its lock
      was released by the kernel), or None.

  Raises (on enter):
    WorkdirError: another live process holds the lock; names its PID.
  """

  def __init__(self, workdir: str, what: str = 'run',
               log: Callable[[str], None] | None = None):
    self.path = os.path.join(os.fspath(workdir), LOCK_FILE)
    self.what, self.log = what, log
    self.stale_pid: int | None = None
    self._fd: int | None = None

  def acquire(self) -> 'WorkdirLock':
    folder = os.path.dirname(self.path) or '.'
    try:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _file_mode())
    except OSError as e:
      why = ('no such folder' if isinstance(e, FileNotFoundError) else
             f'cannot create its lock file {self.path}: '
             f'{e.strerror or type(e).__name__}')
      raise WorkdirError(
          f'{folder}: {why}; the {self.what} needs a folder it can write '
          '(pass another --workdir, or make this one writable)') from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_pid(fd)
      os.close(fd)
      who = f'process {holder}' if holder else 'another process'
      raise WorkdirError(
          f'{os.path.dirname(self.path)} is in use by {who} (lock '
          f'{self.path}); wait for that {self.what} to finish, stop it, or use '
          'another --workdir') from None
    old = _read_pid(fd)
    if old and old != os.getpid():
      self.stale_pid = old
      if self.log is not None:
        self.log(f'{os.path.dirname(self.path)}: taking over the lock of '
                 f'process {old}, which is gone')
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'{os.getpid()} {self.what}\n'.encode(), 0)
    self._fd = fd
    return self

  def release(self) -> None:
    if self._fd is not None:
      os.ftruncate(self._fd, 0)
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> 'WorkdirLock':
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


@contextlib.contextmanager
def locked_workdir(workdir: str, what: str,
                   log: Callable[[str], None]) -> Iterator[str]:
  """``workdir`` created (:func:`prepare_workdir`) and held under its
  :class:`WorkdirLock` for the ``with`` block, which gets its absolute path.
  Taking over the lock of a process that is gone is said through ``log``.

  Raises (on enter):
    WorkdirError: as :func:`prepare_workdir` and :class:`WorkdirLock`.

  >>> import tempfile
  >>> with locked_workdir(tempfile.mkdtemp(), 'example', print) as d:
  ...   os.path.isabs(d)
  True
  """
  path = prepare_workdir(workdir)
  with WorkdirLock(path, what, log=log):
    yield path


def remove_workdir(workdir: str, what: str = 'removal') -> bool:
  """Deletes a workdir whole, once no live process holds its lock.

  Under the folder's :class:`WorkdirLock` it is renamed to a hidden sibling
  (``.NAME.removed-*``), which is then deleted: an interruption leaves the
  folder whole at its path or hidden aside, never half of it in place.
  Hidden leftovers of earlier interrupted removals are deleted too.

  Returns:
    whether there was a folder to delete.

  Raises:
    WorkdirError: another live process holds its lock (named).
  """
  path = os.path.abspath(os.fspath(workdir))
  parent, name = os.path.split(path)
  existed = os.path.isdir(path)
  if existed:
    with WorkdirLock(path, what):
      aside = tempfile.mkdtemp(prefix=f'.{name}.removed-', dir=parent)
      os.replace(path, aside)  # over the empty folder mkdtemp made
  for leftover in os.listdir(parent):
    if leftover.startswith(f'.{name}.removed-'):
      shutil.rmtree(os.path.join(parent, leftover), ignore_errors=True)
  return existed


def _read_pid(fd: int) -> int | None:
  try:
    head = os.pread(fd, 64, 0).split()
    return int(head[0]) if head else None
  except (OSError, ValueError):
    return None


def fingerprint(directory: str, names: tuple[str, ...] | None = None) -> str:
  """SHA-256 (hex) over the names and bytes of a folder's files.

  Args:
    directory: the folder.
    names: the files to include (default: every regular file, sorted).
  """
  directory = os.fspath(directory)
  if names is None:
    names = tuple(sorted(n for n in os.listdir(directory)
                         if os.path.isfile(os.path.join(directory, n))))
  h = hashlib.sha256()
  for name in names:
    h.update(name.encode() + b'\0')
    with open(os.path.join(directory, name), 'rb') as f:
      for block in iter(lambda: f.read(1 << 20), b''):
        h.update(block)
    h.update(b'\0')
  return h.hexdigest()
