"""The one dataset type every loader returns.

A :class:`Dataset` holds contiguous index spaces (users ``0..n_users-1``, items
``0..n_items-1``) with the mapping back to the original ids, the positive
interactions as two parallel index arrays sorted by (user, item) (a COO view;
:meth:`Dataset.csr` gives the CSR view), and item concept labels.

Nothing here is ever a dense ``users x items`` table.

Example:
  >>> import numpy as np
  >>> ds = Dataset.from_pairs('toy', user_ids=np.array([10, 10, 20]),
  ...                         item_ids=np.array([7, 9, 7]))
  >>> ds.n_users, ds.n_items, ds.n_interactions
  (2, 2, 3)
  >>> ds.item_popularity.tolist(), ds.item_popularity_rank.tolist()
  ([2, 1], [0, 1])
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from monosem_jax.errors import MonosemError


def csr_indptr(rows: np.ndarray, n_rows: int) -> np.ndarray:
  """CSR row pointer of row-sorted ``rows``: row r spans
  ``[indptr[r], indptr[r + 1])``.

  >>> csr_indptr(np.array([0, 0, 2]), 3).tolist()
  [0, 2, 2, 3]
  """
  indptr = np.zeros(n_rows + 1, np.int64)
  np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
  return indptr


def csr_gather(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The CSR rows ``rows`` flattened: ``(owner, values, lengths)``, where
  ``owner`` is each value's position in ``rows``.

  >>> o, v, n = csr_gather(np.array([0, 2, 2, 3]), np.array([5, 6, 7]),
  ...                      np.array([2, 0]))
  >>> o.tolist(), v.tolist(), n.tolist()
  ([0, 1, 1], [7, 5, 6], [1, 2])
  """
  lo, hi = indptr[rows], indptr[rows + 1]
  lens = hi - lo
  owner = np.repeat(np.arange(len(rows)), lens)
  start = np.repeat(lo - np.cumsum(lens) + lens, lens)
  return owner, indices[np.arange(lens.sum()) + start], lens


class DataError(MonosemError):
  """Raised for malformed files, bad options or empty results.

  The message always names the file (and line) or the option at fault.
  """


DECADE_BUCKETS = ('<=1969', '1970s', '1980s', '1990s', '2000s+')


