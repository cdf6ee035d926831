"""On-device samplers: training negatives and the epoch shuffle (jittable).

:func:`sample_negatives` is a pure, jittable function: given the sampler
tables (:meth:`monosem_jax.data.protocol.Split.sampler_tables`), a PRNG key
and a batch of users it draws one negative item per user with
``p(i) ∝ exp(alpha * s_i)`` over the items the user never interacted with
(held-out positives and test negatives excluded too), ``s_i`` being item i's
share of all popularity (docs/method.md#protocol).
:func:`sample_negatives_unique` draws each user's negatives of an epoch
without replacement. :func:`feistel_permutation` shuffles an epoch.

Example:
  >>> import jax, numpy as np
  >>> from monosem_jax.data import protocol, synthetic
  >>> ds = synthetic.make_world(synthetic.WorldConfig(n_users=50, n_items=40))
  >>> split = protocol.make_split(ds, seed=0)
  >>> tables = split.sampler_tables()
  >>> neg, ok = sample_negatives(tables, jax.random.PRNGKey(0),
  ...                            jax.numpy.asarray(split.train_users))
  >>> bool(ok.all())
  True
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from monosem_jax.data.dataset import DataError


# ----------------------------------------------------------------------------
# On-device negative sampler.


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class SamplerTables:
  """Arrays for :func:`sample_negatives` (a pytree; ``n_search`` is static).

  Attributes:
    indptr: ``(n_users + 1,)`` int32 CSR pointer of forbidden items.
    items: ``(nnz,)`` int32 forbidden items, sorted within each user.
    cdf: ``(n_items,)`` float32 cumulative sampling distribution.
    bits: ``(n_users, ceil(n_items / 32))`` uint32 bitmap of the same
      forbidden sets (bit ``i % 32`` of word ``i // 32``), for
      :func:`sample_negatives_unique`.
    n_search: binary-search depth, ``ceil(log2(max_row + 1))``.
  """

  indptr: jax.Array
  items: jax.Array
  cdf: jax.Array
  bits: jax.Array
  n_search: int

  def tree_flatten(self):
    return (self.indptr, self.items, self.cdf, self.bits), self.n_search

  @classmethod
  def tree_unflatten(cls, n_search, children):
    return cls(*children, n_search=n_search)


def make_sampler_tables(indptr: np.ndarray, items: np.ndarray,
                        logits: np.ndarray) -> SamplerTables:
  if indptr[-1] >= 2**31:
    raise DataError('sampler: more than 2^31 forbidden pairs')
  p = np.exp(logits.astype(np.float64) - logits.max())
  cdf = np.cumsum(p / p.sum())
  cdf[-1] = 1.0
  max_row = int(np.diff(indptr).max(initial=0))
  n_users, n_items = len(indptr) - 1, len(logits)
  rows = np.repeat(np.arange(n_users), np.diff(indptr))
  items = np.asarray(items, np.int64)
  bits = np.zeros((n_users, (n_items + 31) // 32), np.uint32)
  np.bitwise_or.at(bits, (rows, items >> 5),
                   np.left_shift(np.uint32(1), (items & 31).astype(np.uint32)))
  return SamplerTables(
      indptr=jnp.asarray(indptr, jnp.int32),
      items=jnp.asarray(items, jnp.int32),
      cdf=jnp.asarray(cdf, jnp.float32),
      bits=jnp.asarray(bits),
      n_search=max(1, int(math.ceil(math.log2(max_row + 1)))))


def is_forbidden(tables: SamplerTables, users: jax.Array,
                 items: jax.Array) -> jax.Array:
  """Whether ``items[b]`` is in user ``users[b]``'s forbidden set.

  A branch-free binary search inside each user's CSR row, ``n_search`` steps.
  """
  lo = tables.indptr[users]
  hi = tables.indptr[users + 1]
  end = hi

  def body(_, carry):
    lo, hi = carry
    mid = (lo + hi) // 2
    # Rows are non-empty while lo < hi; clamp mid for empty rows.
    val = tables.items[jnp.clip(mid, 0, tables.items.shape[0] - 1)]
    go_right = (lo < hi) & (val < items)
    lo = jnp.where(go_right, mid + 1, lo)
    hi = jnp.where((lo < hi) & ~go_right, mid, hi)
    return lo, hi

  lo, _ = jax.lax.fori_loop(0, tables.n_search + 1, body, (lo, hi))
  hit = tables.items[jnp.clip(lo, 0, tables.items.shape[0] - 1)] == items
  return (lo < end) & hit


def _draw(tables: SamplerTables, key: jax.Array, shape) -> jax.Array:
  """i.i.d. items from the sampling law (inverse CDF), int32 of ``shape``."""
  u = jax.random.uniform(key, shape, jnp.float32)
  return jnp.minimum(jnp.searchsorted(tables.cdf, u, side='right'),
                     tables.cdf.shape[0] - 1).astype(jnp.int32)


def _redraw_buffer(n: int) -> int:
  """Entries redrawn per compacted round: ``max(1024, n // 32)``, at most n."""
  return int(min(n, max(1024, n // 32)))


def sample_negatives(tables: SamplerTables, key: jax.Array, users: jax.Array,
                     full_rounds: int = 3, max_rounds: int = 64
                     ) -> tuple[jax.Array, jax.Array]:
  """Draws one negative item per entry of ``users`` (jittable).

  Items come from ``p(i) ∝ exp(alpha * s_i)`` restricted to the items the
  user may get, by rejection sampling: a forbidden draw is redrawn
  independently until it is allowed, which leaves exactly that law.
  The first ``full_rounds`` redraw rounds run over all ``B`` entries; after
  that only the still-rejected entries are redrawn, gathered into a buffer of
  ``max(1024, B // 32)`` (heavy users, with half the catalogue forbidden,
  would otherwise force ~20 full-size rounds).

  Args:
    tables: from :meth:`Split.sampler_tables`.
    key: PRNG key.
    users: ``(B,)`` int32 user indices (e.g. ``split.train_users`` for a 1:1
      epoch of negatives).
    full_rounds: redraw rounds over all entries.
    max_rounds: cap on the compacted redraw passes; a user whose forbidden
      set covers nearly all the catalogue could exhaust it.

  Returns:
    ``(items (B,) int32, valid (B,) bool)``; ``valid`` is False only where
    every redraw hit a forbidden item, e.g. for a user who interacted with
    the whole catalogue (weight such rows 0).
  """
  n = users.shape[0]
  cap = _redraw_buffer(n)
  draw = functools.partial(_draw, tables)

  def full_round(r, carry):
    items, bad = carry
    new = draw(jax.random.fold_in(key, r), users.shape)
    items = jnp.where(bad, new, items)
    return items, is_forbidden(tables, users, items)

  items = draw(jax.random.fold_in(key, 0), users.shape)
  bad = is_forbidden(tables, users, items)
  items, bad = jax.lax.fori_loop(1, full_rounds + 1, full_round, (items, bad))

  def cond(carry):
    _, bad, r = carry
    return bad.any() & (r < max_rounds)

  def compact_round(carry):
    items, bad, r = carry
    idx = jnp.nonzero(bad, size=cap, fill_value=n)[0]
    sub_users = users.at[idx].get(mode='fill', fill_value=0)
    new = draw(jax.random.fold_in(key, full_rounds + 1 + r), (cap,))
    still = is_forbidden(tables, sub_users, new)
    items = items.at[idx].set(jnp.where(still, items.at[idx].get(
        mode='fill', fill_value=0), new), mode='drop')
    bad = bad.at[idx].set(still, mode='drop')
    return items, bad, r + 1

  items, bad, _ = jax.lax.while_loop(cond, compact_round, (items, bad, 0))
  return items, ~bad


def _bit_is_set(bits: jax.Array, users: jax.Array, items: jax.Array) -> jax.Array:
  word = bits[users, items >> 5]
  return ((word >> (items & 31).astype(jnp.uint32)) & 1) == 1


_DENSE_CLAIM_LIMIT = 2**26  # users x items cells for the scatter-min path


def _first_occurrence(users: jax.Array, items: jax.Array,
                      shape: tuple[int, int] | None = None) -> jax.Array:
  """True for the first (lowest-index) entry of each distinct (user, item).

  With ``shape = (n_users, n_items)`` small enough, a scatter-min of entry
  indices into a dense claim table (one pass, no sort); otherwise a stable
  sort.
  """
  n = users.shape[0]
  if shape is not None and shape[0] * shape[1] <= _DENSE_CLAIM_LIMIT:
    cell = users * shape[1] + items
    claim = jnp.full((shape[0] * shape[1],), n, jnp.int32).at[cell].min(
        jnp.arange(n, dtype=jnp.int32))
    return claim[cell] == jnp.arange(n, dtype=jnp.int32)
  order = jnp.lexsort((items, users))  # stable: ties keep index order
  su, si = users[order], items[order]
  repeat = jnp.concatenate([jnp.zeros((1,), bool),
                            (su[1:] == su[:-1]) & (si[1:] == si[:-1])])
  return jnp.zeros(users.shape, bool).at[order].set(~repeat)


def sample_negatives_unique(tables: SamplerTables, key: jax.Array,
                            users: jax.Array, max_rounds: int = 8,
                            per_round: int = 8
                            ) -> tuple[jax.Array, jax.Array]:
  """Like :func:`sample_negatives`, but without replacement within a user.

  Each user gets as many distinct negatives as it has entries in ``users``,
  distributed exactly as successive sampling without replacement from
  ``p(i) ∝ exp(alpha * s_i)`` over its allowed items (docs/method.md#protocol). It
  uses the identity "successive sampling = the first n distinct values of
  an i.i.d. stream": entries draw i.i.d. values in rounds (stream order =
  round, then entry index, then draw); a value already taken by an earlier
  entry of the same user, or forbidden, is skipped. Round 0 gives every
  entry one draw and is deduplicated by one sort; later rounds give only the
  pending entries (compacted to ``max(1024, B // 32)``) ``per_round`` draws
  each, checked against a per-user bitmap of taken items.

  Args:
    tables: from :meth:`Split.sampler_tables`.
    key: PRNG key.
    users: ``(B,)`` int32 user indices, any order.
    max_rounds: cap on redraw rounds.
    per_round: draws per pending entry in each redraw round.

  Returns:
    ``(items (B,) int32, valid (B,) bool)``; within a user the valid items
    are distinct. ``valid`` is False where a user ran out of rounds (only
    users whose entries nearly exhaust their allowed items; weight 0).
  """
  n = users.shape[0]
  n_items = tables.cdf.shape[0]
  cap = _redraw_buffer(n)
  k0, k1 = jax.random.split(key)
  items, ok = sample_negatives(tables, k0, users)
  bad = ~(ok & _first_occurrence(users, items, (tables.bits.shape[0], n_items)))
  one = jnp.uint32(1)

  def mark(taken, u, i, accept):
    # Accepted (user, item) pairs are distinct and not yet set: add == or.
    return taken.at[u, i >> 5].add(
        jnp.where(accept, one << (i & 31).astype(jnp.uint32), jnp.uint32(0)))

  taken = mark(tables.bits, users, items, ~bad)

  def cond(carry):
    _, bad, _, r = carry
    return bad.any() & (r < max_rounds)

  def body(carry):
    items, bad, taken, r = carry
    idx = jnp.nonzero(bad, size=cap, fill_value=n)[0]
    slot = idx < n
    su = users.at[idx].get(mode='fill', fill_value=0)
    # Each pending entry reads up to `per_round` fresh draws and takes the
    # first one that is not taken yet.
    cands = _draw(tables, jax.random.fold_in(k1, r), (cap, per_round))
    free = ~_bit_is_set(taken, su[:, None], cands)
    pick = jnp.argmax(free, axis=1)
    cand = jnp.take_along_axis(cands, pick[:, None], axis=1)[:, 0]
    found = slot & free.any(axis=1)
    # Among this round's picks of one user, the lowest entry index wins.
    first = _first_occurrence(jnp.where(found, su, -1),
                              jnp.where(found, cand, -1 - jnp.arange(cap)))
    accept = found & first
    items = items.at[idx].set(
        jnp.where(accept, cand, items.at[idx].get(mode='fill', fill_value=0)),
        mode='drop')
    bad = bad.at[idx].set(~accept, mode='drop')
    return items, bad, mark(taken, su, cand, accept), r + 1

  items, bad, _, _ = jax.lax.while_loop(cond, body, (items, bad, taken, 0))
  return items, ~bad


# ---------------------------------------------------------------------------
# Epoch shuffle.


def _mix32(x: jax.Array) -> jax.Array:
  """A 32-bit integer finaliser (good avalanche; bijective)."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def feistel_permutation(key: jax.Array, n: int, rounds: int = 6) -> jax.Array:
  """A keyed pseudo-random permutation of ``0..n-1`` (jittable, no sort).

  A balanced Feistel network over ``2h``-bit integers (``2^(2h) >= n``,
  round keys from ``key``) is a bijection of ``[0, 2^(2h))``; cycle walking
  (re-encrypting values ``>= n``) restricts it to a bijection of ``[0, n)``.
  It is a shuffle for SGD, not a uniform draw over all ``n!`` permutations;
  use ``jax.random.permutation`` for that.

  Returns:
    ``(n,)`` int32.
  """
  if n >= 2**31:
    raise ValueError(f'feistel_permutation: n={n} too large')
  bits = max(2, int(np.ceil(np.log2(max(n, 2)))))
  h = (bits + 1) // 2
  mask = jnp.uint32((1 << h) - 1)
  round_keys = jax.random.bits(key, (rounds,), jnp.uint32)

  def encrypt(x):
    left, right = x >> h, x & mask
    for r in range(rounds):
      left, right = right, left ^ (_mix32(right ^ round_keys[r]) & mask)
    return (left << h) | right

  x = encrypt(jnp.arange(n, dtype=jnp.uint32))
  x = jax.lax.while_loop(lambda x: jnp.any(x >= n),
                         lambda x: jnp.where(x >= n, encrypt(x), x), x)
  return x.astype(jnp.int32)
