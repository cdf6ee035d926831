"""What each SAE neuron means: concepts, popularity, monosemanticity.

All functions take one config's item activations ``acts`` ``(n_items, M)``
(:meth:`monosem_jax.analysis.interventions.Codec.encode`) and work on every
neuron and concept at once (docs/method.md#concepts):

* :func:`concept_scores`: for every (neuron, concept) and each K, purity@K
  (the share of the neuron's top-K items carrying the concept), the concept's
  base rate, lift = purity / base rate, and the hypergeometric p-value of
  seeing that many hits in K draws without replacement (so that a pure
  neuron of a 40 % genre is not mistaken for one of a 2 % genre). A neuron
  that fires on fewer than K items is scored on the items it fires on, and
  flagged (``n_scored < K``), instead of padding its list with arbitrary
  zero-activation items.
* :func:`concept_table`: per concept, the neuron with the best purity (then
  p-value) and its purity / lift / p-value at each K.
* :func:`era_scores`: the era mix of every neuron's top-200 items against
  the eras' base rates (the eras scored as concepts).
* :func:`neuron_table`: per neuron, firing rate, dead flag, its best concept
  (by purity, then p-value) with purity / lift / p-value at each K, the mean
  popularity rank of its top-N items and the Spearman correlation of its
  activation with popularity, and its MS score; optionally its best era and
  its firing on users (:func:`user_activation_stats`).
* :func:`l0`: mean active latents per user or item.
* :func:`ms_scores`: the monosemanticity score of each neuron: with ``a`` its
  activations min-max scaled, T its top-30 items, ``R = a_T a_T^T`` and ``S``
  the cosine similarities of the recommender's item embeddings on T (both
  with zero diagonal), ``MS = sum(R * S) / sum(R)`` (0 for a dead neuron).

Example:
  >>> import numpy as np
  >>> acts = np.array([[3., 0.], [2., 0.], [0., 5.], [1., 4.]])
  >>> concepts = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], bool)
  >>> s = concept_scores(acts, concepts, ks=(2,))
  >>> s['purity'][0].tolist()     # K=2: neuron x concept
  [[1.0, 0.0], [0.0, 1.0]]
  >>> s['n_scored'][0].tolist()   # both neurons fire on >= 2 items
  [2, 2]
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import stats

from monosem_jax.data.dataset import DECADE_BUCKETS


def top_items(acts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """``(M, k)`` top-k item indices per neuron, and whether each fires."""
  k = min(k, acts.shape[0])
  vals, idx = jax.lax.top_k(jnp.asarray(acts, jnp.float32).T, k)
  return np.asarray(idx), np.asarray(vals) > 0


#: Bound on the ``(M, K, T_chunk)`` gather of :func:`concept_scores`.
CHUNK_BYTES = 64 * 2 ** 20


def top_concept_counts(acts: np.ndarray, item_concepts: np.ndarray, k: int,
                       max_bytes: int = CHUNK_BYTES
                       ) -> tuple[np.ndarray, np.ndarray]:
  """Concept counts among each neuron's top-k firing items.

  The ``(M, k, T_chunk)`` gather is built one chunk of concepts at a time,
  each at most ``max_bytes`` of float32.

  Args:
    acts: ``(n_items, M)`` activations.
    item_concepts: ``(n_items, T)`` bool multi-hot.
    k: list length.
    max_bytes: memory bound of one chunk.

  Returns:
    ``hits`` ``(M, T)`` float32 (items carrying each concept) and
    ``n_scored`` ``(M,)`` (firing items among the top k).
  """
  table = np.asarray(item_concepts, bool)
  idx, fires = top_items(acts, k)                                  # (M, k)
  w = fires.astype(np.float32)
  step = int(max(1, max_bytes // max(1, idx.size * 4)))
  chunks = [np.einsum('mk,mkt->mt', w,
                      table[:, a:a + step][idx].astype(np.float32))
            for a in range(0, table.shape[1], step)]  # chunks of concepts
  hits = (np.concatenate(chunks, axis=1) if chunks
          else np.zeros((idx.shape[0], 0), np.float32))
  return hits, fires.sum(1)


def concept_scores(acts: np.ndarray, item_concepts: np.ndarray,
                   ks: Sequence[int] = (10, 20, 50),
                   max_bytes: int = CHUNK_BYTES) -> dict[str, np.ndarray]:
  """Purity, lift and p-value of every (neuron, concept) at each K.

  Concepts are scored in chunks so that the ``(M, K, T_chunk)`` hit table
  stays under ``max_bytes`` (Last.FM has thousands of tags); the results do
  not depend on the chunking.

  Args:
    acts: ``(n_items, M)`` activations.
    item_concepts: ``(n_items, T)`` bool multi-hot concept table.
    ks: list lengths.
    max_bytes: memory bound of one chunk's hit table.

  Returns:
    ``purity``, ``lift``, ``p_value`` ``(len(ks), M, T)``; ``n_scored``
    ``(len(ks), M)`` items actually scored (< K when a neuron fires on fewer
    items; 0 for a dead neuron, whose purity is 0 and p-value 1);
    ``base_rate`` ``(T,)``.
  """
  acts = np.asarray(acts, np.float32)
  table = np.asarray(item_concepts, bool)
  n_items = table.shape[0]
  count = table.sum(0)                                        # (T,)
  purity, lift, pval, n_scored = [], [], [], []
  for k in ks:  # a handful of list lengths; each vectorised over M x T
    hits, n = top_concept_counts(acts, table, k, max_bytes)   # (M, T), (M,)
    pur, lif, p = count_scores(hits, n[:, None], count[None, :], n_items)
    purity.append(pur)
    lift.append(lif)
    pval.append(p)
    n_scored.append(n)
  return {'purity': np.stack(purity), 'lift': np.stack(lift),
          'p_value': np.stack(pval), 'n_scored': np.stack(n_scored),
          'base_rate': count / max(n_items, 1)}


def count_scores(hits: np.ndarray, n: np.ndarray, count: np.ndarray,
                 n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Purity, lift and p-value from counts alone (docs/method.md#concepts).

  The arguments broadcast together (e.g. ``(M, T)``, ``(M, 1)``, ``(1, T)``).

  Args:
    hits: float32 items carrying the concept among the ``n`` scored.
    n: int items scored (a neuron's firing items among its top K; 0: dead).
    count: int items carrying the concept among all ``n_items``.
    n_items: the population.

  Returns:
    float64 ``purity = hits / n`` (0 where ``n = 0``), ``lift = purity /
    base rate`` (0 where the concept has no item) and the hypergeometric
    p-value ``P(X >= hits)``, ``X ~ Hypergeom(n_items, count, n)`` (1 where
    ``n = 0``), each of the broadcast shape.
  """
  base = count / max(n_items, 1)
  pur = np.where(n > 0, hits / np.maximum(n, 1), 0.0)
  lift = np.where(base > 0, pur / np.where(base > 0, base, 1), 0.0)
  pval = np.where(n > 0, stats.hypergeom.sf(hits - 1, n_items, count, n), 1.0)
  return pur, lift, pval


