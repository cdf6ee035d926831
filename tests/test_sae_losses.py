"""Each loss against a hand-written numpy reference (float64)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from monosem_jax.recommenders import mf, ncf
from monosem_jax.recommenders.kinds import make_scorer
from monosem_jax.sae import losses, model, objective

RNG = np.random.default_rng(0)


def _r(*shape, scale=1.0):
  return (RNG.normal(size=shape) * scale).astype(np.float32)


def _np_mlp(mlp, u, i):
  h = np.concatenate([u, i], -1).astype(np.float64)
  for j, layer in enumerate(mlp):
    h = h @ np.asarray(layer['w'], np.float64) + np.asarray(layer['b'], np.float64)
    if j < len(mlp) - 1:
      h = np.maximum(h, 0)
  return h[..., 0]


def test_embedding_loss_and_matryoshka():
  U, Uh, I, Ih = _r(6, 4), _r(6, 4), _r(5, 4), _r(5, 4)
  ref = np.mean((Uh - U) ** 2) + np.mean((Ih - I) ** 2)
  np.testing.assert_allclose(losses.embedding_loss(U, Uh, I, Ih), ref, rtol=1e-5)
  Uhs, Ihs = _r(3, 6, 4), _r(3, 5, 4)
  ref = sum(np.mean((Uhs[p] - U) ** 2) + np.mean((Ihs[p] - I) ** 2)
            for p in range(3))
  np.testing.assert_allclose(losses.matryoshka_embedding_loss(U, Uhs, I, Ihs),
                             ref, rtol=1e-5)


def test_mf_score_mse_direct_and_gram_match_numpy():
  U, I = _r(7, 4), _r(9, 4)
  Uh, Ih = U + _r(7, 4, scale=0.1), I + _r(9, 4, scale=0.1)
  U64, I64, Uh64, Ih64 = (a.astype(np.float64) for a in (U, I, Uh, Ih))
  ref = np.mean((Uh64 @ Ih64.T - U64 @ I64.T) ** 2)
  np.testing.assert_allclose(mf.score_mse(U, I, Uh, Ih), ref, rtol=1e-5)
  np.testing.assert_allclose(mf.score_mse_gram(U, I, Uh, Ih), ref,
                             rtol=1e-5)
  np.testing.assert_allclose(
      mf.score_mse_gram(U, I, Uh, Ih, gram_uu=U.T @ U), ref, rtol=1e-5)
  # the gradients agree too
  gd = jax.grad(mf.score_mse, argnums=(2, 3))(U, I, Uh, Ih)
  gg = jax.grad(mf.score_mse_gram, argnums=(2, 3))(U, I, Uh, Ih)
  for a, b in zip(gd, gg):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_mf_score_mse_gram_is_accurate_for_tiny_errors():
  U, I = _r(64, 8, scale=3.0), _r(64, 8, scale=3.0)
  Uh, Ih = U + _r(64, 8, scale=1e-3), I + _r(64, 8, scale=1e-3)
  U64, I64 = U.astype(np.float64), I.astype(np.float64)
  ref = np.mean((Uh.astype(np.float64) @ Ih.astype(np.float64).T
                 - U64 @ I64.T) ** 2)
  np.testing.assert_allclose(mf.score_mse_gram(U, I, Uh, Ih), ref,
                             rtol=1e-3)


@pytest.fixture(scope='module')
def mlp():
  return ncf.init(jax.random.PRNGKey(0), 3, 3, 4)['mlp']


def test_ncf_prediction_losses_match_numpy(mlp):
  U, I = _r(10, 4), _r(10, 4)
  Uh, Ih = U + _r(10, 4, scale=0.3), I + _r(10, 4, scale=0.3)
  bias = _r(10)
  y = 1 / (1 + np.exp(-(_np_mlp(mlp, U, I) + bias)))
  yh = 1 / (1 + np.exp(-(_np_mlp(mlp, Uh, Ih) + bias)))
  target = ncf.target_probs(mlp, U, I, bias)
  np.testing.assert_allclose(target, y, rtol=1e-5)
  bce = np.mean(-y * np.log(yh) - (1 - y) * np.log(1 - yh))
  np.testing.assert_allclose(
      ncf.prediction_loss(mlp, Uh, Ih, target, 'bce', bias), bce,
      rtol=1e-5)
  np.testing.assert_allclose(
      ncf.prediction_loss(mlp, Uh, Ih, target, 'mse', bias),
      np.mean((yh - y) ** 2), rtol=1e-4)
  with pytest.raises(ValueError, match='kind'):
    ncf.prediction_loss(mlp, Uh, Ih, target, 'hinge')


def test_l1_with_mask():
  z = np.abs(_r(6, 8))
  mask = np.arange(8) < 5
  np.testing.assert_allclose(losses.l1_penalty(z), np.mean(z), rtol=1e-6)
  np.testing.assert_allclose(losses.l1_penalty(z, jnp.asarray(mask)),
                             z[:, :5].sum() / (6 * 5), rtol=1e-6)


def _np_kl(z, rho, m=None):
  # float32 like the model: near the upper clamp, 1 - rho_hat is ~1e-6 and its
  # float32 rounding visibly moves the log (as it does in PyTorch).
  f = np.float32
  mean = z.astype(np.float64).mean(0)[:m].astype(f)
  r = np.clip(mean, f(1e-6), f(1 - 1e-6))
  eps, rho = f(1e-6), f(rho)
  kl = (rho * np.log((rho + eps) / (r + eps))
        + (1 - rho) * np.log((1 - rho + eps) / (1 - r + eps)))
  return kl.sum(), int(np.sum(mean > 1 - 1e-6))


def test_kl_sparsity_clamp_count_and_mask():
  z = np.abs(_r(16, 8, scale=0.2))
  z[:, 1] = 0.0          # dead: clamped below
  z[:, 2] = 3.0          # mean > 1: clamped above, counted
  z[:, 6] = 5.0          # above too, but masked out below
  for rho in (0.05, 0.3):
    kl, n = losses.kl_sparsity(jnp.asarray(z), rho)
    ref, nref = _np_kl(z, rho)
    np.testing.assert_allclose(kl, ref, rtol=1e-5)
    assert int(n) == nref == 2
    kl, n = losses.kl_sparsity(jnp.asarray(z), rho, jnp.arange(8) < 5)
    ref, nref = _np_kl(z, rho, 5)
    np.testing.assert_allclose(kl, ref, rtol=1e-5)
    assert int(n) == nref == 1
  # the clamped unit gets no KL gradient
  g = jax.grad(lambda z: losses.kl_sparsity(z, 0.05)[0])(jnp.asarray(z))
  assert not np.any(np.asarray(g)[:, 2])


def test_no_gradient_reaches_recommender_quantities(mlp):
  U, I = _r(10, 4), _r(10, 4)
  Uh, Ih = U + 0.1, I - 0.1

  def f(mlp, U, I):
    t = ncf.target_probs(mlp, U, I)
    return (ncf.prediction_loss(mlp, Uh, Ih, t)
            + losses.embedding_loss(U, Uh, I, Ih)
            + mf.score_mse_gram(U, I, Uh, Ih)
            + mf.score_mse(U, I, Uh, Ih))

  g = jax.grad(f, argnums=(0, 1, 2))(mlp, U, I)
  for leaf in jax.tree.leaves(g):
    assert not np.any(np.asarray(leaf))


class ObjectiveVariantsTest(chex.TestCase):
  """The SAE objective gives the same value jitted and not (chex variants),
  and its prediction term is the scorer's."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_objective_terms(self):
    cfg = model.SAEConfig(dim=4, dict_size=6, normalize=True, pre_bias=True)
    sae = model.init(jax.random.PRNGKey(0), cfg)
    U, I = jnp.asarray(_r(5, 4)), jnp.asarray(_r(7, 4))
    scorer = make_scorer('mf', {})
    w = objective.LossWeights(0.1, 1.0, 0.0, 0.01, 0.05)

    @self.variant
    def f(sae, U, I):
      batch = objective.prepare_batch(U, I, cfg, scorer)
      return objective.objective(sae, w, batch, cfg, scorer, 0, 6)

    total, terms = f(sae, U, I)
    recon = lambda x: model.reconstruct(sae, x, cfg)
    np.testing.assert_allclose(
        terms['pred'], mf.score_mse(U, I, recon(U), recon(I)), rtol=1e-5)
    np.testing.assert_allclose(
        total, 0.1 * terms['emb'] + terms['pred'] + 0.01 * terms['kl'],
        rtol=1e-6)
    chex.assert_shape(total, ())
