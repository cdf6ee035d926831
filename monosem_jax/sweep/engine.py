"""The sweep engine: C SAE configs trained together by vmap in one jitted step.

Usage (the launcher's loop)::

  spec = SweepSpec(model='mf', d=20, max_latents=64)            # static
  params = SweepParams.grid(spec, lambda_pred=[0, 1, 2, 5, 10],
                            dict_size=[22, 64])                 # (C,) arrays
  data = SweepData.mf(user_emb, item_emb, sae_train_users)      # or .ncf(...)
  state = init_sweep(spec, params, jax.random.PRNGKey(0))       # validates
  for epoch in range(spec.epochs):
    state, history = run_epoch(spec, params, state, data)       # jitted
  metrics = evaluate_configs(state, spec, params, test_user_emb, item_emb)

or, with orbax checkpoints every N epochs and automatic resume,
``state, histories = train_sweep(spec, params, data, key, workdir=...)``.

How it works:

* **One program for all configs.** :func:`run_epoch` draws the epoch's batch
  indices on device from ``fold_in(state.data_key, state.epoch)`` and
  ``lax.scan``-s the step over them. Each step gathers one batch shared by all
  configs, computes the SAE-independent terms once (normalisation statistics,
  ``U^T U`` or ``U I^T``, the frozen MLP's outputs on the original pairs), then
  ``jax.vmap``-s loss, gradient and Adam update over the config axis. The
  encoder product of the shared batch against all configs' ``W`` becomes one
  large matmul.
* **Per-config learning rate.** Adam runs at unit rate (the
  ``optax.scale_by_adam`` update rule; b1 0.9, b2 0.999, eps 1e-8 as PyTorch)
  and the step is scaled by the config's traced ``lr``. The bias corrections
  ``1 - b^t`` come from running products ``b^t`` shared by all configs
  (``state.adam_pows``) instead of a per-config ``b ** count``: a vectorised
  ``pow`` rounds differently with the vector width, which made sharded and
  unsharded runs differ in the last bit.
* **Dictionary size by mask.** ``mask = arange(M) < dict_size``: masked latents
  output 0, get 0 gradient (so Adam leaves them untouched), and are excluded
  from the L1/KL means, L0, dead counts and metrics.
* **Divergence.** A config whose loss, new params or new optimiser state is
  not finite keeps its previous state (``where(finite, new, old)``), is
  marked ``state.finite[c] = False`` with ``state.diverged_step[c]`` set, and
  stays frozen; the other configs are unaffected.
* **Batches (PAPER.md §5).** MF: a shuffled batch of SAE-train users (one pass,
  drop last) with a shuffled, cycled batch of all items. NCF ('positive'):
  observed positive (user, item) pairs of SAE-train users; NCF ('random'):
  a user batch zipped with an item batch.
* **Seeds.** ``seed`` seeds each config's SAE init; the batch order comes from
  the sweep key, so all configs see the same data. Same inputs, same machine:
  bitwise the same result.

Example:
  >>> import jax, numpy as np
  >>> from monosem_jax.sweep.spec import SweepSpec, SweepParams
  >>> rng = np.random.default_rng(0)
  >>> data = SweepData.mf(rng.normal(size=(40, 4)), rng.normal(size=(30, 4)),
  ...                     np.arange(32))
  >>> spec = SweepSpec(model='mf', d=4, max_latents=6, batch_users=8,
  ...                  batch_items=8)
  >>> params = SweepParams.grid(spec, lambda_pred=[0.0, 1.0], dict_size=[3, 6])
  >>> state = init_sweep(spec, params, jax.random.PRNGKey(0))
  >>> state, hist = run_epoch(spec, params, state, data)
  >>> hist['loss'].shape, int(state.step)
  ((4,), 4)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from monosem_jax.errors import WorkdirError
from monosem_jax.sae import losses, model
from monosem_jax.sweep.spec import (SweepConfigError, SweepParams, SweepSpec,
                                    validate)

ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


def adam_init(params: Any) -> dict:
  """Adam moments ``{'mu', 'nu'}`` (zeros like ``params``)."""
  zeros = lambda p: jax.tree.map(jnp.zeros_like, p)
  return {'mu': zeros(params), 'nu': zeros(params)}


def adam_direction(grads: Any, opt: dict, pows: jax.Array
                   ) -> tuple[Any, dict]:
  """Unit-rate Adam step direction (``optax.scale_by_adam`` semantics).

  Args:
    grads: gradient pytree.
    opt: moments ``{'mu', 'nu'}`` like ``grads``.
    pows: ``(2,)`` = ``(b1^t, b2^t)`` for this step t >= 1.

  Returns:
    ``(direction, new_opt)``; the parameter update is ``-lr * direction``.
  """
  mu = jax.tree.map(lambda m, g: (1 - ADAM_B1) * g + ADAM_B1 * m, opt['mu'],
                    grads)
  nu = jax.tree.map(lambda v, g: (1 - ADAM_B2) * (g * g) + ADAM_B2 * v,
                    opt['nu'], grads)
  c1, c2 = 1 - pows[0], 1 - pows[1]
  direction = jax.tree.map(lambda m, v: (m / c1) / (jnp.sqrt(v / c2) + ADAM_EPS),
                           mu, nu)
  return direction, {'mu': mu, 'nu': nu}


# ---------------------------------------------------------------------------
# Data and state pytrees


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SweepData:
  """Device inputs of a sweep (all frozen; nothing here is ever updated).

  Attributes:
    user_emb: ``(n_users, d)`` float32 original user embeddings.
    item_emb: ``(n_items, d)`` float32 original item embeddings.
    train_users: ``(n_train,)`` int32 SAE-train user ids.
    pos_users, pos_items: ``(n_pos,)`` int32 positive pairs of SAE-train users
      (NCF 'positive' batching), else None.
    mlp: the frozen NCF ``params['mlp']`` list (NCF), else None.
    user_bias, item_bias: optional NCF bias tables ``(n_users,)``,
      ``(n_items,)`` added to both logits of the prediction loss.
  """
  user_emb: Any
  item_emb: Any
  train_users: Any
  pos_users: Any = None
  pos_items: Any = None
  mlp: Any = None
  user_bias: Any = None
  item_bias: Any = None

  @classmethod
  def mf(cls, user_emb, item_emb, train_users) -> 'SweepData':
    """MF-SAE inputs: the two embedding tables and the SAE-train user ids."""
    return cls(jnp.asarray(user_emb, jnp.float32),
               jnp.asarray(item_emb, jnp.float32),
               jnp.asarray(train_users, jnp.int32))

  @classmethod
  def ncf(cls, user_emb, item_emb, train_users, mlp, pos_users=None,
          pos_items=None, user_bias=None, item_bias=None) -> 'SweepData':
    """NCF-SAE inputs; ``pos_users/pos_items`` must be pairs of train users."""
    f = lambda a, t: None if a is None else jnp.asarray(a, t)
    return cls(f(user_emb, jnp.float32), f(item_emb, jnp.float32),
               f(train_users, jnp.int32), f(pos_users, jnp.int32),
               f(pos_items, jnp.int32),
               jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), mlp),
               f(user_bias, jnp.float32), f(item_bias, jnp.float32))


def positive_pairs_of(users: np.ndarray, items: np.ndarray,
                      train_users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The (user, item) positives whose user is an SAE-train user (numpy)."""
  keep = np.isin(np.asarray(users), np.asarray(train_users))
  return np.asarray(users)[keep], np.asarray(items)[keep]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SweepState:
  """Stacked training state; every per-config leaf has a leading C axis.

  Attributes:
    sae: SAE params pytree, leaves ``(C, ...)``.
    opt: Adam moments ``{'mu', 'nu'}``, leaves ``(C, ...)``.
    adam_pows: ``()`` -> ``(2,)`` float32 ``(b1^t, b2^t)`` after t steps,
      shared by all configs.
    data_key: ``(2,)`` uint32 key of the shared batch stream.
    epoch: ``()`` int32, epochs completed.
    step: ``()`` int32, steps completed.
    finite: ``(C,)`` bool, False once a config diverged (then frozen).
    diverged_step: ``(C,)`` int32, the step that diverged, -1 if none.
  """
  sae: Any
  opt: Any
  adam_pows: Any
  data_key: Any
  epoch: Any
  step: Any
  finite: Any
  diverged_step: Any

  @property
  def num_configs(self) -> int:
    return int(self.finite.shape[0])

  def take(self, idx) -> 'SweepState':
    """Host copy of configs ``idx`` (e.g. drop or re-pad padded configs)."""
    idx = np.asarray(idx)
    per = lambda t: jax.tree.map(lambda x: np.asarray(x)[idx], t)
    return dataclasses.replace(
        self, sae=per(self.sae), opt=per(self.opt), finite=per(self.finite),
        diverged_step=per(self.diverged_step))


