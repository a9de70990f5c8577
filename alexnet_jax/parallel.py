"""Placement: two towers on two accelerators, data parallelism on the rest (section 3.2).

The devices form a mesh with axes ('data', 'model'). With model=2 each device
of a 'model' pair holds one tower: every parameter and its velocity is sharded
on its leading tower axis, and a tower's activations never leave its device
except at the cross-connected layers (conv3, fc6, fc7, fc8), where the
network's `_cross_towers` is an all-gather over 'model'. The batch is sharded
over 'data'; parameters are replicated over 'data'.

This module places things and nothing else: the mesh (`make_mesh`), the
shardings of state and batches, the rows each process feeds
(`process_rows`, `input_shard`), the network under `jax.shard_map`
(`sharded_apply`), sharded initialization and the multi-process start
(`initialize_distributed`). The loss and the steps that use it are in
`alexnet_jax.steps`. docs/parallel.md tells the whole story: what the devices
exchange, how to choose `config.mesh`, how to launch on several machines and
how to inspect a compiled step.

Nothing here imports TensorFlow.
"""

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

from alexnet_jax import errors
from alexnet_jax.model import AlexNet

MESH_AXES = ('data', 'model')


def mesh_shape(data: int | None, model: int | None, num_devices: int,
               towers: int = 2) -> tuple[int, int]:
  """Resolves config.mesh to a (data, model) shape.

  data=None: all devices not on the model axis. model=None: one tower per
  device (2) when the network has two towers and the devices pair up (an even
  count, or at least 2 * data), else 1. Raises ConfigError naming the numbers
  when the mesh cannot be built.
  """
  if model is None:
    pairable = num_devices % 2 == 0 if data is None else 2 * data <= num_devices
    model = 2 if towers == 2 and num_devices >= 2 and pairable else 1
  if model not in (1, 2):
    raise errors.ConfigError(f'mesh.model must be 1 or 2 (one device per tower), or None '
                             f'(automatic), got {model}.')
  if model > towers:
    raise errors.ConfigError(f'mesh.model={model} needs a network with {model} towers, '
                             f'but model.towers={towers}.')
  if data is None:
    if num_devices % model:
      raise errors.ConfigError(f'mesh.model={model} does not divide the {num_devices} devices.')
    data = num_devices // model
  if data < 1 or data * model > num_devices:
    raise errors.ConfigError(f'mesh data={data} x model={model} needs {data * model} devices, '
                             f'but {num_devices} are available; lower mesh.data or mesh.model.')
  return data, model


