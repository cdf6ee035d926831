"""Neuron and concept tables of many configs in one device program.

:func:`~monosem_jax.analysis.neurons.neuron_table` and
:func:`~monosem_jax.analysis.neurons.concept_table` describe one config on
the host. :class:`BlockTables` gives the same tables for a block of configs
at once: :func:`block_stats`, one jitted program vmapped over the configs,
computes every count and statistic on the device, and the host only formats
them into pandas (docs/method.md#concepts).

The tables are the host functions' own, value for value:

* One sort of all items (:func:`descending_order`, the order of
  ``jax.lax.top_k``) orders each neuron's items as
  :func:`~monosem_jax.analysis.neurons.top_items` does (by activation, ties
  to the lower item index); every list (each K of ``ks``, ``pop_top``,
  ``era_top``, the MS top 30) is a prefix of that order, and the Spearman
  ranks come from it.
* Purity, lift and the hypergeometric p-value are functions of three counts:
  ``n`` items scored, ``h`` hits, the concept's size. :class:`ScoreGrid`
  evaluates them once per list length on the host, for every count triple,
  with the host's formula (:func:`~monosem_jax.analysis.neurons.count_scores`:
  float64, scipy's ``hypergeom.sf``); the device compares their ranks. So the
  best concept of each neuron, the best neuron of each concept and the best
  era (ties included) are the host's choices, and purity, lift and p-values
  are the host's float64 bits. (A p-value from float32 log-gamma on the
  device is off by up to 0.8 % at ML-1M's 3,706 items, as
  ``gammaln(3707) ~ 2.7e4`` holds 3 decimals in float32, and its ties would
  not be the host's.) The grids cost ``(K+1)^2`` p-values per distinct
  concept size, once per analysis.
* Firing counts, L0 and popularity-rank sums come back as integers and are
  divided in float64 on the host, as before.
* The Spearman correlation with popularity, the MS score and the mean user
  activation are float32 sums on the device (the host sums in float64, or
  float32 in another order): Spearman and MS agree to 1e-6 (absolute), the
  mean user activation to 1e-5 (relative; tests/test_analysis_neuron_stats.py).

Example::

  tables = BlockTables(dataset.item_concepts, dataset.concept_names,
                       art.item_emb, dataset.item_popularity,
                       item_decade=dataset.item_decade)
  # item_acts (C, N, M), user_acts (C, U, M): e.g. the codes of C configs
  neuron_df, concept_df, summary = tables(item_acts, user_acts,
                                          dict_size, configs)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import stats

from monosem_jax.analysis import neurons
from monosem_jax.data.dataset import DECADE_BUCKETS
from monosem_jax.precision import EXACT

_BIG = np.iinfo(np.int32).max


@dataclasses.dataclass(frozen=True)
class ScoreGrid:
  """Purity, lift and p-value of every count triple at one list length.

  Index ``[n, h, u]``: ``n`` items scored (``0..k``), ``h`` hits (``0..k``),
  ``u`` the index of the concept's size in ``sizes``. Values as
  :func:`~monosem_jax.analysis.neurons.count_scores` gives them (float64);
  :meth:`ranks` gives their dense ranks (int32, equal values equal ranks),
  which the device compares.
  """
  k: int
  sizes: np.ndarray
  purity: np.ndarray
  lift: np.ndarray
  p_value: np.ndarray

  @classmethod
  def build(cls, k: int, sizes: np.ndarray, n_items: int) -> 'ScoreGrid':
    """The grid for lists of ``k`` items (``k <= n_items``) and concepts of
    ``sizes`` ``(U,)`` items among ``n_items``; NaN where the counts cannot
    occur (more hits than items scored or than the concept has, or more
    misses than items without it), which spares most p-values."""
    sizes = np.asarray(sizes)
    n, h, u = np.meshgrid(np.arange(k + 1), np.arange(k + 1),
                          np.arange(len(sizes)), indexing='ij')
    size = sizes[u]
    ok = (h <= n) & (h <= size) & (n - h <= n_items - size)
    values = [np.full(n.shape, np.nan) for _ in range(3)]
    for a, v in zip(values, neurons.count_scores(
        h[ok].astype(np.float32), n[ok], size[ok], n_items)):
      a[ok] = v
    return cls(k, sizes, *values)

  def ranks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense ranks of purity, lift and p-value, each ``(k+1, k+1, U)``."""
    return tuple(np.unique(a, return_inverse=True)[1].reshape(a.shape)
                 .astype(np.int32) for a in (self.purity, self.lift,
                                             self.p_value))


