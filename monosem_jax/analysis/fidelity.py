"""Ranking fidelity of reconstructed embeddings (docs/method.md#fidelity).

For each SAE-test user, the top-k list of the original model (original user
and item embeddings) is compared with the list from the reconstructed ones,
both ranked by the same frozen scorer with the same seen-item policy (the
user's training positives removed, order kept). Per list pair:

* **RBO** (rank-biased overlap, Webber et al. 2010) with persistence p, with
  ``X_d = |A_{1:d} ∩ B_{1:d}|``:

  - truncated, as the paper: ``(1 - p) sum_{d=1..D} p^(d-1) X_d / d``; its
    ceiling for identical lists is ``1 - p^D`` (0.958 for p = 0.9, D = 30);
  - normalised: truncated / ``(1 - p^D)`` (1 for identical lists);
  - extrapolated: ``X_D / D p^D + (1 - p) / p sum_{d=1..D} p^d X_d / d``.

* **Kendall tau-b** over the union of the two lists, an item missing from
  a list ranked ``len + 1`` there (ties among the missing ones count as ties).
* **overlap@k** ``= X_D / D``.

Everything is vectorised over users (and configs by the caller); a list pair
is an ``(N, D)`` int array pair.

Example:
  >>> import numpy as np
  >>> a = np.array([[1, 2, 3, 4]])
  >>> m = list_agreement(a, a, p=0.9)
  >>> round(float(m['rbo_norm'][0]), 6), float(m['kendall_tau'][0])
  (1.0, 1.0)
  >>> round(float(list_agreement(a, a[:, ::-1])['kendall_tau'][0]), 6)
  -1.0
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from monosem_jax.errors import ConfigError
from monosem_jax.recommenders import metrics


def _positions(a: jax.Array, b: jax.Array) -> jax.Array:
  """``(N, D)`` 0-based position of each ``a[n, i]`` in ``b[n]``, or D."""
  d = b.shape[1]
  eq = a[:, :, None] == b[:, None, :]                       # (N, D, D)
  return jnp.where(eq.any(-1), jnp.argmax(eq, -1), d)


@jax.jit
def _agreement(a: jax.Array, b: jax.Array, p: jax.Array) -> dict:
  n, d = a.shape
  depth = jnp.arange(1, d + 1, dtype=jnp.float32)           # 1..D
  pos_b = _positions(a, b)
  # a[i] is in both prefixes of depth k iff max(i, pos_b) < k.
  first_shared = jnp.maximum(jnp.arange(d)[None, :], pos_b)  # (N, D), D = never
  x = jnp.sum(first_shared[:, :, None] < jnp.arange(1, d + 1)[None, None, :],
              axis=1).astype(jnp.float32)                   # (N, D): X_1..X_D
  agree = x / depth
  w = p ** (depth - 1.0)
  rbo = (1.0 - p) * jnp.sum(w * agree, axis=1)
  ceiling = 1.0 - p ** d
  rbo_ext = agree[:, -1] * p ** d + (1.0 - p) / p * jnp.sum(
      p ** depth * agree, axis=1)

  # Kendall tau-b over the union: elements of a, then those of b not in a.
  pos_a_of_b = _positions(b, a)
  items_rank_a = jnp.concatenate(
      [jnp.broadcast_to(jnp.arange(d), (n, d)), pos_a_of_b], 1) + 1
  items_rank_b = jnp.concatenate(
      [pos_b, jnp.broadcast_to(jnp.arange(d), (n, d))], 1) + 1
  valid = jnp.concatenate([jnp.ones((n, d), bool), pos_a_of_b == d], 1)
  ra = items_rank_a.astype(jnp.float32)
  rb = items_rank_b.astype(jnp.float32)
  sa = jnp.sign(ra[:, :, None] - ra[:, None, :])
  sb = jnp.sign(rb[:, :, None] - rb[:, None, :])
  pair = valid[:, :, None] & valid[:, None, :]
  upper = jnp.triu(jnp.ones((2 * d, 2 * d), bool), 1)[None]
  pair = pair & upper
  s = jnp.sum(jnp.where(pair, sa * sb, 0.0), axis=(1, 2))
  m = jnp.sum(valid, axis=1).astype(jnp.float32)
  n0 = m * (m - 1) / 2
  n1 = jnp.sum(pair & (sa == 0), axis=(1, 2)).astype(jnp.float32)
  n2 = jnp.sum(pair & (sb == 0), axis=(1, 2)).astype(jnp.float32)
  denom = jnp.sqrt((n0 - n1) * (n0 - n2))
  tau = jnp.where(denom > 0, s / jnp.where(denom > 0, denom, 1.0), jnp.nan)
  return {'rbo': rbo, 'rbo_norm': rbo / ceiling, 'rbo_ext': rbo_ext,
          'kendall_tau': tau, 'overlap': agree[:, -1]}


def check_persistence(p: float) -> None:
  """Raises ConfigError unless the RBO persistence ``p`` is in (0, 1)."""
  try:
    ok = not isinstance(p, bool) and 0.0 < float(p) < 1.0   # NaN: False
  except (TypeError, ValueError):
    ok = False
  if not ok:
    raise ConfigError(f'p={p!r}: the RBO persistence must lie in the open '
                      'interval (0, 1), e.g. 0.9')


def list_agreement(a, b, p: float = 0.9) -> dict[str, np.ndarray]:
  """RBO (truncated, normalised, extrapolated), Kendall tau-b and overlap.

  Args:
    a, b: ``(N, D)`` int item lists (rank order, no repeats within a row).
    p: RBO persistence.

  Returns:
    ``(N,)`` float arrays ``rbo, rbo_norm, rbo_ext, kendall_tau, overlap``.

  Raises:
    ConfigError: ``p`` outside (0, 1) (``p = 1`` has no normalisation,
      ``1 - p^D = 0``; ``p = 0`` no extrapolation).
  """
  check_persistence(p)
  a = jnp.asarray(a, jnp.int32)
  b = jnp.asarray(b, jnp.int32)
  if a.shape != b.shape or a.ndim != 2:
    raise ValueError(f'list_agreement: lists of shape {a.shape} and '
                     f'{b.shape}; expected two (N, D) arrays')
  out = _agreement(a, b, jnp.float32(p))
  return {k: np.asarray(v) for k, v in out.items()}


def top_k_lists(scores: jax.Array, seen: jax.Array | None, k: int) -> jax.Array:
  """``(N, k)`` indices of the k best items per row, seen items removed.

  ``seen`` is an ``(N, n_items)`` bool mask (True = never recommend); the
  order of the remaining items is kept. Ties go to the lower item index.
  Non-finite scores (NaN, +-inf) rank last, with the seen items, as in the
  ranking metrics (:func:`monosem_jax.recommenders.metrics.finite_scores`).
  """
  scores = metrics.finite_scores(scores)
  if seen is not None:
    scores = jnp.where(seen, -jnp.inf, scores)
  return jax.lax.top_k(scores, k)[1]


def ranking_fidelity(scorer: Any, users, items, users_hat, items_hat,
                     user_index=None, item_index=None, seen=None, k: int = 30,
                     p: float = 0.9) -> dict[str, np.ndarray]:
  """Agreement of the original and the reconstructed top-k lists per user.

  Args:
    scorer: the frozen scorer (``matrix_logits``; see
      :mod:`monosem_jax.recommenders.scorers`).
    users, items: ``(N, d)`` / ``(n_items, d)`` original embeddings.
    users_hat, items_hat: their reconstructions.
    user_index, item_index: indices for the biases (MF and NCF with biases),
      or None.
    seen: ``(N, n_items)`` bool, items never recommended (e.g. training
      positives), or None.
    k: list length; p: RBO persistence.

  Returns:
    ``(N,)`` arrays as :func:`list_agreement`.
  """
  orig = scorer.matrix_logits(users, items, user_index, item_index)
  recon = scorer.matrix_logits(users_hat, items_hat, user_index, item_index)
  return list_agreement(top_k_lists(orig, seen, k), top_k_lists(recon, seen, k),
                        p)
