"""A converted BVLC workdir through prediction and the evaluation pipeline with BVLC's protocol.

The network is a random-weight caffemodel (tests/convert_reference.py, the
session's `bvlc_run`); the reference is deploy.prototxt's float64 forward
pass on input preprocessed here as Caffe does: the image warped to 256 x 256
by OpenCV's INTER_LINEAR formula written in NumPy, reversed to BGR, minus the
BGR mean (the mean file's pixels or the per-channel means), the central
227 x 227.
"""

import dataclasses
import json
import os

import convert_reference as ref
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from alexnet_jax import config as config_lib
from alexnet_jax import data
from alexnet_jax import errors
from alexnet_jax import inference
from alexnet_jax import parallel
from alexnet_jax import pretrained
from alexnet_jax import rundir
from alexnet_jax import steps
from alexnet_jax.data import augment

S, C = 256, 227


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


def shorter_side_reference(photo):
  """Section 2's stored image, written out: antialiased resize of the shorter side, central
  S x S (the pipeline's own ops: this checks the plumbing, not the resize)."""
  h, w = photo.shape[:2]
  resized = tf.image.resize(photo, [max(S, round(h * S / min(h, w))),
                                    max(S, round(w * S / min(h, w)))],
                            method='bilinear', antialias=True).numpy()
  y, x = (resized.shape[0] - S) // 2, (resized.shape[1] - S) // 2
  return np.clip(np.round(resized[y:y + S, x:x + S]), 0, 255).astype(np.uint8)


@pytest.mark.parametrize('shape', [(20, 20), (300, 280), (37, 500), (513, 257), (256, 256)])
def test_warp_is_opencvs_bilinear_resize(shape):
  """augment.warp against OpenCV's INTER_LINEAR formula in NumPy: upsampling, downsampling,
  both aspect ratios, the identity; within one level (rounding), nearly all pixels equal."""
  image = np.random.default_rng(sum(shape)).integers(0, 256, shape + (3,), dtype=np.uint8)
  got = augment.warp(tf.constant(image), S).numpy().astype(int)
  want = ref.opencv_linear_resize(image, S, S).astype(int)
  assert got.shape == (S, S, 3)
  assert np.abs(got - want).max() <= 1
  assert np.mean(got != want) < 1e-3


def test_the_workdir_asks_for_bvlcs_protocol(bvlc_run):
  fields = bvlc_run.config.input
  assert (fields.resize, fields.channel_order, fields.mean, fields.mean_file) == (
      'warp', 'bgr', 'caffe', 'caffe_mean.npy')
  assert (fields.image_size, fields.crop_size) == (S, C)
  assert tuple(fields.mean_bgr) == pretrained.CAFFE_MEAN_BGR
  assert set(config_lib.base_config().input.keys()) >= set(fields.keys())
  assert inference.protocol(bvlc_run) == {
      'input.channel_order': 'bgr', 'input.mean': 'caffe', 'input.mean_bgr': list(
          pretrained.CAFFE_MEAN_BGR), 'input.mean_file': 'caffe_mean.npy',
      'input.image_size': S, 'input.crop_size': C, 'input.resize': 'warp'}


@pytest.mark.parametrize('resize,mean', [('warp', 'file'), ('warp', 'channels'),
                                         ('shorter_side', 'file')])
def test_predict_equals_the_caffe_reference(bvlc_run, bvlc_weights, bvlc_mean, tmp_path, resize,
                                            mean):
  """BVLC's protocol by default, the paper's with --resize=shorter_side (`with_resize`)."""
  photo = np.random.default_rng(3).integers(0, 256, (300, 280, 3), dtype=np.uint8)
  path = str(tmp_path / 'photo.png')
  tf.io.write_file(path, tf.io.encode_png(photo))
  used = inference.with_resize(bvlc_run if mean == 'file' else without_mean_file(bvlc_run),
                               None if resize == 'warp' else resize)
  got = inference.predict_files(used, [path])[0]
  stored = (ref.opencv_linear_resize(photo, S, S) if resize == 'warp'
            else shorter_side_reference(photo))
  mean_bgr = (bvlc_mean.transpose(1, 2, 0) if mean == 'file'
              else np.asarray(pretrained.CAFFE_MEAN_BGR))
  want = ref.caffe_forward(bvlc_weights, caffe_input(stored[None], mean_bgr))[0]
  np.testing.assert_allclose(got.probabilities, want[got.labels], rtol=1e-4)
  np.testing.assert_array_equal(got.labels, np.argsort(-want, kind='stable')[:5])
  assert got.names == tuple(bvlc_run.class_names[i] for i in got.labels)
  assert got.wnids == tuple(bvlc_run.wnids[i] for i in got.labels)
  assert bvlc_run.config.input.resize == 'warp'  # with_resize left the run as it was


