"""Frozen scorers: everything the SAE stage needs from a recommender kind.

The kind is chosen once (:func:`~monosem_jax.recommenders.kinds.make_scorer`,
or :meth:`~monosem_jax.recommenders.artifact.RecommenderArtifact.scorer`,
from the kind's options); from then on the sweep, its evaluation and the
analysis call the same small interface, and nothing else branches on the
kind:

``paired`` (static)
  False: a batch is a user batch x an item batch (every user against every
  item, MF). True: a batch is (user, item) pairs row by row (NCF).
``batch_score_matrix`` (static)
  Whether the prediction loss forms each config's batch score matrix (for
  the memory bound of monosem_jax/sweep/memory.py).
``batch_terms(U, I, users, items, precision=EXACT) -> terms``
  The SAE-independent part of the prediction loss of one batch (original
  embeddings ``U``, ``I`` and their indices), computed once and shared by
  every config; under ``stop_gradient``.
``prediction_loss(terms, U, I, U_hat, I_hat, precision=EXACT) -> scalar``
  The prediction-aware loss of reconstructions (docs/method.md#prediction-loss).
``matrix_logits(user_vecs, item_vecs, users=None, items=None) -> (U, I)``
  and ``pair_logits(...) -> (B,)``: logits of arbitrary (e.g. reconstructed)
  embeddings; biases are added where the indices are given.
``eval_terms(U, I) -> terms`` and ``score_mse(terms, U, I, U_hat, I_hat)``
  The mean squared logit error over the whole ``users x items`` matrix, for
  evaluation (the original side computed once for all configs);
  ``eval_config_chunk(n_items)`` how many configs to evaluate at once.

Scorers are pytrees (``flax.struct`` dataclasses): the frozen MLP and biases
are leaves (passed to ``jit`` as data), settings are static fields.

Precision (docs/method.md#precision): the logits and the evaluation terms
are exact float32 (:data:`monosem_jax.precision.EXACT`) whoever calls them;
only the two training methods, ``batch_terms`` and ``prediction_loss``, take
a ``precision`` (the SAE sweep passes ``SweepSpec.precision``'s; default
exact).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from monosem_jax.recommenders import mf
  >>> from monosem_jax.recommenders.kinds import make_scorer
  >>> p = mf.init(jax.random.PRNGKey(0), n_users=5, n_items=4, dim=3)
  >>> s = make_scorer('mf', p)
  >>> U, I = p['user_emb'], p['item_emb']
  >>> float(s.prediction_loss(s.batch_terms(U, I), U, I, U, I))
  0.0
  >>> s.matrix_logits(U, I).shape
  (5, 4)
"""

from __future__ import annotations

from typing import Any, Mapping

import chex
import flax.struct
import jax
import jax.numpy as jnp

from monosem_jax.precision import EXACT, Precision, dot
from monosem_jax.recommenders import mf, ncf

sg = jax.lax.stop_gradient

NCF_LOSSES = ('bce', 'mse')


def _bias(table, idx):
  return 0.0 if table is None or idx is None else sg(table)[idx]


@flax.struct.dataclass
class MFTerms:
  """SAE-independent MF terms: ``U^T U`` ``(d, d)`` (gram) or ``U I^T``."""
  reference: jax.Array


@flax.struct.dataclass
class MFScorer:
  """Logistic MF: logit ``<u, i> + b_u + b_i``; the biases cancel in the
  prediction loss (a difference of logits of the same pairs).

  Attributes:
    user_bias, item_bias: frozen bias tables (added by the logit methods
      when indices are given).
    impl: 'gram' (exact ``d x d`` Gram form, no ``Bu x Bi`` matrix) or
      'direct'.
  """
  user_bias: Any = None
  item_bias: Any = None
  impl: str = flax.struct.field(pytree_node=False, default='gram')

  kind = 'mf'
  paired = False

  @classmethod
  def create(cls, params: Mapping[str, Any],
             options: Mapping[str, Any]) -> 'MFScorer':
    """From trained params and the kind's resolved options
    (monosem_jax/recommenders/kinds.py: ``mf_pred_impl``)."""
    return cls(_table(params, 'user_bias'), _table(params, 'item_bias'),
               impl=options['mf_pred_impl'])

  @property
  def batch_score_matrix(self) -> bool:
    """Whether the prediction loss forms each config's ``Bu x Bi`` score
    matrix of a batch ('direct'; the Gram form does not)."""
    return self.impl == 'direct'

  def batch_terms(self, U, I, users=None, items=None,
                  precision: Precision = EXACT) -> MFTerms:
    del users, items
    chex.assert_equal_shape_suffix([U, I], 1)
    U, I = sg(U), sg(I)
    return MFTerms(dot(U.T, U, precision) if self.impl == 'gram'
                   else dot(U, I.T, precision))

  def prediction_loss(self, terms: MFTerms, U, I, U_hat, I_hat,
                      precision: Precision = EXACT) -> jax.Array:
    if self.impl == 'gram':
      return mf.score_mse_gram(U, I, U_hat, I_hat, terms.reference, precision)
    return mf.score_mse(U, I, U_hat, I_hat, terms.reference, precision)

  def matrix_logits(self, user_vecs, item_vecs, users=None, items=None):
    return mf.matrix_logits(user_vecs, item_vecs,
                            _bias(self.user_bias, users),
                            _bias(self.item_bias, items))

  def pair_logits(self, user_vecs, item_vecs, users=None, items=None):
    return mf.embedding_logits(user_vecs, item_vecs,
                               _bias(self.user_bias, users),
                               _bias(self.item_bias, items))

  def eval_terms(self, U, I) -> MFTerms:
    U, I = sg(U), sg(I)
    return MFTerms(dot(U.T, U))

  def score_mse(self, terms: MFTerms, U, I, U_hat, I_hat) -> jax.Array:
    return mf.score_mse_gram(U, I, U_hat, I_hat, terms.reference)

  def eval_config_chunk(self, n_items: int, budget_bytes: float = 1e9):
    """Configs evaluated at once: all (the Gram form needs ``d x d`` only)."""
    del n_items, budget_bytes
    return None


