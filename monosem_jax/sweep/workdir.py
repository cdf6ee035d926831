"""A sweep folder known in one place: :class:`SweepWorkdir`.

Layout (the names live here and in :mod:`~monosem_jax.sweep.checkpoint`,
which reads and writes the first two)::

  workdir/
    sweep.json           spec, every config's hyper-parameters, provenance
                         (the recommender by kind, dataset, content hash
                         and workdir; the epochs asked for)
    checkpoints/<epoch>/ orbax steps of the stacked state
    sweep_results.csv    one row per config (written when training ends)
    .lock                held by the process writing the folder

The sweep's training (:mod:`~monosem_jax.sweep.runner`), the analysis and the
export all reach these files through a :class:`SweepWorkdir`, and the
recommender a sweep explains through :meth:`SweepWorkdir.recommender`
(checked by content hash) or :func:`recommender_at` (a folder given by the
user; a sweep folder in its place is refused).

Example::

  sw = SweepWorkdir('runs/ml1m_mf_sweep')
  sw.exists(), sw.saved_epochs()          # True, [17, 18]
  artifact = sw.recommender()             # RecommenderArtifact, hash checked
  table = sw.read_results()               # pandas.DataFrame, or None
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pandas as pd

from monosem_jax import files
from monosem_jax.errors import WorkdirError
from monosem_jax.recommenders.artifact import ArtifactError, RecommenderArtifact
from monosem_jax.sweep import checkpoint
from monosem_jax.sweep.spec import SWEEP_JSON

RESULTS_CSV = 'sweep_results.csv'


def recommender_provenance(artifact, rec_workdir: str) -> dict:
  """What ``sweep.json`` records of the recommender a sweep explains:
  ``{'recommender': {kind, dataset, fingerprint, workdir}}``."""
  return {'recommender': {
      'kind': artifact.kind, 'dataset': artifact.dataset,
      'fingerprint': artifact.fingerprint,
      'workdir': os.path.abspath(rec_workdir)}}


def recommender_at(path: str, name: str = 'config.recommender_workdir'
                   ) -> RecommenderArtifact:
  """The frozen recommender of the workdir ``path`` that a caller was given
  (:meth:`RecommenderArtifact.open`), refusing a sweep folder in its place.

  Args:
    path: a recommender workdir (or its ``frozen/`` folder).
    name: what the caller calls it, for the refusal (e.g. ``'inputs'``).

  Raises:
    ArtifactError: in one line: a sweep folder, no such folder, or a
      recommender that never finished training.
  """
  if SweepWorkdir(path).exists():
    raise ArtifactError(f'{name}={path} is a sweep workdir, not a '
                        'recommender\'s: pass the workdir the recommender was '
                        'trained in')
  return RecommenderArtifact.open(path, name)


@dataclasses.dataclass(frozen=True)
class SweepWorkdir:
  """A sweep folder (it may not exist yet).

  Attributes:
    path: the folder.
  """
  path: str

  @property
  def sweep_json(self) -> str:
    return os.path.join(self.path, SWEEP_JSON)

  @property
  def checkpoints(self) -> str:
    return os.path.join(self.path, checkpoint.CKPT_DIR)

  @property
  def results_csv(self) -> str:
    return os.path.join(self.path, RESULTS_CSV)

  def exists(self) -> bool:
    """Whether the folder holds a sweep (its ``sweep.json``)."""
    return os.path.isfile(self.sweep_json)

  def require(self) -> None:
    """Refuses a folder that holds no sweep, in one line."""
    if not self.exists():
      raise WorkdirError(f'{self.path}: no {SWEEP_JSON}; pass the workdir a '
                         'sweep was trained in')

  def provenance(self) -> dict:
    """``sweep.json``'s provenance (``{}`` when it records none)."""
    return checkpoint.read_sweep_json(self.path, provenance=True)[2] or {}

  def recorded_recommender(self) -> dict[str, Any]:
    """What ``sweep.json`` records of its recommender (kind, dataset,
    fingerprint, workdir); ``{}`` for an older sweep that records none."""
    return dict(self.provenance().get('recommender') or {})

  def recommender(self) -> RecommenderArtifact:
    """The recommender the sweep was trained on, checked by content hash.

    Raises:
      WorkdirError: no sweep here; a sweep that does not name its
        recommender (an older one); a recommender changed since the sweep.
      ArtifactError: the recorded recommender workdir is gone.
    """
    self.require()
    rec = self.recorded_recommender()
    if not rec.get('workdir'):
      raise WorkdirError(f'{self.sweep_json} does not name its recommender '
                         '(an older sweep); rerun the sweep')
    artifact = RecommenderArtifact.open(rec['workdir'])
    if artifact.fingerprint != rec.get('fingerprint'):
      raise WorkdirError(
          f'the recommender at {rec["workdir"]} changed since {self.path} was '
          f'trained (sha256 {str(artifact.fingerprint)[:12]}, the sweep '
          f'recorded {str(rec.get("fingerprint"))[:12]}); its analysis would '
          'mix two models')
    return artifact

  def saved_epochs(self) -> list[int]:
    """The epochs that have a finished checkpoint (sorted)."""
    return checkpoint.saved_epochs(self.path)

  def read(self, step: int | None = None) -> checkpoint.SweepCheckpoint:
    """The spec, configs and the checkpoint of ``step`` (default: the
    latest), verified (:func:`~monosem_jax.sweep.checkpoint.read_sweep`)."""
    return checkpoint.read_sweep(self.path, step)

  def read_results(self) -> pd.DataFrame | None:
    """``sweep_results.csv``, or None when training has not written it."""
    if not os.path.exists(self.results_csv):
      return None
    return pd.read_csv(self.results_csv)

  def write_results(self, table: pd.DataFrame) -> str:
    """Writes ``sweep_results.csv`` atomically; returns its path."""
    files.atomic_write(self.results_csv,
                       lambda f: table.to_csv(f, index=False))
    return self.results_csv
