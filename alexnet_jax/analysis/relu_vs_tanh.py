"""Figure 1's experiment: a four-layer convolutional network with ReLUs against tanh units.

The paper: "A four-layer convolutional neural network with ReLUs (solid line)
reaches a 25% training error rate on CIFAR-10 six times faster than an
equivalent network with tanh neurons (dashed line). The learning rates for
each network were chosen independently to make training as fast as possible.
No regularization of any kind was employed." (section 3.1)

`FourLayerNet` is three 5x5 convolutions (32, 32, 64 maps), each followed by
the nonlinearity and 3x3 max-pooling with stride 2 (the layer shapes of
cuda-convnet's CIFAR-10 example, which the paper does not spell out), then one
fully connected layer to the classes. `train` runs plain SGD with momentum 0.9
(no weight decay, no dropout, no augmentation) and returns the training error
of each epoch (the fraction of that epoch's minibatch examples misclassified
while training, as Figure 1 plots); `sweep` picks each activation's fastest
learning rate (`SweepResult.edge` says when that rate is the grid's lowest
or highest, so a faster one may lie outside it); `epochs_to_reach` and
`speedup` turn the curves into the figure's number; `load_training_set` reads
CIFAR-10 or the embedded stand-in (the hard 'shapes' set at 32x32) through
`alexnet_jax.data`.
"""

import dataclasses
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
from matplotlib.figure import Figure
import numpy as np
import optax

from alexnet_jax import compilation
from alexnet_jax import config as config_lib
from alexnet_jax import data
from alexnet_jax import errors
from alexnet_jax import layers
from alexnet_jax import rundir
from alexnet_jax import steps

# Figure 1's threshold: 25% training error.
PAPER_THRESHOLD = 0.25
# Mean-subtracted 0..255 pixels are divided by this before training.
PIXEL_SCALE = 64.0


class FourLayerNet(nn.Module):
  """Three conv layers and a fully connected one (Figure 1's network, section 3.1).

  Call: `apply({'params': p}, images)` with (N, S, S, 3) float32 mean-subtracted
  pixels -> (N, num_classes) float32 logits.

  Attributes:
    num_classes: 10 for CIFAR-10.
    activation: 'relu' or 'tanh' (`layers.ACTIVATIONS`).
    features: maps of the three conv layers.
  """
  num_classes: int = 10
  activation: str = 'relu'
  features: tuple[int, ...] = (32, 32, 64)

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    act = layers.ACTIVATIONS[self.activation]
    x = images
    for i, features in enumerate(self.features):
      x = nn.Conv(features, (5, 5), padding=2, name=f'conv{i + 1}')(x)
      x = layers.max_pool(act(x), 3, 2)
    return nn.Dense(self.num_classes, name='fc')(x.reshape(x.shape[0], -1)).astype(jnp.float32)