def decade_bucket(year: np.ndarray) -> np.ndarray:
  """Maps years to the era buckets of the paper (docs/method.md#evaluation).

  Args:
    year: int array, -1 where unknown.

  Returns:
    int array of the same shape: 0 '<=1969', 1 '1970s', 2 '1980s', 3 '1990s',
    4 '2000s+', -1 unknown.
  """
  year = np.asarray(year)
  out = np.clip((year - 1960) // 10, 0, 4).astype(np.int32)
  return np.where(year < 0, -1, out)


def _id_array(ids) -> np.ndarray:
  """Original ids as int64, or as unicode strings when they are not integers."""
  ids = np.asarray(ids)
  if ids.dtype.kind in 'iub':
    return ids.astype(np.int64)
  return ids.astype(str)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """Implicit-feedback interactions plus item concept labels.

  Attributes:
    name: dataset name, e.g. ``'ml-1m'``.
    user_ids: ``(n_users,)`` original id of each user index (int64, or str
      where the source's ids are not integers), ascending.
    item_ids: ``(n_items,)`` original id of each item index, ascending.
    users: ``(n_interactions,)`` int32 user index of each positive, sorted by
      (user, item), no duplicate pairs.
    items: ``(n_interactions,)`` int32 item index of each positive.
    ratings: ``(n_interactions,)`` float32 explicit rating or play count, or
      None when the source has none.
    concept_names: names of the item concepts (genres or tags), in column order.
    item_concepts: ``(n_items, n_concepts)`` bool multi-hot concept table.
    item_year: ``(n_items,)`` int32 release year, -1 where unknown, or None
      when the dataset has no years at all.
    item_titles: ``(n_items,)`` object array of display names.
    user_features: optional mapping of per-user ``(n_users,)`` arrays
      (e.g. ``'age'``, ``'gender'``).
    extras: free-form metadata (e.g. the synthetic world's ground truth).
  """

  name: str
  user_ids: np.ndarray
  item_ids: np.ndarray
  users: np.ndarray
  items: np.ndarray
  ratings: np.ndarray | None
  concept_names: tuple[str, ...]
  item_concepts: np.ndarray
  item_year: np.ndarray | None
  item_titles: np.ndarray
  user_features: Mapping[str, np.ndarray] = dataclasses.field(
      default_factory=dict)
  extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    n_users, n_items = len(self.user_ids), len(self.item_ids)
    if len(self.users) != len(self.items):
      raise DataError(f'{self.name}: users and items differ in length')
    if self.item_concepts.shape != (n_items, len(self.concept_names)):
      raise DataError(
          f'{self.name}: item_concepts has shape {self.item_concepts.shape},'
          f' expected ({n_items}, {len(self.concept_names)})')
    if len(self.users):
      if self.users.min() < 0 or self.users.max() >= n_users:
        raise DataError(f'{self.name}: user index out of range')
      if self.items.min() < 0 or self.items.max() >= n_items:
        raise DataError(f'{self.name}: item index out of range')

  # -- sizes --------------------------------------------------------------
  @property
  def n_users(self) -> int:
    return len(self.user_ids)

  @property
  def n_items(self) -> int:
    return len(self.item_ids)

  @property
  def n_interactions(self) -> int:
    return len(self.users)

  @property
  def n_concepts(self) -> int:
    return len(self.concept_names)

  # -- derived views ------------------------------------------------------
  def csr(self) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(indptr, indices)``: user u's items are ``indices[indptr[u]:indptr[u+1]]``."""
    return csr_indptr(self.users, self.n_users), self.items

  @property
  def user_degree(self) -> np.ndarray:
    """``(n_users,)`` number of positives per user."""
    return np.bincount(self.users, minlength=self.n_users)

  @property
  def item_popularity(self) -> np.ndarray:
    """``(n_items,)`` number of distinct users per item."""
    return np.bincount(self.items, minlength=self.n_items)

  @property
  def item_popularity_rank(self) -> np.ndarray:
    """``(n_items,)`` popularity rank, 0 = most popular (ties by item index)."""
    order = np.argsort(-self.item_popularity, kind='stable')
    rank = np.empty(self.n_items, np.int64)
    rank[order] = np.arange(self.n_items)
    return rank

  @property
  def item_decade(self) -> np.ndarray | None:
    """``(n_items,)`` era bucket index into :data:`DECADE_BUCKETS`, or None."""
    return None if self.item_year is None else decade_bucket(self.item_year)

  def concept_index(self, name: str) -> int:
    try:
      return self.concept_names.index(name)
    except ValueError:
      raise KeyError(f'{self.name}: unknown concept {name!r}; known: '
                     f'{", ".join(self.concept_names)}') from None

  def summary(self) -> dict[str, Any]:
    """Plain-python statistics, suitable for printing as JSON."""
    deg = self.user_degree
    out = {
        'name': self.name,
        'n_users': self.n_users,
        'n_items': self.n_items,
        'n_interactions': self.n_interactions,
        'density': self.n_interactions / max(1, self.n_users * self.n_items),
        'positives_per_user': {'min': int(deg.min()) if len(deg) else 0,
                               'median': float(np.median(deg)) if len(deg) else 0.0,
                               'max': int(deg.max(initial=0))},
        'n_concepts': self.n_concepts,
        'concept_item_counts': dict(zip(
            self.concept_names,
            map(int, self.item_concepts.sum(0)))),
    }
    if self.item_year is not None:
      dec = self.item_decade
      out['decade_counts'] = {b: int((dec == k).sum())
                              for k, b in enumerate(DECADE_BUCKETS)}
    return out

  # -- construction -------------------------------------------------------
  @classmethod
  def from_pairs(
      cls,
      name: str,
      user_ids: np.ndarray,
      item_ids: np.ndarray,
      ratings: np.ndarray | None = None,
      *,
      all_item_ids: np.ndarray | None = None,
      concept_names: Sequence[str] = (),
      concept_table: tuple[np.ndarray, np.ndarray] | None = None,
      year_table: tuple[np.ndarray, np.ndarray] | None = None,
      title_table: tuple[np.ndarray, np.ndarray] | None = None,
      user_table: tuple[np.ndarray, Mapping[str, np.ndarray]] | None = None,
      extras: Mapping[str, Any] | None = None,
  ) -> 'Dataset':
    """Builds a dataset from raw (original id) interaction pairs.

    Users and items are indexed in ascending original-id order; only items
    with at least one interaction get an index unless ``all_item_ids`` is
    given. Duplicate pairs are merged (the last rating wins).

    Args:
      name: dataset name.
      user_ids, item_ids: ``(n,)`` original ids of each interaction.
      ratings: optional ``(n,)`` values.
      all_item_ids: optional ids to index even without interactions.
      concept_names: concept column names.
      concept_table: ``(ids (m,), multi-hot (m, n_concepts))`` metadata keyed
        by original item id; items missing from it get an all-False row.
      year_table: ``(ids (m,), years (m,))``; missing items get -1.
      title_table: ``(ids (m,), titles (m,))``; missing items get their id.
      user_table: ``(ids (m,), {feature: (m,) values})``.
      extras: free-form metadata.
    """
    user_ids = _id_array(user_ids)
    item_ids = _id_array(item_ids)
    uniq_u, u_idx = np.unique(user_ids, return_inverse=True)
    if all_item_ids is not None:
      uniq_i = np.unique(np.concatenate([_id_array(all_item_ids), item_ids]))
      i_idx = np.searchsorted(uniq_i, item_ids)
    else:
      uniq_i, i_idx = np.unique(item_ids, return_inverse=True)
    n_items = len(uniq_i)
    key = u_idx.astype(np.int64) * n_items + i_idx
    # Keep the last occurrence of each pair, in (user, item) order.
    rev = key[::-1]
    _, first_rev = np.unique(rev, return_index=True)
    keep = len(key) - 1 - first_rev
    keep.sort()
    keep = keep[np.argsort(key[keep], kind='stable')]
    users = u_idx[keep].astype(np.int32)
    items = i_idx[keep].astype(np.int32)
    r = None if ratings is None else np.asarray(ratings, np.float32)[keep]

    def lookup(table, fill, dtype):
      ids, values = table
      ids = _id_array(ids)
      values = np.asarray(values)
      out_shape = (n_items,) + values.shape[1:]
      out = np.full(out_shape, fill, dtype=dtype)
      order = np.argsort(ids, kind='stable')
      pos = np.searchsorted(ids[order], uniq_i)
      pos = np.clip(pos, 0, max(0, len(ids) - 1))
      hit = (ids[order][pos] == uniq_i) if len(ids) else np.zeros(n_items, bool)
      out[hit] = values[order][pos[hit]]
      return out

    concept_names = tuple(concept_names)
    if concept_table is not None:
      item_concepts = lookup(concept_table, False, bool)
    else:
      item_concepts = np.zeros((n_items, len(concept_names)), bool)
    item_year = None if year_table is None else lookup(year_table, -1, np.int32)
    if title_table is not None:
      titles = lookup(title_table, None, object)
      missing = np.array([t is None for t in titles], bool)
      titles[missing] = uniq_i[missing].astype(str)
    else:
      titles = uniq_i.astype(str).astype(object)
    user_features = {}
    if user_table is not None:
      ids, feats = user_table
      ids = _id_array(ids)
      order = np.argsort(ids, kind='stable')
      pos = np.clip(np.searchsorted(ids[order], uniq_u), 0, max(0, len(ids) - 1))
      hit = ids[order][pos] == uniq_u if len(ids) else np.zeros(len(uniq_u), bool)
      for k, v in feats.items():
        v = np.asarray(v)[order][pos]
        if v.dtype.kind in 'iu':
          v = np.where(hit, v, -1)
        else:
          v = np.where(hit, v, None).astype(object)
        user_features[k] = v
    return cls(name=name, user_ids=uniq_u, item_ids=uniq_i, users=users,
               items=items, ratings=r, concept_names=concept_names,
               item_concepts=item_concepts, item_year=item_year,
               item_titles=titles, user_features=user_features,
               extras=dict(extras or {}))

  def select(self, keep_pairs: np.ndarray, name: str | None = None) -> 'Dataset':
    """Returns a dataset restricted to the kept interactions, re-indexed.

    Users and items left without interactions are dropped; their metadata
    rows go with them.

    Args:
      keep_pairs: ``(n_interactions,)`` bool mask.
      name: optional new name.
    """
    keep_pairs = np.asarray(keep_pairs, bool)
    users, items = self.users[keep_pairs], self.items[keep_pairs]
    ku = np.unique(users)
    ki = np.unique(items)
    umap = np.full(self.n_users, -1, np.int64)
    umap[ku] = np.arange(len(ku))
    imap = np.full(self.n_items, -1, np.int64)
    imap[ki] = np.arange(len(ki))
    extras = dict(self.extras)
    for key, value in self.extras.items():
      # Per-item arrays in extras follow the item re-indexing.
      if isinstance(value, np.ndarray) and value.shape[:1] == (self.n_items,):
        extras[key] = value[ki]
    return Dataset(
        name=name or self.name,
        user_ids=self.user_ids[ku], item_ids=self.item_ids[ki],
        users=umap[users].astype(np.int32), items=imap[items].astype(np.int32),
        ratings=None if self.ratings is None else self.ratings[keep_pairs],
        concept_names=self.concept_names,
        item_concepts=self.item_concepts[ki],
        item_year=None if self.item_year is None else self.item_year[ki],
        item_titles=self.item_titles[ki],
        user_features={k: v[ku] for k, v in self.user_features.items()},
        extras=extras)
