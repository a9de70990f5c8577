"""Checkpoint retention: the best checkpoint by validation error is kept besides the latest."""

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
