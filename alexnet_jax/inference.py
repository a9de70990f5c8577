"""Using a trained network (section 6): features, evaluation over a split, predictions for files.

    run = rundir.open_run(workdir)                     # read-only
    for batch in inference.feature_batches(run, 'validation'):
      batch['fc7'], batch['logits'], batch['label'], batch['id']
    result = inference.evaluate([run], 'validation', ten_crop=True)
    predictions = inference.predict_files(run, ['photo.jpg'])

Every pass goes through the data pipeline's test-time preprocessing
(`data.eval_iterator`: the stored S x S image minus the mean, then the center
crop or the ten views of section 4.1) and the jitted steps of `steps.py` on a
('data', 'model') mesh over all devices. The run's `input` fields decide how
an image becomes S x S, the mean and the channel order (`input.resize`,
`input.mean`, `input.channel_order`: 'warp', 'caffe' and 'bgr' for a converted
BVLC network, BVLC's protocol; `with_resize` switches the first, as the
programs' --resize does). One process (not a multi-process run).

Nothing here writes into a workdir except `write_evaluation` (one new file
under <workdir>/eval/) and `write_features` (the files the caller names).
"""

from collections.abc import Iterator
from collections.abc import Sequence
import dataclasses
import os

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from alexnet_jax import compilation
from alexnet_jax import data
from alexnet_jax import errors
from alexnet_jax import metrics
from alexnet_jax import parallel
from alexnet_jax import pretrained
from alexnet_jax import rundir
from alexnet_jax import steps
from alexnet_jax import transfer

TOP_K = 5


def input_config(run: rundir.TrainedRun) -> ml_collections.ConfigDict:
  """The run's `input` fields with input.mean_file made absolute (it is relative to the workdir).

  Raises:
    pretrained.PretrainedError: a converted BVLC network with a crop size other than 227.
  """
  pretrained.check_crop_size(run.config.input.crop_size, run.config, run.workdir)
  fields = ml_collections.ConfigDict(run.config.input.to_dict())
  if fields.mean_file is not None:
    fields.mean_file = os.path.join(run.workdir, os.path.expanduser(fields.mean_file))
  return fields


def with_resize(run: rundir.TrainedRun, resize: str | None) -> rundir.TrainedRun:
  """`run` with input.resize set to `resize` ('shorter_side', section 2, or 'warp', BVLC's;
  checked where the images are read), or unchanged when None. The workdir is not touched."""
  if resize is None or resize == run.config.input.resize:
    return run
  config = ml_collections.ConfigDict(run.config.to_dict())
  config.input.resize = resize
  return dataclasses.replace(run, config=config)


def protocol(run: rundir.TrainedRun) -> dict:
  """The run's input conventions ({'input.resize': 'warp', 'input.crop_size': 227, ...}:
  `transfer.conventions`), what an evaluation records beside its numbers."""
  return {k: v for k, v in transfer.conventions(run.config).items() if k.startswith('input.')}


def dataset_info(run: rundir.TrainedRun, data_dir: str | None = None) -> data.DatasetInfo:
  """The run's dataset (config.dataset in `data_dir`, by default the run's config.data_dir).

  Raises:
    errors.ConfigError: the dataset's class count differs from the network's.
    errors.DataError: the data is missing (the message says what to do).
  """
  config = run.config
  info = data.get_dataset_info(config.dataset, data_dir or config.data_dir, input_config(run))
  if info.num_classes != len(run.class_names):
    raise errors.ConfigError(
        f'The network in {run.workdir} has {len(run.class_names)} classes but the dataset '
        f'{info.name} in {info.location} has {info.num_classes}; give the --data_dir of the '
        'data it was trained on.')
  return info


def _batch_size(run: rundir.TrainedRun, batch_size: int | None) -> int:
  """`batch_size`, by default the run's eval_batch_size (or batch_size)."""
  size = batch_size or run.config.eval_batch_size or run.config.batch_size
  if size < 1:
    raise errors.ConfigError(f'The batch size must be positive, got {size}.')
  return size


def _mesh(towers: int, batch_size: int) -> jax.sharding.Mesh:
  """The ('data', 'model') mesh over all devices for a network of `towers` towers."""
  if jax.process_count() > 1:
    raise errors.ConfigError('Evaluation, prediction and features run in one process; start '
                             'them without jax.distributed.')
  mesh = parallel.make_mesh(None, None, towers)
  parallel.check_batch_size(batch_size, mesh)
  return mesh


