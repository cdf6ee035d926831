"""The interaction protocol of docs/method.md#protocol (host side, numpy).

:func:`make_split` turns a :class:`~monosem_jax.data.dataset.Dataset` into a
:class:`Split`: per-user held-out test positives, test negatives, the SAE user
split, and the tables of the on-device negative sampler
(:mod:`monosem_jax.data.samplers`).

Example:
  >>> from monosem_jax.data import synthetic
  >>> ds = synthetic.make_world(synthetic.WorldConfig(n_users=50, n_items=40))
  >>> split = make_split(ds, seed=0)
  >>> len(split.test_items) == 5 * len(split.eval_users)
  True
  >>> len(split.sae_test_users) == 50 // 5
  True
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np

from monosem_jax.data.dataset import DataError, Dataset, csr_indptr
from monosem_jax.data.samplers import SamplerTables, make_sampler_tables

TooFew = Literal['train_only', 'drop', 'error']


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
  """A leakage-free split of one dataset (all arrays numpy, indices int32).

  Attributes:
    n_users, n_items: sizes of the index spaces (those of the dataset).
    train_users, train_items: ``(n_train,)`` training positives, sorted by
      (user, item).
    test_users, test_items: ``(n_test,)`` held-out positives, sorted.
    test_neg_users, test_neg_items: ``(n_test_neg,)`` test negatives: never
      positives, never drawn as training negatives.
    eval_users: ``(n_eval,)`` users that have held-out positives.
    sae_train_users, sae_test_users: disjoint sorted user sets covering all
      users; the SAE trains on the first, fidelity is measured on the second.
    forbidden_indptr, forbidden_items: CSR (sorted within each user) of every
      item a user may not get as a training negative: all its positives
      (train and held-out) and its test negatives.
    item_logits: ``(n_items,)`` float32 ``alpha * s_i``, the sampler's
      unnormalised log-probabilities.
    seed, alpha, n_holdout: the options that built it.
  """

  n_users: int
  n_items: int
  train_users: np.ndarray
  train_items: np.ndarray
  test_users: np.ndarray
  test_items: np.ndarray
  test_neg_users: np.ndarray
  test_neg_items: np.ndarray
  eval_users: np.ndarray
  sae_train_users: np.ndarray
  sae_test_users: np.ndarray
  forbidden_indptr: np.ndarray
  forbidden_items: np.ndarray
  item_logits: np.ndarray
  seed: int
  alpha: float
  n_holdout: int

  @property
  def n_train(self) -> int:
    return len(self.train_users)

  def train_indptr(self) -> np.ndarray:
    """``(n_users + 1,)`` CSR row pointer of the training positives."""
    return csr_indptr(self.train_users, self.n_users)

  def test_indptr(self) -> np.ndarray:
    """``(n_users + 1,)`` CSR row pointer of the held-out positives."""
    return csr_indptr(self.test_users, self.n_users)

  def sampler_tables(self) -> 'SamplerTables':
    """Device-resident tables for :func:`sample_negatives`."""
    return make_sampler_tables(self.forbidden_indptr, self.forbidden_items,
                               self.item_logits)

  def arrays(self) -> dict[str, np.ndarray]:
    """All arrays, for saving with ``np.savez``; see :meth:`from_arrays`."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    for k in ('n_users', 'n_items', 'seed', 'n_holdout'):
      out[k] = np.asarray(out[k], np.int64)
    out['alpha'] = np.asarray(self.alpha, np.float64)
    return out

  @classmethod
  def from_arrays(cls, arrays) -> 'Split':
    kw = {}
    for f in dataclasses.fields(cls):
      v = np.asarray(arrays[f.name])
      if f.name in ('n_users', 'n_items', 'seed', 'n_holdout'):
        v = int(v)
      elif f.name == 'alpha':
        v = float(v)
      kw[f.name] = v
    return cls(**kw)


def popularity_logits(popularity: np.ndarray, alpha: float) -> np.ndarray:
  """``alpha * s_i`` with ``s_i = pop_i / sum_j pop_j`` (docs/method.md#protocol)."""
  pop = np.asarray(popularity, np.float64)
  total = pop.sum()
  share = pop / total if total > 0 else np.zeros_like(pop)
  return (alpha * share).astype(np.float32)


def _rank_within_user(users: np.ndarray, keys: np.ndarray) -> np.ndarray:
  """Rank of each row among its user's rows when ordered by ``keys``."""
  order = np.lexsort((keys, users))
  indptr = csr_indptr(users, int(users.max()) + 1 if len(users) else 0)
  rank = np.empty(len(users), np.int64)
  rank[order] = np.arange(len(users)) - indptr[users[order]]
  return rank


