"""Dataset readers: each split becomes a random-access `Split`.

Random access by example index is what lets the pipeline (pipeline.py) make
batch s a pure function of (seed, s), resume exactly, and let each process read
only its own rows. Five datasets (`DATASETS`):

* `shapes`: the embedded TFDS dataset (synthetic.py), generated into
  `data_dir` on first use; its JPEG bytes (a few MB) are held in memory.
* `imagenet2012`: TFDS with manual download (the two ILSVRC2012 tars in
  `<data_dir>/downloads/manual/`), then prepared once to S x S JPEGs
  (prepare.py) in ArrayRecord.
* `imagenette`: TFDS (downloads; needs internet once), prepared likewise.
* `cifar10`: TFDS (downloads; needs internet once; its test split serves as
  the validation split), prepared likewise: Figure 1's dataset.
* `folder`: `<data_dir>/train/<class>/*` and `<data_dir>/val/<class>/*`
  (`validation/` also accepted), class names from the folder names, readable
  via an optional `<wnid> <words>` file; prepared likewise, or decoded and
  resized on the fly with `input.folder.prepare=False`.

Records of a prepared split are S x S images (`Split.side`) stored as JPEGs
(`input.storage='jpeg'`: the training pipeline decodes only the crop window)
or as raw uint8 pixels (`'raw'`: it cuts the crop window without decoding;
about 10x the disk, see `disk_budget`).
"""

from collections.abc import Callable
from collections.abc import Iterator
import concurrent.futures
import dataclasses
import os
import shutil

from absl import logging
from array_record.python import array_record_data_source
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from alexnet_jax import errors
from alexnet_jax.data import prepare as prepare_lib
from alexnet_jax.data import stats as stats_lib
from alexnet_jax.data import synthetic

DATASETS = ('shapes', 'imagenet2012', 'imagenette', 'folder', 'cifar10')


def expand(path: str) -> str:
  """`path` with ~ expanded, made absolute."""
  return os.path.abspath(os.path.expanduser(path))


@dataclasses.dataclass(eq=False)
class Split:
  """One split with random access by index.

  Attributes:
    num_examples: N.
    labels: int32 (N,).
    kind: 'memory' (payload: the encoded images), 'files' (payload: file paths)
      or 'array_record' (payload: shard paths).
    payload: see kind.
    side: S when every record is an S x S image stored as `storage` says, else
      None (the records are image files of any format and size, which the
      pipeline decodes and resizes: section 2).
    storage: with `side`, 'jpeg' (a record is a JPEG) or 'raw' (a record is
      the S * S * 3 uint8 pixels, row-major RGB: `prepare.encode`).
    resize: without `side`, how the pipeline makes an image S x S (input.resize).
  """
  num_examples: int
  labels: np.ndarray
  kind: str
  payload: list
  side: int | None
  storage: str = 'jpeg'
  resize: str = 'shorter_side'

  def batch_reader(self) -> Callable[[tf.Tensor], tf.Tensor]:
    """fn(idx int64 (n,)) -> string (n,): the encoded images, or their paths for kind 'files'."""
    if self.kind in ('memory', 'files'):
      table = tf.constant(np.asarray(self.payload, dtype=object))
      return lambda idx: tf.gather(table, idx)
    read = self._records()

    def fn(idx):
      out = tf.numpy_function(lambda i: np.asarray(read(i), dtype=object), [idx], tf.string,
                              stateful=False)
      return tf.ensure_shape(out, idx.shape)

    return fn

  def crop_reader(self, crop: int) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """For raw records: fn(idx int64 (n,), offset int32 (n, 2)) -> uint8 (n, C, C, 3), the
    C x C window at each (y, x), cut in NumPy from the records as they are read (one copy
    of the window per image: TensorFlow ops would copy the whole record several times)."""
    if self.storage != 'raw' or self.side is None:
      raise ValueError('crop_reader needs raw records')
    read, side = self._records(), self.side

    def crops(idx, offset):
      out = np.empty((len(idx), crop, crop, 3), np.uint8)
      for j, (record, (y, x)) in enumerate(zip(read(idx), offset)):
        out[j] = np.frombuffer(record, np.uint8).reshape(side, side, 3)[y:y + crop, x:x + crop]
      return out

    def fn(idx, offset):
      out = tf.numpy_function(crops, [idx, offset], tf.uint8, stateful=False)
      return tf.ensure_shape(out, [idx.shape[0], crop, crop, 3])

    return fn

  def _records(self) -> Callable[[np.ndarray], list]:
    """fn(idx (n,)) -> the n records (bytes), read in Python: kinds 'memory' and
    'array_record'."""
    if self.kind == 'memory':
      return lambda idx: [self.payload[i] for i in idx]
    if self.kind == 'array_record':
      source = array_record_data_source.ArrayRecordDataSource(self.payload)
      return lambda idx: source.__getitems__(idx.tolist())
    raise ValueError(f'Unknown split kind {self.kind!r}')


