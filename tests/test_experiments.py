"""Tests of the experiment configs (experiments/*.py), the paper's dropout form and minus_conv."""

import os

from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np
import pytest

from alexnet_jax import ablations
from alexnet_jax import config as config_lib
from alexnet_jax import errors
from alexnet_jax import layers
from alexnet_jax import model as model_lib
from alexnet_jax import train
from alexnet_jax.data import synthetic

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'experiments')
# Configs that take a get_config argument, with the arguments they accept.
ARGUMENTS = {'demo_ablation': ['', *(a.name for a in ablations.ABLATIONS.values() if a.apply)],
             'minus_conv': ['conv2', 'conv3', 'conv4'], 'pretrain_conv6': ['paper', 'demo'],
             'finetune': ['paper', 'demo']}
NARROW = dict(conv_features=(16, 32, 48, 48, 32), fc_features=64, image_size=67, num_classes=10)


def _specs():
  names = sorted(f[:-3] for f in os.listdir(EXPERIMENTS)
                 if f.endswith('.py') and f != '__init__.py')
  return [f'{n}:{a}' if a else n for n in names for a in ARGUMENTS.get(n, [''])]


def _shapes_classes(config) -> int:
  """The class count of a config on the embedded set: its class subset, or all its difficulty's."""
  difficulty = synthetic.DIFFICULTIES[config.input.shapes.difficulty]
  return len(config.input.shapes.classes or ()) or difficulty.num_classes


@pytest.mark.parametrize('spec', _specs())
def test_every_experiment_loads_checks_and_builds(spec):
  """Every config in experiments/ (with each argument it takes) loads, passes check_config and
  builds its network, whose parameters initialize with finite shapes."""
  config = config_lib.load(spec)
  if config.data_dir is None:  # required, set on the command line (folder datasets)
    with pytest.raises(errors.ConfigError, match='--config.data_dir=/path/to/folder'):
      train.check_config(config)
    with config.unlocked():
      config.data_dir = '/data/images'
  train.check_config(config)
  classes = _shapes_classes(config)
  model = model_lib.from_config(config.model, classes, image_size=config.input.crop_size)
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jnp.zeros((1, model.image_size, model.image_size, 3)))
  assert shapes['params']['fc8']['kernel'].shape[-1] * model.towers == classes


def test_plateau_gates_lie_below_chance():
  """A config that keeps the rate until the net leaves chance (plateau.max_error < 1) puts the
  gate under the chance error 1 - 1 / classes: at or above it, a net still at chance can have
  its rate divided (a 6-class transfer run with the 12-class gate 0.85 did, three times)."""
  gated = {}
  for spec in _specs():
    config = config_lib.load(spec)
    if config.plateau.max_error < 1:
      assert config.dataset == 'shapes', spec
      gated[spec] = (config.plateau.max_error, 1 - 1 / _shapes_classes(config))
  assert 'pretrain_conv6:demo' in gated and 'demo_hard' in gated
  assert {spec: g for spec, g in gated.items() if g[0] >= g[1]} == {}


def _placeholders(config, prefix=''):
  """(dotted name, type) of every field of `config` whose value is None."""
  found = []
  for name, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      found += _placeholders(value, f'{prefix}{name}.')
    elif value is None:
      found.append((prefix + name, config.get_type(name)))
  return found


FLAG_VALUES = {str: 'x', int: '3', float: '0.5', bool: 'True', tuple: '(1,2)'}


@pytest.mark.parametrize('spec', _specs())
def test_every_none_field_can_be_set_from_the_command_line(spec):
  """Each field left None in an experiment (a derived default or a required input) is a
  typed placeholder: --config.<field>=value sets it through absl's parser, as a user's
  command line does (a plain None cannot be overridden by ml_collections)."""
  path = config_lib.experiment_path(spec)
  fields = _placeholders(config_lib.load(spec))
  assert fields, spec  # every config leaves some fields to be derived
  for name, field_type in fields:
    argv = ['program', f'--config={path}', f'--config.{name}={FLAG_VALUES[field_type]}']
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file('config', None, flag_values=flag_values, lock_config=True,
                                    sys_argv=argv)  # overrides are read from the command line
    flag_values(argv)
    value = flag_values.config
    for part in name.split('.'):
      value = value[part]
    assert value is not None and isinstance(value, field_type), (spec, name, value)


