r"""Section 7's claim: removing a middle convolutional layer costs about 2% top-1.

  python -m alexnet_jax.main --workdir=/tmp/minus_conv4 --config=experiments/minus_conv.py
  python -m alexnet_jax.main --workdir=/tmp/minus_conv3 --config=experiments/minus_conv.py:conv3
  python -m alexnet_jax.tools.compare --workdirs=/tmp/alexnet,/tmp/minus_conv4,/tmp/minus_conv3

experiments/paper.py without conv4 (the default), conv3 or conv5
(model.remove_conv; the next layer reads the maps of the one before, see
alexnet_jax/model.py). Paper: "removing any of the middle layers results in
a loss of about 2% for the top-1 performance of the network". Demo-scale
twin: --config=experiments/demo_ablation.py:minus_conv (conv4).

Result: not yet measured at ImageNet scale with this code.
"""

from alexnet_jax import ablations
from alexnet_jax.experiments import paper


def get_config(layer: str = 'conv4'):
  config = paper.get_config()
  ablations.apply(config, 'minus_conv', ablations.IMAGENET_TRAIN_EXAMPLES)
  config.model.remove_conv = layer  # checked when the run starts: conv3, conv4 or conv5
  return config
