"""Pursuit encoders (docs/method.md#pursuit-encoders): MP and OMP against a
loop-based numpy reference, gradients against central differences, vmapped
== separate, per-config k by masking, training in a sweep (MF and NCF), the
analysis's codes, the SAE export, and the refusals."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from monosem_jax.experiments.configs import sweep as sweep_configs
from monosem_jax import load_sae
from monosem_jax.analysis import interventions, neurons, pipeline
from monosem_jax.recommenders import ncf
from monosem_jax.recommenders.kinds import make_scorer
from monosem_jax.sae import export, model
from monosem_jax.sae import objective as objective_lib
from monosem_jax.sweep import checkpoint, step
from monosem_jax.sweep.spec import (SweepConfigError, SweepHparams, SweepSpec,
                                    validate)
from monosem_jax.sweep.state import SweepInputs, init_sweep, positive_pairs_of

VARIANTS = [(m, s) for m in model.PURSUITS for s in (False, True)]


def reference(w_dec, x, k, orthogonal, signed, b_pre=None, active=None):
  """Pursuit by plain loops over samples and steps, in float64.

  Args:
    w_dec: ``(n, d)`` decoder rows (normalised here); x: ``(N, d)`` inputs
    (already normalised); k: steps; b_pre: subtracted first; active: the
    number of usable latents (a config's dict_size).
  """
  w = np.asarray(w_dec, np.float64)
  norm = np.maximum(np.linalg.norm(w, axis=1), model.ATOM_EPS)
  unit = w / norm[:, None]
  n = len(w)
  active = n if active is None else active
  r0s = np.asarray(x, np.float64) - (0 if b_pre is None else
                                     np.asarray(b_pre, np.float64))
  out = np.zeros((len(r0s), n))
  for row, r0 in enumerate(r0s):
    r, c, chosen = r0.copy(), np.zeros(n), []
    for _ in range(k):
      corr = unit @ r
      score = np.abs(corr) if signed else corr.copy()
      score[active:] = -np.inf
      if orthogonal:
        score[chosen] = -np.inf
      j = int(np.argmax(score))
      if orthogonal:
        if score[j] <= 0:
          continue
        chosen.append(j)
        s = unit[chosen]
        a = np.linalg.solve(s @ s.T + model.OMP_RIDGE * np.eye(len(chosen)),
                            s @ r0)
        a = a if signed else np.maximum(a, 0)
        r = r0 - a @ s
        c[:] = 0
        c[chosen] = a
      else:
        a = corr[j] if signed else max(corr[j], 0.0)
        r = r - a * unit[j]
        c[j] += a
    out[row] = c / norm
  return out


def _params(cfg, seed=0, dtype=jnp.float32):
  p = model.init(jax.random.PRNGKey(seed), cfg, dtype)
  rng = np.random.default_rng(seed)
  if 'b_pre' in p:
    p['b_pre'] = jnp.asarray(rng.normal(size=cfg.dim) * 0.1, dtype)
  if 'W_dec' in p:   # rows of unequal norms: the codes are in their units
    p['W_dec'] = jnp.asarray(rng.normal(size=(cfg.dict_size, cfg.dim))
                             * rng.uniform(0.3, 2.0, (cfg.dict_size, 1)), dtype)
  return p


def _x(n=9, d=6, seed=1):
  return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


@pytest.mark.parametrize('method,signed', VARIANTS)
@pytest.mark.parametrize('k,n,seed', [(1, 12, 0), (3, 30, 1), (5, 12, 2)])
def test_pursuit_matches_the_numpy_reference(method, signed, k, n, seed):
  cfg = model.SAEConfig(dim=6, dict_size=n, tied=False, activation=method,
                        k_max=k, mp_signed=signed, normalize=True,
                        pre_bias=True)
  p = _params(cfg, seed)
  x = _x(seed=seed + 5)
  x_in = np.asarray(model.prepare(jnp.asarray(x), cfg)[0])
  z = np.asarray(model.encode(p, jnp.asarray(x), cfg))
  want = reference(p['W_dec'], x_in, k, method == 'omp', signed, p['b_pre'])
  np.testing.assert_array_equal(z != 0, want != 0)
  np.testing.assert_allclose(z, want, rtol=2e-4, atol=2e-5)
  assert ((z != 0).sum(1) <= k).all()
  if not signed:
    assert (z >= 0).all()
  elif k > 1:
    assert (z < 0).any()


@pytest.mark.parametrize('method,signed', VARIANTS)
def test_masked_latents_are_never_chosen(method, signed):
  cfg = model.SAEConfig(dim=6, dict_size=16, activation=method, k_max=4,
                        mp_signed=signed)
  p = _params(cfg, 2)
  x = _x(seed=3)
  z = np.asarray(model.encode(p, jnp.asarray(x), cfg, 4,
                              model.latent_mask(7, 16)))
  assert not z[:, 7:].any()
  want = reference(p['W'], x, 4, method == 'omp', signed, active=7)
  np.testing.assert_allclose(z, want, rtol=2e-4, atol=2e-5)


def test_inference_time_pursuit_of_a_topk_dictionary():
  """pursuit_encode codes with the decoder of any SAE; decode gives the
  pursuit's reconstruction, and OMP beats the SAE's own TopK encoder."""
  cfg = model.SAEConfig(dim=6, dict_size=20, tied=False, activation='topk',
                        k_max=3, normalize=True, pre_bias=True)
  p = _params(cfg, 4)
  x = jnp.asarray(_x(40, seed=6))
  x_in, stats = model.prepare(x, cfg)
  z = model.pursuit_encode(p, x, cfg, 3, orthogonal=True, signed=True)
  want = reference(p['W_dec'], x_in, 3, True, True, p['b_pre'])
  np.testing.assert_allclose(z, want, rtol=2e-4, atol=2e-5)
  err = lambda codes: float(jnp.mean(jnp.square(
      model.decode(p, codes, cfg, stats) - x)))
  assert err(z) < err(model.encode(p, x, cfg))
  with pytest.raises(ValueError, match='pursuit encoder'):
    model.activate(jnp.zeros((2, 20)), model.as_pursuit(cfg, 3))


@pytest.mark.parametrize('method,signed', VARIANTS)
def test_gradients_match_central_differences(method, signed):
  """At a point where the choices of atoms do not change within +-eps, the
  gradient of a loss through the pursuit (coefficients, residuals, atoms,
  pre-bias) equals central differences, in float64."""
  with jax.enable_x64(True):
    cfg = model.SAEConfig(dim=6, dict_size=10, tied=False, activation=method,
                          k_max=3, mp_signed=signed, normalize=True,
                          pre_bias=True)
    p = _params(cfg, 7, jnp.float64)
    x = jnp.asarray(_x(8, seed=8), jnp.float64)
    y = jnp.asarray(_x(8, seed=9), jnp.float64)

    @jax.jit
    def loss(q):
      z, x_hat = model.forward(q, x, cfg)
      return jnp.sum(jnp.square(x_hat[-1] - y)) + jnp.sum(jnp.sin(z))

    encode = jax.jit(lambda q: model.encode(q, x, cfg))
    grads = jax.grad(loss)(p)
    assert np.abs(np.asarray(grads['W_dec'])).sum() > 0
    assert np.abs(np.asarray(grads['b_pre'])).sum() > 0
    rng = np.random.default_rng(0)
    eps = 1e-6
    support = np.asarray(encode(p)) != 0
    for _ in range(2):
      v = {key: jnp.asarray(rng.normal(size=a.shape)) for key, a in p.items()}
      shift = lambda s: jax.tree.map(lambda a, b: a + s * eps * b, p, v)
      for s in (-1, 1):   # the same atoms on both sides
        np.testing.assert_array_equal(np.asarray(encode(shift(s))) != 0,
                                      support)
      numeric = (loss(shift(1)) - loss(shift(-1))) / (2 * eps)
      analytic = sum(jnp.sum(grads[key] * v[key]) for key in p)
      np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize('method,signed', VARIANTS)
def test_vmapped_over_configs_equals_separate_calls(method, signed):
  """Per-config params, k and dictionary size under vmap: bitwise the
  separate calls; and a k < k_max run equals a run with k_max = k."""
  cfg = model.SAEConfig(dim=6, dict_size=16, activation=method, k_max=5,
                        mp_signed=signed, normalize=True, pre_bias=True)
  ps = [_params(cfg, s) for s in range(2)]
  ks, sizes = jnp.array([5, 2]), jnp.array([16, 9])
  x = jnp.asarray(_x(11, seed=2))
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *ps)
  enc = lambda c: jax.jit(lambda p, k, m: model.encode(
      p, x, c, k, model.latent_mask(m, c.dict_size)))
  together = jax.jit(jax.vmap(enc(cfg)))(stacked, ks, sizes)
  one = enc(cfg)
  alone = [one(ps[c], ks[c], sizes[c]) for c in range(2)]
  for c in range(2):
    np.testing.assert_array_equal(together[c], alone[c])
  # k = 2 of k_max = 5 is a pursuit of k_max = 2
  exact = enc(dataclasses.replace(cfg, k_max=2))(ps[1], ks[1], sizes[1])
  np.testing.assert_array_equal(alone[1] != 0, exact != 0)
  if method == 'mp':
    np.testing.assert_array_equal(alone[1], exact)
  else:   # a 2 x 2 solve padded to 5 x 5: the last bit may differ
    np.testing.assert_allclose(alone[1], exact, rtol=1e-6, atol=1e-7)


def test_matryoshka_prefixes_decode_the_chosen_atoms_below_m():
  cfg = model.SAEConfig(dim=6, dict_size=12, activation='omp', k_max=4,
                        prefixes=(3, 7, 12), normalize=True, pre_bias=True)
  p = _params(cfg, 3)
  x = jnp.asarray(_x(seed=4))
  z, x_hats = model.forward(p, x, cfg)
  stats = model.prepare(x, cfg)[1]
  for m, x_hat in zip(cfg.prefix_sizes, x_hats):
    cut = jnp.where(jnp.arange(12) < m, z, 0.0)
    np.testing.assert_allclose(x_hat, model.decode(p, cut, cfg, stats),
                               rtol=1e-5, atol=1e-5)


def test_l0_counts_negative_coefficients():
  """A signed code's negative coefficients are active latents (the
  objective's, the sweep metrics' and the analysis's L0)."""
  cfg = model.SAEConfig(dim=6, dict_size=12, activation='mp', k_max=4,
                        mp_signed=True)
  p = _params(cfg, 1)
  u, i = jnp.asarray(_x(10, seed=1)), jnp.asarray(_x(10, seed=2))
  z = np.asarray(model.encode(p, u, cfg))
  assert (z < 0).any()
  assert neurons.l0(z) == (z != 0).sum(1).mean()
  batch = objective_lib.prepare_batch(u, i, cfg, make_scorer('mf', {}))
  w = objective_lib.LossWeights(1.0, 1.0, 0.0, 0.0, 0.05)
  _, terms = objective_lib.objective(p, w, batch, cfg, make_scorer('mf', {}),
                                     4, 12)
  zi = np.asarray(model.encode(p, i, cfg))
  want = 0.5 * ((z != 0).sum(1).mean() + (zi != 0).sum(1).mean())
  np.testing.assert_allclose(terms['l0'], want, rtol=1e-6)


# ---- training ---------------------------------------------------------------

D = 6


def _mf_data():
  rng = np.random.default_rng(0)
  u = rng.normal(size=(60, D)).astype(np.float32) * 0.3
  i = rng.normal(size=(40, D)).astype(np.float32) * 0.3
  return SweepInputs.create(u, i, np.arange(48)), make_scorer('mf', {})


def _ncf_data():
  p = ncf.init(jax.random.PRNGKey(1), 60, 40, D)
  rng = np.random.default_rng(1)
  pu, pi = positive_pairs_of(rng.integers(0, 60, 500),
                             rng.integers(0, 40, 500), np.arange(48))
  return (SweepInputs.create(p['user_emb'], p['item_emb'], np.arange(48), pu,
                             pi), make_scorer('ncf', p))


#: MF: non-negative MP, per-config k and dictionary size; NCF: signed OMP with
#: Matryoshka prefixes (every config then uses all 12 latents).
SWEEPS = {
    'mf': (dict(activation='mp', scorer_options=dict(batch_users=16,
                                                     batch_items=16)),
           dict(k=[2, 4], dict_size=[8, 12])),
    'ncf': (dict(activation='omp', mp_signed=True, prefixes=(4, 12),
                 scorer_options=dict(batch_pairs=32)), dict(k=[2, 4])),
}


@pytest.fixture(scope='module')
def trained():
  """kind -> (spec, hparams, state, history of every epoch) of a 4-epoch
  pursuit sweep (:data:`SWEEPS`) on in-memory embeddings."""
  out = {}
  for kind, (spec_kw, grid) in SWEEPS.items():
    inputs, scorer = _mf_data() if kind == 'mf' else _ncf_data()
    spec = SweepSpec(kind=kind, dim=D, max_dict_size=12, k_max=4,
                     steps_per_epoch=4, **spec_kw)
    hp = SweepHparams.grid(spec, lambda_kl=[0.0], lr=[1e-2], **grid)
    validate(spec, hp)
    state = init_sweep(spec, hp, jax.random.PRNGKey(0))
    hists = []
    for _ in range(4):
      state, hist = step.run_epoch(spec, hp, state, inputs, scorer)
      hists.append(jax.tree.map(np.asarray, hist))
    out[kind] = spec, hp, state, hists, inputs
  return out


@pytest.mark.parametrize('kind', ['mf', 'ncf'])
def test_a_pursuit_sweep_trains(trained, kind):
  """Pursuit SAEs train in one vmapped program: the loss falls, nothing is
  NaN, L0 <= k."""
  _, hp, state, hists, _ = trained[kind]
  losses = np.stack([h['loss'] for h in hists])
  assert np.all(np.isfinite(losses)) and np.all(np.asarray(state.finite))
  assert np.all(losses[-1] < losses[0]), losses
  assert np.all(hists[-1]['l0'] <= np.asarray(hp.k))
  assert np.all(hists[-1]['nonfinite_steps'] == 0)


def test_spec_refusals():
  with pytest.raises(SweepConfigError, match='k_max=7: orthogonal'):
    SweepSpec(dim=6, max_dict_size=12, activation='omp', k_max=7)
  with pytest.raises(SweepConfigError, match='mp_signed=True: only'):
    SweepSpec(dim=6, max_dict_size=12, activation='topk', k_max=2,
              mp_signed=True)
  with pytest.raises(SweepConfigError, match=r'k\[0\] = 5'):
    spec = SweepSpec(dim=6, max_dict_size=12, activation='mp', k_max=4)
    validate(spec, SweepHparams.grid(spec, k=[5]))
  with pytest.raises(ValueError, match='k_max <= dim=6'):
    model.SAEConfig(dim=6, dict_size=12, activation='omp', k_max=8)
  with pytest.raises(ValueError, match='mp_signed=True'):
    model.SAEConfig(dim=6, dict_size=12, mp_signed=True)
  # the sweep launcher's config knows the field
  assert sweep_configs.get_config('synthetic,mf').spec.mp_signed is False


# ---- the analysis's codes and the export ------------------------------------

@pytest.mark.parametrize('kind,index', [('mf', 2), ('ncf', 0)])
def test_exported_pursuit_sae_gives_the_sweeps_codes(trained, kind, index,
                                                     tmp_path):
  """A config of a pursuit sweep (checkpoint.config_from_state, as
  export_sae reads it) written and loaded: the analysis's codes
  (pipeline's vmapped encoder, interventions' Codec) and the model's
  reconstruction; a code does not depend on the rows encoded with it.
  MF config 2: k 4, 8 of 12 latents; NCF config 0: k 2 of k_max 4."""
  spec, hp_all, state, _, inputs = trained[kind]
  x = np.asarray(inputs.item_emb)
  sweep = np.asarray(pipeline._encode_configs(  # pylint: disable=protected-access
      spec, state.sae, hp_all, jnp.asarray(x)))
  params, hp = checkpoint.config_from_state(spec, hp_all, state, index)
  cfg = model.SAEConfig(**hp['sae_config'])
  assert (cfg.activation, cfg.mp_signed) == (spec.activation, spec.mp_signed)
  sae = load_sae(export.write_sae(tmp_path / f'sae{index}', params, cfg,
                                  hp['k']))
  assert (sae.cfg['encode_activation'], sae.cfg['mp_signed'],
          sae.cfg['k']) == (spec.activation, spec.mp_signed, hp['k'])
  m = hp['dict_size']
  codes = sae.encode(x)
  np.testing.assert_allclose(codes, sweep[index][:, :m], rtol=1e-5,
                             atol=1e-6)
  assert not sweep[index][:, m:].any()
  np.testing.assert_allclose(
      codes, interventions.Codec.of(params, hp).encode(x)[0], rtol=1e-5,
      atol=1e-6)
  assert ((codes != 0).sum(1) <= hp['k']).all()
  assert (codes < 0).any() == spec.mp_signed
  np.testing.assert_allclose(sae.reconstruct(x), model.reconstruct(
      params, x, cfg, hp['k']), rtol=1e-5, atol=1e-5)
  perm = np.random.default_rng(0).permutation(len(x))
  np.testing.assert_allclose(sae.encode(x[perm]), codes[perm], rtol=1e-5,
                             atol=1e-6)
  for rows in (slice(0, 1), slice(3, 10)):
    part = sae.encode(x[rows])
    np.testing.assert_array_equal(part != 0, codes[rows] != 0)
    np.testing.assert_allclose(part, codes[rows], rtol=1e-5, atol=1e-6)


def test_describe_names_the_pursuit():
  cfg = model.SAEConfig(dim=6, dict_size=8, activation='mp', k_max=3,
                        normalize=True, pre_bias=True)
  d = export.describe(cfg, 2)
  assert (d['architecture'], d['activation_fn_kwargs'], d['mp_signed']) == (
      'mp', {'k': 2, 'signed': False}, False)
  assert export.sae_config(d) == dataclasses.replace(cfg, k_max=2)
  old = dict(export.describe(model.SAEConfig(
      dim=6, dict_size=8, normalize=True, pre_bias=True), None))
  del old['mp_signed']          # written before pursuit encoders existed
  assert not export.sae_config(old).mp_signed


def test_sparse_faithful_config_is_a_valid_pursuit_sweep():
  # pylint: disable=import-outside-toplevel
  from monosem_jax.experiments.configs import sparse_faithful
  from monosem_jax.errors import ConfigError
  from monosem_jax.sweep.runner import (PlannedRecommender, build_hparams,
                                        build_spec, grid_axes)
  c = sparse_faithful.get_config('ml-1m')
  spec = build_spec(PlannedRecommender(kind=c.kind, dim=20),
                    dict(c.spec.to_dict(), max_dict_size=1024), {})
  hp = build_hparams(spec, c.defaults.to_dict(), grid_axes(c.grid))
  validate(spec, hp)
  assert (spec.activation, spec.k_max, hp.num_configs) == ('omp', 8, 6)
  assert set(np.asarray(hp.k)) == {8} and not np.asarray(hp.lambda_kl).any()
  with pytest.raises(ConfigError, match='only ml-1m'):
    sparse_faithful.get_config('lastfm-2k')
