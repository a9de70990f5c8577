r"""The paper's recipe with the conventions of the authors' released code (cuda-convnet).

  python -m alexnet_jax.main --workdir=/tmp/cuda_convnet --config=experiments/cuda_convnet.py
  python -m alexnet_jax.tools.compare --workdirs=/tmp/alexnet,/tmp/cuda_convnet

Where the paper's text and the authors' code differ, the code's choice:
LRN with alpha / n (model.lrn_convention='cuda_convnet'), biases learning at
twice the rate (bias_lr_multiplier=2) with no weight decay
(decay_biases=False), and the learning rate divided by 10 at fixed points,
25%, 50% and 75% of the 90 epochs (lr_policy='steps'; boundaries in steps
for batch 128 over ILSVRC-2012's 1,281,167 images), instead of on plateaus.
The paper states no figure for these; its 40.7% / 18.2% were presumably
obtained with its code. Demo-scale twin:
--config=experiments/demo_ablation.py:cuda_convnet.

Result: not yet measured at ImageNet scale with this code.
"""

from alexnet_jax import ablations
from alexnet_jax.experiments import paper


def get_config():
  config = paper.get_config()
  ablations.apply(config, 'cuda_convnet', ablations.IMAGENET_TRAIN_EXAMPLES)
  return config
