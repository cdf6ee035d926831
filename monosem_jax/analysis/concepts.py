"""Neuron-to-concept matching: activations, purity@K, concept sets
(docs/method.md#concepts).

purity@K of neuron k for concept c = the fraction of the K items that
activate k most strongly which carry c. Computed for all neurons x concepts
at once (one ``top_k`` and one matrix product), never in a Python loop.

Example:
  >>> import numpy as np
  >>> acts = np.array([[3., 0.], [2., 1.], [0., 5.], [1., 4.]])  # 4 items, 2 neurons
  >>> concepts = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], bool)
  >>> purity_at_k(acts, concepts, k=2).tolist()
  [[1.0, 0.0], [0.0, 1.0]]
"""

from __future__ import annotations

import difflib
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from monosem_jax.analysis import neurons
from monosem_jax.errors import ConfigError
from monosem_jax.sae import model



def require_concepts(dataset) -> None:
  """Refuses, in one line, a dataset whose items have no concept labels: the
  analysis matches neurons against them (docs/method.md#concepts).

  Raises:
    ConfigError: ``dataset.n_concepts == 0`` (e.g. atomic files without
      ``NAME.item``).
  """
  if dataset.n_concepts == 0:
    raise ConfigError(
        f'{dataset.name}: the items have no concept labels, which the '
        'analysis matches neurons against (atomic files: a token_seq field '
        'of NAME.item, chosen by --config.dataset.options.concept_field)')

def sae_config_of(hparams: Mapping[str, Any]) -> model.SAEConfig:
  """The :class:`SAEConfig` of a config loaded with ``checkpoint.load_config``."""
  return model.SAEConfig(**hparams['sae_config'])


def activations(sae_params: Mapping[str, Any], cfg: model.SAEConfig,
                embeddings: np.ndarray, k: int | None = None) -> np.ndarray:
  """``(N, dict_size)`` SAE codes of raw embeddings ``(N, d)``, each sample
  encoded on its own (:func:`monosem_jax.sae.model.per_sample`)."""
  p = jax.tree.map(jnp.asarray, dict(sae_params))
  cfg = model.per_sample(cfg)
  z = jax.jit(lambda x: model.encode(p, x, cfg, k))(jnp.asarray(embeddings, jnp.float32))
  return np.asarray(z)


def top_items(acts: np.ndarray, k: int) -> np.ndarray:
  """``(n_neurons, k)`` indices of each neuron's k most activating items."""
  return neurons.top_items(acts, k)[0]


def purity_at_k(acts: np.ndarray, item_concepts: np.ndarray, k: int = 10
                ) -> np.ndarray:
  """``(n_neurons, n_concepts)`` purity@k.

  A neuron firing on fewer than k items is scored on those items (never on
  arbitrary non-firing ones); a dead neuron scores 0. See
  :func:`monosem_jax.analysis.neurons.concept_scores` for lift and p-values.

  Args:
    acts: ``(n_items, n_neurons)`` activations.
    item_concepts: ``(n_items, n_concepts)`` bool multi-hot.
    k: list length.
  """
  return neurons.concept_scores(acts, item_concepts, (k,))['purity'][0]


def concept_matches(acts: np.ndarray, item_concepts: np.ndarray,
                    concept_names: Sequence[str], k: int = 10) -> pd.DataFrame:
  """:func:`monosem_jax.analysis.neurons.concept_table` at one K."""
  return neurons.concept_table(acts, item_concepts, concept_names, (k,))


def concept_sets(item_concepts: np.ndarray, concept_names: Sequence[str],
                 sets: Mapping[str, Sequence[str]]
                 ) -> tuple[np.ndarray, tuple[str, ...]]:
  """Adds one concept per named set of concepts: an item has it when it
  carries any of the set's concepts (e.g. Last.FM's many metal tags).

  Args:
    item_concepts: ``(n_items, T)`` bool multi-hot.
    concept_names: ``T`` names.
    sets: ``{set name: concept names}``, e.g.
      ``{'metal (any)': ['heavy_metal', 'death_metal', 'black_metal']}``.

  Returns:
    ``(n_items, T + S)`` table and the ``T + S`` names, the sets last in
    the order given.

  Raises:
    ConfigError: a set is empty, names an unknown concept (with the closest
      known names), or is named like an existing concept or another set.

  Example:
    >>> t, names = concept_sets(np.array([[1, 0], [0, 1], [0, 0]], bool),
    ...                         ['rock', 'metal'], {'loud': ['rock', 'metal']})
    >>> names, t[:, 2].tolist()
    (('rock', 'metal', 'loud'), [True, True, False])
  """
  names = tuple(concept_names)
  table = np.asarray(item_concepts, bool)
  column = {n: j for j, n in enumerate(names)}
  cols, seen = [], set(names)
  for set_name, members in sets.items():  # a few sets; each one vectorised
    if set_name in seen:
      raise ConfigError(f'concept set {set_name!r}: a concept of that name '
                        'exists already; give the set another name, e.g. '
                        f'{set_name + " (any)"!r}')
    seen.add(set_name)
    if isinstance(members, str) or not len(members):
      raise ConfigError(f'concept set {set_name!r}: expected a list of '
                        f'concept names, got {members!r}')
    for tag in members:
      if tag not in column:
        close = difflib.get_close_matches(str(tag), names, n=3)
        hint = (f'; did you mean {" or ".join(map(repr, close))}?' if close
                else '')
        raise ConfigError(f'concept set {set_name!r}: unknown concept '
                          f'{tag!r}{hint}')
    cols.append(table[:, [column[t] for t in members]].any(1))
  extra = np.stack(cols, 1) if cols else np.zeros((len(table), 0), bool)
  return np.concatenate([table, extra], 1), names + tuple(sets)
