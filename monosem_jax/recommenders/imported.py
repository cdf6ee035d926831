"""A recommender trained elsewhere, imported as a finished workdir.

:func:`import_embeddings` is what ``python -m experiments.import_recommender``
calls. From a ``.npz`` of embeddings it writes the same workdir as
:func:`monosem_jax.recommenders.train.run` (``config.json``,
``metrics.json``, ``frozen/``), so ``experiments.sweep`` and
``experiments.analyze`` take it as they take a trained one.

The ``.npz`` (``numpy.savez``) holds::

  user_emb    (n_users, d)  float        item_emb  (n_items, d)  float
  user_ids    (n_users,)    int or str   item_ids  (n_items,)    int or str
  user_bias   (n_users,)    optional     item_bias (n_items,)    optional
  mlp/J/w     (in, out), mlp/J/b (out,)  NCF only, J = 0, 1, ...

The ids are the raw ids of the data files: rows are matched to the
dataset's users and items by id, never by position. MF scores
``b_u + b_i + <p_u, q_i>`` (missing biases are zeros); NCF scores
``MLP([e_u; e_i]) (+ b_u + b_i)`` with ReLU between the layers, the last of
width 1 (a PyTorch ``nn.Linear`` stores ``w`` transposed: save
``weight.T``).

What is refused (one line, a count and examples; no ``config.json``,
``metrics.json`` or ``frozen/`` is written):
the file or a key missing, unknown keys, shapes that disagree, ids that are
floats or repeated, NaN / inf values, embedding ids that are not in the
data files, and users or items of the (filtered) dataset without an
embedding. With ``drop_missing_users`` the users without an embedding are
dropped instead: their raw ids go to the recorded config's
``dataset.exclude_users``, so the split (made after the drop) is rebuilt
identically by everything that reloads the data. Embeddings of users or
items that the config's filters remove are left unused (logged).

The split is the config's, made here: the metrics are honest only when the
imported model never saw its held-out positives (train it on the
protocol's training positives, docs/method.md#protocol).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
import zipfile
from typing import Callable

import numpy as np

from monosem_jax import files
from monosem_jax.data import loaders, protocol
from monosem_jax.data.dataset import DataError
from monosem_jax.errors import ConfigError, refuse_unknown
from monosem_jax.recommenders import kinds
from monosem_jax.recommenders import artifact as artifact_lib
from monosem_jax.recommenders import train

EMBEDDING_KEYS = ('user_emb', 'item_emb', 'user_ids', 'item_ids')
BIAS_KEYS = ('user_bias', 'item_bias')
NOTE = ('trained outside monosem-jax: the metrics hold only if the model '
        'never saw the held-out positives of this split')


@dataclasses.dataclass(frozen=True, eq=False)
class Embeddings:
  """A validated embeddings file.

  Attributes:
    path: the ``.npz`` file.
    sha256: its content hash (recorded as provenance).
    user_ids, item_ids: ``(n_users,)`` / ``(n_items,)`` raw ids as str.
    params: ``user_emb`` / ``item_emb`` float32 rows in file order, the
      biases when given, and ``mlp`` (NCF).
  """
  path: str
  sha256: str
  user_ids: np.ndarray
  item_ids: np.ndarray
  params: dict

  @property
  def dim(self) -> int:
    return self.params['user_emb'].shape[1]


def _examples(values, n: int = 3) -> str:
  values = list(values)
  shown = ', '.join(repr(getattr(v, 'item', lambda: v)()) for v in values[:n])
  return shown + (', ...' if len(values) > n else '')


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


def _ids(path: str, key: str, ids: np.ndarray, n_rows: int) -> np.ndarray:
  """Raw ids as str, refusing floats, a wrong length and repeats."""
  if ids.ndim != 1 or len(ids) != n_rows:
    raise DataError(f'{path}: {key} has shape {ids.shape}, expected '
                    f'({n_rows},), one id per embedding row')
  if ids.dtype.kind == 'S':
    ids = np.char.decode(ids, 'utf-8')
  if ids.dtype.kind not in 'iuU':
    raise DataError(f'{path}: {key} has dtype {ids.dtype}; ids must be '
                    'integers or strings, as in the data files')
  ids = ids.astype(str)
  uniq, counts = np.unique(ids, return_counts=True)
  if (counts > 1).any():
    dup = uniq[counts > 1]
    raise DataError(f'{path}: {key} repeats {len(dup)} id(s) '
                    f'({_examples(dup)})')
  return ids


def _floats(path: str, key: str, value: np.ndarray, shape: tuple,
            row_ids: np.ndarray | None = None) -> np.ndarray:
  """A float32 array of ``shape`` (None entries free), all finite."""
  if value.dtype.kind not in 'fiu' or value.ndim != len(shape) or any(
      s is not None and s != v for s, v in zip(shape, value.shape)):
    want = tuple('?' if s is None else s for s in shape)
    raise DataError(f'{path}: {key} is {value.dtype} of shape {value.shape}, '
                    f'expected float of shape {want}'.replace("'?'", '?'))
  with np.errstate(over='ignore'):  # overflow -> inf, refused below
    out = value.astype(np.float32)
  bad = ~np.isfinite(out)
  if bad.any():
    rows = np.flatnonzero(bad.reshape(len(out), -1).any(1) if out.ndim
                          else bad.reshape(1))
    where = (f' (rows of ids {_examples(row_ids[rows])})'
             if row_ids is not None else '')
    raise DataError(f'{path}: {key} holds {int(bad.sum())} NaN or inf '
                    f'value(s) (as float32){where}')
  return out


def _mlp(path: str, arrays: dict, dim: int) -> list[dict]:
  """The NCF layers ``mlp/J/w``, ``mlp/J/b``, checked as a chain."""
  n = len({k.split('/')[1] for k in arrays})
  layers, width = [], 2 * dim
  for j in range(n):
    for part in ('w', 'b'):
      if f'mlp/{j}/{part}' not in arrays:
        raise DataError(f'{path}: mlp/{j}/{part} is missing (the layers are '
                        f'mlp/0 .. mlp/{n - 1}, each with w and b)')
    w = arrays[f'mlp/{j}/w']
    out = w.shape[1] if w.ndim == 2 else None
    layers.append({
        'w': _floats(path, f'mlp/{j}/w', w, (width, out)),
        'b': _floats(path, f'mlp/{j}/b', arrays[f'mlp/{j}/b'], (out,))})
    width = out
  if width != 1:
    raise DataError(f'{path}: the last layer mlp/{n - 1}/w has {width} '
                    'outputs, expected 1 (the logit)')
  return layers


def read_embeddings(path: str, kind: str) -> Embeddings:
  """Reads and checks an embeddings ``.npz`` for a recommender ``kind``.

  Raises:
    DataError: naming the file and key at fault (see the module docstring).
  """
  path = os.path.abspath(os.fspath(path))
  if not os.path.isfile(path):
    raise DataError(f'{path}: embeddings file not found')
  if not zipfile.is_zipfile(path):
    raise DataError(f'{path}: not a readable .npz (numpy.savez writes one)')
  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
  except ValueError as e:
    if 'allow_pickle' in str(e):
      raise DataError(f'{path}: holds Python objects; save ids with '
                      'np.asarray(ids, dtype=str) or as integers') from None
    raise DataError(f'{path}: not a readable .npz ({e})') from None
  except (OSError, zipfile.BadZipFile, EOFError) as e:
    raise DataError(f'{path}: not a readable .npz ({e})') from None
  mlp_keys = {k for k in arrays if k.startswith('mlp/')}
  refuse_unknown(set(arrays) - mlp_keys,
                 EMBEDDING_KEYS + BIAS_KEYS + ('mlp/J/w', 'mlp/J/b'), path,
                 error=DataError)
  missing = [k for k in EMBEDDING_KEYS if k not in arrays]
  if missing:
    raise DataError(f'{path}: missing key(s) {", ".join(missing)}')
  model = kinds.get(kind).model
  with_mlp = [k for k in kinds.NAMES if kinds.get(k).model.MLP]
  if mlp_keys and not model.MLP:
    raise DataError(f'{path}: holds {"/".join(with_mlp).upper()} layers '
                    f'({_examples(sorted(mlp_keys))}) but config.model.kind='
                    f'{kind!r}; use the DATASET,{with_mlp[0]} config')
  if model.MLP and not mlp_keys:
    plain = [k for k in kinds.NAMES if k not in with_mlp]
    raise DataError(f'{path}: no mlp/J/w, mlp/J/b layers, which an '
                    f'{kind.upper()} needs; for dot-product scores use the '
                    f'DATASET,{plain[0]} config')
  user_emb = arrays['user_emb']
  if user_emb.ndim != 2 or user_emb.shape[1] < 1:
    raise DataError(f'{path}: user_emb has shape {user_emb.shape}, expected '
                    '(n_users, d)')
  d = user_emb.shape[1]
  n_items = arrays['item_emb'].shape[0] if arrays['item_emb'].ndim else 0
  user_ids = _ids(path, 'user_ids', arrays['user_ids'], len(user_emb))
  item_ids = _ids(path, 'item_ids', arrays['item_ids'], n_items)
  params = {
      'user_emb': _floats(path, 'user_emb', user_emb, (None, d), user_ids),
      'item_emb': _floats(path, 'item_emb', arrays['item_emb'], (None, d),
                          item_ids)}
  for key, ids in zip(BIAS_KEYS, (user_ids, item_ids)):
    if key in arrays:
      params[key] = _floats(path, key, arrays[key], (len(ids),), ids)
  if model.MLP:
    params['mlp'] = _mlp(path, {k: arrays[k] for k in mlp_keys}, d)
  return Embeddings(path, _sha256(path), user_ids, item_ids,
                    model.complete_params(params))


def _refuse_unmatched(what: str, ids: np.ndarray, where: str,
                      fix: str = '') -> None:
  if len(ids):
    raise DataError(f'{len(ids)} {what} {where} ({_examples(ids)}){fix}')


def _rows(emb_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
  """Row of each of ``ids`` (all present) in ``emb_ids``."""
  order = np.argsort(emb_ids)
  return order[np.searchsorted(emb_ids[order], ids)]


def match_dataset(config: dict, emb: Embeddings, drop_missing_users: bool,
                  log: Callable[[str], None]):
  """Loads the config's dataset and matches the embeddings to it by id.

  Returns:
    ``(dataset, dataset_cfg)``: the dataset every user and item of which
    has an embedding, and the dataset config that rebuilds it (with
    ``exclude_users`` when users were dropped).
  """
  ds_cfg = dict(config['dataset'])
  raw = loaders.load_raw_dataset(ds_cfg)
  data_users = np.asarray(raw.user_ids).astype(str)
  data_items = np.asarray(raw.item_ids).astype(str)
  path = emb.path
  _refuse_unmatched('embedding user id(s) are not users of', np.setdiff1d(
      emb.user_ids, data_users), f'{raw.name} ({path}: user_ids)')
  _refuse_unmatched('embedding item id(s) are not items of', np.setdiff1d(
      emb.item_ids, data_items), f'{raw.name} ({path}: item_ids)')
  ds = loaders.select_dataset(raw, ds_cfg)
  missing = np.setdiff1d(np.asarray(ds.user_ids).astype(str), emb.user_ids)
  if len(missing) and drop_missing_users:
    ds_cfg['exclude_users'] = sorted(
        set(map(str, ds_cfg.get('exclude_users') or ())) | set(missing))
    ds = loaders.select_dataset(raw, ds_cfg)
    log(f'dropped {len(missing)} user(s) without an embedding '
        f'({_examples(missing)}) before the split')
  else:
    _refuse_unmatched(
        f'user(s) of {ds.name} have', missing, f'no embedding in {path}',
        '; pass --drop_missing_users to leave them out')
  _refuse_unmatched(
      f'item(s) of {ds.name} have', np.setdiff1d(
          np.asarray(ds.item_ids).astype(str), emb.item_ids),
      f'no embedding in {path}')
  unused = (len(emb.user_ids) - ds.n_users, len(emb.item_ids) - ds.n_items)
  if any(unused):
    log(f'{unused[0]} user and {unused[1]} item embedding(s) unused (their '
        'users / items left the data by the config\'s filters)')
  return ds, ds_cfg


def params_for(dataset, emb: Embeddings) -> dict:
  """The embeddings' params reordered to the dataset's index order."""
  u = _rows(emb.user_ids, np.asarray(dataset.user_ids).astype(str))
  i = _rows(emb.item_ids, np.asarray(dataset.item_ids).astype(str))
  out = {}
  for key, value in emb.params.items():
    if key in ('user_emb', 'user_bias'):
      out[key] = value[u]
    elif key in ('item_emb', 'item_bias'):
      out[key] = value[i]
    else:
      out[key] = value
  return out


def import_embeddings(config, npz_path: str, workdir: str, *,
                      drop_missing_users: bool = False,
                      log: Callable[[str], None] | None = None) -> dict:
  """Makes a finished recommender workdir from embeddings trained elsewhere.

  Args:
    config: a recommender config (``monosem_jax/experiments/configs/recommender.py``):
      ``dataset``, ``split``, ``model.kind`` and ``eval`` are used; the
      width (and NCF layers) come from the file.
    npz_path: the embeddings (see the module docstring).
    workdir: output folder, locked for the run; refused when it holds a
      trained recommender or another import.
    drop_missing_users: leave out the dataset's users without an embedding
      (recorded in ``config.json`` as ``dataset.exclude_users``) instead of
      refusing them.
    log: progress sink (default ``logging.info``).

  Returns:
    the ``metrics.json`` content (the model's metrics next to popularity's).

  Raises:
    DataError: the file or the data refused (nothing written).
    ConfigError, WorkdirError: as :func:`~monosem_jax.recommenders.train.run`.
  """
  log = log or logging.info
  config = files.jsonable(config)
  kind = config.get('model', {}).get('kind')
  if kind not in kinds.NAMES:
    raise ConfigError(f'config.model.kind={kind!r}: expected one of '
                      f'{", ".join(kinds.NAMES)}')
  emb = read_embeddings(npz_path, kind)
  with files.locked_workdir(workdir, 'recommender import', log) as workdir:
    return _import_locked(config, kind, emb, workdir, drop_missing_users, log)


def _recorded_config(config: dict, kind: str, emb: Embeddings, ds_cfg: dict,
                     drop_missing_users: bool) -> dict:
  """``config.json`` of an import: the width and layers of the file, the
  dataset selection, and the file's hash."""
  model = dict(config['model'], dim=emb.dim,
               **kinds.get(kind).model.config_of(emb.params))
  return dict(config, dataset=ds_cfg, model=model, imported={
      'embeddings': emb.path, 'sha256': emb.sha256,
      'drop_missing_users': bool(drop_missing_users)})


