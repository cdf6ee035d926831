"""Sweep step and driver: vmapped == sequential, masking, NaN isolation,
validation, the optimiser."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optax

from monosem_jax.recommenders import ncf
from monosem_jax.recommenders.kinds import make_scorer
from monosem_jax.sae import model
from monosem_jax.sae import objective as objective_lib
from monosem_jax.sweep import batches, step
from monosem_jax.sweep.metrics import evaluate_configs
from monosem_jax.sweep.spec import (SweepConfigError, SweepHparams, SweepSpec,
                                    validate)
from monosem_jax.sweep.state import (SweepInputs, init_sweep,
                                     positive_pairs_of)

D = 6


@pytest.fixture(scope='module')
def mf_data():
  rng = np.random.default_rng(0)
  u = rng.normal(size=(60, D)).astype(np.float32) * 0.3
  i = rng.normal(size=(40, D)).astype(np.float32) * 0.3
  return SweepInputs.create(u, i, np.arange(48)), make_scorer('mf', {})


@pytest.fixture(scope='module')
def ncf_data():
  p = ncf.init(jax.random.PRNGKey(1), 60, 40, D)
  rng = np.random.default_rng(1)
  pu, pi = rng.integers(0, 60, 500), rng.integers(0, 40, 500)
  pu, pi = positive_pairs_of(pu, pi, np.arange(48))
  return (SweepInputs.create(p['user_emb'], p['item_emb'], np.arange(48), pu,
                             pi), make_scorer('ncf', p))


MF_SPEC = SweepSpec(kind='mf', dim=D, max_dict_size=10,
                    scorer_options=dict(batch_users=16, batch_items=16))
NCF_SPEC = SweepSpec(kind='ncf', dim=D, max_dict_size=10, steps_per_epoch=4,
                     scorer_options=dict(batch_pairs=32))


def _train(spec, params, data, epochs=2, key=0):
  inputs, scorer = data
  state = init_sweep(spec, params, jax.random.PRNGKey(key))
  hist = None
  for _ in range(epochs):
    state, hist = step.run_epoch(spec, params, state, inputs, scorer)
  return state, hist


def _mixed_params(spec):
  return SweepHparams.from_list([
      dict(lambda_pred=0.0, lr=1e-3, seed=0, dict_size=10),
      dict(lambda_pred=5.0, lr=1e-2, seed=1, dict_size=4, rho=0.2),
      dict(lambda_emb=1.0, lambda_l1=0.1, lambda_kl=0.5, seed=2, dict_size=7),
  ], spec)


@pytest.mark.parametrize('which', ['mf', 'ncf'])
def test_vmapped_equals_separate_runs(which, mf_data, ncf_data):
  spec, data = (MF_SPEC, mf_data) if which == 'mf' else (NCF_SPEC, ncf_data)
  params = _mixed_params(spec)
  state, hist = _train(spec, params, data)
  assert int(state.step) == 2 * batches.steps_per_epoch(spec, data[0],
                                                        data[1].paired)
  assert int(state.epoch) == 2
  for c in range(params.num_configs):
    s1, h1 = _train(spec, params.take([c]), data)
    for a, b in zip(jax.tree.leaves(s1.sae), jax.tree.leaves(state.sae)):
      np.testing.assert_allclose(a[0], b[c], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h1['loss'][0], hist['loss'][c], rtol=1e-5)
  assert np.all(np.asarray(state.finite))


def test_same_seed_same_result_bitwise(mf_data):
  params = _mixed_params(MF_SPEC)
  a, ha = _train(MF_SPEC, params, mf_data)
  b, hb = _train(MF_SPEC, params, mf_data)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  np.testing.assert_array_equal(ha['loss'], hb['loss'])


@pytest.mark.parametrize('activation', ['relu', 'topk'])
def test_masking_equivalence(activation, mf_data):
  """A size-m config in a size-M sweep trains like a size-m SAE alone."""
  kw = dict(activation=activation, k_max=3) if activation == 'topk' else {}
  big = dataclasses.replace(MF_SPEC, max_dict_size=10, **kw)
  small = dataclasses.replace(MF_SPEC, max_dict_size=4, **kw)
  k = 3 if activation == 'topk' else 0
  pb = SweepHparams.from_list([dict(dict_size=4, k=k, lambda_l1=0.05, seed=5),
                              dict(dict_size=10, k=k, seed=5)], big)
  ps = SweepHparams.from_list([dict(dict_size=4, k=k, lambda_l1=0.05, seed=5)],
                             small)
  sb, hb = _train(big, pb, mf_data)
  ss, hs = _train(small, ps, mf_data)
  np.testing.assert_allclose(sb.sae['W'][0, :4], ss.sae['W'][0], rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(sb.sae['b_lat'][0, :4], ss.sae['b_lat'][0],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(sb.sae['b_pre'][0], ss.sae['b_pre'][0], rtol=1e-5,
                             atol=1e-6)
  for key in ('loss', 'kl', 'l1', 'l0'):
    np.testing.assert_allclose(hb[key][0], hs[key][0], rtol=1e-5)
  # masked latents never moved: zero gradient, Adam untouched
  init = init_sweep(big, pb)
  np.testing.assert_array_equal(sb.sae['W'][0, 4:], init.sae['W'][0, 4:])
  assert not np.any(np.asarray(sb.opt.mu['W'])[0, 4:])


def test_recommender_params_unchanged_and_no_gradient(ncf_data):
  before = jax.tree.map(np.array, ncf_data)
  params = _mixed_params(NCF_SPEC)
  _train(NCF_SPEC, params, ncf_data, epochs=1)
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(ncf_data)):
    np.testing.assert_array_equal(a, b)
  # the objective has zero gradient w.r.t. every recommender quantity
  inputs, scorer = ncf_data
  ix = batches.epoch_indices(NCF_SPEC, inputs, jax.random.PRNGKey(0),
                             scorer.paired)
  state = init_sweep(NCF_SPEC, params)
  sae0 = jax.tree.map(lambda a: a[0], state.sae)
  hp0 = jax.tree.map(lambda a: jnp.asarray(a)[0], params)

  def f(d, s):
    batch = step.shared_batch(NCF_SPEC, d, s, ix.users[0], ix.items[0])
    return objective_lib.objective(sae0, hp0, batch, NCF_SPEC.sae, s, hp0.k,
                                   hp0.dict_size)[0]

  g_inputs, g_scorer = jax.grad(f, argnums=(0, 1), allow_int=True)(inputs,
                                                                    scorer)
  for leaf in jax.tree.leaves((g_inputs.user_emb, g_inputs.item_emb,
                               g_scorer.mlp)):
    assert not np.any(np.asarray(leaf))


def test_nan_config_is_frozen_and_isolated(mf_data):
  good = _mixed_params(MF_SPEC)
  bad = SweepHparams.from_list(good.configs() + [dict(lr=1e30, seed=9)],
                              MF_SPEC)
  s_good, h_good = _train(MF_SPEC, good, mf_data)
  s_bad, h_bad = _train(MF_SPEC, bad, mf_data)
  fin = np.asarray(s_bad.finite)
  assert fin.tolist() == [True, True, True, False]
  assert 0 <= int(s_bad.diverged_step[3]) < int(s_bad.step)
  assert not bool(h_bad['finite'][3]) and int(h_bad['nonfinite_steps'][3]) > 0
  for leaf in jax.tree.leaves((s_bad.sae, s_bad.opt)):
    assert np.all(np.isfinite(np.asarray(leaf)[3]))     # last finite state
  for a, b in zip(jax.tree.leaves(s_good.sae), jax.tree.leaves(s_bad.sae)):
    np.testing.assert_allclose(a, np.asarray(b)[:3], rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(np.asarray(s_bad.diverged_step)[:3], -1)


def test_frozen_config_stays_frozen(mf_data):
  params = SweepHparams.from_list([dict(seed=1), dict(lr=1e30, seed=2)], MF_SPEC)
  state = init_sweep(MF_SPEC, params)
  state, _ = step.run_epoch(MF_SPEC, params, state, *mf_data)
  assert not bool(state.finite[1])
  frozen = jax.tree.map(lambda a: np.asarray(a)[1], state.sae)
  state, h = step.run_epoch(MF_SPEC, params, state, *mf_data)
  for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(state.sae)):
    np.testing.assert_array_equal(a, np.asarray(b)[1])
  assert bool(state.finite[0])


def test_configs_with_non_finite_reconstructions_are_not_scored(mf_data):
  """A config frozen at weights of 1e30 (lr = 1e30) reconstructs NaN; its L0
  (5 of 10) and dead fraction (0.5) were once counted from NaN codes."""
  params = SweepHparams.from_list([dict(seed=1), dict(lr=1e30, seed=2)],
                                  MF_SPEC)
  state, _ = _train(MF_SPEC, params, mf_data, epochs=1)
  inputs, scorer = mf_data
  args = (MF_SPEC, params, scorer, inputs.user_emb[48:], inputs.item_emb)
  m = evaluate_configs(state, *args)
  # as if training had not noticed: the reconstructions still decide
  flagged = evaluate_configs(state.replace(finite=jnp.ones(2, bool)), *args)
  for out in (m, flagged):
    assert out['finite'].tolist() == [True, False]
    for key, v in out.items():
      if key not in ('finite', 'diverged_step', 'dict_size'):
        assert np.isnan(v[1]).all() and np.isfinite(v[0]).all(), key


@pytest.mark.parametrize('field,value,needle', [
    ('rho', 1.0, r'SweepHparams.rho\[1\] = 1.0: rho must lie in the open interval'),
    ('rho', 0.0, r'rho\[1\]'),
    ('dict_size', 0, r'SweepHparams.dict_size\[1\] = 0: dictionary size must be in \[1, spec.max_dict_size=10\]'),
    ('dict_size', 11, r'dict_size\[1\] = 11'),
    ('lambda_kl', -0.1, r'SweepHparams.lambda_kl\[1\] = -0.1\d*: lambda_kl is a loss weight'),
    ('lambda_pred', -1.0, r'lambda_pred\[1\]'),
    ('lr', 0.0, r'lr\[1\] = 0.0: the learning rate must be > 0'),
    ('k', 11, r'SweepHparams.k\[1\] = 11: k must not exceed the config'),
    ('lambda_emb', float('nan'), r'lambda_emb\[1\] = nan: lambda_emb must be finite'),
])
def test_invalid_configs_rejected_before_compiling(field, value, needle):
  params = SweepHparams.from_list([{}, {field: value}], MF_SPEC)
  with pytest.raises(SweepConfigError, match=needle):
    init_sweep(MF_SPEC, params)


def test_invalid_topk_and_spec_messages():
  spec = dataclasses.replace(MF_SPEC, activation='topk', k_max=3)
  params = SweepHparams.from_list([dict(k=2), dict(k=4), dict(k=0)], spec)
  with pytest.raises(SweepConfigError) as e:
    validate(spec, params)
  assert 'k[1] = 4' in str(e.value) and 'k[2] = 0' in str(e.value)
  assert '2 problem(s)' in str(e.value)
  with pytest.raises(SweepConfigError, match='SweepSpec.k_max=0'):
    SweepSpec(activation='topk')
  with pytest.raises(SweepConfigError,
                     match=r'scorer_options.pred_loss: an option of ncf'):
    SweepSpec(kind='mf', scorer_options={'pred_loss': 'bce'})
  with pytest.raises(SweepConfigError, match='SweepSpec.kind'):
    SweepSpec(kind='gmf')
  with pytest.raises(SweepConfigError, match='unknown hyper-parameter'):
    SweepHparams.grid(lamda_pred=[1.0])


def test_grid_and_defaults():
  p = SweepHparams.grid('ncf', lambda_pred=[0, 10], seed=[0, 1])
  assert p.num_configs == 4
  assert [c['lambda_pred'] for c in p.configs()] == [0, 0, 10, 10]
  assert [c['seed'] for c in p.configs()] == [0, 1, 0, 1]
  c = p.config(0)
  assert (c['lambda_emb'], c['lambda_kl'], c['rho'], c['lr']) == (2.0, 0.07,
                                                                  0.05, 0.001)
  m = SweepHparams.grid('mf').config(0)
  assert (m['lambda_emb'], m['lambda_pred'], m['lambda_kl'], m['dict_size'],
          m['seed']) == (0.1, 1.0, 0.01, 22, 42)
  assert p.pad_to(6).num_configs == 6


def test_batches_follow_the_paper(mf_data, ncf_data):
  mf_data, ncf_data = mf_data[0], ncf_data[0]
  ix = batches.epoch_indices(MF_SPEC, mf_data, jax.random.PRNGKey(3), False)
  u, i = np.asarray(ix.users), np.asarray(ix.items)
  assert u.shape == (3, 16) and i.shape == (3, 16)       # 48 // 16 steps
  assert len(set(u.ravel())) == u.size and u.max() < 48  # one pass, train only
  spec = dataclasses.replace(MF_SPEC, steps_per_epoch=7)  # items cycle
  i = np.asarray(batches.epoch_indices(spec, mf_data, jax.random.PRNGKey(3),
                                       False).items)
  assert sorted(i.ravel()[:40]) == list(range(40))
  ixn = batches.epoch_indices(NCF_SPEC, ncf_data, jax.random.PRNGKey(3), True)
  pairs = set(zip(np.asarray(ncf_data.pos_users).tolist(),
                  np.asarray(ncf_data.pos_items).tolist()))
  got = zip(np.asarray(ixn.users).ravel().tolist(),
            np.asarray(ixn.items).ravel().tolist())
  assert all(p in pairs for p in got)
  with pytest.raises(SweepConfigError, match='do not fill one batch'):
    batches.steps_per_epoch(MF_SPEC.with_options(batch_users=64), mf_data,
                            False)


def test_mixed_ncf_pairs_half_positive_half_random_items(ncf_data):
  inputs = ncf_data[0]
  spec = NCF_SPEC.with_options(ncf_pairs='mixed')
  ix = batches.epoch_indices(spec, inputs, jax.random.PRNGKey(3), True)
  u, i = np.asarray(ix.users), np.asarray(ix.items)
  assert u.shape == i.shape == (4, 32)
  pairs = set(zip(np.asarray(inputs.pos_users).tolist(),
                  np.asarray(inputs.pos_items).tolist()))
  assert all(p in pairs for p in zip(u[:, :16].ravel().tolist(),
                                     i[:, :16].ravel().tolist()))
  np.testing.assert_array_equal(u[:, 16:], u[:, :16])  # same users
  assert i[:, 16:].max() < 40 and len(set(i[:, 16:].ravel())) > 16
  with pytest.raises(SweepConfigError, match='ncf_pairs'):
    SweepSpec(kind='ncf', scorer_options={'ncf_pairs': 'all'})


def test_topk_matryoshka_sweep_runs(mf_data):
  spec = dataclasses.replace(MF_SPEC, activation='topk', k_max=4,
                             prefixes=(2, 5, 10))
  params = SweepHparams.from_list([dict(k=1), dict(k=4, seed=1)], spec)
  state, hist = _train(spec, params, mf_data, epochs=1)
  assert np.all(np.asarray(hist['l0']) <= np.array([1, 4]) + 1e-6)
  # the embedding term is the sum over the prefixes (3 terms >= full one)
  inputs, scorer = mf_data
  m = evaluate_configs(state, spec, params, scorer, inputs.user_emb[48:],
                       inputs.item_emb)
  assert m['fve_prefix_items'].shape == (2, 3)
  assert np.all(np.diff(m['fve_prefix_items'][1]) >= -1e-6)   # more = better
  np.testing.assert_allclose(m['fve_prefix_items'][:, -1], m['fve_items'])


def test_evaluate_configs_matches_direct_computation(mf_data, ncf_data):
  params = _mixed_params(MF_SPEC)
  state, _ = _train(MF_SPEC, params, mf_data, epochs=1)
  U, I = np.asarray(mf_data[0].user_emb[48:]), np.asarray(mf_data[0].item_emb)
  m = evaluate_configs(state, MF_SPEC, params, mf_data[1], U, I)
  m_chunked = evaluate_configs(state, MF_SPEC, params, mf_data[1], U, I,
                               config_chunk=2)
  cfg = MF_SPEC.sae
  for c in range(3):
    sae = jax.tree.map(lambda a: a[c], state.sae)
    hp = params.config(c)
    mask = model.latent_mask(hp['dict_size'], 10)
    zu, uh = model.forward(sae, U, cfg, mask=mask)
    zi, ih = model.forward(sae, I, cfg, mask=mask)
    zu, zi, uh, ih = (np.asarray(a, np.float64) for a in (zu, zi, uh[-1], ih[-1]))
    np.testing.assert_allclose(m['l0_users'][c], (zu > 0).sum(1).mean(), rtol=1e-6)
    np.testing.assert_allclose(m['l0_items'][c], (zi > 0).sum(1).mean(), rtol=1e-6)
    fired = (zu > 0).any(0) | (zi > 0).any(0)
    np.testing.assert_allclose(m['dead_frac'][c],
                               np.sum(~fired[:hp['dict_size']]) / hp['dict_size'])
    fve = 1 - ((I - ih) ** 2).sum() / ((I - I.mean(0)) ** 2).sum()
    np.testing.assert_allclose(m['fve_items'][c], fve, rtol=1e-4)
    ref = np.mean((uh @ ih.T - U.astype(np.float64) @ I.T) ** 2)
    np.testing.assert_allclose(m['score_mse'][c], ref, rtol=1e-3)
  for k in m:
    np.testing.assert_allclose(m[k], m_chunked[k], rtol=1e-5)
  # NCF: the score matrix through the frozen MLP
  pn = _mixed_params(NCF_SPEC)
  sn, _ = _train(NCF_SPEC, pn, ncf_data, epochs=1)
  inputs, scorer = ncf_data
  Un, In = inputs.user_emb[48:], inputs.item_emb
  mn = evaluate_configs(sn, NCF_SPEC, pn, scorer.replace(eval_chunk=5), Un, In)
  sae = jax.tree.map(lambda a: a[1], sn.sae)
  mask = model.latent_mask(4, 10)
  uh = model.reconstruct(sae, Un, NCF_SPEC.sae, mask=mask)
  ih = model.reconstruct(sae, In, NCF_SPEC.sae, mask=mask)
  ref = np.mean((ncf.matrix_logits(scorer.mlp, uh, ih)
                 - ncf.matrix_logits(scorer.mlp, Un, In)) ** 2)
  np.testing.assert_allclose(mn['score_mse'][1], ref, rtol=1e-4)
  assert mn['finite'].all() and (mn['diverged_step'] == -1).all()


def _hand_rolled_adam(params, grads_seq, lr):
  """The sweep's Adam before optax (running products b^t), for comparison."""
  mu = jax.tree.map(jnp.zeros_like, params)
  nu = jax.tree.map(jnp.zeros_like, params)
  pows = jnp.ones((2,), jnp.float32)
  for g in grads_seq:
    mu = jax.tree.map(lambda m, x: 0.1 * x + 0.9 * m, mu, g)
    nu = jax.tree.map(lambda v, x: 0.001 * (x * x) + 0.999 * v, nu, g)
    pows = pows * jnp.array([0.9, 0.999], jnp.float32)
    params = jax.tree.map(
        lambda p, m, v: p - lr * ((m / (1 - pows[0]))
                                  / (jnp.sqrt(v / (1 - pows[1])) + 1e-8)),
        params, mu, nu)
  return params