def train(activation: str, learning_rate: float, images: np.ndarray, labels: np.ndarray, *,
          num_classes: int, epochs: int, batch_size: int = 128, seed: int = 0) -> list[float]:
  """Trains a `FourLayerNet` and returns its training error of each epoch (fractions).

  images: float32 (N, S, S, 3) mean-subtracted; labels: int (N,). Each epoch
  visits the examples in a fresh random order; the error of an epoch is over
  the examples its full batches saw, each classified before its update.
  batch_size: at most N.
  """
  batch_size = min(batch_size, len(images))
  model = FourLayerNet(num_classes=num_classes, activation=activation)
  params = model.init(jax.random.key(seed), jnp.asarray(images[:1]))['params']
  tx = optax.sgd(learning_rate, momentum=0.9)
  opt_state = tx.init(params)

  @compilation.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits = model.apply({'params': p}, x)
      return steps.cross_entropy(logits, y).mean(), logits
    (_, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, jnp.sum(jnp.argmax(logits, -1) != y)

  rng = np.random.default_rng(seed)
  batches = len(images) // batch_size
  curve = []
  for _ in range(epochs):
    order = rng.permutation(len(images))
    wrong = 0
    for b in range(batches):
      idx = order[b * batch_size:(b + 1) * batch_size]
      params, opt_state, w = step(params, opt_state, images[idx], labels[idx])
      wrong += int(w)
    error = wrong / (batches * batch_size)
    if not np.isfinite(error):
      break
    curve.append(error)
  return curve


def epochs_to_reach(curve: list[float], threshold: float) -> int | None:
  """The first epoch (1-based) whose training error is at or below `threshold`; None: never."""
  for epoch, error in enumerate(curve, start=1):
    if error <= threshold:
      return epoch
  return None


def speedup(relu_curve: list[float], tanh_curve: list[float], threshold: float) -> float | None:
  """Epochs tanh needs to reach `threshold` over the epochs ReLU needs (Figure 1: six).

  None when either never reaches it.
  """
  relu, tanh = epochs_to_reach(relu_curve, threshold), epochs_to_reach(tanh_curve, threshold)
  return None if relu is None or tanh is None else tanh / relu


@dataclasses.dataclass(frozen=True)
class SweepResult:
  """One activation's learning-rate sweep: each rate's curve and the fastest rate."""
  activation: str
  curves: dict[float, list[float]]
  best_rate: float

  @property
  def edge(self) -> str | None:
    """'lowest' or 'highest' when the best rate is that end of the grid, else None."""
    if self.best_rate == min(self.curves):
      return 'lowest'
    return 'highest' if self.best_rate == max(self.curves) else None


def sweep(activation: str, rates: list[float], images: np.ndarray, labels: np.ndarray, *,
          num_classes: int, epochs: int, threshold: float, batch_size: int = 128,
          seed: int = 0) -> SweepResult:
  """Trains at each rate; the best reaches `threshold` in the fewest epochs (ties and
  never-reaching rates: the lowest final error), as the paper chose each net's rate."""
  curves = {rate: train(activation, rate, images, labels, num_classes=num_classes,
                        epochs=epochs, batch_size=batch_size, seed=seed) for rate in rates}

  def cost(rate):
    curve = curves[rate]
    reached = epochs_to_reach(curve, threshold)
    return (reached if reached is not None else epochs + 1, curve[-1] if curve else np.inf)

  return SweepResult(activation, curves, min(rates, key=cost))


def write_curve(path: str, curve: list[float]) -> None:
  """Writes one {'epoch': e, 'train_error': x} JSON line per epoch."""
  rundir.atomic_write(path, lambda f: f.writelines(
      json.dumps({'epoch': epoch, 'train_error': error}) + '\n'
      for epoch, error in enumerate(curve, start=1)))


def read_curve(path: str) -> list[float]:
  """The training errors of a file `write_curve` wrote, in epoch order.

  Raises:
    errors.WorkdirError: the file is missing or holds no epoch.
  """
  if not os.path.isfile(path):
    raise errors.WorkdirError(f'{path} does not exist: give a curve written by '
                              'python -m alexnet_jax.tools.relu_vs_tanh.')
  with open(path) as f:
    rows = sorted((json.loads(line) for line in f if line.strip()), key=lambda r: r['epoch'])
  if not rows:
    raise errors.WorkdirError(f'{path} holds no epoch.')
  return [float(r['train_error']) for r in rows]


def load_training_set(dataset: str, data_dir: str, image_size: int = 32,
                      shapes_examples: int = 5000) -> tuple[np.ndarray, np.ndarray, int]:
  """(images, labels, classes) of the training split of 'cifar10' (TFDS, downloads once) or
  'shapes' (the offline stand-in: the hard set, 12 shapes in any colour, rendered at
  `image_size`).

  images: float32 (N, S, S, 3), pixels minus the mean image, / PIXEL_SCALE; labels: int32 (N,).
  CIFAR-10's 32x32 images are kept as raw pixels (input.storage='raw'), so its prepared
  copy is lossless. No augmentation (Figure 1: no regularization).
  """
  input_config = config_lib.base_config().input
  input_config.image_size = input_config.crop_size = image_size
  input_config.storage = 'raw'
  input_config.shapes.train_examples = shapes_examples
  input_config.shapes.eval_examples = 1  # Figure 1 plots training error only
  input_config.shapes.difficulty = 'hard'
  info = data.get_dataset_info(dataset, data_dir, input_config)
  images, labels = [], []
  for batch in data.eval_iterator(info, input_config, batch_size=1000, split='train'):
    images.append(batch['image'][batch['mask']])
    labels.append(batch['label'][batch['mask']])
  # 0..255 minus the mean has a spread of about 60: bring it near 1 so that neither net starts
  # saturated (tanh) or exploding (ReLU) at the default initialization.
  return (np.concatenate(images) / PIXEL_SCALE, np.concatenate(labels).astype(np.int32),
          info.num_classes)


def curves_figure(relu_curve: list[float], tanh_curve: list[float], threshold: float,
                  title: str) -> Figure:
  """Figure 1: training error against epochs, ReLU solid, tanh dashed, the threshold dotted."""
  fig = Figure(figsize=(5, 3.6))
  ax = fig.add_subplot()
  ax.plot(range(1, len(relu_curve) + 1), relu_curve, '-', color='k', label='ReLU')
  ax.plot(range(1, len(tanh_curve) + 1), tanh_curve, '--', color='k', label='tanh')
  ax.axhline(threshold, linestyle=':', color='grey', label=f'{threshold:.0%} threshold')
  ax.set_xlabel('Epochs')
  ax.set_ylabel('Training error rate')
  ax.set_ylim(0, 1)
  ax.set_title(title, fontsize=9)
  ax.legend()
  fig.tight_layout()
  return fig
