"""Sparse autoencoders (docs/method.md#sparse-autoencoder) and their losses (docs/method.md#objective) as pure functions.

``model``: init / encode / decode / activations / Matryoshka prefixes.
``losses``: embedding MSE, MF and NCF prediction-aware losses, L1, KL.
"""

from monosem_jax.sae import losses, model
from monosem_jax.sae.model import SAEConfig

__all__ = ['SAEConfig', 'losses', 'model']
