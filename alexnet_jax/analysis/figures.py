"""What a trained network learned: section 6.1's figures, from a workdir.

    run = rundir.open_run(workdir)
    paths = figures.write_figures(run)      # <workdir>/figures/*.png and kernels.json

`write_figures` draws Figure 3 (the conv1 kernels of each tower, with their
colour specificity), Figure 4 (top-5 predictions of validation images, and
the six training images nearest to them in fc7 space, found by streaming the
training set through `neighbours.RunningTopK`) and the training curves.
The drawing is `alexnet_jax.plots`; the passes over the data are
`alexnet_jax.inference`'s.
"""

from collections.abc import Iterable
import os

import jax
import numpy as np

from alexnet_jax import config as config_lib
from alexnet_jax import data
from alexnet_jax import errors
from alexnet_jax import inference
from alexnet_jax import metrics
from alexnet_jax import plots
from alexnet_jax import rundir
from alexnet_jax.analysis import neighbours

FIGURE_FILES = ('kernels.png', 'kernels.json', 'predictions.png', 'neighbours.png', 'curves.png')


def conv1_kernels(run: rundir.TrainedRun) -> np.ndarray:
  """The run's conv1 kernels (towers, 11, 11, 3, n), input channels in RGB order."""
  return metrics.rgb_kernels(run.params['conv1']['kernel'], run.config.input.channel_order)


def kernel_report(run: rundir.TrainedRun) -> dict:
  """`plots.colour_specificity` of the conv1 kernels: per tower its mean, median and per kernel."""
  specificity = plots.colour_specificity(conv1_kernels(run))
  return {'step': run.step,
          'measure': 'colour specificity |w - grey(w)| / |w| (alexnet_jax.plots)',
          'towers': [{'mean': float(s.mean()), 'median': float(np.median(s)),
                      'per_kernel': [round(float(v), 4) for v in s]} for s in specificity]}


def query_ids(num_examples: int, count: int) -> np.ndarray:
  """`count` example ids spread evenly over a split of `num_examples`."""
  return np.unique(np.linspace(0, num_examples - 1, min(count, num_examples)).round()
                   .astype(np.int64))


def _display(images: np.ndarray, mean_crop: np.ndarray, channel_order: str) -> np.ndarray:
  """Network input crops (n, C, C, 3) -> RGB in [0, 1] (channels back to RGB, the mean added)."""
  rgb = images[..., ::-1] if channel_order == 'bgr' else images
  return plots.display_images(rgb, mean_crop)


def split_images(run: rundir.TrainedRun, info: data.DatasetInfo, split: str,
                 ids: np.ndarray, batch_size: int | None = None) -> np.ndarray:
  """The center crops of examples `ids` of a split as RGB in [0, 1], (len(ids), C, C, 3).

  One pass over the split in order (the test-time preprocessing), stopped
  after the largest id; repeated ids are allowed.
  """
  fields = inference.input_config(run)
  size = batch_size or run.config.eval_batch_size or run.config.batch_size
  wanted = np.unique(ids)
  found = {}
  for index, batch in enumerate(data.eval_iterator(info, fields, batch_size=size, split=split)):
    rows = wanted[(wanted >= index * size) & (wanted < (index + 1) * size)]
    for i in rows:
      found[int(i)] = batch['image'][i - index * size]
    if wanted[-1] < (index + 1) * size:
      break
  s, c = info.image_size, fields.crop_size
  offset = (s - c) // 2  # the center crop's window (data's augment.center_crop)
  mean_crop = data.input_mean(fields, info.stats)[offset:offset + c, offset:offset + c]
  return _display(np.stack([found[int(i)] for i in ids]), mean_crop, fields.channel_order)


