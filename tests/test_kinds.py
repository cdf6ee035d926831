"""The kind registry (monosem_jax/recommenders/kinds.py): one place names the
recommender kinds; a sweep carries the kind's options opaquely, checked
against the kind's schema, and an option of another kind is refused in one
line instead of being ignored."""

import jax
import pytest

from monosem_jax.experiments import launch
from monosem_jax.experiments.configs import quickstart, recommender, sweep
from monosem_jax.errors import ConfigError
from monosem_jax.recommenders import kinds, ncf
from monosem_jax.sweep.runner import PlannedRecommender, build_spec
from monosem_jax.sweep.spec import SweepConfigError, SweepSpec


def test_an_option_of_another_kind_is_refused_in_one_line():
  with pytest.raises(ConfigError, match=r'^make_scorer\.pred_loss: an option '
                     r'of ncf recommenders, not of mf \(mf\'s options: '
                     r'batch_users, batch_items, mf_pred_impl\)$'):
    kinds.make_scorer('mf', {}, pred_loss='bce')
  with pytest.raises(SweepConfigError,
                     match=r'SweepSpec\.scorer_options\.ncf_pairs: an option '
                     'of ncf recommenders, not of mf'):
    SweepSpec(kind='mf', scorer_options={'ncf_pairs': 'random'})
  mf = PlannedRecommender(kind='mf', dim=4)
  with pytest.raises(ConfigError, match=r'^config\.spec\.ncf_pairs: an option '
                     'of ncf recommenders, not of mf'):
    build_spec(mf, {'ncf_pairs': 'random'}, {})
  with pytest.raises(ConfigError, match=r'^config\.spec\.batch_users: an '
                     'option of mf recommenders, not of ncf'):
    build_spec(PlannedRecommender(kind='ncf', dim=4), {'batch_users': 8}, {})
  with pytest.raises(ConfigError, match=r'^config\.spec\.batch_size: unknown '
                     'field; known: .*batch_items'):
    build_spec(mf, {'batch_size': 8}, {})


def test_option_values_are_checked_naming_the_valid_ones():
  with pytest.raises(SweepConfigError, match=r"scorer_options\.ncf_pairs="
                     r"'all': expected one of positive \| random \| mixed"):
    SweepSpec(kind='ncf', scorer_options={'ncf_pairs': 'all'})
  with pytest.raises(SweepConfigError, match=r'scorer_options\.batch_pairs=0: '
                     'must be an integer >= 1'):
    SweepSpec(kind='ncf', scorer_options={'batch_pairs': 0})
  with pytest.raises(ConfigError, match=r"config\.spec\.mf_pred_impl='fast': "
                     r'expected one of gram \| direct'):
    build_spec(PlannedRecommender(kind='mf', dim=4),
               {'mf_pred_impl': 'fast'}, {})


def test_the_command_line_names_of_the_options_still_work():
  """``--config.spec.ncf_pairs=random``, ``--config.spec.pred_loss=mse`` and
  ``--config.spec.mf_pred_impl=direct`` name fields of their kind's config
  and reach the batches and the scorer; the other kind's are refused by
  the launcher's unknown-field check."""
  mf_cfg, ncf_cfg = (sweep.get_config(f'ml-1m,{k}') for k in ('mf', 'ncf'))
  for cfg, name in ((mf_cfg, 'mf_pred_impl'), (ncf_cfg, 'ncf_pairs'),
                    (ncf_cfg, 'pred_loss')):
    assert launch._unknown_field(cfg, ['spec', name]) is None
  assert launch._unknown_field(mf_cfg, ['spec', 'ncf_pairs']) is not None
  assert launch._unknown_field(ncf_cfg, ['spec', 'mf_pred_impl']) is not None
  spec = build_spec(PlannedRecommender(kind='ncf', dim=4),
                    dict(ncf_cfg.spec, ncf_pairs='random', pred_loss='mse',
                         batch_pairs=64), {})
  assert spec.batching == kinds.Batching(64, 64, 'random')
  p = ncf.init(jax.random.PRNGKey(0), 3, 4, 4)
  assert kinds.make_scorer('ncf', p, **dict(spec.scorer_options)).loss == 'mse'
  spec = build_spec(PlannedRecommender(kind='mf', dim=4),
                    dict(mf_cfg.spec, mf_pred_impl='direct'), {})
  scorer = kinds.make_scorer('mf', {}, **dict(spec.scorer_options))
  assert scorer.impl == 'direct' and scorer.batch_score_matrix


def test_a_spec_stores_every_option_of_its_kind():
  spec = SweepSpec(kind='ncf', scorer_options={'pred_loss': 'mse'})
  assert spec.scorer_options == (('batch_pairs', 256), ('ncf_pairs', 'positive'),
                                 ('pred_loss', 'mse'))
  assert spec == SweepSpec(kind='ncf', scorer_options=spec.scorer_options)
  assert hash(spec) == hash(SweepSpec(kind='ncf', scorer_options=dict(
      pred_loss='mse', batch_pairs=256)))
  assert SweepSpec.from_json_dict(spec.to_json_dict()) == spec
  assert (spec.normalize, spec.pre_bias) == (False, False)   # the kind's SAE
  assert SweepSpec(kind='mf').sae.normalize


def test_the_configs_take_the_kinds_from_the_registry():
  assert recommender.MODELS == sweep.MODELS == quickstart.MODELS == kinds.NAMES
  for name in kinds.NAMES:
    assert sweep.get_config(f'lastfm-2k,{name}').spec.to_dict().items() >= (
        kinds.get(name).options_for('lastfm-2k').items())
  with pytest.raises(ConfigError, match='unknown recommender kind'):
    kinds.get('gmf')


def test_the_main_jobs_cpu_caps_come_from_what_a_kind_is():
  """quickstart.quick_spec asks the registry (Kind.paired, the option
  schema) for the settings the main-job config once listed by kind name;
  the configs are the same: MF batches 64 users on the synthetic world, NCF
  (paired) epochs are capped at 20 / 200 steps."""
  assert quickstart.quick_spec('mf', 'synthetic') == dict(batch_users=64)
  assert quickstart.quick_spec('mf', 'ml-1m') == {}
  assert quickstart.quick_spec('ncf', 'synthetic') == dict(steps_per_epoch=20)
  for dataset in ('ml-1m', 'lastfm-2k', 'atomic'):
    assert quickstart.quick_spec('ncf', dataset) == dict(steps_per_epoch=200)
  c = quickstart.get_config('ml-1m')
  assert c.ncf.sweep.spec.steps_per_epoch == 200
  assert (c.mf.sweep.spec.steps_per_epoch
          == sweep.get_config('ml-1m,mf').spec.steps_per_epoch)
  assert quickstart.get_config('ml1m').mf.sweep.spec.batch_users == 64
