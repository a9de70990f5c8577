"""The network, the evaluation and the training loop against references written here.

The forward pass is rebuilt from Figure 2 of the paper with plain JAX convolutions and
TensorFlow's LRN and max-pooling, without alexnet_jax's layers; the ten-crop test
(section 4.1) is rebuilt from separately computed softmaxes; the evaluation sums, the
per-step dropout masks, the check before each checkpoint and the section 2 resize are
checked against numbers the tests know in advance.
"""

from conftest import final_params
from conftest import read_metrics
from conftest import small_config
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from alexnet_jax import errors
from alexnet_jax import layers
from alexnet_jax import parallel
from alexnet_jax import steps
from alexnet_jax import train
from alexnet_jax.data import augment
from alexnet_jax.model import AlexNet
from alexnet_jax.model import conv1_padding

HIGHEST = jax.lax.Precision.HIGHEST
SIDE = 100
# cuda-convnet's conv1 (Figure 2: 224 -> 55 maps): 1 + ceil((100 - 11) / 4) = 24 outputs
# need 23 * 4 + 11 = 103 input rows, i.e. 3 zero rows at the bottom and 3 zero columns on
# the right. 100 also leaves 2x2 maps after pool5, so fc6's flattening order matters.
CONV1_PAD = 3
NARROW = dict(conv_features=(16, 32, 48, 48, 32), fc_features=64, num_classes=10,
              image_size=SIDE)
# Mean-subtracted pixels of about the real spread, large enough that LRN's alpha term is
# comparable to k = 2 after conv1 (section 3.3).
PIXEL_STD = 60.0
# A narrow, fast network for the tests that run the training loop.
TINY_MODEL = {'model.conv_features': (16, 32, 48, 48, 32), 'model.fc_features': 64}


def scaled_params(model: AlexNet, seed: int = 0, fc8_scale: float = 1.0) -> dict:
  """Parameters of `model`'s shapes: kernels N(0, 2 / fan_in), random biases.

  With this spread the activations keep their scale through the layers, so the logits
  depend clearly on the input (N(0, 0.01) of section 5 would leave a narrow network's
  logits nearly constant). Layout as the model's: kernel (towers, ..., cout // towers),
  bias (towers, cout // towers). `fc8_scale` shrinks the logits.
  """
  x = jax.ShapeDtypeStruct((1, model.image_size, model.image_size, 3), jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)['params']
  rng = np.random.default_rng(seed)
  params = {}
  for name, p in shapes.items():
    shape = p['kernel'].shape
    std = np.sqrt(2.0 / np.prod(shape[1:-1])) * (fc8_scale if name == 'fc8' else 1.0)
    params[name] = {'kernel': (std * rng.standard_normal(shape)).astype(np.float32),
                    'bias': (0.2 * rng.standard_normal(p['bias'].shape)).astype(np.float32)}
  return params


def images(n: int, seed: int = 1, side: int = SIDE) -> np.ndarray:
  """n random mean-subtracted images (n, side, side, 3) float32."""
  return (PIXEL_STD * np.random.default_rng(seed).standard_normal((n, side, side, 3))
          ).astype(np.float32)


# ---------------------------------------------------------------------------
# The reference network (section 3, Figure 2), one tower at a time.

