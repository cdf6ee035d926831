"""Training of the recommenders: jitted epochs, checkpointed, resumable runs.

One epoch (PAPER.md §2.4, §3) is a single jitted call:

1. one fresh negative per training positive, drawn on device by
   :func:`monosem_jax.data.protocol.sample_negatives` (weight 0 where the
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

Example (a few seconds on a laptop):
  >>> from monosem_jax.data import protocol, synthetic
  >>> ds = synthetic.make_world(synthetic.WorldConfig(n_users=200, n_items=100))
  >>> split = protocol.make_split(ds, seed=0)
  >>> cfg = TrainConfig(kind='mf', dim=8, epochs=2)
  >>> state, history = fit(cfg, split)
  >>> len(history), int(state.epoch)
  (2, 2)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from monosem_jax import files
from monosem_jax.data import loaders, protocol
from monosem_jax.errors import ConfigError, DivergedError, WorkdirError
from monosem_jax.recommenders import ITEM_TABLES, USER_TABLES, get_model
from monosem_jax.recommenders import metrics as metrics_lib

OPTIMIZERS = ('sgd', 'adam', 'sparse_adam', 'adamw', 'adagrad')
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
REDUCTIONS = ('sum', 'mean')
SHUFFLES = ('feistel', 'sort')


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Model and optimisation settings (defaults: ML-1M MF of PAPER.md §3).

  Attributes:
    kind: ``'mf'`` or ``'ncf'``.
    dim: embedding width (K for MF, d for NCF).
    hidden: NCF MLP widths.
    use_bias: NCF user/item biases inside the logit (MF always has them).
    optimizer: one of :data:`OPTIMIZERS`. ``'sgd'``: plain SGD, applied as
      sparse row updates (equal to dense SGD). ``'adam'``: dense optax Adam
      (every table row moves every step). ``'sparse_adam'``: Adam whose
      moments and updates touch only the rows of the batch (as PyTorch's
      ``SparseAdam`` / TF's LazyAdam), dense Adam for the MLP; ~4x faster
      than ``'adam'`` on CPU.
    learning_rate: step size.
    reg: L2 weight lambda, per occurrence on the touched rows.
    epochs: number of epochs.
    batch_size: samples (positives + negatives) per step.
    reduction: ``'sum'`` or ``'mean'`` of the per-sample losses of a batch.
    seed: initialisation, negatives and shuffling.
    shuffle: ``'feistel'`` (default): a keyed Feistel-network permutation
      (:func:`feistel_permutation`, elementwise, ~15x faster than sorting on
      CPU); ``'sort'``: ``jax.random.permutation`` (uniform, sort-based).
    unique_negatives: True (default, PAPER.md §2.4): each user's negatives
      of an epoch are distinct (successive sampling without replacement,
      :func:`~monosem_jax.data.protocol.sample_negatives_unique`); False:
      independent draws per positive (faster; repeats possible).
  """

  kind: str = 'mf'
  dim: int = 20
  hidden: tuple[int, ...] = (64, 32, 16)
  use_bias: bool = False
  optimizer: str = 'sgd'
  learning_rate: float = 0.05
  reg: float = 0.01
  epochs: int = 10
  batch_size: int = 256
  reduction: str = 'sum'
  seed: int = 0
  shuffle: str = 'feistel'
  unique_negatives: bool = True

  def __post_init__(self):
    get_model(self.kind)
    if self.shuffle not in SHUFFLES:
      raise ConfigError(f'shuffle={self.shuffle!r}; expected one of {SHUFFLES}')
    if self.optimizer not in OPTIMIZERS:
      raise ConfigError(f'optimizer={self.optimizer!r}; expected one of '
                       f'{OPTIMIZERS}')
    if self.reduction not in REDUCTIONS:
      raise ConfigError(f'reduction={self.reduction!r}; expected one of '
                       f'{REDUCTIONS}')
    for f in ('dim', 'batch_size'):
      if int(getattr(self, f)) < 1:
        raise ConfigError(f'{f}={getattr(self, f)} must be >= 1')
    if self.epochs < 1:
      raise ConfigError(f'epochs={self.epochs}: must be >= 1 (0 would freeze '
                        'an untrained, randomly initialised model)')
    if not (self.learning_rate > 0 and np.isfinite(self.learning_rate)):
      raise ConfigError(f'learning_rate={self.learning_rate} must be > 0')
    if not self.reg >= 0:
      raise ConfigError(f'reg={self.reg} must be >= 0')
    object.__setattr__(self, 'hidden', tuple(int(h) for h in self.hidden))

  @classmethod
  def from_mapping(cls, m: Mapping[str, Any]) -> 'TrainConfig':
    """Builds from a dict / ConfigDict; unknown keys are an error."""
    m = dict(m)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(m) - fields)
    if unknown:
      raise ConfigError(f'TrainConfig: unknown key(s) {", ".join(unknown)}; '
                       f'known: {", ".join(sorted(fields))}')
    return cls(**m)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d['hidden'] = list(d['hidden'])
    return d


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
  if cfg.kind == 'mf':
    return get_model('mf').init(key, n_users, n_items, cfg.dim)
  return get_model('ncf').init(key, n_users, n_items, cfg.dim,
                               hidden=cfg.hidden, use_bias=cfg.use_bias)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
  """The optax optimiser (for ``'sparse_adam'``: the one of the dense part)."""
  lr = cfg.learning_rate
  return {'sgd': lambda: optax.sgd(lr),
          'adam': lambda: optax.adam(lr, ADAM_B1, ADAM_B2, ADAM_EPS),
          'sparse_adam': lambda: optax.adam(lr, ADAM_B1, ADAM_B2, ADAM_EPS),
          'adamw': lambda: optax.adamw(lr),
          'adagrad': lambda: optax.adagrad(lr)}[cfg.optimizer]()


