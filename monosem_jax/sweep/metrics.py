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
  ``(score(u_hat, i_hat) - score(u, i))^2``, by the frozen scorer's
  ``score_mse`` (MF: the exact Gram form; NCF: through the frozen MLP,
  chunked over users);
* ``fve_prefix_users`` / ``fve_prefix_items`` ``(C, P)`` for Matryoshka;
* ``finite``: the state's flag (False once a config diverged in training)
  and the config's codes and reconstructions all finite; ``diverged_step``
  copied from the state, ``dict_size``.

Every product is exact float32 whatever ``SweepSpec.precision`` trained
the configs (the SAE through :func:`~monosem_jax.sae.model.exact`, the
scorer's evaluation terms always; docs/method.md#precision), so a
reduced-precision sweep is judged exactly.

Masked latents (beyond ``dict_size``) are excluded everywhere. BatchTopK
keeps ``k * N`` units over each whole evaluated set. A config whose codes or
reconstructions are not all finite (e.g. frozen at weights of 1e30 by a
learning rate of 1e30) is not scored: every metric is NaN, never an L0 of 5
or a dead fraction counted from NaN codes.

Example:
  >>> import jax, numpy as np
  >>> from monosem_jax.recommenders.kinds import make_scorer
  >>> from monosem_jax.sweep.spec import SweepSpec, SweepHparams
  >>> from monosem_jax.sweep.state import init_sweep
  >>> spec = SweepSpec(dim=4, max_dict_size=6)
  >>> hparams = SweepHparams.grid(spec, dict_size=[3, 6])
  >>> state = init_sweep(spec, hparams)
  >>> rng = np.random.default_rng(0)
  >>> m = evaluate_configs(state, spec, hparams, make_scorer(spec.kind, {}),
  ...                      rng.normal(size=(10, 4)), rng.normal(size=(12, 4)))
  >>> m['l0_items'].shape, m['dead_frac'].shape
  ((2,), (2,))
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from monosem_jax.sae import losses, model
from monosem_jax.sweep import sharding
from monosem_jax.sweep.spec import SweepHparams, SweepSpec
from monosem_jax.sweep.state import SweepState


_SCORED = 'scored'   # internal: the config's codes and reconstructions are finite


def _fve(x, x_hat):
  sse = jnp.sum(jnp.square(x - x_hat), axis=(-2, -1))
  sst = jnp.sum(jnp.square(x - jnp.mean(x, 0)))
  return sse, sst


def _evaluate_impl(spec, scorer, users, items):
  cfg = model.exact(spec.sae)
  u_in, u_stats = model.prepare(users, cfg)
  i_in, i_stats = model.prepare(items, cfg)
  reference = scorer.eval_terms(users, items)  # once for every config

  def one(args):
    sae, hp = args
    mask = model.latent_mask(hp.dict_size, cfg.dict_size)
    m = jnp.sum(mask)
    zu, uh = model.forward_prepared(sae, u_in, u_stats, cfg, hp.k, mask)
    zi, ih = model.forward_prepared(sae, i_in, i_stats, cfg, hp.k, mask)
    fired = jnp.any(zu != 0, 0) | jnp.any(zi != 0, 0)  # signed codes too
    sse_u, sst_u = _fve(users, uh)
    sse_i, sst_i = _fve(items, ih)
    out = {
        'l0_users': jnp.mean(jnp.sum(zu != 0, -1).astype(jnp.float32)),
        'l0_items': jnp.mean(jnp.sum(zi != 0, -1).astype(jnp.float32)),
        'dead_frac': jnp.sum(mask & ~fired) / m,
        'fve_users': 1.0 - sse_u[-1] / sst_u,
        'fve_items': 1.0 - sse_i[-1] / sst_i,
        'fve': 1.0 - (sse_u[-1] + sse_i[-1]) / (sst_u + sst_i),
        'emb_mse_users': losses.mse(uh[-1], users),
        'emb_mse_items': losses.mse(ih[-1], items),
        'score_mse': scorer.score_mse(reference, users, items, uh[-1], ih[-1]),
    }
    if cfg.prefixes:
      out['fve_prefix_users'] = 1.0 - sse_u / sst_u
      out['fve_prefix_items'] = 1.0 - sse_i / sst_i
    ok = (jnp.all(jnp.isfinite(zu)) & jnp.all(jnp.isfinite(zi))
          & jnp.all(jnp.isfinite(uh)) & jnp.all(jnp.isfinite(ih)))
    out = {k: jnp.where(ok, v, jnp.nan) for k, v in out.items()}
    out[_SCORED] = ok
    return out

  return one


@functools.partial(jax.jit, static_argnums=(0, 6))
def _evaluate_jit(spec, scorer, sae, hparams, users, items, config_chunk):
  one = _evaluate_impl(spec, scorer, users, items)
  if config_chunk is None:
    return jax.vmap(lambda p, h: one((p, h)))(sae, hparams)
  return jax.lax.map(one, (sae, hparams), batch_size=config_chunk)


def evaluate_configs(state: SweepState, spec: SweepSpec,
                     hparams: SweepHparams, scorer, user_emb, item_emb, *,
                     config_chunk: int | None = None) -> dict[str, np.ndarray]:
  """Evaluation metrics of every config (see module docstring).

  Args:
    state: a :class:`~monosem_jax.sweep.state.SweepState`.
    spec: its :class:`~monosem_jax.sweep.spec.SweepSpec`.
    hparams: its :class:`~monosem_jax.sweep.spec.SweepHparams`.
    scorer: the frozen scorer (``eval_terms``, ``score_mse``).
    user_emb: ``(N_u, d)`` evaluated users' original embeddings (e.g. the
      SAE-test users).
    item_emb: ``(N_i, d)`` all items' original embeddings.
    config_chunk: evaluate this many configs at a time (``lax.map`` with
      ``batch_size``) to bound memory; None = all at once.

  Returns:
    dict of host numpy arrays with a leading config axis C.
  """
  users = jnp.asarray(user_emb, jnp.float32)
  items = jnp.asarray(item_emb, jnp.float32)
  chex.assert_rank([users, items], 2)
  chex.assert_axis_dimension(users, 1, spec.dim)
  chex.assert_axis_dimension(items, 1, spec.dim)
  out = _evaluate_jit(spec, scorer, state.sae, hparams, users, items,
                      config_chunk)
  res = {k: sharding.to_host(v) for k, v in out.items()}
  res['finite'] = sharding.to_host(state.finite) & res.pop(_SCORED)
  res['diverged_step'] = sharding.to_host(state.diverged_step)
  res['dict_size'] = np.asarray(hparams.dict_size)
  return res
