"""The learning problem: the loss, the training step, the evaluation and feature steps.

Every step is one jitted function over global arrays whose batch axis is
sharded over the mesh's 'data' axis (`parallel.shard_batch`); the network
runs under `parallel.sharded_apply`, so the same steps serve one device, two
towers on two devices and data parallelism. `train.py`, the evaluation
commands and the benchmarks share them.

The training step also finishes the input transformation on the
accelerator (`train_inputs`): the host sends uint8 crops and the random
draws, the step converts to float, subtracts the mean image, reflects and
adds PCA lighting (sections 2 and 4.1), each device for its own rows.

Nothing here imports TensorFlow.
"""

from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import optax

from alexnet_jax import compilation
from alexnet_jax import parallel
from alexnet_jax.model import AlexNet


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy: (N, C) float32 logits, (N,) int labels -> (N,)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def transform_crops(image: jax.Array, offset: jax.Array, flip: jax.Array, alpha: jax.Array,
                    transform: Any) -> jax.Array:
  """The network's input from the host's uint8 crops and draws (sections 2 and 4.1).

  Computes, per example, exactly what the paper's preprocessing does to the
  S x S image before cropping, on the crop: float32 pixels minus the mean
  image at the crop's window ("subtracting the mean activity over the
  training set from each pixel", section 2), reflected horizontally where
  `flip`, plus the PCA lighting offset eigvecs @ (alpha * lighting_scale) at
  every pixel (section 4.1: one alpha per image and presentation, drawn by
  the host); channels reversed for a network that takes BGR.

  Args:
    image: uint8 (N, C, C, 3) crops.
    offset: int32 (N, 2), each crop's top-left (y, x) in the S x S image.
    flip: bool (N,).
    alpha: float32 (N, 3).
    transform: a `data.TrainTransform` (mean_image (S, S, 3), eigvecs (3, 3),
      lighting_scale (3,), bgr).

  Returns:
    float32 (N, C, C, 3), 0..255 units minus the mean (roughly -128..128).
  """
  crop = image.shape[1]
  mean = jnp.asarray(transform.mean_image, jnp.float32)
  mean_crops = jax.vmap(
      lambda o: jax.lax.dynamic_slice(mean, (o[0], o[1], 0), (crop, crop, 3)))(offset)
  x = image.astype(jnp.float32) - mean_crops  # section 2: the mean image
  x = jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)  # section 4.1: reflections
  # Section 4.1's PCA lighting.
  c = alpha * jnp.asarray(transform.lighting_scale, jnp.float32)  # (N, 3): a_i s_i
  p = jnp.asarray(transform.eigvecs, jnp.float32)  # columns p_i
  # sum_i a_i s_i p_i, (N, 3), added in this order elementwise: a dot's order of summation
  # depends on the kernel XLA picks for the shapes, so each mesh would round differently.
  delta = c[:, 0:1] * p[:, 0] + c[:, 1:2] * p[:, 1] + c[:, 2:3] * p[:, 2]
  x = x + delta[:, None, None, :]
  return x[..., ::-1] if transform.bgr else x


def train_inputs(transform: Any, mesh: jax.sharding.Mesh) -> Callable:
  """f(batch) -> the network's float32 (B, C, C, 3) input of a host training batch
  (`data.train_iterator`: 'image', 'offset', 'flip', 'alpha'), by `transform_crops`
  on each device for its own rows (sharded over 'data' like the batch), not jitted."""
  per_device = jax.shard_map(
      lambda image, offset, flip, alpha: transform_crops(image, offset, flip, alpha, transform),
      mesh=mesh, in_specs=P('data'), out_specs=P('data'))
  return lambda batch: per_device(batch['image'], batch['offset'], batch['flip'], batch['alpha'])


def make_train_step(model: AlexNet, tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh, transform: Any = None) -> Callable:
  """The jitted training step.

  step(params, opt_state, batch, dropout_key) -> (params, opt_state, metrics)

  batch: global arrays sharded over 'data': with `transform` (a
  `data.TrainTransform`) a host training batch of `data.train_iterator`
  ({'image': uint8 (B, C, C, 3), 'label': (B,) int32, 'offset', 'flip',
  'alpha'}), turned into the network's input on the devices
  (`train_inputs`); without, {'image': (B, C, C, 3) float32 network input,
  'label'}. dropout_key: this step's key; the mask of each example depends
  only on the key and its row in the global batch. metrics: {'loss': mean
  cross-entropy, 'top1_error': fraction}. Parameters and optimizer state are
  donated.
  """
  forward = parallel.sharded_apply(model, mesh, train=True)
  inputs = (lambda batch: batch['image']) if transform is None else train_inputs(transform, mesh)

  def loss_fn(params, images, labels, dropout_key):
    ids = jnp.arange(labels.shape[0], dtype=jnp.int32)
    logits = forward(params, images, ids, dropout_key)
    return cross_entropy(logits, labels).mean(), logits

  def step(params, opt_state, batch, dropout_key):
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, inputs(batch), batch['label'], dropout_key)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    top1_error = jnp.mean(jnp.argmax(logits, -1) != batch['label'])
    return params, opt_state, {'loss': loss, 'top1_error': top1_error}

  return compilation.jit(step, donate_argnums=(0, 1))


