r"""Times recommender training and full-ranking evaluation; prints JSON.

  python -m experiments.bench_recommenders                 # ML-1M if found
  python -m experiments.bench_recommenders --dataset=synthetic --epochs=2

Targets on a 2-core CPU for ML-1M (docs/method.md#recommenders settings): MF 10 epochs
<= 20 s, NCF 10 epochs <= 60 s, evaluation of all users <= 5 s.
``train_s`` includes compilation (the first epoch); ``epoch_s`` lists each
epoch; ``eval_s`` is one full evaluation after a warm-up call.
Uses $MONOSEM_DATA_DIR for ML-1M; falls back to a synthetic world of ML-1M
size when it is not set (the JSON says which).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

from absl import app, flags
import jax

from monosem_jax.experiments.configs import recommender as rc
from monosem_jax.data.loaders import load_data
from monosem_jax.recommenders import loop, metrics
from monosem_jax.recommenders.config import TrainConfig

_DATASET = flags.DEFINE_string(
    'dataset', 'ml-1m', 'ml-1m, lastfm-2k, ml-100k or synthetic.')
_MODELS = flags.DEFINE_list('models', ['mf', 'ncf'], 'Models to time.')
_EPOCHS = flags.DEFINE_integer('epochs', 10, 'Epochs per model.')
_DATA_DIR = flags.DEFINE_string('data_dir', None,
                                'Default: $MONOSEM_DATA_DIR.')


def main(argv):
  del argv
  name = _DATASET.value
  data_dir = _DATA_DIR.value or os.environ.get('MONOSEM_DATA_DIR')
  note = None
  if name != 'synthetic' and not data_dir:
    note = f'{name} requested but MONOSEM_DATA_DIR is not set: synthetic ML-1M-size world'
    name = 'synthetic'
  out = {'dataset': name, 'note': note, 'epochs': _EPOCHS.value,
         'jax': jax.__version__, 'backend': jax.default_backend(),
         'cpu_count': os.cpu_count(), 'machine': platform.machine(),
         'load_avg_1m': os.getloadavg()[0], 'models': {}}
  split = None
  for kind in _MODELS.value:
    c = rc.get_config(f'{name},{kind}')
    if name == 'synthetic' and note:
      c.dataset.options.n_users, c.dataset.options.n_items = 6040, 3706
      c.dataset.options.mean_positives = 160.0
      c.model.dim = 20
    if data_dir and name != 'synthetic':
      c.dataset.data_dir = data_dir
    if split is None:
      t = time.time()
      _, split = load_data(c.dataset.to_dict(), c.split.to_dict())
      out['load_split_s'] = time.time() - t
      out.update(n_users=split.n_users, n_items=split.n_items,
                 n_train=split.n_train, n_eval_users=len(split.eval_users))
    c.train.epochs = _EPOCHS.value
    cfg = TrainConfig.from_mapping({**c.model.to_dict(),
                                          **c.train.to_dict()})
    epoch_s = []
    t_last = [time.time()]

    def cb(state, stats):
      del state, stats
      now = time.time()
      epoch_s.append(now - t_last[0])
      t_last[0] = now

    t = time.time()
    state, hist = loop.fit(cfg, split, callback=cb)
    train_s = time.time() - t
    data = metrics.eval_data_from_split(split, c.eval.block_size)
    arrays = data.device_arrays()
    scorer = loop.score_fn(kind)
    metrics.evaluate(scorer, state.params, data, arrays=arrays)  # compile
    t = time.time()
    m = metrics.evaluate(scorer, state.params, data, arrays=arrays)
    eval_s = time.time() - t
    out['models'][kind] = {
        'optimizer': cfg.optimizer, 'dim': cfg.dim,
        'train_s': train_s, 'epoch_s': epoch_s,
        'steady_epoch_s': min(epoch_s) if epoch_s else None,
        'final_loss': hist[-1]['loss'] if hist else None,
        'eval_s': eval_s, 'ndcg@10': m['ndcg@10'], 'hr@10': m['hr@10']}
  data = metrics.eval_data_from_split(split)
  arrays = data.device_arrays()
  metrics.evaluate_popularity(split, data, arrays=arrays)
  t = time.time()
  pm = metrics.evaluate_popularity(split, data, arrays=arrays)
  out['popularity'] = {'eval_s': time.time() - t, 'ndcg@10': pm['ndcg@10'],
                       'hr@10': pm['hr@10']}
  out['load_avg_1m_end'] = os.getloadavg()[0]
  json.dump(out, sys.stdout, indent=2)
  print()


if __name__ == '__main__':
  app.run(main)