def init_state(cfg: TrainConfig, n_users: int, n_items: int) -> TrainState:
  """Fresh params and optimiser state; epoch 0."""
  key = jax.random.PRNGKey(cfg.seed)
  params = init_params(cfg, jax.random.fold_in(key, -1 & 0x7FFFFFFF),
                       n_users, n_items)
  return TrainState(params=params, opt_state=init_opt_state(cfg, params),
                    epoch=jnp.asarray(0, jnp.int32), key=key)


def init_opt_state(cfg: TrainConfig, params: dict):
  if cfg.optimizer != 'sparse_adam':
    return make_optimizer(cfg).init(params)
  tables, dense = _split_tables(params)
  zeros = lambda t: jax.tree.map(jnp.zeros_like, t)
  return {'count': jnp.zeros((), jnp.int32), 'mu': zeros(tables),
          'nu': zeros(tables), 'dense': make_optimizer(cfg).init(dense)}


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
  model = get_model(cfg.kind)
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


def loss_fn(cfg: TrainConfig, params: dict, users: jax.Array,
            items: jax.Array, labels: jax.Array,
            weights: jax.Array) -> jax.Array:
  """The batch objective as a function of the full params (for tests)."""
  tables, dense = _split_tables(params)
  return batch_objective(cfg, _gather(tables, users, items), dense, labels,
                         weights)[0]