def _counted(batches: Iterator[dict], what: str, total: int,
             every: float = 10.0) -> Iterator[dict]:
  """`batches` unchanged; logs the real examples done, images/s and the ETA at most every
  `every` seconds."""
  progress, done = metrics.Progress(total), 0
  for batch in batches:
    yield batch
    done += int(batch['mask'].sum())
    if progress.seconds_in_window() >= every or done >= total:
      rate, eta = progress.window(done)
      logging.info('%s: %d/%d examples | %.1f images/s | %s', what, done, total, rate, eta)


def _num_examples(info: data.DatasetInfo, split: str) -> int:
  """The size of `split` (errors.DataError naming the splits when there is no such split)."""
  if split not in data.SPLITS:
    raise errors.DataError(f'The dataset {info.name} in {info.location} has no split {split!r}; '
                           f'choose one of {", ".join(data.SPLITS)}.')
  return info.num_train_examples if split == 'train' else info.num_eval_examples


def feature_batches(run: rundir.TrainedRun, split: str = 'validation', *,
                    batch_size: int | None = None, data_dir: str | None = None,
                    info: data.DatasetInfo | None = None) -> Iterator[dict[str, np.ndarray]]:
  """The fc7 features and logits of every example of a split, batch by batch, in split order.

  Center crops (section 6.1's feature vectors), streamed: one batch of images
  in memory at a time. Yields {'fc7': float32 (n, fc_features) (after the
  ReLU, tower 0's units first), 'logits': float32 (n, classes), 'label':
  int32 (n,), 'id': int64 (n,) the example's index in the split}, real
  examples only (the padding of the last batch removed).

  Args:
    run: from `rundir.open_run`.
    split: 'validation' or 'train' (an unshuffled, unaugmented pass).
    batch_size: images per step; None: the run's eval_batch_size (or batch_size).
    data_dir: where the run's dataset is; None: the run's config.data_dir.
    info: the dataset, when the caller has loaded it (`dataset_info`).

  Raises:
    errors.DataError: no such split, or the data is missing.
    errors.ConfigError: the batch size does not split over the devices.
  """
  info = info or dataset_info(run, data_dir)
  total = _num_examples(info, split)
  size = _batch_size(run, batch_size)
  mesh = _mesh(run.model.towers, size)
  params = jax.device_put(run.params, parallel.state_sharding(run.params, mesh))
  feature_step = steps.make_feature_step(run.model, mesh)
  batches = _counted(data.eval_iterator(info, input_config(run), batch_size=size, split=split),
                     f'features of {split}', total)
  for index, batch in enumerate(batches):
    images = parallel.shard_batch({'image': batch['image']}, mesh)['image']
    fc7, logits = jax.device_get(feature_step(params, images))
    mask = batch['mask']
    ids = index * size + np.arange(size, dtype=np.int64)
    yield {'fc7': fc7[mask], 'logits': logits[mask], 'label': batch['label'][mask],
           'id': ids[mask]}


def check_ensemble(runs: Sequence[rundir.TrainedRun]) -> None:
  """Raises errors.ConfigError unless the runs share their class list and input preprocessing.

  Members may differ in architecture (towers, conv6, widths): section 6's
  5-CNN / 7-CNN rows average networks of two designs.
  """
  first = runs[0]
  for run in runs[1:]:
    if run.class_names != first.class_names:
      differ = next((i for i, (a, b) in enumerate(zip(first.class_names, run.class_names))
                     if a != b), min(len(first.class_names), len(run.class_names)))
      raise errors.ConfigError(
          f'The ensemble members {first.workdir} and {run.workdir} have different class lists '
          f'({len(first.class_names)} and {len(run.class_names)} classes, first difference at '
          f'index {differ}); an ensemble averages the softmax of networks trained on the same '
          'classes: leave that member out.')
    ours, theirs = _preprocessing(first), _preprocessing(run)
    if ours != theirs:
      raise errors.ConfigError(
          f'The ensemble members {first.workdir} and {run.workdir} take differently prepared '
          f'input ({ours} and {theirs}); an ensemble shares one pass over the data: evaluate '
          'them separately.')


def _preprocessing(run: rundir.TrainedRun) -> dict:
  """The config fields that decide a network's test-time input."""
  fields = input_config(run)
  caffe = fields.mean == 'caffe'
  return {'dataset': run.config.dataset, 'image_size': fields.image_size,
          'resize': fields.resize, 'crop_size': fields.crop_size,
          'channel_order': fields.channel_order, 'mean': fields.mean,
          'mean_bgr': list(fields.mean_bgr) if caffe else None,
          'mean_file': fields.mean_file if caffe else None}