@dataclasses.dataclass(eq=False)
class Source:
  """The readers of one dataset: class names, both splits, where the data lives."""
  name: str
  class_names: tuple[str, ...]
  train: Split
  eval: Split
  image_size: int
  location: str  # where the (prepared) data and, by default, the statistics live


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetInfo:
  """What the training loop needs to know about a dataset.

  Attributes:
    num_classes: the number of classes.
    num_train_examples, num_eval_examples: the split sizes (after dropping
      undecodable files).
    class_names: readable names, index = label.
    stats: the training split's mean image and RGB PCA.
    name: the dataset (config.dataset).
    image_size: S, the stored side.
    location: the directory of the (prepared) data.
    source: the readers (for the pipeline).
  """
  num_classes: int
  num_train_examples: int
  num_eval_examples: int
  class_names: tuple[str, ...]
  stats: stats_lib.DatasetStats
  name: str
  image_size: int
  location: str
  source: Source = dataclasses.field(repr=False)


# ---------------------------------------------------------------- shapes

def _shapes(input_config: ml_collections.ConfigDict, data_dir: str) -> Source:
  s = input_config.image_size
  options = input_config.shapes
  cfg = synthetic.shapes_config(image_size=s, num_train=options.train_examples,
                                num_validation=options.eval_examples, seed=options.seed,
                                difficulty=options.difficulty)
  os.makedirs(data_dir, exist_ok=True)
  known = {c.name for c in synthetic.AlexnetShapes.BUILDER_CONFIGS}
  builder = synthetic.AlexnetShapes(data_dir=data_dir,
                                    config=cfg.name if cfg.name in known else cfg)
  if not builder.is_prepared():
    logging.info('Generating the embedded dataset %s into %s', cfg.name, builder.data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))

  def read(split):
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            decoders={'image': tfds.decode.SkipDecoding()})
    images, labels = [], []
    for ex in ds.batch(1024).as_numpy_iterator():
      images.extend(ex['image'])
      labels.append(ex['label'])
    if input_config.storage == 'raw':  # the generated JPEGs, decoded once, held in memory
      images = [prepare_lib.encode(tf.io.decode_jpeg(b, channels=3), 'raw') for b in images]
    return Split(len(images), np.concatenate(labels).astype(np.int32), 'memory', images,
                 side=s, storage=input_config.storage)

  train, validation = read('train'), read('validation')
  all_names = synthetic.DIFFICULTIES[options.difficulty].class_names
  if options.classes is None:
    return Source('shapes', all_names, train, validation, s, builder.data_dir)
  # A class subset (e.g. pre-training on some classes, fine-tuning on the others): its own
  # statistics folder, labels 0..k-1 in the order of input.shapes.classes.
  classes = [int(c) for c in options.classes]
  location = os.path.join(builder.data_dir, 'classes_' + '-'.join(map(str, classes)))
  names = tuple(all_names[c] for c in classes)
  return Source('shapes', names, _class_subset(train, classes), _class_subset(validation, classes),
                s, location)


def _class_subset(split: Split, classes: list[int]) -> Split:
  """The examples of `split` whose label is in `classes`, relabelled by position there."""
  new_label = {c: i for i, c in enumerate(classes)}
  rows = [i for i, label in enumerate(split.labels) if int(label) in new_label]
  labels = np.array([new_label[int(split.labels[i])] for i in rows], np.int32)
  return Split(len(rows), labels, split.kind, [split.payload[i] for i in rows], split.side,
               split.storage)


# ---------------------------------------------------------------- prepared

