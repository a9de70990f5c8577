"""Dataset readers: image folders with bad files, TFDS (mocked), errors."""

import base64
import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from alexnet_jax import config as config_lib
from alexnet_jax import data
from alexnet_jax import errors
from alexnet_jax.data import prepare
from alexnet_jax.data import sources
from alexnet_jax.data import synthetic

# A 16x12 CMYK JPEG (Adobe, inverted; 4 components in its frame header), made once with
# Pillow: Image.frombytes('RGB', ...).convert('CMYK').save(..., quality=60) of an image whose
# blue channel is 200 everywhere. TensorFlow cannot encode CMYK, hence the literal bytes.
CMYK_JPEG = base64.b64decode(
    '/9j/7gAOQWRvYmUAZAAAAAAA/9sAQwANCQoLCggNCwoLDg4NDxMgFRMSEhMnHB4XIC4pMTAuKS0sMzpKPjM2RjcsLUBXQUZMTlJTUjI+WmFaUGBKUVJP/8AAFAgADAAQBEMRAE0RAFkRAEsRAP/EAB8AAAEFAQEBAQEBAAAAAAAAAAABAgMEBQYHCAkKC//EALUQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+v/aAA4EQwBNAFkASwAAPwDk/D/8Nc3/AMI3/sfpXWV6dXp3h/8Aho/4Rv8A2P0oorzHw/8Aw16n9gt/7lFFeneH/wCGj7Bb/wByiiv/2Q==')


