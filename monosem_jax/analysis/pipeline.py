"""The whole analysis of one sweep: tables, figures and ``report.md``.

:func:`analyze_sweep` reads a sweep only through
:func:`~monosem_jax.analysis.workdirs.open_sweep` and writes one consistent
set of outputs into the ``analysis/`` folder of the sweep folder (see
"Outputs" below):

* ``fidelity.csv``: one row per config: its ``status`` ('ok' or
  'diverged'), ranking fidelity (RBO, tau, overlap), NDCG/HR of the
  reconstructed model, L0 on items (``l0_items``, from the analysed codes)
  and users, the number of concepts with a purity@10 = 1.0 neuron, mean MS
  score, whether the choice rule may pick it (``eligible``, :func:`choose`)
  and whether it is on the Pareto front over (pure concepts high,
  normalised RBO high) among the finite configs (``pareto``); beside the
  pure concepts and the mean best purity, their chance levels
  (:class:`~monosem_jax.analysis.baselines.Chance`: an untrained SAE, the
  label-permutation null's mean and p-value;
  docs/method.md#null-baselines);
* ``neurons.csv``: one row per (config, neuron) (``neurons.neuron_table``),
  and for the chosen config the titles of each neuron's top-5 firing items
  (``top items``, :func:`with_top_items`; empty for the other configs);
* ``concepts.csv``: one row per (config, concept), its best neuron, and
  beside its purity@10 the concept's best purity@10 under the null
  baselines (label permutations: mean and p-value; untrained SAE;
  embedding dimensions, raw and rotated);
* ``seeds.csv`` (a sweep of several seeds): one row per setting (the swept
  fields but the seed), the mean and std over its seeds of the headline
  measures, feature stability across seeds and, for the chosen config's
  setting, the use cases' changes (:func:`_over_seeds`,
  docs/method.md#seeds-and-stability);
* ``interventions.csv``: the use cases on the chosen config, both modes;
* ``hierarchy.csv``: the Matryoshka prefix groups of the chosen config;
* ``planted.csv`` (synthetic world only): recovery of the planted concepts;
* ``fidelity_vs_l0.png``, ``concept_heatmap.png``, ``interventions.png``
  (when there are use cases), ``hierarchy.png`` (Matryoshka configs) and
  ``report.md``, which embeds them and states how the config it describes
  was chosen (docs/method.md#choosing-a-config).

Every matrix product of the analysis is exact float32, whatever precision
trained the sweep and whoever calls (docs/method.md#precision).

Outputs: the whole set is written into a temporary sibling folder and
swapped in at the end (:func:`monosem_jax.files.atomic_directory`), so a
reader sees the previous analysis or the new one, never a mix: a run killed
mid-write (SIGKILL) or failing (a full disk) leaves the previous set as it
was, and the next run removes what the killed one left
(:func:`monosem_jax.files.remove_orphans`). A run stopped by one of its
typed progress hooks (``on_progress``, :mod:`~monosem_jax.analysis.progress`)
stops before it writes anything. Run it under the sweep folder's
:class:`~monosem_jax.files.WorkdirLock` (the launchers do). The view's notes
(:attr:`~monosem_jax.analysis.workdirs.SweepView.notes`: an unfinished
sweep, inputs that could not be verified) are logged once and written in
bold at the top of ``report.md``; an unfinished sweep's CSVs also carry its
``epoch`` and ``of_epochs`` in every row.

Example::

  view = workdirs.open_sweep('runs/ml1m_mf_sweep')
  dataset = workdirs.open_dataset(view.artifact)
  result = analyze_sweep(view, dataset, AnalysisOptions(use_cases=[...]))
  result.fidelity.sort_values('rbo_norm').tail()
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from monosem_jax import files
from monosem_jax.errors import ConfigError
from monosem_jax.analysis import (baselines, concepts, fidelity, figures,
                                  hierarchy, interventions, neuron_stats,
                                  neurons, planted, report, stability,
                                  use_cases, workdirs)
from monosem_jax.analysis.progress import (AnalysisLog, AnalysisProgress,
                                           Hook, call_hooks)
from monosem_jax.sae import model
from monosem_jax.sweep import memory
from monosem_jax.sweep.workdir import RESULTS_CSV, SweepWorkdir
from monosem_jax.sweep.spec import SweepSpec

REPORT_MD = 'report.md'
#: The folder of the sweep folder that holds one analysis' outputs.
ANALYSIS_DIR = 'analysis'
#: Outputs of the layout before ANALYSIS_DIR (beside sweep.json); removed
#: from a sweep folder when a new analysis is written, as stale.
_OLD_LAYOUT = ('fidelity.csv', 'neurons.csv', 'concepts.csv',
               'interventions.csv', 'hierarchy.csv', 'planted.csv',
               'fidelity_vs_l0.png', 'concept_heatmap.png',
               'interventions.png', 'hierarchy.png', REPORT_MD)
PURE = 'pure_concepts@10'
#: Default fidelity list length and purity list lengths (docs/method.md).
DEFAULT_K = 30
DEFAULT_KS = (10, 20, 50)
#: A config's ``status``: trained to the end, or frozen at its last finite
#: state after its loss or weights became non-finite (``sweep_results.csv``).
OK, DIVERGED = 'ok', 'diverged'


@dataclasses.dataclass
class Analysis:
  """What :func:`analyze_sweep` computed (each table also as a CSV)."""
  fidelity: pd.DataFrame
  neurons: pd.DataFrame
  concepts: pd.DataFrame
  interventions: pd.DataFrame
  hierarchy: pd.DataFrame
  planted: pd.DataFrame | None
  chosen: int
  report_path: str
  seconds: float
  notes: tuple[str, ...] = ()
  chance: pd.DataFrame | None = None
  seeds: pd.DataFrame | None = None


@dataclasses.dataclass(frozen=True)
class AnalysisOptions:
  """The settings of :func:`analyze_sweep` (``monosem_jax/experiments/configs/analyze.py``
  builds them from the analysis config: ``analysis_options``).

  Attributes:
    use_cases: the intervention use cases (run on the chosen config).
    concept_sets: ``{name: tags}`` scored as extra concepts.
    k, p: fidelity list length (None: 30, or the catalogue size when it
      is smaller), RBO persistence.
    ks: purity K values, the first 10 for the pure-concept count (None:
      those of :data:`DEFAULT_KS` that the catalogue holds). Values given
      explicitly are checked, never cut.
    max_users: fidelity on the first N SAE-test users only (None: all).
    chosen: config for the heat map, interventions and hierarchy (-1: auto,
      :func:`choose_config`).
    modes: intervention modes.
    pop_top, era_top, hierarchy_top: top items per neuron for the
      popularity neuron, the era mix and the Matryoshka hierarchy.
    out: the folder that receives the ``analysis/`` folder (None: the
      sweep folder).
    threads: accepted for compatibility and ignored (the neuron tables are
      one device program per block of configs).
    permutations, null_seed: label permutations of the null baseline and
      the seed of the baselines (docs/method.md#null-baselines).
  """
  use_cases: Sequence[use_cases.UseCase] = ()
  concept_sets: Mapping[str, Sequence[str]] | None = None
  k: int | None = None
  p: float = 0.9
  ks: Sequence[int] | None = None
  max_users: int | None = None
  chosen: int = -1
  modes: Sequence[str] = ('replace', 'delta')
  pop_top: int = 500
  era_top: int = 200
  hierarchy_top: int = 50
  out: str | None = None
  threads: int | None = None
  permutations: int = baselines.DEFAULT_PERMUTATIONS
  null_seed: int = baselines.NULL_SEED

  def resolved(self, n_items: int) -> 'AnalysisOptions':
    """``k`` and ``ks`` left None filled in for a catalogue of ``n_items``
    items (the rest as given, unchecked: :func:`analyze_sweep` checks)."""
    k = min(DEFAULT_K, n_items) if self.k is None else self.k
    ks = (tuple(K for K in DEFAULT_KS if K <= n_items) or DEFAULT_KS[:1]
          if self.ks is None else tuple(self.ks))
    return dataclasses.replace(self, k=k, ks=ks)


@dataclasses.dataclass(frozen=True)
class ReportContext:
  """What ``report.md`` is written from besides the tables of
  :class:`Analysis`: the sweep, its dataset, the (resolved) options, how the
  config was chosen, its item codes ``(n_items, dict_size)`` and concept
  rows, the figures' files, the folder of the report and the use cases'
  changes over seeds."""
  view: workdirs.SweepView
  dataset: object
  options: AnalysisOptions
  choice: 'Choice'
  acts: np.ndarray
  chosen_concepts: pd.DataFrame
  figs: Mapping[str, str]
  folder: str
  seed_changes: pd.DataFrame | None = None


@functools.partial(jax.jit, static_argnums=0)
def _encode_configs(spec: SweepSpec, sae, hp, x):
  """``(c, N, max_dict_size)`` codes of ``x`` under each config (latents
  beyond a config's dictionary are exactly 0; each sample encoded on its
  own, :func:`monosem_jax.sae.model.per_sample`)."""
  cfg = model.per_sample(spec.sae)

  def one(p, h):
    return model.encode(p, x, cfg, h.k, model.latent_mask(h.dict_size,
                                                          cfg.dict_size))
  return jax.vmap(one)(sae, hp)


def _config_codes(view: workdirs.SweepView, x: np.ndarray,
                  idx: Sequence[int]) -> jax.Array:
  """:func:`config_activations`, left on the device."""
  idx = np.asarray(idx)
  sae = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)[idx]),
                     view.state.sae)
  return _encode_configs(view.spec, sae, view.hparams.take(idx),
                         jnp.asarray(x, jnp.float32))


def random_sae(view: workdirs.SweepView, seed: int = baselines.NULL_SEED):
  """An untrained SAE of the sweep's architecture (:func:`model.init` of
  ``view.spec.sae`` at ``seed``; a config's first ``dict_size`` latents are
  an untrained SAE of its size, docs/method.md#sparse-autoencoder)."""
  return jax.jit(model.init, static_argnums=1)(jax.random.PRNGKey(seed),
                                               view.spec.sae)


def random_codes(view: workdirs.SweepView, x: np.ndarray,
                 idx: Sequence[int], params) -> jax.Array:
  """``(len(idx), N, max_dict_size)`` codes of ``x`` ``(N, d)`` by the
  untrained SAE ``params`` (:func:`random_sae`) as each config of ``idx``
  codes (masked to its dictionary size, with its ``k``): the random-SAE
  baseline (docs/method.md#null-baselines)."""
  idx = np.asarray(idx)
  sae = jax.tree.map(lambda a: jnp.broadcast_to(a, (len(idx), *a.shape)),
                     params)
  return _encode_configs(view.spec, sae, view.hparams.take(idx),
                         jnp.asarray(x, jnp.float32))


def config_activations(view: workdirs.SweepView, x: np.ndarray,
                       idx: Sequence[int]) -> np.ndarray:
  """Codes of raw embeddings ``x`` ``(N, d)`` under configs ``idx``, in one
  vmapped program: ``(len(idx), N, max_dict_size)``."""
  return np.asarray(_config_codes(view, x, idx))


def config_status(fidelity: pd.DataFrame) -> np.ndarray:
  """``(rows,)`` the ``status`` column (``'ok'`` where a table has none)."""
  if 'status' in fidelity:
    return fidelity['status'].astype(str).to_numpy()
  return np.full(len(fidelity), OK, object)


@dataclasses.dataclass(frozen=True)
class Choice:
  """The config the report describes, and why
  (docs/method.md#choosing-a-config).

  Attributes:
    config: the chosen config id.
    eligible: ``(rows,)`` bool, the configs the rule chooses from.
    median_rbo: the median normalised RBO over the finite configs.
    rule: what the rule did, in one or two sentences for the report.
    by_hand: ``chosen=N`` was given.
  """
  config: int
  eligible: np.ndarray
  median_rbo: float
  rule: str
  by_hand: bool = False


def choose(fidelity: pd.DataFrame, chosen: int = -1) -> Choice:
  """Applies the choice rule (docs/method.md#choosing-a-config) to a table
  with ``config, rbo_norm, pure_concepts@10`` and optionally ``status``,
  ``lambda_pred``.

  Among the finite configs (status ``'ok'``) with ``lambda_pred > 0`` (when
  the sweep has any) and a normalised RBO at or above the median over the
  finite configs, the one with the most pure concepts, ties to the higher
  normalised RBO, then the lower config id. When no ``lambda_pred > 0``
  config reaches the median, every finite config at or above it is
  eligible. ``chosen >= 0`` overrides the rule (the pool is still computed).

  Raises:
    ConfigError: no config is finite (every one diverged) and none was
      chosen by hand.
  """
  ok = config_status(fidelity) == OK
  rbo = fidelity['rbo_norm'].to_numpy(np.float64)
  n_ok = int(ok.sum())
  median = float(np.nanmedian(rbo[ok])) if ok.any() else float('nan')
  faithful = ok & (rbo >= median)                 # False for NaN RBO
  pred = (fidelity['lambda_pred'].to_numpy(np.float64) > 0
          if 'lambda_pred' in fidelity else np.ones(len(fidelity), bool))
  eligible = faithful & pred
  why = ''
  if not (ok & pred).any():
    why = ('the sweep has only λ_pred = 0 configs (no prediction-aware '
           'loss), so that condition is dropped: ')
  elif not eligible.any():
    why = ('no λ_pred > 0 config reaches the median normalised RBO, so that '
           'condition is dropped: ')
  if why:
    eligible = faithful
  rule = (f'{why}among the {n_ok} finite configs, those with '
          f'{"" if why else "λ_pred > 0 and "}a normalised RBO at or above '
          f'their median ({median:.3f}), {int(eligible.sum())} configs, the '
          'one with the most pure concepts, ties to the higher normalised '
          'RBO, then the lower id')
  if chosen >= 0:
    return Choice(int(chosen), eligible, median, rule, by_hand=True)
  if not eligible.any():
    raise ConfigError(
        f'no config to choose: {len(fidelity) - n_ok} of {len(fidelity)} '
        'configs diverged and no finite one has a normalised RBO; pass '
        'chosen=N (--config.chosen=N) to analyse one anyway')
  pool = fidelity[eligible]
  best = pool.sort_values([PURE, 'rbo_norm', 'config'],
                          ascending=[False, False, True]).iloc[0]
  return Choice(int(best['config']), eligible, median, rule)


def pareto_configs(fidelity: pd.DataFrame) -> np.ndarray:
  """``(rows,)`` bool: the Pareto front over (pure concepts high, normalised
  RBO high) among the finite configs: what each extra pure concept costs in
  fidelity. A diverged config is never on it (docs/method.md#choosing-a-config).
  """
  t = fidelity[[PURE, 'rbo_norm']].astype(np.float64)
  t[config_status(fidelity) != OK] = np.nan        # never on the front
  return figures.pareto_front(t, maximize=(PURE, 'rbo_norm'))


def choose_config(fidelity: pd.DataFrame) -> int:
  """The config the rule of :func:`choose` picks (never a diverged one)."""
  return choose(fidelity).config


def choice_order(fid: pd.DataFrame) -> pd.DataFrame:
  """The configs in the rule's order: eligible first, then finite, then
  diverged; within each, most pure concepts, higher RBO, lower id."""
  key = pd.DataFrame({'bad': config_status(fid) != OK,
                      'not_eligible': ~fid['eligible'].astype(bool)
                      if 'eligible' in fid else False,
                      'pure': -fid[PURE], 'rbo': -fid['rbo_norm'],
                      'config': fid['config']}, index=fid.index)
  return fid.loc[key.sort_values(list(key)).index]


def _top_titles(acts: np.ndarray, neurons_: np.ndarray, titles: np.ndarray,
                n: int = 5) -> list[str]:
  """Per neuron of ``neurons_``, the titles of its top-``n`` firing items
  (``acts`` ``(n_items, M)``, one ``top_k`` for all), ``'; '``-joined."""
  idx, fires = neurons.top_items(acts, n)
  return ['; '.join(str(titles[i]) for i, f in zip(idx[m], fires[m]) if f)
          for m in neurons_]


#: The column of ``neurons.csv`` with the chosen config's top items.
TOP_ITEMS = 'top items'


def with_top_items(rows: pd.DataFrame, config: int, acts: np.ndarray,
                   titles: np.ndarray, n: int = 5) -> pd.DataFrame:
  """``rows`` (``neurons.csv``: ``config``, ``neuron``, ...) with
  :data:`TOP_ITEMS`: for config ``config``, whose item codes are ``acts``
  ``(n_items, dict_size)``, the titles of each neuron's top-``n`` firing
  items (as the report's concept table); ``''`` for the other configs and
  for a neuron that fires on no item."""
  column = np.full(len(rows), '', dtype=object)
  mine = (rows['config'] == config).to_numpy()
  column[mine] = _top_titles(acts, rows['neuron'].to_numpy()[mine], titles, n)
  return rows.assign(**{TOP_ITEMS: column})


#: Device memory of one block of the neuron tables where the device reports
#: no limit (a CPU).
TABLES_BYTES = 2 ** 30


def _neuron_tables(view, dataset, item_concepts, names, cfg, progress,
                   threads: int | None = None,
                   max_bytes: float | None = None, per_block=None):
  """Per-config neuron and concept tables, and the per-config summary.

  One device program per block of configs
  (:class:`~monosem_jax.analysis.neuron_stats.BlockTables`: the tables of
  ``neurons.neuron_table`` and ``neurons.concept_table``, config by config).
  A block holds as many configs as fit ``max_bytes`` (default: a quarter of
  the device's memory limit, or :data:`TABLES_BYTES` where the device
  reports none); the last block is padded to the same shape, so that one
  compiled program serves them all. ``threads`` is accepted and has no
  effect (the host threads of the per-config tables are gone).
  ``per_block(item_codes, pad, n)``, when given, is called with each
  block's item codes on the device (``(len(pad), N, M)``), the configs
  ``pad`` and the number ``n`` of real ones (e.g. :class:`baselines.Chance`).
  ``progress`` is called after each block with its
  :class:`~monosem_jax.analysis.progress.AnalysisProgress` (stage
  ``'neurons'``, configs done).
  """
  del threads
  art = view.artifact
  c = view.num_configs
  users = np.asarray(art.user_emb)[np.asarray(art.split.sae_test_users)]
  tables = neuron_stats.BlockTables(
      item_concepts, names, art.item_emb, dataset.item_popularity,
      cfg['ks'], cfg['pop_top'], item_decade=dataset.item_decade,
      era_top=cfg['era_top'])
  if max_bytes is None:
    limit = memory.device_limit()
    max_bytes = limit / 4 if limit else TABLES_BYTES
  block = int(min(c, max(1, max_bytes // tables.bytes_per_config(
      view.spec.max_dict_size, len(users)))))
  dict_size = np.asarray(view.hparams.dict_size)
  n_tab, c_tab, per_config = [], [], []
  t0 = time.perf_counter()
  for start in range(0, c, block):  # blocks of configs, each one program
    idx = np.arange(start, min(c, start + block))
    pad = np.concatenate([idx, np.full(block - len(idx), idx[-1])])
    item_codes = _config_codes(view, art.item_emb, pad)
    nt, ct, row = tables(item_codes, _config_codes(view, users, pad),
                         dict_size[pad], idx)
    if per_block is not None:
      per_block(item_codes, pad, len(idx))
    n_tab.append(nt)
    c_tab.append(ct)
    per_config.append(row)
    progress(AnalysisProgress('neurons', int(idx[-1]) + 1, c,
                              time.perf_counter() - t0))
  return (pd.concat(n_tab, ignore_index=True),
          pd.concat(c_tab, ignore_index=True),
          pd.concat(per_config, ignore_index=True))


