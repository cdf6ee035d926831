"""Every bad input gets a DataError that names the file, line or field."""

import os
import re
import shutil

import pytest

from conftest import fixture_dir
from monosem_jax.data import DataError, load_dataset, make_split
from monosem_jax.data.protocol import filter_interactions


def _ml1m_dir(tmp_path, ratings_text, movies=None):
  (tmp_path / 'ratings.dat').write_text(ratings_text)
  if movies is None:
    shutil.copy(os.path.join(fixture_dir('ml-1m'), 'movies.dat'), tmp_path)
  else:
    (tmp_path / 'movies.dat').write_text(movies, encoding='latin-1')
  return tmp_path


def _lastfm_copy(tmp_path):
  src = fixture_dir('lastfm-2k')
  for f in os.listdir(src):
    shutil.copy(os.path.join(src, f), tmp_path)
  return tmp_path


def test_unknown_dataset_name():
  with pytest.raises(DataError, match="unknown dataset 'ml-2m'.*ml-1m"):
    load_dataset('ml-2m', '.')


def test_data_dir_does_not_exist(tmp_path):
  with pytest.raises(DataError, match='does not exist'):
    load_dataset('ml-1m', tmp_path / 'nope')


def test_no_data_dir_and_no_env(monkeypatch):
  monkeypatch.delenv('MONOSEM_DATA_DIR', raising=False)
  with pytest.raises(DataError, match='MONOSEM_DATA_DIR is not set'):
    load_dataset('ml-1m')


def test_missing_file(tmp_path):
  with pytest.raises(DataError, match=r'ratings\.dat.*found in'):
    load_dataset('ml-1m', tmp_path)
  (tmp_path / 'ratings.dat').write_text('1::1::5::1\n')
  with pytest.raises(DataError, match=r'movies\.dat'):
    load_dataset('ml-1m', tmp_path)


def test_wrong_separator(tmp_path):
  d = _ml1m_dir(tmp_path, '1\t1\t5\t978300760\n2\t1\t4\t978300761\n')
  with pytest.raises(DataError, match=r"ratings\.dat, line 1: found 1 fields "
                     r"separated by '::'.*wrong separator"):
    load_dataset('ml-1m', d)


@pytest.mark.parametrize('ratings,message', [
    ('1::1::5::1\n1::2::4::2\nx7::3::3::3\n',
     r"ratings\.dat, line 3: field UserID 'x7': expected an integer >= 0"),
    ('1::1::5::1\n1::2::4::2::9\n', r'line 2: expected 4 fields'),
    ('1::999::5::1\n', r'MovieID 999 is not in .*movies\.dat'),
    ('', r'ratings\.dat: file is empty'),
    ('1::1::5::1\r1::2::4::2\r', r'ratings\.dat: old Mac line endings'),
    ('1::1::5::1\n100000000000000000000000::2::4::2\n',
     r'ratings\.dat, line 2: field UserID = 100000000000000000000000 is '
     r'outside the 64-bit'),
])
def test_malformed_ratings(tmp_path, ratings, message):
  d = _ml1m_dir(tmp_path, ratings)
  with pytest.raises(DataError, match=message):
    load_dataset('ml-1m', d)


def test_unknown_genre(tmp_path):
  d = _ml1m_dir(tmp_path, '1::1::5::1\n',
                movies='1::A (1990)::Comedy\n2::B (1991)::Space Opera\n')
  with pytest.raises(DataError, match=r"movies\.dat, line 2: unknown genre "
                     r"'Space Opera'"):
    load_dataset('ml-1m', d)


def test_corrupt_gzip(tmp_path):
  (tmp_path / 'ratings.dat.gz').write_bytes(b'\x1f\x8b' + b'garbage')
  shutil.copy(os.path.join(fixture_dir('ml-1m'), 'movies.dat'), tmp_path)
  with pytest.raises(DataError, match=r'ratings\.dat\.gz: corrupt gzip'):
    load_dataset('ml-1m', tmp_path)


def test_ml100k_genre_flag_count(tmp_path):
  src = fixture_dir('ml-100k')
  for f in ('u.data', 'u.user'):
    shutil.copy(os.path.join(src, f), tmp_path)
  flags18 = '|'.join(['0'] * 18)
  (tmp_path / 'u.item').write_text(f'1|T (1995)|01-Jan-1995||url|{flags18}\n')
  with pytest.raises(DataError, match=r'u\.item, line 1: expected 19 genre '
                     r'flags after 5 fields, found 18'):
    load_dataset('ml-100k', tmp_path)


