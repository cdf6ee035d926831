"""Interventions: set one SAE neuron to a level and re-rank (docs/method.md#interventions).

An edit encodes raw embeddings ``x`` ``(N, d)`` into codes ``z = encode(x)``,
sets neuron ``k`` of each code to a level, maps the edited code ``z'`` back to
an embedding and lets the frozen scorer rank it against the other side's raw
embeddings. No retraining; the recommender and the SAE stay frozen.

Modes:

* ``'replace'`` (the paper): ``x' = decode(z')`` with ``x``'s own
  normalisation statistics. An unedited vector becomes its reconstruction, so
  the reconstruction error moves the ranking too.
* ``'delta'``: ``x' = x + decode(z') - decode(z)``, computed as
  ``x + ((z' - z) W_dec) * sigma``: the reconstruction error cancels and an
  unedited vector is returned exactly.

Every product (encoder, decoder, the scorer's logits) is exact float32,
whatever precision trained the SAE and whoever calls (docs/method.md#precision).

Levels are absolute activations (``scale='absolute'``) or positions on each
code's own range (``scale='minmax'``): ``z'_k = lo + level * (hi - lo)`` with
``lo, hi`` the min and max of that code (the paper's Last.FM scale).

Use cases, each vectorised over users and levels:

* :func:`steer_users` (suppression and nudging): every user of a group gets
  neuron ``k`` set to each level; measured by the concept's share of the
  top-k list and the collateral RBO of the rest of the list.
* :func:`promote_item`: one target item gets neuron ``k`` set to each level;
  measured by the share of users, among those whose raw rank of the item is
  beyond a threshold, that now rank it within threshold + 10.
* :func:`wrong_direction`: whether a case moved its measure the wrong way at
  its strongest edit; with :data:`INACTIVE_FRACTION`, the flags that
  :func:`~monosem_jax.analysis.use_cases.run_use_cases` records.

Example (MF with a 2-latent tied SAE; delta mode leaves unedited vectors
exactly unchanged):

  >>> import jax.numpy as jnp
  >>> from monosem_jax.sae import model
  >>> cfg = model.SAEConfig(dim=2, dict_size=2, normalize=False, pre_bias=False)
  >>> codec = Codec({'W': jnp.eye(2), 'b_lat': jnp.zeros(2)}, cfg)
  >>> x = jnp.array([[1., 2.], [3., 0.5]])
  >>> edit(codec, x, neuron=0, level=5., mode='delta').tolist()
  [[5.0, 2.0], [5.0, 0.5]]
  >>> bool((edit(codec, x, neuron=0, level=None, mode='delta') == x).all())
  True
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from monosem_jax.analysis import fidelity
from monosem_jax.data.dataset import csr_gather
from monosem_jax.precision import dot
from monosem_jax.recommenders import metrics
from monosem_jax.sae import model

MODES = ('replace', 'delta')
SCALES = ('absolute', 'minmax')


@flax.struct.dataclass
class Codec:
  """One trained SAE as an encoder/decoder pair (a pytree; jit-friendly).

  Attributes:
    params: the SAE's params, trimmed to its dictionary size.
    cfg: its :class:`SAEConfig` (static).
    k: its TopK / BatchTopK ``k`` (static; None for ReLU SAEs).
  """
  params: Any
  cfg: model.SAEConfig = flax.struct.field(pytree_node=False)
  k: int | None = flax.struct.field(pytree_node=False, default=None)

  @classmethod
  def of(cls, params, hparams) -> 'Codec':
    """From ``SweepView.config(i)`` (or ``checkpoint.load_config``)."""
    cfg = model.SAEConfig(**hparams['sae_config'])
    k = hparams.get('k') or None
    return cls(jax.tree.map(jnp.asarray, dict(params)), cfg,
               None if cfg.activation == 'relu' else k)

  @property
  def exact_cfg(self) -> model.SAEConfig:
    """The config of the codec's products: each row encoded on its own,
    every product exact (:func:`monosem_jax.sae.model.per_sample`)."""
    return model.per_sample(self.cfg)

  def encode(self, x: jax.Array) -> tuple[jax.Array, Any]:
    """Codes ``(N, n)`` of raw ``x`` ``(N, d)`` and their NormStats; each
    row encoded on its own (:func:`monosem_jax.sae.model.per_sample`), so a
    user's code never depends on who else is in the group."""
    x_in, stats = model.prepare(x, self.cfg)
    return model.encode_prepared(self.params, x_in, self.exact_cfg,
                                 self.k), stats

  def decode(self, z: jax.Array, stats) -> jax.Array:
    """Embeddings ``(N, d)`` of codes ``z`` ``(N, n)``, with the rows' own
    NormStats (from :meth:`encode`; None without normalisation)."""
    return model.decode(self.params, z, self.exact_cfg, stats)


