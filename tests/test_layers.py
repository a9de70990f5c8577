"""Tests of alexnet_jax.layers: LRN, max-pooling, per-example tower dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from alexnet_jax import layers

# Section 3.3: k=2, n=5, alpha=1e-4, beta=0.75.
K, N, ALPHA, BETA = 2.0, 5, 1e-4, 0.75


def _tf_lrn(x, alpha):
  """TensorFlow's LRN (alpha times the sum over depth_radius=2 neighbours)."""
  x32 = np.asarray(jnp.asarray(x, jnp.float32))
  return tf.nn.local_response_normalization(
      x32, depth_radius=N // 2, bias=K, alpha=alpha, beta=BETA).numpy()


def _activations(shape, seed=0):
  """ReLU-like maps large enough (tens to hundreds) that the alpha term matters."""
  rng = np.random.default_rng(seed)
  return np.abs(rng.normal(0.0, 150.0, shape)).astype(np.float32)


@pytest.mark.parametrize('channels', [1, 3, 4, 5, 6, 48])
@pytest.mark.parametrize('convention, tf_alpha', [('paper', ALPHA), ('cuda_convnet', ALPHA / N)])
def test_lrn_matches_tensorflow(channels, convention, tf_alpha):
  """Both conventions equal tf.nn.local_response_normalization (alpha, resp. alpha/5),
  also with fewer channels than the window."""
  x = _activations((2, 4, 3, channels), seed=channels)
  got = layers.local_response_norm(x, alpha_per_term=convention == 'cuda_convnet')
  want = _tf_lrn(x, tf_alpha)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), want, rtol=2e-6, atol=0)
  # The normalization is far from the k-only value, so the comparison is not vacuous.
  assert np.max(np.abs(want - x / K ** BETA)) > 0.1 * np.max(np.abs(want))


def test_lrn_edge_channels_literal():
  """The window is clipped at both edges: channel 0 sums maps 0..2, channel C-1 maps C-3..C-1."""
  x = _activations((1, 1, 1, 7), seed=3)
  got = np.asarray(layers.local_response_norm(x))[0, 0, 0]
  a = x[0, 0, 0].astype(np.float64)
  for i in range(7):
    lo, hi = max(0, i - 2), min(6, i + 2)
    want = a[i] / (K + ALPHA * np.sum(a[lo:hi + 1] ** 2)) ** BETA
    np.testing.assert_allclose(got[i], want, rtol=2e-6)
  # cuda_convnet divides alpha by n = 5 also at the edges, where only 3 maps are summed
  # (Caffe and PyTorch zero-pad the window the same way).
  cc = np.asarray(layers.local_response_norm(x, alpha_per_term=True))[0, 0, 0]
  np.testing.assert_allclose(cc[0], a[0] / (K + ALPHA / 5 * np.sum(a[:3] ** 2)) ** BETA, rtol=2e-6)


@pytest.mark.parametrize('convention, tf_alpha', [('paper', ALPHA), ('cuda_convnet', ALPHA / N)])
def test_lrn_bfloat16(convention, tf_alpha):
  """bfloat16 input: bfloat16 output, equal to TensorFlow's float32 result up to bf16 rounding."""
  x = jnp.asarray(_activations((2, 3, 3, 24), seed=7), jnp.bfloat16)
  got = layers.local_response_norm(x, alpha_per_term=convention == 'cuda_convnet')
  assert got.dtype == jnp.bfloat16
  want = _tf_lrn(x, tf_alpha)
  np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=2.0 ** -8, atol=0)


@pytest.mark.parametrize('size, window, stride, expected', [
    (55, 3, 2, 27), (27, 3, 2, 13), (13, 3, 2, 6),   # the paper's overlapping pools
    (55, 2, 2, 27), (27, 2, 2, 13), (13, 2, 2, 6),   # the non-overlapping comparison
    (15, 3, 2, 7), (4, 3, 2, 1), (3, 3, 2, 1),
])
def test_max_pool_output_sizes(size, window, stride, expected):
  """VALID pooling: floor((size - window) / stride) + 1 on both spatial axes, channels kept."""
  x = jnp.zeros((2, size, size, 5))
  assert layers.max_pool(x, window, stride).shape == (2, expected, expected, 5)