def _pair_member(indptr: np.ndarray, items_sorted: np.ndarray,
                 users: np.ndarray, items: np.ndarray) -> np.ndarray:
  """Whether each (user, item) is in a CSR set with items sorted per user."""
  n_items = int(items_sorted.max(initial=0)) + 1
  n_items = max(n_items, int(items.max(initial=0)) + 1)
  n_users = len(indptr) - 1
  row = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(indptr))
  keys = row * n_items + items_sorted
  query = users.astype(np.int64) * n_items + items
  pos = np.clip(np.searchsorted(keys, query), 0, max(0, len(keys) - 1))
  return (keys[pos] == query) if len(keys) else np.zeros(len(users), bool)


def _draw_distinct(rng: np.random.Generator, indptr: np.ndarray,
                   items_sorted: np.ndarray, users: np.ndarray, k: int,
                   logits: np.ndarray, max_rounds: int = 64) -> tuple[np.ndarray, np.ndarray]:
  """Draws k distinct items per user outside its CSR set, p ∝ exp(logits).

  Vectorised rejection sampling. Returns ``(users, items)`` of the draws,
  sorted; users with fewer than k admissible items get all of them.
  """
  n_items = len(logits)
  p = np.exp(logits.astype(np.float64) - logits.max())
  cdf = np.cumsum(p / p.sum())
  deg = np.diff(indptr)[users]
  need = np.minimum(k, n_items - deg).astype(np.int64)
  users = users.astype(np.int64)
  need_left = need.copy()
  have_u = np.zeros(0, np.int64)
  have_i = np.zeros(0, np.int64)
  for _ in range(max_rounds):
    active = need_left > 0
    if not active.any():
      break
    ru, nl = users[active], need_left[active]
    draws = 2 * nl + 4
    cu = np.repeat(ru, draws)
    ci = np.minimum(np.searchsorted(cdf, rng.random(len(cu))), n_items - 1)
    ok = ~_pair_member(indptr, items_sorted, cu, ci)
    cu, ci = cu[ok], ci[ok]
    allu = np.concatenate([have_u, cu])
    alli = np.concatenate([have_i, ci])
    key = allu * n_items + alli
    _, first = np.unique(key, return_index=True)
    # Keep previously accepted draws first, then new ones in draw order.
    first.sort()
    allu, alli = allu[first], alli[first]
    rank = _rank_within_user(allu, np.arange(len(allu)))
    cap = np.zeros(int(users.max(initial=0)) + 1, np.int64)
    cap[users] = need
    keep = rank < cap[allu]
    have_u, have_i = allu[keep], alli[keep]
    count = np.bincount(have_u, minlength=len(cap))
    need_left = need - count[users]
  order = np.lexsort((have_i, have_u))
  return have_u[order], have_i[order]


def filter_interactions(dataset: Dataset, *, min_rating: float | None = None,
                        min_item_users: int = 0, min_user_positives: int = 0,
                        until_stable: bool = True) -> Dataset:
  """Applies the explicit minimum-count filters of the protocol.

  Args:
    dataset: the dataset as loaded.
    min_rating: keep interactions whose rating is >= this (implicit
      feedback threshold); None keeps every interaction (the paper's choice).
    min_item_users: drop items with fewer distinct users.
    min_user_positives: drop users with fewer positives.
    until_stable: repeat the two count filters until nothing changes (the
      HetRec protocol of docs/method.md#data).

  Returns:
    A re-indexed dataset (users and items without interactions removed).

  Raises:
    DataError: when nothing is left, naming the thresholds.
  """
  keep = np.ones(dataset.n_interactions, bool)
  if min_rating is not None:
    if dataset.ratings is None:
      raise DataError(f'{dataset.name}: min_rating given but the dataset has '
                      'no ratings')
    keep &= dataset.ratings >= min_rating
  while True:
    item_n = np.bincount(dataset.items[keep], minlength=dataset.n_items)
    k2 = keep & (item_n[dataset.items] >= min_item_users)
    user_n = np.bincount(dataset.users[k2], minlength=dataset.n_users)
    k2 &= user_n[dataset.users] >= min_user_positives
    changed = (k2 != keep).any()
    keep = k2
    if not (until_stable and changed):
      break
  if not keep.any():
    raise DataError(
        f'{dataset.name}: no interactions left after filtering (min_rating='
        f'{min_rating}, min_item_users={min_item_users}, '
        f'min_user_positives={min_user_positives})')
  return dataset.select(keep)


