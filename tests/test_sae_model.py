"""SAE model: init, normalisation, encode/decode, activations, masks, Matryoshka."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from monosem_jax.sae import model
from monosem_jax.sae.model import SAEConfig


def _x(n=7, d=5, seed=1):
  return np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (n, d)))


def _trained_like(cfg, seed=0):
  """Params with non-zero biases so every term is exercised."""
  p = model.init(jax.random.PRNGKey(seed), cfg)
  rng = np.random.default_rng(seed)
  p['b_lat'] = jnp.asarray(rng.normal(size=p['b_lat'].shape) * 0.1, jnp.float32)
  if 'b_pre' in p:
    p['b_pre'] = jnp.asarray(rng.normal(size=p['b_pre'].shape) * 0.1, jnp.float32)
  if 'W_dec' in p:
    p['W_dec'] = jnp.asarray(rng.normal(size=p['W_dec'].shape), jnp.float32)
  return p


def test_init_shapes_bounds_and_prefix_stability():
  cfg = SAEConfig(dim=9, dict_size=40, normalize=True, pre_bias=True)
  p = model.init(jax.random.PRNGKey(3), cfg)
  assert p['W'].shape == (40, 9) and p['b_lat'].shape == (40,)
  assert p['b_pre'].shape == (9,)
  assert np.all(np.abs(p['W']) <= 1 / 3) and np.std(p['W']) > 0.1
  assert not np.any(p['b_lat']) and not np.any(p['b_pre'])
  small = model.init(jax.random.PRNGKey(3), SAEConfig(
      dim=9, dict_size=13, normalize=True, pre_bias=True))
  np.testing.assert_array_equal(small['W'], p['W'][:13])
  ncf = model.init(jax.random.PRNGKey(3), SAEConfig(dim=9, dict_size=4))
  assert set(ncf) == {'W', 'b_lat'}
  untied = model.init(jax.random.PRNGKey(3), SAEConfig(dim=9, dict_size=4,
                                                       tied=False))
  np.testing.assert_array_equal(untied['W_dec'], untied['W'])


def test_normalize_matches_numpy():
  x = _x()
  xn, st = model.normalize(jnp.asarray(x))
  mu = x.mean(-1, keepdims=True)
  sd = x.std(-1, ddof=1, keepdims=True)
  np.testing.assert_allclose(xn, (x - mu) / (sd + 1e-5), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(st.sigma, sd, rtol=1e-5)


def test_mf_sae_forward_matches_numpy():
  cfg = SAEConfig(dim=5, dict_size=8, normalize=True, pre_bias=True)
  p = _trained_like(cfg)
  x = _x()
  z, xh = model.forward(p, jnp.asarray(x), cfg)
  W, bl, bp = (np.asarray(p[k], np.float64) for k in ('W', 'b_lat', 'b_pre'))
  mu = x.mean(-1, keepdims=True)
  sd = x.std(-1, ddof=1, keepdims=True)
  xn = (x - mu) / (sd + 1e-5)
  z_ref = np.maximum((xn - bp) @ W.T + bl, 0)
  xh_ref = (z_ref @ W + bp) * sd + mu
  np.testing.assert_allclose(z, z_ref, rtol=1e-4, atol=1e-5)
  assert xh.shape == (1, 7, 5)
  np.testing.assert_allclose(xh[0], xh_ref, rtol=1e-4, atol=1e-5)


def test_ncf_sae_and_untied_forward_match_numpy():
  x = _x()
  cfg = SAEConfig(dim=5, dict_size=8)
  p = _trained_like(cfg)
  W, bl = np.asarray(p['W'], np.float64), np.asarray(p['b_lat'], np.float64)
  z_ref = np.maximum(x @ W.T + bl, 0)
  np.testing.assert_allclose(model.reconstruct(p, jnp.asarray(x), cfg),
                             z_ref @ W, rtol=1e-4, atol=1e-5)
  cfg_u = SAEConfig(dim=5, dict_size=8, tied=False)
  pu = _trained_like(cfg_u)
  z = model.encode(pu, jnp.asarray(x), cfg_u)
  np.testing.assert_allclose(model.decode(pu, z, cfg_u),
                             np.asarray(z) @ np.asarray(pu['W_dec']),
                             rtol=1e-5, atol=1e-5)


def test_topk_keeps_k_largest_then_relu():
  cfg = SAEConfig(dim=5, dict_size=8, activation='topk', k_max=4)
  h = jnp.asarray(np.random.default_rng(0).normal(size=(6, 8)), jnp.float32)
  for k in (1, 2, 4):
    z = np.asarray(model.activate(h, cfg, k=k))
    hn = np.asarray(h)
    thr = np.sort(hn, -1)[:, -k][:, None]
    ref = np.where(hn >= thr, np.maximum(hn, 0), 0)
    np.testing.assert_array_equal(z, ref)
  # per-config k under vmap
  zs = jax.vmap(lambda k: model.activate(h, cfg, k=k))(jnp.array([1, 3]))
  assert np.all(np.sum(np.asarray(zs[0]) > 0, -1) <= 1)
  assert np.all(np.sum(np.asarray(zs[1]) > 0, -1) <= 3)


def test_topk_never_selects_masked_latents():
  cfg = SAEConfig(dim=5, dict_size=8, activation='topk', k_max=3)
  h = jnp.arange(8.0)[None].repeat(2, 0)      # the largest are the last ones
  mask = model.latent_mask(5, 8)
  z = np.asarray(model.activate(h, cfg, k=3, mask=mask))
  np.testing.assert_array_equal(z[0], [0, 0, 2, 3, 4, 0, 0, 0])


def test_batchtopk_keeps_k_times_batch_over_the_batch():
  cfg = SAEConfig(dim=5, dict_size=8, activation='batchtopk', k_max=3)
  hn = np.random.default_rng(1).normal(size=(4, 8)).astype(np.float32) + 1.0
  z = np.asarray(model.activate(jnp.asarray(hn), cfg, k=2))
  thr = np.sort(hn.ravel())[-8]
  np.testing.assert_array_equal(z, np.where(hn >= thr, np.maximum(hn, 0), 0))
  assert np.sum(z > 0) <= 8


def test_masked_latents_zero_activation_and_zero_gradient():
  cfg = SAEConfig(dim=5, dict_size=8, normalize=True, pre_bias=True)
  p = _trained_like(cfg)
  x = jnp.asarray(_x())
  mask = model.latent_mask(3, 8)

  def loss(p):
    z, xh = model.forward(p, x, cfg, mask=mask)
    return jnp.sum(jnp.square(xh[-1] - x)) + jnp.sum(z)

  z, _ = model.forward(p, x, cfg, mask=mask)
  assert not np.any(np.asarray(z)[:, 3:])
  g = jax.grad(loss)(p)
  assert not np.any(np.asarray(g['W'])[3:])
  assert not np.any(np.asarray(g['b_lat'])[3:])
  assert np.any(np.asarray(g['W'])[:3])


def test_matryoshka_prefixes_decode_with_units_zeroed():
  cfg = SAEConfig(dim=5, dict_size=8, prefixes=(2, 5, 8), normalize=True,
                  pre_bias=True)
  p = _trained_like(cfg)
  x = jnp.asarray(_x())
  z, xh = model.forward(p, x, cfg)
  assert xh.shape == (3, 7, 5)
  stats = model.normalize(x)[1]
  for j, m in enumerate((2, 5, 8)):
    zm = jnp.where(jnp.arange(8) < m, z, 0.0)
    np.testing.assert_allclose(xh[j], model.decode(p, zm, cfg, stats),
                               rtol=1e-5, atol=1e-5)
  # a prefix list without the full size gets it appended
  assert SAEConfig(dim=5, dict_size=8, prefixes=(2, 5), normalize=True,
                   pre_bias=True).prefix_sizes == (2, 5, 8)


def test_config_rejects_bad_static_fields():
  with pytest.raises(ValueError, match='activation'):
    SAEConfig(dim=3, dict_size=4, activation='gelu')
  with pytest.raises(ValueError, match='k_max'):
    SAEConfig(dim=3, dict_size=4, activation='topk', k_max=9)
  with pytest.raises(ValueError, match='prefixes'):
    SAEConfig(dim=3, dict_size=4, prefixes=(3, 2))


def test_trim_gives_size_m_params():
  cfg = SAEConfig(dim=5, dict_size=8, tied=False, pre_bias=True)
  p = model.init(jax.random.PRNGKey(0), cfg)
  t = model.trim(p, 3)
  assert t['W'].shape == (3, 5) and t['W_dec'].shape == (3, 5)
  assert t['b_lat'].shape == (3,) and t['b_pre'].shape == (5,)
