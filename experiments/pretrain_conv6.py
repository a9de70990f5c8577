r"""Section 6's pre-training: the network with a sixth conv layer, trained on a larger dataset.

  python -m alexnet_jax.main --workdir=/tmp/fall2011 --config=experiments/pretrain_conv6.py \
      --config.data_dir=/data/fall2011
  python -m alexnet_jax.main --workdir=/tmp/pretrain_demo \
      --config=experiments/pretrain_conv6.py:demo

The paper pre-trained "an extra sixth convolutional layer over the last
pooling layer" on the Fall 2011 ImageNet release (15M images, 22K classes),
then fine-tuned it on ILSVRC-2012 (experiments/finetune.py). Any folder
dataset stands in for the first one (train/<class>/*, val/<class>/* under
data_dir). The Fall 2011 release's 21,841 classes do not split evenly over
the two towers: fc8 then has 21,842 units, 10,921 per tower, and the last
one is padding that is never a class (alexnet_jax/model.py, `fc8_units`).
`:demo` pre-trains the demo-scale net with conv6 on classes 0-5 of the hard
embedded set (experiments/demo_ablation.py: disc, square, triangle, cross,
ellipse, bar), offline.

Paper (Table 2): 39.0% / 16.6% top-1 / top-5 validation error for one such
net fine-tuned on ILSVRC-2012, against 40.7% / 18.2% for one trained on
ILSVRC-2012 alone. Result here: docs/experiments.md (demo scale).
"""

from alexnet_jax.experiments import demo_ablation
from alexnet_jax.experiments import folder

PRETRAIN_CLASSES = (0, 1, 2, 3, 4, 5)


def get_config(scale: str = 'paper'):
  if scale == 'demo':
    config = demo_ablation.get_config()
    config.input.shapes.classes = PRETRAIN_CLASSES
  else:
    config = folder.get_config()  # --config.data_dir: the pre-training images
  config.model.conv6 = True  # section 6: over the last pooling layer
  return config
