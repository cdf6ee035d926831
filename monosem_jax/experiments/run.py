"""The main job: data -> recommenders -> SAE sweeps -> analysis and report.

Run on the embedded synthetic world (no downloads, no files needed)::

  python -m experiments.run --workdir=runs/quickstart

or reproduce the paper on real data (see ``monosem_jax/experiments/configs/quickstart.py``
for every dataset, the expected runtimes and the options)::

  python -m experiments.run --config=experiments/configs/quickstart.py:ml-1m --workdir=runs/ml1m

1. loads (or builds) the dataset and its protocol split, prints statistics;
2. per model (MF, NCF): trains and freezes the recommender
   (``WORKDIR/MODEL/recommender``);
3. trains the SAE grid on its frozen embeddings in one vmapped program
   (``WORKDIR/MODEL/sweep``: ``sweep_results.csv`` / ``.png``, orbax
   checkpoints);
4. analyses every config (as ``python -m experiments.analyze``: fidelity,
   neurons, interventions, figures, planted-concept recovery on the
   synthetic world) into ``WORKDIR/MODEL/sweep/analysis/report.md``;

then prints a short summary per model. Resize the world with e.g.
``--config.dataset.options.n_users=3000``; one model with
``--config.models=mf``.

Rerunning resumes from the checkpoints (a finished recommender is left as it
is, a sweep may be given more epochs). Before any stage runs, every stage's
settings are checked against what the workdir holds, for every model
(:func:`check_stages`); nothing is written when one is refused:

* a recommender workdir trained under other settings (only ``train.epochs``,
  ``eval.*``, ``checkpoint.*`` may change), or with more epochs than asked,
  is refused;
* a change that would rewrite a recommender's ``frozen/`` (more epochs,
  other ``eval.*``) while a sweep was trained on it, a sweep folder holding
  another sweep (spec or grid), one trained on another recommender, or more
  sweep epochs than asked, are refused in one line naming the stage, the
  field, the old and the new value. With
  ``--config.restart_downstream=True`` the stale sweep folders of those
  models (their checkpoints and the analysis in them) are deleted instead,
  once every check passed, and the recommender, sweep and analysis run
  again.
"""

import contextlib
import json
import os
import time

from absl import flags, logging

from monosem_jax.experiments.configs import analyze as analyze_config
from monosem_jax.experiments.launch import (console_script, define_config_file,
                                refusals_in_one_line)
from monosem_jax import files
from monosem_jax.analysis import concepts, pipeline, workdirs
from monosem_jax.analysis.sweep_figures import plot_sweep_workdir
from monosem_jax.data.loaders import load_data
from monosem_jax.errors import ConfigError, MonosemError, WorkdirError
from monosem_jax.recommenders import kinds, train
from monosem_jax.sweep import runner
from monosem_jax.sweep.runner import run_sweep
from monosem_jax.sweep.workdir import SweepWorkdir, recommender_at

_CONFIG = define_config_file(
    'config', 'experiments/configs/quickstart.py',
    'Main-job config (get_config in that file): the dataset, the models, '
    'each model\'s recommender and sweep.')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/quickstart',
                               'Where outputs are written (one folder per '
                               'model).')


def log(msg: str) -> None:
  print(msg, flush=True)


@refusals_in_one_line
def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  with files.locked_workdir(_WORKDIR.value, 'main job', log) as workdir:
    run_main_job(_CONFIG.value, workdir)


def run_main_job(cfg, workdir: str) -> dict:
  """Every stage for every model in ``cfg.models``; returns
  ``{model: pipeline.Analysis}``."""
  t0 = time.perf_counter()
  models = tuple(cfg.models)
  unknown = [m for m in models if m not in kinds.NAMES]
  if unknown or not models:
    raise ConfigError(f'config.models={models}: choose from '
                      f'{", ".join(kinds.NAMES)}')
  _restart_stale(cfg, workdir, check_stages(cfg, workdir, models))
  n = len(models) + 2
  log(f'== 1/{n} data: {cfg.dataset.name}')
  dataset, split = load_data(cfg.dataset, cfg[models[0]].recommender.split)
  concepts.require_concepts(dataset)   # before any training
  stats = dataset.summary()
  stats['split'] = {
      'n_train_positives': split.n_train,
      'n_test_positives': len(split.test_users),
      'n_eval_users': len(split.eval_users),
      'n_sae_train_users': len(split.sae_train_users),
      'n_sae_test_users': len(split.sae_test_users),
  }
  log(json.dumps(stats, indent=1))
  results = {}
  for step, model in enumerate(models, 2):  # one or two models
    log(f'== {step}/{n} {model.upper()}: recommender -> SAE sweep -> analysis')
    results[model] = _run_model(cfg, model, dataset,
                                os.path.join(workdir, model))
  log(f'== {n}/{n} summary')
  for model, result in results.items():
    summarize(model, result, log)
  log(f'done in {time.perf_counter() - t0:.1f}s; outputs under {workdir}')
  return results


# The stage folders of WORKDIR/MODEL, as _run_model writes them.
_RECOMMENDER, _SWEEP = 'recommender', 'sweep'


