"""Sparse autoencoders as pure functions over a params pytree (docs/method.md#sparse-autoencoder).

One SAE explains a recommender's user *and* item embeddings with shared
weights. Everything that changes shapes or code paths lives in the static,
hashable :class:`SAEConfig`; everything trainable lives in a params dict::

  {'W':     (n, d)   encoder rows; also the tied decoder (x_hat = z @ W),
   'b_lat': (n,)     latent (encoder) bias,
   'b_pre': (d,)     pre-bias, only when cfg.pre_bias (subtracted before the
                     encoder, added back after the decoder),
   'W_dec': (n, d)   only when not cfg.tied}

Forward pass for one sample ``x`` (d,):

  1. optional per-sample normalisation (MF-SAE): mu = mean(x),
     sigma = std(x, ddof=1), x_n = (x - mu) / (sigma + 1e-5);
  2. h = W (x_n - b_pre) + b_lat                           (n,)
  3. z = act(h) * mask                                     (n,)
     act: 'relu'; 'topk' (per-sample k largest, then ReLU);
     'batchtopk' (k * batch largest over the whole batch, then ReLU).
     ``mask = arange(n) < dict_size`` switches off latents beyond a config's
     dictionary size: they have zero activation and zero gradient.
     Pursuit encoders ('mp', 'omp') replace steps 2-3 by k greedy steps on
     the decoder's unit atoms (:func:`pursuit`; ``W`` and ``b_lat`` are then
     unused unless tied, where ``W`` is the decoder).
  4. x_hat = (z @ W_dec + b_pre) * sigma + mu   (W_dec = W when tied;
     the sample's own mu, sigma; without normalisation just z @ W_dec + b_pre).

Matmul precision (``cfg.precision``, docs/method.md#precision): 'float32'
(default; every product exact in float32, ``Precision.HIGHEST``), 'tf32'
(``Precision.HIGH``: TensorFloat-32 on GPUs, 3-pass bfloat16 on TPUs, float32
on a CPU) or 'bfloat16' (operands cast to bfloat16, products accumulated in
float32, on every backend). Training uses the sweep's; evaluation and
analysis encode and decode with :func:`exact` (or :func:`per_sample`) configs,
whatever precision trained the SAE (:mod:`monosem_jax.precision`).

Matryoshka: ``cfg.prefixes = (m_1 < ... < m_P)``; z is computed once and
x_hat^(m) decodes it with units >= m zeroed. :func:`forward` always returns a
``(P, ..., d)`` stack of reconstructions whose last entry is the full one
(``P = 1`` without Matryoshka).

Initialisation (docs/method.md#sparse-autoencoder): W ~ U(+-1/sqrt(d)) (PyTorch ``nn.Linear``
default), biases zero, an untied decoder starts equal to W. Each row of W is
drawn from ``fold_in(key, row)``, so the first m rows of a size-M init equal a
size-m init ("prefix-stable"): a size-m config inside a size-M sweep starts
exactly like a size-m SAE alone.

Example:
  >>> import jax, jax.numpy as jnp
  >>> cfg = SAEConfig(dim=4, dict_size=6, normalize=True, pre_bias=True)
  >>> p = init(jax.random.PRNGKey(0), cfg)
  >>> x = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
  >>> z, x_hats = forward(p, x, cfg)
  >>> z.shape, x_hats.shape
  ((3, 6), (1, 3, 4))
  >>> decode(p, encode(p, x, cfg), cfg, stats=normalize(x)[1]).shape
  (3, 4)
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from monosem_jax import precision as precision_lib

Params = dict
NORM_EPS = 1e-5
ACTIVATIONS = ('relu', 'topk', 'batchtopk', 'mp', 'omp')
#: The pursuit encoders (docs/method.md#pursuit-encoders): k greedy steps of
#: matching pursuit ('mp') or orthogonal matching pursuit ('omp') on the
#: decoder's own unit-norm rows.
PURSUITS = ('mp', 'omp')
#: A decoder row shorter than this is treated as this long (no 0 / 0).
ATOM_EPS = 1e-8
#: OMP's least-squares refit solves (S S^T + OMP_RIDGE I) a = S r0 with
#: unit atoms S (diagonal 1): a ridge far below the float32 data scale that
#: keeps the k x k solve finite when two selected atoms are (nearly) equal.
OMP_RIDGE = 1e-5
#: ``cfg.precision`` -> the ``jax.lax.Precision`` of its products
#: (:data:`monosem_jax.precision.TRAINING`; see :func:`matmul`).
PRECISIONS = precision_lib.TRAINING


@dataclasses.dataclass(frozen=True)
class SAEConfig:
  """Static SAE architecture (hashable; closed over by jit).

  Attributes:
    dim: embedding width.
    dict_size: number of latents n (in a sweep, the maximum M; a config
      uses its first ``dict_size`` of them by mask).
    tied: decoder is W (True) or a separate ``W_dec``.
    normalize: per-sample normalise / denormalise (the MF-SAE of
      docs/method.md#sparse-autoencoder; each kind's settings are in
      monosem_jax/recommenders/kinds.py).
    pre_bias: learn ``b_pre`` (centring) subtracted before encoding and added
      after decoding.
    activation: 'relu' | 'topk' | 'batchtopk' | 'mp' | 'omp' (the pursuit
      encoders, :func:`pursuit`).
    k_max: static upper bound on k for the TopK activations and the number
      of pursuit steps (per-config k is applied by a rank or step mask,
      ``1 <= k <= k_max``; 'omp' also needs ``k_max <= dim``).
    mp_signed: pursuit coefficients of either sign (atoms chosen by
      ``|<r, a_j>|``); False: non-negative (atoms chosen by ``<r, a_j>``,
      coefficients >= 0). Pursuit activations only.
    prefixes: Matryoshka prefix sizes, strictly increasing, each <= dict_size;
      () for a plain SAE.
    precision: 'float32' | 'tf32' | 'bfloat16', the encoder and decoder
      products (:func:`matmul`).
  """
  dim: int
  dict_size: int
  tied: bool = True
  normalize: bool = False
  pre_bias: bool = False
  activation: str = 'relu'
  k_max: int = 0
  prefixes: tuple[int, ...] = ()
  precision: str = 'float32'
  mp_signed: bool = False

  def __post_init__(self):
    object.__setattr__(self, 'prefixes', tuple(int(m) for m in self.prefixes))
    if self.dim < 1 or self.dict_size < 1:
      raise ValueError(f'SAEConfig: d={self.dim} and dict_size={self.dict_size} '
                       'must be >= 1')
    if self.activation not in ACTIVATIONS:
      raise ValueError(f'SAEConfig.activation={self.activation!r}: expected one '
                       f'of {ACTIVATIONS}')
    if self.activation != 'relu' and not 1 <= self.k_max <= self.dict_size:
      raise ValueError(f'SAEConfig.k_max={self.k_max}: activation '
                       f'{self.activation!r} needs 1 <= k_max <= dict_size='
                       f'{self.dict_size}')
    if self.activation == 'omp' and self.k_max > self.dim:
      raise ValueError(f'SAEConfig.k_max={self.k_max}: orthogonal matching '
                       f'pursuit needs k_max <= dim={self.dim} (d atoms '
                       'already span every input)')
    if self.mp_signed and self.activation not in PURSUITS:
      raise ValueError(f'SAEConfig.mp_signed=True: only the pursuit '
                       f'activations {PURSUITS} have signed coefficients, not '
                       f'{self.activation!r}')
    p = self.prefixes
    if p and (any(b <= a for a, b in zip(p, p[1:])) or p[0] < 1
              or p[-1] > self.dict_size):
      raise ValueError(f'SAEConfig.prefixes={p}: must be strictly increasing '
                       f'sizes in [1, dict_size={self.dict_size}]')
    if self.precision not in PRECISIONS:
      raise ValueError(f'SAEConfig.precision={self.precision!r}: expected one '
                       f'of {tuple(PRECISIONS)}')

  @property
  def prefix_sizes(self) -> tuple[int, ...]:
    """The reconstruction prefixes; ``(dict_size,)`` without Matryoshka."""
    if not self.prefixes:
      return (self.dict_size,)
    return self.prefixes if self.prefixes[-1] == self.dict_size else (
        *self.prefixes, self.dict_size)


class NormStats(NamedTuple):
  """Per-sample statistics ``mu, sigma``: ``(..., 1)`` each."""
  mu: jax.Array
  sigma: jax.Array


def init(key: jax.Array, cfg: SAEConfig, dtype=jnp.float32) -> Params:
  """Initial params: W ~ U(+-1/sqrt(d)) row-wise from ``fold_in(key, j)``.

  Args:
    key: PRNG key.
    cfg: the architecture.

  Returns:
    The params dict (see module docstring).
  """
  bound = 1.0 / np.sqrt(cfg.dim)
  rows = jnp.arange(cfg.dict_size)
  w = jax.vmap(lambda j: jax.random.uniform(
      jax.random.fold_in(key, j), (cfg.dim,), dtype, -bound, bound))(rows)
  params = {'W': w, 'b_lat': jnp.zeros((cfg.dict_size,), dtype)}
  if cfg.pre_bias:
    params['b_pre'] = jnp.zeros((cfg.dim,), dtype)
  if not cfg.tied:
    params['W_dec'] = w
  return params


def exact(cfg: SAEConfig) -> SAEConfig:
  """``cfg`` with exact float32 products (``Precision.HIGHEST``,
  :data:`monosem_jax.precision.EXACT`), the config evaluation and analysis
  encode and decode with, whatever precision trained the SAE.

  >>> exact(SAEConfig(dim=2, dict_size=2, precision='tf32')).precision
  'float32'
  """
  return dataclasses.replace(cfg, precision='float32')


def per_sample(cfg: SAEConfig) -> SAEConfig:
  """The config that encodes every sample on its own.

  BatchTopK spends ``k * batch`` activations over a whole batch, so a
  sample's code depends on the others encoded with it; for analysis (concept
  tables, interventions) each sample keeps its own ``k`` largest latents
  (TopK with the same ``k``). Other activations are kept (a pursuit code is
  per sample by construction). Analysis is exact
  whatever precision trained the SAE: the products are float32.

  >>> c = per_sample(SAEConfig(dim=4, dict_size=8, activation='batchtopk',
  ...                          k_max=2, precision='bfloat16'))
  >>> c.activation, c.precision
  ('topk', 'float32')
  """
  activation = 'topk' if cfg.activation == 'batchtopk' else cfg.activation
  return dataclasses.replace(exact(cfg), activation=activation)


def latent_mask(active: jax.Array | int, size: int) -> jax.Array:
  """``(n,)`` bool, True for the first ``dict_size`` latents."""
  return jnp.arange(size) < active


def normalize(x: jax.Array, eps: float = NORM_EPS
              ) -> tuple[jax.Array, NormStats]:
  """Per-sample normalisation of ``x`` ``(..., d)`` (docs/method.md#sparse-autoencoder).

  Returns:
    ``x_n = (x - mu) / (sigma + eps)`` and ``NormStats(mu, sigma)`` with
    ``mu = mean(x)``, ``sigma = std(x, ddof=1)`` over the last axis.
  """
  mu = jnp.mean(x, -1, keepdims=True)
  sigma = jnp.std(x, -1, keepdims=True, ddof=1)
  return (x - mu) / (sigma + eps), NormStats(mu, sigma)


def prepare(x: jax.Array, cfg: SAEConfig
            ) -> tuple[jax.Array, NormStats | None]:
  """The encoder input and stats: normalised when ``cfg.normalize``.

  It does not depend on the params, so a sweep computes it once per batch for
  all configs.
  """
  if cfg.normalize:
    return normalize(x)
  return x, None


def matmul(a: jax.Array, b: jax.Array, cfg: SAEConfig) -> jax.Array:
  """``a @ b`` at ``cfg.precision``, the result in float32.

  'bfloat16' casts both operands to bfloat16 and accumulates in float32
  (``preferred_element_type``); the gradients flow through the casts, so the
  backward products are bfloat16 too. 'float32' and 'tf32' pass
  ``Precision.HIGHEST`` / ``HIGH`` (a CPU computes both in float32),
  'bfloat16' ``DEFAULT`` (:func:`monosem_jax.precision.training`).

  >>> cfg = SAEConfig(dim=2, dict_size=2, precision='bfloat16')
  >>> float(matmul(jnp.array([[1.001]]), jnp.array([[1.0]]), cfg)[0, 0])
  1.0
  """
  precision = precision_lib.training(cfg.precision)
  if cfg.precision == 'bfloat16':
    return jnp.matmul(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16),
                      precision=precision, preferred_element_type=jnp.float32)
  return jnp.matmul(a, b, precision=precision)


def pre_activation(params: Params, x_in: jax.Array, cfg: SAEConfig
                   ) -> jax.Array:
  """``h = W (x_in - b_pre) + b_lat``: ``(..., d) -> (..., n)``.

  Written as ``x_in W^T - b_pre W^T + b_lat`` so that, under ``vmap`` over
  configs with a shared ``x_in``, the first product is one large matmul of
  the batch against all configs' encoders.
  """
  h = matmul(x_in, params['W'].T, cfg) + params['b_lat']
  if cfg.pre_bias:
    h = h - matmul(params['W'], params['b_pre'], cfg)
  return h


def _rank_select(scores: jax.Array, k: jax.Array, k_max: int) -> jax.Array:
  """Bool mask of the ``k`` largest entries of each row of ``scores`` (R, n).

  ``k`` may be traced (per-config); ``k_max`` is static. Ties go to the lower
  index (``lax.top_k`` order).
  """
  _, idx = jax.lax.top_k(scores, k_max)
  keep = jnp.arange(k_max) < k
  rows = jnp.arange(scores.shape[0])[:, None]
  sel = jnp.zeros(scores.shape, bool)
  return sel.at[rows, idx].set(jnp.broadcast_to(keep, idx.shape))


def activate(h: jax.Array, cfg: SAEConfig, k: jax.Array | int | None = None,
             mask: jax.Array | None = None) -> jax.Array:
  """Sparse activation ``z`` of pre-activations ``h`` ``(..., n)``.

  Args:
    h: pre-activations.
    cfg: gives the kind and the static ``k_max``.
    k: per-sample active count for 'topk'; per-sample *average* for
      'batchtopk' (``k * batch`` units over the whole batch). Ignored by
      'relu'. Defaults to ``cfg.k_max``.
    mask: ``(n,)`` bool latent mask; masked latents are never selected and
      output exactly 0 with zero gradient.

  Returns:
    ``z`` with the shape of ``h``, non-negative.

  Raises:
    ValueError: a pursuit activation (it codes inputs, not pre-activations:
      :func:`encode_prepared`).
  """
  if cfg.activation in PURSUITS:
    raise ValueError(f'activate: {cfg.activation!r} is a pursuit encoder of '
                     'the inputs, not an activation of pre-activations; call '
                     'encode_prepared')
  if mask is not None:
    h_sel = jnp.where(mask, h, -jnp.inf)
  else:
    h_sel = h
  if cfg.activation == 'relu':
    z = jax.nn.relu(h)
  else:
    k = cfg.k_max if k is None else k
    n = h.shape[-1]
    if cfg.activation == 'topk':
      rows = h_sel.reshape(-1, n)
      sel = _rank_select(rows, k, cfg.k_max).reshape(h.shape)
    else:  # batchtopk
      flat = h_sel.reshape(1, -1)
      batch = flat.shape[1] // n
      sel = _rank_select(flat, k * batch, cfg.k_max * batch).reshape(h.shape)
    z = jnp.where(sel, jax.nn.relu(h), 0.0)
  if mask is not None:
    z = jnp.where(mask, z, 0.0)
  return z


def decoder_weights(params: Params, cfg: SAEConfig) -> jax.Array:
  """``(n, d)`` decoder matrix (W when tied)."""
  return params['W'] if cfg.tied else params['W_dec']


def _finish(params, y, cfg, stats):
  if cfg.pre_bias:
    y = y + params['b_pre']
  if cfg.normalize:
    if stats is None:
      raise ValueError('decode: cfg.normalize needs the samples\' NormStats')
    y = y * stats.sigma + stats.mu
  return y


def decode(params: Params, z: jax.Array, cfg: SAEConfig,
           stats: NormStats | None = None) -> jax.Array:
  """``x_hat = (z @ W_dec + b_pre) * sigma + mu``: ``(..., n) -> (..., d)``.

  Args:
    stats: the samples' own :class:`NormStats` (required iff
      ``cfg.normalize``; docs/method.md#interventions decode with the edited vector's own
      mu and sigma).
  """
  return _finish(params, matmul(z, decoder_weights(params, cfg), cfg), cfg,
                 stats)


def decode_prefixes(params: Params, z: jax.Array, cfg: SAEConfig,
                    stats: NormStats | None = None) -> jax.Array:
  """Matryoshka reconstructions ``(P, ..., d)`` for ``cfg.prefix_sizes``.

  Entry p decodes z with latents >= prefix_sizes[p] zeroed; the last entry is
  the full reconstruction. Computed as a cumulative sum of block
  contributions, so the cost is that of one full decode.
  """
  w = decoder_weights(params, cfg)
  bounds = (0, *cfg.prefix_sizes)
  parts = [matmul(z[..., a:b], w[a:b], cfg)
           for a, b in zip(bounds[:-1], bounds[1:])]
  y = jnp.cumsum(jnp.stack(parts), axis=0)
  return _finish(params, y, cfg, stats)


def atoms(params: Params, cfg: SAEConfig) -> tuple[jax.Array, jax.Array]:
  """The decoder's unit rows ``a_j = w_j / ||w_j||`` ``(n, d)`` and the norms
  ``||w_j||`` ``(n,)`` (at least :data:`ATOM_EPS`)."""
  w = decoder_weights(params, cfg)
  norm = jnp.maximum(jnp.sqrt(jnp.sum(jnp.square(w), -1)), ATOM_EPS)
  return w / norm[:, None], norm


def _pursuit_scores(r, unit, allowed, cfg):
  """Selection scores ``(R, n)`` of residuals ``r`` ``(R, d)``: the
  correlations (their absolute values when signed), ``-inf`` where not
  ``allowed``. Not differentiated: the choice of an atom is not."""
  corr = jax.lax.stop_gradient(matmul(r, unit.T, cfg))
  score = jnp.abs(corr) if cfg.mp_signed else corr
  return jnp.where(allowed, score, -jnp.inf)


def _best(score: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per row of ``score`` ``(R, n)``: the first index of the largest entry
  ``(R,)`` and that entry. (A max and a min over indices: on a CPU several
  times faster than ``argmax``; the same ties, to the lower index.)"""
  n = score.shape[-1]
  top = jnp.max(score, -1)
  j = jnp.min(jnp.where(score == top[:, None], jnp.arange(n), n), -1)
  return jnp.minimum(j, n - 1), top   # a NaN row: index n-1, value NaN


