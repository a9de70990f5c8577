"""One-time preprocessing (section 2): every image to S x S, in ArrayRecord.

"We down-sampled the images to a fixed resolution of 256 x 256: given a
rectangular image, we first rescaled the image such that the shorter side was
of length 256, and then cropped out the central 256x256 patch." This module
does that once, for a whole split, and writes the results into ArrayRecord
shards (random access: what makes exact resumption and per-process reading
cheap) in a prepared directory, each image stored as `input.storage` says:
'jpeg', JPEG bytes (`input.jpeg_quality`, 90 by default; about 18.5 KB for a
256 x 256 photograph), or 'raw', its S * S * 3 uint8 pixels (196,608 bytes at
256, about 10x the JPEG's, but read several times faster: docs/benchmarks.md):

    <prepared_dir>/train-00000.array_record ...   one record = one image
    <prepared_dir>/train_labels.npy               int32 (N,)
    <prepared_dir>/train_names.txt                source file name per record
    <prepared_dir>/meta.json                      classes, counts, skipped files

Bad inputs (ImageNet has all of these): grayscale and CMYK JPEGs and PNGs
named .JPEG are decoded by TensorFlow and converted to RGB; images smaller
than S are upsampled; files TensorFlow cannot decode (truncated, corrupt) are
skipped, counted in meta.json and logged with a warning naming the file.
A label is never changed: a record is written with its own source's label or
not at all.

`alexnet_jax.data.get_dataset_info` runs this the first time a dataset is
used; `python -m alexnet_jax.tools.prepare` runs it alone.
"""

from collections.abc import Iterable
from collections.abc import Iterator
import concurrent.futures
import json
import os

from absl import logging
from array_record.python.array_record_module import ArrayRecordWriter
import numpy as np
import tensorflow as tf

from alexnet_jax.data import augment

RECORDS_PER_SHARD = 10000
META = 'meta.json'
STORAGES = ('jpeg', 'raw')
# The mean size of a 256 x 256 quality-90 JPEG of a photograph, bytes: 18.5 KB measured on
# the 256 windows of scikit-image's photographs that tools/bench_input prepares
# (docs/benchmarks.md, "Input pipeline"). Only an estimate for a dataset's own images
# (`sources.disk_budget`).
JPEG_BYTES_256 = 18_900


def read_bytes(src: bytes | str) -> bytes:
  """`src` itself when it is bytes, else the contents of the file it names."""
  if isinstance(src, bytes):
    return src
  with open(src, 'rb') as f:
    return f.read()


def decode_rgb(encoded: bytes) -> tf.Tensor:
  """uint8 (H, W, 3) from JPEG, PNG, GIF or BMP bytes (gray and CMYK become RGB)."""
  return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def encode(image: tf.Tensor, storage: str, quality: int = 90) -> bytes:
  """The record of a uint8 (S, S, 3) image: JPEG bytes ('jpeg', at `quality`) or its
  S * S * 3 bytes in row-major RGB order ('raw')."""
  if storage == 'raw':
    return np.asarray(image, np.uint8).tobytes()
  return tf.io.encode_jpeg(image, quality=quality).numpy()


def record_bytes(image_size: int, storage: str) -> int:
  """The bytes of one record: exact for 'raw', `JPEG_BYTES_256` scaled by area for 'jpeg'."""
  if storage == 'raw':
    return image_size * image_size * 3
  return round(JPEG_BYTES_256 * (image_size / 256) ** 2)


def stored_as(meta: dict) -> str:
  """The storage of a prepared copy's records ('jpeg' for copies made before 'raw' existed)."""
  return meta.get('storage', 'jpeg')


def process_one(src: bytes | str, image_size: int, storage: str, quality: int, *,
                resize: str = 'shorter_side') -> tuple[bytes | None, str | None]:
  """(the S x S record, None), or (None, why not) when `src` (bytes or a path) does not
  decode; `storage` and `quality` as in `encode`, `resize` as in `augment.stored_image`."""
  try:
    image = decode_rgb(read_bytes(src))
    if image.shape[0] < 1 or image.shape[1] < 1:
      return None, 'empty image'
    return encode(augment.stored_image(image, image_size, resize), storage, quality), None
  except (tf.errors.OpError, OSError, ValueError) as e:  # never stop
    msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    return None, msg


