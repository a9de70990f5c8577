"""Flag misuse, the same way for every program: one paragraph naming the fix, exit status 1,
nothing written. Each program runs as a user runs it, in a subprocess of an empty folder."""

import concurrent.futures
import os
import pathlib
import subprocess
import sys

import pytest

from alexnet_jax import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
PROGRAMS = ['alexnet_jax.main', *sorted(
    f'alexnet_jax.tools.{p.stem}' for p in (REPO / 'alexnet_jax' / 'tools').glob('[!_]*.py'))]
# A mistake per case, and words the one paragraph must contain.
MISTAKES = {
    'unknown_flag': (['--no_such_flag=1'], 'no_such_flag'),
    'misspelt_config_field': (['--workdir=run', '--config=demo', '--config.num_epoch=5'],
                              'num_epoch'),
    'required_data_dir': (['--workdir=run', '--config=folder'], '--config.data_dir='),
    'unknown_program': ([], 'No module named alexnet_jax.tools.no_such_program'),
}


def _run(module: str, args: list[str], folder: pathlib.Path) -> subprocess.CompletedProcess:
  folder.mkdir(parents=True)
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3'}
  return subprocess.run([sys.executable, '-m', module, *args], cwd=folder, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def results(tmp_path_factory) -> dict:
  """(case, module) -> (the finished process, the folder it ran in), two at a time."""
  root = tmp_path_factory.mktemp('cli')
  cases = [('unknown_flag', m) for m in PROGRAMS]
  cases += [('misspelt_config_field', 'alexnet_jax.main'),
            ('required_data_dir', 'alexnet_jax.main'),
            ('unknown_program', 'alexnet_jax.tools.no_such_program')]
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    futures = {case: pool.submit(_run, case[1], MISTAKES[case[0]][0],
                                 root / f'{case[0]}-{case[1]}') for case in cases}
  return {case: (future.result(), root / f'{case[0]}-{case[1]}')
          for case, future in futures.items()}


@pytest.mark.parametrize('case', [('unknown_flag', m) for m in PROGRAMS] + [
    ('misspelt_config_field', 'alexnet_jax.main'), ('required_data_dir', 'alexnet_jax.main'),
    ('unknown_program', 'alexnet_jax.tools.no_such_program')], ids=lambda c: f'{c[0]}-{c[1]}')
@pytest.mark.slow
def test_mistake_gets_one_paragraph_and_status_1_and_writes_nothing(results, case):
  done, folder = results[case]
  words = MISTAKES[case[0]][1]
  assert done.returncode == cli.USER_ERROR_STATUS, done.stderr[-2000:]
  assert 'Traceback' not in done.stderr
  last = done.stderr.strip().splitlines()[-1]
  assert words in last, done.stderr[-2000:]
  if case[0] != 'unknown_program':  # Python's own message for a module that is not there
    assert last.startswith('error: '), last
  assert list(folder.iterdir()) == []
