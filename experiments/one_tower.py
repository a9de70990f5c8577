r"""Section 3.2's claim: the two-tower (two-GPU) net beats a one-tower net.

  python -m alexnet_jax.main --workdir=/tmp/one_tower --config=experiments/one_tower.py
  python -m alexnet_jax.tools.compare --workdirs=/tmp/alexnet,/tmp/one_tower

Footnote 2's comparison net: one tower with half the kernels in conv1-conv4
(48, 128, 192, 192), conv5 (256) and the fully connected layers as in the
two-tower net (model.towers=1). Paper: the two-GPU scheme "reduces our top-1
and top-5 error rates by 1.7% and 1.2%, respectively, as compared with a net
with half as many kernels in each convolutional layer trained on one GPU".
Demo-scale twin: --config=experiments/demo_ablation.py:one_tower.

Result: not yet measured at ImageNet scale with this code.
"""

from alexnet_jax import ablations
from alexnet_jax.experiments import paper


def get_config():
  config = paper.get_config()
  ablations.apply(config, 'one_tower')
  return config