def _matching_pursuit(r0, unit, k, allowed, cfg):
  """Plain MP: ``k`` steps, an atom may be chosen again. ``(R, n)`` unit-atom
  coefficients."""

  def step(r, t):
    j, _ = _best(_pursuit_scores(r, unit, allowed, cfg))         # (R,)
    a_j = unit[j]                                                # (R, d)
    coef = jnp.sum(r * a_j, -1)                                  # <r, a_j>
    if not cfg.mp_signed:
      coef = jax.nn.relu(coef)
    coef = jnp.where(t < k, coef, 0.0)
    return r - coef[:, None] * a_j, (j, coef)

  _, (idx, coef) = jax.lax.scan(step, r0, jnp.arange(cfg.k_max), unroll=True)   # (K, R)
  rows = jnp.arange(r0.shape[0])[:, None]
  return jnp.zeros((r0.shape[0], unit.shape[0]), r0.dtype).at[
      rows, idx.T].add(coef.T)


def _refit(r0, s, valid, signed):
  """Least-squares coefficients ``(R, K)`` of ``r0`` ``(R, d)`` on the
  selected unit atoms ``s`` ``(R, K, d)`` (rows of invalid slots are 0 and get
  coefficient 0): ``(S S^T + diag(~valid) + OMP_RIDGE I) a = S r0``,
  clipped at 0 when not ``signed``."""
  kk = s.shape[1]
  gram = jnp.einsum('rkd,rld->rkl', s, s, precision='highest')
  gram = (gram + jnp.eye(kk, dtype=s.dtype) * OMP_RIDGE
          + jax.vmap(jnp.diag)((~valid).astype(s.dtype)))
  rhs = jnp.einsum('rkd,rd->rk', s, r0, precision='highest')
  a = jnp.linalg.solve(gram, rhs[..., None])[..., 0]
  a = jnp.where(valid, a, 0.0)
  return a if signed else jax.nn.relu(a)


