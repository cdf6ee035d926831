"""A recommender run in a workdir: load -> baseline -> restore -> fit -> freeze.

:func:`run` is what ``python -m experiments.train_recommender`` calls. The
workdir gets ``config.json``, orbax ``checkpoints/`` (one per epoch, resumed
on rerun, bitwise identical; a finished run is left untouched),
``metrics.json`` and ``frozen/`` (the
:class:`~monosem_jax.recommenders.artifact.RecommenderArtifact` the SAE stage
loads). The training itself is :mod:`monosem_jax.recommenders.loop`.

As the sweep's :func:`~monosem_jax.sweep.driver.train_sweep`, the run calls
typed hooks after every epoch (``on_epoch``: an :class:`EpochStats` each;
one that returns True stops the run there, checkpointed, not frozen) and
returns a :class:`TrainResult`. Its progress lines are one such subscriber
(:class:`EpochLog`); nothing needs to read them.

Example::

  deadline = time.perf_counter() + 60
  result = run(config, 'runs/rec', log=print,
               on_epoch=[lambda s: time.perf_counter() > deadline])
  result.stopped, result.epoch, result.final   # final: None when stopped
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
from monosem_jax.data.loaders import load_data
from monosem_jax.errors import ConfigError, WorkdirError
from monosem_jax.recommenders import artifact as artifact_lib
from monosem_jax.recommenders import metrics as metrics_lib
from monosem_jax.recommenders.config import TrainConfig
from monosem_jax.recommenders.loop import (TrainState, fit, init_state,
                                           score_fn)

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


_frozen = artifact_lib.RecommenderArtifact.directory_of


def _has_checkpoint(directory: str) -> bool:
  return os.path.isdir(directory) and any(
      d.isdigit() for d in os.listdir(directory))


def fmt_metrics(m: Mapping[str, float], keys=('ndcg@10', 'hr@10',
                                              'recall@20', 'mrr', 'mpr')):
  return ' '.join(f'{k} {m[k]:.4f}' for k in keys if k in m)


@dataclasses.dataclass(frozen=True)
class EpochStats:
  """What a hook learns after each epoch of a recommender run.

  Attributes:
    epoch: epochs completed.
    epochs: the epoch count the run trains to.
    first_epoch: the epoch this run started from (a resumed run: > 0).
    loss, reg, objective: the epoch's mean prediction loss, regulariser and
      their sum (:func:`~monosem_jax.recommenders.loop.make_epoch_fn`).
    metrics: the model's test metrics after this epoch (e.g.
      ``'ndcg@10'``), or None when this epoch was not evaluated
      (``eval.every``).
    eval_seconds: seconds of that evaluation (None when not evaluated).
    train_seconds: wall seconds of training and evaluation in this run.
    elapsed: wall seconds since the run began (loading included).
  """
  epoch: int
  epochs: int
  first_epoch: int
  loss: float
  reg: float
  objective: float
  metrics: Mapping[str, float] | None
  eval_seconds: float | None
  train_seconds: float
  elapsed: float

  @property
  def last(self) -> bool:
    """Whether this is the run's last epoch."""
    return self.epoch >= self.epochs


#: A subscriber of the run: True asks it to stop after this epoch (which is
#: then checkpointed; the model is not frozen, and a rerun resumes).
Hook = Callable[[EpochStats], 'bool | None']


@dataclasses.dataclass(frozen=True, eq=False)
class TrainResult:
  """A recommender run (:func:`run`).

  Attributes:
    workdir: the run's folder.
    metrics: the ``metrics.json`` content (per-epoch ``epochs``, the
      ``popularity`` baseline and, once frozen, ``final``).
    epoch: the epoch the model reached.
    epochs: the epoch count asked for.
    first_epoch: the epoch the run resumed from (``epochs`` when the
      workdir already held this very run and nothing was trained).
    stopped: a hook stopped the run before ``epochs`` (its last epoch is
      checkpointed; rerunning resumes); nothing was frozen.
    artifact: the frozen recommender's folder (None when stopped).
    seconds: wall seconds of the run.
  """
  workdir: str
  metrics: Mapping[str, Any]
  epoch: int
  epochs: int
  first_epoch: int
  stopped: bool
  artifact: str | None
  seconds: float

  @property
  def final(self) -> Mapping[str, Any] | None:
    """The final test metrics of the model and of popularity (None when
    stopped)."""
    return self.metrics.get('final')


