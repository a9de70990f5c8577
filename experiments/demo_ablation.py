r"""The paper's ablations at demo scale: one command per claim, offline, minutes each.

  python -m alexnet_jax.main --workdir=/tmp/abl/baseline --config=experiments/demo_ablation.py
  python -m alexnet_jax.main --workdir=/tmp/abl/no_lrn --config=experiments/demo_ablation.py:no_lrn
  python -m alexnet_jax.tools.compare --workdirs=/tmp/abl/baseline,/tmp/abl/no_lrn

experiments/demo.py (the embedded 12-class 'shapes' dataset, 64x64 crops,
narrower layers) for 4 epochs with one evaluation per epoch, changed as one
of the paper's ablations (alexnet_jax/ablations.py): no_lrn, no_overlap,
one_tower, no_lighting, no_dropout, minus_conv (conv4), cuda_convnet; no
argument gives the baseline. Each changes the same fields as its
paper-scale config (experiments/no_lrn.py, ...), which give the paper's
figures; one_tower halves the demo's own conv1-conv4 counts.

Result: docs/experiments.md (measured 2026-11-28 on this project's 2-core
CPU machine, shared with other work: 52-273 s a run). The effects at 64 px and 12
classes need not match ImageNet's.
"""

from alexnet_jax import ablations
from alexnet_jax.experiments import demo


def get_config(ablation: str = ''):
  config = demo.get_config()
  config.num_epochs = 4
  config.eval_every_steps = None  # once per epoch: the plateau policy's clock (section 5)
  config.checkpoint_every_steps = 1000
  ablations.apply(config, ablation, config.input.shapes.train_examples)
  return config
