"""The sparse optimisers are optax transformations with the dense semantics."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from monosem_jax.recommenders.optimizers import (IndexedRows,
                                                 apply_row_updates,
                                                 sparse_adam, sparse_sgd)


def _rows_to_dense(n, idx, values):
  return jnp.zeros((n,) + values.shape[1:]).at[idx].add(values)


def test_sparse_adam_equals_optax_adam_when_every_row_is_touched():
  rng = np.random.default_rng(0)
  table = {'user_emb': jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)}
  dense, sparse = dict(table), dict(table)
  tx, ref = sparse_adam(0.01), optax.adam(0.01, 0.9, 0.999, 1e-8)
  s_state, d_state = tx.init(table), ref.init(table)
  for _ in range(5):
    idx = jnp.asarray(np.concatenate([rng.permutation(4), rng.integers(0, 4, 2)]))
    vals = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
    upd, s_state = tx.update({'user_emb': IndexedRows(idx, vals)}, s_state)
    sparse = apply_row_updates(sparse, upd)
    g = {'user_emb': _rows_to_dense(4, idx, vals)}
    u, d_state = ref.update(g, d_state)
    dense = optax.apply_updates(dense, u)
  np.testing.assert_allclose(sparse['user_emb'], dense['user_emb'], rtol=1e-5,
                             atol=1e-6)


def test_sparse_adam_is_lazy_on_untouched_rows():
  table = {'item_emb': jnp.ones((5, 2))}
  tx = sparse_adam(0.1)
  state = tx.init(table)
  upd, state = tx.update(
      {'item_emb': IndexedRows(jnp.array([0, 2, 5]), jnp.ones((3, 2)))}, state)
  new = apply_row_updates(table, upd)       # index 5 is padding: ignored
  np.testing.assert_allclose(np.asarray(new['item_emb'])[[0, 2]], 0.9, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(new['item_emb'])[[1, 3, 4]], 1.0)
  assert not np.any(np.asarray(state.mu['item_emb'])[[1, 3, 4]])


def test_sparse_sgd_equals_dense_sgd_with_duplicates():
  rng = np.random.default_rng(1)
  table = {'user_emb': jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}
  idx = jnp.array([0, 0, 2])
  vals = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)
  tx = sparse_sgd(0.5)
  upd, _ = tx.update({'user_emb': IndexedRows(idx, vals)}, tx.init(table))
  new = apply_row_updates(table, upd)
  ref = table['user_emb'] - 0.5 * _rows_to_dense(3, idx, vals)
  np.testing.assert_allclose(new['user_emb'], ref, rtol=1e-6)


def test_sparse_adam_jits():
  tx = sparse_adam(0.1)
  table = {'user_emb': jnp.zeros((3, 2))}
  f = jax.jit(lambda g, s: tx.update(g, s))
  upd, state = f({'user_emb': IndexedRows(jnp.array([1]), jnp.ones((1, 2)))},
                 tx.init(table))
  assert int(state.count) == 1 and upd['user_emb'].same_per_row
