"""The GPU benchmark: training and evaluation steps over batch sizes and precisions.

  benchmarks/gpu.sh                      # on a machine with one GPU (about 5 minutes)
  python benchmarks/gpu_benchmark.py --tiny --output=/tmp/t.md   # a dry run on any CPU

Runs `alexnet_jax.timing` on the paper's network with mesh (data, model) =
(1, 1): the training step (forward, backward, `paper_sgd` update) at batch
sizes 128, 256, 512, 1024 with each `model.matmul_precision` ('bfloat16':
bfloat16 compute with float32 parameters; 'default': float32 with TF32
allowed; 'float32': true float32), and the pipeline-free evaluation step
(`steps.make_eval_step`, one crop) at batch 1024. Prints and writes a
Markdown table: images/s, step ms, compile s, peak device memory and
model-FLOP utilization (FLOPs counted from the layer shapes,
`timing.forward_macs`, over the bfloat16 matmul peak measured here with a
large jnp.dot). Imports neither TensorFlow nor PyTorch.
"""

import argparse
import os
import sys
import time

import jax

from alexnet_jax import model as model_lib
from alexnet_jax import timing

PRECISIONS = ('bfloat16', 'default', 'float32')


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--tiny', action='store_true',
                      help='A tiny network and batches, one step: a dry run on a CPU.')
  parser.add_argument('--output', default=os.path.join(os.environ.get('OUT', '.'),
                                                       'gpu_benchmark.md'))
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--warmup', type=int, default=2)
  args = parser.parse_args()
  start = time.perf_counter()
  devices = jax.devices()
  print(f'devices: {devices} ({devices[0].device_kind})', flush=True)
  if devices[0].platform != 'gpu' and not args.tiny:
    sys.exit(f'error: no GPU ({devices[0].platform}); install jax[cuda12] or pass --tiny.')
  if args.tiny:
    base = model_lib.AlexNet(num_classes=10, image_size=67, conv_features=(8, 8, 8, 8, 8),
                             fc_features=16)
    batch_sizes, eval_batch, steps, warmup, matmul_size = (2,), 2, 1, 0, 256
  else:
    base = model_lib.AlexNet()
    batch_sizes, eval_batch, steps, warmup, matmul_size = (128, 256, 512, 1024), 1024, \
        args.steps, args.warmup, 8192
  peak = timing.matmul_peak_flop_per_s(size=matmul_size)
  print(f'bfloat16 matmul peak ({matmul_size}^3): {peak / 1e12:.1f} TFLOP/s', flush=True)
  rows = []
  jobs = [('train', p, b) for p in PRECISIONS for b in batch_sizes]
  jobs += [('eval', p, eval_batch) for p in PRECISIONS]
  for step, precision, batch in jobs:
    model = base.clone(matmul_precision=precision)
    row = {'step': step, 'precision': precision, 'batch': batch}
    try:
      make = timing.train_step_timer if step == 'train' else timing.eval_step_timer
      r = timing.measure(make(model, batch, 1, 1), steps, warmup)
      device_peak = r['peak']['device']
      row.update({'images/s': f"{r['images_per_s']:.0f}", 'step ms': f"{r['step_s'] * 1e3:.1f}",
                  'compile s': f"{r['compile_s']:.1f}",
                  'peak memory GB': '-' if device_peak is None else f'{device_peak / 2**30:.2f}',
                  'MFU': f"{r['flop_per_s'] / peak:.1%}"})
    except Exception as e:  # noqa: BLE001 -- e.g. out of memory: record it, go on
      row.update({'images/s': f'failed: {type(e).__name__}', 'step ms': '', 'compile s': '',
                  'peak memory GB': '', 'MFU': ''})
    rows.append(row)
    print(row, flush=True)
  text = (f'Device: {devices[0].device_kind} ({len(devices)} visible), jax {jax.__version__}; '
          f'mesh (1, 1); {timing.forward_macs(base) / 1e6:.0f}M multiply-adds per image '
          f'forward (3x in training); bfloat16 matmul peak {peak / 1e12:.1f} TFLOP/s; median of '
          f'{steps} steps after {warmup}; peak memory: the device\'s peak_bytes_in_use, which '
          f'accumulates over the rows; total {time.perf_counter() - start:.0f} s.\n\n'
          + timing.format_table(rows) + '\n')
  with open(args.output, 'w') as f:
    f.write(text)
  print(text)
  print(f'written to {args.output}; tensorflow imported: {"tensorflow" in sys.modules}, '
        f'torch imported: {"torch" in sys.modules}')


if __name__ == '__main__':
  main()
