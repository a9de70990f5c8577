"""Step throughput: the measurements behind `python -m alexnet_jax.tools.benchmark` and benchmarks/.

Feeds a fixed synthetic batch already on the devices, so it times the step
alone (forward, backward and the paper's update; or the evaluation step), not
the input pipeline. Besides images/s it reports the compile time, the peak
memory and the achieved FLOP/s, the FLOPs counted from the network's layer
shapes (`forward_macs`).

Nothing here imports TensorFlow or ml_collections (the GPU benchmark runs where
they are absent); a config is any `config.load` result.
"""

from collections.abc import Callable
import dataclasses
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax import errors
from alexnet_jax import model as model_lib
from alexnet_jax import optim
from alexnet_jax import parallel
from alexnet_jax import steps

# Classes of the datasets whose class count is fixed (data/ is not imported:
# it loads TensorFlow). 'shapes' is the embedded 12-class dataset.
DATASET_CLASSES = {'imagenet2012': 1000, 'imagenette': 10, 'shapes': 12}


def config_num_classes(config: Any) -> int:
  """The class count of a config's dataset: 1000 unless the dataset says otherwise.

  'shapes' with `input.shapes.classes` set keeps that many; a 'folder'
  dataset's classes are only known from its files, so it counts as 1000 here
  (pass --num_classes to the benchmark instead).
  """
  if config.dataset == 'shapes' and config.input.shapes.classes is not None:
    return len(config.input.shapes.classes)
  return DATASET_CLASSES.get(config.dataset, 1000)


def model_from_config(config: Any,
                      num_classes: int | None = None) -> model_lib.AlexNet:
  """The network a config trains: its `model` fields, image size `input.crop_size`."""
  classes = num_classes if num_classes is not None else config_num_classes(config)
  return model_lib.from_config(config.model, classes, image_size=config.input.crop_size)


