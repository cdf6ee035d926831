"""The concept labels the analysis matches neurons against
(docs/method.md#concepts): :func:`require_concepts` refuses a dataset
without them, :func:`concept_sets` adds named unions of concepts (e.g.
Last.FM's many metal tags) as concepts of their own. The scores themselves
(purity@K, lift, p-values) are :mod:`monosem_jax.analysis.neurons`'; the
codes of one config are :meth:`monosem_jax.analysis.interventions.Codec.encode`
and of many :func:`monosem_jax.analysis.pipeline.config_activations`.
"""

from __future__ import annotations

import difflib
from typing import Mapping, Sequence

import numpy as np

from monosem_jax.errors import ConfigError


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
