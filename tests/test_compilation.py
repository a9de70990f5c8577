"""The speed settings change no result: matmul precision reaches every op, the CPU conv path agrees.

- `model.matmul_precision` sets the precision of every convolution and
  dot_general of the training step (forward and backward, LRN's band matmul
  included), read from the lowered StableHLO.
- `compilation.jit` compiles CPU programs with XLA's convolutions on its Eigen
  path instead of YNNPACK, as a per-compilation compiler option: the compiled
  step has no convolution left in a YNNPACK fusion (plain `jax.jit`'s has),
  and its loss and gradients equal those of the YNNPACK path within 1e-5
  relative. A jaxlib that refuses the option, and a user's XLA_FLAGS that set
  it, get plain `jax.jit`, without aborting the process.
- Importing the library changes no environment variable (the setting used
  to be put into XLA_FLAGS at import, which aborted every jaxlib that did
  not know the flag, on every backend).
- LRN with each precision equals the literal formula on CPU (both conventions).
"""

import json
import logging
import os
import pathlib
import re
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax import compilation
from alexnet_jax import layers
from alexnet_jax.model import AlexNet

REPO = pathlib.Path(__file__).resolve().parents[1]

YNNPACK_FLAG = '--xla_cpu_experimental_ynn_fusion_type=+individual_convolution'
SMALL = dict(num_classes=10, image_size=67, conv_features=(8, 8, 8, 8, 8), fc_features=16)
# Wide enough that jaxlib 0.10.2's YNNPACK takes every convolution of the step
# by default (it leaves ones as narrow as SMALL's to Eigen anyway, which would
# make the CPU tests below vacuous).
YNNPACK_SIZED = {**SMALL, 'conv_features': (48, 128, 64, 64, 64)}
_OP = re.compile(r'stablehlo\.(convolution|dot_general)\b.*?->\s*tensor<[^>]*>')


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


@pytest.fixture
def probe_again():
  """`compilation.cpu_options` decides anew in the test and after it (its answer is cached)."""
  compilation.cpu_options.cache_clear()
  yield
  compilation.cpu_options.cache_clear()


def _ynnpack_convolutions(compiled_text):
  """(convolutions inside YNNPACK fusions, all convolutions) of a compiled CPU module's text."""
  fused = {m.group(1) for m in re.finditer(r'calls=%?([\w.\-]+), .*__ynn_fusion', compiled_text)}
  inside = 0
  for block in re.split(r'\n\n', compiled_text):
    name = re.match(r'%?([\w.\-]+)', block.strip())
    if name and name.group(1) in fused:
      inside += block.count(' convolution(')
  return inside, compiled_text.count(' convolution(')


@pytest.fixture(scope='module')
def cpu_steps():
  """The gradient step of a small network compiled by compilation.jit and by plain jax.jit."""
  if jax.default_backend() != 'cpu':
    pytest.skip('a CPU setting')
  if compilation.OPTION in os.environ.get('XLA_FLAGS', ''):
    pytest.skip('XLA_FLAGS set the convolution path for this process')
  model = AlexNet(**YNNPACK_SIZED)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(0, 50, (4, 67, 67, 3)), jnp.float32)
  labels = jnp.asarray([0, 3, 5, 9])
  params = model.init(jax.random.key(0), images)['params']

  def loss(p):
    logits = model.apply({'params': p}, images, train=True, rngs={'dropout': jax.random.key(1)})
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

  step = jax.value_and_grad(loss)
  return params, {'library': compilation.jit(step).lower(params).compile(),
                  'ynnpack': jax.jit(step).lower(params).compile()}


def test_compiled_step_has_no_ynnpack_convolution(cpu_steps):
  """compilation.jit keeps every convolution of the step out of YNNPACK fusions; jax.jit doesn't."""
  _, compiled = cpu_steps
  assert compilation.cpu_options() == compilation.EIGEN_CONVOLUTIONS
  inside, total = _ynnpack_convolutions(compiled['library'].as_text())
  assert total >= 10 and inside == 0, (inside, total)
  # This jaxlib's default puts them in YNNPACK: the option is what moves them.
  inside, total = _ynnpack_convolutions(compiled['ynnpack'].as_text())
  assert inside == total, (inside, total)