def _orthogonal_matching_pursuit(r0, unit, k, allowed, cfg):
  """OMP: ``k`` steps, each choosing a new atom and refitting all chosen
  atoms' coefficients (:func:`_refit`). ``(R, n)`` unit-atom coefficients."""
  n_rows, n = r0.shape[0], unit.shape[0]
  rows = jnp.arange(n_rows)[:, None]
  k_max = cfg.k_max

  def step(carry, t):
    r, idx, valid, _ = carry
    score = _pursuit_scores(r, unit, allowed, cfg)
    # an atom is chosen once: the chosen ones score -inf
    score = score.at[rows, idx].min(jnp.where(valid, -jnp.inf, jnp.inf))
    j, top = _best(score)
    new = (t < k) & (top > 0)
    idx = idx.at[:, t].set(jnp.where(new, j, 0).astype(idx.dtype))
    valid = valid.at[:, t].set(new)
    s = unit[idx] * valid[..., None]                            # (R, K, d)
    a = _refit(r0, s, valid, cfg.mp_signed)
    return (r0 - jnp.einsum('rk,rkd->rd', a, s, precision='highest'), idx,
            valid, a), None

  init = (r0, jnp.zeros((n_rows, k_max), jnp.int32),
          jnp.zeros((n_rows, k_max), bool),
          jnp.zeros((n_rows, k_max), r0.dtype))
  (_, idx, _, a), _ = jax.lax.scan(step, init, jnp.arange(k_max), unroll=True)
  return jnp.zeros((n_rows, n), r0.dtype).at[rows, idx].add(a)


