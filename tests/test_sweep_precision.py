"""Matmul precision of a sweep (issue 11, item 4; docs/method.md#sweeps-at-scale)."""

import dataclasses

import jax
import numpy as np
import pytest

from monosem_jax.recommenders.kinds import make_scorer
from monosem_jax.sweep import step
from monosem_jax.sweep.metrics import evaluate_configs
from monosem_jax.sweep.spec import SweepConfigError, SweepHparams, SweepSpec
from monosem_jax.sweep.state import SweepInputs, init_sweep


def _case(precision):
  rng = np.random.default_rng(0)
  inputs = SweepInputs.create(rng.normal(size=(64, 8)),
                              rng.normal(size=(48, 8)), np.arange(48))
  spec = SweepSpec(kind='mf', dim=8, max_dict_size=16, precision=precision,
                   scorer_options=dict(batch_users=16, batch_items=16))
  hparams = SweepHparams.grid(spec, lambda_pred=[0.0, 1.0, 10.0])
  return spec, hparams, inputs, make_scorer('mf', {})


def _train(precision, epochs=3):
  spec, hparams, inputs, scorer = _case(precision)
  state = init_sweep(spec, hparams, jax.random.PRNGKey(0))
  for _ in range(epochs):
    state, hist = step.run_epoch(spec, hparams, state, inputs, scorer)
  return state, hist


def test_bfloat16_products_move_the_loss_terms_a_little():
  f32, h32 = _train('float32')
  bf16, h16 = _train('bfloat16')
  assert np.asarray(bf16.finite).all()
  for term in ('loss', 'emb', 'pred'):
    a, b = np.asarray(h32[term]), np.asarray(h16[term])
    assert not np.array_equal(a, b), term        # the casts are real
    np.testing.assert_allclose(b, a, rtol=0.05, err_msg=term)
  w32, w16 = np.asarray(f32.sae['W']), np.asarray(bf16.sae['W'])
  assert 0 < np.abs(w16 - w32).max() < 0.05 * np.abs(w32).max()


def test_the_bfloat16_program_multiplies_bfloat16_operands():
  spec, hparams, inputs, scorer = _case('bfloat16')
  state = init_sweep(spec, hparams, jax.random.PRNGKey(0))
  text = str(jax.make_jaxpr(lambda s: step.epoch(
      spec, hparams, s, inputs, scorer))(state))
  assert 'bf16' in text and 'preferred_element_type=float32' in text
  spec32 = dataclasses.replace(spec, precision='float32')
  text32 = str(jax.make_jaxpr(lambda s: step.epoch(
      spec32, hparams, s, inputs, scorer))(state))
  assert 'bf16' not in text32 and 'HIGHEST' in text32


@pytest.mark.skipif(jax.default_backend() != 'cpu',
                    reason='TF32 differs from float32 on GPUs and TPUs')
def test_tf32_is_float32_on_a_cpu():
  f32, _ = _train('float32', epochs=1)
  tf32, _ = _train('tf32', epochs=1)
  for a, b in zip(jax.tree.leaves(f32), jax.tree.leaves(tf32)):
    np.testing.assert_array_equal(a, b)


def test_evaluation_is_float32_whatever_trained_the_sae():
  state, _ = _train('bfloat16', epochs=1)
  spec, hparams, inputs, scorer = _case('bfloat16')
  users, items = np.asarray(inputs.user_emb[48:]), np.asarray(inputs.item_emb)
  got = evaluate_configs(state, spec, hparams, scorer, users, items)
  want = evaluate_configs(state, dataclasses.replace(spec, precision='float32'),
                          hparams, scorer, users, items)
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_an_unknown_precision_is_refused_by_name():
  with pytest.raises(SweepConfigError, match=r"SweepSpec.precision='fp16': "
                     r"expected 'float32' \| 'tf32' \| 'bfloat16'"):
    SweepSpec(kind='mf', precision='fp16')


def test_bench_precision_compares_every_measure_with_float32():
  import pandas as pd
  from experiments import bench_precision
  cols = {c: [1.0, 2.0] for src, c in bench_precision.MEASURES}
  sweep = pd.DataFrame({**cols, 'status': ['ok', 'ok']})
  fid = pd.DataFrame(cols)
  moved = sweep.copy()
  moved['fve'] = [1.5, 2.0]
  rows = bench_precision.compare({'float32': (sweep, fid, 3.0),
                                  'bfloat16': (moved, fid, 4.0)})
  assert [r['precision'] for r in rows] == ['float32', 'bfloat16']
  assert rows[0]['fve']['max_abs_diff'] == 0.0
  assert rows[1]['fve'] == {'float32_median': 1.5, 'max_abs_diff': 0.5,
                            'median_abs_diff': 0.25}
  assert rows[1]['rbo']['max_abs_diff'] == 0.0 and rows[1]['seconds'] == 4.0
