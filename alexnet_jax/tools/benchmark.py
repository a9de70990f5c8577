r"""Training-step throughput, optionally beside PyTorch on the same network.

  python -m alexnet_jax.tools.benchmark                       # the paper's network, batch 128
  python -m alexnet_jax.tools.benchmark --config=demo         # a config's network and crop size
  python -m alexnet_jax.tools.benchmark --compare_torch=eager,compile --rounds=4
  python -m alexnet_jax.tools.benchmark --mesh_data=4 --mesh_model=2 --batch_size=512

Prints one Markdown table: images/s, step time (the median over --rounds
rounds of the median of --steps timed steps, after --warmup untimed ones),
compile time, peak memory, achieved FLOP/s (counted from the layer shapes,
`timing.forward_macs`) and how many times as fast ours is. With
--compare_torch the same two-tower network runs in PyTorch
(benchmarks/torch_alexnet.py, one process per mode; PyTorch must be
installed, it is no dependency of the package), its rounds alternating with
ours. The library logic is `alexnet_jax.timing`; figures are recorded in
docs/benchmarks.md.
"""

import os

from absl import flags

from alexnet_jax import cli
from alexnet_jax import model as model_lib
from alexnet_jax import timing

_BATCH_SIZE = flags.DEFINE_integer('batch_size', 128, 'Global batch size.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps per round.')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.')
_ROUNDS = flags.DEFINE_integer('rounds', 1, 'Rounds, alternating between the implementations.')
_TOWERS = flags.DEFINE_integer('towers', None, 'Towers of the network (1 or 2; default 2).')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', None,
                                   'Input side (default: the config\'s crop_size, or 224).')
_NUM_CLASSES = flags.DEFINE_integer('num_classes', None,
                                    'Output classes (default: the config\'s dataset\'s, or 1000).')
_PRECISION = flags.DEFINE_enum('matmul_precision', None, list(model_lib.MATMUL_PRECISIONS),
                               'model.matmul_precision (default: the config\'s, or float32).')
_MESH_DATA = flags.DEFINE_integer('mesh_data', None,
                                  "Devices on the 'data' axis (default: the rest).")
_MESH_MODEL = flags.DEFINE_integer('mesh_model', 1, "Devices on the 'model' axis (1 or 2).")
_COMPARE_TORCH = flags.DEFINE_list('compare_torch', [],
                                   'PyTorch modes to time beside ours: eager, compile.')
flags.register_validator('compare_torch', lambda modes: set(modes) <= {'eager', 'compile'},
                         '--compare_torch takes eager and/or compile.')
_TORCH_SCRIPT = flags.DEFINE_string(
    'torch_script', 'benchmarks/torch_alexnet.py',
    'With --compare_torch: the PyTorch network (a checkout\'s benchmarks/torch_alexnet.py; '
    'the default is relative to the checkout).')
flags.register_multi_flags_validator(
    ['compare_torch', 'torch_script'],
    lambda f: not f['compare_torch'] or os.path.isfile(f['torch_script']),
    '--compare_torch needs the PyTorch network: run from a checkout, or pass '
    '--torch_script=<checkout>/benchmarks/torch_alexnet.py.')
cli.define_config_flag()


def main(argv):
  del argv
  overrides = {'towers': _TOWERS.value, 'image_size': _IMAGE_SIZE.value,
               'matmul_precision': _PRECISION.value}
  overrides = {k: v for k, v in overrides.items() if v is not None}
  if flags.FLAGS.config is not None:
    model = timing.model_from_config(flags.FLAGS.config, _NUM_CLASSES.value).clone(**overrides)
  else:
    model = model_lib.AlexNet(num_classes=_NUM_CLASSES.value or 1000, **overrides)
  rows = timing.compare_with_torch(model, _BATCH_SIZE.value, _STEPS.value, _WARMUP.value,
                                   _ROUNDS.value, _COMPARE_TORCH.value, _TORCH_SCRIPT.value,
                                   _MESH_DATA.value, _MESH_MODEL.value)
  print(f'batch {_BATCH_SIZE.value}, image {model.image_size}, {model.num_classes} classes, '
        f'towers {model.towers}, mesh (data, model) = ({_MESH_DATA.value}, {_MESH_MODEL.value}); '
        f'{timing.forward_macs(model) / 1e6:.0f}M multiply-adds per image forward, 3x in '
        'training; peak memory: device peak, else the process\'s peak resident set')
  print(timing.format_table(rows))


if __name__ == '__main__':
  cli.run(main)
