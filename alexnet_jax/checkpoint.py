"""Checkpoints of the training state with orbax, under <workdir>/checkpoints/.

A checkpoint holds the whole `train.TrainState` a run needs to continue
exactly: the parameters, the optimizer state (velocity and run-time learning
rate), the step (which is also the data position: batch s is a function of
the seed and s) and the plateau policy's memory. Orbax writes each checkpoint
to a temporary folder and renames it when complete, so a crash during a save
leaves the previous checkpoints usable; a training manager removes such
leftovers when it starts.

A checkpoint that cannot be read (truncated or missing files, a crash or a
full disk while it was written, a failing disk) raises
`errors.UnreadableCheckpointError`. Resuming moves it aside as
checkpoints/<step>.unreadable (a name orbax does not take for a step; never
deleted) and continues from the newest readable one
(`restore_newest_readable`); readers skip it when asked for the latest or
the best (`load_first_readable`).

On disk the state is a dict {'params', 'opt_state', 'step', 'plateau'}; the
host values (step, plateau memory) are stored as replicated scalars so that
every process of a multi-process run writes the same checkpoint.
"""

from collections.abc import Callable
from collections.abc import Iterator
import dataclasses
import errno
import logging as std_logging
import os
import shutil
import sys
import traceback
import types
from typing import Any

from absl import logging as absl_logging
import jax
from jax.experimental import multihost_utils
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

# The suffix of a step folder set aside because it cannot be read: orbax takes
# only a number for a step (and <step>.orbax-checkpoint-tmp* for a save in
# progress), so it lists it no more.
UNREADABLE_SUFFIX = '.unreadable'

# At most this many characters of the error that made a checkpoint unreadable.
_CAUSE_CHARS = 300


class _SaidOtherwise(std_logging.Filter):
  """Drops orbax's records that a training run says better itself: the warning for a save
  without metrics (saves between evaluations have none), and the tracebacks of a save
  that found the disk full (`disk_full` says it in one paragraph)."""

  def filter(self, record):
    if str(record.msg).startswith('Requested `tracked_metric`'):
      return False
    return not (record.exc_info and '/orbax/' in record.pathname
                and is_disk_full(record.exc_info[1]))


def _left_by_orbax(error: BaseException | None, trace: types.TracebackType | None) -> bool:
  """Whether `error` is what orbax leaves behind a read or a write that failed, from none
  to dozens of tracebacks by chance, each with a page of TensorStore spec: TensorStore's
  callbacks into the event loop orbax closed ('Event loop is closed'), and orbax's other
  reads and writes of the same save or restore, failed and never awaited (their
  traceback passes through orbax). The failure itself is reported, in one paragraph."""
  if isinstance(error, RuntimeError) and str(error) == 'Event loop is closed':
    return True
  return any('/orbax/' in frame.filename for frame in traceback.extract_tb(trace))


class _Leftovers:
  """A sys.unraisablehook that drops what `_left_by_orbax` names."""

  def __init__(self, previous: Callable[[Any], None]):
    self.previous = previous

  def __call__(self, unraisable: Any) -> None:
    if not _left_by_orbax(unraisable.exc_value, unraisable.exc_traceback):
      self.previous(unraisable)


class _UnretrievedLeftovers(std_logging.Filter):
  """Drops asyncio's 'Task exception was never retrieved' for what `_left_by_orbax` names."""

  def filter(self, record):
    return not (record.exc_info and _left_by_orbax(*record.exc_info[1:]))


def _quiet_failures() -> None:
  """Installs `_SaidOtherwise` on absl's logger, `_UnretrievedLeftovers` on asyncio's and
  `_Leftovers`, once each (a manager that saves, or reads for a program, needs them)."""
  for logger, kind in ((absl_logging.get_absl_logger(), _SaidOtherwise),
                       (std_logging.getLogger('asyncio'), _UnretrievedLeftovers)):
    if not any(isinstance(f, kind) for f in logger.filters):
      logger.addFilter(kind())
  if not isinstance(sys.unraisablehook, _Leftovers):
    sys.unraisablehook = _Leftovers(sys.unraisablehook)


