"""RecBole atomic files (dataset 'atomic'): the loader on the invented
fixture world, every refusal in one line, the configs and the main job."""

import os

import numpy as np
import pandas as pd
import pytest

from conftest import ATOMIC_FIXTURE
from monosem_jax.experiments.configs import quickstart
from monosem_jax.experiments.configs import recommender as rec_configs
from monosem_jax.experiments.configs import sweep as sweep_configs
from monosem_jax.analysis.concepts import require_concepts
from monosem_jax.data import DataError, load_data, load_dataset, make_split
from monosem_jax.errors import ConfigError

GENRES = ('Action', 'Comedy', 'Drama', 'Horror', 'Romance', 'SciFi')


def _read(name):
  with open(os.path.join(ATOMIC_FIXTURE, name), encoding='utf-8') as f:
    return f.read()


def _copy(tmp_path, folder='mine', **texts):
  """The fixture files as ``tmp_path/folder/folder.EXT``; ``texts`` replace
  (a str) or remove (None) a file by extension."""
  d = tmp_path / folder
  d.mkdir()
  for ext in ('inter', 'item', 'user'):
    text = texts.get(ext, _read(f'tinymovies.{ext}'))
    if text is not None:
      (d / f'{folder}.{ext}').write_text(text, encoding='utf-8')
  return d


def _inter_lines():
  return _read('tinymovies.inter').splitlines(keepends=True)


# ---- the fixture world ---------------------------------------------------

def test_loads_the_fixture_world():
  ds = load_dataset('atomic', ATOMIC_FIXTURE)
  assert ds.name == 'atomic' and ds.extras['atomic_name'] == 'tinymovies'
  assert (ds.n_users, ds.n_items, ds.n_interactions) == (60, 30, 675)
  assert ds.user_ids.dtype.kind == 'U' and ds.item_ids.dtype.kind == 'U'
  assert ds.user_ids[:2].tolist() == ['u01', 'u02']
  assert ds.item_ids[:2].tolist() == ['m01', 'm02']
  # Concepts: the class field (the only token_seq besides movie_title).
  assert ds.extras['concept_field'] == 'class'
  assert ds.concept_names == GENRES
  assert [GENRES[k] for k in np.flatnonzero(ds.item_concepts[0])] == [
      'Action', 'Comedy']
  assert ds.item_concepts.sum() == 40   # 30 items, every third has two
  assert ds.item_titles[1] == 'Fixture Film 2 (1967)'
  assert ds.item_year[:3].tolist() == [1960, 1967, 1974]
  assert ds.user_features['gender'][:2].tolist() == ['F', 'M']
  assert ds.user_features['age'][0] == 15
  assert ds.ratings is not None and set(np.unique(ds.ratings)) <= {1, 2, 3,
                                                                   4, 5}
  # Large enough for the protocol: every user evaluated, 12 SAE-test users.
  split = make_split(ds)
  assert len(split.eval_users) == 60 and len(split.sae_test_users) == 12


def test_choices_of_fields():
  ds = load_dataset('atomic', ATOMIC_FIXTURE, concept_field='class',
                    title_field='', year_field='')
  assert ds.concept_names == GENRES
  assert ds.item_titles[0] == 'm01' and ds.item_year is None
  # A token field may be named as concepts (one label per item).
  ds = load_dataset('atomic', ATOMIC_FIXTURE, concept_field='release_year')
  assert ds.concept_names[0] == '1960' and (ds.item_concepts.sum(1) == 1).all()


def test_min_rating_keeps_the_liked():
  inter = pd.read_csv(os.path.join(ATOMIC_FIXTURE, 'tinymovies.inter'),
                      sep='\t')
  ds = load_dataset('atomic', ATOMIC_FIXTURE, min_rating=4)
  assert ds.n_interactions == int((inter['rating:float'] >= 4).sum())
  assert ds.ratings.min() >= 4


