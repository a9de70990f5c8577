"""Tests of alexnet_jax.model.AlexNet: sizes, towers, initialization, dropout, variants, errors."""

import math

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from alexnet_jax import model as model_lib
from alexnet_jax.model import AlexNet

KEY = jax.random.key(0)
LAYERS = ('conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6', 'fc7', 'fc8')
# The grouped network with 1000 classes, counted by hand from Figure 2's layer shapes.
PAPER_LAYER_PARAMS = {'conv1': 34_944, 'conv2': 307_456, 'conv3': 885_120, 'conv4': 663_936,
                      'conv5': 442_624, 'fc6': 37_752_832, 'fc7': 16_781_312, 'fc8': 4_097_000}
PAPER_NEURONS = (290_400, 186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000)
# Biases 1 in conv2, conv4, conv5, fc6, fc7; 0 in conv1, conv3, fc8 (section 5).
BIAS_INIT = {'conv1': 0.0, 'conv2': 1.0, 'conv3': 0.0, 'conv4': 1.0, 'conv5': 1.0,
             'fc6': 1.0, 'fc7': 1.0, 'fc8': 0.0}
# A small network for the tests that need several forward passes.
NARROW = dict(conv_features=(16, 32, 48, 48, 32), fc_features=64, image_size=67, num_classes=10)


