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
from alexnet_jax import rundir
from alexnet_jax import steps
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
  optim.make_optimizer(config, total_steps=1)
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
  started = rundir.config_in_force(workdir, step)
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


@dataclasses.dataclass(frozen=True)
class _Run:
  """What a run is built from, fixed for its whole length (the state changes, this does not)."""
  config: ml_collections.ConfigDict
  workdir: str
  info: data.DatasetInfo
  model: model_lib.AlexNet
  mesh: jax.sharding.Mesh
  schedule: config_lib.Schedule
  tx: Any                             # optax.GradientTransformation
  plateau: optim.Plateau | None       # None: lr_policy 'steps'
  shard: tuple[int, int]              # (index, count) of the rows of every batch this process reads
  manager: ocp.CheckpointManager
  writer: metrics_lib.MetricsWriter | None = None  # opened once the initial state is known


def fresh_state(config: ml_collections.ConfigDict, workdir: str, model: model_lib.AlexNet,
                mesh: jax.sharding.Mesh, tx: Any, class_names: tuple[str, ...]) -> TrainState:
  """Step 0: section 5's initialization, or another run's weights (`config.init_from`,
  section 6's pre-training) when `workdir` has no checkpoint to resume from.

  Raises before anything is written into `workdir` when the source cannot be used.
  """
  params = parallel.init_params(model, mesh, jax.random.fold_in(jax.random.key(config.seed), 0))
  if config.init_from and checkpoint.all_steps(workdir):
    logging.info('config.init_from=%s ignored: resuming from the checkpoints in %s.',
                 config.init_from, workdir)
  elif config.init_from:
    transfer_plan, source_params = transfer.plan(config.init_from, params, class_names)
    logging.info('%s', transfer_plan.summary())
    params = transfer.apply(transfer_plan, source_params, params)
  return TrainState(step=0, params=params, opt_state=parallel.init_opt_state(tx, params, mesh),
                    plateau=optim.PlateauState())


def resume(run: _Run, state: TrainState) -> tuple[TrainState, dict[str, tuple[Any, Any]]]:
  """The newest readable checkpoint in the workdir (`state` when there is none), and the
  config fields changed since it was saved.

  Newer checkpoints that cannot be read are moved aside with a logged paragraph
  (`checkpoint.restore_newest_readable`). A changed config.learning_rate
  applies from now on, after the plateau drops already made. Raises, with
  nothing else in the workdir changed, when the checkpoint does not fit the
  config or none can be read.
  """
  restored = checkpoint.restore_newest_readable(run.manager, state)
  if restored is None:
    return state, {}
  state, latest = restored, restored.step
  changes = check_resume_config(run.config, run.workdir, latest)
  logging.info('Resumed from the checkpoint at step %d in %s.', latest, run.manager.directory)
  if run.plateau is not None:
    rate = run.plateau.learning_rate(run.config.learning_rate, state.plateau)
    stored = optim.learning_rate(state.opt_state)
    if np.float32(rate) != np.float32(stored):
      logging.info('Learning rate %.3g from step %d: config.learning_rate %.3g after %d drops '
                   '(the checkpoint had %.3g).', rate, latest, run.config.learning_rate,
                   state.plateau.drops, stored)
      state = state.replace(opt_state=optim.set_learning_rate(state.opt_state, rate))
  return state, changes


def write_run_files(run: _Run, resumed_at: int | None, changes: dict) -> None:
  """What `rundir.open_run` reads to use the network without the data (process 0 only).

  The run's config stays as it started (config.json); an allowed change on
  resume is kept beside it as config_from_step_<N>.json.
  """
  run.writer.write_hparams(run.config)
  if jax.process_index() != 0:
    return
  if resumed_at is None or not os.path.exists(os.path.join(run.workdir, rundir.CONFIG_FILE)):
    rundir.write_config(run.workdir, run.config)
  elif changes:
    rundir.write_config(run.workdir, run.config, from_step=resumed_at)
  rundir.write_class_names(run.workdir, run.info.class_names)
  if run.config.input.mean == 'dataset':  # so that predicting needs no dataset
    rundir.write_mean_image(run.workdir, run.info.stats.mean_image)


def _non_finite(run: _Run, what: str) -> errors.NonFiniteLossError:
  return errors.NonFiniteLossError(
      f'{what}; stopping. The last good checkpoint (step {run.manager.latest_step()}) is kept '
      f'in {run.manager.directory}. Lower config.learning_rate or check the input data.')


