"""A recommender run in a workdir: load -> baseline -> restore -> fit -> freeze.

:func:`run` is what ``python -m experiments.train_recommender`` calls. The
workdir gets ``config.json``, orbax ``checkpoints/`` (one per epoch, resumed
on rerun, bitwise identical; a finished run is left untouched),
``metrics.json`` and ``frozen/`` (the
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
import numpy as np

from monosem_jax import checkpoints, files
from monosem_jax.progress import Progress
from monosem_jax.data import loaders, protocol
from monosem_jax.errors import ConfigError, WorkdirError, refuse_unknown
from monosem_jax.recommenders import artifact as artifact_lib
from monosem_jax.recommenders import metrics as metrics_lib
from monosem_jax.recommenders.config import TrainConfig
from monosem_jax.recommenders.loop import (TrainState, fit, init_state,
                                           score_fn)

#: Keys of a config's ``dataset`` section (``exclude_users`` is optional).
DATASET_KEYS = ('name', 'data_dir', 'options', 'min_item_users',
                'min_user_positives', 'exclude_users')


def load_raw_dataset(dataset_cfg: Mapping[str, Any]):
  """The dataset of a ``dataset`` config section as its loader returns it
  (before :func:`select_dataset`); refuses unknown keys."""
  d = dict(dataset_cfg)
  refuse_unknown(d, DATASET_KEYS, 'dataset config')
  options = dict(d.get('options') or {})
  return loaders.load_dataset(d['name'], d.get('data_dir') or None, **options)


def select_dataset(dataset, dataset_cfg: Mapping[str, Any]):
  """Applies a ``dataset`` section's selections to a loaded dataset: first
  ``exclude_users`` (raw user ids, e.g. the users an imported recommender
  has no embedding for), then the minimum-count filters."""
  excluded = list(dataset_cfg.get('exclude_users') or ())
  if excluded:
    ids = np.asarray(dataset.user_ids).astype(str)
    wanted = np.asarray(excluded).astype(str)
    unknown = wanted[~np.isin(wanted, ids)]
    if len(unknown):
      raise ConfigError(
          f'config.dataset.exclude_users: {len(unknown)} id(s) are not users '
          f'of {dataset.name} (e.g. {", ".join(unknown[:3])})')
    keep = ~np.isin(ids, wanted)
    dataset = dataset.select(keep[dataset.users])
  min_item_users = int(dataset_cfg.get('min_item_users', 0) or 0)
  min_user_positives = int(dataset_cfg.get('min_user_positives', 0) or 0)
  if min_item_users or min_user_positives:
    dataset = protocol.filter_interactions(
        dataset, min_item_users=min_item_users,
        min_user_positives=min_user_positives)
  return dataset


def load_data(dataset_cfg: Mapping[str, Any], split_cfg: Mapping[str, Any]):
  """Loads, filters and splits a dataset. Returns ``(dataset, split)``.

  Args:
    dataset_cfg: ``name``, ``data_dir`` (None: ``$MONOSEM_DATA_DIR``),
      ``options`` (loader keywords), ``min_item_users``,
      ``min_user_positives`` and, optionally, ``exclude_users``.
    split_cfg: keywords of :func:`monosem_jax.data.protocol.make_split`.
  """
  ds = select_dataset(load_raw_dataset(dataset_cfg), dataset_cfg)
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


def fmt_metrics(m: Mapping[str, float], keys=('ndcg@10', 'hr@10',
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
      the same configuration; left as it is when its ``frozen/`` already
      holds this very run, so that the sweeps trained on it stay valid).
      Locked for the run: a second process on it is refused
      (:class:`~monosem_jax.files.WorkdirLock`). :func:`check_workdir` and
      :func:`frozen_changes` tell beforehand what it would refuse or change.
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
  cfg = _train_config(config)  # every setting is checked before a write
  with files.locked_workdir(workdir, 'recommender training', log) as workdir:
    return _run_locked(config, cfg, workdir, log)


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """Full-ranking evaluation of one split (docs/method.md#ranking-metrics)."""
  data: Any
  arrays: Any
  ks: tuple[int, ...]
  ties: str
  every: int

  @classmethod
  def from_config(cls, split, eval_cfg: Mapping[str, Any]) -> 'Evaluation':
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


def metrics_document(dataset, split, kind, config, evaluation, pop_metrics,
                     history, final=None) -> dict:
  """The content of ``metrics.json`` (``kind``: 'mf' | 'ncf')."""
  out = {'dataset': dataset.name, 'model': kind,
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


def check_previous_settings(workdir: str, config: dict, log) -> None:
  """Refuses a trained workdir of other settings; replaces untrained ones."""
  if _trained_settings_differ(workdir, config):
    log(f'{os.path.join(workdir, "config.json")}: replacing the settings of a '
        'run that never trained')


def _trained_settings_differ(workdir: str, config: dict) -> bool:
  """Whether ``workdir/config.json`` differs from ``config`` in a setting
  that matters on resume; raises when that workdir has trained."""
  cfg_path = os.path.join(workdir, 'config.json')
  if not os.path.exists(cfg_path):
    return False
  with open(cfg_path) as f:
    old = json.load(f)
  if _resume_relevant(old) == _resume_relevant(config):
    return False
  if (os.path.isdir(os.path.join(workdir, 'frozen'))
      or _has_checkpoint(os.path.join(workdir, 'checkpoints'))):
    field, was, now = config_changes(_resume_relevant(old),
                                     _resume_relevant(config))[0]
    raise WorkdirError(
        f'{workdir} holds a run of another configuration ({cfg_path}: '
        f'{field} {was!r} -> {now!r}); '
        'use a fresh --workdir or the same settings (only train.epochs, '
        'eval.* and checkpoint.* may change on resume)')
  return True


def _check_epochs(workdir: str, epochs: int) -> None:
  """Refuses fewer epochs than the workdir's checkpoints already hold."""
  directory = os.path.join(workdir, 'checkpoints')
  latest = max(checkpoints.saved_steps(directory), default=0)
  if latest > epochs:
    raise ConfigError(
        f'config.train.epochs={epochs}, but {directory} already '
        f'holds epoch {latest}: set --config.train.epochs >= {latest} or use '
        'a fresh --workdir')


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any],
                   prefix: str = '') -> list[tuple[str, Any, Any]]:
  """The settings in which two nested JSON configs differ, in key order.

  >>> config_changes({'train': {'epochs': 2, 'lr': 1}}, {'train': {'epochs': 3,
  ...                'lr': 1}, 'log': 'x'})
  [('train.epochs', 2, 3), ('log', None, 'x')]
  """
  out = []
  for key in list(old) + [k for k in new if k not in old]:
    a, b = old.get(key), new.get(key)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
      out += config_changes(a, b, f'{prefix}{key}.')
    elif a != b:
      out.append((f'{prefix}{key}', a, b))
  return out


