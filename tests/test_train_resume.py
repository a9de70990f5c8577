"""Resuming with a changed config: refused for what changes the steps already
taken, allowed on request (and recorded), and a changed learning rate applies."""

import json
import os

from conftest import copy_run
from conftest import read_metrics
from conftest import small_config
from conftest import snapshot
import numpy as np
import orbax.checkpoint as ocp
import pytest

from alexnet_jax import errors
from alexnet_jax import train

FIRST_STEPS = 6


@pytest.fixture(scope='module')
def started(data_dir, tmp_path_factory):
  """A run stopped after FIRST_STEPS steps (checkpointed there), to resume in copies."""
  workdir = str(tmp_path_factory.mktemp('started'))
  train.train_and_evaluate(small_config(data_dir, num_train_steps=FIRST_STEPS), workdir)
  return workdir



def _stored_state(workdir, step):
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'),
                             item_handlers=ocp.StandardCheckpointHandler()) as manager:
    return manager.restore(step, args=ocp.args.StandardRestore())


def test_changed_batch_size_fails_naming_both_values_and_leaves_workdir(data_dir, started,
                                                                        tmp_path):
  workdir = copy_run(started, tmp_path)
  before = snapshot(workdir)
  config = small_config(data_dir, batch_size=16, num_train_steps=FIRST_STEPS + 2)
  with pytest.raises(errors.ConfigError, match='batch_size was 32, now 16') as err:
    train.train_and_evaluate(config, workdir)
  assert 'allow_config_change=True' in str(err.value)
  assert snapshot(workdir) == before


def test_changed_seed_and_model_are_named_together(data_dir, started, tmp_path):
  workdir = copy_run(started, tmp_path)
  config = small_config(data_dir, seed=7, num_train_steps=FIRST_STEPS + 1,
                        **{'model.dropout_rate': 0.25})
  with pytest.raises(errors.ConfigError, match=r'model\.dropout_rate was 0\.5, now 0\.25; '
                     r'seed was 0, now 7'):
    train.train_and_evaluate(config, workdir)


@pytest.mark.slow
def test_allowed_change_runs_and_is_kept_beside_the_start(data_dir, started, tmp_path):
  workdir = copy_run(started, tmp_path)
  config = small_config(data_dir, batch_size=16, num_train_steps=FIRST_STEPS + 1,
                        allow_config_change=True)
  result = train.train_and_evaluate(config, workdir)
  assert result['step'] == FIRST_STEPS + 1
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['batch_size'] == 32  # the config the run started with
  with open(os.path.join(workdir, f'config_from_step_{FIRST_STEPS}.json')) as f:
    assert json.load(f)['batch_size'] == 16
  # The next resume compares with the config in force, so it needs no override.
  again = train.train_and_evaluate(
      small_config(data_dir, batch_size=16, num_train_steps=FIRST_STEPS + 2), workdir)
  assert again['step'] == FIRST_STEPS + 2


def test_changed_learning_rate_applies_after_the_drops_made(data_dir, started, tmp_path):
  """Plateau policy: the new base rate times plateau.factor (0.1) per drop already made."""
  workdir = copy_run(started, tmp_path)
  drops = int(_stored_state(workdir, FIRST_STEPS)['plateau']['drops'])
  config = small_config(data_dir, learning_rate=0.05, num_train_steps=FIRST_STEPS + 1)
  train.train_and_evaluate(config, workdir)
  # The rate the resumed step used (logged before that step's evaluation) ...
  row = [r for r in read_metrics(workdir) if r['step'] == FIRST_STEPS + 1 and 'learning_rate' in r]
  assert np.isclose(row[0]['learning_rate'], 0.05 * 0.1 ** drops, rtol=1e-6)
  # ... and the one stored after it, with the last evaluation's drop if it made one.
  stored = _stored_state(workdir, FIRST_STEPS + 1)
  drops_now = int(stored['plateau']['drops'])
  assert drops_now in (drops, drops + 1)
  assert np.float32(stored['opt_state']['hyperparams']['learning_rate']) == np.float32(
      0.05 * 0.1 ** drops_now)
  with open(os.path.join(workdir, f'config_from_step_{FIRST_STEPS}.json')) as f:
    assert json.load(f)['learning_rate'] == 0.05
