"""The main job's config: ``get_config('[DATASET][,MODEL][,ml1m]')``.

Default (no downloads, no files): the embedded synthetic world, MF and NCF::

  python -m experiments.run --workdir=runs/quickstart

Stages per model: recommender (trained, frozen) -> an 18-config SAE grid
(lambda_pred x dictionary size x three seeds, rho 0.2, vmapped) -> the whole
analysis (``report.md``, with the spread over seeds and the null baselines;
docs/method.md#seeds-and-stability). About 1 minute on a 2-core CPU for
both models (55 s CPU time measured; 46 s with the former 12-config grid of
one seed and two rho values).

Reproductions on real data (``$MONOSEM_DATA_DIR`` holds ``ml-1m/`` /
``lastfm-2k/``, or pass ``--config.dataset.data_dir=``), the paper's settings
and the paper's lambda_pred sweep (0, 1, 2, 5, 10) at the paper's dictionary
size and our largest (22 and 64 latents; Last.FM 70 and 200), three seeds
each (30 configs per model)::

  python -m experiments.run --config=experiments/configs/quickstart.py:ml-1m --workdir=runs/ml1m
  python -m experiments.run --config=experiments/configs/quickstart.py:lastfm-2k --workdir=runs/lastfm

Your own data as RecBole atomic files (``DIR`` is the folder ``NAME/``
holding ``NAME.inter`` and optional ``NAME.item`` / ``NAME.user``;
``monosem_jax/data/atomic.py``), with the ML-1M settings and grid and no
intervention use cases (set them with the analysis config)::

  python -m experiments.run --config=experiments/configs/quickstart.py:atomic,mf \\
      --config.dataset.data_dir=DIR --config.dataset.options.concept_field=class --workdir=runs/mydata

Expected runtimes (both models; NCF SAE epochs on the CPU are capped at 200
steps, ``--config.ncf.sweep.spec.steps_per_epoch=0`` for full passes, which
want an accelerator):

  synthetic   2-core CPU ~1 min
  ml-1m       one CPU core 7 min 09 s measured with the former grid of 20
              configs, one seed (MF 1 min; NCF recommender 4.4 min, NCF
              sweep 65 s, NCF analysis 38 s); with the 30 configs of three
              seeds, MF 2.0 min on 2 shared cores (recommender 21 s, sweep
              19 s, analysis 73 s with the use cases on three seeds), NCF
              not re-measured (its sweep grows with the configs, ~1.5x); an
              accelerator for full NCF passes (not yet measured: issue 11)
  lastfm-2k   one CPU core 8 min 42 s measured with the former grid (NCF
              sweep 5.4 min; ~1.5x with three seeds, not re-measured)

Rerunning resumes every stage. Settings that would make a finished stage
stale (more recommender epochs under an existing sweep, another grid,
another sweep spec) are refused before anything is written; add
``--config.restart_downstream=True`` to delete those models' sweep folders
(checkpoints and analysis) and run the sweep and analysis afresh (the
recommender resumes: e.g. ``--config.mf.recommender.train.epochs=40
--config.restart_downstream=True`` trains MF further, then redoes its sweep).

Args (comma-separated): a dataset (synthetic | ml-1m | ml-100k |
lastfm-2k | atomic), a model (mf | ncf; default both), ``ml1m`` for an ML-1M-sized
synthetic world. Select models with ``--config.models=mf`` (a tuple of
names; one name is a tuple of one).
"""

import ml_collections

from monosem_jax.experiments.configs import recommender, sweep
from monosem_jax.recommenders import kinds

DATASETS = ('synthetic', 'ml-1m', 'ml-100k', 'lastfm-2k', 'atomic')
MODELS = kinds.NAMES
#: Steps per epoch of a kind whose batches are (user, item) pairs
#: (``Kind.paired``; an epoch of positive pairs is a full pass of them, as
#: ``steps_per_epoch = 0`` says): a CPU cap, on the synthetic world and on
#: real data.
PAIRED_STEPS = {'synthetic': 20, 'real': 200}
#: Users per batch on the synthetic world, of a kind whose batches are a
#: user batch against an item batch (its option ``batch_users``).
SYNTHETIC_BATCH_USERS = 64


