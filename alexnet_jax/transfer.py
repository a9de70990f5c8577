"""Transfer: start a network from another run's weights (`config.init_from`).

Section 6's seven-CNN entry pre-trained a net with a sixth conv layer on the
Fall 2011 release and fine-tuned it on ILSVRC-2012. Here any run's latest
checkpoint (a workdir of `alexnet_jax.main`, or one converted by
`alexnet_jax.tools.convert`; `rundir.open_run` reads both) initializes every
parameter of this network whose name ('conv3/kernel') and shape match; the
others keep their initialization. The output layer (fc8) is taken only when
the two runs have the same class names: otherwise its units mean other classes,
so it starts afresh even when its shape happens to fit.

Nothing here imports TensorFlow.
"""

import dataclasses
import os
from typing import Any

import jax
import numpy as np

from alexnet_jax import errors
from alexnet_jax import rundir

# The layer whose units are the classes (section 3.5's last layer).
OUTPUT_LAYER = 'fc8'


@dataclasses.dataclass(frozen=True)
class TransferPlan:
  """Which parameters of a network a source run initializes.

  Attributes:
    source: the source run's workdir.
    step: its checkpoint's step.
    restored: names ('conv1/kernel', ...) taken from the source, in order.
    kept: {name: why it keeps its initialization}.
  """
  source: str
  step: int
  restored: tuple[str, ...]
  kept: dict[str, str]

  def summary(self) -> str:
    """One line per parameter: restored, or kept with the reason."""
    lines = [f'init_from {self.source} (step {self.step}): restored {len(self.restored)} '
             f'parameters, kept the initialization of {len(self.kept)}.']
    lines += [f'  restored {name}' for name in self.restored]
    lines += [f'  initialized {name}: {why}' for name, why in self.kept.items()]
    return '\n'.join(lines)


def _name(path) -> str:
  """'conv1/kernel' for the tree path of a parameter."""
  return '/'.join(str(getattr(k, 'key', k)) for k in path)


def _flat(tree: Any) -> dict[str, Any]:
  """{'conv1/kernel': leaf, ...} of a nested dict of parameters."""
  return {_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def match(source_params: Any, target_params: Any, *, same_classes: bool) -> tuple[
    tuple[str, ...], dict[str, str]]:
  """Which target parameters the source provides.

  Args:
    source_params, target_params: nested dicts of arrays (or anything with .shape).
    same_classes: the two runs have the same class names (else fc8 is not taken).

  Returns:
    (restored names, {kept name: reason}), both in the target's order.
  """
  source = _flat(source_params)
  restored, kept = [], {}
  for name, leaf in _flat(target_params).items():
    if name not in source:
      kept[name] = 'not in the source'
    elif tuple(np.shape(source[name])) != tuple(np.shape(leaf)):
      kept[name] = (f'shape {tuple(np.shape(source[name]))} there, '
                    f'{tuple(np.shape(leaf))} here')
    elif name.split('/')[0] == OUTPUT_LAYER and not same_classes:
      kept[name] = 'the output layer of other classes'
    else:
      restored.append(name)
  return tuple(restored), kept


def open_source(init_from: str) -> rundir.TrainedRun:
  """The run `init_from` names, read-only at its latest checkpoint.

  Raises:
    errors.CheckpointError: not a directory, not a run, or no checkpoint.
  """
  if not os.path.isdir(init_from):
    raise errors.CheckpointError(
        f'config.init_from={init_from!r} is not a directory. Give the --workdir of a finished '
        'or running training run (or of a network converted by alexnet_jax.tools.convert).')
  try:
    return rundir.open_run(init_from)
  except errors.CheckpointError as e:
    raise errors.CheckpointError(f'config.init_from cannot be used: {e}') from None


def plan(init_from: str, target_params: Any, class_names: tuple[str, ...]) -> tuple[
    TransferPlan, Any]:
  """What `init_from` gives a network whose parameters look like `target_params`.

  Args:
    init_from: the source run's workdir.
    target_params: this network's parameters (arrays or ShapeDtypeStructs).
    class_names: this run's classes (fc8 is taken only when they equal the source's).

  Returns:
    (the `TransferPlan`, the source's parameters as NumPy arrays).

  Raises:
    errors.CheckpointError: the source cannot be opened, or no parameter matches.
  """
  run = open_source(init_from)
  restored, kept = match(run.params, target_params,
                         same_classes=tuple(run.class_names) == tuple(class_names))
  if not restored:
    reasons = '; '.join(f'{n}: {why}' for n, why in list(kept.items())[:4])
    raise errors.CheckpointError(
        f'config.init_from={init_from!r}: no parameter of this network matches the source in '
        f'name and shape ({reasons}, ...). Transfer needs the same layer names and sizes: '
        'use a source with the same towers and conv/fc widths, or drop init_from.')
  return TransferPlan(run.workdir, run.step, restored, kept), run.params


def apply(transfer_plan: TransferPlan, source_params: Any, target_params: Any) -> Any:
  """`target_params` with the restored leaves replaced by the source's, each placed with the
  target leaf's sharding (every process holds the whole source array)."""
  source = _flat(source_params)
  restored = set(transfer_plan.restored)

  def take(path, leaf):
    if _name(path) not in restored:
      return leaf
    value = np.asarray(source[_name(path)], dtype=leaf.dtype)
    return jax.make_array_from_callback(value.shape, leaf.sharding, lambda index: value[index])

  return jax.tree_util.tree_map_with_path(take, target_params)