@dataclasses.dataclass(frozen=True)
class Lists:
  """The list lengths (static): ``ks`` (purity), ``pop_top`` (mean
  popularity rank), ``era_top`` (None: no eras), ``ms_top`` (MS score)."""
  ks: tuple[int, ...]
  pop_top: int
  era_top: int | None
  ms_top: int = neurons.MS_TOP


@flax.struct.dataclass
class ItemData:
  """What every config of an analysis shares, on the device.

  ``N`` items, ``T`` concepts, ``B`` eras, ``d`` embedding width.

  Attributes:
    concepts: ``(N, T)`` bool item concepts.
    concept_u: ``(T,)`` int32 index of each concept's size in the grids.
    eras: ``(N, B)`` bool item eras, or None.
    era_u: ``(B,)`` int32, or None.
    pop_rank: ``(N,)`` int32 popularity rank (0 = most popular, ties by
      item index).
    pop_centred: ``(N,)`` float32 ``2 * r - (N + 1)`` for ``r`` the average
      rank of the item's popularity (exact small integers).
    unit_emb: ``(N, d)`` float32 unit item embeddings (MS score).
    purity_rank, p_rank: per K of ``ks``, ``(K+1, K+1, U)`` int32 ranks.
    era_p_rank, era_lift_rank: ``(E+1, E+1, U_era)`` int32, or None.
  """
  concepts: jax.Array
  concept_u: jax.Array
  eras: jax.Array | None
  era_u: jax.Array | None
  pop_rank: jax.Array
  pop_centred: jax.Array
  unit_emb: jax.Array
  purity_rank: tuple
  p_rank: tuple
  era_p_rank: jax.Array | None
  era_lift_rank: jax.Array | None


@flax.struct.dataclass
class BlockStats:
  """:func:`block_stats` of ``C`` configs of ``M`` latents.

  Per K of ``ks`` (leading axis of ``n_scored``, ``neuron_hits``,
  ``concept_hits``, ``concept_n``) the counts among the top-K firing items.

  Attributes:
    firing: ``(C, M)`` int32 items with activation > 0.
    active_items, active_users: ``(C,)`` int32 active (item or user, valid
      latent) pairs: non-zero, so a signed pursuit code's negative
      coefficients count, as in :func:`~monosem_jax.analysis.neurons.l0`.
    user_firing: ``(C, M)`` int32 users with activation > 0.
    user_mean: ``(C, M)`` float32 mean user activation.
    n_scored: ``(len(ks), C, M)`` int32 firing items among the top K.
    best_concept: ``(C, M)`` int32 (highest purity at the first K, then the
      smaller p-value, then the lower index).
    neuron_hits: ``(len(ks), C, M)`` int32 hits of the best concept.
    best_neuron: ``(C, T)`` int32, among the config's own latents.
    concept_hits, concept_n: ``(len(ks), C, T)`` int32 hits and items
      scored of the best neuron.
    pop_sum, pop_n: ``(C, M)`` int32 sum of popularity ranks and number of
      the firing top-``pop_top`` items.
    spearman: ``(C, M)`` float32 (NaN for a constant neuron).
    ms: ``(C, M)`` float32 MS score.
    best_era, era_hits, era_n: ``(C, M)`` int32 (or None): the era with the
      smallest p-value among the top ``era_top`` items (then the higher
      lift, then the lower index), its hits and the items scored.
  """
  firing: jax.Array
  active_items: jax.Array
  active_users: jax.Array
  user_firing: jax.Array
  user_mean: jax.Array
  n_scored: jax.Array
  best_concept: jax.Array
  neuron_hits: jax.Array
  best_neuron: jax.Array
  concept_hits: jax.Array
  concept_n: jax.Array
  pop_sum: jax.Array
  pop_n: jax.Array
  spearman: jax.Array
  ms: jax.Array
  best_era: jax.Array | None
  era_hits: jax.Array | None
  era_n: jax.Array | None

  def head(self, c: int) -> 'BlockStats':
    """The first ``c`` configs, as numpy arrays."""
    def cut(name, a):
      if a is None:
        return None
      return np.asarray(a)[:, :c] if name in _PER_K else np.asarray(a)[:c]
    return self.replace(**{f.name: cut(f.name, getattr(self, f.name))
                           for f in dataclasses.fields(self)})


