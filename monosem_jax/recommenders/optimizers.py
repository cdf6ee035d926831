"""Recommender optimisers as optax transformations, with sparse row updates.

An epoch touches only the embedding rows of its batches. The sparse
optimisers take the gradient of the gathered rows as :class:`IndexedRows`
(which rows, and their gradients) and return row updates in the same form;
:func:`apply_row_updates` writes them into the tables. Dense parameters (the
NCF MLP) and the dense optimisers go through plain optax.

* :func:`sparse_sgd`: plain SGD on the touched rows; duplicate rows add up,
  exactly dense SGD (docs/method.md#recommenders).
* :func:`sparse_adam`: "lazy" Adam (as PyTorch's ``SparseAdam``): the moments
  and the parameters of a row change only when the row is in the batch; a
  row's gradient is summed over its occurrences first.
* :func:`make_optimizer`: the :class:`RecommenderOptimizer` of a
  :class:`~monosem_jax.recommenders.config.TrainConfig`.

Example (a row touched twice gets one Adam step on the summed gradient):
  >>> import jax.numpy as jnp, numpy as np
  >>> tx = sparse_adam(0.1)
  >>> tables = {'user_emb': jnp.zeros((3, 2))}
  >>> state = tx.init(tables)
  >>> g = {'user_emb': IndexedRows(jnp.array([1, 1]), jnp.ones((2, 2)))}
  >>> upd, state = tx.update(g, state)
  >>> np.asarray(apply_row_updates(tables, upd)['user_emb'], float).round(4).tolist()
  [[0.0, 0.0], [-0.1, -0.1], [0.0, 0.0]]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from monosem_jax.recommenders.config import TrainConfig

ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


@flax.struct.dataclass
class IndexedRows:
  """Gradients or updates of some rows of one table.

  Attributes:
    idx: ``(B,)`` row indices; an index ``>= n_rows`` is ignored (padding).
    values: ``(B, ...)`` one entry per index.
    same_per_row: True when every occurrence of a row carries the same
      (whole-row) update, to be written once; False when occurrences add up.
  """
  idx: jax.Array
  values: jax.Array
  same_per_row: bool = flax.struct.field(pytree_node=False, default=False)


def _is_rows(x) -> bool:
  return isinstance(x, IndexedRows)


def apply_row_updates(tables: dict, updates: dict) -> dict:
  """Tables with row updates applied (tables without an update unchanged)."""
  out = dict(tables)
  for k, u in updates.items():
    t = tables[k]
    if u.same_per_row:
      out[k] = t.at[u.idx].set(t.at[u.idx].get(mode='fill', fill_value=0)
                               + u.values, mode='drop')
    else:
      out[k] = t.at[u.idx].add(u.values, mode='drop')
  return out


def sparse_sgd(learning_rate: float) -> optax.GradientTransformation:
  """SGD on :class:`IndexedRows` gradients: ``-lr * g`` per occurrence."""

  def init(params):
    del params
    return optax.EmptyState()

  def update(updates, state, params=None):
    del params
    return jax.tree.map(
        lambda r: IndexedRows(r.idx, -learning_rate * r.values), updates,
        is_leaf=_is_rows), state


  return optax.GradientTransformation(init, update)


class SparseAdamState(NamedTuple):
  count: jax.Array   # int32, steps taken
  mu: Any            # like the tables
  nu: Any


def sparse_adam(learning_rate: float, b1: float = ADAM_B1, b2: float = ADAM_B2,
                eps: float = ADAM_EPS) -> optax.GradientTransformation:
  """Lazy Adam on :class:`IndexedRows` gradients (see the module docstring).

  ``init(tables)`` gives zero moments like the tables; ``update(grads,
  state)`` takes ``{name: IndexedRows}`` and returns the rows' updates
  (``same_per_row``: one value per row, whatever its count in the batch).
  On rows that are touched at every step it equals ``optax.adam``.
  """

  def init(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    return SparseAdamState(jnp.zeros((), jnp.int32), zeros,
                           jax.tree.map(jnp.zeros_like, params))

  def update(updates, state, params=None):
    del params
    count = state.count + 1
    t = count.astype(jnp.float32)
    c1 = 1.0 - b1 ** t
    c2 = 1.0 - b2 ** t
    mu, nu, out = dict(state.mu), dict(state.nu), {}
    for k, rows in updates.items():
      idx = rows.idx
      # Sum the gradient over duplicate rows; each occurrence then computes
      # the same new value, so the scatters below are duplicate-safe.
      g = jnp.zeros_like(mu[k]).at[idx].add(rows.values, mode='drop').at[
          idx].get(mode='fill', fill_value=0)
      m = b1 * mu[k].at[idx].get(mode='fill', fill_value=0) + (1 - b1) * g
      s2 = b2 * nu[k].at[idx].get(mode='fill', fill_value=0) + (
          1 - b2) * g * g
      out[k] = IndexedRows(idx, -learning_rate * (m / c1)
                           / (jnp.sqrt(s2 / c2) + eps), same_per_row=True)
      mu[k] = mu[k].at[idx].set(m, mode='drop')
      nu[k] = nu[k].at[idx].set(s2, mode='drop')
    return out, SparseAdamState(count, mu, nu)

  return optax.GradientTransformation(init, update)


class RecommenderOptimizer(NamedTuple):
  """How a config trains: ``rows`` (sparse, for the embedding and bias
  tables) and ``dense`` (the other params); ``rows`` None = one dense optax
  optimiser over all params."""
  rows: optax.GradientTransformation | None
  dense: optax.GradientTransformation


def make_optimizer(cfg: TrainConfig) -> RecommenderOptimizer:
  """The optimiser of ``cfg.optimizer`` at ``cfg.learning_rate``."""
  lr = cfg.learning_rate
  adam = lambda: optax.adam(lr, ADAM_B1, ADAM_B2, ADAM_EPS)
  if cfg.optimizer == 'sgd':
    return RecommenderOptimizer(sparse_sgd(lr), optax.sgd(lr))
  if cfg.optimizer == 'sparse_adam':
    return RecommenderOptimizer(sparse_adam(lr), adam())
  dense = {'adam': adam, 'adamw': lambda: optax.adamw(lr),
           'adagrad': lambda: optax.adagrad(lr)}[cfg.optimizer]()
  return RecommenderOptimizer(None, dense)
