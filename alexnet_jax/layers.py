"""The building blocks of the two-tower network: tower layers, LRN, dropout.

Activations of the towers that live on this device travel between layers as a
tuple with one NHWC (or NC) array per local tower. With both towers on one
device the tuple has two entries; inside the model-parallel step
(`alexnet_jax.parallel`) each device holds one tower and the tuple has one.

Every parameter carries a leading tower axis (size = local towers), so the
same code runs in both placements and the parallel step can shard the
parameters on that axis.

Nothing here imports TensorFlow.
"""

from collections.abc import Callable
from collections.abc import Sequence
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Towers = tuple[Array, ...]

class TowerLayer(nn.Module):
  """What every tower layer has: one kernel and bias per local tower.

  Attributes:
    features: outputs (maps or units) of one tower.
    bias_value: initial bias (section 5: 1 in conv2, conv4, conv5, fc6, fc7; else 0).
    local_towers: towers held on this device.
    init_std: standard deviation of the initial weights (section 5: 0.01).
    dtype: compute dtype; parameters stay float32.
    precision: of the layer's convolutions and matmuls (`jax.lax.Precision`;
      HIGHEST is true float32 on GPUs, DEFAULT lets them use TF32).
  """
  features: int
  bias_value: float
  local_towers: int
  init_std: float = 0.01
  dtype: Any = jnp.float32
  precision: jax.lax.Precision = jax.lax.Precision.HIGHEST

  def tower_params(self, kernel_shape: Sequence[int]) -> tuple[Array, Array]:
    """`kernel` (towers, *kernel_shape, features) ~ N(0, init_std), `bias` (towers, features)."""
    kernel = self.param('kernel', nn.initializers.normal(stddev=self.init_std),
                        (self.local_towers, *kernel_shape, self.features))
    bias = self.param('bias', nn.initializers.constant(self.bias_value),
                      (self.local_towers, self.features))
    return kernel.astype(self.dtype), bias.astype(self.dtype)


class TowerConv(TowerLayer):
  """One convolution per local tower.

  The towers are computed as separate convolutions rather than one grouped
  convolution: on CPU, XLA's `feature_group_count=2` backward pass measured
  about 8x slower (docs/benchmarks.md).

  Attributes (besides TowerLayer's):
    kernel_size: square kernel side.
    stride: square stride.
    padding: ((top, bottom), (left, right)) zero padding.
  """
  kernel_size: int = 3
  stride: int = 1
  padding: tuple[tuple[int, int], tuple[int, int]] = ((1, 1), (1, 1))

  @nn.compact
  def __call__(self, xs: Towers) -> Towers:
    """xs: one (N, H, W, C) input per local tower -> one (N, H', W', features) output each."""
    kernel, bias = self.tower_params((self.kernel_size, self.kernel_size, xs[0].shape[-1]))
    return tuple(
        jax.lax.conv_general_dilated(
            x.astype(self.dtype), kernel[t], window_strides=(self.stride, self.stride),
            padding=self.padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
            precision=self.precision) + bias[t]
        for t, x in enumerate(xs))


class TowerDense(TowerLayer):
  """One fully connected layer per local tower."""

  @nn.compact
  def __call__(self, xs: Towers) -> Towers:
    """xs: one (N, D) input per local tower -> one (N, features) output each."""
    kernel, bias = self.tower_params((xs[0].shape[-1],))
    return tuple(jnp.matmul(x.astype(self.dtype), kernel[t], precision=self.precision) + bias[t]
                 for t, x in enumerate(xs))


