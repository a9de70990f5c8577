r"""Input-pipeline benchmark: training images/s per CPU core.

  python -m alexnet_jax.tools.bench_input [--images=256] [--steps=30] [--batch_size=128] \
      [--folder=DIR] [--config=experiments/demo.py] [--train_steps=5]

Measures the full training transformation (read, decode the crop window, mean
subtraction, flip, PCA lighting, batching to float32) on:

1. prepared 256x256 JPEGs (quality 90; 224 crops): the paper-scale path;
2. the on-the-fly path: the original JPEGs decoded whole, resized (shorter
   side 256), center-cropped, then cropped;
3. with --config, that config's own data (e.g. the demo's 72px shapes) and,
   beside it, the images/s of the config's model in the jitted training step
   (forward, backward, the paper's update: `alexnet_jax.timing`), so that the
   ratio shows whether the pipeline keeps up.

Images come from the embedded dataset's renderer (with sensor noise; 13.8 KB on
average at 256x256, smaller than prepared ImageNet's ~20 KB; the originals are
500x375, a typical ImageNet size) unless --folder=DIR names a directory of
real JPEGs: its first --images .jpg/.jpeg files in path order (subfolders
included) are the originals, prepared as `python -m alexnet_jax.tools.prepare`
does. Each path runs with a private thread pool of 1 thread (images/s per
core) and of all cores.
"""

import os
import time

from absl import flags
import ml_collections
from ml_collections import config_flags
import numpy as np
import tensorflow as tf

from alexnet_jax import cli
from alexnet_jax import config as config_lib
from alexnet_jax import data
from alexnet_jax import errors
from alexnet_jax import model as model_lib
from alexnet_jax import timing
from alexnet_jax.data import prepare
from alexnet_jax.data import sources
from alexnet_jax.data import synthetic

_IMAGES = flags.DEFINE_integer('images', 256, 'Distinct images to cycle through.')
_STEPS = flags.DEFINE_integer('steps', 30, 'Batches timed per measurement.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 128, 'Batch size.')
_FOLDER = flags.DEFINE_string('folder', None,
                              'A directory of JPEGs to measure instead of rendered images.')
_TRAIN_STEPS = flags.DEFINE_integer('train_steps', 5, 'Training steps timed with --config.')
cli.define_config_flag()

SIDE, CROP, QUALITY = 256, 224, 90  # the paper's stored side and crop; prepared JPEG quality


def _rendered(n: int, h: int, w: int) -> list[bytes]:
  """n JPEGs (h x w, quality 90) of the embedded dataset's training images."""
  out = []
  for i in range(n):
    img, _ = synthetic.example('train', i, max(h, w), 0)
    img = tf.image.resize(img, [h, w], antialias=True)
    img = tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)
    out.append(tf.io.encode_jpeg(img, quality=QUALITY).numpy())
  return out


def _folder_jpegs(folder: str, n: int) -> list[bytes]:
  """The first n .jpg/.jpeg files under `folder` in path order."""
  paths = sorted(os.path.join(d, f) for d, _, files in os.walk(os.path.expanduser(folder))
                 for f in files if f.lower().endswith(('.jpg', '.jpeg')))
  if not paths:
    raise errors.DataError(f'--folder={folder} holds no .jpg or .jpeg file.')
  return [prepare.read_bytes(p) for p in paths[:n]]


def _split(jpegs: list[bytes], jpeg_side: int | None) -> sources.Split:
  labels = np.arange(len(jpegs), dtype=np.int32) % synthetic.NUM_CLASSES
  return sources.Split(len(jpegs), labels, 'memory', jpegs, jpeg_side=jpeg_side)


def _info(split: sources.Split, size: int) -> data.DatasetInfo:
  """A DatasetInfo of `split` with made-up statistics of the right shapes."""
  stats = data.DatasetStats(
      mean_image=np.full((size, size, 3), 118.0, np.float32),
      eigvals=np.array([5000.0, 900.0, 100.0], np.float32), eigvecs=np.eye(3, dtype=np.float32),
      covariance=np.eye(3), rgb_mean=np.zeros(3), num_images=split.num_examples)
  source = sources.Source('bench', synthetic.CLASS_NAMES, split, split, size, '')
  return data.DatasetInfo(
      num_classes=synthetic.NUM_CLASSES, num_train_examples=split.num_examples,
      num_eval_examples=split.num_examples, class_names=synthetic.CLASS_NAMES, stats=stats,
      name='bench', image_size=size, location='', source=source)


