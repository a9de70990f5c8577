"""Section 6.1's figures: the kernel mosaic and colour measure, each figure's grid, the program."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from alexnet_jax import config as config_lib
from alexnet_jax import plots
from alexnet_jax import train


def test_colour_specificity_of_hand_made_kernels():
  grey = np.repeat(np.random.default_rng(0).normal(size=(11, 11, 1)), 3, axis=2)
  red = np.zeros((11, 11, 3))
  red[..., 0] = np.random.default_rng(1).normal(size=(11, 11))
  opponent = np.zeros((11, 11, 3))
  opponent[..., 0], opponent[..., 1] = 1.0, -1.0  # R - G: no intensity at all
  kernels = np.stack([grey, red, opponent], axis=-1)[None]  # (1 tower, 11, 11, 3, 3)
  np.testing.assert_allclose(plots.colour_specificity(kernels), [[0.0, np.sqrt(2 / 3), 1.0]],
                             atol=1e-12)


@pytest.mark.parametrize('towers,per_tower', [(2, 48), (1, 48)])
def test_kernel_mosaic_puts_each_tower_in_its_block(towers, per_tower):
  kernels = np.random.default_rng(2).normal(size=(towers, 11, 11, 3, per_tower))
  mosaic = plots.kernel_mosaic(kernels, columns=16, gap=1, tower_gap=4)
  # 3 rows of 16 tiles per tower: 3 * 11 + 2 gaps = 35 rows a block, 16 * 11 + 15 = 191 wide.
  assert mosaic.shape == (35 * towers + 4 * (towers - 1), 191, 3)
  tiles = 0
  for t in range(towers):
    for i in range(per_tower):
      y, x = 39 * t + 12 * (i // 16), 12 * (i % 16)
      k = kernels[t, ..., i]
      np.testing.assert_allclose(mosaic[y:y + 11, x:x + 11], (k - k.min()) / (k.max() - k.min()))
      tiles += 1
  assert tiles == 48 * towers
  # Everything else is background: the tiles cover 121 pixels each.
  assert np.sum(np.any(mosaic != plots.BACKGROUND, axis=2)) <= 121 * tiles
  assert np.sum(np.all(mosaic == plots.BACKGROUND, axis=2)) >= mosaic.shape[0] * 191 - 121 * tiles


def test_predictions_figure_bars_are_the_top5_with_the_true_class_red():
  probs = np.array([[0.05, 0.4, 0.1, 0.2, 0.15, 0.06, 0.04],
                    [0.5, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05]])
  labels = np.array([3, 6])  # the second's true class is not in its top 5
  images = np.zeros((2, 8, 8, 3))
  fig = plots.predictions_figure(images, probs, labels, [f'c{i}' for i in range(7)])
  assert len(fig.axes) == 4
  bars = fig.axes[1].patches
  np.testing.assert_allclose([b.get_width() for b in bars], [0.4, 0.2, 0.15, 0.1, 0.06])
  assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ['c1', 'c3', 'c4', 'c2', 'c5']
  red = [i for i, b in enumerate(bars) if b.get_facecolor()[:3] == (214 / 255, 39 / 255, 40 / 255)]
  assert red == [1]
  assert not any(b.get_facecolor()[:3] == (214 / 255, 39 / 255, 40 / 255)
                 for b in fig.axes[3].patches)


def test_neighbours_figure_grid_holds_the_images_in_order():
  rng = np.random.default_rng(3)
  queries, found = rng.random((3, 5, 5, 3)), rng.random((3, 6, 5, 5, 3))
  fig = plots.neighbours_figure(queries, np.array([0, 1, 2]), found,
                                np.zeros((3, 6), int), ['a', 'b', 'c'])
  assert len(fig.axes) == 3 * 7
  for row in range(3):
    np.testing.assert_array_equal(fig.axes[row * 7].get_images()[0].get_array(), queries[row])
    for col in range(6):
      np.testing.assert_array_equal(fig.axes[row * 7 + 1 + col].get_images()[0].get_array(),
                                    found[row, col])


def test_curves_mark_the_learning_rate_drops():
  rows = [{'step': 10, 'train_loss': 2.0, 'learning_rate': 0.01},
          {'step': 20, 'train_loss': 1.5, 'learning_rate': 0.01},
          {'step': 20, 'eval_loss': 1.4, 'eval_top1_error': 0.5, 'eval_top5_error': 0.1},
          {'step': 30, 'train_loss': 1.0, 'learning_rate': 0.001},
          {'step': 40, 'train_loss': 0.9, 'learning_rate': 0.0001}]
  assert plots.learning_rate_drops(rows) == [20, 30]
  fig = plots.curves_figure(rows, steps_per_epoch=10)
  loss_ax, error_ax = fig.axes
  np.testing.assert_allclose(loss_ax.lines[0].get_xdata(), [1, 2, 3, 4])
  np.testing.assert_allclose(error_ax.lines[0].get_ydata(), [0.5])
  drops = [line.get_xdata()[0] for line in error_ax.lines[2:]]
  assert drops == [2.0, 3.0]


@pytest.mark.slow
def test_program_writes_every_figure(tmp_path):
  config = config_lib.load('demo')
  config.data_dir = str(tmp_path / 'tfds')
  config.input.shapes.train_examples, config.input.shapes.eval_examples = 64, 16
  config.batch_size, config.num_train_steps, config.eval_every_steps = 16, 4, 4
  config.checkpoint_every_steps, config.ten_crop_eval = 4, False
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3'}
  result = subprocess.run([sys.executable, '-m', 'alexnet_jax.tools.figures',
                           f'--workdir={workdir}',
                           '--queries=3', '--neighbours=4'], env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  out = os.path.join(workdir, 'figures')
  assert sorted(os.listdir(out)) == ['curves.png', 'kernels.json', 'kernels.png',
                                     'neighbours.png', 'predictions.png']
  for name in ('curves.png', 'kernels.png', 'neighbours.png', 'predictions.png'):
    with open(os.path.join(out, name), 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  with open(os.path.join(out, 'kernels.json')) as f:
    report = json.load(f)
  assert report['step'] == 4 and len(report['towers']) == 2
  assert len(report['towers'][0]['per_kernel']) == 24  # the demo's 48 kernels, 24 a tower
  assert 'tower 1: mean' in result.stdout


def test_program_refuses_a_folder_that_is_not_a_run(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'alexnet_jax.tools.figures',
                           f'--workdir={tmp_path}'], capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == 1
  assert 'config.json' in result.stderr and 'Traceback' not in result.stderr
  assert os.listdir(tmp_path) == []