def _check(mode: str, scale: str):
  if mode not in MODES:
    raise ValueError(f'intervention mode {mode!r}; expected one of {MODES}')
  if scale not in SCALES:
    raise ValueError(f'intervention scale {scale!r}; expected one of {SCALES}')


def set_level(z: jax.Array, neuron, level, scale: str = 'absolute'
              ) -> jax.Array:
  """``z`` ``(N, n)`` with column ``neuron`` set to ``level``.

  Args:
    z: codes.
    neuron: int, or ``(N,)`` ints (one neuron per row).
    level: the new activation (``scale='absolute'``), or a position on each
      row's ``[min, max]`` range (``scale='minmax'``; 0 = the row's minimum,
      1 = its maximum, values outside [0, 1] extrapolate).

  >>> set_level(jnp.array([[0., 2., 4.]]), 0, 0.5, 'minmax').tolist()
  [[2.0, 2.0, 4.0]]
  """
  _check('replace', scale)
  if scale == 'minmax':
    lo, hi = z.min(-1), z.max(-1)
    value = lo + level * (hi - lo)
  else:
    value = jnp.broadcast_to(jnp.asarray(level, z.dtype), z.shape[:-1])
  hit = jnp.arange(z.shape[-1]) == jnp.asarray(neuron)[..., None]
  return jnp.where(hit, value[..., None], z)


def apply_edit(codec: Codec, x: jax.Array, z: jax.Array, z_edit: jax.Array,
               stats, mode: str = 'replace') -> jax.Array:
  """The embedding of an edited code (module docstring for the modes)."""
  _check(mode, 'absolute')
  if mode == 'replace':
    return codec.decode(z_edit, stats)
  dx = dot(z_edit - z, model.decoder_weights(codec.params, codec.cfg))
  if codec.cfg.normalize:
    dx = dx * stats.sigma
  return x + dx


def edit(codec: Codec, x: jax.Array, neuron, level, *, mode: str = 'replace',
         scale: str = 'absolute') -> jax.Array:
  """Edited embeddings ``(N, d)``: neuron ``neuron`` of each code set to
  ``level`` (``level=None``: no edit, i.e. the reconstruction in 'replace'
  mode and ``x`` itself in 'delta' mode)."""
  _check(mode, scale)
  z, stats = codec.encode(x)
  z_edit = z if level is None else set_level(z, neuron, level, scale)
  return apply_edit(codec, x, z, z_edit, stats, mode)


#: The ``level`` label of the unedited code in each mode: the
#: reconstruction in 'replace' mode, the raw vector itself in 'delta' mode.
NO_EDIT = {'replace': 'reconstruction', 'delta': 'unedited'}
#: The raw ranking (no SAE at all), the first row of every table.
RAW = 'raw'
#: A steering case's neuron is *inactive* for its users when their mean
#: activation is at most this fraction of the neuron's largest activation
#: over the SAE-test users (docs/method.md#interventions).
INACTIVE_FRACTION = 0.05


def _level_labels(levels, mode: str) -> list:
  """None is the unedited code (:data:`NO_EDIT`)."""
  return [NO_EDIT[mode] if v is None else float(v) for v in levels]


def numeric_levels(levels) -> np.ndarray:
  """``(L,)`` float levels of a table's ``level`` column; NaN on the raw
  and no-edit rows (also after a CSV round trip, where levels are text).

  >>> numeric_levels(['raw', 'unedited', 1.0, '-0.5']).tolist()
  [nan, nan, 1.0, -0.5]
  """
  return pd.to_numeric(pd.Series(list(levels), dtype=object),
                       errors='coerce').to_numpy(np.float64)