def _chunks(items: Iterator, n: int) -> Iterator[list]:
  """Lists of n consecutive items (the last one shorter)."""
  buf = []
  for x in items:
    buf.append(x)
    if len(buf) == n:
      yield buf
      buf = []
  if buf:
    yield buf


def write_split(items: Iterable[tuple[str, bytes | str, int]], out_dir: str, split: str,
                image_size: int, *, storage: str, quality: int, workers: int | None,
                resize: str = 'shorter_side') -> dict:
  """Prepares one split.

  meta.json, written last and atomically by `prepare_dataset`, marks a
  complete preparation: shards left by an interrupted one are rewritten on the
  next run.

  Args:
    items: (name, bytes or path, label) in order.
    out_dir: the prepared directory.
    split: 'train' or 'validation': the files' prefix.
    image_size: S.
    storage: 'jpeg' or 'raw' (`encode`).
    quality: of the JPEGs written.
    workers: threads; None: all cores.
    resize: how an image becomes S x S (input.resize: `augment.stored_image`).

  Returns:
    {'num_examples', 'num_skipped', 'skipped': [(name, reason)], 'shards': [file names]}.
  """
  os.makedirs(out_dir, exist_ok=True)
  workers = workers or os.cpu_count() or 1
  labels, names, shards, skipped = [], [], [], []
  writer = None
  count_in_shard = 0
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for chunk in _chunks(iter(items), 256 * workers):
      results = pool.map(
          lambda item: process_one(item[1], image_size, storage, quality, resize=resize), chunk)
      for (name, _, label), (record, reason) in zip(chunk, results):
        if record is None:
          logging.warning('Skipping undecodable image %s (%s)', name, reason)
          skipped.append((str(name), reason))
          continue
        if writer is None:
          shard = f'{split}-{len(shards):05d}.array_record'
          writer = ArrayRecordWriter(os.path.join(out_dir, shard), 'group_size:1')
          shards.append(shard)
        writer.write(record)
        labels.append(int(label))
        names.append(str(name))
        count_in_shard += 1
        if count_in_shard == RECORDS_PER_SHARD:
          writer.close()
          writer, count_in_shard = None, 0
      if len(labels) and len(labels) % 50000 < 256 * workers:
        logging.info('prepare %s: %d images written, %d skipped', split, len(labels),
                     len(skipped))
  if writer is not None:
    writer.close()
  np.save(os.path.join(out_dir, f'{split}_labels.npy'), np.asarray(labels, np.int32))
  with open(os.path.join(out_dir, f'{split}_names.txt'), 'w') as f:
    f.write('\n'.join(names) + '\n')
  if skipped:
    logging.warning('prepare %s: skipped %d undecodable file(s): %s', split, len(skipped),
                    ', '.join(n for n, _ in skipped[:20]))
  return dict(num_examples=len(labels), num_skipped=len(skipped), skipped=skipped, shards=shards)


def prepare_dataset(out_dir: str, splits: dict[str, Iterable], class_names: Iterable[str],
                    image_size: int, *, source: str, storage: str, quality: int,
                    workers: int | None, resize: str = 'shorter_side') -> dict:
  """Prepares every split ({split: items}, see `write_split`) and writes meta.json.

  Returns:
    The contents of meta.json: source, image_size, resize, storage, jpeg_quality, class_names,
    splits.
  """
  meta = dict(source=source, image_size=image_size, resize=resize, storage=storage,
              jpeg_quality=quality, class_names=list(class_names), splits={})
  for split, items in splits.items():
    logging.info('Preparing %s split %s at %dx%d (%s) into %s', source, split, image_size,
                 image_size, storage, out_dir)
    meta['splits'][split] = write_split(items, out_dir, split, image_size, resize=resize,
                                        storage=storage, quality=quality, workers=workers)
  tmp = os.path.join(out_dir, META + '.tmp')
  with open(tmp, 'w') as f:
    json.dump(meta, f, indent=1)
  os.replace(tmp, os.path.join(out_dir, META))  # marks the directory complete
  return meta


def load_meta(out_dir: str) -> dict | None:
  """The meta.json of a complete preparation in `out_dir`, or None."""
  path = os.path.join(out_dir, META)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)
