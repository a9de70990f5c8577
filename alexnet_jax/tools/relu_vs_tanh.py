r"""Figure 1: how much faster a four-layer conv net trains with ReLUs than with tanh units.

  python -m alexnet_jax.tools.relu_vs_tanh --workdir=/tmp/figure1 --dataset=cifar10
  python -m alexnet_jax.tools.relu_vs_tanh --workdir=/tmp/figure1_shapes              # offline

Trains `relu_vs_tanh.FourLayerNet` with ReLU and with tanh at each learning rate
of --rates for --epochs epochs, keeps each activation's fastest rate (section
3.1: "chosen independently to make training as fast as possible"), and writes
into --workdir: one curve per run (<activation>_lr<rate>.jsonl, one
{'epoch', 'train_error'} line per epoch), relu_vs_tanh.png (the best ReLU and
tanh curves) and result.json (the rates, the threshold, the epochs each
needed and their ratio; the paper: 25% training error on CIFAR-10, six times
faster with ReLUs, tanh needing about 35 epochs). The defaults are the
paper's setting: 40 epochs, six rates a factor of 2 apart per activation,
and the 25% threshold, fixed before the run (--threshold). A best rate at
either end of the grid means a faster one may lie outside it: the program
then writes everything and stops with an error naming the end to extend.

CIFAR-10 comes from TFDS (internet once) and is kept as raw pixels, losslessly.
The offline default, 'shapes', is the hard embedded set (12 shapes in any
colour, alexnet_jax/data/synthetic.py) rendered at 32x32 (--shapes_examples
training images); the paper gives no figure for it.
"""

import json
import os

from absl import flags
from absl import logging

from alexnet_jax import cli
from alexnet_jax import errors
from alexnet_jax import plots
from alexnet_jax import rundir
from alexnet_jax.analysis import relu_vs_tanh

_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the curves, figure and result go.',
                               required=True)
_DATASET = flags.DEFINE_enum('dataset', 'shapes', ['shapes', 'cifar10'],
                             'cifar10 (TFDS, downloads once) or the offline stand-in.')
_DATA_DIR = flags.DEFINE_string('data_dir', '~/tensorflow_datasets', 'TFDS data directory.')
_EPOCHS = flags.DEFINE_integer('epochs', 40, 'Epochs of every run.')
_RATES = flags.DEFINE_list('rates', ['0.0025', '0.005', '0.01', '0.02', '0.04', '0.08'],
                           'The learning rates swept for each activation.')
_THRESHOLD = flags.DEFINE_float('threshold', relu_vs_tanh.PAPER_THRESHOLD,
                                'The training error both nets are timed to (Figure 1: 0.25).')
_EXAMPLES = flags.DEFINE_integer('shapes_examples', 5000, 'Training images of the stand-in.')


def _numbers(values: list[str]) -> bool:
  try:
    return bool([float(v) for v in values])
  except ValueError:
    return False


flags.register_validator('rates', _numbers, '--rates must be a list of numbers.')
flags.register_validator('threshold', lambda t: 0 < t < 1, '--threshold must lie in (0, 1).')


def main(argv):
  del argv
  rates = sorted({float(r) for r in _RATES.value})
  threshold = _THRESHOLD.value
  images, labels, classes = relu_vs_tanh.load_training_set(_DATASET.value, _DATA_DIR.value,
                                                           shapes_examples=_EXAMPLES.value)
  logging.info('%s: %d training images, %d classes.', _DATASET.value, len(images), classes)
  sweeps = {a: relu_vs_tanh.sweep(a, rates, images, labels, num_classes=classes,
                                  epochs=_EPOCHS.value, threshold=threshold)
            for a in ('relu', 'tanh')}
  relu = sweeps['relu'].curves[sweeps['relu'].best_rate]
  tanh = sweeps['tanh'].curves[sweeps['tanh'].best_rate]
  edges = {a: s.edge for a, s in sweeps.items() if s.edge}
  result = {'dataset': _DATASET.value, 'threshold': threshold, 'epochs': _EPOCHS.value,
            'rates': rates, 'best_rate': {a: s.best_rate for a, s in sweeps.items()},
            'best_rate_at_edge': edges,
            'epochs_to_threshold': {'relu': relu_vs_tanh.epochs_to_reach(relu, threshold),
                                    'tanh': relu_vs_tanh.epochs_to_reach(tanh, threshold)},
            'speedup': relu_vs_tanh.speedup(relu, tanh, threshold), 'paper_speedup': 6}
  os.makedirs(_WORKDIR.value, exist_ok=True)
  for activation, s in sweeps.items():
    for rate, curve in s.curves.items():
      path = os.path.join(_WORKDIR.value, f'{activation}_lr{rate:g}.jsonl')
      relu_vs_tanh.write_curve(path, curve)
  plots.save_png(relu_vs_tanh.curves_figure(
      relu, tanh, threshold, f'{_DATASET.value}: ReLU lr {sweeps["relu"].best_rate:g}, '
      f'tanh lr {sweeps["tanh"].best_rate:g}'), os.path.join(_WORKDIR.value, 'relu_vs_tanh.png'))
  rundir.write_json(os.path.join(_WORKDIR.value, 'result.json'), result, indent=1)
  print(json.dumps(result))
  if edges:
    raise errors.ConfigError(
        '; '.join(f'{a}: the best rate {sweeps[a].best_rate:g} is the {end} of --rates'
                  for a, end in edges.items())
        + f'. A faster rate may lie beyond it: extend --rates past that end (the curves and '
        f'result.json are in {_WORKDIR.value}).')


if __name__ == '__main__':
  cli.run(main)