def test_ablation_configs_change_exactly_their_fields():
  """Each paper-scale ablation differs from experiments/paper.py in the fields it names."""
  paper = config_lib.load('paper')
  expected = {
      'no_lrn': {'model.lrn': False},
      'no_overlap': {'model.pool_window': 2},  # the stride stays 2
      'one_tower': {'model.towers': 1},
      'no_lighting': {'input.lighting_std': 0.0},
      'no_dropout': {'model.dropout_rate': 0.0},
      'minus_conv': {'model.remove_conv': 'conv4'},
      # config.dexp's defaults are layer-params-imagenet-1gpu.cfg's factors and stages.
      'cuda_convnet': {'model.lrn_convention': 'cuda_convnet', 'bias_lr_multiplier': 2.0,
                       'decay_biases': False, 'lr_policy': 'dexp'},
  }
  for name, fields in expected.items():
    config = config_lib.load(name)
    changed = {}
    for dotted in _leaf_names(paper):
      if _get(config, dotted) != _get(paper, dotted):
        changed[dotted] = _get(config, dotted)
    assert changed == fields, name


def _leaf_names(config, prefix=''):
  names = []
  for key, value in config.items():
    if hasattr(value, 'items'):
      names += _leaf_names(value, f'{prefix}{key}.')
    else:
      names.append(prefix + key)
  return names


def _get(config, dotted):
  for part in dotted.split('.'):
    config = config[part]
  return list(config) if isinstance(config, tuple) else config


def test_demo_ablation_argument_and_bad_name():
  """'demo_ablation:one_tower' halves the demo's conv1-conv4; an unknown ablation is a
  ConfigError naming the choices."""
  demo = config_lib.load('demo_ablation')
  one = config_lib.load('demo_ablation:one_tower')
  assert one.model.towers == 1
  assert one.model.conv_features == (24, 64, 96, 96, 128)
  assert demo.model.conv_features == (48, 128, 192, 192, 128)
  with pytest.raises(errors.ConfigError, match='no_lrn'):
    config_lib.load('demo_ablation:no_such_ablation')


# ------------------------------------------------------------------ dropout (section 4.2)

def _intermediates(model, params, x, **kwargs):
  _, state = model.apply({'params': params}, x, capture_intermediates=True, mutable=True,
                         **kwargs)
  return state['intermediates']


@pytest.mark.slow
def test_paper_dropout_scales_test_outputs_by_keep_probability():
  """At test time (train=False) the paper's form feeds fc7 and fc8 exactly (1 - rate) times
  the undropped fc6 / fc7 outputs: each one's pre-bias output is 0.5 x (its input's ReLU
  outputs, both towers) @ kernel, computed here in float64."""
  x = jax.random.normal(jax.random.key(1), (3, 67, 67, 3)) * 50
  paper = model_lib.AlexNet(**NARROW, dropout_rate=0.5)
  params = paper.init(jax.random.key(0), x)['params']
  undropped = model_lib.AlexNet(**NARROW, dropout_rate=0.0)
  got = _intermediates(paper, params, x)
  # fc6 sees no dropout: identical to the network without it.
  np.testing.assert_array_equal(np.asarray(got['fc6']['__call__'][0][0]),
                                np.asarray(_intermediates(undropped, params, x)['fc6']
                                           ['__call__'][0][0]))
  for layer, before in (('fc7', 'fc6'), ('fc8', 'fc7')):
    inputs = np.concatenate([np.maximum(np.asarray(h, np.float64), 0)
                             for h in got[before]['__call__'][0]], axis=-1)
    kernel = np.asarray(params[layer]['kernel'], np.float64)
    bias = np.asarray(params[layer]['bias'], np.float64)
    for t in range(2):
      out = np.asarray(got[layer]['__call__'][0][t], np.float64) - bias[t]
      np.testing.assert_allclose(out, (0.5 * inputs) @ kernel[t], rtol=1e-4, atol=1e-6)
      assert not np.allclose(out, inputs @ kernel[t], rtol=1e-2)  # the factor matters
  # The inverted form leaves test time alone: it equals the undropped network.
  inverted = model_lib.AlexNet(**NARROW, dropout_rate=0.5, dropout_form='inverted')
  np.testing.assert_array_equal(np.asarray(inverted.apply({'params': params}, x)),
                                np.asarray(undropped.apply({'params': params}, x)))


