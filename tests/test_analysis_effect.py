"""Neuron choice by effect (docs/method.md#interventions): the vmapped
ranking against one edit per neuron, a neuron that acts inversely, and the
use case's ``select`` field."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from monosem_jax.analysis import interventions as iv
from monosem_jax.analysis import neurons, use_cases, workdirs
from monosem_jax.errors import ConfigError
from monosem_jax.recommenders import mf, ncf
from monosem_jax.recommenders.kinds import make_scorer
from monosem_jax.sae import model

D, N_LAT, N_USERS, N_ITEMS = 6, 9, 30, 50


def _codec(normalize):
  cfg = model.SAEConfig(dim=D, dict_size=N_LAT, normalize=normalize,
                        pre_bias=normalize)
  params = model.init(jax.random.PRNGKey(1), cfg)
  params['b_lat'] = 0.05 * jnp.arange(N_LAT, dtype=jnp.float32)
  return iv.Codec(params, cfg)


def _scorer(kind):
  init = mf.init if kind == 'mf' else ncf.init
  params = init(jax.random.PRNGKey(2), N_USERS, N_ITEMS, D)
  params['user_emb'] = params['user_emb'] * 20.0   # a visible ranking
  params['item_emb'] = params['item_emb'] * 20.0
  return params, make_scorer(kind, params)


def _ranked(scores, seen, k):
  s = np.where(seen, -np.inf, np.asarray(scores, np.float64))
  return np.argsort(-s, axis=1, kind='stable')[:, :k]


def _shifted_level(codec, x, j, step, scale):
  """Neuron j's new value per row: z_j + step (x the code's range)."""
  z = np.asarray(codec.encode(x)[0])
  unit = z.max(1) - z.min(1) if scale == 'minmax' else 1.0
  return jnp.asarray(z[:, j] + step * unit)


def _new_value(codec, x, j, edit, scale):
  """Neuron j's new value per row, the reference of an edit: ('level', v)
  as set_level, ('step', s) as z_j + s (x the code's range on min-max)."""
  what, v = edit
  z = np.asarray(codec.encode(x)[0])
  if what == 'level':
    return np.asarray(iv.set_level(jnp.asarray(z), j, v, scale))[:, j]
  return _shifted_level(codec, x, j, v, scale)


@pytest.mark.parametrize('kind', ['mf', 'ncf'])
@pytest.mark.parametrize('mode,scale,edit,goal', [
    ('replace', 'absolute', ('level', -1.5), -1),
    ('delta', 'absolute', ('step', -1.5), -1),
    ('delta', 'minmax', ('level', 2.0), 1),
    ('replace', 'minmax', ('step', 0.5), 1)])
def test_steer_effects_equal_one_edit_per_neuron(kind, mode, scale, edit,
                                                 goal):
  params, scorer = _scorer(kind)
  codec = _codec(normalize=kind == 'mf')
  users = np.array([0, 3, 4, 9, 17, 22])
  rng = np.random.default_rng(0)
  seen = rng.random((len(users), N_ITEMS)) < 0.15
  concept = rng.random(N_ITEMS) < 0.3
  k = 8
  table = iv.steer_effects(codec, scorer, params['user_emb'],
                           params['item_emb'], users, seen, concept,
                           **{edit[0]: edit[1]}, goal=goal, mode=mode,
                           scale=scale, k=k, chunk=4)
  u = jnp.asarray(params['user_emb'])[users]
  items = jnp.asarray(params['item_emb'])

  def measure(vecs):
    s = np.asarray(scorer.matrix_logits(vecs, items, jnp.asarray(users),
                                        jnp.arange(N_ITEMS)), np.float64)
    share = concept[_ranked(s, seen, k)].mean()
    gap = [s[i][~seen[i] & concept].mean() - s[i][~seen[i]].mean()
           for i in range(len(users))]
    return share, np.mean(gap)
  base = measure(iv.edit(codec, u, 0, None, mode=mode))
  z = np.asarray(codec.encode(u)[0])
  new = [_new_value(codec, u, j, edit, scale) for j in range(N_LAT)]
  direct = np.array([measure(iv.edit(codec, u, j, jnp.asarray(new[j]),
                                     mode=mode))
                     for j in range(N_LAT)])          # the reference: a loop
  d_act = np.array([(new[j] - z[:, j]).mean() for j in range(N_LAT)])
  t = table.set_index('neuron').sort_index()
  np.testing.assert_allclose(t['share'], direct[:, 0], rtol=1e-6)
  np.testing.assert_allclose(t['gap'], direct[:, 1], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(t['d_share'], direct[:, 0] - base[0], atol=1e-6)
  np.testing.assert_allclose(t['d_activation'], d_act, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(t['effect_share'],
                             (direct[:, 0] - base[0]) / d_act, atol=1e-5)
  # best first: the largest change towards the goal, ties by the gap's
  expected = sorted(range(N_LAT), key=lambda j: (
      -round(goal * (direct[j, 0] - base[0]), 9),
      -goal * (direct[j, 1] - base[1]), j))
  assert list(table.neuron) == expected
  assert list(table['rank']) == list(range(N_LAT))
  assert len(set(np.round(t['d_share'], 9))) > 1   # not all ties


@pytest.mark.parametrize('kind', ['mf', 'ncf'])
@pytest.mark.parametrize('mode,edit', [('replace', ('level', 3.0)),
                                       ('delta', ('step', 3.0))])
def test_promote_effects_equal_one_edit_per_neuron(kind, mode, edit):
  params, scorer = _scorer(kind)
  codec = _codec(normalize=kind == 'mf')
  users = np.arange(0, N_USERS, 2)
  seen = np.random.default_rng(1).random((len(users), N_ITEMS)) < 0.1
  target = 7
  seen[:, target] = False
  seen[0, target] = True        # one user saw it: never eligible
  u = jnp.asarray(params['user_emb'])[users]
  items = jnp.asarray(params['item_emb'])

  def ranks_logits(item_vecs):
    s = np.asarray(scorer.matrix_logits(u, item_vecs, jnp.asarray(users),
                                        jnp.arange(N_ITEMS)), np.float64)
    order = _ranked(s, seen, N_ITEMS)
    pos = np.argmax(order == target, axis=1) + 1
    return np.where(seen[:, target], 0, pos), s[:, target]
  raw, _ = ranks_logits(items)
  th = int(np.median(raw[1:]))
  eligible = raw > th
  assert 0 < eligible.sum() < len(users) - 1
  table = iv.promote_effects(codec, scorer, params['user_emb'],
                             params['item_emb'], users, seen, target,
                             **{edit[0]: edit[1]}, mode=mode, threshold=th,
                             chunk=3)

  def measure(j, level):
    vec = iv.edit(codec, items[target][None], j, level, mode=mode)[0]
    r, lg = ranks_logits(items.at[target].set(vec))
    return r[eligible].mean(), lg[eligible].mean(), (
        r[eligible] <= th + 10).mean()
  base = measure(0, None)
  direct = np.array([measure(j, jnp.asarray(_new_value(
      codec, items[target][None], j, edit, 'absolute')))
                     for j in range(N_LAT)])
  t = table.set_index('neuron').sort_index()
  np.testing.assert_allclose(t['mean_rank'], direct[:, 0])
  np.testing.assert_allclose(t['logit'], direct[:, 1], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(t['success_rate'], direct[:, 2])
  np.testing.assert_allclose(t['d_mean_rank'], direct[:, 0] - base[0])
  assert list(table.neuron) == sorted(range(N_LAT), key=lambda j: (
      -round(direct[j, 2], 9), round(direct[j, 0], 9), j))
  assert len(set(direct[:, 2])) > 1


def test_strongest_level_and_one_edit():
  assert iv.strongest_level((None, 1.0, 0.5, 0.0, -1.5), 'suppress') == -1.5
  assert iv.strongest_level((None, 1.0, 4.0), 'nudge') == 4.0
  assert iv.strongest_level((0.0, None, 5.0), 'promote') == 5.0
  with pytest.raises(ValueError, match='no numeric level'):
    iv.strongest_level((None,), 'suppress')
  params, scorer = _scorer('mf')
  with pytest.raises(ValueError, match='one of level= .* and step='):
    iv.steer_effects(_codec(True), scorer, params['user_emb'],
                     params['item_emb'], np.arange(3),
                     np.zeros((3, N_ITEMS), bool), np.ones(N_ITEMS, bool),
                     level=1.0, step=1.0)


def _inverse_world():
  """MF on 2-d embeddings with 3 neurons and an untied decoder: neuron 0
  fires on the concept's items (item-pure) but its decoder row points away
  from them, so lowering it in a user *raises* the concept's scores;
  neuron 2 fires on every item alike (impure) and its decoder row points at
  the concept, so lowering it lowers the share."""
  n_c, n_items = 10, 40
  r = np.random.default_rng(3).random(n_items)
  items = np.where(np.arange(n_items)[:, None] < n_c,
                   np.stack([1 + 0.1 * r, 0.1 * r], 1),
                   np.stack([0.1 * r, 1 + 0.1 * r], 1)).astype(np.float32)
  users = np.array([[1.0, 0.6], [0.9, 0.5], [1.1, 0.7], [1.0, 0.4]],
                   np.float32)
  concept = np.arange(n_items) < n_c
  cfg = model.SAEConfig(dim=2, dict_size=3, tied=False)
  codec = iv.Codec({'W': jnp.array([[1., 0.], [0., 1.], [0.4, 0.4]]),
                    'b_lat': jnp.zeros(3),
                    'W_dec': jnp.array([[-1., 0.], [0., 1.], [3.125, 0.]])},
                   cfg)
  scorer = make_scorer('mf', {'user_bias': jnp.zeros(4),
                              'item_bias': jnp.zeros(n_items)})
  return codec, scorer, users, items, concept


@pytest.mark.parametrize('mode', ['replace', 'delta'])
def test_effect_choice_finds_the_neuron_that_acts_the_right_way(mode):
  codec, scorer, users, items, concept = _inverse_world()
  acts = np.asarray(codec.encode(items)[0])
  table = neurons.concept_table(acts, concept[:, None], ['c'], ks=(10,))
  assert int(table.best_neuron[0]) == 0            # purity picks neuron 0
  assert table['purity@10'][0] == 1.0
  seen = np.zeros((4, len(items)), bool)
  levels = (None, 1.0, 0.0, -1.0, -1.5)
  effects = iv.steer_effects(codec, scorer, users, items, np.arange(4), seen,
                             concept, level=-1.5, goal=-1, mode=mode, k=5)
  assert int(effects.neuron.iloc[0]) == 2          # effect picks neuron 2
  by = effects.set_index('neuron')
  assert by.d_gap[0] > 0 > by.d_gap[2]             # 0 acts inversely
  assert by.effect_gap[0] < 0 < by.effect_gap[2]   # per unit of activation
  assert by.d_share[2] == -1.0 and by.d_share[0] == 0.0
  steer = {j: iv.steer_users(codec, scorer, users, items, np.arange(4), seen,
                             j, levels, concept, mode=mode, k=5)
           for j in (0, 2)}
  share = {j: t.concept_share.to_numpy()[2:] for j, t in steer.items()}
  # suppressing the effect choice lowers the share, monotonically with the
  # level, to 0; suppressing the purity choice does not lower it at all
  assert steer[2].concept_share.iloc[0] == 1.0
  assert (np.diff(share[2]) <= 0).all() and share[2][-1] == 0.0
  assert share[0][-1] >= steer[0].concept_share.iloc[0]
  assert iv.wrong_direction(steer[0], 'suppress') is False  # flat: not worse
  assert iv.wrong_direction(steer[2], 'suppress') is False


def test_use_case_select_is_checked_in_one_line():
  case = use_cases.UseCase.from_dict(
      {'kind': 'suppress', 'concept': 'x', 'select': 'effect'})
  assert case.select == 'effect'
  assert case.name == 'suppress via x by effect (x users)'
  assert use_cases.UseCase.from_dict(
      {'kind': 'suppress', 'concept': 'x'}).select == 'purity'
  with pytest.raises(ConfigError) as e:
    use_cases.UseCase.from_dict({'kind': 'suppress', 'concept': 'x',
                                 'select': 'best'}, 'config.use_cases[1]')
  msg = str(e.value)
  assert '\n' not in msg and 'config.use_cases[1]' in msg
  assert "select='best'" in msg and 'purity, effect' in msg
  with pytest.raises(ConfigError, match='exclude each other'):
    use_cases.UseCase.from_dict({'kind': 'suppress', 'concept': 'x',
                                 'select': 'effect', 'neuron': 2})


def test_run_use_cases_by_effect_on_a_sweep(sweep_dir):
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  dataset = workdirs.open_dataset(view.artifact)
  concept = str(dataset.concept_names[0])
  levels = (None, 1.0, 0.0, -1.0)
  cases = [use_cases.UseCase('suppress', concept, levels=levels, n_users=6),
           use_cases.UseCase('suppress', concept, levels=levels, n_users=6,
                             select='effect'),
           use_cases.UseCase('promote', concept, target='auto', n_users=30,
                             levels=(None, 0.0, 2.0), select='effect',
                             threshold=3)]
  config = 3
  table = use_cases.run_use_cases(view, config, dataset, cases, k=10)
  by_case = dict(list(table.groupby('case', sort=False)))
  assert list(by_case) == [cases[0].name, cases[1].name, cases[2].name]
  purity, effect = by_case[cases[0].name], by_case[cases[1].name]
  assert set(purity.choice) == {'purity'} and set(effect.choice) == {'effect'}
  assert (effect.purity_neuron == purity.neuron.iloc[0]).all()
  art = view.artifact
  codec = iv.Codec.of(*view.config(config))
  r = use_cases.resolve(cases, dataset, art.split)
  seen = workdirs.seen_mask(art.split, r[1].users)
  for mode, g in effect.groupby('mode'):
    ranking = iv.steer_effects(
        codec, view.scorer, art.user_emb, art.item_emb, r[1].users, seen,
        dataset.item_concepts[:, r[1].concept], level=-1.0, goal=-1,
        mode=mode, k=10)
    assert (g.neuron == ranking.neuron.iloc[0]).all()
    assert g.effect.iloc[0] == pytest.approx(ranking.d_share.iloc[0])
    assert g.purity_neuron_effect.iloc[0] == pytest.approx(
        ranking.set_index('neuron').d_share[purity.neuron.iloc[0]])
    # the effect is the case's own change at its strongest level, and no
    # neuron (the purity choice included) lowers the share more there
    _, before, _, after = iv.strongest_change(g, 'suppress')
    assert after - before == pytest.approx(g.effect.iloc[0], abs=1e-6)
    p = purity[purity['mode'] == mode]
    assert iv.strongest_change(p, 'suppress')[3] >= after - 1e-9
    assert not g.inactive.any()          # never flagged inactive
  promo = by_case[cases[2].name]
  assert set(promo.choice) == {'effect'} and promo.neuron.notna().all()
  assert (promo.effect >= promo.purity_neuron_effect).all()   # success
