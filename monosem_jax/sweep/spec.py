"""What a sweep is: a static :class:`SweepSpec` plus per-config :class:`SweepHparams`.

* :class:`SweepSpec` (frozen, hashable; one compile per value) holds
  everything that changes shapes or code paths: recommender kind, width ``dim``,
  the maximum dictionary size ``max_dict_size`` (M), activation and ``k_max``,
  Matryoshka prefixes, batch sizes, steps per epoch, epochs.
* :class:`SweepHparams` is a pytree of ``(C,)`` arrays, one entry per config:
  ``lambda_pred, lambda_emb, lambda_kl, rho, lambda_l1, lr, seed, dict_size,
  k``. They are traced, so every combination trains in one program.

Unspecified hyper-parameters take the paper's defaults
(:func:`paper_defaults`; ML-1M shown, Last.FM in ``PAPER_HPARAMS``):

  ====== ========== =========== ========= ========= ===== ====== ====
  kind   lambda_emb lambda_pred lambda_l1 lambda_kl rho   lr     seed
  ====== ========== =========== ========= ========= ===== ====== ====
  mf     0.1        1           0         0.01      0.05  1e-3   42
  ncf    2          10 (BCE)    0         0.07      0.05  1e-3   42
  ====== ========== =========== ========= ========= ===== ====== ====

``dict_size`` defaults to the spec's ``max_dict_size`` (22 without a spec) and
``k`` to the spec's ``k_max`` (0, unused, for ReLU).

Example:
  >>> spec = SweepSpec(kind='mf', dim=20, max_dict_size=64)
  >>> hparams = SweepHparams.grid(spec, lambda_pred=[0, 1, 2, 5, 10],
  ...                           dict_size=[22, 64])
  >>> hparams.num_configs
  10
  >>> hparams.config(3)['lambda_pred'], hparams.config(3)['dict_size']
  (1.0, 64)
  >>> validate(spec, hparams)        # raises SweepConfigError when invalid
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from monosem_jax.errors import ConfigError
from monosem_jax.sae.model import ACTIVATIONS, PRECISIONS, PURSUITS, SAEConfig

KINDS = ('mf', 'ncf')
SWEEP_FORMAT = 2  # sweep.json layout: 2 = 'hparams', 'provenance', kind/dim
SWEEP_JSON = 'sweep.json'  # the file in a sweep workdir that holds dumps()
#: The SAE of each recommender kind (docs/method.md#sparse-autoencoder):
#: MF-SAE normalised with pre-bias, NCF-SAE on raw embeddings.
SAE_DEFAULTS = {'mf': dict(normalize=True, pre_bias=True, pred_loss='mse'),
                'ncf': dict(normalize=False, pre_bias=False, pred_loss='bce')}
PRED_LOSSES = {'mf': ('mse',), 'ncf': ('bce', 'mse')}
NCF_PAIRS = ('positive', 'random', 'mixed')
FLOAT_FIELDS = ('lambda_pred', 'lambda_emb', 'lambda_kl', 'rho', 'lambda_l1',
                'lr')
INT_FIELDS = ('seed', 'dict_size', 'k')
FIELDS = FLOAT_FIELDS + INT_FIELDS

class SweepConfigError(ConfigError):
  """An invalid spec or hyper-parameter; the message names field and config."""


#: The paper's SAE hyper-parameters per (dataset, kind) (docs/method.md#defaults);
#: every other dataset takes ML-1M's. lr and seed are ours (Adam 1e-3, 42).
PAPER_HPARAMS = {
    ('ml-1m', 'mf'): dict(lambda_emb=0.1, lambda_pred=1.0, lambda_l1=0.0,
                          lambda_kl=0.01, rho=0.05, dict_size=22),
    ('ml-1m', 'ncf'): dict(lambda_emb=2.0, lambda_pred=10.0, lambda_l1=0.0,
                           lambda_kl=0.07, rho=0.05, dict_size=22),
    ('lastfm-2k', 'mf'): dict(lambda_emb=8.0, lambda_pred=1.0, lambda_l1=0.3,
                              lambda_kl=0.003, rho=0.1, dict_size=70),
    ('lastfm-2k', 'ncf'): dict(lambda_emb=2.6, lambda_pred=1.0,
                               lambda_l1=1.27e-5, lambda_kl=0.7, rho=0.05,
                               dict_size=70),
}


def paper_defaults(kind: str, dataset: str = 'ml-1m') -> dict:
  """Every per-config field's default for a kind on a dataset.

  >>> paper_defaults('ncf')['lambda_pred'], paper_defaults('mf', 'lastfm-2k')['rho']
  (10.0, 0.1)
  """
  if kind not in KINDS:
    raise SweepConfigError(f'kind={kind!r}: expected one of {KINDS}')
  base = PAPER_HPARAMS.get((dataset, kind), PAPER_HPARAMS[('ml-1m', kind)])
  return dict(base, lr=1e-3, seed=42, k=0)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
  """Static description of a sweep (closed over by jit; hashable).

  Attributes:
    kind: 'mf' | 'ncf', the recommender kind (its SAE defaults and which
      scorer options apply).
    dim: embedding width.
    max_dict_size: M, the largest dictionary size; latents beyond a config's
      ``dict_size`` are masked.
    activation: 'relu' | 'topk' | 'batchtopk' | 'mp' | 'omp' (pursuit
      encoders, docs/method.md#pursuit-encoders).
    k_max: static bound on per-config ``k`` (TopK kinds; the pursuit steps,
      'omp' needs ``k_max <= dim``).
    mp_signed: pursuit coefficients of either sign (pursuit only).
    prefixes: Matryoshka prefix sizes (increasing, <= M); () for none.
    tied: tied decoder.
    normalize: per-sample normalisation; None -> True for mf, False for ncf.
    pre_bias: learn a pre-bias; None -> True for mf, False for ncf.
    pred_loss: mf: 'mse' (logit-matrix MSE); ncf: 'bce' | 'mse'; None ->
      'mse' for mf, 'bce' for ncf.
    ncf_pairs: 'positive' (observed positive pairs of SAE-train users, ML-1M),
      'random' (a user batch zipped with an item batch, Last.FM) or 'mixed'
      (half positive pairs, half the same users with uniformly random items).
    batch_users, batch_items: MF batch sizes (users x items score matrix).
    batch_pairs: NCF pairs per step.
    steps_per_epoch: 0 -> one pass over the SAE-train users (MF; NCF random)
      or the positive pairs (NCF positive), dropping the last partial batch;
      otherwise that many steps (the index streams then cycle with fresh
      permutations).
    epochs: default epoch count for :func:`~monosem_jax.sweep.driver.train_sweep`.
    mf_pred_impl: 'gram' (exact d x d Gram form) | 'direct' (Bu x Bi matrix).
    precision: matmul precision of training (docs/method.md#precision):
      'float32' (default, exact: resumed and sharded runs stay bitwise),
      'tf32' (TensorFloat-32 on GPUs, 3-pass bfloat16 on TPUs; float32 on a
      CPU) or 'bfloat16' (the SAE's products on bfloat16 operands with
      float32 accumulation, the frozen scorer's at the backend's default
      precision). Evaluation and analysis are always exact float32.
  """
  kind: str = 'mf'
  dim: int = 20
  max_dict_size: int = 22
  activation: str = 'relu'
  k_max: int = 0
  prefixes: tuple[int, ...] = ()
  tied: bool = True
  normalize: bool | None = None
  pre_bias: bool | None = None
  pred_loss: str | None = None
  ncf_pairs: str = 'positive'
  batch_users: int = 256
  batch_items: int = 256
  batch_pairs: int = 256
  steps_per_epoch: int = 0
  epochs: int = 18
  mf_pred_impl: str = 'gram'
  precision: str = 'float32'
  mp_signed: bool = False

  def __post_init__(self):
    errors = []
    if self.kind not in KINDS:
      errors.append(f'SweepSpec.kind={self.kind!r}: expected one of {KINDS}')
    for name, default in SAE_DEFAULTS.get(self.kind, {}).items():
      if getattr(self, name) is None:
        object.__setattr__(self, name, default)
    object.__setattr__(self, 'prefixes', tuple(int(m) for m in self.prefixes))
    for name in ('dim', 'max_dict_size', 'batch_users', 'batch_items',
                 'batch_pairs', 'epochs'):
      v = getattr(self, name)
      if not isinstance(v, (int, np.integer)) or v < 1:
        errors.append(f'SweepSpec.{name}={v!r}: must be an integer >= 1')
    if self.steps_per_epoch < 0:
      errors.append(f'SweepSpec.steps_per_epoch={self.steps_per_epoch}: must '
                    'be >= 0 (0 = one pass over the data)')
    if self.activation not in ACTIVATIONS:
      errors.append(f'SweepSpec.activation={self.activation!r}: expected one '
                    f'of {ACTIVATIONS}')
    elif self.activation != 'relu' and not 1 <= self.k_max <= self.max_dict_size:
      errors.append(f'SweepSpec.k_max={self.k_max}: activation '
                    f'{self.activation!r} needs 1 <= k_max <= max_dict_size='
                    f'{self.max_dict_size}')
    elif self.activation == 'omp' and self.k_max > self.dim:
      errors.append(f'SweepSpec.k_max={self.k_max}: orthogonal matching '
                    f'pursuit needs k_max <= dim={self.dim}')
    if self.mp_signed not in (True, False):
      errors.append(f'SweepSpec.mp_signed={self.mp_signed!r}: expected True '
                    'or False')
    elif self.mp_signed and self.activation not in PURSUITS:
      errors.append(f'SweepSpec.mp_signed=True: only the pursuit activations '
                    f'{PURSUITS} have signed coefficients, not '
                    f'{self.activation!r}')
    p = self.prefixes
    if p and (any(b <= a for a, b in zip(p, p[1:])) or p[0] < 1
              or p[-1] > self.max_dict_size):
      errors.append(f'SweepSpec.prefixes={p}: must be strictly increasing '
                    f'sizes in [1, max_dict_size={self.max_dict_size}]')
    allowed = PRED_LOSSES.get(self.kind, ())
    if self.kind in KINDS and self.pred_loss not in allowed:
      errors.append(f'SweepSpec.pred_loss={self.pred_loss!r}: kind '
                    f'{self.kind!r} allows {allowed}')
    if self.ncf_pairs not in NCF_PAIRS:
      errors.append(f'SweepSpec.ncf_pairs={self.ncf_pairs!r}: expected '
                    "'positive' | 'random' | 'mixed'")
    if self.mf_pred_impl not in ('gram', 'direct'):
      errors.append(f'SweepSpec.mf_pred_impl={self.mf_pred_impl!r}: expected '
                    "'gram' | 'direct'")
    if self.precision not in PRECISIONS:
      errors.append(f'SweepSpec.precision={self.precision!r}: expected '
                    "'float32' | 'tf32' | 'bfloat16'")
    if errors:
      raise SweepConfigError('invalid SweepSpec:\n  ' + '\n  '.join(errors))

  @property
  def sae(self) -> SAEConfig:
    """The static SAE architecture of every config (n = max_dict_size)."""
    return SAEConfig(dim=self.dim, dict_size=self.max_dict_size, tied=self.tied,
                     normalize=self.normalize, pre_bias=self.pre_bias,
                     activation=self.activation, k_max=self.k_max,
                     prefixes=self.prefixes, precision=self.precision,
                     mp_signed=self.mp_signed)

  def to_json_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d['prefixes'] = list(self.prefixes)
    return d

  @classmethod
  def from_json_dict(cls, d: Mapping[str, Any]) -> 'SweepSpec':
    d = dict(d)
    d['prefixes'] = tuple(d.get('prefixes', ()))
    return cls(**d)


def _defaults(defaults) -> dict:
  if isinstance(defaults, SweepSpec):
    out = paper_defaults(defaults.kind)
    out['dict_size'] = defaults.max_dict_size
    out['k'] = defaults.k_max if defaults.activation != 'relu' else 0
    return out
  if isinstance(defaults, str):
    if defaults not in KINDS:
      raise SweepConfigError(f'SweepHparams defaults={defaults!r}: expected '
                             f'one of {KINDS}, a SweepSpec or a dict')
    return paper_defaults(defaults)
  return {**paper_defaults('mf'), **dict(defaults)}


def _check_names(names):
  bad = [n for n in names if n not in FIELDS]
  if bad:
    raise SweepConfigError(f'SweepHparams: unknown hyper-parameter(s) {bad}; '
                           f'known: {list(FIELDS)}')


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SweepHparams:
  """Per-config hyper-parameters: every field is a ``(C,)`` array.

  Floats (float32): lambda_pred, lambda_emb, lambda_kl, rho, lambda_l1, lr.
  Ints (int32): seed (SAE init), dict_size (active latents m_c <= M),
  k (TopK k; 0 / ignored for ReLU).
  """
  lambda_pred: Any
  lambda_emb: Any
  lambda_kl: Any
  rho: Any
  lambda_l1: Any
  lr: Any
  seed: Any
  dict_size: Any
  k: Any

  # ---- construction -------------------------------------------------------
  @classmethod
  def from_list(cls, configs: Sequence[Mapping[str, Any]],
                defaults: 'str | SweepSpec | Mapping' = 'mf') -> 'SweepHparams':
    """One config per mapping; missing fields take ``defaults``.

    Args:
      configs: e.g. ``[{'lambda_pred': 1.0}, {'lambda_pred': 5.0, 'seed': 0}]``.
      defaults: 'mf' | 'ncf' (paper defaults), a SweepSpec (paper defaults of
        its kind, ``dict_size = max_dict_size``, ``k = k_max``) or a dict.
    """
    if not configs:
      raise SweepConfigError('SweepHparams.from_list: empty config list')
    base = _defaults(defaults)
    for c in configs:
      _check_names(c)
    cols = {f: [c.get(f, base[f]) for c in configs] for f in FIELDS}
    return cls._from_columns(cols)

  @classmethod
  def grid(cls, defaults: 'str | SweepSpec | Mapping' = 'mf',
           **axes: Sequence[Any]) -> 'SweepHparams':
    """Cartesian product of the given axes (last axis fastest).

    Example: ``SweepHparams.grid('ncf', lambda_pred=[0, 10], seed=[0, 1])``
    gives 4 configs (0,0), (0,1), (10,0), (10,1).
    """
    _check_names(axes)
    names = list(axes)
    values = [list(np.atleast_1d(np.asarray(axes[n])).tolist()) for n in names]
    combos = [dict(zip(names, c)) for c in itertools.product(*values)]
    return cls.from_list(combos or [{}], defaults)

  @classmethod
  def _from_columns(cls, cols: Mapping[str, Sequence[Any]]) -> 'SweepHparams':
    out = {}
    for f in FIELDS:
      raw = np.asarray(cols[f])
      if f in INT_FIELDS:
        if raw.dtype.kind == 'f' and not np.all(np.isfinite(raw) &
                                                (raw == np.round(raw))):
          raise SweepConfigError(f'SweepHparams.{f}: values {raw.tolist()} '
                                 'must be integers')
        out[f] = raw.astype(np.int64).astype(np.int32) if raw.size else raw
      else:
        out[f] = raw.astype(np.float32)
    return cls(**out)

  # ---- views --------------------------------------------------------------
  @property
  def num_configs(self) -> int:
    return int(np.shape(self.lr)[0])

  def config(self, i: int) -> dict:
    """Config ``i`` as a dict of Python scalars."""
    out = {}
    for f in FIELDS:
      v = np.asarray(getattr(self, f))[i]
      # str() of a float32 is its shortest repr: 0.1, not 0.10000000149.
      out[f] = int(v) if f in INT_FIELDS else float(str(v))
    return out

  def configs(self) -> list[dict]:
    return [self.config(i) for i in range(self.num_configs)]

  def to_json_dict(self) -> dict:
    return {f: np.asarray(getattr(self, f)).tolist() for f in FIELDS}

  @classmethod
  def from_json_dict(cls, d: Mapping[str, Sequence[Any]]) -> 'SweepHparams':
    return cls._from_columns({f: d[f] for f in FIELDS})

  def numpy(self) -> 'SweepHparams':
    """Host copy with numpy leaves."""
    return SweepHparams(**{f: np.asarray(getattr(self, f)) for f in FIELDS})

  def take(self, idx) -> 'SweepHparams':
    """Subset / reorder configs by an index array (numpy)."""
    idx = np.asarray(idx)
    return SweepHparams(**{f: np.asarray(getattr(self, f))[idx]
                          for f in FIELDS})

  def pad_to(self, n: int) -> 'SweepHparams':
    """Pads to ``n`` configs by repeating the last config."""
    c = self.num_configs
    if n < c:
      raise SweepConfigError(f'SweepHparams.pad_to({n}) < num_configs {c}')
    return self.take(padding_index(c, n))


def epochs_of(spec: SweepSpec, epochs: int | None,
              field: str = 'epochs') -> int:
  """``epochs`` (``spec.epochs`` when None), checked to be an integer >= 1.

  >>> epochs_of(SweepSpec(epochs=18), None)
  18
  """
  epochs = spec.epochs if epochs is None else epochs
  if not isinstance(epochs, (int, np.integer)) or epochs < 1:
    raise SweepConfigError(f'{field}={epochs!r}: must be an integer >= 1')
  return int(epochs)


def padding_index(num_real: int, size: int) -> np.ndarray:
  """Config indices of a sweep padded to ``size`` by repeating the last.

  >>> padding_index(3, 5).tolist()
  [0, 1, 2, 2, 2]
  """
  return np.concatenate([np.arange(num_real),
                         np.full(size - num_real, num_real - 1)])


def validate(spec: SweepSpec, hparams: SweepHparams) -> None:
  """Rejects invalid hyper-parameters before anything compiles.

  Checks every field has shape ``(C,)`` with the same C >= 1, floats finite,
  ``0 < rho < 1``, weights >= 0, lr > 0, seed >= 0,
  ``1 <= dict_size <= spec.max_dict_size``, ``k <= dict_size`` and, for TopK
  activations, ``1 <= k <= spec.k_max``.

  Raises:
    SweepConfigError: listing every violation as
      ``SweepHparams.<field>[<config>] = <value>: <rule>``.
  """
  errors: list[str] = []
  arrays = {f: np.asarray(getattr(hparams, f)) for f in FIELDS}
  shapes = {f: a.shape for f, a in arrays.items()}
  c = shapes['lr'][0] if len(shapes['lr']) == 1 else None
  if c is None or c < 1 or any(s != (c,) for s in shapes.values()):
    raise SweepConfigError(f'SweepHparams: every field must be a (C,) array with '
                           f'the same C >= 1; got shapes {shapes}')

  def bad(field, cond, rule):
    for i in np.flatnonzero(cond)[:20]:
      errors.append(f'SweepHparams.{field}[{i}] = {arrays[field][i].item()!r}: '
                    f'{rule}')

  for f in FLOAT_FIELDS:
    bad(f, ~np.isfinite(arrays[f]), f'{f} must be finite')
  rho = arrays['rho']
  bad('rho', ~((rho > 0) & (rho < 1)), 'rho must lie in the open interval (0, 1)')
  for f in ('lambda_pred', 'lambda_emb', 'lambda_kl', 'lambda_l1'):
    bad(f, arrays[f] < 0, f'{f} is a loss weight and must be >= 0')
  bad('lr', ~(arrays['lr'] > 0), 'the learning rate must be > 0')
  bad('seed', arrays['seed'] < 0, 'seed must be >= 0')
  m = arrays['dict_size']
  bad('dict_size', (m < 1) | (m > spec.max_dict_size),
      f'dictionary size must be in [1, spec.max_dict_size={spec.max_dict_size}]')
  if spec.prefixes:
    # Prefixes at or beyond a smaller dict_size would all repeat the full
    # reconstruction and count it several times in the embedding loss.
    full = spec.sae.prefix_sizes[-1]
    bad('dict_size', m != full,
        f'Matryoshka sweeps need dict_size = {full} (the last prefix); '
        'sweep the prefixes with separate specs')
  k = arrays['k']
  bad('k', k > m, 'k must not exceed the config\'s dict_size '
      '(SweepHparams.dict_size)')
  if spec.activation == 'relu':
    bad('k', k < 0, 'k must be >= 0 (it is ignored by the relu activation)')
  else:
    bad('k', (k < 1) | (k > spec.k_max),
        f'activation {spec.activation!r} needs 1 <= k <= spec.k_max={spec.k_max}')
  if errors:
    raise SweepConfigError(f'invalid sweep hyper-parameters ({len(errors)} '
                           'problem(s)):\n  ' + '\n  '.join(errors))


def dumps(spec: SweepSpec, hparams: SweepHparams,
          provenance: Mapping[str, Any] | None = None) -> str:
  """JSON text holding the spec, every config and where they came from."""
  out = {'format': SWEEP_FORMAT, 'spec': spec.to_json_dict(),
         'hparams': hparams.to_json_dict()}
  if provenance is not None:
    out['provenance'] = dict(provenance)
  return json.dumps(out, indent=1)


def loads(text: str) -> tuple[SweepSpec, SweepHparams, dict | None]:
  """Inverse of :func:`dumps`: ``(spec, hparams, provenance or None)``.

  Raises:
    SweepConfigError: the text was written by another format version.
  """
  d = json.loads(text)
  if d.get('format', 1) != SWEEP_FORMAT:
    raise SweepConfigError(
        f'sweep.json format {d.get("format", 1)}: written by another version '
        f'of monosem-jax (this one reads {SWEEP_FORMAT}); start again in a '
        'fresh --workdir')
  return (SweepSpec.from_json_dict(d['spec']),
          SweepHparams.from_json_dict(d['hparams']), d.get('provenance'))
