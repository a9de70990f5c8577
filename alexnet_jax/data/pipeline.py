"""tf.data train and eval datasets with the paper's preprocessing.

Training (sections 2 and 4.1), per example: a random C x C crop, a random
horizontal reflection, the mean image subtracted, PCA lighting added. The
host does the part that needs the image file: it draws the crop offsets, the
reflection and the lighting alphas, and cuts the uint8 crop (with S x S JPEG
records only the crop window is decoded, `tf.io.decode_and_crop_jpeg`; raw
records are sliced). The training step does the arithmetic on the
accelerator (alexnet_jax/steps.py): the float conversion, minus the mean
image cropped at the same offset (which equals "subtract the mean from the
S x S image, then crop"), the reflection, the lighting; so the host ships a
quarter of the bytes float32 would take, and does a fraction of the work.

Determinism. Global position p = s * B + i (batch s, row i, global batch B),
epoch e = p // N, index in epoch k = p % N; the example is perm_e[k] with
perm_e a seeded (seed, e) shuffle of range(N), and its crop, flip and alpha
come from the stateless key (seed, e, k) (draws.py). So batch s is a pure
function of (seed, s): `start_step` resumes exactly, and epochs follow one
another without a gap or a partial batch. The draws are made for
`DRAW_BATCHES` batches at a time, before any record is read.

Several processes: the index stream is cut into global batches before any
reading or decoding, and process j keeps rows [j*B/P, (j+1)*B/P); the P
processes together yield exactly the global batch one process would, and each
reads only its own examples (random access, see sources.py).

Output: dicts of tensors. Training: the uint8 crops and the draws
(`train_dataset`). Evaluation: images float32 in 0..255 units minus the mean
image (so roughly -128..128). Labels int32.
"""

from collections.abc import Callable
import os

import ml_collections
import numpy as np
import tensorflow as tf

from alexnet_jax import errors
from alexnet_jax.data import augment
from alexnet_jax.data import draws
from alexnet_jax.data import sources
from alexnet_jax.data import stats as stats_lib

# TensorFlow must never take the accelerator away from JAX.
try:
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:  # already initialised; harmless
  pass

# Batches an iterator prepares ahead of the step that consumes them.
PREFETCH_BATCHES = 2
# Batches whose draws one call of draws.batch_draws makes: NumPy's cost per call
# (some 500 small array operations) is then spread over this many batches' examples.
DRAW_BATCHES = 16
_MAX_EPOCHS = 1 << 40
SPLITS = ('train', 'validation')
MEANS = ('dataset', 'caffe')
CHANNEL_ORDERS = ('rgb', 'bgr')


def epoch_permutation(seed: int, epoch, n: int) -> tf.Tensor:
  """The int64 (n,) order of epoch `epoch`: a (seed, epoch)-seeded shuffle."""
  seed_pair = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
  return tf.random.experimental.stateless_shuffle(
      tf.range(n, dtype=tf.int64), seed=seed_pair, alg='philox')


def _threads(input_config: ml_collections.ConfigDict) -> int:
  """The size of the pipeline's thread pool: input.num_threads, or all cores when None."""
  return input_config.num_threads or os.cpu_count() or 1


def _options(threads: int) -> tf.data.Options:
  """Deterministic order, a private pool of `threads` threads, no autotuning.

  Autotuning runs a model thread in every iterator, and destroying the
  iterator can wait for that thread's next optimization period (3 to 10 s
  measured with TF 2.21 when a finished run closed its training stream), so
  the knobs are set here instead: each parallel map uses the whole pool and
  `PREFETCH_BATCHES` batches are kept ready.
  """
  opts = tf.data.Options()
  opts.deterministic = True
  opts.threading.private_threadpool_size = threads
  opts.threading.max_intra_op_parallelism = 1
  opts.autotune.enabled = False
  return opts


def _rows(batch_size: int, process_index: int, process_count: int) -> tuple[int, int]:
  """(rows per process, this process's first row) of a global batch."""
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f'bad process_index/count {process_index}/{process_count}')
  if batch_size % process_count:
    raise errors.ConfigError(f'The batch size {batch_size} is not divisible by the process '
                             f'count {process_count}.')
  b = batch_size // process_count
  return b, process_index * b


