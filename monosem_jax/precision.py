"""Matmul precision, set in one place (docs/method.md#precision).

A float32 product that names no precision runs at the backend's default:
TensorFloat-32 (10-bit mantissas) on NVIDIA GPUs, one bfloat16 pass on
TPUs, float32 only on a CPU; and a caller's ``jax.default_matmul_precision``
would change it. So every matrix product of the package names its precision
explicitly (``precision=`` on each ``jnp.matmul`` / ``einsum``), from this
module's constants; nothing depends on a context manager or on who calls:

* :data:`EXACT` (``Precision.HIGHEST``, float32 on every backend): the
  scorers' logits (``matrix_logits``, ``pair_logits``) and the evaluation
  score error, the recommenders' ranking metrics, the sweep's metrics, the
  fidelity, the neuron tables, the interventions and the exported SAEs. It
  is also the default of every function that takes a ``precision``, so a
  product is exact unless its caller asks otherwise.
* :func:`training`: SAE training follows ``SweepSpec.precision``
  (docs/method.md#sweeps-at-scale). The sweep's step passes it down
  (``SAEConfig.precision`` for the SAE's products; the scorer's
  ``batch_terms`` / ``prediction_loss`` take it as ``precision=``); it is
  the only place where a product may be inexact.

On a CPU every precision computes in float32, so a missing ``precision=``
shows only in the lowered program: tests/test_precision.py lowers each
analysis and evaluation entry point and checks that every ``dot_general``
carries ``HIGHEST``.

Example:
  >>> import jax.numpy as jnp
  >>> float(dot(jnp.ones((1, 3)), jnp.ones((3, 1)))[0, 0])
  3.0
  >>> training('tf32')
  Precision.HIGH
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Precision = jax.lax.Precision

#: The precision of evaluation, fidelity, analysis and interventions.
EXACT = Precision.HIGHEST
#: ``SweepSpec.precision`` / ``SAEConfig.precision`` -> the ``Precision`` of
#: a training product: 'float32' exact; 'tf32' TensorFloat-32 on GPUs (three
#: bfloat16 passes on TPUs); 'bfloat16' the backend's default (the SAE's
#: products also cast their operands to bfloat16,
#: :func:`monosem_jax.sae.model.matmul`; the scorer's keep float32 operands).
TRAINING = {'float32': EXACT, 'tf32': Precision.HIGH,
            'bfloat16': Precision.DEFAULT}
#: The precision names, exact first.
NAMES = tuple(TRAINING)


def training(name: str) -> Precision:
  """The ``Precision`` of training products at ``SweepSpec.precision=name``.

  Raises:
    ValueError: an unknown name (the spec and the SAE config refuse it
      earlier, naming the field).
  """
  try:
    return TRAINING[name]
  except KeyError:
    raise ValueError(f'matmul precision {name!r}: expected one of '
                     f'{" | ".join(map(repr, NAMES))}') from None


def dot(a: jax.Array, b: jax.Array, precision: Precision = EXACT
        ) -> jax.Array:
  """``a @ b`` (``jnp.matmul`` semantics) at ``precision`` (default exact)."""
  return jnp.matmul(a, b, precision=precision)
