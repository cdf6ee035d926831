"""Figures of a sweep's results table (``sweep_results.csv``).

:func:`plot_sweep`: each metric against a categorical λ_pred axis (its
values evenly spaced), one colour per dict_size, with the spread over the
other swept fields (seed, ρ, ...): every config as a dot, the min-max box
and the median line.

Example:
  >>> import pandas as pd
  >>> t = pd.DataFrame({'lambda_pred': [0., 1., 0., 1.], 'dict_size': [8, 8, 16, 16],
  ...                   'score_mse': [.3, .1, .2, .05], 'fve': [.5, .6, .7, .8],
  ...                   'l0_items': [3., 4., 5., 6.], 'dead_frac': [0., 0., .1, 0.],
  ...                   'status': ['ok'] * 4})
  >>> fig = plot_sweep(t)
  >>> len(fig.axes)
  4
"""

from __future__ import annotations

import os
import textwrap

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
import numpy as np
import pandas as pd

from monosem_jax.analysis.figures import DISPLAY_NAMES, value_label
from monosem_jax.sweep.workdir import SweepWorkdir
from monosem_jax.sweep.spec import FIELDS

RESULTS_PNG = 'sweep_results.png'

PANELS = (
    ('score_mse', 'score-matrix MSE (orig vs recon)', True),
    ('fve', 'fraction of variance explained', False),
    ('l0_items', 'mean active latents (items)', False),
    ('dead_frac', 'dead latent fraction', False),
)
#: The share of a category's slot the ``hue`` groups (dodged) fill.
_SLOT = 0.8


def _jitter(keys: pd.Series, width: float) -> np.ndarray:
  """``(rows,)`` offsets spreading the rows of each ``keys`` value evenly
  over ``width`` (in row order: deterministic, no random jitter)."""
  g = keys.groupby(keys, sort=False)
  rank = g.cumcount().to_numpy(np.float64)
  size = g.transform('size').to_numpy(np.float64)
  return ((rank + 0.5) / size - 0.5) * width


def _draw_metric(ax, ok, col, x, hue, xs, hues, colours):
  """One panel: per ``hue`` value, dodged within each category of ``x``,
  the min-max box, every config as a dot in it and the median line."""
  slot = _SLOT / len(hues)
  pos = pd.Series(np.arange(len(xs), dtype=np.float64), index=xs)
  for j, h in enumerate(hues):
    g = ok if h is None else ok[ok[hue] == h]
    shift = (j - (len(hues) - 1) / 2) * slot
    stats = g.groupby(x)[col].agg(['median', 'min', 'max']).reindex(xs)
    px = pos.to_numpy() + shift
    c = colours[j]
    boxes = ax.bar(px, stats['max'] - stats['min'], bottom=stats['min'],
                   width=0.85 * slot, color=c, alpha=0.2, lw=0, gid='range')
    for b in boxes:              # keep the axis margins: no dot on the edge
      b.sticky_edges.y.clear()
    ax.plot(px, stats['median'], marker='o', ms=4, color=c, lw=1.6)
    dots = pos[g[x]].to_numpy() + shift + _jitter(g[x], 0.6 * slot)
    ax.scatter(dots, g[col], s=9, color=c, alpha=0.6, lw=0, gid='configs')


def plot_sweep(table: pd.DataFrame, x: str = 'lambda_pred',
               hue: str = 'dict_size', path: str | None = None):
  """Each metric against ``x``, one colour per ``hue`` value.

  ``x`` is categorical: its values evenly spaced and labelled with
  themselves (a linear axis would bunch 0, 1, 2 against 10). Per (``x``,
  ``hue``) value: a box from the min to the max, a dot per config in it,
  spread sideways so that none hides another, and the median line, over
  the configs that differ in other swept fields (seed, rho, ...). Diverged
  configs are left out. Returns the figure; saves it to ``path`` (PNG) when
  given.
  """
  ok = table[table['status'] == 'ok'] if 'status' in table else table
  fig = Figure(figsize=(10, 7), constrained_layout=True)  # no pyplot state
  axes = fig.subplots(2, 2)
  xs = sorted(pd.unique(ok[x])) if x in ok else []
  hues = sorted(pd.unique(ok[hue])) if hue in ok else [None]
  colours = colormaps['viridis'](np.linspace(0, 0.85, max(len(hues), 1)))
  for ax, (col, title, log) in zip(axes.flat, PANELS):
    if col not in ok or ok.empty:
      ax.set_visible(False)
      continue
    _draw_metric(ax, ok, col, x, hue, xs, hues, colours)
    ax.set_title(title)
    ax.set_xticks(range(len(xs)), [value_label(v) for v in xs])
    ax.set_xlabel(f'{DISPLAY_NAMES.get(x, x)} (its values, evenly spaced)')
    if log and (ok[col] > 0).all():
      ax.set_yscale('log')
    ax.grid(alpha=0.3)
  others = [f for f in FIELDS if f in ok and f not in (x, hue)
            and ok[f].nunique() > 1]
  over = ', '.join(DISPLAY_NAMES.get(f, f) for f in others) or (
      'nothing else swept')
  handles = [Line2D([], [], color=c, marker='o', ms=4) for c in colours]
  labels = [f'{DISPLAY_NAMES.get(hue, hue)} = {value_label(h)}'
            for h in hues] if hue in ok else ['']
  handles += [Line2D([], [], color='0.3', lw=1.6),
              Patch(color='0.3', alpha=0.2),
              Line2D([], [], ls='', marker='o', ms=3, color='0.3', alpha=0.6)]
  labels += [textwrap.fill(f'median over {over}', 18), 'min to max',
             'one config']
  fig.legend(handles, labels, loc='outside right center', fontsize=9,
             frameon=False)
  n_div = int((table.get('status', pd.Series(dtype=str)) != 'ok').sum())
  fig.suptitle(f'{len(table)} configs ({n_div} diverged, not drawn); line: '
               f'median over {over}; box: min to max; dots: every config')
  if path:
    fig.savefig(path, dpi=120)
  return fig


def plot_sweep_workdir(workdir: str) -> str:
  """Draws ``WORKDIR/sweep_results.png`` from ``WORKDIR/sweep_results.csv``.

  Returns the figure's path.
  """
  table = pd.read_csv(SweepWorkdir(workdir).results_csv)
  path = os.path.join(workdir, RESULTS_PNG)
  plot_sweep(table, path=path)
  return path
