"""One precision policy: evaluation and analysis exact, training at the spec's
(issue 19, item 1a; docs/method.md#precision).

A CPU computes a float32 product exactly at every precision, so a product
left at the backend's default (TensorFloat-32 on GPUs) passes every
numerical test here and shows only on a GPU. Its lowered program shows it on
a CPU: :func:`conftest.assert_exact_products` runs a public entry point with
JAX's IR dump on (every program it compiles, jitted or eager, closures
included) and requires every ``dot_general`` to carry ``HIGHEST`` on float32
operands. The entry points run under a caller's
``jax.default_matmul_precision('tensorfloat32')``, with an SAE config that
trained in bfloat16, so neither may reach them. README's Python example on
a sweep: tests/test_analysis_workdirs.py.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_exact_products, matrix_products, not_exact
from monosem_jax import load_sae
from monosem_jax.analysis import fidelity, interventions, neuron_stats
from monosem_jax.recommenders import metrics, mf, ncf
from monosem_jax.recommenders.kinds import make_scorer
from monosem_jax.sae import model
from monosem_jax.sae.export import write_sae
from monosem_jax.sweep import step
from monosem_jax.sweep.metrics import evaluate_configs
from monosem_jax.sweep.spec import SweepHparams, SweepSpec
from monosem_jax.sweep.state import SweepInputs, init_sweep

D, N_USERS, N_ITEMS = 4, 12, 10
MODELS = {'mf': mf, 'ncf': ncf}
#: An SAE config trained in bfloat16: its products must not follow it here.
BF16 = model.SAEConfig(dim=D, dict_size=8, activation='topk', k_max=2,
                       precision='bfloat16', normalize=True, pre_bias=True)


@pytest.fixture(scope='module')
def tiny():
  """Frozen MF and NCF models (12 users x 10 items, with biases), their
  scorers and embeddings, and a codec of :data:`BF16`."""
  key = jax.random.PRNGKey(0)
  params = {'mf': mf.init(key, N_USERS, N_ITEMS, D),
            'ncf': ncf.init(key, N_USERS, N_ITEMS, D, use_bias=True)}
  rng = np.random.default_rng(0)
  return dict(params=params,
              codec=interventions.Codec(model.init(key, BF16), BF16, k=2),
              scorers={k: make_scorer(k, p) for k, p in params.items()},
              emb={k: (np.asarray(p['user_emb']), np.asarray(p['item_emb']))
                   for k, p in params.items()},
              seen=rng.random((N_USERS, N_ITEMS)) < 0.2,
              concept=rng.random(N_ITEMS) < 0.4)


def _scorer(t, kind):
  """The scorer's logits and evaluation terms, and the ranking fidelity."""
  s, (U, I) = t['scorers'][kind], t['emb'][kind]
  users, items = jnp.arange(N_USERS), jnp.arange(N_ITEMS)
  s.matrix_logits(U, I, users, items)
  s.pair_logits(U[:N_ITEMS], I, users[:N_ITEMS], items)
  s.score_mse(s.eval_terms(U, I), U, I, U + 0.1, I - 0.1)
  fidelity.ranking_fidelity(s, U, I, U + 0.1, I - 0.1, users, items,
                            t['seen'], k=5)


def _ranking_metrics(t, kind):
  """recommenders.metrics.evaluate over the kind's ``user_item_logits``."""
  rng = np.random.default_rng(1)
  indptr = np.arange(0, 2 * N_USERS + 1, 2)
  data = metrics.make_eval_data(
      N_ITEMS, np.arange(N_USERS), indptr, rng.integers(0, N_ITEMS, 24),
      indptr, rng.integers(0, N_ITEMS, 24), block_size=4)
  metrics.evaluate(MODELS[kind].user_item_logits, t['params'][kind], data,
                   ks=(5,))


def _interventions(t, kind):
  """steer_users, promote_item (one mode each, the other for the other
  kind) and before_after."""
  s, (U, I), codec = t['scorers'][kind], t['emb'][kind], t['codec']
  users = np.arange(6)
  steer, promote = ('replace', 'delta') if kind == 'mf' else ('delta',
                                                              'replace')
  interventions.steer_users(codec, s, U, I, users, t['seen'][users], 1,
                            [None, 0.0, 2.0], t['concept'], mode=steer, k=4)
  interventions.promote_item(codec, s, U, I, users, t['seen'][users], 3, 1,
                             [None, 2.0], mode=promote, threshold=2, k=4)
  interventions.before_after(codec, s, U, I, 0, t['seen'][0], 1, 2.0, k=4)