def _prepared_split(out_dir: str, meta: dict, split: str) -> Split:
  info = meta['splits'][split]
  labels = np.load(os.path.join(out_dir, f'{split}_labels.npy'))
  shards = [os.path.join(out_dir, f) for f in info['shards']]
  return Split(int(info['num_examples']), labels.astype(np.int32), 'array_record', shards,
               side=int(meta['image_size']), storage=prepare_lib.stored_as(meta))


def _prepared_source(name: str, out_dir: str, meta: dict, input_config: ml_collections.ConfigDict,
                     class_names: tuple[str, ...] | None = None) -> Source:
  stored = prepare_lib.stored_as(meta)
  if stored != input_config.storage:
    raise errors.DataError(
        f'The prepared copy in {out_dir} stores its images as {stored!r} but '
        f'input.storage={input_config.storage!r}; set input.storage={stored!r}, or '
        'input.prepared_dir to another directory to prepare a new copy there.')
  resized = meta.get('resize', 'shorter_side')  # copies made before input.resize existed
  if resized != input_config.resize:
    raise errors.DataError(
        f'The prepared copy in {out_dir} holds images made S x S by {resized!r} but '
        f'input.resize={input_config.resize!r}; set input.resize={resized!r}, or '
        'input.prepared_dir to another directory to prepare a new copy there.')
  return Source(name, tuple(class_names or meta['class_names']),
                _prepared_split(out_dir, meta, 'train'),
                _prepared_split(out_dir, meta, 'validation'), int(meta['image_size']), out_dir)


def prepared_dir(input_config: ml_collections.ConfigDict, data_dir: str, name: str) -> str:
  """input.prepared_dir, or by default <data_dir>/alexnet_jax_prepared/<name>_<S>
  (_warp appended for input.resize='warp', _raw for input.storage='raw')."""
  if input_config.prepared_dir is not None:
    return expand(input_config.prepared_dir)
  suffix = ('_warp' if input_config.resize == 'warp' else '') + (
      '_raw' if input_config.storage == 'raw' else '')
  return os.path.join(data_dir, 'alexnet_jax_prepared',
                      f'{name}_{input_config.image_size}{suffix}')


def _tfds_items(builder: tfds.core.DatasetBuilder,
                split: str) -> Iterator[tuple[str, bytes, int]]:
  """(name, JPEG bytes, label) of a TFDS image-classification split."""
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()})
  has_name = 'file_name' in builder.info.features
  for i, ex in enumerate(ds.as_numpy_iterator()):
    name = ex['file_name'].decode() if has_name else f'{split}[{i}]'
    yield name, ex['image'], int(ex['label'])


def _prepare_from_tfds(input_config: ml_collections.ConfigDict, out_dir: str, name: str,
                       builder: tfds.core.DatasetBuilder, class_names: list[str]) -> dict:
  """Prepares the TFDS splits train and validation."""
  return prepare_lib.prepare_dataset(
      out_dir, {split: _tfds_items(builder, split) for split in ('train', 'validation')},
      class_names, input_config.image_size, source=name, storage=input_config.storage,
      resize=input_config.resize, quality=input_config.jpeg_quality,
      workers=input_config.prepare_workers)


# ---------------------------------------------------------------- imagenet

IMAGENET_ARCHIVES = ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar')


def _imagenet2012(input_config: ml_collections.ConfigDict, data_dir: str) -> Source:
  out_dir = prepared_dir(input_config, data_dir, 'imagenet2012')
  meta = prepare_lib.load_meta(out_dir)
  if meta is None:
    builder = tfds.builder('imagenet2012', data_dir=data_dir)
    if not builder.is_prepared():
      manual = os.path.join(data_dir, 'downloads', 'manual')
      missing = [a for a in IMAGENET_ARCHIVES if not os.path.exists(os.path.join(manual, a))]
      if missing:
        s = input_config.image_size
        raise errors.DataError(
            f'ImageNet (ILSVRC-2012) is not available: the archive(s) {", ".join(missing)} are '
            f'missing from {manual}. Download ILSVRC2012_img_train.tar (138 GB) and '
            f'ILSVRC2012_img_val.tar (6.3 GB) from https://image-net.org (registration '
            f'required) and place both files in {manual}/ (or set --config.data_dir to the '
            f'directory whose downloads/manual/ holds them). The first run then builds the TFDS '
            f'dataset and the {s}x{s} prepared copy (hours, once). Alternatively keep ImageNet '
            f'as a folder train/<wnid>/*.JPEG, val/<wnid>/*.JPEG and use '
            f'--config.dataset=folder.')
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual))
    names = builder.info.features['label'].names
    meta = _prepare_from_tfds(input_config, out_dir, 'imagenet2012', builder,
                              _readable(input_config.synset_words, data_dir, names))
  return _prepared_source('imagenet2012', out_dir, meta, input_config)


