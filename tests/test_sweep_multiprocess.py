"""Sweeps across processes: two at once (``jax.distributed``, localhost
coordinator), and one killed while orbax writes a checkpoint in the background.

Two local processes with two CPU devices each run ``experiments.sweep
--distributed``: the configs are sharded over all four devices, orbax writes
one checkpoint cooperatively, a second launch resumes it, and the results
equal a one-process run over four devices bit for bit (the same blocks of
configs run the same one-device executables; docs/method.md#sweeps-at-scale).
"""

import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pandas as pd
import pytest

from monosem_jax.experiments.configs import recommender as rec_configs
from monosem_jax.recommenders import train
from monosem_jax.sweep import checkpoint
from monosem_jax.sweep.runner import RESULTS_CSV

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(devices: int) -> dict:
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                      f' --xla_force_host_platform_device_count={devices}'
                      ).strip()
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  return env


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _sweep_args(rec_dir: str, workdir: str, epochs: int) -> list[str]:
  return [sys.executable, '-m', 'experiments.sweep',
          '--config=experiments/configs/sweep.py:synthetic,mf',
          f'--config.recommender_workdir={rec_dir}', f'--workdir={workdir}',
          f'--config.epochs={epochs}', '--config.spec.steps_per_epoch=3',
          '--config.spec.batch_users=64', '--config.spec.batch_items=64',
          "--config.grid.lambda_pred=(0.0, 1.0, 10.0)",
          "--config.grid.dict_size=(8, 16)", '--config.grid.rho=None']


def _two_processes(rec_dir: str, workdir: str, epochs: int) -> list[str]:
  port = _free_port()
  procs = [subprocess.Popen(
      _sweep_args(rec_dir, workdir, epochs) + [
          '--distributed', f'--coordinator_address=localhost:{port}',
          '--num_processes=2', f'--process_id={i}'],
      env=_env(2), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(2)]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=600)[0])
  finally:
    for p in procs:
      p.kill()
  for p, out in zip(procs, outs):
    assert p.returncode == 0, "\n=====\n".join(o[-3000:] for o in outs)
  return outs


@pytest.fixture(scope='module')
def rec(tmp_path_factory):
  """A small synthetic MF recommender's workdir."""
  cfg = rec_configs.get_config('synthetic,mf')
  cfg.dataset.options.n_users = 300
  cfg.dataset.options.n_items = 120
  cfg.train.epochs = 2
  workdir = str(tmp_path_factory.mktemp('rec'))
  train.run(cfg, workdir, log=lambda _: None)
  return workdir


@pytest.mark.slow
def test_two_process_sweep_resumes_and_equals_one_process(rec, tmp_path):
  multi, single = str(tmp_path / 'multi'), str(tmp_path / 'single')

  first = _two_processes(rec, multi, epochs=2)
  assert 'on 4 cpu device(s)' in first[0], first[0][-2000:]
  assert 'sweep:' not in first[1]  # process 1 stays quiet
  assert checkpoint.saved_epochs(multi) == [1, 2]
  resumed = _two_processes(rec, multi, epochs=3)
  assert 'resuming from the checkpoint of epoch 2' in resumed[0]

  one = subprocess.run(_sweep_args(rec, single, epochs=3), env=_env(4),
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert one.returncode == 0, one.stderr[-4000:]

  got = pd.read_csv(os.path.join(multi, RESULTS_CSV))
  want = pd.read_csv(os.path.join(single, RESULTS_CSV))
  assert len(got) == 6 and (got.status == 'ok').all()
  pd.testing.assert_frame_equal(got, want, check_exact=True)
  _, _, s_multi, h_multi = checkpoint.restore_sweep(multi)
  _, _, s_single, h_single = checkpoint.restore_sweep(single)
  for a, b in zip(np.asarray(s_multi.sae['W']), np.asarray(s_single.sae['W'])):
    np.testing.assert_array_equal(a, b)
  assert int(s_multi.epoch) == 3 and len(h_multi) == len(h_single) == 3


@pytest.mark.slow
def test_a_sweep_killed_while_saving_in_the_background_resumes_bitwise(
    rec, tmp_path):
  """SIGKILL at some point of a run whose checkpoints are written by orbax in
  the background: the rerun resumes from the last finished one and ends bit
  for bit where an uninterrupted run ends."""
  cut, whole = str(tmp_path / 'cut'), str(tmp_path / 'whole')
  args = lambda w: _sweep_args(rec, w, epochs=40) + ['--config.plan_memory=False']
  proc = subprocess.Popen(args(cut), env=_env(1), cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 300
    while len(checkpoint.saved_epochs(cut)) < 2 and time.time() < deadline:
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)     # mid-run, likely mid-save
  finally:
    proc.kill()
    proc.wait()
  done = checkpoint.saved_epochs(cut)
  assert done and max(done) < 40, done
  logs = []
  for w in (cut, whole):
    run = subprocess.run(args(w), env=_env(1), cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    logs.append(run.stdout)
  assert f'resuming from the checkpoint of epoch {max(done)}' in logs[0]
  got = pd.read_csv(os.path.join(cut, RESULTS_CSV))
  want = pd.read_csv(os.path.join(whole, RESULTS_CSV))
  pd.testing.assert_frame_equal(got, want, check_exact=True)
  _, _, a, _ = checkpoint.restore_sweep(cut)
  _, _, b, _ = checkpoint.restore_sweep(whole)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
