"""The network of Krizhevsky, Sutskever & Hinton (2012), section 3 and Figure 2.

Two towers ("GPU 1" and "GPU 2") hold half the kernels of every layer each.
conv2, conv4 and conv5 read only their own tower's maps; conv3, fc6, fc7 and
fc8 read the maps of both towers (tower 0's first). Every parameter has a
leading tower axis:

  conv kernel  (towers, kh, kw, cin, cout // towers)   bias (towers, cout // towers)
  dense kernel (towers, din, dout // towers)           bias (towers, dout // towers)

With the defaults the network has exactly 60,965,224 parameters.

The same code runs with both towers on one device (`model_axis=None`: the
cross-tower step is a concatenation) and inside `jax.shard_map` with one tower
per device (`model_axis='model'`: the cross-tower step is an all-gather over
that mesh axis). Nothing else differs.
"""

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from alexnet_jax import errors
from alexnet_jax import layers

# Section 3.5 and Figure 2: kernels per conv layer, both towers together.
PAPER_CONV_FEATURES = (96, 256, 384, 384, 256)
# Section 3.2 / footnote 2: the one-tower comparison net halves every conv
# layer but the last, "nor the fully-connected layers which follow".
ONE_TOWER_CONV_FEATURES = (48, 128, 192, 192, 256)
LRN_CONVENTIONS = ('paper', 'cuda_convnet')
# Section 7: "removing any of the middle layers results in a loss of about 2%" top-1. conv1
# reads the image and conv5 feeds fc6: the middle ones are conv2-conv4.
REMOVABLE_CONVS = ('conv2', 'conv3', 'conv4')
# model.matmul_precision -> (compute dtype, precision of every conv and matmul).
# Parameters stay float32 in all three.
MATMUL_PRECISIONS = {
    'float32': (jnp.float32, jax.lax.Precision.HIGHEST),  # true float32, also on GPUs
    'default': (jnp.float32, jax.lax.Precision.DEFAULT),  # TF32 on Ampere and later GPUs
    'bfloat16': (jnp.bfloat16, jax.lax.Precision.DEFAULT),  # bfloat16 activations and products
}


def conv1_padding(image_size: int, kernel: int = 11, stride: int = 4) -> int:
  """Zero rows/columns cuda-convnet adds on the bottom/right edges of conv1's input.

  cuda-convnet produces 1 + ceil((S - kernel) / stride) outputs, padding the
  far edges as needed: 3 for the paper's 224 input (55x55 maps), 0 for Caffe's 227.
  """
  outputs = 1 + math.ceil((image_size - kernel) / stride)
  return (outputs - 1) * stride + kernel - image_size


