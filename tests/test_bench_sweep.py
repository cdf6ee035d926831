"""bench_sweep's cost analysis and roofline prediction (issue 11, item 3)."""

import pytest

from experiments import bench_sweep


def test_roofline_picks_the_binding_limit():
  # 2 MFLOP and 0.4 MB per config-step on 1 TFLOP/s and 100 GB/s:
  # compute 2 us, memory 4 us -> memory-bound, 250,000 config-steps/s.
  r = bench_sweep.roofline(2e6, 4e5, peak_flops=1e12, bytes_per_s=1e11)
  assert r['bound'] == 'memory'
  assert r['config_steps_per_s'] == pytest.approx(2.5e5)
  r = bench_sweep.roofline(2e6, 4e4, peak_flops=1e12, bytes_per_s=1e11)
  assert r['bound'] == 'compute'
  assert r['config_steps_per_s'] == pytest.approx(5e5)


@pytest.mark.slow
def test_bench_rows_carry_costs_and_predictions():
  out = bench_sweep.bench('mf', [2], steps=2, repeats=1, seq_configs=1)
  row = out['vmapped'][0]
  assert row['flops_per_config_step'] > 1e5      # d=20, 256 x 256, dict 64
  assert row['bytes_per_config_step'] > 1e4
  for name, peak in bench_sweep.ROOFLINES.items():
    pred = row['roofline'][name]
    expect = bench_sweep.roofline(row['flops_per_config_step'],
                                  row['bytes_per_config_step'],
                                  peak['flops'], peak['bytes_per_s'])
    assert pred == expect
