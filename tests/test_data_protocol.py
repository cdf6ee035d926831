"""Protocol invariants: counts, leakage, determinism, sampler distribution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from monosem_jax.data import DataError, Dataset, load_dataset, make_split
from monosem_jax.data import protocol, samplers
from monosem_jax.data.protocol import filter_interactions
from monosem_jax.data.samplers import sample_negatives


@pytest.fixture(scope='module')
def world():
  return load_dataset('synthetic', n_users=300, n_items=200, seed=5)


def _pairs(u, i, n_items):
  return set((np.asarray(u, np.int64) * n_items + np.asarray(i)).tolist())


def test_counts_and_partition(world):
  split = make_split(world, n_holdout=5, seed=1)
  n = world.n_items
  pos = _pairs(world.users, world.items, n)
  train = _pairs(split.train_users, split.train_items, n)
  test = _pairs(split.test_users, split.test_items, n)
  assert train | test == pos and not train & test
  assert len(split.train_users) + len(split.test_users) == world.n_interactions
  per_user = np.bincount(split.test_users, minlength=world.n_users)
  assert set(per_user[split.eval_users].tolist()) == {5}
  # Test negatives: 5 distinct non-positives per eval user.
  negs = _pairs(split.test_neg_users, split.test_neg_items, n)
  assert len(negs) == len(split.test_neg_users) == 5 * len(split.eval_users)
  assert not negs & pos
  # Sorted by (user, item).
  key = split.train_users.astype(np.int64) * n + split.train_items
  assert np.all(np.diff(key) > 0)


def test_sae_user_split(world):
  split = make_split(world, sae_test_fraction=0.2, seed=1)
  assert len(split.sae_test_users) == int(np.floor(0.2 * world.n_users))
  both = np.concatenate([split.sae_train_users, split.sae_test_users])
  assert sorted(both.tolist()) == list(range(world.n_users))


def test_seed_determinism(world):
  a, b, c = (make_split(world, seed=s) for s in (7, 7, 8))
  for name, value in a.arrays().items():
    np.testing.assert_array_equal(value, b.arrays()[name], err_msg=name)
  assert not np.array_equal(a.test_items, c.test_items)
  ta, tb = a.sampler_tables(), b.sampler_tables()
  users = jnp.asarray(a.train_users)
  na, _ = sample_negatives(ta, jax.random.PRNGKey(3), users)
  nb, _ = sample_negatives(tb, jax.random.PRNGKey(3), users)
  np.testing.assert_array_equal(na, nb)


def test_no_leakage_in_training_negatives(world):
  split = make_split(world, seed=2)
  tables = split.sampler_tables()
  users = jnp.asarray(split.train_users)
  sample = jax.jit(sample_negatives)
  forbidden = (_pairs(world.users, world.items, world.n_items)
               | _pairs(split.test_neg_users, split.test_neg_items, world.n_items))
  for epoch in range(3):
    neg, ok = sample(tables, jax.random.PRNGKey(epoch), users)
    assert bool(ok.all())
    drawn = _pairs(split.train_users, np.asarray(neg), world.n_items)
    assert not drawn & forbidden
  # Fresh negatives each epoch.
  n0, _ = sample(tables, jax.random.PRNGKey(0), users)
  n1, _ = sample(tables, jax.random.PRNGKey(1), users)
  assert np.mean(np.asarray(n0) != np.asarray(n1)) > 0.5


def test_is_forbidden_matches_set(world):
  split = make_split(world, seed=3)
  tables = split.sampler_tables()
  rng = np.random.default_rng(0)
  u = rng.integers(0, world.n_users, 5000)
  i = rng.integers(0, world.n_items, 5000)
  got = np.asarray(samplers.is_forbidden(tables, jnp.asarray(u, jnp.int32),
                                         jnp.asarray(i, jnp.int32)))
  row = np.repeat(np.arange(world.n_users), np.diff(split.forbidden_indptr))
  truth = _pairs(row, split.forbidden_items, world.n_items)
  expect = np.array([k in truth for k in (u * world.n_items + i).tolist()])
  np.testing.assert_array_equal(got, expect)


def _one_user_world(pop, positives):
  """A dataset where user 0 has `positives` and other users make `pop`."""
  users, items, next_user = [], [], 1
  for item, count in enumerate(pop):  # each popularity user has one item
    users += list(range(next_user, next_user + count))
    items += [item] * count
    next_user += count
  users += [0] * len(positives)
  items += list(positives)
  return Dataset.from_pairs('toy', np.array(users), np.array(items),
                            all_item_ids=np.arange(len(pop)))


@pytest.mark.parametrize('alpha', [0.0, 30.0])
def test_sampler_distribution_matches_formula(alpha):
  pop = np.array([1, 2, 4, 8, 16, 32, 64, 3, 5, 40])
  ds = _one_user_world(pop, positives=[2, 5])
  split = make_split(ds, n_holdout=0, n_test_negatives=0, alpha=alpha, seed=0,
                     sae_test_fraction=0.0)
  tables = split.sampler_tables()
  n = 200_000
  neg, ok = jax.jit(sample_negatives)(tables, jax.random.PRNGKey(0),
                                      jnp.zeros((n,), jnp.int32))
  assert bool(ok.all())
  counts = np.bincount(np.asarray(neg), minlength=ds.n_items)
  popularity = ds.item_popularity
  share = popularity / popularity.sum()
  allowed = np.ones(ds.n_items, bool)
  allowed[[2, 5]] = False
  assert counts[~allowed].sum() == 0
  w = np.exp(alpha * share) * allowed
  expected = n * w / w.sum()
  _, p = stats.chisquare(counts[allowed], expected[allowed])
  assert p > 1e-4, (counts, expected)
  # The test has power: the uniform law is rejected when alpha is large.
  if alpha > 0:
    uniform = n * allowed / allowed.sum()
    _, p_uniform = stats.chisquare(counts[allowed], uniform[allowed])
    assert p_uniform < 1e-6


def test_popularity_logits_formula():
  logits = protocol.popularity_logits(np.array([1, 3, 0]), alpha=2.0)
  np.testing.assert_allclose(logits, [0.5, 1.5, 0.0])


def test_too_few_positives_policies():
  # User 0 has 3 positives (< 5 + 1), user 1 has 8.
  ds = Dataset.from_pairs('toy', np.array([0] * 3 + [1] * 8),
                          np.array([0, 1, 2] + list(range(8))),
                          all_item_ids=np.arange(12))
  s = make_split(ds, sae_test_fraction=0.0)
  assert s.eval_users.tolist() == [1]
  assert (s.train_users == 0).sum() == 3 and (s.test_users == 0).sum() == 0
  s = make_split(ds, too_few='drop', sae_test_fraction=0.0)
  assert (s.train_users == 0).sum() == 0
  with pytest.raises(DataError, match='1 users have fewer than 6 positives'):
    make_split(ds, too_few='error')


def test_split_roundtrip(world):
  split = make_split(world, seed=4)
  back = protocol.Split.from_arrays(split.arrays())
  for name, value in split.arrays().items():
    np.testing.assert_array_equal(value, back.arrays()[name])


def test_filter_until_stable():
  # Item 2 has one user; removing it drops user 2 below 2 positives, which
  # then leaves item 1 with one user: only a repeated filter sees that.
  ds = Dataset.from_pairs('toy', np.array([0, 0, 1, 1, 2, 2, 3, 3]),
                          np.array([0, 3, 0, 3, 1, 2, 1, 0]))
  once = filter_interactions(ds, min_item_users=2, min_user_positives=2,
                             until_stable=False)
  stable = filter_interactions(ds, min_item_users=2, min_user_positives=2)
  assert once.n_interactions > stable.n_interactions
  assert stable.item_popularity.min() >= 2 and stable.user_degree.min() >= 2


def test_starved_user_gets_invalid_negatives():
  # User 0 interacted with the whole catalogue: no negative exists.
  ds = Dataset.from_pairs('toy', np.array([0, 0, 0, 1]), np.array([0, 1, 2, 0]))
  split = make_split(ds, n_holdout=0, n_test_negatives=0)
  _, ok = sample_negatives(split.sampler_tables(), jax.random.PRNGKey(0),
                           jnp.asarray(split.train_users))
  np.testing.assert_array_equal(np.asarray(ok), split.train_users == 1)


def test_unique_negatives_are_distinct_per_user(world):
  split = make_split(world, seed=2)
  tables = split.sampler_tables()
  users = jnp.asarray(split.train_users)
  neg, ok = jax.jit(samplers.sample_negatives_unique)(
      tables, jax.random.PRNGKey(0), users)
  neg, ok = np.asarray(neg), np.asarray(ok)
  assert ok.mean() > 0.99
  pairs = split.train_users[ok].astype(np.int64) * world.n_items + neg[ok]
  assert len(np.unique(pairs)) == ok.sum()  # no repeats within a user
  forbidden = (_pairs(world.users, world.items, world.n_items)
               | _pairs(split.test_neg_users, split.test_neg_items, world.n_items))
  assert not set(pairs.tolist()) & forbidden
  # The plain sampler does repeat items within a user on this small world.
  plain, _ = samplers.sample_negatives(tables, jax.random.PRNGKey(0), users)
  plain_pairs = split.train_users.astype(np.int64) * world.n_items + np.asarray(plain)
  assert len(np.unique(plain_pairs)) < len(plain_pairs)


def test_unique_negatives_follow_successive_sampling():
  # One user, two negatives from 8 allowed items with very unequal weights:
  # P({i, j}) = p_i p_j / (1 - p_i) + p_j p_i / (1 - p_j).
  pop = np.array([1, 2, 4, 8, 16, 32, 64, 3, 5, 40])
  ds = _one_user_world(pop, positives=[2, 5])
  alpha = 10.0
  split = make_split(ds, n_holdout=0, n_test_negatives=0, alpha=alpha,
                     seed=0, sae_test_fraction=0.0)
  tables = split.sampler_tables()
  reps = 20_000
  keys = jax.random.split(jax.random.PRNGKey(0), reps)
  draw = jax.jit(jax.vmap(lambda k: samplers.sample_negatives_unique(
      tables, k, jnp.zeros((2,), jnp.int32))))
  neg, ok = draw(keys)
  neg = np.sort(np.asarray(neg), axis=1)
  assert bool(np.asarray(ok).all()) and (neg[:, 0] != neg[:, 1]).all()
  allowed = np.setdiff1d(np.arange(len(pop)), [2, 5])
  share = ds.item_popularity / ds.item_popularity.sum()
  p = np.exp(alpha * share[allowed])
  p /= p.sum()
  pairs = [(a, b) for x, a in enumerate(allowed) for b in allowed[x + 1:]]
  prob = {}
  for a, b in pairs:
    pa, pb = p[allowed == a][0], p[allowed == b][0]
    prob[(a, b)] = pa * pb / (1 - pa) + pb * pa / (1 - pb)
  observed = np.array([np.sum((neg[:, 0] == a) & (neg[:, 1] == b))
                       for a, b in pairs])
  expected = reps * np.array([prob[q] for q in pairs])
  _, pval = stats.chisquare(observed, expected)
  assert pval > 1e-4, (observed, expected)
  # Power: the law of two independent draws conditioned on being distinct
  # (p_i p_j, renormalised) is rejected.
  naive = np.array([p[allowed == a][0] * p[allowed == b][0] for a, b in pairs])
  _, p_naive = stats.chisquare(observed, reps * naive / naive.sum())
  assert p_naive < 1e-6


def test_first_occurrence_dense_and_sorted_paths_agree():
  rng = np.random.default_rng(0)
  u = jnp.asarray(rng.integers(0, 7, 500), jnp.int32)
  i = jnp.asarray(rng.integers(0, 9, 500), jnp.int32)
  dense = np.asarray(samplers._first_occurrence(u, i, (7, 9)))
  by_sort = np.asarray(samplers._first_occurrence(u, i))
  np.testing.assert_array_equal(dense, by_sort)
  key = np.asarray(u) * 9 + np.asarray(i)
  _, first_idx = np.unique(key, return_index=True)
  assert sorted(np.flatnonzero(dense).tolist()) == sorted(first_idx.tolist())
