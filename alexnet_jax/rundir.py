"""The run folder (a workdir): its file names, how they are written, and `open_run`.

A workdir written by `train.train_and_evaluate` (or by `alexnet_jax.tools.convert`)
holds what is needed to use the network without the training data:

  config.json                 the resolved config the run started with
  config_from_step_<N>.json   the config from step N on, when a resume changed it
  class_names.json            {"class_names": [...]} (index = label), and "wnids" when known
  mean_image.npy              float32 (S, S, 3) RGB: the training set's mean image the
                              network's inputs had subtracted (input.mean='dataset')
  metrics.jsonl               one JSON object per logged step (`metrics.MetricsWriter`)
  checkpoints/<step>          orbax checkpoints ('params' at least; `checkpoint`)
  eval/, figures/, retrieval/ what the section-6 tools write

Every file this package writes into a workdir goes through `atomic_write`
(write a temporary file, then rename it), so a crash leaves the old file or
the new one, never half of one. `open_run` reads a run and never writes.

Nothing here imports TensorFlow.
"""

from collections.abc import Callable
import dataclasses
import json
import os
from typing import IO
from typing import Any

import ml_collections
import numpy as np

from alexnet_jax import checkpoint
from alexnet_jax import config as config_lib
from alexnet_jax import errors
from alexnet_jax import model as model_lib

CONFIG_FILE = 'config.json'
CONFIG_FROM_STEP = 'config_from_step_{step}.json'
CLASS_NAMES_FILE = 'class_names.json'
MEAN_IMAGE_FILE = 'mean_image.npy'
METRICS_FILE = 'metrics.jsonl'
TENSORBOARD_DIR = 'tensorboard'
EVAL_DIR = 'eval'
FIGURES_DIR = 'figures'
RETRIEVAL_DIR = 'retrieval'


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """A run's network at one checkpoint.

  Attributes:
    workdir: the run's directory.
    config: the config the run was started with (unlocked copy).
    step: the checkpoint's step.
    params: the network's parameters as NumPy arrays (tower axis first).
    model: the `AlexNet` that `params` fit (image_size = the run's crop size).
    class_names: readable class names, index = label.
    mean_image: float32 (S, S, 3), the training set's mean image, when the run
      subtracted it and saved it (mean_image.npy); else None.
    wnids: the classes' WordNet ids, index = label, when class_names.json has them
      (a converted ImageNet network); else None.
  """
  workdir: str
  config: ml_collections.ConfigDict
  step: int
  params: Any
  model: model_lib.AlexNet
  class_names: tuple[str, ...]
  mean_image: np.ndarray | None
  wnids: tuple[str, ...] | None = None


def atomic_write(path: str, write: Callable[[IO], None], *, binary: bool = False) -> str:
  """Calls `write(file)` on <path>.tmp, then renames it to `path`; returns `path`."""
  tmp = path + '.tmp'
  with open(tmp, 'wb' if binary else 'w') as f:
    write(f)
  os.replace(tmp, path)
  return path


def write_json(path: str, content: Any, indent: int = 2) -> str:
  """`content` as JSON at `path`, atomically; returns `path`."""
  return atomic_write(path, lambda f: json.dump(content, f, indent=indent))


def append_jsonl(path: str, row: dict) -> None:
  """Appends `row` as one JSON line to `path` (metrics.jsonl), flushed to the disk."""
  with open(path, 'a') as f:
    f.write(json.dumps(row) + '\n')
    f.flush()
    os.fsync(f.fileno())


def write_npy(path: str, array: np.ndarray) -> str:
  """`array` in NumPy's .npy format at `path`, atomically; returns `path`."""
  return atomic_write(path, lambda f: np.save(f, array), binary=True)


def make_workdir(workdir: str) -> None:
  """Creates `workdir` (and its parents); raises WorkdirError when it cannot be written."""
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise errors.WorkdirError(f'Cannot create the workdir {workdir!r}: {e.strerror}. '
                              'Choose a --workdir you can write to.') from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise errors.WorkdirError(f'The workdir {workdir!r} is not writable by this user. '
                              'Choose a --workdir you can write to, or fix its permissions.')


