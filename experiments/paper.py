r"""The paper's recipe on ImageNet (ILSVRC-2012), sections 2-5.

  python -m alexnet_jax.main --workdir=/tmp/alexnet --config=experiments/paper.py

Two-tower network (60,965,224 parameters), 224x224 crops of 256x256 images
with reflections and PCA lighting, batch 128, SGD with momentum 0.9 and
weight decay 5e-4, learning rate 0.01 divided by 10 when the validation error
stops improving (at most three times), 90 epochs, ten-crop final evaluation.
Devices: see docs/parallel.md (by default the two towers go on two devices
when the devices pair up). Arithmetic: model.matmul_precision='float32' (the
default), true float32 convolutions and matmuls as on the paper's GTX 580s,
so that results do not depend on whether a GPU would round to TF32
('default') or bfloat16 ('bfloat16'), which are faster but not the recipe.

Data: place ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in
<data_dir>/downloads/manual/ (data_dir defaults to ~/tensorflow_datasets).
The first run builds the TFDS dataset, writes 256x256 JPEGs and the dataset
statistics once, then trains.

Result: not yet measured with this code. The paper reports 40.7% / 18.2%
top-1 / top-5 error on ILSVRC-2012 validation for one network (five to six
days on two GTX 580 GPUs).
"""

from alexnet_jax.config import base_config


def get_config():
  config = base_config()
  config.dataset = 'imagenet2012'
  return config
