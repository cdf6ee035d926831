"""Parsing of the hand-written fixture files in each real format."""

import gzip
import os
import shutil

import numpy as np
import pytest

from conftest import fixture_dir
from monosem_jax.data import DataError, load_dataset
from monosem_jax.data.movielens import ML1M_GENRES


def test_ml1m_four_field_ratings():
  ds = load_dataset('ml-1m', fixture_dir('ml-1m'))
  assert (ds.n_users, ds.n_items, ds.n_interactions) == (5, 5, 15)
  assert ds.user_ids.tolist() == [1, 2, 3, 4, 10]
  assert ds.item_ids.tolist() == [1, 2, 3, 4, 6]  # movie 5 is never rated
  assert ds.concept_names == ML1M_GENRES
  toy = ds.item_concepts[0]
  assert {ML1M_GENRES[k] for k in np.flatnonzero(toy)} == {
      'Animation', "Children's", 'Comedy'}
  assert ds.item_year.tolist() == [1995, 1968, 1946, 1982, 1975]
  assert ds.item_titles[2] == 'Caf\u00e9 Noir (1946)'  # Latin-1 decoded
  assert ds.item_popularity.tolist() == [3, 3, 2, 4, 3]
  assert ds.item_popularity_rank.tolist() == [1, 2, 4, 0, 3]
  assert ds.ratings is not None and ds.ratings[:4].tolist() == [5, 3, 4, 2]
  assert ds.user_features['age'].tolist() == [1, 56, 25, 45, 35]
  # Interactions are sorted by (user, item) and unique.
  key = ds.users.astype(np.int64) * ds.n_items + ds.items
  assert np.all(np.diff(key) > 0)
  indptr, indices = ds.csr()
  assert indptr.tolist() == [0, 4, 7, 9, 14, 15]
  assert indices[:4].tolist() == [0, 1, 3, 4]


def test_ml1m_two_field_gzip_matches_four_field():
  full = load_dataset('ml-1m', fixture_dir('ml-1m'))
  imp = load_dataset('ml-1m', fixture_dir('ml-1m-implicit'))
  assert imp.ratings is None
  np.testing.assert_array_equal(imp.users, full.users)
  np.testing.assert_array_equal(imp.items, full.items)
  np.testing.assert_array_equal(imp.item_concepts, full.item_concepts)
  assert not imp.user_features  # no users.dat there


def test_ml1m_gzip_four_field(tmp_path):
  src = fixture_dir('ml-1m')
  with open(os.path.join(src, 'ratings.dat'), 'rb') as f:
    raw = f.read()
  with gzip.open(tmp_path / 'ratings.dat.gz', 'wb') as g:
    g.write(raw)
  shutil.copy(os.path.join(src, 'movies.dat'), tmp_path)
  ds = load_dataset('ml-1m', tmp_path)
  assert ds.n_interactions == 15 and ds.ratings is not None


def test_ml1m_options():
  ds = load_dataset('ml-1m', fixture_dir('ml-1m'), min_rating=4)
  assert ds.n_interactions == 10 and ds.ratings.min() >= 4
  with pytest.raises(DataError, match='needs the Rating field'):
    load_dataset('ml-1m', fixture_dir('ml-1m-implicit'), min_rating=4)


def test_ml1m_paper_parity_keeps_items(tmp_path):
  # User 4169 is dropped; items rated only by that user keep their column.
  (tmp_path / 'ratings.dat').write_text('1::1::5::1\n4169::2::4::2\n4169::1::3::3\n')
  shutil.copy(os.path.join(fixture_dir('ml-1m'), 'movies.dat'), tmp_path)
  ds = load_dataset('ml-1m', tmp_path, paper_parity=True)
  assert ds.user_ids.tolist() == [1] and ds.item_ids.tolist() == [1, 2]
  assert ds.item_popularity.tolist() == [1, 0]