@flax.struct.dataclass
class NCFTerms:
  """SAE-independent NCF terms of a batch of pairs: the frozen model's
  probabilities ``target`` ``(B,)`` and the pairs' bias logits ``(B,)``."""
  target: jax.Array
  bias: Any


@flax.struct.dataclass
class NCFEvalTerms:
  """Original logits in user chunks ``(n_chunks, chunk, n_items)`` and the
  row weights that drop the padding users."""
  logits: jax.Array
  row_weight: jax.Array


@flax.struct.dataclass
class NCFScorer:
  """MLP-only NCF: logit ``f([u; i]) (+ b_u + b_i)`` through the frozen MLP.

  Attributes:
    mlp: the frozen ``params['mlp']`` list.
    user_bias, item_bias: frozen bias tables or None.
    loss: prediction loss, 'bce' (soft targets) or 'mse' (probabilities).
    eval_chunk: users per block of the evaluation score matrix.
  """
  mlp: Any
  user_bias: Any = None
  item_bias: Any = None
  loss: str = flax.struct.field(pytree_node=False, default='bce')
  eval_chunk: int = flax.struct.field(pytree_node=False, default=128)

  kind = 'ncf'
  paired = True
  batch_score_matrix = False

  @classmethod
  def create(cls, params: Mapping[str, Any],
             options: Mapping[str, Any]) -> 'NCFScorer':
    """From trained params and the kind's resolved options
    (monosem_jax/recommenders/kinds.py: ``pred_loss``)."""
    mlp = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params['mlp'])
    return cls(mlp, _table(params, 'user_bias'), _table(params, 'item_bias'),
               loss=options['pred_loss'])

  def batch_terms(self, U, I, users=None, items=None,
                  precision: Precision = EXACT) -> NCFTerms:
    chex.assert_equal_shape([U, I])  # pairs, row by row
    bias = sg(_bias(self.user_bias, users) + _bias(self.item_bias, items))
    return NCFTerms(ncf.target_probs(self.mlp, U, I, bias, precision), bias)

  def prediction_loss(self, terms: NCFTerms, U, I, U_hat, I_hat,
                      precision: Precision = EXACT) -> jax.Array:
    del U, I
    chex.assert_equal_shape([U_hat, I_hat])
    return ncf.prediction_loss(sg(self.mlp), U_hat, I_hat, terms.target,
                               self.loss, terms.bias, precision)

  def matrix_logits(self, user_vecs, item_vecs, users=None, items=None):
    return ncf.matrix_logits(sg(self.mlp), user_vecs, item_vecs,
                             _bias(self.user_bias, users),
                             _bias(self.item_bias, items))

  def pair_logits(self, user_vecs, item_vecs, users=None, items=None):
    return (ncf.mlp_logits(sg(self.mlp), user_vecs, item_vecs)
            + _bias(self.user_bias, users) + _bias(self.item_bias, items))

  def _chunks(self, users, items):
    n, c = users.shape[0], self.eval_chunk
    u = jnp.pad(users, ((0, (-n) % c), (0, 0))).reshape(-1, c, users.shape[1])
    return jax.lax.map(lambda b: ncf.matrix_logits(sg(self.mlp), b, items), u)

  def eval_terms(self, U, I) -> NCFEvalTerms:
    logits = self._chunks(sg(U), sg(I))
    rows = jnp.arange(logits.shape[0] * self.eval_chunk) < U.shape[0]
    return NCFEvalTerms(logits, rows.reshape(logits.shape[:2]).astype(
        jnp.float32))

  def score_mse(self, terms: NCFEvalTerms, U, I, U_hat, I_hat) -> jax.Array:
    del I
    rec = self._chunks(U_hat, I_hat)
    sse = jnp.sum(terms.row_weight[..., None]
                  * jnp.square(rec - terms.logits))
    return sse / (U.shape[0] * I_hat.shape[0])

  def eval_config_chunk(self, n_items: int, budget_bytes: float = 1e9) -> int:
    """Configs evaluated at once so that each config's first hidden layer
    over a ``(eval_chunk, n_items)`` block stays within ``budget_bytes``."""
    hidden = int(jnp.shape(self.mlp[0]['w'])[1])
    return max(1, int(budget_bytes // (self.eval_chunk * n_items * hidden * 4)))


Scorer = MFScorer | NCFScorer


def _table(params, name):
  return None if params.get(name) is None else jnp.asarray(params[name],
                                                           jnp.float32)
