"""Tests of alexnet_jax.transfer and config.init_from: which parameters another run provides,
and the conventions a fine-tune takes from it."""

import json
import logging
import os

import jax
import numpy as np
import pytest
import tensorflow as tf

from alexnet_jax import checkpoint
from alexnet_jax import config as config_lib
from alexnet_jax import data
from alexnet_jax import errors
from alexnet_jax import inference
from alexnet_jax import model as model_lib
from alexnet_jax import optim
from alexnet_jax import parallel
from alexnet_jax import pretrained
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


@pytest.mark.slow
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
  assert plan.unused == ()
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
    assert not os.path.exists(workdir)


def _shapes(config, classes):
  model = model_lib.from_config(config.model, classes, image_size=config.input.crop_size)
  return jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(
      (1, model.image_size, model.image_size, 3), np.float32))['params']


def test_source_parameters_without_a_place_are_listed_unused():
  """A conv6 network's parameters into one without conv6: conv6's are reported unused, the
  rest restored."""
  restored, kept, unused = transfer.match(_shapes(_config(conv6=True), 6), _shapes(_config(), 6),
                                          same_classes=True)
  assert unused == ('conv6/bias', 'conv6/kernel') and not kept and len(restored) == 16
  plan = transfer.TransferPlan('/runs/conv6', 7, restored, kept, unused)
  assert '  unused conv6/kernel: not in this network' in plan.summary().splitlines()


def _finetune_config(init_from, **fields):
  """experiments/finetune_folder.py with init_from and `fields` ({'model.lrn_k': 3.0}) set."""
  config = config_lib.load('finetune_folder')
  with config.unlocked():
    config.data_dir = '/data/photos'
  config.init_from = init_from
  for field, value in fields.items():
    group, name = field.split('.')
    config[group][name] = value
  return config


def test_a_finetune_adopts_the_converted_networks_conventions(bvlc_run, tmp_path, caplog):
  """From a converted workdir, before any step: every convention of the source (each logged),
  its parameters (the same classes here, so fc8 too), and so the converted network's logits
  for the same photo; with this project's own conventions the logits differ."""
  config = _finetune_config(bvlc_run.workdir)
  with caplog.at_level(logging.INFO):
    adopted = transfer.adopt_conventions(config, str(tmp_path / 'finetune'))
  mean_file = os.path.join(bvlc_run.workdir, 'caffe_mean.npy')
  assert transfer.conventions(adopted) == {**transfer.conventions(bvlc_run.config),
                                           'input.mean_file': mean_file}
  for field in ('input.channel_order', 'input.resize', 'model.lrn_k', 'model.dropout_form'):
    assert any(f'init_from: {field}=' in r.getMessage() for r in caplog.records), field
  assert config.input.channel_order == 'rgb'  # the caller's config is left as it was
  model = model_lib.from_config(adopted.model, 1000, image_size=adopted.input.crop_size)
  mesh = parallel.make_mesh(None, None, model.towers)
  state = train.fresh_state(adopted, str(tmp_path / 'finetune'), model, mesh,
                            optim.make_optimizer(adopted), bvlc_run.class_names)
  photo = str(tmp_path / 'photo.png')
  tf.io.write_file(photo, tf.io.encode_png(
      np.random.default_rng(6).integers(0, 256, (240, 320, 3), dtype=np.uint8)))
  views = data.image_views(photo, data.input_mean(adopted.input), adopted.input)
  logits = np.asarray(model.apply({'params': jax.device_get(state.params)}, views[None]))
  source_fields = inference.input_config(bvlc_run)
  source_views = data.image_views(photo, data.input_mean(source_fields), source_fields)
  want = np.asarray(bvlc_run.model.apply({'params': bvlc_run.params}, source_views[None]))
  np.testing.assert_array_equal(views, source_views)
  np.testing.assert_allclose(logits, want, rtol=1e-6, atol=1e-6)
  own = model_lib.from_config(config.model, 1000, image_size=adopted.input.crop_size)
  other = np.asarray(own.apply({'params': bvlc_run.params}, source_views[None]))
  assert np.abs(other - want).max() > 1e-2


def test_mixed_conventions_are_refused_and_nothing_is_written(bvlc_run, tmp_path):
  """A function-changing field set against the source's value stops the run with both values
  named, before the workdir exists; allow_config_change keeps it. A converted source takes
  no other crop size, allowed or not."""
  workdir = tmp_path / 'finetune'
  config = _finetune_config(bvlc_run.workdir, **{'model.lrn_k': 3.0})
  with pytest.raises(errors.ConfigError, match='model.lrn_k=3.0 here, 1.0 there') as info:
    train.train_and_evaluate(config, str(workdir))
  assert '\n' not in str(info.value) and 'allow_config_change' in str(info.value)
  assert not os.path.exists(workdir)
  config.allow_config_change = True
  kept = transfer.adopt_conventions(config, str(workdir))
  assert (kept.model.lrn_k, kept.model.lrn_convention, kept.input.crop_size) == (
      3.0, 'cuda_convnet', 227)
  config = _finetune_config(bvlc_run.workdir, **{'input.crop_size': 200})
  config.allow_config_change = True
  with pytest.raises(pretrained.PretrainedError, match='input.crop_size=200'):
    transfer.adopt_conventions(config, str(workdir))


def test_a_resumed_finetune_keeps_what_it_adopted(bvlc_run, tmp_path):
  """Resuming, the conventions come from the run's own config.json: the same command works
  though the source has gone (here the converted workdir stands for the resumed run)."""
  config = _finetune_config(str(tmp_path / 'gone'))
  resumed = transfer.adopt_conventions(config, bvlc_run.workdir)
  assert transfer.conventions(resumed) == {
      **transfer.conventions(bvlc_run.config),
      'input.mean_file': os.path.join(bvlc_run.workdir, 'caffe_mean.npy')}


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
