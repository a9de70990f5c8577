r"""Input-pipeline benchmark: training images/s per host core, against a bare anchor.

  python -m alexnet_jax.tools.bench_input [--images=256] [--steps=20] [--rounds=3] \
      [--paths=anchor,jpeg,raw] [--images_from=photos|rendered] [--folder=DIR] \
      [--host_cores=16] [--step_images_per_s=30000] [--json] \
      [--config=experiments/demo.py --train_steps=5]

Times the host's part of the training transformation (read, the draws,
decode or slice the crop window, uint8 batches: `alexnet_jax.data.throughput`)
on prepared 256x256 JPEGs (input.storage='jpeg') and raw records ('raw'),
beside the anchor (decode_and_crop_jpeg and a flip, nothing else) on the same
images, each with one thread (the per-core rate) and with all cores; the
paths alternate round by round. Images: windows of scikit-image's nine colour
photographs re-encoded like the prepared copy (--images_from=rendered: the
embedded dataset's renderer; --folder: the first --images JPEGs of a folder).
Then the projection for a host of --host_cores cores feeding a training step
of --step_images_per_s. --json: the last line is one JSON object
(`throughput.summary`: jpeg_per_core, raw_per_core, mean_jpeg_kb, ...). With
--config, also that config's pipeline on its own data beside its training
step's rate (`alexnet_jax.timing`).
"""

import json
import os

from absl import flags
import ml_collections
from ml_collections import config_flags

from alexnet_jax import cli
from alexnet_jax import config as config_lib
from alexnet_jax import data
from alexnet_jax import model as model_lib
from alexnet_jax import timing
from alexnet_jax.data import throughput

_IMAGES = flags.DEFINE_integer('images', 256, 'Distinct images to cycle through.', lower_bound=1)
_STEPS = flags.DEFINE_integer('steps', 20, 'Batches timed per run.', lower_bound=1)
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Runs of every path (medians reported).',
                               lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 128, 'Batch size.', lower_bound=1)
_PATHS = flags.DEFINE_list('paths', ['anchor', 'jpeg', 'raw'],
                          f'Paths to time, of {", ".join(throughput.PATHS)}.')
flags.register_validator('paths', lambda paths: bool(paths) and set(paths) <= set(throughput.PATHS),
                         f'--paths takes a comma-separated list of {", ".join(throughput.PATHS)}.')
_IMAGES_FROM = flags.DEFINE_enum('images_from', 'photos', throughput.SOURCES,
                                 "scikit-image's photographs or the embedded renderer.")
_FOLDER = flags.DEFINE_string('folder', None, 'A directory of JPEGs to measure instead.')
_HOST_CORES = flags.DEFINE_integer('host_cores', 16, 'Cores of the host in the projection.',
                                   lower_bound=1)
_STEP_RATE = flags.DEFINE_float('step_images_per_s', 30000.0,
                                'Training-step images/s the projection compares with.',
                                lower_bound=1.0)
_JSON = flags.DEFINE_bool('json', False, 'End with one line of JSON (throughput.summary).')
_TRAIN_STEPS = flags.DEFINE_integer('train_steps', 5, 'Training steps timed with --config.',
                                    lower_bound=1)
cli.define_config_flag()

SIDE, CROP, QUALITY = 256, 224, 90  # the paper's stored side and crop; prepared JPEG quality


def _originals(n: int) -> tuple[list, str]:
  """The benchmark's original images and a description of them."""
  if _FOLDER.value:
    return throughput.folder_originals(_FOLDER.value, n), f'the first {n} JPEGs of {_FOLDER.value}'
  if _IMAGES_FROM.value == 'rendered':
    return throughput.rendered(n, 375, 500), f'{n} 500x375 images of the embedded renderer'
  return throughput.photo_windows(n), (f"{n} windows of scikit-image's photographs "
                                       f"({', '.join(throughput.PHOTOS)})")


def _train_step_rate(config: ml_collections.ConfigDict, label: str, steps: int) -> None:
  """Prints the config's pipeline images/s (all cores) beside its training step's."""
  info = data.get_dataset_info(config.dataset, config.data_dir, config.input)
  net = model_lib.from_config(config.model, info.num_classes, image_size=config.input.crop_size)
  step = timing.train_step_throughput(net, config.batch_size, steps, warmup=1)
  cores = os.cpu_count() or 1
  input_config = config.input.copy_and_resolve_references()
  input_config.num_threads = cores
  batches = data.train_iterator(info, input_config, batch_size=config.batch_size,
                                seed=config.seed)
  pipe = throughput.time_batches(batches, config.batch_size, 20).images_per_s
  print(f"{label}: pipeline {pipe:.0f} images/s on {cores} cores, training step "
        f"{step['images_per_s']:.0f} images/s ({step['backend']}); pipeline/step = "
        f"{pipe / step['images_per_s']:.1f}x", flush=True)


def main(argv):
  del argv
  originals, described = _originals(_IMAGES.value)
  records = throughput.make_records(originals, SIDE, QUALITY)
  print(f'{described}: {len(records.jpeg)} prepared {SIDE}x{SIDE} images, JPEG quality '
        f'{QUALITY} mean {records.mean_jpeg_kb:.1f} KB, raw {SIDE * SIDE * 3 / 1024:.0f} KB; '
        f'{CROP} crops, batches of {_BATCH_SIZE.value}', flush=True)
  input_config = config_lib.base_config().input
  paths = tuple(p for p in throughput.PATHS if p in _PATHS.value)
  threads = tuple(sorted({1, os.cpu_count() or 1}))
  results = throughput.compare(
      lambda path, t: throughput.path_dataset(path, records, input_config, _BATCH_SIZE.value, t),
      paths, threads, batch_size=_BATCH_SIZE.value, steps=_STEPS.value, rounds=_ROUNDS.value,
      report=lambda line: print(line, flush=True))
  figures = throughput.summary(results, records, host_cores=_HOST_CORES.value,
                               step_images_per_s=_STEP_RATE.value)
  print(f'{"path":10s} {"threads":>7s} {"images/s":>9s} {"per core":>9s} {"per CPU s":>9s}')
  for r in results:
    print(f'{r.path:10s} {r.threads:7d} {r.images_per_s:9.0f} {r.per_core:9.0f} '
          f'{r.images_per_cpu_s:9.0f}')
  for path, p in figures['projection'].items():
    verdict = 'keeps up' if p['ratio'] >= 1 else 'falls short'
    print(f'{path}: {_HOST_CORES.value} cores x {figures[f"{path}_per_core"]:,.0f} images per CPU '
          f'second = {p["images_per_s"]:,.0f} images/s, {p["ratio"]:.2f}x the '
          f'{_STEP_RATE.value:,.0f} images/s step: {verdict} ({p["cores_needed"]:.1f} cores '
          'needed)', flush=True)
  if flags.FLAGS.config is not None:
    _train_step_rate(flags.FLAGS.config, config_flags.get_config_filename(flags.FLAGS['config']),
                     _TRAIN_STEPS.value)
  if _JSON.value:
    print(json.dumps(figures, sort_keys=True))


if __name__ == '__main__':
  cli.run(main)
