"""TensorBoard during training: the config as hparams, the kernels and curves as images."""

import glob
import os

import numpy as np
import pytest
from tensorboard.plugins.hparams import plugin_data_pb2
import tensorflow as tf

from alexnet_jax import checkpoint
from alexnet_jax import config as config_lib
from alexnet_jax import metrics
from alexnet_jax import plots
from alexnet_jax import rundir
from alexnet_jax import train

STEPS, EVAL_EVERY = 8, 4


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """A tiny demo run: 8 steps of 16 images, evaluations at steps 4 and 8."""
  config = config_lib.load('demo')
  config.data_dir = str(tmp_path_factory.mktemp('tfds'))
  config.input.shapes.train_examples, config.input.shapes.eval_examples = 96, 16
  config.batch_size, config.num_train_steps, config.eval_every_steps = 16, STEPS, EVAL_EVERY
  config.log_every_steps, config.checkpoint_every_steps, config.ten_crop_eval = 2, 4, False
  path = str(tmp_path_factory.mktemp('run'))
  train.train_and_evaluate(config, path)
  return path


def summaries(workdir):
  """Every summary value in the run's event files: [(step, tag, value proto)]."""
  found = []
  for path in sorted(glob.glob(os.path.join(workdir, 'tensorboard', 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      found += [(event.step, value.tag, value) for value in event.summary.value]
  return found


def test_kernel_images_are_the_mosaic_of_the_checkpoint(workdir):
  images = {step: v for step, tag, v in summaries(workdir) if tag == 'conv1_kernels'}
  assert sorted(images) == [EVAL_EVERY, STEPS]
  _, params = checkpoint.load_params(workdir, STEPS)
  mosaic = plots.kernel_mosaic(params['conv1']['kernel'])  # demo: 2 towers of 24 kernels
  zoom = metrics.KERNEL_ZOOM
  want = np.repeat(np.repeat(np.round(mosaic * 255), zoom, 0), zoom, 1).astype(np.uint8)
  width, height, png = tf.make_ndarray(images[STEPS].tensor)
  got = tf.io.decode_png(png).numpy()
  assert (int(width), int(height)) == (want.shape[1], want.shape[0])
  np.testing.assert_array_equal(got, want)


def test_colour_specificity_scalars_match_the_kernels(workdir):
  values = {tag: float(tf.make_ndarray(v.tensor)) for step, tag, v in summaries(workdir)
            if step == STEPS and tag.startswith('conv1_colour_specificity/')}
  _, params = checkpoint.load_params(workdir, STEPS)
  want = plots.colour_specificity(params['conv1']['kernel']).mean(axis=1)
  assert sorted(values) == ['conv1_colour_specificity/tower0', 'conv1_colour_specificity/tower1']
  np.testing.assert_allclose([values['conv1_colour_specificity/tower0'],
                              values['conv1_colour_specificity/tower1']], want, rtol=1e-6)


def test_curves_image_written_at_each_evaluation(workdir):
  curves = {step: v for step, tag, v in summaries(workdir) if tag == 'curves'}
  assert sorted(curves) == [EVAL_EVERY, STEPS]
  _, _, png = tf.make_ndarray(curves[STEPS].tensor)
  image = tf.io.decode_png(png).numpy()
  want = plots.figure_pixels(plots.curves_figure(rundir.read_metrics(workdir), 96 // 16))
  np.testing.assert_array_equal(image, want)


def test_hparams_hold_the_config(workdir):
  starts = [v for _, tag, v in summaries(workdir) if tag == '_hparams_/session_start_info']
  assert len(starts) == 1
  data = plugin_data_pb2.HParamsPluginData.FromString(starts[0].metadata.plugin_data.content)
  hparams = data.session_start_info.hparams
  assert hparams['batch_size'].number_value == 16
  assert hparams['dataset'].string_value == 'shapes'
  assert hparams['model.fc_features'].number_value == 1024
  assert hparams['plateau.patience'].number_value == 3


def test_truncate_after_keeps_what_a_resume_does_not_log_again(tmp_path):
  """Rows after the resumed step go, and so does the ten-crop row at it: a run resumed at
  its end evaluates the ten crops again (a second copy would skew every reader)."""
  writer = metrics.MetricsWriter(str(tmp_path))
  rows = [{'step': 1, 'train_loss': 2.0}, {'step': 2, 'eval_top1_error': 0.5},
          {'step': 2, 'eval_ten_crop_top1_error': 0.4}, {'step': 3, 'train_loss': 1.0}]
  for row in rows:
    writer.write(row['step'], {k: v for k, v in row.items() if k != 'step'})
  writer.truncate_after(2)
  assert rundir.read_metrics(str(tmp_path)) == rows[:2]
  writer.truncate_after(1)
  assert rundir.read_metrics(str(tmp_path)) == rows[:1]
  writer.close()