def _check_settings(n_items: int, o: AnalysisOptions) -> None:
  """Refuses a setting of ``o`` (resolved) the analysis cannot use, in one
  line naming the field and its valid range (``k=0`` once divided by zero,
  ``max_users=0`` gave NaN RBO, ``p=1.5`` was accepted)."""

  def integer(name, value, lo, hi=None, what=''):
    if (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        and lo <= value <= (hi if hi is not None else value)):
      return
    span = f'in [{lo}, {hi}]' if hi is not None else f'>= {lo}'
    raise ConfigError(f'{name}={value!r}: must be an integer {span}{what}')

  integer('k', o.k, 1, n_items, ' (fidelity list length; the catalogue has '
          f'{n_items} items)')
  fidelity.check_persistence(o.p)
  for i, kk in enumerate(o.ks):
    integer(f'ks[{i}]', kk, 1, n_items, ' (purity list length; the '
            f'catalogue has {n_items} items)')
  if o.max_users is not None:
    integer('max_users', o.max_users, 1, what=' (SAE-test users in the '
            'fidelity), or None for all')
  for name in ('pop_top', 'era_top', 'hierarchy_top'):
    integer(name, getattr(o, name), 1, what=' (top items per neuron)')
  integer('permutations', o.permutations, 1, what=' (label permutations of '
          'the null baseline, docs/method.md#null-baselines)')
  integer('null_seed', o.null_seed, 0, what=' (seed of the null baselines)')


