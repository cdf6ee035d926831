"""Read-only access to finished work: :func:`open_recommender`, :func:`open_sweep`.

The analysis, the launchers and the notebooks read workdirs only through
these. :func:`open_sweep` gathers what a sweep explains: the frozen
recommender it was trained on (checked by content hash), its split, its
frozen scorer, the spec, every config's hyper-parameters and the stacked SAE
weights (real configs only, padding dropped).

Example::

  view = open_sweep('runs/ml1m_mf_sweep')
  view.hparams.num_configs, view.state.sae['W'].shape   # C, (C, M, d)
  sae, hp = view.config(3)                              # trimmed to its size
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
from monosem_jax.data.dataset import csr_gather
from monosem_jax.errors import ConfigError, WorkdirError
from monosem_jax.recommenders import metrics
from monosem_jax.recommenders.artifact import RecommenderArtifact
from monosem_jax.recommenders.train import load_data
from monosem_jax.sae import model
from monosem_jax.sweep import checkpoint
from monosem_jax.sweep.runner import build_scorer, load_artifact
from monosem_jax.sweep.spec import SweepHparams, SweepSpec, validate
from monosem_jax.sweep.state import SweepState


def open_recommender(workdir: str) -> RecommenderArtifact:
  """The frozen recommender of a ``train_recommender`` workdir."""
  return load_artifact(workdir)


def open_dataset(artifact: RecommenderArtifact):
  """The dataset a recommender was trained on (concept labels, titles,
  popularity), loaded again with the settings it recorded.

  Raises:
    DataError: the data cannot be loaded (e.g. ``$MONOSEM_DATA_DIR`` moved).
    WorkdirError: it no longer matches the recommender's split.
  """
  config = artifact.meta.get('config') or {}
  if 'dataset' not in config:
    raise WorkdirError('the recommender does not record its dataset settings;'
                       ' retrain it with experiments.train_recommender')
  dataset, split = load_data(config['dataset'], config.get('split', {}))
  old = artifact.split
  if (split.n_users, split.n_items) != (old.n_users, old.n_items) or not (
      np.array_equal(split.train_items, old.train_items)):
    raise WorkdirError(
        f'{dataset.name} as loaded now ({split.n_users} x {split.n_items}) is '
        'not the data the recommender was trained on; point '
        'MONOSEM_DATA_DIR at the same files')
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
    encoder: None: the configs code with their trained encoders;
      otherwise how :func:`with_encoder` recodes them (e.g. 'omp, signed,
      k=8'), and ``spec`` / ``hparams`` say so.
  """
  workdir: str
  artifact: RecommenderArtifact
  scorer: Any
  spec: SweepSpec
  hparams: SweepHparams
  state: SweepState
  histories: list
  encoder: str | None = None

  @property
  def num_configs(self) -> int:
    return self.hparams.num_configs

  def config(self, i: int) -> tuple[dict, dict]:
    """Config ``i``'s SAE weights (trimmed) and hyper-parameters."""
    return checkpoint.config_from_state(self.spec, self.hparams, self.state, i)


def open_sweep(workdir: str, step: int | None = None) -> SweepView:
  """Opens a sweep workdir and the recommender it was trained on.

  Raises:
    WorkdirError: no sweep there, or its recommender is gone or changed
      since the sweep (content hash).
  """
  if not os.path.isfile(os.path.join(workdir, checkpoint.SWEEP_JSON)):
    raise WorkdirError(f'{workdir}: no {checkpoint.SWEEP_JSON}; pass the '
                       '--workdir of python -m experiments.sweep')
  _, _, prov = checkpoint.read_sweep_json(workdir, provenance=True)
  rec = (prov or {}).get('recommender') or {}
  if not rec.get('workdir'):
    raise WorkdirError(f'{workdir}/{checkpoint.SWEEP_JSON} does not name its '
                       'recommender (an older sweep); rerun the sweep')
  artifact = load_artifact(rec['workdir'])
  if artifact.fingerprint != rec.get('fingerprint'):
    raise WorkdirError(
        f'the recommender at {rec["workdir"]} changed since {workdir} was '
        f'trained (sha256 {str(artifact.fingerprint)[:12]}, the sweep '
        f'recorded {str(rec.get("fingerprint"))[:12]}); its analysis would '
        'mix two models')
  spec, hparams, state, histories = checkpoint.restore_sweep(workdir, step)
  return SweepView(os.path.abspath(workdir), artifact,
                   build_scorer(artifact, spec), spec, hparams, state,
                   histories)


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


def seen_mask(split, users: np.ndarray) -> np.ndarray:
  """``(len(users), n_items)`` bool: each user's training positives."""
  owner, items, _ = csr_gather(split.train_indptr(), split.train_items, users)
  mask = np.zeros((len(users), split.n_items), bool)
  mask[owner, items] = True
  return mask


def _reconstructions(spec: SweepSpec, sae, hp, users, items):
  cfg = spec.sae
  mask = model.latent_mask(hp.dict_size, cfg.dict_size)
  return (model.reconstruct(sae, users, cfg, hp.k, mask),
          model.reconstruct(sae, items, cfg, hp.k, mask))


def sweep_fidelity(view: SweepView, k: int = 30, p: float = 0.9,
                   max_users: int | None = None,
                   config_chunk: int = 8, metric_k: int = 10) -> pd.DataFrame:
  """Ranking fidelity and accuracy of every config on the SAE-test users.

  Original and reconstructed top-k lists (training positives removed), both
  ranked by the frozen scorer; means over users of the measures of
  :func:`monosem_jax.analysis.fidelity.list_agreement`. Beside them, the
  reconstructed model (reconstructed user and item embeddings through the
  frozen scorer) is evaluated on the same users' held-out positives with the
  recommender's own metric code (:func:`metrics.block_sums`, the evaluation
  data of :func:`metrics.eval_data_from_split`), as is the original model.

  Args:
    view: from :func:`open_sweep`.
    k, p: list length and RBO persistence.
    max_users: use only the first this many SAE-test users (None: all).
    config_chunk: configs ranked at once (bounds memory).
    metric_k: cut-off of NDCG and HR.

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
