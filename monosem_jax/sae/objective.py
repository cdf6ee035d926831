"""The SAE training objective of one config (docs/method.md#objective).

``L = lambda_emb L_emb + lambda_pred L_pred + lambda_l1 L_1 + lambda_kl KL``

The prediction-aware term ``L_pred`` goes through the frozen recommender; it
arrives as an argument, a *scorer* (see
:mod:`monosem_jax.recommenders.scorers`: ``batch_terms`` and
``prediction_loss``), so this package never imports the recommenders. Its
products run at the config's training precision (``cfg.precision``, passed
as ``precision=``; docs/method.md#precision), as the SAE's own do.

:func:`prepare_batch` does the work shared by every config of a sweep (the
inputs' normalisation and the scorer's SAE-independent terms);
:func:`objective` is the per-config part, the function a sweep differentiates
and ``vmap``s.

Example (an MF-like scorer written inline):
  >>> import jax, jax.numpy as jnp
  >>> from monosem_jax.sae import model
  >>> class Dot:
  ...   def batch_terms(self, U, I, users=None, items=None, precision=None):
  ...     return jnp.matmul(U, I.T, precision=precision)
  ...   def prediction_loss(self, t, U, I, Uh, Ih, precision=None):
  ...     return jnp.mean((jnp.matmul(Uh, Ih.T, precision=precision) - t) ** 2)
  >>> cfg = model.SAEConfig(dim=4, dict_size=6, normalize=True, pre_bias=True)
  >>> sae = model.init(jax.random.PRNGKey(0), cfg)
  >>> U, I = jnp.ones((3, 4)), jnp.ones((5, 4))
  >>> batch = prepare_batch(U, I, cfg, Dot())
  >>> w = LossWeights(1.0, 1.0, 0.0, 0.01, 0.05)
  >>> total, terms = objective(sae, w, batch, cfg, Dot(), k=0, dict_size=6)
  >>> sorted(terms)
  ['emb', 'kl', 'l0', 'l1', 'loss', 'n_clamped', 'pred']
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import flax.struct
import jax
import jax.numpy as jnp

from monosem_jax import precision as precision_lib
from monosem_jax.sae import losses, model

sg = jax.lax.stop_gradient


class LossWeights(NamedTuple):
  """The loss weights and the KL target of one config (scalars or arrays)."""
  lambda_emb: Any
  lambda_pred: Any
  lambda_l1: Any
  lambda_kl: Any
  rho: Any


@flax.struct.dataclass
class PreparedBatch:
  """One batch, prepared once for every config.

  Attributes:
    u, i: original user ``(Bu, d)`` and item ``(Bi, d)`` embeddings.
    u_in, i_in: the SAE inputs (normalised when the config says so).
    u_stats, i_stats: the normalisation statistics.
    terms: the scorer's SAE-independent terms of this batch.
  """
  u: jax.Array
  i: jax.Array
  u_in: jax.Array
  i_in: jax.Array
  u_stats: Any
  i_stats: Any
  terms: Any


def prepare_batch(u, i, cfg: model.SAEConfig, scorer, users=None,
                  items=None) -> PreparedBatch:
  """Original embeddings (and their indices) -> a :class:`PreparedBatch`."""
  chex.assert_rank([u, i], 2)
  chex.assert_equal_shape_suffix([u, i], 1)
  u, i = sg(u), sg(i)
  u_in, u_stats = model.prepare(u, cfg)
  i_in, i_stats = model.prepare(i, cfg)
  terms = scorer.batch_terms(u, i, users, items,
                             precision=precision_lib.training(cfg.precision))
  return PreparedBatch(u, i, u_in, i_in, u_stats, i_stats, sg(terms))


def objective(sae: model.Params, weights: LossWeights, batch: PreparedBatch,
              cfg: model.SAEConfig, scorer, k, dict_size
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Total loss of one config and its scalar terms.

  Args:
    sae: the config's SAE weights.
    weights: its loss weights and ``rho`` (:class:`LossWeights`, or any
      object with those attributes, e.g. one config of a sweep's
      hyper-parameters).
    batch: from :func:`prepare_batch`.
    cfg: the static SAE architecture (``dict_size`` = the largest size).
    scorer: the frozen scorer (``prediction_loss``).
    k: TopK ``k`` (ignored by ReLU); dict_size: active latents (mask).

  Returns:
    ``(total, terms)``: ``terms`` holds ``loss, emb, pred, l1, kl``,
    ``n_clamped`` (KL-clamped active latents, users + items) and ``l0``
    (mean non-zero latents per sample, users and items averaged).
  """
  mask = model.latent_mask(dict_size, cfg.dict_size)
  zu, u_hats = model.forward_prepared(sae, batch.u_in, batch.u_stats, cfg, k,
                                      mask)
  zi, i_hats = model.forward_prepared(sae, batch.i_in, batch.i_stats, cfg, k,
                                      mask)
  u, i = batch.u, batch.i
  emb = losses.matryoshka_embedding_loss(u, u_hats, i, i_hats)
  pred = scorer.prediction_loss(batch.terms, u, i, u_hats[-1], i_hats[-1],
                                precision=precision_lib.training(cfg.precision))
  l1 = losses.l1_penalty(zu, mask) + losses.l1_penalty(zi, mask)
  kl_u, c_u = losses.kl_sparsity(zu, weights.rho, mask)
  kl_i, c_i = losses.kl_sparsity(zi, weights.rho, mask)
  kl = kl_u + kl_i
  total = (weights.lambda_emb * emb + weights.lambda_pred * pred
           + weights.lambda_l1 * l1 + weights.lambda_kl * kl)
  # non-zero latents: a signed pursuit code has negative ones too
  l0 = 0.5 * (jnp.mean(jnp.sum(zu != 0, -1)) + jnp.mean(jnp.sum(zi != 0, -1)))
  return total, {'loss': total, 'emb': emb, 'pred': pred, 'l1': l1, 'kl': kl,
                 'n_clamped': (c_u + c_i).astype(jnp.float32),
                 'l0': l0.astype(jnp.float32)}
