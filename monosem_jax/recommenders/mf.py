"""Logistic matrix factorisation as pure functions (docs/method.md#recommenders).

score(u, i) = b_u + b_i + p_u . q_i   (a logit; sigmoid gives the probability)

Every product is exact float32 (:data:`monosem_jax.precision.EXACT`) unless
its ``precision`` argument says otherwise: the SAE sweep's prediction loss
passes ``SweepSpec.precision``'s (docs/method.md#precision).

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
import numpy as np

from monosem_jax.precision import EXACT, Precision, dot

Params = dict
#: Whether the model has dense layers beyond its tables (``params['mlp']``).
MLP = False


def init(key: jax.Array, n_users: int, n_items: int, dim: int,
         dtype=jnp.float32) -> Params:
  """P, Q ~ N(0, (1/dim)^2); biases zero (docs/method.md#recommenders)."""
  ku, ki = jax.random.split(key)
  return {
      'user_emb': jax.random.normal(ku, (n_users, dim), dtype) / dim,
      'item_emb': jax.random.normal(ki, (n_items, dim), dtype) / dim,
      'user_bias': jnp.zeros((n_users,), dtype),
      'item_bias': jnp.zeros((n_items,), dtype),
  }



def init_from_config(key: jax.Array, n_users: int, n_items: int, cfg) -> Params:
  """:func:`init` with the width of a ``TrainConfig`` (``cfg.dim``)."""
  return init(key, n_users, n_items, cfg.dim)


def complete_params(params: Params) -> Params:
  """Imported params (numpy) made whole: the biases, zeros where the file
  gave none (every MF logit has them)."""
  out = dict(params)
  for bias, table in (('user_bias', 'user_emb'), ('item_bias', 'item_emb')):
    out.setdefault(bias, np.zeros(len(params[table]), np.float32))
  return out


def config_of(params: Params) -> dict:
  """The ``TrainConfig`` fields that params imply beyond ``dim``: none."""
  del params
  return {}


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

  Returns:
    ``(U, I)``, the product exact in float32.
  """
  out = dot(user_vecs, item_vecs.T)
  return out + jnp.reshape(user_bias, (-1, 1) if jnp.ndim(user_bias) else ()) + item_bias


def user_item_logits(params: Params, users: jax.Array) -> jax.Array:
  """``(B, n_items)`` logits of a block of user indices against all items."""
  return matrix_logits(params['user_emb'][users], params['item_emb'],
                       params['user_bias'][users], params['item_bias'])


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


# Prediction-aware loss terms (docs/method.md#prediction-loss): original
# embeddings and scores enter under stop_gradient.

sg = jax.lax.stop_gradient


def score_mse(U: jax.Array, I: jax.Array, U_hat: jax.Array, I_hat: jax.Array,
              orig_scores: jax.Array | None = None,
              precision: Precision = EXACT) -> jax.Array:
  """MF prediction loss ``mean((U_hat I_hat^T - U I^T)^2)`` (logit space).

  Direct form that builds the ``(Bu, Bi)`` matrices. Biases cancel and are
  left out.

  Args:
    U: ``(Bu, d)``; I: ``(Bi, d)``; U_hat ``(Bu, d)``; I_hat ``(Bi, d)``.
    orig_scores: optional precomputed ``U @ I.T`` ``(Bu, Bi)``.
    precision: of the products (default exact).

  Returns:
    scalar.
  """
  if orig_scores is None:
    orig_scores = dot(U, I.T, precision)
  return jnp.mean(jnp.square(dot(U_hat, I_hat.T, precision)
                             - sg(orig_scores)))


def score_mse_gram(U: jax.Array, I: jax.Array, U_hat: jax.Array,
                   I_hat: jax.Array, gram_uu: jax.Array | None = None,
                   precision: Precision = EXACT) -> jax.Array:
  """Exactly :func:`score_mse`, through ``d x d`` Gram matrices only.

  With ``E_u = U_hat - U`` and ``E_i = I_hat - I``,
  ``U_hat I_hat^T - U I^T = E_u I_hat^T + U E_i^T``, and
  ``||A B^T||_F^2 = sum((A^T A) * (B^T B))`` gives::

    ||.||^2 = sum(E_u'E_u * I_hat'I_hat) + 2 sum(E_u'U * I_hat'E_i)
              + sum(U'U * E_i'E_i)

  Every term is second order in the errors, so nothing large cancels (float32
  stays accurate when the reconstruction is good), and the ``Bu x Bi`` matrix
  never exists: cost ``O((Bu + Bi) d^2)`` instead of ``O(Bu Bi d)``.

  Args:
    U: ``(Bu, d)``; I: ``(Bi, d)``; U_hat ``(Bu, d)``; I_hat ``(Bi, d)``.
    gram_uu: optional precomputed ``U.T @ U`` ``(d, d)`` (shared by configs).
    precision: of the products (default exact).

  Returns:
    scalar, the mean over the ``Bu x Bi`` score matrix.
  """
  U, I = sg(U), sg(I)
  gram = lambda a, b: dot(a.T, b, precision)
  if gram_uu is None:
    gram_uu = gram(U, U)
  e_u = U_hat - U
  e_i = I_hat - I
  total = (jnp.sum(gram(e_u, e_u) * gram(I_hat, I_hat))
           + 2.0 * jnp.sum(gram(e_u, U) * gram(I_hat, e_i))
           + jnp.sum(sg(gram_uu) * gram(e_i, e_i)))
  return total / (U.shape[0] * I.shape[0])