class EpochLog:
  """The run's progress lines, a subscriber of :func:`run` (never stops
  it): a line for the first, the last and a few epochs in between (every
  epoch under ``--verbosity=0``), with the epoch's metrics when evaluated.

  Args:
    log: the sink.
    epochs: the epoch count the run trains to.
    popularity: the popularity baseline's metrics (its NDCG@10 is quoted).
  """

  def __init__(self, log: Callable[[str], None], epochs: int,
               popularity: Mapping[str, float]):
    self.log, self.popularity = log, popularity
    self.lines = Progress.for_launcher(epochs)

  def __call__(self, s: EpochStats) -> bool:
    if not self.lines.due(s.epoch):
      return False
    line = f'epoch {s.epoch}/{s.epochs} loss {s.loss:.4f} reg {s.reg:.4f}'
    if s.metrics is not None:
      line += (f' | {fmt_metrics(s.metrics)} '
               f'(pop ndcg@10 {self.popularity["ndcg@10"]:.4f})')
    self.log(line + f' | {s.train_seconds:.1f}s train+eval, '
             f'{s.elapsed:.1f}s total, ETA '
             f'{self.lines.eta(s.epoch, s.first_epoch)}')
    return False


def run(config, workdir: str, log: Callable[[str], None] | None = None,
        on_epoch: Sequence[Hook] = ()) -> TrainResult:
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
      ``monosem_jax/experiments/configs/recommender.py``).
    workdir: output folder (created; resumed when it holds a checkpoint of
      the same configuration; left as it is when its ``frozen/`` already
      holds this very run, so that the sweeps trained on it stay valid).
      Locked for the run: a second process on it is refused
      (:class:`~monosem_jax.files.WorkdirLock`). :func:`check_workdir` and
      :func:`frozen_changes` tell beforehand what it would refuse or change.
    log: progress sink (default ``logging.info``): the lines of
      :class:`EpochLog` and what the run does.
    on_epoch: hooks called after every epoch trained, in order, with its
      :class:`EpochStats` (after its checkpoint and ``metrics.json`` are
      written); one that returns True stops the run there (checkpointed, not
      frozen; a rerun resumes).

  Returns:
    A :class:`TrainResult` (``metrics``: the metrics.json content).

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
    return _run_locked(config, cfg, workdir, log, on_epoch)


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
  if (os.path.isdir(_frozen(workdir))
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
  path = os.path.join(_frozen(workdir), artifact_lib.META_JSON)
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
                log: Callable[[str], None], on_epoch: Sequence[Hook]
                ) -> TrainResult:
  t_start = time.time()
  check_previous_settings(workdir, config, log)
  _check_epochs(workdir, cfg.epochs)
  finished = _finished_run(workdir, config)
  if finished is not None:  # frozen/ is left as it is (its hash identifies it)
    log(f'{workdir}/frozen already holds this run ({cfg.epochs} epochs, the '
        'same settings): nothing to train')
    return TrainResult(workdir, finished, cfg.epochs, cfg.epochs, cfg.epochs,
                       False, _frozen(workdir), time.time() - t_start)
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

    # Fit: evaluate, checkpoint and write metrics.json after every epoch,
    # then the hooks: the progress lines first, then the caller's.
    t_train = time.time()
    first = int(state.epoch)
    hooks = [EpochLog(log, cfg.epochs, pop), *on_epoch]

    def after_epoch(state, stats) -> bool:
      e = stats['epoch']
      stats['elapsed_s'] = time.time() - t_start
      if evaluation.every > 0 and (e % evaluation.every == 0
                                   or e == cfg.epochs):
        te = time.time()
        stats['metrics'] = evaluation.model(cfg.kind, state.params)
        stats['eval_s'] = time.time() - te
      history.append(stats)
      # Saved before the hooks run: one that stops the run (or a log sink
      # that raises) keeps this epoch.
      if e % ckpt_every == 0 or e == cfg.epochs:
        save_checkpoint(mngr, state, history)
      files.atomic_write_json(metrics_path, report(history))
      return _call_hooks(hooks, EpochStats(
          epoch=e, epochs=cfg.epochs, first_epoch=first, loss=stats['loss'],
          reg=stats['reg'], objective=stats['objective'],
          metrics=stats.get('metrics'), eval_seconds=stats.get('eval_s'),
          train_seconds=time.time() - t_train, elapsed=stats['elapsed_s']))

    state, _ = fit(cfg, split, state=state, callback=after_epoch)
    save_checkpoint(mngr, state, history)
  finally:
    mngr.close()
  if int(state.epoch) < cfg.epochs:   # a hook stopped the run
    log(f'stopped at epoch {int(state.epoch)}/{cfg.epochs} (its checkpoint is '
        'saved; rerunning resumes): not frozen; '
        f'{time.time() - t_start:.1f}s')
    return TrainResult(workdir, report(history), int(state.epoch), cfg.epochs,
                       first, True, None, time.time() - t_start)

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
  ).save(_frozen(workdir))
  log(f'wrote {_frozen(workdir)} and metrics.json '
      f'({time.time() - t_start:.1f}s total)')
  return TrainResult(workdir, out, int(state.epoch), cfg.epochs, first, False,
                     _frozen(workdir), time.time() - t_start)


def _call_hooks(hooks: Sequence[Hook], stats: EpochStats) -> bool:
  """Calls every hook; whether one asked to stop."""
  stop = False
  for hook in hooks:
    stop = bool(hook(stats)) or stop
  return stop
