"""SAE sweep configs: ``get_config('DATASET,MODEL[,seeds]')``.

DATASET: synthetic | ml-1m | ml-100k | lastfm-2k | atomic (your own RecBole
atomic files: the ML-1M defaults); MODEL: a kind of
monosem_jax/recommenders/kinds.py (mf | ncf). First train the
recommender, then sweep SAEs on its frozen embeddings::

  python -m experiments.train_recommender \\
      --config=experiments/configs/recommender.py:ml-1m,mf --workdir=runs/ml1m_mf
  python -m experiments.sweep \\
      --config=experiments/configs/sweep.py:ml-1m,mf --workdir=runs/ml1m_mf_sweep

The default grid has 80 configs (lambda_pred x dict_size x rho), one seed.
``DATASET,MODEL,seeds`` sweeps every lambda_pred x dict_size setting (rho at
its default) with the three seeds of :data:`SEEDS`, 60 configs, whose
analysis reports each figure as mean +- std over the seeds and the
stability of the neurons across seeds (docs/method.md#seeds-and-stability)::

  python -m experiments.sweep --config=experiments/configs/sweep.py:ml-1m,mf,seeds \\
      --config.recommender_workdir=runs/ml1m_mf --workdir=runs/ml1m_mf_seeds

Override a grid by flags, e.g. ``--config.grid.lambda_pred='(0, 1, 10)'`` or
``--config.grid.seed='(0, 1, 2, 3)'``; every per-config field (lambda_pred,
lambda_emb, lambda_kl, rho, lambda_l1, lr, seed, dict_size, k) can be an axis,
and ``--config.grid.rho=None`` takes an axis out. Fields not in the grid take
``config.defaults`` (the paper's values per dataset and model).

DATASET,MODEL must match the recommender in ``recommender_workdir`` (its
kind always; its dataset unless ``--config.allow_other_dataset=True``): the
defaults above are chosen by them. ``config.spec`` holds the SweepSpec
fields and the options of the kind (kinds.py ``Kind.schema``; MF:
``batch_users``, ``batch_items``, ``mf_pred_impl``; NCF: ``batch_pairs``,
``ncf_pairs``, ``pred_loss``), with the paper's values for the dataset.

Expected runtime on a 2-core CPU (80 configs, 18 epochs): synthetic MF ~30 s,
ML-1M MF ~1 min. NCF sweeps on ML-1M's positive pairs (~3,000 steps per
epoch) are accelerator work; on a CPU cap them with
``--config.spec.steps_per_epoch=50``.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from monosem_jax.experiments.configs import parse_dataset_model
from monosem_jax.recommenders import kinds
from monosem_jax.sweep.spec import FIELDS, paper_defaults

DATASETS = ('synthetic', 'ml-1m', 'ml-100k', 'lastfm-2k', 'atomic')
MODELS = kinds.NAMES
#: The seeds of the ``seeds`` grids and of the main job's
#: (docs/method.md#seeds-and-stability): 42, the default seed, and two more.
SEEDS = (42, 43, 44)
#: Every per-config hyper-parameter; each can be a grid axis.
GRID_FIELDS = FIELDS
#: What each per-config field sets (docs/method.md#objective).
HPARAM_HELP = {
    'lambda_pred': 'w_pred, weight of the prediction loss through the frozen '
                   'scorer',
    'lambda_emb': 'w_emb, weight of the embedding reconstruction MSE',
    'lambda_kl': 'w_KL, weight of the KL sparsity term',
    'rho': 'the KL target of each latent\'s mean activation',
    'lambda_l1': 'w_1, weight of the L1 term on the latents',
    'lr': 'Adam learning rate',
    'seed': 'SAE initialisation seed',
    'dict_size': 'latents (at most the largest size of the sweep)',
    'k': 'active latents of TopK / BatchTopK (0 with ReLU)',
}
#: One line per field, listed with its default by ``--help``
#: (monosem_jax/experiments/launch.py config_fields_help).
FIELD_HELP = {
    'dataset': "the recommender's dataset (checked; chooses the defaults)",
    'kind': f"the recommender's kind, {' | '.join(MODELS)} (checked)",
    'allow_other_dataset': "True: sweep a recommender of another dataset "
                           'with these settings',
    'recommender_workdir': 'the trained (or imported) recommender',
    'seed': 'seed of the batch stream all configs share',
    'epochs': 'SAE training epochs (a rerun with more resumes)',
    'checkpoint_every': 'epochs between orbax checkpoints',
    'shard': 'shard the configs over every device when there are several',
    'plan_memory': "print XLA's memory estimate and the largest config count",
    'config_chunk': 'configs per device per program (None: all, or the '
                    'largest block that fits)',
    'eval_config_chunk': 'configs per evaluation program (None: automatic)',
    'spec.activation': 'relu | topk | batchtopk | mp | omp (then set '
                       'spec.k_max; docs/method.md#pursuit-encoders)',
    'spec.k_max': 'the largest k of TopK / BatchTopK / pursuit',
    'spec.mp_signed': 'pursuit encoders: signed coefficients (False: '
                      'non-negative)',
    'spec.tied': 'tied decoder (W_dec = W); False: untied',
    'spec.prefixes': 'Matryoshka prefix sizes, increasing (): none',
    'spec.steps_per_epoch': '0: one pass over the SAE-train users (MF) or '
                            'pairs (NCF); N: N steps',
    'spec.precision': 'training matmuls: float32 | tf32 | bfloat16 '
                      '(docs/method.md#sweeps-at-scale)',
    # The options of each kind (monosem_jax/recommenders/kinds.py).
    **{f'spec.{name}': f'{kind.name.upper()}: {option.help}'
       for kind in kinds.KINDS.values()
       for name, option in kind.schema.items()},
    **{f'defaults.{f}': f'{text}, where {f} is not a grid axis'
       for f, text in HPARAM_HELP.items()},
    **{f'grid.{f}': f'a tuple of {f} values to sweep (None: not an axis)'
       for f in GRID_FIELDS},
}


def grid_config(**axes) -> ml_collections.ConfigDict:
  """A grid with every per-config field: ``axes`` swept, the rest None.

  Each field is present so that ``--config.grid.FIELD='(...)'`` works for
  all of them; None means "not swept" (the value comes from ``defaults``).
  """
  unknown = sorted(set(axes) - set(GRID_FIELDS))
  if unknown:
    raise ValueError(f'grid_config: unknown field(s) {unknown}; known: '
                     f'{list(GRID_FIELDS)}')
  g = ml_collections.ConfigDict()
  for name in GRID_FIELDS:
    if axes.get(name) is None:
      setattr(g, name, config_dict.placeholder(tuple))
    else:
      setattr(g, name, tuple(axes[name]))
  return g


def get_config(arg: str = 'ml-1m,mf') -> ml_collections.ConfigDict:
  parts = [p.strip() for p in (arg or 'ml-1m,mf').split(',')]
  if parts[2:] not in ([], ['seeds']):
    raise ValueError(f'config argument {arg!r}: expected DATASET,MODEL or '
                     'DATASET,MODEL,seeds')
  dataset, model = parse_dataset_model(','.join(parts[:2]), DATASETS, MODELS)
  lastfm = dataset == 'lastfm-2k'
  c = ml_collections.ConfigDict()
  c.dataset = dataset         # checked against the recommender's
  c.kind = model
  c.allow_other_dataset = False
  c.recommender_workdir = f'runs/{dataset.replace("-", "")}_{model}'
  c.seed = 42                 # the shared batch stream
  c.epochs = 30 if lastfm else 18
  c.checkpoint_every = 1      # epochs between orbax checkpoints
  c.shard = True              # shard configs over all devices when several
  # XLA's memory plan (two small compiles; cached in the workdir): None =
  # only when the device has a limit that the shapes' bound does not clearly
  # fit; True = always (printed also on a CPU); False = never.
  c.plan_memory = ml_collections.FieldReference(None, field_type=bool)
  # Configs per device per program: None = all, or, when the memory plan
  # says they do not fit the device, the largest block that does (the
  # blocks then run one after the other; same results to float32 rounding).
  c.config_chunk = ml_collections.FieldReference(None, field_type=int)
  c.eval_config_chunk = ml_collections.FieldReference(None, field_type=int)

  c.spec = ml_collections.ConfigDict()
  # relu | topk | batchtopk | mp | omp (then set k_max; mp / omp: the
  # pursuit encoders of docs/method.md#pursuit-encoders, omp: k_max <= dim)
  c.spec.activation = 'relu'
  c.spec.k_max = 0
  c.spec.mp_signed = False     # mp / omp: coefficients of either sign
  c.spec.tied = True           # tied decoder (W_dec = W); False: untied
  c.spec.prefixes = ()
  c.spec.steps_per_epoch = 0   # 0: one pass over the SAE-train users / pairs
  # Matmul precision of training: float32 (exact; resumes and shards stay
  # bitwise) | tf32 | bfloat16 (bf16 operands, f32 accumulation); evaluation
  # and analysis are float32 either way. docs/method.md#sweeps-at-scale.
  c.spec.precision = 'float32'
  # The kind's options (batch sizes, pairs, prediction loss): the paper's
  # for this dataset (monosem_jax/recommenders/kinds.py).
  c.spec.update(kinds.get(model).options_for(dataset))

  # Per-config values not swept: the paper's for this dataset and kind.
  c.defaults = ml_collections.ConfigDict(paper_defaults(model, dataset))

  c.grid = grid_config(
      lambda_pred=(0.0, 1.0, 2.0, 5.0, 10.0),
      dict_size=(70, 100, 140, 200) if lastfm else (22, 32, 48, 64),
      rho=(0.02, 0.05, 0.1, 0.2))
  if parts[2:] == ['seeds']:   # every setting three times
    c.grid = grid_config(lambda_pred=c.grid.lambda_pred,
                         dict_size=c.grid.dict_size, seed=SEEDS)
  return c