def expected_params(towers=2, conv=(96, 256, 384, 384, 256), fc=4096, classes=1000, side=6,
                    conv6=False):
  """Parameters per layer, from the layer sizes alone (kernel weights + biases).

  A tower of conv2, conv4, conv5 (and conv6) sees only its own tower's maps; conv1 sees the
  image and conv3, fc6, fc7, fc8 see the maps of both towers. `side` is the map side
  before fc6.
  """
  t = towers
  c1, c2, c3, c4, c5 = conv
  counts = {
      'conv1': 11 * 11 * 3 * c1 + c1,
      'conv2': 5 * 5 * (c1 // t) * c2 + c2,
      'conv3': 3 * 3 * c2 * c3 + c3,
      'conv4': 3 * 3 * (c3 // t) * c4 + c4,
      'conv5': 3 * 3 * (c4 // t) * c5 + c5,
  }
  if conv6:  # as many kernels as conv5
    counts['conv6'] = 3 * 3 * (c5 // t) * c5 + c5
  counts['fc6'] = side * side * c5 * fc + fc
  counts['fc7'] = fc * fc + fc
  counts['fc8'] = fc * classes + classes
  return counts


def count(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def per_layer(params):
  return {name: count(sub) for name, sub in params.items()}


def abstract_variables(model, batch=1, capture=False):
  """Shapes of the variables (and captured outputs) of `model`, without computing anything."""
  x = jax.ShapeDtypeStruct((batch, model.image_size, model.image_size, 3), jnp.float32)
  return jax.eval_shape(
      lambda k, x: model.init_with_output(k, x, capture_intermediates=capture), KEY, x)


def images(model, batch, seed=1):
  """Mean-subtracted pixels of roughly the real range."""
  shape = (batch, model.image_size, model.image_size, 3)
  return 50.0 * jax.random.normal(jax.random.key(seed), shape)


def random_params(model, std=0.01, seed=0):
  """Parameters of `model`'s shapes drawn with NumPy (kernels N(0, std), biases as initialized).

  Much faster here than compiling `model.init`'s random number generation for every
  variant; the init itself is tested on the paper's network.
  """
  shapes = abstract_variables(model)[1]['params']
  rng = np.random.default_rng(seed)
  return {name: {'kernel': (std * rng.standard_normal(p['kernel'].shape)).astype(np.float32),
                 'bias': np.full(p['bias'].shape, BIAS_INIT.get(name, 1.0), np.float32)}
          for name, p in shapes.items()}


@pytest.fixture(scope='module')
def paper_net():
  """The default network at 224, initialized, with the captured outputs of one forward (batch 1)."""
  model = AlexNet()
  x = images(model, 1)
  logits, variables = jax.jit(
      lambda k, x: model.init_with_output(k, x, capture_intermediates=True))(KEY, x)
  return model, x, logits, variables['params'], variables['intermediates']


def test_parameter_count_paper():
  """60,965,224 parameters, per layer as in reference.md, with the tower-axis layout."""
  params = abstract_variables(AlexNet())[1]['params']
  assert count(params) == 60_965_224
  assert per_layer(params) == PAPER_LAYER_PARAMS
  assert per_layer(params) == expected_params()
  shapes = {name: (p['kernel'].shape, p['bias'].shape) for name, p in params.items()}
  assert shapes == {
      'conv1': ((2, 11, 11, 3, 48), (2, 48)),
      'conv2': ((2, 5, 5, 48, 128), (2, 128)),
      'conv3': ((2, 3, 3, 256, 192), (2, 192)),
      'conv4': ((2, 3, 3, 192, 192), (2, 192)),
      'conv5': ((2, 3, 3, 192, 128), (2, 128)),
      'fc6': ((2, 9216, 2048), (2, 2048)),
      'fc7': ((2, 4096, 2048), (2, 2048)),
      'fc8': ((2, 4096, 500), (2, 500)),
  }
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


def test_layer_shapes_and_neurons_224(paper_net):
  """Each layer's output for a 224 input: maps 55, 27, 13, 13, 13 and the paper's neuron counts."""
  model, x, logits, _, inter = paper_net
  outputs = {name: inter[name]['__call__'][0] for name in LAYERS}
  shapes = {name: tuple(o.shape for o in outs) for name, outs in outputs.items()}
  assert shapes == {
      'conv1': ((1, 55, 55, 48),) * 2, 'conv2': ((1, 27, 27, 128),) * 2,
      'conv3': ((1, 13, 13, 192),) * 2, 'conv4': ((1, 13, 13, 192),) * 2,
      'conv5': ((1, 13, 13, 128),) * 2, 'fc6': ((1, 2048),) * 2, 'fc7': ((1, 2048),) * 2,
      'fc8': ((1, 500),) * 2}
  neurons = tuple(sum(o.size for o in outputs[name]) for name in LAYERS)
  assert neurons == PAPER_NEURONS
  assert logits.shape == (1, 1000) and logits.dtype == jnp.float32
  # Logits are tower 0's classes followed by tower 1's.
  np.testing.assert_array_equal(logits, jnp.concatenate(outputs['fc8'], axis=-1))
  # fc7's feature vectors are sown (section 6.1), equal to ReLU of fc7.
  fc7 = inter['fc7_features'][0]
  for sown, pre in zip(fc7, outputs['fc7']):
    np.testing.assert_array_equal(sown, nn.relu(pre))
  assert model.feature_map_sizes() == (55, 27, 13, 6)


def test_spatial_sizes_227_equal_224():
  """Caffe's 227 input without padding gives the same maps as 224 with cuda-convnet's padding."""
  assert model_lib.conv1_padding(224) == 3 and model_lib.conv1_padding(227) == 0
  out224, vars224 = abstract_variables(AlexNet(image_size=224), capture=True)
  out227, vars227 = abstract_variables(AlexNet(image_size=227), capture=True)

  def shapes(tree):
    return jax.tree.map(lambda a: a.shape, tree)

  assert shapes(vars227['intermediates']) == shapes(vars224['intermediates'])
  assert shapes(vars227['params']) == shapes(vars224['params'])
  assert vars227['intermediates']['conv1']['__call__'][0][0].shape == (1, 55, 55, 48)


def _perturb_tower0_conv3(next_fun, args, kwargs, context):
  out = next_fun(*args, **kwargs)
  if context.module.name == 'conv3' and context.method_name == '__call__':
    return (out[0] + 1.0,) + tuple(out[1:])
  return out


def _outputs_with_and_without_perturbation(model, params, x):
  def run():
    _, state = model.apply({'params': params}, x, capture_intermediates=True,
                           mutable=['intermediates'])
    return {name: state['intermediates'][name]['__call__'][0]
            for name in ('conv2', 'conv3', 'conv4', 'conv5', 'fc6')}
  clean = run()
  with nn.intercept_methods(_perturb_tower0_conv3):
    perturbed = run()
  return clean, perturbed


def _check_tower_isolation(clean, perturbed):
  # The interceptor acted on tower 0's conv3 output, upstream is unchanged.
  for t in (0, 1):
    np.testing.assert_array_equal(clean['conv2'][t], perturbed['conv2'][t])
  # Tower 1's conv4 and conv5 read only tower 1's maps: unchanged, bit for bit.
  for layer in ('conv4', 'conv5'):
    np.testing.assert_array_equal(clean[layer][1], perturbed[layer][1])
    assert np.max(np.abs(clean[layer][0] - perturbed[layer][0])) > 1e-3
  # fc6 reads both towers: both change.
  for t in (0, 1):
    assert np.max(np.abs(clean['fc6'][t] - perturbed['fc6'][t])) > 1e-4


def test_tower_isolation_narrow():
  """Changing tower 0's conv3 output leaves tower 1's conv4/conv5 unchanged and changes both
  fc6 halves."""
  model = AlexNet(**NARROW)
  x = images(model, 2)
  _check_tower_isolation(*_outputs_with_and_without_perturbation(model, random_params(model), x))


def test_tower_isolation_paper_net(paper_net):
  """The same isolation in the default 224 network."""
  model, x, _, params, _ = paper_net
  _check_tower_isolation(*_outputs_with_and_without_perturbation(model, params, x))


def test_initialization_statistics(paper_net):
  """Weights N(0, 0.01) in every layer and tower; biases 1 in conv2, conv4, conv5, fc6, fc7,
  else 0."""
  params = paper_net[3]
  for name in LAYERS:
    kernel = np.asarray(params[name]['kernel'])
    for tower in kernel:
      assert abs(tower.mean()) < 5 * 0.01 / math.sqrt(tower.size) + 1e-6, name
      assert abs(tower.std() / 0.01 - 1) < 5 / math.sqrt(2 * tower.size) + 1e-3, name
    assert not np.array_equal(kernel[0], kernel[1]), name  # towers drawn independently
    np.testing.assert_array_equal(params[name]['bias'], np.full_like(params[name]['bias'],
                                                                     BIAS_INIT[name]))


def test_dropout_only_in_training():
  """train=False is deterministic and needs no rng; train=True needs a 'dropout' rng and its
  output depends on the key; dropout_rate 0 makes training equal to evaluation."""
  model = AlexNet(**NARROW)
  x = images(model, 4)
  variables = {'params': random_params(model)}
  apply = model.apply
  eval1, eval2 = apply(variables, x, train=False), apply(variables, x, train=False)
  np.testing.assert_array_equal(eval1, eval2)
  with pytest.raises(flax.errors.InvalidRngError, match='dropout'):
    model.apply(variables, x, train=True)

  def train(seed):
    return apply(variables, x, train=True, rngs={'dropout': jax.random.key(seed)})

  np.testing.assert_array_equal(train(1), train(1))
  assert np.max(np.abs(train(1) - train(2))) > 1e-4 * np.max(np.abs(train(1)))
  assert np.max(np.abs(train(1) - eval1)) > 1e-4 * np.max(np.abs(eval1))
  no_dropout = AlexNet(**NARROW, dropout_rate=0.0)
  np.testing.assert_array_equal(
      no_dropout.apply(variables, x, train=True, rngs={'dropout': jax.random.key(1)}),
      no_dropout.apply(variables, x, train=False))


def test_dropout_masks_follow_example_ids():
  """Example 2's training output is the same in a batch of 4 (ids 0..3) and alone with id 2."""
  model = AlexNet(**NARROW)
  x = images(model, 4)
  variables = {'params': random_params(model)}
  rngs = {'dropout': jax.random.key(5)}
  full = model.apply(variables, x, train=True, rngs=rngs)
  alone = model.apply(variables, x[2:3], train=True, rngs=rngs,
                      example_ids=jnp.array([2], jnp.int32))
  np.testing.assert_allclose(alone[0], full[2], rtol=1e-5, atol=1e-6 * np.max(np.abs(full)))
  wrong_id = model.apply(variables, x[2:3], train=True, rngs=rngs)  # id 0
  assert np.max(np.abs(wrong_id[0] - full[2])) > 1e-4 * np.max(np.abs(full))


# (fields, arguments of expected_params besides the widths and the side).
VARIANTS = {
    'paper': ({}, {}),
    'one_tower': (dict(towers=1), dict(towers=1, conv=(48, 128, 192, 192, 256))),
    'no_lrn': (dict(lrn=False), {}),
    'lrn_cuda_convnet': (dict(lrn_convention='cuda_convnet'), {}),
    'pool_2_2': (dict(pool_window=2, pool_stride=2), {}),
    'tanh': (dict(activation='tanh'), {}),
    'conv6': (dict(conv6=True), dict(conv6=True)),
    'one_tower_conv6': (dict(towers=1, conv6=True),
                        dict(towers=1, conv=(48, 128, 192, 192, 256), conv6=True)),
    'classes_10': (dict(num_classes=10), dict(classes=10)),
    'one_tower_999_classes': (dict(towers=1, num_classes=999),
                              dict(towers=1, conv=(48, 128, 192, 192, 256), classes=999)),
    'bfloat16': (dict(matmul_precision='bfloat16'), {}),
}


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_variant_parameter_count_224(variant):
  """At 224 with default widths each variant has the count the layer-size formula gives."""
  fields, expected = VARIANTS[variant]
  params = abstract_variables(AlexNet(**fields))[1]['params']
  assert per_layer(params) == expected_params(**expected)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


def test_one_tower_network():
  """towers=1 halves conv1-conv4 (48, 128, 192, 192) and keeps conv5 at 256: 59,798,312
  parameters."""
  model = AlexNet(towers=1)
  assert model.features_per_layer == (48, 128, 192, 192, 256)
  params = abstract_variables(model)[1]['params']
  assert count(params) == 59_798_312
  assert params['conv1']['kernel'].shape == (1, 11, 11, 3, 48)
  assert params['conv3']['kernel'].shape == (1, 3, 3, 128, 192)
  assert params['fc6']['kernel'].shape == (1, 9216, 4096)


# Forward passes at a small image (maps 15, 7, 3, 1 before fc6) with the default conv widths.
SMALL = dict(image_size=67, fc_features=256)
# Pixels large enough that LRN's alpha term is not negligible next to k = 2.
SMALL_PIXEL_SCALE = 20.0


@pytest.fixture(scope='module')
def small_base():
  model = AlexNet(**SMALL)
  x = SMALL_PIXEL_SCALE * images(model, 2)
  variables = {'params': random_params(model)}
  return x, variables, model.apply(variables, x)


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_variant_forward(variant, small_base):
  """Each variant builds and runs a forward to finite float32 logits, with float32 parameters
  of the formula's count; a switch that keeps the parameters changes the paper net's logits."""
  fields, expected = VARIANTS[variant]
  model = AlexNet(**SMALL, **fields)
  x, base_variables, base_logits = small_base
  shapes = abstract_variables(model, batch=2)[1]['params']
  assert per_layer(shapes) == expected_params(**{**expected, 'fc': 256, 'side': 1})
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(shapes))
  classes = fields.get('num_classes', 1000)
  logits = model.apply({'params': random_params(model, seed=1)}, x)
  assert logits.shape == (2, classes) and logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits)) and np.max(np.abs(logits)) > 0
  if jax.tree.map(jnp.shape, shapes) != jax.tree.map(jnp.shape, base_variables['params']):
    return
  same_params = model.apply(base_variables, x)
  scale = np.max(np.abs(base_logits))
  if variant == 'paper':
    np.testing.assert_array_equal(same_params, base_logits)
  elif variant == 'bfloat16':
    np.testing.assert_allclose(same_params, base_logits, atol=0.02 * scale)
    assert np.max(np.abs(same_params - base_logits)) > 1e-5 * scale  # really computed in bf16
  else:
    assert np.max(np.abs(same_params - base_logits)) > 2e-3 * scale


def test_bfloat16_computes_in_bfloat16():
  """matmul_precision=bfloat16: float32 parameters, bfloat16 layer outputs, float32 logits."""
  model = AlexNet(**NARROW, matmul_precision='bfloat16')
  logits, variables = abstract_variables(model, batch=2, capture=True)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables['params']))
  inter = variables['intermediates']
  for name in LAYERS:
    assert all(o.dtype == jnp.bfloat16 for o in inter[name]['__call__'][0]), name
  assert logits.dtype == jnp.float32


