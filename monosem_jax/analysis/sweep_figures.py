"""Figures of a sweep's results table (``sweep_results.csv``).

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

from matplotlib.figure import Figure
import pandas as pd

from monosem_jax.sweep.runner import RESULTS_CSV

RESULTS_PNG = 'sweep_results.png'

PANELS = (
    ('score_mse', 'score-matrix MSE (orig vs recon)', True),
    ('fve', 'fraction of variance explained', False),
    ('l0_items', 'mean active latents (items)', False),
    ('dead_frac', 'dead latent fraction', False),
)


def plot_sweep(table: pd.DataFrame, x: str = 'lambda_pred',
               hue: str = 'dict_size', path: str | None = None):
  """Each metric against ``x``, one line per ``hue`` value.

  Configs that differ in other swept fields are summarised by their median
  (diverged configs are left out). Returns the figure; saves it to ``path``
  (PNG) when given.
  """
  ok = table[table['status'] == 'ok'] if 'status' in table else table
  fig = Figure(figsize=(10, 7), constrained_layout=True)  # no pyplot state
  axes = fig.subplots(2, 2)
  for ax, (col, title, log) in zip(axes.flat, PANELS):
    if col not in ok or ok.empty:
      ax.set_visible(False)
      continue
    groups = ok.groupby([hue, x])[col].median().unstack(0) if hue in ok else (
        ok.groupby(x)[col].median().to_frame(col))
    for name, series in groups.items():
      ax.plot(series.index, series.values, marker='o',
              label=f'{hue}={name}' if hue in ok else None)
    ax.set_title(title)
    ax.set_xlabel(x)
    if log and (groups.values > 0).all():
      ax.set_yscale('log')
    ax.grid(alpha=0.3)
  handles, labels = axes.flat[0].get_legend_handles_labels()
  if handles:
    fig.legend(handles, labels, loc='outside right center')
  n_div = int((table.get('status', pd.Series(dtype=str)) != 'ok').sum())
  fig.suptitle(f'{len(table)} configs ({n_div} diverged); medians over other '
               'swept fields')
  if path:
    fig.savefig(path, dpi=120)
  return fig


def plot_sweep_workdir(workdir: str) -> str:
  """Draws ``WORKDIR/sweep_results.png`` from ``WORKDIR/sweep_results.csv``.

  Returns the figure's path.
  """
  table = pd.read_csv(os.path.join(workdir, RESULTS_CSV))
  path = os.path.join(workdir, RESULTS_PNG)
  plot_sweep(table, path=path)
  return path
