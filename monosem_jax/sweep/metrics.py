"""Per-config evaluation of a trained sweep, vectorised over configs.

:func:`evaluate_configs` encodes held-out users (e.g. the SAE-test users) and
all items with every config and returns ``(C,)`` numpy arrays:

* ``l0_users``, ``l0_items``: mean number of active latents per sample;
* ``dead_frac``: fraction of the config's ``dict_size`` latents that never
  fire on any evaluated user or item;
* ``fve_users``, ``fve_items``, ``fve``: fraction of variance explained,
  ``1 - sum||x - x_hat||^2 / sum||x - mean(x)||^2`` (mean over samples; ``fve``
  pools users and items, each around its own mean);
* ``emb_mse_users``, ``emb_mse_items``: element-wise reconstruction MSE;
* ``score_mse``: mean over the users x items logit matrix of
  ``(score(u_hat, i_hat) - score(u, i))^2``; MF by the exact Gram form, NCF
  through the frozen MLP (chunked over users; needs ``mlp``);
* ``fve_prefix_users`` / ``fve_prefix_items`` ``(C, P)`` for Matryoshka;
* ``finite``, ``diverged_step`` copied from the state, ``dict_size``.

Masked latents (beyond ``dict_size``) are excluded everywhere. BatchTopK
keeps ``k * N`` units over each whole evaluated set.

Example:
  >>> import jax, numpy as np
  >>> from monosem_jax.sweep.spec import SweepSpec, SweepParams
  >>> from monosem_jax.sweep.engine import init_sweep
  >>> spec = SweepSpec(model='mf', d=4, max_latents=6)
  >>> params = SweepParams.grid(spec, dict_size=[3, 6])
  >>> state = init_sweep(spec, params)
  >>> rng = np.random.default_rng(0)
  >>> m = evaluate_configs(state, spec, params, rng.normal(size=(10, 4)),
  ...                      rng.normal(size=(12, 4)))
  >>> m['l0_items'].shape, m['dead_frac'].shape
  ((2,), (2,))
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from monosem_jax.recommenders import ncf
from monosem_jax.sae import losses, model


def _fve(x, x_hat):
  sse = jnp.sum(jnp.square(x - x_hat), axis=(-2, -1))
  sst = jnp.sum(jnp.square(x - jnp.mean(x, 0)))
  return sse, sst


def _ncf_logit_chunks(mlp, users, items, chunk):
  """``(n_chunks, chunk, n_items)`` frozen-MLP logits (users zero-padded)."""
  n = users.shape[0]
  pad = (-n) % chunk
  u = jnp.pad(users, ((0, pad), (0, 0))).reshape(-1, chunk, users.shape[1])
  return jax.lax.map(lambda b: ncf.matrix_logits(mlp, b, items), u)


def _evaluate_impl(spec, users, items, mlp, user_chunk):
  cfg = spec.sae
  u_in, u_stats = model.prepare(users, cfg)
  i_in, i_stats = model.prepare(items, cfg)
  n_users = users.shape[0]
  if spec.model == 'ncf' and mlp is not None:
    mlp = jax.lax.stop_gradient(mlp)
    orig = _ncf_logit_chunks(mlp, users, items, user_chunk)
    row_w = (jnp.arange(orig.shape[0] * user_chunk) < n_users).reshape(
        orig.shape[:2]).astype(jnp.float32)

  def one(args):
    p, h = args
    mask = model.latent_mask(h.dict_size, cfg.n_latents)
    m = jnp.sum(mask)
    zu, uh = model.forward_prepared(p, u_in, u_stats, cfg, h.k, mask)
    zi, ih = model.forward_prepared(p, i_in, i_stats, cfg, h.k, mask)
    fired = jnp.any(zu > 0, 0) | jnp.any(zi > 0, 0)
    sse_u, sst_u = _fve(users, uh)
    sse_i, sst_i = _fve(items, ih)
    out = {
        'l0_users': jnp.mean(jnp.sum(zu > 0, -1).astype(jnp.float32)),
        'l0_items': jnp.mean(jnp.sum(zi > 0, -1).astype(jnp.float32)),
        'dead_frac': jnp.sum(mask & ~fired) / m,
        'fve_users': 1.0 - sse_u[-1] / sst_u,
        'fve_items': 1.0 - sse_i[-1] / sst_i,
        'fve': 1.0 - (sse_u[-1] + sse_i[-1]) / (sst_u + sst_i),
        'emb_mse_users': losses.mse(uh[-1], users),
        'emb_mse_items': losses.mse(ih[-1], items),
    }
    if cfg.prefixes:
      out['fve_prefix_users'] = 1.0 - sse_u / sst_u
      out['fve_prefix_items'] = 1.0 - sse_i / sst_i
    if spec.model == 'mf':
      out['score_mse'] = losses.mf_score_mse_gram(users, items, uh[-1], ih[-1])
    elif mlp is not None:
      rec = _ncf_logit_chunks(mlp, uh[-1], ih[-1], user_chunk)
      sse = jnp.sum(row_w[..., None] * jnp.square(rec - orig))
      out['score_mse'] = sse / (n_users * items.shape[0])
    else:
      out['score_mse'] = jnp.float32(jnp.nan)
    return out

  return one


@functools.partial(jax.jit, static_argnums=(0, 6, 7))
def _evaluate_jit(spec, sae, hp, users, items, mlp, user_chunk, config_chunk):
  one = _evaluate_impl(spec, users, items, mlp, user_chunk)
  if config_chunk is None:
    return jax.vmap(lambda p, h: one((p, h)))(sae, hp)
  return jax.lax.map(one, (sae, hp), batch_size=config_chunk)


def evaluate_configs(state, spec, params, user_emb, item_emb, *,
                     mlp: Any = None, config_chunk: int | None = None,
                     user_chunk: int = 128) -> dict[str, np.ndarray]:
  """Evaluation metrics of every config (see module docstring).

  Args:
    state: a :class:`~monosem_jax.sweep.engine.SweepState`.
    spec: its :class:`~monosem_jax.sweep.spec.SweepSpec`.
    params: its :class:`~monosem_jax.sweep.spec.SweepParams`.
    user_emb: ``(N_u, d)`` evaluated users' original embeddings (e.g. the
      SAE-test users).
    item_emb: ``(N_i, d)`` all items' original embeddings.
    mlp: frozen NCF MLP (needed for the NCF ``score_mse``; NaN without).
    config_chunk: evaluate this many configs at a time (``lax.map`` with
      ``batch_size``) to bound memory; None = all at once.
    user_chunk: users per block of the NCF score matrix.

  Returns:
    dict of host numpy arrays with a leading config axis C.
  """
  from monosem_jax.sweep import sharding
  users = jnp.asarray(user_emb, jnp.float32)
  items = jnp.asarray(item_emb, jnp.float32)
  if mlp is not None:
    mlp = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), mlp)
  out = _evaluate_jit(spec, state.sae, params, users, items, mlp, user_chunk,
                      config_chunk)
  res = {k: sharding.to_host(v) for k, v in out.items()}
  res['finite'] = sharding.to_host(state.finite)
  res['diverged_step'] = sharding.to_host(state.diverged_step)
  res['dict_size'] = np.asarray(params.dict_size)
  return res