def _rate(info: data.DatasetInfo, input_config: ml_collections.ConfigDict, batch_size: int,
          seed: int, steps: int) -> float:
  """Training images/s of the pipeline, over `steps` batches after 3 untimed ones."""
  it = data.train_iterator(info, input_config, batch_size=batch_size, seed=seed)
  for _ in range(3):  # warm up (thread start, the prefetch buffer)
    next(it)
  start = time.perf_counter()
  for _ in range(steps):
    next(it)
  seconds = time.perf_counter() - start
  it.close()
  return steps * batch_size / seconds


def measure(name: str, split: sources.Split, steps: int, batch_size: int) -> None:
  """Prints the images/s of `split` (S = 256, C = 224) on 1 thread and on all cores."""
  cores = os.cpu_count() or 1
  for threads in sorted({1, cores}):
    input_config = config_lib.base_config().input
    input_config.image_size, input_config.crop_size = SIDE, CROP
    input_config.num_threads = threads
    r = _rate(_info(split, SIDE), input_config, batch_size, 0, steps)
    print(f'{name:42s} threads={threads}: {r:8.0f} images/s ({r / threads:6.0f} per core)',
          flush=True)


def train_step_rate(config: ml_collections.ConfigDict, label: str, steps: int) -> None:
  """Prints the config's pipeline images/s beside its training step's."""
  info = data.get_dataset_info(config.dataset, config.data_dir, config.input)
  net = model_lib.from_config(config.model, info.num_classes, image_size=config.input.crop_size)
  step = timing.train_step_throughput(net, config.batch_size, steps, warmup=1)
  cores = os.cpu_count() or 1
  input_config = config.input.copy_and_resolve_references()
  input_config.num_threads = cores
  pipe = _rate(info, input_config, config.batch_size, config.seed, 20)
  print(f"{label}: pipeline {pipe:.0f} images/s on {cores} cores, training step "
        f"{step['images_per_s']:.0f} images/s ({step['backend']}); pipeline/step = "
        f"{pipe / step['images_per_s']:.1f}x", flush=True)


def main(argv):
  del argv
  n, steps, batch_size = _IMAGES.value, _STEPS.value, _BATCH_SIZE.value
  start = time.perf_counter()
  if _FOLDER.value:
    files = _folder_jpegs(_FOLDER.value, n)
    processed = [(b, prepare.process_one(b, SIDE, QUALITY)[0]) for b in files]
    originals = [b for b, jpeg in processed if jpeg is not None]  # the decodable ones
    prepared = [jpeg for _, jpeg in processed if jpeg is not None]
    if not prepared:
      raise errors.DataError(f'No JPEG in --folder={_FOLDER.value} decodes.')
  else:
    prepared = _rendered(n, SIDE, SIDE)
  size_kb = np.mean([len(b) for b in prepared]) / 1024
  print(f'made {len(prepared)} {SIDE}x{SIDE} JPEGs (mean {size_kb:.1f} KB) in '
        f'{time.perf_counter() - start:.1f}s', flush=True)
  measure(f'prepared {SIDE}x{SIDE} JPEG -> {CROP} crop', _split(prepared, SIDE), steps,
          batch_size)
  if _FOLDER.value:
    name = f'on the fly {_FOLDER.value} JPEG -> {SIDE} -> {CROP} crop'
  else:
    originals = _rendered(max(n // 2, batch_size), 375, 500)
    name = f'on the fly 500x375 JPEG -> {SIDE} -> {CROP} crop'
  measure(name, _split(originals, None), max(steps // 3, 3), batch_size)
  if flags.FLAGS.config is not None:
    label = config_flags.get_config_filename(flags.FLAGS['config'])
    train_step_rate(flags.FLAGS.config, label, _TRAIN_STEPS.value)


if __name__ == '__main__':
  cli.run(main)
