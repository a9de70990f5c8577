"""Input pipeline of alexnet_jax (TensorFlow is imported only in this package).

Public API used by the training loop::

    from alexnet_jax import data
    info = data.get_dataset_info(config)       # data.DatasetInfo
    it = data.train_iterator(config, info, start_step=0,
                             process_index=0, process_count=1)
    it = data.eval_iterator(config, info, ten_crop=False,
                            process_index=0, process_count=1)

``get_dataset_info`` generates the embedded dataset / prepares the SxS JPEGs /
computes the statistics when missing, and reuses them when present.
Train batches: {'image': float32 (B/P, C, C, 3), 'label': int32 (B/P,)},
infinite; batch s is a pure function of (config.seed, s). Eval batches (one
pass): {'image': float32 (B/P, C, C, 3) or (B/P, 10, C, C, 3) with ten_crop,
'label': int32 (B/P,), 'mask': bool (B/P,)}, last batch padded with
mask False. Pixel scale: 0..255 minus the mean image (plus PCA lighting for
training). Errors the user can fix raise ``data.DataError``.

Modules: synthetic (embedded TFDS dataset), stats (mean image + RGB PCA),
prepare (one-time resize to SxS JPEG), augment (crops, flips, lighting,
ten-crop), sources (dataset readers), pipeline (tf.data), bench (benchmark),
fields (config fields and defaults).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Iterator

from alexnet_jax.data import fields
from alexnet_jax.data.fields import default_config

# Imported on first use (PEP 562), so that `python -m alexnet_jax.data.stats`
# and `python -m alexnet_jax.data.prepare` do not find their own module
# already imported by this package.
_LAZY = {'DataError': 'alexnet_jax.data.sources', 'DatasetStats': 'alexnet_jax.data.stats'}


def __getattr__(name):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

__all__ = ['DataError', 'DatasetInfo', 'DatasetStats', 'default_config',
           'get_dataset_info', 'train_iterator', 'eval_iterator']


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetInfo:
  """What the training loop needs to know about a dataset.

  num_classes, num_train_examples, num_eval_examples: ints (after dropping
  undecodable files); class_names: readable names, index = label;
  stats: DatasetStats (mean image (S,S,3) float32 in 0..255 units, RGB
  eigvals (3,), eigvecs (3,3) columns); name: config.dataset; image_size: S;
  location: directory of the (prepared) data; source: the readers (internal).
  """
  num_classes: int
  num_train_examples: int
  num_eval_examples: int
  class_names: tuple
  stats: DatasetStats
  name: str = ''
  image_size: int = 0
  location: str = ''
  source: object = dataclasses.field(default=None, repr=False)


def get_dataset_info(config, recompute_stats: bool = False) -> DatasetInfo:
  """Loads (generating/preparing when missing) the dataset and its stats."""
  from alexnet_jax.data import pipeline
  from alexnet_jax.data import sources as _sources
  from alexnet_jax.data import stats as _stats
  source = _sources.load_source(config)
  s = source.image_size
  stats_dir = fields.expand(fields.get(config, 'stats_dir')) or source.location

  def batches():
    return pipeline.stored_images(source.train, s).as_numpy_iterator()

  st = _stats.load_or_compute(stats_dir, s, batches, force=recompute_stats)
  if st.mean_image.shape != (s, s, 3):
    raise _sources.DataError(f'{_stats.stats_path(stats_dir, s)} has a mean image of '
                    f'shape {st.mean_image.shape}, expected {(s, s, 3)}; '
                    f'delete it to recompute.')
  return DatasetInfo(
      num_classes=len(source.class_names),
      num_train_examples=source.train.num_examples,
      num_eval_examples=source.eval.num_examples,
      class_names=tuple(source.class_names), stats=st, name=source.name,
      image_size=s, location=source.location, source=source)


def train_iterator(config, info: DatasetInfo, start_step: int = 0,
                   process_index: int = 0,
                   process_count: int = 1) -> Iterator[dict]:
  """Infinite iterator of training batches (dicts of NumPy arrays)."""
  from alexnet_jax.data import pipeline
  return pipeline.train_dataset(config, info, start_step, process_index,
                                process_count).as_numpy_iterator()


def eval_iterator(config, info: DatasetInfo, ten_crop: bool = False,
                  process_index: int = 0,
                  process_count: int = 1) -> Iterator[dict]:
  """One pass over the evaluation split (dicts of NumPy arrays)."""
  from alexnet_jax.data import pipeline
  return pipeline.eval_dataset(config, info, ten_crop, process_index,
                               process_count).as_numpy_iterator()

