r"""The whole system, scaled down to run on a laptop CPU: the embedded dataset.

  python -m alexnet_jax.main --workdir=/tmp/alexnet_demo --config=experiments/demo.py

The two-tower network with all of its parts (LRN, overlapping pooling,
dropout, the paper's optimizer and plateau schedule, mean image, crops,
reflections, PCA lighting, ten-crop test) on 'shapes', a 12-class dataset
generated offline (5,000 training / 1,000 validation 72x72 JPEGs), with 64x64
crops and narrower layers.

Result (measured 2026-11-28 on a 2-core AMD EPYC CPU machine, the command
above with --config.data_dir pointing at an empty folder, the paper's form of
dropout): final validation top-1 / top-5 error 0.4% / 0.0% with the center
crop and 0.5% / 0.0% with ten crops. The plateau policy divided the learning
rate by 10 once, at step 1014. The whole run took 466 s wall time while other
jobs kept the machine's load average at 4-8 (dataset generation and
statistics 44 s, 1,170 steps at 390-500 images/s, 30 evaluations, the ten-crop
test); on the idle machine an earlier version took 369 s. The network learns
colour first (top-1 error 74%, top-5 error 3% after one epoch: the right
colour family, any shape), then shape.
"""

from alexnet_jax.config import base_config


def get_config():
  config = base_config()
  config.dataset = 'shapes'
  config.data_dir = '~/tensorflow_datasets'
  config.input.image_size = 72
  config.input.crop_size = 64
  config.model.conv_features = (48, 128, 192, 192, 128)
  config.model.fc_features = 1024
  # Narrow layers pass on less signal at N(0, 0.01) (section 5): each layer scales
  # the spread of its input by about sqrt(fan_in) * std, so start wider.
  config.model.init_std = 0.03
  config.num_epochs = 30
  config.checkpoint_every_steps = 200
  config.log_every_steps = 20
  config.plateau.patience = 3
  return config
