"""The learning problem: the loss, the training step, the evaluation and feature steps.

Every step is one jitted function over global arrays whose batch axis is
sharded over the mesh's 'data' axis (`parallel.shard_batch`); the network
runs under `parallel.sharded_apply`, so the same steps serve one device, two
towers on two devices and data parallelism. `train.py`, the evaluation
commands and the benchmarks share them.

Nothing here imports TensorFlow.
"""

from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from alexnet_jax import compilation
from alexnet_jax import parallel
from alexnet_jax.model import AlexNet


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy: (N, C) float32 logits, (N,) int labels -> (N,)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def make_train_step(model: AlexNet, tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh) -> Callable:
  """The jitted training step.

  step(params, opt_state, batch, dropout_key) -> (params, opt_state, metrics)

  batch: {'image': (B, S, S, 3) float32, 'label': (B,) int32} global arrays
  sharded over 'data'. dropout_key: this step's key; the mask of each example
  depends only on the key and its row in the global batch. metrics:
  {'loss': mean cross-entropy, 'top1_error': fraction}. Parameters and
  optimizer state are donated.
  """
  forward = parallel.sharded_apply(model, mesh, train=True)

  def loss_fn(params, batch, dropout_key):
    ids = jnp.arange(batch['label'].shape[0], dtype=jnp.int32)
    logits = forward(params, batch['image'], ids, dropout_key)
    return cross_entropy(logits, batch['label']).mean(), logits

  def step(params, opt_state, batch, dropout_key):
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, dropout_key)
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