def _decode_full(split: sources.Split, image_size: int) -> Callable:
  """fn(record string) -> uint8 (S, S, 3)."""
  if split.side == image_size and split.storage == 'raw':
    return lambda x: tf.reshape(tf.io.decode_raw(x, tf.uint8), [image_size, image_size, 3])
  if split.side == image_size:
    def fn(x):
      img = tf.io.decode_jpeg(x, channels=3)
      return tf.ensure_shape(img, [image_size, image_size, 3])
    return fn

  def fn(x):
    if split.kind == 'files':
      x = tf.io.read_file(x)
    img = tf.io.decode_image(x, channels=3, expand_animations=False)
    return augment.stored_image(img, image_size, split.resize)
  return fn


def _decode_crop(split: sources.Split, image_size: int, crop: int) -> Callable:
  """fn(record, oy, ox) -> uint8 (C, C, 3) window of the S x S image."""
  if split.side == image_size and split.storage == 'jpeg':
    # libjpeg upsamples the chroma at the border of a decoded window from
    # fewer neighbours (errors up to ~30 levels in the first column); a
    # 2-pixel margin makes the window's interior bit-identical to a full
    # decode, at no measurable cost.
    m = 2

    def fn(x, oy, ox):
      y0, x0 = tf.maximum(oy - m, 0), tf.maximum(ox - m, 0)
      y1 = tf.minimum(oy + crop + m, image_size)
      x1 = tf.minimum(ox + crop + m, image_size)
      img = tf.io.decode_and_crop_jpeg(x, tf.stack([y0, x0, y1 - y0, x1 - x0]), channels=3)
      img = img[oy - y0:oy - y0 + crop, ox - x0:ox - x0 + crop]
      return tf.ensure_shape(img, [crop, crop, 3])
    return fn
  full = _decode_full(split, image_size)
  return lambda x, oy, ox: full(x)[oy:oy + crop, ox:ox + crop]


def _crop_size(info: sources.DatasetInfo, input_config: ml_collections.ConfigDict) -> int:
  """input.crop_size, checked against the stored side of the data."""
  if input_config.crop_size > info.image_size:
    raise errors.ConfigError(f'input.crop_size={input_config.crop_size} is larger than the '
                             f'{info.image_size}px images of {info.location}.')
  return input_config.crop_size


def split_of(info: sources.DatasetInfo, split: str) -> sources.Split:
  """The reader of split 'train' or 'validation'; errors.DataError for any other name."""
  if split not in SPLITS:
    raise errors.DataError(f'The dataset {info.name} in {info.location} has no split {split!r}; '
                           f'choose one of {", ".join(SPLITS)}.')
  return info.source.train if split == 'train' else info.source.eval


def input_mean(input_config: ml_collections.ConfigDict,
               stats: stats_lib.DatasetStats | None) -> np.ndarray:
  """The mean subtracted from every S x S image (section 2), float32 (S, S, 3) in RGB order.

  input.mean='dataset': the training split's mean image (`stats`, which only
  this choice needs; S = input.image_size). 'caffe': the (S, S, 3)
  BGR image in input.mean_file (an absolute path: the caller resolves a
  workdir-relative one), else the per-channel input.mean_bgr, both reversed to RGB.

  Raises:
    errors.DataError: the mean file is missing, unreadable or not (S, S, 3).
  """
  s = input_config.image_size
  if input_config.mean == 'dataset':
    return stats.mean_image
  path = input_config.mean_file
  if path is None:
    bgr = np.asarray(input_config.mean_bgr, np.float32)
    return np.broadcast_to(bgr[::-1], (s, s, 3)).astype(np.float32)
  try:
    mean = np.load(path)
  except (OSError, ValueError) as e:
    raise errors.DataError(
        f'Cannot read the mean image {path} (input.mean_file): {e}. Restore the file, or set '
        'input.mean_file to None to use input.mean_bgr.') from None
  if mean.shape != (s, s, 3):
    raise errors.DataError(f'The mean image {path} (input.mean_file) has shape {mean.shape}, but '
                           f'the images are {s}x{s}x3 (input.image_size); use a mean of that size.')
  return np.ascontiguousarray(mean[..., ::-1], np.float32)