def spearman_with(acts: np.ndarray, values: np.ndarray) -> np.ndarray:
  """``(M,)`` Spearman correlation of each neuron's activation with
  ``values`` ``(n_items,)`` (NaN for a constant neuron)."""
  ra = stats.rankdata(np.asarray(acts, np.float64), axis=0)  # (N, M)
  rv = stats.rankdata(np.asarray(values, np.float64))         # (N,)
  ra = ra - ra.mean(0)
  rv = rv - rv.mean()
  denom = np.sqrt((ra ** 2).sum(0) * (rv ** 2).sum())
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(denom > 0, (ra * rv[:, None]).sum(0) / denom, np.nan)


#: List length of the MS score (:func:`ms_scores`).
MS_TOP = 30


def ms_scores(acts: np.ndarray, item_emb: np.ndarray, top: int = MS_TOP
              ) -> np.ndarray:
  """``(M,)`` MS score of each neuron (module docstring); dead -> 0."""
  acts = np.asarray(acts, np.float64)
  lo, hi = acts.min(0), acts.max(0)
  scaled = np.where(hi > lo, (acts - lo) / np.where(hi > lo, hi - lo, 1), 0.0)
  idx, _ = top_items(acts, top)                                    # (M, top)
  a = np.take_along_axis(scaled.T, idx, axis=1)               # (M, top)
  emb = np.asarray(item_emb, np.float64)
  unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
  cos = np.einsum('mid,mjd->mij', unit[idx], unit[idx])       # (M, top, top)
  r = a[:, :, None] * a[:, None, :]
  eye = np.eye(idx.shape[1], dtype=bool)[None]
  r = np.where(eye, 0.0, r)
  cos = np.where(eye, 0.0, cos)
  total = r.sum((1, 2))
  return np.where(total > 0, (r * cos).sum((1, 2)) / np.where(
      total > 0, total, 1), 0.0)


