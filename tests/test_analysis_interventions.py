"""Interventions against direct numpy computations (docs/method.md#interventions)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from monosem_jax.analysis import fidelity
from monosem_jax.analysis import interventions as iv
from monosem_jax.data import protocol, synthetic
from monosem_jax.recommenders import mf, ncf
from monosem_jax.recommenders.kinds import make_scorer
from monosem_jax.sae import model

D, N_LAT = 8, 12


def _codec(normalize=True, pre_bias=True, activation='relu', k=None, seed=0):
  cfg = model.SAEConfig(dim=D, dict_size=N_LAT, normalize=normalize,
                        pre_bias=pre_bias, activation=activation,
                        **({'k_max': k} if k else {}))
  params = model.init(jax.random.PRNGKey(seed), cfg)
  params['b_pre'] = 0.1 * jnp.arange(D, dtype=jnp.float32) if pre_bias else (
      params.get('b_pre'))
  if not pre_bias:
    params.pop('b_pre', None)
  return iv.Codec(params, cfg, k)


def _x(n=16, seed=1):
  return jax.random.normal(jax.random.PRNGKey(seed), (n, D))


@pytest.mark.parametrize('normalize,activation,k', [
    (True, 'relu', None), (False, 'relu', None), (True, 'topk', 3)])
def test_delta_mode_leaves_unedited_vectors_bitwise(normalize, activation, k):
  codec = _codec(normalize=normalize, activation=activation, k=k)
  x = _x()
  assert np.array_equal(iv.edit(codec, x, 3, None, mode='delta'), x)
  # setting a neuron to the value it already has is no edit either
  z, _ = codec.encode(x)
  same = iv.set_level(z, jnp.full(x.shape[0], 3), z[:, 3])
  assert np.array_equal(same, z)
  # a neuron dead on every vector, set to 0, leaves every vector bit for bit
  dead = iv.Codec({**codec.params, 'b_lat': codec.params['b_lat'].at[7].set(
      -1e3)}, codec.cfg, codec.k)
  assert not np.asarray(dead.encode(x)[0])[:, 7].any()
  assert np.array_equal(iv.edit(dead, x, 7, 0.0, mode='delta'), x)
  assert not np.array_equal(iv.edit(dead, x, 7, 0.5, mode='delta'), x)


@pytest.mark.parametrize('normalize,pre_bias', [(True, True), (False, False),
                                                (True, False)])
def test_modes_against_decode(normalize, pre_bias):
  codec = _codec(normalize, pre_bias)
  x = _x()
  x_in, stats = model.prepare(x, codec.cfg)
  z = model.encode_prepared(codec.params, x_in, codec.cfg)
  z_edit = np.array(z)
  z_edit[:, 5] = 2.5
  dec = lambda c: model.decode(codec.params, jnp.asarray(c), codec.cfg, stats)
  # replace: the edited code decoded with the vector's own statistics
  np.testing.assert_allclose(iv.edit(codec, x, 5, 2.5, mode='replace'),
                             dec(z_edit), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(iv.edit(codec, x, 5, None, mode='replace'),
                             model.reconstruct(codec.params, x, codec.cfg),
                             rtol=1e-6, atol=1e-6)
  # delta: x + decode(edited) - decode(original)
  np.testing.assert_allclose(iv.edit(codec, x, 5, 2.5, mode='delta'),
                             x + dec(z_edit) - dec(z), rtol=1e-5, atol=1e-5)


def test_levels_absolute_and_minmax():
  z = jnp.array([[0., 1., 3.], [2., 2., 6.]])
  np.testing.assert_array_equal(iv.set_level(z, 1, -0.5),
                                [[0., -0.5, 3.], [2., -0.5, 6.]])
  # minmax: level 0 -> the row's min, 1 -> its max, -1 extrapolates below
  np.testing.assert_array_equal(iv.set_level(z, 0, 1.0, 'minmax'),
                                [[3., 1., 3.], [6., 2., 6.]])
  np.testing.assert_array_equal(iv.set_level(z, 0, -1.0, 'minmax'),
                                [[-3., 1., 3.], [-2., 2., 6.]])
  # one neuron per row
  np.testing.assert_array_equal(iv.set_level(z, jnp.array([2, 0]), 9.),
                                [[0., 1., 9.], [9., 2., 6.]])
  with pytest.raises(ValueError, match='scale'):
    iv.set_level(z, 0, 1.0, 'percent')
  with pytest.raises(ValueError, match='mode'):
    iv.edit(_codec(), _x(), 0, 1.0, mode='add')


def _world():
  data = synthetic.make_world(synthetic.WorldConfig(
      n_users=120, n_items=90, n_concepts=4, seed=3))
  split = protocol.make_split(data, seed=0)
  return data, split


def _scorer(kind, n_users, n_items):
  key = jax.random.PRNGKey(7)
  init = mf.init if kind == 'mf' else ncf.init
  params = init(key, n_users, n_items, D)
  return params, make_scorer(kind, params)


def _ranked(scores, seen, k, drop=None):
  s = np.where(seen, -np.inf, np.asarray(scores, np.float64))
  if drop is not None:
    s = np.where(drop[None], -np.inf, s)
  return np.argsort(-s, axis=1, kind='stable')[:, :k]


@pytest.mark.parametrize('kind', ['mf', 'ncf'])
@pytest.mark.parametrize('mode', ['replace', 'delta'])
def test_steer_users_against_direct_computation(kind, mode):
  data, split = _world()
  params, scorer = _scorer(kind, split.n_users, split.n_items)
  codec = _codec()
  users = np.array([3, 10, 11, 40, 77])
  seen = np.zeros((len(users), split.n_items), bool)
  seen[:, ::7] = True
  concept = np.asarray(data.item_concepts[:, 1], bool)
  levels = [None, 2.0, -1.0]
  k = 10
  table = iv.steer_users(codec, scorer, params['user_emb'], params['item_emb'],
                         users, seen, 4, levels, concept, mode=mode, k=k)
  none = 'reconstruction' if mode == 'replace' else 'unedited'
  assert list(table.level) == ['raw', none, 2.0, -1.0]
  u = jnp.asarray(params['user_emb'])[users]
  items = jnp.asarray(params['item_emb'])
  base = None
  for row, level in zip(table.itertuples(), ['raw'] + levels):
    vec = u if level == 'raw' else iv.edit(codec, u, 4, level, mode=mode)
    s = scorer.matrix_logits(vec, items, jnp.asarray(users),
                             jnp.arange(split.n_items))
    top = _ranked(s, seen, k)
    np.testing.assert_allclose(row.concept_share, concept[top].mean(),
                               rtol=1e-6)
    rest = _ranked(s, seen, k, drop=concept)
    base = rest if base is None else base
    rbo = fidelity.list_agreement(base, rest)['rbo_norm'].mean()
    np.testing.assert_allclose(row.collateral_rbo, rbo, rtol=1e-5)
  if mode == 'delta':   # the unedited reconstruction is the raw ranking
    assert table.concept_share[1] == table.concept_share[0]
    assert table.collateral_rbo[1] == pytest.approx(1.0)


@pytest.mark.parametrize('kind', ['mf', 'ncf'])
def test_promote_item_against_direct_ranks(kind):
  data, split = _world()
  params, scorer = _scorer(kind, split.n_users, split.n_items)
  codec = _codec(normalize=False, pre_bias=False)
  users = np.arange(0, 120, 3)
  rng = np.random.default_rng(0)
  seen = rng.random((len(users), split.n_items)) < 0.1
  target, neuron, th = 17, 2, 5
  levels = [None, 1.0, 4.0]
  table = iv.promote_item(codec, scorer, params['user_emb'],
                          params['item_emb'], users, seen, target, neuron,
                          levels, threshold=th, margin=3, k=12)
  u = jnp.asarray(params['user_emb'])[users]
  items = jnp.asarray(params['item_emb'])

  def ranks(item_vecs):
    s = np.asarray(scorer.matrix_logits(u, item_vecs, jnp.asarray(users),
                                        jnp.arange(split.n_items)))
    order = _ranked(s, seen, split.n_items)
    pos = np.argmax(order == target, axis=1) + 1    # 1-based among unseen
    return np.where(seen[:, target], 0, pos)
  r0 = ranks(items)
  eligible = r0 > th
  assert table.n_eligible[0] == eligible.sum() > 0
  for row, level in zip(table.itertuples(), ['raw'] + levels):
    vecs = items if level == 'raw' else items.at[target].set(
        iv.edit(codec, items[target][None], neuron, level)[0])
    r = ranks(vecs)[eligible]
    np.testing.assert_allclose(row.success_rate, (r <= th + 3).mean())
    np.testing.assert_allclose(row.mean_rank, r.mean())
    np.testing.assert_allclose(row.in_top_k, (r <= 12).mean())
  # the measure's floor: eligible users already within th + margin
  np.testing.assert_allclose(table.success_rate[0],
                             (r0[eligible] <= th + 3).mean())


def test_item_ranks_ties_and_seen():
  scores = jnp.array([[1., 3., 3., 0.], [5., 1., 2., 2.]])
  seen = jnp.array([[False, False, False, False], [True, False, False, False]])
  # row 0: item 2 ties item 1 (lower index first) -> rank 2
  # row 1: item 0 seen and so not counted; item 2 ranks first
  np.testing.assert_array_equal(iv.item_ranks(scores, seen, 2), [2, 1])
  np.testing.assert_array_equal(iv.item_ranks(scores, seen, 0), [3, 0])


def test_item_ranks_of_a_non_finite_target_are_last():
  """A NaN score once ranked the promoted item first (a success)."""
  nan = np.nan
  scores = jnp.array([[nan, 3., nan, 0.], [nan] * 4, [1., jnp.inf, 2., 0.]])
  seen = jnp.array([[False, False, False, True]] * 3)
  np.testing.assert_array_equal(iv.item_ranks(scores, seen, 2), [3, 3, 1])
  np.testing.assert_array_equal(iv.item_ranks(scores, seen, 1), [1, 3, 3])


def test_concept_user_group():
  data, split = _world()
  col = np.asarray(data.item_concepts[:, 0], bool)
  users = np.arange(split.n_users)
  group = iv.concept_user_group(split, users, col, n=7)
  indptr = split.train_indptr()
  share = np.array([col[split.train_items[indptr[u]:indptr[u + 1]]].mean()
                    if indptr[u + 1] > indptr[u] else 0.0 for u in users])
  expected = sorted(users, key=lambda u: (-share[u], u))[:7]
  np.testing.assert_array_equal(group, expected)


def test_before_after_is_the_steered_list_of_one_user():
  data, split = _world()
  params, scorer = _scorer('mf', split.n_users, split.n_items)
  codec = _codec()
  seen = np.zeros(split.n_items, bool)
  seen[::5] = True
  before, after = iv.before_after(codec, scorer, params['user_emb'],
                                  params['item_emb'], 9, seen, 4, 3.0, k=7)
  s = np.asarray(params['user_emb'])[9] @ np.asarray(params['item_emb']).T
  np.testing.assert_array_equal(before, _ranked(s[None], seen[None], 7)[0])
  u = iv.edit(codec, jnp.asarray(params['user_emb'])[9:10], 4, 3.0)
  s2 = np.asarray(u) @ np.asarray(params['item_emb']).T   # float32, as exact
  np.testing.assert_array_equal(after, _ranked(s2, seen[None], 7)[0])
  assert not seen[before].any() and not seen[after].any()
