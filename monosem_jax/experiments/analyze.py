r"""Analysis of a finished sweep: CSVs, figures and ``report.md``.

  python -m experiments.analyze --workdir=runs/ml1m_mf_sweep
  python -m experiments.analyze --workdir=runs/ml1m_mf_sweep --config.chosen=4
  python -m experiments.analyze --workdir=runs/ml1m_mf_sweep \
      --config.encode_method=omp --config.encode_k=8 --config.out=runs/omp8

Takes the sweep folder's lock first (a sweep still training there is
refused at once), reads the sweep through ``open_sweep`` (the recommender it
explains is checked by content hash, the checkpoint and ``sweep.json`` by
the hashes recorded when they were written; an unfinished sweep is refused
unless ``--config.allow_partial=True``) and writes one consistent set of
outputs into ``SWEEP/analysis/`` (see ``monosem_jax/analysis/pipeline.py``):
``fidelity.csv`` (per config: status ok/diverged, RBO, Kendall tau, overlap,
NDCG/HR of the reconstructed model, L0, pure concepts and their chance
levels, MS, the choice rule's pool, the Pareto front), ``neurons.csv``,
``concepts.csv`` (each concept's best neuron beside the null baselines,
docs/method.md#null-baselines), ``interventions.csv`` (with the
wrong-direction and inactive-neuron flags), ``hierarchy.csv``
(``planted.csv`` on the synthetic world; ``seeds.csv``, mean +- std over
seeds and feature stability, when the sweep has several seeds), the figures
``fidelity_vs_l0.png``, ``concept_heatmap.png``, ``interventions.png`` (when
there are use cases) and ``hierarchy.png`` (Matryoshka configs), and
``report.md`` (``--config.out=DIR``: into DIR instead; with
``--config.encode_method=omp|mp`` every config is coded by pursuit on its
own trained decoder, docs/method.md#pursuit-encoders, and DIR is required;
with ``--config.inputs=REC_WORKDIR`` the SAEs code the embeddings of another
recommender of the same data and split, ranked by its scorer, and DIR is
required too).
The config it describes in detail is chosen by a rule that
requires fidelity (docs/method.md#choosing-a-config: among the finite configs
with lambda_pred > 0 and a normalised RBO at or above the median, the most
pure concepts); ``--config.chosen=N`` overrides it. The config
(``monosem_jax/experiments/configs/analyze.py``) sets the intervention use cases and
concept sets; their defaults follow the sweep's dataset. Progress and timing
per stage. 43 s (wall, with imports) for the 80-config ML-1M MF README
sweep on a 2-core CPU shared with other jobs; 66 s for 256 configs
(BENCHMARKS.md).
"""

from __future__ import annotations

import os
from typing import Callable

from absl import flags, logging

from monosem_jax.experiments.configs import analyze as analyze_config
from monosem_jax.experiments.launch import (console_script, define_config_file,
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
  the config ``cfg`` (``monosem_jax/experiments/configs/analyze.py``).

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
    if cfg.inputs is not None:   # another recommender's embeddings
      view = workdirs.with_inputs(view, cfg.inputs)
    if cfg.encode_method is not None:   # inference-time pursuit
      view = workdirs.with_encoder(view, cfg.encode_method, cfg.encode_k,
                                   cfg.encode_signed)
    dataset = workdirs.open_dataset(view.artifact)
    return pipeline.analyze_sweep(
        view, dataset, analyze_config.analysis_options(cfg, dataset.name),
        log=log)


@refusals_in_one_line
def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  result = analyze(_WORKDIR.value, _CONFIG.value,
                   log=lambda m: print(m, flush=True))
  fid = result.fidelity
  cols = [c for c in ('config', 'status', 'lambda_pred', 'dict_size', 'rho',
                      'k', 'l0_items', 'rbo_norm', 'kendall_tau', 'ndcg@10',
                      pipeline.PURE, 'mean_ms', 'eligible', 'pareto')
          if c in fid]
  print('configs in the order of the choice rule (docs/method.md#choosing-a-'
        'config; eligible first):')
  print(pipeline.choice_order(fid)[cols].head(10).round(3).to_string(
      index=False))
  for note in result.notes:
    print(f'note: {note}')
  print(f'chosen config: {result.chosen}; report: {result.report_path}')


#: The console script ``monosem-analyze`` (pyproject.toml).
run = console_script(main)

if __name__ == '__main__':
  run()