def _conv(x, kernel, bias, stride, pad):
  """Zero padding ((top, bottom), (left, right)) with jnp.pad, then a VALID convolution."""
  x = jnp.pad(jnp.asarray(x), ((0, 0), pad[0], pad[1], (0, 0)))
  y = jax.lax.conv_general_dilated(x, jnp.asarray(kernel), (stride, stride), 'VALID',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'), precision=HIGHEST)
  return np.asarray(y + bias)


def _dense(x, kernel, bias):
  return np.asarray(jnp.matmul(jnp.asarray(x), jnp.asarray(kernel), precision=HIGHEST) + bias)


def _relu(x):
  return np.maximum(x, 0.0)


def _lrn(x):
  """Section 3.3: k = 2, n = 5, alpha = 1e-4, beta = 0.75 (alpha times the sum)."""
  return tf.nn.local_response_normalization(x, depth_radius=2, bias=2.0, alpha=1e-4,
                                            beta=0.75).numpy()


def _pool(x):
  """Section 3.4: overlapping max-pooling, window 3, stride 2."""
  return tf.nn.max_pool2d(x, ksize=3, strides=2, padding='VALID').numpy()


def reference_logits(params: dict, x: np.ndarray, dropout=None) -> np.ndarray:
  """The logits of Figure 2's two-tower network for images x (N, SIDE, SIDE, 3).

  conv2, conv4 and conv5 read their own tower's maps; conv3, fc6, fc7 and fc8 read both
  towers' (tower 0's first). `dropout(layer, tower, h)` acts on the ReLU outputs of fc6 and
  fc7 in training (section 4.2); None: evaluation, where "we use all the neurons but
  multiply their outputs by 0.5".
  """
  towers = (0, 1)
  same = ((1, 1), (1, 1))

  def kb(name, t):
    return params[name]['kernel'][t], params[name]['bias'][t]

  def drop(layer, hs):
    if dropout is None:
      return [h * np.float32(0.5) for h in hs]
    return [dropout(layer, t, h) for t, h in zip(towers, hs)]

  # conv1 on the image, ReLU, then LRN, then pooling (sections 3.3 and 3.4).
  hs = [_pool(_lrn(_relu(_conv(x, *kb('conv1', t), 4, ((0, CONV1_PAD), (0, CONV1_PAD))))))
        for t in towers]
  hs = [_pool(_lrn(_relu(_conv(h, *kb('conv2', t), 1, ((2, 2), (2, 2))))))
        for t, h in zip(towers, hs)]
  both = np.concatenate(hs, axis=-1)
  hs = [_relu(_conv(both, *kb('conv3', t), 1, same)) for t in towers]
  hs = [_relu(_conv(h, *kb('conv4', t), 1, same)) for t, h in zip(towers, hs)]
  hs = [_pool(_relu(_conv(h, *kb('conv5', t), 1, same))) for t, h in zip(towers, hs)]
  both = np.concatenate(hs, axis=-1)
  flat = both.reshape(both.shape[0], -1)  # (H, W, C) order
  hs = drop(6, [_relu(_dense(flat, *kb('fc6', t))) for t in towers])
  both = np.concatenate(hs, axis=-1)
  hs = drop(7, [_relu(_dense(both, *kb('fc7', t))) for t in towers])
  both = np.concatenate(hs, axis=-1)
  return np.concatenate([_dense(both, *kb('fc8', t)) for t in towers], axis=-1)


def assert_close(got, want, rtol=1e-5):
  """Equal to rtol elementwise, or to rtol of the largest |want| for entries near zero."""
  want = np.asarray(want)
  np.testing.assert_allclose(np.asarray(got), want, rtol=rtol, atol=rtol * np.max(np.abs(want)))


@pytest.fixture(scope='module')
def net():
  """The narrow network, its scaled parameters and four images."""
  model = AlexNet(**NARROW)
  return model, scaled_params(model), images(4)


def test_reference_setup_is_not_vacuous(net):
  """SIDE pads conv1 as the paper's 224 does and leaves 2x2 maps before fc6."""
  model, _, _ = net
  assert conv1_padding(SIDE) == CONV1_PAD and conv1_padding(224) == 3
  assert model.feature_map_sizes() == (24, 11, 5, 2)


def test_forward_matches_figure_2(net):
  """Evaluation logits equal the reference network's to 1e-5, and depend on the image."""
  model, params, x = net
  with jax.default_matmul_precision('highest'):
    got = np.asarray(model.apply({'params': params}, x, train=False))
  want = reference_logits(params, x)
  assert got.shape == (4, 10)
  assert_close(got, want)
  # The logits are not dominated by the biases: the four images give clearly different ones.
  spread = np.max(np.abs(want - want.mean(axis=0)))
  assert spread > 0.1 * np.max(np.abs(want)), (spread, want)


def test_train_mode_drops_fc6_and_fc7_of_both_towers(net, monkeypatch):
  """train=True drops units of fc6 and fc7 in both towers (section 4.2), and nothing else.

  The dropout calls are recorded; the logits equal the reference network's with the same
  keep masks applied to the ReLU outputs of fc6 and fc7.
  """
  model, params, x = net
  calls = {}
  original = layers.tower_dropout

  def recording(h, *args, **kwargs):
    out = original(h, *args, **kwargs)
    calls[(int(kwargs['layer']), int(kwargs['tower']))] = (np.asarray(h), np.asarray(out))
    return out

  monkeypatch.setattr(layers, 'tower_dropout', recording)
  with jax.default_matmul_precision('highest'):
    got = np.asarray(model.apply({'params': params}, x, train=True,
                                 rngs={'dropout': jax.random.key(3)}))
  assert sorted(calls) == [(6, 0), (6, 1), (7, 0), (7, 1)]

  def dropout(layer, tower, h):
    seen, out = calls[(layer, tower)]
    assert_close(seen, h)  # the dropped activations are this layer's ReLU outputs
    kept = out != 0
    live = h > 0
    assert 0.3 < kept[live].mean() < 0.7, (layer, tower, kept[live].mean())
    return np.where(kept, h, 0.0).astype(np.float32)  # the paper's form: kept units unscaled

  assert_close(got, reference_logits(params, x, dropout))
  assert np.max(np.abs(got - reference_logits(params, x))) > 1e-2 * np.max(np.abs(got))


# ---------------------------------------------------------------------------
# Section 4.1: the ten-crop test averages the softmax outputs of the ten patches.

def _softmax(logits):
  """Softmax over the last axis, in float64."""
  z = logits.astype(np.float64)
  z = np.exp(z - z.max(axis=-1, keepdims=True))
  return z / z.sum(axis=-1, keepdims=True)


def test_ten_crop_eval_averages_probabilities(net):
  """The eval step's ten-crop sums come from the mean of ten separate softmaxes per example.

  A (B, 10, S, S, 3) batch of ten different crops per example, the reference network's
  logits for each crop; a padded row (mask False) does not count.
  """
  model, _, _ = net
  params = scaled_params(model, seed=2, fc8_scale=0.8)  # logits of a few units: soft outputs
  n, crops = 6, 10
  crop_images = images(n * crops, seed=4).reshape(n, crops, SIDE, SIDE, 3)
  probs = _softmax(reference_logits(params, crop_images.reshape(-1, SIDE, SIDE, 3)))
  probs = probs.reshape(n, crops, -1)
  # The crops really differ: their predictions disagree.
  assert np.max(np.abs(probs - probs.mean(axis=1, keepdims=True))) > 0.05
  mean = probs.mean(axis=1)
  # Label of example i: the class of rank ranks[i] in its averaged prediction.
  ranks = [0, 1, 6, 0, 4, 2]
  order = np.argsort(-mean, axis=1)
  labels = np.array([order[i, r] for i, r in enumerate(ranks)], np.int32)
  mask = np.array([True] * 5 + [False])
  crop_images[5] = 1e3  # garbage in the padded row
  want_loss = -np.sum(np.log(mean[np.arange(5), labels[:5]]))
  # Averaging logits instead would give another loss: the check below can tell them apart.
  mean_logits = np.log(probs).mean(axis=1)
  other = -np.sum(np.log(_softmax(mean_logits)[np.arange(5), labels[:5]]))
  assert abs(other - want_loss) > 1e-3 * want_loss

  mesh = parallel.make_mesh(1, 1, model.towers)
  eval_step = steps.make_eval_step(model, mesh)
  batch = {'image': crop_images, 'label': labels, 'mask': mask}
  with jax.default_matmul_precision('highest'):
    sums = jax.tree.map(float, eval_step(params, parallel.shard_batch(batch, mesh)))
  assert sums['count'] == 5
  assert sums['top1_errors'] == 3  # ranks 1, 6, 4 among the five real rows
  assert sums['top5_errors'] == 1  # rank 6
  assert sums['loss'] == pytest.approx(want_loss, rel=1e-5)


# ---------------------------------------------------------------------------
# steps.evaluate adds up the sums of every batch.

def test_evaluate_adds_every_batch():
  """steps.evaluate over three batches with known sums: loss and errors over all of them."""
  mesh = parallel.make_mesh(1, 1, 2)
  sums = [dict(loss=3.0, top1_errors=2.0, top5_errors=1.0, count=4.0),
          dict(loss=5.5, top1_errors=1.0, top5_errors=0.0, count=4.0),
          dict(loss=1.25, top1_errors=3.0, top5_errors=2.0, count=3.0)]
  seen = []

  def fake_eval_step(params, batch):
    assert params == 'params'
    seen.append(int(np.asarray(batch['label'])[0]))
    return {k: jnp.float32(v) for k, v in sums[len(seen) - 1].items()}

  batches = ({'image': np.zeros((4, 8, 8, 3), np.float32), 'label': np.full(4, i, np.int32),
              'mask': np.ones(4, bool)} for i in range(3))
  result = steps.evaluate(fake_eval_step, 'params', mesh, batches)
  assert seen == [0, 1, 2]
  assert result['count'] == 11
  assert result['loss'] == pytest.approx(9.75 / 11, rel=1e-7)
  assert result['top1_error'] == pytest.approx(6 / 11, rel=1e-7)
  assert result['top5_error'] == pytest.approx(3 / 11, rel=1e-7)


# ---------------------------------------------------------------------------
# The training loop (tiny network on the embedded dataset).

@pytest.mark.slow
def test_consecutive_steps_use_different_dropout_masks(data_dir, tmp_path, monkeypatch):
  """Two steps of the training loop drop different units of fc6 and fc7.

  Section 4.2: "every time an input is presented, the neural network samples a different
  architecture". The masks are recorded from inside the compiled step.
  """
  masks = []
  original = layers.tower_dropout

  def record(layer, tower, x, out):
    masks.append((int(layer), int(tower), np.asarray(x) != 0, np.asarray(out) != 0))

  def recording(h, *args, **kwargs):
    out = original(h, *args, **kwargs)
    jax.debug.callback(record, kwargs['layer'], kwargs['tower'], h, out)
    return out

  monkeypatch.setattr(layers, 'tower_dropout', recording)
  config = small_config(data_dir, num_train_steps=2, checkpoint_every_steps=2,
                        eval_every_steps=2, **TINY_MODEL)
  train.train_and_evaluate(config, str(tmp_path))
  jax.effects_barrier()
  by_unit = {}
  for layer, tower, live, kept in masks:
    by_unit.setdefault((layer, tower), []).append((live, kept))
  assert sorted(by_unit) == [(6, 0), (6, 1), (7, 0), (7, 1)]
  for unit, masks_by_step in by_unit.items():
    assert len(masks_by_step) == 2, unit  # one mask per step
    (live1, kept1), (live2, kept2) = masks_by_step
    both = live1 & live2
    assert both.sum() > 200, unit
    agree = np.mean(kept1[both] == kept2[both])
    assert agree < 0.75, (unit, agree)  # independent masks at rate 0.5 agree on about half


@pytest.mark.slow
@pytest.mark.filterwarnings('ignore:overflow encountered in cast:RuntimeWarning')
def test_save_refuses_parameters_that_overflowed(data_dir, tmp_path):
  """An update that overflows while the loss is still finite stops the run unsaved.

  The plateau policy (section 5) multiplies the rate by 1e50 after the evaluation at step 2
  (min_delta 1 makes every evaluation after the first a non-improvement): the rate becomes
  infinite in float32. The loss of step 3, computed before its update, is finite, but the
  parameters that update leaves are not. The checkpoint at step 3 must not be written, and
  the run stops with NonFiniteLossError.
  """
  config = small_config(data_dir, num_train_steps=3, checkpoint_every_steps=1,
                        eval_every_steps=1, **{'plateau.patience': 1, 'plateau.min_delta': 1.0,
                                               'plateau.factor': 1e50}, **TINY_MODEL)
  workdir = str(tmp_path)
  with pytest.raises(errors.NonFiniteLossError, match=r'at step 3\b'):
    train.train_and_evaluate(config, workdir)
  rows = [r for r in read_metrics(workdir) if 'train_loss' in r]
  assert [r['step'] for r in rows] == [1, 2, 3]
  assert all(np.isfinite(r['train_loss']) for r in rows)  # the loss check cannot see it
  assert np.isfinite(rows[1]['learning_rate']) and rows[2]['learning_rate'] == np.inf
  step, params = final_params(workdir)
  assert step == 2
  assert all(np.isfinite(v).all() for v in params.values())


# ---------------------------------------------------------------------------
# Section 2: shorter side to the stored size, then the central square.

@pytest.mark.parametrize('height, width, resized', [
    (40, 70, (32, 56)),   # landscape: 24 columns cut, 12 on each side
    (75, 36, (67, 32)),   # portrait: 75 * 32 / 36 = 66.7 -> 67 rows, 17 cut on top
])
def test_resize_short_side_keeps_the_central_square(height, width, resized):
  """resize_short_side_center_crop is an antialiased resize, then the central slice."""
  size = 32
  image = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
  got = augment.resize_short_side_center_crop(tf.constant(image), size).numpy()
  full = tf.image.resize(image, resized, method='bilinear', antialias=True).numpy()
  top, left = (resized[0] - size) // 2, (resized[1] - size) // 2
  want = np.clip(np.round(full[top:top + size, left:left + size]), 0, 255).astype(np.uint8)
  assert got.shape == (size, size, 3) and got.dtype == np.uint8
  np.testing.assert_array_equal(got, want)
  # Not vacuous: the corner window differs.
  corner = np.clip(np.round(full[:size, :size]), 0, 255).astype(np.uint8)
  assert not np.array_equal(corner, want)
