r"""The BVLC AlexNet (Caffe's published weights) on ILSVRC-2012 with Caffe's preprocessing.

  python -m alexnet_jax.tools.convert --from=caffe --weights=bvlc_alexnet.caffemodel \
      --mean=ilsvrc_2012_mean.binaryproto --workdir=/data/runs/bvlc_alexnet
  python -m alexnet_jax.tools.evaluate --workdir=/data/runs/bvlc_alexnet --crops=both \
      --data_dir=~/tensorflow_datasets
  python -m alexnet_jax.tools.predict --workdir=/data/runs/bvlc_alexnet photo.jpg

The converter writes this config into the workdir's config.json (the commands
above read it from there); this file names it for `--config=bvlc_alexnet`.
Input: the stored 256x256 image (the shorter side to 256, central crop, as
section 2), minus Caffe's ILSVRC-2012 mean (input.mean='caffe': the workdir's
caffe_mean.npy when converted with --mean, else the per-channel BGR means),
channels reversed to BGR, the central 227x227 (or ten 227x227 views).
Network: deploy.prototxt's LRN (k = 1, alpha divided by n = 5, windows across
both groups), no padding in conv1 at 227, Caffe's inverted dropout.
"""

from alexnet_jax import pretrained


def get_config():
  config = pretrained.bvlc_config()
  config.dataset = 'imagenet2012'
  config.data_dir = '~/tensorflow_datasets'
  config.eval_batch_size = 100  # divides the 50,000 validation images
  return config
