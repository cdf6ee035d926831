"""SAE training losses as pure functions (docs/method.md#objective).

Notation: ``U`` ``(Bu, d)`` and ``I`` ``(Bi, d)`` are batches of original
embeddings, ``U_hat``, ``I_hat`` their reconstructions, ``z`` latents
``(B, n)`` and ``mask`` the ``(n,)`` bool latent mask of a config's dictionary
size (latents beyond it are excluded from every mean).

Original embeddings enter under ``jax.lax.stop_gradient``: no gradient ever
reaches the recommender. The prediction-aware term goes through the frozen
recommender, so it lives with the recommenders
(:mod:`monosem_jax.recommenders.scorers`) and reaches the SAE objective as an
argument (:mod:`monosem_jax.sae.objective`).

Example:
  >>> import jax.numpy as jnp
  >>> U, I = jnp.ones((3, 2)), jnp.ones((4, 2))
  >>> float(embedding_loss(U, U, I, I + 1.0))
  1.0
  >>> round(float(kl_sparsity(jnp.full((5, 3), 0.05), 0.05)[0]), 6)
  0.0
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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
  """KL sparsity on the batch-mean activation (docs/method.md#objective).

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

