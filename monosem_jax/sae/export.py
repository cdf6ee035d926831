"""One trained SAE as two portable files (docs/method.md#exported-saes).

A folder ``DIR/`` holds:

* ``sae.safetensors``: float32 tensors named like SAELens's::

    W_enc (d, m)   encoder, W^T
    b_enc (m,)     latent bias b_lat
    W_dec (m, d)   decoder (a copy of W_enc^T when the SAE is tied)
    b_dec (d,)     pre-bias b_pre (zeros without one; cfg 'pre_bias')

* ``cfg.json``: ``format`` / ``format_version``, the architecture (``dim``,
  ``dict_size``, ``activation`` as trained, ``encode_activation`` as
  applied here, ``k``, ``mp_signed`` (pursuit encoders; read as false when
  absent), Matryoshka ``prefixes``, ``tied``, ``pre_bias``, ``normalize``), SAELens-style aliases of them (``d_in``, ``d_sae``,
  ``architecture``, ``activation_fn_kwargs``, ``apply_b_dec_to_input``,
  ``normalize_activations``) and whatever the writer adds (a sweep's
  hyper-parameters and the recommender's provenance,
  :mod:`monosem_jax.analysis.export`).

Encoding, per sample (the analysis's rule,
:func:`monosem_jax.sae.model.per_sample`; BatchTopK keeps each sample's own
``k`` largest latents, so a code never depends on the batch; no threshold is
learned)::

  x_n   = (x - mu) / (sigma + 1e-5)        only when normalize (mu, sigma:
                                           the sample's mean and std, ddof 1)
  z     = act((x_n - b_dec) @ W_enc + b_enc)
  x_hat = (z @ W_dec + b_dec) * sigma + mu

A pursuit SAE ('mp' / 'omp', :func:`monosem_jax.sae.model.pursuit`) codes
``x_n - b_dec`` by ``k`` greedy steps on the unit rows of ``W_dec`` instead
(``W_enc`` and ``b_enc`` unused), each sample on its own by construction.

both computed by :mod:`monosem_jax.sae.model` itself (jitted), so there is
one definition of the SAE. :func:`load_sae` depends on this package's
``sae`` layer, numpy and safetensors only: no sweep, no orbax.

Example:
  >>> import tempfile
  >>> cfg = model.SAEConfig(dim=4, dict_size=6, normalize=True, pre_bias=True)
  >>> out = os.path.join(tempfile.mkdtemp(), 'sae')
  >>> out = write_sae(out, model.init(jax.random.PRNGKey(0), cfg), cfg)
  >>> sae = load_sae(out)
  >>> x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
  >>> sae.encode(x).shape, sae.decode(sae.encode(x), x).shape, sae.dict_size
  ((3, 6), (3, 4), 6)
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy

from monosem_jax import files
from monosem_jax.errors import MonosemError
from monosem_jax.sae import model

FORMAT = 'monosem-jax-sae'
FORMAT_VERSION = 1
WEIGHTS = 'sae.safetensors'
CFG = 'cfg.json'
FILES = (CFG, WEIGHTS)
#: Tensor names (SAELens's) and their shapes in terms of (d, m).
TENSORS = {'W_enc': ('d', 'm'), 'b_enc': ('m',), 'W_dec': ('m', 'd'),
           'b_dec': ('d',)}
#: cfg.json keys the loader needs.
REQUIRED = ('format', 'format_version', 'dim', 'dict_size', 'activation', 'k',
            'prefixes', 'tied', 'pre_bias', 'normalize')


class ExportError(MonosemError):
  """An export folder that cannot be written or read (names file and field)."""


# ---- the format -------------------------------------------------------------

def to_tensors(params: model.Params, cfg: model.SAEConfig
               ) -> dict[str, np.ndarray]:
  """SAELens-named float32 tensors of an SAE's params (module docstring)."""
  w = np.asarray(params['W'], np.float32)
  b_pre = params.get('b_pre') if cfg.pre_bias else None
  return {'W_enc': np.ascontiguousarray(w.T),
          'b_enc': np.asarray(params['b_lat'], np.float32),
          'W_dec': np.array(model.decoder_weights(params, cfg), np.float32),
          'b_dec': (np.asarray(b_pre, np.float32) if b_pre is not None
                    else np.zeros(cfg.dim, np.float32))}