def analyze_sweep(view: workdirs.SweepView, dataset,
                  options: AnalysisOptions = AnalysisOptions(), *,
                  log: Callable[[str], None] = print,
                  on_progress: Sequence[Hook] = ()) -> Analysis:
  """Analyses every config of a sweep and writes the report (module doc).

  Args:
    view, dataset: from ``workdirs.open_sweep`` / ``open_dataset``.
    options: the settings (:class:`AnalysisOptions`; every one is checked
      before any work).
    log: progress sink: the lines of
      :class:`~monosem_jax.analysis.progress.AnalysisLog` and what the
      analysis does.
    on_progress: hooks called in order with an
      :class:`~monosem_jax.analysis.progress.AnalysisProgress` after each
      block of the neuron tables and at the end of each stage; one that
      returns True stops the analysis there.

  Raises:
    ~monosem_jax.analysis.progress.AnalysisStopped: a hook stopped it,
      before anything was written (the previous ``analysis/`` folder is
      left as it was).
  """
  t_start = time.perf_counter()
  hooks = [AnalysisLog(log), *on_progress]
  progress = functools.partial(call_hooks, hooks)
  out = options.out
  encoder = getattr(view, 'encoder', None)   # workdirs.with_encoder
  if encoder is not None and os.path.abspath(out or view.workdir) == (
      view.workdir):
    raise ConfigError(f'out={out!r}: a sweep recoded by pursuit '
                      f'({encoder}) writes its analysis elsewhere; pass '
                      f'out=, a folder other than {view.workdir}')
  inputs = getattr(view, 'inputs', None)     # workdirs.with_inputs
  if inputs is not None and os.path.abspath(out or view.workdir) == (
      view.workdir):
    raise ConfigError(f'out={out!r}: a sweep analysed on the embeddings of '
                      f'another recommender ({inputs}) writes its analysis '
                      f'elsewhere; pass out=, a folder other than '
                      f'{view.workdir}')
  out = os.path.abspath(out or view.workdir)
  o = options.resolved(view.artifact.n_items)
  k, p, ks, modes, cases = o.k, o.p, o.ks, o.modes, o.use_cases
  # Every setting is checked before the expensive stages.
  _check_settings(view.artifact.n_items, o)
  if not ks or ks[0] != 10 or min(ks) < 1:
    raise ConfigError(f'ks={ks}: positive list lengths, the first one 10 '
                      '(the pure-concept count is at purity@10)')
  if o.threads is not None and (isinstance(o.threads, bool)
                                or int(o.threads) < 1):
    raise ConfigError(f'threads={o.threads}: at least 1 (None: one per CPU '
                      'core)')
  if not -1 <= int(o.chosen) < view.num_configs:
    raise ConfigError(f'chosen={o.chosen}: the sweep has {view.num_configs} '
                      'configs (0..{}; -1 picks one)'.format(
                          view.num_configs - 1))
  concepts.require_concepts(dataset)
  resolved = use_cases.resolve(list(cases), dataset, view.artifact.split,
                               modes)
  cfg = dict(ks=ks, pop_top=o.pop_top, era_top=o.era_top)
  item_concepts, names = dataset.item_concepts, dataset.concept_names
  if o.concept_sets:
    item_concepts, names = concepts.concept_sets(item_concepts, names,
                                                 o.concept_sets)
  art = view.artifact
  log(f'analysis of {view.num_configs} configs ({art.kind} on '
      f'{dataset.name}, {len(art.split.sae_test_users)} SAE-test users)')
  notes = list(view.notes)

  t = time.perf_counter()
  fid = workdirs.sweep_fidelity(view, k=k, p=p, max_users=o.max_users)
  extra, note = (None, None) if encoder is not None else (
      _sweep_results(view))   # the trained encoders' figures
  if note:
    notes.append(note)
  if extra is not None:
    keep = [c for c in ('config', 'fve', 'score_mse') if c in extra]
    fid = fid.merge(extra[keep], on='config', how='left')
  for note in notes:
    log(f'  note: {note}')
  log(f'  fidelity: {time.perf_counter() - t:.1f}s')
  progress(AnalysisProgress('fidelity', view.num_configs, view.num_configs,
                            time.perf_counter() - t))

  t = time.perf_counter()
  chance = baselines.Chance(item_concepts, art.item_emb, ks[0],
                            o.permutations, o.null_seed)
  untrained = random_sae(view, o.null_seed)
  null_seconds = [time.perf_counter() - t]

  def score_chance(codes, pad, n):   # the block's codes are on the device
    t0 = time.perf_counter()
    chance.add(codes, random_codes(view, art.item_emb, pad, untrained),
               np.asarray(view.hparams.dict_size)[pad], n)
    null_seconds.append(time.perf_counter() - t0)

  neuron_rows, concept_rows, per_config = _neuron_tables(
      view, dataset, item_concepts, names, cfg, progress, o.threads,
      per_block=score_chance)
  concept_rows = concept_rows.assign(**chance.concept_columns())
  per_config = per_config.assign(**chance.config_columns())
  fid = fid.merge(per_config, on='config')
  # sweep_fidelity's `finite`: the state's flag and finite reconstructions
  finite = fid['finite'].to_numpy(bool)
  fid.insert(1, 'status', np.where(finite, OK, DIVERGED))
  if encoder is not None:   # not the trained encoders
    fid.insert(2, 'encoder', encoder)
  fid['pareto'] = pareto_configs(fid)
  log(f'  neurons and concepts: {time.perf_counter() - t:.1f}s (of which '
      f'null baselines {sum(null_seconds):.1f}s)')

  choice = choose(fid, int(o.chosen))
  fid['eligible'] = choice.eligible
  chosen = choice.config
  sae = view.sae(chosen)
  m = sae.cfg.dict_size
  acts = config_activations(view, art.item_emb, [chosen])[0][:, :m]
  chosen_concepts = concept_rows[concept_rows.config == chosen].drop(
      columns='config').reset_index(drop=True)
  neuron_rows = with_top_items(neuron_rows, chosen, acts, dataset.item_titles)

  t = time.perf_counter()
  if cases:
    iv = use_cases.run_use_cases(view, chosen, dataset, cases, k=k, p=p,
                                 modes=modes, concept_table=chosen_concepts,
                                 resolved=resolved)
  else:
    iv = pd.DataFrame(columns=['case', 'kind', 'concept', 'neuron', 'mode',
                               'level'])
  log(f'  interventions ({len(cases)} use cases on config {chosen}): '
      f'{time.perf_counter() - t:.1f}s')
  progress(AnalysisProgress('interventions', len(cases), len(cases),
                            time.perf_counter() - t))
  seeds = seed_changes = None
  if stability.has_seeds(fid):
    t = time.perf_counter()

    def run_cases(config, table):   # the use cases on another seed
      return use_cases.run_use_cases(view, config, dataset, cases, k=k,
                                     p=p, modes=modes, concept_table=table,
                                     resolved=resolved)

    seeds, seed_changes = _over_seeds(view, fid, neuron_rows, concept_rows,
                                      chosen, iv, run_cases)
    log(f'  seeds: {len(seeds)} settings of {fid.seed.nunique()} seeds, '
        f'stability and the use cases on the other seeds of config '
        f'{chosen}: {time.perf_counter() - t:.1f}s')
    progress(AnalysisProgress('seeds', len(seeds), len(seeds),
                              time.perf_counter() - t))
  chance_table = chance.summary(chosen, m)
  hier = hierarchy.hierarchy_table(
      acts, sae.cfg.prefix_sizes or (m,), dataset.item_popularity,
      item_concepts, top=o.hierarchy_top, item_emb=art.item_emb)
  truth = dataset.extras.get('concept_truth') if dataset.extras else None
  plant = None
  if truth is not None:
    plant = planted.planted_recovery(acts, truth, dataset.concept_names, ks)

  tables = {'fidelity.csv': fid, 'neurons.csv': neuron_rows,
            'concepts.csv': concept_rows, 'interventions.csv': iv,
            'hierarchy.csv': hier}
  if plant is not None:
    tables['planted.csv'] = plant
  if seeds is not None:
    tables['seeds.csv'] = seeds
  # One consistent set: everything into a staging folder, swapped in whole.
  folder = os.path.join(out, ANALYSIS_DIR)
  cleaned = files.remove_orphans(out, (ANALYSIS_DIR, *_OLD_LAYOUT))
  if cleaned:
    log(f'  removed what a killed analysis left: {", ".join(cleaned)}')
  with files.atomic_directory(folder) as stage:
    for name, table in tables.items():
      _write_csv(os.path.join(stage, name), _stamped(table, view))
    figs = _figures(stage, fid, acts, item_concepts, names, iv, hier, chosen,
                    ks)
    seconds = time.perf_counter() - t_start
    result = Analysis(fid, neuron_rows, concept_rows, iv, hier, plant, chosen,
                      os.path.join(folder, REPORT_MD), seconds, tuple(notes),
                      chance_table, seeds)
    text = _report(result, ReportContext(
        view, dataset, o, choice, acts, chosen_concepts, figs, folder,
        seed_changes))
    _write_text(os.path.join(stage, REPORT_MD), _with_notes(text, notes))
  if out == view.workdir:
    _remove_old_layout(out, log)
  log(f'wrote {result.report_path} and {len(tables)} CSVs in {seconds:.1f}s')
  return result