def _best(score: np.ndarray, tie: np.ndarray, axis: int) -> np.ndarray:
  """Index of the highest ``score`` along ``axis``; ties by the smaller
  ``tie`` (e.g. a p-value), then by the lower index."""
  return np.take(np.lexsort((tie, -score), axis=axis), 0, axis=axis)


def era_scores(acts: np.ndarray, item_decade: np.ndarray, top: int = 200
               ) -> dict[str, Any]:
  """Era mix of every neuron's top items against the eras' base rates.

  The eras are the buckets of :data:`DECADE_BUCKETS`
  (:func:`monosem_jax.data.dataset.decade_bucket`); each is scored as a
  concept by :func:`concept_scores` with K = ``top`` (firing items only), so
  an item of unknown year counts in no era but in every denominator.

  Args:
    acts: ``(n_items, M)`` activations.
    item_decade: ``(n_items,)`` int era index, -1 where unknown
      (``Dataset.item_decade``).
    top: list length.

  Returns:
    ``share``, ``lift``, ``p_value`` ``(M, B)``; ``base_rate`` ``(B,)`` (share
    of all items); ``n_scored`` ``(M,)``; ``eras`` the ``B`` bucket names.

  Example:
    >>> acts = np.array([[2., 0.], [1., 0.], [0., 1.], [0., 0.]])
    >>> e = era_scores(acts, np.array([0, 0, 3, 3]), top=2)
    >>> e['share'][:, [0, 3]].tolist(), e['base_rate'][[0, 3]].tolist()
    ([[1.0, 0.0], [0.0, 1.0]], [0.5, 0.5])
  """
  decade = np.asarray(item_decade)
  n_eras = len(DECADE_BUCKETS)
  if decade.shape != (np.shape(acts)[0],) or not (
      (decade >= -1) & (decade < n_eras)).all():
    raise ValueError(f'item_decade: expected ({np.shape(acts)[0]},) ints in '
                     f'[-1, {n_eras}); got shape {decade.shape}')
  s = concept_scores(acts, decade[:, None] == np.arange(n_eras), (top,))
  return {'share': s['purity'][0], 'lift': s['lift'][0],
          'p_value': s['p_value'][0], 'base_rate': s['base_rate'],
          'n_scored': s['n_scored'][0], 'eras': DECADE_BUCKETS}


