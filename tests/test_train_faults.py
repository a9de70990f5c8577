"""Faults a week-long run meets: a damaged checkpoint (truncated by a crash or
a full disk), SIGKILL at any moment (inside a save too), and a full disk.

The resumed runs are compared with one that met no fault: same parameters,
bitwise (CPU), and the same metrics.jsonl (but for images_per_sec, a timing).
The runs of `python -m alexnet_jax.main` here share the session's persistent
compilation cache (conftest.py), so that only the first compiles the steps.
"""

import errno
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import time

from conftest import copy_run
from conftest import final_params
from conftest import read_metrics
from conftest import run_main
from conftest import small_config
from conftest import small_flags
from conftest import snapshot
import numpy as np
import orbax.checkpoint as ocp
import pytest

from alexnet_jax import checkpoint
from alexnet_jax import cli
from alexnet_jax import errors
from alexnet_jax import rundir
from alexnet_jax import train

# Every test here starts programs or shares `reference`, a run of one: the slow tier.
pytestmark = pytest.mark.slow

# A narrow network, 16 steps of 16 images: checkpoints at 4, 8, 12, 16 (the latest
# 3 kept, and the best of the evaluations at 8 and 16 among them).
STEPS = 16
FAULTS = {'num_train_steps': STEPS, 'checkpoint_every_steps': 4, 'eval_every_steps': 8,
          'batch_size': 16, 'model.conv_features': (16, 32, 32, 32, 32),
          'model.fc_features': 64}
# The orbax suffix of a save in progress.
PARTIAL = '.orbax-checkpoint-tmp'


