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

Several processes (machines): `initialize_distributed` first, then each
process feeds `process_rows(global_batch, mesh)` of every global batch to
`shard_batch` (`input_shard` gives the same as the input pipeline's
(index, count)). `hlo_collectives` lists the collectives of a compiled step
with the mesh axes they span (how the tests check the placement).
docs/parallel.md explains the placement and how to launch.

Nothing here imports TensorFlow.
"""

import dataclasses
import functools
import math
import re
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from alexnet_jax import errors
from alexnet_jax.model import AlexNet

MESH_AXES = ('data', 'model')


def mesh_shape(data: int, model: int, num_devices: int, towers: int = 2) -> tuple[int, int]:
  """Resolves config.mesh to a (data, model) shape.

  data=-1: all devices not on the model axis. model=-1: one tower per device
  (2) when the network has two towers and the devices can be paired, else 1.
  Raises ConfigError naming the numbers when the mesh cannot be built.
  """
  if model == -1:
    pairable = num_devices % 2 == 0 if data == -1 else 2 * data <= num_devices
    model = 2 if towers == 2 and num_devices >= 2 and pairable else 1
  if model not in (1, 2):
    raise errors.ConfigError(f'mesh.model must be 1 or 2 (one device per tower), or -1, '
                             f'got {model}.')
  if model > towers:
    raise errors.ConfigError(f'mesh.model={model} needs a network with {model} towers, '
                             f'but model.towers={towers}.')
  if data == -1:
    if num_devices % model:
      raise errors.ConfigError(f'mesh.model={model} does not divide the {num_devices} devices.')
    data = num_devices // model
  if data < 1 or data * model > num_devices:
    raise errors.ConfigError(f'mesh data={data} x model={model} needs {data * model} devices, '
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
    raise errors.ConfigError(f'The global batch of {global_batch} cannot be split over the '
                             f'{data} devices of the data axis; choose a multiple of {data}.')


def model_for_mesh(model: AlexNet, mesh: jax.sharding.Mesh) -> AlexNet:
  """The network as one device of `mesh` runs it: one tower per device when model=2."""
  if mesh.shape['model'] > model.towers:
    raise errors.ConfigError(f"The mesh's model axis has {mesh.shape['model']} devices (one per tower), "
                             f'but the network has towers={model.towers}; use mesh.model=1.')
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
      raise errors.ConfigError(f'batch[{k!r}] has {v.shape[0] if v.ndim else 0} rows in this process, '
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
                             f'{blocks} of the mesh {dict(mesh.shape)}; order the mesh devices by process.')
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
    raise errors.ConfigError(f'Process {jax.process_index()} holds rows {rows.start}..{rows.stop} of the '
                             f'global batch of {global_batch}, not an equal share of it.')
  return rows.start // size, global_batch // size


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


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None,
                           *,
                           local_device_ids: Sequence[int] | None = None,
                           initialization_timeout: int = 300) -> tuple[int, int]:
  """Joins a multi-process run (`jax.distributed.initialize`); returns (process index, count).

  Call it once per process, before anything else touches JAX (no
  `jax.devices()`, no arrays). Arguments left as None (or '' and -1, the
  config's defaults) are detected by JAX from the environment: on SLURM (srun; the coordinator is the first
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
  # The config's "not set" values ('' and -1) mean: detect.
  coordinator_address = coordinator_address or None
  num_processes = None if num_processes in (None, -1) else num_processes
  process_id = None if process_id in (None, -1) else process_id
  if num_processes is not None and num_processes < 1:
    raise errors.ConfigError(f'num_processes must be at least 1 (or -1: detect), got {num_processes}.')
  if process_id is not None and process_id < 0:
    raise errors.ConfigError(f'process_id must be 0 or more (or -1: detect), got {process_id}.')
  if (num_processes is not None and process_id is not None
      and not 0 <= process_id < num_processes):
    raise errors.ConfigError(f'process_id={process_id} must lie in 0..{num_processes - 1} '
                             f'for num_processes={num_processes}.')
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             local_device_ids=local_device_ids,
                             initialization_timeout=initialization_timeout)
  return jax.process_index(), jax.process_count()


# ----------------------------------------------------------------------------
# Reading the communication of a compiled step.

COLLECTIVE_OPS = ('all-gather', 'all-reduce', 'reduce-scatter', 'all-to-all',
                  'ragged-all-to-all', 'collective-permute', 'collective-broadcast')

_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*(?P<type>.+?)\s+'
    r'(?P<op>' + '|'.join(COLLECTIVE_OPS) + r')(?P<start>-start)?\((?P<rest>.*)$')
_SHAPE = re.compile(r'\b(?P<dtype>[a-z]+\d*)\[(?P<dims>[\d,]*)\]')
_IOTA = re.compile(r'\[(?P<shape>[\d,]+)\]<=\[(?P<dims>[\d,]+)\](?:T\((?P<perm>[\d,]+)\))?')


@dataclasses.dataclass(frozen=True)
class Collective:
  """One collective of a compiled (SPMD-partitioned) HLO module.

  op: 'all-gather', 'all-reduce', 'reduce-scatter', ... (async '-start' forms
  folded in). axes: the mesh axes along which its groups' devices differ:
  ('model',), ('data',), ('data', 'model') or () (no communication).
  shapes: its per-device result shapes (several for a combined all-reduce).
  group_size: devices per group.
  """
  name: str
  op: str
  axes: tuple[str, ...]
  shapes: tuple[tuple[int, ...], ...]
  dtypes: tuple[str, ...]
  group_size: int

  @property
  def elements(self) -> int:
    return sum(math.prod(s) for s in self.shapes)


