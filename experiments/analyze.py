r"""Analysis of a finished sweep: CSVs, figures and ``report.md``.

  python -m experiments.analyze --workdir=runs/ml1m_mf_sweep
  python -m experiments.analyze --workdir=runs/ml1m_mf_sweep --config.chosen=4

Takes the sweep folder's lock first (a sweep still training there is
refused at once), reads the sweep through ``open_sweep`` (the recommender it
explains is checked by content hash, the checkpoint and ``sweep.json`` by
the hashes recorded when they were written; an unfinished sweep is refused
unless ``--config.allow_partial=True``) and writes one consistent set of
outputs into ``SWEEP/analysis/`` (see
``monosem_jax/analysis/pipeline.py``): ``fidelity.csv`` (per config: RBO,
Kendall tau, overlap, NDCG/HR of the reconstructed model, L0, pure concepts,
MS, Pareto front), ``neurons.csv``, ``concepts.csv``, ``interventions.csv``,
``hierarchy.csv`` (``planted.csv`` on the synthetic world), four PNG figures
and ``report.md``. The config (``experiments/configs/analyze.py``) sets the
intervention use cases and concept sets; their defaults follow the sweep's
dataset. Progress and timing per stage. About 15 s for the 20-config ML-1M
MF README sweep on a 2-core CPU.
"""

from __future__ import annotations

import os
from typing import Callable

from absl import app, flags, logging

from experiments.configs import analyze as analyze_config
from experiments.launch import (define_config_file, parse_flags,
                                refusals_in_one_line)
from monosem_jax import files
from monosem_jax.analysis import pipeline, workdirs
from monosem_jax.errors import WorkdirError

_WORKDIR = flags.DEFINE_string('workdir', None, 'A sweep workdir.',
                               required=True)
_CONFIG = define_config_file('config', 'experiments/configs/analyze.py',
                             'Analysis config (get_config in that file).')


def analyze(workdir: str, cfg, log: Callable[[str], None] = print
            ) -> pipeline.Analysis:
  """What the launcher does: the analysis of the sweep in ``workdir`` with
  the config ``cfg`` (``experiments/configs/analyze.py``).

  The sweep folder's lock is taken first: a sweep still training there (or
  another analysis) is refused at once, naming its process, before anything
  is read.

  Raises:
    WorkdirError: no such folder, or one in use or read-only; the refusals
      of ``open_sweep`` / ``open_dataset`` (e.g. an unfinished sweep without
      ``cfg.allow_partial``).
  """
  if not os.path.isdir(workdir):
    raise WorkdirError(f'--workdir={workdir}: no such folder; pass the '
                       '--workdir of python -m experiments.sweep')
  with files.WorkdirLock(workdir, 'analysis'):
    view = workdirs.open_sweep(workdir, allow_partial=cfg.allow_partial)
    dataset = workdirs.open_dataset(view.artifact)
    return pipeline.analyze_sweep(
        view, dataset, **analyze_config.analyze_kwargs(cfg, dataset.name),
        log=log)


@refusals_in_one_line
def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  result = analyze(_WORKDIR.value, _CONFIG.value,
                   log=lambda m: print(m, flush=True))
  fid = result.fidelity
  cols = [c for c in ('config', 'lambda_pred', 'dict_size', 'rho', 'k',
                      'l0_items', 'rbo_norm', 'kendall_tau', 'ndcg@10',
                      pipeline.PURE, 'mean_ms', 'pareto') if c in fid]
  print(fid.sort_values([pipeline.PURE, 'rbo_norm'], ascending=False)[
      cols].head(10).round(3).to_string(index=False))
  for note in result.notes:
    print(f'note: {note}')
  print(f'report: {result.report_path}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
