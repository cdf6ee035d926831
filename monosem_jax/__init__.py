"""monosem-jax: interaction-aware monosemantic concepts in recommenders, in JAX.

Flow: ``data`` -> ``recommenders`` -> ``sae`` -> ``sweep`` -> ``analysis``.
"""

__version__ = '0.1.0'
