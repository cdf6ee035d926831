"""Figures of the analysis report (PNG, matplotlib, no display needed).

Figures are built with matplotlib's object API (``Figure``, no pyplot), so
importing this module never changes the backend of a notebook or a script;
:func:`to_png` gives the PNG bytes (``IPython.display.Image(to_png(fig))``).

* :func:`pareto_front` / :func:`plot_fidelity_vs_l0`: the sparsity-fidelity
  trade-off across finite configs: one legend entry per λ_pred (colour) and
  dict_size (marker), the Pareto front ringed and labelled with config ids
  (:func:`label_points`: labels that never overlap).
* :func:`plot_concept_heatmap`: purity@K of (concept, neuron) pairs of one
  config, capped to each concept's best neurons (:func:`heatmap_neurons`)
  with the count shown in the title, neuron ids thinned to stay legible.
* :func:`plot_interventions`: each use case's measures against one numeric
  level axis, one line per mode, the raw and no-edit rankings as reference
  lines.
* :func:`plot_hierarchy`: per Matryoshka prefix group, labelled with its
  latent range (:func:`latent_ranges`), popularity and concept breadth of
  the latents' top items.

Example:
  >>> import pandas as pd
  >>> t = pd.DataFrame({'l0': [2., 4., 3., 8.], 'rbo': [.2, .6, .1, .9]})
  >>> pareto_front(t, minimize=('l0',), maximize=('rbo',)).tolist()
  [True, True, False, True]
"""

from __future__ import annotations

from typing import Sequence

import io
import textwrap

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
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


#: Display names of table columns in legends and axis labels.
DISPLAY_NAMES = {'lambda_pred': 'λ_pred', 'rbo_norm': 'normalised RBO',
                 'kendall_tau': 'Kendall τ', 'rho': 'ρ', 'lambda_kl': 'λ_kl',
                 'lambda_l1': 'λ_l1', 'lambda_emb': 'λ_emb'}
#: The most neurons and concepts :func:`plot_concept_heatmap` shows: legible
#: at a report's width (about 1,000 pixels).
HEATMAP_NEURONS = 120
HEATMAP_CONCEPTS = 40
#: One marker per value of the marker column, in sorted order.
_MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X', '*', 'h', '<', '>', 'p')


def _figure(nrows: int = 1, ncols: int = 1, figsize=(6, 4), **kw):
  fig = Figure(figsize=figsize, constrained_layout=True)
  FigureCanvasAgg(fig)        # a renderer to measure text; no pyplot state
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


def value_label(v) -> str:
  """A swept value as a legend shows it: ``1`` not ``1.0``."""
  return f'{v:g}' if isinstance(v, (float, np.floating)) else str(v)


def _label_candidates() -> np.ndarray:
  """``(c, 2)`` label offsets in points: 8 directions near the point, 16
  farther out, nearest first."""
  near = np.linspace(0, 2 * np.pi, 8, endpoint=False)
  far = np.linspace(0, 2 * np.pi, 16, endpoint=False)
  ring = lambda r, a: r * np.stack([np.cos(a), np.sin(a)], 1)
  return np.concatenate([ring(r, near) for r in (6, 11)] + [
      ring(r, far) for r in (18, 27, 38, 52, 68, 86, 106)])


def _side(offset: np.ndarray) -> tuple[int, int]:
  """The text's side of its anchor per axis: 1, -1, or 0 (centred) when the
  offset is nearly along the other axis."""
  u = offset / max(np.hypot(*offset), 1e-9)
  return tuple(int(np.sign(c)) if abs(c) > 0.3 else 0 for c in u)


def _box(anchor, offset, size):
  """``(x0, y0, x1, y1)`` of a text of ``size`` (w, h) whose nearest corner
  or edge is at ``anchor + offset`` (pixels), away from the anchor."""
  x, y = anchor + offset
  w, h = size
  sx, sy = _side(offset)
  x0 = x if sx > 0 else (x - w if sx < 0 else x - w / 2)
  y0 = y if sy > 0 else (y - h if sy < 0 else y - h / 2)
  return np.array([x0, y0, x0 + w, y0 + h])


