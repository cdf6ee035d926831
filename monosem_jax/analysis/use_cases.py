"""The paper's intervention use cases, declared in a config (docs/method.md#interventions).

A use case names what to edit in words; :func:`run_use_cases` resolves the
words against the dataset and the SAE's characterisation and calls
:mod:`monosem_jax.analysis.interventions`:

* ``kind``: 'suppress' or 'nudge' (users' neuron set to each level,
  :func:`~monosem_jax.analysis.interventions.steer_users`), or 'promote' (the
  ``target`` item's neuron, :func:`~monosem_jax.analysis.interventions.promote_item`).
* ``concept``: the neuron is the best neuron of this concept (highest
  purity@10, then smallest p-value); ``neuron`` (an index) overrides it.
* ``select``: 'purity' (the above, the paper's choice) or 'effect': the
  neuron whose edit to the case's strongest level moves the group's measure
  furthest towards the goal through the frozen scorer, in each mode (the
  concept share for steering, the success rate for promotion, ties by the
  target's mean rank; all neurons at once, :func:`effect_choice`).
* ``users``: 'concept' (the ``n_users`` SAE-test users with the highest share
  of ``group_concept``, default ``concept``, in their training positives), a
  user-feature filter such as ``'age<18'``, or 'all'.
* ``target``: the promoted item's title, or 'auto' (the concept's item of
  median popularity).
* ``levels`` (None = the unedited reconstruction), ``scale`` ('absolute' |
  'minmax'), ``threshold`` (promotion).

Every use case runs in both modes ('replace' as the paper, and 'delta').
Each (case, mode) is flagged when its edit moved the measure the wrong way
(``wrong_sign``) or, for suppression and nudging, when the neuron is
(nearly) off for the users it edits (``inactive``: their mean activation is
at most 5 % of the neuron's largest over the SAE-test users).

Example::

  cases = [UseCase('suppress', 'Horror', levels=(None, 1, 0.5, 0, -0.5))]
  table = run_use_cases(view, 3, dataset, cases)   # one row per level x mode
"""

from __future__ import annotations

import dataclasses
import difflib
import operator
import re
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from monosem_jax.analysis import interventions, neurons, workdirs
from monosem_jax.errors import ConfigError

KINDS = ('suppress', 'nudge', 'promote')
_FILTER = re.compile(r'^\s*(\w+)\s*(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$')
_OPS = {'<': operator.lt, '<=': operator.le, '>': operator.gt,
        '>=': operator.ge, '==': operator.eq, '!=': operator.ne}


@dataclasses.dataclass(frozen=True)
class UseCase:
  """One intervention experiment (module docstring)."""
  kind: str
  concept: str
  levels: tuple = (None, 0.0)
  users: str = 'concept'
  group_concept: str | None = None
  n_users: int = 20
  neuron: int | None = None
  target: str | None = None
  scale: str = 'absolute'
  threshold: int = 20
  select: str = 'purity'

  @classmethod
  def from_dict(cls, d: Mapping[str, Any], where: str = 'use case'
                ) -> 'UseCase':
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - fields)
    if unknown:
      raise ConfigError(f'{where}: unknown field {unknown[0]!r}; fields: '
                        f'{", ".join(sorted(fields))}')
    d = dict(d)
    d['levels'] = tuple(d.get('levels', cls.levels))
    case = cls(**d)
    if case.kind not in KINDS:
      raise ConfigError(f'{where}: kind={case.kind!r}; expected one of '
                        f'{", ".join(KINDS)}')
    if case.kind == 'promote' and not case.target:
      raise ConfigError(f'{where}: a promote use case needs target= (an item '
                        'title)')
    if not case.levels:
      raise ConfigError(f'{where}: levels is empty')
    if case.scale not in interventions.SCALES:
      raise ConfigError(f'{where}: scale={case.scale!r}; expected one of '
                        f'{", ".join(interventions.SCALES)}')
    if case.select not in interventions.SELECTS:
      raise ConfigError(f'{where}: select={case.select!r}; expected one of '
                        f'{", ".join(interventions.SELECTS)}')
    if case.select == 'effect' and case.neuron is not None:
      raise ConfigError(f'{where}: neuron={case.neuron} and select=\'effect\' '
                        'exclude each other (give one)')
    for field in ('n_users', 'threshold'):
      if int(getattr(case, field)) < 1:
        raise ConfigError(f'{where}: {field}={getattr(case, field)}; must be '
                          '>= 1')
    return case

  @property
  def name(self) -> str:
    """A readable, distinguishing name, e.g. "suppress via Horror
    (Horror users)" or "promote 'Bob Marley' via pop (pop users, min-max)"."""
    what = f' {self.target!r}' if self.kind == 'promote' else ''
    who = {'concept': f'{self.group_concept or self.concept} users',
           'all': 'all users'}.get(self.users, self.users)
    if self.users == 'concept' and self.n_users != 20:
      who = f'top {self.n_users} {who}'
    scale = ', min-max' if self.scale == 'minmax' else ''
    neuron = f' #{self.neuron}' if self.neuron is not None else ''
    by = ' by effect' if self.select == 'effect' else ''
    return f'{self.kind}{what} via {self.concept}{neuron}{by} ({who}{scale})'


