"""Transfer: start a network from another run's weights (`config.init_from`).

Section 6's seven-CNN entry pre-trained a net with a sixth conv layer on the
Fall 2011 release and fine-tuned it on ILSVRC-2012. Here any run's latest
checkpoint (a workdir of `alexnet_jax.main`, or one converted by
`alexnet_jax.tools.convert`; `rundir.open_run` reads both) initializes every
parameter of this network whose name ('conv3/kernel') and shape match; the
others keep their initialization. The output layer (fc8) is taken only when
the two runs have the same class names: otherwise its units mean other classes,
so it starts afresh even when its shape happens to fit. The source's
parameters that this network has no place for (a conv6 net into one without
conv6) are listed as unused.

Restored weights compute what they were trained to compute only with the
source's conventions: how the input was prepared and what the layers do
beyond their shapes (`CONVENTIONS`, read from the source's config.json).
`adopt_conventions` gives the new run the source's value of every such field
the config leaves at its default (base_config()'s value: the only way to tell
a field the user did not set), logs each, and refuses a field the config sets
to another value that changes what the restored layers compute, naming both
values, unless allow_config_change is set. A network converted from Caffe
(`alexnet_jax.tools.convert`) thus fine-tunes on BGR input minus Caffe's mean,
warped to 256 x 256, with 227 crops, Caffe's LRN and inverted dropout.

Nothing here imports TensorFlow.
"""

import dataclasses
import os
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np

from alexnet_jax import checkpoint
from alexnet_jax import config as config_lib
from alexnet_jax import errors
from alexnet_jax import pretrained
from alexnet_jax import rundir

# The layer whose units are the classes (section 3.5's last layer).
OUTPUT_LAYER = 'fc8'
# A network's conventions: {field: whether another value changes what the restored layers
# compute}. input.image_size and input.resize change only the scale and framing of the
# objects seen, so a different value is allowed; the others change the numbers the layers
# receive or compute (the channel order, the mean subtracted, conv1's padding, the LRN, the
# test-time dropout scaling, the nonlinearity).
CONVENTIONS = {
    'input.channel_order': True, 'input.mean': True, 'input.mean_bgr': True,
    'input.mean_file': True, 'input.image_size': False, 'input.crop_size': True,
    'input.resize': False, 'model.activation': True, 'model.lrn': True,
    'model.lrn_convention': True, 'model.lrn_k': True, 'model.lrn_across_towers': True,
    'model.dropout_form': True,
}


@dataclasses.dataclass(frozen=True)
class TransferPlan:
  """Which parameters of a network a source run initializes.

  Attributes:
    source: the source run's workdir.
    step: its checkpoint's step.
    restored: names ('conv1/kernel', ...) taken from the source, in order.
    kept: {name: why it keeps its initialization}.
    unused: the source's parameters this network has no parameter of that name for.
  """
  source: str
  step: int
  restored: tuple[str, ...]
  kept: dict[str, str]
  unused: tuple[str, ...] = ()

  def summary(self) -> str:
    """One line per parameter: restored, kept with the reason, or unused."""
    lines = [f'init_from {self.source} (step {self.step}): restored {len(self.restored)} '
             f'parameters, kept the initialization of {len(self.kept)}; '
             f'{len(self.unused)} of the source\'s have no place here.']
    lines += [f'  restored {name}' for name in self.restored]
    lines += [f'  initialized {name}: {why}' for name, why in self.kept.items()]
    lines += [f'  unused {name}: not in this network' for name in self.unused]
    return '\n'.join(lines)


def _name(path) -> str:
  """'conv1/kernel' for the tree path of a parameter."""
  return '/'.join(str(getattr(k, 'key', k)) for k in path)


