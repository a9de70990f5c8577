"""The training run: `train_and_evaluate(config, workdir)` (section 5's recipe).

One function a terminal (`alexnet_jax.main`) or a notebook calls. It checks
the config, builds the data, the network, the device mesh and the paper's
optimizer; resumes from the latest checkpoint in `workdir` if there is one;
trains with evaluations that drive the learning-rate policy; checkpoints
periodically, at the end and on SIGTERM/SIGINT; and writes metrics.jsonl,
TensorBoard events and config.json into `workdir`.

Exact resume: batch s of the input stream and the dropout masks of step s
are functions of (config.seed, s) alone, and the checkpoint holds the whole
`TrainState` (parameters, velocity, run-time learning rate, plateau memory),
so a run killed at any point and restarted with the same command ends bitwise
equal (on CPU) to one that never stopped.

Resuming with a different config: config.json keeps the config the run
started with; a change to a field that alters the steps already taken
(`config.RESUME_FIXED`) stops with a ConfigError unless
config.allow_config_change, and an allowed change is saved as
config_from_step_<N>.json. A changed config.learning_rate applies from the
resumed step on, times plateau.factor for each drop already made (with
lr_policy 'steps' the schedule of the new rate applies).

Checkpoints: every checkpoint_every_steps and at every evaluation (with its
metrics), the latest keep_checkpoints and the best by validation top-1 error
kept (`checkpoint.best_step`). A signal stops all processes at one agreed step.
"""

import contextlib
import dataclasses
import math
import os
import signal
import time
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from alexnet_jax import checkpoint
from alexnet_jax import config as config_lib
from alexnet_jax import data
from alexnet_jax import errors
from alexnet_jax import metrics as metrics_lib
from alexnet_jax import model as model_lib
from alexnet_jax import optim
from alexnet_jax import parallel
from alexnet_jax import steps
from alexnet_jax import trained
from alexnet_jax import transfer


@dataclasses.dataclass(frozen=True)
class TrainState:
  """What the loop carries from step to step and what a checkpoint stores.

  step: steps taken (also the input stream's position); params and opt_state:
  pytrees of global arrays sharded by `parallel.state_sharding`; plateau: the
  learning-rate policy's memory (host values).
  """
  step: int
  params: Any
  opt_state: Any
  plateau: optim.PlateauState

  def replace(self, **changes) -> 'TrainState':
    return dataclasses.replace(self, **changes)


