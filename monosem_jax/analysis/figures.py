"""Figures of the analysis report (PNG, matplotlib, no display needed).

Figures are built with matplotlib's object API (``Figure``, no pyplot), so
importing this module never changes the backend of a notebook or a script;
:func:`to_png` gives the PNG bytes (``IPython.display.Image(to_png(fig))``).

* :func:`pareto_front` / :func:`plot_fidelity_vs_l0`: the sparsity-fidelity
  trade-off across finite configs, the Pareto front marked.
* :func:`plot_concept_heatmap`: purity@K of every (concept, neuron) of one
  config.
* :func:`plot_interventions`: each use case's measures against one numeric
  level axis, one line per mode, the raw and no-edit rankings as reference
  lines.
* :func:`plot_hierarchy`: per Matryoshka prefix group, popularity and concept
  breadth of the latents' top items.

Example:
  >>> import pandas as pd
  >>> t = pd.DataFrame({'l0': [2., 4., 3., 8.], 'rbo': [.2, .6, .1, .9]})
  >>> pareto_front(t, minimize=('l0',), maximize=('rbo',)).tolist()
  [True, True, False, True]
"""

from __future__ import annotations

from typing import Sequence

import io

from matplotlib.figure import Figure
import numpy as np
import pandas as pd

from monosem_jax.analysis import interventions


def pareto_front(table: pd.DataFrame, minimize: Sequence[str] = (),
                 maximize: Sequence[str] = ()) -> np.ndarray:
  """``(rows,)`` bool: rows no other row dominates (at least as good in
  every column and better in one). Rows with a NaN are never on the front.
  """
  cols = [np.asarray(table[c], np.float64) for c in minimize] + [
      -np.asarray(table[c], np.float64) for c in maximize]
  if not cols:
    raise ValueError('pareto_front: give at least one column')
  v = np.stack(cols, 1)                                         # (R, m)
  ok = ~np.isnan(v).any(1)
  le = (v[:, None, :] <= v[None, :, :]).all(-1)    # [j, i]: j <= i everywhere
  lt = (v[:, None, :] < v[None, :, :]).any(-1)
  dominated = (le & lt & ok[:, None]).any(0)
  return ok & ~dominated


def _figure(nrows: int = 1, ncols: int = 1, figsize=(6, 4), **kw):
  fig = Figure(figsize=figsize, constrained_layout=True)
  return fig, fig.subplots(nrows, ncols, **kw)


def _save(fig, path):
  if path:
    fig.savefig(path, dpi=110)
  return fig


def to_png(fig: Figure, dpi: int = 110) -> bytes:
  """The figure as PNG bytes."""
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=dpi)
  return buf.getvalue()


def plot_fidelity_vs_l0(table: pd.DataFrame, x: str = 'l0_items',
                        ys: Sequence[str] = ('rbo_norm', 'kendall_tau'),
                        hue: str = 'lambda_pred', path: str | None = None,
                        front_by: str = 'pure_concepts@10'):
  """One panel per fidelity measure against ``x`` (mean active latents),
  points coloured by ``hue``. Only finite configs are drawn (``status``
  'ok'; a table without it counts every row as finite). The Pareto front,
  the table's ``pareto`` column (computed here over high ``front_by`` and
  high ``ys[0]`` when absent), is ringed in red and labelled with each
  config's ``front_by``.
  """
  ys = [y for y in ys if y in table]
  ok = (table['status'].astype(str) == 'ok').to_numpy() if (
      'status' in table) else np.ones(len(table), bool)
  t = table[ok].dropna(subset=[x, *ys])
  if 'pareto' in t:
    front = t[t['pareto'].astype(bool)]
  elif front_by in t:
    front = t[pareto_front(t, maximize=(front_by, ys[0]))]
  else:
    front = t.iloc[:0]
  fig, axes = _figure(1, len(ys), figsize=(5.2 * len(ys), 4.4),
                      squeeze=False)
  for ax, y in zip(axes[0], ys):
    c = t[hue] if hue in t else None
    sc = ax.scatter(t[x], t[y], c=c, cmap='viridis', s=28, alpha=0.85)
    ring = ax.scatter(front[x], front[y], s=110, facecolors='none',
                      edgecolors='crimson', linewidths=1.3)
    if front_by in front:
      for _, r in front.iterrows():  # a handful of configs
        ax.annotate(f'{r[front_by]:g}', (r[x], r[y]), xytext=(5, -11),
                    textcoords='offset points', fontsize=7, color='crimson')
    ax.set_xlabel(f'{x} (mean active latents)')
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    if c is not None:
      fig.colorbar(sc, ax=ax, label=hue)
  fig.legend([ring], [f'Pareto front (high {front_by}, high {ys[0]}), '
                      f'labelled with {front_by}'],
             loc='outside lower center', fontsize=8, frameon=False)
  skipped = len(table) - int(ok.sum())
  fig.suptitle('Sparsity vs ranking fidelity across configs' + (
      f' ({skipped} diverged configs not drawn)' if skipped else ''))
  return _save(fig, path)


