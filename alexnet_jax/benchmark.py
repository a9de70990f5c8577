r"""Training-step throughput: forward, backward and the paper's update.

  python -m alexnet_jax.benchmark                       # full network, batch 128
  python -m alexnet_jax.benchmark --mesh_model=2        # one tower per device
  python -m alexnet_jax.benchmark --mesh_data=4 --mesh_model=2 --batch_size=512

Prints the compile time and the median images/s over --steps timed steps
after --warmup untimed ones (`alexnet_jax.timing`). The input pipeline has its
own benchmark, `python -m alexnet_jax.bench_input`. Figures are recorded in
docs/benchmarks.md.
"""

from absl import flags
import jax.numpy as jnp

from alexnet_jax import cli
from alexnet_jax import model as model_lib
from alexnet_jax import timing

_BATCH_SIZE = flags.DEFINE_integer('batch_size', 128, 'Global batch size.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps.')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.')
_TOWERS = flags.DEFINE_integer('towers', 2, 'Towers of the network (1 or 2).')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 224, 'Input side in pixels.')
_NUM_CLASSES = flags.DEFINE_integer('num_classes', 1000, 'Output classes.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')
_MESH_DATA = flags.DEFINE_integer('mesh_data', None,
                                  "Devices on the 'data' axis (default: the rest).")
_MESH_MODEL = flags.DEFINE_integer('mesh_model', 1, "Devices on the 'model' axis (1 or 2).")


def main(argv):
  del argv
  model = model_lib.AlexNet(num_classes=_NUM_CLASSES.value, towers=_TOWERS.value,
                            image_size=_IMAGE_SIZE.value, dtype=jnp.dtype(_DTYPE.value))
  r = timing.train_step_throughput(model, _BATCH_SIZE.value, _STEPS.value, _WARMUP.value,
                                   _MESH_DATA.value, _MESH_MODEL.value)
  print(f"backend={r['backend']} mesh={r['devices']} batch={_BATCH_SIZE.value} "
        f'towers={_TOWERS.value} dtype={_DTYPE.value} image={_IMAGE_SIZE.value}')
  print(f"compile {r['compile_s']:.1f} s | step {r['step_s'] * 1e3:.0f} ms (median of "
        f"{_STEPS.value}) | {r['images_per_s']:.1f} images/s")


if __name__ == '__main__':
  cli.run(main)