def _flat(tree: Any) -> dict[str, Any]:
  """{'conv1/kernel': leaf, ...} of a nested dict of parameters."""
  return {_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def match(source_params: Any, target_params: Any, *, same_classes: bool) -> tuple[
    tuple[str, ...], dict[str, str], tuple[str, ...]]:
  """Which target parameters the source provides.

  Args:
    source_params, target_params: nested dicts of arrays (or anything with .shape).
    same_classes: the two runs have the same class names (else fc8 is not taken).

  Returns:
    (restored names, {kept name: reason}) in the target's order, and the source's names
    that the target lacks, in the source's order.
  """
  source = _flat(source_params)
  target = _flat(target_params)
  restored, kept = [], {}
  for name, leaf in target.items():
    if name not in source:
      kept[name] = 'not in the source'
    elif tuple(np.shape(source[name])) != tuple(np.shape(leaf)):
      kept[name] = (f'shape {tuple(np.shape(source[name]))} there, '
                    f'{tuple(np.shape(leaf))} here')
    elif name.split('/')[0] == OUTPUT_LAYER and not same_classes:
      kept[name] = 'the output layer of other classes'
    else:
      restored.append(name)
  return tuple(restored), kept, tuple(name for name in source if name not in target)


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
  restored, kept, unused = match(run.params, target_params,
                                 same_classes=tuple(run.class_names) == tuple(class_names))
  if not restored:
    reasons = '; '.join(f'{n}: {why}' for n, why in list(kept.items())[:4])
    raise errors.CheckpointError(
        f'config.init_from={init_from!r}: no parameter of this network matches the source in '
        f'name and shape ({reasons}, ...). Transfer needs the same layer names and sizes: '
        'use a source with the same towers and conv/fc widths, or drop init_from.')
  return TransferPlan(run.workdir, run.step, restored, kept, unused), run.params


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


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
  group, name = field.split('.')
  value = config[group][name]
  return list(value) if isinstance(value, tuple) else value


def conventions(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """{field: value} of `CONVENTIONS` in a run's config (input.mean_bgr and input.mean_file
  only where input.mean='caffe' reads them)."""
  fields = {field: _get(config, field) for field in CONVENTIONS}
  if fields['input.mean'] != 'caffe':
    del fields['input.mean_bgr'], fields['input.mean_file']
  return fields


def describe(config: ml_collections.ConfigDict) -> str:
  """The conventions as one line: 'input.channel_order='bgr', input.mean='caffe', ...'."""
  return ', '.join(f'{field}={value!r}' for field, value in conventions(config).items())


def adopt_conventions(config: ml_collections.ConfigDict,
                      workdir: str) -> ml_collections.ConfigDict:
  """`config` with the conventions of the network config.init_from names (module docstring).

  A run resuming in `workdir` takes them from its own config (what it adopted when it
  started), so that the same command resumes. A workdir-relative input.mean_file of the
  source becomes absolute. Reads only; returns `config` itself when there is nothing to
  adopt, else a changed copy.

  Raises:
    errors.CheckpointError: init_from is not a run.
    errors.ConfigError: a function-changing field set to another value than the source's,
      without allow_config_change.
    pretrained.PretrainedError: a converted source and an input.crop_size other than 227.
  """
  if not config.init_from:
    return config
  resuming = bool(checkpoint.all_steps(workdir))
  source_dir = workdir if resuming else config.init_from
  if not resuming:
    open_source(source_dir)  # the clear errors for a missing or empty source
  source = rundir.read_config(source_dir)
  if source.input.mean_file is not None:
    source.input.mean_file = os.path.join(os.path.abspath(source_dir),
                                          os.path.expanduser(source.input.mean_file))
  theirs = conventions(source)
  default = config_lib.base_config()
  adopted, conflicts = {}, {}
  for field, value in theirs.items():
    ours = _get(config, field)
    if ours == value:
      continue
    if ours == _get(default, field):
      adopted[field] = value
    elif CONVENTIONS[field]:
      conflicts[field] = (ours, value)
  if conflicts and not config.allow_config_change:
    listed = '; '.join(f'{field}={ours!r} here, {value!r} there'
                       for field, (ours, value) in conflicts.items())
    raise errors.ConfigError(
        f'config.init_from={config.init_from!r}: the network in {source_dir} was trained with '
        f'other conventions ({listed}), and these change what its restored layers compute. '
        'Drop these overrides (the source\'s values are then adopted), or pass '
        '--config.allow_config_change=True to fine-tune with them anyway.')
  pretrained.check_crop_size(adopted.get('input.crop_size', config.input.crop_size), source,
                             source_dir)
  for field, (ours, value) in conflicts.items():
    logging.warning('init_from: %s=%r kept although the source used %r '
                    '(allow_config_change).', field, ours, value)
  if not adopted:
    return config
  result = config.copy_and_resolve_references()
  for field, value in adopted.items():
    group, name = field.split('.')
    result[group][name] = value
    logging.info('init_from: %s=%r adopted from %s (this config had %r).', field, value,
                 source_dir, _get(config, field))
  return result
