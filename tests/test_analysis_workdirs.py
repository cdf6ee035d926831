"""open_sweep reads a finished sweep; sweep_fidelity ranks every config;
README's Python example computes every product exactly."""

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from conftest import assert_exact_products
from monosem_jax.analysis import (fidelity, interventions, neurons, pipeline,
                                  workdirs)
from monosem_jax.errors import WorkdirError
from monosem_jax.recommenders import loop, metrics
from monosem_jax.recommenders.artifact import RecommenderArtifact
from monosem_jax.sae import model


def test_open_sweep_and_fidelity_agree_with_a_direct_computation(sweep_dir):
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  assert view.num_configs == 4 and view.artifact.kind == 'mf'
  table = workdirs.sweep_fidelity(view, k=10, config_chunk=3)
  assert table.config.tolist() == [0, 1, 2, 3]
  assert table.rbo_norm.between(0, 1).all() and table.kendall_tau.notna().all()
  # config 3 by hand: its trimmed SAE, the same scorer and seen-item mask
  sae, hp = view.config(3)
  cfg = model.SAEConfig(**hp['sae_config'])
  split = view.artifact.split
  users_idx = np.asarray(split.sae_test_users)
  users = jnp.asarray(view.artifact.user_emb[users_idx])
  items = jnp.asarray(view.artifact.item_emb)
  seen = workdirs.seen_mask(split, users_idx)
  for u in (0, len(users_idx) - 1):  # the mask is the user's training items
    lo, hi = split.train_indptr()[users_idx[u]:users_idx[u] + 2]
    assert set(np.flatnonzero(seen[u])) == set(split.train_items[lo:hi])
  sae = {k: jnp.asarray(v) for k, v in sae.items()}
  direct = fidelity.ranking_fidelity(
      view.scorer, users, items, model.reconstruct(sae, users, cfg),
      model.reconstruct(sae, items, cfg), jnp.asarray(users_idx),
      jnp.arange(items.shape[0]), jnp.asarray(seen), k=10)
  for key in ('rbo', 'rbo_norm', 'kendall_tau', 'overlap'):
    np.testing.assert_allclose(table[key][3], np.nanmean(direct[key]),
                               rtol=1e-5, atol=1e-6)


def test_sae_of_a_config_is_typed_and_is_the_config_dicts(sweep_dir):
  """Issue 18: per-config access is typed. view.sae(i) is the Codec of
  config i (weights trimmed, its own SAEConfig with the training precision
  kept, its k), the same as the dicts of view.config(i), codes bitwise."""
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  x = view.artifact.item_emb[:20]
  for i in range(view.num_configs):
    sae = view.sae(i)
    params, hp = view.config(i)
    assert isinstance(sae, interventions.Codec)
    assert sae.cfg == dataclasses.replace(model.SAEConfig(**hp['sae_config']),
                                          precision=view.spec.precision)
    assert sae.cfg.dict_size == hp['dict_size'] == params['W'].shape[0]
    assert sae.k == (None if sae.cfg.activation == 'relu' else hp['k'])
    jax.tree.map(np.testing.assert_array_equal, dict(sae.params), params)
    np.testing.assert_array_equal(
        sae.encode(x)[0], interventions.Codec.of(params, hp).encode(x)[0])
  with pytest.raises(IndexError, match=r'config 4 not in \[0, 4\)'):
    view.sae(4)


