"""The frozen recommender the SAE stage loads (``WORKDIR/frozen/``).

:meth:`RecommenderArtifact.open` reads it from a recommender workdir (the
one place that knows the folder's name, :data:`FROZEN`, and refuses a run
that never finished in one line).

A :class:`RecommenderArtifact` holds the model kind, its params (numpy), the
protocol split it was trained on and metadata. On disk::

  frozen/
    params.npz   params flattened to '/'-joined keys ('user_emb', 'mlp/0/w')
    split.npz    Split.arrays()
    meta.json    {'format': 1, 'kind': ..., 'meta': {...}}

:meth:`RecommenderArtifact.save` writes a temporary sibling folder and renames
it into place, so a reader never sees a half-written artifact.

``meta['labels_sha256']`` (:func:`labels_sha256`, recorded at training)
fingerprints the dataset's item and user labels the analysis reads (concepts,
their names, titles, years, user features), so an analysis can refuse labels
edited after training (:func:`~monosem_jax.analysis.workdirs.open_dataset`).

The frozen scorers take arbitrary (e.g. SAE-reconstructed) embeddings:

  >>> import jax, jax.numpy as jnp, numpy as np
  >>> from monosem_jax.recommenders import mf
  >>> from monosem_jax.data import protocol, synthetic
  >>> split = protocol.make_split(synthetic.make_world(
  ...     synthetic.WorldConfig(n_users=30, n_items=20)), seed=0)
  >>> p = jax.device_get(mf.init(jax.random.PRNGKey(0), 30, 20, 4))
  >>> art = RecommenderArtifact('mf', p, split, {'dataset': 'synthetic'})
  >>> s = art.scorer()
  >>> s.matrix_logits(art.user_emb[:2], art.item_emb, items=jnp.arange(20)).shape
  (2, 20)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from monosem_jax import files
from monosem_jax.data.protocol import Split
from monosem_jax.errors import MonosemError
from monosem_jax.recommenders import kinds

FORMAT = 1
#: The artifact's folder inside a recommender workdir.
FROZEN = 'frozen'
META_JSON = 'meta.json'
_FILES = ('params.npz', 'split.npz', META_JSON)


class ArtifactError(MonosemError):
  """A missing or corrupt artifact folder (the message names the path)."""


#: The labels :func:`labels_sha256` fingerprints: the dataset attributes
#: the analysis reads besides the interactions (docs/method.md#concepts).
LABELS = ('item_concepts', 'concept_names', 'item_titles', 'item_year',
          'user_features')


def _label_bytes(x: Any) -> bytes:
  if x is None:
    return b'none'
  if isinstance(x, Mapping):
    return b'\0'.join(k.encode() + b'=' + _label_bytes(x[k])
                      for k in sorted(x))
  a = np.asarray(x)
  if a.dtype.kind in 'OUS':      # names, titles: their text
    return json.dumps([str(v) for v in a.reshape(-1)]).encode() + (
        str(a.shape).encode())
  a = np.ascontiguousarray(a)
  return f'{a.dtype.str}{a.shape}'.encode() + a.tobytes()


def labels_sha256(dataset) -> dict[str, str]:
  """SHA-256 (hex) of each of a dataset's :data:`LABELS`.

  >>> from monosem_jax.data import synthetic
  >>> w = synthetic.make_world(synthetic.WorldConfig(n_users=30, n_items=20))
  >>> sorted(labels_sha256(w)) == sorted(LABELS)
  True
  """
  return {name: hashlib.sha256(_label_bytes(getattr(dataset, name, None))
                               ).hexdigest() for name in LABELS}


def flatten_params(params) -> dict[str, np.ndarray]:
  """Nested dicts/lists of arrays -> ``{'a/0/b': array}``."""
  out = {}

  def rec(prefix, x):
    if isinstance(x, dict):
      for k, v in x.items():
        if '/' in str(k):
          raise ValueError(f'param key {k!r} contains "/"')
        rec(f'{prefix}{k}/', v)
    elif isinstance(x, (list, tuple)):
      for i, v in enumerate(x):
        rec(f'{prefix}{i}/', v)
    else:
      out[prefix[:-1]] = np.asarray(x)

  rec('', params)
  return out


def unflatten_params(flat: dict[str, np.ndarray]):
  """Inverse of :func:`flatten_params` (all-digit keys become lists)."""
  tree: dict = {}
  for key, value in flat.items():
    node = tree
    parts = key.split('/')
    for p in parts[:-1]:
      node = node.setdefault(p, {})
    node[parts[-1]] = value

  def listify(x):
    if not isinstance(x, dict):
      return x
    x = {k: listify(v) for k, v in x.items()}
    if x and all(k.isdigit() for k in x):
      return [x[str(i)] for i in range(len(x))]
    return x

  return listify(tree)


@dataclasses.dataclass(frozen=True, eq=False)
class RecommenderArtifact:
  """A trained, frozen recommender.

  Attributes:
    kind: ``'mf'`` or ``'ncf'``.
    params: numpy params pytree (see :mod:`mf` / :mod:`ncf`).
    split: the :class:`monosem_jax.data.protocol.Split` it was trained on.
    meta: JSON-able metadata: ``dataset`` name, ``config``, ``metrics``...
    fingerprint: SHA-256 of the saved files (set by :meth:`load`; None for
      an artifact built in memory). Sweeps record it, so a sweep workdir
      knows which recommender it explains whatever its path.
  """

  kind: str
  params: dict
  split: Any
  meta: dict = dataclasses.field(default_factory=dict)
  fingerprint: str | None = None

  @property
  def dataset(self) -> str | None:
    """The dataset name it was trained on (``meta['dataset']``)."""
    return self.meta.get('dataset')

  def __post_init__(self):
    kinds.get(self.kind)

  @property
  def user_emb(self) -> np.ndarray:
    return np.asarray(self.params['user_emb'])

  @property
  def item_emb(self) -> np.ndarray:
    return np.asarray(self.params['item_emb'])

  @property
  def n_users(self) -> int:
    return self.user_emb.shape[0]

  @property
  def n_items(self) -> int:
    return self.item_emb.shape[0]

  @property
  def dim(self) -> int:
    return self.user_emb.shape[1]

  def scorer(self, **options):
    """The frozen scorer of this recommender with its kind's ``options``
    (:func:`~monosem_jax.recommenders.kinds.make_scorer`)."""
    return kinds.make_scorer(self.kind, self.params, **options)

  def user_item_logits(self, users) -> jax.Array:
    """``(B, n_items)`` logits of user indices (the trained model itself)."""
    return kinds.get(self.kind).model.user_item_logits(
        jax.tree.map(jnp.asarray, self.params), jnp.asarray(users))

  def save(self, directory: str) -> str:
    """Writes the artifact atomically to ``directory`` (replacing it)."""
    directory = os.path.abspath(os.fspath(directory))
    with files.atomic_directory(directory) as tmp:
      with open(os.path.join(tmp, 'params.npz'), 'wb') as f:
        np.savez(f, **flatten_params(jax.device_get(self.params)))
      with open(os.path.join(tmp, 'split.npz'), 'wb') as f:
        np.savez(f, **self.split.arrays())
      with open(os.path.join(tmp, META_JSON), 'w') as f:
        json.dump({'format': FORMAT, 'kind': self.kind,
                   'meta': files.jsonable(self.meta)}, f, indent=2)
    return directory

  @staticmethod
  def directory_of(workdir: str) -> str:
    """Where a recommender workdir holds its artifact (``WORKDIR/frozen``)."""
    return os.path.join(os.fspath(workdir), FROZEN)

  @classmethod
  def open(cls, workdir: str, name: str | None = None
           ) -> 'RecommenderArtifact':
    """The frozen recommender of a recommender workdir (``WORKDIR/frozen``;
    ``workdir`` may also be that folder itself).

    Args:
      workdir: the folder a recommender was trained (or imported) in.
      name: what the caller calls the folder, for the refusals (e.g.
        ``'config.recommender_workdir'``: ``name=workdir: ...``).

    Raises:
      ArtifactError: in one line, no such folder, or a run that never
        finished (no ``frozen/``); a corrupt artifact (:meth:`load`).
    """
    workdir = os.fspath(workdir)
    if os.path.isdir(cls.directory_of(workdir)):
      return cls.load(cls.directory_of(workdir))
    if os.path.isfile(os.path.join(workdir, META_JSON)):
      return cls.load(workdir)
    flag = f'{name}={workdir}' if name else workdir
    if not os.path.isdir(workdir):
      raise ArtifactError(f'{flag}: no such folder; train a recommender there '
                          'first')
    raise ArtifactError(f'{flag} holds no finished recommender (no {FROZEN}/)'
                        ': run or finish its training (rerunning resumes it)')

  @classmethod
  def load(cls, directory: str) -> 'RecommenderArtifact':
    """Reads an artifact written by :meth:`save`.

    Raises:
      ArtifactError: the folder or one of its files is missing or corrupt;
        the message names the path.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
      raise ArtifactError(f'no recommender artifact at {directory!r} (not a '
                          'folder; a trained recommender\'s workdir holds '
                          f'it as {FROZEN}/)')
    for name in _FILES:
      if not os.path.isfile(os.path.join(directory, name)):
        raise ArtifactError(f'corrupt recommender artifact {directory!r}: '
                            f'{name} is missing')
    path = os.path.join(directory, META_JSON)
    try:
      with open(path) as f:
        head = json.load(f)
      kind, meta = head['kind'], head['meta']
      if head.get('format') != FORMAT:
        raise ArtifactError(f'{path}: format {head.get("format")!r}, '
                            f'expected {FORMAT}')
      path = os.path.join(directory, 'params.npz')
      with np.load(path) as z:
        params = unflatten_params({k: z[k] for k in z.files})
      path = os.path.join(directory, 'split.npz')
      with np.load(path) as z:
        split = Split.from_arrays({k: z[k] for k in z.files})
      art = cls(kind=kind, params=params, split=split, meta=meta,
                fingerprint=files.fingerprint(directory, _FILES))
      for k in ('user_emb', 'item_emb'):
        if k not in params:
          raise KeyError(k)
      if art.n_users != split.n_users or art.n_items != split.n_items:
        raise ArtifactError(
            f'corrupt recommender artifact {directory!r}: params are '
            f'{art.n_users}x{art.n_items}, split is '
            f'{split.n_users}x{split.n_items}')
    except ArtifactError:
      raise
    except Exception as e:  # zip, json, key errors: name the file.
      raise ArtifactError(f'corrupt recommender artifact: cannot read '
                          f'{path!r}: {type(e).__name__}: {e}') from e
    return art


