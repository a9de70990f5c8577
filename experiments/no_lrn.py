r"""Section 3.3's claim: local response normalization lowers the error.

  python -m alexnet_jax.main --workdir=/tmp/no_lrn --config=experiments/no_lrn.py
  python -m alexnet_jax.tools.compare --workdirs=/tmp/alexnet,/tmp/no_lrn

experiments/paper.py without LRN after conv1 and conv2 (model.lrn=False).
Paper: "Response normalization reduces our top-1 and top-5 error rates by
1.4% and 1.2%" (ILSVRC-2012 validation), so this run should end 1.4 / 1.2
points above experiments/paper.py. Demo-scale twin (offline, minutes):
--config=experiments/demo_ablation.py:no_lrn (docs/experiments.md).

Result: not yet measured at ImageNet scale with this code.
"""

from alexnet_jax import ablations
from alexnet_jax.experiments import paper


def get_config():
  config = paper.get_config()
  ablations.apply(config, 'no_lrn')
  return config