def concept_table(acts: np.ndarray, item_concepts: np.ndarray,
                  concept_names: Sequence[str],
                  ks: Sequence[int] = (10, 20, 50),
                  max_bytes: int = CHUNK_BYTES,
                  scores: dict | None = None) -> pd.DataFrame:
  """One row per concept: the neuron that carries it best.

  The best neuron has the highest purity at the first K (ties: the smaller
  p-value, then the lower index), from :func:`concept_scores`.

  Args:
    acts: ``(n_items, M)`` item activations of one config.
    item_concepts: ``(n_items, T)`` bool; concept_names: ``T`` names.
    ks: list lengths.
    max_bytes: see :func:`concept_scores`.
    scores: :func:`concept_scores` of the same arguments, when the caller
      has them already (they are not computed again).

  Returns:
    ``concept, best_neuron``, then per K ``purity@K, lift@K, p_value@K,
    n_scored@K`` of that neuron, and ``base_rate``.

  Example:
    >>> acts = np.array([[3., 0.], [2., 0.], [0., 5.], [1., 4.]])
    >>> table = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], bool)
    >>> t = concept_table(acts, table, ['a', 'b'], ks=(2,))
    >>> t.best_neuron.tolist(), t['purity@2'].tolist()
    ([0, 1], [1.0, 1.0])
  """
  s = scores if scores is not None else concept_scores(
      acts, item_concepts, ks, max_bytes)
  best = _best(s['purity'][0], s['p_value'][0], axis=0)            # (T,)
  t = np.arange(len(best))
  out = {'concept': list(concept_names), 'best_neuron': best}
  for j, k in enumerate(ks):
    out[f'purity@{k}'] = s['purity'][j][best, t]
    out[f'lift@{k}'] = s['lift'][j][best, t]
    out[f'p_value@{k}'] = s['p_value'][j][best, t]
    out[f'n_scored@{k}'] = s['n_scored'][j][best]
  out['base_rate'] = s['base_rate']
  return pd.DataFrame(out)


def l0(acts: np.ndarray) -> float:
  """Mean number of active (non-zero) latents per row of ``acts`` ``(N, M)``;
  a signed pursuit code's negative coefficients count
  (docs/method.md#pursuit-encoders).

  >>> l0(np.array([[1., 0., -2.], [0., 0., 0.]]))
  1.0
  """
  return float((np.asarray(acts) != 0).sum(1).mean()) if len(acts) else 0.0


def user_activation_stats(user_acts: np.ndarray) -> dict[str, np.ndarray]:
  """Per neuron, how it fires on users.

  Args:
    user_acts: ``(n_users, M)`` activations of user embeddings.

  Returns:
    ``user_firing_rate`` ``(M,)`` (share of users with activation > 0) and
    ``user_mean_activation`` ``(M,)`` (mean over all users, zeros included).

  Example:
    >>> s = user_activation_stats(np.array([[2., 0.], [0., 0.]]))
    >>> s['user_firing_rate'].tolist(), s['user_mean_activation'].tolist()
    ([0.5, 0.0], [1.0, 0.0])
  """
  user_acts = np.asarray(user_acts, np.float32)
  return {'user_firing_rate': (user_acts > 0).mean(0),
          'user_mean_activation': user_acts.mean(0)}


def mean_top_rank(acts: np.ndarray, popularity: np.ndarray, top: int
                  ) -> np.ndarray:
  """``(M,)`` mean popularity rank (0 = most popular, ties by item index)
  of each neuron's firing top-``top`` items; NaN for a dead neuron."""
  pop_rank = stats.rankdata(-np.asarray(popularity, np.float64),
                            method='ordinal') - 1
  idx, fires = top_items(acts, top)
  n = fires.sum(1)
  return np.where(n > 0, (pop_rank[idx] * fires).sum(1) / np.maximum(n, 1),
                  np.nan)


