"""The main job: data -> recommenders -> SAE sweeps -> analysis and report.

Run on the embedded synthetic world (no downloads, no files needed)::

  python -m experiments.run --workdir=runs/quickstart

or reproduce the paper on real data (see ``experiments/configs/quickstart.py``
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

then prints a short summary per model. Rerunning resumes from the
checkpoints. Resize the world with e.g.
``--config.dataset.options.n_users=3000``; one model with
``--config.models="('mf',)"``.
"""

import json
import os
import time

from absl import app, flags, logging

from experiments.configs import analyze as analyze_config
from experiments.launch import (define_config_file, parse_flags,
                                refusals_in_one_line)
from monosem_jax import files
from monosem_jax.analysis import pipeline, use_cases, workdirs
from monosem_jax.analysis.sweep_figures import plot_sweep_workdir
from monosem_jax.errors import ConfigError
from monosem_jax.recommenders import train
from monosem_jax.sweep.runner import run_sweep

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
  workdir = files.prepare_workdir(_WORKDIR.value)
  with files.WorkdirLock(workdir, 'main job'):
    run_main_job(_CONFIG.value, workdir)


def run_main_job(cfg, workdir: str) -> dict:
  """Every stage for every model in ``cfg.models``; returns
  ``{model: pipeline.Analysis}``."""
  t0 = time.perf_counter()
  models = tuple(cfg.models)
  unknown = [m for m in models if m not in ('mf', 'ncf')]
  if unknown or not models:
    raise ConfigError(f'config.models={models}: choose from mf, ncf')
  n = len(models) + 2
  log(f'== 1/{n} data: {cfg.dataset.name}')
  dataset, split = train.load_data(cfg.dataset, cfg[models[0]].recommender.split)
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
  defaults = analyze_config.defaults_for(dataset.name)
  # Under the sweep folder's lock, as experiments.analyze: never beside
  # another analysis (or a sweep) of the same folder.
  with files.WorkdirLock(sweep_dir, 'analysis'):
    view = workdirs.open_sweep(sweep_dir)
    return pipeline.analyze_sweep(
        view, dataset, use_cases_=[use_cases.UseCase.from_dict(c)
                                   for c in defaults['use_cases']],
        concept_sets=defaults['concept_sets'], pop_top=defaults['pop_top'],
        log=log)


def summarize(model: str, result: pipeline.Analysis, log) -> None:
  """Best configs, planted-concept recovery, fidelity, one intervention."""
  fid = result.fidelity
  cols = [c for c in ('config', 'lambda_pred', 'dict_size', 'rho', 'l0_items',
                      'rbo_norm', 'kendall_tau', pipeline.PURE) if c in fid]
  log(f'{model.upper()}: best configs (most pure concepts, then normalised '
      'RBO):\n' + fid.sort_values([pipeline.PURE, 'rbo_norm'],
                                  ascending=False)[cols].head(3).round(3)
      .to_string(index=False))
  if result.planted is not None:
    p = result.planted
    log(f'{model.upper()}: planted-concept recovery, config {result.chosen}: '
        f'mean recall {p.recall.mean():.3f}, mean purity@10 '
        f'{p["purity@10"].mean():.3f} over {len(p)} concepts')
  iv = result.interventions
  if len(iv):
    case = iv[(iv.kind == 'suppress') & (iv['mode'] == 'delta')]
    if len(case):
      first, last = case.iloc[0], case.iloc[-1]
      log(f'{model.upper()}: {case.case.iloc[0]}, delta mode: concept share '
          f'of the top-30 {first.concept_share:.3f} -> '
          f'{last.concept_share:.3f} at level {last.level}')
  log(f'{model.upper()}: report {result.report_path}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