#: The :class:`BlockStats` fields with a leading ``len(ks)`` axis.
_PER_K = ('n_scored', 'neuron_hits', 'concept_hits', 'concept_n')


def _lex_argmin(keys: Sequence[jax.Array], axis: int,
                where: jax.Array | bool = True) -> jax.Array:
  """Index along ``axis`` of the smallest tuple of int ``keys`` (compared
  in order), ties to the lower index; only where ``where`` holds."""
  ok = jnp.broadcast_to(where, keys[0].shape)
  for key in keys:
    key = jnp.where(ok, key, _BIG)
    ok = ok & (key == key.min(axis, keepdims=True))
  return jnp.argmax(ok, axis).astype(jnp.int32)


def descending_order(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``jax.lax.top_k(x, n)`` of the rows of ``x`` ``(..., n)``, by sorting.

  The items in descending IEEE total order (NaN above +inf, +0.0 above
  -0.0), ties to the lower index, as ``top_k`` orders them on the CPU. An
  LSD radix sort: each pass sorts one int32 per item, a digit of the
  order-preserving integer image of the value above the item's position in
  the previous pass (stable by construction), because XLA's CPU sort of one
  int32 operand is several times faster than a sort or ``top_k`` that
  carries indices along. Two passes for up to 2**15 items.

  Returns:
    ``(values, indices)``, each ``(..., n)``.
  """
  n = x.shape[-1]
  bits = max(1, (n - 1).bit_length())                # bits of a position
  if bits > 24:
    return jax.lax.top_k(x, n)
  chunk = 31 - bits                                  # key bits per pass
  b = jax.lax.bitcast_convert_type(x, jnp.int32)
  total = jnp.where(b < 0, ~b, b ^ jnp.int32(-2 ** 31))  # unsigned: order
  desc = jax.lax.bitcast_convert_type(~total, jnp.uint32)  # ascending
  pos = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
  perm = None
  for shift in range(0, 32, chunk):  # least significant digit first
    d = desc >> shift
    if perm is not None:
      d = jnp.take_along_axis(d, perm, -1)
    digit = (d & ((1 << chunk) - 1)).astype(jnp.int32)
    step = jax.lax.sort((digit << bits) | pos, dimension=x.ndim - 1) & (
        (1 << bits) - 1)
    perm = step if perm is None else jnp.take_along_axis(perm, step, -1)
  return jnp.take_along_axis(x, perm, -1), perm


def _hits(table: jax.Array, idx: jax.Array, fires: jax.Array, k: int
          ) -> tuple[jax.Array, jax.Array]:
  """``(M, T)`` int32 items of each concept of ``table`` ``(N, T)`` among
  each neuron's firing top ``k`` (``idx``, ``fires`` ``(M, >= k)``), and the
  ``(M,)`` items scored."""
  f = fires[:, :k]
  hits = (table[idx[:, :k]] & f[:, :, None]).sum(1, dtype=jnp.int32)
  return hits, f.sum(1, dtype=jnp.int32)


def _grid_key(rank: jax.Array, n: jax.Array, h: jax.Array, u: jax.Array
              ) -> jax.Array:
  """``rank[n, h, u]`` broadcast over ``n`` ``(M, 1)``, ``h`` ``(M, T)``,
  ``u`` ``(T,)``."""
  return rank[n, h, u]


def _spearman(vals: jax.Array, idx: jax.Array, pop_centred: jax.Array
              ) -> jax.Array:
  """``(M,)`` Spearman correlation of each neuron with popularity, from its
  items in descending order (``vals``, ``idx`` ``(M, N)``): average ranks
  over ties, as ``scipy.stats.rankdata``; NaN for a constant neuron or one
  with a NaN activation."""
  n = vals.shape[1]
  j = jnp.arange(n, dtype=jnp.int32)
  diff = vals[:, 1:] != vals[:, :-1]
  edge = jnp.ones((vals.shape[0], 1), bool)
  start = jax.lax.cummax(jnp.where(jnp.concatenate([edge, diff], 1), j, 0),
                         axis=1)
  end = jax.lax.cummin(jnp.where(jnp.concatenate([diff, edge], 1), j, n - 1),
                       axis=1, reverse=True)
  # 2 * (average ascending rank) - (N + 1) of the tie group [start, end]
  ra = (n - 1 - start - end).astype(jnp.float32)
  rv = pop_centred[idx]
  num = (ra * rv).sum(1)
  den = jnp.sqrt((ra * ra).sum(1) * (rv * rv).sum(1))
  bad = (den <= 0) | jnp.isnan(vals).any(1)
  return jnp.where(bad, jnp.nan, num / jnp.where(bad, 1.0, den))


def _ms(acts: jax.Array, vals: jax.Array, idx: jax.Array, unit: jax.Array
        ) -> jax.Array:
  """``(M,)`` MS scores (:func:`~monosem_jax.analysis.neurons.ms_scores`)
  from ``acts`` ``(N, M)``, each neuron's top items ``vals``, ``idx``
  ``(M, top)`` and the unit item embeddings ``(N, d)``."""
  lo, hi = acts.min(0)[:, None], acts.max(0)[:, None]
  a = jnp.where(hi > lo, (vals - lo) / jnp.where(hi > lo, hi - lo, 1), 0.0)
  u = unit[idx]                                               # (M, top, d)
  cos = jnp.einsum('mid,mjd->mij', u, u, precision=EXACT)
  off = 1.0 - jnp.eye(idx.shape[1], dtype=jnp.float32)
  r = a[:, :, None] * a[:, None, :] * off
  total = r.sum((1, 2))
  return jnp.where(total > 0, (r * cos).sum((1, 2)) / jnp.where(
      total > 0, total, 1), 0.0)


def _config_stats(acts, user_acts, dict_size, data: ItemData, lists: Lists):
  """:func:`block_stats` of one config: ``acts`` ``(N, M)``, ``user_acts``
  ``(U, M)``, ``dict_size`` its latents (the rest are ignored)."""
  n_items, m = acts.shape
  valid = jnp.arange(m) < dict_size                               # (M,)
  vals, idx = descending_order(acts.T)                        # (M, N) all
  fires = vals > 0
  counts = [_hits(data.concepts, idx, fires, min(k, n_items))
            for k in lists.ks]
  hits0, n0 = counts[0]
  u = data.concept_u
  purity_key = -_grid_key(data.purity_rank[0], n0[:, None], hits0, u)
  p_key = _grid_key(data.p_rank[0], n0[:, None], hits0, u)         # (M, T)
  best_concept = _lex_argmin([purity_key, p_key], axis=1)          # (M,)
  best_neuron = _lex_argmin([purity_key, p_key], axis=0,
                            where=valid[:, None])                  # (T,)
  t = jnp.arange(len(u))
  out = dict(
      firing=(acts > 0).sum(0, dtype=jnp.int32),
      active_items=((acts != 0) & valid).sum(dtype=jnp.int32),
      active_users=((user_acts != 0) & valid).sum(dtype=jnp.int32),
      user_firing=(user_acts > 0).sum(0, dtype=jnp.int32),
      user_mean=user_acts.mean(0),
      n_scored=jnp.stack([n for _, n in counts]),
      best_concept=best_concept,
      neuron_hits=jnp.stack([jnp.take_along_axis(h, best_concept[:, None],
                                                 1)[:, 0] for h, _ in counts]),
      best_neuron=best_neuron,
      concept_hits=jnp.stack([h[best_neuron, t] for h, _ in counts]),
      concept_n=jnp.stack([n[best_neuron] for _, n in counts]))
  top = min(lists.pop_top, n_items)
  out['pop_sum'] = jnp.where(fires[:, :top], data.pop_rank[idx[:, :top]],
                             0).sum(1, dtype=jnp.int32)
  out['pop_n'] = fires[:, :top].sum(1, dtype=jnp.int32)
  out['spearman'] = _spearman(vals, idx, data.pop_centred)
  top = min(lists.ms_top, n_items)
  out['ms'] = _ms(acts, vals[:, :top], idx[:, :top], data.unit_emb)
  out.update(best_era=None, era_hits=None, era_n=None)
  if lists.era_top is not None:
    hits, n = _hits(data.eras, idx, fires, min(lists.era_top, n_items))
    p_key = _grid_key(data.era_p_rank, n[:, None], hits, data.era_u)
    lift_key = -_grid_key(data.era_lift_rank, n[:, None], hits, data.era_u)
    era = _lex_argmin([p_key, lift_key], axis=1)
    out.update(best_era=era, era_n=n, era_hits=jnp.take_along_axis(
        hits, era[:, None], 1)[:, 0])
  return BlockStats(**out)


@functools.partial(jax.jit, static_argnames='lists')
def block_stats(item_acts: jax.Array, user_acts: jax.Array,
                dict_size: jax.Array, data: ItemData, lists: Lists
                ) -> BlockStats:
  """The neuron and concept statistics of a block of configs.

  Args:
    item_acts: ``(C, N, M)`` item activations (latents past a config's
      ``dict_size`` are ignored).
    user_acts: ``(C, U, M)`` user activations.
    dict_size: ``(C,)`` int latents of each config.
    data: the shared :class:`ItemData`.
    lists: the static list lengths.

  Returns:
    :class:`BlockStats`, every field with the leading config axis ``C``
    (``n_scored``, ``neuron_hits``, ``concept_hits``, ``concept_n`` have
    ``len(ks)`` first).
  """
  one = functools.partial(_config_stats, data=data, lists=lists)
  out = jax.vmap(one)(item_acts, user_acts, dict_size)
  return out.replace(**{f: jnp.moveaxis(getattr(out, f), 1, 0)
                        for f in _PER_K})


class BlockTables:
  """Neuron table, concept table and summary of blocks of configs.

  Built once per analysis (the item-side data go to the device once); each
  call runs :func:`block_stats` on a block and formats it. Columns, values
  and row order are those of :func:`~monosem_jax.analysis.neurons.neuron_table`
  (with ``item_decade`` and ``user_acts``) and
  :func:`~monosem_jax.analysis.neurons.concept_table` for each config,
  concatenated, with a leading ``config`` column (module docstring).

  Args:
    item_concepts: ``(N, T)`` bool; concept_names: ``T`` names.
    item_emb: ``(N, d)`` the recommender's item embeddings (MS score).
    popularity: ``(N,)`` users per item.
    ks: purity list lengths (the first one picks the best concept and
      counts pure concepts).
    pop_top: N of the mean popularity rank of the top-N items.
    item_decade: ``(N,)`` era index or None (no era columns).
    era_top: list length of the era mix.
  """

  def __init__(self, item_concepts: np.ndarray, concept_names: Sequence[str],
               item_emb: np.ndarray, popularity: np.ndarray,
               ks: Sequence[int] = (10, 20, 50), pop_top: int = 500, *,
               item_decade: np.ndarray | None = None, era_top: int = 200):
    table = np.asarray(item_concepts, bool)
    n_items = table.shape[0]
    self.n_items, self.names = n_items, np.asarray(list(concept_names),
                                                   dtype=object)
    self.lists = Lists(tuple(int(k) for k in ks), int(pop_top),
                       None if item_decade is None else int(era_top))
    count = table.sum(0)                                           # (T,)
    self.base = count / max(n_items, 1)
    sizes, concept_u = np.unique(count, return_inverse=True)
    self.grids = [ScoreGrid.build(min(k, n_items), sizes, n_items)
                  for k in self.lists.ks]
    self.concept_u = concept_u.reshape(-1)
    ranks = [g.ranks() for g in self.grids]
    pop = np.asarray(popularity, np.float64)
    emb = np.asarray(item_emb, np.float64)
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    era = dict(eras=None, era_u=None, era_p_rank=None, era_lift_rank=None)
    self.era_grid = None
    if item_decade is not None:
      eras = self._eras(item_decade)
      count = eras.sum(0)
      self.era_base = count / max(n_items, 1)
      sizes, era_u = np.unique(count, return_inverse=True)
      self.era_grid = ScoreGrid.build(min(self.lists.era_top, n_items), sizes,
                                      n_items)
      self.era_u = era_u.reshape(-1)
      _, lift_rank, p_rank = self.era_grid.ranks()
      era = dict(eras=jnp.asarray(eras), era_u=jnp.asarray(self.era_u),
                 era_p_rank=jnp.asarray(p_rank),
                 era_lift_rank=jnp.asarray(lift_rank))
    self.data = ItemData(
        concepts=jnp.asarray(table), concept_u=jnp.asarray(self.concept_u),
        pop_rank=jnp.asarray(stats.rankdata(-pop, method='ordinal') - 1,
                             jnp.int32),
        pop_centred=jnp.asarray(2 * stats.rankdata(pop) - (n_items + 1),
                                jnp.float32),
        unit_emb=jnp.asarray(unit, jnp.float32),
        purity_rank=tuple(jnp.asarray(r[0]) for r in ranks),
        p_rank=tuple(jnp.asarray(r[2]) for r in ranks), **era)

  def _eras(self, item_decade: np.ndarray) -> np.ndarray:
    """``(N, B)`` bool eras, after the check of
    :func:`~monosem_jax.analysis.neurons.era_scores`."""
    decade = np.asarray(item_decade)
    n_eras = len(DECADE_BUCKETS)
    if decade.shape != (self.n_items,) or not (
        (decade >= -1) & (decade < n_eras)).all():
      raise ValueError(f'item_decade: expected ({self.n_items},) ints in '
                       f'[-1, {n_eras}); got shape {decade.shape}')
    return decade[:, None] == np.arange(n_eras)

  def bytes_per_config(self, max_dict_size: int, n_users: int) -> int:
    """An upper estimate of one config's device memory in
    :func:`block_stats` (its activations, the full item order and the
    per-list gathers), to size blocks of configs."""
    n, t = self.n_items, len(self.names)
    d = int(self.data.unit_emb.shape[1])
    lists = self.lists
    gathers = sum(min(k, n) * t for k in lists.ks) + lists.ms_top * (
        d + 3 * lists.ms_top)
    if lists.era_top is not None:
      gathers += min(lists.era_top, n) * len(DECADE_BUCKETS)
    return 4 * max_dict_size * (12 * n + 2 * n_users + gathers)

  def __call__(self, item_acts: jax.Array, user_acts: jax.Array,
               dict_size: Sequence[int], configs: Sequence[int]
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The tables of one block of configs.

    Args:
      item_acts: ``(C, N, M)`` item activations (e.g. on the device).
      user_acts: ``(C, U, M)`` user activations.
      dict_size: ``(C,)`` latents of each config.
      configs: the indices (the ``config`` column) of the first
        ``len(configs) <= C`` configs, the ones tabulated (the others pad a
        last block to the shape of the others, so that one compiled program
        serves every block).

    Returns:
      The neuron table (one row per config and latent), the concept table
      (one row per config and concept) and the summary (one row per config:
      ``config, l0_items, l0_users, pure_concepts@K`` (K the first of
      ``ks``), ``dead_neurons, mean_ms``).
    """
    configs = np.asarray(configs, np.int64)
    s = block_stats(item_acts, user_acts, jnp.asarray(dict_size, jnp.int32),
                    self.data, self.lists)
    s = s.head(len(configs))
    dict_size = np.asarray(dict_size, np.int64)[:len(configs)]
    nt = self._neuron_rows(s, dict_size, configs, user_acts.shape[1])
    ct = self._concept_rows(s, configs)
    pure = neurons.is_pure(ct, self.lists.ks[0]).to_numpy().reshape(
        len(configs), -1).sum(1)
    valid = np.arange(s.firing.shape[1]) < dict_size[:, None]
    ms = np.where(valid, s.ms.astype(np.float64), 0.0)
    summary = pd.DataFrame({
        'config': configs,
        'l0_items': s.active_items / self.n_items if self.n_items
                          else np.zeros(len(configs)),
        'l0_users': s.active_users / user_acts.shape[1] if user_acts.shape[1]
                    else np.zeros(len(configs)),
        f'pure_concepts@{self.lists.ks[0]}': pure,
        'dead_neurons': ((s.firing == 0) & valid).sum(1),
        'mean_ms': [float(row[:m].mean()) for row, m in zip(ms, dict_size)]})
    return nt, ct, summary

  def _neuron_rows(self, s: BlockStats, dict_size: np.ndarray,
                   configs: np.ndarray, n_users: int) -> pd.DataFrame:
    c, m = s.firing.shape
    valid = np.arange(m) < dict_size[:, None]                  # (C, M)
    pick = lambda a: np.asarray(a)[valid]
    best = pick(s.best_concept)
    u = self.concept_u[best]
    out = {'config': pick(np.broadcast_to(configs[:, None], (c, m))),
           'neuron': pick(np.broadcast_to(np.arange(m), (c, m))),
           'firing_rate': pick(s.firing).astype(np.int64) / self.n_items,
           'dead': pick(s.firing) == 0, 'best_concept': self.names[best]}
    for j, (k, grid) in enumerate(zip(self.lists.ks, self.grids)):
      n, h = pick(s.n_scored[j]).astype(np.int64), pick(s.neuron_hits[j])
      out[f'purity@{k}'] = grid.purity[n, h, u]
      out[f'lift@{k}'] = grid.lift[n, h, u]
      out[f'p_value@{k}'] = grid.p_value[n, h, u]
      out[f'n_scored@{k}'] = n
    out['base_rate'] = self.base[best]
    n = pick(s.pop_n).astype(np.int64)
    out[f'mean_pop_rank@{self.lists.pop_top}'] = np.where(
        n > 0, pick(s.pop_sum).astype(np.int64) / np.maximum(n, 1), np.nan)
    out['spearman_popularity'] = pick(s.spearman).astype(np.float64)
    out['ms'] = pick(s.ms).astype(np.float64)
    if self.era_grid is not None:
      era, n, h = pick(s.best_era), pick(s.era_n), pick(s.era_hits)
      u = self.era_u[era]
      out['best_era'] = pd.Series(np.asarray(DECADE_BUCKETS, dtype=object)[era],
                                  dtype=object).where(n > 0, None)
      out['era_share'] = self.era_grid.purity[n, h, u]
      out['era_base_rate'] = self.era_base[era]
      out['era_lift'] = self.era_grid.lift[n, h, u]
      out['era_p_value'] = self.era_grid.p_value[n, h, u]
    out['user_firing_rate'] = pick(s.user_firing).astype(np.int64) / n_users
    out['user_mean_activation'] = pick(s.user_mean)
    return pd.DataFrame(out)

  def _concept_rows(self, s: BlockStats, configs: np.ndarray) -> pd.DataFrame:
    c, t = s.best_neuron.shape
    out = {'config': np.repeat(configs, t),
           'concept': np.tile(self.names, c),
           'best_neuron': s.best_neuron.reshape(-1).astype(np.int64)}
    u = np.tile(self.concept_u, c)
    for j, (k, grid) in enumerate(zip(self.lists.ks, self.grids)):
      n = s.concept_n[j].reshape(-1).astype(np.int64)
      h = s.concept_hits[j].reshape(-1)
      out[f'purity@{k}'] = grid.purity[n, h, u]
      out[f'lift@{k}'] = grid.lift[n, h, u]
      out[f'p_value@{k}'] = grid.p_value[n, h, u]
      out[f'n_scored@{k}'] = n
    out['base_rate'] = np.tile(self.base, c)
    return pd.DataFrame(out)