#: Per kind: the measure, which level is the strongest edit, and the
#: direction the measure should move there (-1: down).
_GOAL = {'suppress': ('concept_share', 'min', -1),
         'nudge': ('concept_share', 'max', 1),
         'promote': ('mean_rank', 'max', -1)}


def strongest_change(table: pd.DataFrame, kind: str
                     ) -> tuple[str, float, float, float]:
  """One (case, mode) table of :func:`steer_users` or :func:`promote_item`:
  ``(measure, value with no edit, strongest level, value there)``.

  The strongest edit is the lowest level of a suppression and the highest of
  a nudge or promotion; "no edit" is the no-edit row (the raw row when the
  levels have no None). NaN values when the table has no numeric level.
  """
  measure, strongest, _ = _GOAL[kind]
  levels = numeric_levels(table['level'])
  value = table[measure].to_numpy(np.float64)
  label = table['level'].astype(str).to_numpy()
  base = np.flatnonzero(np.isin(label, list(NO_EDIT.values())))
  base = base[0] if len(base) else np.flatnonzero(label == RAW)[0]
  if np.isnan(levels).all():
    return measure, float(value[base]), np.nan, np.nan
  end = np.nanargmin(levels) if strongest == 'min' else np.nanargmax(levels)
  return measure, float(value[base]), float(levels[end]), float(value[end])


def wrong_direction(table: pd.DataFrame, kind: str) -> bool:
  """Whether one (case, mode) table moved its measure the wrong way at its
  strongest edit (:func:`strongest_change`): a suppression that raises the
  concept share, a nudge that lowers it, a promotion that worsens the
  target's mean rank. NaN measures (no eligible user) are never wrong.

  >>> t = pd.DataFrame({'level': ['raw', 'unedited', 0.0, -1.0],
  ...                   'concept_share': [0.89, 0.89, 0.9, 0.93]})
  >>> wrong_direction(t, 'suppress'), wrong_direction(t, 'nudge')
  (True, False)
  """
  _, before, _, after = strongest_change(table, kind)
  return bool(_GOAL[kind][2] * (after - before) < 0)


def _level_activations(codec, x, neuron, levels, scale) -> jax.Array:
  """``(1 + L,)`` mean over the rows of ``x`` of the neuron's activation:
  unedited (the raw row), then after each level (None: unedited)."""
  z = codec.encode(x)[0]
  return jnp.stack([z[:, neuron].mean()] + [
      (z if v is None else set_level(z, neuron, v, scale))[:, neuron].mean()
      for v in levels])  # a handful of levels


def _stack_levels(codec, x, neuron, levels, mode, scale) -> jax.Array:
  """``(L, N, d)`` edited copies of ``x``, one per level (None = no edit)."""
  return jnp.stack([edit(codec, x, neuron, v, mode=mode, scale=scale)
                    for v in levels])  # a handful of levels


def _group(user_emb, item_emb, users, seen):
  """Device arrays of a user group: ``(users, their embeddings, all item
  embeddings, user indices, item indices, seen mask)``."""
  users = np.asarray(users)
  items = jnp.asarray(item_emb, jnp.float32)
  return (users, jnp.asarray(np.asarray(user_emb)[users], jnp.float32), items,
          jnp.asarray(users), jnp.arange(items.shape[0]),
          jnp.asarray(seen, bool))


def concept_user_group(split, users: np.ndarray, item_concept: np.ndarray,
                       n: int = 20) -> np.ndarray:
  """The ``n`` users (of ``users``) with the highest concept share of their
  training positives, ``|positives with the concept| / |positives|``, highest
  first (ties: lower user index).
  """
  users = np.asarray(users)
  owner, items, _ = csr_gather(split.train_indptr(), split.train_items, users)
  hits = np.bincount(owner, weights=np.asarray(item_concept, bool)[items],
                     minlength=len(users))
  total = np.bincount(owner, minlength=len(users))
  share = hits / np.maximum(total, 1)
  order = np.lexsort((users, -share))
  return users[order[:n]]


