"""Fixtures shared by several test modules."""

import pytest
from test_train import small_config

from alexnet_jax import data
from alexnet_jax import inference
from alexnet_jax import rundir
from alexnet_jax import train

# A tiny two-tower run: 4 steps of 32 images, evaluated with the center crop and ten crops.
TINY = {'num_train_steps': 4, 'checkpoint_every_steps': 4, 'eval_every_steps': 4,
        'ten_crop_eval': True, 'eval_batch_size': 16, 'model.conv_features': (16, 32, 32, 32, 32),
        'model.fc_features': 64}


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory) -> str:
  """The small embedded dataset of `small_config`, generated once per test session."""
  path = str(tmp_path_factory.mktemp('tfds'))
  config = small_config(path)
  data.get_dataset_info(config.dataset, config.data_dir, config.input)
  return path


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory) -> rundir.TrainedRun:
  """The TINY run, trained once per test session (tests that use it only read its workdir)."""
  root = tmp_path_factory.mktemp('tiny_run')
  workdir = str(root / 'run')
  train.train_and_evaluate(small_config(str(root / 'tfds'), **TINY), workdir)
  return rundir.open_run(workdir)


@pytest.fixture(scope='session')
def tiny_info(tiny_run) -> data.DatasetInfo:
  """The dataset the TINY run was trained on."""
  return inference.dataset_info(tiny_run)
