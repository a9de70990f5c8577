"""The benchmark program, its library (`alexnet_jax.timing`) and the GPU script, in short modes.

No timing assertions: the tests check the FLOP count against the network's
own convolutions and dense layers, the class count a config implies, and that
the programs run end to end in a tiny mode without TensorFlow (and without
PyTorch unless asked), their tables consistent with the counted FLOPs.
"""

import importlib.util
import os
import re
import subprocess
import sys

import jax
import jax.extend
import jax.numpy as jnp
import pytest

from alexnet_jax import config as config_lib
from alexnet_jax import timing
from alexnet_jax.model import AlexNet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CONFIG = '''
from alexnet_jax.config import base_config
def get_config():
  c = base_config()
  c.dataset = 'shapes'
  c.input.shapes.classes = (0, 1, 2, 3)
  c.input.crop_size = 67
  c.model.conv_features = (8, 8, 8, 8, 8)
  c.model.fc_features = 16
  return c
'''
# Runs a module as __main__ and reports which heavy libraries it imported.
_RUN_AND_REPORT = '''
import runpy, sys
sys.argv = sys.argv[1:]
try:
  runpy.run_path(sys.argv[0], run_name='__main__') if sys.argv[0].endswith('.py') else \\
      runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)
except SystemExit as e:
  if e.code:
    raise
print('IMPORTED', 'tensorflow' in sys.modules, 'torch' in sys.modules)
'''


def _macs_from_jaxpr(model):
  """Multiply-adds of the forward pass, read off the traced convolutions and matmuls."""
  images = jnp.zeros((1, model.image_size, model.image_size, 3))
  params = jax.eval_shape(model.init, jax.random.key(0), images)
  jaxpr = jax.make_jaxpr(lambda p: model.apply(p, images))(params)
  return _count(jaxpr.jaxpr)


def _count(jaxpr):
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'conv_general_dilated':
      out = eqn.outvars[0].aval.shape          # (1, H, W, O)
      kernel = eqn.invars[1].aval.shape        # (kh, kw, I, O)
      total += out[1] * out[2] * kernel[0] * kernel[1] * kernel[2] * out[3]
    elif eqn.primitive.name == 'dot_general' and eqn.invars[0].aval.ndim == 2:  # not LRN's band
      lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
      total += lhs[0] * rhs[0] * rhs[1]
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      total += _count(sub)
  return total


@pytest.mark.parametrize('fields', [{}, dict(towers=1), dict(conv6=True, num_classes=10),
                                    dict(image_size=227, pool_window=2)])
def test_forward_macs_counts_the_traced_layers(fields):
  """forward_macs equals the multiply-adds of the convolutions and matmuls the network traces."""
  model = AlexNet(**fields)
  assert timing.forward_macs(model) == _macs_from_jaxpr(model)


def test_config_num_classes():
  """1000 for ImageNet, 10 for Imagenette, the kept subset or all 12 for the embedded shapes."""
  config = config_lib.base_config()
  assert timing.config_num_classes(config) == 1000
  config.dataset = 'imagenette'
  assert timing.config_num_classes(config) == 10
  config.dataset = 'shapes'
  assert timing.config_num_classes(config) == 12
  config.input.shapes.classes = (1, 4, 7)
  assert timing.config_num_classes(config) == 3
  model = timing.model_from_config(config_lib.load('demo'))
  assert (model.image_size, model.num_classes) == (64, 12)


def _run(args, tmp_path, env=None):
  result = subprocess.run([sys.executable, '-c', _RUN_AND_REPORT, *args], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ, **(env or {})})
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def _table(stdout):
  lines = [line for line in stdout.splitlines() if line.startswith('|')]
  keys = [k.strip() for k in lines[0].strip('|').split('|')]
  return [dict(zip(keys, (v.strip() for v in line.strip('|').split('|')))) for line in lines[2:]]