def plot_concept_heatmap(purity: np.ndarray, concept_names: Sequence[str],
                         k: int = 10, title: str = '',
                         path: str | None = None,
                         neuron_ids: Sequence[int] | None = None):
  """Heat map of ``purity`` ``(M, T)``: concepts down, neurons across,
  neurons ordered by their best concept (so a monosemantic dictionary shows
  a diagonal). ``neuron_ids`` labels the columns (default ``0..M-1``)."""
  purity = np.asarray(purity, np.float64)
  ids = np.arange(purity.shape[0]) if neuron_ids is None else np.asarray(
      neuron_ids)
  order = np.lexsort((-purity.max(1), purity.argmax(1)))
  shown = purity[order].T                                       # (T, M)
  t, m = shown.shape
  fig, ax = _figure(figsize=(max(6, 0.22 * m + 2), max(4, 0.24 * t + 1.5)))
  im = ax.imshow(shown, aspect='auto', cmap='magma', vmin=0, vmax=1,
                 interpolation='nearest')
  ax.set_yticks(range(t), [str(n) for n in concept_names], fontsize=7)
  ax.set_xticks(range(m), [str(i) for i in ids[order]], fontsize=6,
                rotation=90)
  ax.set_xlabel('neuron')
  fig.colorbar(im, ax=ax, label=f'purity@{k}')
  ax.set_title(title or f'purity@{k} of every concept and neuron')
  return _save(fig, path)


#: Per kind: the measure of the top panel and of the bottom one.
_MEASURES = {'suppress': ('concept_share', 'collateral_rbo'),
             'nudge': ('concept_share', 'collateral_rbo'),
             'promote': ('success_rate', 'mean_rank')}
_AXIS_LABEL = {'concept_share': 'concept share of the top list',
               'collateral_rbo': 'collateral RBO (rest of the list)',
               'success_rate': 'promotion success rate',
               'mean_rank': 'mean rank of the target (lower: better)'}
_SCALE_LABEL = {'absolute': 'level (the activation set)',
                'minmax': 'level (position on the code\'s min-max range)'}
_MODE_COLORS = ('tab:blue', 'tab:orange', 'tab:green')


def _case_title(t: pd.DataFrame) -> tuple[str, bool]:
  """A case's panel title (neuron, users, their mean activation, flags) and
  whether it is flagged."""
  head = f'{t["case"].iloc[0]}\nneuron {t["neuron"].iloc[0]}, ' \
         f'{t["n_users"].iloc[0]} users'
  if t['kind'].iloc[0] != 'promote' and 'orig_activation' in t:
    head += f', their mean activation {t["orig_activation"].iloc[0]:.3g}'
  flags = []
  if 'wrong_sign' in t:
    wrong = [m for m, g in t.groupby('mode', sort=False)
             if g['wrong_sign'].astype(bool).iloc[0]]
    if wrong:
      flags.append(f'WRONG DIRECTION ({", ".join(wrong)})')
  if 'inactive' in t and t['inactive'].astype(bool).iloc[0]:
    flags.append('INACTIVE NEURON')
  if flags:
    head += '\n' + ', '.join(flags)
  return head, bool(flags)


