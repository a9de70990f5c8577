"""The install: platform markers, accelerator extras, the version floor, and the `doctor` check."""

import configparser
import importlib.metadata
import os
import pathlib
import stat
import subprocess
import sys

import jax
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

import alexnet_jax
from alexnet_jax import installation

REPO = pathlib.Path(__file__).resolve().parents[1]
LINUX = {**default_environment(), 'sys_platform': 'linux', 'platform_system': 'Linux'}
MACOS = {**default_environment(), 'sys_platform': 'darwin', 'platform_system': 'Darwin'}


def requirements_txt() -> list[Requirement]:
  lines = (REPO / 'requirements.txt').read_text().splitlines()
  return [Requirement(line) for line in lines if line.strip() and not line.startswith('#')]


def setup_cfg() -> configparser.ConfigParser:
  parser = configparser.ConfigParser()
  parser.read(REPO / 'setup.cfg')
  return parser


def setup_cfg_requirements(section: str, key: str) -> list[Requirement]:
  value = setup_cfg()[section][key]
  return [Requirement(line) for line in value.splitlines() if line.strip()]


def selected(requirements: list[Requirement], environment: dict) -> dict[str, Requirement]:
  """{name: requirement} of those whose marker holds in `environment`."""
  return {r.name: r for r in requirements
          if r.marker is None or r.marker.evaluate(environment)}


def test_tensorflow_build_follows_the_platform():
  """tensorflow-cpu has no macOS wheel; tensorflow is the one there."""
  for requirements in (requirements_txt(), setup_cfg_requirements('options', 'install_requires')):
    linux, macos = selected(requirements, LINUX), selected(requirements, MACOS)
    assert 'tensorflow-cpu' in linux and 'tensorflow' not in linux
    assert 'tensorflow' in macos and 'tensorflow-cpu' not in macos
    assert 'array-record' in linux and 'array-record' in macos
  pinned = selected(requirements_txt(), LINUX), selected(requirements_txt(), MACOS)
  assert str(pinned[0]['tensorflow-cpu'].specifier) == str(pinned[1]['tensorflow'].specifier)


def test_requirements_txt_pins_what_setup_cfg_needs_on_each_platform():
  for environment in (LINUX, MACOS):
    needed = set(selected(setup_cfg_requirements('options', 'install_requires'), environment))
    pinned = selected(requirements_txt(), environment)
    assert needed <= set(pinned), needed - set(pinned)
    assert all(str(r.specifier).startswith('==') for r in pinned.values())


def test_accelerator_extras_pin_the_requirements_jax():
  jax_pin = selected(requirements_txt(), LINUX)['jax'].specifier
  for extra in ('cuda12', 'tpu'):
    (requirement,) = setup_cfg_requirements('options.extras_require', extra)
    assert requirement.name == 'jax' and requirement.extras == {extra}
    assert requirement.specifier == jax_pin


def test_installed_versions_match_requirements_txt():
  """The venv the tests run in is the one requirements.txt describes."""
  for name, requirement in selected(requirements_txt(), default_environment()).items():
    assert requirement.specifier.contains(importlib.metadata.version(name)), name


def floor_requirements_txt() -> list[Requirement]:
  lines = (REPO / '.ci' / 'floor-requirements.txt').read_text().splitlines()
  return [Requirement(line) for line in lines if line.strip() and not line.startswith('#')]


def test_the_floor_is_the_same_everywhere():
  """alexnet_jax.FLOORS = setup.cfg's >= = the pins of CI's floor environment; the pins are above.

  The floor environment (.ci/run) installs .ci/floor-requirements.txt with
  requirements.txt's other pins: pytest and pytest-xdist come from the test extra.
  """
  floors = {name: Version(v) for name, v in alexnet_jax.FLOORS.items()}
  declared = selected(setup_cfg_requirements('options', 'install_requires'), LINUX)
  for name, floor in floors.items():
    (spec,) = declared[name].specifier
    assert (spec.operator, Version(spec.version)) == ('>=', floor), name
  tested = {r.name: r for r in floor_requirements_txt()}
  extra = {r.name: r for r in setup_cfg_requirements('options.extras_require', 'test')}
  for name in ('pytest', 'pytest-xdist'):
    assert tested.pop(name).specifier == extra[name].specifier, name
  assert {name: Version(str(r.specifier).removeprefix('==')) for name, r in tested.items()} \
      == floors
  pinned = selected(requirements_txt(), LINUX)
  for name, floor in floors.items():
    assert Version(str(pinned[name].specifier).removeprefix('==')) >= floor, name
  readme = ' '.join((REPO / 'README.md').read_text().split())  # "Installation" names them
  assert f'jax and jaxlib {floors["jax"]}' in readme
  assert all(f'{name} {floors[name]}' in readme for name in ('flax', 'optax', 'orbax-checkpoint'))