def _inside(points: np.ndarray, box: np.ndarray, margin: float) -> int:
  """How many of ``points`` ``(n, 2)`` fall in ``box`` grown by ``margin``."""
  return int(((points > box[:2] - margin) & (points < box[2:] + margin)
              ).all(1).sum())


def label_points(ax, xy: np.ndarray, labels: Sequence[str],
                 avoid: np.ndarray | None = None, fontsize: float = 7,
                 color: str = 'crimson') -> list:
  """Annotates the points ``xy`` ``(n, 2)`` (data coordinates) with
  ``labels`` so that no two labels overlap and each stays inside the panel.

  Each label, in turn, takes the nearest candidate offset (8 directions,
  growing distances) that overlaps no label placed before, leaves the panel
  least and covers the fewest of the points ``avoid`` ``(p, 2)`` (the other
  marks); a label away from its point gets a leader line. Placed after the
  layout is fixed, and kept out of it, so that the positions hold in the
  saved file. Cost ``O(n^2 c)`` for ``c`` candidates: for a handful of
  labels.

  Returns:
    the annotations.
  """
  fig = ax.figure
  fig.draw_without_rendering()                 # fixes the layout
  renderer = fig.canvas.get_renderer()
  px = fig.dpi / 72.0
  pts = ax.transData.transform(np.asarray(xy, np.float64).reshape(-1, 2))
  marks = pts if avoid is None else ax.transData.transform(
      np.asarray(avoid, np.float64).reshape(-1, 2))
  frame = ax.get_window_extent(renderer)
  lo, hi = np.array([frame.x0, frame.y0]) + 2, np.array([frame.x1,
                                                          frame.y1]) - 2
  cands = _label_candidates() * px                               # (c, 2)
  placed, out = [], []
  for p, label in zip(pts, labels):  # a handful of labels
    probe = ax.text(0, 0, label, fontsize=fontsize)
    ext = probe.get_window_extent(renderer)
    probe.remove()
    size = np.array([ext.width, ext.height])
    best, score = None, np.inf
    for rank, off in enumerate(cands):
      b = _box(p, off, size)
      outside = np.maximum(lo - b[:2], 0).sum() + np.maximum(b[2:] - hi,
                                                             0).sum()
      clash = sum(bool((b[:2] < q[2:]).all() and (q[:2] < b[2:]).all())
                  for q in placed)
      s = (1e6 * clash + 1e4 * outside + 10 * _inside(marks, b, 3 * px)
           + 100 * _inside(pts, b, 7 * px) + rank)
      if s < score:
        best, score = off, s
    b = _box(p, best, size)
    placed.append(b)
    sx, sy = _side(best)
    far = np.hypot(*best) > 11 * px
    a = ax.annotate(
        label, xy=ax.transData.inverted().transform(p),
        xytext=tuple(best / px), textcoords='offset points', fontsize=fontsize,
        color=color, ha={1: 'left', -1: 'right'}.get(sx, 'center'),
        va={1: 'bottom', -1: 'top'}.get(sy, 'center'),
        arrowprops=dict(arrowstyle='-', color=color, lw=0.6, shrinkA=0,
                        shrinkB=4) if far else None)
    a.set_in_layout(False)
    out.append(a)
  return out


def _styles(values, palette) -> dict:
  """One style per sorted unique value."""
  keys = sorted(pd.unique(values))
  return dict(zip(keys, palette(len(keys))))


def _colours(n: int) -> list:
  return list(colormaps['viridis'](np.linspace(0.0, 0.88, max(n, 1))))


def _markers(n: int) -> list:
  return [_MARKERS[i % len(_MARKERS)] for i in range(n)]


