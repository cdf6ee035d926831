"""The recommender training loop: one jitted epoch, and :func:`fit`.

One epoch (docs/method.md#protocol, #recommenders) is a single jitted call:

1. one fresh negative per training positive, drawn on device by
   :func:`monosem_jax.data.samplers.sample_negatives` (weight 0 where the
   sampler gave up);
2. positives + negatives shuffled on device;
3. a ``lax.scan`` over mini-batches of ``batch_size``; the last partial batch
   is padded with weight-0 rows (nothing is dropped).

The loss of a batch is ``sum_b w_b [BCE(logit_b, y_b) + reg/2 (|p_u|^2 +
|q_i|^2 + b_u^2 + b_i^2)]`` (L2 per occurrence, on the touched rows only),
with ``reduction='sum'`` (MF, the paper's summed per-sample SGD updates) or
divided by ``sum_b w_b`` (``'mean'``, NCF with Adam). The gradient is taken
with respect to the gathered table rows; with ``optimizer='sgd'`` the rows
are updated in place by a scatter-add (a sparse update equal to plain SGD on
the dense gradient), otherwise the dense gradient goes through optax.

Randomness: the key of epoch ``e`` is ``fold_in(PRNGKey(seed), e)``, so a
run resumed from an epoch checkpoint is bitwise identical to an
uninterrupted one, and the same seed gives bitwise-identical params.

Determinism on a GPU: the sparse optimisers add duplicate rows of a batch
with scatter-adds, which XLA:GPU runs with atomics in no fixed order, so
two runs would differ in the last bits. The epoch program is therefore
compiled with XLA's ``xla_gpu_deterministic_ops`` (a sorted, prefix-scan
scatter; deterministic cuBLAS; no GEMM autotuning) whoever calls
:func:`fit`: :func:`training_compiler_options`. It applies to this program
only (the SAE sweeps are compiled as before). ``MONOSEM_GPU_NONDETERMINISTIC=1``
opts out (a warning says the run is not reproducible). XLA:CPU runs its
scatters in order, so the option changes nothing on a CPU.

Example (a few seconds on a laptop):
  >>> from monosem_jax.data import protocol, samplers, synthetic
  >>> ds = synthetic.make_world(synthetic.WorldConfig(n_users=200, n_items=100))
  >>> split = protocol.make_split(ds, seed=0)
  >>> cfg = TrainConfig(kind='mf', dim=8, epochs=2)
  >>> state, history = fit(cfg, split)
  >>> len(history), int(state.epoch)
  (2, 2)
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from monosem_jax.data import samplers
from monosem_jax.errors import ConfigError, DivergedError
from monosem_jax.recommenders import ITEM_TABLES, USER_TABLES, kinds
from monosem_jax.recommenders import optimizers
from monosem_jax.recommenders.config import TrainConfig


class TrainState(NamedTuple):
  """Everything an epoch boundary needs to resume (a pytree)."""

  params: Any
  opt_state: Any
  epoch: jax.Array  # int32 scalar: epochs completed
  key: jax.Array    # uint32[2] base key of the run


# ----------------------------------------------------------------------------
# Model and optimiser construction.


def init_params(cfg: TrainConfig, key: jax.Array, n_users: int,
                n_items: int) -> dict:
  """Initial params of ``cfg.kind`` (each model reads the options it has)."""
  return kinds.get(cfg.kind).model.init_from_config(key, n_users, n_items, cfg)


def init_state(cfg: TrainConfig, n_users: int, n_items: int) -> TrainState:
  """Fresh params and optimiser state; epoch 0."""
  key = jax.random.PRNGKey(cfg.seed)
  params = init_params(cfg, jax.random.fold_in(key, -1 & 0x7FFFFFFF),
                       n_users, n_items)
  return TrainState(params=params, opt_state=init_opt_state(cfg, params),
                    epoch=jnp.asarray(0, jnp.int32), key=key)


def init_opt_state(cfg: TrainConfig, params: dict):
  """The optimiser state: ``(rows_state, dense_state)`` for sparse
  optimisers, else the dense optimiser's state over all params."""
  opt = optimizers.make_optimizer(cfg)
  if opt.rows is None:
    return opt.dense.init(params)
  tables, dense = _split_tables(params)
  return (opt.rows.init(tables), opt.dense.init(dense))


def _split_tables(params: dict):
  tables = {k: v for k, v in params.items() if k in USER_TABLES + ITEM_TABLES}
  dense = {k: v for k, v in params.items() if k not in tables}
  return tables, dense


def _gather(tables: dict, users, items) -> dict:
  return {k: v[users] if k in USER_TABLES else v[items]
          for k, v in tables.items()}


