"""Evaluation of a trained run: center, ten crops, ensembles, library errors.

One tiny run (the demo config shrunk, 4 steps) is trained once for the module;
references are NumPy formulas over the network's own `model.apply`.
"""

import dataclasses
import pathlib

import jax
import numpy as np
import pytest

from alexnet_jax import data
from alexnet_jax import errors
from alexnet_jax import inference
from alexnet_jax import parallel
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


def test_library_errors_are_alexnet_errors(tiny_run, tiny_info):
  with pytest.raises(errors.DataError, match="no split 'test'"):
    inference.evaluate([tiny_run], 'test', info=tiny_info)
  renamed = dataclasses.replace(tiny_run, class_names=tuple(reversed(tiny_run.class_names)))
  with pytest.raises(errors.ConfigError, match='different class lists'):
    inference.evaluate([tiny_run, renamed], info=tiny_info)