def test_lastfm_header_wrong_separator(tmp_path):
  _lastfm_copy(tmp_path)
  (tmp_path / 'user_artists.dat').write_text('userID,artistID,weight\n2,51,1\n')
  with pytest.raises(DataError, match=r'user_artists\.dat, line 1: header has '
                     r"1 fields separated by '\\t'"):
    load_dataset('lastfm-2k', tmp_path)


def test_lastfm_unknown_tag_id(tmp_path):
  _lastfm_copy(tmp_path)
  with open(tmp_path / 'user_taggedartists.dat', 'a') as f:
    f.write('2\t51\t777\t1\t1\t2009\r\n')
  with pytest.raises(DataError, match=r'user_taggedartists\.dat, line 21: '
                     r'tagID 777 is not in'):
    load_dataset('lastfm-2k', tmp_path)


def test_msd_missing_column(tmp_path):
  (tmp_path / 'Music Info.csv').write_text('track_id,artist\nTR1,A\n')
  (tmp_path / 'User Listening History.csv').write_text(
      'track_id,user_id,playcount\nTR1,u,1\n')
  with pytest.raises(DataError, match=r'Music Info\.csv: missing column\(s\) '
                     r'tags, year'):
    load_dataset('lastfm-msd', tmp_path)


def test_msd_bad_playcount(tmp_path):
  shutil.copy(os.path.join(fixture_dir('lastfm-msd'), 'Music Info.csv'), tmp_path)
  (tmp_path / 'User Listening History.csv').write_text(
      'track_id,user_id,playcount\nTR1,u,1\nTR2,u,lots\n')
  with pytest.raises(DataError, match=r'History\.csv, line 3: field playcount'):
    load_dataset('lastfm-msd', tmp_path)


def test_unknown_option():
  with pytest.raises(DataError, match=r"unknown option\(s\) top_k.*paper_parity"):
    load_dataset('ml-1m', fixture_dir('ml-1m'), top_k=3)
  with pytest.raises(DataError, match=r"unknown option\(s\) n_user\b"):
    load_dataset('synthetic', n_user=3)


def test_empty_after_filtering():
  ds = load_dataset('ml-1m', fixture_dir('ml-1m'))
  with pytest.raises(DataError, match='no interactions left after filtering'):
    filter_interactions(ds, min_user_positives=100)


def test_bad_split_options():
  ds = load_dataset('synthetic', n_users=50, n_items=40)
  with pytest.raises(DataError, match='sae_test_fraction'):
    make_split(ds, sae_test_fraction=1.5)
  with pytest.raises(DataError, match='too_few'):
    make_split(ds, too_few='ignore')


def test_bad_world_config():
  with pytest.raises(DataError, match=r'WorldConfig\.n_items=0'):
    load_dataset('synthetic', n_items=0)


# ---- Last.FM headers -----------------------------------------------------

def test_lastfm_without_header_keeps_first_interaction(tmp_path):
  d = _lastfm_copy(tmp_path)
  full = load_dataset('lastfm-2k', d)
  path = d / 'user_artists.dat'
  path.write_bytes(path.read_bytes().split(b'\n', 1)[1])  # drop the header
  with pytest.warns(UserWarning, match=r'user_artists\.dat: no header line'):
    headless = load_dataset('lastfm-2k', d)
  assert headless.n_interactions == full.n_interactions
  assert headless.users.tolist() == full.users.tolist()
  assert headless.items.tolist() == full.items.tolist()


def test_lastfm_header_naming_other_columns_is_refused(tmp_path):
  d = _lastfm_copy(tmp_path)
  path = d / 'user_artists.dat'
  path.write_bytes(b'userID\tfriendID\tweight\r\n' +
                   path.read_bytes().split(b'\n', 1)[1])
  with pytest.raises(DataError, match=r"user_artists\.dat, line 1: header "
                     r"'userID\\tfriendID\\tweight' does not name the expected "
                     r"columns 'userID\\tartistID\\tweight'"):
    load_dataset('lastfm-2k', d)


def test_headerless_tagged_artists_reports_true_line(tmp_path):
  d = _lastfm_copy(tmp_path)
  path = d / 'user_taggedartists.dat'
  path.write_bytes(path.read_bytes().split(b'\n', 1)[1] +
                   b'2\t51\t777\t1\t1\t2009\r\n')
  with pytest.warns(UserWarning), pytest.raises(
      DataError, match=r'user_taggedartists\.dat, line 20: tagID 777'):
    load_dataset('lastfm-2k', d)


# ---- Ids are integer literals (issue 16, case 12) --------------------------

