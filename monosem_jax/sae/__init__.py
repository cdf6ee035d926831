"""Sparse autoencoders (docs/method.md#sparse-autoencoder) and their losses (docs/method.md#objective) as pure functions.

``model``: ``SAEConfig``, init / encode / decode, the activations (ReLU,
TopK, BatchTopK, MP / OMP pursuit), Matryoshka prefixes, masking.
``losses``: the embedding MSE (plain and Matryoshka), L1 and KL terms.
``objective``: one config's loss; the prediction-aware term comes from the
frozen scorer, passed in as an argument (this package imports nothing of
the recommenders; which SAE settings go with which recommender kind is the
kind registry's, monosem_jax/recommenders/kinds.py).
``export``: the portable format of one SAE (``write_sae``, ``load_sae``).
"""

from monosem_jax.sae import losses, model
from monosem_jax.sae.model import SAEConfig

__all__ = ['SAEConfig', 'losses', 'model']
