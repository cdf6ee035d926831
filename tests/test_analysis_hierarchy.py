"""Matryoshka prefix groups on a constructed world, against loops."""

import jax
import numpy as np
import pytest

from monosem_jax.analysis import hierarchy, interventions
from monosem_jax.sae import model

N_POPULAR, N_NICHE, N_GENRES = 12, 36, 4


def _world():
  """Items 0-11 popular with 3 genres each; 12-47 niche with one genre.

  Latents 0-3 (group 0) fire on popular items, latents 4-11 (group 1) each
  on niche items of one genre; latent 11 is dead.
  """
  n = N_POPULAR + N_NICHE
  rng = np.random.default_rng(0)
  popularity = np.concatenate([1000 - np.arange(N_POPULAR),
                               100 - np.arange(N_NICHE)])
  table = np.zeros((n, N_GENRES), bool)
  for i in range(N_POPULAR):
    table[i, rng.choice(N_GENRES, 3, replace=False)] = True
  niche_genre = np.arange(N_NICHE) % N_GENRES
  table[N_POPULAR + np.arange(N_NICHE), niche_genre] = True
  acts = np.zeros((n, 12), np.float32)
  acts[:N_POPULAR, :4] = rng.random((N_POPULAR, 4)) + 0.1
  for j in range(4, 11):
    mine = N_POPULAR + np.flatnonzero(niche_genre == j % N_GENRES)
    acts[mine, j] = rng.random(len(mine)) + 0.1
  emb = rng.normal(size=(n, 5))
  return acts, popularity, table, emb


def _per_latent_reference(acts, popularity, table, emb, top):
  """Loops: rank, entropy, cosine of each latent's top firing items."""
  rank = np.argsort(np.argsort(-popularity, kind='stable'), kind='stable')
  unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  out = []
  for j in range(acts.shape[1]):
    order = np.argsort(-acts[:, j], kind='stable')[:top]
    items = order[acts[order, j] > 0]
    if not len(items):
      out.append((np.nan, np.nan, np.nan))
      continue
    counts = table[items].sum(0).astype(float)
    p = counts[counts > 0] / counts.sum()
    cos = [unit[a] @ unit[b] for a in items for b in items if a != b]
    out.append((rank[items].mean(), -(p * np.log2(p)).sum(),
                np.mean(cos) if cos else np.nan))
  return np.array(out)


def test_early_group_is_popular_and_broad_late_group_niche_and_narrow():
  acts, popularity, table, emb = _world()
  t = hierarchy.hierarchy_table(acts, (4, 12), popularity, table, top=8,
                                item_emb=emb)
  assert t.start.tolist() == [0, 4] and t.stop.tolist() == [4, 12]
  assert t.n_latents.tolist() == [4, 8] and t.n_alive.tolist() == [4, 7]
  rank, entropy, cos = t['mean_pop_rank@8'], t['concept_entropy@8'], t[
      'mean_cosine@8']
  assert rank[0] < N_POPULAR <= rank[1]
  assert entropy[0] > 1.0 and entropy[1] == 0.0   # 3 of 4 genres vs one
  ref = _per_latent_reference(acts, popularity, table, emb, top=8)
  for g, (a, b) in enumerate([(0, 4), (4, 11)]):  # latent 11 is dead
    np.testing.assert_allclose(rank[g], ref[a:b, 0].mean())
    np.testing.assert_allclose(entropy[g], ref[a:b, 1].mean(), atol=1e-6)
    np.testing.assert_allclose(cos[g], ref[a:b, 2].mean(), rtol=1e-6)


def test_without_prefixes_one_group_of_every_alive_latent():
  acts, popularity, table, _ = _world()
  t = hierarchy.hierarchy_table(acts, None, popularity, table, top=8)
  assert len(t) == 1 and t.n_alive[0] == 11
  assert 'mean_cosine@8' not in t
  ref = _per_latent_reference(acts, popularity, table, np.ones((48, 2)), 8)
  np.testing.assert_allclose(t['mean_pop_rank@8'][0], np.nanmean(ref[:, 0]))
  same = hierarchy.hierarchy_table(acts, (12,), popularity, table, top=8)
  assert same.equals(t)


def test_prefix_sizes_of_a_matryoshka_config():
  cfg = model.SAEConfig(dim=4, dict_size=12, prefixes=(3, 7), normalize=True,
                        pre_bias=True)
  assert cfg.prefix_sizes == (3, 7, 12)
  p = model.init(jax.random.PRNGKey(0), cfg)
  emb = np.random.default_rng(1).normal(size=(30, 4))
  acts = np.asarray(interventions.Codec(p, cfg).encode(emb)[0])
  t = hierarchy.hierarchy_table(acts, cfg.prefix_sizes, np.arange(30),
                                np.eye(30, 3, dtype=bool), top=5)
  assert t[['start', 'stop']].values.tolist() == [[0, 3], [3, 7], [7, 12]]
  assert (t.n_alive <= t.n_latents).all()
  for bad in ((4, 4), (0, 5), (13,)):
    with pytest.raises(ValueError, match='not increasing'):
      hierarchy.group_bounds(bad, 12)
