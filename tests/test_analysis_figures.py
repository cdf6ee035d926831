"""The report's figures draw what the tables say (no categorical level axis,
no diverged configs, reference lines where the tables have them)."""

import numpy as np
import pandas as pd

from monosem_jax.analysis import figures


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
  points = fig.axes[0].collections[0].get_offsets()
  assert len(points) == 3 and 1. not in np.asarray(points)[:, 0]
  front = fig.axes[0].collections[1].get_offsets()   # the table's front
  np.testing.assert_array_equal(np.asarray(front)[:, 0], [2., 4.])
  assert '1 diverged' in fig.get_suptitle()
