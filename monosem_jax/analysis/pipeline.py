"""The whole analysis of one sweep: tables, figures and ``report.md``.

:func:`analyze_sweep` reads a sweep only through
:func:`~monosem_jax.analysis.workdirs.open_sweep` and writes into its folder:

* ``fidelity.csv``: one row per config: ranking fidelity (RBO, tau,
  overlap), NDCG/HR of the reconstructed model, L0 on items and users, the
  number of concepts with a purity@10 = 1.0 neuron, mean MS score, and
  whether the config is on the Pareto front over (L0, normalised RBO, pure
  concepts);
* ``neurons.csv``: one row per (config, neuron) (``neurons.neuron_table``);
* ``concepts.csv``: one row per (config, concept), its best neuron;
* ``interventions.csv``: the use cases on the chosen config, both modes;
* ``hierarchy.csv``: the Matryoshka prefix groups of the chosen config;
* ``planted.csv`` (synthetic world only): recovery of the planted concepts;
* ``fidelity_vs_l0.png``, ``concept_heatmap.png``, ``interventions.png``,
  ``hierarchy.png`` and ``report.md``, which embeds them.

Example::

  view = workdirs.open_sweep('runs/ml1m_mf_sweep')
  dataset = workdirs.open_dataset(view.artifact)
  result = analyze_sweep(view, dataset, use_cases=[...])
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
from monosem_jax.analysis import (concepts, figures, hierarchy,
                                  neuron_stats, neurons, planted, report,
                                  use_cases, workdirs)
from monosem_jax.sae import model
from monosem_jax.sweep import memory
from monosem_jax.sweep.runner import RESULTS_CSV
from monosem_jax.sweep.spec import SweepSpec

REPORT_MD = 'report.md'
PURE = 'pure_concepts@10'


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


def _exact_matmuls(fn):
  """Runs ``fn`` with float32 matmuls (GPUs otherwise use TF32 for them;
  the setting is per thread, so worker threads need it too)."""

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with jax.default_matmul_precision('highest'):
      return fn(*args, **kwargs)

  return wrapped


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


def config_activations(view: workdirs.SweepView, x: np.ndarray,
                       idx: Sequence[int]) -> np.ndarray:
  """Codes of raw embeddings ``x`` ``(N, d)`` under configs ``idx``, in one
  vmapped program: ``(len(idx), N, max_dict_size)``."""
  return np.asarray(_config_codes(view, x, idx))


def choose_config(fidelity: pd.DataFrame) -> int:
  """The config with the most pure concepts, ties to the higher RBO; never a
  diverged one unless all are."""
  ok = fidelity
  if 'finite' in ok:
    ok = ok[ok['finite'].astype(bool)]
  if 'status' in ok:
    ok = ok[ok['status'] == 'ok']
  if ok.empty:
    ok = fidelity
  best = ok.sort_values([PURE, 'rbo_norm', 'config'],
                        ascending=[False, False, True]).iloc[0]
  return int(best['config'])


def _top_titles(acts: np.ndarray, neurons_: np.ndarray, titles: np.ndarray,
                n: int = 5) -> list[str]:
  idx, fires = neurons.top_items(acts, n)
  return ['; '.join(str(titles[i]) for i, f in zip(idx[m], fires[m]) if f)
          for m in neurons_]


#: Device memory of one block of the neuron tables where the device reports
#: no limit (a CPU).
TABLES_BYTES = 2 ** 30


def _neuron_tables(view, dataset, item_concepts, names, cfg, log,
                   threads: int | None = None,
                   max_bytes: float | None = None):
  """Per-config neuron and concept tables, and the per-config summary.

  One device program per block of configs
  (:class:`~monosem_jax.analysis.neuron_stats.BlockTables`: the tables of
  ``neurons.neuron_table`` and ``neurons.concept_table``, config by config).
  A block holds as many configs as fit ``max_bytes`` (default: a quarter of
  the device's memory limit, or :data:`TABLES_BYTES` where the device
  reports none); the last block is padded to the same shape, so that one
  compiled program serves them all. ``threads`` is accepted and has no
  effect (the host threads of the per-config tables are gone).
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
  every = max(1, c // 10)
  for start in range(0, c, block):  # blocks of configs, each one program
    idx = np.arange(start, min(c, start + block))
    pad = np.concatenate([idx, np.full(block - len(idx), idx[-1])])
    nt, ct, row = tables(_config_codes(view, art.item_emb, pad),
                         _config_codes(view, users, pad), dict_size[pad], idx)
    n_tab.append(nt)
    c_tab.append(ct)
    per_config.append(row)
    done = int(idx[-1]) + 1
    if done // every > start // every or done == c:
      el = time.perf_counter() - t0
      log(f'  neurons: {done}/{c} configs  {el:.1f}s  '
          f'ETA {el / done * (c - done):.0f}s')
  return (pd.concat(n_tab, ignore_index=True),
          pd.concat(c_tab, ignore_index=True),
          pd.concat(per_config, ignore_index=True))


@_exact_matmuls
def analyze_sweep(view: workdirs.SweepView, dataset, *,
                  use_cases_: Sequence[use_cases.UseCase] = (),
                  concept_sets: Mapping[str, Sequence[str]] | None = None,
                  k: int = 30, p: float = 0.9, ks: Sequence[int] = (10, 20, 50),
                  max_users: int | None = None, chosen: int = -1,
                  modes: Sequence[str] = ('replace', 'delta'),
                  pop_top: int = 500, era_top: int = 200,
                  hierarchy_top: int = 50, out: str | None = None,
                  threads: int | None = None,
                  log: Callable[[str], None] = print) -> Analysis:
  """Analyses every config of a sweep and writes the report (module doc).

  Args:
    view, dataset: from ``workdirs.open_sweep`` / ``open_dataset``.
    use_cases_: the intervention use cases (run on the chosen config).
    concept_sets: ``{name: tags}`` scored as extra concepts.
    k, p: fidelity list length, RBO persistence; ks: purity K values (the
      first must be 10 for the pure-concept count).
    max_users: fidelity on the first N SAE-test users only.
    chosen: config for the heat map, interventions and hierarchy (-1: auto,
      :func:`choose_config`).
    out: output folder (default: the sweep folder).
    threads: accepted for compatibility and ignored (the neuron tables are
      one device program per block of configs).
  """
  t_start = time.perf_counter()
  out = out or view.workdir
  ks = tuple(ks)
  # Every setting is checked before the expensive stages.
  if not ks or ks[0] != 10 or min(ks) < 1:
    raise ConfigError(f'ks={ks}: positive list lengths, the first one 10 '
                      '(the pure-concept count is at purity@10)')
  if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
    raise ConfigError(f'threads={threads}: at least 1 (None: one per CPU '
                      'core)')
  if not -1 <= int(chosen) < view.num_configs:
    raise ConfigError(f'chosen={chosen}: the sweep has {view.num_configs} '
                      'configs (0..{}; -1 picks one)'.format(
                          view.num_configs - 1))
  resolved = use_cases.resolve(list(use_cases_), dataset, view.artifact.split,
                               modes)
  cfg = dict(ks=ks, pop_top=pop_top, era_top=era_top)
  item_concepts, names = dataset.item_concepts, dataset.concept_names
  if concept_sets:
    item_concepts, names = concepts.concept_sets(item_concepts, names,
                                                 concept_sets)
  art = view.artifact
  log(f'analysis of {view.num_configs} configs ({art.kind} on '
      f'{dataset.name}, {len(art.split.sae_test_users)} SAE-test users)')

  t = time.perf_counter()
  fid = workdirs.sweep_fidelity(view, k=k, p=p, max_users=max_users)
  results = os.path.join(view.workdir, RESULTS_CSV)
  if os.path.exists(results):
    extra = pd.read_csv(results)
    keep = [c for c in ('config', 'l0_items', 'fve', 'score_mse', 'status')
            if c in extra]
    fid = fid.merge(extra[keep], on='config', how='left')
  log(f'  fidelity: {time.perf_counter() - t:.1f}s')

  t = time.perf_counter()
  neuron_rows, concept_rows, per_config = _neuron_tables(
      view, dataset, item_concepts, names, cfg, log, threads)
  fid = fid.merge(per_config, on='config')
  if 'l0_items' not in fid:
    fid['l0_items'] = fid['l0_items_codes']
  fid['finite'] = np.asarray(view.state.finite)[fid['config'].to_numpy()]
  fid['pareto'] = figures.pareto_front(
      fid.where(fid['finite']), minimize=('l0_items',),
      maximize=('rbo_norm', PURE))   # diverged configs are never on it
  log(f'  neurons and concepts: {time.perf_counter() - t:.1f}s')

  chosen = choose_config(fid) if chosen < 0 else int(chosen)
  params, hp = view.config(chosen)
  m = int(hp['dict_size'])
  acts = config_activations(view, art.item_emb, [chosen])[0][:, :m]
  chosen_concepts = concept_rows[concept_rows.config == chosen].drop(
      columns='config').reset_index(drop=True)

  t = time.perf_counter()
  if use_cases_:
    iv = use_cases.run_use_cases(view, chosen, dataset, use_cases_, k=k, p=p,
                                 modes=modes, concept_table=chosen_concepts,
                                 resolved=resolved)
  else:
    iv = pd.DataFrame(columns=['case', 'kind', 'concept', 'neuron', 'mode',
                               'level'])
  log(f'  interventions ({len(use_cases_)} use cases on config {chosen}): '
      f'{time.perf_counter() - t:.1f}s')
  sae_cfg = model.SAEConfig(**hp['sae_config'])
  hier = hierarchy.hierarchy_table(
      acts, sae_cfg.prefix_sizes or (m,), dataset.item_popularity,
      item_concepts, top=hierarchy_top, item_emb=art.item_emb)
  truth = dataset.extras.get('concept_truth') if dataset.extras else None
  plant = None
  if truth is not None:
    plant = planted.planted_recovery(acts, truth, dataset.concept_names, ks)

  tables = {'fidelity.csv': fid, 'neurons.csv': neuron_rows,
            'concepts.csv': concept_rows, 'interventions.csv': iv,
            'hierarchy.csv': hier}
  if plant is not None:
    tables['planted.csv'] = plant
  for name, table in tables.items():
    files.atomic_write(os.path.join(out, name),
                       lambda f, table=table: table.to_csv(f, index=False))
  figs = _figures(out, fid, acts, item_concepts, names, iv, hier, chosen, ks)
  seconds = time.perf_counter() - t_start
  path = os.path.join(out, REPORT_MD)
  text = _report(view, dataset, fid, neuron_rows, chosen_concepts, acts,
                 names, iv, hier, plant, chosen, figs, seconds, pop_top, k)
  files.atomic_write_text(path, text)
  log(f'wrote {path} and {len(tables)} CSVs in {seconds:.1f}s')
  return Analysis(fid, neuron_rows, concept_rows, iv, hier, plant, chosen,
                  path, seconds)


def _figures(out, fid, acts, item_concepts, names, iv, hier, chosen, ks):
  made = {}

  def save(name, draw):
    path = os.path.join(out, name)
    files.atomic_write(path, lambda f: f.write(figures.to_png(draw())),
                       binary=True)
    made[name] = name

  save('fidelity_vs_l0.png', lambda: figures.plot_fidelity_vs_l0(fid))
  purity = neurons.concept_scores(acts, item_concepts, ks[:1])['purity'][0]
  shown = np.argsort(-purity.max(0), kind='stable')[:40]  # legible: <= 40
  cols = np.sort(np.argsort(-purity.max(1), kind='stable')[:120])  # <= 120
  save('concept_heatmap.png', lambda: figures.plot_concept_heatmap(
      purity[np.ix_(cols, shown)], [names[i] for i in shown], ks[0],
      f'config {chosen}: purity@{ks[0]} (top {len(shown)} concepts, '
      f'{len(cols)} of {purity.shape[0]} neurons)', neuron_ids=cols))
  if len(iv):
    save('interventions.png', lambda: figures.plot_interventions(iv))
  if len(hier) > 1:
    cols = [c for c in hier if c.startswith(('n_alive', 'mean_pop_rank',
                                             'concept_entropy', 'mean_cos'))]
    save('hierarchy.png', lambda: figures.plot_hierarchy(hier, columns=cols))
  return made


def _pivot_levels(t: pd.DataFrame) -> pd.DataFrame:
  """One row per level, one column per (measure, mode)."""
  t = t.replace({'level': {'reconstruction': 'no edit', 'unedited': 'no edit'}})
  measures = [c for c in ('concept_share', 'collateral_rbo', 'success_rate',
                          'mean_rank') if c in t and t[c].notna().any()]
  wide = t.pivot_table(index='level', columns='mode', values=measures,
                       sort=False, aggfunc='first')
  wide.columns = [f'{m} ({mode})' for m, mode in wide.columns]
  return wide.reset_index()


def _report(view, dataset, fid, neuron_rows, chosen_concepts, acts, names,
            iv, hier, plant, chosen, figs, seconds, pop_top, k):
  art = view.artifact
  swept = [f for f in ('lambda_pred', 'dict_size', 'rho', 'k', 'lambda_kl',
                       'lambda_l1', 'lr', 'seed')
           if f in fid and fid[f].nunique() > 1]
  show = ['config', *swept, 'l0_items', 'rbo_norm', 'kendall_tau', 'overlap',
          'ndcg@10', PURE, 'mean_ms', 'pareto']
  show = [c for c in show if c in fid]
  sections = []
  best = fid.sort_values([PURE, 'rbo_norm'], ascending=False)
  s = report.Section('Best configs').text(
      f'{view.num_configs} configs of an SAE sweep on the frozen {art.kind} '
      f'recommender of {dataset.name}. Fidelity: top-{k} lists of the '
      'SAE-test users from the original vs the reconstructed embeddings '
      '(docs/method.md#fidelity); pure concepts: concepts with a neuron of '
      'purity@10 = 1.0 (docs/method.md#concepts). The chosen config '
      f'(below) is **{chosen}**.')
  s.table(best[show].head(8))
  front = fid[fid.pareto].sort_values('l0_items')
  s.text(f'Pareto front over (L0 low, normalised RBO high, pure concepts '
         f'high): {len(front)} configs.')
  s.table(front[show], max_rows=20)
  sections.append(s)
  s = report.Section('Sparsity vs fidelity')
  s.figure(figs['fidelity_vs_l0.png'], 'Normalised RBO and Kendall tau '
           'against mean active latents per item; Pareto front in red.')
  orig = [c for c in ('ndcg@10_original', 'hr@10_original') if c in fid]
  if orig:
    s.text('Original recommender on the same users: ' + ', '.join(
        f'{c.replace("_original", "")} {fid[c].iloc[0]:.4f}' for c in orig))
  s.table(fid[show], max_rows=40)
  sections.append(s)

  ct = chosen_concepts.copy()
  ct['top items'] = _top_titles(acts, ct.best_neuron.to_numpy(),
                                dataset.item_titles)
  ct = ct.sort_values(['purity@10', 'base_rate'], ascending=[False, True])
  cols = [c for c in ('concept', 'best_neuron', 'purity@10', 'purity@20',
                      'purity@50', 'base_rate', 'lift@10', 'p_value@10',
                      'n_scored@10', 'top items') if c in ct]
  s = report.Section(f'Concepts of config {chosen}')
  s.figure(figs['concept_heatmap.png'], 'purity@10 of every concept (rows) '
           'and neuron (columns, ordered by best concept).')
  s.text('Each concept\'s best neuron (highest purity@10, then smallest '
         'hypergeometric p-value), with its top items:')
  s.table(ct[cols], max_rows=40)
  sections.append(s)

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
           + _top_titles(acts, np.array([int(pop.neuron)]),
                         dataset.item_titles)[0])
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
    s.figure(figs['interventions.png'], f'Concept share of the top-{k} '
             '(suppression, nudging) or promotion success rate against the '
             'level; dashed: collateral RBO of the rest of the list. '
             '"replace" decodes the edited code (as the paper); "delta" adds '
             'the edit to the raw embedding (docs/method.md#interventions).')
    for case, t in iv.groupby('case', sort=False):  # a few use cases
      who = f'{t.n_users.iloc[0]} users'
      if 'n_eligible' in t and t.n_eligible.notna().any():
        who += f', {int(t.n_eligible.iloc[0])} eligible'
      s.text(f'**{case}** (neuron {t.neuron.iloc[0]}, {who}; "no edit": the '
             'reconstruction in replace mode, the raw vector in delta '
             'mode):')
      s.table(_pivot_levels(t))
    sections.append(s)

  s = report.Section(f'Matryoshka hierarchy of config {chosen}')
  if 'hierarchy.png' in figs:
    s.figure(figs['hierarchy.png'], 'Per prefix group of latents: '
             'popularity and concept breadth of their top items.')
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
  preamble = (f'Sweep `{view.workdir}`; recommender `{art.kind}` on '
              f'`{dataset.name}` (sha256 {str(art.fingerprint)[:12]}); '
              f'analysis {seconds:.1f}s. CSVs beside this file.')
  return report.render(f'Analysis: {os.path.basename(view.workdir)}',
                       sections, preamble)