def _save(run: _Run, state: TrainState, evaluation: dict | None = None) -> None:
  """Checkpoints `state`; `evaluation` (this step's) makes it a candidate for the best."""
  # The loss checked so far came from the parameters before the last update:
  # make sure that update did not overflow before keeping its result.
  if not bool(all_finite(state.params)):
    raise _non_finite(run, f'The parameters became NaN or infinite at step {state.step}')
  checkpoint.save(run.manager, state, evaluation)


def _evaluate(run: _Run, eval_step, state: TrainState, ten_crop: bool) -> dict:
  """Evaluates `state` on the validation split, logs and writes the result; returns
  {'eval_loss', 'eval_top1_error', 'eval_top5_error'} (with ten crops 'eval_ten_crop_...')."""
  batches = data.eval_iterator(run.info, run.config.input,
                               batch_size=run.config.eval_batch_size or run.config.batch_size,
                               ten_crop=ten_crop, process_index=run.shard[0],
                               process_count=run.shard[1])
  result = steps.evaluate(eval_step, state.params, run.mesh, batches)
  prefix = 'eval_ten_crop_' if ten_crop else 'eval_'
  values = {prefix + k: v for k, v in result.items() if k != 'count'}
  run.writer.write(state.step, values)
  if not ten_crop:  # Figure 3's kernels and the curves so far, as TensorBoard images
    kernels = multihost_utils.process_allgather(state.params['conv1']['kernel'], tiled=True)
    run.writer.write_images(state.step,
                            metrics_lib.rgb_kernels(kernels, run.config.input.channel_order),
                            run.schedule.steps_per_epoch)
  logging.info('step %d: %s over %d examples: loss %.4f, top-1 error %.4f, top-5 error %.4f',
               state.step, 'ten-crop evaluation' if ten_crop else 'evaluation', result['count'],
               result['loss'], result['top1_error'], result['top5_error'])
  return values


def _apply_plateau(run: _Run, state: TrainState, error: float) -> TrainState:
  """Section 5: divide the rate by 10 when the validation error stops improving."""
  # In float32, as the checkpoint stores it, so a resumed run decides alike.
  plateau_state, dropped = run.plateau.update(state.plateau, float(np.float32(error)))
  opt_state = state.opt_state
  if dropped:
    old = optim.learning_rate(opt_state)
    new = run.plateau.learning_rate(run.config.learning_rate, plateau_state)
    opt_state = optim.set_learning_rate(opt_state, new)
    logging.info('step %d: validation error stopped improving; learning rate %.3g -> %.3g '
                 '(drop %d of at most %d).', state.step, old, new, plateau_state.drops,
                 run.plateau.max_drops)
  return state.replace(plateau=plateau_state, opt_state=opt_state)


def _finite_loss(run: _Run, step: int, step_metrics: dict) -> float:
  """The training loss of `step` read from the device; stops the run if it is not finite."""
  loss = float(step_metrics['loss'])
  if not math.isfinite(loss):
    raise _non_finite(run, f'The training loss became {loss} at step {step}')
  return loss


def _log_progress(run: _Run, step: int, losses: list[float], progress: metrics_lib.Progress,
                  learning_rate: float) -> None:
  """Writes train_loss, learning_rate and images_per_sec, and prints the progress line."""
  steps_per_s, eta = progress.window(step)
  loss = sum(losses) / len(losses)
  images_per_sec = steps_per_s * run.config.batch_size
  run.writer.write(step, {'train_loss': loss, 'learning_rate': learning_rate,
                          'images_per_sec': images_per_sec})
  logging.info('step %d/%d | epoch %.2f | loss %.4f | lr %.2g | %.1f images/s | %s', step,
               run.schedule.total_steps, step / run.schedule.steps_per_epoch, loss,
               learning_rate, images_per_sec, eta)