def neuron_table(acts: np.ndarray, item_concepts: np.ndarray,
                 concept_names: Sequence[str], item_emb: np.ndarray,
                 popularity: np.ndarray, ks: Sequence[int] = (10, 20, 50),
                 pop_top: int = 500, *, item_decade: np.ndarray | None = None,
                 era_top: int = 200, user_acts: np.ndarray | None = None,
                 scores: dict | None = None) -> pd.DataFrame:
  """One row per neuron: firing, best concept, popularity, MS score.

  Args:
    acts: ``(n_items, M)`` item activations of one config.
    item_concepts: ``(n_items, T)`` bool; concept_names: ``T`` names.
    item_emb: ``(n_items, d)`` the recommender's item embeddings (MS score).
    popularity: ``(n_items,)`` users per item.
    ks: purity list lengths (the first one picks the best concept).
    pop_top: N of "mean popularity rank of the top-N items".
    item_decade: optional ``(n_items,)`` era index (``Dataset.item_decade``;
      None where the dataset has no years, e.g. Last.FM).
    era_top: list length of the era mix.
    user_acts: optional ``(n_users, M)`` activations of user embeddings.
    scores: :func:`concept_scores` of ``acts``, ``item_concepts``, ``ks``
      when the caller has them already.

  Returns:
    ``neuron, firing_rate, dead, best_concept``, per K ``purity@K, lift@K,
    p_value@K, n_scored@K``, ``base_rate, mean_pop_rank@N,
    spearman_popularity, ms``; with ``item_decade`` also ``best_era`` (the era
    with the smallest p-value among the top ``era_top`` items, ties by the
    higher lift; None for a dead neuron), ``era_share, era_base_rate,
    era_lift, era_p_value``; with ``user_acts`` also ``user_firing_rate,
    user_mean_activation``.
  """
  acts = np.asarray(acts, np.float32)
  fires = acts > 0
  s = scores if scores is not None else concept_scores(
      acts, item_concepts, ks)
  # best concept: highest purity at the first K, then the smallest p-value
  order = _best(s['purity'][0], s['p_value'][0], axis=1)
  m = np.arange(acts.shape[1])
  out = {'neuron': m, 'firing_rate': fires.mean(0),
         'dead': ~fires.any(0), 'best_concept': np.asarray(
             list(concept_names), dtype=object)[order]}
  for j, k in enumerate(ks):
    out[f'purity@{k}'] = s['purity'][j][m, order]
    out[f'lift@{k}'] = s['lift'][j][m, order]
    out[f'p_value@{k}'] = s['p_value'][j][m, order]
    out[f'n_scored@{k}'] = s['n_scored'][j]
  out['base_rate'] = s['base_rate'][order]
  out[f'mean_pop_rank@{pop_top}'] = mean_top_rank(acts, popularity, pop_top)
  out['spearman_popularity'] = spearman_with(acts, popularity)
  out['ms'] = ms_scores(acts, item_emb)
  if item_decade is not None:
    e = era_scores(acts, item_decade, era_top)
    # the most significantly over-represented era, then the highest lift
    era = _best(-e['p_value'], -e['lift'], axis=1)
    out['best_era'] = pd.Series(np.asarray(e['eras'], dtype=object)[era],
                                dtype=object).where(e['n_scored'] > 0, None)
    out['era_share'] = e['share'][m, era]
    out['era_base_rate'] = e['base_rate'][era]
    out['era_lift'] = e['lift'][m, era]
    out['era_p_value'] = e['p_value'][m, era]
  if user_acts is not None:
    if np.shape(user_acts)[1:] != acts.shape[1:]:
      raise ValueError(f'user_acts has shape {np.shape(user_acts)}; expected '
                       f'(n_users, {acts.shape[1]}) like the item activations')
    out.update(user_activation_stats(user_acts))
  return pd.DataFrame(out)


def pure_concepts(table: pd.DataFrame, k: int = 10) -> list[str]:
  """The concepts of a :func:`concept_table` whose best neuron has
  purity@k = 1.0 on a full list of k firing items (a neuron that fires on
  fewer than k items does not count, however pure those few are).

  >>> t = pd.DataFrame({'concept': ['a', 'b', 'c'], 'purity@10': [1., 1., .9],
  ...                   'n_scored@10': [10, 3, 10]})
  >>> pure_concepts(t)
  ['a']
  """
  return list(table.loc[is_pure(table, k), 'concept'])


def is_pure(table: pd.DataFrame, k: int = 10) -> pd.Series:
  """Per row of a concept table, whether it counts in :func:`pure_concepts`.
  """
  return (table[f'purity@{k}'] == 1.0) & (table[f'n_scored@{k}'] == k)
