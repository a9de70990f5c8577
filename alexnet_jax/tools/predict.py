r"""Prints the five most probable classes of image files under a trained network.

  python -m alexnet_jax.tools.predict --workdir=DIR [--step=N|latest|best] [--crops=1|10] \
      [--data_dir=DIR] PHOTO.jpg [PHOTO.png ...]

Each file (JPEG, PNG, GIF, BMP; any size; grayscale and CMYK become RGB)
goes through the evaluation's preprocessing: the shorter side to S and the
central S x S (section 2), minus the run's mean (the training set's mean
image, which the run saved as mean_image.npy, or Caffe's for a converted
network), then the
center crop or the ten views of section 4.1 (softmax averaged). A file that is
not an image stops the program before anything runs. Nothing is written.
The work is done by `alexnet_jax.inference`.
"""

from absl import flags

from alexnet_jax import cli
from alexnet_jax import errors
from alexnet_jax import inference
from alexnet_jax import rundir

_RUN = cli.define_run_flags('The trained (or converted) network.', batch_size=False)
_CROPS = flags.DEFINE_enum('crops', '1', ['1', '10'],
                           'The center crop (1) or the ten views of section 4.1 (10).')


def main(argv):
  paths = argv[1:]
  if not paths:
    raise errors.ConfigError('Give one or more image files after the flags: '
                             'python -m alexnet_jax.tools.predict --workdir=DIR PHOTO.jpg')
  run = rundir.open_run(_RUN.workdir.value, _RUN.step.value)
  for prediction in inference.predict_files(run, paths, ten_crop=_CROPS.value == '10',
                                            data_dir=_RUN.data_dir.value):
    print(prediction.path)
    for label, name, p in zip(prediction.labels, prediction.names, prediction.probabilities):
      print(f'  {p:7.2%}  {name} ({label})')


if __name__ == '__main__':
  cli.run(main, positional=True)
