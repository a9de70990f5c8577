r"""Fine-tunes the converted BVLC AlexNet on a folder of your own photos, with a new fc8.

  python -m alexnet_jax.tools.convert --from=caffe --weights=bvlc_alexnet.caffemodel \
      --mean=imagenet_mean.binaryproto --workdir=/tmp/bvlc_alexnet
  python -m alexnet_jax.main --workdir=/tmp/finetune --config=experiments/finetune_folder.py \
      --config.init_from=/tmp/bvlc_alexnet --config.data_dir=/data/photos

/data/photos holds train/<class>/* and val/<class>/* (experiments/folder.py). conv1
to fc7 start from the converted network and fc8 afresh, one unit per class
folder (alexnet_jax/transfer.py). The run adopts the converted network's
conventions, each logged: BVLC's protocol (images warped to 256x256, Caffe's
mean image from the converted workdir, BGR, 227x227 crops), Caffe's LRN and
inverted dropout; overriding one of these that changes what the restored
layers compute stops the run unless --config.allow_config_change=True.

Training: the converted network was trained without PCA lighting
(models/bvlc_alexnet/readme.md), so none here; a tenth of the paper's learning
rate, as Caffe's fine-tuning example (models/finetune_flickr_style/
solver.prototxt: base_lr 0.001), divided by 10 when the validation error
stops improving; batch 64 and 30 epochs, a choice for a folder of a few
thousand photos (not tuned).

Result: depends on the photos; not measured here (the published weights are
not on this machine).
"""

from alexnet_jax.experiments import folder


def get_config():
  config = folder.get_config()  # --config.data_dir: the photos
  config.input.lighting_std = 0.0
  config.learning_rate = 0.001
  config.batch_size = 64
  config.num_epochs = 30
  return config
