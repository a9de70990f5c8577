r"""Section 6's fine-tuning: the pre-trained conv6 net, trained further on the target dataset.

  python -m alexnet_jax.main --workdir=/tmp/finetune --config=experiments/finetune.py \
      --config.init_from=/tmp/fall2011
  python -m alexnet_jax.main --workdir=/tmp/finetune_demo --config=experiments/finetune.py:demo \
      --config.init_from=/tmp/pretrain_demo
  python -m alexnet_jax.main --workdir=/tmp/scratch_demo --config=experiments/finetune.py:demo
  python -m alexnet_jax.tools.compare --workdirs=/tmp/scratch_demo,/tmp/finetune_demo

experiments/paper.py with a sixth conv layer (model.conv6), every parameter
taken from the run named by config.init_from (experiments/pretrain_conv6.py)
whose name and shape match; fc8 starts afresh for the new classes
(alexnet_jax/transfer.py). Without init_from it is the same network trained
from scratch: the comparison's baseline. `:demo` fine-tunes on the second
half of the embedded classes (6-11: triangles and crosses) what
pretrain_conv6.py:demo learned on the first half.

Paper (Table 2): 39.0% / 16.6% top-1 / top-5 validation error fine-tuned,
against 40.7% / 18.2% for one CNN trained on ILSVRC-2012 alone (-1.7 / -1.6
points). Result here: docs/experiments.md (demo scale).
"""

from alexnet_jax.experiments import demo_ablation
from alexnet_jax.experiments import paper

FINETUNE_CLASSES = (6, 7, 8, 9, 10, 11)


def get_config(scale: str = 'paper'):
  if scale == 'demo':
    config = demo_ablation.get_config()
    config.input.shapes.classes = FINETUNE_CLASSES
  else:
    config = paper.get_config()
  config.model.conv6 = True  # the pre-trained network's layers (section 6)
  return config
