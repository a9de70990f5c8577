"""Every config field the project reads, with the paper's values as defaults.

The files in experiments/ start from `base_config()` and change what their
setting needs, so docs, notebooks and tests agree on the names. Any field can
be overridden on the command line: `--config.batch_size=256`,
`--config.model.towers=1`, `--config.mesh.model=2`.
"""

import ml_collections
from ml_collections import config_dict

from alexnet_jax.data import fields as data_fields


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Data (alexnet_jax.data): 'shapes' (embedded, offline), 'imagenet2012',
  # 'imagenette', or 'folder' (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG under data_dir).
  c.dataset = 'imagenet2012'
  c.data_dir = '~/tensorflow_datasets'
  c.input = ml_collections.ConfigDict(dict(data_fields.INPUT_DEFAULTS))

  # Schedule (section 5): batch 128, ~90 epochs.
  c.batch_size = 128            # global, over all devices and processes
  c.eval_batch_size = 0         # global; 0: batch_size (ten-crop batches hold 10x the images)
  c.num_epochs = 90
  c.num_train_steps = -1        # -1: num_epochs of the training split
  c.eval_every_steps = -1       # -1: once per epoch
  c.checkpoint_every_steps = 2000
  c.keep_checkpoints = 3
  c.log_every_steps = 100
  c.seed = 0
  c.ten_crop_eval = True        # final evaluation with ten crops (section 4.1)

  # The paper's update (section 5) and learning-rate policy.
  c.learning_rate = 0.01
  c.momentum = 0.9
  c.weight_decay = 5e-4
  c.decay_biases = True         # False: no weight decay on biases (cuda-convnet2)
  c.bias_lr_multiplier = 1.0    # 2.0: biases learn twice as fast (cuda-convnet2)
  c.lr_policy = 'plateau'       # 'plateau' (the paper) or 'steps'
  c.plateau = ml_collections.ConfigDict(
      dict(patience=2, min_delta=0.001, factor=0.1, max_drops=3))
  c.lr_steps = ml_collections.ConfigDict(dict(boundaries=[], factor=0.1))

  # The network (alexnet_jax.model.AlexNet fields; num_classes comes from the
  # data and image_size from input.crop_size).
  c.model = ml_collections.ConfigDict(dict(
      towers=2, conv_features=config_dict.placeholder(tuple),
      fc_features=4096, lrn=True, lrn_convention='paper', pool_window=3, pool_stride=2,
      activation='relu', conv6=False, dropout_rate=0.5, init_std=0.01, dtype='float32'))

  # Devices: data=-1 uses all devices not on the model axis; model=-1 puts the
  # two towers on two devices when the devices pair up (section 3.2).
  c.mesh = ml_collections.ConfigDict(dict(data=-1, model=-1))
  # Several processes (machines): see docs/parallel.md.
  c.distributed = ml_collections.ConfigDict(dict(
      enabled=False, coordinator_address='', num_processes=-1, process_id=-1))
  return c