def test_a_root_holding_the_folder_and_another_name(tmp_path):
  root = os.path.dirname(ATOMIC_FIXTURE)
  ds = load_dataset('atomic', root, atomic_name='tinymovies')
  assert ds.n_interactions == 675
  d = _copy(tmp_path, 'other')
  with pytest.raises(DataError, match=r"no data\.inter in .*found "
                     r"other\.inter: pass options\.atomic_name='other'"):
    load_dataset('atomic', d, atomic_name='data')


def test_without_item_file_no_concepts_and_the_main_job_refuses(tmp_path):
  d = _copy(tmp_path, item=None)
  with pytest.warns(UserWarning, match='no concept field'):
    ds = load_dataset('atomic', d)
  assert ds.n_concepts == 0 and ds.item_titles[0] == 'm01'
  with pytest.raises(ConfigError, match='no concept labels'):
    require_concepts(ds)
  with pytest.raises(DataError, match=r"options\.concept_field='class' but "
                     r'there is no \.item'):
    load_dataset('atomic', d, concept_field='class')


# ---- refusals ------------------------------------------------------------

HEADER = 'user_id:token\titem_id:token\trating:float\ttimestamp:float\n'


def _with_inter_line(n, line):
  lines = _inter_lines()
  lines[n - 1] = line
  return ''.join(lines)


@pytest.mark.parametrize('inter,message', [
    ('', r'mine\.inter: file is empty'),
    (HEADER, r'mine\.inter: a header but no records'),
    ('user_id\titem_id:token\nu01\tm01\n',
     r"mine\.inter, line 1: header field 1 'user_id' is not NAME:TYPE"),
    ('user_id:token\titem_id:int\nu01\tm01\n',
     r"mine\.inter, line 1: field item_id has unknown type 'int'; RecBole "
     r'types: token, token_seq, float, float_seq'),
    ('user_id:token\tmovie_id:token\nu01\tm01\n',
     r"mine\.inter, line 1: no item id field 'item_id':token in the header"),
    ('user_id:float\titem_id:token\n1\tm01\n',
     r'mine\.inter, line 1: field user_id is :float; the user id must be '
     r':token'),
    ('user_id:token\titem_id:token\trating:token\nu01\tm01\tgood\n',
     r'field rating is :token; the rating must be :float'),
    ('user_id:token,item_id:token,rating:float\nu01,m01,5\n',
     r"mine\.inter, line 1: the header's fields are separated by commas; "
     r'atomic files are tab-separated \(wrong separator\)'),
    ('user_id:token item_id:token\nu01 m01\n',
     r'separated by spaces.*wrong separator'),
    (HEADER + 'u01,m01,5,1\n',
     r"mine\.inter, line 2: found 1 fields separated by '\\t'.*wrong "
     r'separator'),
    (_with_inter_line(3, 'u01\tm05\tfive\t1\n'),
     r"mine\.inter, line 3: field rating \(rating\) is not a finite number: "
     r"'five'"),
    (_with_inter_line(4, 'u01\tm05\n'),
     r"mine\.inter, line 4: expected 4 fields separated by '\\t'.*found 2"),
    (_with_inter_line(4, 'u01\tm05\t4\t1\t9\n'),
     r'mine\.inter, line 4: expected 4 fields'),
    (_with_inter_line(5, 'u01\tm99\t4\t1\n'),
     r"mine\.inter, line 5: item_id 'm99' is not in .*mine\.item \(1 such "
     r'id\)'),
    (_with_inter_line(6, 'u77\tm01\t4\t1\n'),
     r"mine\.inter, line 6: user_id 'u77' is not in .*mine\.user"),
    (_with_inter_line(7, '\tm01\t4\t1\n'),
     r'mine\.inter, line 7: field user_id is empty'),
    # Blank lines (and lines of spaces) are not records but count as lines.
    (''.join(_inter_lines()[:2] + ['\n', '   \n'] + _inter_lines()[2:] +
             ['u60\tm01\tbad\t1\n']),
     r'mine\.inter, line 679: field rating \(rating\) is not a finite'),
])
def test_bad_inter_file(tmp_path, inter, message):
  d = _copy(tmp_path, inter=inter)
  with pytest.raises(DataError, match=message):
    load_dataset('atomic', d)