# ---------------------------------------------------------------- imagenette

IMAGENETTE_WORDS = {
    'n01440764': 'tench', 'n02102040': 'English springer', 'n02979186': 'cassette player',
    'n03000684': 'chain saw', 'n03028079': 'church', 'n03394916': 'French horn',
    'n03417042': 'garbage truck', 'n03425413': 'gas pump', 'n03445777': 'golf ball',
    'n03888605': 'parachute'}


def _imagenette(input_config: ml_collections.ConfigDict, data_dir: str) -> Source:
  out_dir = prepared_dir(input_config, data_dir, 'imagenette')
  meta = prepare_lib.load_meta(out_dir)
  if meta is None:
    name = f'imagenette/{input_config.imagenette.variant}'
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
      try:
        builder.download_and_prepare()
      except Exception as e:  # network problems come in many types
        raise errors.DataError(
            f'Could not download {name} into {data_dir} ({type(e).__name__}: {e}). imagenette '
            f'needs internet access once; offline, use --config.dataset=shapes (the embedded '
            f'dataset) or a folder dataset.') from e
    names = [IMAGENETTE_WORDS.get(n, n) for n in builder.info.features['label'].names]
    meta = _prepare_from_tfds(input_config, out_dir, 'imagenette', builder, names)
  return _prepared_source('imagenette', out_dir, meta, input_config)


# ---------------------------------------------------------------- cifar10

def _cifar10(input_config: ml_collections.ConfigDict, data_dir: str) -> Source:
  """CIFAR-10 (Figure 1's dataset): TFDS 'cifar10', its test split as the validation split."""
  out_dir = prepared_dir(input_config, data_dir, 'cifar10')
  meta = prepare_lib.load_meta(out_dir)
  if meta is None:
    builder = tfds.builder('cifar10', data_dir=data_dir)
    if not builder.is_prepared():
      try:
        builder.download_and_prepare()
      except Exception as e:  # network problems come in many types
        raise errors.DataError(
            f'Could not download cifar10 into {data_dir} ({type(e).__name__}: {e}). It needs '
            'internet access once; offline, use the embedded dataset (shapes).') from e
    meta = prepare_lib.prepare_dataset(
        out_dir, {'train': _tfds_items(builder, 'train'),
                  'validation': _tfds_items(builder, 'test')},
        builder.info.features['label'].names, input_config.image_size, source='cifar10',
        storage=input_config.storage, quality=input_config.jpeg_quality,
        workers=input_config.prepare_workers)
  return _prepared_source('cifar10', out_dir, meta, input_config)


# ---------------------------------------------------------------- folder

def _readable(synset_words: str | None, data_dir: str, wnids: list[str]) -> list[str]:
  """Readable class names from a '<wnid> <words>' file: `synset_words` or one found in data_dir."""
  candidates = [expand(synset_words)] if synset_words is not None else [
      os.path.join(data_dir, n) for n in
      ('synset_words.txt', 'LOC_synset_mapping.txt', 'words.txt')]
  for p in candidates:
    if os.path.exists(p):
      words = {}
      with open(p) as f:
        for line in f:
          parts = line.strip().split(None, 1)
          if len(parts) == 2:
            words[parts[0]] = parts[1].split(',')[0].strip()
      return [words.get(w, w) for w in wnids]
  if synset_words is not None:
    raise errors.DataError(f'The synset_words file {synset_words} (input.synset_words) does not '
                           'exist.')
  return list(wnids)


