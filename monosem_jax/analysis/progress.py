"""Typed progress of the analysis of a sweep, and its subscribers.

:func:`~monosem_jax.analysis.pipeline.analyze_sweep` runs in stages
(:data:`STAGES`) and calls its hooks (``on_progress``) with an
:class:`AnalysisProgress` after each block of the neuron tables and at the
end of each stage. A hook that returns True stops the analysis there: every
hook of that call is still called, then :class:`AnalysisStopped` is raised,
before anything is written (the outputs are staged and swapped in whole at
the end, so the previous ``analysis/`` folder stays as it was). Its progress
lines are one subscriber, :class:`AnalysisLog` (never stops it), as
:class:`~monosem_jax.sweep.runner.EpochLog` is the sweep's. Nothing needs
to read the log text.

Example::

  deadline = time.perf_counter() + 60
  try:
    result = analyze_sweep(view, dataset, on_progress=[
        lambda p: not p.last and time.perf_counter() > deadline])
  except AnalysisStopped as e:
    print(e.progress.stage, e.progress.done, e.progress.total)
"""

from __future__ import annotations

import dataclasses
from typing import Callable

#: The stages, in order, with what ``done`` / ``total`` count: the configs'
#: fidelity; their neuron and concept tables (one event per block of
#: configs); the use cases on the chosen config; the seeds' settings (a
#: sweep of several seeds only).
STAGES = {'fidelity': 'configs', 'neurons': 'configs',
          'interventions': 'use cases', 'seeds': 'settings'}


@dataclasses.dataclass(frozen=True)
class AnalysisProgress:
  """What a hook learns during the analysis.

  Attributes:
    stage: one of :data:`STAGES`.
    done: units of the stage done (``STAGES[stage]``: configs, use cases or
      settings).
    total: units of the stage in all (0: nothing to do, e.g. no use case).
    seconds: wall seconds since the stage began.
  """
  stage: str
  done: int
  total: int
  seconds: float

  @property
  def last(self) -> bool:
    """Whether the stage is finished."""
    return self.done >= self.total

  @property
  def eta(self) -> float:
    """Seconds left in the stage at its rate so far."""
    return self.seconds / max(self.done, 1) * (self.total - self.done)


#: A subscriber of the analysis: True asks it to stop
#: (:class:`AnalysisStopped`).
Hook = Callable[[AnalysisProgress], 'bool | None']


class AnalysisStopped(Exception):
  """A hook stopped the analysis; nothing was written.

  Attributes:
    progress: the event at which it was stopped.
  """

  def __init__(self, progress: AnalysisProgress):
    super().__init__(f'analysis stopped by a hook at {progress.stage} '
                     f'{progress.done}/{progress.total} (nothing written)')
    self.progress = progress


def call_hooks(hooks, progress: AnalysisProgress) -> None:
  """Calls every hook in order; raises :class:`AnalysisStopped` once they
  all have, when one returned True."""
  stop = False
  for hook in hooks:
    stop = bool(hook(progress)) or stop
  if stop:
    raise AnalysisStopped(progress)


class AnalysisLog:
  """The neuron tables' progress lines, a subscriber of the analysis (never
  stops it): ``  neurons: I/C configs  Ts  ETA Es`` about every tenth of
  the configs and at the last.

  Args:
    log: the sink.

  >>> lines = []
  >>> log = AnalysisLog(lines.append)
  >>> for done in range(3, 31, 3):   # blocks of 3 of 100 configs, 0.1 s each
  ...   _ = log(AnalysisProgress('neurons', done, 100, done / 30))
  >>> for line in lines:
  ...   print(line)
    neurons: 12/100 configs  0.4s  ETA 3s
    neurons: 21/100 configs  0.7s  ETA 3s
    neurons: 30/100 configs  1.0s  ETA 2s
  """

  def __init__(self, log: Callable[[str], None]):
    self.log = log
    self.previous = 0   # configs done at the stage's previous event

  def __call__(self, p: AnalysisProgress) -> bool:
    if p.stage != 'neurons':
      return False
    every = max(1, p.total // 10)
    previous, self.previous = self.previous, p.done
    if p.done // every > previous // every or p.last:
      self.log(f'  neurons: {p.done}/{p.total} configs  {p.seconds:.1f}s  '
               f'ETA {p.eta:.0f}s')
    return False
