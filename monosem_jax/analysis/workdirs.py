"""Read-only access to finished work: :func:`open_sweep`, :func:`open_dataset`.

The analysis, the launchers and the notebooks read workdirs only through
these (a recommender alone: :meth:`RecommenderArtifact.open
<monosem_jax.recommenders.artifact.RecommenderArtifact.open>`; the files of
a sweep folder are named by
:class:`~monosem_jax.sweep.workdir.SweepWorkdir`). :func:`open_sweep` gathers what a sweep explains: the frozen
recommender it was trained on (checked by content hash), its split, its
frozen scorer, the spec, every config's hyper-parameters and the stacked SAE
weights (real configs only, padding dropped).

Nothing is trusted as given. :func:`open_sweep` verifies the checkpoint
against the hashes recorded when it was written (its leaves, and the
hyper-parameters of ``sweep.json``) and refuses a sweep stopped before the
epochs it was asked for unless ``allow_partial`` (then
:attr:`SweepView.notes` says "analysed at epoch 5 of 12", and so does every
output of the analysis). :func:`open_dataset` refuses item labels (genres,
tags, titles) that changed since the recommender was trained. What could not
be checked (inputs written by an older version) is listed in
:attr:`SweepView.notes` / :func:`labels_note` rather than passed over.

Example::

  view = open_sweep('runs/ml1m_mf_sweep')
  view.hparams.num_configs, view.state.sae['W'].shape   # C, (C, M, d)
  codec = view.sae(3)              # interventions.Codec, trimmed to its size
  codes, stats = codec.encode(view.artifact.item_emb)   # (n_items, dict_size)
  table = sweep_fidelity(view)                          # one row per config
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from monosem_jax.analysis import fidelity
from monosem_jax.analysis.interventions import Codec
from monosem_jax.data import loaders
from monosem_jax.data.dataset import csr_gather
from monosem_jax.data.loaders import load_data
from monosem_jax.errors import ConfigError, WorkdirError
from monosem_jax.recommenders import metrics
from monosem_jax.recommenders.artifact import (LABELS, RecommenderArtifact,
                                               labels_sha256)
from monosem_jax.sae import model
from monosem_jax.sweep import checkpoint
from monosem_jax.sweep.spec import SweepHparams, SweepSpec, validate
from monosem_jax.sweep.state import SweepState, build_scorer
from monosem_jax.sweep.workdir import SweepWorkdir, recommender_at


def labels_note(artifact: RecommenderArtifact) -> str | None:
  """What :func:`open_dataset` could not check about this recommender's
  labels (None: they were checked)."""
  if artifact.meta.get('labels_sha256') is not None:
    return None
  return (f'the recommender (sha256 {str(artifact.fingerprint)[:12]}) does '
          f'not record a fingerprint of its dataset\'s labels (trained by an '
          f'older version), so that {artifact.dataset}\'s concepts and titles '
          'are unchanged since training was not checked; retrain it to have '
          'them checked')


def _label_files(dataset_cfg, changed) -> str:
  """Where the changed labels are read from, for the refusal."""
  name = dataset_cfg.get('name')
  by_label = loaders.LABEL_FILES.get(name)
  if not by_label:
    return f'{name} is generated from config.dataset.options'
  names = sorted({f for c in changed for f in by_label.get(c, ())})
  try:
    where = loaders.resolve_data_dir(name, dataset_cfg.get('data_dir') or None)
  except Exception:  # pylint: disable=broad-except
    where = '$MONOSEM_DATA_DIR'
  return f'read from {", ".join(names) or "its files"} in {where}'


def open_dataset(artifact: RecommenderArtifact):
  """The dataset a recommender was trained on (concept labels, titles,
  popularity), loaded again with the settings it recorded, and checked
  against what it recorded: the split, and the fingerprint of its labels
  (:func:`~monosem_jax.recommenders.artifact.labels_sha256`). A recommender
  trained before labels were fingerprinted is not checked;
  :func:`labels_note` says so (:func:`open_sweep` puts it in
  :attr:`SweepView.notes`, which the analysis logs once and writes into
  every report).

  Raises:
    DataError: the data cannot be loaded (e.g. ``$MONOSEM_DATA_DIR`` moved).
    WorkdirError: it no longer matches the recommender's split, or its
      labels changed since training (names the labels and their files).
  """
  config = artifact.meta.get('config') or {}
  if 'dataset' not in config:
    raise WorkdirError('the recommender does not record its dataset settings;'
                       ' retrain it')
  dataset, split = load_data(config['dataset'], config.get('split', {}))
  old = artifact.split
  if (split.n_users, split.n_items) != (old.n_users, old.n_items) or not (
      np.array_equal(split.train_items, old.train_items)):
    raise WorkdirError(
        f'{dataset.name} as loaded now ({split.n_users} x {split.n_items}) is '
        'not the data the recommender was trained on; point '
        'MONOSEM_DATA_DIR at the same files')
  recorded = artifact.meta.get('labels_sha256')
  if recorded is None:   # an older recommender: labels_note says so
    return dataset
  now = labels_sha256(dataset)
  changed = [k for k in LABELS if k in recorded and recorded[k] != now[k]]
  if changed:
    where = _label_files(config['dataset'], changed)
    raise WorkdirError(
        f'the labels of {dataset.name} changed since its recommender (sha256 '
        f'{str(artifact.fingerprint)[:12]}) was trained: '
        f'{", ".join(changed)} differ ({where}); an analysis would name '
        'concepts the model never saw: restore those files, or retrain the '
        'recommender (and its sweep) on them')
  return dataset


@dataclasses.dataclass(frozen=True, eq=False)
class SweepView:
  """A finished (or checkpointed) sweep, read-only.

  Attributes:
    workdir: the sweep folder.
    artifact: the frozen recommender it explains.
    scorer: its frozen scorer, with the sweep's loss options.
    spec, hparams: the sweep's static spec and per-config hyper-parameters.
    state: the stacked state of the latest checkpoint (real configs).
    histories: per-epoch ``(C,)`` training terms.
    epochs: the epoch count the sweep was asked for (None: not recorded,
      an older sweep); ``epoch`` is the state's.
    notes: what every output of an analysis of this view must say: that it
      is of an unfinished sweep ("analysed at epoch 5 of 12"), or what could
      not be verified (inputs written by an older version).
    encoder: None: the configs code with their trained encoders;
      otherwise how :func:`with_encoder` recodes them (e.g. 'omp, signed,
      k=8'), and ``spec`` / ``hparams`` say so.
    inputs: None: ``artifact`` is the recommender the SAEs were trained on;
      otherwise the workdir of the recommender whose embeddings and scorer
      :func:`with_inputs` put in its place.
  """
  workdir: str
  artifact: RecommenderArtifact
  scorer: Any
  spec: SweepSpec
  hparams: SweepHparams
  state: SweepState
  histories: list
  epochs: int | None = None
  notes: tuple[str, ...] = ()
  encoder: str | None = None
  inputs: str | None = None

  @property
  def num_configs(self) -> int:
    return self.hparams.num_configs

  @property
  def epoch(self) -> int:
    """The epoch of the checkpoint this view holds."""
    return int(np.asarray(self.state.epoch))

  @property
  def partial(self) -> bool:
    """Whether the checkpoint is of fewer epochs than the sweep asked for."""
    return self.epochs is not None and self.epoch < self.epochs

  def sae(self, i: int) -> Codec:
    """Config ``i``'s trained SAE, typed: its weights trimmed to its
    dictionary size, its own :class:`~monosem_jax.sae.model.SAEConfig`
    (the sweep's architecture at that size, training precision included;
    every product of the Codec is exact float32 whatever it) and its ``k``
    (None for ReLU). Its hyper-parameters are ``hparams.config(i)``, its
    status ``state.finite[i]`` / ``state.diverged_step[i]``.

    Raises:
      IndexError: ``i`` is not a config of the sweep.
    """
    params = checkpoint.trained_params(self.hparams, self.state, i)
    cfg = checkpoint.sae_config_of(self.spec, params['W'].shape[0])
    k = int(np.asarray(self.hparams.k)[i]) if cfg.activation != 'relu' else None
    return Codec(jax.tree.map(jnp.asarray, params), cfg, k or None)

  def config(self, i: int) -> tuple[dict, dict]:
    """Config ``i``'s SAE weights (trimmed) and hyper-parameters as dicts
    (:func:`~monosem_jax.sweep.checkpoint.config_from_state`); typed:
    :meth:`sae`."""
    return checkpoint.config_from_state(self.spec, self.hparams, self.state, i)


def open_sweep(workdir: str, step: int | None = None,
               allow_partial: bool = False) -> SweepView:
  """Opens a sweep workdir and the recommender it was trained on.

  Args:
    workdir: the sweep folder (open it under its
      :class:`~monosem_jax.files.WorkdirLock` when a sweep may be running).
    step: the checkpoint epoch to read (default: the latest).
    allow_partial: open a sweep whose checkpoint is of fewer epochs than it
      was asked for (stopped early); :attr:`SweepView.notes` then says so.

  Raises:
    WorkdirError: no sweep there; an unfinished sweep without
      ``allow_partial``; a ``sweep.json`` or checkpoint edited, truncated or
      corrupted since it was written (hash); its recommender gone or
      changed since the sweep (content hash).
  """
  folder = SweepWorkdir(workdir)
  artifact = folder.recommender()
  read = folder.read(step)
  notes = []
  if read.epochs is None:
    notes.append(f'analysed at epoch {read.epoch}: {checkpoint.SWEEP_JSON} '
                 'does not record how many epochs the sweep was asked for '
                 '(written by an older version), so whether it finished was '
                 'not checked')
  elif read.epoch < read.epochs:
    if not allow_partial:
      raise WorkdirError(
          f'sweep {workdir} is unfinished: epoch {read.epoch} of '
          f'{read.epochs}; finish it by rerunning the sweep command (it '
          'resumes), or pass --config.allow_partial=True to analyse this '
          'checkpoint')
    notes.append(f'analysed at epoch {read.epoch} of {read.epochs}: the sweep '
                 'is unfinished')
  if not read.verified:
    notes.append(f'the checkpoint of epoch {read.epoch} carries no hashes '
                 '(written by an older version), so its weights and '
                 'hyper-parameters were not verified')
  label = labels_note(artifact)
  if label:
    notes.append(label)
  return SweepView(os.path.abspath(workdir), artifact,
                   build_scorer(artifact, read.spec), read.spec, read.hparams,
                   read.state, read.histories, read.epochs, tuple(notes))


def with_encoder(view: SweepView, method: str, k: int,
                 signed: bool = False) -> SweepView:
  """The sweep with every config coded by pursuit on its own trained decoder
  (docs/method.md#pursuit-encoders): what the dictionaries can do with ``k``
  atoms, whatever their encoders. Fidelity, the neuron and concept tables
  and the interventions of the returned view all use these codes; the
  training-time measures (``sweep_results.csv``, the histories) still
  describe the trained encoders.

  Args:
    view: from :func:`open_sweep`.
    method: 'omp' | 'mp'.
    k: pursuit steps, ``1 <= k <=`` every config's dictionary size (and
      ``<= dim`` for 'omp').
    signed: coefficients of either sign.

  Raises:
    ConfigError: a method, k or signed outside those ranges (one line).
  """
  if view.encoder is not None:
    raise ConfigError(f'with_encoder: the view is already recoded '
                      f'({view.encoder})')
  if method not in model.PURSUITS:
    raise ConfigError(f'encode method={method!r}: expected one of '
                      f'{model.PURSUITS}')
  if signed not in (True, False):
    raise ConfigError(f'encode signed={signed!r}: expected True or False')
  smallest = int(np.min(view.hparams.dict_size))
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not (
      1 <= k <= smallest):
    raise ConfigError(f'encode k={k!r}: must be an integer in [1, {smallest}]'
                      ' (the smallest dictionary of the sweep)')
  spec = dataclasses.replace(view.spec, activation=method, k_max=int(k),
                             mp_signed=bool(signed))
  hparams = dataclasses.replace(
      view.hparams, k=np.full(view.num_configs, k, np.int32))
  validate(spec, hparams)
  return dataclasses.replace(
      view, spec=spec, hparams=hparams,
      encoder=f'{method}, {"signed" if signed else "non-negative"}, k={k}')


def with_inputs(view: SweepView, rec_workdir: str) -> SweepView:
  """The sweep's SAEs applied to the embeddings of another recommender of
  the same data, split, kind and width, ranked by that recommender's scorer:
  e.g. SAEs trained on :func:`~monosem_jax.recommenders.artifact.minmax_scaled`
  embeddings and analysed on the raw ones, as the authors' code does
  (docs/results.md "L0 against the authors'"). Every table of the analysis
  (fidelity, L0, concepts, interventions) then describes those inputs;
  :attr:`SweepView.notes` says so.

  Raises:
    WorkdirError: no recommender there, or one of another kind, width,
      dataset, size or split (one line).
  """
  other = recommender_at(rec_workdir, 'inputs')
  mine = view.artifact
  for what, a, b in (('kind', other.kind, mine.kind),
                     ('embedding width', other.dim, mine.dim),
                     ('dataset', other.dataset, mine.dataset),
                     ('users', other.n_users, mine.n_users),
                     ('items', other.n_items, mine.n_items)):
    if a != b:
      raise WorkdirError(f'inputs={rec_workdir}: its {what} is {a}, the '
                         f'sweep\'s recommender has {b}; the SAEs can only '
                         'code a recommender of the same data and width')
  theirs, ours = other.split.arrays(), mine.split.arrays()
  if theirs.keys() != ours.keys() or not all(
      np.array_equal(theirs[k], ours[k]) for k in ours):
    raise WorkdirError(f'inputs={rec_workdir}: its split differs from the '
                       'sweep\'s recommender\'s (other held-out positives or '
                       'SAE-test users); train it on the same split')
  note = (f'the SAEs were trained on the embeddings of the sweep\'s '
          f'recommender and are analysed here on those of {rec_workdir} '
          f'(fingerprint {str(other.fingerprint)[:12]}), ranked by its scorer')
  return dataclasses.replace(view, artifact=other,
                             scorer=build_scorer(other, view.spec),
                             notes=(*view.notes, note),
                             inputs=os.path.abspath(rec_workdir))


def seen_mask(split, users: np.ndarray) -> np.ndarray:
  """``(len(users), n_items)`` bool: each user's training positives."""
  owner, items, _ = csr_gather(split.train_indptr(), split.train_items, users)
  mask = np.zeros((len(users), split.n_items), bool)
  mask[owner, items] = True
  return mask


def _reconstructions(spec: SweepSpec, sae, hp, users, items):
  """Reconstructed users and items, each sample coded on its own and exact
  whatever precision trained the sweep (:func:`monosem_jax.sae.model.
  per_sample`: a BatchTopK code never depends on the other users or items
  ranked with it, as in the concept tables, interventions and exports)."""
  cfg = model.per_sample(spec.sae)
  mask = model.latent_mask(hp.dict_size, cfg.dict_size)
  return (model.reconstruct(sae, users, cfg, hp.k, mask),
          model.reconstruct(sae, items, cfg, hp.k, mask))


#: The sides :func:`sweep_fidelity` may reconstruct.
RECONSTRUCT = ('both', 'items', 'users')


def sweep_fidelity(view: SweepView, k: int = 30, p: float = 0.9,
                   max_users: int | None = None,
                   config_chunk: int = 8, metric_k: int = 10,
                   reconstruct: str = 'both') -> pd.DataFrame:
  """Ranking fidelity and accuracy of every config on the SAE-test users.

  Original and reconstructed top-k lists (training positives removed), both
  ranked by the frozen scorer; means over users of the measures of
  :func:`monosem_jax.analysis.fidelity.list_agreement`. Beside them, the
  reconstructed model (reconstructed user and item embeddings through the
  frozen scorer) is evaluated on the same users' held-out positives with the
  recommender's own metric code (:func:`metrics.block_sums`, the evaluation
  data of :func:`metrics.eval_data_from_split`), as is the original model.
  Every product is exact float32 (docs/method.md#precision).

  Args:
    view: from :func:`open_sweep`.
    k, p: list length and RBO persistence.
    max_users: use only the first this many SAE-test users (None: all).
    config_chunk: configs ranked at once (bounds memory).
    metric_k: cut-off of NDCG and HR.
    reconstruct: which side goes through the SAE: 'both' (the analysis),
      or, as a diagnostic of which side limits fidelity
      (docs/results_goal.md), 'items' (original users, reconstructed items)
      or 'users' (reconstructed users, original items).

  Returns:
    One row per config: ``config``, the swept hyper-parameters,
    ``rbo, rbo_norm, rbo_ext, kendall_tau, overlap`` (means over users),
    ``ndcg@K, hr@K`` of the reconstructed model and ``ndcg@K_original,
    hr@K_original`` of the original one (the same in every row), means over
    the users with held-out positives, and ``finite``: False for a config
    that diverged in training (the state's flag) or whose reconstructions or
    reconstructed logits are not all finite. Such a config's logits are not
    scored: its fidelity and accuracy are NaN (non-finite scores would rank
    last anyway, :mod:`monosem_jax.recommenders.metrics`, but its lists mean
    nothing).
  """
  if reconstruct not in RECONSTRUCT:
    raise ConfigError(f'reconstruct={reconstruct!r}: one of '
                      f'{", ".join(RECONSTRUCT)}')
  art = view.artifact
  users_idx = np.asarray(art.split.sae_test_users)[:max_users]
  users = jnp.asarray(art.user_emb[users_idx])
  items = jnp.asarray(art.item_emb)
  item_idx = jnp.arange(items.shape[0])
  seen = jnp.asarray(seen_mask(art.split, users_idx))
  # one block of all these users, in this order: row r is users_idx[r]
  block = tuple(a[0] for a in metrics.eval_data_from_split(
      art.split, block_size=len(users_idx), users=users_idx).device_arrays())
  n_items = items.shape[0]
  scorer = view.scorer

  def rank(logits):
    sums = metrics.block_sums(logits, *block[1:], n_items, (metric_k,))
    return fidelity.top_k_lists(logits, seen, k), sums

  original, original_sums = jax.jit(rank)(
      scorer.matrix_logits(users, items, jnp.asarray(users_idx), item_idx))
  original_acc = metrics.mean_metrics(original_sums)

  @jax.jit
  def lists(sae, hp):
    def one(args):
      u_hat, i_hat = _reconstructions(view.spec, args[0], args[1], users,
                                      items)
      if reconstruct == 'items':
        u_hat = users
      elif reconstruct == 'users':
        i_hat = items
      logits = scorer.matrix_logits(u_hat, i_hat, jnp.asarray(users_idx),
                                    item_idx)
      ok = (jnp.all(jnp.isfinite(u_hat)) & jnp.all(jnp.isfinite(i_hat))
            & jnp.all(jnp.isfinite(logits)))
      return rank(logits), ok
    return jax.lax.map(one, (sae, hp))

  acc_keys = (f'ndcg@{metric_k}', f'hr@{metric_k}')
  finite = np.asarray(view.state.finite)
  rows = []
  c = view.num_configs
  for start in range(0, c, config_chunk):
    idx = np.arange(start, min(c, start + config_chunk))
    sae = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[idx]),
                       view.state.sae)
    (recon, sums), ok = lists(sae, view.hparams.take(idx))    # (c, N, k)
    ok = np.asarray(ok)
    n = recon.shape[1]
    m = fidelity.list_agreement(
        jnp.tile(original, (len(idx), 1)), recon.reshape(-1, k), p)
    for j, i in enumerate(idx):
      row = {'config': int(i), **view.hparams.config(int(i))}
      row.update({key: float(np.nanmean(v[j * n:(j + 1) * n])) if ok[j]
                  else np.nan for key, v in m.items()})
      acc = metrics.mean_metrics({key: v[j] for key, v in sums.items()})
      row.update({key: acc[key] if ok[j] else np.nan for key in acc_keys})
      row.update({f'{key}_original': original_acc[key] for key in acc_keys})
      row['finite'] = bool(ok[j] and finite[i])
      rows.append(row)
  return pd.DataFrame(rows)