def describe(cfg: model.SAEConfig, k: int | None) -> dict[str, Any]:
  """The architecture fields of ``cfg.json`` for a config and its ``k``.

  >>> d = describe(model.SAEConfig(4, 8, activation='batchtopk', k_max=2,
  ...                               normalize=True, pre_bias=True), 2)
  >>> d['encode_activation'], d['architecture'], d['normalize_activations']
  ('topk', 'topk', 'layer_norm')
  """
  topk = cfg.activation != 'relu'
  k = int(k) if topk else None
  pursuit = cfg.activation in model.PURSUITS
  return {
      'format': FORMAT, 'format_version': FORMAT_VERSION,
      'dim': cfg.dim, 'dict_size': cfg.dict_size,
      'activation': cfg.activation,
      'encode_activation': model.per_sample(cfg).activation,
      'k': k, 'mp_signed': cfg.mp_signed,
      'prefixes': list(cfg.prefix_sizes) if cfg.prefixes else [],
      'tied': cfg.tied, 'pre_bias': cfg.pre_bias, 'normalize': cfg.normalize,
      'norm_eps': model.NORM_EPS, 'dtype': 'float32',
      # the same fields under SAELens's names
      'd_in': cfg.dim, 'd_sae': cfg.dict_size,
      'architecture': (cfg.activation if pursuit else 'topk' if topk
                       else 'standard'),
      'activation_fn_kwargs': ({'k': k, 'signed': cfg.mp_signed} if pursuit
                               else {'k': k} if topk else {}),
      'apply_b_dec_to_input': cfg.pre_bias,
      'normalize_activations': 'layer_norm' if cfg.normalize else 'none',
  }


def is_export(path: str) -> bool:
  """Whether ``path`` is a folder holding an export and nothing else."""
  if not os.path.isdir(path):
    return False
  names = set(os.listdir(path))
  if CFG not in names or not names <= set(FILES):
    return False
  try:
    with open(os.path.join(path, CFG)) as f:
      return json.load(f).get('format') == FORMAT
  except (OSError, ValueError, AttributeError):
    return False


def write_sae(out: str, params: model.Params, cfg: model.SAEConfig,
              k: int | None = None, info: Mapping[str, Any] | None = None
              ) -> str:
  """Writes ``out/sae.safetensors`` and ``out/cfg.json`` as one set.

  Both are written into a temporary sibling folder that then replaces
  ``out`` whole (:func:`monosem_jax.files.atomic_directory`): a reader sees
  the previous export or the new one, never a mix.

  Args:
    out: the folder; it may not exist, be empty, or hold a previous export
      (replaced).
    params: the SAE's params, trimmed to ``cfg.dict_size``.
    cfg: its architecture (``dict_size`` = its own dictionary size).
    k: its TopK / BatchTopK ``k`` (default ``cfg.k_max``; ignored for ReLU).
    info: more ``cfg.json`` fields (hyper-parameters, provenance); they may
      not override the architecture fields.

  Returns:
    The absolute path of ``out``.

  Raises:
    ExportError: ``out`` is a file or a folder holding something else, or
      ``info`` repeats an architecture field.
  """
  out = os.path.abspath(os.fspath(out))
  if os.path.exists(out) and not (is_export(out) or (
      os.path.isdir(out) and not os.listdir(out))):
    what = 'a file' if not os.path.isdir(out) else (
        f'a folder holding {", ".join(sorted(os.listdir(out))[:5])}')
    raise ExportError(f'--out={out} is {what}, not a previous SAE export '
                      f'({" + ".join(FILES)}); pass a new or empty folder')
  k = cfg.k_max if k is None else k
  cfg_json = describe(cfg, k)
  clash = sorted(set(info or {}) & set(cfg_json))
  if clash:
    raise ExportError(f'write_sae: info repeats the architecture field(s) '
                      f'{clash}')
  cfg_json.update(files.jsonable(dict(info or {})))
  tensors = to_tensors(params, cfg)
  with files.atomic_directory(out) as tmp:
    safetensors.numpy.save_file(tensors, os.path.join(tmp, WEIGHTS),
                                metadata={'format': FORMAT,
                                          'format_version': str(FORMAT_VERSION)})
    with open(os.path.join(tmp, CFG), 'w') as f:
      f.write(json.dumps(cfg_json, indent=2) + '\n')
  return out


