"""The report's figures draw what the tables say (no categorical level axis,
no diverged configs, reference lines where the tables have them) and read at
a glance (a legend entry per λ_pred and dict_size, front configs labelled
without overlaps, a categorical λ axis with the spread, a capped heat map
with legible ticks, hierarchy bars named by their latents)."""

from matplotlib.markers import MarkerStyle
from matplotlib.text import Text
import numpy as np
import pandas as pd

from monosem_jax.analysis import figures, sweep_figures


def _case(name, kind, levels, mode, values, second):
  """One (case, mode) table as ``run_use_cases`` returns it."""
  none = {'replace': 'reconstruction', 'delta': 'unedited'}[mode]
  measure, other = (('success_rate', 'mean_rank') if kind == 'promote' else
                    ('concept_share', 'collateral_rbo'))
  return pd.DataFrame({
      'case': name, 'kind': kind, 'neuron': 3, 'n_users': 20, 'mode': mode,
      'scale': 'absolute', 'level': ['raw', none, *levels],
      measure: values, other: second, 'orig_activation': 0.0076,
      'wrong_sign': kind == 'suppress', 'inactive': kind == 'suppress'})


def _table():
  levels = [1.0, 0.0, -1.5]
  return pd.concat([
      _case('suppress', 'suppress', levels, 'replace', [.89, .84, .6, .85, .92],
            [1, .78, .57, .77, .48]),
      _case('suppress', 'suppress', levels, 'delta', [.89, .89, .7, .89, .93],
            [1, 1, .6, .99, .43]),
      _case('promote', 'promote', [0.0, 2.0, 6.0], 'replace',
            [0, 0, 0, 0, 0], [418., 361., 385., 281., 170.]),
      _case('promote', 'promote', [0.0, 2.0, 6.0], 'delta', [0, 0, 0, 0, 0],
            [418., 418., 436., 341., 171.]),
  ], ignore_index=True)


def test_interventions_share_one_numeric_level_axis_with_reference_lines():
  fig = figures.plot_interventions(_table())
  axes = np.asarray(fig.axes).reshape(2, 2)
  for ax in axes.ravel():
    assert ax.xaxis.get_units() is None       # numeric, not categorical
    assert ax.get_legend() is None            # the legend is below the axes
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert not {'raw', 'reconstruction', 'unedited'} & set(labels)
  assert len(fig.legends) == 1
  # suppression: both modes' lines over the same sorted numeric levels
  data = [ln for ln in axes[0, 0].get_lines() if ln.get_marker() == 'o']
  assert len(data) == 2
  for ln in data:
    np.testing.assert_array_equal(ln.get_xdata(), [-1.5, 0.0, 1.0])
  np.testing.assert_allclose(data[0].get_ydata(), [.92, .85, .6])
  np.testing.assert_allclose(data[1].get_ydata(), [.93, .89, .7])
  refs = {round(float(ln.get_ydata()[0]), 3) for ln in axes[0, 0].get_lines()
          if ln.get_marker() != 'o'}
  assert refs == {0.89, 0.84}   # raw (= delta's no edit), replace's no edit
  # promotion: success rate on top, the mean rank below
  assert 'mean rank' in axes[1, 1].get_ylabel()
  ranks = [ln for ln in axes[1, 1].get_lines() if ln.get_marker() == 'o']
  np.testing.assert_allclose(ranks[0].get_ydata(), [385., 281., 170.])
  np.testing.assert_array_equal(ranks[0].get_xdata(), [0., 2., 6.])
  # the flagged case says so in its title
  assert 'WRONG DIRECTION' in axes[0, 0].get_title()
  assert 'INACTIVE NEURON' in axes[0, 0].get_title()
  assert 'WRONG' not in axes[0, 1].get_title()
  figures.to_png(fig)                          # renders


def test_both_neuron_choices_of_a_case_sit_side_by_side():
  # six use cases (each by purity and by effect) once drew one row of twelve
  # panels, 30 inches wide; now a row per case, its two choices side by side
  levels = [1.0, 0.0, -1.5]
  parts = []
  for name in ('suppress a', 'nudge b', 'promote c'):
    kind = name.split()[0]
    for choice, suffix in (('purity', ''), ('effect', ' by effect')):
      for mode in ('replace', 'delta'):
        t = _case(name + suffix, kind, levels, mode, [.5, .5, .4, .3, .2],
                  [1, .9, .8, .7, .6])
        parts.append(t.assign(choice=choice))
  fig = figures.plot_interventions(pd.concat(parts, ignore_index=True))
  assert fig.get_figwidth() <= 10
  shown = [ax for ax in fig.axes if ax.get_visible()]
  assert len(shown) == 12
  grid = np.asarray(fig.axes).reshape(6, 2)
  for block, name in enumerate(('suppress a', 'nudge b', 'promote c')):
    left, right = grid[2 * block, 0], grid[2 * block, 1]
    assert left.get_title().startswith(name) and 'effect' not in (
        left.get_title())
    assert right.get_title().startswith(name + ' by effect')
  # five cases, three to a row: the sixth slot is hidden
  five = pd.concat([_case(f'suppress {i}', 'suppress', levels, 'delta',
                          [.5, .5, .4, .3, .2], [1, .9, .8, .7, .6])
                    for i in range(5)], ignore_index=True)
  fig = figures.plot_interventions(five)
  assert sum(ax.get_visible() for ax in fig.axes) == 10
  assert len(fig.axes) == 12
  figures.to_png(fig)


