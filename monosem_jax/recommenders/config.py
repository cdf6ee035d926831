"""Recommender training settings: :class:`TrainConfig` (docs/method.md#recommenders).

Example:
  >>> TrainConfig(kind='ncf', dim=16, optimizer='sparse_adam').hidden
  (64, 32, 16)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from monosem_jax.errors import ConfigError, refuse_unknown
from monosem_jax.recommenders import kinds

OPTIMIZERS = ('sgd', 'adam', 'sparse_adam', 'adamw', 'adagrad')
REDUCTIONS = ('sum', 'mean')
SHUFFLES = ('feistel', 'sort')


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Model and optimisation settings (defaults: ML-1M MF of docs/method.md#recommenders).

  Attributes:
    kind: ``'mf'`` or ``'ncf'``.
    dim: embedding width (K for MF, d for NCF).
    hidden: NCF MLP widths.
    use_bias: NCF user/item biases inside the logit (MF always has them).
    optimizer: one of :data:`OPTIMIZERS`. ``'sgd'``: plain SGD, applied as
      sparse row updates (equal to dense SGD). ``'adam'``: dense optax Adam
      (every table row moves every step). ``'sparse_adam'``: Adam whose
      moments and updates touch only the rows of the batch (as PyTorch's
      ``SparseAdam`` / TF's LazyAdam), dense Adam for the MLP; ~4x faster
      than ``'adam'`` on CPU.
    learning_rate: step size.
    reg: L2 weight lambda, per occurrence on the touched rows.
    epochs: number of epochs.
    batch_size: samples (positives + negatives) per step.
    reduction: ``'sum'`` or ``'mean'`` of the per-sample losses of a batch.
    seed: initialisation, negatives and shuffling.
    shuffle: ``'feistel'`` (default): a keyed Feistel-network permutation
      (:func:`feistel_permutation`, elementwise, ~15x faster than sorting on
      CPU); ``'sort'``: ``jax.random.permutation`` (uniform, sort-based).
    unique_negatives: True (default, docs/method.md#protocol): each user's negatives
      of an epoch are distinct (successive sampling without replacement,
      :func:`~monosem_jax.data.samplers.sample_negatives_unique`); False:
      independent draws per positive (faster; repeats possible).
  """

  kind: str = kinds.DEFAULT
  dim: int = 20
  hidden: tuple[int, ...] = (64, 32, 16)
  use_bias: bool = False
  optimizer: str = 'sgd'
  learning_rate: float = 0.05
  reg: float = 0.01
  epochs: int = 10
  batch_size: int = 256
  reduction: str = 'sum'
  seed: int = 0
  shuffle: str = 'feistel'
  unique_negatives: bool = True

  def __post_init__(self):
    kinds.get(self.kind)
    if self.shuffle not in SHUFFLES:
      raise ConfigError(f'shuffle={self.shuffle!r}; expected one of {SHUFFLES}')
    if self.optimizer not in OPTIMIZERS:
      raise ConfigError(f'optimizer={self.optimizer!r}; expected one of '
                       f'{OPTIMIZERS}')
    if self.reduction not in REDUCTIONS:
      raise ConfigError(f'reduction={self.reduction!r}; expected one of '
                       f'{REDUCTIONS}')
    for f in ('dim', 'batch_size'):
      if int(getattr(self, f)) < 1:
        raise ConfigError(f'{f}={getattr(self, f)} must be >= 1')
    if self.epochs < 1:
      raise ConfigError(f'epochs={self.epochs}: must be >= 1 (0 would freeze '
                        'an untrained, randomly initialised model)')
    if not (self.learning_rate > 0 and np.isfinite(self.learning_rate)):
      raise ConfigError(f'learning_rate={self.learning_rate} must be > 0')
    if not self.reg >= 0:
      raise ConfigError(f'reg={self.reg} must be >= 0')
    object.__setattr__(self, 'hidden', tuple(int(h) for h in self.hidden))

  @classmethod
  def from_mapping(cls, m: Mapping[str, Any]) -> 'TrainConfig':
    """Builds from a dict / ConfigDict; unknown keys are an error."""
    m = dict(m)
    refuse_unknown(m, sorted(f.name for f in dataclasses.fields(cls)),
                   'TrainConfig')
    return cls(**m)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d['hidden'] = list(d['hidden'])
    return d