def _evaluate_configs(t, kind):
  """The sweep's metrics of configs trained in bfloat16."""
  spec = SweepSpec(kind=kind, dim=D, max_dict_size=8, precision='bfloat16')
  hparams = SweepHparams.grid(spec, dict_size=[4, 8])
  state = init_sweep(spec, hparams, jax.random.PRNGKey(0))
  U, I = t['emb'][kind]
  evaluate_configs(state, spec, hparams, t['scorers'][kind], U, I)


@pytest.mark.parametrize('kind', ['mf', 'ncf'])
@pytest.mark.parametrize('run', [_scorer, _ranking_metrics, _interventions,
                                 _evaluate_configs],
                         ids=['scorer_and_fidelity', 'ranking_metrics',
                              'interventions', 'evaluate_configs'])
def test_evaluation_products_are_exact(tiny, kind, run, tmp_path):
  assert_exact_products(lambda: run(tiny, kind), tmp_path)


def test_codes_and_exported_sae_products_are_exact(tiny, tmp_path):
  codec, x = tiny['codec'], tiny['emb']['mf'][1]
  sae = load_sae(write_sae(str(tmp_path / 'sae'), codec.params, codec.cfg,
                           k=2))

  def run():
    z, stats = codec.encode(x)
    codec.decode(z, stats)
    for mode in interventions.MODES:
      interventions.edit(codec, x, 1, 2.0, mode=mode)
    sae.decode(sae.encode(x), x)

  assert_exact_products(run, tmp_path / 'ir')


def test_neuron_table_products_are_exact(tmp_path):
  rng = np.random.default_rng(0)
  n, c, m = 40, 2, 8
  tables = neuron_stats.BlockTables(
      rng.random((n, 3)) < 0.3, ['a', 'b', 'c'], rng.normal(size=(n, D)),
      rng.integers(1, 50, n), ks=(10,), pop_top=20,
      item_decade=rng.integers(0, 3, n), era_top=10)
  acts = np.maximum(rng.normal(size=(c, n, m)), 0).astype(np.float32)
  users = np.maximum(rng.normal(size=(c, 6, m)), 0).astype(np.float32)
  assert_exact_products(lambda: tables(acts, users, [m, m], [0, 1]),
                        tmp_path)


def _epoch_program(kind, precision) -> str:
  rng = np.random.default_rng(0)
  inputs = SweepInputs.create(rng.normal(size=(64, D)),
                              rng.normal(size=(48, D)), np.arange(48))
  params = MODELS[kind].init(jax.random.PRNGKey(0), 64, 48, D)
  options = {'mf': dict(batch_users=16, batch_items=16),
             'ncf': dict(batch_pairs=16, ncf_pairs='random')}[kind]
  spec = SweepSpec(kind=kind, dim=D, max_dict_size=8, steps_per_epoch=2,
                   precision=precision, scorer_options=options)
  hparams = SweepHparams.grid(spec, lambda_pred=[0.0, 1.0])
  state = init_sweep(spec, hparams, jax.random.PRNGKey(0))
  scorer = make_scorer(kind, params)
  with jax.default_matmul_precision('float32'):   # the caller's: ignored
    return jax.jit(lambda s: step.epoch(
        spec, hparams, s, inputs, scorer)).lower(state).as_text()


@pytest.mark.parametrize('kind,precision,expected', [
    ('mf', 'float32', 'HIGHEST'), ('ncf', 'float32', 'HIGHEST'),
    ('mf', 'tf32', 'HIGH'), ('ncf', 'bfloat16', 'DEFAULT')])
def test_training_products_follow_spec_precision(kind, precision, expected):
  products = matrix_products(_epoch_program(kind, precision))
  named = {tuple(re.findall(r'\b(DEFAULT|HIGHEST|HIGH)\b', p))
           for p in products}
  assert products and named == {(expected, expected)}, named
  # bfloat16: the SAE's products on bfloat16 operands, the frozen scorer's
  # on float32 ones (docs/method.md#precision); else no 16-bit operand.
  bf16 = [p for p in products if 'xbf16>' in p]
  assert bool(bf16) == (precision == 'bfloat16')
  assert len(bf16) < len(products)


def test_the_check_catches_a_default_or_bfloat16_product(tmp_path):
  a = jnp.ones((3, 4))
  with pytest.raises(AssertionError, match='1 of 1 products'):
    assert_exact_products(lambda: a @ a.T, tmp_path / 'plain')
  with pytest.raises(AssertionError, match='1 of 1 products'):
    assert_exact_products(lambda: model.matmul(a, a.T, BF16), tmp_path / 'bf')
  assert_exact_products(lambda: jnp.matmul(a, a.T, precision='highest'),
                        tmp_path / 'exact')
  assert not not_exact(matrix_products(jax.jit(
      lambda x: jnp.matmul(x, x.T, precision='highest')).lower(a).as_text()))
