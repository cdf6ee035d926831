"""SAE training losses as pure functions (PAPER.md §5).

Notation: ``U`` ``(Bu, d)`` and ``I`` ``(Bi, d)`` are batches of original
embeddings, ``U_hat``, ``I_hat`` their reconstructions, ``z`` latents
``(B, n)`` and ``mask`` the ``(n,)`` bool latent mask of a config's dictionary
size (latents beyond it are excluded from every mean).

Recommender quantities (original embeddings, original scores, the frozen MLP)
enter under ``jax.lax.stop_gradient``: no gradient ever reaches them. Terms
that do not depend on the SAE (the original scores, the Gram matrix
``U^T U``) can be passed in precomputed, so a sweep computes them once per
batch for all configs.

Example:
  >>> import jax.numpy as jnp
  >>> U, I = jnp.ones((3, 2)), jnp.ones((4, 2))
  >>> float(embedding_loss(U, U, I, I + 1.0))
  1.0
  >>> float(mf_score_mse(U, I, U, I))
  0.0
  >>> float(mf_score_mse_gram(U, I, 2 * U, I))    # logits 2 -> 4
  4.0
  >>> round(float(kl_sparsity(jnp.full((5, 3), 0.05), 0.05)[0]), 6)
  0.0
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from monosem_jax.recommenders import ncf

KL_CLAMP = 1e-6
KL_EPS = 1e-6

sg = jax.lax.stop_gradient


def mse(x_hat: jax.Array, x: jax.Array) -> jax.Array:
  """Element-wise mean of ``(x_hat - x)^2`` (scalar)."""
  return jnp.mean(jnp.square(x_hat - x))


def embedding_loss(U: jax.Array, U_hat: jax.Array, I: jax.Array,
                   I_hat: jax.Array) -> jax.Array:
  """``L_emb = MSE(U_hat, U) + MSE(I_hat, I)``.

  Args:
    U: ``(Bu, d)`` originals; U_hat ``(Bu, d)``.
    I: ``(Bi, d)`` originals; I_hat ``(Bi, d)``.

  Returns:
    scalar.
  """
  return mse(U_hat, sg(U)) + mse(I_hat, sg(I))


def matryoshka_embedding_loss(U: jax.Array, U_hats: jax.Array, I: jax.Array,
                              I_hats: jax.Array) -> jax.Array:
  """Sum over prefixes p of ``MSE(U_hats[p], U) + MSE(I_hats[p], I)``.

  Args:
    U: ``(Bu, d)``; U_hats: ``(P, Bu, d)``; I: ``(Bi, d)``; I_hats
      ``(P, Bi, d)``. With ``P = 1`` this is :func:`embedding_loss`.
  """
  per = (jnp.mean(jnp.square(U_hats - sg(U)), axis=(-2, -1))
         + jnp.mean(jnp.square(I_hats - sg(I)), axis=(-2, -1)))
  return jnp.sum(per)


def mf_score_mse(U: jax.Array, I: jax.Array, U_hat: jax.Array,
                 I_hat: jax.Array, orig_scores: jax.Array | None = None
                 ) -> jax.Array:
  """MF prediction loss ``mean((U_hat I_hat^T - U I^T)^2)`` (logit space).

  Direct form that builds the ``(Bu, Bi)`` matrices. Biases cancel and are
  left out.

  Args:
    U: ``(Bu, d)``; I: ``(Bi, d)``; U_hat ``(Bu, d)``; I_hat ``(Bi, d)``.
    orig_scores: optional precomputed ``U @ I.T`` ``(Bu, Bi)``.

  Returns:
    scalar.
  """
  if orig_scores is None:
    orig_scores = U @ I.T
  return jnp.mean(jnp.square(U_hat @ I_hat.T - sg(orig_scores)))


def mf_score_mse_gram(U: jax.Array, I: jax.Array, U_hat: jax.Array,
                      I_hat: jax.Array, gram_uu: jax.Array | None = None
                      ) -> jax.Array:
  """Exactly :func:`mf_score_mse`, through ``d x d`` Gram matrices only.

  With ``E_u = U_hat - U`` and ``E_i = I_hat - I``,
  ``U_hat I_hat^T - U I^T = E_u I_hat^T + U E_i^T``, and
  ``||A B^T||_F^2 = sum((A^T A) * (B^T B))`` gives::

    ||.||^2 = sum(E_u'E_u * I_hat'I_hat) + 2 sum(E_u'U * I_hat'E_i)
              + sum(U'U * E_i'E_i)

  Every term is second order in the errors, so nothing large cancels (float32
  stays accurate when the reconstruction is good), and the ``Bu x Bi`` matrix
  never exists: cost ``O((Bu + Bi) d^2)`` instead of ``O(Bu Bi d)``.

  Args:
    U: ``(Bu, d)``; I: ``(Bi, d)``; U_hat ``(Bu, d)``; I_hat ``(Bi, d)``.
    gram_uu: optional precomputed ``U.T @ U`` ``(d, d)`` (shared by configs).

  Returns:
    scalar, the mean over the ``Bu x Bi`` score matrix.
  """
  U, I = sg(U), sg(I)
  if gram_uu is None:
    gram_uu = U.T @ U
  e_u = U_hat - U
  e_i = I_hat - I
  total = (jnp.sum((e_u.T @ e_u) * (I_hat.T @ I_hat))
           + 2.0 * jnp.sum((e_u.T @ U) * (I_hat.T @ e_i))
           + jnp.sum(sg(gram_uu) * (e_i.T @ e_i)))
  return total / (U.shape[0] * I.shape[0])


def ncf_target_probs(mlp: Sequence[dict], U: jax.Array, I: jax.Array,
                     bias: jax.Array | float = 0.0) -> jax.Array:
  """Frozen-MLP probabilities ``y = sigmoid(f([u; i]) + bias)`` ``(B,)``.

  Independent of the SAE: compute once per batch, under stop_gradient.
  """
  return sg(jax.nn.sigmoid(ncf.mlp_logits(sg(mlp), sg(U), sg(I)) + bias))


def ncf_prediction_loss(mlp: Sequence[dict], U_hat: jax.Array,
                        I_hat: jax.Array, target: jax.Array,
                        kind: str = 'bce', bias: jax.Array | float = 0.0
                        ) -> jax.Array:
  """NCF prediction loss through the frozen MLP on paired reconstructions.

  ``y_hat = sigmoid(f([u_hat; i_hat]) + bias)``. 'bce':
  ``mean(-y log y_hat - (1 - y) log(1 - y_hat))`` with the soft target ``y``,
  computed from logits (``softplus(l) - y l``, stable); 'mse':
  ``mean((y_hat - y)^2)`` in probability space.

  Args:
    mlp: the frozen ``params['mlp']`` list (stop_gradient applied here).
    U_hat: ``(B, d)``; I_hat: ``(B, d)`` paired row by row.
    target: ``(B,)`` original probabilities from :func:`ncf_target_probs`.
    kind: 'bce' | 'mse'.
    bias: optional ``(B,)`` user + item bias logits (frozen).

  Returns:
    scalar.
  """
  logits = ncf.mlp_logits(sg(mlp), U_hat, I_hat) + sg(bias)
  y = sg(target)
  if kind == 'bce':
    return jnp.mean(jax.nn.softplus(logits) - y * logits)
  if kind == 'mse':
    return jnp.mean(jnp.square(jax.nn.sigmoid(logits) - y))
  raise ValueError(f'ncf_prediction_loss: kind={kind!r}, expected bce | mse')


def _active_count(z: jax.Array, mask: jax.Array | None) -> jax.Array:
  return z.shape[-1] if mask is None else jnp.sum(mask)


def l1_penalty(z: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """``mean |z|`` over batch x active latents: ``sum|z| / (B * m)``.

  Args:
    z: ``(B, n)``; mask: ``(n,)`` bool (m = its count) or None (m = n).
  """
  a = jnp.abs(z)
  if mask is not None:
    a = jnp.where(mask, a, 0.0)
  return jnp.sum(a) / (z.shape[0] * _active_count(z, mask))


def kl_sparsity(z: jax.Array, rho: jax.Array | float,
                mask: jax.Array | None = None
                ) -> tuple[jax.Array, jax.Array]:
  """KL sparsity on the batch-mean activation (PAPER.md §5).

  ``rho_hat_j = clamp(mean_b z_bj, 1e-6, 1 - 1e-6)``;
  ``KL = sum_j rho log((rho+eps)/(rho_hat_j+eps))
  + (1-rho) log((1-rho+eps)/(1-rho_hat_j+eps))``, eps = 1e-6, over the
  active latents only.

  Args:
    z: ``(B, n)`` latents; rho: target mean activation; mask: ``(n,)``.

  Returns:
    ``(kl, n_clamped)``: the scalar KL and the number of active latents whose
    batch mean exceeds ``1 - 1e-6`` (clamped, so they get no KL gradient; the
    paper's caveat about unbounded ReLU outputs).
  """
  mean = jnp.mean(z, axis=0)
  rho_hat = jnp.clip(mean, KL_CLAMP, 1.0 - KL_CLAMP)
  kl = (rho * jnp.log((rho + KL_EPS) / (rho_hat + KL_EPS))
        + (1.0 - rho) * jnp.log((1.0 - rho + KL_EPS) / (1.0 - rho_hat + KL_EPS)))
  over = mean > 1.0 - KL_CLAMP
  if mask is not None:
    kl = jnp.where(mask, kl, 0.0)
    over = over & mask
  return jnp.sum(kl), jnp.sum(over).astype(jnp.int32)


def total_loss(terms: dict, weights: dict) -> jax.Array:
  """``sum_t weights[t] * terms[t]`` over the keys of ``weights``.

  Example: ``total_loss({'emb': e, 'pred': p, 'l1': a, 'kl': k},
  {'emb': 0.1, 'pred': 1.0, 'l1': 0.0, 'kl': 0.01})``.
  """
  return sum(weights[t] * terms[t] for t in weights)