def forward_macs(model: model_lib.AlexNet) -> int:
  """Multiply-adds of one image's forward pass through the convolutions and dense layers.

  Counted from the layer shapes: a convolution does out_side**2 * k**2 *
  (input maps one kernel reads) * kernels; conv2, conv4, conv5 (and conv6)
  read their own tower's maps only, conv3 and the dense layers both towers'
  (section 3.2). LRN, pooling and the nonlinearities are left out (under 1%).
  The paper's network: 724,406,816 (training does about 3x: forward, and
  the gradients with respect to the activations and to the weights).
  """
  c1, c2, c3, c4, c5 = model.features_per_layer
  t = model.towers
  s1, s2, s3, s5 = model.feature_map_sizes()
  convs = [(s1, 11, 3, c1), (s2, 5, c1 // t, c2), (s3, 3, c2, c3), (s3, 3, c3 // t, c4),
           (s3, 3, c4 // t, c5)]
  if model.conv6:
    convs.append((s5, 3, c5 // t, c5))
  fc = model.fc_features
  dense = [(s5 * s5 * c5, fc), (fc, fc), (fc, model.num_classes)]
  return (sum(side * side * k * k * cin * cout for side, k, cin, cout in convs)
          + sum(din * dout for din, dout in dense))


def peak_memory_bytes() -> dict:
  """{'host_rss': this process's peak resident set (ru_maxrss), 'device': peak device bytes}.

  'device' is the accelerator's `peak_bytes_in_use` where the backend reports
  it (GPUs, TPUs), else None: on CPU the step's arrays live in the process's
  memory, which host_rss counts (with the compiler, Python and the libraries).
  """
  stats = jax.devices()[0].memory_stats() or {}
  return {'host_rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
          'device': stats.get('peak_bytes_in_use')}


def _synthetic_batch(model: model_lib.AlexNet, batch_size: int,
                     mesh: jax.sharding.Mesh) -> dict:
  rng = np.random.default_rng(0)
  side = model.image_size
  return parallel.shard_batch({
      'image': rng.normal(0, 50, (batch_size, side, side, 3)).astype(np.float32),
      'label': rng.integers(0, model.num_classes, batch_size).astype(np.int32),
      'mask': np.ones(batch_size, bool)}, mesh)


@dataclasses.dataclass
class StepTimer:
  """A compiled step on its inputs, timed in rounds (so that rounds can alternate with others).

  warm(steps) runs untimed steps; run(steps) -> seconds per step, the median
  of `steps` (at least 1) timed steps.
  """
  name: str
  batch_size: int
  flops_per_step: float
  compile_s: float
  hlo_text: str  # the compiled step's HLO
  _call: Callable[[], None]

  def warm(self, num_steps: int) -> None:
    for _ in range(num_steps):
      self._call()

  def run(self, num_steps: int) -> float:
    times = []
    for _ in range(num_steps):
      start = time.perf_counter()
      self._call()
      times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step_timer(model: model_lib.AlexNet, batch_size: int, mesh_data: int | None = None,
                     mesh_model: int | None = 1) -> StepTimer:
  """The jitted training step (`steps.make_train_step` with `optim.paper_sgd`), compiled."""
  mesh = parallel.make_mesh(mesh_data, mesh_model, model.towers)
  parallel.check_batch_size(batch_size, mesh)
  tx = optim.paper_sgd(0.01)
  state = {'params': parallel.init_params(model, mesh, jax.random.key(0))}
  state['opt'] = parallel.init_opt_state(tx, state['params'], mesh)
  batch = _synthetic_batch(model, batch_size, mesh)
  del batch['mask']
  step = steps.make_train_step(model, tx, mesh)
  start = time.perf_counter()
  compiled = step.lower(state['params'], state['opt'], batch, jax.random.key(0)).compile()
  compile_s = time.perf_counter() - start
  keys = iter(range(1, 1 << 30))

  def call():
    state['params'], state['opt'], metrics = compiled(state['params'], state['opt'], batch,
                                                      jax.random.key(next(keys)))
    jax.block_until_ready((state['params'], metrics))

  return StepTimer('train', batch_size, 6.0 * forward_macs(model) * batch_size, compile_s,
                   compiled.as_text(), call)


def eval_step_timer(model: model_lib.AlexNet, batch_size: int, mesh_data: int | None = None,
                    mesh_model: int | None = 1) -> StepTimer:
  """The jitted evaluation step (`steps.make_eval_step`, one crop), compiled."""
  mesh = parallel.make_mesh(mesh_data, mesh_model, model.towers)
  parallel.check_batch_size(batch_size, mesh)
  params = parallel.init_params(model, mesh, jax.random.key(0))
  batch = _synthetic_batch(model, batch_size, mesh)
  step = steps.make_eval_step(model, mesh)
  start = time.perf_counter()
  compiled = step.lower(params, batch).compile()
  compile_s = time.perf_counter() - start

  def call():
    jax.block_until_ready(compiled(params, batch))

  return StepTimer('eval', batch_size, 2.0 * forward_macs(model) * batch_size, compile_s,
                   compiled.as_text(), call)


def measure(timer: StepTimer, num_steps: int, warmup: int) -> dict:
  """One round: `warmup` untimed steps, then the median of `num_steps`.

  Returns {'backend', 'compile_s', 'step_s', 'images_per_s', 'flop_per_s',
  'peak' (`peak_memory_bytes`)}.
  """
  timer.warm(warmup)
  step_s = timer.run(num_steps)
  return {'backend': jax.default_backend(), 'compile_s': timer.compile_s, 'step_s': step_s,
          'images_per_s': timer.batch_size / step_s, 'flop_per_s': timer.flops_per_step / step_s,
          'peak': peak_memory_bytes()}


def train_step_throughput(model: model_lib.AlexNet, batch_size: int, num_steps: int,
                          warmup: int, mesh_data: int | None = None,
                          mesh_model: int | None = 1) -> dict:
  """Times the jitted training step once: `measure` of `train_step_timer`."""
  return measure(train_step_timer(model, batch_size, mesh_data, mesh_model), num_steps, warmup)


def matmul_peak_flop_per_s(dtype=jnp.bfloat16, size: int = 8192, repeats: int = 5) -> float:
  """The measured FLOP/s of a large (size x size) @ (size x size) matmul in `dtype`.

  The best of `repeats` after one warm-up: the denominator of model-FLOP
  utilization on this device.
  """
  a = jnp.ones((size, size), dtype)
  dot = jax.jit(lambda a, b: a @ b)
  jax.block_until_ready(dot(a, a))
  best = math.inf
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(dot(a, a))
    best = min(best, time.perf_counter() - start)
  return 2.0 * size ** 3 / best


class TorchRunner:
  """The same network in PyTorch (benchmarks/torch_alexnet.py), in a process of its own.

  The process builds the network, runs its warm-up, then waits: every
  `run(num_steps)` makes it time one round and returns its JSON result
  ({'step_s', 'compile_s', 'peak_rss'}), so rounds can alternate with ours
  (ABAB) under the same load. PyTorch is never imported here.
  """

  def __init__(self, script: str, mode: str, model: model_lib.AlexNet, batch_size: int,
               warmup: int):
    if model.towers != 2 or model.lrn_across_towers or model.conv6 or model.activation != 'relu':
      raise errors.ConfigError(
          'The PyTorch comparison builds the paper\'s two-tower network with ReLU, LRN per '
          'tower and no conv6; benchmark this variant without --compare_torch.')
    args = [sys.executable, script, f'--mode={mode}', f'--batch_size={batch_size}',
            f'--image_size={model.image_size}', f'--num_classes={model.num_classes}',
            f'--conv_features={",".join(map(str, model.features_per_layer))}',
            f'--fc_features={model.fc_features}', f'--lrn={int(model.lrn)}',
            f'--lrn_k={model.lrn_k}', f'--lrn_convention={model.lrn_convention}',
            f'--pool={model.pool_window},{model.pool_stride}', f'--warmup={warmup}']
    self.mode = mode
    self._process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
    self.setup = self._read()  # {'compile_s'}: after the warm-up

  def _read(self) -> dict:
    line = self._process.stdout.readline()
    if not line:
      raise errors.AlexNetError(f'The PyTorch benchmark ({self.mode}) exited with status '
                                f'{self._process.wait()}; its error is printed above.')
    return json.loads(line)

  def run(self, num_steps: int) -> dict:
    self._process.stdin.write(f'{num_steps}\n')
    self._process.stdin.flush()
    return self._read()

  def close(self) -> None:
    self._process.stdin.close()
    self._process.wait()


def format_table(rows: list[dict]) -> str:
  """A Markdown table of result rows (dicts with the same keys, values already strings)."""
  keys = list(rows[0])
  lines = ['| ' + ' | '.join(keys) + ' |', '|' + '---|' * len(keys)]
  lines += ['| ' + ' | '.join(str(r[k]) for k in keys) + ' |' for r in rows]
  return '\n'.join(lines)


def _row(name: str, step_s: list[float], compile_s: float, peak: int | None, batch_size: int,
         flops_per_step: float, ours_step_s: float) -> dict:
  s = statistics.median(step_s)
  return {'implementation': name, 'images/s': f'{batch_size / s:.1f}',
          'step ms (each round)': f'{s * 1e3:.0f} ({", ".join(f"{t * 1e3:.0f}" for t in step_s)})',
          'compile s': f'{compile_s:.1f}',
          'peak memory MB': '-' if peak is None else f'{peak / 2**20:.0f}',
          'GFLOP/s': f'{flops_per_step / s / 1e9:.1f}',
          'ours is x as fast': f'{s / ours_step_s:.2f}'}


def compare_with_torch(model: model_lib.AlexNet, batch_size: int, num_steps: int, warmup: int,
                       rounds: int, torch_modes: list[str], torch_script: str,
                       mesh_data: int | None = None, mesh_model: int | None = 1) -> list[dict]:
  """Our training step and PyTorch's (one process per mode), alternating rounds (ABAB...).

  Each round times `num_steps` steps of every implementation in turn, so that
  all see the same load; a row gives the median over rounds (and each
  round's median). Peak memory: our step's device peak where the backend
  reports one, else this process's peak resident set; PyTorch's process's peak
  resident set. Returns `format_table` rows, ours first.
  """
  runners = [TorchRunner(torch_script, mode, model, batch_size, warmup) for mode in torch_modes]
  try:
    ours = train_step_timer(model, batch_size, mesh_data, mesh_model)
    ours.warm(warmup)
    times = {name: [] for name in ['ours', *torch_modes]}
    results = {}
    for _ in range(rounds):
      times['ours'].append(ours.run(num_steps))
      for runner in runners:
        results[runner.mode] = runner.run(num_steps)
        times[runner.mode].append(results[runner.mode]['step_s'])
  finally:
    for runner in runners:
      runner.close()
  peak = peak_memory_bytes()
  ours_s = statistics.median(times['ours'])
  rows = [_row(f'alexnet_jax ({jax.default_backend()}, {model.matmul_precision})', times['ours'],
               ours.compile_s, peak['device'] or peak['host_rss'], batch_size,
               ours.flops_per_step, ours_s)]
  rows += [_row(f'PyTorch {r.mode}', times[r.mode], r.setup['compile_s'],
                results[r.mode]['peak_rss'], batch_size, ours.flops_per_step, ours_s)
           for r in runners]
  return rows