class _Manager(ocp.CheckpointManager):
  """A CheckpointManager that lists a checkpoint whose metrics file cannot be read as one
  saved without metrics, with a warning: orbax reads every step's metrics when a training
  manager starts and would fail there, for all the steps. Reading that checkpoint fails
  on its own (UnreadableCheckpointError), and it is no candidate for the best."""

  def metrics(self, step: int) -> dict | None:
    try:
      return super().metrics(step)
    except Exception as e:  # a damaged file: any error its parser raises
      absl_logging.warning('The evaluation metrics saved with the checkpoint at step %d in %s '
                           'cannot be read (%s); that checkpoint is no candidate for the best.',
                           step, self.directory, _describe(e))
      return None


def _options(keep: int | None = None) -> ocp.CheckpointManagerOptions:
  """Retention: the latest `keep` checkpoints and the one with the lowest validation
  top-1 error; folders of saves a crash interrupted are removed when the manager starts
  (None: for reading: nothing is created, a step's metrics are read only when asked;
  orbax's read_only mode would say so in a warning each time)."""
  if keep is None:
    return ocp.CheckpointManagerOptions(create=False, lightweight_initialize=True)
  def metric(metrics):
    return metrics[BEST_METRIC]
  policy = ocp.checkpoint_managers.AnyPreservationPolicy([
      ocp.checkpoint_managers.LatestN(n=keep),
      ocp.checkpoint_managers.BestN(get_metric_fn=metric, reverse=True, n=1,
                                    keep_checkpoints_without_metrics=False),
  ])
  return ocp.CheckpointManagerOptions(preservation_policy=policy, best_fn=metric,
                                      best_mode='min', create=True, cleanup_tmp_directories=True)


def directory_of(workdir: str) -> str:
  """<workdir>/checkpoints, absolute."""
  return os.path.join(os.path.abspath(workdir), CHECKPOINTS_DIR)


def make_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  """The manager a training run saves with: keeps the latest `keep` checkpoints and the
  best by validation top-1 error (those saved with `metrics`, see `save`)."""
  _quiet_failures()
  return _Manager(directory_of(workdir), options=_options(keep),
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
  """Restores step `step` as a `train.TrainState` with the shardings of `target`'s arrays.

  Raises CheckpointError when it does not fit `target`, UnreadableCheckpointError when
  its files cannot be read.
  """
  stored_target = _stored(target)
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=x.sharding), stored_target)
  def read():
    check_compatible(manager, step, stored_target)
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))
  stored = _reading(str(manager.directory), step, read)
  plateau = stored['plateau']
  return dataclasses.replace(
      target, step=int(stored['step']), params=stored['params'], opt_state=stored['opt_state'],
      plateau=optim.PlateauState(float(plateau['best_error']), int(plateau['evals_since_best']),
                                 int(plateau['drops'])))


def restore_newest_readable(manager: ocp.CheckpointManager, target: Any) -> Any | None:
  """`restore` of the newest checkpoint that can be read; None when there is none.

  The newer ones that cannot be read are moved aside (`set_aside`, by process 0)
  with one logged paragraph, once a readable one is found. Raises, with nothing
  moved: UnreadableCheckpointError when none can be read (a file system that
  fails every read is not mistaken for damage), CheckpointError when the newest
  readable one does not fit `target`.
  """
  unreadable = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      state = restore(manager, step, target)
    except errors.UnreadableCheckpointError as e:
      unreadable.append(e)
      continue
    if unreadable:
      _set_aside_all(manager, unreadable, step)
    return state
  if unreadable:
    raise _none_readable(str(manager.directory), unreadable)
  return None


def _set_aside_all(manager: ocp.CheckpointManager,
                   unreadable: list[errors.UnreadableCheckpointError], resumed: int) -> None:
  """Moves the `unreadable` checkpoints aside, says so, and lets `manager` forget them."""
  directory = str(manager.directory)
  if jax.process_index() == 0:
    moved = [f'step {e.step} ({e.cause}) is now {set_aside(directory, e.step)}'
             for e in unreadable]
    absl_logging.warning(
        'Cannot read the newest %s in %s: %s. Resuming from step %d, the newest checkpoint '
        'that can be read. Nothing was deleted: look into what was moved, or delete it '
        'yourself.', 'checkpoints' if len(moved) > 1 else 'checkpoint', directory,
        '; '.join(moved), resumed)
  if jax.process_count() > 1:  # the others list the steps once process 0 has moved them
    multihost_utils.sync_global_devices('alexnet_jax: unreadable checkpoints set aside')
  manager.reload()