def test_levels_read_back_from_the_csv_stay_numeric(tmp_path):
  _table().to_csv(tmp_path / 'iv.csv', index=False)
  fig = figures.plot_interventions(pd.read_csv(tmp_path / 'iv.csv'))
  line = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == 'o'][0]
  np.testing.assert_array_equal(line.get_xdata(), [-1.5, 0.0, 1.0])
  assert fig.axes[0].xaxis.get_units() is None


def test_fidelity_figure_leaves_diverged_configs_out():
  t = pd.DataFrame({'config': [0, 1, 2, 3], 'l0_items': [2., 4., 3., 1.],
                    'rbo_norm': [.3, .6, .5, 9.],
                    'kendall_tau': [0, .2, .1, 5.],
                    'lambda_pred': [0., 1., 1., 1.],
                    'status': ['ok', 'ok', 'ok', 'diverged'],
                    'pareto': [True, True, False, False]})
  fig = figures.plot_fidelity_vs_l0(t)
  points = np.concatenate([c.get_offsets() for c in fig.axes[0].collections
                           if c.get_gid() == 'configs'])
  assert len(points) == 3 and 1. not in np.asarray(points)[:, 0]
  (front,) = [c.get_offsets() for c in fig.axes[0].collections
              if c.get_gid() == 'front']               # the table's front
  np.testing.assert_array_equal(np.asarray(front)[:, 0], [2., 4.])
  assert '1 diverged' in fig.get_suptitle()