def _train_config(config: dict) -> TrainConfig:
  try:
    return TrainConfig.from_mapping({**config['model'], **config['train']})
  except ConfigError as e:
    raise ConfigError(f'config.model / config.train: {e}') from None


def check_workdir(config, workdir: str) -> None:
  """What :func:`run` would refuse about ``workdir``, checked without
  writing anything (a missing workdir is fine: it is created by the run).

  Raises:
    ConfigError: invalid settings, or fewer epochs than the workdir's
      checkpoints hold.
    WorkdirError: the workdir holds a trained run of another configuration
      (only ``train.epochs``, ``eval.*``, ``checkpoint.*`` and ``log`` may
      change on resume).
  """
  config = files.jsonable(config)
  cfg = _train_config(config)
  if os.path.isdir(workdir):
    _trained_settings_differ(workdir, config)
    _check_epochs(workdir, cfg.epochs)


def frozen_changes(config, workdir: str) -> list[tuple[str, Any, Any]] | None:
  """How :func:`run` would change ``workdir/frozen`` (the artifact a sweep
  is trained on, identified by content hash).

  Returns:
    None when there is no ``frozen/`` yet; else the settings in which the
    artifact's recorded config differs from ``config`` as ``(field, old,
    new)`` (e.g. ``('train.epochs', 2, 3)``). Any difference rewrites it
    (more epochs, new metrics or settings in its ``meta.json``); an empty
    list means a rerun leaves it untouched.
  """
  path = os.path.join(workdir, 'frozen', 'meta.json')
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      old = json.load(f)['meta']['config']
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise WorkdirError(f'{path}: unreadable ({type(e).__name__}: {e}); '
                       'use a fresh --workdir') from None
  return config_changes(old, files.jsonable(config))


def _finished_run(workdir: str, config: dict) -> dict | None:
  """``metrics.json`` of a run that froze under exactly ``config``, or None."""
  metrics_path = os.path.join(workdir, 'metrics.json')
  try:
    if frozen_changes(config, workdir) != []:
      return None
    with open(metrics_path) as f:
      out = json.load(f)
  except (OSError, ValueError):  # WorkdirError too: frozen again below
    return None
  return out if isinstance(out, dict) and 'final' in out else None


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
  check_previous_settings(workdir, config, log)
  _check_epochs(workdir, cfg.epochs)
  finished = _finished_run(workdir, config)
  if finished is not None:  # frozen/ is left as it is (its hash identifies it)
    log(f'{workdir}/frozen already holds this run ({cfg.epochs} epochs, the '
        'same settings): nothing to train')
    return finished
  # Load. config.json is written only once the data loaded: a run that
  # failed there leaves nothing that would block the corrected command.
  dataset, split = load_data(config['dataset'], config.get('split', {}))
  files.atomic_write_json(os.path.join(workdir, 'config.json'), config)
  log(f'{dataset.name}: {split.n_users} users x {split.n_items} items, '
      f'{split.n_train} training positives, {len(split.test_items)} held out '
      f'({len(split.eval_users)} eval users); {time.time() - t_start:.1f}s')

  # Baseline.
  evaluation = Evaluation.from_config(split, config.get('eval', {}))
  t0 = time.time()
  pop = evaluation.popularity(split)
  log(f'popularity baseline: {fmt_metrics(pop)} ({time.time() - t0:.1f}s)')
  report = functools.partial(metrics_document, dataset, split, cfg.kind,
                             config, evaluation, pop)
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
        line += (f' | {fmt_metrics(stats["metrics"])} '
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
  log(f'final {cfg.kind}: {fmt_metrics(final)}')
  log(f'final popularity: {fmt_metrics(pop)}')
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