def set_aside(directory: str, step: int) -> str:
  """Renames <directory>/<step> to <step>.unreadable (.unreadable-2, ... when taken, so
  nothing is overwritten); returns the new path."""
  source = os.path.join(directory, str(step))
  target, copies = source + UNREADABLE_SUFFIX, 1
  while os.path.exists(target):
    copies += 1
    target = f'{source}{UNREADABLE_SUFFIX}-{copies}'
  os.rename(source, target)
  return target


def _chain(error: BaseException) -> Iterator[BaseException]:
  """`error` and the errors it arose from, outermost first."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def _describe(error: BaseException) -> str:
  """'Type: message' of the innermost error `error` arose from (orbax wraps the
  TensorStore error that names the file), its first line, shortened."""
  innermost = list(_chain(error))[-1]
  lines = str(innermost).strip().splitlines() or ['']
  text = f'{type(innermost).__name__}: {lines[0]}'
  return text if len(text) <= _CAUSE_CHARS else text[:_CAUSE_CHARS - 3] + '...'


def _reading(directory: str, step: int, read: Callable[[], Any]) -> Any:
  """read(), any failure to read the checkpoint at `step` raised as UnreadableCheckpointError
  (CheckpointError, a checkpoint that does not fit, passes as it is)."""
  try:
    return read()
  except errors.AlexNetError:
    raise
  except Exception as e:  # what a damaged file raises depends on the file: any error
    cause = _describe(e)
    raise errors.UnreadableCheckpointError(
        f'The checkpoint at step {step} in {directory} cannot be read ({cause}): it is '
        'damaged, as a crash or a full disk during its save or a failing disk leaves it. Ask '
        "for another step (--step=latest and --step=best skip checkpoints that cannot be "
        'read), or rerun the training command on this workdir: it moves the damaged '
        f'checkpoint aside as {step}{UNREADABLE_SUFFIX} and continues from the newest one '
        'that can be read.', step, cause) from e


def _none_readable(directory: str, unreadable: list[errors.UnreadableCheckpointError],
                   which: str = 'checkpoints',
                   advice: str = '') -> errors.UnreadableCheckpointError:
  """The error when none of the `which` (the checkpoints tried) can be read."""
  listed = '; '.join(f'step {e.step} ({e.cause})' for e in unreadable)
  return errors.UnreadableCheckpointError(
      f'None of the {which} in {directory} can be read: {listed}. Nothing was moved or '
      f'deleted. {advice}If the errors name a problem of the file system (permissions, a disk '
      'not mounted), fix it and run the command again; if the checkpoints are damaged, copy '
      f'them back from a backup, or move {directory} away and rerun the training command to '
      'start again from step 0.', unreadable[0].step, unreadable[0].cause)


def all_steps(workdir: str) -> list[int]:
  """The steps of the checkpoints in `workdir`, ascending (empty when there are none)."""
  directory = directory_of(workdir)
  if not os.path.isdir(directory):
    return []
  with _Manager(directory, options=_options()) as manager:
    return sorted(manager.all_steps())


def best_steps(workdir: str) -> list[int]:
  """The steps of the checkpoints saved at an evaluation in `workdir`, best first: the
  lowest validation top-1 error, ties to the later step (orbax's `best_step`)."""
  directory = directory_of(workdir)
  if not os.path.isdir(directory):
    return []
  with _Manager(directory, options=_options()) as manager:
    errors_at = {step: metrics[BEST_METRIC] for step in manager.all_steps()
                 if (metrics := manager.metrics(step)) is not None}
  return sorted(errors_at, key=lambda step: (errors_at[step], -step))


def best_step(workdir: str) -> int | None:
  """The step of the checkpoint with the lowest validation top-1 error in `workdir`.

  None when no kept checkpoint was saved at an evaluation (or there are none).
  """
  ranked = best_steps(workdir)
  return ranked[0] if ranked else None


def load_params(workdir: str, step: int | None = None) -> tuple[int, Any]:
  """(step, parameters) of a run's checkpoint, the latest by default, as NumPy arrays.

  Read-only, onto this process's first device, whatever mesh wrote it (for
  using a trained network: `alexnet_jax.rundir`); training resumes with
  `restore`, which keeps the shardings. Raises UnreadableCheckpointError when
  the checkpoint's files cannot be read.
  """
  directory = directory_of(workdir)
  _quiet_failures()
  with _Manager(directory, options=_options(),
                item_handlers=ocp.StandardCheckpointHandler()) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise errors.CheckpointError(f'No checkpoint in {directory}.')
    # Restore onto this process's first device, whatever mesh wrote it.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    def read():
      target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                            manager.item_metadata(step))
      return manager.restore(step, args=ocp.args.StandardRestore(target))['params']
    params = _reading(directory, step, read)
  return step, jax.tree.map(np.asarray, params)


