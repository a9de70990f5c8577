"""Input-pipeline throughput: images/s of the host's part of the training transformation.

What `python -m alexnet_jax.tools.bench_input` measures. Paths (`PATHS`), each
on the same S x S images (S = 256, C = 224 crops, batches of 128 by default):

  anchor      the least any JPEG pipeline does: a bare tf.data pipeline that
              runs `tf.io.decode_and_crop_jpeg` (a random C x C window) and a
              random flip on the prepared JPEGs, uint8 out; no draws kept, no
              mean, no lighting, no float.
  jpeg        `pipeline.train_dataset` on prepared S x S JPEG records
              (input.storage='jpeg'): the paper's draws per image and
              presentation (section 4.1), the crop window decoded.
  raw         `pipeline.train_dataset` on raw uint8 S x S records
              (input.storage='raw'): the same draws, the window cut from
              each record as it is read (`sources.Split.crop_reader`).
  on_the_fly  `pipeline.train_dataset` on the originals (JPEG, quality 90),
              decoded whole and resized (section 2) each time.

Each path runs with a private pool of one thread (its rate is the per-core
rate) and of all cores; rounds alternate the paths, so that a change in the
machine's load reaches them alike, and the medians are reported. Records are
held in memory, as `sources.Split` kind 'memory': reading from disk is not
measured.

Images (`source_images`): real photographs, the nine colour photographs that
scikit-image ships (`PHOTOS`, read offline from the package), or the embedded
dataset's renderer, or a folder of the user's JPEGs. Distinct images come from
square windows of each photograph (seeded; side 0.5 to 1 times its shorter
side), prepared as `prepare.process_one` does: the shorter side to S, the
central S x S (section 2), then a JPEG at the prepared quality or raw pixels.
"""

from collections.abc import Callable
from collections.abc import Iterable
import dataclasses
import os
import statistics
import time

import numpy as np
import tensorflow as tf

from alexnet_jax import errors
from alexnet_jax.data import pipeline
from alexnet_jax.data import prepare
from alexnet_jax.data import sources
from alexnet_jax.data import stats as stats_lib
from alexnet_jax.data import synthetic

PATHS = ('anchor', 'jpeg', 'raw', 'on_the_fly')
# scikit-image's colour photographs (skimage.data), by the name of their loader;
# motorcycle_left/right are the two views of skimage.data.stereo_motorcycle().
PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field',
          'immunohistochemistry', 'retina', 'motorcycle_left', 'motorcycle_right')
SOURCES = ('photos', 'rendered')


def _photograph(name: str) -> np.ndarray:
  """uint8 (H, W, 3) of one of `PHOTOS`."""
  try:
    from skimage import data as skimage_data  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise errors.ConfigError(
        'The photographs come from scikit-image, which is not installed: pip install -e '
        "'.[test]' (it pins scikit-image), or measure rendered images (--images_from=rendered) "
        'or a folder of JPEGs (--folder).') from None
  if name.startswith('motorcycle_'):
    left, right, _ = skimage_data.stereo_motorcycle()
    return left if name == 'motorcycle_left' else right
  return getattr(skimage_data, name)()


def photo_windows(n: int, seed: int = 0) -> list[np.ndarray]:
  """n uint8 (h, h, 3) square windows of `PHOTOS`, in turn: window i of photograph
  i % 9, its side uniform in [0.5, 1] of the photograph's shorter side, at a uniform
  position (seeded). The first nine are the whole photographs' central squares."""
  rng = np.random.default_rng(seed)
  photos = [_photograph(name) for name in PHOTOS]
  out = []
  for i in range(n):
    img = photos[i % len(photos)]
    short = min(img.shape[:2])
    side = short if i < len(photos) else int(short * rng.uniform(0.5, 1.0))
    y = (img.shape[0] - side) // 2 if i < len(photos) else rng.integers(0, img.shape[0] - side + 1)
    x = (img.shape[1] - side) // 2 if i < len(photos) else rng.integers(0, img.shape[1] - side + 1)
    out.append(np.ascontiguousarray(img[y:y + side, x:x + side]))
  return out


def rendered(n: int, h: int, w: int) -> list[np.ndarray]:
  """n uint8 (h, w, 3) training images of the embedded dataset's renderer (sensor noise
  included; they compress better than photographs)."""
  out = []
  for i in range(n):
    img, _ = synthetic.example('train', i, max(h, w), 0)
    img = tf.image.resize(img, [h, w], antialias=True)
    out.append(tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8).numpy())
  return out