def to_network_order(images: tf.Tensor, input_config: ml_collections.ConfigDict) -> tf.Tensor:
  """Mean-subtracted RGB images (..., 3) in the channel order the network takes."""
  return tf.reverse(images, [-1]) if input_config.channel_order == 'bgr' else images


def eval_views(image: tf.Tensor, mean: tf.Tensor, input_config: ml_collections.ConfigDict,
               ten_crop: bool) -> tf.Tensor:
  """The test-time input of one uint8 (S, S, 3) RGB image: minus `mean`, then the center
  crop (C, C, 3) or the ten views (10, C, C, 3) of section 4.1, in the network's channel order."""
  img = tf.cast(image, tf.float32) - mean
  crop = input_config.crop_size
  img = augment.ten_crop(img, crop) if ten_crop else augment.center_crop(img, crop)
  return to_network_order(img, input_config)


def train_dataset(info: sources.DatasetInfo, input_config: ml_collections.ConfigDict, *,
                  batch_size: int, seed: int, start_step: int = 0, process_index: int = 0,
                  process_count: int = 1) -> tf.data.Dataset:
  """The infinite training dataset: the host's part of the training transformation.

  Elements (b = B/P rows): {'image': uint8 (b, C, C, 3), the crop window of
  the stored S x S image, not reflected; 'label': int32 (b,); 'offset': int32
  (b, 2), the window's top-left corner (y, x) in the S x S image; 'flip':
  bool (b,), reflect horizontally; 'alpha': float32 (b, 3), the lighting
  draws (zeros when input.lighting_std is 0)}. The training step turns them
  into the network's input (`alexnet_jax.steps`, with `train_transform`'s
  constants). See the module docstring for the order and the draws.

  Args:
    info: the `DatasetInfo` of the data.
    input_config: the config's `input` fields (crop_size, lighting_std,
      num_threads).
    batch_size: B, global (over all processes).
    seed: the seed of the order and of the augmentation.
    start_step: the first batch s.
    process_index, process_count: this process j and P; it yields rows
      [j*B/P, (j+1)*B/P) of every global batch.
  """
  split = info.source.train
  n = split.num_examples
  s_img = info.image_size
  crop = _crop_size(info, input_config)
  std = float(input_config.lighting_std)
  seed = int(seed)
  batch = int(batch_size)
  b, row0 = _rows(batch, process_index, process_count)
  labels = tf.constant(split.labels, tf.int32)

  start = int(start_step) * batch
  e0, k0 = start // n, start % n

  def epoch(e):
    perm = epoch_permutation(seed, e, n)
    first = tf.where(e == e0, tf.constant(k0, tf.int64), 0)
    k = tf.range(first, n, dtype=tf.int64)
    return tf.data.Dataset.from_tensor_slices((tf.fill(tf.shape(k), e), k, tf.gather(perm, k)))

  ds = tf.data.Dataset.range(e0, _MAX_EPOCHS).flat_map(epoch)
  ds = ds.batch(batch, drop_remainder=True)  # the global batch
  # This process's rows (cheap: before any reading or decoding).
  ds = ds.map(lambda e, k, i: (e[row0:row0 + b], k[row0:row0 + b], i[row0:row0 + b]))

  def draw(e, k, i):  # (DRAW_BATCHES, b) each; section 4.1's draws, all at once
    def fn(e, k):
      offset, flip, alpha_key, alpha_counter = draws.batch_draws(seed, e.ravel(), k.ravel(),
                                                                 s_img, crop)
      shape = e.shape
      return (offset.reshape(*shape, 2), flip.reshape(shape),
              alpha_key.reshape(*shape, 1), alpha_counter.reshape(*shape, 2))
    out = tf.numpy_function(fn, [e, k], [tf.int32, tf.bool, tf.uint64, tf.uint64],
                            stateful=False)
    shapes = ([DRAW_BATCHES, b, 2], [DRAW_BATCHES, b], [DRAW_BATCHES, b, 1],
              [DRAW_BATCHES, b, 2])
    return (i, *(tf.ensure_shape(t, s) for t, s in zip(out, shapes)))

  ds = ds.batch(DRAW_BATCHES).map(draw).unbatch()
  threads = _threads(input_config)

  def alphas(alpha_key, alpha_counter):  # (b, 3)
    if std == 0:
      return tf.zeros([b, 3])
    return tf.map_fn(lambda kc: draws.lighting_alpha(kc[0], kc[1], std),
                     (alpha_key, alpha_counter), fn_output_signature=tf.float32)

  if split.side == s_img and split.storage == 'raw':
    # Raw records: a whole batch at once, the windows cut as the records are read.
    crops = split.crop_reader(crop)
    ds = ds.map(lambda i, offset, flip, alpha_key, alpha_counter: {
        'image': crops(i, offset), 'label': tf.gather(labels, i), 'offset': offset,
        'flip': flip, 'alpha': alphas(alpha_key, alpha_counter)},
                num_parallel_calls=threads, deterministic=True)
  else:
    # The records of a batch's rows, read in one call, then decoded one by one.
    read, decode_crop = split.batch_reader(), _decode_crop(split, s_img, crop)
    ds = ds.map(lambda i, *drawn: (read(i), tf.gather(labels, i), *drawn))
    ds = ds.unbatch()

    def one(record, label, offset, flip, alpha_key, alpha_counter):
      alpha = draws.lighting_alpha(alpha_key, alpha_counter, std) if std > 0 else tf.zeros([3])
      return {'image': decode_crop(record, offset[0], offset[1]), 'label': label,
              'offset': offset, 'flip': flip, 'alpha': alpha}

    ds = ds.map(one, num_parallel_calls=threads, deterministic=True)
    ds = ds.batch(b, drop_remainder=True)
  ds = ds.prefetch(PREFETCH_BATCHES)
  return ds.with_options(_options(threads))


