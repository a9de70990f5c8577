r"""The BVLC AlexNet (Caffe's published weights) on ILSVRC-2012 with BVLC's evaluation protocol.

  python -m alexnet_jax.tools.convert --from=caffe --weights=bvlc_alexnet.caffemodel \
      --mean=imagenet_mean.binaryproto --workdir=/tmp/bvlc_alexnet
  python -m alexnet_jax.tools.evaluate --workdir=/tmp/bvlc_alexnet --crops=1 \
      --data_dir=~/tensorflow_datasets
  python -m alexnet_jax.tools.predict --workdir=/tmp/bvlc_alexnet photo.jpg

The converter writes this config into the workdir's config.json (the commands
above read it from there); this file names it for `--config=bvlc_alexnet`.
Input, as Caffe prepared ILSVRC-2012 for this network (examples/imagenet/
readme.md, create_imagenet.sh with RESIZE=true): every image warped to
256x256 (input.resize='warp': bilinear without antialiasing, OpenCV's
INTER_LINEAR), minus Caffe's ILSVRC-2012 mean (input.mean='caffe': the
workdir's caffe_mean.npy when converted with --mean, else the per-channel BGR
means), channels reversed to BGR, the central 227x227 (or ten 227x227 views).
`evaluate --resize=shorter_side` gives the paper's protocol instead (section
2: the shorter side to 256, the central 256x256). Network: deploy.prototxt's
LRN (k = 1, alpha divided by n = 5, windows across both groups), no padding
in conv1 at 227, Caffe's inverted dropout.

Result: BVLC reports 57.1% / 80.2% top-1 / top-5 accuracy (42.9% / 19.8%
error) on the 50,000 validation images with the center crop
(models/bvlc_alexnet/readme.md); not measured here (the weights and ImageNet
are not on this machine). tests/test_pretrained_eval.py checks this
pipeline against a float64 NumPy Caffe network on random weights.
"""

from alexnet_jax import pretrained


def get_config():
  config = pretrained.bvlc_config()
  config.dataset = 'imagenet2012'
  config.data_dir = '~/tensorflow_datasets'
  config.eval_batch_size = 100  # divides the 50,000 validation images
  return config