@pytest.mark.parametrize('rate', [0.5, 0.25])
def test_paper_dropout_expected_training_output_equals_test_output(rate):
  """Averaged over 40,000 masks, the paper-form training output of a dropout layer and of the
  linear layer after it equals the test-time output (x (1 - rate)), within 5 standard errors."""
  masks = 40_000
  x = np.random.default_rng(0).uniform(0.5, 2.0, (1, 8)).astype(np.float32)
  w = np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32)
  dropped = np.asarray(layers.tower_dropout(
      jnp.broadcast_to(jnp.asarray(x), (masks, 8)), jax.random.key(3), rate=rate, layer=6,
      tower=0, example_ids=jnp.arange(masks, dtype=jnp.int32)), np.float64)
  test = np.asarray(layers.dropout_test_scale(jnp.asarray(x), rate=rate), np.float64)
  np.testing.assert_allclose(test, x * (1 - rate), rtol=1e-7)
  # Kept units are not scaled in the paper's form.
  assert set(np.unique(dropped / x)) <= {0.0, 1.0}
  unit_se = x * np.sqrt(rate * (1 - rate) / masks)
  assert np.all(np.abs(dropped.mean(0) - test[0]) < 5 * unit_se[0])
  next_layer = dropped @ w
  next_se = np.sqrt(rate * (1 - rate) * (x[0] ** 2) @ (w ** 2) / masks)
  assert np.all(np.abs(next_layer.mean(0) - (test @ w)[0]) < 5 * next_se)


def test_dropout_form_is_checked():
  with pytest.raises(errors.ConfigError, match='dropout_form'):
    model_lib.AlexNet(dropout_form='scaled')


# ------------------------------------------------------------------ minus_conv (section 7)

def _kernel_shapes(**fields):
  model = model_lib.AlexNet(**fields)
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))['params']
  return {name: tuple(p['kernel'].shape) for name, p in params.items()}


def test_minus_conv_shapes():
  """Without conv2, conv3 reads both towers' 48 pooled conv1 maps (96); without conv3, conv4
  reads its own tower's 128 pool2 maps; without conv4, conv5 reads conv3's 192 maps per
  tower. fc6 reads 6x6x256 maps in all three; the other layers keep their shapes."""
  full = _kernel_shapes()
  no2 = _kernel_shapes(remove_conv='conv2')
  assert 'conv2' not in no2 and no2['conv3'] == (2, 3, 3, 96, 192)
  no3 = _kernel_shapes(remove_conv='conv3')
  assert 'conv3' not in no3 and no3['conv4'] == (2, 3, 3, 128, 192)
  no4 = _kernel_shapes(remove_conv='conv4')
  assert 'conv4' not in no4 and no4['conv5'] == (2, 3, 3, 192, 128)
  changed = {'conv2': 'conv3', 'conv3': 'conv4', 'conv4': 'conv5'}
  for removed, shapes in (('conv2', no2), ('conv3', no3), ('conv4', no4)):
    assert shapes['fc6'] == full['fc6'] == (2, 6 * 6 * 256, 2048)
    assert {k: v for k, v in shapes.items() if k != changed[removed]} == {
        k: v for k, v in full.items() if k not in (removed, changed[removed])}
  for fields in ({'remove_conv': 'conv2'}, {'remove_conv': 'conv3'}):
    model = model_lib.AlexNet(**NARROW, **fields)
    x = jnp.ones((2, 67, 67, 3))
    assert model.apply(model.init(jax.random.key(0), x), x).shape == (2, 10)


def test_minus_conv_bad_layer_is_a_config_error():
  """A layer that does not exist or is not a middle one stops check_config with the choices."""
  for layer in ('conv6', 'conv1', 'conv5', 'fc6'):
    config = config_lib.load(f'minus_conv:{layer}')
    with pytest.raises(errors.ConfigError, match="'conv2', 'conv3', 'conv4'"):
      train.check_config(config)


def test_pretrain_conv6_builds_for_the_fall_2011_classes():
  """Section 6's 21,841 classes over two towers: 10,921 fc8 units per tower, 21,841 logits."""
  config = config_lib.load('pretrain_conv6')
  model = model_lib.from_config(config.model, 21_841, image_size=config.input.crop_size)
  out, variables = jax.eval_shape(model.init_with_output, jax.random.key(0),
                                  jnp.zeros((1, 224, 224, 3)))
  assert variables['params']['fc8']['kernel'].shape == (2, 4096, 10_921)
  assert out.shape == (1, 21_841)