#: The interventions' device programs are jitted once at module level, every
#: array an argument, so a program compiles once per shape and setting, not
#: on every call (a closure over the arrays would be a new function each time).
@functools.partial(jax.jit,
                   static_argnames=('neuron', 'levels', 'mode', 'scale', 'k'))
def _steer_program(codec, scorer, u, items, uidx, iidx, seen, concept, *,
                   neuron, levels, mode, scale, k):
  """:func:`steer_users` on the device: per level the group's top-k lists,
  with and without the concept's items, and the neuron's activations."""
  edited = jnp.concatenate(
      [u[None], _stack_levels(codec, u, neuron, levels, mode, scale)])

  def lists(vecs):
    s = scorer.matrix_logits(vecs, items, uidx, iidx)
    top = fidelity.top_k_lists(s, seen, k)
    rest = fidelity.top_k_lists(s, seen | concept[None], k)
    return top, rest
  top, rest = jax.lax.map(lists, edited)                      # (L+1, N, k)
  share = concept[top].mean(-1)                               # (L+1, N)
  return share, rest, _level_activations(codec, u, neuron, levels, scale)


def steer_users(codec: Codec, scorer, user_emb, item_emb, users: np.ndarray,
                seen: np.ndarray, neuron, levels: Sequence[float | None],
                concept_items: np.ndarray, *, mode: str = 'replace',
                scale: str = 'absolute', k: int = 30, p: float = 0.9
                ) -> pd.DataFrame:
  """Suppression / nudging: set the users' neuron to each level, re-rank.

  Args:
    codec: the SAE.
    scorer: the frozen scorer (``matrix_logits``).
    user_emb: ``(n_users, d)`` raw user embeddings; item_emb: ``(n_items, d)``
      raw item embeddings (items are not edited).
    users: ``(N,)`` the group's user indices.
    seen: ``(N, n_items)`` bool, items never recommended (training positives).
    neuron: the neuron to set (int).
    levels: the levels; None = the unedited reconstruction ('replace' mode).
    concept_items: ``(n_items,)`` bool, the items of the neuron's concept.
    k, p: list length and RBO persistence of the collateral measure.

  Returns:
    One row per level, the raw ranking first (``level='raw'``):
    ``concept_share`` (mean over users of the concept's share of the top-k),
    ``collateral_rbo`` (normalised RBO between the raw and the edited list
    once the concept's items are removed from both: how much the rest of the
    list moved), ``activation`` (the users' mean activation of the neuron
    after the edit; unedited on the raw and no-edit rows),
    ``orig_activation`` (mean of the neuron in the users' unedited codes),
    ``n_users``.
  """
  _check(mode, scale)
  users, u, items, uidx, iidx, seen = _group(user_emb, item_emb, users, seen)
  concept = jnp.asarray(concept_items, bool)

  share, rest, act = _steer_program(
      codec, scorer, u, items, uidx, iidx, seen, concept, neuron=neuron,
      levels=tuple(levels), mode=mode, scale=scale, k=k)
  n_levels = rest.shape[0]
  coll = fidelity.list_agreement(
      jnp.tile(rest[0], (n_levels, 1)), rest.reshape(-1, k), p)['rbo_norm']
  coll = coll.reshape(n_levels, -1).mean(1)
  return pd.DataFrame({
      'level': [RAW] + _level_labels(levels, mode),
      'concept_share': np.asarray(share).mean(1),
      'collateral_rbo': coll,
      'activation': np.asarray(act),
      'orig_activation': float(act[0]),
      'n_users': len(users)})


def item_ranks(scores: jax.Array, seen: jax.Array, target: int) -> jax.Array:
  """``(N,)`` 1-based rank of item ``target`` among each row's unseen items
  (ties: the lower index first, as :func:`top_k_lists`); 0 where it is seen.
  A target without a finite score ranks last among the unseen items (as in
  :mod:`monosem_jax.recommenders.metrics`): NaN is never a success.
  """
  scores = metrics.finite_scores(scores)
  t = scores[:, target][:, None]
  idx = jnp.arange(scores.shape[1])
  ahead = (scores > t) | ((scores == t) & (idx < target))
  rank = jnp.sum(ahead & ~seen, axis=1) + 1
  rank = jnp.where(t[:, 0] == -jnp.inf, jnp.sum(~seen, axis=1), rank)
  return jnp.where(seen[:, target], 0, rank)