def test_evaluation_pipeline_equals_the_caffe_reference(bvlc_run, bvlc_weights, bvlc_mean,
                                                        tmp_path):
  """The eval pass (`data.eval_iterator` + the predict step) on 256px stored images."""
  fields = inference.input_config(bvlc_run)
  fields.shapes.train_examples, fields.shapes.eval_examples = 4, 3
  info = data.get_dataset_info('shapes', str(tmp_path / 'tfds'), fields)
  batch = next(data.eval_iterator(info, fields, batch_size=4))
  mesh = parallel.make_mesh(None, None, bvlc_run.model.towers)
  probs = np.asarray(steps.make_predict_step(bvlc_run.model, mesh)(bvlc_run.params,
                                                                    batch['image']))
  stored = np.stack([tf.io.decode_jpeg(x).numpy() for x in info.source.eval.payload])
  want = ref.caffe_forward(bvlc_weights, caffe_input(stored, bvlc_mean.transpose(1, 2, 0)))
  np.testing.assert_allclose(probs[batch['mask']], want, rtol=1e-4)
  assert len(set(want.argmax(axis=1))) > 1  # the inputs differ


def _photo_folder(root):
  """A folder dataset of odd-sized PNGs: two classes, three training and two validation
  photos each."""
  rng = np.random.default_rng(4)
  photos = {}
  for split, count in (('train', 3), ('val', 2)):
    for cls in ('cat', 'dog'):
      os.makedirs(root / split / cls)
      for i in range(count):
        photo = rng.integers(0, 256, (30 + 7 * i, 50 - 5 * i, 3), dtype=np.uint8)
        path = root / split / cls / f'{i}.png'
        path.write_bytes(tf.io.encode_png(photo).numpy())
        photos[str(path)] = photo
  return photos


def test_a_folder_is_warped_on_the_fly_and_in_its_own_prepared_copy(tmp_path):
  """input.resize='warp' on a folder: decoded each time, the pixels are OpenCV's warp;
  prepared, the copy goes to <name>_<S>_warp and meta.json records it, and a copy made with
  the other protocol is refused."""
  photos = _photo_folder(tmp_path / 'photos')
  fields = config_lib.base_config().input
  fields.image_size, fields.crop_size, fields.resize = 32, 32, 'warp'
  fields.folder.prepare = False
  info = data.get_dataset_info('folder', str(tmp_path / 'photos'), fields)
  batch = next(data.eval_iterator(info, fields, batch_size=4))
  mean = info.stats.mean_image
  for image, path in zip(batch['image'], info.source.eval.payload):
    want = ref.opencv_linear_resize(photos[path], 32, 32).astype(np.float32) - mean
    np.testing.assert_allclose(image, want, atol=1.0)
  fields.folder.prepare = True
  prepared = data.get_dataset_info('folder', str(tmp_path / 'photos'), fields)
  assert os.path.basename(prepared.location) == 'folder_32_warp'
  with open(os.path.join(prepared.location, 'meta.json')) as f:
    assert json.load(f)['resize'] == 'warp'
  fields.resize, fields.prepared_dir = 'shorter_side', prepared.location
  with pytest.raises(errors.DataError, match="by 'warp' but input.resize='shorter_side'"):
    data.get_dataset_info('folder', str(tmp_path / 'photos'), fields)


def test_the_experiment_is_the_converters_config(bvlc_run):
  """experiments/bvlc_alexnet.py and the converted workdir's config.json ask for the same input
  and network."""
  experiment = config_lib.load('bvlc_alexnet')
  converted = rundir.read_config(bvlc_run.workdir)
  assert experiment.model.to_dict() == converted.model.to_dict()
  # The workdir names its mean file; without one both use the per-channel means.
  assert (experiment.input.mean_file, converted.input.mean_file) == (None, 'caffe_mean.npy')
  assert ({**experiment.input.to_dict(), 'mean_file': None}
          == {**converted.input.to_dict(), 'mean_file': None})


def test_another_crop_size_is_refused_in_one_paragraph(bvlc_run):
  """Caffe's ceil-mode pooling equals the model's only at 227: a converted network whose config
  asks for 224 stops before anything runs."""
  config = ml_collections.ConfigDict(bvlc_run.config.to_dict())
  config.input.crop_size = 224
  with pytest.raises(pretrained.PretrainedError, match='input.crop_size=224') as info:
    inference.input_config(dataclasses.replace(bvlc_run, config=config))
  assert '\n' not in str(info.value) and '227' in str(info.value)