def _jpeg(rng, h, w, gray=False):
  img = rng.integers(0, 256, (h, w, 1 if gray else 3), dtype=np.uint8)
  return tf.io.encode_jpeg(img, quality=90).numpy()


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  """train/<wnid>/ and val/<wnid>/ with one bad file of every kind."""
  root = tmp_path_factory.mktemp('folder')
  rng = np.random.default_rng(0)
  wnids = ['n01', 'n02', 'n03']
  for split, n in (('train', 6), ('val', 3)):
    for w in wnids:
      d = root / split / w
      d.mkdir(parents=True)
      for i in range(n):
        (d / f'{w}_{i}.JPEG').write_bytes(_jpeg(rng, 40 + i, 50))
  t = root / 'train'
  good = _jpeg(rng, 48, 48)
  (t / 'n01' / 'corrupt.JPEG').write_bytes(b'not a jpeg at all' * 10)
  (t / 'n01' / 'truncated.JPEG').write_bytes(good[:len(good) // 2])
  (t / 'n02' / 'cmyk.JPEG').write_bytes(CMYK_JPEG)
  (t / 'n02' / 'gray.JPEG').write_bytes(_jpeg(rng, 30, 20, gray=True))
  png = tf.io.encode_png(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
  (t / 'n03' / 'png_named.JPEG').write_bytes(png.numpy())
  (root / 'synset_words.txt').write_text(
      'n01 alpha, first\nn02 beta\nn03 gamma\n')
  return root


def _config(dataset, data_dir, batch_size=128, image_size=256, crop_size=224, **input_fields):
  c = config_lib.base_config()
  c.dataset, c.data_dir, c.batch_size = dataset, str(data_dir), batch_size
  c.input.image_size, c.input.crop_size = image_size, crop_size
  for k, v in input_fields.items():
    c.input[k] = v
  return c


def _info(config):
  return data.get_dataset_info(config.dataset, config.data_dir, config.input)


def _train(config, info):
  return data.train_iterator(info, config.input, batch_size=config.batch_size, seed=config.seed)


def _eval(config, info, **kw):
  return data.eval_iterator(info, config.input, batch_size=config.batch_size, **kw)


def _folder_config(root, prepare, **kw):
  config = _config('folder', root, batch_size=8, image_size=32, crop_size=24, **kw)
  config.input.folder.prepare = prepare
  return config


@pytest.mark.parametrize('prepare', [True, False])
def test_folder_with_bad_files_trains_and_reports(folder, prepare, caplog,
                                                  tmp_path):
  caplog.set_level(logging.WARNING)
  config = _folder_config(folder, prepare, prepared_dir=str(tmp_path / 'prep'))
  info = _info(config)
  # 18 good + cmyk + gray + png-named-jpeg; corrupt and truncated skipped.
  assert info.num_train_examples == 21
  assert info.num_eval_examples == 9
  assert info.class_names == ('alpha', 'beta', 'gamma')
  log = caplog.text
  assert 'corrupt.JPEG' in log and 'truncated.JPEG' in log
  for ok in ('cmyk.JPEG', 'gray.JPEG', 'png_named.JPEG'):
    assert ok not in log
  # Labels follow the folders: never mislabelled.
  names = [line.strip() for line in open(tmp_path / 'prep' / 'train_names.txt')] if prepare else (
      info.source.train.payload)  # on the fly: the records are the file paths
  assert len(names) == len(info.source.train.labels) == 21
  for name, label in zip(names, info.source.train.labels):
    assert os.path.basename(os.path.dirname(name)) == ['n01', 'n02',
                                                       'n03'][label]
  if prepare:
    meta = json.load(open(tmp_path / 'prep' / 'meta.json'))
    assert meta['splits']['train']['num_skipped'] == 2
  it = _train(config, info)
  for _ in range(6):  # more than two epochs
    b = next(it)
    assert b['image'].shape == (8, 24, 24, 3) and b['image'].dtype == np.uint8
  ev = list(_eval(config, info, ten_crop=True))
  assert sum(int(e['mask'].sum()) for e in ev) == 9


def test_missing_synset_words_file_is_named(folder, tmp_path):
  config = _folder_config(folder, True, synset_words=str(tmp_path / 'nope.txt'),
                          prepared_dir=str(tmp_path / 'prep'))
  with pytest.raises(errors.DataError, match='synset_words file .*nope.txt'):
    _info(config)
  assert not (tmp_path / 'prep').exists()


def _jpeg_components(jpeg: bytes) -> int:
  """The component count of a JPEG's start-of-frame header (4: CMYK, 3: YCbCr, 1: gray)."""
  i = 2  # after the SOI marker
  while i + 9 < len(jpeg):
    marker, length = jpeg[i + 1], int.from_bytes(jpeg[i + 2:i + 4], 'big')
    if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOF0..SOF15
      return jpeg[i + 9]  # after length (2), precision (1), height (2), width (2)
    i += 2 + length
  raise ValueError('no start-of-frame marker')


def test_cmyk_and_gray_decode_to_rgb():
  """The project's decoder (prepare.decode_rgb, which scans and prepares image folders)
  turns a 4-component CMYK JPEG and a 1-component gray JPEG into (H, W, 3) RGB, and the
  preparation step (prepare.process_one) writes them as S x S RGB JPEGs."""
  assert _jpeg_components(CMYK_JPEG) == 4
  img = np.asarray(prepare.decode_rgb(CMYK_JPEG))
  assert img.shape == (12, 16, 3) and img.dtype == np.uint8
  # Pillow's RGB conversion of the same file has channel means 119.9, 109.3, 200.0: blue
  # was 200 everywhere in the source, red and green vary.
  np.testing.assert_allclose(img.reshape(-1, 3).mean(axis=0), [119.9, 109.3, 200.0], atol=3)
  assert img[..., 0].std() > 30 and img[..., 2].std() < 3

  gray = np.random.default_rng(5).integers(0, 256, (30, 20, 1), dtype=np.uint8)
  gray_jpeg = tf.io.encode_jpeg(gray, quality=95).numpy()
  assert _jpeg_components(gray_jpeg) == 1
  rgb = np.asarray(prepare.decode_rgb(gray_jpeg))
  assert rgb.shape == (30, 20, 3)
  one_channel = tf.io.decode_jpeg(gray_jpeg, channels=1).numpy()[..., 0]
  for c in range(3):
    np.testing.assert_array_equal(rgb[..., c], one_channel)

  for source in (CMYK_JPEG, gray_jpeg):
    jpeg, reason = prepare.process_one(source, 8, 'jpeg', 90)
    assert reason is None and _jpeg_components(jpeg) == 3
    assert tf.io.decode_jpeg(jpeg).shape == (8, 8, 3)


def test_mock_imagenette_is_prepared_and_read(tmp_path):
  config = _config('imagenette', tmp_path, batch_size=4, image_size=32, crop_size=24)
  with tfds.testing.mock_data(num_examples=10):
    info = _info(config)
  assert info.num_classes == 10 and info.class_names[0] == 'tench'
  assert info.num_train_examples == 10 and info.num_eval_examples == 10
  b = next(_train(config, info))
  assert b['image'].shape == (4, 24, 24, 3)
  assert 0 <= b['label'].min() and b['label'].max() < 10


def test_mock_imagenet2012_is_prepared_and_read(tmp_path):
  """The ImageNet path (TFDS build -> prepared SxS JPEGs -> training batches)
  under tfds.testing.mock_data; the archives only need to exist."""
  manual = tmp_path / 'downloads' / 'manual'
  manual.mkdir(parents=True)
  for archive in ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar'):
    (manual / archive).write_bytes(b'')
  config = _config('imagenet2012', tmp_path, batch_size=4, image_size=32, crop_size=24)
  with tfds.testing.mock_data(num_examples=12):
    info = _info(config)
  assert info.num_classes == 1000 and info.class_names[0] == 'n01440764'
  assert (info.num_train_examples, info.num_eval_examples) == (12, 12)
  assert info.stats.mean_image.shape == (32, 32, 3)
  b = next(_train(config, info))
  assert b['image'].shape == (4, 24, 24, 3) and b['image'].dtype == np.uint8
  assert ((0 <= b['label']) & (b['label'] < 1000)).all()
  ev = list(_eval(config, info, ten_crop=True))
  assert sum(int(e['mask'].sum()) for e in ev) == 12
  assert ev[0]['image'].shape == (4, 10, 24, 24, 3)


@pytest.fixture(scope='module')
def lossless(tmp_path_factory):
  """A folder dataset of PNGs (lossless), 2 classes, of several sizes and aspect ratios."""
  root = tmp_path_factory.mktemp('lossless')
  rng = np.random.default_rng(1)
  for split, n in (('train', 7), ('val', 3)):
    for w in ('n01', 'n02'):
      (root / split / w).mkdir(parents=True)
      for i in range(n):
        img = rng.integers(0, 256, (30 + 3 * i, 36 - 2 * i, 3), dtype=np.uint8)
        (root / split / w / f'{i}.png').write_bytes(tf.io.encode_png(img).numpy())
  return root


def test_raw_storage_of_lossless_images_equals_decoding_them_each_time(lossless, tmp_path):
  """The raw prepared copy of PNGs against decoding and resizing the PNGs on the fly (section
  2's resize in both): the same training batches (crops and draws) and evaluation batches,
  bit for bit."""
  on_the_fly = _folder_config(lossless, False)
  raw = _folder_config(lossless, True, storage='raw', prepared_dir=str(tmp_path / 'raw'))
  a_info, b_info = _info(on_the_fly), _info(raw)
  assert b_info.source.train.kind == 'array_record' and b_info.source.train.storage == 'raw'
  assert json.load(open(tmp_path / 'raw' / 'meta.json'))['storage'] == 'raw'
  np.testing.assert_array_equal(a_info.stats.mean_image, b_info.stats.mean_image)
  a, b = _train(on_the_fly, a_info), _train(raw, b_info)
  for _ in range(3):  # more than an epoch (14 images, batches of 8)
    batch_a, batch_b = next(a), next(b)
    for key in batch_a:
      np.testing.assert_array_equal(batch_a[key], batch_b[key])
  for batch_a, batch_b in zip(_eval(on_the_fly, a_info), _eval(raw, b_info)):
    for key in batch_a:
      np.testing.assert_array_equal(batch_a[key], batch_b[key])


def test_prepared_copy_of_another_storage_is_named(lossless, tmp_path):
  jpeg = _folder_config(lossless, True, prepared_dir=str(tmp_path / 'copy'))
  _info(jpeg)
  with pytest.raises(errors.DataError, match="stores its images as 'jpeg' but "
                     "input.storage='raw'"):
    _info(_folder_config(lossless, True, storage='raw', prepared_dir=str(tmp_path / 'copy')))
  # By default each storage has its own directory.
  config = _folder_config(lossless, True, storage='raw')
  assert sources.prepared_dir(config.input, str(lossless), 'folder').endswith('folder_32_raw')


def test_disk_budget(lossless, tmp_path):
  """Images x bytes per record: known counts for ImageNet, counted files for a folder;
  raw exact (S * S * 3), JPEG an estimate."""
  config = _config('imagenet2012', tmp_path, storage='raw')
  budget = data.disk_budget('imagenet2012', str(tmp_path), config.input)
  assert budget.images == 1_331_167 and budget.bytes_per_image == 256 * 256 * 3
  assert budget.total_bytes == 261_718_081_536 and not budget.prepared
  assert budget.describe().startswith(
      "input.storage='raw': 1,331,167 images x 196,608 bytes = 261.72 GB, to write into "
      f"{tmp_path}{os.sep}alexnet_jax_prepared{os.sep}imagenet2012_256_raw (")
  folder = data.disk_budget('folder', str(lossless), _folder_config(lossless, True).input)
  assert folder.images == 20 and folder.bytes_per_image == prepare.record_bytes(32, 'jpeg')
  assert 'an estimate' in folder.describe()


def test_imagenet_without_archives_names_them(tmp_path):
  config = _config('imagenet2012', tmp_path)
  with pytest.raises(errors.DataError) as e:
    _info(config)
  msg = str(e.value)
  assert 'ILSVRC2012_img_train.tar' in msg and 'ILSVRC2012_img_val.tar' in msg
  assert os.path.join(str(tmp_path), 'downloads', 'manual') in msg


def test_bad_dataset_and_missing_dir(tmp_path):
  with pytest.raises(errors.ConfigError, match='Unknown dataset'):
    _info(_config('cifar', tmp_path))
  with pytest.raises(errors.DataError, match='does not exist'):
    _info(_config('folder', tmp_path / 'nope'))
  with pytest.raises(errors.DataError, match='train/<class>'):
    _info(_config('folder', tmp_path))
  with pytest.raises(errors.ConfigError, match='config.data_dir is empty'):
    _info(_config('folder', ''))


def test_colour_alone_does_not_decide_the_class():
  """Nearest class mean on 64-cell colour histograms; chance is 1/12 on both sets. Easy set:
  knowing the colour family would give 1/4. Hard set: the hue is drawn apart from the class,
  so the classifier stays near chance (measured 0.060 on 800 / 400 images at 32 px)."""
  easy = synthetic.colour_histogram_accuracy('easy', num_train=360, num_val=240)
  assert easy < 0.3, easy
  hard = synthetic.colour_histogram_accuracy('hard', num_train=480, num_val=320)
  assert hard < 1.5 / 12, hard


@pytest.mark.parametrize('difficulty, classes', [('easy', 12), ('hard', 12)])
def test_synthetic_is_deterministic_and_balanced(difficulty, classes):
  """One image per (split, index, size, seed, difficulty); labels cycle over the classes."""
  a, la = synthetic.example('train', 5, 32, 0, difficulty)
  b, lb = synthetic.example('train', 5, 32, 0, difficulty)
  np.testing.assert_array_equal(a, b)
  assert la == lb == 5
  assert synthetic.example('train', 5 + classes, 32, 0, difficulty)[1] == 5
  c, _ = synthetic.example('validation', 5, 32, 0, difficulty)
  d, _ = synthetic.example('train', 5, 32, 1, difficulty)
  assert not np.array_equal(a, c) and not np.array_equal(a, d)  # held-out stream; other seed
  assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
  assert synthetic.DIFFICULTIES[difficulty].num_classes == classes


def test_hard_set_is_read_with_its_classes(tmp_path):
  """input.shapes.difficulty='hard': 12 classes named by their shape alone, every one in
  the validation split; an unknown difficulty names the choices."""
  config = _config('shapes', tmp_path, image_size=32, crop_size=24)
  shapes = config.input.shapes
  shapes.train_examples, shapes.eval_examples, shapes.difficulty = 32, 16, 'hard'
  info = _info(config)
  assert info.class_names == synthetic.HARD_SHAPES and info.class_names[-1] == 'arrow'
  assert sorted(set(info.source.eval.labels)) == list(range(12))
  config.input.shapes.classes = (12, 0)
  with pytest.raises(errors.ConfigError, match='0..11'):
    data.check_input_config('shapes', config.input)
  config.input.shapes.classes = None
  config.input.shapes.difficulty = 'harder'
  with pytest.raises(errors.ConfigError, match="'easy', 'hard'"):
    data.check_input_config('shapes', config.input)
