"""MLP-only neural collaborative filtering as pure functions (docs/method.md#recommenders).

logit(u, i) = MLP([e_u ; e_i]) (+ b_u + b_i when biases are on); one sigmoid
gives the probability. MLP: 2d -> 64 -> 32 -> 16 -> 1 with ReLU between.

Params pytree::

  {'user_emb': (n_users, d), 'item_emb': (n_items, d),
   'mlp': [{'w': (2d, 64), 'b': (64,)}, ..., {'w': (16, 1), 'b': (1,)}],
   # only when use_bias:
   'user_bias': (n_users,), 'item_bias': (n_items,)}

The frozen scorer :func:`mlp_logits` takes arbitrary embedding vectors, so the
SAE stage can feed it reconstructions. Every product is exact float32
(:data:`monosem_jax.precision.EXACT`) unless its ``precision`` argument says
otherwise: the SAE sweep's prediction loss passes ``SweepSpec.precision``'s
(docs/method.md#precision).

Example:
  >>> import jax, jax.numpy as jnp
  >>> p = init(jax.random.PRNGKey(0), n_users=3, n_items=4, dim=2)
  >>> mlp_logits(p['mlp'], jnp.ones((5, 2)), jnp.zeros((5, 2))).shape
  (5,)
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from monosem_jax.precision import EXACT, Precision, dot

Params = dict
DEFAULT_HIDDEN = (64, 32, 16)
#: Whether the model has dense layers beyond its tables (``params['mlp']``).
MLP = True


def init(key: jax.Array, n_users: int, n_items: int, dim: int,
         hidden: Sequence[int] = DEFAULT_HIDDEN, use_bias: bool = False,
         dtype=jnp.float32) -> Params:
  """Embeddings ~ N(0, 0.1^2); linear layers U(+-1/sqrt(fan_in)) (PyTorch default)."""
  keys = jax.random.split(key, 2 + 2 * (len(hidden) + 1))
  params = {
      'user_emb': 0.1 * jax.random.normal(keys[0], (n_users, dim), dtype),
      'item_emb': 0.1 * jax.random.normal(keys[1], (n_items, dim), dtype),
  }
  sizes = [2 * dim, *hidden, 1]
  layers = []
  for j, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    bound = 1.0 / jnp.sqrt(fan_in)
    layers.append({
        'w': jax.random.uniform(keys[2 + 2 * j], (fan_in, fan_out), dtype,
                                -bound, bound),
        'b': jax.random.uniform(keys[3 + 2 * j], (fan_out,), dtype,
                                -bound, bound),
    })
  params['mlp'] = layers
  if use_bias:
    params['user_bias'] = jnp.zeros((n_users,), dtype)
    params['item_bias'] = jnp.zeros((n_items,), dtype)
  return params



def init_from_config(key: jax.Array, n_users: int, n_items: int, cfg) -> Params:
  """:func:`init` with a ``TrainConfig``'s ``dim``, ``hidden``, ``use_bias``."""
  return init(key, n_users, n_items, cfg.dim, hidden=cfg.hidden,
              use_bias=cfg.use_bias)


def complete_params(params: Params) -> Params:
  """Imported params made whole: as given (the biases are optional)."""
  return dict(params)


def config_of(params: Params) -> dict:
  """The ``TrainConfig`` fields that params imply beyond ``dim``: the MLP's
  hidden widths and whether the logit has biases."""
  return {'hidden': [int(l['w'].shape[1]) for l in params['mlp'][:-1]],
          'use_bias': 'user_bias' in params}


def mlp_logits(mlp: Sequence[dict], user_vecs: jax.Array,
               item_vecs: jax.Array, precision: Precision = EXACT
               ) -> jax.Array:
  """Frozen-scorer logits of paired embedding vectors.

  Args:
    mlp: the ``params['mlp']`` list.
    user_vecs: ``(..., d)``; item_vecs: ``(..., d)`` (same leading shape).
    precision: of the layers' products (default exact).

  Returns:
    ``(...)`` logits, without the optional biases.
  """
  h = jnp.concatenate([user_vecs, item_vecs], -1)
  for layer in mlp[:-1]:
    h = jax.nn.relu(dot(h, layer['w'], precision) + layer['b'])
  return (dot(h, mlp[-1]['w'], precision) + mlp[-1]['b'])[..., 0]


def _bias(params: Params, name: str, idx):
  return params[name][idx] if name in params else 0.0


