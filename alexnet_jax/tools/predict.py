r"""Prints the five most probable classes of image files under a trained network.

  python -m alexnet_jax.tools.predict --workdir=DIR [--step=N|latest|best] [--crops=1|10] \
      [--resize=shorter_side|warp] [--data_dir=DIR] PHOTO.jpg [PHOTO.png ...]

Each file (JPEG, PNG, GIF, BMP; any size; grayscale and CMYK become RGB)
goes through the evaluation's preprocessing: to S x S as the run's
input.resize says (section 2's shorter side to S and central S x S; BVLC's
warp to S x S for a converted network; --resize chooses), minus the run's
mean (the training set's mean image, which the run saved as mean_image.npy,
or Caffe's for a converted network), then the center crop or the ten views
of section 4.1 (softmax averaged). A file that is not an image stops the
program before anything runs. Each class is printed with its probability,
its WordNet id when the run knows it (a converted network), its name and its
index. Nothing is written. The work is done by `alexnet_jax.inference`.
"""

from absl import flags

from alexnet_jax import cli
from alexnet_jax import errors
from alexnet_jax import inference
from alexnet_jax import rundir

_RUN = cli.define_run_flags('The trained (or converted) network.', batch_size=False)
_CROPS = flags.DEFINE_enum('crops', '1', ['1', '10'],
                           'The center crop (1) or the ten views of section 4.1 (10).')
_RESIZE = flags.DEFINE_enum('resize', None, ['shorter_side', 'warp'],
                            "How an image becomes S x S (default: the run's input.resize): "
                            "'shorter_side' (section 2) or 'warp' (BVLC's).")


def main(argv):
  paths = argv[1:]
  if not paths:
    raise errors.ConfigError('Give one or more image files after the flags: '
                             'python -m alexnet_jax.tools.predict --workdir=DIR PHOTO.jpg')
  run = inference.with_resize(rundir.open_run(_RUN.workdir.value, _RUN.step.value),
                              _RESIZE.value)
  for prediction in inference.predict_files(run, paths, ten_crop=_CROPS.value == '10',
                                            data_dir=_RUN.data_dir.value):
    print(prediction.path)
    wnids = prediction.wnids or ('',) * len(prediction.labels)
    for label, wnid, name, p in zip(prediction.labels, wnids, prediction.names,
                                    prediction.probabilities):
      print(f'  {p:7.2%}  {wnid + "  " if wnid else ""}{name} ({label})')


if __name__ == '__main__':
  cli.run(main, positional=True)