def plot_fidelity_vs_l0(table: pd.DataFrame, x: str = 'l0_items',
                        ys: Sequence[str] = ('rbo_norm', 'kendall_tau'),
                        hue: str = 'lambda_pred', marker: str = 'dict_size',
                        path: str | None = None,
                        front_by: str = 'pure_concepts@10'):
  """One panel per fidelity measure against ``x`` (mean active latents).

  Each config is a point, coloured by its ``hue`` value and shaped by its
  ``marker`` value; one legend, beside the panels, names every colour and
  marker. Only finite configs are drawn (``status`` 'ok'; a table without
  it counts every row as finite). The Pareto front, the table's ``pareto``
  column (computed here over high ``front_by`` and high ``ys[0]`` when
  absent), is ringed in red, each ring labelled ``ID (N)``: the config id
  and its ``front_by`` (labels placed by :func:`label_points`, never
  overlapping).
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
  hues = pd.Series(t[hue] if hue in t else 0, index=t.index)
  shapes = pd.Series(t[marker] if marker in t else 0, index=t.index)
  colour = _styles(hues, _colours)
  shape = _styles(shapes, _markers)
  fig, axes = _figure(1, len(ys), figsize=(4.6 * len(ys) + 1.6, 4.4),
                      squeeze=False)
  for ax, y in zip(axes[0], ys):
    for (h, m), g in t.groupby([hues, shapes], sort=True):
      ax.scatter(g[x], g[y], color=colour[h], marker=shape[m], s=30,
                 alpha=0.85, edgecolors='white', linewidths=0.4,
                 gid='configs', label=f'{hue}={value_label(h)}, '
                                      f'{marker}={value_label(m)}')
    ring = ax.scatter(front[x], front[y], s=120, facecolors='none',
                      edgecolors='crimson', linewidths=1.3, gid='front')
    ax.set_xlabel(f'{x} (mean active latents per item)')
    ax.set_ylabel(f'{DISPLAY_NAMES[y]} ({y})' if y in DISPLAY_NAMES else y)
    ax.grid(alpha=0.3)
  handles, labels = [], []
  if hue in t:
    for h, c in colour.items():
      handles.append(Line2D([], [], ls='', marker='o', color=c, ms=6))
      labels.append(f'{DISPLAY_NAMES.get(hue, hue)} = {value_label(h)}')
  if marker in t:
    for m, s in shape.items():
      handles.append(Line2D([], [], ls='', marker=s, color='0.35', ms=6))
      labels.append(f'{DISPLAY_NAMES.get(marker, marker)} = {value_label(m)}')
  handles.append(ring)
  labels.append(f'Pareto front over\n{front_by} and\n'
                f'{DISPLAY_NAMES.get(ys[0], ys[0])};\nlabel: config id\n'
                f'({front_by})')
  fig.legend(handles, labels, loc='outside right upper', fontsize=8,
             frameon=False)
  skipped = len(table) - int(ok.sum())
  fig.suptitle('Sparsity vs ranking fidelity across configs' + (
      f' ({skipped} diverged configs not drawn)' if skipped else ''))
  if len(front):                       # last: the layout is complete
    ids = front['config'] if 'config' in front else front.index
    n = front[front_by] if front_by in front else ['?'] * len(front)
    for ax, y in zip(axes[0], ys):
      label_points(ax, front[[x, y]].to_numpy(),
                   [f'{int(i)} ({value_label(v)})' for i, v in zip(ids, n)],
                   avoid=t[[x, y]].to_numpy())
  return _save(fig, path)


def heatmap_neurons(purity: np.ndarray, max_neurons: int = HEATMAP_NEURONS
                    ) -> np.ndarray:
  """``(n,)`` the neurons a heat map of ``purity`` ``(M, T)`` shows.

  Concepts take turns: each concept's best neuron, then each one's second
  best, and so on, a neuron counted once, until ``max_neurons``; a neuron
  with zero purity for a concept is never taken for it, so neurons with no
  purity anywhere (dead ones included) are left out. With at most
  ``max_neurons`` such neurons, all of them.
  """
  purity = np.asarray(purity, np.float64)
  order = np.argsort(-purity, axis=0, kind='stable')             # (M, T)
  ranked = order.ravel()              # every concept's best, then 2nd, ...
  positive = np.take_along_axis(purity, order, 0).ravel() > 0
  ranked = ranked[positive]
  _, first = np.unique(ranked, return_index=True)
  return ranked[np.sort(first)][:max_neurons]


def _thin_ticks(ax, labels: Sequence[str], spacing_in: float = 0.13):
  """Labels every n-th x tick, n the smallest keeping ``spacing_in`` inches
  between labels at the axes' laid-out width. Returns n."""
  fig = ax.figure
  fig.draw_without_rendering()
  width = ax.get_window_extent().width / fig.dpi
  step = max(1, int(np.ceil(len(labels) * spacing_in / max(width, 0.1))))
  at = np.arange(0, len(labels), step)
  ax.set_xticks(at, [labels[i] for i in at], fontsize=7, rotation=90)
  return step