def make_split(
    dataset: Dataset,
    *,
    n_holdout: int = 5,
    n_test_negatives: int = 5,
    sae_test_fraction: float = 0.2,
    alpha: float = 1.0,
    seed: int = 42,
    min_train_positives: int = 1,
    too_few: TooFew = 'train_only',
) -> Split:
  """Builds the leakage-free protocol split (docs/method.md#protocol).

  Args:
    dataset: the interactions (every row is a positive).
    n_holdout: held-out positives per user, drawn without replacement.
    n_test_negatives: test negatives per user (never training negatives).
    sae_test_fraction: fraction of users (floor) held out of SAE training.
    alpha: sampler temperature on popularity share; 0 = uniform. The paper
      uses 1 for ML-1M and 2 for Last.FM.
    seed: everything here is a deterministic function of it.
    min_train_positives: a user needs ``n_holdout + min_train_positives``
      positives to get a hold-out.
    too_few: what to do with users below that: ``'train_only'`` keeps all
      their positives for training and gives them no test items (they are
      not in ``eval_users``); ``'drop'`` removes their interactions entirely
      (they keep their index but have no positives); ``'error'`` raises.

  Returns:
    A :class:`Split`.
  """
  if n_holdout < 0 or n_test_negatives < 0:
    raise DataError('make_split: n_holdout and n_test_negatives must be >= 0')
  if not 0.0 <= sae_test_fraction < 1.0:
    raise DataError(f'make_split: sae_test_fraction={sae_test_fraction} must '
                    'be in [0, 1)')
  if too_few not in ('train_only', 'drop', 'error'):
    raise DataError(f"make_split: too_few={too_few!r}; expected 'train_only',"
                    " 'drop' or 'error'")
  if not math.isfinite(alpha):
    raise DataError(f'make_split: alpha={alpha} must be finite')
  if dataset.n_interactions == 0:
    raise DataError(f'{dataset.name}: no interactions to split')
  rng = np.random.default_rng(seed)
  n_users, n_items = dataset.n_users, dataset.n_items
  users = dataset.users.astype(np.int64)
  items = dataset.items.astype(np.int64)
  deg = np.bincount(users, minlength=n_users)
  enough = deg >= n_holdout + min_train_positives
  short = np.flatnonzero(~enough & (deg > 0))
  if len(short) and too_few == 'error':
    raise DataError(
        f'{dataset.name}: {len(short)} users have fewer than '
        f'{n_holdout + min_train_positives} positives (e.g. user id '
        f'{dataset.user_ids[short[0]]}); filter them or pass too_few=')
  keep_rows = np.ones(len(users), bool)
  if too_few == 'drop':
    keep_rows = enough[users]
  # Hold out n_holdout positives per eligible user: random key, rank per user.
  rank = _rank_within_user(users, rng.random(len(users)))
  test = keep_rows & enough[users] & (rank < n_holdout)
  train = keep_rows & ~test
  train_u, train_i = users[train], items[train]
  test_u, test_i = users[test], items[test]
  order = np.lexsort((test_i, test_u))
  test_u, test_i = test_u[order], test_i[order]
  if len(train_u) == 0:
    raise DataError(f'{dataset.name}: the split left no training positives')
  # All positives (train + test), sorted per user: items already sorted.
  pos_indptr = csr_indptr(users, n_users)
  logits = popularity_logits(dataset.item_popularity, alpha)
  eval_users = np.flatnonzero(enough) if n_holdout > 0 else np.zeros(0, np.int64)
  if n_test_negatives > 0 and len(eval_users):
    neg_u, neg_i = _draw_distinct(rng, pos_indptr, items, eval_users,
                                  n_test_negatives, logits)
  else:
    neg_u = neg_i = np.zeros(0, np.int64)
  # Forbidden = all positives + test negatives, sorted per user.
  fu = np.concatenate([users, neg_u])
  fi = np.concatenate([items, neg_i])
  order = np.lexsort((fi, fu))
  fu, fi = fu[order], fi[order]
  forbidden_indptr = csr_indptr(fu, n_users)
  # SAE user split: floor(fraction * N) users held out.
  n_sae_test = int(math.floor(sae_test_fraction * n_users))
  perm = rng.permutation(n_users)
  sae_test = np.sort(perm[:n_sae_test])
  sae_train = np.sort(perm[n_sae_test:])
  i32 = lambda a: np.ascontiguousarray(a, np.int32)
  return Split(
      n_users=n_users, n_items=n_items,
      train_users=i32(train_u), train_items=i32(train_i),
      test_users=i32(test_u), test_items=i32(test_i),
      test_neg_users=i32(neg_u), test_neg_items=i32(neg_i),
      eval_users=i32(eval_users),
      sae_train_users=i32(sae_train), sae_test_users=i32(sae_test),
      forbidden_indptr=forbidden_indptr.astype(np.int64),
      forbidden_items=i32(fi), item_logits=logits,
      seed=int(seed), alpha=float(alpha), n_holdout=int(n_holdout))