def check_stages(cfg, workdir: str, models
                 ) -> dict[str, tuple[str, str]]:
  """Every stage's settings against what ``workdir`` holds; writes nothing.

  Per model: the recommender workdir (:func:`train.check_workdir`), what a
  rerun would change in its ``frozen/`` (:func:`train.frozen_changes`), and
  the sweep folder against the sweep config and that recommender
  (:func:`runner.check_sweep_workdir`: spec and grid, the recommender's
  content hash, epochs). The main job's analysis settings are fixed
  (``monosem_jax/experiments/configs/analyze.py`` ``defaults_for``) and its outputs lie in the
  sweep folder, so they are stale exactly when the sweep is.

  Returns:
    ``{model: (why, fix)}`` for the models whose sweep folder a rerun cannot
    resume: ``why`` names the stage, the field, old and new value; ``fix``
    (maybe empty) how to keep that folder.

  Raises:
    ConfigError, WorkdirError, ArtifactError: what no restart of the
      downstream stages can fix (invalid settings, a recommender workdir
      trained under other settings or with more epochs), stage named.
  """
  stale, fixes = {}, {}
  for model in models:
    out = os.path.join(workdir, model)
    rec_dir = os.path.join(out, _RECOMMENDER)
    sweep_dir = os.path.join(out, _SWEEP)
    rec, sweep = cfg[model].recommender, cfg[model].sweep
    rec.dataset = cfg.dataset   # as _run_model sets them
    sweep.recommender_workdir = rec_dir
    stage = f'{model.upper()} recommender stage'
    with _stage_named(stage):
      train.check_workdir(rec, rec_dir)
      changes = train.frozen_changes(rec, rec_dir)
      artifact = (recommender_at(rec_dir) if changes == [] else
                  runner.PlannedRecommender(rec.model.kind, rec.model.dim))
    if changes and SweepWorkdir(sweep_dir).exists():
      field, old, new = changes[0]
      field = f'config.{model}.recommender.{field}'
      more = f' (and {len(changes) - 1} more)' if len(changes) > 1 else ''
      stale[model] = (f'{stage}: {field} {old!r} -> {new!r}{more} would '
                      f'rewrite {rec_dir}/frozen, on which the sweep '
                      f'{sweep_dir} and its analysis were trained')
      fixes[model] = f': keep {field}={old!r} or use a fresh --workdir'
    stage = f'{model.upper()} sweep stage'
    with _stage_named(stage):
      try:
        runner.check_sweep_workdir(sweep, sweep_dir, artifact)
      except WorkdirError as e:
        stale.setdefault(model, f'{stage}: {e}')
  return {m: (why, fixes.get(m, '')) for m, why in stale.items()}


@contextlib.contextmanager
def _stage_named(stage: str):
  """Prefixes a refusal's one line with the stage it comes from."""
  try:
    yield
  except MonosemError as e:
    e.args = (f'{stage}: {e}',)
    raise


def _restart_stale(cfg, workdir: str,
                   stale: dict[str, tuple[str, str]]) -> None:
  """Refuses stale downstream stages, or (``cfg.restart_downstream``)
  deletes their sweep folders so that they run afresh."""
  if not stale:
    return
  restart = cfg.get('restart_downstream', False)
  if not isinstance(restart, bool):
    raise ConfigError(f'config.restart_downstream={restart!r}: True or False')
  folders = [os.path.join(workdir, m, _SWEEP) for m in stale]
  if not restart:
    (why, fix), *more = stale.values()
    raise WorkdirError(
        f'{why}{fix}{f" (and {len(more)} more model)" if more else ""}; or '
        'rerun with --config.restart_downstream=True to delete '
        f'{", ".join(folders)} and redo the sweep and its analysis afresh '
        '(nothing was written)')
  for (model, (why, _)), folder in zip(stale.items(), folders):
    log(f'== restarting the {model.upper()} sweep and analysis ({why}): '
        f'deleting {folder}')
    files.remove_workdir(folder, 'main job (restart_downstream)')


def _run_model(cfg, model: str, dataset, out: str) -> pipeline.Analysis:
  rec = cfg[model].recommender
  rec.dataset = cfg.dataset   # one dataset for every model
  rec_dir = os.path.join(out, 'recommender')
  train.run(rec, rec_dir, log=log)
  sweep = cfg[model].sweep
  sweep.recommender_workdir = rec_dir
  sweep_dir = os.path.join(out, 'sweep')
  run_sweep(sweep, sweep_dir, log=log)
  plot_sweep_workdir(sweep_dir)
  # The analysis config's defaults for the dataset, as experiments.analyze;
  # under the sweep folder's lock, never beside another analysis (or a
  # sweep) of the same folder.
  options = analyze_config.analysis_options(analyze_config.get_config(),
                                            dataset.name)
  with files.WorkdirLock(sweep_dir, 'analysis'):
    view = workdirs.open_sweep(sweep_dir)
    return pipeline.analyze_sweep(view, dataset, options, log=log)


def summarize(model: str, result: pipeline.Analysis, log) -> None:
  """Logs :func:`~monosem_jax.analysis.pipeline.summary_lines`."""
  for line in pipeline.summary_lines(model, result):
    log(line)


#: The console script ``monosem-run`` (pyproject.toml).
run = console_script(main)

if __name__ == '__main__':
  run()
