r"""The whole system, scaled down to run on a laptop CPU: the embedded dataset.

  python -m alexnet_jax.main --workdir=/tmp/alexnet_demo --config=experiments/demo.py

The two-tower network with all of its parts (LRN, overlapping pooling,
dropout, the paper's optimizer and plateau schedule, mean image, crops,
reflections, PCA lighting, ten-crop test) on 'shapes', a 12-class dataset
generated offline (5,000 training / 1,000 validation 72x72 JPEGs), with 64x64
crops and narrower layers.

Result: MEASURED_RESULT
"""

from alexnet_jax.config import base_config


def get_config():
  config = base_config()
  config.dataset = 'shapes'
  config.data_dir = '~/tensorflow_datasets'
  config.input.image_size = 72
  config.input.crop_size = 64
  config.input.cache = True
  config.model.conv_features = (48, 128, 192, 192, 128)
  config.model.fc_features = 1024
  config.num_epochs = 30
  config.eval_every_steps = -1
  config.checkpoint_every_steps = 200
  config.log_every_steps = 20
  config.plateau.patience = 3
  return config
