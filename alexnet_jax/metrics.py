"""Where a run's numbers go: <workdir>/metrics.jsonl and TensorBoard event files.

metrics.jsonl holds one JSON object per line, each with 'step' and the values
logged at that step (train_loss, learning_rate, images_per_sec; at
evaluations eval_loss, eval_top1_error, eval_top5_error). Only process 0
writes.
"""

import json
import os

from flax.metrics import tensorboard


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

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
