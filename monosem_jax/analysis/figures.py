"""Figures of the analysis report (PNG, matplotlib, no display needed).

Figures are built with matplotlib's object API (``Figure``, no pyplot), so
importing this module never changes the backend of a notebook or a script;
:func:`to_png` gives the PNG bytes (``IPython.display.Image(to_png(fig))``).

* :func:`pareto_front` / :func:`plot_fidelity_vs_l0`: the sparsity-fidelity
  trade-off across configs, the Pareto front marked.
* :func:`plot_concept_heatmap`: purity@K of every (concept, neuron) of one
  config.
* :func:`plot_interventions`: each use case's measure against the level, one
  line per mode.
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
                        hue: str = 'lambda_pred', path: str | None = None):
  """One panel per fidelity measure against ``x`` (mean active latents),
  points coloured by ``hue``, the Pareto front (low x, high y) joined."""
  ys = [y for y in ys if y in table]
  fig, axes = _figure(1, len(ys), figsize=(5.2 * len(ys), 4.2),
                      squeeze=False)
  for ax, y in zip(axes[0], ys):
    t = table.dropna(subset=[x, y])
    c = t[hue] if hue in t else None
    sc = ax.scatter(t[x], t[y], c=c, cmap='viridis', s=28, alpha=0.85)
    front = t[pareto_front(t, minimize=(x,), maximize=(y,))].sort_values(x)
    ax.plot(front[x], front[y], color='crimson', marker='o', mfc='none',
            ms=9, lw=1.2, label='Pareto front')
    ax.set_xlabel(f'{x} (mean active latents)')
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    ax.legend(loc='lower right')
    if c is not None:
      fig.colorbar(sc, ax=ax, label=hue)
  fig.suptitle('Sparsity vs ranking fidelity across configs')
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


_MEASURE = {'suppress': 'concept_share', 'nudge': 'concept_share',
            'promote': 'success_rate'}


def plot_interventions(table: pd.DataFrame, path: str | None = None):
  """One panel per use case: its measure (solid) and the collateral RBO
  (dashed, steering cases) against the level, one colour per mode."""
  cases = list(dict.fromkeys(table['case']))
  fig, axes = _figure(1, len(cases), figsize=(5 * len(cases), 4),
                      squeeze=False)
  for ax, case in zip(axes[0], cases):
    t = table[table['case'] == case]
    measure = _MEASURE[t['kind'].iloc[0]]
    for color, (mode, g) in zip(('tab:blue', 'tab:orange', 'tab:green'),
                                t.groupby('mode', sort=False)):
      labels = [str(v) for v in g['level']]
      ax.plot(labels, g[measure], marker='o', color=color,
              label=f'{measure} ({mode})')
      if 'collateral_rbo' in g and g['collateral_rbo'].notna().any():
        ax.plot(labels, g['collateral_rbo'], ls='--', color=color, alpha=0.7,
                label=f'collateral RBO ({mode})')
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel('level')
    ax.tick_params(axis='x', labelrotation=45)
    ax.set_title(f'{case}\n(neuron {t["neuron"].iloc[0]}, '
                 f'{t["n_users"].iloc[0]} users)', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
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