def plot_interventions(table: pd.DataFrame, path: str | None = None):
  """Each use case against one numeric level axis shared by the modes.

  One column per use case; top panel: its measure (concept share, or
  promotion success rate), bottom panel: the collateral RBO of the rest of
  the list (steering) or the target's mean rank (promotion). Solid lines:
  each mode's edited levels; dotted black: the raw ranking (unedited
  embeddings, which delta mode's no-edit equals); dashed, in the mode's
  colour: a mode's no-edit ranking where it differs from raw (replace mode's
  reconstruction). The legend sits below the panels; a flagged case
  (``flag``: wrong direction, inactive neuron) says so in red in its title.
  """
  cases = list(dict.fromkeys(table['case']))
  fig, axes = _figure(2, len(cases), figsize=(4.8 * len(cases), 6.8),
                      squeeze=False, sharex='col')
  colors = dict(zip(dict.fromkeys(table['mode']), _MODE_COLORS))
  handles = {}
  for col, case in enumerate(cases):
    t = table[table['case'] == case]
    for row, measure in enumerate(_MEASURES[t['kind'].iloc[0]]):
      ax = axes[row, col]
      raw_value = np.nan
      for mode, g in t.groupby('mode', sort=False):
        levels = interventions.numeric_levels(g['level'])
        values = g[measure].to_numpy(np.float64)
        label = g['level'].astype(str).to_numpy()
        edited = ~np.isnan(levels)
        order = np.argsort(levels[edited], kind='stable')
        line, = ax.plot(levels[edited][order], values[edited][order],
                        marker='o', ms=4, color=colors[mode])
        handles.setdefault((0, f'{mode}: edited'), line)
        raw = values[label == interventions.RAW]
        if len(raw) and np.isnan(raw_value):
          raw_value = raw[0]
          ref = ax.axhline(raw_value, color='black', ls=':', lw=1.4)
          handles.setdefault(
              (1, 'raw (unedited embeddings; = delta no edit)'), ref)
        none = values[label == interventions.NO_EDIT.get(mode)]
        if len(none) and not np.isclose(none[0], raw_value, equal_nan=True):
          ref = ax.axhline(none[0], color=colors[mode], ls='--', lw=1.2)
          handles.setdefault(
              (2, f'{mode}: no edit ({interventions.NO_EDIT[mode]})'), ref)
      if measure != 'mean_rank':
        ax.set_ylim(-0.02, 1.02)
      ax.set_ylabel(_AXIS_LABEL[measure], fontsize=8)
      ax.grid(alpha=0.3)
      if row == 1:
        scale = t['scale'].iloc[0] if 'scale' in t else 'absolute'
        ax.set_xlabel(_SCALE_LABEL.get(scale, 'level'), fontsize=8)
    title, flagged = _case_title(t)
    axes[0, col].set_title(title, fontsize=8,
                           color='crimson' if flagged else 'black')
  order = sorted(handles)              # edited lines, raw, then no-edit lines
  fig.legend([handles[h] for h in order], [h[1] for h in order],
             loc='outside lower center', ncols=min(4, len(order)), fontsize=8,
             frameon=False)
  return _save(fig, path)


def plot_hierarchy(table: pd.DataFrame, path: str | None = None,
                   columns: Sequence[str] | None = None):
  """One bar panel per hierarchy measure, one bar per prefix group."""
  label = table['group'].astype(str) if 'group' in table else (
      table.index.astype(str))
  columns = [c for c in (columns or table.columns)
             if c != 'group' and pd.api.types.is_numeric_dtype(table[c])]
  fig, axes = _figure(1, len(columns), figsize=(3.6 * len(columns), 3.6),
                      squeeze=False)
  for ax, col in zip(axes[0], columns):
    ax.bar(label, table[col], color='tab:purple')
    ax.set_title(col, fontsize=9)
    ax.set_xlabel('latent group')
    ax.tick_params(axis='x', labelrotation=45)
    ax.grid(alpha=0.3, axis='y')
  fig.suptitle('Matryoshka hierarchy: early groups vs late groups')
  return _save(fig, path)
