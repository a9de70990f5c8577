"""fc7 features of a split: equal to the network's, in split order, shards that add up."""

import glob
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from alexnet_jax import data
from alexnet_jax import errors
from alexnet_jax import inference

REPO = pathlib.Path(__file__).resolve().parents[1]

def concatenated(batches):
  batches = list(batches)
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


@pytest.mark.parametrize('split', ['validation', 'train'])
def test_features_are_the_networks_fc7_in_split_order(tiny_run, tiny_info, split):
  got = concatenated(inference.feature_batches(tiny_run, split, info=tiny_info))
  n = tiny_info.num_eval_examples if split == 'validation' else tiny_info.num_train_examples
  np.testing.assert_array_equal(got['id'], np.arange(n))
  reader = tiny_info.source.eval if split == 'validation' else tiny_info.source.train
  np.testing.assert_array_equal(got['label'], reader.labels)
  # The same center crops (the unshuffled, unaugmented pass), through the network directly.
  images = np.concatenate([b['image'][b['mask']] for b in data.eval_iterator(
      tiny_info, inference.input_config(tiny_run), batch_size=64, split=split)])
  logits, state = tiny_run.model.apply({'params': tiny_run.params}, images,
                                       mutable=['intermediates'])
  fc7 = np.concatenate(state['intermediates']['fc7_features'][0], axis=-1)
  assert got['fc7'].shape == (n, 64) and got['fc7'].dtype == np.float32
  np.testing.assert_allclose(got['fc7'], fc7, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got['logits'], logits, rtol=1e-5, atol=1e-6)
  assert np.ptp(fc7, axis=0).max() > 1e-3  # not vacuous: the features differ between images


@pytest.mark.slow
def test_program_shards_concatenate_to_the_split(tiny_run, tiny_info, tmp_path):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3'}
  out_file = str(tmp_path / 'out' / 'val.npz')
  args = [sys.executable, '-m', 'alexnet_jax.tools.features', f'--workdir={tiny_run.workdir}',
          f'--out={out_file}', '--shard_size=15', '--dtype=float16']
  out = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  paths = sorted(glob.glob(str(tmp_path / 'out' / '*')))
  assert [os.path.basename(p) for p in paths] == [f'val-0000{i}-of-00003.npz' for i in range(3)]
  shards = [dict(np.load(p)) for p in paths]
  assert [len(s['id']) for s in shards] == [15, 15, 10]
  got = {k: np.concatenate([s[k] for s in shards]) for k in shards[0]}
  want = concatenated(inference.feature_batches(tiny_run, info=tiny_info))
  np.testing.assert_array_equal(got['id'], want['id'])
  np.testing.assert_array_equal(got['label'], want['label'])
  assert got['fc7'].dtype == np.float16
  np.testing.assert_array_equal(got['fc7'], want['fc7'].astype(np.float16))
  np.testing.assert_array_equal(got['logits'], want['logits'].astype(np.float16))
  # Existing shards are not overwritten: an error, and the files stay as they are.
  before = [os.path.getmtime(p) for p in paths]
  again = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert again.returncode == 1 and 'exists already' in again.stderr
  assert [os.path.getmtime(p) for p in paths] == before


def test_a_split_the_dataset_lacks_writes_nothing(tiny_run, tmp_path):
  with pytest.raises(errors.DataError, match="no split 'test'"):
    inference.write_features(tiny_run, 'test', str(tmp_path / 'out' / 'f.npz'))
  assert not os.path.exists(tmp_path / 'out')
