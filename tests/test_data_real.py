"""Real-data checks; they skip with a reason unless MONOSEM_DATA_DIR is set."""

import pytest

from monosem_jax.data import DECADE_BUCKETS, load_dataset, make_split

pytestmark = pytest.mark.realdata


def test_ml1m_counts(real_data_dir):
  ds = load_dataset('ml-1m', real_data_dir)
  assert ds.n_users == 6040
  assert ds.n_items == 3706
  assert ds.n_interactions == 1_000_209
  assert ds.n_concepts == 18
  assert (ds.item_concepts.sum(1) >= 1).all()
  decades = ds.summary()['decade_counts']
  assert decades == dict(zip(DECADE_BUCKETS, [570, 240, 592, 2152, 152]))
  # Drama and Comedy base rates (docs/method.md#evaluation: ≈40% and ≈30%).
  assert 0.38 < ds.item_concepts[:, ds.concept_index('Drama')].mean() < 0.45
  assert 0.28 < ds.item_concepts[:, ds.concept_index('Comedy')].mean() < 0.33
  assert ds.item_year.min() >= 1919


def test_ml1m_paper_parity_and_split(real_data_dir):
  ds = load_dataset('ml-1m', real_data_dir, paper_parity=True)
  assert (ds.n_users, ds.n_items) == (6039, 3706)
  split = make_split(ds, seed=42)
  assert len(split.sae_test_users) == 1207
  assert len(split.test_users) == 5 * 6039
  assert split.n_train == ds.n_interactions - 5 * 6039


def test_ml1m_4or5_file(real_data_dir):
  ds = load_dataset('ml-1m', real_data_dir, ratings_file='ratings_4or5.dat.gz')
  assert ds.n_interactions == 575_281
  assert ds.ratings.min() == 4


def test_lastfm_2k_counts(real_data_dir):
  ds = load_dataset('lastfm-2k', real_data_dir)
  assert ds.n_users == 1892
  assert ds.n_items == 17_632
  assert ds.n_interactions == 92_834
  assert ds.extras['n_tags_total'] == 11_946
  assert ds.extras['n_tag_assignments'] == 186_479
  assert (ds.item_concepts.sum(1) <= 4).all()
  for tag in ('metal', 'electronic', 'pop', 'rock', 'hip_hop'):
    assert tag in ds.concept_names
  assert not set(ds.concept_names) & {'seen_live', 'indie', 'alternative'}
  assert float(ds.ratings.sum()) == pytest.approx(69_183_975)
