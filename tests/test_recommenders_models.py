"""MF / NCF scoring functions, the loss gradient and the optimiser steps."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from monosem_jax.recommenders import (ITEM_TABLES, USER_TABLES, kinds, loop,
                                     mf, ncf, optimizers, probabilities)
from monosem_jax.recommenders.config import TrainConfig

NU, NI = 7, 9


@pytest.mark.parametrize('kind,kw', [('mf', {}), ('ncf', {}),
                                     ('ncf', {'use_bias': True})])
def test_pair_matrix_and_block_logits_agree(kind, kw):
  m = kinds.get(kind).model
  p = m.init(jax.random.PRNGKey(0), NU, NI, 4, **kw)
  if 'user_bias' in p:  # non-zero biases so that they are exercised
    p['user_bias'] = jnp.arange(NU, dtype=jnp.float32) / 10
    p['item_bias'] = -jnp.arange(NI, dtype=jnp.float32) / 7
  users = jnp.array([0, 3, 6])
  block = m.user_item_logits(p, users)
  assert block.shape == (3, NI)
  uu, ii = jnp.meshgrid(users, jnp.arange(NI), indexing='ij')
  pairs = m.pair_logits(p, uu.ravel(), ii.ravel()).reshape(3, NI)
  np.testing.assert_allclose(block, pairs, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(probabilities(block), jax.nn.sigmoid(pairs),
                             rtol=1e-5, atol=1e-6)


def test_mf_score_definition():
  p = mf.init(jax.random.PRNGKey(1), NU, NI, 3)
  p['user_bias'] = p['user_bias'].at[2].set(0.5)
  p['item_bias'] = p['item_bias'].at[4].set(-0.25)
  want = 0.5 - 0.25 + float(p['user_emb'][2] @ p['item_emb'][4])
  got = float(mf.pair_logits(p, jnp.array([2]), jnp.array([4]))[0])
  assert got == pytest.approx(want, rel=1e-6)


def test_init_scales():
  p = mf.init(jax.random.PRNGKey(0), 2000, 2000, 20)
  assert float(jnp.std(p['user_emb'])) == pytest.approx(1 / 20, rel=0.05)
  assert not p['user_bias'].any() and not p['item_bias'].any()
  q = ncf.init(jax.random.PRNGKey(0), 2000, 2000, 20)
  assert float(jnp.std(q['item_emb'])) == pytest.approx(0.1, rel=0.05)
  assert [l['w'].shape for l in q['mlp']] == [(40, 64), (64, 32), (32, 16),
                                              (16, 1)]
  assert float(jnp.abs(q['mlp'][0]['w']).max()) <= 1 / np.sqrt(40)


def test_ncf_scorer_on_arbitrary_embeddings():
  p = ncf.init(jax.random.PRNGKey(0), NU, NI, 4)
  u = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
  i = jax.random.normal(jax.random.PRNGKey(2), (6, 4))
  full = ncf.matrix_logits(p['mlp'], u, i)
  pair = ncf.mlp_logits(p['mlp'], jnp.repeat(u, 6, 0), jnp.tile(i, (5, 1)))
  np.testing.assert_allclose(full.ravel(), pair, rtol=1e-5, atol=1e-6)


def _loss(cfg, params, users, items, labels, weights):
  """The training objective (``loop.batch_objective``) as a function of the
  full params: the table rows each pair gathers, the other params dense, as
  ``loop.make_step`` splits them."""
  tables = USER_TABLES + ITEM_TABLES
  rows = {k: v[users] if k in USER_TABLES else v[items]
          for k, v in params.items() if k in tables}
  dense = {k: v for k, v in params.items() if k not in tables}
  return loop.batch_objective(cfg, rows, dense, labels, weights)[0]


@pytest.mark.parametrize('kind,reduction', [('mf', 'sum'), ('ncf', 'mean'),
                                            ('ncf', 'sum')])
def test_loss_gradient_matches_finite_differences(kind, reduction):
  with jax.enable_x64(True):
    cfg = TrainConfig(kind=kind, dim=3, hidden=(5, 4), reg=0.1,
                            reduction=reduction, use_bias=kind == 'ncf')
    p = loop.init_params(cfg, jax.random.PRNGKey(0), 4, 5)
    p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), p)
    p = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(
        jax.random.PRNGKey(a.size), a.shape, jnp.float64), p)
    users = jnp.array([0, 1, 1, 3, 2, 0])
    items = jnp.array([4, 0, 2, 2, 1, 4])   # (0, 4) twice: per-occurrence L2
    labels = jnp.array([1., 0., 1., 0., 1., 1.])
    weights = jnp.array([1., 1., 0., 1., 1., 1.])
    f = jax.jit(lambda q: _loss(cfg, q, users, items, labels, weights))
    grads = jax.grad(f)(p)
    flat, unravel = jax.flatten_util.ravel_pytree(p)
    gflat, _ = jax.flatten_util.ravel_pytree(grads)
    g = jax.jit(lambda x: f(unravel(x)))
    rng = np.random.default_rng(0)
    for j in rng.choice(flat.size, 25, replace=False):
      e = np.zeros(flat.size)
      e[j] = 1e-6
      fd = (g(flat + e) - g(flat - e)) / 2e-6
      assert float(gflat[j]) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)


def test_mf_loss_is_bce_plus_per_occurrence_l2():
  cfg = TrainConfig(kind='mf', dim=2, reg=0.2)
  p = mf.init(jax.random.PRNGKey(0), 2, 2, 2)
  users, items = jnp.array([0, 0]), jnp.array([1, 1])
  y, w = jnp.array([1., 0.]), jnp.ones(2)
  logit = mf.pair_logits(p, users, items)
  bce = optax.sigmoid_binary_cross_entropy(logit, y).sum()
  l2 = 0.1 * 2 * (jnp.sum(p['user_emb'][0] ** 2) + jnp.sum(p['item_emb'][1] ** 2))
  got = _loss(cfg, p, users, items, y, w)
  assert float(got) == pytest.approx(float(bce + l2), rel=1e-6)


def _batch():
  users = jnp.array([0, 1, 1, 3, 2, 0, 6, 0])
  items = jnp.array([4, 0, 2, 2, 1, 4, 8, 3])
  labels = jnp.array([1., 0., 1., 0., 1., 1., 0., 0.])
  weights = jnp.array([1., 1., 1., 1., 1., 1., 0., 1.])
  return users, items, labels, weights


@pytest.mark.parametrize('kind', ['mf', 'ncf'])
def test_sparse_sgd_step_equals_dense_sgd(kind):
  cfg = TrainConfig(kind=kind, dim=3, optimizer='sgd', learning_rate=0.1,
                          reduction='sum')
  state = loop.init_state(cfg, NU, NI)
  step = loop.make_step(cfg, optimizers.make_optimizer(cfg))
  (new, _), _ = step((state.params, state.opt_state), _batch())
  g = jax.grad(lambda q: _loss(cfg, q, *_batch()))(state.params)
  want = jax.tree.map(lambda a, b: a - 0.1 * b, state.params, g)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6,
                                                       atol=1e-7), new, want)


@pytest.mark.parametrize('kind', ['mf', 'ncf'])
def test_sparse_adam_first_step_equals_dense_adam(kind):
  # On the first step untouched rows have zero moments, so sparse Adam and
  # dense Adam agree (duplicate rows are summed in both).
  kw = dict(kind=kind, dim=3, learning_rate=0.01, reduction='mean')
  sparse = TrainConfig(optimizer='sparse_adam', **kw)
  dense = TrainConfig(optimizer='adam', **kw)
  s0 = loop.init_state(sparse, NU, NI)
  d0 = loop.init_state(dense, NU, NI)
  (ps, _), _ = loop.make_step(sparse, optimizers.make_optimizer(sparse))(
      (s0.params, s0.opt_state), _batch())
  (pd, _), _ = loop.make_step(dense, optimizers.make_optimizer(dense))(
      (d0.params, d0.opt_state), _batch())
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-7), ps, pd)
  # Weight-0 row (user 6, item 8) untouched.
  np.testing.assert_array_equal(ps['user_emb'][6], s0.params['user_emb'][6])


def test_unknown_kind_and_bad_options():
  with pytest.raises(ValueError, match='unknown recommender kind'):
    kinds.get('gmf')
  with pytest.raises(ValueError, match='optimizer'):
    TrainConfig(optimizer='lbfgs')
  with pytest.raises(ValueError, match='unknown key'):
    TrainConfig.from_mapping({'kind': 'mf', 'lr': 0.1})