# ---------------------------------------------------------------------------
# Initialisation


def _init_impl(spec: SweepSpec, seeds: jax.Array, key: jax.Array) -> SweepState:
  cfg = spec.sae
  sae = jax.vmap(lambda s: model.init(jax.random.PRNGKey(s), cfg))(seeds)
  c = seeds.shape[0]
  return SweepState(sae=sae, opt=jax.vmap(adam_init)(sae),
                    adam_pows=jnp.ones((2,), jnp.float32),
                    data_key=jnp.asarray(key, jnp.uint32),
                    epoch=jnp.zeros((), jnp.int32), step=jnp.zeros((), jnp.int32),
                    finite=jnp.ones((c,), bool),
                    diverged_step=jnp.full((c,), -1, jnp.int32))


_init_jit = jax.jit(_init_impl, static_argnums=0)


def init_sweep(spec: SweepSpec, params: SweepParams,
               key: jax.Array | None = None) -> SweepState:
  """Validates the sweep and builds its initial state.

  Args:
    spec: static sweep description.
    params: per-config hyper-parameters ``(C,)``.
    key: PRNG key (``jax.random.PRNGKey``) of the shared batch stream;
      default ``PRNGKey(42)``. Each config's SAE init uses
      ``PRNGKey(params.seed[c])``.

  Raises:
    SweepConfigError: before compiling, naming the field and config.
  """
  validate(spec, params)
  if key is None:
    key = jax.random.PRNGKey(42)
  return _init_jit(spec, jnp.asarray(np.asarray(params.seed), jnp.int32), key)


