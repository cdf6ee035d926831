"""Logistic matrix factorisation as pure functions (PAPER.md §3).

score(u, i) = b_u + b_i + p_u . q_i   (a logit; sigmoid gives the probability)

Params pytree::

  {'user_emb': (n_users, K), 'item_emb': (n_items, K),
   'user_bias': (n_users,), 'item_bias': (n_items,)}

Example:
  >>> import jax
  >>> p = init(jax.random.PRNGKey(0), n_users=3, n_items=4, dim=2)
  >>> pair_logits(p, jax.numpy.array([0, 2]), jax.numpy.array([1, 3])).shape
  (2,)
  >>> user_item_logits(p, jax.numpy.array([0, 1])).shape
  (2, 4)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Params = dict


def init(key: jax.Array, n_users: int, n_items: int, dim: int,
         dtype=jnp.float32) -> Params:
  """P, Q ~ N(0, (1/dim)^2); biases zero (PAPER.md §3)."""
  ku, ki = jax.random.split(key)
  return {
      'user_emb': jax.random.normal(ku, (n_users, dim), dtype) / dim,
      'item_emb': jax.random.normal(ki, (n_items, dim), dtype) / dim,
      'user_bias': jnp.zeros((n_users,), dtype),
      'item_bias': jnp.zeros((n_items,), dtype),
  }


def embedding_logits(user_vecs: jax.Array, item_vecs: jax.Array,
                     user_bias: jax.Array | float = 0.0,
                     item_bias: jax.Array | float = 0.0) -> jax.Array:
  """Pairwise logits of arbitrary (possibly reconstructed) embeddings.

  Args:
    user_vecs: ``(..., K)``.
    item_vecs: ``(..., K)``, broadcastable against ``user_vecs``.
    user_bias, item_bias: broadcastable to the output.

  Returns:
    ``(...)`` logits ``b_u + b_i + <u, i>``.
  """
  return jnp.sum(user_vecs * item_vecs, -1) + user_bias + item_bias


def pair_logits(params: Params, users: jax.Array, items: jax.Array) -> jax.Array:
  """``(B,)`` logits of (user index, item index) pairs."""
  return embedding_logits(params['user_emb'][users], params['item_emb'][items],
                          params['user_bias'][users], params['item_bias'][items])


def matrix_logits(user_vecs: jax.Array, item_vecs: jax.Array,
                  user_bias: jax.Array | float = 0.0,
                  item_bias: jax.Array | float = 0.0) -> jax.Array:
  """``(U, I)`` logits of every user vector against every item vector.

  Args:
    user_vecs: ``(U, K)``; item_vecs: ``(I, K)``.
    user_bias: ``(U,)`` or scalar; item_bias: ``(I,)`` or scalar.
  """
  out = user_vecs @ item_vecs.T
  return out + jnp.reshape(user_bias, (-1, 1) if jnp.ndim(user_bias) else ()) + item_bias


def user_item_logits(params: Params, users: jax.Array) -> jax.Array:
  """``(B, n_items)`` logits of a block of user indices against all items."""
  return matrix_logits(params['user_emb'][users], params['item_emb'],
                       params['user_bias'][users], params['item_bias'])


def embeddings(params: Params) -> tuple[jax.Array, jax.Array]:
  """The (user, item) embedding tables the SAE explains."""
  return params['user_emb'], params['item_emb']


def rows_logits(dense: Params, rows: Params) -> jax.Array:
  """``(B,)`` logits of gathered rows (used by the sparse training step).

  Args:
    dense: the non-table params (empty for MF).
    rows: ``{'user_emb': (B, K), 'item_emb': (B, K), 'user_bias': (B,),
      'item_bias': (B,)}``, the table rows of each (user, item) pair.
  """
  del dense
  return embedding_logits(rows['user_emb'], rows['item_emb'],
                          rows['user_bias'], rows['item_bias'])


def frozen_scorer(params: Params) -> Params:
  """The part of the params a frozen scorer needs besides the embeddings."""
  return {'user_bias': params['user_bias'], 'item_bias': params['item_bias']}