def _over_seeds(view, fid, neuron_rows, concept_rows, chosen, iv, run_cases
                ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
  """``seeds.csv`` (docs/method.md#seeds-and-stability) and the use cases'
  changes over the seeds of the chosen config's setting.

  ``seeds.csv``: :func:`stability.over_seeds` of the headline measures,
  :func:`stability.feature_stability` (decoder rows of the sweep's state),
  ``chosen`` (the chosen config's setting) and, on that row, the mean and
  standard deviation over its seeds of each use case's change
  (``CASE (MODE): MEASURE change_mean``, ``_std``), when ``iv`` (the
  chosen config's use cases) has rows; ``run_cases(config, concept_table)``
  runs the use cases on another config.
  """
  measures = [m for m in stability.MEASURES if m in fid]
  seeds = stability.over_seeds(fid, measures)
  dec = np.asarray(model.decoder_weights(view.state.sae, view.spec.sae))
  sizes = fid.set_index('config')['dict_size'].astype(int)
  decoders = {int(c): dec[int(c), :sizes[c]] for c in fid['config']}
  seeds = pd.concat([seeds, stability.feature_stability(
      fid, decoders, neuron_rows)], axis=1)
  row = stability.setting_of(fid, chosen)
  seeds.insert(0, 'chosen', np.arange(len(seeds)) == row)
  changes = None
  others = stability.siblings(fid, chosen)
  if others and len(iv):
    per_config = {chosen: iv}
    for c in others:   # the chosen setting's other seeds (a few)
      table = concept_rows[concept_rows.config == c].drop(
          columns='config').reset_index(drop=True)
      per_config[c] = run_cases(c, table)
    changes = stability.intervention_changes(per_config)
    summary = stability.changes_over_seeds(changes)
    for r in summary.itertuples(index=False):
      name = f'{r.case} ({r.mode}): {r.measure} change'
      seeds.loc[row, f'{name}_mean'] = r.change_mean
      seeds.loc[row, f'{name}_std'] = r.change_std
  return seeds, changes


def _write_csv(path: str, table: pd.DataFrame) -> None:
  table.to_csv(path, index=False)


def _write_text(path: str, text: str) -> None:
  with open(path, 'w') as f:
    f.write(text)


def _sweep_results(view: workdirs.SweepView):
  """``sweep_results.csv`` when it is of the epoch analysed, else None and
  a note (e.g. a finished sweep resumed to more epochs, then stopped)."""
  extra = SweepWorkdir(view.workdir).read_results()
  if extra is None:
    return None, None
  if 'epoch' in extra:
    same = bool((extra['epoch'] == view.epoch).all())
  else:   # written before the column: of the finished sweep
    same = not view.partial
  if same:
    return extra, None
  return None, (f'{RESULTS_CSV} is not of epoch {view.epoch} (written at the '
                'end of an earlier run), so its columns (l0_items, fve, '
                'status) are left out')


def _stamped(table: pd.DataFrame, view: workdirs.SweepView) -> pd.DataFrame:
  """``table``, with the epoch analysed and the epochs asked for in every
  row when the sweep is unfinished."""
  if not view.partial:
    return table
  table = table.copy()
  table.insert(0, 'of_epochs', view.epochs)
  table.insert(0, 'epoch', view.epoch)
  return table


def _with_notes(text: str, notes: Sequence[str]) -> str:
  """``report.md`` with each note in bold under its title."""
  if not notes:
    return text
  title, _, rest = text.partition('\n')
  lines = ''.join(f'**Note: {n}.**\n\n' for n in notes)
  return f'{title}\n\n{lines}{rest.lstrip(chr(10))}'


def _remove_old_layout(workdir: str, log) -> None:
  """Removes the outputs an older version wrote beside ``sweep.json``: they
  are superseded by ``analysis/`` and would be read as current."""
  old = [n for n in _OLD_LAYOUT if os.path.isfile(os.path.join(workdir, n))]
  for name in old:
    os.remove(os.path.join(workdir, name))
  if old:
    log(f'  removed the outputs of an older analysis beside sweep.json '
        f'({", ".join(old)}); this one is in {ANALYSIS_DIR}/')


def summary_lines(name: str, result: Analysis) -> list[str]:
  """A few lines on an analysis, as the main job prints them: the chosen
  config, its chance levels and spread over seeds, planted-concept recovery,
  and the first suppression in delta mode for each neuron choice (by item
  purity, by effect), led by its flags when it went the wrong way or its
  neuron is (nearly) off for the users (never headlined as a success)."""
  fid, m = result.fidelity, name.upper()
  cols = [c for c in ('config', 'status', 'lambda_pred', 'dict_size', 'rho',
                      'l0_items', 'rbo_norm', 'kendall_tau', PURE) if c in fid]
  lines = [f'{m}: chosen config {result.chosen} (docs/method.md#choosing-a-'
           'config: among the finite configs with lambda_pred > 0 and a '
           'normalised RBO at or above the median, the most pure concepts):\n'
           + fid[fid.config == result.chosen][cols].round(3).to_string(
               index=False)]
  if result.chance is not None:
    lines.append(f'{m}: ' + _chance_line(result.chance))
  if result.seeds is not None:
    lines.append(f'{m}: ' + _seed_line(result.seeds))
  if result.planted is not None:
    p = result.planted
    lines.append(f'{m}: planted-concept recovery, config {result.chosen}: '
                 f'mean recall {p.recall.mean():.3f}, mean purity@10 '
                 f'{p["purity@10"].mean():.3f} over {len(p)} concepts')
  iv = result.interventions
  if len(iv):
    case = iv[(iv.kind == 'suppress') & (iv['mode'] == 'delta')]
    # the first suppression per neuron choice (item purity, effect): a
    # purity neuron that steers the wrong way is shown beside the one that
    # steers (docs/method.md#interventions)
    groups = (case.groupby('choice', sort=False) if 'choice' in case
              else [(None, case)])
    for _, by in groups:
      if len(by):
        lines.append(f'{m}: ' + _suppression_line(
            by[by.case == by.case.iloc[0]]))
  lines.append(f'{m}: report {result.report_path}')
  return lines


def _chance_line(chance: pd.DataFrame) -> str:
  """The chosen config's pure concepts beside their chance levels
  (:meth:`baselines.Chance.summary`), one sentence."""
  pure = chance.columns[2]
  v = chance[pure]
  return (f'{chance.neurons["observed"]}: {v["observed"]:g} {pure}; by chance '
          f'(docs/method.md#null-baselines): untrained SAE '
          f'{v["random_sae"]:g}, embedding dimensions {v["dims"]:g}, rotated '
          f'{v["rotated"]:g}, shuffled labels {v["null"]:.2f} on average '
          f'(permutation p-value {v["p"]:.3f})')


def _suppression_line(case: pd.DataFrame) -> str:
  """One suppression case in one mode: the concept share with no edit and at
  the lowest level, the users' mean activation, and its flags first."""
  _, before, level, after = interventions.strongest_change(case, 'suppress')
  base = case.iloc[0]
  what = (f'{base.case}, {base["mode"]} mode: concept share of the top list '
          f'{before:.3f} -> {after:.3f} at level {level:g} (neuron '
          f'{base.neuron}, mean activation {base.orig_activation:.3g} for '
          'these users)')
  flags = []
  if base.get('wrong_sign', False):
    flags.append('WRONG DIRECTION')
  if base.get('inactive', False):
    flags.append(f'INACTIVE NEURON (at most '
                 f'{interventions.INACTIVE_FRACTION:.0%} of its largest, '
                 f'{base.activation_max:.3g})')
  if not flags:
    return what
  why = ('not a successful suppression' if base.get('wrong_sign', False) else
         'the neuron was (nearly) off for these users')
  return f'{", ".join(flags)}: {what}; {why}'


def _figures(out, fid, acts, item_concepts, names, iv, hier, chosen, ks):
  made = {}

  def save(name, draw):
    path = os.path.join(out, name)
    files.atomic_write(path, lambda f: f.write(figures.to_png(draw())),
                       binary=True)
    made[name] = name

  save('fidelity_vs_l0.png', lambda: figures.plot_fidelity_vs_l0(fid))
  purity = neurons.concept_scores(acts, item_concepts, ks[:1])['purity'][0]
  save('concept_heatmap.png', lambda: figures.plot_concept_heatmap(
      purity, names, ks[0], f'config {chosen}: purity@{ks[0]}'))
  if len(iv):
    save('interventions.png', lambda: figures.plot_interventions(iv))
  if len(hier) > 1:
    cols = [c for c in hier if c.startswith(('n_alive', 'mean_pop_rank',
                                             'concept_entropy', 'mean_cos'))]
    save('hierarchy.png', lambda: figures.plot_hierarchy(hier, columns=cols))
  return made


def _pivot_levels(t: pd.DataFrame) -> pd.DataFrame:
  """One row per level (raw, no edit, then the levels), one column per
  (measure, mode), and the neuron's mean ``activation`` at that level (the
  same in every mode: the edited code does not depend on the mode)."""
  t = t.replace({'level': {v: 'no edit'
                           for v in interventions.NO_EDIT.values()}})
  measures = [c for c in ('concept_share', 'collateral_rbo', 'success_rate',
                          'mean_rank') if c in t and t[c].notna().any()]
  wide = t.pivot_table(index='level', columns='mode', values=measures,
                       sort=False, aggfunc='first')
  wide.columns = [f'{m} ({mode})' for m, mode in wide.columns]
  if 'activation' in t:
    wide.insert(0, 'activation', t.groupby('level', sort=False)[
        'activation'].first())
  return wide.reset_index()


def _choice_table(iv: pd.DataFrame) -> pd.DataFrame:
  """One row per (case, mode): how its neuron was chosen, the neuron, its
  purity@10, and the measure with no edit and at the strongest level."""
  rows = []
  for (case, mode), t in iv.groupby(['case', 'mode'], sort=False):
    measure, before, level, after = interventions.strongest_change(
        t, t.kind.iloc[0])
    rows.append({'case': case, 'mode': mode, 'choice': t.choice.iloc[0],
                 'neuron': t.neuron.iloc[0],
                 'purity@10': t['neuron_purity@10'].iloc[0],
                 'measure': measure, 'no edit': before,
                 'strongest level': level, 'there': after,
                 'effect': t.effect.iloc[0],
                 "purity neuron's effect": t.purity_neuron_effect.iloc[0],
                 'flag': t.flag.iloc[0] if 'flag' in t else ''})
  return pd.DataFrame(rows)


#: The level scales in words (docs/method.md#interventions).
_SCALES = {
    'absolute': 'absolute scale: the neuron is set to the level itself',
    'minmax': 'min-max scale: the neuron is set to lo + level x (hi - lo), '
              'lo and hi the smallest and largest activation of that '
              "user's (or item's) own code, so 0 is the code's minimum and 1 "
              'its maximum'}


def _case_text(case: str, t: pd.DataFrame) -> str:
  """A use case's heading: neuron, users, their activation, scale, flags."""
  who = f'{t.n_users.iloc[0]} users'
  if 'n_eligible' in t and t.n_eligible.notna().any():
    who += f', {int(t.n_eligible.iloc[0])} eligible'
  steer = t.kind.iloc[0] != 'promote'
  act = ''
  if steer and 'orig_activation' in t:
    act = (f'; their mean activation of the neuron '
           f'{t.orig_activation.iloc[0]:.3g} (its largest over the SAE-test '
           f'users {t.activation_max.iloc[0]:.3g})')
  scale = _SCALES.get(str(t.scale.iloc[0]), str(t.scale.iloc[0]))
  out = [f'**{case}** (neuron {t.neuron.iloc[0]}, {who}{act}; {scale}):']
  wrong = []
  for mode, g in t.groupby('mode', sort=False):
    if 'wrong_sign' in g and g.wrong_sign.iloc[0]:
      measure, before, level, after = interventions.strongest_change(
          g, g.kind.iloc[0])
      wrong.append(f'{measure} {before:.3g} with no edit -> {after:.3g} at '
                   f'level {level:g} in {mode} mode')
  if wrong:
    out.append('**Wrong direction: ' + '; '.join(wrong) + '. The edit moved '
               'the measure against its goal: do not read this case as a '
               'success.**')
  if 'inactive' in t and t.inactive.iloc[0]:
    out.append(f'**Inactive neuron: these users\' mean activation of neuron '
               f'{t.neuron.iloc[0]} ({t.orig_activation.iloc[0]:.3g}) is at '
               f'most {interventions.INACTIVE_FRACTION:.0%} of its largest '
               'over the SAE-test users: the neuron is (nearly) off for them, '
               'so setting it moves them away from nothing they had.**')
  return '\n\n'.join(out)


def _recommender_dir(view) -> str | None:
  """The recommender workdir the sweep records (``sweep.json``)."""
  return SweepWorkdir(view.workdir).recorded_recommender().get('workdir')


def _config_line(config: int, row: pd.Series, swept: Sequence[str]) -> str:
  """'**Chosen: config 7** (lambda_pred 1, ...): normalised RBO ...'"""
  hp = ', '.join(f'{f} {row[f]:g}' for f in swept)
  orig = (f' (original {row["ndcg@10_original"]:.4f})'
          if 'ndcg@10_original' in row else '')
  return (f'**Chosen: config {config}**{f" ({hp})" if hp else ""}: '
          f'normalised RBO {row.rbo_norm:.3f}, Kendall tau '
          f'{row.kendall_tau:.3f}, NDCG@10 {row["ndcg@10"]:.4f}{orig}, '
          f'{int(row[PURE])} pure concepts, {row.l0_items:.2f} active latents '
          'per item.')


def _choice_section(fid, choice: Choice, swept, n_configs, kind, dataset_name,
                    k) -> report.Section:
  status = config_status(fid)
  diverged = fid.config[status != OK].tolist()
  row = fid.set_index('config').loc[choice.config]
  s = report.Section('Chosen config').text(
      f'{n_configs} configs of an SAE sweep on the frozen {kind} recommender '
      f'of {dataset_name}. Fidelity: top-{k} lists of the SAE-test users '
      'from the original vs the reconstructed embeddings '
      '(docs/method.md#fidelity); pure concepts: concepts with a neuron of '
      'purity@10 = 1.0 (docs/method.md#concepts).')
  ids = ', '.join(map(str, diverged[:20])) + (' ...' if len(diverged) > 20
                                              else '')
  what = ('(a `diverged` config is one whose loss or weights became '
          'non-finite during training; it is frozen at its last finite '
          'state, so its metrics describe a broken SAE)')
  if diverged:
    s.text(f'**{len(diverged)} of {n_configs} configs diverged** ({ids}) '
           f'{what}. They are marked `diverged` in the `status` column of '
           'every table, never chosen by the rule and never on the Pareto '
           'front.')
  else:
    s.text(f'None of the {n_configs} configs diverged {what}: every '
           '`status` is `ok`.')
  line = _config_line(choice.config, row, swept)
  if choice.by_hand:
    try:
      rule_pick = str(choose(fid).config)
    except ConfigError:
      rule_pick = 'none (every config diverged)'
    s.text(f'{line} It was chosen by hand (`chosen={choice.config}`); the '
           f'rule (docs/method.md#choosing-a-config: {choice.rule}) would '
           f'choose {rule_pick}.')
    if status[fid.config.to_numpy() == choice.config][0] != OK:
      s.text(f'**Warning: config {choice.config} diverged in training: '
             'every table and figure of it below describes its last finite '
             'state, a broken SAE.**')
    elif not row.rbo_norm >= choice.median_rbo:
      s.text(f'**Warning: config {choice.config}\'s normalised RBO is below '
             f'the median of the finite configs ({choice.median_rbo:.3f}): '
             'it reproduces the recommender\'s rankings worse than most '
             'configs.**')
  else:
    s.text(f'{line} It is the config the rule picks '
           f'(docs/method.md#choosing-a-config): {choice.rule}. The heat map, '
           'concepts, interventions and hierarchy below describe it.')
  return s


def _pm(mean: float, std: float, digits: int = 3) -> str:
  """'0.712 ± 0.015' (the mean alone where the std is NaN)."""
  if not np.isfinite(mean):
    return ''
  if not np.isfinite(std):
    return f'{mean:.{digits}f}'
  return f'{mean:.{digits}f} ± {std:.{digits}f}'


#: The columns of the report's "over seeds" table: measure -> heading.
_SEED_COLUMNS = {'rbo_norm': 'normalised RBO', 'kendall_tau': 'Kendall tau',
                 'ndcg@10': 'NDCG@10', 'l0_items': 'L0 items',
                 PURE: 'pure concepts', 'mean_purity@10': 'mean purity@10',
                 'mean_ms': 'mean MS'}


def _seed_line(seeds: pd.DataFrame) -> str:
  """The chosen setting's headline figures over its seeds, one sentence."""
  row = seeds[seeds['chosen']].iloc[0]
  figs = ', '.join(f'{name} {_pm(row[f"{m}_mean"], row[f"{m}_std"])}'
                   for m, name in _SEED_COLUMNS.items() if f'{m}_mean' in row)
  div = (f'; {int(row.n_diverged)} diverged and left out' if row.n_diverged
         else '')
  return (f'Over the {int(row.n_seeds)} seeds of the chosen setting (configs '
          f'{row.configs}{div}), mean ± standard deviation: {figs}')


def _seeds_section(seeds: pd.DataFrame, changes: pd.DataFrame | None
                   ) -> report.Section:
  s = report.Section('Seeds and stability')
  fields = stability.setting_fields(seeds)
  match = [c for c in seeds if c.startswith('matched@') and
           c.endswith('_mean')]
  s.text('Each setting (the swept fields but the seed) over its finite '
         'seeds: mean ± standard deviation (ddof 1). Feature stability '
         '(docs/method.md#seeds-and-stability): the neurons of two seeds\' '
         'SAEs matched one to one by decoder cosine (Hungarian assignment); '
         f'`matched`: the fraction of neurons whose match has cosine > '
         f'{stability.MATCH_COSINE:g} (mean over the pairs of seeds), `same '
         'concept`: of those matched pairs (both alive), the fraction with '
         'the same best concept, `match cosine`: the mean cosine of all '
         'matched pairs. The chosen config\'s setting first; every '
         'column in `seeds.csv`.')
  t = pd.concat([seeds[seeds['chosen']], seeds[~seeds['chosen']]])
  out = t[fields + ['n_seeds', 'n_diverged']].copy()
  for m, name in _SEED_COLUMNS.items():
    if f'{m}_mean' in t:
      out[name] = [_pm(a, b) for a, b in zip(t[f'{m}_mean'], t[f'{m}_std'])]
  if match:
    base = match[0][:-len('_mean')]
    out['matched'] = [_pm(a, b) for a, b in zip(t[f'{base}_mean'],
                                                t[f'{base}_std'])]
    out['same concept'] = t['same_concept_mean'].to_numpy()
    out['match cosine'] = t['match_cosine_mean'].to_numpy()
  s.table(out, max_rows=40)
  if changes is not None and len(changes):
    sm = stability.changes_over_seeds(changes)
    s.text('The use cases on each seed of the chosen setting (each seed\'s '
           'own best neuron for the concept): the measure with no edit and '
           'at the strongest level, mean ± standard deviation over the '
           'seeds; `wrong direction`: seeds whose edit moved the measure '
           'against its goal.')
    s.table(pd.DataFrame({
        'case': sm['case'], 'mode': sm['mode'], 'measure': sm['measure'],
        'level': sm['level'], 'seeds': sm['n_seeds'],
        'no edit': [_pm(a, b) for a, b in zip(sm.no_edit_mean,
                                               sm.no_edit_std)],
        'strongest': [_pm(a, b) for a, b in zip(sm.strongest_mean,
                                                 sm.strongest_std)],
        'change': [_pm(a, b) for a, b in zip(sm.change_mean, sm.change_std)],
        'wrong direction': sm['wrong_direction']}))
  return s


def _chance_section(chance: pd.DataFrame, chosen: int) -> report.Section:
  s = report.Section('Observed vs chance')
  s.text(f'Config {chosen}\'s concept scores beside neurons that learned '
         'nothing (docs/method.md#null-baselines): an untrained SAE of the '
         'same architecture; the recommender\'s embedding dimensions, each '
         'read at both ends (centred coordinate, its positive and its '
         'negative part); the same after a random rotation; and the concept '
         'labels shuffled over the items (each concept keeps its size), '
         f'scored on config {chosen}\'s own top-10 lists. p-value: (1 + '
         'permutations scoring at least the observed) / (1 + permutations), '
         'so its smallest possible value is 1 / (1 + permutations). `count`: '
         'the neurons scored (more neurons, more chances of a pure one). Per '
         'concept, the same baselines are columns of `concepts.csv` '
         '(`purity@10_null`, `p_perm@10`, `purity@10_random_sae`, '
         '`purity@10_dims`, `purity@10_rotated`) and, per config, of '
         '`fidelity.csv`.')
  s.table(chance)
  return s


def _report(result: Analysis, ctx: ReportContext) -> str:
  """The text of ``report.md``."""
  view, dataset, choice, acts, figs = (ctx.view, ctx.dataset, ctx.choice,
                                       ctx.acts, ctx.figs)
  fid, neuron_rows, iv, hier, plant = (result.fidelity, result.neurons,
                                       result.interventions, result.hierarchy,
                                       result.planted)
  chance, seeds, seconds = result.chance, result.seeds, result.seconds
  pop_top, k, out = ctx.options.pop_top, ctx.options.k, ctx.folder
  art = view.artifact
  chosen = choice.config
  swept = [f for f in ('lambda_pred', 'dict_size', 'rho', 'k', 'lambda_kl',
                       'lambda_l1', 'lr', 'seed')
           if f in fid and fid[f].nunique() > 1]
  show = ['config', 'status', *swept, 'l0_items', 'rbo_norm', 'kendall_tau',
          'overlap', 'ndcg@10', PURE, 'mean_ms', 'eligible', 'pareto']
  show = [c for c in show if c in fid]
  sections = [_choice_section(fid, choice, swept, view.num_configs,
                              art.kind.upper(), dataset.name, k)]
  if seeds is not None:
    sections[0].text(_seed_line(seeds) + '. The rule picks the best config, '
                     'often the luckiest seed, so its own figures overstate; '
                     'these are the ones to quote '
                     '(docs/method.md#seeds-and-stability).')
  s = report.Section('Sparsity vs fidelity')
  s.figure(figs['fidelity_vs_l0.png'], 'Normalised RBO and Kendall tau '
           'against mean active latents per item, one point per finite '
           'config (diverged ones left out); colour: λ_pred, marker: '
           'dict_size. Ringed in red and labelled "config id (pure '
           'concepts)": the Pareto front over pure concepts and normalised '
           'RBO.')
  orig = [c for c in ('ndcg@10_original', 'hr@10_original') if c in fid]
  if orig:
    s.text('Original recommender on the same users: ' + ', '.join(
        f'{c.replace("_original", "")} {fid[c].iloc[0]:.4f}' for c in orig))
  front = fid[fid.pareto.astype(bool)].sort_values(PURE)
  n_ok = int((config_status(fid) == OK).sum())
  s.text(f'Pareto front (`pareto`): the finite configs for which no other '
         'finite config has at least as many pure concepts and at least the '
         'normalised RBO, with more of one; it shows what each extra pure '
         f'concept costs in fidelity: {len(front)} of {n_ok} finite configs, '
         f'{", ".join(map(str, front.config))}. (Normalised RBO rises with '
         'the active latents almost monotonically, so a front over those two '
         'would hold most configs.) `eligible`: the configs the '
         'choice rule chooses from. The configs in the rule\'s order '
         '(eligible first, then by pure concepts and normalised RBO; '
         'diverged last); every column of every config is in '
         '`fidelity.csv`:')
  s.table(choice_order(fid)[show], max_rows=40)
  sections.append(s)

  ct = ctx.chosen_concepts.copy()
  ct['top items'] = _top_titles(acts, ct.best_neuron.to_numpy(),
                                dataset.item_titles)
  ct = ct.sort_values(['purity@10', 'base_rate'], ascending=[False, True])
  cols = [c for c in ('concept', 'best_neuron', 'purity@10', 'purity@20',
                      'purity@50', 'base_rate', 'lift@10', 'p_value@10',
                      'n_scored@10', 'purity@10_null', 'p_perm@10',
                      'purity@10_random_sae', 'purity@10_dims', 'top items')
          if c in ct]
  s = report.Section(f'Concepts of config {chosen}')
  s.figure(figs['concept_heatmap.png'], 'Purity of concepts (rows) and '
           'neurons (columns, grouped by their best concept: a monosemantic '
           f'dictionary shows a diagonal). Beyond {figures.HEATMAP_NEURONS} '
           'neurons, each concept\'s best neuron, then its second best, ... '
           f'up to {figures.HEATMAP_NEURONS}, and at most '
           f'{figures.HEATMAP_CONCEPTS} concepts (the highest purity); the '
           'title says how many of how many; neuron ids label every n-th '
           'column when they would overlap.')
  s.text('Each concept\'s best neuron (highest purity@10, then smallest '
         'hypergeometric p-value), with its top items; beside it, the '
         'concept\'s best purity@10 under shuffled labels (mean over the '
         'permutations) and the permutation p-value of the observed one, '
         'and its best purity@10 among the neurons of an untrained SAE and '
         'among the embedding dimensions (next section):')
  s.table(ct[cols], max_rows=40)
  sections.append(s)
  if chance is not None:
    sections.append(_chance_section(chance, chosen))
  if seeds is not None:
    sections.append(_seeds_section(seeds, ctx.seed_changes))

  nt = neuron_rows[neuron_rows.config == chosen]
  rank_col = f'mean_pop_rank@{pop_top}'
  s = report.Section('Popularity and era neurons')
  alive = nt[~nt.dead]
  if len(alive) and alive[rank_col].notna().any():
    pop = alive.loc[alive[rank_col].idxmin()]
    s.text(f'Popularity neuron: **{int(pop.neuron)}**, mean popularity rank '
           f'of its top-{pop_top} items {pop[rank_col]:.0f} (a random set '
           f'averages {(len(dataset.item_titles) - 1) / 2:.0f}), Spearman '
           f'with popularity {pop.spearman_popularity:.3f}; titles: '
           + pop[TOP_ITEMS])
  if 'best_era' in nt:
    era = alive.dropna(subset=['best_era']).sort_values(
        'era_lift', ascending=False).groupby('best_era').head(1)
    s.text('Era neurons: for each era, the neuron whose top items '
           'over-represent it most (share of its top items vs base rate):')
    s.table(era[['best_era', 'neuron', 'era_share', 'era_base_rate',
                 'era_lift', 'era_p_value']].sort_values('best_era'))
  sections.append(s)

  if len(iv):
    s = report.Section(f'Interventions on config {chosen}')
    s.figure(figs['interventions.png'], 'Per use case, against the level '
             f'(one numeric axis for both modes): top, the concept share of '
             f'the top-{k} (suppression, nudging) or the promotion success '
             'rate; bottom, the collateral RBO of the rest of the list or the '
             'promoted item\'s mean rank. Dotted black: the raw ranking '
             '(unedited embeddings; delta mode\'s no-edit is exactly this); '
             'dashed: replace mode\'s no-edit, the reconstruction.')
    s.text('"replace" decodes the edited code (as the paper); "delta" adds '
           'only the edit to the raw embedding (docs/method.md#interventions).'
           ' Levels are on the case\'s scale: absolute (the neuron is set to '
           'the level itself) or min-max (set to lo + level x (hi - lo), lo '
           'and hi the extremes of each user\'s or item\'s own code). '
           '`activation`: the neuron\'s mean over the edited users (or the '
           'promoted item\'s value) at that level; on the raw and no-edit '
           'rows, before any edit. "no edit": the reconstruction in replace '
           'mode, the raw vector in delta mode. A case is flagged **wrong '
           'direction** when its strongest level (the lowest of a '
           'suppression, the highest of a nudge or promotion) moves its '
           'measure against the goal relative to no edit, and **inactive '
           'neuron** when the edited users\' mean activation is at most '
           f'{interventions.INACTIVE_FRACTION:.0%} of the neuron\'s largest '
           'over the SAE-test users.')
    if 'choice' in iv and (iv['choice'] == 'effect').any():
      s.text('**Neuron choice, side by side** (docs/method.md#interventions):'
             ' "purity" is the concept\'s best neuron by item purity (the '
             'paper); "effect" the neuron whose edit to the case\'s strongest '
             'level moves its measure furthest towards the goal through the '
             'frozen scorer, chosen per mode on the same users it is measured '
             'on. `effect`: that change; `purity neuron\'s effect`: the '
             'change the purity choice makes in the same ranking.')
      s.table(_choice_table(iv))
    for case, t in iv.groupby('case', sort=False):  # a few use cases
      s.text(_case_text(case, t))
      s.table(_pivot_levels(t))
    sections.append(s)

  s = report.Section(f'Matryoshka hierarchy of config {chosen}')
  if 'hierarchy.png' in figs:
    s.figure(figs['hierarchy.png'], 'Per prefix group of latents (each '
             'bar labelled with its latents, e.g. 0–7): alive latents, and '
             'the popularity and concept breadth of their top items.')
  else:
    s.text('This config has no Matryoshka prefixes: one group.')
  s.table(hier)
  sections.append(s)

  if plant is not None:
    s = report.Section('Planted concepts (synthetic world)')
    s.text('For each planted concept, the neuron that recovers it best: '
           'recall = share of its items among the neuron\'s top-n_c items; '
           f'mean recall {plant.recall.mean():.3f}, mean purity@10 '
           f'{plant["purity@10"].mean():.3f}.')
    s.table(plant)
    sections.append(s)
  rec = _recommender_dir(view)
  rec = f'`{os.path.relpath(rec, out)}`' if rec else 'its recommender'
  preamble = (f'Sweep folder `{os.path.relpath(view.workdir, out)}`, '
              f'explaining recommender {rec} ({art.kind.upper()} on '
              f'{dataset.name}, sha256 {str(art.fingerprint)[:12]}); '
              f'analysis {seconds:.1f}s. Paths are relative to this file; '
              'the CSVs and figures are beside it.')
  if getattr(view, 'encoder', None) is not None:
    preamble += (f' **Every config is coded by pursuit on its own trained '
                 f'decoder ({view.encoder}), not by its trained encoder** '
                 '(docs/method.md#pursuit-encoders).')
  return report.render(f'Analysis: {art.kind.upper()} on {dataset.name}, '
                       f'sweep {_sweep_name(view.workdir)}', sections,
                       preamble)


def _sweep_name(workdir: str) -> str:
  """The sweep folder's name, with its parent's when the name alone says
  little (the main job's ``MODEL/sweep``)."""
  head, name = os.path.split(os.path.normpath(workdir))
  return f'{os.path.basename(head)}/{name}' if name == 'sweep' else name
