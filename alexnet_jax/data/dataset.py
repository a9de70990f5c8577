"""The input pipeline's entry points: check the config, load a dataset, iterate over it.

`input_config` is a config's `input` block (alexnet_jax/config.py lists its
fields and defaults); a field that is None there is derived (the comment next
to it says from what).
"""

from collections.abc import Iterator
import dataclasses
import math
import re
from typing import Any

import ml_collections
import numpy as np
import tensorflow as tf

from alexnet_jax import errors
from alexnet_jax.data import augment
from alexnet_jax.data import pipeline
from alexnet_jax.data import prepare
from alexnet_jax.data import sources
from alexnet_jax.data import stats as stats_lib
from alexnet_jax.data import synthetic


def _field(input_config: ml_collections.ConfigDict, name: str) -> Any:
  """input.<name> (dotted for the nested options: 'shapes.seed')."""
  value = input_config
  for part in name.split('.'):
    if not isinstance(value, (ml_collections.ConfigDict, dict)) or part not in value:
      raise errors.ConfigError(
          f'The config has no field input.{name}; the fields and their meaning are in '
          'alexnet_jax/config.py (build configs from its base_config()).')
    value = value[part]
  return value


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
  return _is_int(value) and value >= 1


def _none_or_positive(value: Any) -> bool:
  return value is None or _positive(value)


def _none_or_path(value: Any) -> bool:
  return value is None or (isinstance(value, str) and value != '')


def _shapes_classes(value: Any, num_classes: int) -> bool:
  """None, or at least two distinct class indices of the embedded dataset."""
  if value is None:
    return True
  return (isinstance(value, (list, tuple)) and len(value) >= 2 and len(set(value)) == len(value)
          and all(_is_int(c) and 0 <= c < num_classes for c in value))


def check_input_config(dataset: str, input_config: ml_collections.ConfigDict) -> None:
  """Raises errors.ConfigError naming every field of `dataset` and `input_config` that cannot work.

  Reads the fields only (no files, no TensorFlow), so a run can call it before
  it builds anything.
  """
  if dataset not in sources.DATASETS:
    raise errors.ConfigError(
        f'Unknown dataset {dataset!r} (config.dataset). Choose one of: '
        f'{", ".join(sources.DATASETS)}. "shapes" is the embedded offline dataset used by the '
        'demo.')
  problems = []

  def check(name, ok, requirement):
    value = _field(input_config, name)
    if not ok(value):
      problems.append(f'input.{name}={value!r} {requirement}')
    return value

  size = check('image_size', _positive, 'must be a positive integer')
  crop = check('crop_size', _positive, 'must be a positive integer')
  check('resize', lambda v: v in augment.RESIZES,
        f'must be one of {", ".join(repr(r) for r in augment.RESIZES)}')
  if _positive(size) and _positive(crop) and crop > size:
    problems.append(f'input.crop_size={crop} is larger than input.image_size={size}')
  check('lighting_std', lambda v: _is_number(v) and math.isfinite(v) and v >= 0,
        'must be a number >= 0 (0: no lighting noise)')
  check('lighting_convention', lambda v: v in augment.LIGHTING_CONVENTIONS,
        f'must be one of {", ".join(repr(c) for c in augment.LIGHTING_CONVENTIONS)}')
  for name in ('num_threads', 'prepare_workers'):
    check(name, _none_or_positive, 'must be None (all cores) or a positive integer')
  check('channel_order', lambda v: v in pipeline.CHANNEL_ORDERS,
        f'must be one of {", ".join(repr(c) for c in pipeline.CHANNEL_ORDERS)}')
  check('mean', lambda v: v in pipeline.MEANS,
        f'must be one of {", ".join(repr(c) for c in pipeline.MEANS)}')
  check('mean_bgr', lambda v: isinstance(v, (list, tuple)) and len(v) == 3
        and all(_is_number(x) for x in v), 'must be three numbers (B, G, R)')
  for name in ('stats_dir', 'prepared_dir', 'synset_words', 'mean_file'):
    check(name, _none_or_path, 'must be None (the default) or a path')
  check('jpeg_quality', lambda v: _is_int(v) and 1 <= v <= 100, 'must be an integer in 1..100')
  storage = check('storage', lambda v: v in prepare.STORAGES,
                  f'must be one of {", ".join(repr(s) for s in prepare.STORAGES)}')
  check('shapes.train_examples', _positive, 'must be a positive integer')
  check('shapes.eval_examples', _positive, 'must be a positive integer')
  check('shapes.seed', lambda v: _is_int(v) and v >= 0, 'must be an integer >= 0')
  difficulty = check('shapes.difficulty', lambda v: v in synthetic.DIFFICULTIES,
                     f'must be one of {", ".join(repr(d) for d in synthetic.DIFFICULTIES)}')
  classes = synthetic.DIFFICULTIES.get(difficulty, synthetic.DIFFICULTIES['easy']).num_classes
  check('shapes.classes', lambda v: _shapes_classes(v, classes),
        f'must be None (all {classes} classes) or distinct class indices '
        f'in 0..{classes - 1}, at least two')
  check('imagenette.variant', lambda v: isinstance(v, str) and v != '',
        "must name a TFDS imagenette config ('full-size-v2', '320px-v2', ...)")
  folder_prepare = check('folder.prepare', lambda v: isinstance(v, bool),
                         'must be True or False')
  if dataset == 'folder' and storage == 'raw' and folder_prepare is False:
    problems.append("input.storage='raw' describes a prepared copy, but "
                    'input.folder.prepare=False decodes the originals each time; set one or '
                    'the other')
  if problems:
    raise errors.ConfigError('; '.join(problems) + '.')


