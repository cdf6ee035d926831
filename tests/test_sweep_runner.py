"""End to end: recommender workdir -> sweep -> sweep_results.csv -> load_config."""


import dataclasses

import numpy as np
import pandas as pd
import pytest

from monosem_jax.experiments.configs import recommender as rec_configs
from monosem_jax.experiments.configs import sweep as sweep_configs
from monosem_jax.recommenders import train
from monosem_jax.sweep import checkpoint, memory
from monosem_jax.sweep.runner import RESULTS_CSV, run_sweep


def _train_recommender(workdir, model):
  cfg = rec_configs.get_config(f'synthetic,{model}')
  cfg.dataset.options.n_users = 300
  cfg.dataset.options.n_items = 120
  cfg.train.epochs = 2
  train.run(cfg, str(workdir), log=lambda _: None)
  return str(workdir)


def _sweep_config(rec_dir, model, **grid):
  cfg = sweep_configs.get_config(f'synthetic,{model}')
  cfg.recommender_workdir = rec_dir
  cfg.epochs = 2
  cfg.spec.update({k: 64 for k in ('batch_users', 'batch_items',
                                    'batch_pairs') if k in cfg.spec})
  cfg.spec.steps_per_epoch = 3
  cfg.grid = grid
  return cfg


@pytest.fixture(scope='module')
def mf_dir(tmp_path_factory):
  return _train_recommender(tmp_path_factory.mktemp('rec_mf'), 'mf')


def test_mf_sweep_writes_results_and_resumes(mf_dir, tmp_path):
  cfg = _sweep_config(mf_dir, 'mf', lambda_pred=[0.0, 1.0, 1e30],
                      dict_size=[8, 16])
  logs = []
  table = run_sweep(cfg, str(tmp_path), log=logs.append).table
  assert len(table) == 6
  on_disk = pd.read_csv(tmp_path / RESULTS_CSV)
  assert list(on_disk.columns) == list(table.columns)
  for col in ('lambda_pred', 'dict_size', 'final_loss', 'l0_items',
              'dead_frac', 'fve', 'score_mse', 'status'):
    assert col in on_disk.columns
  # lambda_pred = 1e30 blows up (frozen as diverged); the others train fine.
  assert (on_disk.status[on_disk.lambda_pred > 1e20] == 'diverged').all()
  assert (on_disk.status[on_disk.lambda_pred < 1e20] == 'ok').all()
  ok = on_disk[on_disk.status == 'ok']
  assert ok.l0_items.between(0, 16).all() and ok.fve.notna().all()
  assert any('config-steps/s' in line for line in logs)
  # Rerunning the same command resumes from the last checkpoint: same table.
  again_logs = []
  again = run_sweep(cfg, str(tmp_path), log=again_logs.append).table
  pd.testing.assert_frame_equal(again, table)
  assert any('resuming from the checkpoint of epoch 2' in line
             for line in again_logs)
  # Config i's params and hyper-parameters, trimmed to its dictionary size.
  i = int(table.index[(table.dict_size == 16) & (table.lambda_pred == 0)][0])
  sae, hp = checkpoint.load_config(str(tmp_path), i)
  assert hp['dict_size'] == 16 and hp['lambda_pred'] == 0.0
  assert sae['W'].shape == (16, 16)  # (dict_size, d=16 on synthetic)


def test_a_hook_stops_the_sweep_and_the_rerun_resumes(mf_dir, tmp_path):
  # Typed hooks instead of log text: a subscriber sees every epoch's
  # EpochStats and stops the sweep; the result says so (no CSV), and the
  # epoch is checkpointed for the rerun.
  cfg = _sweep_config(mf_dir, 'mf', lambda_pred=[0.0, 1.0])
  seen = []
  stop = lambda s: seen.append(s) or s.epoch == 1
  result = run_sweep(cfg, str(tmp_path), log=lambda _: None, on_epoch=[stop])
  assert result.stopped and result.table is None and result.epoch == 1
  assert not (tmp_path / RESULTS_CSV).exists()
  assert checkpoint.saved_epochs(str(tmp_path)) == [1]
  assert [(s.epoch, s.epochs, s.num_configs) for s in seen] == [(1, 2, 2)]
  assert seen[0].loss.shape == (2,) and seen[0].finite.all()
  assert result.memory_plan.startswith('memory: the device reports no limit')
  assert result.compile_seconds > 0 and result.steps_per_epoch == 3
  again = run_sweep(cfg, str(tmp_path), log=lambda _: None,
                    on_epoch=[seen.append])
  assert not again.stopped and again.first_epoch == 1 and again.epoch == 2
  assert seen[-1].epoch == 2 and len(again.table) == 2
  assert again.placement.describe() == 'one device'
  assert list(pd.read_csv(tmp_path / RESULTS_CSV).columns) == list(
      again.table.columns)


def test_workdir_of_another_sweep_is_refused(mf_dir, tmp_path):
  run_sweep(_sweep_config(mf_dir, 'mf', lambda_pred=[0.0]), str(tmp_path),
            log=lambda _: None)
  with pytest.raises(ValueError, match='different sweep'):
    run_sweep(_sweep_config(mf_dir, 'mf', lambda_pred=[5.0]), str(tmp_path),
              log=lambda _: None)