def _select(batches: Iterable[dict], ids: np.ndarray) -> dict:
  """The rows of feature batches whose 'id' is in `ids`, in the order of `ids`; stops early."""
  found = {}
  for batch in batches:
    for row, i in enumerate(batch['id']):
      if i in ids:
        found[int(i)] = {key: value[row] for key, value in batch.items()}
    if batch['id'][-1] >= ids.max():
      break
  return {key: np.stack([found[int(i)][key] for i in ids]) for key in ('fc7', 'logits', 'label')}


def nearest_training_examples(run: rundir.TrainedRun, info: data.DatasetInfo,
                              query_fc7: np.ndarray, k: int,
                              batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """The k training examples whose fc7 vectors are nearest (Euclidean) to each query's.

  Streams the training split through the network and a running top-k on the
  device: memory O(queries x k) besides one batch. Returns (squared
  distances (Q, k), training-split ids (Q, k)), nearest first, ties by smaller id.
  """
  top = neighbours.RunningTopK(query_fc7, k, 'euclidean')
  for batch in inference.feature_batches(run, 'train', batch_size=batch_size, info=info):
    top.add(batch['id'], batch['fc7'])
  return top.result()


def write_figures(run: rundir.TrainedRun, out_dir: str | None = None, *, queries: int = 8,
                  neighbour_count: int = 6, batch_size: int | None = None,
                  data_dir: str | None = None) -> dict:
  """Writes kernels.png, kernels.json, predictions.png, neighbours.png and curves.png.

  Args:
    run: from `rundir.open_run`.
    out_dir: where to write; None: <workdir>/figures.
    queries: validation images shown in the predictions and neighbours figures
      (spread evenly over the split).
    neighbour_count: training images shown per query (six in Figure 4).
    batch_size: images per step of the passes over the data.
    data_dir: where the run's dataset is; None: its config.data_dir.

  Returns:
    {'paths': the files written, 'kernels': `kernel_report`}. curves.png is
    left out when the run has no metrics.jsonl (a converted network).

  Raises:
    errors.WorkdirError: `out_dir` cannot be written (checked before any pass).
    errors.DataError / errors.ConfigError: as `inference.feature_batches`.
  """
  if queries < 1 or neighbour_count < 1:
    raise errors.ConfigError(f'--queries and --neighbours must be positive, got {queries} and '
                             f'{neighbour_count}.')
  out_dir = out_dir or os.path.join(run.workdir, rundir.FIGURES_DIR)
  rundir.check_out_dir(out_dir)
  info = inference.dataset_info(run, data_dir)
  ids = query_ids(info.num_eval_examples, queries)
  chosen = _select(inference.feature_batches(run, 'validation', batch_size=batch_size,
                                             info=info), ids)
  query_images = split_images(run, info, 'validation', ids, batch_size)
  _, nearest = nearest_training_examples(run, info, chosen['fc7'], neighbour_count, batch_size)
  neighbour_images = split_images(run, info, 'train', nearest.reshape(-1), batch_size)
  neighbour_images = neighbour_images.reshape(*nearest.shape, *neighbour_images.shape[1:])
  rows = rundir.read_metrics(run.workdir)
  report = kernel_report(run)

  os.makedirs(out_dir, exist_ok=True)
  figures = {
      'kernels.png': plots.kernels_figure(conv1_kernels(run), run.step),
      'predictions.png': plots.predictions_figure(
          query_images, np.asarray(jax.nn.softmax(chosen['logits'])), chosen['label'],
          run.class_names),
      'neighbours.png': plots.neighbours_figure(
          query_images, chosen['label'], neighbour_images, info.source.train.labels[nearest],
          run.class_names)}
  if rows:
    schedule = config_lib.Schedule.from_config(run.config, info.num_train_examples)
    figures['curves.png'] = plots.curves_figure(rows, schedule.steps_per_epoch)
  paths = []
  for name, fig in figures.items():
    paths.append(os.path.join(out_dir, name))
    plots.save_png(fig, paths[-1])
  paths.append(rundir.write_json(os.path.join(out_dir, 'kernels.json'), report, indent=1))
  return {'paths': paths, 'kernels': report}