@pytest.mark.parametrize('shape, dtype', [
    ((224, 224, 3), jnp.float32),        # no batch axis
    ((1, 1, 224, 224, 3), jnp.float32),  # rank 5
    ((1, 227, 227, 3), jnp.float32),     # wrong size
    ((1, 224, 200, 3), jnp.float32),     # not square
    ((1, 224, 224, 1), jnp.float32),     # one channel
    ((1, 3, 224, 224), jnp.float32),     # NCHW
    ((1, 224, 224, 3), jnp.uint8),       # raw pixels
    ((1, 224, 224, 3), jnp.int32),
])
def test_bad_input_raises(shape, dtype):
  """Wrong rank, size, channels or an integer dtype: ValueError naming the expected shape."""
  model = AlexNet()
  with pytest.raises(ValueError, match=r'\(batch, 224, 224, 3\) floating point'):
    jax.eval_shape(model.init, KEY, jax.ShapeDtypeStruct(shape, dtype))


def test_good_input_dtypes_accepted():
  """bfloat16 and float16 images are floating point and accepted."""
  model = AlexNet(**NARROW)
  for dtype in (jnp.bfloat16, jnp.float16):
    out = jax.eval_shape(model.init_with_output, KEY, jax.ShapeDtypeStruct((2, 67, 67, 3), dtype))
    assert out[0].shape == (2, 10)


