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

from flax.metrics import tensorboard
import ml_collections
import numpy as np

from alexnet_jax import plots

# The kernel mosaic's pixels are repeated this many times each way in TensorBoard.
KERNEL_ZOOM = 3


def read_rows(workdir: str) -> list[dict]:
  """metrics.jsonl's objects in file order (empty when the run has logged nothing)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def rgb_kernels(kernels: np.ndarray, channel_order: str) -> np.ndarray:
  """conv1 kernels (towers, kh, kw, 3, n) with their input channels in RGB order
  (a network fed BGR, config.input.channel_order='bgr', has them reversed)."""
  kernels = np.asarray(kernels)
  return kernels[..., ::-1, :] if channel_order == 'bgr' else kernels


class MetricsWriter:
  """Appends metrics to metrics.jsonl and to TensorBoard under <workdir>/tensorboard/."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.enabled = enabled
    self._tb = tensorboard.SummaryWriter(os.path.join(workdir, 'tensorboard')) if enabled else None

  def truncate_after(self, step: int) -> None:
    """Drops metrics.jsonl lines logged after `step`: a resumed run logs those
    steps again. (TensorBoard event files are append-only: there the steps
    run twice show twice.)"""
    if not self.enabled or not os.path.exists(self.path):
      return
    with open(self.path) as f:
      kept = [line for line in f if line.strip() and json.loads(line)['step'] <= step]
    tmp = self.path + '.tmp'
    with open(tmp, 'w') as f:
      f.writelines(kept)
    os.replace(tmp, self.path)

  def write(self, step: int, values: dict) -> None:
    if not self.enabled:
      return
    values = {k: float(v) for k, v in values.items()}
    with open(self.path, 'a') as f:
      f.write(json.dumps({'step': int(step), **values}) + '\n')
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
    curves = plots.curves_figure(read_rows(os.path.dirname(self.path)), steps_per_epoch)
    self._tb.image('curves', plots.figure_pixels(curves), step)
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
