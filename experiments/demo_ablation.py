r"""The paper's ablations at demo scale, offline: experiments/demo_hard.py changed as one claim.

  python -m alexnet_jax.main --workdir=/tmp/abl/baseline --config=experiments/demo_ablation.py
  python -m alexnet_jax.main --workdir=/tmp/abl/no_lrn --config=experiments/demo_ablation.py:no_lrn
  python -m alexnet_jax.tools.compare --workdirs=/tmp/abl/baseline,/tmp/abl/no_lrn

experiments/demo_hard.py (the hard embedded dataset: 12 shapes in any colour,
64x64 crops, narrower layers, trained to convergence under the plateau
schedule), changed as one of the paper's ablations (alexnet_jax/ablations.py):
no_lrn, no_overlap, one_tower, no_lighting, no_dropout, minus_conv (conv4),
cuda_convnet; no argument gives the baseline. Each changes the same fields as
its paper-scale config (experiments/no_lrn.py, ...), which give the paper's
figures; one_tower halves the demo's own conv1-conv4 counts. Give each run
its own --config.seed (0, 1, 2, ...): `compare` groups the runs of one
config and puts a 95% interval on each difference.

Result: docs/experiments.md. The effects at 64 px and 12 shapes need not
match ImageNet's.
"""

from alexnet_jax import ablations
from alexnet_jax.experiments import demo_hard


def get_config(ablation: str = ''):
  config = demo_hard.get_config()
  ablations.apply(config, ablation)
  return config
