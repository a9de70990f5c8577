"""The main job end to end on the demo config, shrunk to a few steps.

Subprocess tests run `python -m alexnet_jax.main` exactly as a user does, so
signals, exit codes and messages are the real ones.
"""

import gc
import json
import os
import re
import shutil
import signal

from conftest import STEPS
from conftest import final_params
from conftest import read_metrics
from conftest import run_main
from conftest import small_config
from conftest import small_flags
from conftest import snapshot
from conftest import wait_for_checkpoint
import numpy as np
import orbax.checkpoint as ocp
import ports
import pytest

from alexnet_jax import errors
from alexnet_jax import train


@pytest.fixture(scope='module')
def uninterrupted(data_dir, tmp_path_factory):
  """One complete run of STEPS steps, shared by the tests that compare against it."""
  workdir = str(tmp_path_factory.mktemp('uninterrupted'))
  def tf_data_iterators():
    return {id(o) for o in gc.get_objects() if type(o).__name__ == 'OwnedIterator'}

  gc.collect()
  gc.disable()  # what the run leaves running must not depend on when the collector runs
  try:
    before = tf_data_iterators()
    result = train.train_and_evaluate(small_config(data_dir, ten_crop_eval=True), workdir)
    result['live_tf_data_iterators'] = len(tf_data_iterators() - before)
  finally:
    gc.enable()
  return workdir, result


def test_run_writes_metrics_checkpoints_tensorboard(uninterrupted):
  workdir, result = uninterrupted
  assert result['step'] == STEPS and not result['interrupted']
  # The input pipelines stopped when the run returned (their threads would
  # otherwise hold the interpreter's exit for seconds).
  assert result['live_tf_data_iterators'] == 0
  rows = read_metrics(workdir)
  train_rows = [r for r in rows if 'train_loss' in r]
  eval_rows = [r for r in rows if 'eval_top1_error' in r]
  assert [r['step'] for r in train_rows] == list(range(1, STEPS + 1))
  assert [r['step'] for r in eval_rows] == [4, 8, 12]
  for r in train_rows:
    assert r['images_per_sec'] > 0 and r['learning_rate'] > 0
  for r in eval_rows:
    assert 0 <= r['eval_top5_error'] <= r['eval_top1_error'] <= 1
  assert result['eval_top1_error'] == eval_rows[-1]['eval_top1_error']
  assert all(r['eval_loss'] > 0 for r in eval_rows)
  # The final ten-crop test (section 4.1), after the last step.
  ten = [r for r in rows if 'eval_ten_crop_top1_error' in r]
  assert [r['step'] for r in ten] == [STEPS] and ten[0] == {
      'step': STEPS, **{k: result[k] for k in ('eval_ten_crop_loss', 'eval_ten_crop_top1_error',
                                               'eval_ten_crop_top5_error')}}
  # Checkpoints every 3 steps, at each evaluation and at the end; the latest 3
  # and the best by validation top-1 error (ties: the later step) are kept.
  lowest = min(r['eval_top1_error'] for r in eval_rows)
  best = max(r['step'] for r in eval_rows if r['eval_top1_error'] == lowest)
  kept = sorted(int(p) for p in os.listdir(os.path.join(workdir, 'checkpoints')))
  assert kept == sorted({8, 9, 12, best})
  events = os.listdir(os.path.join(workdir, 'tensorboard'))
  assert any(p.startswith('events.out.tfevents') for p in events)
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['batch_size'] == 32


def test_plateau_drops_reach_the_rate_and_the_checkpoint(uninterrupted):
  """With patience 1 any evaluation that does not improve divides the rate by 10."""
  workdir, _ = uninterrupted
  rows = read_metrics(workdir)
  errors = [r['eval_top1_error'] for r in rows if 'eval_top1_error' in r]
  expected_drops, best = 0, float('inf')
  for e in errors[:-1]:  # the last evaluation's drop acts after the last step
    if e < best - 0.001:
      best = e
    else:
      expected_drops += 1
  rates = [r['learning_rate'] for r in rows if 'learning_rate' in r]
  assert np.isclose(rates[-1], 0.01 * 0.1 ** expected_drops, rtol=1e-5)
  # The final checkpoint holds the policy's memory and the run-time rate.
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'),
                             item_handlers=ocp.StandardCheckpointHandler()) as manager:
    state = manager.restore(STEPS, args=ocp.args.StandardRestore())
  drops_after_last_eval = expected_drops + (errors[-1] >= min(errors[:-1]) - 0.001)
  assert int(state['plateau']['drops']) == drops_after_last_eval
  assert np.isclose(float(state['plateau']['best_error']), min(errors), rtol=1e-6)
  assert np.isclose(float(state['opt_state']['hyperparams']['learning_rate']),
                    0.01 * 0.1 ** drops_after_last_eval, rtol=1e-5)


