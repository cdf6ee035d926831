"""The recommender kinds: one registry, the only place that names them.

A kind is one frozen :class:`Kind` record: its model module (pure init /
logits / losses), its frozen scorer (what the SAE stage calls), the SAE
settings and the paper's SAE hyper-parameters of its kind, its paper
training settings, and the schema of its *options*: the settings of an SAE
sweep that only this kind reads (how its batches are drawn, how its
prediction loss is computed). Everything outside this module asks the
registry (:func:`get`, :data:`NAMES`) instead of naming a kind; the rest of
the package calls the kind's interface.

The options travel opaquely: ``SweepSpec.scorer_options`` holds them as
``(name, value)`` pairs checked here (:meth:`Kind.options`), the scorer is
built from them (:func:`make_scorer`), and the sweep reads only the
kind-neutral :class:`Batching` they describe.

Example:
  >>> import jax
  >>> mf = get('mf')
  >>> p = mf.model.init(jax.random.PRNGKey(0), n_users=5, n_items=4, dim=3)
  >>> make_scorer('mf', p, mf_pred_impl='direct').impl
  'direct'
  >>> dict(mf.options({'batch_users': 64}))['batch_items']
  256
  >>> get('ncf').batching(get('ncf').options({'ncf_pairs': 'random'}))
  Batching(users=256, items=256, pairs='random')
  >>> mf.options({'ncf_pairs': 'random'}, where='config.spec')
  Traceback (most recent call last):
  ...
  monosem_jax.errors.ConfigError: config.spec.ncf_pairs: an option of ncf recommenders, not of mf (mf's options: batch_users, batch_items, mf_pred_impl)
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Callable, Mapping

import numpy as np

from monosem_jax.errors import ConfigError
from monosem_jax.recommenders import mf, ncf, scorers

#: How a paired kind's batches pick their (user, item) pairs
#: (docs/method.md#sae-batches; drawn by monosem_jax/sweep/batches.py).
PAIRS = ('positive', 'random', 'mixed')


@dataclasses.dataclass(frozen=True)
class Option:
  """One option of a kind: its default and what it allows.

  Attributes:
    default: the value when none is given.
    choices: the allowed values; None: an integer >= 1.
    help: one line for the launchers' ``--help``.
  """
  default: Any
  choices: tuple[str, ...] | None = None
  help: str = ''

  def problem(self, value: Any) -> str | None:
    """Why ``value`` is not allowed (None: it is)."""
    if self.choices is not None:
      return (None if isinstance(value, str) and value in self.choices
              else f'expected one of {" | ".join(self.choices)}')
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
      return None if value >= 1 else 'must be an integer >= 1'
    return 'must be an integer >= 1'

  def clean(self, value: Any) -> Any:
    return value if self.choices is not None else int(value)


@dataclasses.dataclass(frozen=True)
class Batching:
  """What one step of an SAE sweep holds (drawn by
  monosem_jax/sweep/batches.py, docs/method.md#sae-batches).

  Attributes:
    users, items: rows of the user and of the item table per step.
    pairs: None: every user of the batch against every item (a ``users x
      items`` score matrix); else (user, item) pairs row by row
      (``users == items``): ``'positive'`` (observed positive pairs of
      SAE-train users), ``'random'`` (a user batch zipped with an item
      batch) or ``'mixed'`` (half positive pairs, half the same users with
      uniformly random items).
  """
  users: int
  items: int
  pairs: str | None = None

  @property
  def paired(self) -> bool:
    return self.pairs is not None

  @property
  def positives(self) -> bool:
    """Whether the batches draw from the observed positive pairs."""
    return self.pairs in ('positive', 'mixed')


@dataclasses.dataclass(frozen=True, eq=False)
class Kind:
  """Everything kind-specific about one recommender kind.

  Attributes:
    name: the kind's name (``config.model.kind``, ``artifact.kind``).
    model: the model module: ``init``, ``init_from_config``,
      ``user_item_logits``, ``pair_logits``, ``rows_logits``, ...
    scorer: ``(params, options) -> scorer``, the frozen scorer
      (monosem_jax/recommenders/scorers.py) from resolved options.
    schema: option name -> :class:`Option`, in a fixed order.
    batch: ``options -> Batching``, how a sweep draws this kind's batches.
    sae: the SAE settings of this kind (docs/method.md#sparse-autoencoder),
      ``SAEConfig`` field -> value.
    sae_hparams: dataset -> the paper's SAE hyper-parameters
      (docs/method.md#defaults); other datasets take ``'ml-1m'``'s.
    dataset_options: dataset -> options that differ from the defaults on
      it (the paper's settings).
    training: dataset -> the paper's ``TrainConfig`` settings
      (docs/method.md#recommenders); other datasets take ``'ml-1m'``'s.
    eval_block_size: users per block of the full-catalogue evaluation.
  """
  name: str
  model: types.ModuleType
  scorer: Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
  schema: Mapping[str, Option]
  batch: Callable[[Mapping[str, Any]], Batching]
  sae: Mapping[str, Any]
  sae_hparams: Mapping[str, Mapping[str, float]]
  dataset_options: Mapping[str, Mapping[str, Any]]
  training: Mapping[str, Mapping[str, Any]]
  eval_block_size: int

  @property
  def paired(self) -> bool:
    """Whether its scorer scores (user, item) pairs row by row."""
    return self.batching(self.options({})).paired

  def option_problems(self, options: Mapping[str, Any], where: str
                      ) -> list[str]:
    """One line per option that this kind does not take or allow."""
    out = []
    for name, value in options.items():
      if name not in self.schema:
        owners = [k.name for k in KINDS.values() if name in k.schema]
        what = (f'an option of {" and ".join(owners)} recommenders, not of '
                f'{self.name}' if owners else 'unknown option')
        out.append(f'{where}.{name}: {what} ({self.name}\'s options: '
                   f'{", ".join(self.schema)})')
        continue
      problem = self.schema[name].problem(value)
      if problem:
        out.append(f'{where}.{name}={value!r}: {problem}')
    return out

  def options(self, options: Mapping[str, Any] | None = None,
              where: str = 'options') -> tuple[tuple[str, Any], ...]:
    """Every option of this kind, ``options`` over the defaults, as
    ``(name, value)`` pairs in schema order (frozen, hashable).

    Raises:
      ConfigError: the first option this kind does not take or allow, in
        one line naming it and the valid values.
    """
    options = dict(options or {})
    problems = self.option_problems(options, where)
    if problems:
      raise ConfigError(problems[0])
    return tuple((name, opt.clean(options.get(name, opt.default)))
                 for name, opt in self.schema.items())

  def batching(self, options: Mapping[str, Any] | tuple) -> Batching:
    """The :class:`Batching` of resolved ``options``."""
    return self.batch(dict(options))

  def options_for(self, dataset: str) -> dict:
    """Every option with its value for ``dataset`` (the paper's)."""
    return dict(self.options(self.dataset_options.get(dataset, {})))

  def paper_hparams(self, dataset: str) -> dict:
    """The paper's SAE hyper-parameters for ``dataset``."""
    return dict(self.sae_hparams.get(dataset, self.sae_hparams['ml-1m']))

  def paper_training(self, dataset: str) -> dict:
    """The paper's training settings for ``dataset``."""
    return dict(self.training.get(dataset, self.training['ml-1m']))


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind(
        name='mf', model=mf, scorer=scorers.MFScorer.create,
        schema={
            'batch_users': Option(256, help='SAE-train users per batch'),
            'batch_items': Option(256, help='items per batch'),
            'mf_pred_impl': Option('gram', ('gram', 'direct'),
                                   'prediction loss: gram (exact d x d Gram '
                                   'form) | direct (the batch score matrix)'),
        },
        batch=lambda o: Batching(o['batch_users'], o['batch_items']),
        sae=dict(normalize=True, pre_bias=True),
        sae_hparams={
            'ml-1m': dict(lambda_emb=0.1, lambda_pred=1.0, lambda_l1=0.0,
                          lambda_kl=0.01, rho=0.05, dict_size=22),
            'lastfm-2k': dict(lambda_emb=8.0, lambda_pred=1.0, lambda_l1=0.3,
                              lambda_kl=0.003, rho=0.1, dict_size=70)},
        dataset_options={},
        training={
            'ml-1m': dict(optimizer='sgd', learning_rate=0.05, reg=0.01,
                          reduction='sum', epochs=10),
            'lastfm-2k': dict(optimizer='sgd', learning_rate=0.05, reg=0.01,
                              reduction='sum', epochs=30)},
        eval_block_size=256),
    Kind(
        name='ncf', model=ncf, scorer=scorers.NCFScorer.create,
        schema={
            'batch_pairs': Option(256, help='(user, item) pairs per batch'),
            'ncf_pairs': Option('positive', PAIRS,
                                'batches of positive | random | mixed pairs '
                                '(docs/method.md#sae-batches)'),
            'pred_loss': Option('bce', scorers.NCF_LOSSES,
                                'prediction loss: bce | mse'),
        },
        batch=lambda o: Batching(o['batch_pairs'], o['batch_pairs'],
                                 o['ncf_pairs']),
        sae=dict(normalize=False, pre_bias=False),
        sae_hparams={
            'ml-1m': dict(lambda_emb=2.0, lambda_pred=10.0, lambda_l1=0.0,
                          lambda_kl=0.07, rho=0.05, dict_size=22),
            'lastfm-2k': dict(lambda_emb=2.6, lambda_pred=1.0,
                              lambda_l1=1.27e-5, lambda_kl=0.7, rho=0.05,
                              dict_size=70)},
        dataset_options={'lastfm-2k': dict(pred_loss='mse',
                                           ncf_pairs='random')},
        # docs/method.md#recommenders: Adam, 30 epochs; lr 0.05 (ML-1M) /
        # 1e-3 (Last.FM). Dense Adam at 0.05 collapses on ML-1M (NDCG@10
        # ~0.01), so ML-1M uses 5e-3. Sparse ("lazy") Adam updates only the
        # embedding rows in the batch, as PyTorch's SparseAdam;
        # optimizer='adam' is dense Adam (slower on CPU).
        training={
            'ml-1m': dict(optimizer='sparse_adam', learning_rate=5e-3,
                          reg=0.0, reduction='mean', epochs=30),
            'lastfm-2k': dict(optimizer='sparse_adam', learning_rate=1e-3,
                              reg=0.0, reduction='mean', epochs=30)},
        eval_block_size=64),
)}
#: The kind names, in registry order.
NAMES: tuple[str, ...] = tuple(KINDS)
#: The kind of a ``TrainConfig`` or ``SweepSpec`` that names none.
DEFAULT = NAMES[0]


def get(kind: str) -> Kind:
  """The :class:`Kind` of a name.

  Raises:
    ConfigError: an unknown name, in one line with the known ones.
  """
  try:
    return KINDS[kind]
  except (KeyError, TypeError):
    raise ConfigError(f'unknown recommender kind {kind!r}; known: '
                      f'{", ".join(NAMES)}') from None


def option_names() -> tuple[str, ...]:
  """Every option name of every kind (each once, registry order)."""
  return tuple(dict.fromkeys(n for k in KINDS.values() for n in k.schema))


def make_scorer(kind: str, params: Mapping[str, Any], **options):
  """The frozen scorer of a recommender ``kind`` with these ``params``.

  Args:
    kind: one of :data:`NAMES`.
    params: the trained params (numpy or jax); only the frozen parts beyond
      the embedding tables are kept (the MLP, the biases).
    **options: the kind's options (:attr:`Kind.schema`, e.g. a sweep's
      ``scorer_options``); the others take their defaults.

  Raises:
    ConfigError: an unknown kind, or an option this kind does not take or
      allow (one line naming it).
  """
  k = get(kind)
  return k.scorer(params, dict(k.options(options, where='make_scorer')))