@pytest.mark.parametrize('fields, message', [
    (dict(towers=3), 'towers'),
    (dict(towers=0), 'towers'),
    (dict(dropout_rate=1.0), 'dropout'),
    (dict(dropout_rate=-0.1), 'dropout'),
    (dict(num_classes=0), 'num_classes'),
    (dict(lrn_convention='caffe'), 'lrn_convention'),
    (dict(activation='sigmoid'), 'activation'),
    (dict(conv_features=(96, 256, 384, 384)), 'conv_features'),
    (dict(conv_features=(96, 256, 385, 384, 256)), 'conv_features'),
    (dict(fc_features=4095), 'fc_features'),
    (dict(image_size=40), 'image_size'),
])
def test_invalid_fields_raise_at_construction(fields, message):
  """Invalid fields raise ValueError when the module is constructed, before any call."""
  with pytest.raises(ValueError, match=message):
    AlexNet(**fields)


def test_valid_edge_fields_construct():
  """999 classes are fine with one tower (999 fc8 units) and with two (1000); dropout 0 is
  allowed."""
  assert AlexNet(towers=1, num_classes=999).fc8_units == 999
  assert AlexNet(num_classes=999).fc8_units == 1000
  assert AlexNet(dropout_rate=0.0).dropout_rate == 0.0