def _balanced(text: str) -> str:
  """The leading {...} group of text, braces balanced."""
  depth = 0
  for i, ch in enumerate(text):
    depth += {'{': 1, '}': -1}.get(ch, 0)
    if depth == 0:
      return text[:i + 1]
  raise ValueError(f'Unbalanced braces in {text[:80]!r}.')


def _iota_groups(m: re.Match) -> np.ndarray:
  dims = [int(d) for d in m['dims'].split(',')]
  ids = np.arange(math.prod(dims)).reshape(dims)
  if m['perm']:
    ids = ids.transpose([int(p) for p in m['perm'].split(',')])
  return ids.reshape([int(d) for d in m['shape'].split(',')])


def _mesh_groups(text: str) -> list[list[int]]:
  """Groups of `mesh['a'=4,'b'=2](, device_ids=(...))? {'b'}` (sub-axes 'a':(pre)size)."""
  m = re.match(r"mesh\[(?P<axes>[^\]]*)\](?:, device_ids=\((?P<ids>[^()]*(?:\([^()]*\))?)\))?"
               r"\s*\{(?P<group>[^}]*)\}", text)
  if not m:
    raise ValueError(f'Unknown replica_groups format {text[:80]!r}.')
  axes = re.findall(r"'?([^'=,\s]+)'?=(\d+)", m['axes'])
  names, sizes = [a for a, _ in axes], [int(s) for _, s in axes]
  if m['ids'] is None:
    ids = np.arange(math.prod(sizes)).reshape(sizes)
  elif (iota := _IOTA.fullmatch(m['ids'].strip())):
    ids = _iota_groups(iota).reshape(sizes)
  else:
    ids = np.array([int(i) for i in re.findall(r'\d+', m['ids'])]).reshape(sizes)
  # Split every axis into (pre, size, rest) so a sub-axis is one dimension.
  split_shape, grouped = [], []
  refs = re.findall(r"'?([^':,\s]+)'?(?::\((\d+)\)(\d+))?", m['group'])
  by_axis = {name: (int(pre), int(size)) for name, pre, size in refs if pre}
  whole = {name for name, pre, _ in refs if not pre}
  for name, size in zip(names, sizes):
    pre, sub = by_axis.get(name, (1, size))
    base = len(split_shape)
    split_shape += [pre, sub, size // (pre * sub)]
    if name in whole or name in by_axis:
      grouped.append(base + 1)
  ids = ids.reshape(split_shape)
  others = [d for d in range(ids.ndim) if d not in grouped]
  group_size = math.prod(split_shape[d] for d in grouped)
  return ids.transpose(others + grouped).reshape(-1, group_size).tolist()


def _groups(rest: str, num_devices: int) -> list[list[int]]:
  m = re.search(r'(replica_groups|source_target_pairs)=', rest)
  if not m:
    return [list(range(num_devices))]
  text = rest[m.end():]
  if text.startswith('{'):
    groups = [[int(i) for i in g.split(',')]
              for g in re.findall(r'\{([\d,]+)\}', _balanced(text))]
    return groups or [list(range(num_devices))]
  if text.startswith('['):
    iota = _IOTA.match(text)
    if not iota:
      raise ValueError(f'Unknown replica_groups format {text[:80]!r}.')
    return _iota_groups(iota).tolist()
  if text.startswith('mesh['):
    return _mesh_groups(text)
  raise ValueError(f'Unknown replica_groups format {text[:80]!r}.')


def hlo_collectives(hlo_text: str, mesh: jax.sharding.Mesh) -> list[Collective]:
  """The collectives of a compiled step, each with the mesh axes it spans.

  hlo_text: `step.lower(...).compile().as_text()` of a computation over `mesh`
  (a Mesh or AbstractMesh; device i of the HLO is the i-th in row-major mesh
  order, `mesh.devices.flat`, as `jax.jit` assigns them).
  Replica groups are read in all three printed forms: explicit lists
  {{0,1},{2,3}}, iota [4,2]<=[8] (with an optional transpose T(1,0)) and
  mesh['axis_0'=4,'axis_1'=2] {'axis_1'}.
  """
  names, sizes = tuple(mesh.shape), tuple(mesh.shape.values())
  coords = np.stack(np.unravel_index(np.arange(math.prod(sizes)), sizes), -1)
  found = []
  for line in hlo_text.splitlines():
    m = _INSTRUCTION.match(line)
    if not m:
      continue
    shapes = [(s['dtype'], tuple(int(d) for d in s['dims'].split(',') if d))
              for s in _SHAPE.finditer(m['type'])]
    if m['start'] and m['op'] != 'all-reduce' and len(shapes) > 1:
      shapes = shapes[len(shapes) // 2:]  # (operands, results) of an async start
    groups = _groups(m['rest'], len(coords))
    varying = set()
    for group in groups:
      c = coords[np.asarray(group)]
      varying |= {names[a] for a in range(c.shape[1]) if len(set(c[:, a])) > 1}
    found.append(Collective(
        name=m['name'], op=m['op'], axes=tuple(a for a in names if a in varying),
        shapes=tuple(s for _, s in shapes), dtypes=tuple(d for d, _ in shapes),
        group_size=len(groups[0])))
  return found