class AlexNet(nn.Module):
  """AlexNet with the paper's two towers and its ablation switches.

  Call: `model.apply({'params': p}, images, train=False)` with images
  (N, image_size, image_size, 3) floating point, mean-subtracted pixels, NHWC.
  `train=True` applies dropout and needs a 'dropout' rng; `example_ids` (N,)
  int32 are the examples' positions in the global batch (default arange(N)),
  which key the dropout masks. Returns float32 logits (N, num_classes), tower
  0's classes first; with `model_axis` set, only this device's tower's
  (N, fc8_units // towers) slice, which the parallel step assembles and trims
  to num_classes (`parallel.sharded_apply`).
  The fc7 activations (section 6.1's feature vectors) are sown as
  intermediates 'fc7_features' (a tuple with one (N, fc_features // towers) array per local tower).

  Attributes:
    num_classes: output classes (1000 for ILSVRC; 21,841 for the Fall 2011 release of
      section 6). A count the towers cannot split evenly gets one padded fc8 unit
      (`fc8_units`), which is never a class: it is cut from the logits before the softmax,
      so the loss, the top-k and every prediction see num_classes outputs.
    towers: 2 (the paper's network) or 1 (the comparison net with half the
      kernels in conv1-conv4, section 3.2).
    image_size: input side in pixels (224 in the paper).
    conv_features: kernels of conv1..conv5, both towers together; None picks
      the paper's choice for `towers`.
    fc_features: units of fc6 and fc7 (4096).
    lrn: apply local response normalization after conv1 and conv2 (section 3.3).
    lrn_convention: 'paper' (alpha times the sum) or 'cuda_convnet' (alpha / n).
    lrn_k: the LRN's additive constant k (2 in section 3.3; Caffe's models use 1).
    lrn_across_towers: the LRN window runs over both towers' maps as one stack, as
      Caffe's norm1/norm2 do on the whole blob; False: each tower normalizes its own
      maps, as each GPU did in the paper.
    pool_window, pool_stride: max-pooling (3, 2 = overlapping, section 3.4;
      2, 2 = the non-overlapping comparison).
    activation: 'relu' (section 3.1) or 'tanh'.
    conv6: add a sixth conv layer (3x3, as many kernels as conv5, own tower) after the last
      pooling layer, as in the nets pre-trained on ImageNet Fall 2011 (section 6).
    dropout_rate: dropout on fc6 and fc7 (0.5, section 4.2).
    dropout_form: 'paper' (kept units unscaled in training, outputs times 1 - rate at
      test time, section 4.2) or 'inverted' (kept units times 1 / (1 - rate) in
      training, nothing at test time: Caffe's and most libraries' form).
    remove_conv: '' or the middle conv layer to leave out ('conv2', 'conv3' or
      'conv4'; section 7: removing any middle layer costs about 2% top-1). The next
      layer reads the maps of the one before: without conv2, pool2 pools conv1's maps
      (after LRN1; no second LRN) and conv3 reads those; without conv3, conv4 reads pool2
      (its own tower's maps, so then no layer before fc6 crosses the towers); without
      conv4, conv5 reads conv3's maps.
    init_std: standard deviation of the initial weights, N(0, 0.01) in
      section 5. Narrow networks need more: each layer scales its input's
      spread by about sqrt(fan_in) * init_std.
    matmul_precision: arithmetic of every convolution and matmul, LRN's included:
      'float32' (true float32: `jax.lax.Precision.HIGHEST`), 'default' (float32
      activations, XLA's default precision: TF32 on Ampere and later GPUs, float32
      on CPU) or 'bfloat16' (bfloat16 activations and products, float32
      parameters and logits). `dtype` is the activations' dtype it implies.
    model_axis: mesh axis holding one tower per device, or None.
  """
  num_classes: int = 1000
  towers: int = 2
  image_size: int = 224
  conv_features: tuple[int, ...] | None = None
  fc_features: int = 4096
  lrn: bool = True
  lrn_convention: str = 'paper'
  lrn_k: float = 2.0
  lrn_across_towers: bool = False
  pool_window: int = 3
  pool_stride: int = 2
  activation: str = 'relu'
  conv6: bool = False
  dropout_rate: float = 0.5
  dropout_form: str = 'paper'
  remove_conv: str = ''
  init_std: float = 0.01
  matmul_precision: str = 'float32'
  model_axis: str | None = None

  def __post_init__(self):
    self._validate()
    super().__post_init__()

  def _validate(self):
    def fail(message):
      raise errors.ConfigError(f'AlexNet: {message}')
    if self.towers not in (1, 2):
      fail(f'towers must be 1 or 2, got {self.towers}.')
    if not 0.0 <= self.dropout_rate < 1.0:
      fail(f'dropout_rate must lie in [0, 1), got {self.dropout_rate}.')
    if self.dropout_form not in layers.DROPOUT_FORMS:
      fail(f'dropout_form must be one of {layers.DROPOUT_FORMS}, got {self.dropout_form!r}.')
    if self.remove_conv not in ('',) + REMOVABLE_CONVS:
      fail(f'remove_conv must be empty (keep all five conv layers) or name a middle conv layer, '
           f'one of {REMOVABLE_CONVS}, got {self.remove_conv!r}.')
    if self.init_std <= 0:
      fail(f'init_std must be positive, got {self.init_std}.')
    if self.num_classes < 1:
      fail(f'num_classes must be at least 1, got {self.num_classes}.')
    features = self.features_per_layer
    if len(features) != 5 or any(f < 1 or f % self.towers for f in features):
      fail(f'conv_features must be 5 positive counts divisible by towers={self.towers}, '
           f'got {features}.')
    if self.fc_features < 1 or self.fc_features % self.towers:
      fail(f'fc_features={self.fc_features} must be positive and divisible by towers.')
    if self.lrn_convention not in LRN_CONVENTIONS:
      fail(f'lrn_convention must be one of {LRN_CONVENTIONS}, got {self.lrn_convention!r}.')
    if self.matmul_precision not in MATMUL_PRECISIONS:
      fail(f'matmul_precision must be one of {tuple(MATMUL_PRECISIONS)}, '
           f'got {self.matmul_precision!r}.')
    if self.activation not in layers.ACTIVATIONS:
      fail(f'activation must be one of {tuple(layers.ACTIVATIONS)}, got {self.activation!r}.')
    if self.pool_window < 1 or self.pool_stride < 1:
      fail(f'pool_window and pool_stride must be positive, got {self.pool_window}, '
           f'{self.pool_stride}.')
    if self.feature_map_sizes()[-1] < 1:
      fail(f'image_size={self.image_size} is too small: the maps vanish before fc6 '
           f'(sizes {self.feature_map_sizes()}).')

  @property
  def features_per_layer(self) -> tuple[int, ...]:
    """Kernels of conv1..conv5, both towers together."""
    if self.conv_features is not None:
      return tuple(self.conv_features)
    return PAPER_CONV_FEATURES if self.towers == 2 else ONE_TOWER_CONV_FEATURES

  @property
  def fc8_units(self) -> int:
    """fc8's units, both towers together: num_classes rounded up to a multiple of towers."""
    return -(-self.num_classes // self.towers) * self.towers

  @property
  def dtype(self) -> Any:
    """The activations' dtype: bfloat16 for matmul_precision='bfloat16', else float32."""
    return MATMUL_PRECISIONS[self.matmul_precision][0]

  @property
  def precision(self) -> jax.lax.Precision:
    """The `jax.lax.Precision` of every convolution and matmul."""
    return MATMUL_PRECISIONS[self.matmul_precision][1]

  @property
  def local_towers(self) -> int:
    """Towers held on one device: 1 under a model axis, else all of them."""
    return 1 if self.model_axis is not None else self.towers

  def feature_map_sizes(self) -> tuple[int, ...]:
    """Spatial sides after conv1, pool1, pool2, pool5: (55, 27, 13, 6) for 224."""
    def pool(s):
      return (s - self.pool_window) // self.pool_stride + 1
    s1 = (self.image_size + conv1_padding(self.image_size) - 11) // 4 + 1
    s2 = pool(s1)
    s3 = pool(s2)
    return s1, s2, s3, pool(s3)

  def _cross_towers(self, xs: layers.Towers) -> jax.Array:
    """The towers' maps, concatenated on the channel axis (tower 0 first).

    This is the only place towers communicate: before conv3, fc6, fc7, fc8
    (section 3.2), and for the logits when both towers are local.
    """
    if self.model_axis is None:
      return jnp.concatenate(xs, axis=-1)
    (x,) = xs
    return jax.lax.all_gather(x, self.model_axis, axis=x.ndim - 1, tiled=True)

  def _tower_ids(self) -> list:
    if self.model_axis is None:
      return list(range(self.towers))
    return [jax.lax.axis_index(self.model_axis)]

  def check_images(self, images: jax.Array) -> None:
    """Raises ValueError unless images is (N, image_size, image_size, 3) floating point."""
    expected = f'(batch, {self.image_size}, {self.image_size}, 3) floating point'
    if (images.ndim != 4 or images.shape[1:] != (self.image_size, self.image_size, 3)
        or not jnp.issubdtype(images.dtype, jnp.floating)):
      raise ValueError(f'AlexNet expects images of shape {expected}, '
                       f'got shape {tuple(images.shape)} and dtype {images.dtype}.')

  def _conv(self, name: str, features: int, kernel_size: int, bias: float, *, stride: int = 1,
            padding: int | tuple[tuple[int, int], tuple[int, int]] = 0) -> layers.TowerConv:
    """A tower convolution with `features` kernels in all (split over the towers)."""
    if isinstance(padding, int):
      padding = ((padding, padding), (padding, padding))
    return layers.TowerConv(features=features // self.towers, kernel_size=kernel_size,
                            stride=stride, padding=padding, bias_value=bias, name=name,
                            local_towers=self.local_towers, init_std=self.init_std,
                            dtype=self.dtype, precision=self.precision)

  def _dense(self, name: str, features: int, bias: float) -> layers.TowerDense:
    """A tower dense layer with `features` units in all (split over the towers)."""
    return layers.TowerDense(features=features // self.towers, bias_value=bias, name=name,
                             local_towers=self.local_towers, init_std=self.init_std,
                             dtype=self.dtype, precision=self.precision)

  def _act(self, xs: layers.Towers) -> layers.Towers:
    """The nonlinearity of every tower (section 3.1: ReLU)."""
    return tuple(layers.ACTIVATIONS[self.activation](x) for x in xs)

  def _pool(self, xs: layers.Towers) -> layers.Towers:
    """Overlapping max-pooling of every tower (section 3.4)."""
    return tuple(layers.max_pool(x, self.pool_window, self.pool_stride) for x in xs)

  def _lrn(self, xs: layers.Towers) -> layers.Towers:
    """Local response normalization (section 3.3) of every tower: over its own maps, or
    with `lrn_across_towers` over both towers' maps stacked (tower 0's first)."""
    if not self.lrn:
      return xs

    def norm(x):
      return layers.local_response_norm(x, k=self.lrn_k,
                                        alpha_per_term=self.lrn_convention == 'cuda_convnet',
                                        precision=self.precision)

    if not self.lrn_across_towers or self.towers == 1:
      return tuple(norm(x) for x in xs)
    maps = xs[0].shape[-1]
    both = norm(self._cross_towers(xs))
    return tuple(jax.lax.dynamic_slice_in_dim(both, t * maps, maps, axis=-1)
                 for t in self._tower_ids())

  def _shared(self, x: jax.Array) -> layers.Towers:
    """A cross-connected layer's input, seen by every local tower."""
    return (x,) * self.local_towers

  def _dropout(self, xs: layers.Towers, layer: int, key: jax.Array | None,
               example_ids: jax.Array) -> layers.Towers:
    """Dropout of fc6 or fc7 (section 4.2): a random mask in training (`key` given), the
    test-time scaling of `dropout_form` otherwise."""
    if key is None:
      return tuple(layers.dropout_test_scale(x, rate=self.dropout_rate, form=self.dropout_form)
                   for x in xs)
    return tuple(layers.tower_dropout(x, key, rate=self.dropout_rate, layer=layer, tower=tower,
                                      example_ids=example_ids, form=self.dropout_form)
                 for x, tower in zip(xs, self._tower_ids()))

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False,
               example_ids: jax.Array | None = None) -> jax.Array:
    self.check_images(images)
    c1, c2, c3, c4, c5 = self.features_per_layer
    fc = self.fc_features
    if example_ids is None:
      example_ids = jnp.arange(images.shape[0], dtype=jnp.int32)
    key = self.make_rng('dropout') if train and self.dropout_rate > 0 else None

    # Figure 2, top to bottom. Biases: 0 in conv1, conv3, fc8; 1 in the
    # others (section 5). ReLU, then LRN, then pooling (section 3.3).
    pad1 = conv1_padding(self.image_size)  # bottom/right only, as cuda-convnet
    xs = self._conv('conv1', c1, kernel_size=11, stride=4, padding=((0, pad1), (0, pad1)),
                    bias=0.0)(self._shared(images))
    xs = self._pool(self._lrn(self._act(xs)))
    if self.remove_conv != 'conv2':
      xs = self._lrn(self._act(self._conv('conv2', c2, kernel_size=5, padding=2, bias=1.0)(xs)))
    xs = self._pool(xs)
    if self.remove_conv != 'conv3':
      xs = self._act(self._conv('conv3', c3, kernel_size=3, padding=1, bias=0.0)(
          self._shared(self._cross_towers(xs))))
    if self.remove_conv != 'conv4':
      xs = self._act(self._conv('conv4', c4, kernel_size=3, padding=1, bias=1.0)(xs))
    xs = self._pool(self._act(self._conv('conv5', c5, kernel_size=3, padding=1, bias=1.0)(xs)))
    if self.conv6:  # section 6: the nets pre-trained on Fall 2011 (after the last pooling)
      xs = self._act(self._conv('conv6', c5, kernel_size=3, padding=1, bias=1.0)(xs))

    x = self._cross_towers(xs)
    x = x.reshape(x.shape[0], -1)  # (H, W, C) order
    xs = self._act(self._dense('fc6', fc, bias=1.0)(self._shared(x)))
    xs = self._dropout(xs, 6, key, example_ids)
    xs = self._act(self._dense('fc7', fc, bias=1.0)(self._shared(self._cross_towers(xs))))
    self.sow('intermediates', 'fc7_features', xs)
    xs = self._dropout(xs, 7, key, example_ids)
    xs = self._dense('fc8', self.fc8_units, bias=0.0)(self._shared(self._cross_towers(xs)))
    # Under a model axis each device returns its tower's units; the step assembles them.
    if self.model_axis is not None:
      return xs[0].astype(jnp.float32)
    return jnp.concatenate(xs, axis=-1)[:, :self.num_classes].astype(jnp.float32)


def from_config(model_config, num_classes: int, **overrides) -> AlexNet:
  """Builds an AlexNet from a config's `model` ConfigDict plus `num_classes`."""
  fields = dict(model_config)
  if fields.get('conv_features') is not None:
    fields['conv_features'] = tuple(fields['conv_features'])
  known = {f.name for f in dataclasses.fields(AlexNet)}
  unknown = sorted(set(fields) - known)
  if unknown:
    accepted = sorted(known - {'parent', 'name'})
    raise errors.ConfigError(f'Unknown model fields {unknown}; AlexNet accepts {accepted}.')
  return AlexNet(num_classes=num_classes, **{**fields, **overrides})
