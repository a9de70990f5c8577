r"""Section 7's claim: removing a middle convolutional layer costs about 2% top-1.

  python -m alexnet_jax.main --workdir=/tmp/minus_conv4 --config=experiments/minus_conv.py
  python -m alexnet_jax.main --workdir=/tmp/minus_conv3 --config=experiments/minus_conv.py:conv3
  python -m alexnet_jax.tools.compare --workdirs=/tmp/alexnet,/tmp/minus_conv4,/tmp/minus_conv3

experiments/paper.py without conv4 (the default), conv2 or conv3, the
middle layers (model.remove_conv; conv1 reads the image, conv5 feeds fc6).
The next layer reads the maps of the one before (alexnet_jax/model.py):
without conv4, conv5 reads conv3's 192 maps per tower; without conv2,
pool2 pools conv1's 48 maps per tower and conv3 reads both towers' 96.
Without conv3 the towers do not meet before fc6: conv3 is their only
convolutional link (section 3.2), and conv4 reads its own tower's pool2,
so that variant also tests the cross-tower link, not depth alone. fc6 reads
6x6x256 maps in all three. Paper: "removing any of the middle layers
results in a loss of about 2% for the top-1 performance of the network"
(section 7 names no dataset). Demo-scale twin:
--config=experiments/demo_ablation.py:minus_conv (conv4).

Result: not yet measured at ImageNet scale with this code.
"""

from alexnet_jax import ablations
from alexnet_jax.experiments import paper


def get_config(layer: str = 'conv4'):
  config = paper.get_config()
  ablations.apply(config, 'minus_conv')
  config.model.remove_conv = layer  # checked when the run starts: conv2, conv3 or conv4
  return config
