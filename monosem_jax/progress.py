"""Progress lines that fit long work: a line every N steps with rate and ETA.

A 1,000-epoch sweep should not print 1,000 lines. :class:`Progress` decides
which steps to report (the first, the last, and about ``lines`` evenly spaced
ones; every step with ``every=1``, e.g. under ``--verbosity=0``) and formats
the elapsed time, the rate and the time left.

Example:
  >>> p = Progress(total=100, lines=4, clock=iter(range(0, 1000, 2)).__next__)
  >>> [i for i in range(1, 101) if p.due(i)]
  [1, 25, 50, 75, 100]
  >>> p.status(50, start=0)   # 50 of 100 done, in 2 s per clock tick
  '50/100  elapsed 2s  ETA 2s'
"""

from __future__ import annotations

import math
import time
from typing import Callable

from absl import logging


def every_from_verbosity(lines: int, total: int) -> int:
  """1 when absl's verbosity is INFO or more (``--verbosity=0``), else the
  spacing that gives about ``lines`` lines."""
  if logging.get_verbosity() >= logging.INFO:
    return 1
  return max(1, math.ceil(total / max(lines, 1)))


def _seconds(s: float) -> str:
  """``'42s'``, ``'2m05s'``, ``'1h03m'`` (rounded first: never ``'1m60s'``)."""
  s = round(s)
  if s < 60:
    return f'{s:.0f}s'
  if s < 3600:
    return f'{s // 60:.0f}m{s % 60:02.0f}s'
  return f'{s // 3600:.0f}h{s % 3600 // 60:02.0f}m'


class Progress:
  """Which of ``total`` steps to report, and their elapsed time and ETA.

  Args:
    total: the last step (steps count from 1).
    lines: about how many lines in all (ignored when ``every`` is given).
    every: report every this many steps (default: from the verbosity, see
      :func:`every_from_verbosity`).
    clock: seconds (default ``time.perf_counter``).
  """

  def __init__(self, total: int, lines: int = 20, every: int | None = None,
               clock: Callable[[], float] = time.perf_counter):
    self.total = int(total)
    self.every = int(every) if every else max(
        1, math.ceil(self.total / max(lines, 1)))
    self.clock = clock
    self.t0 = clock()

  @classmethod
  def for_launcher(cls, total: int, lines: int = 20) -> 'Progress':
    """Every step under ``--verbosity=0``, else about ``lines`` lines."""
    return cls(total, every=every_from_verbosity(lines, total))

  def due(self, step: int) -> bool:
    """Whether ``step`` gets a line."""
    return step in (1, self.total) or step % self.every == 0

  def eta(self, step: int, start: int = 0) -> str:
    """Time left after ``step`` at this run's rate; ``start`` = the step the
    run began after (a resumed run's rate counts only its own steps)."""
    elapsed = self.clock() - self.t0
    return _seconds(elapsed / max(step - start, 1) * (self.total - step))

  def status(self, step: int, start: int = 0) -> str:
    """``'step/total  elapsed ..  ETA ..'``."""
    elapsed = self.clock() - self.t0
    left = elapsed / max(step - start, 1) * (self.total - step)
    return (f'{step}/{self.total}  elapsed {_seconds(elapsed)}  '
            f'ETA {_seconds(left)}')