# ---- loading ----------------------------------------------------------------

def _read_cfg(path: str) -> dict:
  name = os.path.join(path, CFG)
  try:
    with open(name) as f:
      cfg = json.load(f)
  except ValueError as e:
    raise ExportError(f'{name}: not JSON ({e})') from None
  if not isinstance(cfg, dict):
    raise ExportError(f'{name}: expected a JSON object')
  missing = [key for key in REQUIRED if key not in cfg]
  if missing:
    raise ExportError(f'{name}: missing field(s) {missing}; not a '
                      f'{FORMAT} export')
  if cfg['format'] != FORMAT or cfg['format_version'] != FORMAT_VERSION:
    raise ExportError(
        f'{name}: format {cfg["format"]!r} version {cfg["format_version"]!r};'
        f' this monosem-jax reads {FORMAT!r} version {FORMAT_VERSION} '
        '(export the SAE again with this version)')
  return cfg


def sae_config(cfg: Mapping[str, Any], where: str = CFG) -> model.SAEConfig:
  """The :class:`SAEConfig` a ``cfg.json`` describes (``k_max = k``).

  Raises:
    ExportError: a field out of range, naming it (``where``: the file).
  """
  try:
    k = cfg['k']
    topk = cfg['activation'] != 'relu'
    if topk and not (isinstance(k, int) and k >= 1):
      raise ValueError(f'k={k!r}: activation {cfg["activation"]!r} needs an '
                       'integer k >= 1')
    prefixes = tuple(cfg['prefixes'])
    signed = cfg.get('mp_signed', False)   # absent before pursuit encoders
    if signed not in (True, False):
      raise ValueError(f'mp_signed={signed!r}: expected true or false')
    return model.SAEConfig(
        dim=int(cfg['dim']), dict_size=int(cfg['dict_size']),
        tied=bool(cfg['tied']), normalize=bool(cfg['normalize']),
        pre_bias=bool(cfg['pre_bias']), activation=cfg['activation'],
        k_max=k if topk else 0, prefixes=prefixes, mp_signed=signed)
  except (TypeError, ValueError) as e:
    raise ExportError(f'{where}: {e}') from None


def _params(tensors: Mapping[str, np.ndarray], cfg: model.SAEConfig,
            where: str) -> model.Params:
  """Our params from the SAELens-named tensors, each checked."""
  names = set(tensors)
  if names != set(TENSORS):
    raise ExportError(f'{where}: tensors {sorted(names)}; expected '
                      f'{sorted(TENSORS)}')
  size = {'d': cfg.dim, 'm': cfg.dict_size}
  for name, axes in TENSORS.items():
    want = tuple(size[a] for a in axes)
    got = tuple(tensors[name].shape)
    if got != want:
      raise ExportError(f'{where}: {name} has shape {got}; cfg.json (dim='
                        f'{cfg.dim}, dict_size={cfg.dict_size}) gives {want}')
    if not np.all(np.isfinite(tensors[name])):
      raise ExportError(f'{where}: {name} holds NaN or inf')
  w = np.asarray(tensors['W_enc'], np.float32).T
  w_dec = np.asarray(tensors['W_dec'], np.float32)
  b_dec = np.asarray(tensors['b_dec'], np.float32)
  if cfg.tied and not np.array_equal(w_dec, w):
    raise ExportError(f'{where}: cfg.json says tied but W_dec != W_enc^T')
  if not cfg.pre_bias and np.any(b_dec):
    raise ExportError(f'{where}: cfg.json says pre_bias false but b_dec is '
                      'not zero')
  params = {'W': w, 'b_lat': np.asarray(tensors['b_enc'], np.float32)}
  if cfg.pre_bias:
    params['b_pre'] = b_dec
  if not cfg.tied:
    params['W_dec'] = w_dec
  return jax.tree.map(jnp.asarray, params)