@pytest.mark.slow
def test_benchmark_program_tiny_config(tmp_path):
  """--config with a tiny network, 1 step: one row whose GFLOP/s is 6 x macs x batch / step."""
  path = tmp_path / 'tiny.py'
  path.write_text(TINY_CONFIG)
  out = _run(['alexnet_jax.tools.benchmark', f'--config={path}', '--batch_size=4', '--steps=1',
              '--warmup=0', '--config.input.shapes.classes=(0,1,2,3)'], tmp_path)
  assert 'IMPORTED False False' in out
  (row,) = _table(out)
  model = AlexNet(num_classes=4, image_size=67, conv_features=(8, 8, 8, 8, 8), fc_features=16)
  assert f'{timing.forward_macs(model) / 1e6:.0f}M multiply-adds' in out
  assert ', 4 classes' in out and 'image 67' in out
  step_s = float(row['step ms (each round)'].split()[0]) / 1e3
  flops = 6 * timing.forward_macs(model) * 4
  assert float(row['GFLOP/s']) == pytest.approx(flops / step_s / 1e9, rel=0.02, abs=0.05)
  assert float(row['images/s']) == pytest.approx(4 / step_s, rel=0.02)
  assert row['ours is x as fast'] == '1.00'


def test_benchmark_rejects_unknown_torch_mode(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'alexnet_jax.tools.benchmark',
                           '--compare_torch=jit'],
                          capture_output=True, text=True, cwd=tmp_path)
  assert result.returncode == 1 and 'eager and/or compile' in result.stderr


def test_benchmark_with_torch(tmp_path):
  """With PyTorch installed: a tiny network in both, rows alternating; same parameter count."""
  torch = pytest.importorskip('torch')
  script = os.path.join(ROOT, 'benchmarks', 'torch_alexnet.py')
  spec = importlib.util.spec_from_file_location('torch_alexnet', script)
  torch_alexnet = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(torch_alexnet)
  ours = AlexNet(num_classes=10, image_size=67, conv_features=(8, 8, 8, 8, 8), fc_features=16)
  theirs = torch_alexnet.AlexNet(10, 67, (8, 8, 8, 8, 8), 16, True, 2.0, 'paper', (3, 2))
  params = jax.eval_shape(ours.init, jax.random.key(0), jnp.zeros((1, 67, 67, 3)))
  assert sum(p.size for p in jax.tree.leaves(params)) == sum(
      p.numel() for p in theirs.parameters())
  assert theirs(torch.zeros(2, 3, 67, 67)).shape == (2, 10)
  path = tmp_path / 'tiny.py'
  path.write_text(TINY_CONFIG)
  out = subprocess.run([sys.executable, '-m', 'alexnet_jax.tools.benchmark', f'--config={path}',
                        '--batch_size=4', '--steps=1', '--warmup=1', '--rounds=2',
                        '--compare_torch=eager'], capture_output=True, text=True, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = _table(out.stdout)
  assert [r['implementation'].split(' (')[0] for r in rows] == ['alexnet_jax', 'PyTorch eager']
  assert len(re.findall(r'\d+', rows[1]['step ms (each round)'].split('(')[1])) == 2


@pytest.mark.slow
def test_gpu_script_dry_run(tmp_path):
  """benchmarks/gpu_benchmark.py --tiny on CPU: every (step, precision, batch) row, no TF/torch."""
  output = tmp_path / 'gpu.md'
  out = _run([os.path.join(ROOT, 'benchmarks', 'gpu_benchmark.py'), '--tiny',
              f'--output={output}'], tmp_path, env={'PYTHONPATH': ROOT})
  assert 'IMPORTED False False' in out
  rows = _table(output.read_text())
  precisions = ('bfloat16', 'default', 'float32')
  expected = [(step, p, '2') for step in ('train', 'eval') for p in precisions]
  assert [(r['step'], r['precision'], r['batch']) for r in rows] == expected
  for r in rows:
    assert float(r['images/s']) > 0 and r['MFU'].endswith('%'), r