def plot_concept_heatmap(purity: np.ndarray, concept_names: Sequence[str],
                         k: int = 10, title: str = '',
                         path: str | None = None,
                         neuron_ids: Sequence[int] | None = None,
                         max_neurons: int = HEATMAP_NEURONS,
                         max_concepts: int = HEATMAP_CONCEPTS):
  """Heat map of ``purity`` ``(M, T)``: concepts down, neurons across,
  neurons grouped by their best concept (so a monosemantic dictionary shows
  a diagonal).

  At most ``max_concepts`` concepts (those with the highest purity, in
  their own order) and ``max_neurons`` neurons (:func:`heatmap_neurons`)
  are shown; the title says how many of how many. Every n-th neuron is
  labelled with its id (``neuron_ids``, default ``0..M-1``) so the labels
  never overlap; the figure is at most 11 inches wide.
  """
  purity = np.asarray(purity, np.float64)
  m_all, t_all = purity.shape
  ids = np.arange(m_all) if neuron_ids is None else np.asarray(neuron_ids)
  rows = np.sort(np.argsort(-purity.max(0), kind='stable')[:max_concepts])
  p = purity[:, rows]
  cols = heatmap_neurons(p, max_neurons)
  p = p[cols]
  cols = cols[np.lexsort((-p.max(1), p.argmax(1)))]  # by best concept
  shown = purity[np.ix_(cols, rows)].T                           # (T, n)
  t, m = shown.shape
  fig, ax = _figure(figsize=(min(11, max(6, 0.15 * m + 3)),
                             max(4, 0.24 * t + 2)))
  im = ax.imshow(shown, aspect='auto', cmap='magma', vmin=0, vmax=1,
                 interpolation='nearest')
  ax.set_yticks(range(t), [_short(concept_names[i]) for i in rows],
                fontsize=7)
  fig.colorbar(im, ax=ax, label=f'purity@{k}')
  head = title or f'purity@{k} of concepts and neurons'
  some = int((purity[:, rows].max(1) > 0).sum())
  notes = ([f'each concept\'s best, then second best, ... up to '
            f'{max_neurons}'] if m < some else []) + (
      [f'{m_all - some} with zero purity left out'] if some < m_all
      else [])
  what = f'{m} of {m_all} neurons' + (f' ({"; ".join(notes)})' if notes
                                     else '') + (
      f', {t} of {t_all} concepts (the highest purity)' if t < t_all
      else f', all {t} concepts')
  ax.set_title(f'{head}\n' + textwrap.fill(
      what, int(13 * fig.get_size_inches()[0])), fontsize=9)
  step = _thin_ticks(ax, [str(i) for i in ids[cols]])
  ax.set_xlabel('neuron id, grouped by best concept' + (
      f' (one label per {step} neurons)' if step > 1 else ''))
  return _save(fig, path)