@functools.partial(jax.jit, static_argnames=('target', 'neuron', 'levels',
                                             'mode', 'scale'))
def _promote_program(codec, scorer, u, items, uidx, iidx, seen, *, target,
                     neuron, levels, mode, scale):
  """:func:`promote_item` on the device: per level every user's rank of the
  edited target, and the target's neuron."""
  tidx = jnp.asarray([target])
  base = scorer.matrix_logits(u, items, uidx, iidx)           # (N, n_items)
  x = items[tidx]
  edited = jnp.concatenate(
      [x[None], _stack_levels(codec, x, neuron, levels, mode, scale)])

  def ranks(t_vec):
    col = scorer.matrix_logits(u, t_vec, uidx, tidx)[:, 0]
    return item_ranks(base.at[:, target].set(col), seen, target)
  return (jax.lax.map(ranks, edited),                         # (L+1, N)
          _level_activations(codec, x, neuron, levels, scale))


def promote_item(codec: Codec, scorer, user_emb, item_emb, users: np.ndarray,
                 seen: np.ndarray, target: int, neuron,
                 levels: Sequence[float | None], *, mode: str = 'replace',
                 scale: str = 'absolute', threshold: int = 20,
                 margin: int = 10, k: int = 30) -> pd.DataFrame:
  """Promotion: set the target item's neuron to each level, re-rank it.

  Only the target item's embedding changes, so every other item keeps its
  score and only the target's rank is recomputed.

  Args:
    codec, scorer, user_emb, item_emb, users, seen: as :func:`steer_users`.
    target: the item to promote.
    neuron: the neuron to set (int).
    levels: the levels; None = the unedited reconstruction ('replace' mode).
    threshold, margin: a user is *eligible* when its raw rank of the target
      is beyond ``threshold``; a success when the new rank is within
      ``threshold + margin`` (1-based ranks among unseen items).
    k: also report the share of eligible users with the target in the top-k.

  Returns:
    One row per level, the raw ranking first: ``success_rate`` (over
    eligible users), ``mean_rank`` (eligible users), ``in_top_k``,
    ``n_eligible`` (users who had the target in their training positives are
    never eligible), ``activation`` (the target's neuron after the edit;
    unedited on the raw and no-edit rows). As in the paper, an eligible user
    whose raw rank is already within ``threshold + margin`` counts as a
    success, so the raw row's ``success_rate`` is the measure's floor, not
    always 0.
  """
  _check(mode, scale)
  users, u, items, uidx, iidx, seen = _group(user_emb, item_emb, users, seen)
  ranks, act = _promote_program(
      codec, scorer, u, items, uidx, iidx, seen, target=int(target),
      neuron=neuron, levels=tuple(levels), mode=mode, scale=scale)
  ranks = np.asarray(ranks)
  eligible = ranks[0] > threshold
  n = int(eligible.sum())
  r = ranks[:, eligible].astype(np.float64)
  with np.errstate(invalid='ignore'):
    return pd.DataFrame({
        'level': [RAW] + _level_labels(levels, mode),
        'success_rate': (r <= threshold + margin).mean(1) if n else np.nan,
        'mean_rank': r.mean(1) if n else np.nan,
        'in_top_k': (r <= k).mean(1) if n else np.nan,
        'n_eligible': n, 'activation': np.asarray(act)})