def minmax_scaled(artifact: RecommenderArtifact) -> RecommenderArtifact:
  """A copy whose user and item embeddings are min-max scaled per column,
  each table over its own rows: ``(x - min) / (max - min)`` (a constant
  column becomes 0).

  This is the input the authors' MF-SAE trains on (their code scales each
  batch of 256 rows; docs/results.md, "Why our L0 is twice the
  authors'"). Biases, the split and the metadata are kept (``meta['transform']
  = 'minmax'`` is added); the copy's scorer scores the scaled vectors, so it
  is another model, and ``fingerprint`` is None until it is saved and
  loaded.

  >>> import numpy as np
  >>> a = RecommenderArtifact('mf', {'user_emb': np.array([[1., 5.], [3., 5.]]),
  ...     'item_emb': np.array([[0., -2.], [4., 2.], [2., 0.]])}, split=None)
  >>> minmax_scaled(a).params['item_emb'].tolist()
  [[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]]
  >>> minmax_scaled(a).params['user_emb'].tolist()
  [[0.0, 0.0], [1.0, 0.0]]
  """
  def scaled(x):
    x = np.asarray(x, np.float32)
    lo, span = x.min(0), x.max(0) - x.min(0)
    return np.where(span > 0, (x - lo) / np.where(span > 0, span, 1), 0.0
                    ).astype(np.float32)
  params = dict(artifact.params, user_emb=scaled(artifact.user_emb),
                item_emb=scaled(artifact.item_emb))
  return dataclasses.replace(artifact, params=params,
                             meta=dict(artifact.meta, transform='minmax'),
                             fingerprint=None)
