"""Seeds: the spread of every headline figure over seeds, and whether two
seeds learn the same neurons (docs/method.md#seeds-and-stability).

A *setting* is a config's values of every swept field except ``seed``; the
configs of one setting differ only by their SAE's initialisation seed.

* :func:`over_seeds`: one row per setting, the mean and standard deviation
  (ddof 1) over its finite seeds of each measure (fidelity, pure concepts,
  MS, ...); diverged seeds are counted, not averaged.
* :func:`match_neurons`: the Hungarian assignment between the neurons of two
  SAEs that maximises the summed cosine of their decoder rows
  (``scipy.optimize.linear_sum_assignment``).
* :func:`feature_stability`: per setting, over every pair of its seeds, the
  fraction of neurons whose match has cosine above :data:`MATCH_COSINE`,
  and the fraction of those matched pairs (both alive) whose best concept
  is the same.
* :func:`intervention_changes`: the intervention use cases of the seeds of
  one setting, each case's measure with no edit and at its strongest level.

Example:
  >>> import pandas as pd
  >>> fid = pd.DataFrame({'config': [0, 1, 2, 3], 'lambda_pred': [0., 0., 1., 1.],
  ...                     'seed': [0, 1, 0, 1], 'rbo_norm': [.2, .4, .7, .7]})
  >>> over_seeds(fid, ['rbo_norm'])[['lambda_pred', 'n_seeds', 'rbo_norm_mean']]
     lambda_pred  n_seeds  rbo_norm_mean
  0          0.0        2            0.3
  1          1.0        2            0.7
"""

from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize

from monosem_jax.analysis import interventions
from monosem_jax.sweep.spec import FIELDS

SEED = 'seed'
#: Decoder cosine above which two seeds' neurons count as the same feature.
MATCH_COSINE = 0.9
#: The measures :func:`over_seeds` averages in the analysis (those present).
MEASURES = ('rbo_norm', 'kendall_tau', 'ndcg@10', 'l0_items',
            'pure_concepts@10', 'mean_purity@10', 'mean_ms', 'dead_neurons')


def has_seeds(fid: pd.DataFrame) -> bool:
  """Whether the sweep has several seeds (a swept ``seed`` column)."""
  return SEED in fid and fid[SEED].nunique() > 1


def setting_fields(fid: pd.DataFrame) -> list[str]:
  """The swept fields (more than one value in ``fid``) except ``seed``."""
  return [f for f in FIELDS if f != SEED and f in fid and fid[f].nunique() > 1]


def _settings(fid: pd.DataFrame) -> pd.Series:
  """``(rows,)`` int: the index of each config's setting, in the order of
  first appearance."""
  fields = setting_fields(fid)
  if not fields:
    return pd.Series(0, index=fid.index)
  return fid.groupby(fields, sort=False, dropna=False).ngroup()


def _finite(fid: pd.DataFrame) -> np.ndarray:
  if 'status' not in fid:
    return np.ones(len(fid), bool)
  return (fid['status'].astype(str) == 'ok').to_numpy()


def over_seeds(fid: pd.DataFrame, measures: Sequence[str]) -> pd.DataFrame:
  """Mean and standard deviation over seeds of each measure, per setting.

  Args:
    fid: one row per config: ``config``, ``seed``, the swept fields,
      optionally ``status`` (only ``'ok'`` configs are averaged) and the
      ``measures``.
    measures: columns of ``fid`` to summarise.

  Returns:
    One row per setting (in the order of first appearance): its swept
    fields, ``n_seeds`` (finite ones), ``n_diverged``, ``seeds`` and
    ``configs`` (space-separated, all of them), then ``{m}_mean`` and
    ``{m}_std`` (ddof 1, NaN with one finite seed) of each measure.
  """
  fields = setting_fields(fid)
  t = fid.assign(_setting=_settings(fid).to_numpy(), _ok=_finite(fid))
  rows = t.groupby('_setting', sort=True)
  out = rows[fields].first() if fields else pd.DataFrame(index=[0])
  out['n_seeds'] = rows['_ok'].sum().astype(int)
  out['n_diverged'] = rows['_ok'].size() - out['n_seeds']
  join = lambda v: ' '.join(str(int(x)) for x in v)
  out['seeds'] = rows[SEED].agg(join) if SEED in t else ''
  out['configs'] = rows['config'].agg(join)
  ok = t[t._ok].groupby('_setting')
  for m in measures:
    out[f'{m}_mean'] = ok[m].mean()
    out[f'{m}_std'] = ok[m].std()
  return out.reset_index(drop=True)


