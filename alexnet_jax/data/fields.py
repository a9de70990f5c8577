"""The config fields the input pipeline reads, with their defaults.

Top level: ``dataset``, ``data_dir``, ``batch_size`` (global), ``seed``, and
optionally ``eval_batch_size`` (default: ``batch_size``). Everything else lives
in ``config.input``; a field missing there takes the default below, so older
configs keep working.
"""

from __future__ import annotations

import os

import ml_collections

DATASETS = ('shapes', 'imagenet2012', 'imagenette', 'folder')

INPUT_DEFAULTS = dict(
    image_size=256,         # stored side S (section 2: 256); 64 for the demo
    crop_size=224,          # training/test crop C (section 4.1: 224)
    lighting_std=0.1,       # std of alpha_i (section 4.1); 0 disables
    lighting_convention='paper',  # 'paper' (eigval) | 'cuda_convnet2' (sqrt)
    cache=False,            # keep the encoded (prepared) JPEG bytes in memory
    prepare=True,           # read prepared SxS JPEGs (fast); False: decode and
                            # resize the original files on the fly (folder only)
    prepared_dir='',        # default: <data_dir>/alexnet_jax_prepared/<name>_<S>
    prepare_workers=0,      # threads of the one-time prepare step; 0 = all cores
    jpeg_quality=90,        # of the prepared JPEGs
    num_threads=0,          # tf.data private thread pool; 0 = all cores
    stats_dir='',           # where stats_<S>.npz lives; default next to the data
    synthetic_train_examples=5000,   # 'shapes' only
    synthetic_eval_examples=1000,    # 'shapes' only
    synthetic_seed=0,                # 'shapes' only: generation seed
    imagenette_config='full-size-v2',  # TFDS config of 'imagenette'
    synset_words='',        # 'folder': optional "<wnid> <words>" file
)


def get(config, name):
  """config.input.<name>, or its default."""
  inp = config.get('input', None)
  if inp is not None and name in inp:
    return inp[name]
  return INPUT_DEFAULTS[name]


def expand(path: str) -> str:
  return os.path.abspath(os.path.expanduser(path)) if path else path


def default_config(dataset='shapes', data_dir='~/tensorflow_datasets',
                   image_size=None, batch_size=128, seed=0,
                   **input_overrides) -> ml_collections.ConfigDict:
  """A complete config for the data fields only (used by CLIs and tests)."""
  c = ml_collections.ConfigDict()
  c.dataset = dataset
  c.data_dir = data_dir
  c.batch_size = batch_size
  c.seed = seed
  c.input = ml_collections.ConfigDict(dict(INPUT_DEFAULTS))
  if image_size is None:
    image_size = 64 if dataset == 'shapes' else 256
  c.input.image_size = image_size
  if dataset == 'shapes' and 'crop_size' not in input_overrides:
    c.input.crop_size = image_size * 7 // 8
  for k, v in input_overrides.items():
    c.input[k] = v
  return c
