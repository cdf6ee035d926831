r"""Benchmark: what the sweep's matmul precision does to the SAEs it trains.

Trains the same grid of SAEs on a frozen recommender once per precision
(``SweepSpec.precision``: float32, tf32, bfloat16; docs/method.md#sweeps-at-scale)
and compares every config with its float32 twin: the final loss terms, the
sweep metrics (L0, fraction of variance explained, score MSE) and the ranking
fidelity of the reconstructed model on the SAE-test users (RBO, Kendall tau,
NDCG@10; :func:`monosem_jax.analysis.workdirs.sweep_fidelity`). Evaluation
is float32 in every case, so the differences are the training's alone.

ML-1M MF, 12 configs x 18 epochs (about 3 minutes on 2 CPU cores; a CPU
computes 'tf32' in float32, so it is left out there by default)::

  python -m experiments.train_recommender \
      --config=experiments/configs/recommender.py:ml-1m,mf --workdir=runs/ml1m_mf
  python -m experiments.bench_precision --recommender=runs/ml1m_mf \
      --workdir=runs/precision --out=runs/precision/precision.json

Output: one JSON document (stdout, and ``--out``) with a row per precision:
wall seconds, and per measure the float32 value (median over configs) and the
largest and median absolute difference from float32 over configs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import numpy as np

from monosem_jax.experiments.configs import sweep as sweep_configs
from monosem_jax import files
from monosem_jax.analysis import workdirs
from monosem_jax.recommenders.artifact import RecommenderArtifact
from monosem_jax.sweep.runner import run_sweep

#: Columns compared with the float32 run: (source, column).
MEASURES = (('sweep', 'final_loss'), ('sweep', 'final_emb'),
            ('sweep', 'final_pred'), ('sweep', 'final_kl'),
            ('sweep', 'l0_items'), ('sweep', 'fve'), ('sweep', 'score_mse'),
            ('fidelity', 'rbo'), ('fidelity', 'kendall_tau'),
            ('fidelity', 'overlap'), ('fidelity', 'ndcg@10'))


def sweep_config(rec_dir: str, precision: str, epochs: int):
  """The dataset's sweep config on ``rec_dir``: 3 x 2 x 2 = 12 configs."""
  art = RecommenderArtifact.open(rec_dir)
  cfg = sweep_configs.get_config(f'{art.dataset},{art.kind}')
  cfg.recommender_workdir = rec_dir
  cfg.epochs = epochs
  cfg.spec.precision = precision
  cfg.plan_memory = False
  sizes = tuple(cfg.grid.dict_size)
  cfg.grid.lambda_pred = (0.0, 1.0, 10.0)
  cfg.grid.dict_size = (sizes[0], sizes[-1])
  cfg.grid.rho = (0.05, 0.1)
  return cfg


def train_and_measure(rec_dir, workdir, precision, epochs, max_users, log):
  """Trains the grid at ``precision``; the sweep table joined with fidelity."""
  t0 = time.perf_counter()
  table = run_sweep(sweep_config(rec_dir, precision, epochs), workdir,
                    log=log).table
  seconds = time.perf_counter() - t0
  fid = workdirs.sweep_fidelity(workdirs.open_sweep(workdir),
                                max_users=max_users)
  return table, fid, seconds


def compare(runs: dict) -> list[dict]:
  """Per precision, each measure's float32 median and |difference| stats."""
  base_table, base_fid, _ = runs['float32']
  base = {'sweep': base_table, 'fidelity': base_fid}
  rows = []
  for precision, (table, fid, seconds) in runs.items():
    got = {'sweep': table, 'fidelity': fid}
    row = {'precision': precision, 'seconds': round(seconds, 1),
           'configs': len(table),
           'diverged': int((table.status != 'ok').sum())}
    for source, col in MEASURES:
      a = base[source][col].to_numpy(float)
      b = got[source][col].to_numpy(float)
      diff = np.abs(b - a)
      row[col] = {'float32_median': float(np.median(a)),
                  'max_abs_diff': float(np.max(diff)),
                  'median_abs_diff': float(np.median(diff))}
    rows.append(row)
  return rows


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--recommender', required=True,
                  help='a train_recommender --workdir')
  ap.add_argument('--workdir', required=True,
                  help='one sweep folder per precision goes here')
  cpu = jax.default_backend() == 'cpu'
  ap.add_argument('--precisions',
                  default='float32,bfloat16' if cpu else 'float32,tf32,bfloat16')
  ap.add_argument('--epochs', type=int, default=18)
  ap.add_argument('--max_users', type=int, default=None,
                  help='fidelity on the first N SAE-test users only')
  ap.add_argument('--out', default=None)
  a = ap.parse_args(argv)
  precisions = a.precisions.split(',')
  if precisions[0] != 'float32':
    ap.error('--precisions must start with float32 (the reference)')
  log = lambda line: print(line, file=sys.stderr, flush=True)
  runs = {}
  for precision in precisions:
    log(f'--- precision {precision}')
    runs[precision] = train_and_measure(
        a.recommender, os.path.join(a.workdir, precision), precision,
        a.epochs, a.max_users, log)
  dev = jax.devices()[0]
  out = dict(benchmark='sweep matmul precision vs float32',
             jax=jax.__version__, backend=jax.default_backend(),
             device=getattr(dev, 'device_kind', str(dev)),
             host=platform.node(), recommender=os.path.abspath(a.recommender),
             epochs=a.epochs, results=compare(runs))
  text = json.dumps(out, indent=1)
  print(text)
  if a.out:
    files.atomic_write_text(a.out, text + '\n')
  return out


if __name__ == '__main__':
  main()
