"""Training-step throughput: the measurement behind `python -m alexnet_jax.benchmark`.

Feeds a fixed synthetic batch already on the devices, so it times the step
alone (forward, backward and the paper's update), not the input pipeline.
"""

import statistics
import time

import jax
import numpy as np

from alexnet_jax import model as model_lib
from alexnet_jax import optim
from alexnet_jax import parallel
from alexnet_jax import steps


def train_step_throughput(model: model_lib.AlexNet, batch_size: int, num_steps: int,
                          warmup: int, mesh_data: int | None = None,
                          mesh_model: int | None = 1) -> dict:
  """Times the jitted training step.

  Returns {'backend', 'devices' (the mesh shape), 'compile_s', 'step_s' (the
  median of `num_steps` timed steps after `warmup` untimed ones),
  'images_per_s'}.
  """
  mesh = parallel.make_mesh(mesh_data, mesh_model, model.towers)
  parallel.check_batch_size(batch_size, mesh)
  tx = optim.paper_sgd(0.01)
  params = parallel.init_params(model, mesh, jax.random.key(0))
  opt_state = parallel.init_opt_state(tx, params, mesh)
  rng = np.random.default_rng(0)
  side = model.image_size
  batch = parallel.shard_batch({
      'image': rng.normal(0, 50, (batch_size, side, side, 3)).astype(np.float32),
      'label': rng.integers(0, model.num_classes, batch_size).astype(np.int32)}, mesh)
  step = steps.make_train_step(model, tx, mesh)

  start = time.perf_counter()
  compiled = step.lower(params, opt_state, batch, jax.random.key(0)).compile()
  compile_s = time.perf_counter() - start
  times = []
  for i in range(warmup + num_steps):
    start = time.perf_counter()
    params, opt_state, metrics = compiled(params, opt_state, batch, jax.random.key(i))
    jax.block_until_ready((params, metrics))
    if i >= warmup:
      times.append(time.perf_counter() - start)
  median = statistics.median(times)
  return {'backend': jax.default_backend(), 'devices': dict(mesh.shape), 'compile_s': compile_s,
          'step_s': median, 'images_per_s': batch_size / median}
