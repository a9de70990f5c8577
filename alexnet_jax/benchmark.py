r"""Training-step throughput: forward, backward and the paper's update.

  python -m alexnet_jax.benchmark                       # full network, batch 128
  python -m alexnet_jax.benchmark --mesh_model=2        # one tower per device
  python -m alexnet_jax.benchmark --mesh_data=4 --mesh_model=2 --batch_size=512

Feeds a fixed synthetic batch already on the devices, so it measures the step
alone (the input pipeline has its own benchmark, `alexnet_jax.data.bench`).
Prints the compile time and the median images/s over `--steps` timed steps
after `--warmup` untimed ones. Figures are recorded in docs/benchmarks.md.
"""

import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax import model as model_lib
from alexnet_jax import optim
from alexnet_jax import parallel



def benchmark(model: model_lib.AlexNet, batch_size: int, steps: int, warmup: int,
              mesh_data: int = -1, mesh_model: int = 1) -> dict:
  """Times the jitted training step; returns compile seconds and images/s."""
  mesh = parallel.make_mesh(mesh_data, mesh_model, model.towers)
  parallel.check_batch_size(batch_size, mesh)
  tx = optim.paper_sgd(0.01)
  params = parallel.init_params(model, mesh, jax.random.key(0))
  opt_state = parallel.init_opt_state(tx, params, mesh)
  rng = np.random.default_rng(0)
  batch = parallel.shard_batch({
      'image': rng.normal(0, 50, (batch_size, model.image_size, model.image_size, 3)).astype(np.float32),
      'label': rng.integers(0, model.num_classes, batch_size).astype(np.int32)}, mesh)
  step = parallel.make_train_step(model, tx, mesh)

  start = time.perf_counter()
  compiled = step.lower(params, opt_state, batch, jax.random.key(0)).compile()
  compile_s = time.perf_counter() - start
  times = []
  for i in range(warmup + steps):
    start = time.perf_counter()
    params, opt_state, metrics = compiled(params, opt_state, batch, jax.random.key(i))
    jax.block_until_ready((params, metrics))
    if i >= warmup:
      times.append(time.perf_counter() - start)
  median = statistics.median(times)
  return {'backend': jax.default_backend(), 'devices': dict(mesh.shape), 'compile_s': compile_s,
          'step_s': median, 'images_per_s': batch_size / median}


def _define_flags():
  """Command-line flags (defined only when run as a program, so that other
  programs can import `benchmark`)."""
  flags.DEFINE_integer('batch_size', 128, 'Global batch size.')
  flags.DEFINE_integer('steps', 5, 'Timed steps.')
  flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.')
  flags.DEFINE_integer('towers', 2, 'Towers of the network (1 or 2).')
  flags.DEFINE_integer('image_size', 224, 'Input side in pixels.')
  flags.DEFINE_integer('num_classes', 1000, 'Output classes.')
  flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')
  flags.DEFINE_integer('mesh_data', -1, "Devices on the 'data' axis (-1: the rest).")
  flags.DEFINE_integer('mesh_model', 1, "Devices on the 'model' axis (1 or 2).")


def main(argv):
  del argv
  f = flags.FLAGS
  model = model_lib.AlexNet(num_classes=f.num_classes, towers=f.towers,
                            image_size=f.image_size, dtype=jnp.dtype(f.dtype))
  r = benchmark(model, f.batch_size, f.steps, f.warmup, f.mesh_data, f.mesh_model)
  print(f"backend={r['backend']} mesh={r['devices']} batch={f.batch_size} "
        f"towers={f.towers} dtype={f.dtype} image={f.image_size}")
  print(f"compile {r['compile_s']:.1f} s | step {r['step_s'] * 1e3:.0f} ms (median of "
        f"{f.steps}) | {r['images_per_s']:.1f} images/s")


if __name__ == '__main__':
  _define_flags()
  app.run(main)