def _lookup(names: Sequence[str], name: str, what: str, where: str) -> int:
  names = [str(n) for n in names]
  try:
    return names.index(name)
  except ValueError:
    close = difflib.get_close_matches(name, names, n=1)
    hint = f'; did you mean {close[0]!r}?' if close else ''
    raise ConfigError(f'{where}: unknown {what} {name!r}{hint}') from None


def user_group(case: UseCase, dataset, split, candidates: np.ndarray,
               where: str = 'use case') -> np.ndarray:
  """The users a case edits (or re-ranks), from ``candidates``."""
  if case.users == 'all':
    return np.asarray(candidates)
  if case.users == 'concept':
    c = _lookup(dataset.concept_names, case.group_concept or case.concept,
                'concept', where)
    return interventions.concept_user_group(
        split, candidates, dataset.item_concepts[:, c], case.n_users)
  m = _FILTER.match(case.users)
  if not m:
    raise ConfigError(f"{where}: users={case.users!r}; expected 'concept', "
                      "'all' or a feature filter such as 'age<18'")
  feature, op, value = m.groups()
  if feature not in dataset.user_features:
    raise ConfigError(f'{where}: {dataset.name} has no user feature '
                      f'{feature!r} (it has: '
                      f'{", ".join(dataset.user_features) or "none"})')
  values = np.asarray(dataset.user_features[feature])[candidates]
  return np.asarray(candidates)[_OPS[op](values, float(value))]