def _short(name, n: int = 24) -> str:
  name = str(name)
  return name if len(name) <= n else name[:n - 1] + '…'


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

  One pair of panels per use case; top panel: its measure (concept share,
  or promotion success rate), bottom panel: the collateral RBO of the rest
  of the list (steering) or the target's mean rank (promotion). The pairs
  wrap into rows of at most three use cases, or of two when the cases come
  with both neuron choices (``choice``: item purity, effect), so that each
  row shows one case chosen both ways side by side. Solid lines:
  each mode's edited levels; dotted black: the raw ranking (unedited
  embeddings, which delta mode's no-edit equals); dashed, in the mode's
  colour: a mode's no-edit ranking where it differs from raw (replace mode's
  reconstruction). The legend sits below the panels; a flagged case
  (``flag``: wrong direction, inactive neuron) says so in red in its title.
  """
  cases = list(dict.fromkeys(table['case']))
  paired = 'choice' in table and table['choice'].nunique() > 1
  ncols = min(len(cases), 2 if paired else 3)
  blocks = -(-len(cases) // ncols)
  fig, axes = _figure(2 * blocks, ncols,
                      figsize=(4.8 * ncols, 6.2 * blocks), squeeze=False)
  for i in range(len(cases), blocks * ncols):     # an empty last slot
    axes[2 * (i // ncols), i % ncols].set_visible(False)
    axes[2 * (i // ncols) + 1, i % ncols].set_visible(False)
  colors = dict(zip(dict.fromkeys(table['mode']), _MODE_COLORS))
  handles = {}
  for i, case in enumerate(cases):
    top, col = 2 * (i // ncols), i % ncols
    t = table[table['case'] == case]
    axes[top, col].sharex(axes[top + 1, col])
    for row, measure in enumerate(_MEASURES[t['kind'].iloc[0]]):
      ax = axes[top + row, col]
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
    axes[top, col].set_title(title, fontsize=8,
                             color='crimson' if flagged else 'black')
  order = sorted(handles)              # edited lines, raw, then no-edit lines
  fig.legend([handles[h] for h in order], [h[1] for h in order],
             loc='outside lower center', ncols=min(4, len(order)), fontsize=8,
             frameon=False)
  return _save(fig, path)


#: Per hierarchy column prefix, the panel's title (N: the top items looked
#: at, from the column's ``@N``).
_HIERARCHY_TITLES = {
    'n_alive': 'alive latents\n(outline: the group\'s latents)',
    'mean_pop_rank': 'mean popularity rank of\ntop-{n} items (0: most popular)',
    'concept_entropy': 'concept breadth of top-{n}\nitems (entropy, bits)',
    'mean_cosine': 'mean cosine between the\ntop-{n} items\' embeddings'}


def latent_ranges(table: pd.DataFrame) -> list[str]:
  """The latents of each prefix group, ``'0–7'``, from a
  :func:`~monosem_jax.analysis.hierarchy.hierarchy_table`'s ``start`` and
  ``stop``; the ``group`` (or the index) when those are absent."""
  if {'start', 'stop'} <= set(table):
    return [f'{int(a)}–{int(b) - 1}' for a, b in zip(table['start'],
                                                     table['stop'])]
  return list((table['group'] if 'group' in table else table.index
               ).astype(str))


def plot_hierarchy(table: pd.DataFrame, path: str | None = None,
                   columns: Sequence[str] | None = None):
  """One bar panel per hierarchy measure, one bar per prefix group, each
  bar labelled with its group's latents (:func:`latent_ranges`); the alive
  count is drawn inside an outline of the group's size."""
  label = latent_ranges(table)
  skip = {'group', 'start', 'stop', 'n_latents'}
  columns = [c for c in (columns or table.columns)
             if c not in skip and pd.api.types.is_numeric_dtype(table[c])]
  fig, axes = _figure(1, len(columns), figsize=(3.1 * len(columns) + 0.4,
                                                3.8), squeeze=False)
  at = np.arange(len(label))
  for ax, col in zip(axes[0], columns):
    ax.bar(at, table[col], color='tab:purple')
    if col == 'n_alive' and 'n_latents' in table:
      ax.bar(at, table['n_latents'], facecolor='none', edgecolor='0.2',
             lw=0.9, zorder=3)
    name, _, n = col.partition('@')
    ax.set_title(_HIERARCHY_TITLES.get(name, col).format(n=n), fontsize=9)
    ax.set_xticks(at, label, fontsize=8,
                  rotation=30 if len(label) > 4 else 0)
    ax.set_xlabel('latents (prefix group)')
    ax.grid(alpha=0.3, axis='y')
  fig.suptitle('Matryoshka hierarchy: early latents (left) vs later ones')
  return _save(fig, path)
