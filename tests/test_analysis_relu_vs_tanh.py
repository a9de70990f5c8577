"""Tests of alexnet_jax.analysis.relu_vs_tanh and its program: Figure 1's network, the
epochs-to-threshold arithmetic and the check that the chosen rates lie inside the grid."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax import errors
from alexnet_jax.analysis import relu_vs_tanh


def test_speedup_from_written_curves(tmp_path):
  """ReLU reaches 25% at epoch 2, tanh at epoch 12: tanh needs 6 times the epochs (Figure 1);
  the lines are read in epoch order whatever their order in the file."""
  relu = [0.6, 0.24, 0.2, 0.1]
  tanh = [0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.32, 0.3, 0.28, 0.26, 0.25, 0.2]
  relu_vs_tanh.write_curve(str(tmp_path / 'relu.jsonl'), relu)
  relu_vs_tanh.write_curve(str(tmp_path / 'tanh.jsonl'), tanh)
  lines = (tmp_path / 'tanh.jsonl').read_text().splitlines()
  (tmp_path / 'tanh.jsonl').write_text('\n'.join(reversed(lines)) + '\n')
  relu_read = relu_vs_tanh.read_curve(str(tmp_path / 'relu.jsonl'))
  tanh_read = relu_vs_tanh.read_curve(str(tmp_path / 'tanh.jsonl'))
  assert tanh_read == tanh
  assert relu_vs_tanh.epochs_to_reach(relu_read, 0.25) == 2
  assert relu_vs_tanh.epochs_to_reach(tanh_read, 0.25) == 12
  assert relu_vs_tanh.speedup(relu_read, tanh_read, 0.25) == 6.0
  assert relu_vs_tanh.speedup(relu_read, tanh_read[:5], 0.25) is None  # tanh never got there


def test_best_rate_at_the_edge_of_the_grid():
  """A best rate that is the grid's lowest or highest is flagged; one inside it is not."""
  curves = {0.01: [0.5], 0.02: [0.4], 0.04: [0.3]}
  assert relu_vs_tanh.SweepResult('relu', curves, 0.04).edge == 'highest'
  assert relu_vs_tanh.SweepResult('relu', curves, 0.01).edge == 'lowest'
  assert relu_vs_tanh.SweepResult('relu', curves, 0.02).edge is None


@pytest.mark.slow
def test_program_stops_when_a_best_rate_is_at_the_edge(tmp_path):
  """Two rates: every best rate is at an edge, so the program writes its curves and
  result.json, then exits 1 with one error line naming the end to extend."""
  workdir = tmp_path / 'figure1'
  done = subprocess.run(
      [sys.executable, '-m', 'alexnet_jax.tools.relu_vs_tanh', f'--workdir={workdir}',
       f'--data_dir={tmp_path / "data"}', '--epochs=1', '--shapes_examples=32',
       '--rates=0.01,0.02'], capture_output=True, text=True, timeout=600,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert done.returncode == 1, done.stderr[-2000:]
  assert 'of --rates' in done.stderr and 'Traceback' not in done.stderr
  result = json.loads((workdir / 'result.json').read_text())
  assert set(result['best_rate_at_edge']) == {'relu', 'tanh'}
  assert result['threshold'] == 0.25 and result['rates'] == [0.01, 0.02]
  assert len(list(workdir.glob('*_lr*.jsonl'))) == 4


def test_missing_curve_is_a_clear_error(tmp_path):
  with pytest.raises(errors.WorkdirError, match='does not exist'):
    relu_vs_tanh.read_curve(str(tmp_path / 'nothing.jsonl'))


def test_four_layer_net_shapes_and_activation():
  """32x32 inputs: three 5x5 convs (32, 32, 64) and pools 32->15->7->3, then fc to 10; the
  tanh net's conv outputs before the fc lie in (-1, 1) where the ReLU net's are >= 0."""
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  relu = relu_vs_tanh.FourLayerNet(activation='relu')
  params = relu.init(jax.random.key(1), x)['params']
  assert params['fc']['kernel'].shape == (3 * 3 * 64, 10)
  assert [params[f'conv{i}']['kernel'].shape for i in (1, 2, 3)] == [
      (5, 5, 3, 32), (5, 5, 32, 32), (5, 5, 32, 64)]
  _, state = relu_vs_tanh.FourLayerNet(activation='tanh').apply(
      {'params': params}, x, capture_intermediates=True, mutable=True)
  assert relu.apply({'params': params}, x).shape == (2, 10)
  conv3 = np.asarray(state['intermediates']['conv3']['__call__'][0])
  assert np.abs(np.tanh(conv3)).max() < 1 and conv3.shape == (2, 7, 7, 64)


def test_sweep_picks_the_rate_that_learns():
  """On a separable toy problem a positive rate learns and a tiny one does not: the sweep keeps
  the first (fewest epochs to the threshold)."""
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 256).astype(np.int32)
  images = rng.normal(size=(256, 16, 16, 3)).astype(np.float32) * 0.1
  images[..., 0] += np.where(labels == 1, 1.0, -1.0)[:, None, None]
  result = relu_vs_tanh.sweep('relu', [1e-6, 0.05], images, labels, num_classes=2, epochs=3,
                         threshold=0.25, batch_size=32)
  assert result.best_rate == 0.05
  assert relu_vs_tanh.epochs_to_reach(result.curves[0.05], 0.25) is not None
  assert jnp.isfinite(jnp.asarray(result.curves[1e-6])).all()
