r"""The paper's network trained with cuda-convnet2's released one-GPU ImageNet recipe (2014).

  python -m alexnet_jax.main --workdir=/tmp/cuda_convnet --config=experiments/cuda_convnet.py
  python -m alexnet_jax.tools.compare --workdirs=/tmp/alexnet,/tmp/cuda_convnet

The authors' later code, akrizhevsky/cuda-convnet2 (2014), ships one
ImageNet recipe for one GPU, layers/layer-params-imagenet-1gpu.cfg. Every
layer there has (lines 2-7 for conv1, the same for the others):

  epsW=dexp[base=0.01;tgtFactor=250;numSteps=4]   weights: 0.01, divided by 250 ** (1/3)
                                                  (about 6.3) after 25%, 50% and 75% of the run
  epsB=dexp[base=0.02;tgtFactor=10;numSteps=2]    biases: 0.02, divided by 10 after 50%
  wc=0.0005, wball=0.00                           weight decay on weights only

and its response normalization (scale=0.0001, lines 83-91) is divided by
the window size, 5 (layer.py line 1331). This config takes those
conventions: model.lrn_convention='cuda_convnet', bias_lr_multiplier=2 with
decay_biases=False, and lr_policy='dexp'
(alexnet_jax/optim.py's dexp_schedule; config.dexp's defaults are the
file's factors and stages, the bases learning_rate and learning_rate *
bias_lr_multiplier), over the paper's 90 epochs. What it does not take: that
file trains a different, one-tower network (layers/layers-imagenet-1gpu.cfg:
64-192-384-256-256 kernels), and the two-tower file of the same release
(layers/layer-params-imagenet-2gpu-model.cfg) starts at 0.02 with biases
divided by 25. The 2012 paper's own schedule was set by hand (section 5: the
rate divided by 10 when the validation error stopped improving), which is
experiments/paper.py. The paper states no figure for this recipe. Demo-scale
twin: --config=experiments/demo_ablation.py:cuda_convnet.

Result: not yet measured at ImageNet scale with this code.
"""

from alexnet_jax import ablations
from alexnet_jax.experiments import paper


def get_config():
  config = paper.get_config()
  ablations.apply(config, 'cuda_convnet')
  return config