def test_loss_decreases(data_dir, tmp_path):
  config = small_config(data_dir, num_train_steps=40, eval_every_steps=40,
                        checkpoint_every_steps=40, **{'plateau.patience': 5})
  train.train_and_evaluate(config, str(tmp_path))
  losses = [r['train_loss'] for r in read_metrics(str(tmp_path)) if 'train_loss' in r]
  assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.1


@pytest.mark.slow
@pytest.mark.parametrize('storage', ['jpeg', 'raw'])
def test_kill_and_resume_is_bitwise_equal(data_dir, uninterrupted, tmp_path, storage):
  """SIGKILL after the step-6 checkpoint, rerun the same command: same parameters as never
  stopping. With input.storage='raw' (the same images, decoded once) too: the same
  parameters as the uninterrupted run on JPEGs."""
  workdir = str(tmp_path)
  flags = small_flags(data_dir, **{'input.storage': storage})
  proc = run_main(workdir, flags, wait=False)
  wait_for_checkpoint(workdir, 6, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=30)
  done = run_main(workdir, flags)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  # The second run really resumed, from a step the killed run had reached and saved, and
  # had steps left to run.
  resumed = [int(n) for n in
             re.findall(r'Resumed from the checkpoint at step (\d+)', done.stderr)]
  assert len(resumed) == 1 and 6 <= resumed[0] < STEPS, (resumed, done.stderr[-3000:])
  first_step = re.search(rf'step (\d+)/{STEPS} \|', done.stderr)
  assert first_step and int(first_step[1]) == resumed[0] + 1, done.stderr[-3000:]
  step, params = final_params(workdir)
  ref_step, ref = final_params(uninterrupted[0])
  assert step == ref_step == STEPS
  for name, value in ref.items():
    np.testing.assert_array_equal(params[name], value, err_msg=name)
  # The metrics of the steps run twice were rewritten, not duplicated.
  steps = [r['step'] for r in read_metrics(workdir) if 'train_loss' in r]
  assert steps == list(range(1, STEPS + 1))


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(data_dir, tmp_path):
  """Saved, exit status 3 (not 0: it did not finish) and a last line that says so; the same
  command with a lower learning rate then resumes and finishes, the new rate applied after
  the plateau drops already made."""
  workdir = str(tmp_path)
  proc = run_main(workdir, small_flags(data_dir, num_train_steps=100000), wait=False)
  wait_for_checkpoint(workdir, 3, proc)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 3, out[-3000:]
  assert 'Received SIGTERM' in out
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints')) as manager:
    last = manager.latest_step()
  assert 3 <= last < 100000
  assert out.strip().splitlines()[-1].endswith(
      f'Stopped at step {last} by SIGTERM; rerun the same command to resume.')
  assert max(r['step'] for r in read_metrics(workdir)) == last

  # The user's next command: the same one with a lower learning rate, to the end.
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'),
                             item_handlers=ocp.StandardCheckpointHandler()) as manager:
    drops = int(manager.restore(last, args=ocp.args.StandardRestore())['plateau']['drops'])
  flags = small_flags(data_dir, num_train_steps=last + 2, learning_rate=0.004)
  done = run_main(workdir, flags)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  rates = {r['step']: r['learning_rate'] for r in read_metrics(workdir) if 'learning_rate' in r}
  assert np.isclose(rates[last + 1], 0.004 * 0.1 ** drops, rtol=1e-6)
  assert os.path.exists(os.path.join(workdir, f'config_from_step_{last}.json'))


@pytest.mark.slow
def test_shape_mismatch_fails_clearly_and_leaves_workdir(data_dir, uninterrupted, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted[0], workdir)
  before = snapshot(workdir)
  bad = run_main(workdir, small_flags(data_dir, **{'model.fc_features': 256}))
  assert bad.returncode == 1
  assert 'params/fc6/bias has shape (2, 512) there but (2, 128) here' in bad.stderr
  assert 'Traceback' not in bad.stderr
  assert snapshot(workdir) == before


