"""What each Matryoshka prefix group of latents encodes (docs/method.md#concepts).

A Matryoshka SAE with prefixes ``m_1 < ... < m_P = M`` must reconstruct
from its first ``m_1`` latents alone, then from the first ``m_2``, ...: the
early groups should carry broad, popular directions and the later ones
narrower refinements. :func:`hierarchy_table` measures that per group of
latents ``[m_{p-1}, m_p)`` from one config's item activations. Per latent,
on its top-N items (firing items only, as :mod:`neurons` scores them):

* the mean popularity rank of those items (0 = most popular);
* concept breadth: the entropy in bits of the concept distribution of those
  items, each item counting once for each of its concepts, counts
  normalised to sum 1 (0 = one concept; 2 = four concepts equally);
* optionally, the mean pairwise cosine of the recommender's embeddings of
  those items (how tight the group's latents are in embedding space).

Each is averaged over the group's alive latents (those firing on at least
one item; the breadth over those whose items carry any concept, the cosine
over those with two items or more). Without prefixes there is one group.

Example:
  >>> import numpy as np
  >>> acts = np.array([[1., 0.], [1., 0.], [0., 1.], [0., 0.]])
  >>> concepts = np.array([[1, 1], [1, 0], [0, 1], [0, 1]], bool)
  >>> t = hierarchy_table(acts, (1, 2), np.array([4, 3, 2, 1]), concepts,
  ...                     top=2)
  >>> t.stop.tolist(), t.n_alive.tolist(), t['mean_pop_rank@2'].tolist()
  ([1, 2], [1, 1], [0.5, 2.0])
  >>> np.round(t['concept_entropy@2'], 3).tolist()   # 2 A + 1 B vs only B
  [0.918, 0.0]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from monosem_jax.analysis import neurons


def group_bounds(prefix_sizes: Sequence[int] | None, n_latents: int
                 ) -> list[tuple[int, int]]:
  """``[(start, stop), ...]`` of the prefix groups of ``n_latents`` latents.

  ``prefix_sizes`` as ``SAEConfig.prefix_sizes`` (increasing ends; the last
  one is added when it is not ``n_latents``); None or empty: one group.

  >>> group_bounds((4, 8), 16)
  [(0, 4), (4, 8), (8, 16)]
  """
  ends = [int(m) for m in (prefix_sizes or ())]
  if ends and ends[-1] == n_latents:
    ends = ends[:-1]
  ends.append(n_latents)
  if any(b <= a for a, b in zip([0] + ends[:-1], ends)):
    raise ValueError(f'prefix sizes {tuple(prefix_sizes)} are not increasing '
                     f'ends within the {n_latents} latents')
  return list(zip([0] + ends[:-1], ends))


def concept_entropy(acts: np.ndarray, item_concepts: np.ndarray, top: int
                    ) -> np.ndarray:
  """``(M,)`` entropy (bits) of the concept distribution of each latent's
  top-``top`` firing items; NaN when they carry no concept."""
  hits, _ = neurons.top_concept_counts(acts, item_concepts, top)    # (M, T)
  total = hits.sum(1, keepdims=True)
  p = hits / np.maximum(total, 1e-12)
  with np.errstate(divide='ignore', invalid='ignore'):
    h = -np.where(p > 0, p * np.log2(p), 0.0).sum(1)
  return np.where(total[:, 0] > 0, h, np.nan)


def top_item_cosine(acts: np.ndarray, item_emb: np.ndarray, top: int
                    ) -> np.ndarray:
  """``(M,)`` mean pairwise cosine of the embeddings of each latent's
  top-``top`` firing items (NaN with fewer than two).

  With unit vectors ``u_i`` and ``s = sum_i u_i``, the sum over ordered pairs
  ``i != j`` is ``|s|^2 - sum_i |u_i|^2``: ``O(M top d)``, no ``top x top``.
  """
  emb = np.asarray(item_emb, np.float64)
  unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
  idx, fires = neurons.top_items(acts, top)                         # (M, top)
  u = unit[idx] * fires[:, :, None]                                 # (M, top, d)
  n = fires.sum(1)
  pairs = (u.sum(1) ** 2).sum(1) - (u ** 2).sum((1, 2))
  return np.where(n > 1, pairs / np.maximum(n * (n - 1), 1), np.nan)


def _group_means(values: np.ndarray, alive: np.ndarray,
                 bounds: list[tuple[int, int]]) -> list[float]:
  """Mean of ``values`` over the alive, non-NaN latents of each group."""
  ok = alive & ~np.isnan(values)
  return [float(values[a:b][ok[a:b]].mean()) if ok[a:b].any() else np.nan
          for a, b in bounds]  # a handful of groups


def hierarchy_table(acts: np.ndarray, prefix_sizes: Sequence[int] | None,
                    popularity: np.ndarray, item_concepts: np.ndarray,
                    top: int = 50, item_emb: np.ndarray | None = None
                    ) -> pd.DataFrame:
  """One row per prefix group of latents: alive count, popularity, breadth.

  Args:
    acts: ``(n_items, M)`` item activations of one config.
    prefix_sizes: the group ends (``SAEConfig.prefix_sizes``), or None.
    popularity: ``(n_items,)`` users per item.
    item_concepts: ``(n_items, T)`` bool multi-hot.
    top: N, the items per latent looked at.
    item_emb: optional ``(n_items, d)`` recommender item embeddings.

  Returns:
    ``group, start, stop, n_latents, n_alive, mean_pop_rank@N,
    concept_entropy@N`` (bits), and ``mean_cosine@N`` with ``item_emb``;
    means over the group's alive latents (module docstring), NaN for a
    group without any.
  """
  acts = np.asarray(acts, np.float32)
  bounds = group_bounds(prefix_sizes, acts.shape[1])
  alive = (acts > 0).any(0)
  out = {'group': np.arange(len(bounds)),
         'start': [a for a, _ in bounds], 'stop': [b for _, b in bounds],
         'n_latents': [b - a for a, b in bounds],
         'n_alive': [int(alive[a:b].sum()) for a, b in bounds],
         f'mean_pop_rank@{top}': _group_means(
             neurons.mean_top_rank(acts, popularity, top), alive, bounds),
         f'concept_entropy@{top}': _group_means(
             concept_entropy(acts, item_concepts, top), alive, bounds)}
  if item_emb is not None:
    out[f'mean_cosine@{top}'] = _group_means(
        top_item_cosine(acts, item_emb, top), alive, bounds)
  return pd.DataFrame(out)