def get_dataset_info(dataset: str, data_dir: str, input_config: ml_collections.ConfigDict, *,
                     recompute_stats: bool = False) -> sources.DatasetInfo:
  """Loads a dataset and its statistics, generating or preparing them first when missing.

  The first call generates the embedded dataset, or builds the TFDS dataset
  and prepares the S x S JPEGs, and computes the statistics (`stats_<S>.npz`
  in input.stats_dir, by default beside the data); later calls reuse them.

  Args:
    dataset: one of DATASETS (config.dataset).
    data_dir: the directory that holds or receives the data (config.data_dir).
    input_config: the config's `input` fields.
    recompute_stats: compute the statistics again even when their file exists.

  Raises:
    errors.ConfigError: the config cannot work (see `check_input_config`).
    errors.DataError: the data is missing or unreadable; the message says what to do.
  """
  check_input_config(dataset, input_config)
  if not data_dir:
    raise errors.ConfigError('config.data_dir is empty: set --config.data_dir to the directory '
                             'holding (or to receive) the dataset.')
  source = sources.load_source(dataset, data_dir, input_config)
  if not source.train.num_examples:
    raise errors.DataError(f'The training split in {source.location} holds no decodable image.')
  s = source.image_size
  stats_dir = (source.location if input_config.stats_dir is None
               else sources.expand(input_config.stats_dir))
  stats = stats_lib.load_or_compute(
      stats_dir, s, lambda: pipeline.stored_images(source.train, s).as_numpy_iterator(),
      force=recompute_stats)
  if stats.mean_image.shape != (s, s, 3):
    raise errors.DataError(f'{stats_lib.stats_path(stats_dir, s)} has a mean image of shape '
                           f'{stats.mean_image.shape}, expected {(s, s, 3)}; delete it to '
                           'recompute.')
  return sources.DatasetInfo(
      num_classes=len(source.class_names), num_train_examples=source.train.num_examples,
      num_eval_examples=source.eval.num_examples, class_names=tuple(source.class_names),
      stats=stats, name=source.name, image_size=s, location=source.location, source=source)


def _numpy_batches(dataset: tf.data.Dataset) -> Iterator[dict[str, np.ndarray]]:
  """The dataset's elements as NumPy arrays.

  The tf.data iterator (and the threads it runs) ends when this generator is
  exhausted or closed, not when Python's cycle collector reaches it: a caller's
  frame kept alive by a reference cycle (matplotlib's mathtext parser leaves
  some) would otherwise keep it running until the interpreter exits, whose
  teardown then waits seconds for tf.data's threads.
  """
  yield from dataset.as_numpy_iterator()


