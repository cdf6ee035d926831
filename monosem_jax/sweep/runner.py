"""A whole sweep from a recommender workdir to ``sweep_results.csv``.

:func:`run_sweep` is what ``python -m experiments.sweep`` calls:

1. load the frozen recommender (``REC_WORKDIR/frozen``: params, embeddings
   and the protocol split it was trained on);
2. build the static :class:`~monosem_jax.sweep.spec.SweepSpec` (model kind
   and width from the artifact) and the per-config
   :class:`~monosem_jax.sweep.spec.SweepParams` grid;
3. train every config together (:func:`~monosem_jax.sweep.engine.train_sweep`:
   vmapped, sharded over all devices, orbax checkpoints, automatic resume);
4. evaluate every config on the SAE-test users and write one CSV row per
   config (atomically), plus a figure of the metrics against lambda_pred.

Example (on a synthetic recommender)::

  rows = run_sweep(config, workdir='runs/sweep', log=print)
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np
import pandas as pd

from monosem_jax.recommenders.artifact import RecommenderArtifact
from monosem_jax.sweep import checkpoint, sharding
from monosem_jax.sweep.engine import (SweepData, evaluate_configs,
                                      positive_pairs_of, steps_per_epoch,
                                      train_sweep)
from monosem_jax.sweep.spec import FIELDS, SweepParams, SweepSpec

RESULTS_CSV = 'sweep_results.csv'
RESULTS_PNG = 'sweep_results.png'
_HISTORY_TERMS = ('loss', 'emb', 'pred', 'l1', 'kl', 'n_clamped', 'l0')
_METRICS = ('l0_users', 'l0_items', 'dead_frac', 'fve_users', 'fve_items',
            'fve', 'emb_mse_users', 'emb_mse_items', 'score_mse')


def load_artifact(rec_workdir: str) -> RecommenderArtifact:
  """The frozen recommender of a ``train_recommender`` workdir."""
  path = os.path.join(rec_workdir, 'frozen')
  return RecommenderArtifact.load(path if os.path.isdir(path) else rec_workdir)


def build_spec(artifact: RecommenderArtifact, spec_cfg: Mapping[str, Any],
               grid: Mapping[str, Any]) -> SweepSpec:
  """Static spec: model and width from the artifact, the rest from config.

  ``max_latents`` defaults to the largest ``dict_size`` of the grid.
  """
  kw = dict(spec_cfg)
  sizes = list(np.atleast_1d(grid.get('dict_size', ()))) or [kw.get('max_latents', 22)]
  kw.setdefault('max_latents', int(max(sizes)))
  kw['max_latents'] = max(int(kw['max_latents']), int(max(sizes)))
  return SweepSpec(model=artifact.kind, d=artifact.dim, **kw)


def build_params(spec: SweepSpec, defaults: Mapping[str, Any],
                 grid: Mapping[str, Any]) -> SweepParams:
  """The grid (cartesian product) over ``grid`` with ``defaults`` elsewhere."""
  base = SweepParams.from_list([{}], spec).config(0)
  base.update({k: v for k, v in defaults.items() if v is not None})
  axes = {k: list(np.atleast_1d(v)) for k, v in grid.items()}
  return SweepParams.grid(base, **axes)


def build_data(artifact: RecommenderArtifact, spec: SweepSpec) -> SweepData:
  split = artifact.split
  if spec.model == 'mf':
    return SweepData.mf(artifact.user_emb, artifact.item_emb,
                        split.sae_train_users)
  pos_u = pos_i = None
  if spec.ncf_pairs == 'positive':
    pos_u, pos_i = positive_pairs_of(split.train_users, split.train_items,
                                     split.sae_train_users)
  p = artifact.params
  return SweepData.ncf(artifact.user_emb, artifact.item_emb,
                       split.sae_train_users, p['mlp'], pos_u, pos_i,
                       p.get('user_bias'), p.get('item_bias'))


def write_csv_atomic(df: pd.DataFrame, path: str) -> None:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path))
  try:
    with os.fdopen(fd, 'w') as f:
      df.to_csv(f, index=False)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def results_table(params: SweepParams, histories: list[dict],
                  metrics: Mapping[str, np.ndarray], n: int) -> pd.DataFrame:
  """One row per config: hyper-parameters, final loss terms, metrics, status."""
  cols: dict[str, Any] = {'config': np.arange(n)}
  for f in FIELDS:
    cols[f] = np.asarray(getattr(params, f))[:n]
  last = histories[-1] if histories else {}
  for t in _HISTORY_TERMS:
    if t in last:
      cols[f'final_{t}'] = np.asarray(last[t])[:n]
  for m in _METRICS:
    if m in metrics:
      cols[m] = np.asarray(metrics[m])[:n]
  finite = np.asarray(metrics['finite'])[:n]
  cols['status'] = np.where(finite, 'ok', 'diverged')
  cols['diverged_step'] = np.asarray(metrics['diverged_step'])[:n]
  return pd.DataFrame(cols)


def run_sweep(config, workdir: str,
              log: Callable[[str], None] = print) -> pd.DataFrame:
  """Runs (or resumes) the sweep described by ``config`` in ``workdir``.

  Args:
    config: a ConfigDict with ``recommender_workdir``, ``spec`` (SweepSpec
      fields except model/d), ``defaults`` (per-config values not swept),
      ``grid`` (field -> list of values), ``seed``, ``epochs``,
      ``checkpoint_every``, ``shard`` (bool).
    workdir: output folder: ``sweep.json``, ``checkpoints/``,
      ``sweep_results.csv``.
    log: progress sink.

  Returns:
    The results table (also written to ``workdir/sweep_results.csv``).
  """
  t_start = time.perf_counter()
  artifact = load_artifact(config.recommender_workdir)
  grid = {k: v for k, v in dict(config.grid).items() if v is not None}
  spec = build_spec(artifact, dict(config.spec), grid)
  params = build_params(spec, dict(config.defaults), grid)
  n = params.num_configs
  mesh = None
  if config.shard and jax.device_count() > 1:
    mesh = sharding.config_mesh()
    params = params.pad_to(sharding.padded_size(n, mesh))
  data = build_data(artifact, spec)
  epochs = int(config.epochs or spec.epochs)
  steps = steps_per_epoch(spec, data)
  log(f'sweep: {n} configs ({params.num_configs} after padding) on '
      f'{jax.device_count()} {jax.devices()[0].platform} device(s); '
      f'{artifact.kind} d={spec.d}, M={spec.max_latents}, {epochs} epochs x '
      f'{steps} steps')
  done = checkpoint.saved_epochs(workdir)
  if done:
    log(f'resuming from the checkpoint of epoch {max(done)} in {workdir}')
  clock = {'t': time.perf_counter()}

  def progress(epoch, state, hist):
    now = time.perf_counter()
    dt, clock['t'] = now - clock['t'], now
    loss = np.asarray(hist['loss'])[:n]
    finite = np.asarray(hist['finite'])[:n]
    ok_loss = loss[finite] if finite.any() else loss
    log(f'epoch {epoch:3d}/{epochs}  loss median {np.median(ok_loss):.4g} '
        f'[{np.min(ok_loss):.4g}, {np.max(ok_loss):.4g}]  '
        f'L0 {np.median(np.asarray(hist["l0"])[:n]):.2f}  '
        f'diverged {int((~finite).sum())}  {dt:.1f}s  '
        f'{params.num_configs * steps / max(dt, 1e-9):,.0f} config-steps/s  '
        f'elapsed {now - t_start:.1f}s')

  state, histories = train_sweep(
      spec, params, data, jax.random.PRNGKey(int(config.seed)), epochs=epochs,
      workdir=workdir, checkpoint_every=int(config.checkpoint_every),
      mesh=mesh, callback=progress)
  split = artifact.split
  mlp = artifact.params.get('mlp') if spec.model == 'ncf' else None
  chunk = config.get('eval_config_chunk')
  if chunk is None and mlp is not None:
    # The NCF score matrices pass a (128 users x items x 64) hidden layer
    # per config: bound it to ~1 GB at a time.
    chunk = max(1, int(1e9 // (128 * artifact.n_items * 64 * 4)))
  metrics = evaluate_configs(state, spec, params,
                             artifact.user_emb[split.sae_test_users],
                             artifact.item_emb, mlp=mlp, config_chunk=chunk)
  table = results_table(params, histories, metrics, n)
  write_csv_atomic(table, os.path.join(workdir, RESULTS_CSV))
  from monosem_jax.analysis.sweep_figures import plot_sweep  # matplotlib: lazy
  plot_sweep(table, path=os.path.join(workdir, RESULTS_PNG))
  log(f'wrote {os.path.join(workdir, RESULTS_CSV)}: {n} configs, '
      f'{int((table.status == "ok").sum())} ok, '
      f'{int((table.status != "ok").sum())} diverged; '
      f'total {time.perf_counter() - t_start:.1f}s')
  return table