def _flat_crops(images: jax.Array) -> tuple[jax.Array, int]:
  """(N, S, S, 3) or (N, crops, S, S, 3) -> ((N * crops, S, S, 3), crops)."""
  crops = images.shape[1] if images.ndim == 5 else 1
  return images.reshape(-1, *images.shape[-3:]), crops


def predict_fn(model: AlexNet, mesh: jax.sharding.Mesh) -> Callable:
  """Test-time prediction, not jitted (for use inside other steps):
  predict(params, images) -> (N, classes) probabilities.

  images: (N, S, S, 3) or (N, crops, S, S, 3) mean-subtracted float32. With
  several crops the softmax outputs are averaged over them (section 4.1's
  ten-crop test: "averaging the predictions made by the network's softmax
  layer on the ten patches").
  """
  forward = parallel.sharded_apply(model, mesh, train=False)

  def predict(params, images):
    flat, crops = _flat_crops(images)
    ids = jnp.arange(flat.shape[0], dtype=jnp.int32)
    probs = jax.nn.softmax(forward(params, flat, ids, jax.random.key(0)))
    return probs.reshape(images.shape[0], crops, -1).mean(axis=1)

  return predict


def make_predict_step(model: AlexNet, mesh: jax.sharding.Mesh) -> Callable:
  """`predict_fn`, jitted."""
  return compilation.jit(predict_fn(model, mesh))


def error_sums(probs: jax.Array, labels: jax.Array, mask: jax.Array) -> dict:
  """Sums over the rows where `mask` is True of the loss and the top-1 / top-5 errors.

  probs: (N, C) class probabilities; labels: (N,) int; mask: (N,) bool (False
  for the padding of a last batch). A top-k error counts an example whose
  label is not among its k most probable classes (section 6's measure).
  Returns {'loss', 'top1_errors', 'top5_errors', 'count'} float32 scalars.
  """
  log_probs = jnp.log(jnp.maximum(probs, 1e-30))
  loss = -jnp.take_along_axis(log_probs, labels[:, None], axis=1)[:, 0]
  top5 = jax.lax.top_k(probs, min(5, probs.shape[-1]))[1]
  top1_wrong = top5[:, 0] != labels
  top5_wrong = ~jnp.any(top5 == labels[:, None], axis=1)
  w = mask.astype(jnp.float32)
  return {'loss': jnp.sum(loss * w), 'top1_errors': jnp.sum(top1_wrong * w),
          'top5_errors': jnp.sum(top5_wrong * w), 'count': jnp.sum(w)}


def make_eval_step(model: AlexNet, mesh: jax.sharding.Mesh) -> Callable:
  """The jitted evaluation step: eval_step(params, batch) -> `error_sums` of the batch.

  batch: {'image': (B, S, S, 3) or (B, crops, S, S, 3), 'label': (B,),
  'mask': (B,) bool}; several crops are averaged as in `predict_fn`.
  """
  predict = predict_fn(model, mesh)

  def eval_step(params, batch):
    return error_sums(predict(params, batch['image']), batch['label'], batch['mask'])

  return compilation.jit(eval_step)


def make_feature_step(model: AlexNet, mesh: jax.sharding.Mesh) -> Callable:
  """The jitted feature step: features(params, images) -> (fc7, logits).

  images: (N, S, S, 3) center crops. fc7: (N, fc_features) float32, the last
  hidden layer after its ReLU (section 6.1's feature vectors), tower 0's
  units first; logits: (N, classes) float32.
  """
  forward = parallel.sharded_apply(model, mesh, train=False, features=True)

  def features(params, images):
    ids = jnp.arange(images.shape[0], dtype=jnp.int32)
    logits, fc7 = forward(params, images, ids, jax.random.key(0))
    return fc7.astype(jnp.float32), logits

  return compilation.jit(features)


def evaluate(eval_step: Callable, params: Any, mesh: jax.sharding.Mesh,
             batches: Iterable[dict]) -> dict:
  """Runs `eval_step` over every batch; returns the loss and top-1/top-5 error over all examples.

  batches: host batches of this process's rows (`parallel.shard_batch` makes
  them global). Returns {'loss', 'top1_error', 'top5_error', 'count'} as floats.
  """
  totals = None
  for batch in batches:
    sums = eval_step(params, parallel.shard_batch(batch, mesh))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.tree.map(float, totals)
  count = totals['count']
  return {'loss': totals['loss'] / count, 'top1_error': totals['top1_errors'] / count,
          'top5_error': totals['top5_errors'] / count, 'count': count}