def local_response_norm(x: Array, *, size: int = 5, k: float = 2.0, alpha: float = 1e-4,
                        beta: float = 0.75, alpha_per_term: bool = False,
                        precision: jax.lax.Precision = jax.lax.Precision.HIGHEST) -> Array:
  """Local response normalization across channels (section 3.3).

  b_i = a_i / (k + alpha * sum_{j=max(0, i-size//2)}^{min(C-1, i+size//2)} a_j^2)^beta

  over the last axis of `x` (any shape (..., C)). With `alpha_per_term` the sum
  is multiplied by alpha / size instead of alpha: the convention of
  cuda-convnet, Caffe and PyTorch's `nn.LocalResponseNorm` (the authors' code
  used scale 1e-4 over size 5). The default is the paper's printed formula, the
  one `tf.nn.local_response_normalization(depth_radius=2, bias=2, alpha=1e-4,
  beta=0.75)` computes. Computed in float32 whatever the input dtype;
  `precision` is that of the matmul summing the squares (DEFAULT: TF32 on GPUs).
  """
  channels = x.shape[-1]
  idx = np.arange(channels)
  # band[j, i] = 1 when map j lies in the window of map i: a (C, C) matmul sums
  # the squares of the neighbours, which is cheap and differentiates fast.
  band = jnp.asarray(np.abs(idx[:, None] - idx[None, :]) <= size // 2, jnp.float32)
  x32 = x.astype(jnp.float32)
  scale = alpha / size if alpha_per_term else alpha
  denom = k + scale * jnp.matmul(x32 * x32, band, precision=precision)
  return (x32 * denom ** -beta).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool(x: Array, window: int, stride: int) -> Array:
  """Max-pooling of an (N, H, W, C) array, no padding (section 3.4: window 3, stride 2).

  The gradient goes to the first maximum of each window (row-major), as XLA's
  select-and-scatter does, but is computed as window**2 strided compares and
  padded adds (`_max_pool_backward`), which XLA's CPU backend fuses into one
  loop instead of building index arrays for every window.
  """
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding='VALID')


def _window_slice(x: Array, i: int, j: int, out_h: int, out_w: int, stride: int) -> Array:
  """x[:, i::stride, j::stride, :] limited to (out_h, out_w): offset (i, j) of every window."""
  n, _, _, c = x.shape
  return jax.lax.slice(x, (0, i, j, 0), (n, i + stride * (out_h - 1) + 1,
                                         j + stride * (out_w - 1) + 1, c), (1, stride, stride, 1))


def _max_pool_forward(x: Array, window: int, stride: int) -> tuple[Array, tuple[Array, Array]]:
  y = max_pool(x, window, stride)
  return y, (x, y)


def _max_pool_backward(window: int, stride: int, residuals: tuple[Array, Array],
                       dy: Array) -> tuple[Array]:
  """dL/dx: each window's dy added at the first position where x equals the window's max."""
  x, y = residuals
  _, h, w, _ = x.shape
  out_h, out_w = y.shape[1:3]
  dx = jnp.zeros_like(x)
  claimed = jnp.zeros(y.shape, bool)
  for i in range(window):
    for j in range(window):
      hit = (_window_slice(x, i, j, out_h, out_w, stride) == y) & ~claimed
      claimed = claimed | hit
      dx = dx + jax.lax.pad(jnp.where(hit, dy, 0).astype(x.dtype), jnp.zeros((), x.dtype), (
          (0, 0, 0), (i, h - i - stride * (out_h - 1) - 1, stride - 1),
          (j, w - j - stride * (out_w - 1) - 1, stride - 1), (0, 0, 0)))
  return (dx,)


max_pool.defvjp(_max_pool_forward, _max_pool_backward)


def tower_dropout(x: Array, key: Array, *, rate: float, layer: int, tower: Array | int,
                  example_ids: Array, form: str = 'paper') -> Array:
  """Dropout of one tower's (N, D) activations in training.

  The keep mask of example n is drawn from fold_in(key, layer, tower,
  example_ids[n]), so it does not depend on how the batch or the towers are
  spread over devices. `form`: 'paper' (section 4.2) keeps units unscaled, and
  the network multiplies the outputs by 1 - rate at test time
  (`dropout_test_scale`); 'inverted' scales kept units by 1 / (1 - rate) here
  and leaves test time alone. The two compute the same function only up to a
  factor on the next layer's weights, so with the paper's fixed N(0, 0.01)
  initialization and weight decay they train different networks.
  """
  if rate == 0.0:
    return x
  key = jax.random.fold_in(jax.random.fold_in(key, layer), tower)

  def keep_mask(example_id):
    return jax.random.bernoulli(jax.random.fold_in(key, example_id), 1.0 - rate, x.shape[1:])

  keep = jax.vmap(keep_mask)(example_ids)
  kept = x / (1.0 - rate) if form == 'inverted' else x
  return jnp.where(keep, kept, 0.0).astype(x.dtype)


def dropout_test_scale(x: Array, *, rate: float, form: str = 'paper') -> Array:
  """A dropout layer's test-time output: x * (1 - rate) in the paper's form (section 4.2:
  "multiply their outputs by 0.5"), x itself in the inverted form."""
  if form == 'inverted' or rate == 0.0:
    return x
  return (x * (1.0 - rate)).astype(x.dtype)


DROPOUT_FORMS = ('paper', 'inverted')


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {'relu': nn.relu, 'tanh': jnp.tanh}
