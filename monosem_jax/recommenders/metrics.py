"""Full-catalogue ranking metrics (docs/method.md#evaluation), vectorised over user blocks.

No sampled metrics (Krichene & Rendle, KDD 2020): every user is ranked
against the whole catalogue. A user's training positives are masked (they can
never be recommended); its held-out positives are the relevant items.

Rank convention (0-based; rank 0 = top of the list), explicit about ties:

* ``ties='index'`` (default): a stable sort by descending score, ties broken
  by ascending item index, i.e. ``rank(h) = #{j: s_j > s_h} + #{j: s_j == s_h,
  j < h}``. This is exactly the position of ``h`` in ``lax.top_k`` output.
* ``ties='pessimistic'``: every tied item counts as ranked above ``h``:
  ``rank(h) = #{j != h: s_j >= s_h}``.

Masked (training-positive) items get ``-inf`` and never rank above a finite
score.

Scores that are not finite numbers (NaN, +-inf: a diverged model's logits)
carry no ranking: they count as ``-inf`` (:func:`finite_scores`), below every
finite score, whatever the tie convention. A relevant item without a finite
score ranks last, ``rank = n_items - 1``, under either convention (ties among
``-inf`` are broken against it, as ``'pessimistic'`` does), so a row of NaN
scores has no hit (for K < n_items) and every metric stays in [0, 1].
Without this, comparisons with NaN are all False and ranked every relevant
item first (ndcg@10 = 1.7 for a diverged SAE).

Per user, with ``H`` the held-out positives and ``r_h`` their ranks:

* ``hr@K`` = 1[min_h r_h < K]
* ``recall@K`` = #{h: r_h < K} / |H|
* ``ndcg@K`` = sum_{h: r_h < K} 1/log2(r_h + 2) / sum_{r < min(|H|, K)} 1/log2(r + 2)
  (binary gain)
* ``mrr`` = 1/(1 + min_h r_h) (best-ranked relevant item, untruncated);
  ``mrr@K`` is the same, or 0 when ``min_h r_h >= K``
* ``mpr`` = mean_h 100 * r_h / n_items (lower is better; 50 = random)

and each metric is averaged over the users with at least one held-out item.

Example:
  >>> import numpy as np
  >>> m = per_user_metrics(np.array([[0, 3]]), np.array([[True, True]]),
  ...                      n_items=10, ks=(2,))
  >>> float(m['hr@2'][0]), float(m['recall@2'][0]), float(m['mrr'][0])
  (1.0, 0.5, 1.0)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from monosem_jax.data.dataset import csr_gather

DEFAULT_KS = (10, 20, 50)
TIES = ('index', 'pessimistic')

ScoreFn = Callable[[object, jax.Array], jax.Array]


def finite_scores(scores: jax.Array) -> jax.Array:
  """``scores`` with every non-finite value (NaN, +-inf) set to ``-inf``:
  ranked last (module docstring). Same shape; traceable."""
  return jnp.where(jnp.isfinite(scores), scores, -jnp.inf)


def relevant_ranks(scores: jax.Array, rel_items: jax.Array,
                   ties: str = 'index') -> jax.Array:
  """0-based ranks of the relevant items within each row of ``scores``.

  Args:
    scores: ``(B, n_items)`` scores, higher is better; masked items ``-inf``;
      non-finite scores rank last (module docstring).
    rel_items: ``(B, H)`` int item indices (padding entries: any valid index,
      discard their ranks with the caller's mask).
    ties: ``'index'`` or ``'pessimistic'`` (see the module docstring).

  Returns:
    ``(B, H)`` int32 ranks in ``[0, n_items)``.
  """
  if ties not in TIES:
    raise ValueError(f'ties={ties!r}; expected one of {TIES}')
  scores = finite_scores(scores)
  s_rel = jnp.take_along_axis(scores, rel_items, axis=1)          # (B, H)
  s = scores[:, None, :]                                          # (B, 1, I)
  t = s_rel[:, :, None]                                           # (B, H, 1)
  if ties == 'index':
    idx = jnp.arange(scores.shape[1], dtype=jnp.int32)
    ahead = (s > t) | ((s == t) & (idx < rel_items[:, :, None]))
    ranks = jnp.sum(ahead, axis=-1, dtype=jnp.int32)
  else:
    ranks = jnp.sum(s >= t, axis=-1, dtype=jnp.int32) - 1
  # no finite score: last, below every other item (ties broken against it)
  return jnp.where(s_rel == -jnp.inf, scores.shape[1] - 1, ranks)


def _idcg_table(max_len: int) -> np.ndarray:
  disc = 1.0 / np.log2(np.arange(max_len) + 2.0)
  return np.concatenate([[0.0], np.cumsum(disc)])


def per_user_metrics(ranks, valid, n_items: int,
                     ks: Sequence[int] = DEFAULT_KS, xp=np) -> dict:
  """Per-user metrics from the ranks of the relevant items.

  Args:
    ranks: ``(B, H)`` 0-based ranks of each user's relevant items.
    valid: ``(B, H)`` bool, False on padding entries.
    n_items: catalogue size (the MPR denominator).
    ks: cut-offs.
    xp: ``numpy`` or ``jax.numpy``.

  Returns:
    dict of ``(B,)`` float arrays: ``hr@K``, ``recall@K``, ``ndcg@K``,
    ``mrr@K`` for each K, ``mrr``, ``mpr``, and ``has_relevant`` (users with
    no relevant item get 0 everywhere and should be left out of means).
  """
  ranks = xp.asarray(ranks)
  valid = xp.asarray(valid, bool)
  n_rel = valid.sum(-1)
  has = n_rel > 0
  denom = xp.maximum(n_rel, 1).astype(xp.float32)
  big = np.iinfo(np.int32).max
  min_rank = xp.min(xp.where(valid, ranks, big), axis=-1)
  gain = xp.where(valid, 1.0 / xp.log2(ranks.astype(xp.float32) + 2.0), 0.0)
  out = {}
  for k in ks:
    hit = valid & (ranks < k)
    idcg = xp.asarray(_idcg_table(int(k)).astype(np.float32))[
        xp.minimum(n_rel, int(k))]
    out[f'hr@{k}'] = xp.where(has, (min_rank < k).astype(xp.float32), 0.0)
    out[f'recall@{k}'] = hit.sum(-1).astype(xp.float32) / denom
    out[f'ndcg@{k}'] = xp.where(
        has, xp.where(hit, gain, 0.0).sum(-1) / xp.maximum(idcg, 1e-12), 0.0)
    out[f'mrr@{k}'] = xp.where(
        has & (min_rank < k), 1.0 / (1.0 + min_rank.astype(xp.float32)), 0.0)
  out['mrr'] = xp.where(has, 1.0 / (1.0 + min_rank.astype(xp.float32)), 0.0)
  out['mpr'] = (xp.where(valid, 100.0 * ranks.astype(xp.float32) / n_items,
                         0.0).sum(-1) / denom)
  out['has_relevant'] = has.astype(xp.float32)
  return out


@dataclasses.dataclass(frozen=True)
class EvalData:
  """Evaluation users in fixed-size blocks, ready for :func:`evaluate`.

  Attributes:
    users: ``(n_blocks, B)`` int32 user indices (padding repeats user 0).
    user_valid: ``(n_blocks, B)`` bool.
    mask_rows, mask_cols: ``(n_blocks, L)`` int32 (row in block, item) of the
      training positives to mask; padding has ``mask_cols == n_items``
      (dropped by the scatter).
    rel_items: ``(n_blocks, B, H)`` int32 held-out positives (padding 0).
    rel_valid: ``(n_blocks, B, H)`` bool.
    n_items: catalogue size.
  """

  users: np.ndarray
  user_valid: np.ndarray
  mask_rows: np.ndarray
  mask_cols: np.ndarray
  rel_items: np.ndarray
  rel_valid: np.ndarray
  n_items: int

  @property
  def n_users(self) -> int:
    return int(self.user_valid.sum())

  def device_arrays(self) -> tuple:
    return tuple(jnp.asarray(a) for a in (
        self.users, self.user_valid, self.mask_rows, self.mask_cols,
        self.rel_items, self.rel_valid))


def make_eval_data(n_items: int, eval_users: np.ndarray,
                   mask_indptr: np.ndarray, mask_items: np.ndarray,
                   rel_indptr: np.ndarray, rel_items: np.ndarray,
                   block_size: int = 256) -> EvalData:
  """Blocks the evaluation users with their masked and relevant items.

  Args:
    n_items: catalogue size.
    eval_users: ``(n,)`` users to evaluate.
    mask_indptr, mask_items: CSR over all users of the items to mask
      (the training positives).
    rel_indptr, rel_items: CSR over all users of the relevant items (the
      held-out positives).
    block_size: users per block.
  """
  eval_users = np.asarray(eval_users, np.int64)
  n = len(eval_users)
  b = int(max(1, min(block_size, max(n, 1))))
  n_blocks = max(1, -(-n // b))
  pad = n_blocks * b - n
  users = np.concatenate([eval_users, np.zeros(pad, np.int64)])
  user_valid = np.arange(n_blocks * b) < n
  # Relevant items, padded to the max count H.
  owner, items, lens = csr_gather(np.asarray(rel_indptr), np.asarray(rel_items),
                                 eval_users)
  h = int(max(1, lens.max(initial=0)))
  slot = np.arange(len(owner)) - np.repeat(np.cumsum(lens) - lens, lens)
  rel = np.zeros((n_blocks * b, h), np.int32)
  rel_valid = np.zeros((n_blocks * b, h), bool)
  rel[owner, slot] = items
  rel_valid[owner, slot] = True
  # Masked items per block, padded to the max block count L.
  owner, items, _ = csr_gather(np.asarray(mask_indptr), np.asarray(mask_items),
                              eval_users)
  block = owner // b
  counts = np.bincount(block, minlength=n_blocks)
  l = int(max(1, counts.max(initial=0)))
  pos = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
  mask_rows = np.zeros((n_blocks, l), np.int32)
  mask_cols = np.full((n_blocks, l), n_items, np.int32)
  mask_rows[block, pos] = owner % b
  mask_cols[block, pos] = items
  return EvalData(users=users.reshape(n_blocks, b).astype(np.int32),
                  user_valid=user_valid.reshape(n_blocks, b),
                  mask_rows=mask_rows, mask_cols=mask_cols,
                  rel_items=rel.reshape(n_blocks, b, h),
                  rel_valid=rel_valid.reshape(n_blocks, b, h),
                  n_items=int(n_items))


def eval_data_from_split(split, block_size: int = 256,
                         users: np.ndarray | None = None) -> EvalData:
  """:class:`EvalData` of a protocol split: mask train, rank held-out.

  Args:
    split: a :class:`monosem_jax.data.protocol.Split`.
    block_size: users per block.
    users: subset of users (default ``split.eval_users``).
  """
  users = split.eval_users if users is None else users
  return make_eval_data(split.n_items, users, split.train_indptr(),
                        split.train_items, split.test_indptr(),
                        split.test_items, block_size)


def block_sums(scores: jax.Array, user_valid, mask_rows, mask_cols, rel_items,
               rel_valid, n_items: int, ks: Sequence[int] = DEFAULT_KS,
               ties: str = 'index') -> dict:
  """Metric sums over one block of users from its ``(B, n_items)`` scores.

  The arguments after ``scores`` are one block of :class:`EvalData`
  (``user_valid`` ``(B,)``, ``mask_rows``/``mask_cols`` ``(L,)``,
  ``rel_items``/``rel_valid`` ``(B, H)``). Traceable.

  Returns:
    dict of scalar sums over the block's users, including ``has_relevant``
    (the number of users the means divide by; see :func:`mean_metrics`).
  """
  scores = scores.astype(jnp.float32).at[mask_rows, mask_cols].set(
      -jnp.inf, mode='drop')
  ranks = relevant_ranks(scores, rel_items, ties)
  m = per_user_metrics(ranks, rel_valid & user_valid[:, None], n_items, ks,
                       xp=jnp)
  return {k: v.sum() for k, v in m.items()}


def mean_metrics(sums: dict) -> dict[str, float]:
  """Means over the evaluated users from summed :func:`block_sums`."""
  sums = {k: float(v) for k, v in jax.device_get(sums).items()}
  n = sums.pop('has_relevant')
  out = {k: v / max(n, 1.0) for k, v in sums.items()}
  out['n_users'] = int(round(n))
  return out


@functools.lru_cache(maxsize=64)
def _evaluator(score_fn: ScoreFn, ks: tuple[int, ...], ties: str,
               n_items: int):

  def block(params, xs):
    users, *rest = xs
    return block_sums(score_fn(params, users), *rest, n_items, ks, ties)

  @jax.jit
  def run(params, arrays):
    sums = jax.lax.map(functools.partial(block, params), arrays)
    return {k: v.sum() for k, v in sums.items()}

  return run


def evaluate(score_fn: ScoreFn, params, data: EvalData,
             ks: Sequence[int] = DEFAULT_KS, ties: str = 'index',
             arrays: tuple | None = None) -> dict[str, float]:
  """Mean full-ranking metrics over the users of ``data``.

  Args:
    score_fn: ``score_fn(params, users (B,)) -> (B, n_items)`` scores (e.g.
      ``mf.user_item_logits``); pass the same function object each time to
      reuse the compiled evaluator. The package's score functions compute
      exact float32 logits (docs/method.md#precision); one of your own runs
      at the precision its products name.
    params: its first argument (any pytree).
    data: from :func:`make_eval_data` / :func:`eval_data_from_split`.
    ks: cut-offs.
    ties: tie convention, see the module docstring.
    arrays: optional cached ``data.device_arrays()``.

  Returns:
    ``{'hr@10': ..., 'recall@10': ..., 'ndcg@10': ..., 'mrr@10': ...,
    'mrr': ..., 'mpr': ..., 'n_users': ...}`` as Python floats.
  """
  if ties not in TIES:
    raise ValueError(f'ties={ties!r}; expected one of {TIES}')
  run = _evaluator(score_fn, tuple(int(k) for k in ks), ties, data.n_items)
  return mean_metrics(run(params, data.device_arrays() if arrays is None
                          else arrays))


def popularity_scores(pop: jax.Array, users: jax.Array) -> jax.Array:
  """Score function of the popularity baseline: ``(B, n_items)`` = ``pop``."""
  return jnp.broadcast_to(jnp.asarray(pop, jnp.float32),
                          (users.shape[0], pop.shape[0]))


def train_popularity(split) -> np.ndarray:
  """``(n_items,)`` number of distinct users among the training positives."""
  return np.bincount(split.train_items, minlength=split.n_items).astype(
      np.float32)


def evaluate_popularity(split, data: EvalData | None = None,
                        ks: Sequence[int] = DEFAULT_KS, ties: str = 'index',
                        arrays: tuple | None = None) -> dict[str, float]:
  """The popularity baseline (rank by #training users), evaluated like a model."""
  data = eval_data_from_split(split) if data is None else data
  return evaluate(popularity_scores, jnp.asarray(train_popularity(split)),
                  data, ks, ties, arrays)
