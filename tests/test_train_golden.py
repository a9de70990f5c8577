"""A short demo run whose every logged number must stay the same, bit for bit.

tests/data/golden_demo.json holds the metrics.jsonl rows of the run below (training loss
and learning rate of every step, the evaluations at steps 4 and 8, the final ten-crop
test of section 4.1), recorded before a refactor with the code of that time. A change
that should not alter the numbers (moving code, renaming, restructuring) must pass this
test unchanged; images_per_sec is left out because it measures time.

The run is `train.train_and_evaluate` on experiments/demo.py with GOLDEN_OVERRIDES, on
CPU, in a fresh data_dir (the embedded dataset is generated there). XLA and TensorFlow
give the same bits only on the same backend and library versions, which the file records;
elsewhere the test is skipped, naming the difference.

To record the values again (only on code whose numbers are known to be right):

  python tests/test_train_golden.py
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import jax
import jaxlib
import pytest
import tensorflow as tf

from alexnet_jax import config as config_lib
from alexnet_jax import train

REPO = pathlib.Path(__file__).resolve().parents[1]
DEMO = REPO / 'experiments' / 'demo.py'
GOLDEN = pathlib.Path(__file__).with_name('data') / 'golden_demo.json'

# Config fields (dotted paths into experiments/demo.py's config) that shrink the demo to
# 8 steps of 32 images on 192 training / 40 validation examples. A refactor that renames
# a field translates the name here; the values stay.
GOLDEN_OVERRIDES = {
    'input.shapes.train_examples': 192,
    'input.shapes.eval_examples': 40,
    'batch_size': 32,
    'num_train_steps': 8,
    'eval_every_steps': 4,
    'checkpoint_every_steps': 4,
    'log_every_steps': 1,
    'ten_crop_eval': True,
    'plateau.patience': 1,
}
TIMING_KEYS = ('images_per_sec',)


def golden_config(data_dir: str):
  """experiments/demo.py's config with GOLDEN_OVERRIDES and the given data_dir."""
  config = config_lib.load(str(DEMO))
  for key, value in {'data_dir': data_dir, **GOLDEN_OVERRIDES}.items():
    *parents, leaf = key.split('.')
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def environment() -> dict:
  """What the bits depend on besides the code."""
  return {'backend': jax.default_backend(), 'jax': jax.__version__,
          'jaxlib': jaxlib.__version__, 'tensorflow': tf.__version__}


def run_golden(root: str) -> list[dict]:
  """Runs the golden configuration under `root`; returns metrics.jsonl without timings."""
  workdir = os.path.join(root, 'run')
  train.train_and_evaluate(golden_config(os.path.join(root, 'tfds')), workdir)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


def test_demo_run_matches_the_recorded_numbers(tmp_path):
  """Every metrics.jsonl value of the golden run equals the recorded one exactly."""
  golden = json.loads(GOLDEN.read_text())
  here = environment()
  if here != golden['environment']:
    pytest.skip(f"golden values were recorded with {golden['environment']}, this is {here}")
  rows = run_golden(str(tmp_path))
  # The recorded run's field names, as they were spelt then (the values must match).
  assert list(golden['overrides'].values()) == list(GOLDEN_OVERRIDES.values())
  want = golden['rows']
  assert [r['step'] for r in rows] == [r['step'] for r in want]
  for got, expected in zip(rows, want):
    assert got.keys() == expected.keys(), (got, expected)
    for key, value in expected.items():
      assert got[key] == value, (f"step {expected['step']}, {key}: {got[key]!r} now, "
                                 f'{value!r} recorded')
  # The record covers what it should: every step's loss, two evaluations, the ten-crop test.
  assert sum('train_loss' in r for r in want) == 8
  assert [r['step'] for r in want if 'eval_loss' in r] == [4, 8]
  assert [r['step'] for r in want if 'eval_ten_crop_loss' in r] == [8]


def record() -> None:
  """Runs the golden configuration and writes tests/data/golden_demo.json."""
  with tempfile.TemporaryDirectory() as root:
    rows = run_golden(root)
  commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()
  GOLDEN.parent.mkdir(exist_ok=True)
  GOLDEN.write_text(json.dumps({
      'note': ('metrics.jsonl rows (images_per_sec left out) of train.train_and_evaluate on '
               'experiments/demo.py with the overrides below and a fresh data_dir, recorded '
               'by `python tests/test_train_golden.py` on a 2-core CPU machine. Floats are exact '
               '(shortest repr, which round-trips).'),
      'commit': commit, 'environment': environment(), 'overrides': GOLDEN_OVERRIDES,
      'rows': rows}, indent=1) + '\n')
  print(f'wrote {len(rows)} rows to {GOLDEN}')


if __name__ == '__main__':
  sys.exit(record())
