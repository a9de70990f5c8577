"""The speed settings change no result: matmul precision reaches every op, the CPU conv path agrees.

- `model.matmul_precision` sets the precision of every convolution and
  dot_general of the training step (forward and backward, LRN's band matmul
  included), read from the lowered StableHLO.
- The library routes CPU convolutions to XLA's Eigen path instead of
  YNNPACK (`layers.CPU_CONVOLUTION_FLAG`): the compiled step has no
  convolution left in a YNNPACK fusion, and its loss and gradients equal
  those of the YNNPACK path (computed in a subprocess) within 1e-5 relative.
- LRN with each precision equals the literal formula on CPU (both conventions).
"""

import os
import re
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax import layers
from alexnet_jax.model import AlexNet

YNNPACK_FLAG = '--xla_cpu_experimental_ynn_fusion_type=+individual_convolution'
SMALL = dict(num_classes=10, image_size=67, conv_features=(8, 8, 8, 8, 8), fc_features=16)
_OP = re.compile(r'stablehlo\.(convolution|dot_general)\b.*?->\s*tensor<[^>]*>')
_GRADS_SCRIPT = r'''
import sys
import jax, jax.numpy as jnp, numpy as np
from alexnet_jax.model import AlexNet
model = AlexNet(num_classes=10, image_size=67, conv_features=(8, 8, 8, 8, 8), fc_features=16)
rng = np.random.default_rng(0)
images = jnp.asarray(rng.normal(0, 50, (4, 67, 67, 3)), jnp.float32)
labels = jnp.asarray([0, 3, 5, 9])
params = model.init(jax.random.key(0), images)['params']
def loss(p):
  logits = model.apply({'params': p}, images, train=True, rngs={'dropout': jax.random.key(1)})
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
value, grads = jax.jit(jax.value_and_grad(loss))(params)
flat = {'/'.join(str(k.key) for k in path): np.asarray(g)
        for path, g in jax.tree_util.tree_leaves_with_path(grads)}
np.savez(sys.argv[1], loss=np.asarray(value), **flat)
'''


def _lowered_step_ops(precision):
  """(op, text) of every convolution / dot_general in the lowered training gradient."""
  model = AlexNet(**SMALL, matmul_precision=precision)
  images = jnp.zeros((2, 67, 67, 3), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.key(0), images)['params']

  def loss(p):
    return model.apply({'params': p}, images, train=True,
                       rngs={'dropout': jax.random.key(0)}).sum()

  text = jax.jit(jax.grad(loss)).lower(params).as_text()
  return [(m.group(1), m.group(0)) for m in _OP.finditer(text)]


def _precision(op_text):
  m = re.search(r'precision(?:_config)? = \[([^\]]*)\]', op_text)
  return re.findall(r'(DEFAULT|HIGH|HIGHEST)\b', m.group(1)) if m else []


def test_float32_precision_on_every_conv_and_dot():
  """matmul_precision='float32': HIGHEST on both operands of every conv and dot_general."""
  ops = _lowered_step_ops('float32')
  kinds = [op for op, _ in ops]
  # Forward: 5 convs and 3 dense layers per tower, 2 LRN band matmuls per
  # tower; the backward pass adds at least one op per weight.
  assert kinds.count('convolution') >= 2 * (5 + 5) and kinds.count('dot_general') >= 2 * (3 + 2)
  for _, text in ops:
    assert _precision(text) == ['HIGHEST', 'HIGHEST'], text


@pytest.mark.parametrize('precision, dtype', [('default', 'f32'), ('bfloat16', 'bf16')])
def test_default_and_bfloat16_precision(precision, dtype):
  """'default': no HIGHEST anywhere (TF32 allowed); 'bfloat16': conv/dense operands in bfloat16."""
  ops = _lowered_step_ops(precision)
  assert ops
  for op, text in ops:
    assert 'HIGHEST' not in _precision(text), text
  for op, text in ops:
    operands = re.findall(r'tensor<[\dx]*x(\w+)>', text.split(' : (')[-1].split(') ->')[0])
    if op == 'convolution':
      assert operands == [dtype, dtype], text


def test_compiled_step_has_no_ynnpack_convolution():
  """On CPU, every convolution of the compiled step stays out of YNNPACK fusions."""
  if jax.default_backend() != 'cpu':
    pytest.skip('a CPU setting')
  model = AlexNet(**SMALL)
  images = jnp.zeros((2, 67, 67, 3), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.key(0), images)['params']
  text = jax.jit(jax.grad(lambda p: model.apply({'params': p}, images).sum())).lower(
      params).compile().as_text()
  assert ' convolution(' in text
  fused = {m.group(1) for m in re.finditer(r'calls=%?([\w.\-]+), .*__ynn_fusion', text)}
  for block in re.split(r'\n\n', text):
    name = re.match(r'%?([\w.\-]+)', block.strip())
    if name and name.group(1) in fused:
      assert ' convolution(' not in block, block[:300]


