r"""Prepares an experiment's dataset and its statistics, and prints the statistics.

  python -m alexnet_jax.tools.prepare --config=experiments/paper.py [--config.data_dir=DIR] \
      [--config.input.storage=raw] [--recompute_stats]

Does alone what the first training run does before it trains: generates the
embedded dataset, or builds the TFDS dataset and writes every image once as an
S x S JPEG (section 2; input.storage='raw': its uint8 pixels), then computes
the mean image and the PCA of the RGB values (sections 2 and 4.1). First it
prints the disk budget of the prepared copy (images x bytes per image, and the
free space there). What exists already is reused; --recompute_stats computes
the statistics again. --config also takes a packaged experiment's
name (`--config=demo`), and any field can be overridden
(`--config.input.image_size=128`).
"""

from absl import flags

from alexnet_jax import cli
from alexnet_jax import data

cli.define_config_flag()
flags.mark_flags_as_required(['config'])
_RECOMPUTE_STATS = flags.DEFINE_bool(
    'recompute_stats', False, 'Compute the statistics again even when their file exists.')


def main(argv):
  del argv
  config = flags.FLAGS.config
  data.check_input_config(config.dataset, config.input)
  print(data.disk_budget(config.dataset, config.data_dir, config.input).describe(), flush=True)
  info = data.get_dataset_info(config.dataset, config.data_dir, config.input,
                               recompute_stats=_RECOMPUTE_STATS.value)
  print(f'{info.name}: {info.num_classes} classes, {info.num_train_examples} train / '
        f'{info.num_eval_examples} eval examples of {info.image_size}x{info.image_size} in '
        f'{info.location}')
  print(info.stats.describe())


if __name__ == '__main__':
  cli.run(main)
