"""python -m alexnet_jax.tools.bench_input, run as a user runs it, on a few photographs."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def report():
  """One small run: every path at one thread and at all cores, --json."""
  out = subprocess.run(
      [sys.executable, '-m', 'alexnet_jax.tools.bench_input', '--images=12', '--steps=2',
       '--rounds=1', '--batch_size=8', '--paths=anchor,jpeg,raw', '--host_cores=16',
       '--step_images_per_s=30000', '--json'],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3', 'JAX_PLATFORMS': 'cpu'})
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout.strip().splitlines()


def test_names_the_photographs_and_ends_with_the_figures_as_json(report):
  assert report[0].startswith("12 windows of scikit-image's photographs (astronaut, chelsea, "
                              'coffee, rocket, hubble_deep_field, immunohistochemistry, retina, '
                              'motorcycle_left, motorcycle_right): 12 prepared 256x256 images')
  figures = json.loads(report[-1])
  for path in ('anchor', 'jpeg', 'raw'):
    assert figures[f'{path}_per_core'] > 0 and figures[f'{path}_total'] > 0
  # Photographs at quality 90: several KB each, unlike flat renders.
  assert 5 < figures['mean_jpeg_kb'] < 60 and figures['raw_kb'] == 192.0
  assert figures['images'] == 12 and figures['host_cores'] == 16
  assert figures['jpeg_vs_anchor'] == pytest.approx(
      figures['jpeg_per_core'] / figures['anchor_per_core'], rel=1e-2)


def test_projection_is_cores_times_the_per_core_rate(report):
  figures = json.loads(report[-1])
  for path in ('jpeg', 'raw'):
    projected = figures['projection'][path]
    assert projected['images_per_s'] == pytest.approx(16 * figures[f'{path}_per_core'], rel=1e-3)
    assert projected['ratio'] == pytest.approx(projected['images_per_s'] / 30000, rel=1e-3)
    verdict = 'keeps up' if projected['ratio'] >= 1 else 'falls short'
    assert any(line.startswith(f'{path}: 16 cores x ') and verdict in line for line in report)
