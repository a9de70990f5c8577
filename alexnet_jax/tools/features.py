r"""Writes the fc7 features, logits, labels and example ids of a split, in .npz shards.

  python -m alexnet_jax.tools.features --workdir=DIR --split=validation --out=FILE.npz \
      [--step=N|latest|best] [--dtype=float32|float16] [--shard_size=N] [--data_dir=DIR]

fc7 is the last hidden layer after its ReLU (section 6.1's feature vectors)
of each example's center crop. The split is streamed, one batch in memory
at a time, into FILE-00000-of-000NN.npz, ... (shard i holds examples
[i * shard_size, (i + 1) * shard_size) of the split, arrays 'fc7', 'logits',
'label', 'id'), each written once complete. Size: the 1,281,167 training
images of ILSVRC-2012 x 4096 fc7 units x 4 bytes is 21 GB in float32
(arithmetic), half in float16. Existing shards are never overwritten.
The work is done by `alexnet_jax.inference.write_features`.
"""

from absl import flags
from absl import logging

from alexnet_jax import cli
from alexnet_jax import inference
from alexnet_jax import rundir

_RUN = cli.define_run_flags('The trained (or converted) network.')
_SPLIT = flags.DEFINE_string('split', 'validation', "The split: 'validation' or 'train'.")
_OUT = flags.DEFINE_string('out', None, 'FILE.npz: the shards are FILE-00000-of-000NN.npz, ...')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'float16'],
                           'The type of fc7 and logits in the files.')
_SHARD_SIZE = flags.DEFINE_integer('shard_size', 100_000, 'Examples per shard.')
flags.mark_flags_as_required(['out'])


def main(argv):
  del argv
  run = rundir.open_run(_RUN.workdir.value, _RUN.step.value)
  paths = inference.write_features(run, _SPLIT.value, _OUT.value, dtype=_DTYPE.value,
                                   shard_size=_SHARD_SIZE.value, batch_size=_RUN.batch_size.value,
                                   data_dir=_RUN.data_dir.value)
  logging.info('Wrote %d shard(s): %s', len(paths), ', '.join(paths))


if __name__ == '__main__':
  cli.run(main)