def eval_dataset(info: sources.DatasetInfo, input_config: ml_collections.ConfigDict, *,
                 batch_size: int, ten_crop: bool = False, process_index: int = 0,
                 process_count: int = 1, split: str = 'validation') -> tf.data.Dataset:
  """One unshuffled, unaugmented pass over a split, padded to whole global batches.

  Args:
    info: the `DatasetInfo` of the data.
    input_config: the config's `input` fields (crop_size, num_threads, mean,
      mean_file, mean_bgr, channel_order).
    batch_size: B, global (over all processes).
    ten_crop: the ten views of section 4.1 instead of the center crop.
    process_index, process_count: this process j and P, as in `train_dataset`.
    split: 'validation' or 'train' (`SPLITS`).
  """
  split = split_of(info, split)
  n = split.num_examples
  s_img = info.image_size
  _crop_size(info, input_config)
  mean = tf.constant(input_mean(input_config, info.stats), tf.float32)
  batch = int(batch_size)
  b, row0 = _rows(batch, process_index, process_count)
  total = -(-n // batch) * batch  # ceil to whole global batches
  labels = tf.constant(split.labels, tf.int32)
  read = split.batch_reader()
  decode = _decode_full(split, s_img)

  ds = tf.data.Dataset.range(total).batch(batch)

  def rows(p):
    p = p[row0:row0 + b]
    valid = p < n
    idx = tf.where(valid, p, 0)
    lab = tf.where(valid, tf.gather(labels, idx), 0)
    return read(idx), lab, valid

  ds = ds.map(rows).unbatch()

  def one(record, label, valid):
    return {'image': eval_views(decode(record), mean, input_config, ten_crop), 'label': label,
            'mask': valid}

  threads = _threads(input_config)
  ds = ds.map(one, num_parallel_calls=threads, deterministic=True)
  ds = ds.batch(b).prefetch(PREFETCH_BATCHES)
  return ds.with_options(_options(threads))


def stored_images(split: sources.Split, image_size: int, batch: int = 64) -> tf.data.Dataset:
  """uint8 (n, S, S, 3) batches of a split in index order (for the statistics)."""
  read = split.batch_reader()
  decode = _decode_full(split, image_size)
  ds = tf.data.Dataset.range(split.num_examples).batch(256).map(read).unbatch()
  threads = os.cpu_count() or 1
  ds = ds.map(decode, num_parallel_calls=threads, deterministic=True)
  return ds.batch(batch).prefetch(PREFETCH_BATCHES).with_options(_options(threads))