def before_after(codec: Codec, scorer, user_emb, item_emb, user: int,
                 seen: np.ndarray, neuron, level, *, mode: str = 'replace',
                 scale: str = 'absolute', k: int = 10
                 ) -> tuple[np.ndarray, np.ndarray]:
  """One user's top-k items before (raw) and after setting its neuron.

  Args:
    codec, scorer, user_emb, item_emb: as :func:`steer_users`.
    user: the user index.
    seen: ``(n_items,)`` bool, items never recommended (training positives).
    neuron, level, mode, scale: the edit (:func:`edit`).
    k: list length.

  Returns:
    ``(k,)`` item indices before and after.
  """
  _, u, items, uidx, iidx, mask = _group(user_emb, item_emb, [user],
                                         np.asarray(seen)[None])
  lists = [fidelity.top_k_lists(scorer.matrix_logits(v, items, uidx, iidx),
                                mask, k)[0]
           for v in (u, edit(codec, u, neuron, level, mode=mode, scale=scale))]
  return np.asarray(lists[0]), np.asarray(lists[1])


# --- Neuron choice by effect (docs/method.md#interventions) -----------------

#: How a use case picks its neuron: the concept's best neuron by item purity
#: (the paper), or the neuron whose edit moves the group's measure most
#: through the frozen scorer (:func:`steer_effects`, :func:`promote_effects`).
SELECTS = ('purity', 'effect')
#: Per kind, the direction a good edit moves its measure (-1: down).
GOALS = {kind: goal[2] for kind, goal in _GOAL.items()}
#: Scores ``(N, n_items)`` per neuron edited at once: neurons are vmapped in
#: chunks of ``max(1, EFFECT_CHUNK // (N * n_items))``.
EFFECT_CHUNK = 2 ** 20


def strongest_level(levels: Sequence[float | None], kind: str) -> float:
  """A case's strongest level: the lowest of a suppression, the highest of a
  nudge or promotion (:func:`strongest_change`).

  >>> strongest_level([None, 1.0, 0.0, -1.5], 'suppress')
  -1.5
  """
  values = [float(v) for v in levels if v is not None]
  if not values:
    raise ValueError(f'levels {tuple(levels)}: no numeric level')
  return min(values) if _GOAL[kind][1] == 'min' else max(values)


def _edit_fn(z: jax.Array, level, step, scale: str):
  """``j -> (z', dz)``: column ``j`` set to ``level`` (as :func:`set_level`)
  or raised by ``step`` (absolute; min-max: ``step`` times each row's range
  ``max - min``), and the mean change of that column; ``j = n`` (no such
  column) edits nothing."""
  if (level is None) == (step is None):
    raise ValueError('give one of level= (set the neuron) and step= (add '
                     'to it)')
  if step is not None:
    unit = (z.max(-1) - z.min(-1) if scale == 'minmax'
            else jnp.ones(z.shape[:-1], z.dtype))
    amount = (step * unit)[:, None]
    cols = jnp.arange(z.shape[-1])

    def shifted(j):
      z2 = z + jnp.where(cols == j, amount, 0.0)
      return z2, jnp.where(j < z.shape[-1], amount.mean(), 0.0)
    return shifted

  def set_to(j):
    z2 = set_level(z, j, level, scale)
    return z2, jnp.sum(jnp.where(jnp.arange(z.shape[-1]) == j, z2 - z, 0.0)
                       ) / z.shape[0]
  return set_to


