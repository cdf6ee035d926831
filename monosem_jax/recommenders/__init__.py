"""Recommenders: logistic MF and MLP-only NCF as pure functions (docs/method.md#recommenders).

Modules:
  mf, ncf     init / logits / prediction-loss terms as pure functions.
  scorers     the frozen-scorer interface the SAE stage uses (one per kind).
  kinds       the registry of kinds: model, scorer, SAE settings, options.
  config      TrainConfig.
  optimizers  sparse SGD / lazy Adam as optax transformations on row updates.
  loop        one jitted epoch (on-device negatives, shuffle, lax.scan); fit.
  metrics     full-catalogue ranking metrics and the popularity baseline.
  artifact    RecommenderArtifact: the frozen model the SAE stage loads.
  train       the workdir run: load -> baseline -> restore -> fit -> freeze.

This package imports only the model and metric modules eagerly; import the
others by name.

Example:
  >>> import jax
  >>> from monosem_jax.recommenders import kinds
  >>> m = kinds.get('mf').model
  >>> p = m.init(jax.random.PRNGKey(0), n_users=3, n_items=4, dim=2)
  >>> probabilities(m.user_item_logits(p, jax.numpy.array([0]))).shape
  (1, 4)
"""

from __future__ import annotations

import jax

from monosem_jax.recommenders import metrics, mf, ncf

#: Params entries indexed by user / by item (the rest is dense).
USER_TABLES = ('user_emb', 'user_bias')
ITEM_TABLES = ('item_emb', 'item_bias')


def probabilities(logits: jax.Array) -> jax.Array:
  """Scores as probabilities: one sigmoid of the logits."""
  return jax.nn.sigmoid(logits)


__all__ = ['ITEM_TABLES', 'USER_TABLES', 'metrics', 'mf', 'ncf',
           'probabilities']
