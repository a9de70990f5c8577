"""Two towers on two accelerators, data parallelism on the rest (section 3.2).

The devices form a mesh with axes ('data', 'model'). With model=2 each device
of a 'model' pair holds one tower: every parameter and its velocity is sharded
on its leading tower axis, and a tower's activations never leave its device
except at the cross-connected layers (conv3, fc6, fc7, fc8), where the
network's `_cross_towers` is an all-gather over 'model'. The batch is sharded
over 'data'; parameters are replicated over 'data', so their gradients are
summed over 'data' only.

The forward pass runs under `jax.shard_map`; `jax.grad` differentiates
through it, so each all-gather's transpose (a reduce-scatter) appears in the
backward pass and the gradient all-reduce over 'data' comes from the
parameters' replication. The loss and the update run on the assembled,
sharded arrays in the same jitted step.

Nothing here imports TensorFlow.
"""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from alexnet_jax.model import AlexNet

MESH_AXES = ('data', 'model')


def mesh_shape(data: int, model: int, num_devices: int, towers: int = 2) -> tuple[int, int]:
  """Resolves config.mesh (data=-1: all remaining devices) to a (data, model) shape.

  Raises ValueError naming the numbers when the mesh cannot be built.
  """
  if model not in (1, 2):
    raise ValueError(f'mesh.model must be 1 or 2 (one device per tower), got {model}.')
  if model > towers:
    raise ValueError(f'mesh.model={model} needs a network with {model} towers, '
                     f'but model.towers={towers}.')
  if data == -1:
    if num_devices % model:
      raise ValueError(f'mesh.model={model} does not divide the {num_devices} devices.')
    data = num_devices // model
  if data < 1 or data * model > num_devices:
    raise ValueError(f'mesh data={data} x model={model} needs {data * model} devices, '
                     f'but {num_devices} are available; lower mesh.data or mesh.model.')
  return data, model


def make_mesh(data: int = -1, model: int = 1, towers: int = 2,
              devices: list | None = None) -> jax.sharding.Mesh:
  """A ('data', 'model') mesh over the first data * model devices."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(data, model, len(devices), towers)
  return jax.make_mesh(shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 2,
                       devices=devices[:shape[0] * shape[1]])


def check_batch_size(global_batch: int, mesh: jax.sharding.Mesh) -> None:
  data = mesh.shape['data']
  if global_batch % data:
    raise ValueError(f'The global batch of {global_batch} cannot be split over the '
                     f'{data} devices of the data axis; choose a multiple of {data}.')


def model_for_mesh(model: AlexNet, mesh: jax.sharding.Mesh) -> AlexNet:
  """The network as one device of `mesh` runs it: one tower per device when model=2."""
  return model.clone(model_axis='model' if mesh.shape['model'] == 2 else None)


def state_sharding(tree: Any, mesh: jax.sharding.Mesh) -> Any:
  """Shardings for parameters or optimizer state: the leading tower axis over
  'model' for arrays, replicated scalars (step counts, hyperparameters)."""
  return jax.tree.map(
      lambda x: NamedSharding(mesh, P('model') if np.ndim(x) else P()), tree)


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P('data'))


def shard_batch(batch: dict, mesh: jax.sharding.Mesh) -> dict:
  """Assembles this process's rows of the global batch into global arrays
  sharded over 'data' (works with one or several processes)."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def _sharded_forward(model: AlexNet, mesh: jax.sharding.Mesh, train: bool) -> Callable:
  """logits = f(params, images, example_ids, dropout_key): the network under shard_map.

  Each device sees its rows of the batch and its towers' parameters; the
  logits come back as a global (N, classes) array sharded (data, model).
  """
  local_model = model_for_mesh(model, mesh)

  def forward(params, images, example_ids, dropout_key):
    return local_model.apply({'params': params}, images, train=train,
                             example_ids=example_ids, rngs={'dropout': dropout_key})

  return jax.shard_map(forward, mesh=mesh, in_specs=(P('model'), P('data'), P('data'), P()),
                       out_specs=P('data', 'model'))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy, (N, C) float32 logits and (N,) int labels -> (N,)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def make_train_step(model: AlexNet, tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh) -> Callable:
  """The jitted training step.

  step(params, opt_state, batch, dropout_key) -> (params, opt_state, metrics)

  batch: {'image': (B, S, S, 3) float32, 'label': (B,) int32} global arrays
  sharded over 'data' (see `shard_batch`). dropout_key: this step's key; the
  mask of each example depends only on the key and its row in the global
  batch. metrics: {'loss': mean cross-entropy, 'top1_error': fraction}.
  Parameters and optimizer state are donated.
  """
  forward = _sharded_forward(model, mesh, train=True)

  def loss_fn(params, batch, dropout_key):
    n = batch['label'].shape[0]
    ids = jnp.arange(n, dtype=jnp.int32)
    logits = forward(params, batch['image'], ids, dropout_key)
    return cross_entropy(logits, batch['label']).mean(), logits

  def step(params, opt_state, batch, dropout_key):
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, dropout_key)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    top1_error = jnp.mean(jnp.argmax(logits, -1) != batch['label'])
    return params, opt_state, {'loss': loss, 'top1_error': top1_error}

  return jax.jit(step, donate_argnums=(0, 1))


