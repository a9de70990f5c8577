"""Dataset readers: each split becomes a random-access ``Split``.

Random access by example index is what lets the pipeline (pipeline.py) make
batch s a pure function of (seed, s), resume exactly, and let each process read
only its own rows. Four datasets:

* ``shapes``: the embedded TFDS dataset (synthetic.py), generated into
  ``data_dir`` on first use; its JPEG bytes (a few MB) are held in memory.
* ``imagenet2012``: TFDS with manual download (the two ILSVRC2012 tars in
  ``<data_dir>/downloads/manual/``), then prepared once to SxS JPEGs
  (prepare.py) in ArrayRecord.
* ``imagenette``: TFDS (downloads; needs internet once), prepared likewise.
* ``folder``: ``<data_dir>/train/<class>/*`` and ``<data_dir>/val/<class>/*``
  (``validation/`` also accepted), class names from the folder names, readable
  via an optional ``<wnid> <words>`` file; prepared likewise, or decoded and
  resized on the fly with ``config.input.prepare=False``.

Records of a prepared split are JPEGs of exactly S x S (``jpeg_side``), which
lets the training pipeline decode only the crop window.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from typing import Callable, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from alexnet_jax.data import fields
from alexnet_jax.data import prepare as prepare_lib


class DataError(Exception):
  """A problem with the data the user can fix; the message says how."""


@dataclasses.dataclass(eq=False)
class Split:
  """One split with random access by index.

  kind: 'memory' (payload: list of encoded bytes), 'files' (payload: list of
  file paths) or 'array_record' (payload: list of shard paths).
  jpeg_side: S when every record is a JPEG of exactly S x S, else None (the
  pipeline then decodes any format and resizes: section 2).
  """
  num_examples: int
  labels: np.ndarray  # int32 (N,)
  kind: str
  payload: list
  jpeg_side: Optional[int]
  names: Optional[list] = None

  def batch_reader(self) -> Callable:
    """fn(idx int64 (n,)) -> string (n,): encoded bytes, or paths for
    kind 'files' (read with tf.io.read_file per example)."""
    if self.kind in ('memory', 'files'):
      table = tf.constant(np.asarray(self.payload, dtype=object))
      return lambda idx: tf.gather(table, idx)
    if self.kind == 'array_record':
      from array_record.python import array_record_data_source
      source = array_record_data_source.ArrayRecordDataSource(self.payload)
      def read(idx):
        return np.asarray(source.__getitems__(idx.tolist()), dtype=object)
      def fn(idx):
        out = tf.numpy_function(read, [idx], tf.string, stateful=False)
        return tf.ensure_shape(out, idx.shape)
      return fn
    raise ValueError(self.kind)

  def to_memory(self) -> 'Split':
    """The same split with every encoded record held in memory."""
    if self.kind == 'memory':
      return self
    if self.kind == 'files':
      data = [prepare_lib.read_bytes(p) for p in self.payload]
    else:
      from array_record.python import array_record_data_source
      source = array_record_data_source.ArrayRecordDataSource(self.payload)
      data = list(source.__getitems__(list(range(self.num_examples))))
    return dataclasses.replace(self, kind='memory', payload=data)


@dataclasses.dataclass(eq=False)
class Source:
  name: str
  class_names: tuple
  train: Split
  eval: Split
  image_size: int
  location: str  # where the data (and by default the stats) live


# ---------------------------------------------------------------- shapes

def _shapes(config, data_dir) -> Source:
  from alexnet_jax.data import synthetic
  s = fields.get(config, 'image_size')
  cfg = synthetic.shapes_config(
      image_size=s, num_train=fields.get(config, 'synthetic_train_examples'),
      num_validation=fields.get(config, 'synthetic_eval_examples'),
      seed=fields.get(config, 'synthetic_seed'))
  os.makedirs(data_dir, exist_ok=True)
  known = {c.name for c in synthetic.AlexnetShapes.BUILDER_CONFIGS}
  builder = synthetic.AlexnetShapes(
      data_dir=data_dir, config=cfg.name if cfg.name in known else cfg)
  if not builder.is_prepared():
    logging.info('Generating the embedded dataset %s into %s', cfg.name,
                 builder.data_dir)
    builder.download_and_prepare(
        download_config=_tfds().download.DownloadConfig(
            try_download_gcs=False))

  def read(split):
    ds = builder.as_dataset(
        split=split, shuffle_files=False,
        decoders={'image': _tfds().decode.SkipDecoding()})
    images, labels = [], []
    for ex in ds.batch(1024).as_numpy_iterator():
      images.extend(ex['image'])
      labels.append(ex['label'])
    return Split(len(images), np.concatenate(labels).astype(np.int32),
                 'memory', images, jpeg_side=s)

  return Source('shapes', synthetic.CLASS_NAMES, read('train'),
                read('validation'), s, builder.data_dir)


def _tfds():
  from alexnet_jax.data import synthetic  # registers + TFDS compat shim
  del synthetic
  import tensorflow_datasets as tfds
  return tfds


# ---------------------------------------------------------------- prepared

def _prepared_split(out_dir, meta, split) -> Split:
  info = meta['splits'][split]
  labels = np.load(os.path.join(out_dir, f'{split}_labels.npy'))
  shards = [os.path.join(out_dir, f) for f in info['shards']]
  return Split(int(info['num_examples']), labels.astype(np.int32),
               'array_record', shards, jpeg_side=int(meta['image_size']))


def _prepared_source(name, out_dir, meta, class_names=None) -> Source:
  return Source(name, tuple(class_names or meta['class_names']),
                _prepared_split(out_dir, meta, 'train'),
                _prepared_split(out_dir, meta, 'validation'),
                int(meta['image_size']), out_dir)


def prepared_dir(config, data_dir, name) -> str:
  d = fields.get(config, 'prepared_dir')
  if d:
    return fields.expand(d)
  return os.path.join(data_dir, 'alexnet_jax_prepared',
                      f'{name}_{fields.get(config, "image_size")}')


def _tfds_items(builder, split):
  """(name, jpeg bytes, label) of a TFDS image-classification split."""
  tfds = _tfds()
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()})
  has_name = 'file_name' in builder.info.features
  for i, ex in enumerate(ds.as_numpy_iterator()):
    name = ex['file_name'].decode() if has_name else f'{split}[{i}]'
    yield name, ex['image'], int(ex['label'])


def _prepare_from_tfds(config, out_dir, name, builder, splits, class_names):
  return prepare_lib.prepare_dataset(
      out_dir, {ours: _tfds_items(builder, theirs)
                for ours, theirs in splits.items()},
      class_names, fields.get(config, 'image_size'), source=name,
      quality=fields.get(config, 'jpeg_quality'),
      workers=fields.get(config, 'prepare_workers'))


# ---------------------------------------------------------------- imagenet

IMAGENET_ARCHIVES = ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar')


def _imagenet2012(config, data_dir) -> Source:
  out_dir = prepared_dir(config, data_dir, 'imagenet2012')
  meta = prepare_lib.load_meta(out_dir)
  if meta is None:
    tfds = _tfds()
    builder = tfds.builder('imagenet2012', data_dir=data_dir)
    if not builder.is_prepared():
      manual = os.path.join(data_dir, 'downloads', 'manual')
      missing = [a for a in IMAGENET_ARCHIVES
                 if not os.path.exists(os.path.join(manual, a))]
      if missing:
        raise DataError(
            f'ImageNet (ILSVRC-2012) is not available: the archive(s) '
            f'{", ".join(missing)} are missing from {manual}. Download '
            f'ILSVRC2012_img_train.tar (138 GB) and ILSVRC2012_img_val.tar '
            f'(6.3 GB) from https://image-net.org (registration required) '
            f'and place both files in {manual}/ (or set --config.data_dir to '
            f'the directory whose downloads/manual/ holds them). The first '
            f'run then builds the TFDS dataset and the {fields.get(config, "image_size")}x'
            f'{fields.get(config, "image_size")} prepared copy (hours, once). '
            f'Alternatively keep ImageNet as a folder train/<wnid>/*.JPEG, '
            f'val/<wnid>/*.JPEG and use --config.dataset=folder.')
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual))
    names = builder.info.features['label'].names
    meta = _prepare_from_tfds(config, out_dir, 'imagenet2012', builder,
                              {'train': 'train', 'validation': 'validation'},
                              _readable(config, data_dir, names))
  return _prepared_source('imagenet2012', out_dir, meta)


# ---------------------------------------------------------------- imagenette

IMAGENETTE_WORDS = {
    'n01440764': 'tench', 'n02102040': 'English springer',
    'n02979186': 'cassette player', 'n03000684': 'chain saw',
    'n03028079': 'church', 'n03394916': 'French horn',
    'n03417042': 'garbage truck', 'n03425413': 'gas pump',
    'n03445777': 'golf ball', 'n03888605': 'parachute'}


def _imagenette(config, data_dir) -> Source:
  out_dir = prepared_dir(config, data_dir, 'imagenette')
  meta = prepare_lib.load_meta(out_dir)
  if meta is None:
    tfds = _tfds()
    name = f'imagenette/{fields.get(config, "imagenette_config")}'
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
      try:
        builder.download_and_prepare()
      except Exception as e:  # network problems come in many types
        raise DataError(
            f'Could not download {name} into {data_dir} ({type(e).__name__}: '
            f'{e}). imagenette needs internet access once; offline, use '
            f'--config.dataset=shapes (the embedded dataset) or a folder '
            f'dataset.') from e
    names = [IMAGENETTE_WORDS.get(n, n)
             for n in builder.info.features['label'].names]
    meta = _prepare_from_tfds(config, out_dir, 'imagenette', builder,
                              {'train': 'train', 'validation': 'validation'},
                              names)
  return _prepared_source('imagenette', out_dir, meta)


# ---------------------------------------------------------------- folder

def _readable(config, data_dir, wnids):
  """Readable class names from a '<wnid> <words>' file when one is found."""
  path = fields.get(config, 'synset_words')
  candidates = [fields.expand(path)] if path else [
      os.path.join(data_dir, n) for n in
      ('synset_words.txt', 'LOC_synset_mapping.txt', 'words.txt')]
  for p in candidates:
    if p and os.path.exists(p):
      words = {}
      with open(p) as f:
        for line in f:
          parts = line.strip().split(None, 1)
          if len(parts) == 2:
            words[parts[0]] = parts[1].split(',')[0].strip()
      return [words.get(w, w) for w in wnids]
  if path:
    raise DataError(f'synset_words file {path} does not exist.')
  return list(wnids)


def _list_folder(root, class_to_index, split_name):
  paths, labels = [], []
  for cls in sorted(os.listdir(root)):
    d = os.path.join(root, cls)
    if not os.path.isdir(d):
      continue
    if cls not in class_to_index:
      logging.warning('Ignoring %s: class %s is not in the training split',
                      d, cls)
      continue
    for f in sorted(os.listdir(d)):
      p = os.path.join(d, f)
      if os.path.isfile(p) and not f.startswith('.'):
        paths.append(p)
        labels.append(class_to_index[cls])
  if not paths:
    raise DataError(f'The {split_name} folder {root} holds no images in '
                    f'class subfolders (<class>/<image>).')
  return paths, np.asarray(labels, np.int32)


def _scan(paths, labels, workers):
  """Drops files TensorFlow cannot decode, with a warning naming each."""
  def ok(p):
    try:
      img = prepare_lib.decode_rgb(prepare_lib.read_bytes(p))
      return img.shape[0] > 0 and img.shape[1] > 0
    except (tf.errors.OpError, OSError):
      return False
  with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count()) as pool:
    good = list(pool.map(ok, paths))
  bad = [p for p, g in zip(paths, good) if not g]
  for p in bad:
    logging.warning('Skipping undecodable image %s', p)
  if bad:
    logging.warning('Skipped %d undecodable file(s) of %d', len(bad),
                    len(paths))
  keep = np.asarray(good, bool)
  return [p for p, g in zip(paths, good) if g], labels[keep], bad


def _folder(config, data_dir) -> Source:
  train_root = os.path.join(data_dir, 'train')
  val_root = next((os.path.join(data_dir, v) for v in ('val', 'validation')
                   if os.path.isdir(os.path.join(data_dir, v))), None)
  if not os.path.isdir(train_root) or val_root is None:
    raise DataError(
        f'{data_dir} is not an image folder dataset: it needs train/<class>/* '
        f'and val/<class>/* (ImageNet style, e.g. train/n01440764/'
        f'n01440764_10026.JPEG). The ILSVRC-2012 validation images come in '
        f'one flat folder; sort them into val/<wnid>/ first.')
  wnids = sorted(d for d in os.listdir(train_root)
                 if os.path.isdir(os.path.join(train_root, d)))
  index = {w: i for i, w in enumerate(wnids)}
  class_names = tuple(_readable(config, data_dir, wnids))
  tr_paths, tr_labels = _list_folder(train_root, index, 'training')
  va_paths, va_labels = _list_folder(val_root, index, 'validation')
  s = fields.get(config, 'image_size')
  if fields.get(config, 'prepare'):
    out_dir = prepared_dir(config, data_dir, 'folder')
    meta = prepare_lib.load_meta(out_dir)
    if meta is None:
      meta = prepare_lib.prepare_dataset(
          out_dir,
          {'train': zip(tr_paths, tr_paths, tr_labels.tolist()),
           'validation': zip(va_paths, va_paths, va_labels.tolist())},
          class_names, s, source=data_dir,
          quality=fields.get(config, 'jpeg_quality'),
          workers=fields.get(config, 'prepare_workers'))
    return _prepared_source('folder', out_dir, meta, class_names)
  # On the fly: decode + resize each time; bad files found by one scan.
  workers = fields.get(config, 'prepare_workers')
  tr_paths, tr_labels, _ = _scan(tr_paths, tr_labels, workers)
  va_paths, va_labels, _ = _scan(va_paths, va_labels, workers)
  return Source(
      'folder', class_names,
      Split(len(tr_paths), tr_labels, 'files', tr_paths, None, tr_paths),
      Split(len(va_paths), va_labels, 'files', va_paths, None, va_paths),
      s, prepared_dir(config, data_dir, 'folder'))


# ---------------------------------------------------------------- entry

def load_source(config) -> Source:
  name = config.get('dataset', None)
  if name not in fields.DATASETS:
    raise DataError(f'Unknown dataset {name!r} (config.dataset). Choose one '
                    f'of: {", ".join(fields.DATASETS)}. "shapes" is the '
                    f'embedded offline dataset used by the demo.')
  data_dir = fields.expand(config.get('data_dir', '') or '')
  if not data_dir:
    raise DataError('config.data_dir is empty: set --config.data_dir to the '
                    'directory holding (or to receive) the dataset.')
  if name != 'shapes' and not os.path.isdir(data_dir):
    raise DataError(f'The data directory {data_dir} (config.data_dir) does '
                    f'not exist. Create it and put the {name} data there, or '
                    f'point --config.data_dir at it.')
  crop = fields.get(config, 'crop_size')
  size = fields.get(config, 'image_size')
  if crop > size:
    raise DataError(f'config.input.crop_size={crop} is larger than '
                    f'config.input.image_size={size}.')
  source = {'shapes': _shapes, 'imagenet2012': _imagenet2012,
            'imagenette': _imagenette, 'folder': _folder}[name](config,
                                                                data_dir)
  if source.image_size != size:
    raise DataError(f'{source.location} holds {source.image_size}px images '
                    f'but config.input.image_size={size}; set prepared_dir '
                    f'to a new directory.')
  if fields.get(config, 'cache'):
    source.train = source.train.to_memory()
    source.eval = source.eval.to_memory()
  return source
