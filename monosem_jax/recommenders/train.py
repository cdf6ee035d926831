"""A recommender run in a workdir: load -> baseline -> restore -> fit -> freeze.

:func:`run` is what ``python -m experiments.train_recommender`` calls. The
workdir gets ``config.json``, orbax ``checkpoints/`` (one per epoch, resumed
on rerun, bitwise identical), ``metrics.json`` and ``frozen/`` (the
:class:`~monosem_jax.recommenders.artifact.RecommenderArtifact` the SAE stage
loads). The training itself is :mod:`monosem_jax.recommenders.loop`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from typing import Any, Callable, Mapping, Sequence

import jax

from monosem_jax import checkpoints, files
from monosem_jax.progress import Progress
from monosem_jax.data import loaders, protocol
from monosem_jax.errors import ConfigError, WorkdirError
from monosem_jax.recommenders import artifact as artifact_lib
from monosem_jax.recommenders import metrics as metrics_lib
from monosem_jax.recommenders.config import TrainConfig
from monosem_jax.recommenders.loop import (TrainState, fit, init_state,
                                           score_fn)


def load_data(dataset_cfg: Mapping[str, Any], split_cfg: Mapping[str, Any]):
  """Loads, filters and splits a dataset. Returns ``(dataset, split)``.

  Args:
    dataset_cfg: ``name``, ``data_dir`` (None: ``$MONOSEM_DATA_DIR``),
      ``options`` (loader keywords), ``min_item_users``, ``min_user_positives``.
    split_cfg: keywords of :func:`monosem_jax.data.protocol.make_split`.
  """
  d = dict(dataset_cfg)
  name = d.pop('name')
  data_dir = d.pop('data_dir', None) or None
  options = dict(d.pop('options', None) or {})
  min_item_users = int(d.pop('min_item_users', 0) or 0)
  min_user_positives = int(d.pop('min_user_positives', 0) or 0)
  if d:
    raise ConfigError(f'dataset config: unknown key(s) {", ".join(sorted(d))}')
  ds = loaders.load_dataset(name, data_dir, **options)
  if min_item_users or min_user_positives:
    ds = protocol.filter_interactions(ds, min_item_users=min_item_users,
                                      min_user_positives=min_user_positives)
  split = protocol.make_split(ds, **dict(split_cfg))
  return ds, split


# ----------------------------------------------------------------------------
# Checkpointed run in a workdir.

_RESUME_IGNORED = {('train', 'epochs'), ('eval',), ('checkpoint',), ('log',)}


def _resume_relevant(config: dict) -> dict:
  out = {}
  for k, v in config.items():
    if (k,) in _RESUME_IGNORED:
      continue
    if isinstance(v, dict):
      v = {kk: vv for kk, vv in v.items() if (k, kk) not in _RESUME_IGNORED}
    out[k] = v
  return out


def checkpoint_manager(directory: str, max_to_keep: int = 2):
  """The run's CheckpointManager (:mod:`monosem_jax.checkpoints`)."""
  return checkpoints.make_manager(directory, max_to_keep)


def save_checkpoint(mngr, state: TrainState, history: Sequence[dict] = ()):
  """Saves ``state`` (and the JSON history) as step ``state.epoch``."""
  step = int(state.epoch)
  if step in mngr.all_steps():
    return
  checkpoints.save(mngr, step, state, {'epochs': list(history)})


def restore_checkpoint(mngr, template: TrainState, step: int | None = None,
                       ) -> tuple[TrainState, list[dict]]:
  """Restores ``(state, history)``; ``template`` gives the structure.

  Args:
    mngr: from :func:`checkpoint_manager`.
    template: e.g. :func:`~monosem_jax.recommenders.loop.init_state` of the
      same config.
    step: epoch to restore (default: the latest).
  """
  state, meta = checkpoints.restore(mngr, template, step)
  return state, list(meta['epochs'])


def _has_checkpoint(directory: str) -> bool:
  return os.path.isdir(directory) and any(
      d.isdigit() for d in os.listdir(directory))


def _fmt_metrics(m: Mapping[str, float], keys=('ndcg@10', 'hr@10',
                                               'recall@20', 'mrr', 'mpr')):
  return ' '.join(f'{k} {m[k]:.4f}' for k in keys if k in m)