@pytest.fixture(scope='module')
def reference(data_dir, tmp_path_factory):
  """The run that met no fault, by the command (which fills the compilation cache)."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  done = run_main(workdir, small_flags(data_dir, **FAULTS))
  assert done.returncode == 0, done.stderr[-3000:]
  return workdir



def _damage(workdir, step):
  """Truncates the largest file of checkpoint `step` (arrays' data) to half, as a host
  crash or a full disk in the middle of its write leaves it; returns its path."""
  files = [p for p in pathlib.Path(workdir, 'checkpoints', str(step)).rglob('*') if p.is_file()]
  largest = max(files, key=lambda p: p.stat().st_size)
  os.truncate(largest, largest.stat().st_size // 2)
  return largest


def _without_timing(rows):
  return [{k: v for k, v in row.items() if k != 'images_per_sec'} for row in rows]


def _assert_same_run(workdir, reference):
  step, params = final_params(workdir)
  ref_step, ref = final_params(reference)
  assert step == ref_step == STEPS
  for name, value in ref.items():
    np.testing.assert_array_equal(params[name], value, err_msg=name)
  assert _without_timing(read_metrics(workdir)) == _without_timing(read_metrics(reference))


def _error_paragraph(stderr):
  """The last line of stderr, the error paragraph, after checking it is the only one."""
  assert 'Traceback' not in stderr, stderr[-3000:]
  assert stderr.count('error: ') == 1, stderr[-3000:]
  last = stderr.strip().splitlines()[-1]
  assert last.startswith('error: '), stderr[-3000:]
  return last


def test_unreadable_latest_is_moved_aside_and_the_run_resumes_from_the_one_before(
    data_dir, reference, tmp_path):
  """The issue's case through the real command: the newest checkpoint truncated, the
  same command run again."""
  workdir = copy_run(reference, tmp_path)
  assert checkpoint.all_steps(workdir) == [STEPS - 8, STEPS - 4, STEPS]
  damaged = _damage(workdir, STEPS)
  damaged_size = damaged.stat().st_size
  done = run_main(workdir, small_flags(data_dir, **FAULTS))
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'Traceback' not in done.stderr, done.stderr[-3000:]
  moved = os.path.join(workdir, 'checkpoints', f'{STEPS}.unreadable')
  notice = re.search(r'Cannot read the newest checkpoint in (\S+): step (\d+) \((.*)\) is now '
                     r'(\S+)\. Resuming from step (\d+), the newest checkpoint that can be read\.',
                     done.stderr)
  assert notice, done.stderr[-3000:]
  assert notice[1] == os.path.join(workdir, 'checkpoints')
  assert int(notice[2]) == STEPS and notice[4] == moved and int(notice[5]) == STEPS - 4
  assert 'OUT_OF_RANGE' in notice[3] or 'DATA_LOSS' in notice[3], notice[3]
  assert f'Resumed from the checkpoint at step {STEPS - 4}' in done.stderr
  # Moved, not deleted: the damaged file is there as it was, and orbax lists the
  # step saved again, not the folder set aside.
  moved_file = pathlib.Path(moved) / damaged.relative_to(
      pathlib.Path(workdir, 'checkpoints', str(STEPS)))
  assert moved_file.stat().st_size == damaged_size
  assert checkpoint.all_steps(workdir)[-1] == STEPS
  _assert_same_run(workdir, reference)


def test_no_readable_checkpoint_stops_with_one_paragraph_and_moves_nothing(data_dir, reference,
                                                                          tmp_path):
  workdir = copy_run(reference, tmp_path)
  steps = checkpoint.all_steps(workdir)
  for step in steps:
    _damage(workdir, step)
  before = snapshot(workdir)
  result = run_main(workdir, small_flags(data_dir, **FAULTS))
  assert result.returncode == cli.USER_ERROR_STATUS, result.stderr[-3000:]
  paragraph = _error_paragraph(result.stderr)
  assert paragraph.startswith(f'error: None of the checkpoints in {workdir}/checkpoints can be '
                              f'read: step {steps[-1]} (')
  for step in steps:
    assert f'step {step} (' in paragraph
  assert 'Nothing was moved or deleted.' in paragraph
  assert snapshot(workdir) == before


def test_readers_name_an_unreadable_step_and_skip_it_for_latest_and_best(reference, tmp_path,
                                                                          caplog):
  workdir = copy_run(reference, tmp_path / 'latest')
  _damage(workdir, STEPS)
  with pytest.raises(errors.UnreadableCheckpointError,
                     match=rf'^The checkpoint at step {STEPS} in \S+ cannot be read \('):
    rundir.open_run(workdir, STEPS)
  assert rundir.open_run(workdir, 'latest').step == STEPS - 4
  assert f'Skipping the checkpoint at step {STEPS} in ' in caplog.text
  # 'best' passes on to the next best when the best cannot be read.
  workdir = copy_run(reference, tmp_path / 'best')
  best = checkpoint.best_steps(workdir)
  assert sorted(best) == [STEPS - 8, STEPS]
  _damage(workdir, best[0])
  caplog.clear()
  assert rundir.open_run(workdir, 'best').step == best[1]
  assert f'Skipping the checkpoint at step {best[0]} in ' in caplog.text


def test_damaged_metrics_file_makes_its_checkpoint_unreadable_not_the_workdir(reference,
                                                                             tmp_path, caplog):
  """Orbax reads every checkpoint's metrics to list them: a damaged metrics file must
  not stop the training manager from listing the others."""
  workdir = copy_run(reference, tmp_path)
  steps = checkpoint.all_steps(workdir)
  metrics_file = pathlib.Path(workdir, 'checkpoints', str(STEPS), 'metrics', 'metrics')
  metrics_file.write_text(metrics_file.read_text()[:10])
  with checkpoint.make_manager(workdir, 3) as manager:
    assert manager.all_steps() == steps
  assert f'metrics saved with the checkpoint at step {STEPS} in ' in caplog.text
  assert STEPS not in checkpoint.best_steps(workdir)
  with pytest.raises(errors.UnreadableCheckpointError, match='JSONDecodeError'):
    rundir.open_run(workdir, STEPS)


def test_killed_at_random_moments_ends_bitwise_equal(data_dir, reference, tmp_path):
  """SIGKILL eight times at seeded moments, every other one aimed inside a checkpoint
  save (a save at every step), and once a torn last line of metrics.jsonl (what a kill
  inside its append leaves); then the same command to the end."""
  workdir = str(tmp_path / 'run')
  flags = small_flags(data_dir, **{**FAULTS, 'checkpoint_every_steps': 1})
  rng = random.Random(22)
  kills, in_saves = 0, 0
  for attempt in range(20):
    log = tmp_path / f'attempt{attempt}.log'
    with open(log, 'w') as out:
      proc = run_main(workdir, flags, wait=False, output=out)
      if not _kill_at_random(proc, workdir, log, rng, in_save=kills % 2 == 0):
        continue
    kills += 1
    in_saves += any(PARTIAL in p for p in os.listdir(os.path.join(workdir, 'checkpoints')))
    if kills == 3:
      with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
        f.write('{"step": 3, "train_lo')
    if kills == 8:
      break
  assert kills == 8, [p.read_text()[-2000:] for p in tmp_path.glob('attempt*.log')]
  assert in_saves >= 2, in_saves
  done = run_main(workdir, flags)
  assert done.returncode == 0, done.stderr[-3000:]
  _assert_same_run(workdir, reference)
  leftovers = [p for p in os.listdir(os.path.join(workdir, 'checkpoints'))
               if PARTIAL in p or checkpoint.UNREADABLE_SUFFIX in p]
  assert not leftovers


def _kill_at_random(proc, workdir, log, rng, in_save, timeout=240):
  """SIGKILLs `proc` at a seeded moment: 0-0.3 s after it logs a step 0 to 2 steps past
  the first it logs, or (in_save) 0-50 ms after the save of that step begins (orbax's
  temporary folder appears). False when the run ended first."""
  checkpoints = os.path.join(workdir, 'checkpoints')
  skip, delay = rng.randint(0, 2), rng.uniform(0, 0.05 if in_save else 0.3)
  deadline = time.time() + timeout
  while proc.poll() is None:
    logged = [int(s) for s in re.findall(rf'step (\d+)/{STEPS} \|', log.read_text())]
    if logged and in_save:
      saving = [int(p.split('.')[0]) for p in os.listdir(checkpoints) if PARTIAL in p]
      due = any(step >= logged[0] + skip for step in saving)
    else:
      due = bool(logged) and logged[-1] >= logged[0] + skip
    if due:
      time.sleep(delay)
      proc.send_signal(signal.SIGKILL)
      proc.wait(timeout=30)
      return proc.returncode == -signal.SIGKILL
    assert time.time() < deadline, log.read_text()[-3000:]
    time.sleep(0.01)
  return False


def test_full_disk_stops_with_one_paragraph_and_keeps_the_checkpoints(data_dir, tmp_path,
                                                                      monkeypatch):
  """On a small filesystem the test mounts (a 1.5 MB tmpfs, root only), the command
  itself, where the checkpoints fill the disk; elsewhere, in the library, OSError
  ENOSPC at the write of step 7's checkpoint, in orbax's background commit where a
  real disk fails."""
  mount = tmp_path / 'small'
  mount.mkdir()
  if shutil.which('mount') and subprocess.run(
      ['mount', '-t', 'tmpfs', '-o', 'size=1500k', 'tmpfs', str(mount)],
      capture_output=True).returncode == 0:
    try:
      workdir = str(mount / 'run')
      result = run_main(workdir, small_flags(data_dir, **{
          **FAULTS, 'checkpoint_every_steps': 1, 'keep_checkpoints': 50,
          'log_every_steps': 100, 'eval_every_steps': 100}))
      assert result.returncode == cli.DISK_FULL_STATUS, result.stderr[-3000:]
      _check_disk_full(_error_paragraph(result.stderr), workdir)
    finally:
      subprocess.run(['umount', str(mount)], check=True)
    return
  finalize = ocp.StandardCheckpointHandler.finalize

  def full_at_step_7(self, directory):
    if f'{os.sep}7{PARTIAL}' in str(directory):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
    finalize(self, directory)

  monkeypatch.setattr(ocp.StandardCheckpointHandler, 'finalize', full_at_step_7)
  workdir = str(tmp_path / 'run')
  with pytest.raises(errors.DiskFullError) as error:
    train.train_and_evaluate(small_config(data_dir, **{**FAULTS, 'checkpoint_every_steps': 1}),
                             workdir)
  assert checkpoint.all_steps(workdir)[-1] == 6
  _check_disk_full(str(error.value), workdir)


def _check_disk_full(message, workdir):
  """Checks the one paragraph of a full disk against the workdir: previous checkpoints
  restorable, no partial folder."""
  directory = os.path.join(workdir, 'checkpoints')
  steps = checkpoint.all_steps(workdir)
  assert steps
  assert f'No space left on the disk of {directory}. ' in message
  assert re.search(rf'The unfinished save \({steps[-1] + 1}{PARTIAL}\S*\) was removed\. ',
                   message), message
  assert f'The checkpoints saved before (steps {", ".join(map(str, steps))}) are intact.' \
      in message
  one = sum(p.stat().st_size for p in pathlib.Path(directory, str(steps[-1])).rglob('*')
            if p.is_file())
  assert f'One checkpoint of this network takes {one / 1e6:,.1f} MB' in message
  assert f'then rerun the same command to resume from step {steps[-1]}.' in message
  assert not [p for p in os.listdir(directory) if PARTIAL in p]
  for step in steps:
    checkpoint.load_params(workdir, step)
