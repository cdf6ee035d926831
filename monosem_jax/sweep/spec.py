"""What a sweep is: a static :class:`SweepSpec` plus per-config :class:`SweepHparams`.

* :class:`SweepSpec` (frozen, hashable; one compile per value) holds
  everything that changes shapes or code paths: recommender kind, width ``dim``,
  the maximum dictionary size ``max_dict_size`` (M), activation and ``k_max``,
  Matryoshka prefixes, steps per epoch, epochs, and the kind's own options
  (``scorer_options``: batch sizes, how pairs are drawn, the prediction
  loss), opaque here and checked against the kind's schema in
  monosem_jax/recommenders/kinds.py.
* :class:`SweepHparams` is a pytree of ``(C,)`` arrays, one entry per config:
  ``lambda_pred, lambda_emb, lambda_kl, rho, lambda_l1, lr, seed, dict_size,
  k``. They are traced, so every combination trains in one program.

Unspecified hyper-parameters take the paper's defaults
(:func:`paper_defaults`, from the kind registry; ML-1M shown, Last.FM there):

  ====== ========== =========== ========= ========= ===== ====== ====
  kind   lambda_emb lambda_pred lambda_l1 lambda_kl rho   lr     seed
  ====== ========== =========== ========= ========= ===== ====== ====
  mf     0.1        1           0         0.01      0.05  1e-3   42
  ncf    2          10 (BCE)    0         0.07      0.05  1e-3   42
  ====== ========== =========== ========= ========= ===== ====== ====

``dict_size`` defaults to the spec's ``max_dict_size`` (22 without a spec) and
``k`` to the spec's ``k_max`` (0, unused, for ReLU).

Example:
  >>> spec = SweepSpec(dim=20, max_dict_size=64)
  >>> hparams = SweepHparams.grid(spec, lambda_pred=[0, 1, 2, 5, 10],
  ...                           dict_size=[22, 64])
  >>> hparams.num_configs
  10
  >>> hparams.config(3)['lambda_pred'], hparams.config(3)['dict_size']
  (1.0, 64)
  >>> validate(spec, hparams)        # raises SweepConfigError when invalid
  >>> spec.kind == kinds.DEFAULT     # the registry's first kind
  True
  >>> SweepSpec(scorer_options={'batch_users': 64}).batching
  Batching(users=64, items=256, pairs=None)
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from monosem_jax.errors import ConfigError
from monosem_jax.recommenders import kinds
from monosem_jax.sae.model import ACTIVATIONS, PRECISIONS, PURSUITS, SAEConfig

#: sweep.json layout: 3 = the kind's options in 'scorer_options'; 2 = one
#: field per option of every kind (read still, :func:`loads`).
SWEEP_FORMAT = 3
READ_FORMATS = (2, 3)
SWEEP_JSON = 'sweep.json'  # the file in a sweep workdir that holds dumps()
FLOAT_FIELDS = ('lambda_pred', 'lambda_emb', 'lambda_kl', 'rho', 'lambda_l1',
                'lr')
INT_FIELDS = ('seed', 'dict_size', 'k')
FIELDS = FLOAT_FIELDS + INT_FIELDS

class SweepConfigError(ConfigError):
  """An invalid spec or hyper-parameter; the message names field and config."""


def _kind(kind: str, field: str) -> kinds.Kind:
  if kind not in kinds.NAMES:
    raise SweepConfigError(f'{field}={kind!r}: expected one of {kinds.NAMES}')
  return kinds.get(kind)


def paper_defaults(kind: str, dataset: str = 'ml-1m') -> dict:
  """Every per-config field's default for a kind on a dataset: the paper's
  SAE hyper-parameters of the kind (docs/method.md#defaults; every other
  dataset takes ML-1M's); lr and seed are ours (Adam 1e-3, 42).

  >>> d = paper_defaults(kinds.DEFAULT, 'lastfm-2k')
  >>> d['dict_size'], d['rho'], d['lr'], d['seed']
  (70, 0.1, 0.001, 42)
  """
  base = _kind(kind, 'kind').paper_hparams(dataset)
  return dict(base, lr=1e-3, seed=42, k=0)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
  """Static description of a sweep (closed over by jit; hashable).

  Attributes:
    kind: the recommender kind (monosem_jax/recommenders/kinds.py: its SAE
      settings and the options it takes).
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
    normalize: per-sample normalisation; None -> the kind's
      (``Kind.sae``: MF-SAE True, NCF-SAE False).
    pre_bias: learn a pre-bias; None -> the kind's.
    steps_per_epoch: 0 -> one pass over the data the kind's batches draw
      from (:attr:`batching`: the SAE-train users, or the positive pairs),
      dropping the last partial batch; otherwise that many steps (the index
      streams then cycle with fresh permutations).
    epochs: default epoch count for :func:`~monosem_jax.sweep.driver.train_sweep`.
    scorer_options: the kind's options (``Kind.schema``; a mapping or
      ``(name, value)`` pairs), stored as every option of the kind, the
      given ones over the defaults, as ``(name, value)`` pairs in schema
      order. MF: ``batch_users``, ``batch_items`` (a users x items score
      matrix per step), ``mf_pred_impl`` ('gram': exact d x d Gram form |
      'direct': the batch matrix). NCF: ``batch_pairs``, ``ncf_pairs``
      ('positive': observed positive pairs of SAE-train users, ML-1M;
      'random': a user batch zipped with an item batch, Last.FM; 'mixed':
      half positive pairs, half the same users with uniformly random
      items), ``pred_loss`` ('bce' | 'mse'). The sweep passes them to the
      scorer (``make_scorer``) and reads only their :attr:`batching`.
    precision: matmul precision of training (docs/method.md#precision):
      'float32' (default, exact: resumed and sharded runs stay bitwise),
      'tf32' (TensorFloat-32 on GPUs, 3-pass bfloat16 on TPUs; float32 on a
      CPU) or 'bfloat16' (the SAE's products on bfloat16 operands with
      float32 accumulation, the frozen scorer's at the backend's default
      precision). Evaluation and analysis are always exact float32.
  """
  kind: str = kinds.DEFAULT
  dim: int = 20
  max_dict_size: int = 22
  activation: str = 'relu'
  k_max: int = 0
  prefixes: tuple[int, ...] = ()
  tied: bool = True
  normalize: bool | None = None
  pre_bias: bool | None = None
  steps_per_epoch: int = 0
  epochs: int = 18
  precision: str = 'float32'
  mp_signed: bool = False
  scorer_options: tuple[tuple[str, Any], ...] = ()

  def __post_init__(self):
    errors = []
    if self.kind not in kinds.NAMES:
      errors.append(f'SweepSpec.kind={self.kind!r}: expected one of '
                    f'{kinds.NAMES}')
    else:
      kind = kinds.get(self.kind)
      for name, default in kind.sae.items():
        if getattr(self, name) is None:
          object.__setattr__(self, name, default)
      try:
        options = dict(self.scorer_options)
      except (TypeError, ValueError):
        options = None
        errors.append(f'SweepSpec.scorer_options={self.scorer_options!r}: '
                      'expected a mapping or (name, value) pairs')
      if options is not None:
        problems = kind.option_problems(options, 'SweepSpec.scorer_options')
        errors += problems
        if not problems:
          object.__setattr__(self, 'scorer_options', kind.options(options))
    object.__setattr__(self, 'prefixes', tuple(int(m) for m in self.prefixes))
    for name in ('dim', 'max_dict_size', 'epochs'):
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

  def with_options(self, **options: Any) -> 'SweepSpec':
    """This spec with ``options`` over its ``scorer_options``.

    >>> SweepSpec().with_options(batch_items=64).batching.items
    64
    """
    return dataclasses.replace(
        self, scorer_options=dict(self.scorer_options, **options))

  @property
  def batching(self) -> kinds.Batching:
    """What one step holds, as the kind reads its options."""
    return kinds.get(self.kind).batching(self.scorer_options)

  def to_json_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d['prefixes'] = list(self.prefixes)
    d['scorer_options'] = dict(self.scorer_options)
    return d

  @classmethod
  def from_json_dict(cls, d: Mapping[str, Any]) -> 'SweepSpec':
    d = dict(d)
    d['prefixes'] = tuple(d.get('prefixes', ()))
    d['scorer_options'] = tuple(dict(d.get('scorer_options', {})).items())
    return cls(**d)


def _format2_spec(d: Mapping[str, Any]) -> dict:
  """A format-2 spec (one field per option of every kind) in format 3: the
  kind's options into ``scorer_options``; the other kinds' fields, which the
  version that wrote the file ignored, dropped (MF's ``pred_loss`` was
  always 'mse', the only loss the MF scorer has)."""
  d = dict(d)
  schema = _kind(d.get('kind'), 'sweep.json spec.kind').schema
  options = {n: d.pop(n) for n in list(d) if n in schema}
  for name in kinds.option_names():
    d.pop(name, None)
  return dict(d, scorer_options=options)


def _defaults(defaults) -> dict:
  if isinstance(defaults, SweepSpec):
    out = paper_defaults(defaults.kind)
    out['dict_size'] = defaults.max_dict_size
    out['k'] = defaults.k_max if defaults.activation != 'relu' else 0
    return out
  if isinstance(defaults, str):
    if defaults not in kinds.NAMES:
      raise SweepConfigError(f'SweepHparams defaults={defaults!r}: expected '
                             f'one of {kinds.NAMES}, a SweepSpec or a dict')
    return paper_defaults(defaults)
  return {**paper_defaults(kinds.DEFAULT), **dict(defaults)}


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
                defaults: 'str | SweepSpec | Mapping' = kinds.DEFAULT
                ) -> 'SweepHparams':
    """One config per mapping; missing fields take ``defaults``.

    Args:
      configs: e.g. ``[{'lambda_pred': 1.0}, {'lambda_pred': 5.0, 'seed': 0}]``.
      defaults: a kind name (its paper defaults), a SweepSpec (paper
        defaults of its kind, ``dict_size = max_dict_size``, ``k = k_max``)
        or a dict (over the default kind's).
    """
    if not configs:
      raise SweepConfigError('SweepHparams.from_list: empty config list')
    base = _defaults(defaults)
    for c in configs:
      _check_names(c)
    cols = {f: [c.get(f, base[f]) for c in configs] for f in FIELDS}
    return cls._from_columns(cols)

  @classmethod
  def grid(cls, defaults: 'str | SweepSpec | Mapping' = kinds.DEFAULT,
           **axes: Sequence[Any]) -> 'SweepHparams':
    """Cartesian product of the given axes (last axis fastest).

    Example: ``SweepHparams.grid(spec, lambda_pred=[0, 10], seed=[0, 1])``
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
  if d.get('format', 1) not in READ_FORMATS:
    raise SweepConfigError(
        f'sweep.json format {d.get("format", 1)}: written by another version '
        f'of monosem-jax (this one reads {READ_FORMATS}); start again in a '
        'fresh --workdir')
  spec = d['spec'] if d['format'] == SWEEP_FORMAT else _format2_spec(d['spec'])
  return (SweepSpec.from_json_dict(spec),
          SweepHparams.from_json_dict(d['hparams']), d.get('provenance'))
