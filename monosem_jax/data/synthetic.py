"""A seeded synthetic world with planted item concepts: the embedded default.

Generative model (all vectorised numpy):

* K concepts ("genres"). Every item has one concept; a fraction
  ``two_concept_fraction`` of items has a second one. Titles name every
  concept of the item: ``'item 7 [drama, war]'``.
* Item popularity: a Zipf-like log-weight ``b_i = -popularity_exponent *
  log(1 + rank_i)`` over a random permutation of items.
* Era: each concept has a centre year; an item's year is its first concept's
  centre plus noise (so era is partly, not wholly, explained by genre).
* Users have sparse tastes: 1 to ``max_user_concepts`` concepts with
  Dirichlet weights ``w_u``.
* User u interacts with ``n_u`` (log-normal) distinct items drawn without
  replacement (Gumbel top-k) from ``softmax(strength * w_u . c_i + b_i)``.

The returned :class:`~monosem_jax.data.dataset.Dataset` carries the planted
truth in ``extras``: ``'concept_truth'`` (``(n_items, K)`` bool, identical to
``item_concepts``), ``'user_preferences'`` (``(n_users, K)``) and
``'popularity_logit'`` (``(n_items,)``).

Example:
  >>> ds = make_world(WorldConfig(n_users=100, n_items=80, seed=1))
  >>> ds.n_users, ds.n_items, ds.n_concepts
  (100, 80, 8)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from monosem_jax.data.dataset import DataError, Dataset

_NAMES = ('action', 'comedy', 'drama', 'horror', 'romance', 'scifi',
          'documentary', 'western', 'musical', 'crime', 'fantasy', 'war')


@dataclasses.dataclass(frozen=True)
class WorldConfig:
  """Size and shape of the synthetic world (defaults: seconds on a laptop).

  ``WorldConfig.ml1m_scale()`` gives a world the size of MovieLens-1M.
  """

  n_users: int = 1000
  n_items: int = 600
  n_concepts: int = 8
  two_concept_fraction: float = 0.25
  popularity_exponent: float = 0.8
  max_user_concepts: int = 3
  concept_strength: float = 4.0
  mean_positives: float = 40.0
  min_positives: int = 12
  seed: int = 0

  @classmethod
  def ml1m_scale(cls, **overrides) -> 'WorldConfig':
    return cls(**{'n_users': 6040, 'n_items': 3706, 'n_concepts': 18,
                  'mean_positives': 120.0, **overrides})

  def validate(self):
    for f in ('n_users', 'n_items', 'n_concepts', 'max_user_concepts',
              'min_positives'):
      if getattr(self, f) < 1:
        raise DataError(f'WorldConfig.{f}={getattr(self, f)} must be >= 1')
    if not 0.0 <= self.two_concept_fraction <= 1.0:
      raise DataError('WorldConfig.two_concept_fraction must be in [0, 1]')
    if self.n_concepts < 2 and self.two_concept_fraction > 0:
      raise DataError('WorldConfig: two-concept items need n_concepts >= 2')
    if self.min_positives >= self.n_items:
      raise DataError('WorldConfig.min_positives must be < n_items')
    if self.mean_positives <= 0:
      raise DataError('WorldConfig.mean_positives must be > 0')


def concept_names(n: int) -> tuple[str, ...]:
  return tuple(_NAMES[k] if k < len(_NAMES) else f'concept_{k}'
               for k in range(n))


def make_world(config: WorldConfig = WorldConfig()) -> Dataset:
  """Samples the synthetic world. Deterministic in ``config.seed``."""
  config.validate()
  rng = np.random.default_rng(config.seed)
  nu, ni, k = config.n_users, config.n_items, config.n_concepts
  # Item concepts.
  first = rng.integers(0, k, ni)
  concepts = np.zeros((ni, k), bool)
  concepts[np.arange(ni), first] = True
  two = rng.random(ni) < config.two_concept_fraction
  second = (first + rng.integers(1, max(2, k), ni)) % k
  concepts[np.flatnonzero(two), second[two]] = True
  # Popularity and era.
  pop_rank = rng.permutation(ni)
  pop_logit = -config.popularity_exponent * np.log1p(pop_rank)
  centre = rng.permutation(np.linspace(1940, 2000, k).round().astype(int))
  year = np.clip(centre[first] + rng.normal(0, 8, ni).round().astype(int),
                 1920, 2000).astype(np.int32)
  # Sparse user tastes.
  n_pref = rng.integers(1, config.max_user_concepts + 1, nu)
  scores = rng.random((nu, k))
  rank = np.argsort(np.argsort(-scores, axis=1), axis=1)
  active = rank < n_pref[:, None]
  w = rng.gamma(1.0, 1.0, (nu, k)) * active
  w /= w.sum(1, keepdims=True)
  # Interaction counts and draws (Gumbel top-k without replacement).
  sigma = 0.6
  n_pos = rng.lognormal(np.log(config.mean_positives) - sigma**2 / 2, sigma, nu)
  n_pos = np.clip(n_pos.round().astype(np.int64), config.min_positives,
                  max(config.min_positives, ni // 2))
  users_out, items_out = [], []
  block = max(1, 2_000_000 // ni)
  cf = concepts.astype(np.float32)
  for s in range(0, nu, block):  # blocks bound memory, not a per-user loop
    wb = w[s:s + block].astype(np.float32)
    logit = config.concept_strength * (wb @ cf.T) + pop_logit[None, :]
    g = logit - np.log(-np.log(rng.random(logit.shape)))
    order = np.argsort(-g, axis=1)
    take = np.arange(ni)[None, :] < n_pos[s:s + block, None]
    uu = np.broadcast_to(np.arange(s, s + len(wb))[:, None], order.shape)
    users_out.append(uu[take])
    items_out.append(order[take])
  users = np.concatenate(users_out)
  items = np.concatenate(items_out)
  names = concept_names(k)
  item_ids = np.arange(1, ni + 1)
  # every planted concept in the title: the first, then the second if any
  named = np.asarray(names, object)
  titles = (np.char.add('item ', item_ids.astype(str)).astype(object)
            + ' [' + named[first]
            + np.where(two, ', ' + named[second], '').astype(object) + ']')
  return Dataset.from_pairs(
      'synthetic', users + 1, items + 1, all_item_ids=item_ids,
      concept_names=names, concept_table=(item_ids, concepts),
      year_table=(item_ids, year), title_table=(item_ids, titles),
      extras={'concept_truth': concepts, 'user_preferences': w,
              'popularity_logit': pop_logit.astype(np.float32),
              'world_config': dataclasses.asdict(config)})