def pursuit(params: Params, x_in: jax.Array, cfg: SAEConfig, k=None,
            mask=None) -> jax.Array:
  """Pursuit codes ``z`` ``(..., n)`` of a prepared input ``x_in`` ``(..., d)``
  (docs/method.md#pursuit-encoders).

  Per sample, on the unit atoms ``a_j`` of the decoder (:func:`atoms`), from
  ``r = x_in - b_pre``, ``k`` times: choose ``j = argmax <r, a_j>`` (``|.|``
  when ``cfg.mp_signed``; ties to the lower index; masked latents never);
  'mp' adds ``c_j += <r, a_j>`` (clipped at 0 unless signed) and subtracts
  it from ``r`` (an atom may come back); 'omp' takes a new atom each step and
  refits the coefficients of all chosen atoms by least squares (ridge
  :data:`OMP_RIDGE`; clipped at 0 unless signed). Non-negative pursuit stops
  early (coefficients 0) when no atom correlates positively.

  The code is in the decoder's own units, ``z_j = c_j / ||w_j||``, so that
  :func:`decode` gives ``sum_j c_j a_j + b_pre``: the pursuit's
  reconstruction. Gradients flow through the coefficients, the residuals and
  the atoms; the choice of the atoms is not differentiated.

  Args:
    params, x_in, cfg: the SAE, its prepared input, its config ('mp' or
      'omp'; ``k_max`` steps are run, static).
    k: the steps that count (traced, per config; default ``cfg.k_max``):
      steps ``t >= k`` change nothing.
    mask: ``(n,)`` bool latent mask (a config's dictionary size).

  Returns:
    ``z`` with at most ``k`` non-zero entries per sample, each sample coded
    on its own (independent of the batch).
  """
  if cfg.activation not in PURSUITS:
    raise ValueError(f'pursuit: cfg.activation={cfg.activation!r}; expected '
                     f'one of {PURSUITS} (as_pursuit converts a config)')
  k = cfg.k_max if k is None else k
  unit, norm = atoms(params, cfg)
  n, d = unit.shape
  r0 = x_in - params['b_pre'] if cfg.pre_bias else x_in
  lead = r0.shape[:-1]
  r0 = r0.reshape(-1, d)
  allowed = jnp.ones((n,), bool) if mask is None else mask
  run = (_matching_pursuit if cfg.activation == 'mp'
         else _orthogonal_matching_pursuit)
  c = run(r0, unit, k, allowed, cfg)
  return (c / norm).reshape(*lead, n)


