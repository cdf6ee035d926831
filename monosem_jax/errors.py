"""The project's error types: one base class the launchers turn into one line.

Every refusal the library makes on purpose (malformed data, an invalid
config, a workdir that holds something else) raises a subclass of
:class:`MonosemError` whose message names the file, line or field at fault
and, where there is one, the fix. The absl launchers print that message as a
single ``error: ...`` line and exit with status 1; anything else is a bug and
keeps its traceback.

>>> try:
...   raise WorkdirError('runs/x is a file, not a folder')
... except MonosemError as e:
...   print(e)
runs/x is a file, not a folder
"""

from __future__ import annotations

from typing import Iterable, Sequence


class MonosemError(ValueError):
  """Base of every deliberate refusal; the message is meant for a person."""


class ConfigError(MonosemError):
  """A launcher config that is invalid or contradicts its inputs."""


class WorkdirError(MonosemError):
  """A workdir that cannot be used: a file, locked, or holding another run."""


class DivergedError(MonosemError, FloatingPointError):
  """Training produced a non-finite loss; the message names epoch and setting."""


def refuse_unknown(given: Iterable[str], known: Sequence[str], where: str, *,
                   what: str = 'key', error: type[MonosemError] = ConfigError
                   ) -> None:
  """Refuses, in one line, the names of ``given`` that are not ``known``:
  ``WHERE: unknown WHAT(s) A, B; known: X, Y`` (the unknown names sorted,
  the known ones in the order given). The one check of a mapping's keys
  (a config section, a loader's options, the arrays of a file).

  >>> refuse_unknown({'seed': 0}, ('seed', 'epochs'), 'TrainConfig')
  >>> refuse_unknown({'sed': 0, 'seed': 0}, ('seed', 'epochs'), 'TrainConfig')
  Traceback (most recent call last):
  ...
  monosem_jax.errors.ConfigError: TrainConfig: unknown key(s) sed; known: seed, epochs
  """
  unknown = sorted(set(given) - set(known))
  if unknown:
    raise error(f'{where}: unknown {what}(s) {", ".join(unknown)}; known: '
                f'{", ".join(known)}')