def quick_spec(model: str, dataset: str) -> dict:
  """The sweep settings the main job sets over ``sweep.get_config``'s for
  ``model`` on ``dataset`` (beside the grid), asked of the kind registry
  (monosem_jax/recommenders/kinds.py) rather than listed by kind name."""
  kind = kinds.get(model)
  world = 'synthetic' if dataset == 'synthetic' else 'real'
  if kind.paired:
    return dict(steps_per_epoch=PAIRED_STEPS[world])
  if world == 'synthetic' and 'batch_users' in kind.schema:
    return dict(batch_users=SYNTHETIC_BATCH_USERS)
  return {}

#: One line per field, listed with its default by ``--help``
#: (monosem_jax/experiments/launch.py config_fields_help): each model's recommender and
#: sweep fields as in their configs; one dataset for both models.
FIELD_HELP = {
    'models': f'the models to run, e.g. ({MODELS[0]!r},)',
    'restart_downstream': 'True: delete sweeps a rerun would make stale '
                          'and redo them, instead of refusing',
    **{k: v for k, v in recommender.FIELD_HELP.items()
       if k.startswith('dataset.')},
    **{f'{m}.recommender.{k}': v for m in MODELS
       for k, v in recommender.FIELD_HELP.items()
       if not k.startswith('dataset.')},
    **{f'{m}.sweep.{k}': v for m in MODELS for k, v in sweep.FIELD_HELP.items()},
    # Not listed: the models' dataset sections (config.dataset is used).
    **{f'{m}.recommender.dataset': None for m in MODELS},
}


def _model_config(dataset: str, model: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.recommender = recommender.get_config(f'{dataset},{model}')
  c.sweep = sweep.get_config(f'{dataset},{model}')
  if dataset == 'synthetic':
    c.sweep.epochs = 18
    # three seeds of every setting (docs/method.md#seeds-and-stability);
    # rho fixed at the value the report chose when it was an axis
    c.sweep.grid = sweep.grid_config(lambda_pred=(0.0, 1.0, 10.0),
                                     dict_size=(16, 32), rho=(0.2,),
                                     seed=sweep.SEEDS)
  else:
    # the paper's lambda_pred sweep at its dictionary size and our largest,
    # three seeds each (docs/method.md#seeds-and-stability)
    dicts = (70, 200) if dataset == 'lastfm-2k' else (22, 64)
    c.sweep.grid = sweep.grid_config(lambda_pred=(0.0, 1.0, 2.0, 5.0, 10.0),
                                     dict_size=dicts, seed=sweep.SEEDS)
  c.sweep.spec.update(quick_spec(model, dataset))
  return c


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = [a for a in arg.split(',') if a]
  unknown = sorted(set(args) - set(DATASETS) - set(MODELS) - {'ml1m'})
  if unknown:
    raise ValueError(f'quickstart config: unknown arg(s) {unknown}; use a '
                     f'dataset ({", ".join(DATASETS)}), a model '
                     f"({', '.join(MODELS)}) and/or 'ml1m' (comma-separated)")
  datasets = [a for a in args if a in DATASETS] or ['synthetic']
  if len(datasets) > 1:
    raise ValueError(f'quickstart config: one dataset, got {datasets}')
  dataset = datasets[0]
  c = ml_collections.ConfigDict()
  c.models = tuple(a for a in args if a in MODELS) or MODELS
  # A rerun that would make a sweep stale deletes it and redoes it (True)
  # instead of being refused (monosem_jax/experiments/run.py, check_stages).
  c.restart_downstream = False
  for model in MODELS:   # both present, so that either can be overridden
    c[model] = _model_config(dataset, model)
  # One dataset config shared by the models' recommenders.
  c.dataset = c[MODELS[0]].recommender.dataset
  if dataset == 'synthetic':
    c.dataset.options.n_users, c.dataset.options.n_items = 1000, 600
    c.dataset.options.seed = 0
    if 'ml1m' in args:
      c.dataset.options.n_users, c.dataset.options.n_items = 6040, 3706
      c.dataset.options.n_concepts, c.dataset.options.mean_positives = 18, 120.0
  return c