def make_step(cfg: TrainConfig, optimizer: optax.GradientTransformation):
  """``step((params, opt_state), (users, items, labels, weights))``."""
  grad_fn = jax.value_and_grad(
      lambda rows, dense, y, w: batch_objective(cfg, rows, dense, y, w),
      argnums=(0, 1), has_aux=True)
  sparse_sgd = cfg.optimizer == 'sgd'
  sparse_adam = cfg.optimizer == 'sparse_adam'
  lr = cfg.learning_rate

  def step(carry, batch):
    params, opt_state = carry
    users, items, labels, weights = batch
    tables, dense = _split_tables(params)
    rows = _gather(tables, users, items)
    (_, (bce, reg)), (g_rows, g_dense) = grad_fn(rows, dense, labels, weights)
    new = {}
    if sparse_adam:
      count = opt_state['count'] + 1
      t = count.astype(jnp.float32)
      c1 = 1.0 - ADAM_B1 ** t
      c2 = 1.0 - ADAM_B2 ** t
      mu, nu = dict(opt_state['mu']), dict(opt_state['nu'])
      for k, v in tables.items():
        idx = users if k in USER_TABLES else items
        size = v.shape[0]
        # Weight-0 rows (padding, invalid negatives) are not touched.
        idx = jnp.where(weights > 0, idx, size)
        # Sum the gradient over duplicate rows; each occurrence then computes
        # the same new value, so the scatters below are duplicate-safe.
        g = jnp.zeros_like(v).at[idx].add(g_rows[k], mode='drop').at[idx].get(
            mode='fill', fill_value=0)
        m = ADAM_B1 * mu[k].at[idx].get(mode='fill', fill_value=0) + (
            1 - ADAM_B1) * g
        s2 = ADAM_B2 * nu[k].at[idx].get(mode='fill', fill_value=0) + (
            1 - ADAM_B2) * g * g
        upd = -lr * (m / c1) / (jnp.sqrt(s2 / c2) + ADAM_EPS)
        mu[k] = mu[k].at[idx].set(m, mode='drop')
        nu[k] = nu[k].at[idx].set(s2, mode='drop')
        new[k] = v.at[idx].set(rows[k] + upd, mode='drop')
      updates, dense_state = optimizer.update(g_dense, opt_state['dense'],
                                              dense)
      new.update(optax.apply_updates(dense, updates))
      opt_state = {'count': count, 'mu': mu, 'nu': nu, 'dense': dense_state}
    elif sparse_sgd:
      for k, v in tables.items():
        idx = users if k in USER_TABLES else items
        new[k] = v.at[idx].add(-lr * g_rows[k])
      new.update(jax.tree.map(lambda p, g: p - lr * g, dense, g_dense))
    else:
      grads = dict(g_dense)
      for k, v in tables.items():
        idx = users if k in USER_TABLES else items
        grads[k] = jnp.zeros_like(v).at[idx].add(g_rows[k])
      updates, opt_state = optimizer.update(grads, opt_state, params)
      new = optax.apply_updates(params, updates)
    return (new, opt_state), (bce, reg)

  return step


def _mix32(x: jax.Array) -> jax.Array:
  """A 32-bit integer finaliser (good avalanche; bijective)."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def feistel_permutation(key: jax.Array, n: int, rounds: int = 6) -> jax.Array:
  """A keyed pseudo-random permutation of ``0..n-1`` (jittable, no sort).

  A balanced Feistel network over ``2h``-bit integers (``2^(2h) >= n``,
  round keys from ``key``) is a bijection of ``[0, 2^(2h))``; cycle walking
  (re-encrypting values ``>= n``) restricts it to a bijection of ``[0, n)``.
  It is a shuffle for SGD, not a uniform draw over all ``n!`` permutations;
  use ``shuffle='sort'`` for that.

  Returns:
    ``(n,)`` int32.
  """
  if n >= 2**31:
    raise ValueError(f'feistel_permutation: n={n} too large')
  bits = max(2, int(np.ceil(np.log2(max(n, 2)))))
  h = (bits + 1) // 2
  mask = jnp.uint32((1 << h) - 1)
  round_keys = jax.random.bits(key, (rounds,), jnp.uint32)

  def encrypt(x):
    left, right = x >> h, x & mask
    for r in range(rounds):
      left, right = right, left ^ (_mix32(right ^ round_keys[r]) & mask)
    return (left << h) | right

  x = encrypt(jnp.arange(n, dtype=jnp.uint32))
  x = jax.lax.while_loop(lambda x: jnp.any(x >= n),
                         lambda x: jnp.where(x >= n, encrypt(x), x), x)
  return x.astype(jnp.int32)


def epoch_batches(cfg: TrainConfig, key: jax.Array, pos_users: jax.Array,
                  pos_items: jax.Array, sampler_tables) -> tuple:
  """The shuffled, padded batches of one epoch: ``(n_batches, B)`` arrays.

  Positives plus one fresh negative each, weight 0 on invalid negatives and
  on the padding of the last batch.
  """
  k_neg, k_perm = jax.random.split(key)
  sample = (protocol.sample_negatives_unique if cfg.unique_negatives
            else protocol.sample_negatives)
  neg, valid = sample(sampler_tables, k_neg, pos_users)
  n = pos_users.shape[0]
  users = jnp.concatenate([pos_users, pos_users])
  items = jnp.concatenate([pos_items, neg])
  labels = jnp.concatenate([jnp.ones(n, jnp.float32), jnp.zeros(n, jnp.float32)])
  weights = jnp.concatenate([jnp.ones(n, jnp.float32),
                             valid.astype(jnp.float32)])
  if cfg.shuffle == 'feistel':
    perm = feistel_permutation(k_perm, 2 * n)
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


def make_epoch_fn(cfg: TrainConfig) -> Callable:
  """A jitted ``epoch(state, pos_users, pos_items, sampler_tables)``.

  Returns ``(state, stats)`` with ``stats`` a dict of scalars: ``loss`` (mean
  weighted BCE per sample), ``reg`` (mean L2 term per sample), ``objective``
  (their sum), ``n_invalid_negatives``.
  """
  optimizer = make_optimizer(cfg)
  step = make_step(cfg, optimizer)

  @jax.jit
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
  return get_model(kind).user_item_logits


def fit(cfg: TrainConfig, split, state: TrainState | None = None,
        epochs: int | None = None,
        callback: Callable[[TrainState, dict], None] | None = None,
        ) -> tuple[TrainState, list[dict]]:
  """Trains in memory (no files) until ``epochs`` (default ``cfg.epochs``).

  Args:
    cfg: model and optimiser settings.
    split: a :class:`monosem_jax.data.protocol.Split`.
    state: resume from this state (default: :func:`init_state`).
    epochs: total epochs to reach (``state.epoch`` counts those done).
    callback: called after each epoch with ``(state, stats)`` (stats as
      Python floats); e.g. evaluation and checkpointing.

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
    if callback is not None:
      callback(state, stats)
  return state, history


