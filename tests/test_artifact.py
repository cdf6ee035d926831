"""RecommenderArtifact: atomic save/load and the frozen scorers."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from monosem_jax.data import protocol, synthetic
from monosem_jax.recommenders import artifact as art_lib
from monosem_jax.recommenders import kinds


@pytest.fixture(scope='module')
def split():
  ds = synthetic.make_world(synthetic.WorldConfig(n_users=40, n_items=25))
  return protocol.make_split(ds, seed=0)


def _artifact(kind, split, use_bias=False):
  m = kinds.get(kind).model
  kw = {'use_bias': use_bias} if kind == 'ncf' else {}
  p = m.init(jax.random.PRNGKey(0), split.n_users, split.n_items, 4, **kw)
  if 'user_bias' in p:
    p['user_bias'] = jax.random.normal(jax.random.PRNGKey(1), (split.n_users,))
    p['item_bias'] = jax.random.normal(jax.random.PRNGKey(2), (split.n_items,))
  return art_lib.RecommenderArtifact(
      kind=kind, params=jax.device_get(p), split=split,
      meta={'dataset': 'synthetic', 'metrics': {'ndcg@10': 0.5}})


@pytest.mark.parametrize('kind,bias', [('mf', True), ('ncf', False),
                                       ('ncf', True)])
def test_save_load_roundtrip(tmp_path, split, kind, bias):
  a = _artifact(kind, split, bias)
  d = str(tmp_path / 'frozen')
  a.save(d)
  b = art_lib.RecommenderArtifact.load(d)
  assert b.kind == kind and b.meta == a.meta
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
  for k, v in a.split.arrays().items():
    np.testing.assert_array_equal(v, b.split.arrays()[k])
  np.testing.assert_array_equal(b.user_emb, a.user_emb)
  users = np.arange(split.n_users)
  np.testing.assert_array_equal(a.user_item_logits(users),
                                b.user_item_logits(users))
  # Saving again replaces atomically and leaves no temporary folders.
  b.save(d)
  assert sorted(os.listdir(tmp_path)) == ['frozen']


def test_load_errors_name_the_path(tmp_path, split):
  missing = str(tmp_path / 'nope')
  with pytest.raises(art_lib.ArtifactError, match='nope'):
    art_lib.RecommenderArtifact.load(missing)
  d = str(tmp_path / 'frozen')
  _artifact('mf', split).save(d)
  with open(os.path.join(d, 'params.npz'), 'wb') as f:
    f.write(b'not a zip')
  with pytest.raises(art_lib.ArtifactError, match='params.npz'):
    art_lib.RecommenderArtifact.load(d)
  os.remove(os.path.join(d, 'split.npz'))
  with pytest.raises(art_lib.ArtifactError, match='split.npz'):
    art_lib.RecommenderArtifact.load(d)


def test_meta_format_checked(tmp_path, split):
  d = str(tmp_path / 'frozen')
  _artifact('mf', split).save(d)
  with open(os.path.join(d, 'meta.json'), 'w') as f:
    json.dump({'format': 99, 'kind': 'mf', 'meta': {}}, f)
  with pytest.raises(art_lib.ArtifactError, match='format'):
    art_lib.RecommenderArtifact.load(d)


@pytest.mark.parametrize('kind,bias', [('mf', True), ('ncf', False),
                                       ('ncf', True)])
def test_frozen_scorers_match_model(split, kind, bias):
  a = _artifact(kind, split, bias)
  m = kinds.get(kind).model
  params = jax.tree.map(jnp.asarray, a.params)
  users = jnp.array([0, 5, 7])
  items = jnp.arange(split.n_items)
  u, i = jnp.asarray(a.user_emb)[users], jnp.asarray(a.item_emb)
  scorer = a.scorer()
  full = jax.jit(scorer.matrix_logits)(u, i, users, items)
  np.testing.assert_allclose(full, m.user_item_logits(params, users),
                             rtol=1e-5, atol=1e-6)
  pu, pi = jnp.array([1, 2, 3]), jnp.array([4, 0, 9])
  pair = jax.jit(scorer.pair_logits)(
      jnp.asarray(a.user_emb)[pu], jnp.asarray(a.item_emb)[pi], pu, pi)
  np.testing.assert_allclose(pair, m.pair_logits(params, pu, pi), rtol=1e-5,
                             atol=1e-6)
  # Without indices no bias is added: equal up to the biases.
  nob = scorer.pair_logits(jnp.asarray(a.user_emb)[pu],
                           jnp.asarray(a.item_emb)[pi])
  bias_sum = (params['user_bias'][pu] + params['item_bias'][pi]
              if 'user_bias' in params else 0.0)
  np.testing.assert_allclose(nob + bias_sum, pair, rtol=1e-5, atol=1e-6)


def test_frozen_scorer_on_reconstructions_gives_gradients(split):
  a = _artifact('ncf', split)
  f = a.scorer().matrix_logits
  recon = jnp.asarray(a.user_emb[:3]) + 0.01
  g = jax.grad(lambda r: jnp.sum(f(r, jnp.asarray(a.item_emb)) ** 2))(recon)
  assert g.shape == recon.shape and bool(jnp.isfinite(g).all())
  assert float(jnp.abs(g).sum()) > 0
