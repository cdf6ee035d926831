"""A sweep's pytrees: its frozen inputs and its stacked training state.

* :class:`SweepInputs`: the original embedding tables and which users and
  pairs batches are drawn from (never updated).
* :class:`SweepState`: every config's SAE weights and Adam state (a leading
  config axis C), the shared batch-stream key, epoch and step counters, and
  the per-config divergence flags.

Both are ``flax.struct`` dataclasses, so they pass through ``jit``, ``vmap``
and orbax as pytrees.

Example:
  >>> import jax
  >>> from monosem_jax.sweep.spec import SweepHparams, SweepSpec
  >>> spec = SweepSpec(dim=4, max_dict_size=6)
  >>> state = init_sweep(spec, SweepHparams.grid(spec, dict_size=[3, 6]))
  >>> state.num_configs, state.sae['W'].shape
  (2, (2, 6, 4))
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from monosem_jax.sae import model
from monosem_jax.sweep.spec import SweepHparams, SweepSpec, validate

#: Adam with PyTorch's constants (docs/method.md#optimiser), at unit rate: each
#: config scales the direction by its own learning rate.
ADAM = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)


@flax.struct.dataclass
class SweepInputs:
  """Device inputs of a sweep (all frozen; nothing here is ever updated).

  Attributes:
    user_emb: ``(n_users, d)`` float32 original user embeddings.
    item_emb: ``(n_items, d)`` float32 original item embeddings.
    train_users: ``(n_train,)`` int32 SAE-train user ids.
    pos_users, pos_items: ``(n_pos,)`` int32 observed positive pairs of
      SAE-train users (batches of positive pairs), else None.
  """
  user_emb: Any
  item_emb: Any
  train_users: Any
  pos_users: Any = None
  pos_items: Any = None

  @classmethod
  def create(cls, user_emb, item_emb, train_users, pos_users=None,
             pos_items=None) -> 'SweepInputs':
    """Casts to float32 / int32 device arrays."""
    f = lambda a, t: None if a is None else jnp.asarray(a, t)
    return cls(f(user_emb, jnp.float32), f(item_emb, jnp.float32),
               f(train_users, jnp.int32), f(pos_users, jnp.int32),
               f(pos_items, jnp.int32))


def build_scorer(artifact, spec: SweepSpec):
  """The frozen scorer of ``artifact`` (a
  :class:`~monosem_jax.recommenders.artifact.RecommenderArtifact`) with the
  spec's kind options (``spec.scorer_options``, checked against the kind
  registry's schema): what the sweep trains against and its analysis ranks
  with."""
  return artifact.scorer(**dict(spec.scorer_options))


def positive_pairs_of(users: np.ndarray, items: np.ndarray,
                      train_users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The (user, item) positives whose user is an SAE-train user (numpy)."""
  keep = np.isin(np.asarray(users), np.asarray(train_users))
  return np.asarray(users)[keep], np.asarray(items)[keep]


@flax.struct.dataclass
class SweepState:
  """Stacked training state; every per-config leaf has a leading C axis.

  Attributes:
    sae: SAE weights pytree, leaves ``(C, ...)``.
    opt: ``optax.scale_by_adam`` state, leaves ``(C, ...)`` (a count per
      config).
    data_key: ``(2,)`` uint32 key of the shared batch stream.
    epoch: ``()`` int32, epochs completed.
    step: ``()`` int32, steps completed.
    finite: ``(C,)`` bool, False once a config diverged (then frozen).
    diverged_step: ``(C,)`` int32, the step that diverged, -1 if none.
  """
  sae: Any
  opt: Any
  data_key: Any
  epoch: Any
  step: Any
  finite: Any
  diverged_step: Any

  @property
  def num_configs(self) -> int:
    return int(self.finite.shape[0])

  def per_config(self) -> 'SweepState':
    """A pytree prefix of booleans: True where a field has the config axis."""
    every = lambda t: jax.tree.map(lambda _: True, t)
    return SweepState(sae=every(self.sae), opt=every(self.opt),
                      data_key=False, epoch=False, step=False, finite=True,
                      diverged_step=True)

  def take(self, idx) -> 'SweepState':
    """Host copy of configs ``idx`` (e.g. drop or re-pad padded configs)."""
    idx = np.asarray(idx)
    flags = self.per_config()
    return jax.tree.map(
        lambda flag, sub: jax.tree.map(
            lambda x: np.asarray(x)[idx] if flag else np.asarray(x), sub),
        flags, self, is_leaf=lambda f: isinstance(f, bool))


def _init_impl(spec: SweepSpec, seeds: jax.Array, key: jax.Array) -> SweepState:
  cfg = spec.sae
  sae = jax.vmap(lambda s: model.init(jax.random.PRNGKey(s), cfg))(seeds)
  c = seeds.shape[0]
  return SweepState(sae=sae, opt=jax.vmap(ADAM.init)(sae),
                    data_key=jnp.asarray(key, jnp.uint32),
                    epoch=jnp.zeros((), jnp.int32), step=jnp.zeros((), jnp.int32),
                    finite=jnp.ones((c,), bool),
                    diverged_step=jnp.full((c,), -1, jnp.int32))


_init_jit = jax.jit(_init_impl, static_argnums=0)


def init_sweep(spec: SweepSpec, hparams: SweepHparams,
               key: jax.Array | None = None) -> SweepState:
  """Validates the sweep and builds its initial state.

  Args:
    spec: static sweep description.
    hparams: per-config hyper-parameters ``(C,)``.
    key: PRNG key (``jax.random.PRNGKey``) of the shared batch stream;
      default ``PRNGKey(42)``. Each config's SAE init uses
      ``PRNGKey(hparams.seed[c])``.

  Raises:
    SweepConfigError: before compiling, naming the field and config.
  """
  validate(spec, hparams)
  if key is None:
    key = jax.random.PRNGKey(42)
  return _init_jit(spec, jnp.asarray(np.asarray(hparams.seed), jnp.int32), key)
