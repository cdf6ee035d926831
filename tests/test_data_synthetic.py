"""The synthetic planted-concept world."""

import time

import numpy as np

from monosem_jax.data import synthetic


def test_deterministic_and_seed_sensitive():
  cfg = synthetic.WorldConfig(n_users=200, n_items=150, seed=3)
  a, b = synthetic.make_world(cfg), synthetic.make_world(cfg)
  np.testing.assert_array_equal(a.users, b.users)
  np.testing.assert_array_equal(a.items, b.items)
  c = synthetic.make_world(synthetic.WorldConfig(n_users=200, n_items=150, seed=4))
  assert not np.array_equal(a.item_concepts, c.item_concepts)


def test_planted_structure():
  cfg = synthetic.WorldConfig(n_users=800, n_items=400, seed=0)
  ds = synthetic.make_world(cfg)
  truth = ds.extras['concept_truth']
  per_item = truth.sum(1)
  assert per_item.min() == 1 and per_item.max() == 2
  assert 0.15 < np.mean(per_item == 2) < 0.35  # two_concept_fraction=0.25
  assert ds.user_degree.min() >= cfg.min_positives
  # Popularity skew: the top 10% of items get far more than 10% of positives.
  pop = np.sort(ds.item_popularity)[::-1]
  assert pop[: len(pop) // 10].sum() > 0.25 * pop.sum()
  # Users' positives concentrate on their planted concepts.
  w = ds.extras['user_preferences']
  pos_concepts = np.zeros_like(w)
  np.add.at(pos_concepts, ds.users, truth[ds.items])
  share_on_liked = (pos_concepts * (w > 0)).sum(1) / pos_concepts.sum(1)
  base = truth.mean(0)
  share_base = ((w > 0) * base).sum(1) / base.sum()
  assert share_on_liked.mean() > share_base.mean() + 0.3
  # Era is an attribute with several decades represented.
  assert len(np.unique(ds.item_decade)) >= 3


def test_titles_name_every_concept_of_the_item():
  ds = synthetic.make_world(synthetic.WorldConfig(n_users=200, n_items=150))
  names = np.asarray(ds.concept_names)
  assert (ds.item_concepts.sum(1) == 2).any()
  for title, row in zip(ds.item_titles, ds.item_concepts):  # 150 items
    listed = title.split(' [')[1].rstrip(']').split(', ')
    assert sorted(listed) == sorted(names[row])


def test_ml1m_scale_is_fast_enough():
  start = time.perf_counter()
  ds = synthetic.make_world(synthetic.WorldConfig.ml1m_scale())
  elapsed = time.perf_counter() - start
  assert ds.n_users == 6040 and ds.n_items <= 3706
  assert elapsed < 120  # generous: it is ~few s; guards against a loop blow-up