def run(config, workdir: str, log: Callable[[str], None] | None = None) -> dict:
  """Trains (or resumes) a recommender in ``workdir`` and freezes it.

  Writes ``workdir/checkpoints/`` (orbax: params, optimiser state, epoch,
  key, history; one per ``checkpoint.every`` epochs and the last),
  ``workdir/config.json``, ``workdir/metrics.json`` (per-epoch loss and
  metrics; final metrics of the model and of the popularity baseline) and
  ``workdir/frozen/`` (:class:`~monosem_jax.recommenders.artifact.
  RecommenderArtifact`, whose meta fingerprints the dataset's labels:
  :func:`~monosem_jax.recommenders.artifact.labels_sha256`).

  Args:
    config: ConfigDict or nested dict with sections ``dataset``, ``split``,
      ``model``, ``train``, ``eval``, ``checkpoint`` (see
      ``experiments/configs/recommender.py``).
    workdir: output folder (created; resumed when it holds a checkpoint of
      the same configuration). Locked for the run: a second process on it
      is refused (:class:`~monosem_jax.files.WorkdirLock`).
    log: progress sink (default ``logging.info``).

  Returns:
    the metrics.json content.

  Raises:
    ConfigError: invalid settings (e.g. ``train.epochs < 1``) or fewer
      epochs than the workdir's checkpoint already holds.
    WorkdirError: the workdir is a file, is in use, or holds a trained run
      of another configuration.
    DataError: the data cannot be loaded (nothing is written then).
  """
  log = log or logging.info
  config = files.jsonable(config)
  try:  # every setting is checked before anything is written
    cfg = TrainConfig.from_mapping({**config['model'], **config['train']})
  except ConfigError as e:
    raise ConfigError(f'config.model / config.train: {e}') from None
  workdir = files.prepare_workdir(workdir)
  with files.WorkdirLock(workdir, 'recommender training') as lock:
    if lock.stale_pid:
      log(f'{workdir}: taking over the lock of process {lock.stale_pid}, '
          'which is gone')
    return _run_locked(config, cfg, workdir, log)


@dataclasses.dataclass(frozen=True)
class _Evaluation:
  """Full-ranking evaluation of one split (docs/method.md#ranking-metrics)."""
  data: Any
  arrays: Any
  ks: tuple[int, ...]
  ties: str
  every: int

  @classmethod
  def from_config(cls, split, eval_cfg: Mapping[str, Any]) -> '_Evaluation':
    data = metrics_lib.eval_data_from_split(
        split, int(eval_cfg.get('block_size', 256)))
    return cls(data, data.device_arrays(),
               tuple(int(k) for k in eval_cfg.get('ks', metrics_lib.DEFAULT_KS)),
               eval_cfg.get('ties', 'index'), int(eval_cfg.get('every', 1)))

  def popularity(self, split) -> dict:
    return metrics_lib.evaluate_popularity(split, self.data, self.ks,
                                           self.ties, self.arrays)

  def model(self, kind: str, params) -> dict:
    return metrics_lib.evaluate(score_fn(kind), params, self.data, self.ks,
                                self.ties, self.arrays)


def _metrics_document(dataset, split, cfg, config, evaluation, pop_metrics,
                      history, final=None) -> dict:
  """The content of ``metrics.json``."""
  out = {'dataset': dataset.name, 'model': cfg.kind,
         'n_users': split.n_users, 'n_items': split.n_items,
         'n_train': split.n_train, 'n_eval_users': len(split.eval_users),
         'ks': list(evaluation.ks), 'ties': evaluation.ties,
         'config': config, 'epochs': history, 'popularity': pop_metrics}
  if final is not None:
    out['final'] = {'model': final, 'popularity': pop_metrics}
    if pop_metrics.get('ndcg@10'):
      out['final']['ndcg@10_ratio_to_popularity'] = (
          final['ndcg@10'] / pop_metrics['ndcg@10'])
  return out


def _check_previous_settings(workdir: str, config: dict, log) -> None:
  """Refuses a trained workdir of other settings; replaces untrained ones."""
  cfg_path = os.path.join(workdir, 'config.json')
  if not os.path.exists(cfg_path):
    return
  with open(cfg_path) as f:
    old = json.load(f)
  if _resume_relevant(old) == _resume_relevant(config):
    return
  if (os.path.isdir(os.path.join(workdir, 'frozen'))
      or _has_checkpoint(os.path.join(workdir, 'checkpoints'))):
    raise WorkdirError(
        f'{workdir} holds a run of another configuration ({cfg_path}); '
        'use a fresh --workdir or the same settings (only train.epochs, '
        'eval.* and checkpoint.* may change on resume)')
  log(f'{cfg_path}: replacing the settings of a run that never trained')