@jax.jit
def all_finite(tree) -> jax.Array:
  """True when every element of every array in `tree` is finite (run before each save)."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The step arithmetic of a run: when to log, evaluate and save."""
  total_steps: int
  steps_per_epoch: int
  eval_every: int
  log_every: int
  checkpoint_every: int

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, num_train_examples: int) -> 'Schedule':
    steps_per_epoch = max(1, num_train_examples // config.batch_size)
    total = config.num_train_steps or config.num_epochs * steps_per_epoch
    return cls(total, steps_per_epoch, config.eval_every_steps or steps_per_epoch,
               config.log_every_steps, config.checkpoint_every_steps)

  def _due(self, step: int, every: int) -> bool:
    return step % every == 0 or step == self.total_steps

  def log_due(self, step: int) -> bool:
    return self._due(step, self.log_every)

  def eval_due(self, step: int) -> bool:
    return self._due(step, self.eval_every)

  def checkpoint_due(self, step: int) -> bool:
    return self._due(step, self.checkpoint_every)


class _StopRequest(contextlib.AbstractContextManager):
  """What stops the run early: SIGTERM or SIGINT, read by the loop after each step.

  One process: a Python handler of both signals sets `signal`. Several
  processes: they must stop at the same step, so SIGTERM stays with JAX's
  preemption service (which `jax.distributed.initialize` attaches to it): the
  notice reaches every process, and orbax's `reached_preemption(step)` is true
  at the same step in all of them. SIGINT is turned into a SIGTERM to this
  process so that it takes the same path.
  """

  def __init__(self, manager: ocp.CheckpointManager):
    self.signal = None  # the signal this process received, by name
    self._manager = manager
    self._several = jax.process_count() > 1
    self._previous = {}

  def __enter__(self):
    signals = (signal.SIGINT,) if self._several else (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread (some notebook kernels): leave as is
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.signal = signal.Signals(signum).name
    if self._several:
      os.kill(os.getpid(), signal.SIGTERM)

  def stopped_by(self, step: int) -> str | None:
    """The signal that stops the run at `step` (the same in every process), or None.

    With several processes, call it at every step: the preemption service
    picks the step one past the furthest any process had reached when the
    notice arrived.
    """
    if not self._several:
      return self.signal
    if self._manager.reached_preemption(step):
      return self.signal or 'SIGTERM'
    return None

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for any mistake in `config` before anything is built.

  Checks the field names, the input fields, the schedule's counts, the
  network's fields (with a stand-in class count: the real one comes from the
  data), the optimizer and learning-rate policy, the mesh against the devices,
  and the batch sizes.
  """
  config_lib.check_fields(config)
  data.check_input_config(config.dataset, config.input)
  counts = {'batch_size': config.batch_size, 'num_epochs': config.num_epochs,
            'checkpoint_every_steps': config.checkpoint_every_steps,
            'log_every_steps': config.log_every_steps, 'keep_checkpoints': config.keep_checkpoints}
  derived = {'eval_batch_size': config.eval_batch_size, 'num_train_steps': config.num_train_steps,
             'eval_every_steps': config.eval_every_steps}
  bad = [f'{name}={value!r}' for name, value in counts.items() if value < 1]
  bad += [f'{name}={value!r}' for name, value in derived.items() if value is not None and value < 1]
  if bad:
    raise errors.ConfigError(f'{", ".join(bad)}: these counts must be positive (eval_batch_size, '
                             'num_train_steps and eval_every_steps may also be None).')
  model = model_lib.from_config(config.model, num_classes=config.model.towers,
                                image_size=config.input.crop_size)
  optim.make_optimizer(config)
  if config.lr_policy == 'plateau':
    optim.Plateau(**config.plateau)
  mesh = parallel.make_mesh(config.mesh.data, config.mesh.model, model.towers)
  parallel.check_batch_size(config.batch_size, mesh)
  parallel.check_batch_size(config.eval_batch_size or config.batch_size, mesh)


def check_resume_config(config: ml_collections.ConfigDict, workdir: str,
                        step: int) -> dict[str, tuple[Any, Any]]:
  """The fields `config` changes from the run's saved config, logged; reads only.

  Raises ConfigError naming each change to a field that alters the steps
  already taken (`config_lib.RESUME_FIXED`: batch size, network, input,
  dataset, seed, update rule), unless config.allow_config_change is set.
  """
  started = trained.config_in_force(workdir, step)
  if started is None:  # a workdir from before configs were kept
    return {}
  name, fields = started
  changes = config_lib.resume_changes(fields, config)
  fixed = {k: v for k, v in changes.items() if config_lib.is_fixed_on_resume(k)}
  if fixed and not config.allow_config_change:
    listed = '; '.join(f'{k} was {old!r}, now {new!r}' for k, (old, new) in fixed.items())
    raise errors.ConfigError(
        f'The run in {workdir} was trained to step {step} with a different config ({listed}; '
        f'see {name} there), and these fields change what the steps already taken computed. '
        'Rerun with the run\'s values, use a new --workdir, or pass '
        f'--config.allow_config_change=True to continue from step {step} with the new ones.')
  for field, (old, new) in changes.items():
    logging.info('Resuming at step %d with %s changed from %r to %r.', step, field, old, new)
  return changes


def _prepare_workdir(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise errors.WorkdirError(f'Cannot create the workdir {workdir!r}: {e.strerror}. '
                              'Choose a --workdir you can write to.') from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise errors.WorkdirError(f'The workdir {workdir!r} is not writable by this user. '
                              'Choose a --workdir you can write to, or fix its permissions.')


def _dataset_info(config: ml_collections.ConfigDict) -> data.DatasetInfo:
  """data.get_dataset_info, run by process 0 first so that processes sharing a
  filesystem do not generate, prepare or write statistics at the same time."""
  def info():
    return data.get_dataset_info(config.dataset, config.data_dir, config.input)
  if jax.process_count() == 1:
    return info()
  if jax.process_index() == 0:
    result = info()
  multihost_utils.sync_global_devices('alexnet_jax: data ready')
  if jax.process_index() != 0:  # finds what process 0 wrote (or prepares its own copy)
    result = info()
  return result


class _Progress:
  """The training loss and images/s since the last log line, and the ETA."""

  def __init__(self, batch_size: int, schedule: Schedule, first_step: int):
    self.batch_size, self.schedule, self.first_step = batch_size, schedule, first_step
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
    total = self.schedule.total_steps
    seconds = int((time.perf_counter() - self.started) / (step - self.first_step)
                  * (total - step))
    logging.info('step %d/%d | epoch %.2f | loss %.4f | lr %.2g | %.1f images/s | '
                 'ETA %dh%02dm%02ds', step, total, step / self.schedule.steps_per_epoch, loss,
                 learning_rate, images_per_sec, seconds // 3600, seconds % 3600 // 60, seconds % 60)
    self._reset()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains and evaluates the network `config` describes, in `workdir`.

  Returns the last evaluation's metrics (keys eval_loss, eval_top1_error,
  eval_top5_error, and eval_ten_crop_* when config.ten_crop_eval), plus
  'step', 'interrupted' (True when a signal stopped the run early) and
  'stopped_by' (that signal's name, e.g. 'SIGTERM', else None).
  Raises an `errors.AlexNetError` subclass for anything the user must fix.
  """
  if config.distributed.enabled:  # before anything else touches JAX
    parallel.initialize_distributed(config.distributed.coordinator_address,
                                    config.distributed.num_processes,
                                    config.distributed.process_id)
  check_config(config)
  _prepare_workdir(workdir)
  logging.info('JAX %s, backend %s, %d devices in %d processes (this is process %d).',
               jax.__version__, jax.default_backend(), jax.device_count(), jax.process_count(),
               jax.process_index())

  info = _dataset_info(config)
  model = model_lib.from_config(config.model, info.num_classes,
                                image_size=config.input.crop_size)
  mesh = parallel.make_mesh(config.mesh.data, config.mesh.model, model.towers)
  eval_batch_size = config.eval_batch_size or config.batch_size
  # Which rows of every global batch this process reads (processes holding
  # the two towers of one data block read the same rows).
  shard_index, shard_count = parallel.input_shard(config.batch_size, mesh)
  schedule = Schedule.from_config(config, info.num_train_examples)
  logging.info('%s: %d training / %d validation examples, %d classes; mesh %s; %d steps '
               '(%d per epoch) of %d images.', config.dataset, info.num_train_examples,
               info.num_eval_examples, info.num_classes, dict(mesh.shape), schedule.total_steps,
               schedule.steps_per_epoch, config.batch_size)

  tx = optim.make_optimizer(config)
  plateau = optim.Plateau(**config.plateau) if config.lr_policy == 'plateau' else None
  root_key = jax.random.key(config.seed)
  params = parallel.init_params(model, mesh, jax.random.fold_in(root_key, 0))
  state = TrainState(step=0, params=params, opt_state=parallel.init_opt_state(tx, params, mesh),
                     plateau=optim.PlateauState())
  if config.init_from:  # section 6's pre-training: another run's weights, on a fresh start only
    if checkpoint.all_steps(workdir):
      logging.info('config.init_from=%s ignored: resuming from the checkpoints in %s.',
                   config.init_from, workdir)
    else:  # raises before anything is written when the source cannot be used
      transfer_plan, source_params = transfer.plan(config.init_from, params, info.class_names)
      logging.info('%s', transfer_plan.summary())
      state = state.replace(params=transfer.apply(transfer_plan, source_params, params))

  manager = checkpoint.make_manager(workdir, config.keep_checkpoints)
  latest = manager.latest_step()
  changes = {}
  if latest is not None:  # raises before anything in the workdir changes if shapes differ
    state = checkpoint.restore(manager, latest, state)
    changes = check_resume_config(config, workdir, latest)
    logging.info('Resumed from the checkpoint at step %d in %s.', latest, manager.directory)
    if plateau is not None:  # a changed config.learning_rate applies now, after the drops made
      rate = plateau.learning_rate(config.learning_rate, state.plateau)
      if np.float32(rate) != np.float32(optim.learning_rate(state.opt_state)):
        logging.info('Learning rate %.3g from step %d: config.learning_rate %.3g after %d '
                     'drops (the checkpoint had %.3g).', rate, latest, config.learning_rate,
                     state.plateau.drops, optim.learning_rate(state.opt_state))
        state = state.replace(opt_state=optim.set_learning_rate(state.opt_state, rate))
  is_chief = jax.process_index() == 0
  writer = metrics_lib.MetricsWriter(workdir, enabled=is_chief)
  if latest is not None:
    writer.truncate_after(latest)
  writer.write_hparams(config)
  if is_chief:  # what `alexnet_jax.trained` reads to use the network without the data
    # The run's config stays as it started; an allowed change is kept beside it.
    config_name = None
    if latest is None or not os.path.exists(os.path.join(workdir, 'config.json')):
      config_name = 'config.json'
    elif changes:
      config_name = f'config_from_step_{latest}.json'
    if config_name:
      with open(os.path.join(workdir, config_name), 'w') as f:
        f.write(config.to_json_best_effort(indent=2))
    trained.write_class_names(workdir, info.class_names)
    if config.input.mean == 'dataset':  # so that predicting needs no dataset
      trained.write_mean_image(workdir, info.stats.mean_image)

  def non_finite(what: str) -> errors.NonFiniteLossError:
    return errors.NonFiniteLossError(
        f'{what}; stopping. The last good checkpoint (step {manager.latest_step()}) is kept '
        f'in {manager.directory}. Lower config.learning_rate or check the input data.')

  def save(evaluation: dict | None = None):
    """Checkpoints the state; `evaluation` (this step's) makes it a candidate for the best."""
    # The loss checked so far came from the parameters before the last update:
    # make sure that update did not overflow before keeping its result.
    if not bool(all_finite(state.params)):
      raise non_finite(f'The parameters became NaN or infinite at step {state.step}')
    checkpoint.save(manager, state, evaluation)

  train_step = steps.make_train_step(model, tx, mesh)
  eval_step = steps.make_eval_step(model, mesh)

  def run_eval(ten_crop: bool) -> dict:
    batches = data.eval_iterator(info, config.input, batch_size=eval_batch_size,
                                 ten_crop=ten_crop, process_index=shard_index,
                                 process_count=shard_count)
    result = steps.evaluate(eval_step, state.params, mesh, batches)
    prefix = 'eval_ten_crop_' if ten_crop else 'eval_'
    values = {prefix + k: v for k, v in result.items() if k != 'count'}
    writer.write(state.step, values)
    if not ten_crop:  # Figure 3's kernels and the curves so far, as TensorBoard images
      kernels = multihost_utils.process_allgather(state.params['conv1']['kernel'], tiled=True)
      writer.write_images(state.step, metrics_lib.rgb_kernels(kernels, config.input.channel_order),
                          schedule.steps_per_epoch)
    logging.info('step %d: %s over %d examples: loss %.4f, top-1 error %.4f, top-5 error %.4f',
                 state.step, 'ten-crop evaluation' if ten_crop else 'evaluation',
                 result['count'], result['loss'], result['top1_error'], result['top5_error'])
    return values

  def apply_plateau(error: float) -> None:
    """Section 5: divide the rate by 10 when the validation error stops improving."""
    nonlocal state
    # In float32, as the checkpoint stores it, so a resumed run decides alike.
    plateau_state, dropped = plateau.update(state.plateau, float(np.float32(error)))
    opt_state = state.opt_state
    if dropped:
      old = optim.learning_rate(opt_state)
      new = plateau.learning_rate(config.learning_rate, plateau_state)
      opt_state = optim.set_learning_rate(opt_state, new)
      logging.info('step %d: validation error stopped improving; learning rate %.3g -> %.3g '
                   '(drop %d of at most %d).', state.step, old, new, plateau_state.drops,
                   plateau.max_drops)
    state = state.replace(plateau=plateau_state, opt_state=opt_state)

  dropout_root = jax.random.fold_in(root_key, 1)
  batches = data.train_iterator(info, config.input, batch_size=config.batch_size,
                                seed=config.seed, start_step=state.step,
                                process_index=shard_index, process_count=shard_count)
  result = {}
  pending = None  # (step, metrics) of the last step, read one step late to keep the device busy
  progress = _Progress(config.batch_size, schedule, state.step)

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

  stopped_by = None  # the signal that stopped the run, agreed by all processes
  try:
    with _StopRequest(manager) as stop:
      while state.step < schedule.total_steps and stopped_by is None:
        batch = parallel.shard_batch(next(batches), mesh)
        params, opt_state, m = train_step(state.params, state.opt_state, batch,
                                          jax.random.fold_in(dropout_root, state.step))
        collect()
        state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        pending = (state.step, m)
        at_log, at_eval = schedule.log_due(state.step), schedule.eval_due(state.step)
        at_ckpt = schedule.checkpoint_due(state.step)
        if at_log or at_eval or at_ckpt:
          collect()
        if at_log:
          progress.log(state.step, optim.learning_rate(state.opt_state), writer)
        if at_eval:
          result = run_eval(ten_crop=False)
          if plateau is not None:
            apply_plateau(result['eval_top1_error'])
        if at_ckpt or at_eval:  # every evaluation's state may be the best one
          save(result if at_eval else None)
        stopped_by = stop.stopped_by(state.step)
      collect()
      interrupted = stopped_by is not None
      if interrupted:
        if manager.latest_step() != state.step:
          save()
        logging.info('Received %s%s: saved the checkpoint at step %d and stopped. Run the same '
                     'command again to resume.', stopped_by,
                     '' if stop.signal else ' (a preemption notice to this or another process)',
                     state.step)
    if not interrupted and config.ten_crop_eval:
      result.update(run_eval(ten_crop=True))
  finally:  # a save in flight completes even when the run stops on an error
    batches.close()  # stops the input pipeline's threads now, not at interpreter exit
    manager.wait_until_finished()
    manager.close()
    writer.close()
  return {**result, 'step': state.step, 'interrupted': interrupted, 'stopped_by': stopped_by}
