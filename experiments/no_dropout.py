r"""Section 4.2's claim: without dropout the network overfits.

  python -m alexnet_jax.main --workdir=/tmp/no_dropout --config=experiments/no_dropout.py
  python -m alexnet_jax.tools.compare --workdirs=/tmp/alexnet,/tmp/no_dropout

experiments/paper.py without dropout on fc6 and fc7 (model.dropout_rate=0).
Paper: "Without dropout, our network exhibits substantial overfitting.
Dropout roughly doubles the number of iterations required to converge." It
gives no error figure: look for a lower training loss and a higher
validation error than experiments/paper.py. Demo-scale twin:
--config=experiments/demo_ablation.py:no_dropout.

Result: not yet measured at ImageNet scale with this code.
"""

from alexnet_jax import ablations
from alexnet_jax.experiments import paper


def get_config():
  config = paper.get_config()
  ablations.apply(config, 'no_dropout')
  return config