def pair_logits(params: Params, users: jax.Array, items: jax.Array) -> jax.Array:
  """``(B,)`` logits of (user index, item index) pairs."""
  return (mlp_logits(params['mlp'], params['user_emb'][users],
                     params['item_emb'][items])
          + _bias(params, 'user_bias', users) + _bias(params, 'item_bias', items))


def matrix_logits(mlp: Sequence[dict], user_vecs: jax.Array,
                  item_vecs: jax.Array, user_bias: jax.Array | float = 0.0,
                  item_bias: jax.Array | float = 0.0) -> jax.Array:
  """``(U, I)`` logits of every user vector against every item vector.

  The first layer is split, ``W1 [u; i] = W1_u u + W1_i i``, so the
  ``U x I x 2d`` concatenation never exists. Every product is exact.
  """
  d = user_vecs.shape[-1]
  w1, b1 = mlp[0]['w'], mlp[0]['b']
  h = jax.nn.relu(dot(user_vecs, w1[:d])[:, None, :]
                  + dot(item_vecs, w1[d:])[None] + b1)
  for layer in mlp[1:-1]:
    h = jax.nn.relu(dot(h, layer['w']) + layer['b'])
  out = (dot(h, mlp[-1]['w']) + mlp[-1]['b'])[..., 0]
  return out + jnp.reshape(user_bias, (-1, 1) if jnp.ndim(user_bias) else ()) + item_bias


def user_item_logits(params: Params, users: jax.Array) -> jax.Array:
  """``(B, n_items)`` logits of a block of user indices against all items."""
  ub = params['user_bias'][users] if 'user_bias' in params else 0.0
  ib = params.get('item_bias', 0.0)
  return matrix_logits(params['mlp'], params['user_emb'][users],
                       params['item_emb'], ub, ib)


def rows_logits(dense: Params, rows: Params) -> jax.Array:
  """``(B,)`` logits of gathered rows (used by the sparse training step).

  Args:
    dense: ``{'mlp': [...]}``, the non-table params.
    rows: ``{'user_emb': (B, d), 'item_emb': (B, d)}`` plus ``'user_bias'``
      and ``'item_bias'`` ``(B,)`` when the model has biases.
  """
  return (mlp_logits(dense['mlp'], rows['user_emb'], rows['item_emb'])
          + rows.get('user_bias', 0.0) + rows.get('item_bias', 0.0))


# Prediction-aware loss terms (docs/method.md#prediction-loss): original
# embeddings and the MLP enter under stop_gradient.

sg = jax.lax.stop_gradient


def target_probs(mlp: Sequence[dict], U: jax.Array, I: jax.Array,
                 bias: jax.Array | float = 0.0,
                 precision: Precision = EXACT) -> jax.Array:
  """Frozen-MLP probabilities ``y = sigmoid(f([u; i]) + bias)`` ``(B,)``.

  Independent of the SAE: compute once per batch, under stop_gradient
  (``precision``: of the MLP's products, default exact).
  """
  return sg(jax.nn.sigmoid(mlp_logits(sg(mlp), sg(U), sg(I), precision)
                           + bias))


def prediction_loss(mlp: Sequence[dict], U_hat: jax.Array, I_hat: jax.Array,
                    target: jax.Array, kind: str = 'bce',
                    bias: jax.Array | float = 0.0,
                    precision: Precision = EXACT) -> jax.Array:
  """NCF prediction loss through the frozen MLP on paired reconstructions.

  ``y_hat = sigmoid(f([u_hat; i_hat]) + bias)``. 'bce':
  ``mean(-y log y_hat - (1 - y) log(1 - y_hat))`` with the soft target ``y``,
  computed from logits (``softplus(l) - y l``, stable); 'mse':
  ``mean((y_hat - y)^2)`` in probability space.

  Args:
    mlp: the frozen ``params['mlp']`` list (stop_gradient applied here).
    U_hat: ``(B, d)``; I_hat: ``(B, d)`` paired row by row.
    target: ``(B,)`` original probabilities from :func:`target_probs`.
    kind: 'bce' | 'mse'.
    bias: optional ``(B,)`` user + item bias logits (frozen).
    precision: of the MLP's products (default exact).

  Returns:
    scalar.
  """
  logits = mlp_logits(sg(mlp), U_hat, I_hat, precision) + sg(bias)
  y = sg(target)
  if kind == 'bce':
    return jnp.mean(jax.nn.softplus(logits) - y * logits)
  if kind == 'mse':
    return jnp.mean(jnp.square(jax.nn.sigmoid(logits) - y))
  raise ValueError(f'ncf.prediction_loss: kind={kind!r}, expected bce | mse')