def test_ncf_sweep(tmp_path):
  rec = _train_recommender(tmp_path / 'rec', 'ncf')
  cfg = _sweep_config(rec, 'ncf', lambda_pred=[0.0, 10.0], rho=[0.05, 0.1])
  table = run_sweep(cfg, str(tmp_path / 'sweep'), log=lambda _: None).table
  assert len(table) == 4 and (table.status == 'ok').all()
  assert np.isfinite(table.score_mse).all()


def test_missing_recommender_workdir(tmp_path):
  cfg = _sweep_config(str(tmp_path / 'nope'), 'mf', lambda_pred=[0.0])
  with pytest.raises(Exception, match='nope'):
    run_sweep(cfg, str(tmp_path / 'sweep'), log=lambda _: None)


def test_long_sweeps_print_about_twenty_epoch_lines(mf_dir, tmp_path):
  cfg = _sweep_config(mf_dir, 'mf', lambda_pred=[1.0])
  cfg.epochs = 60
  cfg.spec.steps_per_epoch = 1
  cfg.checkpoint_every = 30
  logs = []
  run_sweep(cfg, str(tmp_path), log=logs.append)
  epochs = [int(l.split()[1].split('/')[0]) for l in logs
            if l.startswith('epoch')]
  assert epochs[0] == 1 and epochs[-1] == 60 and len(epochs) == 21
  assert all('ETA' in l for l in logs if l.startswith('epoch'))


def test_configs_that_do_not_fit_run_in_blocks(mf_dir, tmp_path, monkeypatch):
  cfg = _sweep_config(mf_dir, 'mf', lambda_pred=[0.0, 1.0, 10.0],
                      dict_size=[8, 16])
  whole = run_sweep(cfg, str(tmp_path / 'whole'), log=lambda _: None).table
  # A device whose limit, by the plan's own figures, fits 2 of the 6 configs.
  real_plan = memory.plan

  def small_device(*args, **kw):
    p = real_plan(*args, **kw)
    limit = (p.shared_bytes + p.state_bytes_per_config * 6
             + p.per_config_bytes * 2.5) * (1 + p.margin)
    return dataclasses.replace(p, device_bytes=limit)

  monkeypatch.setattr(memory, 'plan', small_device)
  cfg.plan_memory = True      # a CPU reports no limit: plan anyway
  logs = []
  auto = run_sweep(cfg, str(tmp_path / 'auto'), log=logs.append).table
  assert any('in 3 sequential blocks of 2' in line for line in logs), logs
  numeric = [c for c in whole.columns if c != 'status']
  np.testing.assert_allclose(auto[numeric].to_numpy(float),
                             whole[numeric].to_numpy(float), rtol=1e-5,
                             atol=1e-7)
  assert (auto.status == whole.status).all()


def test_config_chunk_is_checked_before_anything_is_written(mf_dir, tmp_path):
  cfg = _sweep_config(mf_dir, 'mf', lambda_pred=[0.0, 1.0])
  cfg.config_chunk = 0
  with pytest.raises(ValueError, match=r'config.config_chunk=0: configs per '
                     'program must be an integer >= 1'):
    run_sweep(cfg, str(tmp_path / 'w'), log=lambda _: None)
  assert not (tmp_path / 'w').exists()


def test_memory_plan_is_skipped_on_a_cpu_and_cached_when_asked(
    mf_dir, tmp_path, monkeypatch):
  # Issue 19, item 3: the plan's two compiles only where they can matter,
  # and a resumed sweep reads the plan from its workdir.
  cfg = _sweep_config(mf_dir, 'mf', lambda_pred=[0.0, 1.0])
  cfg.epochs = 1
  compiles = []
  real = memory._program_bytes
  monkeypatch.setattr(memory, '_program_bytes',
                      lambda *a: compiles.append(1) or real(*a))
  logs = []
  run_sweep(cfg, str(tmp_path / 'auto'), log=logs.append)
  assert compiles == [] and not (tmp_path / 'auto' / memory.PLAN_JSON).exists()
  assert any(line.startswith('memory: the device reports no limit: plan '
                             'skipped') for line in logs), logs
  assert any(line.startswith('compile: ') for line in logs), logs

  cfg.plan_memory = True
  logs = []
  run_sweep(cfg, str(tmp_path / 'plan'), log=logs.append)
  assert len(compiles) == 2 and (tmp_path / 'plan' / memory.PLAN_JSON).exists()
  assert any(line.startswith('memory (XLA') and 'from memory_plan' not in line
             for line in logs), logs
  cfg.epochs = 2                        # resumed: the plan from the workdir
  logs = []
  run_sweep(cfg, str(tmp_path / 'plan'), log=logs.append)
  assert len(compiles) == 2
  assert any(line.startswith('memory (XLA') and line.endswith(
      '(from memory_plan.json)') for line in logs), logs


def test_plan_memory_is_checked_before_anything_is_written(mf_dir, tmp_path):
  cfg = _sweep_config(mf_dir, 'mf', lambda_pred=[0.0, 1.0])
  cfg = type(cfg)(cfg.to_dict())      # a config built by hand, untyped
  cfg.plan_memory = 'yes'
  with pytest.raises(ValueError, match=r"config.plan_memory='yes': expected "
                     'None'):
    run_sweep(cfg, str(tmp_path / 'w'), log=lambda _: None)
  assert not (tmp_path / 'w').exists()