@functools.partial(jax.jit, static_argnums=2)
def _encode(params, x, cfg):
  return model.encode(params, x, cfg)


@functools.partial(jax.jit, static_argnums=3)
def _decode(params, z, x, cfg):
  stats = model.prepare(x, cfg)[1] if cfg.normalize else None
  return model.decode_prefixes(params, z, cfg, stats)[-1]


class ExportedSAE:
  """An exported SAE (:func:`load_sae`): numpy in, numpy out.

  Attributes:
    cfg: ``cfg.json`` as a dict.
    dim, dict_size: d and m.
    config: the :class:`SAEConfig` it encodes with (per sample).
    params: its params (``W`` (m, d), ``b_lat``, ``b_pre``, ``W_dec``).
    path: the folder.
  """

  def __init__(self, path: str, cfg: dict, params: model.Params):
    self.path = path
    self.cfg = cfg
    self.config = model.per_sample(sae_config(cfg))
    self.params = params
    self.dim = self.config.dim
    self.dict_size = self.config.dict_size

  def _check(self, a, width: int, what: str) -> jax.Array:
    a = np.asarray(a)
    if a.ndim < 1 or a.shape[-1] != width:
      raise ValueError(f'{what} has shape {a.shape}; expected (N, {width})')
    return jnp.asarray(a, jnp.float32)

  def encode(self, x) -> np.ndarray:
    """Codes ``(N, m)`` of raw embeddings ``x`` ``(N, d)``, each row on its
    own (a row's code does not depend on the others)."""
    return np.asarray(_encode(self.params, self._check(x, self.dim, 'x'),
                              self.config))

  def decode(self, z, x=None) -> np.ndarray:
    """Embeddings ``(N, d)`` of codes ``z`` ``(N, m)``.

    Args:
      z: codes (e.g. :meth:`encode`'s, possibly edited).
      x: ``(N, d)``, the raw embeddings the codes came from; required when
        ``cfg['normalize']`` (each row is de-normalised with its own mean
        and standard deviation), ignored otherwise.
    """
    z = self._check(z, self.dict_size, 'z')
    if self.config.normalize:
      if x is None:
        raise ValueError('decode: this SAE normalises each sample '
                         "(cfg['normalize']), so pass x, the embeddings the "
                         'codes came from, for their mean and std')
      x = self._check(x, self.dim, 'x')
      if x.shape[:-1] != z.shape[:-1]:
        raise ValueError(f'decode: z {z.shape} and x {x.shape} disagree on N')
    else:
      x = None
    return np.asarray(_decode(self.params, z, x, self.config))

  def reconstruct(self, x) -> np.ndarray:
    """``decode(encode(x), x)``: ``(N, d) -> (N, d)``."""
    return self.decode(self.encode(x), x)

  def __repr__(self) -> str:
    return (f'ExportedSAE({self.path!r}, dim={self.dim}, dict_size='
            f'{self.dict_size}, activation={self.cfg["activation"]!r}, '
            f'k={self.cfg["k"]})')


def load_sae(path: str) -> ExportedSAE:
  """Loads ``path/sae.safetensors`` + ``path/cfg.json`` (:func:`write_sae`).

  Raises:
    ExportError: in one line: a file missing, a ``cfg.json`` of another
      format or version, a field out of range, a tensor missing or of a
      shape ``cfg.json`` does not give.
  """
  path = os.fspath(path)
  missing = [n for n in FILES if not os.path.isfile(os.path.join(path, n))]
  if missing:
    raise ExportError(f'{path}: no {" or ".join(missing)}; pass a folder '
                      'written by write_sae (an exported SAE)')
  cfg = _read_cfg(path)
  config = sae_config(cfg, os.path.join(path, CFG))
  weights = os.path.join(path, WEIGHTS)
  try:
    tensors = safetensors.numpy.load_file(weights)
  except (safetensors.SafetensorError, OSError) as e:
    raise ExportError(f'{weights}: unreadable ({e})') from None
  return ExportedSAE(path, cfg, _params(tensors, config, weights))
