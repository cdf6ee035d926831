"""Analysis config: ``get_config()``; dataset-dependent fields are filled in
from :func:`defaults_for` (the sweep's dataset) unless set.

  python -m experiments.analyze --workdir=runs/ml1m_mf_sweep
  python -m experiments.analyze --workdir=runs/ml1m_mf_sweep --config.chosen=4

Writes ``fidelity.csv``, ``neurons.csv``, ``concepts.csv`` (with the null
baselines beside each score), ``interventions.csv``, ``hierarchy.csv``,
``seeds.csv`` (a sweep of several seeds), up to four PNG figures
(``fidelity_vs_l0``, ``concept_heatmap``, ``interventions`` with use cases,
``hierarchy`` for Matryoshka configs) and ``report.md`` into the sweep
folder's ``analysis/``. Measured on a 2-core CPU: 43 s for the 80-config
ML-1M MF README sweep (shared with other jobs), 66 s for 256 configs
(BENCHMARKS.md).

Fields:
  k, p: fidelity list length (None: 30, or every item of a smaller
    catalogue) and RBO persistence.
  ks: purity list lengths, the first 10 (it picks best neurons and concepts);
    None: (10, 20, 50) without those beyond the catalogue size.
  max_users: fidelity on the first N SAE-test users only (None: all).
  chosen: the config whose heat map, interventions and hierarchy the report
    shows; -1 applies the rule of docs/method.md#choosing-a-config (among
    the finite configs with lambda_pred > 0 and a normalised RBO at or above
    the median over the finite configs, the one with the most concepts
    having a purity@10 = 1.0 neuron, ties to the higher normalised RBO, then
    the lower id); N >= 0 chooses config N by hand (the report says so, and
    warns when it diverged or is less faithful than the median).
  modes: intervention modes ('replace' as the paper, 'delta').
  pop_top: N of the popularity neuron's "mean popularity rank of top-N".
  era_top: top items counted per neuron for the era mix (ML-1M).
  hierarchy_top: top items per latent in the Matryoshka hierarchy.
  use_cases: a tuple of dicts, each a
    :class:`monosem_jax.analysis.use_cases.UseCase`; None = the dataset's
    defaults below (each case twice: its neuron chosen by item purity, as
    the paper, and with ``select='effect'``, by its effect through the
    frozen scorer).
  concept_sets: {name: tags}: several tags scored as one concept; None =
    the dataset's defaults below.
  threads: accepted and ignored (the neuron tables are one device program
    per block of configs, monosem_jax/analysis/neuron_stats.py).
  permutations: label permutations of the null baseline (the concept labels
    shuffled over the items; docs/method.md#null-baselines), >= 1: the
    expected pure concepts by chance and the p-value of the observed count,
    whose smallest value is 1 / (1 + permutations).
  null_seed: seed of the permutations, the random rotation of the embedding
    dimensions and the untrained SAE of the null baselines.
  allow_partial: analyse a sweep stopped before the epochs it was asked for
    (its latest checkpoint); every output then says "analysed at epoch 5 of
    12". False (default): such a sweep is refused in one line. Read by the
    launcher (``open_sweep``), not one of :func:`analysis_options`.
  inputs: a recommender workdir of the same data, split, kind and width
    whose embeddings the SAEs code and whose scorer ranks them
    (``workdirs.with_inputs``; e.g. SAEs trained on min-max scaled
    embeddings, analysed on the raw ones as the authors' code does); the
    report says so, and ``out`` is required. Read by the launcher.

On the command line, dicts are Python literals and ``dict(key=value)`` is
accepted (monosem_jax/experiments/launch.py), e.g.
``--config.use_cases="(dict(kind='suppress', concept='Horror'),)"`` or
``--config.concept_sets="{'metal (any)': ('metal', 'heavy_metal')}"``.
Each field once: a field given twice is refused. Ranges (checked before any
work): 1 <= k, ks <= the catalogue size, 0 < p < 1, max_users >= 1 or None,
pop_top, era_top, hierarchy_top >= 1.

:func:`analysis_options` turns a config into ``analyze_sweep``'s
:class:`~monosem_jax.analysis.pipeline.AnalysisOptions`.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from monosem_jax.analysis import pipeline, use_cases
from monosem_jax.errors import ConfigError

_ML = (
    dict(kind='suppress', concept='Horror',
         levels=(None, 1.0, 0.5, 0.0, -0.5, -1.0, -1.5)),
    dict(kind='nudge', concept="Children's", users='age<18',
         levels=(None, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)),
    dict(kind='promote', concept='Romance', target='Alice in Wonderland (1951)',
         levels=(None, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0), threshold=20),
)
_LASTFM = (
    dict(kind='suppress', concept='hip_hop', scale='minmax',
         levels=(None, 0.0, -0.5, -1.0, -1.5, -2.0, -3.0)),
    dict(kind='nudge', concept='rock', group_concept='electronic',
         levels=(None, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)),
    dict(kind='promote', concept='pop', target='Bob Marley', scale='minmax',
         levels=(None, 0.0, 2.0, 4.0, 6.0, 8.0), threshold=50),
)
_SYNTHETIC = (
    dict(kind='suppress', concept='action',
         levels=(None, 1.0, 0.5, 0.0, -0.5, -1.0, -1.5)),
    dict(kind='nudge', concept='romance', group_concept='action',
         levels=(None, 1.0, 2.0, 3.0, 4.0)),
    dict(kind='promote', concept='horror', target='auto',
         group_concept='comedy', levels=(None, 0.0, 1.0, 2.0, 4.0, 6.0),
         threshold=20),
)


def _both_choices(cases: tuple) -> tuple:
  """Each case twice, its neuron chosen by item purity (the paper) and by
  effect (docs/method.md#interventions), so that the report shows the two
  choices side by side."""
  return tuple(c for case in cases
               for c in (case, dict(case, select='effect')))


_ML, _LASTFM, _SYNTHETIC = (_both_choices(c)
                            for c in (_ML, _LASTFM, _SYNTHETIC))
_DEFAULTS = {
    'ml-1m': dict(use_cases=_ML, pop_top=500),
    'ml-100k': dict(use_cases=_ML, pop_top=200),
    'lastfm-2k': dict(use_cases=_LASTFM, pop_top=50, concept_sets={
        'metal (any)': ('metal', 'heavy_metal', 'death_metal', 'black_metal',
                        'thrash_metal', 'power_metal', 'doom_metal')}),
    'synthetic': dict(use_cases=_SYNTHETIC, pop_top=50),
}


def defaults_for(dataset: str) -> dict:
  """The dataset-dependent defaults (``use_cases``, ``pop_top``,
  ``concept_sets``); unknown datasets get no use cases."""
  d = dict(use_cases=(), pop_top=100, concept_sets={})
  d.update(_DEFAULTS.get(dataset, {}))
  return d


#: One line per field (the docstring's "Fields:" says more), listed with its
#: default by ``--help`` (monosem_jax/experiments/launch.py config_fields_help).
FIELD_HELP = {
    'k': 'fidelity list length (None: 30, or every item of a smaller '
         'catalogue)',
    'p': 'RBO persistence',
    'ks': 'purity list lengths, the first picks neurons and concepts (None: '
          '(10, 20, 50) up to the catalogue size)',
    'max_users': 'fidelity on the first N SAE-test users (None: all)',
    'chosen': 'the config the report details (-1: the rule of '
              'docs/method.md#choosing-a-config)',
    'modes': 'intervention modes: replace (as the paper) | delta',
    'pop_top': 'N of the popularity neuron\'s mean popularity rank of top-N '
               "(None: the dataset's)",
    'era_top': 'top items per neuron counted for the era mix (ML-1M)',
    'hierarchy_top': 'top items per latent in the Matryoshka hierarchy',
    'use_cases': "intervention use cases, a tuple of dicts (None: the "
                 "dataset's)",
    'concept_sets': "{name: tags} scored as one concept (None: the "
                    "dataset's)",
    'threads': 'accepted and ignored (the neuron tables run on the device)',
    'permutations': 'label permutations of the null baseline (p-values '
                    '>= 1 / (1 + permutations))',
    'null_seed': 'seed of the null baselines (permutations, rotation, '
                 'untrained SAE)',
    'encode_method': 'inference-time pursuit: omp | mp codes every config '
                     'with encode_k atoms of its own decoder (None: the '
                     'trained encoders)',
    'encode_k': 'atoms per sample of the inference-time pursuit',
    'encode_signed': 'inference-time pursuit with signed coefficients',
    'out': 'folder receiving analysis/ (None: the sweep folder; required '
           'with encode_method and inputs)',
    'inputs': "a recommender workdir of the same data and split whose "
              "embeddings the SAEs code, ranked by its scorer (None: the "
              "sweep's own)",
    'allow_partial': 'analyse a sweep stopped before its epochs (every output '
                     'says "analysed at epoch E of N")',
}


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.k = config_dict.placeholder(int)   # None: 30 (fewer items: all)
  c.p = 0.9
  c.ks = config_dict.placeholder(tuple)   # None: (10, 20, 50) up to n_items
  c.max_users = config_dict.placeholder(int)
  c.chosen = -1
  c.modes = ('replace', 'delta')
  c.pop_top = config_dict.placeholder(int)
  c.era_top = 200
  c.hierarchy_top = 50
  c.use_cases = config_dict.placeholder(tuple)
  c.concept_sets = config_dict.placeholder(dict)
  c.threads = config_dict.placeholder(int)  # ignored (device tables)
  # Null baselines (docs/method.md#null-baselines): label permutations and
  # the seed of the permutations, rotation and untrained SAE.
  c.permutations = 20
  c.null_seed = 0
  c.allow_partial = False   # analyse an unfinished sweep (outputs say so)
  # Inference-time pursuit (docs/method.md#pursuit-encoders): 'omp' | 'mp'
  # codes every config with encode_k atoms of its own trained decoder
  # instead of its encoder; the analysis then goes to config.out (required,
  # not the sweep folder). None: the trained encoders.
  c.encode_method = config_dict.placeholder(str)
  c.encode_k = 8
  c.encode_signed = False
  c.out = config_dict.placeholder(str)   # None: the sweep folder
  # Another recommender of the same data, split and width whose embeddings
  # the SAEs code (workdirs.with_inputs; e.g. the raw embeddings of SAEs
  # trained on min-max scaled ones, as the authors' code); None: the sweep's.
  c.inputs = config_dict.placeholder(str)
  return c


def analysis_options(cfg, dataset_name: str) -> pipeline.AnalysisOptions:
  """``cfg`` as the :class:`~monosem_jax.analysis.pipeline.AnalysisOptions`
  of :func:`~monosem_jax.analysis.pipeline.analyze_sweep`, the dataset's
  :func:`defaults_for` filling the fields left unset (the one place an
  analysis config becomes options: the analyze launcher, the main job, the
  device check and the notebooks)."""
  defaults = defaults_for(dataset_name)
  raw_cases = cfg.use_cases if cfg.use_cases is not None else (
      defaults['use_cases'])
  for i, c in enumerate(raw_cases):
    if not hasattr(c, 'keys'):
      raise ConfigError(
          f'config.use_cases[{i}]={str(c)[:80]!r}: each use case is a dict, '
          'e.g. --config.use_cases="(dict(kind=\'suppress\', '
          'concept=\'Horror\', levels=(None, 0.0, -1.0)),)"')
  cases = [use_cases.UseCase.from_dict(dict(c), f'config.use_cases[{i}]')
           for i, c in enumerate(raw_cases)]
  sets = cfg.concept_sets if cfg.concept_sets is not None else (
      defaults['concept_sets'])
  ks = None if cfg.ks is None else tuple(cfg.ks)
  return pipeline.AnalysisOptions(
      use_cases=tuple(cases), concept_sets=dict(sets), k=cfg.k, p=cfg.p,
      ks=ks, max_users=cfg.max_users, chosen=cfg.chosen,
      modes=tuple(cfg.modes), era_top=cfg.era_top,
      hierarchy_top=cfg.hierarchy_top, threads=cfg.threads, out=cfg.out,
      permutations=cfg.permutations, null_seed=cfg.null_seed,
      pop_top=(cfg.pop_top if cfg.pop_top is not None
               else defaults['pop_top']))
