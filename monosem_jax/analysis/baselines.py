"""Chance levels of the concept scores (docs/method.md#null-baselines).

"8 pure genres" means little without the level that chance reaches. Beside
the concept tables of the trained SAEs, the analysis scores, with the same
purity@K (:func:`~monosem_jax.analysis.neurons.concept_table`), "neurons"
that learned nothing:

* :func:`dimension_acts`: the recommender's embedding dimensions. A
  dimension is read at both ends: each coordinate, centred on its mean over
  the items, gives two neurons, its positive part ``max(x - mean, 0)`` and
  its negative part ``max(mean - x, 0)`` (``2 d`` neurons). The top-K items
  of a neuron are the K items with the largest (or smallest) coordinate.
* :func:`dimension_acts` of a random rotation of the embeddings
  (:func:`random_rotation`): the same for ``d`` random orthonormal
  directions.
* a random-init SAE of each config's architecture, untrained (the
  pipeline encodes with :func:`monosem_jax.sae.model.init` at
  :data:`NULL_SEED`).
* :func:`label_permutations`: the items' concept labels shuffled over the
  items, ``R`` times (each item keeps a whole label row, so every concept
  keeps its size and the co-occurrences of concepts stay), scored on the
  trained SAE's own top-K lists: the expected number of pure concepts and
  :func:`permutation_p`, the p-value of the observed count.

:func:`best_purity` scores many configs under many labellings in one jitted
program: one ``top_k`` per config, then per labelling a gather of the
labels of each neuron's top-K items; no Python loop over configs, neurons,
items or permutations.

Example:
  >>> import numpy as np
  >>> acts = np.array([[[3., 0.], [2., 0.], [0., 5.], [0., 4.]]])  # 1 config
  >>> labels = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], bool)
  >>> identity = np.arange(4)[None]                                 # R = 1
  >>> purity, pure = best_purity(acts, [2], labels, identity, k=2)
  >>> purity.tolist(), pure.tolist()
  ([[[1.0, 1.0]]], [[[True, True]]])
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

#: Seed of the label permutations, the random rotation and the random SAE.
NULL_SEED = 0
#: Label permutations per analysis (``permutations`` of the analysis config).
DEFAULT_PERMUTATIONS = 20


def dimension_acts(emb: np.ndarray) -> np.ndarray:
  """``(N, 2d)`` the embedding dimensions as neurons (module docstring).

  Args:
    emb: ``(N, d)`` item embeddings.

  Returns:
    float32 ``[max(x - mean, 0), max(mean - x, 0)]``: column ``j`` is the
    positive end of dimension ``j``, column ``d + j`` its negative end.

  >>> dimension_acts(np.array([[1.], [3.], [2.]])).tolist()
  [[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]
  """
  x = np.asarray(emb, np.float64)
  x = x - x.mean(0)
  return np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)],
                        1).astype(np.float32)


def random_rotation(dim: int, seed: int = NULL_SEED) -> np.ndarray:
  """``(d, d)`` a random orthogonal matrix (Haar: the QR factor of a
  Gaussian matrix with the signs of R's diagonal divided out), the same for
  the same seed.

  >>> q = random_rotation(3)
  >>> bool(np.allclose(q @ q.T, np.eye(3)))
  True
  """
  g = np.random.default_rng(seed).standard_normal((dim, dim))
  q, r = np.linalg.qr(g)
  return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def rotated_dimension_acts(emb: np.ndarray, seed: int = NULL_SEED
                           ) -> np.ndarray:
  """``(N, 2d)`` :func:`dimension_acts` of ``emb`` ``(N, d)`` rotated by
  :func:`random_rotation`."""
  x = np.asarray(emb, np.float64)
  return dimension_acts(x @ random_rotation(x.shape[1], seed))


def label_permutations(n_items: int, r: int, seed: int = NULL_SEED
                       ) -> np.ndarray:
  """``(R, N)`` int32, each row a random permutation of the items.

  Labelling ``r`` gives item ``i`` the concepts of item ``perms[r, i]``
  (``item_concepts[perms[r]]``), so each concept keeps its size.
  """
  rng = np.random.default_rng(seed)
  base = np.broadcast_to(np.arange(n_items), (r, n_items))
  return rng.permuted(base, axis=1).astype(np.int32)


@functools.partial(jax.jit, static_argnames='k')
def _best_counts(item_acts, dict_size, concepts, perms, k: int):
  """:func:`best_purity` on the device: ``hits``, ``n`` and ``pure``, each
  ``(C, R, T)``."""

  def one(acts, m):
    vals, idx = jax.lax.top_k(acts.T, k)            # (M, k), ties: lower i
    fires = vals > 0
    n = fires.sum(1, dtype=jnp.int32)                          # (M,)
    valid = jnp.arange(acts.shape[1]) < m

    def labelling(perm):
      lab = concepts[perm[idx]] & fires[:, :, None]            # (M, k, T)
      hits = lab.sum(1, dtype=jnp.int32)                       # (M, T)
      # h / n compares exactly in float32 for n <= k (distinct fractions
      # differ by >= 1 / k^2); invalid latents never win
      purity = jnp.where(valid[:, None] & (n[:, None] > 0),
                         hits / jnp.maximum(n, 1)[:, None], -1.0)
      best = jnp.argmax(purity, 0)                             # (T,)
      t = jnp.arange(hits.shape[1])
      pure = (valid[:, None] & (n[:, None] == k) & (hits == k)).any(0)
      return hits[best, t], jnp.where(valid[best], n[best], 0), pure

    return jax.lax.map(labelling, perms)

  return jax.vmap(one)(item_acts, dict_size)


def best_purity(item_acts, dict_size: Sequence[int], item_concepts,
                perms, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
  """Each concept's best purity@k under each labelling, for many configs.

  The concept table's purity@k (highest purity among the config's latents,
  :func:`~monosem_jax.analysis.neurons.concept_table`) and pure-concept
  flag (:func:`~monosem_jax.analysis.neurons.is_pure`: a latent with k hits
  among k firing items), with the labels ``item_concepts[perms[r]]``.

  Args:
    item_acts: ``(C, N, M)`` item activations (latents past a config's
      ``dict_size`` are ignored).
    dict_size: ``(C,)`` latents of each config.
    item_concepts: ``(N, T)`` bool concept labels.
    perms: ``(R, N)`` int item permutations (``np.arange(N)[None]``: the
      labels as they are).
    k: list length (``<= N``).

  Returns:
    ``purity`` ``(C, R, T)`` float64 (the same values as the concept
    table's: hits / items scored of the best latent, 0 when no latent
    fires) and ``pure`` ``(C, R, T)`` bool.
  """
  hits, n, pure = _best_counts(
      jnp.asarray(item_acts, jnp.float32), jnp.asarray(dict_size, jnp.int32),
      jnp.asarray(item_concepts, bool), jnp.asarray(perms, jnp.int32), k)
  hits, n = np.asarray(hits, np.int64), np.asarray(n, np.int64)
  purity = np.where(n > 0, hits / np.maximum(n, 1), 0.0)
  return purity, np.asarray(pure)


def permutation_p(null: np.ndarray, observed: np.ndarray, axis: int = -1
                  ) -> np.ndarray:
  """``(1 + #{null >= observed}) / (1 + R)``, the permutation p-value
  (``R`` null values along ``axis``; never 0, at least ``1 / (1 + R)``).

  >>> float(permutation_p(np.array([0., 1., 2., 3.]), np.array(2.)))
  0.6
  """
  null = np.asarray(null, np.float64)
  observed = np.expand_dims(np.asarray(observed, np.float64), axis)
  r = null.shape[axis]
  return (1 + (null >= observed).sum(axis)) / (1 + r)


#: The index of :meth:`Chance.summary`: the config, its baselines, the
#: permutation p-values.
SUMMARY_ROWS = ('observed', 'random_sae', 'dims', 'rotated', 'null', 'p')
#: The baselines of :class:`Chance`, as the report names them.
DIMS, ROTATED, RANDOM_SAE, PERMUTED = (
    'embedding dimensions', 'rotated dimensions', 'random-init SAE',
    'label permutations')


class Chance:
  """The chance levels of one analysis, gathered block by block.

  Built once per analysis; :meth:`add` scores a block of configs (their
  trained codes under the true labels and the :data:`permutations` label
  permutations, and the codes of an untrained SAE of the same architecture
  under the true labels), :meth:`concept_columns` and
  :meth:`config_columns` give the columns of ``concepts.csv`` and
  ``fidelity.csv``, :meth:`summary` the report's table.

  Args:
    item_concepts: ``(N, T)`` bool concept labels.
    item_emb: ``(N, d)`` the recommender's item embeddings.
    k: the purity list length (10: the pure-concept count).
    permutations: ``R`` label permutations.
    seed: of the permutations and the rotation (:data:`NULL_SEED`).
  """

  def __init__(self, item_concepts: np.ndarray, item_emb: np.ndarray,
               k: int = 10, permutations: int = DEFAULT_PERMUTATIONS,
               seed: int = NULL_SEED):
    self.concepts = np.asarray(item_concepts, bool)
    n_items = self.concepts.shape[0]
    self.k, self.r, self.seed = int(k), int(permutations), int(seed)
    # labelling 0 is the true one: the observed scores come from the same
    # program as their null
    self.perms = np.concatenate([np.arange(n_items, dtype=np.int32)[None],
                                 label_permutations(n_items, self.r, seed)])
    self.dim = int(np.shape(item_emb)[1])
    dims = np.stack([dimension_acts(item_emb),
                     rotated_dimension_acts(item_emb, seed)])
    purity, pure = best_purity(dims, [2 * self.dim] * 2, self.concepts,
                               self.perms[:1], self.k)
    self.dims = {DIMS: (purity[0, 0], pure[0, 0]),
                 ROTATED: (purity[1, 0], pure[1, 0])}
    self._trained, self._random = [], []

  def add(self, codes, random_codes, dict_size: Sequence[int], n: int
          ) -> None:
    """Scores one block of configs: ``codes`` and ``random_codes``
    ``(C, N, M)`` (trained and untrained SAEs), ``dict_size`` ``(C,)``; the
    first ``n`` configs are kept (the others pad the block)."""
    # the untrained SAE is read under the true labels only (column 0)
    for out, acts, perms in ((self._trained, codes, self.perms),
                             (self._random, random_codes, self.perms[:1])):
      purity, pure = best_purity(acts, dict_size, self.concepts, perms,
                                 self.k)
      out.append((purity[:n], pure[:n]))

  def _scores(self, which) -> tuple[np.ndarray, np.ndarray]:
    """``(C, 1 + R, T)`` purity and pure flags of every config so far
    (``(C, 1, T)`` for the untrained SAE: the true labels only)."""
    return (np.concatenate([p for p, _ in which]),
            np.concatenate([q for _, q in which]))

  def concept_columns(self) -> dict[str, np.ndarray]:
    """Columns of ``concepts.csv`` (``C * T`` rows, config-major as
    ``BlockTables``): ``purity@k_null`` (mean over the permutations),
    ``p_perm@k`` (:func:`permutation_p` of the observed purity),
    ``purity@k_random_sae``, ``purity@k_dims``, ``purity@k_rotated``."""
    purity, _ = self._scores(self._trained)
    random, _ = self._scores(self._random)
    c, k = purity.shape[0], self.k
    return {f'purity@{k}_null': purity[:, 1:].mean(1).reshape(-1),
            f'p_perm@{k}': permutation_p(purity[:, 1:], purity[:, 0],
                                         axis=1).reshape(-1),
            f'purity@{k}_random_sae': random[:, 0].reshape(-1),
            f'purity@{k}_dims': np.tile(self.dims[DIMS][0], c),
            f'purity@{k}_rotated': np.tile(self.dims[ROTATED][0], c)}

  def observed(self) -> tuple[np.ndarray, np.ndarray]:
    """``(C, T)`` each config's purity@k and pure flags under the true
    labels (the concept table's, from this program)."""
    purity, pure = self._scores(self._trained)
    return purity[:, 0], pure[:, 0]

  def config_columns(self) -> dict[str, np.ndarray]:
    """Columns of ``fidelity.csv`` (one per config): ``mean_purity@k``
    (observed, the mean over concepts of the best purity), then for the
    pure-concept count and the mean purity the permutation null's mean
    (``_null``) and :func:`permutation_p` (``_p``), and the random-init
    SAE's value (``_random_sae``)."""
    purity, pure = self._scores(self._trained)
    random, random_pure = self._scores(self._random)
    k = self.k
    count, mean = pure.sum(2), purity.mean(2)                 # (C, 1 + R)
    return {f'mean_purity@{k}': mean[:, 0],
            f'pure_concepts@{k}_null': count[:, 1:].mean(1),
            f'pure_concepts@{k}_p': permutation_p(count[:, 1:], count[:, 0]),
            f'pure_concepts@{k}_random_sae': random_pure[:, 0].sum(1),
            f'mean_purity@{k}_null': mean[:, 1:].mean(1),
            f'mean_purity@{k}_p': permutation_p(mean[:, 1:], mean[:, 0]),
            f'mean_purity@{k}_random_sae': random[:, 0].mean(1)}

  def summary(self, config: int, dict_size: int) -> pd.DataFrame:
    """The report's "observed vs chance" table of config ``config`` of
    ``dict_size`` latents (its position among the configs added, which the
    pipeline adds in order, so its id): one row per scored set of neurons,
    then the permutation p-values; indexed by :data:`SUMMARY_ROWS`."""
    cols = {c: v[config] for c, v in self.config_columns().items()}
    k = self.k
    pure, mean = f'pure concepts@{k}', f'mean best purity@{k}'
    rows = [(f'config {config} (trained)', dict_size,
             self.observed()[1][config].sum(), cols[f'mean_purity@{k}']),
            (f'{RANDOM_SAE} (same architecture, seed {self.seed})',
             dict_size, cols[f'pure_concepts@{k}_random_sae'],
             cols[f'mean_purity@{k}_random_sae'])]
    for name in (DIMS, ROTATED):
      purity, flags = self.dims[name]
      rows.append((f'{name} (+x and -x)', 2 * self.dim, flags.sum(),
                   purity.mean()))
    rows.append((f'{PERMUTED}: mean of {self.r}', dict_size,
                 cols[f'pure_concepts@{k}_null'],
                 cols[f'mean_purity@{k}_null']))
    rows.append((f'p-value of config {config} under the permutations',
                 None, cols[f'pure_concepts@{k}_p'], cols[f'mean_purity@{k}_p']))
    return pd.DataFrame(rows, columns=['neurons', 'count', pure, mean],
                        index=SUMMARY_ROWS)