def test_reconstructed_ndcg_and_hr_match_the_recommender_evaluation(
    sweep_dir):
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  table = workdirs.sweep_fidelity(view, k=10, config_chunk=3)
  art = view.artifact
  split = art.split
  users_idx = np.asarray(split.sae_test_users)
  # independent path: the recommender's own evaluate() in blocks of 16
  # (scatter mask) over full embedding tables
  data = metrics.eval_data_from_split(split, block_size=16, users=users_idx)
  orig = metrics.evaluate(loop.score_fn(art.kind), art.params, data,
                          ks=(10,))
  assert orig['n_users'] > 0 and orig['ndcg@10'] > 0
  np.testing.assert_allclose(table['ndcg@10_original'], orig['ndcg@10'],
                             rtol=1e-5)
  np.testing.assert_allclose(table['hr@10_original'], orig['hr@10'],
                             rtol=1e-5)
  n = art.n_items

  def recon_scores(tables, u):
    return view.scorer.matrix_logits(tables[0][u], tables[1], u,
                                     jnp.arange(n))

  for i in (0, 3):
    sae, hp = view.config(i)
    cfg = model.SAEConfig(**hp['sae_config'])
    sae = {key: jnp.asarray(v) for key, v in sae.items()}
    user_tab = np.array(art.user_emb)
    user_tab[users_idx] = model.reconstruct(sae, jnp.asarray(
        user_tab[users_idx]), cfg)
    item_tab = model.reconstruct(sae, jnp.asarray(art.item_emb), cfg)
    got = metrics.evaluate(recon_scores, (jnp.asarray(user_tab), item_tab),
                           data, ks=(10,))
    np.testing.assert_allclose(table['ndcg@10'][i], got['ndcg@10'],
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(table['hr@10'][i], got['hr@10'],
                               rtol=1e-4, atol=1e-6)
  # the reconstructions change the ranking: not the original numbers again
  assert not np.allclose(table['ndcg@10'], orig['ndcg@10'])


def test_a_changed_recommender_is_refused(sweep_dir, tmp_path):
  with open(sweep_dir / 'rec' / 'frozen' / 'meta.json', 'a') as f:
    f.write(' ')                                  # same model, other bytes
  try:
    with pytest.raises(WorkdirError, match='changed since'):
      workdirs.open_sweep(str(sweep_dir / 'sweep'))
  finally:
    path = sweep_dir / 'rec' / 'frozen' / 'meta.json'
    path.write_text(path.read_text()[:-1])
  with pytest.raises(WorkdirError, match='no sweep.json'):
    workdirs.open_sweep(str(tmp_path))
  assert os.path.isdir(sweep_dir / 'sweep')


def test_open_dataset_reloads_the_concepts(sweep_dir):
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  ds = workdirs.open_dataset(view.artifact)
  assert ds.n_items == view.artifact.n_items
  assert ds.item_concepts.shape[0] == view.artifact.n_items


def test_diverged_configs_are_not_scored(sweep_dir):
  """A sweep with lr = 1e30 once showed ndcg@10 = 1.696 and hr@10 = 1 for its
  diverged configs: their NaN logits ranked every held-out item first."""
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  rng = np.random.default_rng(0)
  sae = {key: np.array(v) for key, v in view.state.sae.items()}
  for v in sae.values():
    v[1] = np.where(rng.random(v[1].shape) < 0.5, -1e30, 1e30)  # lr = 1e30
    v[2] = np.nan                  # not finite, though the flag says it is
  bad = dataclasses.replace(view, state=view.state.replace(
      sae=sae, finite=np.array([True, False, True, True])))
  table = workdirs.sweep_fidelity(bad, k=10)
  good = workdirs.sweep_fidelity(view, k=10)
  measures = ['rbo', 'rbo_norm', 'rbo_ext', 'kendall_tau', 'overlap',
              'ndcg@10', 'hr@10']
  for key in ('ndcg@10', 'hr@10', 'rbo_norm', 'overlap'):
    assert not (table[key] > 1).any(), table[key]
  assert table['finite'].tolist() == [True, False, False, True]
  assert good['finite'].all()
  assert table.loc[[1, 2], measures].isna().all().all()
  np.testing.assert_allclose(table.loc[[0, 3], measures],
                             good.loc[[0, 3], measures], rtol=1e-6)


# Analysis must not trust what it is given (issue 16) ------------------------

class _Stop(Exception):
  """Stands for a kill: raised by the log sink of a running sweep."""


def _stop_at(line: str):
  def log(msg):
    if msg.startswith('epoch') and line in msg:
      raise _Stop(msg)
  return log


def test_an_unfinished_sweep_is_refused_or_marked_in_every_output(
    sweep_dir, tmp_path):
  from conftest import small_sweep_config
  from monosem_jax.analysis import pipeline
  from monosem_jax.sweep.runner import run_sweep
  work = tmp_path / 'cut'      # the fixture's 2-epoch sweep, asked for 4 more
  shutil.copytree(sweep_dir / 'sweep', work,
                  ignore=shutil.ignore_patterns('.lock', 'analysis'))
  with pytest.raises(_Stop):   # killed once epoch 3 is checkpointed
    run_sweep(small_sweep_config(sweep_dir / 'rec', epochs=4), str(work),
              log=_stop_at(' 3/4'))
  with pytest.raises(WorkdirError, match=r'sweep .*cut is unfinished: epoch 3 '
                     r'of 4; finish it by rerunning the sweep command .*pass '
                     r'--config.allow_partial=True'):
    workdirs.open_sweep(str(work))
  view = workdirs.open_sweep(str(work), allow_partial=True)
  assert view.partial and (view.epoch, view.epochs) == (3, 4)
  logs = []
  result = pipeline.analyze_sweep(
      view, workdirs.open_dataset(view.artifact),
      pipeline.AnalysisOptions(k=10, max_users=50, threads=1),
      log=logs.append)
  out = os.path.dirname(result.report_path)
  head = open(result.report_path).read().split('\n## ')[0]
  assert '**Note: analysed at epoch 3 of 4: the sweep is unfinished.**' in head
  assert any('note: analysed at epoch 3 of 4' in line for line in logs)
  for name in os.listdir(out):
    if name.endswith('.csv'):
      table = pd.read_csv(os.path.join(out, name))
      assert (table['epoch'] == 3).all() and (table['of_epochs'] == 4).all()
  # sweep_results.csv is of epoch 2: not mixed into an epoch-3 analysis
  assert 'fve' not in result.fidelity
  assert any('sweep_results.csv is not of epoch 3' in n for n in result.notes)


def _ml1m_recommender(tmp_path):
  from monosem_jax.experiments.configs import recommender as rec_configs
  from monosem_jax.recommenders import train
  from conftest import fixture_dir
  data = tmp_path / 'ml-1m'
  shutil.copytree(fixture_dir('ml-1m'), data)
  cfg = rec_configs.get_config('ml-1m,mf')
  cfg.dataset.data_dir = str(data)
  cfg.dataset.options.paper_parity = False
  cfg.split.n_holdout = 1
  cfg.split.n_test_negatives = 1
  cfg.train.epochs = 1
  train.run(cfg, str(tmp_path / 'rec'), log=lambda _: None)
  return data, tmp_path / 'rec'


def test_labels_edited_after_training_are_refused(tmp_path):
  data, rec = _ml1m_recommender(tmp_path)
  art = RecommenderArtifact.open(str(rec))
  assert workdirs.open_dataset(art).n_items == art.n_items
  assert workdirs.labels_note(art) is None
  movies = data / 'movies.dat'
  original = movies.read_bytes()
  movies.write_bytes(original.replace(b'::Horror\n', b'::Comedy\n'))
  with pytest.raises(WorkdirError, match=r'the labels of ml-1m changed since '
                     r'its recommender .* was trained: item_concepts differ '
                     r'\(read from movies.dat in .*ml-1m\).*retrain'):
    workdirs.open_dataset(art)
  movies.write_bytes(original.replace(b'Toy Tale', b'Toy Story'))
  with pytest.raises(WorkdirError, match='item_titles differ'):
    workdirs.open_dataset(art)
  # a recommender trained before the fingerprint: opened, with a note
  meta = rec / 'frozen' / 'meta.json'
  doc = json.loads(meta.read_text())
  del doc['meta']['labels_sha256']
  meta.write_text(json.dumps(doc))
  old = RecommenderArtifact.open(str(rec))
  assert workdirs.open_dataset(old).n_items == old.n_items
  assert 'does not record a fingerprint of its dataset' in (
      workdirs.labels_note(old))


def test_what_an_older_sweep_cannot_prove_is_noted(sweep_dir, tmp_path):
  from monosem_jax.sweep import checkpoint
  work = tmp_path / 'old'
  shutil.copytree(sweep_dir / 'sweep', work,
                  ignore=shutil.ignore_patterns('.lock', 'analysis'))
  assert workdirs.open_sweep(str(work)).notes == ()
  doc = json.loads((work / checkpoint.SWEEP_JSON).read_text())
  del doc['provenance']['epochs']           # written before it was recorded
  (work / checkpoint.SWEEP_JSON).write_text(json.dumps(doc))
  notes = workdirs.open_sweep(str(work)).notes
  assert len(notes) == 1 and notes[0].startswith(
      'analysed at epoch 2: sweep.json does not record how many epochs')


def test_with_encoder_recodes_every_config_by_pursuit(sweep_dir):
  """Inference-time pursuit on each config's trained decoder: the analysis's
  codes (vmapped over configs), the interventions' Codec and the fidelity's
  reconstructions are all model.pursuit_encode's; refusals in one line."""
  # pylint: disable=import-outside-toplevel
  from monosem_jax.analysis import interventions, pipeline
  from monosem_jax.errors import ConfigError
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  omp = workdirs.with_encoder(view, 'omp', 3, signed=True)
  assert omp.encoder == 'omp, signed, k=3' and view.encoder is None
  x = jnp.asarray(view.artifact.item_emb)
  codes = pipeline.config_activations(omp, x, [1, 3])
  table = workdirs.sweep_fidelity(omp, k=10, max_users=40)
  for j, i in enumerate((1, 3)):
    sae, hp = view.config(i)
    cfg = model.SAEConfig(**hp['sae_config'])
    want = model.pursuit_encode(sae, x, cfg, 3, orthogonal=True, signed=True)
    m = hp['dict_size']
    np.testing.assert_allclose(codes[j][:, :m], want, rtol=1e-5, atol=1e-6)
    assert not codes[j][:, m:].any() and ((codes[j] != 0).sum(1) <= 3).all()
    np.testing.assert_allclose(
        interventions.Codec.of(*omp.config(i)).encode(x)[0], want,
        rtol=1e-5, atol=1e-6)
  own = workdirs.sweep_fidelity(view, k=10, max_users=40)
  assert (table.k == 3).all() and not np.allclose(table.rbo, own.rbo)
  for bad, match in ((dict(method='ksvd'), 'method'), (dict(k=9), r'\[1, 8\]'),
                     (dict(k=0), r'\[1, 8\]')):
    with pytest.raises(ConfigError, match=match):
      workdirs.with_encoder(view, **{'method': 'omp', 'k': 3, **bad})
  with pytest.raises(ConfigError, match='already recoded'):
    workdirs.with_encoder(omp, 'mp', 2)
  with pytest.raises(ConfigError, match='writes its analysis elsewhere'):
    pipeline.analyze_sweep(omp, None)


def test_readme_example_products_are_exact(sweep_dir, tmp_path):
  """README's Python example (and the analysis' codes of configs) on a
  sweep read as if trained in bfloat16, under a caller's TF32 default: every
  matrix product is exact float32 (docs/method.md#precision;
  tests/test_precision.py has the other entry points)."""
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  view = dataclasses.replace(view, spec=dataclasses.replace(
      view.spec, precision='bfloat16'))
  dataset = workdirs.open_dataset(view.artifact)
  art = view.artifact

  def readme():
    workdirs.sweep_fidelity(view, max_users=20)
    codec = view.sae(1)        # its SAEConfig carries precision='bfloat16'
    acts = codec.encode(art.item_emb)[0]
    table = neurons.concept_table(np.asarray(acts), dataset.item_concepts,
                                  dataset.concept_names)
    users = art.split.sae_test_users[:20]
    interventions.steer_users(
        codec, view.scorer, art.user_emb, art.item_emb, users,
        workdirs.seen_mask(art.split, users), int(table.best_neuron[0]),
        [None, 0.0, -1.0], dataset.item_concepts[:, 0], mode='delta')
    pipeline.config_activations(view, art.item_emb, [0, 1])

  assert_exact_products(readme, tmp_path)


def test_fidelity_codes_each_sample_on_its_own():
  """A BatchTopK sweep's fidelity once spent k x (all SAE-test users)
  activations over the whole block, so a user's reconstruction depended on
  the other users ranked with it (and on max_users); now each row is coded
  as the analysis and the export code it (model.per_sample)."""
  import jax
  from monosem_jax.sweep.spec import SweepHparams, SweepSpec
  spec = SweepSpec(kind='mf', dim=6, max_dict_size=12, activation='batchtopk',
                   k_max=2)
  hp = SweepHparams.from_list([dict(dict_size=12, k=2)], spec)
  sae = model.init(jax.random.PRNGKey(0), spec.sae)
  x = np.random.default_rng(0).normal(size=(9, 6)).astype(np.float32)
  x[0] *= 20            # one loud user takes a batch-wide top-k's budget
  one = hp.take(np.arange(1))
  one = jax.tree.map(lambda a: a[0], one)
  together, _ = workdirs._reconstructions(spec, sae, one, jnp.asarray(x),
                                          jnp.asarray(x[:2]))
  alone = np.stack([np.asarray(workdirs._reconstructions(
      spec, sae, one, jnp.asarray(x[i:i + 1]), jnp.asarray(x[:2]))[0])[0]
                    for i in range(len(x))])
  np.testing.assert_allclose(np.asarray(together), alone, rtol=1e-6,
                             atol=1e-6)


def test_fidelity_of_one_side_is_a_diagnostic(sweep_dir):
  """reconstruct='items' keeps the original users (and 'users' the original
  items): the diagnostic docs/results_goal.md reports; both sides at once
  is the analysis's figure; anything else is refused in one line."""
  from monosem_jax.errors import ConfigError
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  both = workdirs.sweep_fidelity(view, k=10, max_users=40)
  items = workdirs.sweep_fidelity(view, k=10, max_users=40,
                                  reconstruct='items')
  users = workdirs.sweep_fidelity(view, k=10, max_users=40,
                                  reconstruct='users')
  for t in (items, users):
    assert not np.allclose(t.rbo, both.rbo)
    assert t['ndcg@10_original'].equals(both['ndcg@10_original'])
  # one side reconstructed agrees with the original more than both do
  assert (items.rbo >= both.rbo - 0.05).all()
  with pytest.raises(ConfigError, match=r"reconstruct='item': one of both"):
    workdirs.sweep_fidelity(view, reconstruct='item')


def test_with_inputs_codes_another_recommenders_embeddings(sweep_dir,
                                                           tmp_path):
  # issue 20, section 6: SAEs trained on one recommender's embeddings,
  # analysed on those of another of the same data and split (the authors'
  # train-on-min-max / analyse-on-raw protocol)
  from monosem_jax.analysis import pipeline  # pylint: disable=import-outside-toplevel
  from monosem_jax.errors import ConfigError  # pylint: disable=import-outside-toplevel
  from monosem_jax.recommenders import artifact  # pylint: disable=import-outside-toplevel
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  raw = view.artifact
  scaled = artifact.minmax_scaled(raw)
  emb = scaled.item_emb
  assert emb.min(0).tolist() == [0.0] * raw.dim
  assert emb.max(0).tolist() == [1.0] * raw.dim
  np.testing.assert_array_equal(scaled.params['item_bias'],
                                raw.params['item_bias'])
  scaled.save(str(tmp_path / 'mm' / 'frozen'))
  other = workdirs.with_inputs(view, str(tmp_path / 'mm'))
  assert other.inputs == str(tmp_path / 'mm') and other.encoder is None
  assert 'analysed here on those of' in other.notes[-1]
  np.testing.assert_array_equal(other.artifact.item_emb, emb)
  # its codes and fidelity are those of the scaled embeddings
  sae, hp = other.config(1)
  codec_cfg = model.SAEConfig(**hp['sae_config'])
  z = model.encode(sae, jnp.asarray(emb), codec_cfg,
                   hp.get('k') or None)
  acts = pipeline.config_activations(other, other.artifact.item_emb, [1])[0]
  np.testing.assert_allclose(acts[:, :z.shape[1]], z, rtol=1e-5, atol=1e-6)
  same = workdirs.sweep_fidelity(workdirs.with_inputs(
      view, str(sweep_dir / 'rec')), max_users=20)
  pd.testing.assert_frame_equal(same, workdirs.sweep_fidelity(
      view, max_users=20))
  moved = workdirs.sweep_fidelity(other, max_users=20)
  assert not np.allclose(moved.rbo, same.rbo)
  # its analysis never overwrites the sweep's own
  with pytest.raises(ConfigError, match='another recommender'):
    pipeline.analyze_sweep(other, workdirs.open_dataset(other.artifact))
  # another width, or another split, is refused in one line
  wide = dataclasses.replace(scaled, params=dict(
      scaled.params, user_emb=np.pad(scaled.user_emb, ((0, 0), (0, 1))),
      item_emb=np.pad(scaled.item_emb, ((0, 0), (0, 1)))))
  wide.save(str(tmp_path / 'wide' / 'frozen'))
  with pytest.raises(WorkdirError, match=r'embedding width is \d+') as e:
    workdirs.with_inputs(view, str(tmp_path / 'wide'))
  assert '\n' not in str(e.value)
  split = raw.split
  moved_split = dataclasses.replace(
      split, sae_test_users=split.sae_test_users[1:],
      sae_train_users=np.sort(np.append(split.sae_train_users,
                                        split.sae_test_users[0])))
  dataclasses.replace(scaled, split=moved_split).save(
      str(tmp_path / 'split' / 'frozen'))
  with pytest.raises(WorkdirError, match='its split differs'):
    workdirs.with_inputs(view, str(tmp_path / 'split'))
