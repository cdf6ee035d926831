"""Memory planning from XLA's memory analysis (issue 11, item 5, first part)."""

import numpy as np
import pytest

from experiments import bench_sweep
from monosem_jax.sweep import memory


@pytest.fixture(scope='module')
def mf():
  spec, data, scorer = bench_sweep._workload('mf', 2, 20, 'gram')
  return spec, bench_sweep._params(spec, 8), data, scorer


def test_the_fit_predicts_a_larger_program(mf):
  spec, hparams, data, scorer = mf
  p = memory.plan(spec, hparams, data, scorer, device_bytes=None, margin=0.0)
  assert p.per_config_bytes > 0 and p.shared_bytes > 0
  measured = memory._program_bytes(spec, hparams, data, scorer)   # C = 8
  assert p.bytes_for(8) == pytest.approx(measured, rel=0.15)
  # with the default margin the prediction is not below the measurement
  assert memory.MemoryPlan(p.shared_bytes, p.per_config_bytes,
                           None).bytes_for(8) >= measured


def test_max_configs_and_the_log_line():
  p = memory.MemoryPlan(shared_bytes=100e6, per_config_bytes=1e6,
                        device_bytes=1.15 * 1100e6, margin=0.15)
  assert p.max_configs == 1000      # (1100e6 - 100e6) / 1e6
  assert p.bytes_for(1000) == pytest.approx(1.15 * 1100e6)
  assert 'fits up to 1,000 configs' in p.describe(64)
  cpu = memory.MemoryPlan(100e6, 1e6, None)
  assert cpu.max_configs is None and 'device limit' not in cpu.describe(4)
  assert np.isclose(cpu.bytes_for(0), 115e6)
