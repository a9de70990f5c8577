"""The training run: `train_and_evaluate(config, workdir)` (section 5's recipe).

One function a terminal (`alexnet_jax.main`) or a notebook calls. It builds
the data, the network, the device mesh and the paper's optimizer from the
config; resumes from the latest checkpoint in `workdir` if there is one;
trains with evaluations that drive the learning-rate policy; checkpoints
periodically, at the end and on SIGTERM/SIGINT; and writes metrics.jsonl,
TensorBoard events and config.json into `workdir`.

Exact resume: batch s of the input stream and the dropout masks of step s
are functions of (config.seed, s) alone, and the checkpoint holds everything
else (parameters, velocity, run-time learning rate, plateau memory), so a run
killed at any point and restarted with the same command ends bitwise equal
(on CPU) to one that never stopped.
"""

import contextlib
import math
import os
import signal
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from alexnet_jax import checkpoint
from alexnet_jax import data
from alexnet_jax import metrics as metrics_lib
from alexnet_jax import model as model_lib
from alexnet_jax import optim
from alexnet_jax import parallel


class NonFiniteLossError(FloatingPointError):
  """The training loss or the parameters became NaN or infinite."""


@jax.jit
def all_finite(tree) -> jax.Array:
  """True when every element of every array in `tree` is finite (run before each save)."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


class WorkdirError(OSError):
  """The workdir cannot be created or written."""


class _StopRequest(contextlib.AbstractContextManager):
  """Turns SIGTERM and SIGINT into a flag the loop reads after each step."""

  def __init__(self):
    self.signal = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread (some notebook kernels): leave as is
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.signal = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False


def _prepare_workdir(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f'Cannot create the workdir {workdir!r}: {e.strerror}. '
                       'Choose a --workdir you can write to.') from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise WorkdirError(f'The workdir {workdir!r} is not writable by this user. '
                       'Choose a --workdir you can write to, or fix its permissions.')


def _replicated(mesh, value, dtype):
  return jax.device_put(np.asarray(value, dtype), NamedSharding(mesh, P()))


def _plateau_arrays(mesh, state: optim.PlateauState) -> dict:
  return {'best_error': _replicated(mesh, state.best_error, jnp.float32),
          'evals_since_best': _replicated(mesh, state.evals_since_best, jnp.int32),
          'drops': _replicated(mesh, state.drops, jnp.int32)}


def _plateau_state(arrays: dict) -> optim.PlateauState:
  return optim.PlateauState(float(arrays['best_error']), int(arrays['evals_since_best']),
                            int(arrays['drops']))


def _dataset_info(config: ml_collections.ConfigDict) -> data.DatasetInfo:
  """data.get_dataset_info, run by process 0 first so that processes sharing a
  filesystem do not generate, prepare or write statistics at the same time."""
  if jax.process_count() == 1:
    return data.get_dataset_info(config)
  if jax.process_index() == 0:
    info = data.get_dataset_info(config)
  multihost_utils.sync_global_devices('alexnet_jax: data ready')
  if jax.process_index() != 0:  # finds what process 0 wrote (or prepares its own copy)
    info = data.get_dataset_info(config)
  return info


def evaluate(eval_step, params, mesh, batches) -> dict:
  """Runs `eval_step` over every batch; returns loss and top-1/top-5 error over all examples."""
  totals = None
  for batch in batches:
    sums = eval_step(params, parallel.shard_batch(batch, mesh))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.tree.map(float, totals)
  count = totals['count']
  return {'loss': totals['loss'] / count, 'top1_error': totals['top1_errors'] / count,
          'top5_error': totals['top5_errors'] / count, 'count': count}


class _Progress:
  """The training loss and images/s since the last log line, and the ETA."""

  def __init__(self, batch_size: int, total_steps: int, steps_per_epoch: int, first_step: int):
    self.batch_size, self.total_steps = batch_size, total_steps
    self.steps_per_epoch, self.first_step = steps_per_epoch, first_step
    self.started = time.perf_counter()
    self._reset()

  def _reset(self):
    self.loss, self.steps, self.window_start = 0.0, 0, time.perf_counter()

  def add(self, loss: float) -> None:
    self.loss += loss
    self.steps += 1

  def log(self, step: int, learning_rate: float, writer: metrics_lib.MetricsWriter) -> None:
    """Writes train_loss, learning_rate, images_per_sec and prints the progress line."""
    if not self.steps:
      return
    loss = self.loss / self.steps
    images_per_sec = self.steps * self.batch_size / (time.perf_counter() - self.window_start)
    writer.write(step, {'train_loss': loss, 'learning_rate': learning_rate,
                        'images_per_sec': images_per_sec})
    seconds = int((time.perf_counter() - self.started) / (step - self.first_step)
                  * (self.total_steps - step))
    logging.info('step %d/%d | epoch %.2f | loss %.4f | lr %.2g | %.1f images/s | '
                 'ETA %dh%02dm%02ds', step, self.total_steps, step / self.steps_per_epoch, loss,
                 learning_rate, images_per_sec, seconds // 3600, seconds % 3600 // 60, seconds % 60)
    self._reset()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains and evaluates the network `config` describes, in `workdir`.

  Returns the last evaluation's metrics (keys eval_loss, eval_top1_error,
  eval_top5_error, and eval_ten_crop_* when config.ten_crop_eval), plus
  'step' and 'interrupted' (True when a signal stopped the run early).
  """
  _prepare_workdir(workdir)
  if config.distributed.enabled:
    parallel.initialize_distributed(config.distributed.coordinator_address,
                                    config.distributed.num_processes,
                                    config.distributed.process_id)
  logging.info('JAX %s, backend %s, %d devices in %d processes (this is process %d).',
               jax.__version__, jax.default_backend(), jax.device_count(), jax.process_count(),
               jax.process_index())

  info = _dataset_info(config)
  model = model_lib.from_config(config.model, info.num_classes,
                                image_size=config.input.crop_size)
  mesh = parallel.make_mesh(config.mesh.data, config.mesh.model, model.towers)
  parallel.check_batch_size(config.batch_size, mesh)
  parallel.check_batch_size(config.eval_batch_size or config.batch_size, mesh)
  # Which rows of every global batch this process reads (processes holding
  # the two towers of one data block read the same rows).
  shard_index, shard_count = parallel.input_shard(config.batch_size, mesh)
  steps_per_epoch = max(1, info.num_train_examples // config.batch_size)
  total_steps = (config.num_train_steps if config.num_train_steps > 0
                 else config.num_epochs * steps_per_epoch)
  eval_every = config.eval_every_steps if config.eval_every_steps > 0 else steps_per_epoch
  logging.info('%s: %d training / %d validation examples, %d classes; mesh %s; %d steps '
               '(%d per epoch) of %d images.', config.dataset, info.num_train_examples,
               info.num_eval_examples, info.num_classes, dict(mesh.shape), total_steps,
               steps_per_epoch, config.batch_size)

  tx = optim.make_optimizer(config)
  plateau = optim.Plateau(**config.plateau) if config.lr_policy == 'plateau' else None
  root_key = jax.random.key(config.seed)
  params = parallel.init_params(model, mesh, jax.random.fold_in(root_key, 0))
  state = {'params': params, 'opt_state': parallel.init_opt_state(tx, params, mesh),
           'step': _replicated(mesh, 0, jnp.int32),
           'plateau': _plateau_arrays(mesh, optim.PlateauState())}

  manager = checkpoint.make_manager(workdir, config.keep_checkpoints)
  latest = manager.latest_step()
  if latest is not None:  # raises before anything in the workdir changes if shapes differ
    state = checkpoint.restore(manager, latest, state)
    logging.info('Resumed from the checkpoint at step %d in %s.', latest, manager.directory)
  is_chief = jax.process_index() == 0
  writer = metrics_lib.MetricsWriter(workdir, enabled=is_chief)
  if latest is not None:
    writer.truncate_after(latest)
  if is_chief:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
  params, opt_state = state['params'], state['opt_state']
  step = int(state['step'])
  plateau_state = _plateau_state(state['plateau'])

  def non_finite(what: str) -> NonFiniteLossError:
    return NonFiniteLossError(
        f'{what}; stopping. The last good checkpoint (step {manager.latest_step()}) is kept '
        f'in {manager.directory}. Lower config.learning_rate or check the input data.')

  def save():
    # The loss checked so far came from the parameters before the last update:
    # make sure that update did not overflow before keeping its result.
    if not bool(all_finite(params)):
      raise non_finite(f'The parameters became NaN or infinite at step {step}')
    checkpoint.save(manager, step, {
        'params': params, 'opt_state': opt_state, 'step': _replicated(mesh, step, jnp.int32),
        'plateau': _plateau_arrays(mesh, plateau_state)})

  def run_eval(ten_crop: bool) -> dict:
    batches = data.eval_iterator(config, info, ten_crop=ten_crop, process_index=shard_index,
                                 process_count=shard_count)
    result = evaluate(eval_step, params, mesh, batches)
    prefix = 'eval_ten_crop_' if ten_crop else 'eval_'
    values = {prefix + k: v for k, v in result.items() if k != 'count'}
    writer.write(step, values)
    logging.info('step %d: %s over %d examples: loss %.4f, top-1 error %.4f, top-5 error %.4f',
                 step, 'ten-crop evaluation' if ten_crop else 'evaluation', result['count'],
                 result['loss'], result['top1_error'], result['top5_error'])
    return values

  train_step = parallel.make_train_step(model, tx, mesh)
  eval_step = parallel.make_eval_step(model, mesh)
  dropout_root = jax.random.fold_in(root_key, 1)
  batches = data.train_iterator(config, info, start_step=step, process_index=shard_index,
                                process_count=shard_count)
  result = {}
  pending = None  # (step, metrics) of the last step, read one step late to keep the device busy
  progress = _Progress(config.batch_size, total_steps, steps_per_epoch, step)

  def collect():
    """Reads the pending step's loss; stops the run if it is not finite."""
    nonlocal pending
    if pending is None:
      return
    done_step, m = pending
    pending = None
    loss = float(m['loss'])
    if not math.isfinite(loss):
      raise non_finite(f'The training loss became {loss} at step {done_step}')
    progress.add(loss)

  interrupted = False
  try:
    with _StopRequest() as stop:
      while step < total_steps and stop.signal is None:
        batch = parallel.shard_batch(next(batches), mesh)
        params, opt_state, m = train_step(params, opt_state, batch,
                                          jax.random.fold_in(dropout_root, step))
        collect()
        step += 1
        pending = (step, m)
        at_log = step % config.log_every_steps == 0 or step == total_steps
        at_eval = step % eval_every == 0 or step == total_steps
        at_ckpt = step % config.checkpoint_every_steps == 0 or step == total_steps
        if at_log or at_eval or at_ckpt:
          collect()
        if at_log:
          progress.log(step, float(opt_state.hyperparams['learning_rate']), writer)
        if at_eval:
          result = run_eval(ten_crop=False)
          if plateau is not None:
            # In float32, as the checkpoint stores it, so a resumed run decides alike.
            error = float(np.float32(result['eval_top1_error']))
            plateau_state, dropped = plateau.update(plateau_state, error)
            if dropped:
              old = float(opt_state.hyperparams['learning_rate'])
              new = plateau.learning_rate(config.learning_rate, plateau_state)
              opt_state.hyperparams['learning_rate'] = _replicated(mesh, new, jnp.float32)
              logging.info('step %d: validation error stopped improving; learning rate '
                           '%.3g -> %.3g (drop %d of at most %d).', step, old, new,
                           plateau_state.drops, plateau.max_drops)
        if at_ckpt:
          save()
      collect()
      interrupted = stop.signal is not None
      if interrupted:
        if manager.latest_step() != step:
          save()
        logging.info('Received %s: saved the checkpoint at step %d and stopped. Run the same '
                     'command again to resume.', stop.signal, step)
    if not interrupted and config.ten_crop_eval:
      result.update(run_eval(ten_crop=True))
  finally:  # a save in flight completes even when the run stops on an error
    manager.wait_until_finished()
    manager.close()
    writer.close()
  return {**result, 'step': step, 'interrupted': interrupted}

