"""Checkpoints of the training state with orbax, under <workdir>/checkpoints/.

A checkpoint holds the whole state a run needs to continue exactly: the
parameters, the optimizer state (velocity and run-time learning rate), the
step (which is also the data position: batch s is a function of the seed and
s) and the plateau policy's memory. Orbax writes each checkpoint to a
temporary folder and renames it when complete, so a crash during a save
leaves the previous checkpoints usable.
"""

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
  """The checkpoint in the workdir was written by a network of another shape."""


def make_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
      item_handlers=ocp.StandardCheckpointHandler())


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """{'params/conv1/kernel': shape, ...}; named tuples and dicts name alike."""
  def name(key):
    for attr in ('key', 'name', 'idx'):
      if hasattr(key, attr):
        return str(getattr(key, attr))
    return str(key)
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {'/'.join(map(name, path)): tuple(np.shape(leaf)) for path, leaf in flat}


def check_compatible(manager: ocp.CheckpointManager, step: int, target: Any) -> None:
  """Raises CheckpointMismatchError naming the first parameter whose stored
  shape differs from `target`'s (a pytree of arrays or ShapeDtypeStructs)."""
  stored = _shapes(manager.item_metadata(step))
  expected = _shapes(target)
  # Parameters first: the name a user recognises (the velocity mirrors them).
  for name, shape in sorted(expected.items(), key=lambda kv: not kv[0].startswith('params/')):
    if name not in stored:
      raise CheckpointMismatchError(
          f'The checkpoint at step {step} in {manager.directory} has no entry {name} '
          f'(shape {shape}) that this config needs. Use a new --workdir for a different network.')
    if stored[name] != shape:
      raise CheckpointMismatchError(
          f'The checkpoint at step {step} in {manager.directory} does not fit this config: '
          f'{name} has shape {stored[name]} there but {shape} here. Use a new --workdir '
          'or the config the checkpoint was written with.')


def restore(manager: ocp.CheckpointManager, step: int, target: Any) -> Any:
  """Restores step `step` into arrays with the shardings of `target`."""
  check_compatible(manager, step, target)
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=getattr(x, 'sharding', None)),
      target)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
  manager.save(step, args=ocp.args.StandardSave(state), force=True)


def load_params(workdir: str, step: int | None = None) -> tuple[int, Any]:
  """(step, parameters) of a run's checkpoint, the latest by default, as NumPy arrays.

  For looking at a trained network (notebooks, tests); training resumes with
  `restore`, which keeps the shardings.
  """
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  with ocp.CheckpointManager(directory, item_handlers=ocp.StandardCheckpointHandler()) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'No checkpoint in {directory}.')
    # Restore onto this process's first device, whatever mesh wrote it.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          manager.item_metadata(step))
    state = manager.restore(step, args=ocp.args.StandardRestore(target))
  return step, jax.tree.map(np.asarray, state['params'])