def test_max_pool_values():
  """Each output is the maximum of its window (overlapping windows, window 3, stride 2)."""
  x = np.random.default_rng(0).normal(size=(1, 7, 7, 2)).astype(np.float32)
  got = np.asarray(layers.max_pool(jnp.asarray(x), 3, 2))
  want = np.array([[[x[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3, c].max() for c in range(2)]
                    for j in range(3)] for i in range(3)])
  np.testing.assert_array_equal(got[0], want)


def _dropout(x, key, rate=0.5, layer=6, tower=0, ids=None, form='inverted'):
  ids = jnp.arange(x.shape[0], dtype=jnp.int32) if ids is None else jnp.asarray(ids, jnp.int32)
  return np.asarray(layers.tower_dropout(jnp.asarray(x), key, rate=rate, layer=layer, tower=tower,
                                         example_ids=ids, form=form))


@pytest.mark.parametrize('rate', [0.5, 0.2, 0.9])
def test_tower_dropout_keep_fraction_and_scale(rate):
  """About 1 - rate of the units are kept; the rest are 0. Inverted: kept units scaled by
  exactly 1 / (1 - rate); the paper's form: the same units, unscaled."""
  x = np.random.default_rng(1).uniform(0.5, 2.0, (32, 2048)).astype(np.float32)
  y = _dropout(x, jax.random.key(0), rate=rate)
  kept = y != 0
  # 65,536 Bernoulli draws: the std of the fraction is below 0.002.
  assert abs(kept.mean() - (1 - rate)) < 0.01
  np.testing.assert_allclose(y[kept], x[kept] / np.float32(1 - rate), rtol=3e-7)
  # The paper's form keeps the same units unscaled (the network scales at test time).
  np.testing.assert_array_equal(_dropout(x, jax.random.key(0), rate=rate, form='paper'),
                                np.where(kept, x, 0))
  # Every example gets its own mask.
  assert len({row.tobytes() for row in kept}) == x.shape[0]


def test_tower_dropout_rate_zero_is_identity():
  """rate 0 returns the input unchanged."""
  x = np.random.default_rng(2).normal(size=(4, 16)).astype(np.float32)
  np.testing.assert_array_equal(_dropout(x, jax.random.key(0), rate=0.0), x)


def test_tower_dropout_mask_depends_only_on_example_id():
  """Example id 7's mask is the same in a batch of ids 0..15 and in a batch of ids [7, 3]."""
  key = jax.random.key(42)
  x_full = np.ones((16, 512), np.float32)
  full = _dropout(x_full, key, ids=np.arange(16))
  pair = _dropout(np.ones((2, 512), np.float32), key, ids=[7, 3])
  np.testing.assert_array_equal(pair[0], full[7])
  np.testing.assert_array_equal(pair[1], full[3])
  # The mask is keyed by the id, not by the row: row 0 of the pair (id 7) differs from id 0.
  assert not np.array_equal(pair[0], full[0])


def test_tower_dropout_traced_tower_equals_int_tower():
  """A traced tower index (as axis_index gives under shard_map) draws the same mask as the int."""
  key = jax.random.key(3)
  x = jnp.ones((4, 256))
  ids = jnp.arange(4, dtype=jnp.int32)
  traced = jax.jit(lambda t: layers.tower_dropout(x, key, rate=0.5, layer=7, tower=t,
                                                  example_ids=ids))(jnp.int32(1))
  np.testing.assert_array_equal(np.asarray(traced), _dropout(np.ones((4, 256), np.float32), key,
                                                             layer=7, tower=1, form='paper'))


def test_tower_dropout_masks_differ_across_layers_towers_keys():
  """Masks differ between layers 6 and 7, towers 0 and 1, and dropout keys."""
  x = np.ones((8, 1024), np.float32)
  base = _dropout(x, jax.random.key(0), layer=6, tower=0)
  for other in (_dropout(x, jax.random.key(0), layer=7, tower=0),
                _dropout(x, jax.random.key(0), layer=6, tower=1),
                _dropout(x, jax.random.key(1), layer=6, tower=0)):
    agree = np.mean((base != 0) == (other != 0))
    assert 0.4 < agree < 0.6  # independent masks at rate 0.5 agree on about half the units
  np.testing.assert_array_equal(base, _dropout(x, jax.random.key(0), layer=6, tower=0))