@pytest.mark.parametrize('line,field,shown', [
    ('1e2::1::5::1', 'UserID', "'1e2'"),         # was read as user 100
    ('1::1.0::5::1', 'MovieID', "'1.0'"),        # was read as movie 1
    ('+1::1::5::1', 'UserID', "'+1'"),
    ('-5::1::5::1', 'UserID', "'-5'"),           # negative ids were kept
    ('1::1::4.5::1', 'Rating', "'4.5'"),
    ('1::1::5::1_000', 'Timestamp', "'1_000'"),
    ('1::::5::1', 'MovieID', "''"),
    ('1::1::5:: 2 3', 'Timestamp', "'2 3'"),
])
def test_ids_must_be_digit_strings(tmp_path, line, field, shown):
  d = _ml1m_dir(tmp_path, f'1::1::5::1\n2::2::4::2\n{line}\n3::3::3::3\n')
  with pytest.raises(DataError) as e:
    load_dataset('ml-1m', d)
  msg = str(e.value)
  assert '\n' not in msg
  assert re.search(rf'ratings\.dat, line 3: field {field} (= )?{re.escape(shown)}'
                   r'.*an integer >= 0, digits 0-9 only', msg), msg


def test_spaces_around_an_id_and_blank_lines_are_allowed(tmp_path):
  d = _ml1m_dir(tmp_path, '1::1::5::1\n \n 2 ::2::4::2\n\n')
  assert load_dataset('ml-1m', d).n_users == 2


def test_two_field_ratings_and_movies_ids_are_checked(tmp_path):
  d = _ml1m_dir(tmp_path, '1::1\n2::1e0\n')
  with pytest.raises(DataError, match=r"ratings\.dat, line 2: field MovieID "
                     r"'1e0'"):
    load_dataset('ml-1m', d)
  d = _ml1m_dir(tmp_path, '1::1\n', movies='1::A (1990)::Comedy\n'
                '-2::B (1991)::Drama\n')
  with pytest.raises(DataError, match=r"movies\.dat, line 2: field MovieID "
                     r"'-2'"):
    load_dataset('ml-1m', d)


def test_negative_lastfm_play_count_is_refused(tmp_path):
  d = _lastfm_copy(tmp_path)
  with open(d / 'user_artists.dat', 'a') as f:
    f.write('2\t53\t-40\r\n')
  n = (d / 'user_artists.dat').read_bytes().count(b'\n')
  with pytest.raises(DataError, match=rf"user_artists\.dat, line {n}: field "
                     r"weight '-40'.*an integer >= 0"):
    load_dataset('lastfm-2k', d)


def test_ml100k_ids_are_checked(tmp_path):
  src = fixture_dir('ml-100k')
  for f in ('u.item', 'u.user'):
    shutil.copy(os.path.join(src, f), tmp_path)
  (tmp_path / 'u.data').write_text('1\t1\t5\t874965758\n1\t2e0\t3\t1\n')
  with pytest.raises(DataError, match=r"u\.data, line 2: field MovieID '2e0'"):
    load_dataset('ml-100k', tmp_path)


@pytest.mark.parametrize('count', ['1e2', '-3', '2.5', '+4'])
def test_msd_play_count_is_a_non_negative_integer(tmp_path, count):
  shutil.copy(os.path.join(fixture_dir('lastfm-msd'), 'Music Info.csv'),
              tmp_path)
  (tmp_path / 'User Listening History.csv').write_text(
      f'track_id,user_id,playcount\nTR1,u,1\nTR2,u,{count}\n')
  with pytest.raises(DataError, match=r'History\.csv, line 3: field playcount '
                     rf"'{re.escape(count)}'.*an integer >= 0"):
    load_dataset('lastfm-msd', tmp_path)


def test_a_huge_field_is_cut_in_the_message(tmp_path):
  huge = 'x' * (2 << 20)                       # a 2 MiB field
  d = _ml1m_dir(tmp_path, f'1::1::5::1\n{huge}::1::5::1\n')
  with pytest.raises(DataError) as e:
    load_dataset('ml-1m', d)
  assert len(str(e.value)) < 300 and f'({len(huge)} characters)' in str(e.value)
  assert 'line 2: field UserID' in str(e.value)
  d = _ml1m_dir(tmp_path, '1::1::5::1\n',
                movies=f'1::A (1990)::Comedy\n2::B (1991)::{huge}\n')
  with pytest.raises(DataError) as e:
    load_dataset('ml-1m', d)
  assert len(str(e.value)) < 600 and f'({len(huge)} characters)' in str(
      e.value) and 'unknown genre' in str(e.value)