def _restore(mngr, cfg: TrainConfig, split, log) -> tuple[TrainState, list]:
  """The latest checkpoint, or a fresh state; refuses one beyond the epochs."""
  state = init_state(cfg, split.n_users, split.n_items)
  latest = mngr.latest_step()
  if latest is None:
    return state, []
  if latest > cfg.epochs:
    raise ConfigError(
        f'config.train.epochs={cfg.epochs}, but {mngr.directory} already '
        f'holds epoch {latest}: set --config.train.epochs >= {latest} or use '
        'a fresh --workdir')
  state, history = restore_checkpoint(mngr, state)
  log(f'resumed from {mngr.directory} at epoch {int(state.epoch)}')
  return state, history


def _run_locked(config: dict, cfg: TrainConfig, workdir: str,
                log: Callable[[str], None]) -> dict:
  t_start = time.time()
  _check_previous_settings(workdir, config, log)
  # Load. config.json is written only once the data loaded: a run that
  # failed there leaves nothing that would block the corrected command.
  dataset, split = load_data(config['dataset'], config.get('split', {}))
  files.atomic_write_json(os.path.join(workdir, 'config.json'), config)
  log(f'{dataset.name}: {split.n_users} users x {split.n_items} items, '
      f'{split.n_train} training positives, {len(split.test_items)} held out '
      f'({len(split.eval_users)} eval users); {time.time() - t_start:.1f}s')

  # Baseline.
  evaluation = _Evaluation.from_config(split, config.get('eval', {}))
  t0 = time.time()
  pop = evaluation.popularity(split)
  log(f'popularity baseline: {_fmt_metrics(pop)} ({time.time() - t0:.1f}s)')
  report = functools.partial(_metrics_document, dataset, split, cfg, config,
                             evaluation, pop)
  metrics_path = os.path.join(workdir, 'metrics.json')

  # Restore.
  ckpt_cfg = dict(config.get('checkpoint', {}))
  ckpt_every = int(ckpt_cfg.get('every', 1))
  mngr = checkpoint_manager(os.path.join(workdir, 'checkpoints'),
                            int(ckpt_cfg.get('max_to_keep', 2)))
  try:
    state, history = _restore(mngr, cfg, split, log)

    # Fit: evaluate, checkpoint and report after every epoch; a line every
    # few epochs (every epoch under --verbosity=0).
    t_train = time.time()
    progress = Progress.for_launcher(cfg.epochs)
    first = int(state.epoch)

    def after_epoch(state, stats):
      e = stats['epoch']
      stats['elapsed_s'] = time.time() - t_start
      line = (f'epoch {e}/{cfg.epochs} loss {stats["loss"]:.4f} '
              f'reg {stats["reg"]:.4f}')
      if evaluation.every > 0 and (e % evaluation.every == 0
                                   or e == cfg.epochs):
        te = time.time()
        stats['metrics'] = evaluation.model(cfg.kind, state.params)
        stats['eval_s'] = time.time() - te
        line += (f' | {_fmt_metrics(stats["metrics"])} '
                 f'(pop ndcg@10 {pop["ndcg@10"]:.4f})')
      history.append(stats)
      # Saved before the line is logged: a log sink that stops the run
      # (e.g. a time budget) keeps this epoch.
      if e % ckpt_every == 0 or e == cfg.epochs:
        save_checkpoint(mngr, state, history)
      files.atomic_write_json(metrics_path, report(history))
      if progress.due(e):
        log(line + f' | {time.time() - t_train:.1f}s train+eval, '
            f'{stats["elapsed_s"]:.1f}s total, ETA {progress.eta(e, first)}')

    state, _ = fit(cfg, split, state=state, callback=after_epoch)
    save_checkpoint(mngr, state, history)
  finally:
    mngr.close()

  # Freeze.
  final = evaluation.model(cfg.kind, state.params)
  log(f'final {cfg.kind}: {_fmt_metrics(final)}')
  log(f'final popularity: {_fmt_metrics(pop)}')
  out = report(history, final)
  files.atomic_write_json(metrics_path, out)
  artifact_lib.RecommenderArtifact(
      kind=cfg.kind, params=jax.device_get(state.params), split=split,
      meta={'dataset': dataset.name, 'config': config,
            'labels_sha256': artifact_lib.labels_sha256(dataset),
            'train_config': cfg.to_dict(), 'epochs': int(state.epoch),
            'metrics': {'model': final, 'popularity': pop}}
  ).save(os.path.join(workdir, 'frozen'))
  log(f'wrote {os.path.join(workdir, "frozen")} and metrics.json '
      f'({time.time() - t_start:.1f}s total)')
  return out
