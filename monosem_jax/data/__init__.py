"""Datasets: loaders, the common :class:`Dataset` type, protocol, samplers and
synthetic world.

Entry points: :func:`load_dataset`; :func:`load_data` (a config's
``dataset`` and ``split`` sections to ``(dataset, split)``).
"""

from monosem_jax.data.dataset import DECADE_BUCKETS, DataError, Dataset
from monosem_jax.data.loaders import DATASETS, load_data, load_dataset
from monosem_jax.data.protocol import Split, make_split
from monosem_jax.data.samplers import SamplerTables, sample_negatives

__all__ = ['DECADE_BUCKETS', 'DATASETS', 'DataError', 'Dataset',
           'SamplerTables', 'Split', 'load_data', 'load_dataset', 'make_split',
           'sample_negatives']