def test_shape_mismatch_error_in_library(data_dir, uninterrupted, tmp_path):
  """The library raises CheckpointError (what a notebook sees)."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted[0], workdir)
  with pytest.raises(errors.CheckpointError, match='conv1'):
    train.train_and_evaluate(
        small_config(data_dir, **{'model.conv_features': (32, 128, 192, 192, 128)}), workdir)


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path):
  """The rate jumps to 1e12 at step 4: the loss blows up after the step-3 checkpoint."""
  workdir = str(tmp_path)
  config = small_config(data_dir, lr_policy='steps',
                        **{'lr_steps.boundaries': [4], 'lr_steps.factor': 1e14})
  with pytest.raises(errors.NonFiniteLossError, match=r'at step \d+') as err:
    train.train_and_evaluate(config, workdir)
  bad_step = int(str(err.value).split('at step ')[1].split(';')[0])
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints')) as manager:
    kept = manager.all_steps()
  assert kept and all(s < bad_step for s in kept)
  _, params = final_params(workdir)
  assert all(np.isfinite(v).all() for v in params.values())


@pytest.mark.parametrize('flag, message', [
    ('--config.no_such_field=1', 'no_such_field'),
    ('--config.batch_size=many', 'batch_size'),
    ('--config=/nonexistent/config.py', '/nonexistent/config.py'),  # the last --config wins
])
def test_bad_flags(data_dir, tmp_path, flag, message):
  result = run_main(str(tmp_path), [f'--config.data_dir={data_dir}', flag], timeout=120)
  assert result.returncode != 0
  assert message in result.stderr
  assert 'Traceback' not in result.stderr


def test_unwritable_workdir(data_dir, tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('not a directory')
  result = run_main(str(blocker / 'run'), small_flags(data_dir), timeout=120)
  assert result.returncode == 1
  assert 'Cannot create the workdir' in result.stderr and 'Traceback' not in result.stderr


def test_missing_dataset(tmp_path):
  result = run_main(str(tmp_path / 'run'), ['--config.dataset=folder',
                                            f'--config.data_dir={tmp_path / "nowhere"}'],
                    timeout=120)
  assert result.returncode == 1
  assert 'nowhere' in result.stderr and 'Traceback' not in result.stderr


@pytest.mark.slow
def test_two_processes_one_tower_each_match_one_process(uninterrupted, tmp_path):
  """The multi-machine path: jax.distributed on 127.0.0.1, one CPU device per
  process, mesh.model=2 (tower 0 in process 0, tower 1 in process 1), both
  reading the same rows, from a data_dir neither has seen (process 0 generates
  the dataset and its statistics while process 1 waits). Same parameters as
  the single-device run on the same (seeded) data."""
  workdir = str(tmp_path / 'run')
  for attempt in range(1, ports.PORT_ATTEMPTS + 1):
    port = ports.free_port()
    flags = small_flags(str(tmp_path / 'tfds'), **{
        'distributed.enabled': True, 'mesh.model': 2,
        'distributed.coordinator_address': f'127.0.0.1:{port}',
        'distributed.num_processes': 2})
    logs = [tmp_path / f'process{i}-attempt{attempt}.log' for i in range(2)]
    procs = []
    for i, log in enumerate(logs):
      with open(log, 'w') as f:  # a file, not a pipe left undrained while waiting for the other
        procs.append(run_main(workdir, flags + [f'--config.distributed.process_id={i}'],
                              wait=False, output=f))
    ports.wait_for_all(procs, timeout=240)
    outputs = [log.read_text() for log in logs]
    failed = any(p.returncode for p in procs)
    # The coordinator's port was taken since ports.free_port chose it: nothing ran, try another.
    collided = any(m in out for m in ports.PORT_IN_USE for out in outputs) or ports.port_taken(port)
    if attempt == ports.PORT_ATTEMPTS or not (failed and collided):
      break
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  assert 'in 2 processes (this is process 1)' in outputs[1]
  step, params = final_params(workdir)
  ref_step, ref = final_params(uninterrupted[0])
  assert step == ref_step == STEPS
  for name, value in ref.items():
    np.testing.assert_allclose(params[name], value, rtol=0, atol=1e-5 * np.abs(value).max(),
                               err_msg=name)


def test_all_finite_flags_nan_and_inf():
  """The check `save` runs first: a finite loss can come with an update that
  overflowed, and such parameters must not be checkpointed."""
  good = {'w': np.ones((2, 3), np.float32)}
  bad = {'w': np.array([[1.0, np.inf, 0.0]], np.float32), 'b': np.zeros(2, np.float32)}
  assert bool(train.all_finite(good)) and not bool(train.all_finite(bad))
  assert not bool(train.all_finite({'w': np.array([np.nan], np.float32)}))
