"""Ranking fidelity against closed forms, a hand computation and scipy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from monosem_jax.analysis import fidelity
from monosem_jax.recommenders import mf
from monosem_jax.recommenders.kinds import make_scorer


def _rbo_reference(a, b, p):
  """Direct transcription of the definitions (float64)."""
  a, b = list(a), list(b)
  d_max = len(a)
  x = [len(set(a[:d]) & set(b[:d])) for d in range(1, d_max + 1)]
  trunc = (1 - p) * sum(p ** (d - 1) * x[d - 1] / d for d in range(1, d_max + 1))
  ext = x[-1] / d_max * p ** d_max + (1 - p) / p * sum(
      p ** d * x[d - 1] / d for d in range(1, d_max + 1))
  return trunc, ext, x[-1] / d_max


def _tau_reference(a, b):
  union = list(dict.fromkeys(list(a) + list(b)))
  ra = [list(a).index(x) + 1 if x in a else len(a) + 1 for x in union]
  rb = [list(b).index(x) + 1 if x in b else len(b) + 1 for x in union]
  return stats.kendalltau(ra, rb, variant='b').statistic


def test_closed_forms():
  a = np.arange(30)[None]
  same = fidelity.list_agreement(a, a, p=0.9)
  np.testing.assert_allclose(same['rbo'], 1 - 0.9 ** 30, rtol=1e-6)   # 0.958
  np.testing.assert_allclose(same['rbo_norm'], 1.0, rtol=1e-6)
  np.testing.assert_allclose(same['rbo_ext'], 1.0, rtol=1e-6)
  np.testing.assert_allclose(same['kendall_tau'], 1.0)
  disjoint = fidelity.list_agreement(a, a + 100)
  for key in ('rbo', 'rbo_norm', 'rbo_ext', 'overlap'):
    assert float(disjoint[key][0]) == 0.0


def test_hand_computed_example():
  # A = 1 2 3, B = 2 1 4: X = (0, 2, 2); p = 0.5:
  # RBO = 0.5 * (1 * 0/1 + 0.5 * 2/2 + 0.25 * 2/3) = 1/3.
  m = fidelity.list_agreement(np.array([[1, 2, 3]]), np.array([[2, 1, 4]]),
                              p=0.5)
  np.testing.assert_allclose(m['rbo'], 1 / 3, rtol=1e-6)
  np.testing.assert_allclose(m['overlap'], 2 / 3, rtol=1e-6)


@pytest.mark.parametrize('seed', range(5))
def test_random_lists_match_references(seed):
  rng = np.random.default_rng(seed)
  n, d = 6, 12
  a = np.stack([rng.choice(30, d, replace=False) for _ in range(n)])
  b = np.stack([rng.choice(30, d, replace=False) for _ in range(n)])
  b[0] = a[0]                      # identical
  b[1] = a[1][::-1]                # reversed
  m = fidelity.list_agreement(a, b, p=0.9)
  for i in range(n):
    trunc, ext, overlap = _rbo_reference(a[i], b[i], 0.9)
    np.testing.assert_allclose(m['rbo'][i], trunc, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(m['rbo_ext'][i], ext, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(m['overlap'][i], overlap, rtol=1e-6)
    np.testing.assert_allclose(m['kendall_tau'][i], _tau_reference(a[i], b[i]),
                               rtol=1e-5, atol=1e-6)


def test_seen_items_are_removed_in_order():
  scores = jnp.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
  seen = jnp.array([[False, True, False, False, False]])
  assert fidelity.top_k_lists(scores, seen, 3).tolist() == [[0, 2, 3]]


def test_ranking_fidelity_through_the_scorer():
  rng = np.random.default_rng(0)
  users = jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)
  items = jnp.asarray(rng.normal(size=(40, 4)), jnp.float32)
  params = mf.init(jax.random.PRNGKey(0), 8, 40, 4)
  scorer = make_scorer('mf', params)
  same = fidelity.ranking_fidelity(scorer, users, items, users, items, k=10)
  np.testing.assert_allclose(same['rbo_norm'], 1.0, rtol=1e-6)
  noisy = fidelity.ranking_fidelity(
      scorer, users, items, users + 0.5 * rng.normal(size=(8, 4)), items, k=10)
  assert (noisy['rbo_norm'] < 1.0).all() and (noisy['rbo_norm'] >= 0).all()


def test_non_finite_scores_rank_last_in_the_lists():
  """NaN logits of a diverged SAE once came first in the top-k lists."""
  nan, inf = np.nan, np.inf
  scores = jnp.array([[nan, 1.0, inf, 2.0, 0.0, -inf],
                      [nan, nan, nan, nan, nan, nan]])
  seen = jnp.array([[False, False, False, False, True, False]] * 2)
  lists = fidelity.top_k_lists(scores, seen, 4).tolist()
  assert lists[0][:2] == [3, 1]                   # the finite unseen scores
  assert set(lists[0][2:]) <= {0, 2, 4, 5}        # then only -inf ones
  assert lists[1] == [0, 1, 2, 3]                 # all -inf: ties by index


@pytest.mark.parametrize('p', [0.0, 1.0, 1.5, -0.2, float('nan')])
def test_rbo_persistence_outside_0_1_is_refused(p):
  a = np.array([[1, 2, 3]])
  with pytest.raises(ValueError, match=r'p=.*RBO persistence.*\(0, 1\)'):
    fidelity.list_agreement(a, a, p=p)