def _same_import(workdir: str, config: dict, split, params) -> dict | None:
  """The stored ``metrics.json`` when ``workdir`` already holds exactly
  this import (config, split and params), else None."""
  frozen = artifact_lib.RecommenderArtifact.directory_of(workdir)
  try:
    stored = artifact_lib.RecommenderArtifact.load(frozen)
    with open(os.path.join(workdir, 'metrics.json')) as f:
      metrics = json.load(f)
  except (artifact_lib.ArtifactError, OSError, ValueError):
    return None
  new = artifact_lib.flatten_params(params)
  old = artifact_lib.flatten_params(stored.params)
  same = (stored.meta.get('config') == config and new.keys() == old.keys()
          and all(np.array_equal(new[k], old[k]) for k in new)
          and all(np.array_equal(v, stored.split.arrays()[k])
                  for k, v in split.arrays().items()))
  return metrics if same else None


def _import_locked(config, kind, emb, workdir, drop_missing_users, log):
  t0 = time.time()
  dataset, ds_cfg = match_dataset(config, emb, drop_missing_users, log)
  split = protocol.make_split(dataset, **dict(config.get('split', {})))
  config = _recorded_config(config, kind, emb, ds_cfg, drop_missing_users)
  train.check_previous_settings(workdir, config, log)
  params = params_for(dataset, emb)
  stored = _same_import(workdir, config, split, params)
  if stored is not None:
    # Not rewritten: the artifact's hash, which sweeps record, stays.
    log(f'{workdir} already holds this import (same embeddings, data and '
        'settings); nothing to do')
    return stored
  log(f'{dataset.name}: {split.n_users} users x {split.n_items} items, '
      f'{split.n_train} training positives, {len(split.test_items)} held out '
      f'({len(split.eval_users)} eval users); imported {kind} d={emb.dim} '
      f'from {emb.path}')
  evaluation = train.Evaluation.from_config(split, config.get('eval', {}))
  pop = evaluation.popularity(split)
  final = evaluation.model(kind, params)
  log(f'imported {kind}: {train.fmt_metrics(final)}')
  log(f'popularity:   {train.fmt_metrics(pop)}')
  log(f'note: {NOTE}')
  out = train.metrics_document(dataset, split, kind, config, evaluation, pop,
                               [], final)
  out['imported'] = dict(config['imported'], note=NOTE)
  files.atomic_write_json(os.path.join(workdir, 'config.json'), config)
  files.atomic_write_json(os.path.join(workdir, 'metrics.json'), out)
  frozen = artifact_lib.RecommenderArtifact.directory_of(workdir)
  artifact_lib.RecommenderArtifact(
      kind=kind, params=params, split=split,
      meta={'dataset': dataset.name, 'config': config,
            'imported': config['imported'],
            'metrics': {'model': final, 'popularity': pop}}).save(frozen)
  fingerprint = artifact_lib.RecommenderArtifact.load(frozen).fingerprint
  log(f'wrote {frozen} (sha256 {fingerprint[:12]}) and metrics.json '
      f'({time.time() - t0:.1f}s)')
  return out