def check_writable(directory: str) -> None:
  """Raises errors.WorkdirError unless `directory` (or the folder it would be made in) is
  writable."""
  existing = directory
  while not os.path.isdir(existing):
    existing = os.path.dirname(existing) or '.'
  if not os.access(existing, os.W_OK | os.X_OK):
    raise errors.WorkdirError(f'Cannot write into {directory}: {existing} is not writable by this '
                              'user. Fix its permissions or choose another location.')


def check_out_dir(out_dir: str) -> None:
  """Raises errors.WorkdirError unless `out_dir` is, or can be made, a writable folder."""
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise errors.WorkdirError(f'{out_dir} exists and is not a folder; remove it or choose '
                              'another --out_dir.')
  check_writable(out_dir)


def holds_run(workdir: str) -> bool:
  """True when `workdir` has a config.json or a checkpoint (a run or a converted network)."""
  return (os.path.exists(os.path.join(workdir, CONFIG_FILE))
          or bool(checkpoint.all_steps(workdir)))


def write_config(workdir: str, config: ml_collections.ConfigDict,
                 from_step: int | None = None) -> str:
  """The resolved config as config.json, or as config_from_step_<N>.json when
  `from_step` is N (a resume that changed the config); returns the path."""
  name = CONFIG_FILE if from_step is None else CONFIG_FROM_STEP.format(step=from_step)
  return atomic_write(os.path.join(workdir, name),
                      lambda f: f.write(config.to_json_best_effort(indent=2)))


def write_class_names(workdir: str, class_names: tuple[str, ...] | list[str],
                      wnids: list[str] | None = None) -> None:
  """Writes <workdir>/class_names.json."""
  content = {'class_names': list(class_names), **({'wnids': list(wnids)} if wnids else {})}
  write_json(os.path.join(workdir, CLASS_NAMES_FILE), content, indent=1)


def write_mean_image(workdir: str, mean_image: np.ndarray) -> None:
  """Writes <workdir>/mean_image.npy: float32 (S, S, 3), RGB."""
  write_npy(os.path.join(workdir, MEAN_IMAGE_FILE), np.asarray(mean_image, np.float32))


def read_metrics(workdir: str) -> list[dict]:
  """metrics.jsonl's objects in file order (empty when the run has logged nothing).

  A last line without its newline (what a kill or a full disk in the middle of
  `append_jsonl` leaves) is not read: the run logs that step again when it resumes.
  """
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    *lines, _ = f.read().split('\n')  # the piece after the last newline is unfinished
  return [json.loads(line) for line in lines if line.strip()]


def config_in_force(workdir: str, step: int | None = None) -> tuple[str, dict] | None:
  """(file name, fields) of the config that trained checkpoint `step` (None: the last one).

  config.json (the run's start) or, when a resume changed the config
  (`allow_config_change`), the latest config_from_step_<N>.json with N <= step;
  None when the workdir has neither or does not exist.
  """
  if not os.path.isdir(workdir):
    return None
  prefix, suffix = CONFIG_FROM_STEP.split('{step}')
  candidates = {0: CONFIG_FILE}
  for name in os.listdir(workdir):
    if name.startswith(prefix) and name.endswith(suffix):
      from_step = int(name[len(prefix):-len(suffix)])
      if step is None or from_step <= step:
        candidates[from_step] = name
  name = candidates[max(candidates)]
  if not os.path.exists(os.path.join(workdir, name)):
    return None
  with open(os.path.join(workdir, name)) as f:
    return name, json.load(f)


def read_config(workdir: str, step: int | None = None) -> ml_collections.ConfigDict:
  """The config in force at checkpoint `step` (`config_in_force`) as a ConfigDict."""
  found = config_in_force(workdir, step)
  if found is None:
    what = 'it has no config.json' if os.path.isdir(workdir) else 'there is no such folder'
    raise errors.CheckpointError(
        f'{workdir} is not a training run: {what}. Give the --workdir of a run '
        'made by python -m alexnet_jax.main (or alexnet_jax.tools.convert).')
  name, values = found
  config = config_lib.base_config()
  _update(config, values, os.path.join(workdir, name))
  return config