def load_first_readable(workdir: str, steps: list[int], which: str = 'checkpoints',
                        advice: str = '') -> tuple[int, Any]:
  """`load_params` of the first of `steps` that can be read, with a warning for each one
  before it that cannot. Raises UnreadableCheckpointError naming `which` (what `steps`
  are) and adding `advice` when none can."""
  unreadable = []
  for step in steps:
    try:
      return load_params(workdir, step)
    except errors.UnreadableCheckpointError as e:
      absl_logging.warning('Skipping the checkpoint at step %d in %s: it cannot be read (%s).',
                           step, directory_of(workdir), e.cause)
      unreadable.append(e)
  raise _none_readable(directory_of(workdir), unreadable, which, advice)


def is_disk_full(error: BaseException) -> bool:
  """Whether `error` arose from a full disk: Python's OSError ENOSPC or TensorStore's
  RESOURCE_EXHAUSTED error, which quotes the same 'No space left on device'."""
  return any((isinstance(e, OSError) and e.errno == errno.ENOSPC)
             or os.strerror(errno.ENOSPC) in str(e) for e in _chain(error))


def _bytes_on_disk(path: str) -> int:
  """The sizes of the files under `path`, summed."""
  return sum(os.path.getsize(os.path.join(folder, name))
             for folder, _, names in os.walk(path) for name in names)


def disk_full(manager: ocp.CheckpointManager, state: Any, keep: int) -> errors.DiskFullError:
  """The error that ends a run which found the disk full (`is_disk_full`), once the
  save in flight has ended and the folders of unfinished saves (orbax's
  <step>.orbax-checkpoint-tmp*) are removed; the checkpoints saved before are left as
  they are.

  state: a `train.TrainState` of the run (its arrays' sizes); keep: keep_checkpoints.
  """
  try:
    manager.wait_until_finished()
  except Exception as e:  # the save in flight failed as well, for the same reason
    if not is_disk_full(e):
      raise
  directory = str(manager.directory)
  partial = sorted(name for name in os.listdir(directory)
                   if ocp.utils.is_tmp_checkpoint(os.path.join(directory, name)))
  for name in partial:
    shutil.rmtree(os.path.join(directory, name))
  manager.reload()
  steps = manager.all_steps()
  # The newest checkpoint's size (its arrays are compressed), else the arrays' bytes.
  one = (_bytes_on_disk(os.path.join(directory, str(steps[-1]))) if steps else
         sum(leaf.nbytes for leaf in jax.tree.leaves((state.params, state.opt_state))))
  removed = f'The unfinished save ({", ".join(partial)}) was removed. ' if partial else ''
  kept = (f'The checkpoints saved before (steps {", ".join(map(str, steps))}) are intact.'
          if steps else 'No checkpoint had been saved yet.')
  again = f'resume from step {steps[-1]}' if steps else 'start again'
  return errors.DiskFullError(
      f'No space left on the disk of {directory}. {removed}{kept} One '
      f'checkpoint of this network takes {one / 1e6:,.1f} MB, and with '
      f'keep_checkpoints={keep} the run holds up to {keep + 2} at once (the latest {keep}, the '
      f'best and the one being written): {(keep + 2) * one / 1e6:,.1f} MB. Free at least '
      f'{one / 1e6:,.1f} MB there (more for the run to go on), move the workdir to a larger '
      f'disk, or lower --config.keep_checkpoints; then rerun the same command to {again}.')