def test_per_config_adam_is_optax_adam_at_each_lr():
  """One vmapped step == optax.adam(lr_c) per config (and == the former
  hand-written Adam to float32 rounding)."""
  rng = np.random.default_rng(0)
  w = {'w': jnp.asarray(rng.normal(size=(3, 4, 5)), jnp.float32)}
  lrs = jnp.array([1e-3, 1e-2, 3e-2], jnp.float32)
  grads = [{'w': jnp.asarray(rng.normal(size=(3, 4, 5)), jnp.float32)}
           for _ in range(6)]
  from monosem_jax.sweep.state import ADAM

  def one(p, opt, g, lr):
    d, opt = ADAM.update(g, opt)
    return optax.apply_updates(p, jax.tree.map(lambda x: -lr * x, d)), opt

  p, opt = w, jax.vmap(ADAM.init)(w)
  for g in grads:
    p, opt = jax.vmap(one)(p, opt, g, lrs)
  for c in range(3):
    ref_p = jax.tree.map(lambda a: a[c], w)
    tx = optax.adam(float(lrs[c]), b1=0.9, b2=0.999, eps=1e-8)
    st = tx.init(ref_p)
    for g in grads:
      u, st = tx.update(jax.tree.map(lambda a: a[c], g), st)
      ref_p = optax.apply_updates(ref_p, u)
    np.testing.assert_allclose(p["w"][c], ref_p["w"], rtol=1e-5, atol=1e-6)
    old = _hand_rolled_adam(jax.tree.map(lambda a: a[c], w),
                            [jax.tree.map(lambda a: a[c], g) for g in grads],
                            lrs[c])
    np.testing.assert_allclose(p["w"][c], old["w"], rtol=1e-5, atol=1e-6)


def test_matryoshka_needs_full_dict_size():
  spec = SweepSpec(kind='mf', dim=4, max_dict_size=16, prefixes=(4, 8, 16))
  validate(spec, SweepHparams.grid(spec, lambda_pred=[0.0, 1.0]))  # fine
  with pytest.raises(SweepConfigError,
                     match=r'dict_size\[0\] = 8: Matryoshka sweeps need '
                     r'dict_size = 16'):
    validate(spec, SweepHparams.grid(spec, dict_size=[8, 16]))