def ensemble_predict_fn(runs: Sequence[rundir.TrainedRun], mesh: jax.sharding.Mesh):
  """predict(params_list, images) -> (N, classes): the members' softmax outputs averaged
  (not jitted, for use inside other steps; `make_ensemble_predict` jits it).

  Section 6: "averaging the predictions of" several CNNs; each member's own
  prediction is `steps.predict_fn`'s (ten crops averaged first).
  """
  member_steps = [steps.predict_fn(run.model, mesh) for run in runs]

  def predict(params_list, images):
    probs = [step(params, images) for step, params in zip(member_steps, params_list)]
    return jnp.mean(jnp.stack(probs), axis=0)

  return predict


def make_ensemble_predict(runs: Sequence[rundir.TrainedRun], mesh: jax.sharding.Mesh):
  """`ensemble_predict_fn`, jitted."""
  return compilation.jit(ensemble_predict_fn(runs, mesh))


def evaluate(runs: Sequence[rundir.TrainedRun], split: str = 'validation', *,
             ten_crop: bool = False, batch_size: int | None = None, data_dir: str | None = None,
             info: data.DatasetInfo | None = None) -> dict:
  """Loss and top-1 / top-5 error over every example of a split.

  runs[0] alone is evaluated as training does (`steps.make_eval_step`, the
  same batches), and with more runs the ensemble too: the mean of the
  members' softmax outputs (section 6's 5-CNN / 7-CNN rows), in a second pass.

  Args:
    runs: the network, then the other ensemble members (from `rundir.open_run`).
    split: 'validation' or 'train'.
    ten_crop: average the softmax over the ten views of section 4.1.
    batch_size: global; None: runs[0]'s eval_batch_size (or batch_size).
    data_dir: where runs[0]'s dataset is; None: its config.data_dir.
    info: the dataset, when the caller has loaded it.

  Returns:
    {'model': metrics, 'ensemble': metrics (with two runs or more)}; metrics
    are `steps.evaluate`'s {'loss', 'top1_error', 'top5_error', 'count'}.
  """
  check_ensemble(runs)
  first = runs[0]
  info = info or dataset_info(first, data_dir)
  total = _num_examples(info, split)
  size = _batch_size(first, batch_size)
  mesh = _mesh(min(run.model.towers for run in runs), size)
  params = [jax.device_put(run.params, parallel.state_sharding(run.params, mesh))
            for run in runs]
  view = 'ten crops' if ten_crop else 'center crop'

  def batches(what):
    return _counted(data.eval_iterator(info, input_config(first), batch_size=size,
                                       ten_crop=ten_crop, split=split),
                    f'{what}, {split}, {view}', total)

  result = {'model': steps.evaluate(steps.make_eval_step(first.model, mesh), params[0], mesh,
                                    batches('model'))}
  if len(runs) > 1:
    predict = ensemble_predict_fn(runs, mesh)
    ensemble_step = compilation.jit(lambda ps, batch: steps.error_sums(
        predict(ps, batch['image']), batch['label'], batch['mask']))
    result['ensemble'] = steps.evaluate(ensemble_step, params, mesh,
                                        batches(f'ensemble of {len(runs)}'))
  return result


def evaluation_path(run: rundir.TrainedRun, split: str, tag: str | None = None) -> str:
  """<workdir>/eval/<split>-step<N>.json, or <split>-step<N>-<tag>.json."""
  name = f'{split}-step{run.step}' + (f'-{tag}' if tag else '')
  return os.path.join(run.workdir, rundir.EVAL_DIR, f'{name}.json')


def write_evaluation(run: rundir.TrainedRun, split: str, results: dict,
                     tag: str | None = None) -> str:
  """Writes `results` (JSON-ready) to `evaluation_path` atomically; returns the path."""
  path = evaluation_path(run, split, tag)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  return rundir.write_json(path, results)


@dataclasses.dataclass(frozen=True)
class Prediction:
  """The most probable classes of one image file.

  Attributes:
    path: the file.
    labels: int (k,) class indices, most probable first.
    names: the classes' readable names.
    probabilities: float32 (k,).
    wnids: the classes' WordNet ids, when the run knows them (`rundir.TrainedRun.wnids`).
  """
  path: str
  labels: np.ndarray
  names: tuple[str, ...]
  probabilities: np.ndarray
  wnids: tuple[str, ...] | None = None


