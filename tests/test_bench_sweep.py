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


def test_min_bytes_are_the_state_twice_plus_the_shared_batch_over_c():
  # Issue 19, item 2: derived in the module docstring from the SAE shapes.
  spec, _, scorer = bench_sweep._workload('mf', 2, 20, 'gram')
  params = 64 * 20 + 64 + 20            # tied W, encoder bias, pre-bias
  state = 3 * 4 * params + 9            # weights, mu, nu; count and flags
  batch = (256 + 256) * (20 * 4 + 4)    # float32 rows and int32 indices
  for c in (1, 1024):
    assert bench_sweep.min_bytes_per_config_step(spec, scorer, c) == (
        2 * state + batch / c)
  spec, _, scorer = bench_sweep._workload('ncf', 2, 20, 'gram')
  mlp = 40 * 64 + 64 * 32 + 32 * 16 + 16 * 1
  assert bench_sweep.shared_batch_bytes(spec, scorer) == (
      2 * 256 * (20 * 4 + 4) + 4 * mlp)


def test_roof_fractions_of_a_known_device_and_none_on_a_cpu():
  row = dict(config_steps_per_s=2e6, flops_per_config_step=8.7e6,
             bytes_per_config_step=2.54e6, min_bytes_per_config_step=33e3)
  h200 = bench_sweep.device_roof('NVIDIA H200')
  bench_sweep.add_roofs(row, h200, 'bfloat16')
  assert row['fraction_of_fp32_compute_roof'] == pytest.approx(2e6 * 8.7e6
                                                               / 67e12)
  assert row['fraction_of_compute_roof'] == pytest.approx(2e6 * 8.7e6
                                                          / 989.4e12)
  assert row['fraction_of_byte_roof_xla'] == pytest.approx(2e6 * 2.54e6
                                                           / 4.8e12)
  assert row['fraction_of_byte_roof_min'] == pytest.approx(2e6 * 33e3 / 4.8e12)
  assert row['fraction_of_peak_flops'] == row['fraction_of_fp32_compute_roof']
  assert row['fraction_of_peak_bandwidth'] == row['fraction_of_byte_roof_xla']
  cpu = dict(row)
  bench_sweep.add_roofs(cpu, bench_sweep.device_roof('cpu'), 'float32')
  assert all(cpu[k] is None for k in (
      'fraction_of_fp32_compute_roof', 'fraction_of_compute_roof',
      'fraction_of_byte_roof_xla', 'fraction_of_byte_roof_min'))


@pytest.mark.slow
def test_precision_rows_come_from_the_same_run():
  out = bench_sweep.bench_all(['mf'], [2, 4], steps=2, repeats=1,
                              seq_configs=1, precisions=('float32', 'tf32'),
                              precision_configs=[4])
  f32, tf32 = out
  assert (f32['precision'], tf32['precision']) == ('float32', 'tf32')
  assert [r['C'] for r in f32['vmapped']] == [2, 4]
  assert [r['C'] for r in tf32['vmapped']] == [4]
  assert f32['sequential']['config_steps_per_s'] > 0
  assert tf32['sequential'] is None
  assert 'speedup_vs_sequential' not in tf32['vmapped'][0]
  for res in out:
    for row in res['vmapped']:
      assert row['config_steps_per_s'] > 0
      assert row['min_bytes_per_config_step'] < row['bytes_per_config_step']
      assert row['roofline_min_bytes']['H200']['config_steps_per_s'] > (
          row['roofline']['H200']['config_steps_per_s'])
      assert row['fraction_of_byte_roof_min'] is None       # a CPU
  # A CPU computes tf32 in float32: the same step, the same counts.
  assert (tf32['vmapped'][0]['flops_per_config_step']
          == f32['vmapped'][1]['flops_per_config_step'])
  with pytest.raises(ValueError, match="'fp16' is not one of"):
    bench_sweep.bench_all(['mf'], [2], 2, 1, 1, precisions=('fp16',))