def as_pursuit(cfg: SAEConfig, k_max: int, method: str = 'omp',
               signed: bool = False) -> SAEConfig:
  """``cfg`` with its encoder replaced by pursuit on its own decoder
  (inference-time pursuit of any trained dictionary, float32).

  >>> c = as_pursuit(SAEConfig(dim=4, dict_size=8, activation='topk',
  ...                          k_max=2, normalize=True, pre_bias=True),
  ...                3, 'omp', signed=True)
  >>> c.activation, c.k_max, c.mp_signed
  ('omp', 3, True)
  """
  return dataclasses.replace(cfg, activation=method, k_max=int(k_max),
                             mp_signed=bool(signed), precision='float32')


def pursuit_encode(params: Params, x: jax.Array, cfg: SAEConfig, k, *,
                   orthogonal: bool = True, signed: bool = False,
                   k_max: int | None = None, mask=None) -> jax.Array:
  """Codes ``(..., n)`` of raw ``x`` ``(..., d)`` by pursuit on the decoder of
  any trained SAE (TopK, ReLU, ...): :func:`encode` under
  :func:`as_pursuit`. Decode them with :func:`decode` and ``cfg``.

  Args:
    k: pursuit steps (may be traced, e.g. per config under ``vmap``; then
      give the static ``k_max``).
    orthogonal: OMP (True) or plain MP.
    signed: coefficients of either sign.
    k_max: static bound on ``k`` (default ``k``, which must then be an int).
    mask: ``(n,)`` bool latent mask.
  """
  k_max = int(k) if k_max is None else int(k_max)
  pcfg = as_pursuit(cfg, k_max, 'omp' if orthogonal else 'mp', signed)
  return encode(params, x, pcfg, k, mask)