def test_odd_class_count_pads_one_fc8_unit():
  """5 classes over two towers: fc8 has 3 units per tower, the last of tower 1 padded. The
  logits are the 5 others (tower 0's 3, then tower 1's first 2), so the loss never reaches
  the padded unit: its gradient is exactly zero. Section 6's 21,841 classes: 21,842 units."""
  model = AlexNet(**{**NARROW, 'num_classes': 5})
  x = jax.random.normal(KEY, (4, 67, 67, 3))
  shapes = jax.eval_shape(model.init, KEY, x)['params']
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.normal(0, 0.05, s.shape).astype(np.float32), shapes)
  assert params['fc8']['kernel'].shape == (2, 64, 3) and params['fc8']['bias'].shape == (2, 3)

  def loss(p):
    out, state = model.apply({'params': p}, x, mutable=['intermediates'])
    ce = optax.softmax_cross_entropy_with_integer_labels(out, jnp.arange(4) % 5).mean()
    return ce, (out, state['intermediates']['fc7_features'][0])
  grads, (logits, fc7) = jax.jit(jax.grad(loss, has_aux=True))(params)
  assert logits.shape == (4, 5)
  both = jnp.concatenate(fc7, axis=-1) * 0.5  # the paper's test-time dropout
  w, b = params['fc8']['kernel'], params['fc8']['bias']
  by_hand = jnp.concatenate([both @ w[0] + b[0], both @ w[1] + b[1]], axis=-1)[:, :5]
  np.testing.assert_allclose(logits, by_hand, rtol=1e-5, atol=1e-6)
  grads = grads['fc8']
  assert np.all(grads['kernel'][1, :, 2] == 0) and grads['bias'][1, 2] == 0
  assert np.all(np.abs(grads['kernel'][1, :, :2]).sum(0) > 0)
  assert AlexNet(num_classes=21_841).fc8_units == 21_842


def test_from_config():
  """from_config passes the config's fields through and rejects unknown ones."""
  cfg = ml_collections.ConfigDict(dict(towers=1, lrn_convention='cuda_convnet',
                                       matmul_precision='bfloat16',
                                       conv_features=[48, 128, 192, 192, 256], conv6=True))
  model = model_lib.from_config(cfg, num_classes=10)
  assert (model.towers, model.lrn_convention, model.num_classes, model.conv6) == (
      1, 'cuda_convnet', 10, True)
  assert model.dtype == jnp.bfloat16 and model.conv_features == (48, 128, 192, 192, 256)
  bad = ml_collections.ConfigDict(dict(towers=2, tower_count=2))
  with pytest.raises(ValueError, match='tower_count'):
    model_lib.from_config(bad, num_classes=1000)
