r"""The paper's recipe on an ImageNet-style image folder.

  python -m alexnet_jax.main --workdir=/tmp/folder --config=experiments/folder.py \
      --config.data_dir=/data/imagenet

data_dir holds train/<class>/*.JPEG and val/<class>/*.JPEG (class names from
the folder names; an optional "<wnid> <words>" file via
--config.input.synset_words gives readable labels). Undecodable files are
skipped and counted with a warning naming each one. The first run writes
256x256 JPEGs and the dataset statistics next to the data, then trains.

Result: depends on the folder; on the full ILSVRC-2012 folder the paper
reports 40.7% / 18.2% top-1 / top-5 validation error (not yet measured here).
"""

from alexnet_jax import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.dataset = 'folder'
  config.data_dir = config_lib.placeholder(str)  # required: --config.data_dir=/path/to/folder
  return config