def test_eigen_convolutions_equal_ynnpack_ones(cpu_steps):
  """Loss and every gradient with compilation.jit's CPU conv path equal YNNPACK's within 1e-5."""
  params, compiled = cpu_steps
  results = {}
  for name, step in compiled.items():
    value, grads = step(params)
    results[name] = {'loss': np.asarray(value), **{
        jax.tree_util.keystr(path): np.asarray(g)
        for path, g in jax.tree_util.tree_leaves_with_path(grads)}}
  assert set(results['library']) == set(results['ynnpack'])
  for key, ref in results['ynnpack'].items():
    got = results['library'][key]
    scale = np.max(np.abs(ref))
    assert scale > 0, key
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * scale, err_msg=key)


def test_refused_option_falls_back_to_plain_jit(monkeypatch, probe_again, caplog):
  """A jaxlib that refuses the option (simulated: a value XLA rejects) compiles without it.

  Such a refusal is a Python error of the probe compilation, caught and
  logged; the old process-wide XLA_FLAGS setting aborted the process instead.
  """
  if jax.default_backend() != 'cpu':
    pytest.skip('a CPU setting')
  monkeypatch.setattr(compilation, 'EIGEN_CONVOLUTIONS',
                      {compilation.OPTION: 'LIBRARY_FUSION_TYPE_NO_SUCH_TYPE'})
  with caplog.at_level(logging.WARNING):
    assert compilation.cpu_options() == {}
  assert f'does not accept the compiler option {compilation.OPTION}' in caplog.text
  assert float(compilation.jit(jnp.negative)(2.0)) == -2.0


def test_users_xla_flags_setting_wins(monkeypatch, probe_again):
  """XLA_FLAGS that name the option themselves get plain jax.jit: the user's setting stays."""
  monkeypatch.setenv('XLA_FLAGS', YNNPACK_FLAG)
  assert compilation.cpu_options() == {}


def _library_modules() -> list[str]:
  """Every module of the package but the programs (alexnet_jax.main, alexnet_jax.tools.*)."""
  names = []
  for path in sorted((REPO / 'alexnet_jax').rglob('*.py')):
    parts = path.relative_to(REPO).with_suffix('').parts
    if parts[1:2] in (('tools',), ('main',)):
      continue
    names.append('.'.join(parts[:-1] if parts[-1] == '__init__' else parts))
  # The packaged configs (setup.cfg's package_dir maps them into the package).
  names += [f'alexnet_jax.experiments.{p.stem}' for p in sorted((REPO / 'experiments').glob('*.py'))
            if p.stem != '__init__']
  return names


_ENVIRON_SCRIPT = r'''
import importlib, json, os, sys
# They set variables of their own when imported, which is theirs to do.
import tensorflow, tensorflow_datasets, jax, flax, optax, orbax.checkpoint, matplotlib
before = dict(os.environ)
for name in sys.argv[1:]:
  importlib.import_module(name)
after = dict(os.environ)
print(json.dumps({k: [before.get(k), after.get(k)] for k in before.keys() | after.keys()
                  if before.get(k) != after.get(k)}))
'''


def test_importing_the_library_leaves_os_environ_unchanged():
  """No module of the package sets an environment variable when imported (XLA_FLAGS included)."""
  modules = _library_modules()
  assert 'alexnet_jax.compilation' in modules and 'alexnet_jax.data.pipeline' in modules
  out = subprocess.run([sys.executable, '-c', _ENVIRON_SCRIPT, *modules], cwd=REPO,
                       env={**os.environ, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3'},
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert json.loads(out.stdout.strip().splitlines()[-1]) == {}


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