def make_eval_step(model: AlexNet, mesh: jax.sharding.Mesh) -> Callable:
  """The jitted evaluation step.

  eval_step(params, batch) -> sums over the batch's real examples of
  {'loss', 'top1_errors', 'top5_errors', 'count'}. batch: {'image': (B, S, S, 3)
  or (B, crops, S, S, 3), 'label': (B,), 'mask': (B,) bool}. With several crops
  per example the softmax outputs are averaged over the crops (section 4.1's
  ten-crop test).
  """
  forward = _sharded_forward(model, mesh, train=False)

  def eval_step(params, batch):
    images, labels, mask = batch['image'], batch['label'], batch['mask']
    n = labels.shape[0]
    crops = images.shape[1] if images.ndim == 5 else 1
    flat = images.reshape(n * crops, *images.shape[-3:])
    ids = jnp.arange(n * crops, dtype=jnp.int32)
    logits = forward(params, flat, ids, jax.random.key(0))
    probs = jax.nn.softmax(logits).reshape(n, crops, -1).mean(axis=1)
    log_probs = jnp.log(jnp.maximum(probs, 1e-30))
    loss = -jnp.take_along_axis(log_probs, labels[:, None], axis=1)[:, 0]
    top5 = jax.lax.top_k(probs, min(5, probs.shape[-1]))[1]
    top1_wrong = top5[:, 0] != labels
    top5_wrong = ~jnp.any(top5 == labels[:, None], axis=1)
    w = mask.astype(jnp.float32)
    return {'loss': jnp.sum(loss * w), 'top1_errors': jnp.sum(top1_wrong * w),
            'top5_errors': jnp.sum(top5_wrong * w), 'count': jnp.sum(w)}

  return jax.jit(eval_step)


def init_params(model: AlexNet, mesh: jax.sharding.Mesh, seed_key: jax.Array) -> Any:
  """Initial parameters (section 5), created directly with the mesh's sharding."""
  dummy = jnp.zeros((1, model.image_size, model.image_size, 3), jnp.float32)
  init = lambda key: model.init(key, dummy)['params']
  shardings = state_sharding(jax.eval_shape(init, seed_key), mesh)
  return jax.jit(init, out_shardings=shardings)(seed_key)


def init_opt_state(tx: optax.GradientTransformation, params: Any,
                   mesh: jax.sharding.Mesh) -> Any:
  shardings = state_sharding(jax.eval_shape(tx.init, params), mesh)
  return jax.jit(tx.init, out_shardings=shardings)(params)
