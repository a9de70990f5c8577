"""The evaluation step's sums (`steps.error_sums`) against hand-counted values, and an odd
class count through training, evaluation and prediction."""

import os
import subprocess
import sys

from conftest import TINY
from conftest import read_metrics
from conftest import small_config
import jax
import numpy as np
import pytest

from alexnet_jax import checkpoint
from alexnet_jax import model as model_lib
from alexnet_jax import parallel
from alexnet_jax import steps
from alexnet_jax import train


def test_error_sums_with_ties():
  """Ties go to the lower class index (lax.top_k), which the expected values spell out."""
  probs = np.array([
      [0.30, 0.30, 0.20, 0.10, 0.05, 0.05],  # label 1 tied with 0 for first: top-1 wrong
      [0.30, 0.30, 0.20, 0.10, 0.05, 0.05],  # label 0 tied with 1 for first: right
      [0.25, 0.20, 0.20, 0.15, 0.10, 0.10],  # label 5 tied with 4 for fifth: top-5 wrong
      [0.25, 0.20, 0.20, 0.15, 0.10, 0.10],  # label 4 fifth: top-5 right
      [0.10, 0.10, 0.10, 0.10, 0.10, 0.50],  # padding row: ignored
  ], np.float32)
  labels = np.array([1, 0, 5, 4, 0], np.int32)
  mask = np.array([True, True, True, True, False])
  sums = jax.tree.map(float, steps.error_sums(probs, labels, mask))
  assert sums['count'] == 4
  assert sums['top1_errors'] == 3  # rows 0, 2, 3
  assert sums['top5_errors'] == 1  # row 2
  np.testing.assert_allclose(sums['loss'], -np.log([0.30, 0.30, 0.10, 0.10]).sum(), rtol=1e-6)


@pytest.mark.slow
def test_odd_class_count_trains_and_evaluates(data_dir, tmp_path):
  """3 classes over two towers: fc8 has 2 units per tower, one padded. The run trains and
  evaluates; its checkpoint holds the 4 units and the predictions are over the 3 classes
  only (the padded unit never among them), summing to 1."""
  config = small_config(data_dir, **{**TINY, 'ten_crop_eval': False,
                                     'input.shapes.classes': (0, 1, 2)})
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  assert 'eval_top1_error' in read_metrics(workdir)[-1]
  _, params = checkpoint.load_params(workdir)
  assert params['fc8']['kernel'].shape == (2, 64, 2)
  model = model_lib.from_config(config.model, 3, image_size=config.input.crop_size)
  mesh = parallel.make_mesh(None, None, model.towers)
  images = np.random.default_rng(0).normal(0, 50, (4, 64, 64, 3)).astype(np.float32)
  probs = np.asarray(steps.make_predict_step(model, mesh)(params, images))
  assert probs.shape == (4, 3)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


_SHARDED_TRANSFORM = '''
import types
import jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
import hlo
from alexnet_jax import parallel, steps
rng = np.random.default_rng(0)
n, s, c = 16, 12, 8
batch = {'image': rng.integers(0, 256, (n, c, c, 3), dtype=np.uint8),
         'offset': rng.integers(0, s - c + 1, (n, 2)).astype(np.int32),
         'flip': rng.random(n) < 0.5, 'alpha': rng.normal(0, 0.1, (n, 3)).astype(np.float32)}
transform = types.SimpleNamespace(  # data.TrainTransform's fields (no TensorFlow here)
    mean_image=rng.uniform(0, 255, (s, s, 3)).astype(np.float32),
    eigvecs=np.linalg.qr(rng.normal(size=(3, 3)))[0].astype(np.float32),
    lighting_scale=np.array([20.0, 3.0, 0.5], np.float32), bgr=True)
outputs = []
for shape in ((1, 1), (4, 2)):
  mesh = parallel.make_mesh(*shape)
  fn = jax.jit(steps.train_inputs(transform, mesh))
  sharded = parallel.shard_batch(batch, mesh)
  collectives = hlo.hlo_collectives(fn.lower(sharded).compile().as_text(), mesh)
  out = fn(sharded)
  assert out.sharding.is_equivalent_to(NamedSharding(mesh, P('data')), out.ndim), out.sharding
  assert collectives == [], collectives
  outputs.append(np.asarray(out))
np.testing.assert_array_equal(outputs[0], outputs[1])
print('OK')
'''


def test_input_transformation_runs_on_each_devices_rows():
  """On a (data 4, model 2) mesh of simulated devices every device transforms its own rows of
  the uint8 batch: the compiled transformation holds no collective, its output is sharded
  over 'data' like the batch, and it equals the one-device result bit for bit."""
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8',
         'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3'}
  out = subprocess.run([sys.executable, '-c', _SHARDED_TRANSFORM], capture_output=True,
                       text=True, env=env, cwd=os.path.dirname(__file__), timeout=300)
  assert out.returncode == 0 and out.stdout.strip().endswith('OK'), out.stderr[-3000:]