# ---------------------------------------------------------------------------
# Batches


def steps_per_epoch(spec: SweepSpec, data: SweepData) -> int:
  """Static number of steps per epoch (from the data's shapes)."""
  if spec.model == 'ncf' and spec.ncf_pairs == 'positive':
    if data.pos_users is None:
      raise SweepConfigError("SweepSpec.ncf_pairs='positive' needs "
                             'SweepData.pos_users / pos_items')
    n, b, what = data.pos_users.shape[0], spec.batch_pairs, 'positive pairs'
  else:
    b = spec.batch_users if spec.model == 'mf' else spec.batch_pairs
    n, what = data.train_users.shape[0], 'SAE-train users'
  if spec.steps_per_epoch:
    return spec.steps_per_epoch
  if n // b < 1:
    raise SweepConfigError(f'{n} {what} do not fill one batch of {b}; lower '
                           'the batch size or set SweepSpec.steps_per_epoch')
  return n // b


def _stream(key: jax.Array, n: int, total: int) -> jax.Array:
  """``total`` indices in [0, n): consecutive fresh permutations, cut."""
  reps = -(-total // n)
  perms = jax.vmap(lambda k: jax.random.permutation(k, n))(
      jax.random.split(key, reps))
  return perms.reshape(-1)[:total]


def epoch_indices(spec: SweepSpec, data: SweepData, key: jax.Array
                  ) -> dict[str, jax.Array]:
  """The epoch's batches as index arrays ``{'u': (S, Bu), 'i': (S, Bi)}``.

  ``u`` indexes ``data.user_emb`` rows, ``i`` ``data.item_emb`` rows (for NCF
  paired row by row, ``Bu = Bi = batch_pairs``).
  """
  s = steps_per_epoch(spec, data)
  ku, ki = jax.random.split(key)
  n_train, n_items = data.train_users.shape[0], data.item_emb.shape[0]
  if spec.model == 'mf':
    bu, bi = spec.batch_users, spec.batch_items
  else:
    bu = bi = spec.batch_pairs
  if spec.model == 'ncf' and spec.ncf_pairs == 'positive':
    p = _stream(ku, data.pos_users.shape[0], s * bu).reshape(s, bu)
    return {'u': data.pos_users[p], 'i': data.pos_items[p]}
  users = data.train_users[_stream(ku, n_train, s * bu)].reshape(s, bu)
  items = _stream(ki, n_items, s * bi).reshape(s, bi)
  return {'u': users, 'i': items}


def _shared_batch(spec: SweepSpec, data: SweepData, ix: dict) -> dict:
  """Gathers one batch and its SAE-independent terms (once for all configs)."""
  sg = jax.lax.stop_gradient
  cfg = spec.sae
  u = sg(data.user_emb[ix['u']])
  i = sg(data.item_emb[ix['i']])
  u_in, u_stats = model.prepare(u, cfg)
  i_in, i_stats = model.prepare(i, cfg)
  b = {'u': u, 'i': i, 'u_in': u_in, 'u_stats': u_stats, 'i_in': i_in,
       'i_stats': i_stats}
  if spec.model == 'mf':
    if spec.mf_pred_impl == 'gram':
      b['gram_uu'] = u.T @ u
    else:
      b['scores'] = u @ i.T
  else:
    bias = 0.0
    if data.user_bias is not None:
      bias = bias + data.user_bias[ix['u']]
    if data.item_bias is not None:
      bias = bias + data.item_bias[ix['i']]
    b['bias'] = sg(bias)
    b['mlp'] = sg(data.mlp)
    b['target'] = losses.ncf_target_probs(data.mlp, u, i, bias)
  return b


# ---------------------------------------------------------------------------
# Objective and step


def config_objective(sae: model.Params, hp: SweepParams, batch: dict,
                     spec: SweepSpec) -> tuple[jax.Array, dict]:
  """Total loss of ONE config on a shared batch (vmapped over configs).

  Args:
    sae: one config's SAE params.
    hp: one config's hyper-parameters (scalar leaves).
    batch: from :func:`_shared_batch` (original embeddings ``u`` ``(Bu, d)``,
      ``i`` ``(Bi, d)`` and the SAE-independent terms).
    spec: static spec.

  Returns:
    ``(total, aux)``: ``total = lambda_emb L_emb + lambda_pred L_pred +
    lambda_l1 L1 + lambda_kl KL`` and the scalar terms, plus ``n_clamped``
    (KL-clamped active latents, users + items) and ``l0`` (mean active
    latents per sample, users and items averaged).
  """
  cfg = spec.sae
  mask = model.latent_mask(hp.dict_size, cfg.n_latents)
  zu, u_hats = model.forward_prepared(sae, batch['u_in'], batch['u_stats'], cfg,
                                      hp.k, mask)
  zi, i_hats = model.forward_prepared(sae, batch['i_in'], batch['i_stats'], cfg,
                                      hp.k, mask)
  u, i = batch['u'], batch['i']
  emb = losses.matryoshka_embedding_loss(u, u_hats, i, i_hats)
  if spec.model == 'mf':
    if spec.mf_pred_impl == 'gram':
      pred = losses.mf_score_mse_gram(u, i, u_hats[-1], i_hats[-1],
                                      batch['gram_uu'])
    else:
      pred = losses.mf_score_mse(u, i, u_hats[-1], i_hats[-1], batch['scores'])
  else:
    pred = losses.ncf_prediction_loss(batch['mlp'], u_hats[-1], i_hats[-1],
                                      batch['target'], spec.pred_loss,
                                      batch['bias'])
  l1 = losses.l1_penalty(zu, mask) + losses.l1_penalty(zi, mask)
  kl_u, c_u = losses.kl_sparsity(zu, hp.rho, mask)
  kl_i, c_i = losses.kl_sparsity(zi, hp.rho, mask)
  kl = kl_u + kl_i
  total = (hp.lambda_emb * emb + hp.lambda_pred * pred + hp.lambda_l1 * l1
           + hp.lambda_kl * kl)
  l0 = 0.5 * (jnp.mean(jnp.sum(zu > 0, -1)) + jnp.mean(jnp.sum(zi > 0, -1)))
  aux = {'loss': total, 'emb': emb, 'pred': pred, 'l1': l1, 'kl': kl,
         'n_clamped': (c_u + c_i).astype(jnp.float32),
         'l0': l0.astype(jnp.float32)}
  return total, aux


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _config_update(sae, opt, hp, alive, pows, batch, spec):
  """One Adam step of one config, kept only while everything stays finite."""
  (loss, aux), grads = jax.value_and_grad(config_objective, has_aux=True)(
      sae, hp, batch, spec)
  upd, opt_new = adam_direction(grads, opt, pows)
  sae_new = jax.tree.map(lambda p, u: p - hp.lr * u, sae, upd)
  ok = jnp.isfinite(loss) & _all_finite(sae_new) & _all_finite(opt_new)
  keep = alive & ok
  pick = lambda new, old: jnp.where(keep, new, old)
  aux['ok'] = ok
  return (jax.tree.map(pick, sae_new, sae), jax.tree.map(pick, opt_new, opt),
          keep, aux)


def sweep_step(spec: SweepSpec, params: SweepParams, state: SweepState,
               data: SweepData, ix: dict) -> tuple[SweepState, dict]:
  """One training step of all configs on the batch of indices ``ix``.

  Returns the new state and per-config aux terms ``(C,)``.
  """
  batch = _shared_batch(spec, data, ix)
  pows = state.adam_pows * jnp.array([ADAM_B1, ADAM_B2], jnp.float32)
  upd = functools.partial(_config_update, pows=pows, batch=batch, spec=spec)
  sae, opt, keep, aux = jax.vmap(upd)(state.sae, state.opt, params,
                                      state.finite)
  diverged = jnp.where(state.finite & ~keep, state.step, state.diverged_step)
  state = dataclasses.replace(state, sae=sae, opt=opt, adam_pows=pows,
                              finite=keep,
                              diverged_step=diverged, step=state.step + 1)
  return state, aux


def _run_epoch_impl(spec, params, state, data):
  ix = epoch_indices(spec, data, jax.random.fold_in(state.data_key, state.epoch))

  def body(st, ix_t):
    return sweep_step(spec, params, st, data, ix_t)

  state, aux = jax.lax.scan(body, state, ix)
  history = {k: jnp.mean(v, axis=0) for k, v in aux.items() if k != 'ok'}
  history['nonfinite_steps'] = jnp.sum(~aux['ok'], axis=0).astype(jnp.int32)
  history['finite'] = state.finite
  return dataclasses.replace(state, epoch=state.epoch + 1), history


_run_epoch_jit = jax.jit(_run_epoch_impl, static_argnums=0)


def _state_is_per_config(state_like) -> SweepState:
  """Marks which SweepState fields carry the config axis."""
  per = lambda t: jax.tree.map(lambda _: True, t)
  return SweepState(sae=per(state_like.sae), opt=per(state_like.opt),
                    adam_pows=False, data_key=False, epoch=False, step=False,
                    finite=True, diverged_step=True)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run_epoch_shard_map(spec, mesh, params, state, data):
  """The epoch under ``shard_map`` (one compile; equal to the unsharded run
  up to float rounding, since XLA fuses the partitioned program differently)."""
  from jax.sharding import PartitionSpec as P
  from monosem_jax.sweep.sharding import AXIS
  specs = jax.tree.map(lambda f: P(AXIS) if f else P(),
                       _state_is_per_config(state))
  fn = jax.shard_map(functools.partial(_run_epoch_impl, spec), mesh=mesh,
                     in_specs=(P(AXIS), specs, P()),
                     out_specs=(specs, P(AXIS)), check_vma=False)
  return fn(params, state, data)


def run_epoch(spec: SweepSpec, params: SweepParams, state: SweepState,
              data: SweepData, *, sharded_mode: str = 'dispatch'
              ) -> tuple[SweepState, dict[str, jax.Array]]:
  """Trains every config for one epoch (jitted; compiled once per spec/shapes).

  Args:
    spec: static spec.
    params: per-config hyper-parameters (validated by :func:`init_sweep`).
    state: current state.
    data: frozen inputs.

  Returns:
    ``(state, history)``; history holds ``(C,)`` epoch means of ``loss, emb,
    pred, l1, kl, n_clamped, l0`` plus ``nonfinite_steps`` (int) and
    ``finite`` (bool, False = diverged and frozen).

  Sharded states (from :func:`~monosem_jax.sweep.sharding.shard_sweep`) run
  per device: every device executes the unsharded executable on its own
  block of configs (``sharded_mode='dispatch'``, bitwise equal to unsharded
  runs of each block) or, with ``sharded_mode='shard_map'``, one partitioned
  program (one compile instead of one per device; equal up to rounding).
  """
  from monosem_jax.sweep import sharding
  mesh = sharding.config_mesh_of(state)
  if mesh is None:
    return _run_epoch_jit(spec, params, state, data)
  if sharded_mode == 'shard_map':
    return _run_epoch_shard_map(spec, mesh, params, state, data)
  if sharded_mode != 'dispatch':
    raise ValueError(f"sharded_mode={sharded_mode!r}: 'dispatch' | 'shard_map'")
  out_per_config = (_state_is_per_config(state), True)
  return sharding.dispatch_per_device(
      functools.partial(_run_epoch_jit, spec), mesh, (params, state, data),
      out_per_config)


# ---------------------------------------------------------------------------
# Driver with checkpoints


def train_sweep(spec: SweepSpec, params: SweepParams, data: SweepData,
                key: jax.Array | None = None, *, epochs: int | None = None,
                workdir: str | None = None, checkpoint_every: int = 1,
                max_to_keep: int | None = 2, mesh=None,
                num_real: int | None = None,
                provenance: dict | None = None,
                callback: Callable[[int, SweepState, dict], None] | None = None
                ) -> tuple[SweepState, list[dict[str, np.ndarray]]]:
  """Runs a sweep to ``epochs``, checkpointing and resuming under ``workdir``.

  If ``workdir`` holds a checkpoint of this sweep it resumes from the latest
  one (bitwise identical to an uninterrupted run on the same devices), also
  when it was written with another device count (then equal to float32
  rounding, see :mod:`~monosem_jax.sweep.sharding`). It refuses a workdir that holds a different
  spec, params or recommender (``provenance``), or more epochs than asked.
  ``mesh`` shards the config axis (see :mod:`monosem_jax.sweep.sharding`;
  C must divide evenly: pad with ``SweepParams.pad_to`` and pass the real
  count as ``num_real``, which is what ``sweep.json`` records).

  Returns:
    The final state and the per-epoch histories (host numpy ``(C,)`` arrays).

  Raises:
    SweepConfigError: ``epochs < 1`` or invalid hyper-parameters.
    WorkdirError: the workdir holds another sweep, or more epochs.
  """
  from monosem_jax.sweep import checkpoint as ckpt
  from monosem_jax.sweep import sharding

  epochs = spec.epochs if epochs is None else epochs
  if not isinstance(epochs, (int, np.integer)) or epochs < 1:
    raise SweepConfigError(f'epochs={epochs!r}: must be an integer >= 1')
  c = params.num_configs
  num_real = c if num_real is None else int(num_real)
  if not 1 <= num_real <= c:
    raise SweepConfigError(f'num_real={num_real}: must lie in [1, {c}]')
  host_params = params
  state = init_sweep(spec, params, key)
  if mesh is not None:
    state, params, data = sharding.shard_sweep(mesh, state, params, data)
  histories: list[dict] = []
  manager = None
  if workdir is not None:
    ckpt.write_sweep_json(workdir, spec,
                          host_params.take(np.arange(num_real)), provenance)
    manager = ckpt.make_manager(workdir, max_to_keep=max_to_keep)
    latest = manager.latest_step()
    if latest is not None and latest > epochs:
      manager.close()
      raise WorkdirError(
          f'{workdir} already holds epoch {latest} of this sweep, more than '
          f'epochs={epochs}: ask for >= {latest} epochs (nothing to train) '
          'or use a fresh --workdir')
    if latest is not None:
      saved = ckpt.saved_num_configs(manager) or c
      if saved == c:
        state, histories = ckpt.restore(manager, state)
      else:  # written with another device count: re-pad the real configs
        template = init_sweep(spec, host_params.take(
            _padding_index(num_real, saved)), key)
        state, histories = ckpt.restore(manager, template)
        idx = _padding_index(num_real, c)
        state = state.take(idx)
        histories = [{k: np.asarray(v)[idx] for k, v in h.items()}
                     for h in histories]
        if mesh is not None:
          state = sharding.shard_sweep(mesh, state, host_params)[0]
  while int(state.epoch) < epochs:
    state, hist = run_epoch(spec, params, state, data)
    histories.append({k: sharding.to_host(v) for k, v in hist.items()})
    e = int(state.epoch)
    if manager is not None and (e % checkpoint_every == 0 or e == epochs):
      ckpt.save(manager, state, histories)
    if callback is not None:
      callback(e, state, histories[-1])
  if manager is not None:
    manager.wait_until_finished()
    manager.close()
  return state, histories


def _padding_index(num_real: int, size: int) -> np.ndarray:
  """Config indices of a sweep padded to ``size`` by repeating the last."""
  return np.concatenate([np.arange(num_real),
                         np.full(size - num_real, num_real - 1)])


def config_params(state: SweepState, params: SweepParams, i: int
                  ) -> model.Params:
  """Config ``i``'s SAE params trimmed to its dictionary size (numpy)."""
  from monosem_jax.sweep import sharding
  sae = jax.tree.map(lambda x: sharding.to_host(x)[i], state.sae)
  return model.trim(sae, int(np.asarray(params.dict_size)[i]))


from monosem_jax.sweep.metrics import evaluate_configs  # noqa: E402,F401