def _item_with(header_extra, value):
  lines = _read('tinymovies.item').splitlines()
  return '\n'.join([lines[0] + header_extra] +
                   [l + value for l in lines[1:]]) + '\n'


@pytest.mark.parametrize('item,options,message', [
    ('', {}, r'mine\.item: file is empty'),
    (_item_with('\ttags:token_seq', '\tcult classic'), {},
     r'mine\.item: several token_seq fields could be the concepts \(class, '
     r'tags\); choose one with options\.concept_field'),
    (_read('tinymovies.item'), {'concept_field': 'genre'},
     r"mine\.item, line 1: no options\.concept_field field 'genre'"),
    (_read('tinymovies.item'), {'concept_field': 'movie_title',
                                'year_field': 'class'},
     r'field class is :token_seq; the options\.year_field must be :token or '
     r':float'),
    (_read('tinymovies.item').replace('m02\t', 'm01\t'), {},
     r"mine\.item, line 3: duplicate item_id 'm01'"),
    (_read('tinymovies.item').replace('\t1967\t', '\tsixties\t'), {},
     r"mine\.item, line 3: field release_year \(year\) is not a finite "
     r"number: 'sixties'"),
])
def test_bad_item_file(tmp_path, item, options, message):
  d = _copy(tmp_path, item=item)
  with pytest.raises(DataError, match=message):
    load_dataset('atomic', d, **options)


def test_ambiguous_concepts_resolved_by_the_option(tmp_path):
  d = _copy(tmp_path, item=_item_with('\ttags:token_seq', '\tcult classic'))
  ds = load_dataset('atomic', d, concept_field='tags')
  assert ds.concept_names == ('classic', 'cult')


def test_min_rating_needs_a_rating(tmp_path):
  inter = ''.join(l.split('\t', 2)[0] + '\t' + l.split('\t', 2)[1] + '\n'
                  for l in _inter_lines())
  d = _copy(tmp_path, inter=inter)
  assert load_dataset('atomic', d).ratings is None
  with pytest.raises(DataError, match=r'min_rating=4 needs a rating:float'):
    load_dataset('atomic', d, min_rating=4)


# ---- configs and the main job --------------------------------------------

def test_configs_know_atomic():
  c = rec_configs.get_config('atomic,mf')
  assert c.dataset.name == 'atomic'
  assert set(rec_configs.ATOMIC_OPTIONS) <= set(c.dataset.options)
  c.dataset.data_dir = ATOMIC_FIXTURE
  ds, split = load_data(c.dataset.to_dict(), c.split.to_dict())
  assert ds.n_users == split.n_users == 60
  assert sweep_configs.get_config('atomic,ncf').dataset == 'atomic'
  q = quickstart.get_config('atomic,mf')
  assert q.models == ('mf',) and q.dataset.name == 'atomic'
  assert q.mf.sweep.dataset == 'atomic'


def test_main_job_on_atomic_files(atomic_main_job):
  workdir, results = atomic_main_job
  table = pd.read_csv(workdir / 'mf' / 'sweep' / 'sweep_results.csv')
  assert len(table) == 2 and (table.status == 'ok').all()
  assert (workdir / 'mf' / 'sweep' / 'analysis' / 'report.md').exists()
  neurons = pd.read_csv(workdir / 'mf' / 'sweep' / 'analysis' / 'neurons.csv')
  assert set(neurons['best_concept'].dropna()) <= set(GENRES)
  assert results['mf'].interventions.empty   # no use cases for 'atomic'
  assert os.path.isdir(workdir / 'mf' / 'recommender' / 'frozen')
