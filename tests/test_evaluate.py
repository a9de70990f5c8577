"""Evaluation of a trained run: center, ten crops, ensembles, the program, bad input.

One tiny run (the demo config shrunk, 4 steps) is trained once for the module;
references are NumPy formulas over the network's own `model.apply`.
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from alexnet_jax import data
from alexnet_jax import errors
from alexnet_jax import inference
from alexnet_jax import parallel
from alexnet_jax import rundir
from alexnet_jax import steps

REPO = pathlib.Path(__file__).resolve().parents[1]

def softmax(logits):
  """float64 softmax over the last axis."""
  z = np.asarray(logits, np.float64)
  e = np.exp(z - z.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def forward_probs(run, images):
  """The network's softmax on (N, C, C, 3) images, applied directly (no mesh, no steps.py)."""
  return softmax(run.model.apply({'params': run.params}, images))


def other_member(run, seed=1):
  """A second ensemble member: the same network with perturbed weights."""
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda x: x + rng.normal(0, 0.05, x.shape).astype(x.dtype), run.params)
  return dataclasses.replace(run, params=params)


def first_batch(run, info, ten_crop):
  return next(data.eval_iterator(info, inference.input_config(run), batch_size=16,
                                 ten_crop=ten_crop))


def test_ten_crop_is_the_mean_of_ten_softmaxes(tiny_run, tiny_info):
  batch = first_batch(tiny_run, tiny_info, ten_crop=True)
  assert batch['image'].shape == (16, 10, 64, 64, 3)
  mesh = parallel.make_mesh(None, None, tiny_run.model.towers)
  got = np.asarray(steps.make_predict_step(tiny_run.model, mesh)(tiny_run.params, batch['image']))
  want = np.mean([forward_probs(tiny_run, batch['image'][:, i]) for i in range(10)], axis=0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  # Not vacuous: the ten views give different outputs.
  assert np.abs(forward_probs(tiny_run, batch['image'][:, 0])
                - forward_probs(tiny_run, batch['image'][:, 6])).max() > 1e-6


def test_ensemble_is_the_mean_over_models(tiny_run, tiny_info):
  member = other_member(tiny_run)
  batch = first_batch(tiny_run, tiny_info, ten_crop=False)
  mesh = parallel.make_mesh(None, None, tiny_run.model.towers)
  predict = inference.make_ensemble_predict([tiny_run, member], mesh)
  got = np.asarray(predict([tiny_run.params, member.params], batch['image']))
  want = (forward_probs(tiny_run, batch['image']) + forward_probs(member, batch['image'])) / 2
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  assert np.abs(forward_probs(member, batch['image'])
                - forward_probs(tiny_run, batch['image'])).max() > 1e-3
  # An ensemble of one is the model.
  alone = inference.make_ensemble_predict([tiny_run], mesh)([tiny_run.params], batch['image'])
  np.testing.assert_array_equal(
      np.asarray(alone), np.asarray(steps.make_predict_step(tiny_run.model, mesh)(tiny_run.params,
                                                                              batch['image'])))


def test_ensemble_evaluation_against_numpy(tiny_run, tiny_info):
  member = other_member(tiny_run)
  result = inference.evaluate([tiny_run, member], ten_crop=False, info=tiny_info)
  images, labels = [], []
  for batch in data.eval_iterator(tiny_info, inference.input_config(tiny_run), batch_size=16):
    images.append(batch['image'][batch['mask']])
    labels.append(batch['label'][batch['mask']])
  images, labels = np.concatenate(images), np.concatenate(labels)
  assert len(labels) == tiny_info.num_eval_examples == 40
  for key, members in (('model', [tiny_run]), ('ensemble', [tiny_run, member])):
    probs = np.mean([forward_probs(m, images) for m in members], axis=0)
    rank = (probs > probs[np.arange(40), labels][:, None]).sum(axis=1)  # classes strictly above
    want = {'loss': -np.log(probs[np.arange(40), labels]).mean(),
            'top1_error': np.mean(rank >= 1), 'top5_error': np.mean(rank >= 5), 'count': 40}
    for name, value in want.items():
      np.testing.assert_allclose(result[key][name], value, rtol=1e-5, err_msg=f'{key} {name}')
  # An ensemble of a model with itself is the model.
  twice = inference.evaluate([tiny_run, tiny_run], ten_crop=False, info=tiny_info)
  assert twice['ensemble'] == twice['model'] == result['model']


def test_error_sums_with_ties():
  """Ties go to the lower class index (lax.top_k), which the expected values spell out."""
  probs = np.array([
      [0.30, 0.30, 0.20, 0.10, 0.05, 0.05],  # label 1 tied with 0 for first: top-1 wrong
      [0.30, 0.30, 0.20, 0.10, 0.05, 0.05],  # label 0 tied with 1 for first: right
      [0.25, 0.20, 0.20, 0.15, 0.10, 0.10],  # label 5 tied with 4 for fifth: top-5 wrong
      [0.25, 0.20, 0.20, 0.15, 0.10, 0.10],  # label 4 fifth: top-5 right
      [0.10, 0.10, 0.10, 0.10, 0.10, 0.50],  # padding row: ignored
  ], np.float32)
  labels = np.array([1, 0, 5, 4, 0], np.int32)
  mask = np.array([True, True, True, True, False])
  sums = jax.tree.map(float, steps.error_sums(probs, labels, mask))
  assert sums['count'] == 4
  assert sums['top1_errors'] == 3  # rows 0, 2, 3
  assert sums['top5_errors'] == 1  # row 2
  np.testing.assert_allclose(sums['loss'], -np.log([0.30, 0.30, 0.10, 0.10]).sum(), rtol=1e-6)


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
    results = json.load(f)['results']
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


def test_library_errors_are_alexnet_errors(tiny_run, tiny_info):
  with pytest.raises(errors.DataError, match="no split 'test'"):
    inference.evaluate([tiny_run], 'test', info=tiny_info)
  renamed = dataclasses.replace(tiny_run, class_names=tuple(reversed(tiny_run.class_names)))
  with pytest.raises(errors.ConfigError, match='different class lists'):
    inference.evaluate([tiny_run, renamed], info=tiny_info)
