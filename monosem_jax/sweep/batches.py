"""How a sweep's batches are drawn (docs/method.md#sae-batches).

All configs see the same batches: an epoch's indices come from
``fold_in(state.data_key, epoch)``, drawn on device. What a step holds is
the kind's (``spec.batching``, a
:class:`~monosem_jax.recommenders.kinds.Batching` read from the spec's
``scorer_options``):

* Unpaired (MF): a shuffled batch of SAE-train users (one pass, last
  partial batch dropped) against a shuffled, cycled batch of all items.
* Paired (NCF), ``pairs='positive'``: observed positive (user, item) pairs
  of SAE-train users; ``'random'``: a user batch zipped row by row with an
  item batch; ``'mixed'``: half a batch of observed positive pairs, the
  other half the same users each paired with a uniformly random item
  (mostly non-interacted: sampled negatives).

Example:
  >>> import jax, numpy as np
  >>> from monosem_jax.sweep.spec import SweepSpec
  >>> from monosem_jax.sweep.state import SweepInputs
  >>> spec = SweepSpec(dim=2,        # the default kind: unpaired batches
  ...                  scorer_options=dict(batch_users=4, batch_items=3))
  >>> inputs = SweepInputs.create(np.zeros((10, 2)), np.zeros((7, 2)),
  ...                             np.arange(8))
  >>> ix = epoch_indices(spec, inputs, jax.random.PRNGKey(0), paired=False)
  >>> ix.users.shape, ix.items.shape
  ((2, 4), (2, 3))
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from monosem_jax.recommenders.kinds import Batching
from monosem_jax.sweep.spec import SweepConfigError, SweepSpec
from monosem_jax.sweep.state import SweepInputs


@flax.struct.dataclass
class BatchIndices:
  """An epoch's batches: ``users`` ``(S, Bu)`` rows of ``user_emb`` and
  ``items`` ``(S, Bi)`` rows of ``item_emb`` (paired row by row when the
  scorer is paired, ``Bu = Bi``)."""
  users: jax.Array
  items: jax.Array


def _batching(spec: SweepSpec, paired: bool) -> Batching:
  """The spec's batching, checked against the scorer's ``paired``."""
  batching = spec.batching
  if batching.paired != bool(paired):
    raise SweepConfigError(
        f'SweepSpec.kind={spec.kind!r} draws {"" if batching.paired else "un"}'
        f'paired batches but the scorer is {"" if paired else "un"}paired: '
        "build the scorer from the spec's kind")
  return batching


def steps_per_epoch(spec: SweepSpec, inputs: SweepInputs, paired: bool) -> int:
  """Static number of steps per epoch (from the inputs' shapes);
  ``paired``: the scorer's (checked against the spec's kind)."""
  batching = _batching(spec, paired)
  b = batching.users
  if batching.positives:
    if inputs.pos_users is None:
      raise SweepConfigError(f'SweepSpec.scorer_options: {batching.pairs!r} '
                             'pairs need SweepInputs.pos_users / pos_items')
    n, what = inputs.pos_users.shape[0], 'positive pairs'
  else:
    n, what = inputs.train_users.shape[0], 'SAE-train users'
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


def epoch_indices(spec: SweepSpec, inputs: SweepInputs, key: jax.Array,
                  paired: bool) -> BatchIndices:
  """The epoch's batches as index arrays (see :class:`BatchIndices`)."""
  s = steps_per_epoch(spec, inputs, paired)
  ku, ki = jax.random.split(key)
  n_train, n_items = inputs.train_users.shape[0], inputs.item_emb.shape[0]
  batching = spec.batching
  bu, bi = batching.users, batching.items
  if batching.pairs == 'positive':
    p = _stream(ku, inputs.pos_users.shape[0], s * bu).reshape(s, bu)
    return BatchIndices(inputs.pos_users[p], inputs.pos_items[p])
  if batching.pairs == 'mixed':
    n_pos = bu - bu // 2
    p = _stream(ku, inputs.pos_users.shape[0], s * n_pos).reshape(s, n_pos)
    users = inputs.pos_users[p]
    rand = jax.random.randint(ki, (s, bu // 2), 0, n_items)
    return BatchIndices(
        jnp.concatenate([users, users[:, :bu // 2]], 1),
        jnp.concatenate([inputs.pos_items[p], rand.astype(
            inputs.pos_items.dtype)], 1))
  users = inputs.train_users[_stream(ku, n_train, s * bu)].reshape(s, bu)
  items = _stream(ki, n_items, s * bi).reshape(s, bi)
  return BatchIndices(users, items)
