"""How the network's steps are compiled: `jit`, with XLA's CPU convolutions on its Eigen path.

XLA's CPU backend (jaxlib 0.10) hands float32 dots, convolutions and
reductions to YNNPACK by default. YNNPACK's weight-gradient convolutions (a
27x27 window for conv2's, 55x55 for conv1's) ran 4-5x slower than XLA's own
Eigen path and made half of the training step (docs/benchmarks.md, "Training
step"). `jit` therefore compiles programs for the CPU with the compiler option
`xla_cpu_experimental_ynn_fusion_type` listing only dots and reductions.

The option is set per compilation, never in the process-wide XLA_FLAGS: XLA
aborts the whole process on a flag it does not know (jaxlib before 0.8.1) or
a value it rejects (0.8.1), on every backend, whereas a compiler option it
refuses raises a Python error. It is applied only when
  - the computation compiles for the CPU (the default backend is 'cpu'),
  - the user's XLA_FLAGS do not set the option themselves, and
  - this jaxlib accepts it (`cpu_options`: one small probe compilation);
otherwise `jit` is plain `jax.jit`. Importing this module changes nothing.
Seen: jaxlib 0.6.1 (the package's floor) refuses the option ("No such compile
option"), 0.8.1 and 0.10.2 accept it, and a value a jaxlib rejects raises too
(tests/test_compilation.py simulates that). `jax.jit` takes compiler_options
from before the floor on.
"""

from collections.abc import Callable
import functools
import os

from absl import logging
import jax
import jax.numpy as jnp

OPTION = 'xla_cpu_experimental_ynn_fusion_type'
# jaxlib 0.10.2's default set (individual dots, individual convolutions,
# reductions) without the convolutions: what
# XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution gives.
EIGEN_CONVOLUTIONS = {OPTION: 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'}


@functools.cache
def cpu_options() -> dict[str, str]:
  """The compiler options `jit` adds on this machine: EIGEN_CONVOLUTIONS or {} (see above)."""
  if jax.default_backend() != 'cpu' or OPTION in os.environ.get('XLA_FLAGS', ''):
    return {}
  try:
    jax.jit(jnp.negative, compiler_options=EIGEN_CONVOLUTIONS).lower(1.0).compile()
  except Exception as e:  # noqa: BLE001 - any refusal means: compile without the option
    logging.warning('This jaxlib (%s) does not accept the compiler option %s (%s); CPU '
                    'convolutions stay on its default path.', jax.__version__, OPTION,
                    str(e).splitlines()[0])
    return {}
  return dict(EIGEN_CONVOLUTIONS)


def jit(fun: Callable, **jit_kwargs) -> Callable:
  """`jax.jit(fun, **jit_kwargs)` compiled with `cpu_options()`."""
  return jax.jit(fun, compiler_options=cpu_options() or None, **jit_kwargs)