def promotion_target(case: UseCase, dataset, concept: int,
                     where: str = 'use case') -> int:
  """The item a promote case edits: by title, or with ``target='auto'``
  the item of the case's concept with the median popularity (ties: the
  lower index)."""
  if case.target != 'auto':
    return _lookup(dataset.item_titles, case.target, 'item title', where)
  items = np.flatnonzero(dataset.item_concepts[:, concept])
  if len(items) == 0:
    raise ConfigError(f'{where}: no item carries {case.concept!r}')
  pop = np.asarray(dataset.item_popularity)[items]
  order = items[np.lexsort((items, pop))]
  return int(order[(len(order) - 1) // 2])


@dataclasses.dataclass(frozen=True)
class Resolved:
  """A use case resolved against a dataset: its display name, concept
  index, user group and (promotion) target item."""
  case: UseCase
  name: str
  concept: int
  users: np.ndarray
  target: int | None


def resolve(cases: Sequence[UseCase], dataset, split,
            modes: Sequence[str] = interventions.MODES) -> list[Resolved]:
  """Checks every case against the dataset before anything is computed.

  Raises:
    ConfigError: an unknown concept, title, user feature or mode, an empty
      user group, or a case given twice; the message names the case.
  """
  bad = [m for m in modes if m not in interventions.MODES]
  if bad or not modes:
    raise ConfigError(f'modes={tuple(modes)}: choose from '
                      f'{", ".join(interventions.MODES)}')
  out, names = [], []
  test_users = np.asarray(split.sae_test_users)
  for n, case in enumerate(cases):  # a handful of declared experiments
    if case in cases[:n]:
      raise ConfigError(f'use case {n} repeats use case '
                        f'{list(cases).index(case)} ({case.name})')
    name = case.name if case.name not in names else f'{case.name} #{n}'
    names.append(name)
    where = f'use case {n} ({name})'
    c = _lookup(dataset.concept_names, case.concept, 'concept', where)
    users = user_group(case, dataset, split, test_users, where)
    if len(users) == 0:
      raise ConfigError(f'{where}: no SAE-test user matches users='
                        f'{case.users!r}')
    target = (promotion_target(case, dataset, c, where)
              if case.kind == 'promote' else None)
    out.append(Resolved(case, name, c, users, target))
  return out


def flag_case(t: pd.DataFrame, kind: str, user_max: float,
              select: str = 'purity') -> pd.DataFrame:
  """One (case, mode) table with its flags (docs/method.md#interventions):
  ``activation_max`` (steering: the neuron's largest activation over the
  SAE-test users), ``inactive`` (steering: the users' mean activation is at
  most :data:`~interventions.INACTIVE_FRACTION` of it; never for a neuron
  chosen by effect, which is chosen for what its edit does, not for what
  the users had), ``wrong_sign`` (:func:`~interventions.wrong_direction`)
  and ``flag``, the two in words."""
  t = t.copy()
  steer = kind != 'promote'
  t['activation_max'] = user_max if steer else np.nan
  inactive = steer and select != 'effect' and bool(
      t['orig_activation'].iloc[0] <= (
          interventions.INACTIVE_FRACTION * user_max))
  wrong = interventions.wrong_direction(t, kind)
  t['inactive'] = inactive
  t['wrong_sign'] = wrong
  t['flag'] = ', '.join(w for w, on in (('wrong direction', wrong),
                                        ('inactive neuron', inactive)) if on)
  return t


def effect_choice(codec, scorer, art, dataset, r: Resolved, seen, mode: str,
                  item_acts: np.ndarray, purity_neuron: int) -> dict:
  """A resolved case's neuron by effect in ``mode`` (docs/method.md#interventions):
  every neuron is set to the case's strongest level at once
  (:func:`~interventions.steer_effects`, :func:`~interventions.promote_effects`)
  and the one that moves the case's measure furthest towards its goal is
  chosen. Returns ``neuron``, ``effect`` (its change of the measure, the
  concept share or the promotion's success rate, from no edit),
  ``neuron_purity@10`` (its purity@10 for the case's concept, from
  ``item_acts``, the items' codes) and ``purity_neuron_effect`` (the change
  made by the concept's best neuron by purity, in the same ranking)."""
  case = r.case
  level = interventions.strongest_level(case.levels, case.kind)
  if case.kind == 'promote':
    t = interventions.promote_effects(
        codec, scorer, art.user_emb, art.item_emb, r.users, seen, r.target,
        level=level, mode=mode, scale=case.scale, threshold=case.threshold)
    measure = 'd_success_rate'
  else:
    t = interventions.steer_effects(
        codec, scorer, art.user_emb, art.item_emb, r.users, seen,
        dataset.item_concepts[:, r.concept], level=level,
        goal=interventions.GOALS[case.kind], mode=mode, scale=case.scale)
    measure = 'd_share'
  neuron = int(t.neuron.iloc[0])
  purity = neurons.concept_scores(
      item_acts, np.asarray(dataset.item_concepts)[:, [r.concept]], (10,))[
          'purity'][0][:, 0]
  by_neuron = t.set_index('neuron')[measure]
  return {'neuron': neuron, 'effect': float(t[measure].iloc[0]),
          'neuron_purity@10': float(purity[neuron]),
          'purity_neuron_effect': float(by_neuron.get(purity_neuron, np.nan))}


def run_use_cases(view: workdirs.SweepView, i: int, dataset,
                  cases: Sequence[UseCase], k: int = 30, p: float = 0.9,
                  modes: Sequence[str] = interventions.MODES,
                  concept_table: pd.DataFrame | None = None,
                  resolved: Sequence[Resolved] | None = None) -> pd.DataFrame:
  """Runs each use case on config ``i`` of a sweep, in each mode.

  Args:
    view: from :func:`~monosem_jax.analysis.workdirs.open_sweep`.
    i: the config index.
    dataset: from :func:`~monosem_jax.analysis.workdirs.open_dataset`.
    cases: the use cases (checked first, :func:`resolve`).
    k, p: list length and RBO persistence (collateral change).
    modes: intervention modes.
    concept_table: that config's
      :func:`~monosem_jax.analysis.neurons.concept_table` (computed when None).
    resolved: :func:`resolve` of ``cases`` when the caller checked them
      already (with the same dataset and modes).

  Returns:
    One row per (case, mode, level): ``case, kind, concept, choice`` (how
    the neuron was chosen: the case's ``select``, or 'index' for a neuron
    given by hand)``, neuron,
    neuron_purity@10`` (the neuron's purity@10 for the concept)``, effect``
    (effect choices: the change of the case's measure that the neuron makes
    at the strongest level in that mode, :func:`effect_choice`)``,
    purity_neuron`` (the concept's best neuron by purity; -1 for a neuron
    given by hand)``, purity_neuron_effect`` (its change in the same
    ranking)``, target`` (the
    promoted item's title)``, users,
    n_users, mode, scale, level`` and the measures of the use case's kind
    (``concept_share, collateral_rbo, orig_activation`` or ``success_rate,
    mean_rank, in_top_k, n_eligible``), ``activation`` (the edited neuron's
    mean over the users, or the promoted item's value, after the edit) and
    the flags of :func:`flag_case` (``activation_max, inactive, wrong_sign,
    flag``).
  """
  art = view.artifact
  if resolved is None:
    resolved = resolve(cases, dataset, art.split, modes)
  codec = view.sae(i)
  if concept_table is None:
    acts = np.asarray(codec.encode(art.item_emb)[0])
    concept_table = neurons.concept_table(acts, dataset.item_concepts,
                                          dataset.concept_names)
  best = concept_table.set_index('concept')
  # each neuron's largest activation over the SAE-test users: the scale the
  # 'inactive' flag compares a group's mean activation with
  test_users = np.asarray(art.split.sae_test_users)
  user_max = np.asarray(codec.encode(
      np.asarray(art.user_emb)[test_users])[0]).max(0)        # (dict_size,)
  item_acts = None
  tables = []
  for r in resolved:  # a handful of declared experiments
    case, c = r.case, dataset.concept_names[r.concept]
    neuron = case.neuron
    if neuron is None:
      neuron = int(best.loc[c, 'best_neuron'])
    elif not 0 <= neuron < codec.cfg.dict_size:
      raise ConfigError(f'{r.name}: neuron={neuron} is outside the '
                        f'dictionary (0..{codec.cfg.dict_size - 1})')
    purity_neuron = neuron
    seen = workdirs.seen_mask(art.split, r.users)
    for mode in modes:
      choice = {}
      if case.select == 'effect':
        if item_acts is None:
          item_acts = np.asarray(codec.encode(art.item_emb)[0])
        choice = effect_choice(codec, view.scorer, art, dataset, r, seen,
                               mode, item_acts, purity_neuron)
        neuron = choice['neuron']
      if case.kind == 'promote':
        t = interventions.promote_item(
            codec, view.scorer, art.user_emb, art.item_emb, r.users, seen,
            r.target, neuron, case.levels, mode=mode, scale=case.scale,
            threshold=case.threshold, k=k)
      else:
        t = interventions.steer_users(
            codec, view.scorer, art.user_emb, art.item_emb, r.users, seen,
            neuron, case.levels, dataset.item_concepts[:, r.concept],
            mode=mode, scale=case.scale, k=k, p=p)
      purity = choice.get('neuron_purity@10', float(
          best.loc[c, 'purity@10']) if case.neuron is None else np.nan)
      head = {'case': r.name, 'kind': case.kind, 'concept': case.concept,
              'choice': ('index' if case.neuron is not None
                         else case.select),
              'neuron': neuron, 'neuron_purity@10': purity,
              'effect': choice.get('effect', np.nan),
              'purity_neuron': purity_neuron if case.neuron is None else -1,
              'purity_neuron_effect': choice.get('purity_neuron_effect',
                                                 np.nan),
              'target': (str(dataset.item_titles[r.target])
                         if r.target is not None else None),
              'users': case.users, 'n_users': len(r.users), 'mode': mode,
              'scale': case.scale}
      for col, value in reversed(head.items()):
        if col in t:
          t = t.drop(columns=col)
        t.insert(0, col, value)
      tables.append(flag_case(t, case.kind, float(user_max[neuron]),
                              case.select))
  return pd.concat(tables, ignore_index=True)
