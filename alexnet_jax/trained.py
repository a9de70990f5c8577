"""A finished (or running) training run, opened read-only: its config, network and weights.

A workdir written by `train.train_and_evaluate` (or by `alexnet_jax.convert`)
holds what is needed to use the network without the training data:

  config.json        the resolved config the run started with
  class_names.json   {"class_names": [...]} (index = label), and "wnids" when known
  mean_image.npy     float32 (S, S, 3) RGB: the training set's mean image the
                     network's inputs had subtracted (runs with input.mean='dataset')
  checkpoints/<step> orbax checkpoints ('params' at least)

`open_run` reads them and never writes into the workdir.

Nothing here imports TensorFlow.
"""

import dataclasses
import json
import os
from typing import Any

import ml_collections
import numpy as np

from alexnet_jax import checkpoint
from alexnet_jax import config as config_lib
from alexnet_jax import errors
from alexnet_jax import model as model_lib

CLASS_NAMES_FILE = 'class_names.json'
MEAN_IMAGE_FILE = 'mean_image.npy'


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
  """
  workdir: str
  config: ml_collections.ConfigDict
  step: int
  params: Any
  model: model_lib.AlexNet
  class_names: tuple[str, ...]
  mean_image: np.ndarray | None


def write_class_names(workdir: str, class_names: tuple[str, ...] | list[str],
                      wnids: list[str] | None = None) -> None:
  """Writes <workdir>/class_names.json (atomically)."""
  content = {'class_names': list(class_names), **({'wnids': list(wnids)} if wnids else {})}
  path = os.path.join(workdir, CLASS_NAMES_FILE)
  with open(path + '.tmp', 'w') as f:
    json.dump(content, f, indent=1)
  os.replace(path + '.tmp', path)


def write_mean_image(workdir: str, mean_image: np.ndarray) -> None:
  """Writes <workdir>/mean_image.npy (atomically): float32 (S, S, 3), RGB."""
  path = os.path.join(workdir, MEAN_IMAGE_FILE)
  with open(path + '.tmp', 'wb') as f:
    np.save(f, np.asarray(mean_image, np.float32))
  os.replace(path + '.tmp', path)


def config_in_force(workdir: str, step: int | None = None) -> tuple[str, dict] | None:
  """(file name, fields) of the config that trained checkpoint `step` (None: the last one).

  config.json (the run's start) or, when a resume changed the config
  (`allow_config_change`), the latest config_from_step_<N>.json with N <= step;
  None when the workdir has neither.
  """
  candidates = {0: 'config.json'}
  for name in os.listdir(workdir):
    if name.startswith('config_from_step_') and name.endswith('.json'):
      from_step = int(name[len('config_from_step_'):-len('.json')])
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
    raise errors.CheckpointError(
        f'{workdir} is not a training run: it has no config.json. Give the --workdir of a run '
        'made by python -m alexnet_jax.main (or alexnet_jax.convert).')
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

  Raises:
    errors.CheckpointError: no config.json, no checkpoint, no checkpoint at `step`
      (the message lists the steps there are), no evaluated checkpoint for 'best',
      or a `step` that is none of the above.
  """
  workdir = os.path.abspath(workdir)
  read_config(workdir)  # raises first when the workdir is not a run at all
  steps = checkpoint.all_steps(workdir)
  if not steps:
    raise errors.CheckpointError(f'{workdir} has no checkpoint yet (checkpoints/ is empty or '
                                 'missing); train first, or give another --workdir.')
  step = _resolve_step(workdir, step, steps)
  if step not in steps:
    raise errors.CheckpointError(f'{workdir} has no checkpoint at step {step}; it has steps '
                                 f'{", ".join(map(str, steps))}.')
  config = read_config(workdir, step)
  _, params = checkpoint.load_params(workdir, step)
  class_names = _class_names(workdir)
  model = model_lib.from_config(config.model, len(class_names),
                                image_size=config.input.crop_size)
  mean_path = os.path.join(workdir, MEAN_IMAGE_FILE)
  mean_image = np.load(mean_path) if os.path.exists(mean_path) else None
  return TrainedRun(workdir, config, step, params, model, class_names, mean_image)


def _resolve_step(workdir: str, step: int | str | None, steps: list[int]) -> int:
  """The checkpoint step that `open_run`'s `step` argument names."""
  if step in (None, 'latest'):
    return steps[-1]
  if step == 'best':
    best = checkpoint.best_step(workdir)
    if best is None:
      raise errors.CheckpointError(
          f'{workdir} has no checkpoint saved at an evaluation, so none is known to be the best; '
          "give --step=latest or a step number.")
    return best
  try:
    return int(step)
  except ValueError:
    raise errors.CheckpointError(f'--step={step!r} is not a step: give a number, '
                                 "'latest' or 'best'.") from None


def _class_names(workdir: str) -> tuple[str, ...]:
  path = os.path.join(workdir, CLASS_NAMES_FILE)
  if not os.path.isfile(path):
    raise errors.CheckpointError(f'{workdir} has no {CLASS_NAMES_FILE}; it was written by an '
                                 'older version. Rerun the training command once to add it.')
  with open(path) as f:
    return tuple(json.load(f)['class_names'])
