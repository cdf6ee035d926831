"""Epochs, sampling, determinism, checkpoint/resume and quality of training."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import truncate_checkpoint_data

from monosem_jax.experiments.configs import recommender as rc
from monosem_jax import checkpoints
from monosem_jax.data import load_data, loaders, protocol, samplers, synthetic
from monosem_jax.errors import ConfigError
from monosem_jax.recommenders import loop, metrics, train
from monosem_jax.recommenders.config import TrainConfig
from monosem_jax.recommenders.artifact import RecommenderArtifact


@pytest.fixture(scope='module')
def split():
  ds = synthetic.make_world(synthetic.WorldConfig(n_users=150, n_items=80,
                                                  seed=3))
  return protocol.make_split(ds, seed=0)


@pytest.mark.parametrize('n', [1, 2, 3, 17, 1000, 4097])
def test_feistel_permutation_is_a_permutation(n):
  p = np.asarray(samplers.feistel_permutation(jax.random.PRNGKey(n), n))
  assert sorted(p.tolist()) == list(range(n))
  if n > 100:
    assert not np.array_equal(p, np.arange(n))
    q = np.asarray(samplers.feistel_permutation(jax.random.PRNGKey(n + 1), n))
    assert not np.array_equal(p, q)


def test_epoch_batches_cover_positives_and_valid_negatives(split):
  cfg = TrainConfig(batch_size=64)
  users, items, labels, weights, n_bad = jax.jit(
      lambda k: loop.epoch_batches(cfg, k, jnp.asarray(split.train_users),
                                    jnp.asarray(split.train_items),
                                    split.sampler_tables()))(
                                        jax.random.PRNGKey(0))
  users, items, labels, weights = map(lambda a: np.asarray(a).ravel(),
                                      (users, items, labels, weights))
  n = split.n_train
  n_bad = int(n_bad)
  # Negatives are distinct per user (docs/method.md#protocol); on this dense toy world
  # a few users need nearly all their allowed items, and the rare entries
  # left without a fresh item get weight 0.
  assert users.size == -(-2 * n // 64) * 64 and n_bad < 0.05 * n
  assert weights.sum() == 2 * n - n_bad             # padding has weight 0
  pos = (labels == 1) & (weights > 0)
  got = sorted(zip(users[pos].tolist(), items[pos].tolist()))
  assert got == sorted(zip(split.train_users.tolist(),
                           split.train_items.tolist()))
  neg = (labels == 0) & (weights > 0)
  assert neg.sum() == n - n_bad
  # At most one negative per positive, per user, all distinct; never a
  # forbidden item.
  assert (np.bincount(users[neg], minlength=split.n_users)
          <= np.bincount(split.train_users, minlength=split.n_users)).all()
  assert len(set(zip(users[neg].tolist(), items[neg].tolist()))) == neg.sum()
  ind = split.forbidden_indptr
  for u, i in zip(users[neg], items[neg]):
    assert i not in split.forbidden_items[ind[u]:ind[u + 1]]


def test_sample_negatives_heavy_users_compacted_rounds():
  # Users that own most of the catalogue need many redraws.
  ds = synthetic.make_world(synthetic.WorldConfig(
      n_users=40, n_items=30, min_positives=20, mean_positives=25, seed=1))
  split = protocol.make_split(ds, seed=0, n_holdout=1, n_test_negatives=1)
  tables = split.sampler_tables()
  users = jnp.asarray(np.repeat(np.arange(split.n_users), 50))
  items, ok = samplers.sample_negatives(tables, jax.random.PRNGKey(0),
                                       users, full_rounds=1)
  assert bool(ok.all())
  assert not bool(samplers.is_forbidden(tables, users, items).any())


def test_same_seed_is_bitwise_identical_and_seed_matters(split):
  cfg = TrainConfig(kind='ncf', dim=4, hidden=(8, 4), epochs=2,
                          optimizer='sparse_adam', learning_rate=1e-2,
                          reduction='mean', batch_size=64)
  a, ha = loop.fit(cfg, split)
  b, hb = loop.fit(cfg, split)
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
  assert ha == hb
  c, _ = loop.fit(TrainConfig(**{**cfg.__dict__, 'seed': 1}), split)
  assert not np.array_equal(a.params['user_emb'], c.params['user_emb'])


def test_resumed_fit_is_bitwise_identical(split):
  cfg = TrainConfig(kind='mf', dim=4, epochs=3, batch_size=64)
  full, _ = loop.fit(cfg, split)
  half, _ = loop.fit(cfg, split, epochs=1)
  resumed, _ = loop.fit(cfg, split, state=half)
  jax.tree.map(np.testing.assert_array_equal, full, resumed)


def test_short_run_beats_popularity():
  ds = synthetic.make_world(synthetic.WorldConfig(n_users=400, n_items=200,
                                                  seed=0))
  split = protocol.make_split(ds, seed=0)
  data = metrics.eval_data_from_split(split)
  pop = metrics.evaluate_popularity(split, data)
  for cfg in (TrainConfig(kind='mf', dim=16, epochs=8, batch_size=128),
              TrainConfig(kind='ncf', dim=16, epochs=8, batch_size=128,
                                optimizer='sparse_adam', learning_rate=5e-3,
                                reg=0.0, reduction='mean')):
    state, hist = loop.fit(cfg, split)
    assert hist[-1]['loss'] < hist[0]['loss']
    m = metrics.evaluate(loop.score_fn(cfg.kind), state.params, data)
    assert m['ndcg@10'] > pop['ndcg@10'], (cfg.kind, m, pop)


def _small_config(epochs):
  c = rc.get_config('synthetic,mf')
  c.dataset.options.n_users = 120
  c.dataset.options.n_items = 70
  c.model.dim = 4
  c.train.epochs = epochs
  c.train.batch_size = 64
  c.eval.ks = (5, 10)
  return c


def test_run_writes_workdir_and_resumes_bitwise(tmp_path):
  logs = []
  out = train.run(_small_config(3), str(tmp_path / 'full'), log=logs.append)
  assert any(line.startswith('epoch 3/3 loss') for line in logs)
  for name in ('metrics.json', 'config.json', 'frozen/params.npz',
               'frozen/split.npz', 'frozen/meta.json'):
    assert (tmp_path / 'full' / name).exists(), name
  with open(tmp_path / 'full' / 'metrics.json') as f:
    saved = json.load(f)
  assert saved['final']['model'] == out.final['model'] and not out.stopped
  assert out.artifact == str(tmp_path / 'full' / 'frozen')
  assert [e['epoch'] for e in saved['epochs']] == [1, 2, 3]
  assert {'ndcg@10', 'hr@5', 'mrr', 'mpr'} <= set(saved['final']['popularity'])
  assert 'loss' in saved['epochs'][0] and 'metrics' in saved['epochs'][0]

  # Interrupted after 2 epochs, resumed to 3: identical params.
  part = str(tmp_path / 'part')
  train.run(_small_config(2), part, log=lambda s: None)
  logs = []
  train.run(_small_config(3), part, log=logs.append)
  assert any('resumed' in line and 'epoch 2' in line for line in logs)
  a = RecommenderArtifact.load(str(tmp_path / 'full' / 'frozen'))
  b = RecommenderArtifact.load(os.path.join(part, 'frozen'))
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
  with open(os.path.join(part, 'metrics.json')) as f:
    assert [e['epoch'] for e in json.load(f)['epochs']] == [1, 2, 3]


def test_checkpoint_restore_gives_identical_scores(tmp_path, split):
  cfg = TrainConfig(kind='ncf', dim=4, hidden=(8, 4), epochs=1,
                          optimizer='adam', learning_rate=1e-2,
                          reduction='mean', batch_size=64)
  state, hist = loop.fit(cfg, split)
  mngr = train.checkpoint_manager(str(tmp_path / 'ckpt'))
  train.save_checkpoint(mngr, state, hist)
  template = loop.init_state(cfg, split.n_users, split.n_items)
  restored, rh = train.restore_checkpoint(mngr, template)
  assert rh == hist and int(restored.epoch) == 1
  users = jnp.arange(split.n_users)
  np.testing.assert_array_equal(
      loop.score_fn('ncf')(state.params, users),
      loop.score_fn('ncf')(restored.params, users))
  jax.tree.map(np.testing.assert_array_equal, state.opt_state,
               restored.opt_state)


def test_run_refuses_other_config_in_same_workdir(tmp_path):
  train.run(_small_config(1), str(tmp_path), log=lambda s: None)
  c = _small_config(1)
  c.train.learning_rate = 0.1
  with pytest.raises(ValueError, match='another configuration'):
    train.run(c, str(tmp_path), log=lambda s: None)


def test_configs_build():
  for ds in rc.DATASETS:
    for model in rc.MODELS:
      c = rc.get_config(f'{ds},{model}')
      TrainConfig.from_mapping({**c.model.to_dict(),
                                      **c.train.to_dict()})
  c = rc.get_config('ml-1m,mf')
  assert (c.model.dim, c.train.learning_rate, c.train.reg, c.train.epochs,
          c.train.batch_size, c.train.optimizer) == (20, 0.05, 0.01, 10, 256,
                                                     'sgd')
  assert rc.get_config('lastfm-2k,ncf').model.dim == 100
  assert rc.get_config('lastfm-2k,mf').split.alpha == 2.0
  with pytest.raises(ValueError):
    rc.get_config('ml-1m,gmf')


@pytest.mark.realdata
@pytest.mark.slow
def test_ml1m_smoke():
  data_dir = os.environ.get('MONOSEM_DATA_DIR')
  if not data_dir:
    pytest.skip('MONOSEM_DATA_DIR is not set (real ML-1M files needed)')
  c = rc.get_config('ml-1m,mf')
  c.dataset.data_dir = data_dir
  _, split = load_data(c.dataset.to_dict(), c.split.to_dict())
  assert (split.n_users, split.n_items) == (6039, 3706)
  cfg = TrainConfig.from_mapping({**c.model.to_dict(),
                                        **c.train.to_dict(), 'epochs': 2})
  state, hist = loop.fit(cfg, split)
  data = metrics.eval_data_from_split(split)
  m = metrics.evaluate(loop.score_fn('mf'), state.params, data)
  pop = metrics.evaluate_popularity(split, data)
  assert hist[1]['loss'] < hist[0]['loss']
  assert m['ndcg@10'] > pop['ndcg@10'] > 0.05


def test_a_log_sink_that_stops_the_run_keeps_that_epoch(tmp_path):
  class Stop(Exception):
    pass

  def log(line):
    if line.startswith('epoch 2/'):
      raise Stop()

  with pytest.raises(Stop):
    train.run(_small_config(3), str(tmp_path), log=log)
  assert checkpoints.saved_steps(str(tmp_path / 'checkpoints'))[-1] == 2


def test_hooks_get_typed_epochs_and_one_stops_the_run_checkpointed(tmp_path):
  """Issue 18: training has typed hooks and result, as the sweep: a hook
  gets each epoch's EpochStats; one returning True stops the run after that
  epoch (checkpointed, not frozen, a TrainResult says so); the rerun resumes
  bitwise; the progress lines are a subscriber."""
  seen, logs = [], []

  def hook(stats):
    seen.append(stats)
    return stats.epoch == 2

  work = str(tmp_path / 'stopped')
  result = train.run(_small_config(3), work, log=logs.append, on_epoch=[hook])
  assert isinstance(result, train.TrainResult)
  assert (result.stopped, result.epoch, result.epochs) == (True, 2, 3)
  assert result.final is None and result.artifact is None
  assert not os.path.exists(os.path.join(work, 'frozen'))
  assert checkpoints.saved_steps(os.path.join(work, 'checkpoints'))[-1] == 2
  assert [s.epoch for s in seen] == [1, 2]
  assert all(isinstance(s, train.EpochStats) and s.metrics is not None
             and s.loss == h['loss'] for s, h in
             zip(seen, result.metrics['epochs']))
  assert any(line.startswith('epoch 2/3 loss') for line in logs)
  assert any(line.startswith('stopped at epoch 2/3') for line in logs)
  resumed = train.run(_small_config(3), work, log=lambda s: None)
  assert (resumed.stopped, resumed.first_epoch, resumed.epoch) == (False, 2, 3)
  whole = train.run(_small_config(3), str(tmp_path / 'whole'),
                    log=lambda s: None)
  jax.tree.map(np.testing.assert_array_equal,
               RecommenderArtifact.open(work).params,
               RecommenderArtifact.open(whole.workdir).params)
  # the last epoch is not stopped: the run freezes
  last = train.run(_small_config(3), str(tmp_path / 'last'),
                   log=lambda s: None, on_epoch=[lambda s: s.last])
  assert not last.stopped and last.final is not None


def test_a_corrupted_checkpoint_refuses_the_resume_in_one_line(tmp_path):
  from monosem_jax.errors import WorkdirError
  train.run(_small_config(1), str(tmp_path), log=lambda s: None)
  truncate_checkpoint_data(tmp_path / 'checkpoints' / '1')
  with pytest.raises(WorkdirError, match=r'checkpoints/1/state: cannot be '
                     r'read \(.*\); the checkpoint is truncated or corrupt'):
    train.run(_small_config(2), str(tmp_path), log=lambda s: None)


def test_a_dataset_config_with_an_unknown_key_is_refused_naming_the_known():
  with pytest.raises(ConfigError, match=(
      r'^dataset config: unknown key\(s\) nmae; known: name, data_dir, '
      r'options, ')):
    loaders.load_raw_dataset({'name': 'synthetic', 'nmae': 'x'})