def batch_objective(cfg: TrainConfig, rows: dict, dense: dict,
                    labels: jax.Array, weights: jax.Array):
  """The batch loss of gathered rows; returns ``(objective, (bce, reg))``.

  ``bce`` and ``reg`` are weighted sums over the batch.
  """
  model = kinds.get(cfg.kind).model
  logits = model.rows_logits(dense, rows)
  bce = optax.sigmoid_binary_cross_entropy(logits, labels)
  reg = sum(jnp.sum(jnp.reshape(v, (v.shape[0], -1)) ** 2, -1)
            for v in rows.values())
  reg = 0.5 * cfg.reg * reg
  bce_sum = jnp.sum(weights * bce)
  reg_sum = jnp.sum(weights * reg)
  total = bce_sum + reg_sum
  if cfg.reduction == 'mean':
    total = total / jnp.maximum(jnp.sum(weights), 1.0)
  return total, (bce_sum, reg_sum)


def make_step(cfg: TrainConfig, optimizer: optimizers.RecommenderOptimizer):
  """``step((params, opt_state), (users, items, labels, weights))``.

  The gradient is taken with respect to the gathered rows; a sparse
  optimiser updates only those rows (weight-0 rows, i.e. padding and invalid
  negatives, are not touched), a dense one gets the scattered dense gradient.
  """
  grad_fn = jax.value_and_grad(
      lambda rows, dense, y, w: batch_objective(cfg, rows, dense, y, w),
      argnums=(0, 1), has_aux=True)

  def step(carry, batch):
    params, opt_state = carry
    users, items, labels, weights = batch
    tables, dense = _split_tables(params)
    rows = _gather(tables, users, items)
    (_, (bce, reg)), (g_rows, g_dense) = grad_fn(rows, dense, labels, weights)
    if optimizer.rows is not None:
      row_grads = {}
      for k, v in tables.items():
        idx = users if k in USER_TABLES else items
        row_grads[k] = optimizers.IndexedRows(
            jnp.where(weights > 0, idx, v.shape[0]), g_rows[k])
      rows_state, dense_state = opt_state
      row_updates, rows_state = optimizer.rows.update(row_grads, rows_state)
      updates, dense_state = optimizer.dense.update(g_dense, dense_state, dense)
      new = optimizers.apply_row_updates(tables, row_updates)
      new.update(optax.apply_updates(dense, updates))
      opt_state = (rows_state, dense_state)
    else:
      grads = dict(g_dense)
      for k, v in tables.items():
        idx = users if k in USER_TABLES else items
        grads[k] = jnp.zeros_like(v).at[idx].add(g_rows[k])
      updates, opt_state = optimizer.dense.update(grads, opt_state, params)
      new = optax.apply_updates(params, updates)
    return (new, opt_state), (bce, reg)

  return step


