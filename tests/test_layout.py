"""The package's shape: who imports whom, one error family, configs checked before any work.

Imports are checked in fresh subprocesses, because this pytest process has
already imported everything.
"""

import importlib
import importlib.util
import inspect
import os
import pathlib
import pkgutil
import re
import subprocess
import sys

import pytest

import alexnet_jax
from alexnet_jax import config as config_lib
from alexnet_jax import errors
from alexnet_jax import train

REPO = pathlib.Path(__file__).resolve().parents[1]


def _modules_after_import(*names: str) -> set[str]:
  """sys.modules of a fresh interpreter after importing `names`."""
  code = ('import sys\n' + ''.join(f'import {n}\n' for n in names)
          + 'print("\\n".join(sorted(sys.modules)))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                       env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  return set(out.stdout.split())


def test_network_optimizer_placement_and_steps_load_no_tensorflow():
  loaded = _modules_after_import('alexnet_jax.model', 'alexnet_jax.optim', 'alexnet_jax.parallel',
                                 'alexnet_jax.steps', 'alexnet_jax.timing')
  assert 'alexnet_jax.steps' in loaded
  assert not {m for m in loaded if m == 'tensorflow' or m.startswith('tensorflow.')}


def test_data_is_a_leaf():
  loaded = _modules_after_import('alexnet_jax.data')
  ours = {m for m in loaded if m.startswith('alexnet_jax.')}
  assert ours, 'alexnet_jax.data did not load'
  outside = {m for m in ours if not m.startswith('alexnet_jax.data') and m != 'alexnet_jax.errors'}
  assert not outside


def _package_modules() -> tuple[list, list[str]]:
  """(imported library modules, source texts of the programs).

  Programs (`cli.run(main)` at the bottom) define absl flags at import, so
  they are read, not imported, in one process.
  """
  libraries, programs = [], []
  for info in pkgutil.walk_packages(alexnet_jax.__path__, 'alexnet_jax.'):
    if info.name.startswith('alexnet_jax.experiments'):
      continue
    source = pathlib.Path(importlib.util.find_spec(info.name).origin).read_text()
    if 'cli.run(' in source:
      programs.append(source)
    else:
      libraries.append(importlib.import_module(info.name))
  return libraries, programs


def test_every_exception_class_is_an_alexnet_error():
  libraries, programs = _package_modules()
  defined = [cls for module in libraries
             for _, cls in inspect.getmembers(module, inspect.isclass)
             if issubclass(cls, BaseException) and cls.__module__ == module.__name__]
  assert errors.ConfigError in defined and len(programs) >= 3
  assert [c for c in defined if not issubclass(c, errors.AlexNetError)] == []
  assert not [s for s in programs if re.search(r'^class \w+\(.*(Error|Exception)', s, re.M)]


def _main(tmp_path, *flags):
  cmd = [sys.executable, '-m', 'alexnet_jax.main', f'--workdir={tmp_path / "run"}',
         '--config=demo', f'--config.data_dir={tmp_path / "data"}', *flags]
  return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                        env={**os.environ, 'JAX_PLATFORMS': 'cpu'})


@pytest.mark.parametrize('flag, message', [
    ('--config.input.lighting_convention=bogus', 'lighting_convention'),
    ('--config.mesh.model=3', 'mesh.model'),
    ('--config.model.activation=sigmoid', 'activation'),
    ('--config.lr_policy=cosine', 'lr_policy'),
    ('--config.input.crop_size=80', 'crop_size'),
])
def test_config_mistakes_fail_before_anything_is_built(tmp_path, flag, message):
  result = _main(tmp_path, flag)
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()[-1]  # after TensorFlow's start-up notices
  assert last.startswith('error: ') and message in last, result.stderr
  assert 'Traceback' not in result.stderr
  assert not (tmp_path / 'data').exists() and not (tmp_path / 'run').exists()


def test_packaged_config_name_and_path_load_the_same():
  by_name = config_lib.load('demo')
  by_path = config_lib.load(str(REPO / 'experiments' / 'demo.py'))
  assert by_name.to_dict() == by_path.to_dict()
  with pytest.raises(errors.ConfigError, match='No experiment config'):
    config_lib.load('no_such_experiment')


def test_misspelt_field_in_python(tmp_path):
  """A loaded config is locked; one unlocked by hand is checked by train_and_evaluate."""
  config = config_lib.load('demo')
  with pytest.raises(AttributeError, match='num_epoch'):
    config.num_epoch = 5
  with config.unlocked():
    config.num_epoch = 5
  with pytest.raises(errors.ConfigError, match='num_epoch'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()
