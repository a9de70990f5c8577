"""Tests of alexnet_jax.transfer and config.init_from: which parameters another run provides."""

import json
import os

import jax
import numpy as np
import pytest

from alexnet_jax import checkpoint
from alexnet_jax import config as config_lib
from alexnet_jax import data
from alexnet_jax import errors
from alexnet_jax import model as model_lib
from alexnet_jax import optim
from alexnet_jax import parallel
from alexnet_jax import rundir
from alexnet_jax import train
from alexnet_jax import transfer

NARROW = dict(conv_features=(16, 32, 48, 48, 32), fc_features=64)
NAMES = tuple(f'class {i}' for i in range(6))


def _config(**model_fields):
  config = config_lib.base_config()
  config.dataset = 'shapes'
  config.input.image_size, config.input.crop_size = 72, 64
  config.model.update(NARROW, **model_fields)
  return config


def _params(config, classes, seed):
  model = model_lib.from_config(config.model, classes, image_size=config.input.crop_size)
  mesh = parallel.make_mesh(None, 1, model.towers)
  return model, mesh, parallel.init_params(model, mesh, jax.random.key(seed))


def _write_run(workdir, config, class_names, seed=0):
  """A workdir as train writes it: config.json, class_names.json, one checkpoint at step 7."""
  model, mesh, params = _params(config, len(class_names), seed)
  tx = optim.make_optimizer(config)
  state = train.TrainState(step=7, params=params,
                           opt_state=parallel.init_opt_state(tx, params, mesh),
                           plateau=optim.PlateauState())
  os.makedirs(workdir)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort())
  rundir.write_class_names(workdir, class_names)
  manager = checkpoint.make_manager(workdir, 1)
  checkpoint.save(manager, state)
  manager.wait_until_finished()
  manager.close()
  return jax.tree.map(np.asarray, params)


def _flat(tree):
  return {'/'.join(k.key for k in path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_init_from_restores_exactly_the_matching_parameters(tmp_path):
  """A conv6 net on 4 new classes from a conv6-less 6-class run: conv1-conv5, fc6 and fc7 come
  from the source leaf by leaf; conv6 (absent there) and fc8 (another class count) keep this
  network's initialization."""
  source = _write_run(str(tmp_path / 'source'), _config(), NAMES)
  config = _config(conv6=True)
  _, _, target = _params(config, 4, seed=1)
  plan, source_params = transfer.plan(str(tmp_path / 'source'), target, NAMES[:4])
  result = _flat(transfer.apply(plan, source_params, target))
  source_flat, target_flat = _flat(source), _flat(target)
  taken = {n for n in result if n.split('/')[0] in
           ('conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6', 'fc7')}
  assert set(plan.restored) == taken
  assert set(plan.kept) == {'conv6/bias', 'conv6/kernel', 'fc8/bias', 'fc8/kernel'}
  assert 'shape' in plan.kept['fc8/kernel'] and plan.kept['conv6/kernel'] == 'not in the source'
  for name, value in result.items():
    expected = source_flat[name] if name in taken else target_flat[name]
    np.testing.assert_array_equal(value, expected, err_msg=name)
  assert not np.array_equal(result['conv1/kernel'], target_flat['conv1/kernel'])


def test_same_shaped_output_layer_of_other_classes_is_reinitialized(tmp_path):
  """fc8 fits in shape (6 classes both) but its classes differ: it starts afresh; with the same
  class names it is taken."""
  source = _write_run(str(tmp_path / 'source'), _config(), NAMES)
  _, _, target = _params(_config(), 6, seed=1)
  other = tuple(f'other {i}' for i in range(6))
  plan, _ = transfer.plan(str(tmp_path / 'source'), target, other)
  assert plan.kept == {'fc8/bias': 'the output layer of other classes',
                       'fc8/kernel': 'the output layer of other classes'}
  same_plan, source_params = transfer.plan(str(tmp_path / 'source'), target, NAMES)
  assert not same_plan.kept
  np.testing.assert_array_equal(
      _flat(transfer.apply(same_plan, source_params, target))['fc8/kernel'],
      _flat(source)['fc8/kernel'])


def test_nothing_matches_is_a_clear_error(tmp_path):
  """A one-tower target against a two-tower source: every shape differs (the tower axis)."""
  _write_run(str(tmp_path / 'source'), _config(), NAMES)
  _, _, target = _params(_config(towers=1), 6, seed=1)
  with pytest.raises(errors.CheckpointError, match='no parameter of this network matches'):
    transfer.plan(str(tmp_path / 'source'), target, NAMES)


def test_bad_init_from_fails_before_anything_is_written(tmp_path):
  """init_from that is no directory, or a run without checkpoints: CheckpointError from
  train_and_evaluate, and the new workdir holds nothing."""
  config = config_lib.load('demo')
  config.data_dir = str(tmp_path / 'data')
  config.input.shapes.train_examples, config.input.shapes.eval_examples = 24, 12
  config.batch_size = 12
  empty_run = tmp_path / 'empty_run'
  empty_run.mkdir()
  with open(empty_run / 'config.json', 'w') as f:
    json.dump({'dataset': 'shapes'}, f)
  for init_from, message in ((tmp_path / 'missing', 'is not a directory'),
                             (empty_run, 'has no checkpoint')):
    config.init_from = str(init_from)
    workdir = tmp_path / f'run_{init_from.name}'
    with pytest.raises(errors.CheckpointError, match=message):
      train.train_and_evaluate(config, str(workdir))
    assert not os.listdir(workdir)


def test_shapes_class_subset_relabels_in_the_given_order(tmp_path):
  """input.shapes.classes=(8, 2): the examples of classes 8 and 2 only, labelled 0 and 1, the
  images in their original order, and their own statistics folder; a bad subset is refused."""
  config = _config()
  config.input.shapes.train_examples, config.input.shapes.eval_examples = 36, 12
  full = data.get_dataset_info('shapes', str(tmp_path), config.input)
  config.input.shapes.classes = (8, 2)
  subset = data.get_dataset_info('shapes', str(tmp_path), config.input)
  assert subset.class_names == (full.class_names[8], full.class_names[2])
  for split_full, split_subset in ((full.source.train, subset.source.train),
                                   (full.source.eval, subset.source.eval)):
    rows = [i for i, label in enumerate(split_full.labels) if label in (8, 2)]
    np.testing.assert_array_equal(split_subset.labels,
                                  [0 if split_full.labels[i] == 8 else 1 for i in rows])
    assert split_subset.payload == [split_full.payload[i] for i in rows]
  assert subset.location != full.location
  config.input.shapes.classes = (3, 3)
  with pytest.raises(errors.ConfigError, match='shapes.classes'):
    data.check_input_config('shapes', config.input)
