"""One jitted update of every config, and one epoch of them.

* **One program for all configs.** :func:`sweep_step` gathers one batch
  shared by all configs and prepares it once (normalisation statistics and
  the scorer's SAE-independent terms: ``U^T U`` for MF, the frozen MLP's
  outputs on the original pairs for NCF), then ``jax.vmap``-s the objective
  (:func:`monosem_jax.sae.objective.objective`), its gradient and the Adam
  update over the config axis; the encoder product of the shared batch
  against every config's ``W`` becomes one large matmul.
* **Per-config learning rate.** ``optax.scale_by_adam`` (b1 0.9, b2 0.999,
  eps 1e-8, as PyTorch) gives a unit-rate direction, scaled by the config's
  traced ``lr`` (docs/method.md#optimiser).
* **Dictionary size by mask.** ``mask = arange(M) < dict_size``: masked
  latents output 0, get 0 gradient (so Adam leaves them untouched), and are
  excluded from the L1/KL means and L0.
* **Divergence.** A config whose loss, new weights or new optimiser state is
  not finite keeps its previous state (``where(finite, new, old)``), is
  marked ``finite[c] = False`` with ``diverged_step[c]``, and stays frozen.
* :func:`epoch` ``lax.scan``-s the step over an epoch's batches
  (:mod:`~monosem_jax.sweep.batches`); :func:`run_epoch`, its jitted form
  (once per spec and shapes), is the one block program of a sweep. Where it
  runs (one device, sequential blocks of configs, each device's block) is
  the :class:`~monosem_jax.sweep.sharding.Placement`'s business, chosen once
  by :func:`~monosem_jax.sweep.driver.make_sweep`.

Example:
  >>> import jax, numpy as np
  >>> from monosem_jax.recommenders.kinds import make_scorer
  >>> from monosem_jax.sweep.spec import SweepSpec, SweepHparams
  >>> from monosem_jax.sweep.state import SweepInputs, init_sweep
  >>> rng = np.random.default_rng(0)
  >>> inputs = SweepInputs.create(rng.normal(size=(40, 4)),
  ...                             rng.normal(size=(30, 4)), np.arange(32))
  >>> spec = SweepSpec(dim=4, max_dict_size=6,   # the default kind's options
  ...                  scorer_options=dict(batch_users=8, batch_items=8))
  >>> hparams = SweepHparams.grid(spec, lambda_pred=[0.0, 1.0], dict_size=[3, 6])
  >>> state = init_sweep(spec, hparams, jax.random.PRNGKey(0))
  >>> scorer = make_scorer(spec.kind, {})
  >>> state, hist = run_epoch(spec, hparams, state, inputs, scorer)
  >>> hist['loss'].shape, int(state.step)
  ((4,), 4)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from monosem_jax.sae import objective as objective_lib
from monosem_jax.sweep.batches import BatchIndices, epoch_indices
from monosem_jax.sweep.spec import SweepHparams, SweepSpec
from monosem_jax.sweep.state import ADAM, SweepInputs, SweepState


def shared_batch(spec: SweepSpec, inputs: SweepInputs, scorer,
                 users: jax.Array, items: jax.Array
                 ) -> objective_lib.PreparedBatch:
  """Gathers one batch and prepares it once for all configs."""
  return objective_lib.prepare_batch(inputs.user_emb[users],
                                     inputs.item_emb[items], spec.sae, scorer,
                                     users, items)


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def config_update(sae, opt, hp: SweepHparams, alive, batch, spec: SweepSpec,
                  scorer):
  """One Adam step of ONE config (vmapped), kept while everything is finite.

  Args:
    sae, opt: the config's SAE weights and Adam state.
    hp: the config's hyper-parameters (scalar leaves).
    alive: whether the config is still finite.
    batch: the shared :class:`~monosem_jax.sae.objective.PreparedBatch`.

  Returns:
    ``(sae, opt, keep, terms)``; ``terms`` adds ``ok`` to the loss terms.
  """
  (_, terms), grads = jax.value_and_grad(objective_lib.objective,
                                         has_aux=True)(
      sae, hp, batch, spec.sae, scorer, hp.k, hp.dict_size)
  direction, opt_new = ADAM.update(grads, opt)
  sae_new = optax.apply_updates(
      sae, jax.tree.map(lambda d: -hp.lr * d, direction))
  ok = jnp.isfinite(terms['loss']) & _all_finite(sae_new) & _all_finite(opt_new)
  keep = alive & ok
  pick = lambda new, old: jnp.where(keep, new, old)
  terms['ok'] = ok
  return (jax.tree.map(pick, sae_new, sae), jax.tree.map(pick, opt_new, opt),
          keep, terms)


def sweep_step(spec: SweepSpec, hparams: SweepHparams, state: SweepState,
               inputs: SweepInputs, scorer, users: jax.Array,
               items: jax.Array) -> tuple[SweepState, dict[str, jax.Array]]:
  """One training step of all configs on the batch ``(users, items)``.

  Returns the new state and per-config terms ``(C,)``.
  """
  batch = shared_batch(spec, inputs, scorer, users, items)
  upd = functools.partial(config_update, batch=batch, spec=spec, scorer=scorer)
  sae, opt, keep, terms = jax.vmap(upd)(state.sae, state.opt, hparams,
                                        state.finite)
  diverged = jnp.where(state.finite & ~keep, state.step, state.diverged_step)
  state = state.replace(sae=sae, opt=opt, finite=keep, diverged_step=diverged,
                        step=state.step + 1)
  return state, terms


def epoch(spec: SweepSpec, hparams: SweepHparams, state: SweepState,
          inputs: SweepInputs, scorer
          ) -> tuple[SweepState, dict[str, jax.Array]]:
  """One epoch of every config in ``state``: the block program (unjitted).

  ``lax.scan``-s :func:`sweep_step` over the epoch's batches (drawn from
  ``fold_in(data_key, epoch)``). Every product runs at ``spec.precision``
  (docs/method.md#precision): the SAE's through ``spec.sae``
  (:func:`~monosem_jax.sae.model.matmul`), the scorer's through the
  ``precision`` the objective passes it. :func:`run_epoch` is its jitted
  form; the memory plan and the precision tests trace it.

  Returns:
    ``(state, history)``; history holds ``(C,)`` epoch means of ``loss, emb,
    pred, l1, kl, n_clamped, l0`` plus ``nonfinite_steps`` (int) and
    ``finite`` (bool, False = diverged and frozen).
  """
  ix: BatchIndices = epoch_indices(
      spec, inputs, jax.random.fold_in(state.data_key, state.epoch),
      scorer.paired)

  def body(st, batch_ix):
    return sweep_step(spec, hparams, st, inputs, scorer, *batch_ix)

  state, terms = jax.lax.scan(body, state, (ix.users, ix.items))
  history = {k: jnp.mean(v, axis=0) for k, v in terms.items() if k != 'ok'}
  history['nonfinite_steps'] = jnp.sum(~terms['ok'], axis=0).astype(jnp.int32)
  history['finite'] = state.finite
  return state.replace(epoch=state.epoch + 1), history


@functools.partial(jax.jit, static_argnums=0)
def run_epoch(spec: SweepSpec, hparams: SweepHparams, state: SweepState,
              inputs: SweepInputs, scorer
              ) -> tuple[SweepState, dict[str, jax.Array]]:
  """:func:`epoch`, jitted once per spec and shapes: the one program every
  placement dispatches (on one device, or on each block of configs;
  :class:`~monosem_jax.sweep.sharding.Placement`).

  Args:
    spec: static spec.
    hparams: per-config hyper-parameters (validated by
      :func:`~monosem_jax.sweep.state.init_sweep`).
    state, inputs: the state and frozen inputs, on one device.
    scorer: the frozen scorer.

  Returns:
    ``(state, history)`` as :func:`epoch`.
  """
  return epoch(spec, hparams, state, inputs, scorer)
