r"""Section 3.4's claim: overlapping max-pooling lowers the error.

  python -m alexnet_jax.main --workdir=/tmp/no_overlap --config=experiments/no_overlap.py
  python -m alexnet_jax.tools.compare --workdirs=/tmp/alexnet,/tmp/no_overlap

experiments/paper.py with non-overlapping pooling, window 2 and stride 2
(model.pool_window=2, model.pool_stride=2; the maps after pool1, pool2 and
pool5 become 27, 13 and 6 as with 3/2, so fc6 keeps its size). Paper:
overlapping pooling "reduces the top-1 and top-5 error rates by 0.4% and
0.3%, respectively, as compared with the non-overlapping scheme s = 2, z = 2".
Demo-scale twin: --config=experiments/demo_ablation.py:no_overlap.

Result: not yet measured at ImageNet scale with this code.
"""

from alexnet_jax import ablations
from alexnet_jax.experiments import paper


def get_config():
  config = paper.get_config()
  ablations.apply(config, 'no_overlap')
  return config
