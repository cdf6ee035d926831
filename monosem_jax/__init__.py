"""monosem-jax: interaction-aware monosemantic concepts in recommenders, in JAX.

Flow: ``data`` -> ``recommenders`` -> ``sae`` -> ``sweep`` -> ``analysis``.

``load_sae(DIR)`` reads one SAE exported by ``python -m experiments.export_sae``
(``monosem_jax/sae/export.py``): ``load_sae(DIR).encode(x)`` gives its codes.

``MONOSEM_COMPILATION_CACHE=DIR`` in the environment turns on JAX's
persistent compilation cache in ``DIR`` when the package is imported
(``monosem_jax/compilation.py``).
"""

from monosem_jax import compilation
from monosem_jax.sae.export import load_sae

compilation.use_persistent_cache()

__version__ = '0.1.0'
__all__ = ['load_sae']