def test_ml100k():
  ds = load_dataset('ml-100k', fixture_dir('ml-100k'))
  assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 4, 6)
  assert len(ds.concept_names) == 19 and ds.concept_names[0] == 'unknown'
  assert np.flatnonzero(ds.item_concepts[0]).tolist() == [3, 4, 5]
  assert ds.item_year.tolist() == [1995, 1995, 1995, 1994]
  assert ds.item_titles[3] == 'Caf\u00e9 Days (1994)'
  assert ds.user_features['age'].tolist() == [24, 53, 23]


def _artist_tags(ds, original_id):
  row = ds.item_concepts[ds.item_ids.tolist().index(original_id)]
  return {ds.concept_names[k] for k in np.flatnonzero(row)}


def test_lastfm_2k_crlf_latin1_and_tags():
  ds = load_dataset('lastfm-2k', fixture_dir('lastfm-2k'))
  assert (ds.n_users, ds.n_items, ds.n_interactions) == (4, 5, 10)
  assert ds.item_ids.tolist() == [51, 52, 53, 54, 55]
  assert ds.ratings[0] == 13883
  assert ds.item_titles[4] == 'Bj\u00f6rk-ish'
  # Normalisation, exclusion ('indie', 'seen live') and top-4 by count.
  assert _artist_tags(ds, 51) == {'pop', 'caf\u00e9_music', 'chill', 'electronic'}
  assert _artist_tags(ds, 52) == {'trip_hop', 'chill', 'electronic'}
  assert _artist_tags(ds, 54) == {'metal', 'death_metal'}
  assert _artist_tags(ds, 53) == set()
  assert list(ds.concept_names) == sorted(ds.concept_names)
  assert 'indie' not in ds.concept_names and 'seen_live' not in ds.concept_names
  assert ds.item_year is None


def test_lastfm_2k_top_k_and_ties():
  ds = load_dataset('lastfm-2k', fixture_dir('lastfm-2k'), top_k=2)
  # pop (2) then a three-way tie at 1 broken by name: 'café_music'.
  assert _artist_tags(ds, 51) == {'pop', 'caf\u00e9_music'}
  ds1 = load_dataset('lastfm-2k', fixture_dir('lastfm-2k'), top_k=1,
                     exclude_tags=None)
  assert _artist_tags(ds1, 51) == {'indie'}  # 3 assignments, not excluded
  assert _artist_tags(ds1, 54) == {'death_metal'}  # 2-2 tie with 'metal'
  ds2 = load_dataset('lastfm-2k', fixture_dir('lastfm-2k'), top_k=1,
                     exclude_tags=['Indie', 'pop'])
  assert _artist_tags(ds2, 51) == {'caf\u00e9_music'}


def test_lastfm_msd_filters_and_weighted_tags():
  ds = load_dataset('lastfm-msd', fixture_dir('lastfm-msd'),
                    min_artist_users=2, min_user_rows=2,
                    min_artist_users_final=2, top_k=2)
  assert ds.user_ids.tolist() == ['u1', 'u2', 'u3']
  assert ds.item_ids.tolist() == ['Alpha', 'Beta', 'Gamma']  # Delta filtered
  assert ds.n_interactions == 9  # u1's two Alpha tracks binarise to one
  # Alpha: rock 4 rows, classic_rock 2, pop 2 (tie -> name), indie excluded.
  assert _artist_tags(ds, 'Alpha') == {'rock', 'classic_rock'}
  assert _artist_tags(ds, 'Beta') == {'electronic'}
  assert _artist_tags(ds, 'Gamma') == {'metal', 'death_metal'}
  assert ds.item_year.tolist() == [2001, 2008, 1994]


def test_lastfm_msd_everything_filtered():
  with pytest.raises(DataError, match='no interactions left after the filters'):
    load_dataset('lastfm-msd', fixture_dir('lastfm-msd'))


def test_synthetic_through_load_dataset():
  ds = load_dataset('synthetic', n_users=120, n_items=90, seed=3)
  assert ds.n_users == 120 and ds.n_items == 90
  np.testing.assert_array_equal(ds.extras['concept_truth'], ds.item_concepts)
