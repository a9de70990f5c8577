"""python -m alexnet_jax.tools.evaluate on the session's tiny run: its figures equal the
run's own final evaluation, it writes only its file, and bad input gets one paragraph."""

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from alexnet_jax import rundir

REPO = pathlib.Path(__file__).resolve().parents[1]


def file_hashes(folder):
  hashes = {}
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        hashes[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return hashes


def run_program(*args):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3'}
  return subprocess.run([sys.executable, '-m', 'alexnet_jax.tools.evaluate', *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


def test_program_reproduces_the_final_evaluation_and_writes_only_its_file(tiny_run):
  before = file_hashes(tiny_run.workdir)
  out = run_program(f'--workdir={tiny_run.workdir}', '--crops=both')
  assert out.returncode == 0, out.stderr
  after = file_hashes(tiny_run.workdir)
  written = os.path.join('eval', f'validation-step{tiny_run.step}.json')
  assert set(after) - set(before) == {written}
  assert {k: after[k] for k in before} == before
  with open(os.path.join(tiny_run.workdir, written)) as f:
    evaluation = json.load(f)
  results = evaluation['results']
  assert evaluation['protocol']['input.resize'] == 'shorter_side'  # the protocol measured
  with open(os.path.join(tiny_run.workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  final = {k: v for row in rows if row['step'] == tiny_run.step for k, v in row.items()}
  for name in ('loss', 'top1_error', 'top5_error'):
    assert results['center'][name] == final[f'eval_{name}']
    assert results['ten_crop'][name] == final[f'eval_ten_crop_{name}']
  assert 'top-1 error' in out.stdout and 'ten-crop' in out.stdout
  os.remove(os.path.join(tiny_run.workdir, written))


@pytest.fixture(scope='module')
def bad_workdirs(tiny_run, tmp_path_factory):
  """A run without checkpoints and a copy of the run with other class names."""
  root = tmp_path_factory.mktemp('bad')
  empty = root / 'no_checkpoints'
  empty.mkdir()
  shutil.copy(os.path.join(tiny_run.workdir, 'config.json'), empty)
  renamed = root / 'renamed'
  shutil.copytree(tiny_run.workdir, renamed)
  rundir.write_class_names(str(renamed), [f'thing {i}' for i in range(len(tiny_run.class_names))])
  return {'empty': str(empty), 'renamed': str(renamed)}


@pytest.mark.parametrize('case, words', [
    ('no_checkpoint', 'no checkpoint yet'),
    ('missing_step', 'no checkpoint at step 999'),
    ('class_lists', 'different class lists'),
    ('split', "no split 'test'"),
])
def test_bad_input_fails_with_one_paragraph_and_writes_nothing(tiny_run, bad_workdirs, case, words):
  args = {'no_checkpoint': [f'--workdir={bad_workdirs["empty"]}'],
          'missing_step': [f'--workdir={tiny_run.workdir}', '--step=999'],
          'class_lists': [f'--workdir={tiny_run.workdir}', f'--ensemble={bad_workdirs["renamed"]}'],
          'split': [f'--workdir={tiny_run.workdir}', '--split=test']}[case]
  before = {d: file_hashes(d) for d in (tiny_run.workdir, *bad_workdirs.values())}
  out = run_program(*args, '--crops=1')
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1].startswith('error: ')
  assert words in out.stderr and 'Traceback' not in out.stderr
  assert {d: file_hashes(d) for d in before} == before
