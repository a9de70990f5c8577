"""Where a run's numbers go: <workdir>/metrics.jsonl and TensorBoard event files.

metrics.jsonl holds one JSON object per line, each with 'step' and the values
logged at that step (train_loss, learning_rate, images_per_sec; at
evaluations eval_loss, eval_top1_error, eval_top5_error). Only process 0
writes. TensorBoard also gets the run's config as hparams (`write_hparams`)
and, at each evaluation, the conv1 kernels (Figure 3), their colour
specificity per tower and the training curves as images (`write_images`).
"""

import json
import os
import time

from flax.metrics import tensorboard
import ml_collections
import numpy as np

from alexnet_jax import plots
from alexnet_jax import rundir

# The kernel mosaic's pixels are repeated this many times each way in TensorBoard.
KERNEL_ZOOM = 3


def rgb_kernels(kernels: np.ndarray, channel_order: str) -> np.ndarray:
  """conv1 kernels (towers, kh, kw, 3, n) with their input channels in RGB order
  (a network fed BGR, config.input.channel_order='bgr', has them reversed)."""
  kernels = np.asarray(kernels)
  return kernels[..., ::-1, :] if channel_order == 'bgr' else kernels


class Progress:
  """Throughput and time left of work counted toward a total (a run's steps, a pass's examples)."""

  def __init__(self, total: int, done: int = 0):
    self.total = total
    self._first = self._window_done = done
    self._started = self._window_start = time.perf_counter()

  def seconds_in_window(self) -> float:
    """Seconds since the last `window` call (or the start)."""
    return time.perf_counter() - self._window_start

  def window(self, done: int) -> tuple[float, str]:
    """(units per second since the last call, 'ETA 1h02m03s' at the mean rate since the
    start); starts a new window."""
    now = time.perf_counter()
    rate = (done - self._window_done) / max(now - self._window_start, 1e-9)
    mean_rate = (done - self._first) / max(now - self._started, 1e-9)
    seconds = int((self.total - done) / max(mean_rate, 1e-9))
    self._window_start, self._window_done = now, done
    return rate, f'ETA {seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s'


class MetricsWriter:
  """Appends metrics to metrics.jsonl and to TensorBoard under <workdir>/tensorboard/."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.workdir = workdir
    self.path = os.path.join(workdir, rundir.METRICS_FILE)
    self.enabled = enabled
    self._tb = (tensorboard.SummaryWriter(os.path.join(workdir, rundir.TENSORBOARD_DIR))
                if enabled else None)

  def truncate_after(self, step: int) -> None:
    """Drops metrics.jsonl lines logged after `step`, and the ten-crop evaluation at
    `step`: a resumed run logs those again (the ten crops come after the last step, so a
    run resumed at its end repeats them). TensorBoard event files are append-only:
    there the steps run twice show twice."""
    if not self.enabled or not os.path.exists(self.path):
      return
    kept = [row for row in rundir.read_metrics(self.workdir) if row['step'] < step or (
        row['step'] == step and not any(k.startswith('eval_ten_crop_') for k in row))]
    rundir.atomic_write(self.path, lambda f: f.writelines(json.dumps(row) + '\n' for row in kept))

  def write(self, step: int, values: dict) -> None:
    if not self.enabled:
      return
    values = {k: float(v) for k, v in values.items()}
    rundir.append_jsonl(self.path, {'step': int(step), **values})
    for name, value in values.items():
      self._tb.scalar(name, value, step)
    self._tb.flush()

  def write_hparams(self, config: ml_collections.ConfigDict) -> None:
    """The run's config as TensorBoard hparams (dotted field names; None and tuples as text)."""
    if not self.enabled:
      return
    self._tb.hparams(config.to_dict())
    self._tb.flush()

  def write_images(self, step: int, conv1_kernels: np.ndarray, steps_per_epoch: int) -> None:
    """TensorBoard images 'conv1_kernels' (`plots.kernel_mosaic`) and 'curves'
    (`plots.curves_figure` of metrics.jsonl so far), and scalars
    'conv1_colour_specificity/tower<t>' (`plots.colour_specificity`, the tower's mean).

    conv1_kernels: (towers, kh, kw, 3, n), input channels in RGB order.
    """
    if not self.enabled:
      return
    mosaic = plots.kernel_mosaic(conv1_kernels)
    zoomed = np.repeat(np.repeat(mosaic, KERNEL_ZOOM, axis=0), KERNEL_ZOOM, axis=1)
    self._tb.image('conv1_kernels', (zoomed * 255).round().astype(np.uint8), step)
    for tower, value in enumerate(plots.colour_specificity(conv1_kernels).mean(axis=1)):
      self._tb.scalar(f'conv1_colour_specificity/tower{tower}', float(value), step)
    curves = plots.curves_figure(rundir.read_metrics(self.workdir), steps_per_epoch)
    self._tb.image('curves', plots.figure_pixels(curves), step)
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