def make_mesh(data: int | None = None, model: int | None = 1, towers: int = 2,
              devices: list | None = None) -> jax.sharding.Mesh:
  """A ('data', 'model') mesh over the first data * model devices."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(data, model, len(devices), towers)
  return jax.make_mesh(shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 2,
                       devices=devices[:shape[0] * shape[1]])


def check_batch_size(global_batch: int, mesh: jax.sharding.Mesh) -> None:
  data = mesh.shape['data']
  if global_batch % data:
    raise errors.ConfigError(f'The global batch of {global_batch} cannot be split over the '
                             f'{data} devices of the data axis; choose a multiple of {data}.')


def model_for_mesh(model: AlexNet, mesh: jax.sharding.Mesh) -> AlexNet:
  """The network as one device of `mesh` runs it: one tower per device when model=2."""
  if mesh.shape['model'] > model.towers:
    raise errors.ConfigError(f"The mesh's model axis has {mesh.shape['model']} devices (one per "
                             f'tower), but the network has towers={model.towers}; '
                             'use mesh.model=1.')
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
  sharded over 'data' (works with one or several processes).

  `batch` holds the rows `process_rows(global_batch, mesh)` of the global
  batch. Raises ValueError, before anything is compiled, when those rows
  cannot be split evenly over the data axis.
  """
  sharding = batch_sharding(mesh)
  arrays = {k: np.asarray(v) for k, v in batch.items()}
  shards = len(_process_data_blocks(mesh))  # row blocks this process feeds
  for k, v in arrays.items():
    if not v.ndim or v.shape[0] % shards:
      rows = v.shape[0] if v.ndim else 0
      raise errors.ConfigError(f'batch[{k!r}] has {rows} rows in this process, '
                               f'which cannot be split over its {shards} devices of the data axis.')
    check_batch_size(v.shape[0] // shards * mesh.shape['data'], mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in arrays.items()}


def process_rows(global_batch: int, mesh: jax.sharding.Mesh) -> slice:
  """The rows of a global batch that this process feeds to `shard_batch`.

  One process: all of them. Several: the rows of the data-axis blocks whose
  devices this process holds. Processes holding devices of the same data
  block (e.g. one GPU per process with mesh.model=2: the two towers of a
  model pair) must feed the same rows.
  """
  check_batch_size(global_batch, mesh)
  blocks = _process_data_blocks(mesh)
  if blocks != list(range(blocks[0], blocks[-1] + 1)):
    raise errors.ConfigError(f'Process {jax.process_index()} holds the non-contiguous data blocks '
                             f'{blocks} of the mesh {dict(mesh.shape)}; order the mesh devices '
                             'by process.')
  size = global_batch // mesh.shape['data']
  return slice(blocks[0] * size, (blocks[-1] + 1) * size)


def _process_data_blocks(mesh: jax.sharding.Mesh) -> list[int]:
  """The data-axis indices (row blocks of the batch) of this process's devices."""
  blocks = sorted({i for (i, _), d in np.ndenumerate(mesh.devices)
                   if d.process_index == jax.process_index()})
  if not blocks:
    raise errors.ConfigError(f'Process {jax.process_index()} holds no device of the mesh '
                             f'{dict(mesh.shape)}.')
  return blocks


def input_shard(global_batch: int, mesh: jax.sharding.Mesh) -> tuple[int, int]:
  """(index, count) for the input pipeline: this process reads rows
  [index * B / count, (index + 1) * B / count) of every global batch of B rows,
  which is `process_rows(B, mesh)`.

  (jax.process_index(), jax.process_count()) whenever every process holds
  whole data blocks (one process per host with all its devices, the default
  device order). With one device per process and mesh.model=2 (SLURM or
  Open MPI with one task per GPU), the two processes of a tower pair get the
  same index, and count is the number of data blocks.
  """
  rows = process_rows(global_batch, mesh)
  size = rows.stop - rows.start
  if rows.start % size:
    raise errors.ConfigError(f'Process {jax.process_index()} holds rows {rows.start}..{rows.stop} '
                             f'of the global batch of {global_batch}, not an equal share of it.')
  return rows.start // size, global_batch // size


def sharded_apply(model: AlexNet, mesh: jax.sharding.Mesh, *, train: bool,
                  features: bool = False) -> Callable:
  """The network under `jax.shard_map`: f(params, images, example_ids, dropout_key).

  Each device sees its rows of the batch and its towers' parameters. Returns
  the global (N, classes) float32 logits, sharded (data, model); with
  `features` also the fc7 activations (N, fc_features), tower 0's units first
  (section 6.1's feature vectors).
  """
  local_model = model_for_mesh(model, mesh)

  def forward(params, images, example_ids, dropout_key):
    logits, state = local_model.apply(
        {'params': params}, images, train=train, example_ids=example_ids,
        rngs={'dropout': dropout_key}, mutable=['intermediates'])
    if not features:
      return logits
    fc7 = jnp.concatenate(state['intermediates']['fc7_features'][0], axis=-1)
    return logits, fc7

  out_specs = (P('data', 'model'), P('data', 'model')) if features else P('data', 'model')
  apply = jax.shard_map(forward, mesh=mesh, in_specs=(P('model'), P('data'), P('data'), P()),
                        out_specs=out_specs)

  def trimmed(*args):
    """The towers' fc8 units without a padded one (`AlexNet.fc8_units`): (N, num_classes)."""
    out = apply(*args)
    if not features:
      return out[:, :model.num_classes]
    return out[0][:, :model.num_classes], out[1]
  return trimmed


def init_params(model: AlexNet, mesh: jax.sharding.Mesh, seed_key: jax.Array) -> Any:
  """Initial parameters (section 5), created directly with the mesh's sharding."""
  dummy = jnp.zeros((1, model.image_size, model.image_size, 3), jnp.float32)

  def init(key):
    return model.init(key, dummy)['params']

  shardings = state_sharding(jax.eval_shape(init, seed_key), mesh)
  return jax.jit(init, out_shardings=shardings)(seed_key)


def init_opt_state(tx: optax.GradientTransformation, params: Any,
                   mesh: jax.sharding.Mesh) -> Any:
  shardings = state_sharding(jax.eval_shape(tx.init, params), mesh)
  return jax.jit(tx.init, out_shardings=shardings)(params)


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None,
                           *,
                           local_device_ids: Sequence[int] | None = None,
                           initialization_timeout: int = 300) -> tuple[int, int]:
  """Joins a multi-process run (`jax.distributed.initialize`); returns (process index, count).

  Call it once per process, before anything else touches JAX (no
  `jax.devices()`, no arrays). Arguments left as None (the config's
  defaults) are detected by JAX from the environment: on SLURM (srun; the coordinator is the first
  node of the step, port derived from the job id), Open MPI (mpirun) and
  Cloud TPU pods all of them may be None. JAX also reads the coordinator
  from $JAX_COORDINATOR_ADDRESS and the local devices from
  $JAX_LOCAL_DEVICE_IDS. Elsewhere pass all three: process 0's host:port
  as `coordinator_address` (the same string in every process), the number
  of processes, and this process's id in 0..num_processes-1.

  Under SLURM or Open MPI on GPUs JAX gives each process one GPU (its local
  rank) unless `local_device_ids` says otherwise: launch one task per GPU.
  On CPU, cross-process collectives use gloo (JAX's default there).
  """
  if num_processes is not None and num_processes < 1:
    raise errors.ConfigError(f'num_processes must be at least 1 (or None: detect), '
                             f'got {num_processes}.')
  if process_id is not None and process_id < 0:
    raise errors.ConfigError(f'process_id must be 0 or more (or None: detect), got {process_id}.')
  if (num_processes is not None and process_id is not None
      and not 0 <= process_id < num_processes):
    raise errors.ConfigError(f'process_id={process_id} must lie in 0..{num_processes - 1} '
                             f'for num_processes={num_processes}.')
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             local_device_ids=local_device_ids,
                             initialization_timeout=initialization_timeout)
  return jax.process_index(), jax.process_count()