def _sweep_table():
  """80 finite configs of lambda_pred x dict_size x rho, as a real sweep."""
  lp, ds, rho = np.meshgrid([0., 1., 2., 5., 10.], [22, 32, 48, 64],
                            [.02, .05, .1, .2], indexing='ij')
  lp, ds, rho = lp.ravel(), ds.ravel(), rho.ravel()
  rbo = .3 + .04 * np.log1p(lp) + ds / 400 + rho / 2
  return pd.DataFrame({
      'config': np.arange(80), 'lambda_pred': lp, 'dict_size': ds,
      'rho': rho, 'status': 'ok', 'l0_items': ds / 4 + 10 * rho + lp / 3,
      'rbo_norm': rbo, 'kendall_tau': rbo - .2,
      'pure_concepts@10': (ds // 16 + (lp > 0) + (rho > .05)).astype(int),
      'score_mse': 1 / (1 + lp) + rho, 'fve': .5 + rho + lp / 40,
      'dead_frac': rho / 10})


def _overlaps(boxes):
  return [(i, j) for i in range(len(boxes)) for j in range(i)
          if boxes[i].overlaps(boxes[j])]


def test_fidelity_figure_has_a_legend_per_lambda_and_a_marker_per_dict_size():
  t = _sweep_table()
  fig = figures.plot_fidelity_vs_l0(t)
  assert len(fig.axes) == 2                         # no colour bar axes
  (legend,) = fig.legends
  labels = [x.get_text() for x in legend.get_texts()]
  assert [l for l in labels if l.startswith('λ_pred')] == [
      f'λ_pred = {v}' for v in (0, 1, 2, 5, 10)]
  size_entries = [(l, h) for l, h in zip(labels, legend.legend_handles)
                  if l.startswith('dict_size')]
  assert [l for l, _ in size_entries] == [
      'dict_size = 22', 'dict_size = 32', 'dict_size = 48', 'dict_size = 64']
  markers = {l.split()[-1]: h.get_marker() for l, h in size_entries}
  assert len(set(markers.values())) == 4
  colours = {l.split()[-1]: h.get_color() for l, h in
             zip(labels, legend.legend_handles) if l.startswith('λ_pred')}
  # every point is drawn with its dict_size's marker, in its lambda's colour
  points = [c for c in fig.axes[0].collections if c.get_gid() == 'configs']
  assert sum(len(c.get_offsets()) for c in points) == 80
  for c in points:
    lam, size = [v.split('=')[1] for v in c.get_label().split(', ')]
    want = MarkerStyle(markers[size])
    want = want.get_path().transformed(want.get_transform())
    np.testing.assert_allclose(c.get_paths()[0].vertices, want.vertices)
    np.testing.assert_allclose(c.get_facecolor()[0][:3], colours[lam][:3])
  assert not fig.axes[0].get_legend()            # the legend covers no data


def test_fidelity_front_is_labelled_with_config_ids_without_overlaps():
  t = _sweep_table()
  # ten front configs crowded together, as on a real sweep
  front = np.arange(40, 80, 4)
  t['pareto'] = t.config.isin(front)
  t.loc[front, 'l0_items'] = 20 + np.arange(10) * .05
  t.loc[front, 'rbo_norm'] = .6 + np.arange(10) * .002
  fig = figures.plot_fidelity_vs_l0(t)
  pure = dict(zip(t.config, t['pure_concepts@10']))
  for ax in fig.axes:              # "ID (pure concepts)" on each front point
    assert sorted(a.get_text() for a in ax.texts) == sorted(
        f'{i} ({pure[i]})' for i in front)
  figures.to_png(fig)
  fig.canvas.draw()              # positions at the figure's own dpi
  renderer = fig.canvas.get_renderer()
  for ax in fig.axes:
    texts = ax.texts
    boxes = [Text.get_window_extent(a, renderer) for a in texts]  # no line
    assert _overlaps(boxes) == []
    frame = ax.get_window_extent(renderer)
    for b in boxes:            # inside the panel, not over the legend
      assert frame.x0 <= b.x0 and b.x1 <= frame.x1
      assert frame.y0 <= b.y0 and b.y1 <= frame.y1


def test_sweep_figure_has_categorical_lambda_and_draws_the_spread():
  t = _sweep_table()
  fig = sweep_figures.plot_sweep(t)
  ax = fig.axes[0]
  assert [x.get_text() for x in ax.get_xticklabels()] == [
      '0', '1', '2', '5', '10']
  medians = [ln for ln in ax.get_lines() if ln.get_marker() == 'o']
  assert len(medians) == 4                            # one per dict_size
  for ln in medians:                                  # evenly spaced
    np.testing.assert_allclose(np.diff(ln.get_xdata()), 1.)
  np.testing.assert_allclose(   # the median over rho
      medians[0].get_ydata(),
      t[t.dict_size == 22].groupby('lambda_pred').score_mse.median())
  boxes = [p for p in ax.patches if p.get_gid() == 'range']
  assert len(boxes) == 20                     # min-max per lambda, dict_size
  lo = t[t.dict_size == 22].groupby('lambda_pred').score_mse
  np.testing.assert_allclose([b.get_y() for b in boxes[:5]], lo.min())
  np.testing.assert_allclose([b.get_y() + b.get_height() for b in boxes[:5]],
                             lo.max())
  dots = [c for c in ax.collections if c.get_gid() == 'configs']
  assert sum(len(c.get_offsets()) for c in dots) == 80   # every config
  y = np.concatenate([np.asarray(c.get_offsets())[:, 1] for c in dots])
  np.testing.assert_allclose(np.sort(y), np.sort(t.score_mse))
  sweep_figures.plot_sweep(t.assign(status=['diverged'] + ['ok'] * 79))


def test_heatmap_of_600_neurons_shows_each_concepts_best_with_legible_ticks():
  rng = np.random.default_rng(0)
  purity = rng.random((600, 18)) * .6
  purity[rng.random((600, 18)) < .7] = 0
  purity[::7] = 0                                     # dead neurons
  best = rng.permutation(np.arange(600)[np.arange(600) % 7 > 0])[:18]
  purity[best, np.arange(18)] = 1.
  fig = figures.plot_concept_heatmap(purity, [f'c{i}' for i in range(18)],
                                     title='config 3')
  ax = fig.axes[0]
  shown = ax.images[0].get_array().shape[1]
  assert shown <= 120
  labels = [x.get_text() for x in ax.get_xticklabels() if x.get_text()]
  assert len(labels) <= 60
  figures.to_png(fig)
  fig.canvas.draw()              # positions at the figure's own dpi
  renderer = fig.canvas.get_renderer()
  boxes = [x.get_window_extent(renderer) for x in ax.get_xticklabels()
           if x.get_text()]
  assert _overlaps(boxes) == []
  assert fig.get_size_inches()[0] <= 12
  assert f'{shown} of 600 neurons' in ax.get_title()
  assert 'config 3' in ax.get_title()
  # every concept's best neuron is among the columns shown
  assert set(best) <= set(figures.heatmap_neurons(purity, 120).tolist())


def test_hierarchy_bars_are_labelled_with_latent_ranges():
  hier = pd.DataFrame({'group': [0, 1, 2], 'start': [0, 8, 16],
                       'stop': [8, 16, 64], 'n_latents': [8, 8, 48],
                       'n_alive': [8, 7, 30], 'mean_pop_rank@50': [10., 20, 30],
                       'concept_entropy@50': [1., 2, 3]})
  fig = figures.plot_hierarchy(hier, columns=['n_alive', 'mean_pop_rank@50',
                                              'concept_entropy@50'])
  for ax in fig.axes:
    assert [x.get_text() for x in ax.get_xticklabels()] == [
        '0–7', '8–15', '16–63']
    assert 'latents' in ax.get_xlabel()