def folder_originals(folder: str, n: int) -> list[bytes]:
  """The first n .jpg/.jpeg files under `folder` (subfolders included) in path order.

  Raises:
    errors.DataError: there is none.
  """
  paths = sorted(os.path.join(d, f) for d, _, files in os.walk(os.path.expanduser(folder))
                 for f in files if f.lower().endswith(('.jpg', '.jpeg')))
  if not paths:
    raise errors.DataError(f'{folder} holds no .jpg or .jpeg file.')
  return [prepare.read_bytes(p) for p in paths[:n]]


@dataclasses.dataclass(frozen=True, eq=False)
class Records:
  """The images of one benchmark, in every form the paths read.

  Attributes:
    originals: encoded files of any size (the on-the-fly path's input).
    jpeg: prepared S x S JPEGs (quality `quality`).
    raw: prepared S x S raw records (`prepare.encode`).
    side: S.
    quality: of the prepared JPEGs.
  """
  originals: list[bytes] = dataclasses.field(repr=False)
  jpeg: list[bytes] = dataclasses.field(repr=False)
  raw: list[bytes] = dataclasses.field(repr=False)
  side: int
  quality: int

  @property
  def mean_jpeg_kb(self) -> float:
    """The mean size of the prepared JPEGs, KB (1024 bytes)."""
    return float(np.mean([len(b) for b in self.jpeg])) / 1024


def make_records(originals: list[np.ndarray | bytes], side: int, quality: int) -> Records:
  """Prepares `originals` (uint8 (H, W, 3) arrays, or encoded files) as the prepared
  copy does (`prepare.process_one`); files that do not decode are left out.

  Raises:
    errors.DataError: none decodes.
  """
  files = [o if isinstance(o, bytes) else prepare.encode(o, 'jpeg', quality) for o in originals]
  kept, jpeg, raw = [], [], []
  for f in files:
    image, reason = prepare.process_one(f, side, 'raw', quality)
    if reason is None:
      kept.append(f)
      raw.append(image)
      pixels = np.frombuffer(image, np.uint8).reshape(side, side, 3)
      jpeg.append(prepare.encode(pixels, 'jpeg', quality))
  if not kept:
    raise errors.DataError('None of the images decodes.')
  return Records(kept, jpeg, raw, side, quality)


def _bench_info(records: list[bytes], side: int | None, storage: str,
                image_size: int) -> sources.DatasetInfo:
  """A DatasetInfo over in-memory `records`, with made-up statistics of the right shapes."""
  n = len(records)
  labels = np.arange(n, dtype=np.int32) % synthetic.NUM_CLASSES
  split = sources.Split(n, labels, 'memory', records, side=side, storage=storage)
  stats = stats_lib.DatasetStats(
      mean_image=np.full((image_size, image_size, 3), 118.0, np.float32),
      eigvals=np.array([5000.0, 900.0, 100.0], np.float32), eigvecs=np.eye(3, dtype=np.float32),
      covariance=np.eye(3), rgb_mean=np.zeros(3), num_images=n)
  source = sources.Source('bench', synthetic.CLASS_NAMES, split, split, image_size, '')
  return sources.DatasetInfo(
      num_classes=synthetic.NUM_CLASSES, num_train_examples=n, num_eval_examples=n,
      class_names=synthetic.CLASS_NAMES, stats=stats, name='bench', image_size=image_size,
      location='', source=source)


def anchor_dataset(jpegs: list[bytes], side: int, crop: int, batch_size: int,
                   threads: int) -> tf.data.Dataset:
  """The anchor: decode a random C x C window of each S x S JPEG and flip it at random,
  uint8 (batch, C, C, 3) batches; nothing else."""
  def one(x):
    offset = tf.random.uniform([2], 0, side - crop + 1, dtype=tf.int32)
    image = tf.io.decode_and_crop_jpeg(x, tf.stack([offset[0], offset[1], crop, crop]),
                                       channels=3)
    return tf.image.random_flip_left_right(image)

  ds = tf.data.Dataset.from_tensor_slices(tf.constant(jpegs)).repeat()
  ds = ds.map(one, num_parallel_calls=threads).batch(batch_size, drop_remainder=True)
  return ds.prefetch(pipeline.PREFETCH_BATCHES).with_options(pipeline._options(threads))


def path_dataset(path: str, records: Records, input_config, batch_size: int,
                 threads: int) -> tf.data.Dataset:
  """The tf.data pipeline of `path` (one of PATHS) over `records` with `threads` threads.

  input_config: a config's `input` fields (crop_size, lighting_std); image_size is
  records.side.
  """
  crop = input_config.crop_size
  if path == 'anchor':
    return anchor_dataset(records.jpeg, records.side, crop, batch_size, threads)
  payload, side, storage = {'jpeg': (records.jpeg, records.side, 'jpeg'),
                            'raw': (records.raw, records.side, 'raw'),
                            'on_the_fly': (records.originals, None, 'jpeg')}[path]
  config = input_config.copy_and_resolve_references()
  config.image_size, config.num_threads = records.side, threads
  info = _bench_info(payload, side, storage, records.side)
  return pipeline.train_dataset(info, config, batch_size=batch_size, seed=0)


