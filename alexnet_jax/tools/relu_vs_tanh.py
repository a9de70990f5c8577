r"""Figure 1: how much faster a four-layer conv net trains with ReLUs than with tanh units.

  python -m alexnet_jax.tools.relu_vs_tanh --workdir=/tmp/figure1 --dataset=cifar10
  python -m alexnet_jax.tools.relu_vs_tanh --workdir=/tmp/figure1_shapes              # offline

Trains `relu_vs_tanh.FourLayerNet` with ReLU and with tanh at each learning rate
of --rates, keeps each activation's fastest rate (section 3.1: "chosen
independently to make training as fast as possible"), and writes into
--workdir: one curve per run (<activation>_lr<rate>.jsonl, one
{'epoch', 'train_error'} line per epoch), relu_vs_tanh.png (the best ReLU and tanh
curves) and result.json (the rates, the threshold, the epochs each needed and
their ratio; the paper: 25% training error on CIFAR-10, six times faster with
ReLUs). CIFAR-10 comes from TFDS (internet once); the default 'shapes' is the
embedded 12-class dataset rendered at 32x32, where the threshold is 25% if
both nets reach it, else the lowest error both reach (result.json says which).
"""

import json
import os

from absl import flags
from absl import logging

from alexnet_jax import cli
from alexnet_jax import plots
from alexnet_jax import rundir
from alexnet_jax.analysis import relu_vs_tanh

_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the curves, figure and result go.',
                               required=True)
_DATASET = flags.DEFINE_enum('dataset', 'shapes', ['shapes', 'cifar10'],
                             'cifar10 (TFDS, downloads once) or the offline stand-in.')
_DATA_DIR = flags.DEFINE_string('data_dir', '~/tensorflow_datasets', 'TFDS data directory.')
_EPOCHS = flags.DEFINE_integer('epochs', 5, 'Epochs of every run.')
_RATES = flags.DEFINE_list('rates', ['0.01', '0.05'], 'The learning rates swept.')
_EXAMPLES = flags.DEFINE_integer('shapes_examples', 1500, 'Training images of the stand-in.')


def _numbers(values: list[str]) -> bool:
  try:
    return bool([float(v) for v in values])
  except ValueError:
    return False


flags.register_validator('rates', _numbers, '--rates must be a list of numbers.')


def main(argv):
  del argv
  rates = [float(r) for r in _RATES.value]
  images, labels, classes = relu_vs_tanh.load_training_set(_DATASET.value, _DATA_DIR.value,
                                                      shapes_examples=_EXAMPLES.value)
  logging.info('%s: %d training images, %d classes.', _DATASET.value, len(images), classes)
  sweeps = {a: relu_vs_tanh.sweep(a, rates, images, labels, num_classes=classes,
                             epochs=_EPOCHS.value, threshold=relu_vs_tanh.PAPER_THRESHOLD)
            for a in ('relu', 'tanh')}
  relu = sweeps['relu'].curves[sweeps['relu'].best_rate]
  tanh = sweeps['tanh'].curves[sweeps['tanh'].best_rate]
  threshold = (relu_vs_tanh.PAPER_THRESHOLD if _DATASET.value == 'cifar10'
               else relu_vs_tanh.reachable_threshold(relu, tanh))
  result = {'dataset': _DATASET.value, 'threshold': threshold, 'epochs': _EPOCHS.value,
            'best_rate': {a: s.best_rate for a, s in sweeps.items()},
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


if __name__ == '__main__':
  cli.run(main)
