"""The main job: the whole pipeline on the embedded synthetic world.

Run (no downloads, no files needed)::

  python -m experiments.run --workdir=runs/quickstart

1. builds the synthetic planted-concept world and its protocol split and
   prints their statistics;
2. trains an MF recommender on it and freezes it (``WORKDIR/recommender``);
3. trains a grid of SAEs on the frozen embeddings in one vmapped program
   (``WORKDIR/sweep``: ``sweep_results.csv``, ``sweep_results.png``,
   orbax checkpoints);
4. analyses every config (``python -m experiments.analyze`` on the sweep:
   fidelity, neurons, planted-concept recovery, interventions, figures) and
   writes ``WORKDIR/sweep/report.md``; prints a short summary.

Rerunning resumes from the checkpoints. Resize with e.g.
``--config.recommender.dataset.options.n_users=3000``; see
``experiments/configs/quickstart.py``.
"""

import json
import os
import time

from absl import app, flags, logging

from experiments.launch import (define_config_file, parse_flags,
                                refusals_in_one_line)
from experiments.configs import analyze as analyze_config
from monosem_jax import files
from monosem_jax.analysis import pipeline, use_cases, workdirs
from monosem_jax.analysis.sweep_figures import plot_sweep_workdir
from monosem_jax.data import make_split, synthetic
from monosem_jax.recommenders import train
from monosem_jax.sweep.runner import run_sweep

_CONFIG = define_config_file(
    'config', 'experiments/configs/quickstart.py',
    'Quickstart config (get_config in that file).')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/quickstart',
                               'Where outputs are written.')


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


def run_main_job(cfg, workdir: str) -> None:
  """World -> recommender -> sweep -> analysis and report."""
  t0 = time.perf_counter()
  log('== 1/4 synthetic world')
  world = synthetic.make_world(
      synthetic.WorldConfig(**cfg.recommender.dataset.options))
  split = make_split(world, **{k: v for k, v in cfg.recommender.split.items()})
  stats = world.summary()
  stats['split'] = {
      'n_train_positives': split.n_train,
      'n_test_positives': len(split.test_users),
      'n_eval_users': len(split.eval_users),
      'n_sae_train_users': len(split.sae_train_users),
      'n_sae_test_users': len(split.sae_test_users),
  }
  log(json.dumps(stats, indent=1))
  log(f'== 2/4 recommender ({cfg.recommender.model.kind})')
  rec_dir = os.path.join(workdir, 'recommender')
  train.run(cfg.recommender, rec_dir, log=log)
  log('== 3/4 SAE sweep')
  cfg.sweep.recommender_workdir = rec_dir
  sweep_dir = os.path.join(workdir, 'sweep')
  run_sweep(cfg.sweep, sweep_dir, log=log)
  plot_sweep_workdir(sweep_dir)
  log('== 4/4 analysis')
  view = workdirs.open_sweep(sweep_dir)
  defaults = analyze_config.defaults_for(world.name)
  result = pipeline.analyze_sweep(
      view, world, use_cases_=[use_cases.UseCase.from_dict(c)
                               for c in defaults['use_cases']],
      pop_top=defaults['pop_top'], log=log)
  summarize(result, log)
  log(f'done in {time.perf_counter() - t0:.1f}s; outputs under {workdir}')


def summarize(result: pipeline.Analysis, log) -> None:
  """Best configs, planted-concept recovery, fidelity, one intervention."""
  fid = result.fidelity
  cols = [c for c in ('config', 'lambda_pred', 'dict_size', 'l0_items',
                      'rbo_norm', 'kendall_tau', pipeline.PURE) if c in fid]
  log('best configs (most pure concepts, then normalised RBO):\n' + fid.sort_values(
      [pipeline.PURE, 'rbo_norm'], ascending=False)[cols].head(3).round(3)
      .to_string(index=False))
  if result.planted is not None:
    p = result.planted
    log(f'planted-concept recovery, config {result.chosen}: mean recall '
        f'{p.recall.mean():.3f}, mean purity@10 {p["purity@10"].mean():.3f} '
        f'over {len(p)} concepts')
  iv = result.interventions
  if len(iv):
    case = iv[(iv.kind == 'suppress') & (iv['mode'] == 'delta')]
    if len(case):
      first, last = case.iloc[0], case.iloc[-1]
      log(f'intervention ({case.case.iloc[0]}, delta mode): concept share of '
          f'the top-30 {first.concept_share:.3f} -> {last.concept_share:.3f} '
          f'at level {last.level}')
  log(f'report: {result.report_path}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
