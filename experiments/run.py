"""The main job: the whole pipeline on the embedded synthetic world.

Run (no downloads, no files needed)::

  python -m experiments.run --workdir=runs/quickstart

1. builds the synthetic planted-concept world and its protocol split and
   prints their statistics;
2. trains an MF recommender on it and freezes it (``WORKDIR/recommender``);
3. trains a grid of SAEs on the frozen embeddings in one vmapped program
   (``WORKDIR/sweep``: ``sweep_results.csv``, ``sweep_results.png``,
   orbax checkpoints).

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
from monosem_jax import files
from monosem_jax.analysis import concepts
from monosem_jax.analysis.sweep_figures import plot_sweep_workdir
from monosem_jax.data import make_split, synthetic
from monosem_jax.recommenders import train
from monosem_jax.sweep import checkpoint
from monosem_jax.sweep.runner import load_artifact, run_sweep

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
  """World -> recommender -> sweep -> planted-concept recovery."""
  t0 = time.perf_counter()
  log('== 1/3 synthetic world')
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
  log(f'== 2/3 recommender ({cfg.recommender.model.kind})')
  rec_dir = os.path.join(workdir, 'recommender')
  train.run(cfg.recommender, rec_dir, log=log)
  log('== 3/3 SAE sweep')
  cfg.sweep.recommender_workdir = rec_dir
  table = run_sweep(cfg.sweep, os.path.join(workdir, 'sweep'), log=log)
  plot_sweep_workdir(os.path.join(workdir, 'sweep'))
  # Planted-concept recovery: for each true concept, the best neuron's
  # purity@10 over the items, averaged over concepts (1.0 = every concept
  # has a neuron whose top-10 items all carry it).
  sweep_dir = os.path.join(workdir, 'sweep')
  spec, hparams, state, _ = checkpoint.restore_sweep(sweep_dir)
  item_emb = load_artifact(rec_dir).item_emb
  truth = world.extras['concept_truth']
  recovery = []
  for i in range(len(table)):  # a handful of configs, each vectorised
    sae, hp = checkpoint.config_from_state(spec, hparams, state, i)
    acts = concepts.activations(sae, concepts.sae_config_of(hp), item_emb,
                                hp['k'] or None)
    recovery.append(concepts.purity_at_k(acts, truth, 10).max(0).mean())
  table['planted_purity@10'] = recovery
  base = truth.mean(0).mean()
  cols = ['lambda_pred', 'dict_size', 'score_mse', 'fve', 'l0_items',
          'planted_purity@10']
  ok = table[table.status == 'ok']
  log('lowest score-matrix MSE:\n' + ok.sort_values('score_mse').head(3)[
      cols].to_string(index=False))
  log(f'best planted-concept recovery (mean best purity@10 over '
      f'{truth.shape[1]} concepts; base rate {base:.2f}):\n' +
      ok.sort_values('planted_purity@10', ascending=False).head(3)[
          cols].to_string(index=False))
  log(f'done in {time.perf_counter() - t0:.1f}s; outputs under {workdir}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