def test_eigen_convolutions_equal_ynnpack_ones(tmp_path):
  """Loss and every gradient with the library's CPU conv path equal YNNPACK's within 1e-5."""
  if jax.default_backend() != 'cpu':
    pytest.skip('a CPU setting')
  results = {}
  for name, flags in [('library', ''), ('ynnpack', YNNPACK_FLAG)]:
    out = tmp_path / f'{name}.npz'
    env = {**os.environ, 'XLA_FLAGS': flags, 'JAX_PLATFORMS': 'cpu'}
    subprocess.run([sys.executable, '-c', _GRADS_SCRIPT, str(out)], env=env, check=True)
    results[name] = dict(np.load(out))
  assert set(results['library']) == set(results['ynnpack'])
  for key, ref in results['ynnpack'].items():
    got = results['library'][key]
    scale = np.max(np.abs(ref))
    assert scale > 0, key
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * scale, err_msg=key)


def test_flag_respects_user_setting():
  """A process that sets the YNNPACK flag itself keeps its setting."""
  env = {**os.environ, 'XLA_FLAGS': YNNPACK_FLAG}
  out = subprocess.run([sys.executable, '-c', 'import os, alexnet_jax.layers; '
                        'print(os.environ["XLA_FLAGS"])'], env=env, check=True,
                       capture_output=True, text=True).stdout.strip()
  assert out == YNNPACK_FLAG


def _literal_lrn(a, k, alpha, beta, size):
  out = np.empty_like(a)
  channels = a.shape[-1]
  for i in range(channels):
    lo, hi = max(0, i - size // 2), min(channels - 1, i + size // 2)
    out[..., i] = a[..., i] / (k + alpha * np.sum(a[..., lo:hi + 1] ** 2, -1)) ** beta
  return out


@pytest.mark.parametrize('precision', ['float32', 'default'])
@pytest.mark.parametrize('per_term', [False, True])
def test_lrn_each_precision_equals_formula(precision, per_term):
  """LRN's band matmul at each float32 precision: the literal formula, values and gradient."""
  x = np.random.default_rng(1).normal(0, 30, (2, 5, 5, 12)).astype(np.float32)
  lax_precision = {'float32': jax.lax.Precision.HIGHEST,
                   'default': jax.lax.Precision.DEFAULT}[precision]
  alpha = 1e-4 / 5 if per_term else 1e-4
  got = layers.local_response_norm(jnp.asarray(x), alpha_per_term=per_term,
                                   precision=lax_precision)
  ref = _literal_lrn(x.astype(np.float64), 2.0, alpha, 0.75, 5)
  np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5)
  grad = jax.grad(lambda v: jnp.sum(layers.local_response_norm(
      v, alpha_per_term=per_term, precision=lax_precision) * jnp.arange(12.0)))(jnp.asarray(x))
  eps = 1e-3
  idx = (1, 2, 3, 4)
  bumped = [x.astype(np.float64).copy() for _ in range(2)]
  bumped[0][idx] += eps
  bumped[1][idx] -= eps
  weights = np.arange(12.0)
  numeric = (np.sum(_literal_lrn(bumped[0], 2.0, alpha, 0.75, 5) * weights)
             - np.sum(_literal_lrn(bumped[1], 2.0, alpha, 0.75, 5) * weights)) / (2 * eps)
  np.testing.assert_allclose(float(grad[idx]), numeric, rtol=1e-3)


def _literal_max_pool_grad(x, dy, window, stride):
  """Brute force: each window's dy goes to its first (row-major) maximum."""
  dx = np.zeros_like(x)
  n, out_h, out_w, c = dy.shape
  for b in range(n):
    for r in range(out_h):
      for q in range(out_w):
        for ch in range(c):
          patch = x[b, r * stride:r * stride + window, q * stride:q * stride + window, ch]
          i, j = np.unravel_index(np.argmax(patch), patch.shape)  # first maximum
          dx[b, r * stride + i, q * stride + j, ch] += dy[b, r, q, ch]
  return dx


@pytest.mark.parametrize('window, stride, side', [(3, 2, 13), (3, 2, 14), (2, 2, 9), (3, 1, 7)])
def test_max_pool_equals_direct_form(window, stride, side):
  """layers.max_pool: flax's max_pool values; gradient = the direct form's and the brute force's."""
  rng = np.random.default_rng(side)
  x = rng.normal(size=(2, side, side, 5)).astype(np.float32)
  x[0, :4] = 0.0  # ties, as after a ReLU
  x[1, 2:5, 2:5, 1] = 1.5
  def direct(v):
    return nn.max_pool(v, (window, window), strides=(stride, stride), padding='VALID')
  def ours(v):
    return layers.max_pool(v, window, stride)
  y, vjp = jax.vjp(ours, jnp.asarray(x))
  y_ref, vjp_ref = jax.vjp(direct, jnp.asarray(x))
  np.testing.assert_array_equal(np.asarray(y), np.asarray(y_ref))
  dy = rng.normal(size=y.shape).astype(np.float32)
  (dx,) = vjp(jnp.asarray(dy))
  np.testing.assert_allclose(np.asarray(dx), _literal_max_pool_grad(x, dy, window, stride),
                             rtol=1e-6, atol=1e-6)
  (dx_ref,) = vjp_ref(jnp.asarray(dy))
  np.testing.assert_allclose(np.asarray(dx), np.asarray(dx_ref), rtol=1e-6, atol=1e-6)