def _list_folder(root: str, class_to_index: dict[str, int],
                 split_name: str) -> tuple[list[str], np.ndarray]:
  """The image files of root/<class>/ and their labels."""
  paths, labels = [], []
  for cls in sorted(os.listdir(root)):
    d = os.path.join(root, cls)
    if not os.path.isdir(d):
      continue
    if cls not in class_to_index:
      logging.warning('Ignoring %s: class %s is not in the training split', d, cls)
      continue
    for f in sorted(os.listdir(d)):
      p = os.path.join(d, f)
      if os.path.isfile(p) and not f.startswith('.'):
        paths.append(p)
        labels.append(class_to_index[cls])
  if not paths:
    raise errors.DataError(f'The {split_name} folder {root} holds no images in class '
                           'subfolders (<class>/<image>).')
  return paths, np.asarray(labels, np.int32)


def _scan(paths: list[str], labels: np.ndarray,
          workers: int | None) -> tuple[list[str], np.ndarray]:
  """Drops the files TensorFlow cannot decode, with a warning naming each."""
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
    logging.warning('Skipped %d undecodable file(s) of %d', len(bad), len(paths))
  return [p for p, g in zip(paths, good) if g], labels[np.asarray(good, bool)]


def _folder(input_config: ml_collections.ConfigDict, data_dir: str) -> Source:
  train_root = os.path.join(data_dir, 'train')
  val_root = next((os.path.join(data_dir, v) for v in ('val', 'validation')
                   if os.path.isdir(os.path.join(data_dir, v))), None)
  if not os.path.isdir(train_root) or val_root is None:
    raise errors.DataError(
        f'{data_dir} is not an image folder dataset: it needs train/<class>/* and val/<class>/* '
        f'(ImageNet style, e.g. train/n01440764/n01440764_10026.JPEG). The ILSVRC-2012 '
        f'validation images come in one flat folder; sort them into val/<wnid>/ first.')
  wnids = sorted(d for d in os.listdir(train_root) if os.path.isdir(os.path.join(train_root, d)))
  index = {w: i for i, w in enumerate(wnids)}
  class_names = tuple(_readable(input_config.synset_words, data_dir, wnids))
  tr_paths, tr_labels = _list_folder(train_root, index, 'training')
  va_paths, va_labels = _list_folder(val_root, index, 'validation')
  s = input_config.image_size
  out_dir = prepared_dir(input_config, data_dir, 'folder')
  workers = input_config.prepare_workers
  if input_config.folder.prepare:
    meta = prepare_lib.load_meta(out_dir)
    if meta is None:
      meta = prepare_lib.prepare_dataset(
          out_dir, {'train': zip(tr_paths, tr_paths, tr_labels.tolist()),
                    'validation': zip(va_paths, va_paths, va_labels.tolist())},
          class_names, s, source=data_dir, storage=input_config.storage,
          resize=input_config.resize, quality=input_config.jpeg_quality, workers=workers)
    return _prepared_source('folder', out_dir, meta, input_config, class_names)
  # On the fly: decode and resize each time; bad files found by one scan.
  tr_paths, tr_labels = _scan(tr_paths, tr_labels, workers)
  va_paths, va_labels = _scan(va_paths, va_labels, workers)
  return Source('folder', class_names,
                Split(len(tr_paths), tr_labels, 'files', tr_paths, side=None,
                      resize=input_config.resize),
                Split(len(va_paths), va_labels, 'files', va_paths, side=None,
                      resize=input_config.resize), s, out_dir)


# ---------------------------------------------------------------- disk budget

# Images in the train + validation splits of the TFDS datasets that are prepared,
# known before they are downloaded or built.
KNOWN_COUNTS = {'imagenet2012': 1_281_167 + 50_000, 'imagenette': 9_469 + 3_925,
                'cifar10': 50_000 + 10_000}


