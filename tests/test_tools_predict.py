"""Predictions for image files of odd kinds, against the same preprocessing done here."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from test_data_sources import CMYK_JPEG

from alexnet_jax import data
from alexnet_jax import errors
from alexnet_jax import inference

REPO = pathlib.Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def photos(tmp_path_factory):
  """A grayscale JPEG, a CMYK JPEG, a PNG with a wide aspect and a 20x20 JPEG."""
  folder = tmp_path_factory.mktemp('photos')
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:90, 0:130]
  gray = ((x * 2 + y) % 256).astype(np.uint8)[..., None]
  wide = np.stack([x % 256, y * 2 % 256, (x + y) % 256], -1).astype(np.uint8)
  small = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
  files = {'gray.jpg': tf.io.encode_jpeg(gray).numpy(), 'cmyk.jpg': CMYK_JPEG,
           'wide.png': tf.io.encode_png(wide).numpy(),
           'small.jpg': tf.io.encode_jpeg(small, quality=95).numpy()}
  for name, content in files.items():
    (folder / name).write_bytes(content)
  (folder / 'notes.jpg').write_text('not an image')
  return {name: str(folder / name) for name in [*files, 'notes.jpg']}


def reference_probs(run, path, ten_crop):
  """The evaluation's preprocessing written out here: TF decode and antialiased resize, NumPy
  crops and mean, the network applied directly, NumPy softmax (averaged over the views)."""
  image = tf.io.decode_image(open(path, 'rb').read(), channels=3, expand_animations=False)
  s, c = run.config.input.image_size, run.config.input.crop_size
  h, w = image.shape[:2]
  nh, nw = max(s, round(h * s / min(h, w))), max(s, round(w * s / min(h, w)))
  resized = tf.image.resize(image, [nh, nw], method='bilinear', antialias=True).numpy()
  y, x = (nh - s) // 2, (nw - s) // 2
  stored = np.clip(np.round(resized[y:y + s, x:x + s]), 0, 255).astype(np.uint8)
  info = inference.dataset_info(run)
  img = stored.astype(np.float32) - info.stats.mean_image
  m = (s - c) // 2
  corners = [(m, m), (0, 0), (0, s - c), (s - c, 0), (s - c, s - c)]
  views = [img[a:a + c, b:b + c] for a, b in corners]
  views = views + [v[:, ::-1] for v in views] if ten_crop else views[:1]
  logits = np.asarray(run.model.apply({'params': run.params}, np.stack(views)), np.float64)
  e = np.exp(logits - logits.max(axis=1, keepdims=True))
  return (e / e.sum(axis=1, keepdims=True)).mean(axis=0)


@pytest.mark.parametrize('ten_crop', [False, True])
def test_predictions_equal_the_network_on_the_same_preprocessing(tiny_run, photos, ten_crop):
  names = ['gray.jpg', 'cmyk.jpg', 'wide.png', 'small.jpg']
  predictions = inference.predict_files(tiny_run, [photos[n] for n in names], ten_crop=ten_crop)
  assert [p.path for p in predictions] == [photos[n] for n in names]
  for p in predictions:
    want = reference_probs(tiny_run, p.path, ten_crop)
    order = np.argsort(-want, kind='stable')[:5]
    assert len(p.labels) == 5 and len(set(p.labels.tolist())) == 5
    np.testing.assert_allclose(p.probabilities, want[p.labels], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.sort(p.probabilities)[::-1], want[order], rtol=1e-5)
    assert p.names == tuple(tiny_run.class_names[i] for i in p.labels)


def test_predicting_reads_the_saved_mean_image_not_the_dataset(tiny_run, tiny_info, photos,
                                                               monkeypatch):
  """The run saved the training set's mean image (mean_image.npy); predicting uses it."""
  np.testing.assert_array_equal(tiny_run.mean_image, tiny_info.stats.mean_image)
  want = inference.predict_files(tiny_run, [photos['wide.png']], info=tiny_info)

  def fail(*args, **kwargs):
    raise AssertionError('the dataset was read')

  monkeypatch.setattr(data, 'get_dataset_info', fail)
  got = inference.predict_files(tiny_run, [photos['wide.png']])
  np.testing.assert_array_equal(got[0].probabilities, want[0].probabilities)


def run_program(*args):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3'}
  return subprocess.run([sys.executable, '-m', 'alexnet_jax.tools.predict', *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


def test_program_prints_five_classes_per_file(tiny_run, photos):
  out = run_program(f'--workdir={tiny_run.workdir}', photos['gray.jpg'], photos['small.jpg'])
  assert out.returncode == 0, out.stderr
  lines = out.stdout.strip().splitlines()
  assert lines[0] == photos['gray.jpg'] and lines[6] == photos['small.jpg'] and len(lines) == 12
  predictions = inference.predict_files(tiny_run, [photos['gray.jpg']])
  for line, name, p in zip(lines[1:6], predictions[0].names, predictions[0].probabilities):
    assert line.split(None, 1)[1].startswith(name) and line.split()[0] == f'{p:.2%}'


@pytest.mark.slow
def test_program_prints_wnids_and_distinct_names_of_a_converted_network(bvlc_run, photos):
  """A converted ImageNet network: probability, wnid, readable name, index on each line."""
  out = run_program(f'--workdir={bvlc_run.workdir}', photos['wide.png'])
  assert out.returncode == 0, out.stderr
  lines = out.stdout.strip().splitlines()
  assert lines[0] == photos['wide.png'] and len(lines) == 6
  predictions = inference.predict_files(bvlc_run, [photos['wide.png']])[0]
  for line, label, wnid, name in zip(lines[1:], predictions.labels, predictions.wnids,
                                     predictions.names):
    assert line.split(None, 1)[1] == f'{wnid}  {name} ({label})'
    assert wnid == bvlc_run.wnids[label] and name == bvlc_run.class_names[label]


def test_a_file_that_is_not_an_image(tiny_run, photos):
  with pytest.raises(errors.DataError, match='notes.jpg is not an image'):
    inference.predict_files(tiny_run, [photos['gray.jpg'], photos['notes.jpg']])
  out = run_program(f'--workdir={tiny_run.workdir}', photos['gray.jpg'], photos['notes.jpg'])
  assert out.returncode == 1 and out.stdout == ''
  assert 'notes.jpg is not an image' in out.stderr and 'Traceback' not in out.stderr
