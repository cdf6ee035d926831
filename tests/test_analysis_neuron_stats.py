"""The neuron and concept tables of the device program (analysis/
neuron_stats.py) against the host's (analysis/neurons.py), config by config.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from monosem_jax.analysis import neuron_stats, neurons, pipeline, workdirs
from monosem_jax.data.dataset import DECADE_BUCKETS

#: The float32 sums of the device (neuron_stats' docstring) and their
#: (absolute, relative) tolerance; every other column must be equal, bit
#: for bit. (The host's mean user activation is a float32 sum too, in
#: another order.)
APPROX = {'spearman_popularity': (1e-6, 0), 'ms': (1e-6, 0),
          'user_mean_activation': (1e-6, 1e-5), 'mean_ms': (1e-6, 0)}


def host_tables(i, a, ua, item_concepts, names, emb, popularity, decade, ks,
                pop_top, era_top):
  """Config ``i``'s tables as the host built them before the device program
  (``pipeline._config_tables`` at ba43687), from its own latents."""
  scores = neurons.concept_scores(a, item_concepts, ks)
  nt = neurons.neuron_table(a, item_concepts, names, emb, popularity, ks,
                            pop_top, item_decade=decade, era_top=era_top,
                            user_acts=ua, scores=scores)
  ct = neurons.concept_table(a, item_concepts, names, ks, scores=scores)
  nt.insert(0, 'config', i)
  ct.insert(0, 'config', i)
  row = {'config': i, 'l0_items': neurons.l0(a),
         'l0_users': neurons.l0(ua),
         'pure_concepts@10': len(neurons.pure_concepts(ct, 10)),
         'dead_neurons': int(nt.dead.sum()), 'mean_ms': float(nt.ms.mean())}
  return nt, ct, row


def host_block(item_acts, user_acts, dict_size, configs, *args):
  parts = [host_tables(int(i), a[:, :m], u[:, :m], *args)
           for i, a, u, m in zip(configs, item_acts, user_acts, dict_size)]
  return (pd.concat([p[0] for p in parts], ignore_index=True),
          pd.concat([p[1] for p in parts], ignore_index=True),
          pd.DataFrame([p[2] for p in parts]))


def assert_same(got, want):
  assert list(got.columns) == list(want.columns)
  approx = [c for c in APPROX if c in want]
  pd.testing.assert_frame_equal(got.drop(columns=approx),
                                want.drop(columns=approx), check_exact=True)
  for c in approx:
    assert got[c].dtype == want[c].dtype, c
    atol, rtol = APPROX[c]
    np.testing.assert_allclose(got[c], want[c], rtol=rtol, atol=atol,
                               equal_nan=True, err_msg=c)


def _random_world(seed=0, c=4, n_items=150, n_users=40, m=12):
  """Activations with ties, dead neurons, -0.0, sparse and constant
  neurons and garbage past each dictionary; concepts of repeated sizes
  (p-value ties), an empty and a universal one."""
  rng = np.random.default_rng(seed)
  levels = rng.integers(1, 4, (c, n_items, m)) * rng.choice(
      [0.5, 1.0], (c, 1, m))
  acts = np.where(rng.random((c, n_items, m)) < 0.3, levels, 0.0)
  acts[:, :, 1] = rng.normal(size=(c, n_items)) ** 2     # distinct values
  acts[:, :, 3] = 0.0                                   # dead
  acts[:, :, 4] = 0.0
  acts[:, [7, 40, 99], 4] = [2.0, 2.0, 1.0]             # fires on 3 < K
  acts[:, :, 5] = 1.5                                   # constant: fires on all
  acts[0, ::5, 6] = -0.0
  users = np.where(rng.random((c, n_users, m)) < 0.3,
                   rng.integers(1, 3, (c, n_users, m)), 0.0)
  dict_size = np.array([m, 7, 1, 9])[:c]
  for i, d in enumerate(dict_size):      # ignored by both: garbage past M_c
    acts[i, :, d:] = rng.random((n_items, m - d)) + 0.5
    users[i, :, d:] = 1.0
  concepts = rng.random((n_items, 9)) < 0.15
  concepts[:, 1] = concepts[::-1, 0]          # two pairs of equal sizes
  concepts[:, 3] = np.roll(concepts[:, 2], 11)
  concepts[:, 4] = False                      # an empty concept
  concepts[:, 5] = True                       # every item
  popularity = rng.integers(0, 20, n_items)   # ties
  emb = rng.normal(size=(n_items, 6))
  emb[3] = 0.0
  decade = rng.integers(-1, len(DECADE_BUCKETS), n_items)
  return (acts.astype(np.float32), users.astype(np.float32), dict_size,
          concepts, [f'c{t}' for t in range(9)], emb, popularity, decade)


@pytest.mark.parametrize('seed', [0, 1])
def test_device_tables_equal_host_tables_on_random_activations(seed):
  acts, users, dict_size, concepts, names, emb, pop, decade = _random_world(
      seed)
  ks, pop_top, era_top = (10, 20, 50), 30, 40
  tables = neuron_stats.BlockTables(concepts, names, emb, pop, ks, pop_top,
                                    item_decade=decade, era_top=era_top)
  configs = np.array([5, 6, 7])               # the 4th config pads the block
  got = tables(jnp.asarray(acts), jnp.asarray(users), dict_size, configs)
  want = host_block(acts, users, dict_size, configs, concepts, names, emb,
                    pop, decade, ks, pop_top, era_top)
  for g, w in zip(got, want):
    assert_same(g, w)
  nt = got[0]
  assert nt.dead.any() and nt.spearman_popularity.isna().any()
  assert (nt['n_scored@10'] < 10).any() and nt.best_era.isna().any()
  # p-value ties at equal purity were decided by the lower concept index
  assert set(got[1].best_neuron[got[1].concept == 'c4']) == {0}


def test_device_tables_equal_host_tables_without_eras_and_on_nan():
  acts, users, dict_size, concepts, names, emb, pop, _ = _random_world(2)
  acts[1, 10:20, 2] = np.nan                  # a diverged config's neuron
  acts[3, 30:45, 0] = -1.0                    # a signed pursuit code: l0
  users[3, :5, 1] = -2.0                      # counts it, firing does not
  tables = neuron_stats.BlockTables(concepts, names, emb, pop, (10,), 20)
  got = tables(jnp.asarray(acts), jnp.asarray(users), dict_size, range(4))
  want = host_block(acts, users, dict_size, range(4), concepts, names, emb,
                    pop, None, (10,), 20, 200)
  for g, w in zip(got, want):
    assert_same(g, w)
  assert 'best_era' not in got[0]


def test_ties_are_broken_as_on_the_host():
  n_items, era = 150, DECADE_BUCKETS[4]
  concepts = np.zeros((n_items, 5), bool)
  concepts[:60, 0] = True                     # neuron 0's top 10 are in c0
  concepts[:15, 1] = True                     # and in the rarer c1
  concepts[[*range(100, 110), 140, 141, 142], 2:4] = True   # c3 = c2
  concepts[120:130, 4] = True                 # no neuron fires on c4
  acts = np.zeros((2, n_items, 6), np.float32)
  acts[:, :10, 0] = np.arange(10, 0, -1)
  acts[:, 140:143, 1] = 1.0                   # c2 on 3 items
  acts[:, 100:110, 2] = 1.0                   # c2 on 10: stronger evidence
  acts[:, [*range(20, 28), 148, 149], 4] = 1.0
  acts[:, :, 5] = acts[:, :, 2]               # a copy of neuron 2
  decade = np.full(n_items, 4)
  decade[[148, 149]] = -1                     # 8 of 10 in era 4: p = 1.0
  rng = np.random.default_rng(0)
  users = (rng.random((2, 9, 6)) < 0.5).astype(np.float32)
  emb, pop = rng.normal(size=(n_items, 4)), rng.integers(0, 9, n_items)
  names = [f'c{t}' for t in range(5)]
  tables = neuron_stats.BlockTables(concepts, names, emb, pop, (10,), 10,
                                    item_decade=decade, era_top=10)
  got = tables(jnp.asarray(acts), jnp.asarray(users), [6, 6], [0])
  want = host_block(acts, users, [6], [0], concepts, names, emb, pop,
                    decade, (10,), 10, 10)
  for g, w in zip(got, want):
    assert_same(g, w)
  nt, ct = got[0], got[1]
  # purity ties: the smaller p-value (the rarer concept, the longer list)
  assert nt.best_concept[0] == 'c1'
  assert ct.best_neuron.tolist() == [0, 0, 2, 2, 0]     # full ties: lower
  assert nt.best_concept[2] == 'c2'
  # p-value ties (1.0): the higher lift
  assert nt.era_p_value[4] == 1.0 and nt.best_era[4] == era


@pytest.mark.parametrize('n', [1, 2, 7, 150, 5000])
def test_descending_order_is_top_k_order(n):
  rng = np.random.default_rng(n)
  x = rng.integers(-2, 3, (6, n)).astype(np.float32) * rng.choice(
      [1.0, 0.5, 1e-30, 1e30], (6, n)).astype(np.float32)
  x[0, ::3] = -0.0
  x[1, ::4] = np.nan
  x[2, ::5] = -np.inf
  x[3, ::2] = np.inf
  x[4, ::3] = -np.nan
  vals, idx = jax.jit(neuron_stats.descending_order)(jnp.asarray(x))
  want_vals, want_idx = jax.lax.top_k(jnp.asarray(x), n)
  np.testing.assert_array_equal(idx, want_idx)
  np.testing.assert_array_equal(vals, want_vals)


def test_score_grid_holds_the_host_values():
  # every count triple of a small world, against concept_scores' own
  rng = np.random.default_rng(3)
  concepts = rng.random((60, 5)) < [0.1, 0.3, 0.5, 0.3, 0.9]
  acts = np.where(rng.random((60, 30)) < 0.3, rng.random((60, 30)), 0.0)
  s = neurons.concept_scores(acts, concepts, (10,))
  sizes, u = np.unique(concepts.sum(0), return_inverse=True)
  grid = neuron_stats.ScoreGrid.build(10, sizes, 60)
  n = s['n_scored'][0][:, None]
  hits = np.rint(s['purity'][0] * np.maximum(n, 1)).astype(int)
  for key in ('purity', 'lift', 'p_value'):
    np.testing.assert_array_equal(getattr(grid, key)[n, hits, u],
                                  s[key][0])


def test_pipeline_blocks_equal_host_tables(sweep_dir):
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  dataset = workdirs.open_dataset(view.artifact)
  art = view.artifact
  cfg = dict(ks=(10, 20, 50), pop_top=50, era_top=50)
  users = np.asarray(art.user_emb)[np.asarray(art.split.sae_test_users)]
  tables = neuron_stats.BlockTables(
      dataset.item_concepts, dataset.concept_names, art.item_emb,
      dataset.item_popularity, cfg['ks'], cfg['pop_top'],
      item_decade=dataset.item_decade, era_top=cfg['era_top'])
  per_config = tables.bytes_per_config(view.spec.max_dict_size, len(users))
  events = []
  got = pipeline._neuron_tables(view, dataset, dataset.item_concepts,
                                dataset.concept_names, cfg, events.append,
                                max_bytes=3 * per_config)   # blocks 3 + 1
  c = view.num_configs
  idx = np.arange(c)
  want = host_block(pipeline.config_activations(view, art.item_emb, idx),
                    pipeline.config_activations(view, users, idx),
                    np.asarray(view.hparams.dict_size), idx,
                    dataset.item_concepts, dataset.concept_names,
                    art.item_emb, dataset.item_popularity,
                    dataset.item_decade, cfg['ks'], cfg['pop_top'],
                    cfg['era_top'])
  for g, w in zip(got, want):
    assert_same(g, w)
  assert c == 4 and [(e.stage, e.done, e.total) for e in events] == [
      ('neurons', 3, 4), ('neurons', 4, 4)]


def test_block_memory_estimate_bounds_xla(sweep_dir):
  # XLA's own count of the program's bytes per config stays under the
  # estimate that sizes the blocks.
  view = workdirs.open_sweep(str(sweep_dir / 'sweep'))
  dataset = workdirs.open_dataset(view.artifact)
  art = view.artifact
  tables = neuron_stats.BlockTables(
      dataset.item_concepts, dataset.concept_names, art.item_emb,
      dataset.item_popularity, item_decade=dataset.item_decade)
  n, m, u = art.item_emb.shape[0], view.spec.max_dict_size, 50

  def program_bytes(c):
    mem = neuron_stats.block_stats.lower(
        jnp.zeros((c, n, m)), jnp.zeros((c, u, m)), jnp.ones(c, jnp.int32),
        tables.data, tables.lists).compile().memory_analysis()
    return (mem.argument_size_in_bytes + mem.output_size_in_bytes
            + mem.temp_size_in_bytes)

  per_config = (program_bytes(8) - program_bytes(4)) / 4
  assert 0 < per_config <= tables.bytes_per_config(m, u)
