"""A converted BVLC workdir through prediction and the evaluation pipeline with Caffe's input.

The network is a random-weight caffemodel (tests/convert_reference.py); the
reference is deploy.prototxt's float64 forward pass on input preprocessed here
as Caffe does: the stored 256 x 256 RGB image, reversed to BGR, minus the BGR
mean (the mean file's pixels or the per-channel means), the central 227 x 227.
"""

import dataclasses

import convert_reference as ref
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from alexnet_jax import config as config_lib
from alexnet_jax import data
from alexnet_jax import inference
from alexnet_jax import parallel
from alexnet_jax import pretrained
from alexnet_jax import rundir
from alexnet_jax import steps

S, C = 256, 227


@pytest.fixture(scope='module')
def weights():
  return ref.random_weights(seed=0)


@pytest.fixture(scope='module')
def caffe_mean():
  """A (3, 256, 256) BGR mean image around Caffe's per-channel means, as read_mean gives."""
  rng = np.random.default_rng(2)
  means = np.asarray(pretrained.CAFFE_MEAN_BGR, np.float32)[:, None, None]
  return (means + rng.normal(0, 10, (3, S, S))).astype(np.float32)


@pytest.fixture(scope='module')
def run(tmp_path_factory, weights, caffe_mean):
  workdir = str(tmp_path_factory.mktemp('bvlc') / 'run')
  path = str(tmp_path_factory.mktemp('files') / 'bvlc.caffemodel')
  with open(path, 'wb') as f:
    f.write(ref.caffemodel_bytes({k: list(v) for k, v in weights.items()}))
  pretrained.write_workdir(workdir, pretrained.read_caffemodel(path), source='caffe',
                           weights_path=path, mean=caffe_mean)
  return rundir.open_run(workdir)


def without_mean_file(run):
  """The run as converted without --mean: Caffe's per-channel BGR means."""
  config = ml_collections.ConfigDict(run.config.to_dict())
  config.input.mean_file = None
  return dataclasses.replace(run, config=config)


def caffe_input(stored_rgb, mean_bgr):
  """Caffe's test-time input: (N, 3, 227, 227) BGR minus the mean, central crop (NCHW)."""
  bgr = stored_rgb.astype(np.float64)[..., ::-1] - mean_bgr
  m = (S - C) // 2
  return bgr[:, m:m + C, m:m + C].transpose(0, 3, 1, 2)


def test_the_workdir_asks_for_caffes_preprocessing(run):
  fields = run.config.input
  assert (fields.channel_order, fields.mean, fields.mean_file) == ('bgr', 'caffe',
                                                                  'caffe_mean.npy')
  assert (fields.image_size, fields.crop_size) == (S, C)
  assert tuple(fields.mean_bgr) == pretrained.CAFFE_MEAN_BGR
  assert set(config_lib.base_config().input.keys()) >= set(fields.keys())


@pytest.mark.parametrize('mean', ['file', 'channels'])
def test_predict_equals_the_caffe_reference(run, weights, caffe_mean, tmp_path, mean):
  rng = np.random.default_rng(3)
  photo = rng.integers(0, 256, (300, 280, 3), dtype=np.uint8)
  path = str(tmp_path / 'photo.png')
  tf.io.write_file(path, tf.io.encode_png(photo))
  used = run if mean == 'file' else without_mean_file(run)
  got = inference.predict_files(used, [path])[0]
  resized = tf.image.resize(photo, [round(300 * S / 280), S], method='bilinear',
                            antialias=True).numpy()
  y = (resized.shape[0] - S) // 2
  stored = np.clip(np.round(resized[y:y + S]), 0, 255).astype(np.uint8)
  mean_bgr = (caffe_mean.transpose(1, 2, 0) if mean == 'file'
              else np.asarray(pretrained.CAFFE_MEAN_BGR))
  want = ref.caffe_forward(weights, caffe_input(stored[None], mean_bgr))[0]
  np.testing.assert_allclose(got.probabilities, want[got.labels], rtol=1e-4)
  np.testing.assert_array_equal(got.labels, np.argsort(-want, kind='stable')[:5])
  assert got.names[0] == run.class_names[got.labels[0]]


def test_evaluation_pipeline_equals_the_caffe_reference(run, weights, caffe_mean, tmp_path):
  """The eval pass (`data.eval_iterator` + the predict step) on 256px stored images."""
  fields = inference.input_config(run)
  fields.shapes.train_examples, fields.shapes.eval_examples = 4, 3
  info = data.get_dataset_info('shapes', str(tmp_path / 'tfds'), fields)
  batch = next(data.eval_iterator(info, fields, batch_size=4))
  mesh = parallel.make_mesh(None, None, run.model.towers)
  probs = np.asarray(steps.make_predict_step(run.model, mesh)(run.params, batch['image']))
  stored = np.stack([tf.io.decode_jpeg(x).numpy() for x in info.source.eval.payload])
  want = ref.caffe_forward(weights, caffe_input(stored, caffe_mean.transpose(1, 2, 0)))
  np.testing.assert_allclose(probs[batch['mask']], want, rtol=1e-4)
  assert len(set(want.argmax(axis=1))) > 1  # the inputs differ


def test_the_experiment_is_the_converters_config(run):
  """experiments/bvlc_alexnet.py and the converted workdir's config.json ask for the same input
  and network."""
  experiment = config_lib.load('bvlc_alexnet')
  converted = rundir.read_config(run.workdir)
  assert experiment.model.to_dict() == converted.model.to_dict()
  # The workdir names its mean file; without one both use the per-channel means.
  assert (experiment.input.mean_file, converted.input.mean_file) == (None, 'caffe_mean.npy')
  assert ({**experiment.input.to_dict(), 'mean_file': None}
          == {**converted.input.to_dict(), 'mean_file': None})