def match_neurons(dec_a: np.ndarray, dec_b: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
  """The one-to-one matching of two SAEs' neurons by decoder cosine.

  Args:
    dec_a, dec_b: ``(m, d)`` decoder rows (``model.decoder_weights``).

  Returns:
    ``match`` ``(m,)`` int: neuron ``i`` of A is matched to neuron
    ``match[i]`` of B, maximising the summed cosine (Hungarian algorithm);
    ``cosine`` ``(m,)`` the cosine of each matched pair (0 for a zero row).

  >>> a = np.eye(3)
  >>> match, cos = match_neurons(a, a[[2, 0, 1]])
  >>> match.tolist(), cos.tolist()
  ([1, 2, 0], [1.0, 1.0, 1.0])
  """
  def unit(w):
    w = np.asarray(w, np.float64)
    norm = np.linalg.norm(w, axis=1, keepdims=True)
    return w / np.where(norm > 0, norm, 1.0)

  cos = unit(dec_a) @ unit(dec_b).T                             # (m, m)
  rows, cols = optimize.linear_sum_assignment(cos, maximize=True)
  match = np.empty(len(cos), np.int64)
  match[rows] = cols
  return match, cos[np.arange(len(cos)), match]


def pair_stability(dec_a, dec_b, concept_a, concept_b, alive_a, alive_b,
                   threshold: float = MATCH_COSINE
                   ) -> tuple[float, float, float]:
  """Two seeds' SAEs: ``(matched, same_concept, cosine)``.

  ``matched``: the fraction of A's neurons whose match in B
  (:func:`match_neurons`) has cosine > ``threshold``; ``same_concept``:
  among those matched pairs with both neurons alive, the fraction whose
  best concept is the same (NaN when there is none); ``cosine``: the mean
  cosine of the matched pairs (all of them).

  Args:
    dec_a, dec_b: ``(m, d)`` decoder rows.
    concept_a, concept_b: ``(m,)`` each neuron's best concept.
    alive_a, alive_b: ``(m,)`` bool, the neuron fires on some item.
  """
  match, cos = match_neurons(dec_a, dec_b)
  good = cos > threshold
  both = good & np.asarray(alive_a, bool) & np.asarray(alive_b, bool)[match]
  same = np.asarray(concept_a)[both] == np.asarray(concept_b)[match][both]
  return (float(good.mean()), float(same.mean()) if both.any() else np.nan,
          float(cos.mean()))


def feature_stability(fid: pd.DataFrame, decoders: Mapping[int, np.ndarray],
                      neuron_rows: pd.DataFrame,
                      threshold: float = MATCH_COSINE) -> pd.DataFrame:
  """Per setting, how many neurons two of its seeds share
  (:func:`pair_stability` over every pair of its finite seeds).

  Args:
    fid: as for :func:`over_seeds`.
    decoders: ``{config: (dict_size, d) decoder rows}``.
    neuron_rows: ``neurons.csv`` (``config, neuron, dead, best_concept``).
    threshold: the cosine of a match.

  Returns:
    One row per setting, in :func:`over_seeds`' order: ``n_pairs``,
    ``matched@{threshold}_mean`` / ``_std`` (over the pairs),
    ``same_concept_mean`` and ``match_cosine_mean`` (NaN with fewer than
    two finite seeds).
  """
  t = fid.assign(_setting=_settings(fid).to_numpy(), _ok=_finite(fid))
  neurons_of = {c: g.sort_values('neuron') for c, g in
                neuron_rows.groupby('config', sort=False)}
  name = f'matched@{threshold:g}'
  out = []
  for s, g in t[t._ok].groupby('_setting', sort=True):  # the settings
    pairs = []
    for a, b in itertools.combinations(g['config'].astype(int), 2):
      na, nb = neurons_of[a], neurons_of[b]
      pairs.append(pair_stability(
          decoders[a], decoders[b], na.best_concept.to_numpy(),
          nb.best_concept.to_numpy(), ~na.dead.to_numpy(bool),
          ~nb.dead.to_numpy(bool), threshold))
    pairs = np.asarray(pairs, np.float64).reshape(-1, 3)
    with np.errstate(invalid='ignore'):
      out.append({'_setting': s, 'n_pairs': len(pairs),
                  f'{name}_mean': pairs[:, 0].mean() if len(pairs) else np.nan,
                  f'{name}_std': pairs[:, 0].std(ddof=1) if len(pairs) > 1
                  else np.nan,
                  'same_concept_mean': np.nanmean(pairs[:, 1])
                  if np.isfinite(pairs[:, 1]).any() else np.nan,
                  'match_cosine_mean': pairs[:, 2].mean() if len(pairs)
                  else np.nan})
  every = pd.DataFrame({'_setting': np.arange(t._setting.max() + 1)})
  cols = ['_setting', 'n_pairs', f'{name}_mean', f'{name}_std',
          'same_concept_mean', 'match_cosine_mean']
  found = pd.DataFrame(out, columns=cols)
  merged = every.merge(found, on='_setting', how='left')
  merged['n_pairs'] = merged['n_pairs'].fillna(0).astype(int)
  return merged.drop(columns='_setting')


def setting_of(fid: pd.DataFrame, config: int) -> int:
  """The row of ``config``'s setting in :func:`over_seeds` and
  :func:`feature_stability`."""
  return int(_settings(fid).to_numpy()[fid['config'].to_numpy() == config][0])


def siblings(fid: pd.DataFrame, config: int) -> list[int]:
  """The other finite configs of ``config``'s setting (its other seeds)."""
  s = _settings(fid).to_numpy()
  ids = fid['config'].to_numpy()
  mine = setting_of(fid, config)
  keep = (s == mine) & _finite(fid) & (ids != config)
  return [int(c) for c in ids[keep]]


def intervention_changes(tables: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
  """The use cases of several configs (e.g. the seeds of one setting),
  each (config, case, mode) as one row.

  Args:
    tables: ``{config: interventions table}`` (one row per case, mode and
      level, as ``use_cases.run_use_cases`` returns it).

  Returns:
    ``config, case, kind, mode, neuron, measure, level`` (the strongest),
    ``no_edit``, ``strongest`` (the measure there), ``change``
    (strongest - no edit), from
    :func:`~monosem_jax.analysis.interventions.strongest_change`, and
    ``wrong_direction`` (``interventions.wrong_direction``).
  """
  rows = []
  for config, iv in tables.items():    # a few seeds
    for (case, mode), g in iv.groupby(['case', 'mode'], sort=False):
      kind = g['kind'].iloc[0]
      measure, before, level, after = interventions.strongest_change(g, kind)
      rows.append(dict(config=config, case=case, kind=kind, mode=mode,
                       neuron=int(g['neuron'].iloc[0]), measure=measure,
                       level=level, no_edit=before, strongest=after,
                       change=after - before,
                       wrong_direction=interventions.wrong_direction(g, kind)))
  return pd.DataFrame(rows, columns=['config', 'case', 'kind', 'mode',
                                     'neuron', 'measure', 'level', 'no_edit',
                                     'strongest', 'change',
                                     'wrong_direction'])


def changes_over_seeds(changes: pd.DataFrame) -> pd.DataFrame:
  """:func:`intervention_changes` summarised per (case, mode): ``n_seeds``,
  the mean and standard deviation (ddof 1) of ``no_edit``, ``strongest`` and
  ``change``, and ``wrong_direction`` (seeds whose change goes against the
  case's goal)."""
  g = changes.groupby(['case', 'mode'], sort=False)
  out = g[['kind', 'measure', 'level']].first()
  out['n_seeds'] = g.size()
  for m in ('no_edit', 'strongest', 'change'):
    out[f'{m}_mean'] = g[m].mean()
    out[f'{m}_std'] = g[m].std()
  out['wrong_direction'] = g['wrong_direction'].sum().astype(int)
  return out.reset_index()
