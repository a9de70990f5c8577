"""Input pipeline benchmark: training images/s per CPU core.

    python -m alexnet_jax.data.bench [--images=256] [--steps=30] \
        [--batch_size=128] [--config=experiments/demo.py]

Measures the full training transformation (read, decode the crop window,
mean subtraction, flip, PCA lighting, batching to float32) on:

1. prepared 256x256 JPEGs (quality 90; 224 crops): the paper-scale path;
2. the on-the-fly path: 500x375 JPEGs (a typical ImageNet original) decoded
   whole, resized (shorter side 256), center-cropped, then cropped;
3. with --config, that config's own data (e.g. the demo's 72px shapes) and,
   beside it, the images/s of one jitted training step (forward, backward,
   SGD update) of that config's model, so the ratio shows whether the
   pipeline keeps up.

Images come from the embedded renderer (with sensor noise; 13.8 KB on average at
256x256, smaller than prepared ImageNet's ~20 KB) unless --folder points at real JPEGs. Each
path runs with a private thread pool of 1 thread (= images/s per core) and of
all cores.
"""

from __future__ import annotations

import importlib.util
import os
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from alexnet_jax import data
from alexnet_jax.data import pipeline
from alexnet_jax.data import sources
from alexnet_jax.data import stats as stats_lib
from alexnet_jax.data import synthetic

flags.DEFINE_integer('images', 256, 'distinct images to cycle through')
flags.DEFINE_integer('steps', 30, 'batches timed per measurement')
flags.DEFINE_integer('batch_size', 128, 'batch size')
flags.DEFINE_string('config', '', 'optional experiment config file (.py)')
flags.DEFINE_integer('train_steps', 5, 'training steps timed with --config')
FLAGS = flags.FLAGS


def _images(n, h, w):
  out = []
  for i in range(n):
    img, label = synthetic.example('train', i, max(h, w), 0)
    img = tf.image.resize(img, [h, w], antialias=True)
    img = tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)
    out.append((tf.io.encode_jpeg(img, quality=90).numpy(), label))
  return out


def _info(split, size, crop):
  st = stats_lib.DatasetStats(
      mean_image=np.full((size, size, 3), 118.0, np.float32),
      eigvals=np.array([5000.0, 900.0, 100.0], np.float32),
      eigvecs=np.eye(3, dtype=np.float32), covariance=np.eye(3),
      rgb_mean=np.zeros(3), num_images=split.num_examples)
  source = sources.Source('bench', synthetic.CLASS_NAMES, split, split, size,
                          '')
  return data.DatasetInfo(12, split.num_examples, split.num_examples,
                          synthetic.CLASS_NAMES, st, 'bench', size, '', source)


def _rate(config, info, steps):
  it = pipeline.train_dataset(config, info).as_numpy_iterator()
  for _ in range(3):  # warm up (autotune, thread start)
    next(it)
  t = time.perf_counter()
  for _ in range(steps):
    next(it)
  return steps * config.batch_size / (time.perf_counter() - t)


def measure(name, split, size, crop, steps, batch):
  cores = os.cpu_count() or 1
  rows = []
  for threads in sorted({1, cores}):
    config = data.default_config('folder', '/nonexistent', image_size=size,
                                 batch_size=batch, crop_size=crop,
                                 num_threads=threads)
    r = _rate(config, _info(split, size, crop), steps)
    rows.append((name, threads, r, r / threads))
    print(f'{name:42s} threads={threads}: {r:8.0f} images/s '
          f'({r / threads:6.0f} per core)', flush=True)
  return rows


def train_step_rate(config_path, steps):
  """The config's pipeline images/s beside its training step's (the step of
  `alexnet_jax.benchmark`: the shard_map step with the paper's update)."""
  import jax
  from alexnet_jax import benchmark
  from alexnet_jax import model as model_lib
  spec = importlib.util.spec_from_file_location('cfg', config_path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  config = mod.get_config()
  info = data.get_dataset_info(config)
  net = model_lib.from_config(config.model, info.num_classes,
                              image_size=config.input.crop_size)
  step_rate = benchmark.benchmark(net, config.batch_size, steps, warmup=1)['images_per_s']
  cores = os.cpu_count() or 1
  config.input.num_threads = cores
  pipe = _rate(config, info, 20)
  print(f'{config_path}: pipeline {pipe:.0f} images/s on {cores} cores, '
        f'training step {step_rate:.0f} images/s '
        f'({jax.devices()[0].platform}); pipeline/step = '
        f'{pipe / step_rate:.1f}x', flush=True)


def main(argv):
  del argv
  n, steps, batch = FLAGS.images, FLAGS.steps, FLAGS.batch_size
  t = time.perf_counter()
  prepared = _images(n, 256, 256)
  size_kb = np.mean([len(b) for b, _ in prepared]) / 1024
  print(f'made {n} 256x256 JPEGs (mean {size_kb:.1f} KB) in '
        f'{time.perf_counter() - t:.1f}s', flush=True)
  split = sources.Split(n, np.array([l for _, l in prepared], np.int32),
                        'memory', [b for b, _ in prepared], jpeg_side=256)
  measure('prepared 256x256 JPEG -> 224 crop', split, 256, 224, steps, batch)
  orig = _images(max(n // 2, batch), 375, 500)
  split = sources.Split(len(orig), np.array([l for _, l in orig], np.int32),
                        'memory', [b for b, _ in orig], jpeg_side=None)
  measure('on the fly 500x375 JPEG -> 256 -> 224 crop', split, 256, 224,
          max(steps // 3, 3), batch)
  if FLAGS.config:
    train_step_rate(FLAGS.config, FLAGS.train_steps)


if __name__ == '__main__':
  app.run(main)
