"""The package's shape: who imports whom, one error family, configs checked before any work.

Imports are checked in fresh subprocesses, because this pytest process has
already imported everything.
"""

import importlib
import importlib.util
import inspect
import os
import pathlib
import re
import subprocess
import sys

import pytest

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


PACKAGE = REPO / 'alexnet_jax'


def _relative(path: pathlib.Path) -> str:
  return path.relative_to(REPO).as_posix()


def _is_program(path: pathlib.Path) -> bool:
  """Programs are alexnet_jax/main.py and the modules under alexnet_jax/tools/."""
  relative = path.relative_to(PACKAGE)
  return relative.as_posix() == 'main.py' or (
      relative.parts[0] == 'tools' and path.name != '__init__.py')


def _sources() -> dict[pathlib.Path, str]:
  return {path: path.read_text() for path in sorted(PACKAGE.rglob('*.py'))}


def _module_name(path: pathlib.Path) -> str:
  return '.'.join(path.relative_to(REPO).with_suffix('').parts).removesuffix('.__init__')


def _library_modules() -> list:
  """The package's library modules, imported (programs define absl flags at import)."""
  return [importlib.import_module(_module_name(path)) for path in _sources()
          if not _is_program(path)]


def test_every_exception_class_is_an_alexnet_error():
  defined = [cls for module in _library_modules()
             for _, cls in inspect.getmembers(module, inspect.isclass)
             if issubclass(cls, BaseException) and cls.__module__ == module.__name__]
  assert errors.ConfigError in defined
  assert [c for c in defined if not issubclass(c, errors.AlexNetError)] == []
  programs = [text for path, text in _sources().items() if _is_program(path)]
  assert len(programs) >= 12
  assert not [t for t in programs if re.search(r'^class \w+\(.*(Error|Exception)', t, re.M)]


def test_programs_are_thin_absl_apps_that_nothing_imports():
  """A program ends with cli.run(main); only cli calls app.run; no module or test imports
  a program (tests run them as a user does, in a subprocess)."""
  for path, text in _sources().items():
    if _is_program(path):
      assert re.search(r"if __name__ == '__main__':\n  cli\.run\(main(, positional=True)?\)$",
                       text.rstrip()), path
    else:
      assert not re.search(r'^\s*cli\.run\(', text, re.M), f'{_relative(path)} calls cli.run'
    if path.name != 'cli.py':
      assert 'app.run(' not in text, _relative(path)
  importers = [*PACKAGE.rglob('*.py'), *(REPO / 'tests').glob('*.py'),
               *(REPO / 'benchmarks').glob('*.py')]
  pattern = re.compile(r'^\s*(from alexnet_jax(\.tools)? import (main|tools)\b|'
                       r'from alexnet_jax\.tools(\.\w+)? import|import alexnet_jax\.(tools|main))',
                       re.M)
  assert [str(p) for p in importers if pattern.search(p.read_text())] == []


def test_every_file_written_into_a_workdir_goes_through_rundir():
  """Writes (open for 'w'/'a', os.replace, np.save/savez, savefig) appear only in rundir.py,
  and in data/, which writes into the data directory, never into a workdir."""
  write = re.compile(r"open\([^)]*['\"](w|a|wb|ab)['\"]|os\.replace\(|np\.savez?\(\s*os\.path|"
                     r"\.savefig\(\s*(path|tmp|os\.path)")
  offenders = [_relative(path) for path, text in _sources().items()
               if path.name != 'rundir.py' and 'data' not in path.relative_to(PACKAGE).parts
               and write.search(text)]
  assert offenders == []


def test_readme_tables_list_every_module_and_program():
  readme = (REPO / 'README.md').read_text()
  listed = set(re.findall(r'^\| `alexnet_jax/([\w/]+\.py|data/)`', readme, re.M))
  listed |= {f'{m}.py' for m in re.findall(r'^\| `tools/(\w+)`', readme, re.M)}
  modules = {path.relative_to(PACKAGE).as_posix() for path in _sources()
             if path.name != '__init__.py' and 'data' not in path.relative_to(PACKAGE).parts
             and path.name != 'main.py'}
  modules = {m.removeprefix('tools/') if m.startswith('tools/') else m for m in modules}
  modules.add('data/')
  assert sorted(modules - listed) == [] and sorted(listed - modules) == []


def test_test_files_are_named_after_what_they_test():
  """tests/test_<module>[_aspect].py, test_tools_<program>.py, or a whole-project file."""
  names = {_module_name(path).removeprefix('alexnet_jax.').replace('.', '_')
           for path in _sources() if path.name != '__init__.py'}
  names |= {'experiments', 'data'}
  whole_project = {'layout', 'docs', 'notebooks', 'release'}
  for path in (REPO / 'tests').glob('test_*.py'):
    subject = path.stem.removeprefix('test_')
    assert subject in whole_project or any(
        subject == n or subject.startswith(n + '_') for n in names), path.name


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