@dataclasses.dataclass(frozen=True)
class Rate:
  """One timed run: images per second of wall time and per CPU second of the process."""
  images_per_s: float
  images_per_cpu_s: float


def time_batches(batches: Iterable, batch_size: int, steps: int, warmup: int = 3) -> Rate:
  """Times `steps` batches of `batches` (a tf.data.Dataset or an iterator) after `warmup`
  untimed ones (thread start, the prefetch buffer); the iterator is closed after."""
  it = iter(batches)
  for _ in range(warmup):
    next(it)
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in range(steps):
    next(it)
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  if hasattr(it, 'close'):  # a generator (data.train_iterator): stop its threads now
    it.close()
  images = steps * batch_size
  return Rate(images / wall, images / max(cpu, 1e-9))


@dataclasses.dataclass(frozen=True)
class PathResult:
  """The rounds of one path at one thread count, and their medians."""
  path: str
  threads: int
  rounds: tuple[Rate, ...]

  @property
  def images_per_s(self) -> float:
    return statistics.median(r.images_per_s for r in self.rounds)

  @property
  def per_core(self) -> float:
    return self.images_per_s / self.threads

  @property
  def images_per_cpu_s(self) -> float:
    return statistics.median(r.images_per_cpu_s for r in self.rounds)


def compare(make_dataset: Callable[[str, int], tf.data.Dataset], paths: tuple[str, ...],
            thread_counts: tuple[int, ...], *, batch_size: int, steps: int, rounds: int,
            report: Callable[[str], None] = print) -> list[PathResult]:
  """Times every path at every thread count, `rounds` times, the paths alternating
  within each round; `report` gets a line per timed run.

  make_dataset(path, threads) -> the dataset to time.
  """
  runs = {(p, t): [] for t in thread_counts for p in paths}
  for r in range(rounds):
    for t in thread_counts:
      for p in paths:
        rate = time_batches(make_dataset(p, t), batch_size, steps)
        runs[(p, t)].append(rate)
        report(f'round {r + 1}/{rounds} {p:10s} threads={t}: {rate.images_per_s:8.0f} images/s, '
               f'{rate.images_per_cpu_s:8.0f} per CPU second')
  return [PathResult(p, t, tuple(v)) for (p, t), v in runs.items()]


def projection(per_core: float, host_cores: int, step_images_per_s: float) -> dict:
  """A host of `host_cores` cores each at `per_core` images/s against a step's rate:
  {'images_per_s': the host's total, 'ratio': total / step rate (>= 1: it keeps up),
  'cores_needed': cores to match the step}."""
  total = per_core * host_cores
  return {'images_per_s': total, 'ratio': total / step_images_per_s,
          'cores_needed': step_images_per_s / per_core}



def summary(results: list[PathResult], records: Records, *, host_cores: int,
            step_images_per_s: float) -> dict:
  """The figures of a comparison, as `bench_input --json` prints them.

  Per-core rates are images per CPU second of the one-thread runs (medians): on a
  shared machine the wall-clock rate of one thread says how much CPU the process
  was given, while its CPU time (every thread of the process, the consumer's
  included) is what each image costs a core. Keys: '<path>_per_core' (images per
  CPU second), '<path>_per_core_wall' (images/s of the one-thread run),
  '<path>_total' (images/s with the most threads), '<path>_vs_anchor',
  'projection' ({path: `projection(...)`}), 'mean_jpeg_kb', 'raw_kb', 'images',
  'host_cores', 'step_images_per_s', 'load' (1-minute load average at the end).
  """
  out = {'mean_jpeg_kb': round(records.mean_jpeg_kb, 2),
         'raw_kb': round(records.side * records.side * 3 / 1024, 2), 'images': len(records.jpeg),
         'host_cores': host_cores, 'step_images_per_s': step_images_per_s,
         'load': round(os.getloadavg()[0], 2), 'projection': {}}
  most = max(r.threads for r in results)
  for r in results:
    if r.threads == 1:
      out[f'{r.path}_per_core'] = round(r.images_per_cpu_s, 1)
      out[f'{r.path}_per_core_wall'] = round(r.images_per_s, 1)
      out['projection'][r.path] = {k: round(v, 3) for k, v in projection(
          r.images_per_cpu_s, host_cores, step_images_per_s).items()}
    if r.threads == most:
      out[f'{r.path}_total'] = round(r.images_per_s, 1)
  if 'anchor_per_core' in out:
    for p in PATHS[1:]:
      if f'{p}_per_core' in out:
        out[f'{p}_vs_anchor'] = round(out[f'{p}_per_core'] / out['anchor_per_core'], 3)
  return out
