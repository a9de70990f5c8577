"""Checkpoint retention (the best checkpoint by validation error is kept besides the
latest), and the pieces of fault handling that need no run (tests/test_train_faults.py
has the runs)."""

import errno
import os

from conftest import small_config

from alexnet_jax import checkpoint
from alexnet_jax import rundir
from alexnet_jax import steps
from alexnet_jax import train


def test_best_checkpoint_is_kept_when_the_error_goes_back_up(data_dir, tmp_path, monkeypatch):
  """A real run that evaluates after every step, with keep_checkpoints=2, whose
  validation errors are scripted to go down and up (ties go to the later step)."""
  errors = {1: 0.6, 2: 0.3, 3: 0.45, 4: 0.3, 5: 0.7, 6: 0.5}
  measured = steps.evaluate
  scripted_errors = iter(errors[step] for step in sorted(errors))

  def scripted(*args):
    return {**measured(*args), 'top1_error': next(scripted_errors)}

  monkeypatch.setattr(steps, 'evaluate', scripted)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(small_config(data_dir, num_train_steps=6, eval_every_steps=1,
                                        checkpoint_every_steps=6, keep_checkpoints=2), workdir)
  lowest = min(errors.values())
  best = max(step for step, error in errors.items() if error == lowest)
  assert best == 4
  assert checkpoint.best_step(workdir) == best
  assert checkpoint.all_steps(workdir) == [best, 5, 6]
  assert rundir.open_run(workdir, 'best').step == best


def test_best_step_is_none_without_checkpoints(tmp_path):
  assert checkpoint.best_step(str(tmp_path)) is None


def test_set_aside_keeps_every_copy_and_hides_it_from_orbax(tmp_path):
  """A step set aside twice (damaged, saved again, damaged again) keeps both copies,
  and orbax lists neither as a step."""
  directory = tmp_path / checkpoint.CHECKPOINTS_DIR
  for content in ('first', 'second'):
    (directory / '5').mkdir(parents=True)
    (directory / '5' / 'data').write_text(content)
    checkpoint.set_aside(str(directory), 5)
  (directory / '7').mkdir()
  assert sorted(p.name for p in directory.iterdir()) == ['5.unreadable', '5.unreadable-2', '7']
  assert (directory / '5.unreadable' / 'data').read_text() == 'first'
  assert (directory / '5.unreadable-2' / 'data').read_text() == 'second'
  assert checkpoint.all_steps(str(tmp_path)) == [7]


def test_is_disk_full_reads_python_and_tensorstore_errors():
  tensorstore = ValueError(
      'RESOURCE_EXHAUSTED: Error writing local file "/w/checkpoints/3.orbax-checkpoint-tmp/'
      'default/manifest.ocdbt": Failed to write 115 bytes to file 7: No space left on device '
      "[os_error_code='28']")
  try:
    try:
      raise tensorstore
    except ValueError as e:
      raise RuntimeError('Save Finalize thread failed') from e
  except RuntimeError as wrapped:
    assert checkpoint.is_disk_full(wrapped)
  assert checkpoint.is_disk_full(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
  assert not checkpoint.is_disk_full(OSError(errno.EACCES, os.strerror(errno.EACCES)))
  assert not checkpoint.is_disk_full(ValueError('OUT_OF_RANGE: Requested byte range is not '
                                                'valid'))
