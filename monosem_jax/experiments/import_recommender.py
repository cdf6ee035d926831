r"""Imports a recommender trained elsewhere (its embeddings) for the SAE stage.

  python -m experiments.import_recommender \
      --config=experiments/configs/recommender.py:ml-1m,mf \
      --embeddings=my_model.npz --workdir=runs/ml1m_mine

The ``.npz`` holds ``user_emb`` (n_users x d), ``item_emb`` (n_items x d),
``user_ids`` / ``item_ids`` (the raw ids of the data files; rows are matched
by id) and optionally ``user_bias`` / ``item_bias``; an NCF (``DATASET,ncf``)
adds its layers ``mlp/J/w``, ``mlp/J/b``. Writes WORKDIR/config.json,
WORKDIR/metrics.json (the imported model against popularity on the config's
split) and WORKDIR/frozen, as experiments.train_recommender does, so
``experiments.sweep --config.recommender_workdir=WORKDIR`` follows. The logic
lives in monosem_jax.recommenders.imported.import_embeddings.
"""

from __future__ import annotations

from absl import flags, logging

from monosem_jax.experiments.launch import (console_script, define_config_file,
                                refusals_in_one_line)
from monosem_jax.recommenders import imported

_CONFIG = define_config_file(
    'config', 'experiments/configs/recommender.py:ml-1m,mf',
    'Recommender config file (DATASET,MODEL argument): the data, the split '
    'and the evaluation of the imported model.')
_EMBEDDINGS = flags.DEFINE_string('embeddings', None,
                                  'The .npz of embeddings and ids.',
                                  required=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output folder.',
                               required=True)
_DROP = flags.DEFINE_bool(
    'drop_missing_users', False,
    'Leave out the users of the data that have no embedding (recorded in '
    'config.json as dataset.exclude_users; the split is made after the drop) '
    'instead of refusing them.')


@refusals_in_one_line
def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)

  def log(msg):
    print(msg, flush=True)

  imported.import_embeddings(_CONFIG.value, _EMBEDDINGS.value, _WORKDIR.value,
                             drop_missing_users=_DROP.value, log=log)


#: The console script ``monosem-import-recommender`` (pyproject.toml).
run = console_script(main)

if __name__ == '__main__':
  run()