# ----------------------------------------------------------------------------
# Data for a run.


def load_data(dataset_cfg: Mapping[str, Any], split_cfg: Mapping[str, Any]):
  """Loads, filters and splits a dataset. Returns ``(dataset, split)``.

  Args:
    dataset_cfg: ``name``, ``data_dir`` (None: ``$MONOSEM_DATA_DIR``),
      ``options`` (loader keywords), ``min_item_users``, ``min_user_items``.
    split_cfg: keywords of :func:`monosem_jax.data.protocol.make_split`.
  """
  d = dict(dataset_cfg)
  name = d.pop('name')
  data_dir = d.pop('data_dir', None) or None
  options = dict(d.pop('options', None) or {})
  min_item_users = int(d.pop('min_item_users', 0) or 0)
  min_user_items = int(d.pop('min_user_items', 0) or 0)
  if d:
    raise ConfigError(f'dataset config: unknown key(s) {", ".join(sorted(d))}')
  ds = loaders.load_dataset(name, data_dir, **options)
  if min_item_users or min_user_items:
    ds = protocol.filter_interactions(ds, min_item_users=min_item_users,
                                      min_user_positives=min_user_items)
  split = protocol.make_split(ds, **dict(split_cfg))
  return ds, split


# ----------------------------------------------------------------------------
# Checkpointed run in a workdir.

_RESUME_IGNORED = {('train', 'epochs'), ('eval',), ('checkpoint',), ('log',)}


def _to_plain(x):
  if hasattr(x, 'to_dict'):
    x = x.to_dict()
  if isinstance(x, Mapping):
    return {str(k): _to_plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_to_plain(v) for v in x]
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (np.floating,)):
    return float(x)
  return x


def _resume_relevant(config: dict) -> dict:
  out = {}
  for k, v in config.items():
    if (k,) in _RESUME_IGNORED:
      continue
    if isinstance(v, dict):
      v = {kk: vv for kk, vv in v.items() if (k, kk) not in _RESUME_IGNORED}
    out[k] = v
  return out


def checkpoint_manager(directory: str, max_to_keep: int = 2):
  """An orbax ``CheckpointManager`` (synchronous) for :class:`TrainState`."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  return ocp.CheckpointManager(
      os.path.abspath(directory), options=ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, enable_async_checkpointing=False,
          create=True))


def save_checkpoint(mngr, state: TrainState, history: Sequence[dict] = ()):
  """Saves ``state`` (and the JSON history) as step ``state.epoch``."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  step = int(state.epoch)
  if step in mngr.all_steps():
    return
  mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      history=ocp.args.JsonSave({'epochs': list(history)})))
  mngr.wait_until_finished()