def _update(config: ml_collections.ConfigDict, values: dict, path: str, prefix: str = '') -> None:
  """Sets the fields of `config` from a JSON dict, tuples restored from lists."""
  for key, value in values.items():
    if key not in config:
      raise errors.ConfigError(f'{path} has the field {prefix}{key}, which this version of '
                               'alexnet_jax does not know.')
    if isinstance(config[key], ml_collections.ConfigDict):
      _update(config[key], value, path, f'{prefix}{key}.')
    else:
      config[key] = tuple(value) if isinstance(value, list) and key == 'conv_features' else value


def open_run(workdir: str, step: int | str | None = None) -> TrainedRun:
  """Opens a run read-only at a checkpoint.

  Args:
    workdir: the run's directory.
    step: a step number (an int or its digits, as a command line gives it),
      'latest' or None (the latest checkpoint), or 'best' (the kept checkpoint
      with the lowest validation top-1 error, `checkpoint.best_step`).

  'latest' and 'best' pass over checkpoints that cannot be read, with a warning each.

  Raises:
    errors.CheckpointError: no config.json, no checkpoint, no checkpoint at `step`
      (the message lists the steps there are), no evaluated checkpoint for 'best',
      or a `step` that is none of the above.
    errors.UnreadableCheckpointError: the checkpoint at `step` cannot be read, or
      none of those 'latest' or 'best' may take can.
  """
  workdir = os.path.abspath(workdir)
  read_config(workdir)  # raises first when the workdir is not a run at all
  steps = checkpoint.all_steps(workdir)
  if not steps:
    raise errors.CheckpointError(f'{workdir} has no checkpoint yet (checkpoints/ is empty or '
                                 'missing); train first, or give another --workdir.')
  step, params = _load(workdir, step, steps)
  config = read_config(workdir, step)
  class_names, wnids = _class_names(workdir)
  model = model_lib.from_config(config.model, len(class_names),
                                image_size=config.input.crop_size)
  mean_path = os.path.join(workdir, MEAN_IMAGE_FILE)
  mean_image = np.load(mean_path) if os.path.exists(mean_path) else None
  return TrainedRun(workdir, config, step, params, model, class_names, mean_image, wnids)


def _load(workdir: str, step: int | str | None, steps: list[int]) -> tuple[int, Any]:
  """(step, parameters) of the checkpoint that `open_run`'s `step` argument names."""
  if step in (None, 'latest'):
    return checkpoint.load_first_readable(workdir, steps[::-1])
  if step == 'best':
    ranked = checkpoint.best_steps(workdir)
    if not ranked:
      raise errors.CheckpointError(
          f'{workdir} has no checkpoint saved at an evaluation, so none is known to be the best; '
          "give --step=latest or a step number.")
    return checkpoint.load_first_readable(
        workdir, ranked, which='checkpoints saved at an evaluation',
        advice='--step=latest takes the newest checkpoint that can be read. ')
  try:
    number = int(step)
  except ValueError:
    raise errors.CheckpointError(f'--step={step!r} is not a step: give a number, '
                                 "'latest' or 'best'.") from None
  if number not in steps:
    raise errors.CheckpointError(f'{workdir} has no checkpoint at step {number}; it has steps '
                                 f'{", ".join(map(str, steps))}.')
  return checkpoint.load_params(workdir, number)


def _class_names(workdir: str) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
  """(class names, wnids or None) of class_names.json."""
  path = os.path.join(workdir, CLASS_NAMES_FILE)
  if not os.path.isfile(path):
    raise errors.CheckpointError(f'{workdir} has no {CLASS_NAMES_FILE}; it was written by an '
                                 'older version. Rerun the training command once to add it.')
  with open(path) as f:
    content = json.load(f)
  wnids = content.get('wnids')
  return tuple(content['class_names']), tuple(wnids) if wnids else None
