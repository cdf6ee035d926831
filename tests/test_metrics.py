"""Ranking metrics against hand-computed rankings and a numpy reference."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from monosem_jax.recommenders import metrics


def _ranks(scores, rel, ties='index'):
  return np.asarray(metrics.relevant_ranks(jnp.asarray(scores, jnp.float32),
                                           jnp.asarray(rel, jnp.int32), ties))


def test_ranks_hand_computed_with_ties():
  # item:     0    1    2    3    4    5
  scores = [[0.1, 0.9, 0.5, 0.5, 0.7, 0.5]]
  # Descending, ties by index: 1, 4, 2, 3, 5, 0.
  assert _ranks(scores, [[2, 3, 5, 0]]).tolist() == [[2, 3, 4, 5]]
  # Pessimistic: every tied item counts as above.
  assert _ranks(scores, [[2, 3, 5, 0]], 'pessimistic').tolist() == [[4, 4, 4, 5]]
  assert _ranks(scores, [[1, 4]], 'pessimistic').tolist() == [[0, 1]]


def test_index_ties_match_top_k_order():
  rng = np.random.default_rng(0)
  scores = rng.integers(0, 4, (3, 20)).astype(np.float32)  # many ties
  order = np.argsort(-scores, axis=1, kind='stable')
  rel = np.tile(np.arange(20), (3, 1))
  ranks = _ranks(scores, rel)
  for b in range(3):
    assert ranks[b, order[b]].tolist() == list(range(20))


def test_per_user_metrics_hand_computed():
  # user 0: relevant at ranks 0 and 3; user 1: one relevant at rank 12;
  # user 2: no relevant items (padding only).
  ranks = np.array([[0, 3, 0], [12, 0, 0], [0, 0, 0]])
  valid = np.array([[True, True, False], [True, False, False],
                    [False, False, False]])
  m = metrics.per_user_metrics(ranks, valid, n_items=20, ks=(2, 5, 20))
  assert m['has_relevant'].tolist() == [1, 1, 0]
  assert m['hr@2'].tolist() == [1, 0, 0]
  assert m['hr@5'].tolist() == [1, 0, 0]
  assert m['hr@20'].tolist() == [1, 1, 0]
  np.testing.assert_allclose(m['recall@2'], [0.5, 0, 0])
  np.testing.assert_allclose(m['recall@5'], [1.0, 0, 0])
  idcg2 = 1 + 1 / math.log2(3)
  np.testing.assert_allclose(m['ndcg@2'], [1 / idcg2, 0, 0], rtol=1e-6)
  np.testing.assert_allclose(m['ndcg@5'], [(1 + 1 / math.log2(5)) / idcg2, 0, 0],
                             rtol=1e-6)
  np.testing.assert_allclose(m['ndcg@20'][1], 1 / math.log2(14), rtol=1e-6)
  np.testing.assert_allclose(m['mrr'], [1.0, 1 / 13, 0], rtol=1e-6)
  np.testing.assert_allclose(m['mrr@5'], [1.0, 0, 0])
  np.testing.assert_allclose(m['mpr'], [100 * 1.5 / 20, 100 * 12 / 20, 0])


def test_ndcg_idcg_truncated_at_k():
  # 3 relevant items, K=2: IDCG counts min(3, 2) = 2 positions.
  m = metrics.per_user_metrics(np.array([[0, 1, 2]]), np.ones((1, 3), bool),
                               n_items=10, ks=(2,))
  np.testing.assert_allclose(m['ndcg@2'], [1.0])
  np.testing.assert_allclose(m['recall@2'], [2 / 3])


def _numpy_reference(scores, train_sets, rel_sets, ks):
  """Independent reference: stable argsort, explicit loops."""
  n_items = scores.shape[1]
  out = {f'{m}@{k}': [] for m in ('hr', 'recall', 'ndcg', 'mrr') for k in ks}
  out['mrr'] = []
  out['mpr'] = []
  for u, (tr, rel) in enumerate(zip(train_sets, rel_sets)):
    if not rel:
      continue
    s = scores[u].astype(np.float64).copy()
    s[list(tr)] = -np.inf
    order = [i for i in np.argsort(-s, kind='stable')]
    rank = {i: r for r, i in enumerate(order)}
    rr = sorted(rank[h] for h in rel)
    for k in ks:
      hits = [r for r in rr if r < k]
      out[f'hr@{k}'].append(float(bool(hits)))
      out[f'recall@{k}'].append(len(hits) / len(rel))
      idcg = sum(1 / math.log2(r + 2) for r in range(min(len(rel), k)))
      out[f'ndcg@{k}'].append(sum(1 / math.log2(r + 2) for r in hits) / idcg)
      out[f'mrr@{k}'].append(1 / (1 + rr[0]) if rr[0] < k else 0.0)
    out['mrr'].append(1 / (1 + rr[0]))
    out['mpr'].append(np.mean([100 * r / n_items for r in rr]))
  return {k: float(np.mean(v)) for k, v in out.items()}


@pytest.mark.parametrize('block_size', [1, 3, 64])
def test_evaluate_matches_numpy_reference(block_size):
  rng = np.random.default_rng(1)
  n_users, n_items, ks = 11, 30, (1, 5, 10)
  # Rounded scores: plenty of ties.
  scores = np.round(rng.normal(size=(n_users, n_items)), 1).astype(np.float32)
  train_sets, rel_sets = [], []
  for u in range(n_users):
    perm = rng.permutation(n_items)
    n_tr, n_rel = rng.integers(0, 8), rng.integers(0, 5)
    if u == 0:
      n_rel = 0  # a user without held-out items is not evaluated
    train_sets.append(sorted(perm[:n_tr].tolist()))
    rel_sets.append(sorted(perm[n_tr:n_tr + n_rel].tolist()))
  # The highest-scored item of user 1 is a training positive: it must be
  # masked, not counted above the relevant items.
  top = int(np.argmax(scores[1]))
  train_sets[1] = sorted(set(train_sets[1]) | {top})
  rel_sets[1] = [i for i in rel_sets[1] if i != top] or [
      next(i for i in range(n_items) if i not in train_sets[1])]

  def csr(sets):
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in sets])])
    return indptr, np.array([i for s in sets for i in s], np.int32)

  eval_users = np.array([u for u in range(n_users) if rel_sets[u]])
  data = metrics.make_eval_data(n_items, eval_users, *csr(train_sets),
                                *csr(rel_sets), block_size=block_size)
  got = metrics.evaluate(lambda p, users: p[users], jnp.asarray(scores), data,
                         ks=ks)
  want = _numpy_reference(scores, train_sets, rel_sets, ks)
  assert got['n_users'] == len(eval_users)
  for k, v in want.items():
    assert got[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


def test_training_positives_are_masked():
  # One user, item 0 scores highest but is a training positive.
  scores = jnp.asarray([[9.0, 1.0, 2.0, 3.0]])
  data = metrics.make_eval_data(4, np.array([0]), np.array([0, 1]),
                                np.array([0]), np.array([0, 1]),
                                np.array([3]))
  m = metrics.evaluate(lambda p, u: p[u], scores, data, ks=(1,))
  assert m['hr@1'] == 1.0 and m['mrr'] == 1.0 and m['mpr'] == 0.0
  unmasked = metrics.make_eval_data(4, np.array([0]), np.array([0, 0]),
                                    np.array([], np.int32), np.array([0, 1]),
                                    np.array([3]))
  m = metrics.evaluate(lambda p, u: p[u], scores, unmasked, ks=(1,))
  assert m['hr@1'] == 0.0 and m['mrr'] == 0.5


def test_popularity_baseline_uses_training_counts():
  from monosem_jax.data import protocol, synthetic
  ds = synthetic.make_world(synthetic.WorldConfig(n_users=60, n_items=40))
  split = protocol.make_split(ds, seed=0)
  pop = metrics.train_popularity(split)
  np.testing.assert_array_equal(pop, np.bincount(split.train_items,
                                                 minlength=40))
  data = metrics.eval_data_from_split(split, block_size=16)
  got = metrics.evaluate_popularity(split, data, ks=(10,))
  scores = np.broadcast_to(pop, (split.n_users, split.n_items))
  indptr = split.train_indptr()
  tindptr = split.test_indptr()
  train_sets = [split.train_items[indptr[u]:indptr[u + 1]].tolist()
                for u in range(split.n_users)]
  rel_sets = [split.test_items[tindptr[u]:tindptr[u + 1]].tolist()
              for u in range(split.n_users)]
  want = _numpy_reference(scores, train_sets, rel_sets, (10,))
  for k, v in want.items():
    assert got[k] == pytest.approx(v, rel=1e-5), k


def test_bad_ties_argument():
  with pytest.raises(ValueError, match='ties'):
    metrics.relevant_ranks(jnp.zeros((1, 3)), jnp.zeros((1, 1), jnp.int32),
                           'optimistic')


# ---- Non-finite scores rank last (issue 16, case 4) ------------------------

def test_non_finite_scores_rank_last():
  nan, inf = np.nan, np.inf
  # item:    0    1    2    3    4    5
  scores = [[nan, 0.5, nan, 0.1, inf, -inf]]
  for ties in metrics.TIES:
    # only the finite 0.5 is above item 3; NaN and +-inf count as -inf
    assert _ranks(scores, [[3, 1]], ties).tolist() == [[1, 0]]
    # a relevant item without a finite score ranks last, below every other
    assert _ranks(scores, [[0, 2, 4, 5]], ties).tolist() == [[5, 5, 5, 5]]
  assert _ranks([[nan] * 6], [[0, 5]]).tolist() == [[5, 5]]


@pytest.mark.parametrize('kind', ['random', 'nan', 'half_nan', 'inf'])
def test_metrics_stay_in_0_1_on_any_scores(kind):
  """A diverged model (NaN or inf logits) once got ndcg@10 = 1.696 and
  hr@10 = 1: NaN comparisons ranked every held-out item first."""
  rng = np.random.default_rng(0)
  n_users, n_items, ks = 8, 40, (1, 5, 10)
  scores = rng.normal(size=(n_users, n_items)).astype(np.float32)
  if kind == 'nan':
    scores[:] = np.nan
  elif kind == 'half_nan':
    scores[:, ::2] = np.nan
  elif kind == 'inf':
    scores[:] = np.where(rng.random(scores.shape) < 0.5, np.inf, -np.inf)
  rel = [sorted(rng.choice(n_items, 6, replace=False).tolist())
         for _ in range(n_users)]
  indptr = np.arange(n_users + 1) * 6
  data = metrics.make_eval_data(n_items, np.arange(n_users),
                                np.zeros(n_users + 1, np.int64),
                                np.zeros(0, np.int32), indptr,
                                np.concatenate(rel), block_size=4)
  for ties in metrics.TIES:
    m = metrics.evaluate(lambda p, u: p[u], jnp.asarray(scores), data, ks=ks,
                         ties=ties)
    for key, v in m.items():
      if key not in ('mpr', 'n_users'):
        assert 0.0 <= v <= 1.0, (kind, ties, key, v)
    if kind in ('nan', 'inf'):        # no finite score: nothing is a hit
      assert all(m[f'{k}@{n}'] == 0.0 for k in ('hr', 'ndcg', 'recall')
                 for n in ks), m
      assert m['mrr'] == pytest.approx(1 / n_items)