def _chunk(n_rows: int, n_items: int, chunk: int | None) -> int:
  return chunk or max(1, EFFECT_CHUNK // max(1, n_rows * n_items))


def _effect_table(values: dict, base: dict, d_act: np.ndarray,
                  order_by: tuple[str, str], goal: dict) -> pd.DataFrame:
  """One row per neuron, best first: the measures after the edit, their
  changes ``d_*`` from no edit, the per-unit slopes ``effect_* = d_* /
  d_activation``; ordered by ``goal * d_primary``, then ``goal * d_tie``
  (larger first), then the lower neuron."""
  t = pd.DataFrame({'neuron': np.arange(len(d_act)), **values})
  for m in values:
    t[f'd_{m}'] = values[m] - base[m]
  t['d_activation'] = d_act
  with np.errstate(divide='ignore', invalid='ignore'):
    for m in values:
      t[f'effect_{m}'] = np.where(d_act != 0, t[f'd_{m}'] / d_act, np.nan)
  keys = [-np.nan_to_num(goal[m] * t[f'd_{m}'].to_numpy(), nan=-np.inf)
          for m in order_by]
  order = np.lexsort((t.neuron.to_numpy(), keys[1], keys[0]))
  t = t.iloc[order].reset_index(drop=True)
  t.insert(1, 'rank', np.arange(len(t)))
  t.attrs['base'] = base
  return t


@functools.partial(jax.jit, static_argnames=(
    'n', 'level', 'step', 'mode', 'scale', 'k', 'batch_size'))
def _steer_effects_program(codec, scorer, u, items, uidx, iidx, seen, concept,
                           *, n, level, step, mode, scale, k, batch_size):
  """:func:`steer_effects` on the device: per neuron (and ``n``: no edit)
  the group's concept share, logit gap and change of the neuron."""
  unseen = ~seen
  in_c = unseen & concept[None]
  z, stats = codec.encode(u)
  edited = _edit_fn(z, level, step, scale)

  def measure(j):
    z2, dz = edited(j)
    x = apply_edit(codec, u, z, z2, stats, mode)
    s = metrics.finite_scores(scorer.matrix_logits(x, items, uidx, iidx))
    share = concept[fidelity.top_k_lists(s, seen, k)].mean()
    mean_c = jnp.sum(jnp.where(in_c, s, 0.), 1) / jnp.maximum(
        in_c.sum(1), 1)
    mean_all = jnp.sum(jnp.where(unseen, s, 0.), 1) / jnp.maximum(
        unseen.sum(1), 1)
    return share, jnp.mean(mean_c - mean_all), dz
  return jax.lax.map(measure, jnp.arange(n + 1),     # n: no edit
                     batch_size=batch_size)


def steer_effects(codec: Codec, scorer, user_emb, item_emb, users: np.ndarray,
                  seen: np.ndarray, concept_items: np.ndarray, *,
                  level: float | None = None, step: float | None = None,
                  goal: int = -1, mode: str = 'replace',
                  scale: str = 'absolute', k: int = 30,
                  chunk: int | None = None) -> pd.DataFrame:
  """Every neuron's effect on a user group's concept share (docs/method.md#interventions).

  For each neuron ``j`` at once (vmapped in chunks, no loop over neurons or
  users), every user's code gets neuron ``j`` set to ``level`` (as
  :func:`steer_users`) or raised by ``step``; the edited code is mapped
  back (``mode``, as :func:`edit`) and the frozen scorer ranks all items
  again.

  Args:
    codec, scorer, user_emb, item_emb, users, seen, concept_items, mode,
      scale, k: as :func:`steer_users`.
    level, step: the edit, exactly one of them: set the neuron to ``level``
      (a use case's strongest level), or add ``step`` to it (a finite
      difference; on the ``'minmax'`` scale, ``step`` times the code's
      range).
    goal: -1 ranks first the neuron whose edit lowers the share most (a
      suppression), +1 the one that raises it most (a nudge).
    chunk: neurons per vmapped chunk (None: :data:`EFFECT_CHUNK`).

  Returns:
    One row per neuron, best first (``rank`` 0): ``share`` (the group's mean
    concept share of the top-k after the edit), ``gap`` (mean over users of
    the concept's unseen items' mean logit minus all unseen items' mean
    logit), ``d_share``, ``d_gap`` (their changes from the mode's no-edit:
    the reconstruction in 'replace' mode, the raw vectors in 'delta' mode),
    ``d_activation`` (the users' mean change of the neuron), and the
    per-unit slopes ``effect_share = d_share / d_activation``,
    ``effect_gap`` (positive: raising the neuron raises the measure).
    Ordered by ``goal * d_share``, ties by ``goal * d_gap``, then the lower
    neuron. ``attrs['base']``: the no-edit ``share`` and ``gap``.
  """
  _check(mode, scale)
  _, u, items, uidx, iidx, seen = _group(user_emb, item_emb, users, seen)
  concept = jnp.asarray(concept_items, bool)
  n = int(model.decoder_weights(codec.params, codec.cfg).shape[0])
  out = _steer_effects_program(
      codec, scorer, u, items, uidx, iidx, seen, concept, n=n, level=level,
      step=step, mode=mode, scale=scale, k=k,
      batch_size=_chunk(u.shape[0], items.shape[0], chunk))
  share, gap, dz = (np.asarray(a, np.float64) for a in out)
  return _effect_table({'share': share[:n], 'gap': gap[:n]},
                       {'share': share[n], 'gap': gap[n]}, dz[:n],
                       ('share', 'gap'), {'share': goal, 'gap': goal})


@functools.partial(jax.jit, static_argnames=(
    'target', 'n', 'level', 'step', 'mode', 'scale', 'batch_size'))
def _promote_effects_program(codec, scorer, u, items, uidx, seen, *, target,
                             n, level, step, mode, scale, batch_size):
  """:func:`promote_effects` on the device: the raw ranks, and per neuron
  (and ``n``: no edit) every user's rank and logit of the edited target."""
  tidx = jnp.asarray([target])
  base = scorer.matrix_logits(u, items, uidx, jnp.arange(items.shape[0]))
  raw = item_ranks(base, seen, target)
  x = items[tidx]
  z, stats = codec.encode(x)
  edited = _edit_fn(z, level, step, scale)

  def measure(j):
    z2, dz = edited(j)
    t_vec = apply_edit(codec, x, z, z2, stats, mode)
    col = scorer.matrix_logits(u, t_vec, uidx, tidx)[:, 0]
    return item_ranks(base.at[:, target].set(col), seen, target), col, dz
  ranks, logits, dz = jax.lax.map(measure, jnp.arange(n + 1),
                                  batch_size=batch_size)
  return raw, ranks, logits, dz


def promote_effects(codec: Codec, scorer, user_emb, item_emb,
                    users: np.ndarray, seen: np.ndarray, target: int, *,
                    level: float | None = None, step: float | None = None,
                    mode: str = 'replace', scale: str = 'absolute',
                    threshold: int = 20, margin: int = 10,
                    chunk: int | None = None) -> pd.DataFrame:
  """Every neuron's effect on a promoted item's rank (docs/method.md#interventions).

  For each neuron ``j`` at once (vmapped), the target item's code gets
  neuron ``j`` set to ``level`` or raised by ``step`` (as
  :func:`steer_effects`), and each user of the group ranks it again against
  the other items' unchanged scores.

  Args:
    codec, scorer, user_emb, item_emb, users, seen, target, mode, scale,
      threshold, margin: as :func:`promote_item` (eligible users: raw rank
      beyond ``threshold``; a success: new rank within ``threshold +
      margin``).
    level, step, chunk: as :func:`steer_effects`.

  Returns:
    One row per neuron, best first: ``success_rate`` (as
    :func:`promote_item`, after the edit), ``mean_rank`` (the target's mean
    rank) and ``logit`` (its mean logit), all over the eligible users (over
    every user who has not seen the target when none is eligible); their
    changes ``d_*`` from the mode's no-edit, ``d_activation`` and the
    per-unit slopes ``effect_*`` (as :func:`steer_effects`); ordered by the
    largest rise of ``success_rate``, ties by the largest fall of
    ``mean_rank``, then the lower neuron.
  """
  _check(mode, scale)
  _, u, items, uidx, _, seen = _group(user_emb, item_emb, users, seen)
  n = int(model.decoder_weights(codec.params, codec.cfg).shape[0])
  out = _promote_effects_program(
      codec, scorer, u, items, uidx, seen, target=int(target), n=n,
      level=level, step=step, mode=mode, scale=scale,
      batch_size=_chunk(u.shape[0], items.shape[0], chunk))
  raw, ranks, logits, dz = (np.asarray(a, np.float64) for a in out)
  who = raw > threshold
  if not who.any():
    who = raw > 0
  nan = np.full(n + 1, np.nan)
  values = {'success_rate': (ranks[:, who] <= threshold + margin).mean(1),
            'mean_rank': ranks[:, who].mean(1),
            'logit': logits[:, who].mean(1)} if who.any() else {
                'success_rate': nan, 'mean_rank': nan, 'logit': nan}
  return _effect_table({m: v[:n] for m, v in values.items()},
                       {m: v[n] for m, v in values.items()}, dz[:n],
                       ('success_rate', 'mean_rank'),
                       {'success_rate': 1, 'mean_rank': -1, 'logit': 1})