def epoch_batches(cfg: TrainConfig, key: jax.Array, pos_users: jax.Array,
                  pos_items: jax.Array, sampler_tables) -> tuple:
  """The shuffled, padded batches of one epoch: ``(n_batches, B)`` arrays.

  Positives plus one fresh negative each, weight 0 on invalid negatives and
  on the padding of the last batch.
  """
  k_neg, k_perm = jax.random.split(key)
  sample = (samplers.sample_negatives_unique if cfg.unique_negatives
            else samplers.sample_negatives)
  neg, valid = sample(sampler_tables, k_neg, pos_users)
  n = pos_users.shape[0]
  users = jnp.concatenate([pos_users, pos_users])
  items = jnp.concatenate([pos_items, neg])
  labels = jnp.concatenate([jnp.ones(n, jnp.float32), jnp.zeros(n, jnp.float32)])
  weights = jnp.concatenate([jnp.ones(n, jnp.float32),
                             valid.astype(jnp.float32)])
  if cfg.shuffle == 'feistel':
    perm = samplers.feistel_permutation(k_perm, 2 * n)
  else:
    perm = jax.random.permutation(k_perm, 2 * n)
  b = cfg.batch_size
  n_batches = -(-(2 * n) // b)
  pad = n_batches * b - 2 * n

  def arrange(x):
    x = x[perm]
    x = jnp.concatenate([x, jnp.zeros((pad,), x.dtype)])
    return x.reshape(n_batches, b)

  return (arrange(users), arrange(items), arrange(labels), arrange(weights),
          jnp.sum(~valid))


#: Environment variable: ``1`` compiles recommender training without XLA's
#: deterministic GPU ops (see the module docstring); ``0`` or unset keeps them.
NONDETERMINISTIC_ENV = 'MONOSEM_GPU_NONDETERMINISTIC'


def training_compiler_options(deterministic: bool | None = None) -> dict:
  """XLA options of the training epoch program.

  Args:
    deterministic: True: ``{'xla_gpu_deterministic_ops': True}``; False: no
      option; None: True unless ``$MONOSEM_GPU_NONDETERMINISTIC`` is ``1``.

  Raises:
    ConfigError: the variable holds something other than ``0`` or ``1``.
  """
  if deterministic is None:
    value = os.environ.get(NONDETERMINISTIC_ENV, '').strip()
    if value not in ('', '0', '1'):
      raise ConfigError(f'{NONDETERMINISTIC_ENV}={value!r}: expected \'0\' or '
                        "'1' (1 = recommender training without XLA's "
                        'deterministic GPU ops, not reproducible)')
    deterministic = value != '1'
  return {'xla_gpu_deterministic_ops': True} if deterministic else {}


def make_epoch_fn(cfg: TrainConfig,
                  deterministic: bool | None = None) -> Callable:
  """A jitted ``epoch(state, pos_users, pos_items, sampler_tables)``.

  Returns ``(state, stats)`` with ``stats`` a dict of scalars: ``loss`` (mean
  weighted BCE per sample), ``reg`` (mean L2 term per sample), ``objective``
  (their sum), ``n_invalid_negatives``. Compiled with
  :func:`training_compiler_options` (``deterministic``), so it must be
  called at the top level, not inside another ``jit``.
  """
  step = make_step(cfg, optimizers.make_optimizer(cfg))
  options = training_compiler_options(deterministic)
  if not options and jax.default_backend() == 'gpu':
    warnings.warn('recommender training compiled without deterministic GPU '
                  f'ops ({NONDETERMINISTIC_ENV}=1 or deterministic=False): '
                  'runs are not bitwise reproducible', stacklevel=2)

  @functools.partial(jax.jit, compiler_options=options)
  def epoch(state: TrainState, pos_users, pos_items, sampler_tables):
    key = jax.random.fold_in(state.key, state.epoch)
    users, items, labels, weights, n_invalid = epoch_batches(
        cfg, key, pos_users, pos_items, sampler_tables)
    (params, opt_state), (bce, reg) = jax.lax.scan(
        step, (state.params, state.opt_state), (users, items, labels, weights))
    total_w = jnp.maximum(jnp.sum(weights), 1.0)
    stats = {'loss': jnp.sum(bce) / total_w, 'reg': jnp.sum(reg) / total_w,
             'n_invalid_negatives': n_invalid}
    stats['objective'] = stats['loss'] + stats['reg']
    return TrainState(params, opt_state, state.epoch + 1, state.key), stats

  return epoch


# ----------------------------------------------------------------------------
# In-memory training loop.


def score_fn(kind: str) -> Callable:
  """``(params, users) -> (B, n_items)`` logits of a kind (stable object)."""
  return kinds.get(kind).model.user_item_logits


def fit(cfg: TrainConfig, split, state: TrainState | None = None,
        epochs: int | None = None,
        callback: Callable[[TrainState, dict], 'bool | None'] | None = None,
        ) -> tuple[TrainState, list[dict]]:
  """Trains in memory (no files) until ``epochs`` (default ``cfg.epochs``).

  Args:
    cfg: model and optimiser settings.
    split: a :class:`monosem_jax.data.protocol.Split`.
    state: resume from this state (default: :func:`init_state`).
    epochs: total epochs to reach (``state.epoch`` counts those done).
    callback: called after each epoch with ``(state, stats)`` (stats as
      Python floats); e.g. evaluation and checkpointing. Returning True
      stops the training after that epoch.

  Returns:
    ``(state, history)``, one stats dict per epoch run here.
  """
  epochs = cfg.epochs if epochs is None else epochs
  state = init_state(cfg, split.n_users, split.n_items) if state is None else state
  epoch_fn = make_epoch_fn(cfg)
  pos_u = jnp.asarray(split.train_users)
  pos_i = jnp.asarray(split.train_items)
  tables = split.sampler_tables()
  history = []
  while int(state.epoch) < epochs:
    state, stats = epoch_fn(state, pos_u, pos_i, tables)
    stats = {k: float(v) for k, v in jax.device_get(stats).items()}
    stats['epoch'] = int(state.epoch)
    if not np.isfinite(stats['loss']):
      raise DivergedError(
          f'epoch {stats["epoch"]}: the loss is {stats["loss"]} (diverged); '
          f'lower learning_rate={cfg.learning_rate}')
    history.append(stats)
    if callback is not None and callback(state, stats):
      break
  return state, history