def train_loop(run: _Run, state: TrainState,
               stop: '_StopRequest') -> tuple[TrainState, dict, str | None]:
  """Section 5's recipe from `state` to the end of the schedule or a stop request.

  Each step's loss is read one step late, so that the device is already busy
  with the next step. Evaluations drive the learning-rate policy; every
  evaluation's state is saved (it may be the best one).

  Returns (the last state, the last evaluation, the signal that stopped the run or None).
  """
  train_step = steps.make_train_step(run.model, run.tx, run.mesh,
                                     data.train_transform(run.info, run.config.input))
  eval_step = steps.make_eval_step(run.model, run.mesh)
  dropout_root = jax.random.fold_in(jax.random.key(run.config.seed), 1)
  schedule = run.schedule
  batches = data.train_iterator(run.info, run.config.input, batch_size=run.config.batch_size,
                                seed=run.config.seed, start_step=state.step,
                                process_index=run.shard[0], process_count=run.shard[1])
  progress = metrics_lib.Progress(schedule.total_steps, state.step)
  result, losses, pending, stopped_by = {}, [], None, None
  try:
    while state.step < schedule.total_steps and stopped_by is None:
      batch = parallel.shard_batch(next(batches), run.mesh)
      params, opt_state, step_metrics = train_step(
          state.params, state.opt_state, batch, jax.random.fold_in(dropout_root, state.step))
      if pending:
        losses.append(_finite_loss(run, *pending))
      state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
      pending = (state.step, step_metrics)
      at_log, at_eval = schedule.log_due(state.step), schedule.eval_due(state.step)
      at_save = at_eval or schedule.checkpoint_due(state.step)
      if at_log or at_save:
        losses.append(_finite_loss(run, *pending))
        pending = None
      if at_log:
        _log_progress(run, state.step, losses, progress, optim.learning_rate(state.opt_state))
        losses = []
      if at_eval:
        result = _evaluate(run, eval_step, state, ten_crop=False)
        if run.plateau is not None:
          state = _apply_plateau(run, state, result['eval_top1_error'])
      if at_save:
        _save(run, state, result if at_eval else None)
      stopped_by = stop.stopped_by(state.step)
    if pending:
      _finite_loss(run, *pending)
  finally:
    batches.close()  # stops the input pipeline's threads now, not at interpreter exit
  if stopped_by is None and run.config.ten_crop_eval:
    result = {**result, **_evaluate(run, eval_step, state, ten_crop=True)}
  return state, result, stopped_by


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
  # A fine-tune takes the conventions of the network it starts from (transfer.py).
  config = transfer.adopt_conventions(config, workdir)
  check_config(config)
  rundir.check_writable(workdir)  # before the data: a bad --workdir fails at once
  logging.info('JAX %s, backend %s, %d devices in %d processes (this is process %d).',
               jax.__version__, jax.default_backend(), jax.device_count(), jax.process_count(),
               jax.process_index())
  info = _dataset_info(config)
  model = model_lib.from_config(config.model, info.num_classes, image_size=config.input.crop_size)
  mesh = parallel.make_mesh(config.mesh.data, config.mesh.model, model.towers)
  schedule = config_lib.Schedule.from_config(config, info.num_train_examples)
  logging.info('%s: %d training / %d validation examples, %d classes; mesh %s; %d steps '
               '(%d per epoch) of %d images.', config.dataset, info.num_train_examples,
               info.num_eval_examples, info.num_classes, dict(mesh.shape), schedule.total_steps,
               schedule.steps_per_epoch, config.batch_size)
  tx = optim.make_optimizer(config, schedule.total_steps)
  state = fresh_state(config, workdir, model, mesh, tx, info.class_names)
  rundir.make_workdir(workdir)
  run = _Run(config, workdir, info, model, mesh, schedule, tx,
             optim.Plateau(**config.plateau) if config.lr_policy == 'plateau' else None,
             # Which rows of every global batch this process reads (processes holding
             # the two towers of one data block read the same rows).
             parallel.input_shard(config.batch_size, mesh),
             checkpoint.make_manager(workdir, config.keep_checkpoints))
  try:
    state, changes = resume(run, state)
    resumed_at = run.manager.latest_step()
    run = dataclasses.replace(
        run, writer=metrics_lib.MetricsWriter(workdir, enabled=jax.process_index() == 0))
    # The rows after the checkpoint are logged again (all of them when a run killed
    # before its first save starts over).
    run.writer.truncate_after(resumed_at or 0)
    write_run_files(run, resumed_at, changes)
    with _StopRequest(run.manager) as stop:
      state, result, stopped_by = train_loop(run, state, stop)
      if stopped_by is not None:
        if run.manager.latest_step() != state.step:
          _save(run, state)
        logging.info('Received %s%s: saved the checkpoint at step %d and stopped. Run the same '
                     'command again to resume.', stopped_by,
                     '' if stop.signal else ' (a preemption notice to this or another process)',
                     state.step)
    run.manager.wait_until_finished()  # where the last save's failure surfaces
  except Exception as e:
    if not checkpoint.is_disk_full(e):
      raise
    raise checkpoint.disk_full(run.manager, state, config.keep_checkpoints) from e
  finally:  # a save in flight completes even when the run stops on an error
    try:
      run.manager.wait_until_finished()
    except Exception as e:  # a full disk was reported above, once
      if not checkpoint.is_disk_full(e):
        raise
    run.manager.close()
    if run.writer is not None:
      run.writer.close()
  return {**result, 'step': state.step, 'interrupted': stopped_by is not None,
          'stopped_by': stopped_by}
