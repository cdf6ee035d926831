r"""Analysis of a finished sweep: fidelity.csv and neurons.csv (first part).

  python -m experiments.analyze --workdir=runs/ml1m_mf_sweep

* fidelity.csv, one row per config: top-30 lists of the SAE-test users from
  the original vs the reconstructed embeddings, both ranked by the frozen
  recommender (training positives removed): RBO (truncated, normalised,
  extrapolated), Kendall tau-b and overlap, means over users
  (docs/method.md#fidelity), with the sweep's L0 and FVE beside them.
* neurons.csv, one row per (config, neuron): firing rate, dead, best concept
  with purity / lift / hypergeometric p-value at K = 10, 20, 50, popularity
  rank of its top items, Spearman with popularity, MS score
  (docs/method.md#concepts).

Prints a summary per config. About 15 s for 20 ML-1M MF configs on a 2-core
CPU (the dataset is read again for its concept labels).
"""

from __future__ import annotations

import os
import time

from absl import app, flags, logging
import pandas as pd

from experiments.launch import parse_flags, refusals_in_one_line
from monosem_jax import files
from monosem_jax.analysis import concepts, neurons, workdirs
from monosem_jax.sweep.runner import RESULTS_CSV

_WORKDIR = flags.DEFINE_string('workdir', None, 'A sweep workdir.',
                               required=True)
_K = flags.DEFINE_integer('k', 30, 'List length.')
_MAX_USERS = flags.DEFINE_integer('max_users', None,
                                  'Only the first N SAE-test users.')


@refusals_in_one_line
def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  t0 = time.perf_counter()
  view = workdirs.open_sweep(_WORKDIR.value)
  table = workdirs.sweep_fidelity(view, k=_K.value, max_users=_MAX_USERS.value)
  results = os.path.join(_WORKDIR.value, RESULTS_CSV)
  if os.path.exists(results):
    extra = pd.read_csv(results)[['config', 'l0_items', 'fve', 'status']]
    table = table.merge(extra, on='config')
  print(f'fidelity of {view.num_configs} configs: '
        f'{time.perf_counter() - t0:.1f}s', flush=True)
  dataset = workdirs.open_dataset(view.artifact)
  tables = []
  for i in range(view.num_configs):  # configs; each table is vectorised
    sae, hp = view.config(i)
    acts = concepts.activations(sae, concepts.sae_config_of(hp),
                                view.artifact.item_emb, hp['k'] or None)
    t = neurons.neuron_table(acts, dataset.item_concepts,
                             dataset.concept_names, view.artifact.item_emb,
                             dataset.item_popularity)
    t.insert(0, 'config', i)
    tables.append(t)
  neuron_rows = pd.concat(tables, ignore_index=True)
  alive = neuron_rows[~neuron_rows.dead]
  pure = alive[alive['purity@10'] == 1.0].groupby('config').best_concept.nunique()
  table['pure_concepts@10'] = table.config.map(pure).fillna(0).astype(int)
  table['mean_ms'] = table.config.map(neuron_rows.groupby('config').ms.mean())
  out = _WORKDIR.value
  files.atomic_write(os.path.join(out, 'fidelity.csv'),
                     lambda f: table.to_csv(f, index=False))
  files.atomic_write(os.path.join(out, 'neurons.csv'),
                     lambda f: neuron_rows.to_csv(f, index=False))
  cols = [c for c in ('lambda_pred', 'dict_size', 'rho', 'k', 'rbo', 'rbo_norm',
                      'kendall_tau', 'overlap', 'l0_items', 'fve',
                      'pure_concepts@10', 'mean_ms') if c in table]
  print(table[cols].round(3).to_string(index=False))
  print(f'wrote {out}/fidelity.csv and neurons.csv: {view.num_configs} '
        f'configs in {time.perf_counter() - t0:.1f}s')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