def train_iterator(info: sources.DatasetInfo, input_config: ml_collections.ConfigDict, *,
                   batch_size: int, seed: int, start_step: int = 0, process_index: int = 0,
                   process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """The infinite stream of training batches, from batch `start_step` on.

  A generator: `close()` it when done to stop the pipeline's threads at once.

  Batch s is a pure function of (seed, s), this process's rows b = B/P of the
  global batch B (P = process_count): {'image': uint8 (b, C, C, 3), the
  random crop; 'label': int32 (b,); 'offset': int32 (b, 2), the crop's (y, x)
  in the S x S image; 'flip': bool (b,); 'alpha': float32 (b, 3), the
  lighting draws}. The training step makes the network's input from it on the
  accelerator (`alexnet_jax.steps.make_train_step` with `train_transform`):
  float32 0..255 minus the mean image, reflected where 'flip', plus PCA
  lighting (sections 2 and 4.1).

  Args:
    info: from `get_dataset_info`.
    input_config: the config's `input` fields (crop_size, lighting_std,
      num_threads).
    batch_size: B, global (over all processes).
    seed: the seed of the order and the augmentation (config.seed).
    start_step: the first batch s (resuming at a step yields what the run had from there).
    process_index, process_count: this process and how many there are.
  """
  return _numpy_batches(pipeline.train_dataset(
      info, input_config, batch_size=batch_size, seed=seed, start_step=start_step,
      process_index=process_index, process_count=process_count))


@dataclasses.dataclass(frozen=True, eq=False)
class TrainTransform:
  """The constants of the training step's part of the input transformation.

  `alexnet_jax.steps.make_train_step` reads these fields (steps does not
  import this package): with a batch of `train_iterator` the network's input
  is (float32(image) - mean_image[window]), reflected where flip, plus
  eigvecs @ (alpha * lighting_scale) at every pixel (sections 2 and 4.1),
  channels reversed when bgr.

  Attributes:
    mean_image: float32 (S, S, 3), RGB, 0..255 units (`input_mean`).
    eigvecs: float32 (3, 3), the RGB principal components as columns.
    lighting_scale: float32 (3,) (`augment.lighting_scale`: input.lighting_convention).
    bgr: input.channel_order == 'bgr'.
  """
  mean_image: np.ndarray = dataclasses.field(repr=False)
  eigvecs: np.ndarray
  lighting_scale: np.ndarray
  bgr: bool


def train_transform(info: sources.DatasetInfo,
                    input_config: ml_collections.ConfigDict) -> TrainTransform:
  """The `TrainTransform` of `info`'s statistics and the config's input fields (mean,
  mean_file, mean_bgr, lighting_convention, channel_order).

  Raises:
    errors.ConfigError: an unknown lighting convention.
    errors.DataError: input.mean_file cannot be used.
  """
  return TrainTransform(
      mean_image=np.asarray(pipeline.input_mean(input_config, info.stats), np.float32),
      eigvecs=np.asarray(info.stats.eigvecs, np.float32),
      lighting_scale=augment.lighting_scale(info.stats.eigvals, input_config.lighting_convention),
      bgr=input_config.channel_order == 'bgr')


def eval_iterator(info: sources.DatasetInfo, input_config: ml_collections.ConfigDict, *,
                  batch_size: int, ten_crop: bool = False, process_index: int = 0,
                  process_count: int = 1,
                  split: str = 'validation') -> Iterator[dict[str, np.ndarray]]:
  """One pass over a split (the evaluation split by default), in order, padded to whole global
  batches, with the test-time preprocessing (no shuffling, no augmentation).

  Batches: {'image': float32 (B/P, C, C, 3), or (B/P, 10, C, C, 3) with
  ten_crop, 'label': int32 (B/P,), 'mask': bool (B/P,)}; the padding rows of
  the last batch have mask False.

  Args:
    info: from `get_dataset_info`.
    input_config: the config's `input` fields (crop_size, num_threads).
    batch_size: B, global (over all processes).
    ten_crop: the ten views of section 4.1 (center and corners, and their
      reflections) instead of the center crop.
    process_index, process_count: this process and how many there are.
    split: 'validation' or 'train' (row i of the global pass is example i of the split).

  Raises:
    errors.DataError: `split` is not one of `SPLITS`, or input.mean_file cannot be used.
  """
  return _numpy_batches(pipeline.eval_dataset(
      info, input_config, batch_size=batch_size, ten_crop=ten_crop, process_index=process_index,
      process_count=process_count, split=split))


def image_views(path: str, mean: np.ndarray, input_config: ml_collections.ConfigDict, *,
                ten_crop: bool = False) -> np.ndarray:
  """The test-time input of one image file, as `eval_iterator` makes it from the dataset.

  Any file TensorFlow decodes (JPEG, PNG, GIF, BMP; grayscale and CMYK become
  RGB), any size: to the S x S image as input.resize says (section 2's shorter
  side to S and central S x S, or BVLC's warp; S = input.image_size), minus
  `mean` (float32 (S, S, 3) RGB, from `input_mean`), then the
  center crop float32 (C, C, 3) or the ten views (10, C, C, 3), in the
  network's channel order.

  Raises:
    errors.DataError: the file cannot be read or is not an image.
  """
  try:
    image = prepare.decode_rgb(prepare.read_bytes(path))
    if min(image.shape[:2]) < 1:
      raise ValueError('the image is empty')
  except (tf.errors.OpError, OSError, ValueError) as e:
    why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    why = re.sub(r'\{\{.*?\}\}\s*|\s*\[Op:\w+\]', '', why)  # TensorFlow's op decorations
    raise errors.DataError(f'{path} is not an image this program can read ({why}); give JPEG, '
                           'PNG, GIF or BMP files.') from None
  image = augment.stored_image(image, input_config.image_size, input_config.resize)
  return pipeline.eval_views(image, tf.constant(mean, tf.float32), input_config, ten_crop).numpy()


def input_mean(input_config: ml_collections.ConfigDict,
               stats: stats_lib.DatasetStats | None = None) -> np.ndarray:
  """The mean subtracted from every S x S image, float32 (S, S, 3), RGB (see input.mean).

  stats: the dataset's statistics (`get_dataset_info(...).stats`), needed only
  for input.mean='dataset'.

  Raises:
    errors.ConfigError: input.mean='dataset' without `stats`.
    errors.DataError: input.mean_file cannot be used.
  """
  if input_config.mean == 'dataset' and stats is None:
    raise errors.ConfigError("input.mean='dataset' needs the dataset's statistics.")
  return pipeline.input_mean(input_config, stats)