def restore_checkpoint(mngr, template: TrainState, step: int | None = None,
                       ) -> tuple[TrainState, list[dict]]:
  """Restores ``(state, history)``; ``template`` gives the structure.

  Args:
    mngr: from :func:`checkpoint_manager`.
    template: e.g. :func:`init_state` of the same config.
    step: epoch to restore (default: the latest).
  """
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'no checkpoint in {mngr.directory}')
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract),
      history=ocp.args.JsonRestore()))
  state = restored['state']
  if not isinstance(state, TrainState):
    state = TrainState(*state)
  return state, list(restored['history']['epochs'])


def _has_checkpoint(directory: str) -> bool:
  return os.path.isdir(directory) and any(
      d.isdigit() for d in os.listdir(directory))


def _fmt_metrics(m: Mapping[str, float], keys=('ndcg@10', 'hr@10',
                                               'recall@20', 'mrr', 'mpr')):
  return ' '.join(f'{k} {m[k]:.4f}' for k in keys if k in m)


def run(config, workdir: str, log: Callable[[str], None] | None = None) -> dict:
  """Trains (or resumes) a recommender in ``workdir`` and freezes it.

  Writes ``workdir/checkpoints/`` (orbax: params, optimiser state, epoch,
  key, history; one per ``checkpoint.every`` epochs and the last),
  ``workdir/config.json``, ``workdir/metrics.json`` (per-epoch loss and
  metrics; final metrics of the model and of the popularity baseline) and
  ``workdir/frozen/`` (:class:`~monosem_jax.recommenders.artifact.
  RecommenderArtifact`).

  Args:
    config: ConfigDict or nested dict with sections ``dataset``, ``split``,
      ``model``, ``train``, ``eval``, ``checkpoint`` (see
      ``experiments/configs/recommender.py``).
    workdir: output folder (created; resumed when it holds a checkpoint of
      the same configuration). Locked for the run: a second process on it
      is refused (:class:`~monosem_jax.files.WorkdirLock`).
    log: progress sink (default ``logging.info``).

  Returns:
    the metrics.json content.

  Raises:
    ConfigError: invalid settings (e.g. ``train.epochs < 1``) or fewer
      epochs than the workdir's checkpoint already holds.
    WorkdirError: the workdir is a file, is in use, or holds a trained run
      of another configuration.
    DataError: the data cannot be loaded (nothing is written then).
  """
  log = log or logging.info
  config = _to_plain(config)
  try:  # every setting is checked before anything is written
    cfg = TrainConfig.from_mapping({**config['model'], **config['train']})
  except ConfigError as e:
    raise ConfigError(f'config.model / config.train: {e}') from None
  workdir = files.prepare_workdir(workdir)
  with files.WorkdirLock(workdir, 'recommender training') as lock:
    if lock.stale_pid:
      log(f'{workdir}: taking over the lock of process {lock.stale_pid}, '
          'which is gone')
    return _run_locked(config, cfg, workdir, log)


