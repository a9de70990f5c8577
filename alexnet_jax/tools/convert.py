r"""Converts the BVLC AlexNet's published weights into a workdir, and a workdir back out.

  python -m alexnet_jax.tools.convert --from=caffe --weights=bvlc_alexnet.caffemodel --workdir=DIR \
      [--mean=imagenet_mean.binaryproto | --mean=ilsvrc_2012_mean.npy]
  python -m alexnet_jax.tools.convert --from=onnx --weights=bvlcalexnet-12.onnx --workdir=DIR
  python -m alexnet_jax.tools.convert --from=npz --weights=alexnet.npz --workdir=DIR
  python -m alexnet_jax.tools.convert --to=npz --workdir=DIR --out=alexnet.npz
  python -m alexnet_jax.tools.convert --to=stablehlo --workdir=DIR --out=alexnet.jax_export

--from writes a workdir the other commands read like a trained run's
(checkpoints/, config.json, class_names.json); a file that is not the BVLC
AlexNet stops with an error naming the mismatch and nothing is written. A
.caffemodel whose SHA-1 is not the published file's gets a warning naming both.
--mean keeps Caffe's mean image: data/ilsvrc12/imagenet_mean.binaryproto (from
get_ilsvrc_aux.sh) or python/caffe/imagenet/ilsvrc_2012_mean.npy (in Caffe's
repository); without it the per-channel means are subtracted. The workdir
evaluates and predicts with BVLC's protocol (images warped to 256 x 256,
Caffe's mean, BGR, the central 227 x 227) and states its conventions in the
log (`alexnet_jax.transfer.conventions`). --to
reads any workdir: npz writes the framework-neutral grouped layout (PyTorch's
nn.Conv2d(groups=2) and Caffe's), stablehlo a `jax.export` inference function
that runs with plain JAX. The work is done by `alexnet_jax.pretrained`.
"""

from absl import flags
from absl import logging

from alexnet_jax import cli
from alexnet_jax import model as model_lib
from alexnet_jax import pretrained
from alexnet_jax import rundir
from alexnet_jax import transfer

_FROM = flags.DEFINE_enum('from', None, ['caffe', 'onnx', 'npz'],
                          'Import --weights of this format into --workdir.')
_TO = flags.DEFINE_enum('to', None, ['npz', 'stablehlo'], 'Export --workdir into --out.')
_WEIGHTS = flags.DEFINE_string('weights', None, 'The file to import (.caffemodel, .onnx, .npz).')
_MEAN = flags.DEFINE_string('mean', None, 'With --from: Caffe\'s mean image to keep in '
                            'the workdir: imagenet_mean.binaryproto (data/ilsvrc12) or '
                            'ilsvrc_2012_mean.npy (python/caffe/imagenet), or a (3, S, S) or '
                            '(S, S, 3) BGR .npy.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The workdir written (--from) or read (--to).')
_OUT = flags.DEFINE_string('out', None, 'The file --to writes.')
_PLATFORMS = flags.DEFINE_list('platforms', ['cpu', 'cuda'],
                               'With --to=stablehlo: the platforms the export runs on.')
flags.mark_flags_as_required(['workdir'])
flags.register_multi_flags_validator(
    ['from', 'to'], lambda f: (f['from'] is None) != (f['to'] is None),
    'Give exactly one of --from (import) and --to (export).')
flags.register_multi_flags_validator(
    ['from', 'weights'], lambda f: f['from'] is None or bool(f['weights']),
    '--from needs --weights=FILE.')
flags.register_multi_flags_validator(
    ['from', 'mean'], lambda f: not f['mean'] or f['from'] is not None,
    '--mean goes with --from (an import).')
flags.register_multi_flags_validator(
    ['to', 'out'], lambda f: f['to'] is None or bool(f['out']), '--to needs --out=FILE.')

_READERS = {'caffe': pretrained.read_caffemodel, 'onnx': pretrained.read_onnx,
            'npz': pretrained.read_npz}


def main(argv):
  del argv
  if _FROM.value is not None:
    weights = _READERS[_FROM.value](_WEIGHTS.value)
    mean = pretrained.read_mean(_MEAN.value) if _MEAN.value else None
    if _FROM.value == 'caffe' and (warning := pretrained.sha1_warning(_WEIGHTS.value)):
      logging.warning('%s', warning)
    pretrained.write_workdir(_WORKDIR.value, weights, source=_FROM.value,
                             weights_path=_WEIGHTS.value, mean=mean)
    logging.info('Wrote the BVLC AlexNet to %s. Its conventions (config.json): %s.',
                 _WORKDIR.value, transfer.describe(rundir.read_config(_WORKDIR.value)))
    return
  config, params = pretrained.load_workdir(_WORKDIR.value)
  if _TO.value == 'npz':
    weights = pretrained.from_params(params, f'The checkpoint in {_WORKDIR.value}')
    caffe = pretrained.bvlc_config()
    differ = [f'{group}.{field}={config[group].get(field)!r}' for group, field in (
        ('model', 'lrn_convention'), ('model', 'lrn_k'), ('model', 'lrn_across_towers'),
        ('input', 'crop_size')) if config[group].get(field) != caffe[group][field]]
    if differ:  # the npz holds weights only: readers will assume Caffe's network
      logging.warning('This network differs from Caffe\'s AlexNet (%s); whoever loads %s '
                      'must use these settings.', ', '.join(differ), _OUT.value)
    pretrained.write_npz(_OUT.value, weights)
  else:
    model = model_lib.from_config(config.model, int(params['fc8']['bias'].size),
                                  image_size=config.input.crop_size)
    pretrained.export_stablehlo(model, params, _OUT.value, tuple(_PLATFORMS.value))
  logging.info('Wrote %s.', _OUT.value)


if __name__ == '__main__':
  cli.run(main)