def encode_prepared(params: Params, x_in: jax.Array, cfg: SAEConfig,
                    k=None, mask=None) -> jax.Array:
  """Latents from an already :func:`prepare`-d input (:func:`pursuit` for the
  pursuit encoders)."""
  if cfg.activation in PURSUITS:
    return pursuit(params, x_in, cfg, k, mask)
  return activate(pre_activation(params, x_in, cfg), cfg, k, mask)


def encode(params: Params, x: jax.Array, cfg: SAEConfig, k=None,
           mask=None) -> jax.Array:
  """Latents ``z`` ``(..., n)`` of raw embeddings ``x`` ``(..., d)``."""
  return encode_prepared(params, prepare(x, cfg)[0], cfg, k, mask)


def forward_prepared(params: Params, x_in: jax.Array,
                     stats: NormStats | None, cfg: SAEConfig, k=None,
                     mask=None) -> tuple[jax.Array, jax.Array]:
  """:func:`forward` on a prepared input: ``(z, x_hats (P, ..., d))``."""
  z = encode_prepared(params, x_in, cfg, k, mask)
  return z, decode_prefixes(params, z, cfg, stats)


def forward(params: Params, x: jax.Array, cfg: SAEConfig, k=None,
            mask=None) -> tuple[jax.Array, jax.Array]:
  """Encode and decode raw embeddings ``x`` ``(..., d)``.

  Returns:
    ``z`` ``(..., n)`` and the Matryoshka stack ``x_hats`` ``(P, ..., d)``
    (``x_hats[-1]`` is the full reconstruction; ``P = 1`` without prefixes).
  """
  x_in, stats = prepare(x, cfg)
  return forward_prepared(params, x_in, stats, cfg, k, mask)


def reconstruct(params: Params, x: jax.Array, cfg: SAEConfig, k=None,
                mask=None) -> jax.Array:
  """Full reconstruction ``(..., d)``."""
  return forward(params, x, cfg, k, mask)[1][-1]


def trim(params: Params, dict_size: int) -> dict[str, Any]:
  """Params of the first ``dict_size`` latents (a size-m SAE's params)."""
  out = dict(params)
  out['W'] = params['W'][:dict_size]
  out['b_lat'] = params['b_lat'][:dict_size]
  if 'W_dec' in params:
    out['W_dec'] = params['W_dec'][:dict_size]
  return out