def _import_with_versions(versions: dict[str, str]) -> subprocess.CompletedProcess:
  """`import alexnet_jax` in a fresh interpreter whose metadata reports `versions`."""
  code = ('import importlib.metadata, sys\n'
          'real = importlib.metadata.version\n'
          f'importlib.metadata.version = lambda name: {versions!r}.get(name) or real(name)\n'
          'try:\n'
          '  import alexnet_jax\n'
          'finally:\n'
          '  print("jax imported:", "jax" in sys.modules)\n')
  return subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                        timeout=60)


def test_import_below_the_floor_fails_with_one_sentence():
  """An older jax (simulated through the metadata) stops the import, naming both versions."""
  result = _import_with_versions({'jax': '0.5.3', 'jaxlib': '0.5.3'})
  assert result.returncode != 0
  assert result.stdout.strip() == 'jax imported: False'  # the check reads metadata only
  last = result.stderr.strip().splitlines()[-1]
  floor = alexnet_jax.FLOORS['jax']
  assert last == (
      f'ImportError: alexnet_jax {alexnet_jax.__version__} needs jax>={floor} and '
      f'jaxlib>={floor}, but this environment has jax 0.5.3 and jaxlib 0.5.3: upgrade with '
      f"pip install -U 'jax>={floor}' 'jaxlib>={floor}' (on a GPU or TPU, jax[cuda12] or "
      'jax[tpu] in place of jax; README, "Installation").')
  # Raised by the package's own check, not from inside jax.
  assert 'alexnet_jax/__init__.py' in result.stderr and 'site-packages/jax' not in result.stderr


def test_import_at_the_floor_and_of_nightlies_passes():
  """The floor itself, and a pre-release of it, import (a nightly is newer than the release
  before it)."""
  at_floor = {name: floor for name, floor in alexnet_jax.FLOORS.items()}
  at_floor['jax'] += '.dev20250601'
  result = _import_with_versions(at_floor)
  assert result.returncode == 0, result.stderr
  old_orbax = _import_with_versions({'orbax-checkpoint': '0.11.30'})
  assert "needs orbax-checkpoint>=0.11.31, but this environment has orbax-checkpoint 0.11.30" \
      in old_orbax.stderr


def test_detects_gpu_and_tpu_device_files(tmp_path, monkeypatch):
  monkeypatch.setenv('PATH', str(tmp_path / 'bin'))  # no nvidia-smi
  assert installation.detect_accelerators(str(tmp_path)) == {}
  (tmp_path / 'dev').mkdir()
  (tmp_path / 'dev' / 'nvidia0').touch()
  (tmp_path / 'dev' / 'accel0').touch()
  assert installation.detect_accelerators(str(tmp_path)) == {
      'gpu': str(tmp_path / 'dev' / 'nvidia0'), 'tpu': str(tmp_path / 'dev' / 'accel0')}


def test_warning_only_for_an_unused_accelerator():
  gpu = {'gpu': '/dev/nvidia0'}
  assert "'.[cuda12]'" in installation.unused_accelerator_warning(gpu, 'cpu')
  assert "'.[tpu]'" in installation.unused_accelerator_warning({'tpu': '/dev/accel0'}, 'cpu')
  assert installation.unused_accelerator_warning(gpu, 'gpu') is None
  assert installation.unused_accelerator_warning({}, 'cpu') is None


def _run_doctor(path: str) -> subprocess.CompletedProcess:
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PATH': path}
  return subprocess.run([sys.executable, '-m', 'alexnet_jax.tools.doctor'], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)


def test_doctor_prints_versions_and_backend():
  result = _run_doctor(os.environ['PATH'])
  if 'gpu' in installation.detect_accelerators() or 'tpu' in installation.detect_accelerators():
    assert result.returncode == installation.UNUSED_ACCELERATOR_STATUS  # JAX_PLATFORMS=cpu above
  else:
    assert result.returncode == 0, result.stderr
  assert f'JAX {jax.__version__} ' in result.stdout
  assert 'backend cpu, 1 devices' in result.stdout
  assert f'TensorFlow Datasets {importlib.metadata.version("tensorflow-datasets")}' in result.stdout


def test_doctor_warns_when_nvidia_smi_exists_but_jax_runs_on_cpu(tmp_path):
  fake = tmp_path / 'nvidia-smi'
  fake.write_text('#!/bin/sh\nexit 0\n')
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  result = _run_doctor(f'{tmp_path}{os.pathsep}{os.environ["PATH"]}')
  assert result.returncode == installation.UNUSED_ACCELERATOR_STATUS
  evidence = installation.detect_accelerators().get('gpu', str(fake))  # a real /dev/nvidia0 wins
  assert f'has a GPU ({evidence}) but JAX runs on the CPU' in result.stdout