@dataclasses.dataclass(frozen=True)
class DiskBudget:
  """What preparing a dataset's copy will write (`disk_budget`).

  Attributes:
    dataset: config.dataset.
    storage: input.storage.
    images: the images of both splits (files counted for a folder dataset).
    bytes_per_image: exact for 'raw', an estimate for 'jpeg' (`prepare.record_bytes`).
    location: the prepared directory ('' for the embedded dataset, held in memory).
    prepared: the copy exists already: nothing will be written.
    free_bytes: free space on the disk of `location`, None when not known.
  """
  dataset: str
  storage: str
  images: int
  bytes_per_image: int
  location: str
  prepared: bool
  free_bytes: int | None

  @property
  def total_bytes(self) -> int:
    return self.images * self.bytes_per_image

  def describe(self) -> str:
    """One line for people: the images, the bytes, where, and whether it fits."""
    size = f'{self.total_bytes / 1e9:,.2f} GB' if self.total_bytes >= 1e8 else (
        f'{self.total_bytes / 1e6:,.1f} MB')
    per = (f'{self.bytes_per_image:,} bytes' if self.storage == 'raw' else
           f'about {self.bytes_per_image / 1e3:,.1f} KB (an estimate)')
    what = (f'input.storage={self.storage!r}: {self.images:,} images x {per} = {size}')
    if not self.location:
      how = ('held in memory (the embedded dataset)' if self.dataset == 'shapes' else
             'decoded from the originals each time (input.folder.prepare=False)')
      return f'{what}, {how}: nothing prepared on disk.'
    if self.prepared:
      return f'{what}; already prepared in {self.location}: nothing to write.'
    free = ''
    if self.free_bytes is not None:
      short = ', not enough' if self.free_bytes < self.total_bytes else ''
      free = f' ({self.free_bytes / 1e9:,.1f} GB free there{short})'
    return f'{what}, to write into {self.location}{free}.'


def _free_bytes(path: str) -> int | None:
  """Free bytes on the disk that holds `path` (or its nearest existing parent)."""
  while path and not os.path.exists(path):
    parent = os.path.dirname(path)
    if parent == path:
      return None
    path = parent
  return shutil.disk_usage(path).free if path else None


def disk_budget(dataset: str, data_dir: str,
                input_config: ml_collections.ConfigDict) -> DiskBudget:
  """What preparing `dataset` with `input_config` will write, before anything is read:
  images (known counts for the TFDS datasets, counted files for a folder) x the bytes
  of one record. `input_config` is assumed checked (`check_input_config`).

  Raises:
    errors.DataError: a folder dataset whose folders are missing.
  """
  data_dir = expand(data_dir)
  storage, s = input_config.storage, input_config.image_size
  per_image = prepare_lib.record_bytes(s, storage)
  if dataset == 'shapes':
    images = input_config.shapes.train_examples + input_config.shapes.eval_examples
    return DiskBudget(dataset, storage, images, per_image, '', False, None)
  if dataset == 'folder':
    train_root, val_root = os.path.join(data_dir, 'train'), None
    for name in ('val', 'validation'):
      if os.path.isdir(os.path.join(data_dir, name)):
        val_root = os.path.join(data_dir, name)
    if not os.path.isdir(train_root) or val_root is None:
      raise errors.DataError(f'{data_dir} has no train/ and val/ folders of class subfolders.')
    images = sum(len(files) for root in (train_root, val_root)
                 for _, _, files in os.walk(root))
    if not input_config.folder.prepare:
      return DiskBudget(dataset, storage, images, per_image, '', False, None)
  else:
    images = KNOWN_COUNTS[dataset]
  out_dir = prepared_dir(input_config, data_dir, dataset)
  return DiskBudget(dataset, storage, images, per_image, out_dir,
                    prepare_lib.load_meta(out_dir) is not None, _free_bytes(out_dir))


# ---------------------------------------------------------------- entry

_READERS = {'shapes': _shapes, 'imagenet2012': _imagenet2012, 'imagenette': _imagenette,
            'folder': _folder, 'cifar10': _cifar10}


def load_source(dataset: str, data_dir: str, input_config: ml_collections.ConfigDict) -> Source:
  """The readers of `dataset` (one of DATASETS) in `data_dir`, generating or preparing it first
  when missing. `input_config` is assumed checked (`check_input_config`)."""
  data_dir = expand(data_dir)
  if dataset != 'shapes' and not os.path.isdir(data_dir):
    raise errors.DataError(
        f'The data directory {data_dir} (config.data_dir) does not exist. Create it and put the '
        f'{dataset} data there, or point --config.data_dir at it.')
  source = _READERS[dataset](input_config, data_dir)
  size = input_config.image_size
  if source.image_size != size:
    raise errors.DataError(
        f'{source.location} holds {source.image_size}px images but '
        f'config.input.image_size={size}; set input.prepared_dir to a new directory.')
  return source
