"""The whole analysis of one sweep: tables, figures and ``report.md``.

:func:`analyze_sweep` reads a sweep only through
:func:`~monosem_jax.analysis.workdirs.open_sweep` and writes one consistent
set of outputs into the ``analysis/`` folder of the sweep folder (see
"Outputs" below):

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

Outputs: the whole set is written into a temporary sibling folder and
swapped in at the end (:func:`monosem_jax.files.atomic_directory`), so a
reader sees the previous analysis or the new one, never a mix: a run killed
mid-write (SIGKILL) or failing (a full disk) leaves the previous set as it
was, and the next run removes what the killed one left
(:func:`monosem_jax.files.remove_orphans`). Run it under the sweep folder's
:class:`~monosem_jax.files.WorkdirLock` (the launchers do). The view's notes
(:attr:`~monosem_jax.analysis.workdirs.SweepView.notes`: an unfinished
sweep, inputs that could not be verified) are logged once and written in
bold at the top of ``report.md``; an unfinished sweep's CSVs also carry its
``epoch`` and ``of_epochs`` in every row.

Example::

  view = workdirs.open_sweep('runs/ml1m_mf_sweep')
  dataset = workdirs.open_dataset(view.artifact)
  result = analyze_sweep(view, dataset, use_cases=[...])
  result.fidelity.sort_values('rbo_norm').tail()
"""

from __future__ import annotations

import concurrent.futures
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
from monosem_jax.analysis import (concepts, figures, hierarchy, neurons,
                                  planted, report, use_cases, workdirs)
from monosem_jax.sae import model
from monosem_jax.sweep.runner import RESULTS_CSV
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


def config_activations(view: workdirs.SweepView, x: np.ndarray,
                       idx: Sequence[int]) -> np.ndarray:
  """Codes of raw embeddings ``x`` ``(N, d)`` under configs ``idx``, in one
  vmapped program: ``(len(idx), N, max_dict_size)``."""
  idx = np.asarray(idx)
  sae = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)[idx]),
                     view.state.sae)
  return np.asarray(_encode_configs(view.spec, sae, view.hparams.take(idx),
                                    jnp.asarray(x, jnp.float32)))


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


@_exact_matmuls
def _config_tables(i, a, ua, dataset, art, item_concepts, names, cfg):
  """Config ``i``'s neuron table, concept table and summary row (its item
  and user codes ``a``, ``ua`` cut to its own latents)."""
  scores = neurons.concept_scores(a, item_concepts, cfg['ks'])  # once
  nt = neurons.neuron_table(
      a, item_concepts, names, art.item_emb, dataset.item_popularity,
      cfg['ks'], cfg['pop_top'], item_decade=dataset.item_decade,
      era_top=cfg['era_top'], user_acts=ua, scores=scores)
  ct = neurons.concept_table(a, item_concepts, names, cfg['ks'], scores=scores)
  nt.insert(0, 'config', i)
  ct.insert(0, 'config', i)
  row = {'config': i, 'l0_items_codes': neurons.l0(a), 'l0_users': neurons.l0(ua),
         PURE: len(neurons.pure_concepts(ct, 10)),
         'dead_neurons': int(nt.dead.sum()), 'mean_ms': float(nt.ms.mean())}
  return nt, ct, row


def _neuron_tables(view, dataset, item_concepts, names, cfg, log,
                   threads: int | None = None):
  """Per-config neuron and concept tables, vectorised within a config.

  The configs' tables are independent: ``threads`` worker threads (default:
  one per CPU core) build them side by side (numpy and scipy release the
  GIL), and the tables are gathered in config order, so the result does not
  depend on the thread count.
  """
  art = view.artifact
  c = view.num_configs
  users = np.asarray(art.user_emb)[np.asarray(art.split.sae_test_users)]
  n_tab, c_tab, per_config = [], [], []
  t0 = time.perf_counter()
  chunk = max(1, int(2e8 // (4 * art.item_emb.shape[0] *
                             view.spec.max_dict_size)))
  every = max(1, c // 10)
  threads = threads or os.cpu_count() or 1
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    for start in range(0, c, chunk):
      idx = np.arange(start, min(c, start + chunk))
      item_acts = config_activations(view, art.item_emb, idx)
      user_acts = config_activations(view, users, idx)
      jobs = []
      for j, i in enumerate(idx):  # configs; each table is vectorised
        m = int(view.hparams.config(int(i))['dict_size'])
        jobs.append(pool.submit(_config_tables, int(i),
                                item_acts[j][:, :m], user_acts[j][:, :m],
                                dataset, art, item_concepts, names, cfg))
      for i, job in zip(idx, jobs):
        nt, ct, row = job.result()
        n_tab.append(nt)
        c_tab.append(ct)
        per_config.append(row)
        done = int(i) + 1
        if done % every == 0 or done == c:
          el = time.perf_counter() - t0
          log(f'  neurons: {done}/{c} configs  {el:.1f}s  '
              f'ETA {el / done * (c - done):.0f}s')
  return (pd.concat(n_tab, ignore_index=True),
          pd.concat(c_tab, ignore_index=True), pd.DataFrame(per_config))


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
    out: the folder that receives the ``analysis/`` folder (default: the
      sweep folder).
    threads: worker threads for the per-config neuron tables (default: one
      per CPU core; the tables do not depend on it).
  """
  t_start = time.perf_counter()
  out = os.path.abspath(out or view.workdir)
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
  notes = list(view.notes)

  t = time.perf_counter()
  fid = workdirs.sweep_fidelity(view, k=k, p=p, max_users=max_users)
  extra, note = _sweep_results(view)
  if note:
    notes.append(note)
  if extra is not None:
    keep = [c for c in ('config', 'l0_items', 'fve', 'score_mse', 'status')
            if c in extra]
    fid = fid.merge(extra[keep], on='config', how='left')
  for note in notes:
    log(f'  note: {note}')
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
    text = _report(view, dataset, fid, neuron_rows, chosen_concepts, acts,
                   names, iv, hier, plant, chosen, figs, seconds, pop_top, k)
    _write_text(os.path.join(stage, REPORT_MD), _with_notes(text, notes))
  if out == view.workdir:
    _remove_old_layout(out, log)
  path = os.path.join(folder, REPORT_MD)
  log(f'wrote {path} and {len(tables)} CSVs in {seconds:.1f}s')
  return Analysis(fid, neuron_rows, concept_rows, iv, hier, plant, chosen,
                  path, seconds, tuple(notes))


def _write_csv(path: str, table: pd.DataFrame) -> None:
  table.to_csv(path, index=False)


def _write_text(path: str, text: str) -> None:
  with open(path, 'w') as f:
    f.write(text)


def _sweep_results(view: workdirs.SweepView):
  """``sweep_results.csv`` when it is of the epoch analysed, else None and
  a note (e.g. a finished sweep resumed to more epochs, then stopped)."""
  path = os.path.join(view.workdir, RESULTS_CSV)
  if not os.path.exists(path):
    return None, None
  extra = pd.read_csv(path)
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
