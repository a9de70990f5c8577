"""The input pipeline of alexnet_jax: the only package that imports TensorFlow.

    from alexnet_jax import data
    data.check_input_config(config.dataset, config.input)  # errors.ConfigError, before anything
    info = data.get_dataset_info(config.dataset, config.data_dir, config.input)
    batches = data.train_iterator(info, config.input, batch_size=128, seed=0, start_step=0,
                                  process_index=0, process_count=1)
    transform = data.train_transform(info, config.input)  # for steps.make_train_step
    batches = data.eval_iterator(info, config.input, batch_size=128, ten_crop=False,
                                 process_index=0, process_count=1, split='validation')
    views = data.image_views('photo.jpg', info, config.input, ten_crop=False)  # one file

`get_dataset_info` generates the embedded dataset, prepares the S x S JPEGs
and computes the statistics when missing, and reuses them when present.
Training batches: {'image': uint8 (B/P, C, C, 3) crops, 'label': int32
(B/P,), and the draws 'offset', 'flip', 'alpha'}, an infinite stream in
which batch s is a pure function of (seed, s); the training step subtracts
the mean image, reflects and adds PCA lighting on the accelerator
(`train_transform` holds its constants). Evaluation batches (one pass):
{'image': float32 (B/P, C, C, 3), or (B/P, 10, C, C, 3) with ten_crop,
'label': int32 (B/P,), 'mask': bool (B/P,)}, the last batch padded with mask
False; pixels 0..255 minus the mean image. Problems the user can fix raise
`alexnet_jax.errors.ConfigError` (the config) or `errors.DataError` (the data).

Modules: dataset (these entry points), sources (the dataset readers),
pipeline (tf.data), draws (the training examples' random draws), augment
(crops, lighting scale, ten crops), stats (mean image and RGB PCA), prepare
(the one-time resize to S x S JPEG or raw records), synthetic (the embedded
dataset), throughput (the input benchmark). Nothing here imports alexnet_jax
outside this package except alexnet_jax.errors.
"""

from alexnet_jax.data.dataset import TrainTransform
from alexnet_jax.data.dataset import check_input_config
from alexnet_jax.data.dataset import eval_iterator
from alexnet_jax.data.dataset import get_dataset_info
from alexnet_jax.data.dataset import image_views
from alexnet_jax.data.dataset import input_mean
from alexnet_jax.data.dataset import train_iterator
from alexnet_jax.data.dataset import train_transform
from alexnet_jax.data.pipeline import SPLITS
from alexnet_jax.data.sources import DATASETS
from alexnet_jax.data.sources import DatasetInfo
from alexnet_jax.data.sources import disk_budget
from alexnet_jax.data.stats import DatasetStats

__all__ = ['DATASETS', 'SPLITS', 'DatasetInfo', 'DatasetStats', 'TrainTransform',
           'check_input_config', 'disk_budget', 'eval_iterator', 'get_dataset_info',
           'image_views', 'input_mean', 'train_iterator', 'train_transform']
