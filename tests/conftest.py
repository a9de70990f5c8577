"""Helpers and fixtures shared by several test modules.

Test files are named after what they test: tests/test_<module>.py for a
library module (dots as underscores: test_data_pipeline.py,
test_analysis_compare.py; a suffix may name an aspect: test_train_resume.py),
tests/test_tools_<program>.py for a program, and four whole-project files:
test_layout.py, test_docs.py, test_notebooks.py, test_release.py.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import convert_reference
import jax
import numpy as np
import pytest

from alexnet_jax import checkpoint
from alexnet_jax import config as config_lib
from alexnet_jax import data
from alexnet_jax import inference
from alexnet_jax import pretrained
from alexnet_jax import rundir
from alexnet_jax import train

REPO = pathlib.Path(__file__).resolve().parents[1]
DEMO = str(REPO / 'experiments' / 'demo.py')
STEPS = 12


def pytest_configure(config):
  """One persistent XLA compilation cache for the session, shared with the programs the tests
  start (they inherit the environment): the same small network is compiled by dozens of
  tests and documented commands, and a cached executable is the one XLA would build again.
  A cache the caller set up is used as it is."""
  if 'JAX_COMPILATION_CACHE_DIR' in os.environ:
    return
  cache = tempfile.mkdtemp(prefix='alexnet_jax_test_xla_cache_')
  config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))
  os.environ.update({'JAX_COMPILATION_CACHE_DIR': cache,
                     'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0'})
  jax.config.update('jax_compilation_cache_dir', cache)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)


def small_overrides(data_dir, **overrides):
  """Config fields that shrink the demo config to STEPS steps of 32 images."""
  return {'data_dir': data_dir, 'input.shapes.train_examples': 192,
          'input.shapes.eval_examples': 40, 'batch_size': 32,
          'num_train_steps': STEPS, 'checkpoint_every_steps': 3, 'eval_every_steps': 4,
          'log_every_steps': 1, 'ten_crop_eval': False, 'plateau.patience': 1, **overrides}


def small_flags(data_dir, **overrides):
  """The same as command-line flags."""
  def text(v):
    return ','.join(map(str, v)).join('()') if isinstance(v, tuple) else v
  return [f'--config.{k}={text(v)}' for k, v in small_overrides(data_dir, **overrides).items()]


def small_config(data_dir, **overrides):
  """The same as a ConfigDict, for calling train_and_evaluate in-process."""
  config = config_lib.load(DEMO)
  for key, value in small_overrides(data_dir, **overrides).items():
    *parents, leaf = key.split('.')
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def run_main(workdir, flags, wait=True, timeout=300, output=None):
  """Runs the main job; wait=False returns the Popen, its output in the open file `output`
  or else a pipe (which the caller must drain)."""
  cmd = [sys.executable, '-m', 'alexnet_jax.main', f'--workdir={workdir}', f'--config={DEMO}',
         *flags]
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3'}
  if not wait:
    return subprocess.Popen(cmd, cwd=REPO, env=env,
                            stdout=subprocess.PIPE if output is None else output,
                            stderr=subprocess.STDOUT, text=True)
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def read_metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def final_params(workdir):
  """The parameters of the latest checkpoint as NumPy arrays, by path."""
  step, params = checkpoint.load_params(workdir)
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return step, {jax.tree_util.keystr(path): leaf for path, leaf in flat}


def wait_for_checkpoint(workdir, step, proc, timeout=240):
  target = os.path.join(workdir, 'checkpoints', str(step))
  deadline = time.time() + timeout
  while not os.path.isdir(target):
    if proc.poll() is not None:
      raise AssertionError(f'run ended before step {step}:\n{proc.stdout.read()[-3000:]}')
    if time.time() > deadline:
      proc.kill()
      raise AssertionError(f'no checkpoint at step {step} after {timeout} s')
    time.sleep(0.2)


def snapshot(workdir):
  return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
          for p in pathlib.Path(workdir).rglob('*')}


def copy_run(workdir, tmp_path) -> str:
  """A copy of a run's workdir at <tmp_path>/run, to resume or damage without touching it."""
  copy = str(tmp_path / 'run')
  shutil.copytree(workdir, copy)
  return copy


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


@pytest.fixture(scope='session')
def bvlc_weights() -> dict:
  """Random weights of the BVLC AlexNet's shapes, Caffe layout (tests/convert_reference.py)."""
  return convert_reference.random_weights(seed=0)


@pytest.fixture(scope='session')
def bvlc_mean() -> np.ndarray:
  """A float32 (3, 256, 256) BGR mean image around Caffe's per-channel means."""
  rng = np.random.default_rng(2)
  means = np.asarray(pretrained.CAFFE_MEAN_BGR, np.float32)[:, None, None]
  return (means + rng.normal(0, 10, (3, 256, 256))).astype(np.float32)


@pytest.fixture(scope='session')
def bvlc_run(tmp_path_factory, bvlc_weights, bvlc_mean) -> rundir.TrainedRun:
  """`bvlc_weights` in a .caffemodel converted with `bvlc_mean`, once per session (tests that
  use it only read its workdir)."""
  folder = tmp_path_factory.mktemp('bvlc')
  path = str(folder / 'bvlc_alexnet.caffemodel')
  with open(path, 'wb') as f:
    f.write(convert_reference.caffemodel_bytes({k: list(v) for k, v in bvlc_weights.items()}))
  pretrained.write_workdir(str(folder / 'converted'), pretrained.read_caffemodel(path),
                           source='caffe', weights_path=path, mean=bvlc_mean)
  return rundir.open_run(str(folder / 'converted'))