def predict_files(run: rundir.TrainedRun, paths: Sequence[str], *, ten_crop: bool = False,
                  data_dir: str | None = None, info: data.DatasetInfo | None = None,
                  top: int = TOP_K) -> list[Prediction]:
  """The `top` most probable classes of each image file, with the evaluation's preprocessing.

  Every file is read and preprocessed (`data.image_views`: to S x S as the
  run's input.resize says, minus the run's mean, center crop or ten views, the
  run's channel order) before the network runs, so a bad file stops everything.
  The dataset is loaded only when the run subtracts the training set's mean
  image (input.mean='dataset') and its workdir has no mean_image.npy (runs
  trained before it was saved); `info` skips that.

  Raises:
    errors.DataError: a file is not an image (the message names it), or the
      dataset whose mean image the run needs is missing.
  """
  fields = input_config(run)
  if fields.mean == 'dataset' and info is None and run.mean_image is not None:
    mean = run.mean_image  # saved by the run: the dataset is not needed
  else:
    info = info or (dataset_info(run, data_dir) if fields.mean == 'dataset' else None)
    mean = data.input_mean(fields, info.stats if info else None)
  views = np.stack([data.image_views(p, mean, fields, ten_crop=ten_crop) for p in paths])
  mesh = parallel.make_mesh(1, None, run.model.towers)
  params = jax.device_put(run.params, parallel.state_sharding(run.params, mesh))
  probs = np.asarray(steps.make_predict_step(run.model, mesh)(params, views))
  predictions = []
  for path, p in zip(paths, probs):
    order = np.argsort(-p, kind='stable')[:top]
    wnids = tuple(run.wnids[i] for i in order) if run.wnids else None
    predictions.append(Prediction(path, order, tuple(run.class_names[i] for i in order),
                                  p[order], wnids))
  return predictions


def shard_paths(out: str, total: int, shard_size: int) -> list[str]:
  """FILE-00000-of-000NN.npz for FILE.npz, one per `shard_size` examples of `total`."""
  stem = out[:-4] if out.endswith('.npz') else out
  count = max(1, -(-total // shard_size))
  return [f'{stem}-{i:05d}-of-{count:05d}.npz' for i in range(count)]


def write_features(run: rundir.TrainedRun, split: str, out: str, *, dtype: str = 'float32',
                   shard_size: int = 100_000, batch_size: int | None = None,
                   data_dir: str | None = None) -> list[str]:
  """Writes the fc7 features, logits, labels and ids of a split into .npz shards.

  Shard i (`shard_paths`) holds examples [i * shard_size, (i + 1) *
  shard_size) of the split: 'fc7' (n, fc_features) and 'logits' (n, classes)
  in `dtype`, 'label' int32 (n,), 'id' int64 (n,). Each shard is written
  atomically once complete; nothing is written when an argument is wrong.
  Returns the shard paths.

  Raises:
    errors.ConfigError: a bad dtype or shard size.
    errors.WorkdirError: the shards exist already, or their folder is not writable.
    errors.DataError: no such split, or the data is missing.
  """
  if dtype not in ('float32', 'float16'):
    raise errors.ConfigError(f'--dtype={dtype!r}: choose float32 or float16.')
  if shard_size < 1:
    raise errors.ConfigError(f'--shard_size must be positive, got {shard_size}.')
  info = dataset_info(run, data_dir)
  paths = shard_paths(os.path.abspath(out), _num_examples(info, split), shard_size)
  existing = [p for p in paths if os.path.exists(p)]
  if existing:
    raise errors.WorkdirError(f'{existing[0]} exists already ({len(existing)} of the '
                              f'{len(paths)} shards); remove them or choose another --out.')
  rundir.check_writable(os.path.dirname(paths[0]))
  os.makedirs(os.path.dirname(paths[0]), exist_ok=True)
  pending = {key: [] for key in ('fc7', 'logits', 'label', 'id')}
  written = []

  def flush(rows: int) -> None:
    joined = {key: np.concatenate(parts) for key, parts in pending.items()}
    shard = {key: value[:rows] for key, value in joined.items()}
    for key in pending:
      pending[key] = [joined[key][rows:]]
    written.append(rundir.atomic_write(paths[len(written)], lambda f: np.savez(
        f, fc7=shard['fc7'].astype(dtype), logits=shard['logits'].astype(dtype),
        label=shard['label'], id=shard['id']), binary=True))

  buffered = 0
  for batch in feature_batches(run, split, batch_size=batch_size, info=info):
    for key in pending:
      pending[key].append(batch[key])
    buffered += len(batch['id'])
    while buffered >= shard_size:
      flush(shard_size)
      buffered -= shard_size
  if buffered or not written:
    flush(buffered)
  return written
