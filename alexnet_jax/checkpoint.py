"""Checkpoints of the training state with orbax, under <workdir>/checkpoints/.

A checkpoint holds the whole `train.TrainState` a run needs to continue
exactly: the parameters, the optimizer state (velocity and run-time learning
rate), the step (which is also the data position: batch s is a function of
the seed and s) and the plateau policy's memory. Orbax writes each checkpoint
to a temporary folder and renames it when complete, so a crash during a save
leaves the previous checkpoints usable.

On disk the state is a dict {'params', 'opt_state', 'step', 'plateau'}; the
host values (step, plateau memory) are stored as replicated scalars so that
every process of a multi-process run writes the same checkpoint.
"""

import dataclasses
import logging as std_logging
import os
from typing import Any

from absl import logging as absl_logging
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import orbax.checkpoint as ocp

from alexnet_jax import errors
from alexnet_jax import optim

# The folder of a workdir that holds the checkpoints.
CHECKPOINTS_DIR = 'checkpoints'

# The metric a checkpoint saved at an evaluation carries; the best is the lowest.
BEST_METRIC = 'eval_top1_error'


class _NoMetricsNotice(std_logging.Filter):
  """Drops orbax's warning for a save without metrics: saves between evaluations have none."""

  def filter(self, record):
    return not str(record.msg).startswith('Requested `tracked_metric`')


def _drop_no_metrics_notice() -> None:
  """Installs `_NoMetricsNotice` on absl's logger, once (a training manager needs it)."""
  logger = absl_logging.get_absl_logger()
  if not any(isinstance(f, _NoMetricsNotice) for f in logger.filters):
    logger.addFilter(_NoMetricsNotice())


def _options(keep: int | None = None) -> ocp.CheckpointManagerOptions:
  """Retention: the latest `keep` checkpoints and the one with the lowest validation
  top-1 error (None: read only, keep everything)."""
  def metric(metrics):
    return metrics[BEST_METRIC]
  if keep is None:
    return ocp.CheckpointManagerOptions(read_only=True, best_fn=metric, best_mode='min')
  policy = ocp.checkpoint_managers.AnyPreservationPolicy([
      ocp.checkpoint_managers.LatestN(n=keep),
      ocp.checkpoint_managers.BestN(get_metric_fn=metric, reverse=True, n=1,
                                    keep_checkpoints_without_metrics=False),
  ])
  return ocp.CheckpointManagerOptions(preservation_policy=policy, best_fn=metric,
                                      best_mode='min', create=True)


def directory_of(workdir: str) -> str:
  """<workdir>/checkpoints, absolute."""
  return os.path.join(os.path.abspath(workdir), CHECKPOINTS_DIR)


def make_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  """The manager a training run saves with: keeps the latest `keep` checkpoints and the
  best by validation top-1 error (those saved with `metrics`, see `save`)."""
  _drop_no_metrics_notice()
  return ocp.CheckpointManager(
      directory_of(workdir), options=_options(keep),
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
  """Raises CheckpointError naming the first parameter whose stored
  shape differs from `target`'s (a pytree of arrays or ShapeDtypeStructs)."""
  stored = _shapes(manager.item_metadata(step))
  expected = _shapes(target)
  # Parameters first: the name a user recognises (the velocity mirrors them).
  for name, shape in sorted(expected.items(), key=lambda kv: not kv[0].startswith('params/')):
    if name not in stored:
      raise errors.CheckpointError(
          f'The checkpoint at step {step} in {manager.directory} has no entry {name} '
          f'(shape {shape}) that this config needs. Use a new --workdir for a different network.')
    if stored[name] != shape:
      raise errors.CheckpointError(
          f'The checkpoint at step {step} in {manager.directory} does not fit this config: '
          f'{name} has shape {stored[name]} there but {shape} here. Use a new --workdir '
          'or the config the checkpoint was written with.')


def _stored(state: Any) -> dict:
  """A train state as stored: host values become scalars replicated on the params' mesh."""
  mesh = jax.tree.leaves(state.params)[0].sharding.mesh
  def replicated(value, dtype):
    return jax.device_put(np.asarray(value, dtype), NamedSharding(mesh, P()))
  plateau = state.plateau
  return {'params': state.params, 'opt_state': state.opt_state,
          'step': replicated(state.step, np.int32),
          'plateau': {'best_error': replicated(plateau.best_error, np.float32),
                      'evals_since_best': replicated(plateau.evals_since_best, np.int32),
                      'drops': replicated(plateau.drops, np.int32)}}


def save(manager: ocp.CheckpointManager, state: Any, metrics: dict | None = None) -> None:
  """Saves a `train.TrainState` as step `state.step` (asynchronously: see `wait_until_finished`).

  metrics: the evaluation at this step ({BEST_METRIC: error, ...}), which makes
  the checkpoint a candidate for the best one; None for a save between evaluations.
  """
  if metrics is not None:
    metrics = {k: float(v) for k, v in metrics.items()}
  manager.save(state.step, args=ocp.args.StandardSave(_stored(state)), metrics=metrics,
               force=True)


def restore(manager: ocp.CheckpointManager, step: int, target: Any) -> Any:
  """Restores step `step` as a `train.TrainState` with the shardings of `target`'s arrays."""
  stored_target = _stored(target)
  check_compatible(manager, step, stored_target)
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=x.sharding), stored_target)
  stored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  plateau = stored['plateau']
  return dataclasses.replace(
      target, step=int(stored['step']), params=stored['params'], opt_state=stored['opt_state'],
      plateau=optim.PlateauState(float(plateau['best_error']), int(plateau['evals_since_best']),
                                 int(plateau['drops'])))


def all_steps(workdir: str) -> list[int]:
  """The steps of the checkpoints in `workdir`, ascending (empty when there are none)."""
  directory = directory_of(workdir)
  if not os.path.isdir(directory):
    return []
  with ocp.CheckpointManager(directory) as manager:
    return sorted(manager.all_steps())


def best_step(workdir: str) -> int | None:
  """The step of the checkpoint with the lowest validation top-1 error in `workdir`.

  None when no kept checkpoint was saved at an evaluation (or there are none).
  """
  directory = directory_of(workdir)
  if not os.path.isdir(directory):
    return None
  with ocp.CheckpointManager(directory, options=_options()) as manager:
    return manager.best_step()


def load_params(workdir: str, step: int | None = None) -> tuple[int, Any]:
  """(step, parameters) of a run's checkpoint, the latest by default, as NumPy arrays.

  Read-only, onto this process's first device, whatever mesh wrote it (for
  using a trained network: `alexnet_jax.rundir`); training resumes with
  `restore`, which keeps the shardings.
  """
  directory = directory_of(workdir)
  with ocp.CheckpointManager(directory, item_handlers=ocp.StandardCheckpointHandler()) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise errors.CheckpointError(f'No checkpoint in {directory}.')
    # Restore onto this process's first device, whatever mesh wrote it.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          manager.item_metadata(step))
    state = manager.restore(step, args=ocp.args.StandardRestore(target))
  return step, jax.tree.map(np.asarray, state['params'])