def _run_locked(config: dict, cfg: TrainConfig, workdir: str,
                log: Callable[[str], None]) -> dict:
  from monosem_jax.recommenders import artifact as artifact_lib  # pylint: disable=import-outside-toplevel
  t_start = time.time()
  eval_cfg = dict(config.get('eval', {}))
  ks = tuple(int(k) for k in eval_cfg.get('ks', metrics_lib.DEFAULT_KS))
  ties = eval_cfg.get('ties', 'index')
  eval_every = int(eval_cfg.get('every', 1))
  block_size = int(eval_cfg.get('block_size', 256))
  ckpt_cfg = dict(config.get('checkpoint', {}))
  ckpt_every = int(ckpt_cfg.get('every', 1))

  cfg_path = os.path.join(workdir, 'config.json')
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  trained = (os.path.isdir(os.path.join(workdir, 'frozen'))
             or _has_checkpoint(ckpt_dir))
  if os.path.exists(cfg_path):
    with open(cfg_path) as f:
      old = json.load(f)
    if _resume_relevant(old) != _resume_relevant(config):
      if trained:
        raise WorkdirError(
            f'{workdir} holds a run of another configuration ({cfg_path}); '
            'use a fresh --workdir or the same settings (only train.epochs, '
            'eval.* and checkpoint.* may change on resume)')
      log(f'{cfg_path}: replacing the settings of a run that never trained')

  # config.json is written only once the data loaded: a run that failed
  # there leaves nothing that would block the corrected command.
  dataset, split = load_data(config['dataset'], config.get('split', {}))
  files.atomic_write_json(cfg_path, config)
  log(f'{dataset.name}: {split.n_users} users x {split.n_items} items, '
      f'{split.n_train} training positives, {len(split.test_items)} held out '
      f'({len(split.eval_users)} eval users); {time.time() - t_start:.1f}s')

  eval_data = metrics_lib.eval_data_from_split(split, block_size)
  eval_arrays = eval_data.device_arrays()
  scorer = score_fn(cfg.kind)
  t0 = time.time()
  pop_metrics = metrics_lib.evaluate_popularity(split, eval_data, ks, ties,
                                                eval_arrays)
  log(f'popularity baseline: {_fmt_metrics(pop_metrics)} '
      f'({time.time() - t0:.1f}s)')

  mngr = checkpoint_manager(ckpt_dir, int(ckpt_cfg.get('max_to_keep', 2)))
  state = init_state(cfg, split.n_users, split.n_items)
  history: list[dict] = []
  if mngr.latest_step() is not None:
    if mngr.latest_step() > cfg.epochs:
      mngr.close()
      raise ConfigError(
          f'config.train.epochs={cfg.epochs}, but {ckpt_dir} already holds '
          f'epoch {mngr.latest_step()}: set --config.train.epochs >= '
          f'{mngr.latest_step()} or use a fresh --workdir')
    state, history = restore_checkpoint(mngr, state)
    log(f'resumed from {ckpt_dir} at epoch {int(state.epoch)}')

  def save(state):
    save_checkpoint(mngr, state, history)

  def report(final_model=None):
    out = {
        'dataset': dataset.name,
        'model': cfg.kind,
        'n_users': split.n_users, 'n_items': split.n_items,
        'n_train': split.n_train, 'n_eval_users': len(split.eval_users),
        'ks': list(ks), 'ties': ties,
        'config': config,
        'epochs': history,
        'popularity': pop_metrics,
    }
    if final_model is not None:
      out['final'] = {'model': final_model, 'popularity': pop_metrics}
      if pop_metrics.get('ndcg@10'):
        out['final']['ndcg@10_ratio_to_popularity'] = (
            final_model['ndcg@10'] / pop_metrics['ndcg@10'])
    files.atomic_write_json(os.path.join(workdir, 'metrics.json'), out)
    return out

  t_train = time.time()

  def callback(state, stats):
    e = stats['epoch']
    stats['elapsed_s'] = time.time() - t_start
    line = (f'epoch {e}/{cfg.epochs} loss {stats["loss"]:.4f} '
            f'reg {stats["reg"]:.4f}')
    if eval_every > 0 and (e % eval_every == 0 or e == cfg.epochs):
      te = time.time()
      m = metrics_lib.evaluate(scorer, state.params, eval_data, ks, ties,
                               eval_arrays)
      stats['metrics'] = m
      stats['eval_s'] = time.time() - te
      line += f' | {_fmt_metrics(m)} (pop ndcg@10 {pop_metrics["ndcg@10"]:.4f})'
    line += f' | {time.time() - t_train:.1f}s train+eval, {stats["elapsed_s"]:.1f}s total'
    history.append(stats)
    log(line)
    if e % ckpt_every == 0 or e == cfg.epochs:
      save(state)
    report()

  state, _ = fit(cfg, split, state=state, callback=callback)
  save(state)
  mngr.close()
  final = metrics_lib.evaluate(scorer, state.params, eval_data, ks, ties,
                               eval_arrays)
  log(f'final {cfg.kind}: {_fmt_metrics(final)}')
  log(f'final popularity: {_fmt_metrics(pop_metrics)}')
  out = report(final)
  art = artifact_lib.RecommenderArtifact(
      kind=cfg.kind, params=jax.device_get(state.params), split=split,
      meta={'dataset': dataset.name, 'config': config,
            'train_config': cfg.to_dict(), 'epochs': int(state.epoch),
            'metrics': {'model': final, 'popularity': pop_metrics}})
  art.save(os.path.join(workdir, 'frozen'))
  log(f'wrote {os.path.join(workdir, "frozen")} and metrics.json '
      f'({time.time() - t_start:.1f}s total)')
  return out
