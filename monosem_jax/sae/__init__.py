"""Sparse autoencoders as pure functions (docs/method.md#sparse-autoencoder),
their training objective (docs/method.md#objective) and their export.

``model``: :class:`SAEConfig`, init / encode / decode / forward, per-sample
  TopK and BatchTopK, pursuit encoders (MP, OMP), Matryoshka prefixes,
  latent masks and the training precision.
``losses``: embedding MSE (also per Matryoshka prefix), L1 and KL sparsity.
``objective``: one config's loss; the prediction-aware term comes from the
  frozen recommender's scorer, passed as an argument, so this package
  imports nothing of the recommenders (which SAE settings go with which
  recommender kind is the kind registry's,
  monosem_jax/recommenders/kinds.py).
``export``: one trained SAE as ``sae.safetensors`` + ``cfg.json``
  (docs/method.md#exported-saes) and :func:`~monosem_jax.sae.export.load_sae`.
"""

from monosem_jax.sae import losses, model
from monosem_jax.sae.model import SAEConfig

__all__ = ['SAEConfig', 'losses', 'model']
