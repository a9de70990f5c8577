"""Input pipeline on a tiny embedded dataset, against NumPy references and the
TensorFlow calls that define the training examples' draws."""

import functools
import gc
import os
import subprocess
import sys
import weakref

import jax
import numpy as np
import pytest
import tensorflow as tf

from alexnet_jax import config as config_lib
from alexnet_jax import data
from alexnet_jax import errors
from alexnet_jax import parallel
from alexnet_jax import steps
from alexnet_jax.data import augment
from alexnet_jax.data import draws
from alexnet_jax.data import pipeline
from alexnet_jax.data import stats as stats_lib

S, C = 32, 28  # stored side, crop side of the tiny dataset
N_TRAIN, N_VAL = 40, 22
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(data_dir, **kw):
  c = config_lib.base_config()
  c.dataset, c.data_dir, c.batch_size, c.seed = 'shapes', str(data_dir), 12, 3
  c.input.image_size, c.input.crop_size = S, C
  c.input.shapes.train_examples, c.input.shapes.eval_examples = N_TRAIN, N_VAL
  for k, v in kw.items():
    c.input[k] = v
  return c


def info_of(config, **kw):
  return data.get_dataset_info(config.dataset, config.data_dir, config.input, **kw)


def train(config, info, **kw):
  return data.train_iterator(info, config.input, batch_size=config.batch_size, seed=config.seed,
                             **kw)


def evaluate(config, info, **kw):
  return data.eval_iterator(info, config.input, batch_size=config.batch_size, **kw)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  config = tiny_config(tmp_path_factory.mktemp('tfds'))
  return config, info_of(config)


def decoded(split):
  return np.stack([tf.io.decode_jpeg(b, channels=3).numpy()
                   for b in split.payload])


def take(it, n):
  return [next(it) for _ in range(n)]


def tf_draws(seed, epoch, k, image_size, crop_size, std):
  """One example's draws as TensorFlow's stateless calls define them (the per-example code
  the pipeline ran before draws.batch_draws): (offset (2,), flip, alpha (3,))."""
  key = tf.stack([tf.cast(seed, tf.int64), tf.constant(0x5EED, tf.int64)])
  key = tf.random.experimental.stateless_fold_in(key, tf.cast(epoch, tf.int64), alg='philox')
  key = tf.random.experimental.stateless_fold_in(key, tf.cast(k, tf.int64), alg='philox')

  def sub(i):
    return tf.random.experimental.stateless_fold_in(key, i, alg='philox')

  offset = tf.random.stateless_uniform([2], seed=sub(0), minval=0,
                                       maxval=image_size - crop_size + 1, dtype=tf.int32,
                                       alg='philox')
  flip = tf.random.stateless_uniform([], seed=sub(1), alg='philox') < 0.5
  alpha = tf.random.stateless_normal([3], seed=sub(2), stddev=std, alg='philox')
  return offset, flip, alpha


@tf.function
def tf_draws_of(seed, epochs, ks, image_size, crop_size, std):
  """`tf_draws` of every (epochs[j], ks[j])."""
  return tf.map_fn(lambda ek: tf_draws(seed, ek[0], ek[1], image_size, crop_size, std),
                   tf.stack([epochs, ks], axis=1),
                   fn_output_signature=(tf.int32, tf.bool, tf.float32))


def batch_alphas(alpha_key, alpha_counter, std):
  """draws.lighting_alpha of every row."""
  fn = tf.function(lambda keys, counters: tf.map_fn(
      lambda kc: draws.lighting_alpha(kc[0], kc[1], std), (keys, counters),
      fn_output_signature=tf.float32))
  return fn(tf.constant(alpha_key), tf.constant(alpha_counter)).numpy()


def host_reference(batch, mean, eigvecs, scale, bgr=False):
  """The training transformation as the host computed it before it moved to the step (the
  same TensorFlow ops in the same order): minus the mean image's window, reflected, plus
  eigvecs @ (alpha * scale), channels reversed for BGR. float32 (b, C, C, 3)."""
  crop = batch['image'].shape[1]
  out = []
  for image, (oy, ox), flip in zip(batch['image'], batch['offset'], batch['flip']):
    img = tf.cast(image, tf.float32) - tf.constant(mean)[oy:oy + crop, ox:ox + crop]
    out.append(tf.reverse(img, [1]) if flip else img)
  delta = tf.linalg.matvec(tf.constant(eigvecs), tf.constant(batch['alpha']) * scale)
  img = tf.stack(out) + delta[:, None, None, :]
  return (tf.reverse(img, [-1]) if bgr else img).numpy()


@functools.cache
def _jitted_inputs(transform):
  mesh = parallel.make_mesh(1, 1)
  return mesh, jax.jit(steps.train_inputs(transform, mesh))


def device_inputs(batch, transform):
  """The training step's input transformation of a host batch, on a one-device mesh."""
  mesh, fn = _jitted_inputs(transform)
  return np.asarray(fn(parallel.shard_batch(
      {k: batch[k] for k in ('image', 'offset', 'flip', 'alpha')}, mesh)))


def test_info(tiny):
  config, info = tiny
  assert info.num_classes == 12 and len(info.class_names) == 12
  assert info.class_names[0] == 'red disc'
  assert (info.num_train_examples, info.num_eval_examples) == (N_TRAIN, N_VAL)
  assert info.stats.mean_image.shape == (S, S, 3)
  assert info.stats.mean_image.dtype == np.float32
  assert info.stats.eigvals.shape == (3,) and info.stats.eigvecs.shape == (3, 3)

def test_stats_are_reused_not_recomputed(tiny, monkeypatch):
  config, info = tiny

  def fail(*args, **kwargs):
    raise AssertionError('statistics recomputed although the file exists')

  monkeypatch.setattr(stats_lib, 'compute', fail)
  again = info_of(config)
  np.testing.assert_array_equal(again.stats.mean_image, info.stats.mean_image)


def test_shapes_and_dtypes(tiny):
  config, info = tiny
  batch = next(train(config, info))
  assert batch['image'].shape == (12, C, C, 3) and batch['image'].dtype == np.uint8
  assert batch['label'].shape == (12,) and batch['label'].dtype == np.int32
  assert batch['offset'].shape == (12, 2) and batch['offset'].dtype == np.int32
  assert batch['flip'].shape == (12,) and batch['flip'].dtype == bool
  assert batch['alpha'].shape == (12, 3) and batch['alpha'].dtype == np.float32
  ev = next(evaluate(config, info))
  assert ev['image'].shape == (12, C, C, 3) and ev['image'].dtype == np.float32
  assert ev['label'].dtype == np.int32 and ev['mask'].dtype == bool
  ev10 = next(evaluate(config, info, ten_crop=True))
  assert ev10['image'].shape == (12, 10, C, C, 3)
  # The first of the ten views is the center crop.
  np.testing.assert_array_equal(ev10['image'][:, 0], ev['image'])
  # Two processes: half the rows each.
  b = next(train(config, info, process_index=1, process_count=2))
  assert b['image'].shape == (6, C, C, 3) and b['alpha'].shape == (6, 3)


def test_mean_and_covariance_match_numpy(tiny):
  _, info = tiny
  x = decoded(info.source.train).astype(np.float64)  # (N, S, S, 3), 0..255
  np.testing.assert_allclose(info.stats.mean_image, x.mean(0), rtol=0,
                             atol=1e-4)
  cov = np.cov(x.reshape(-1, 3).T, bias=True)
  np.testing.assert_allclose(info.stats.covariance, cov, rtol=1e-9)
  w, v = np.linalg.eigh(cov)
  np.testing.assert_allclose(info.stats.eigvals, w[::-1], rtol=1e-5)
  for i in range(3):  # columns are eigenvectors, unit length
    p = info.stats.eigvecs[:, i].astype(np.float64)
    np.testing.assert_allclose(cov @ p, info.stats.eigvals[i] * p,
                               rtol=1e-4, atol=1e-3)
    assert abs(np.linalg.norm(p) - 1) < 1e-5


def test_crop_offsets_cover_range_and_flip_half():
  offset, flip, _, _ = draws.batch_draws(7, np.arange(2000) // 500, np.arange(2000) % 500, 256,
                                         224)
  for o in (offset[:, 0], offset[:, 1]):
    assert o.min() == 0 and o.max() == 32
    assert len(set(o.tolist())) == 33  # every offset 0..32 occurs
  assert 0.45 < flip.mean() < 0.55


@pytest.mark.parametrize('seed', [0, 3, 2**40 + 5])
def test_batch_draws_equal_tensorflows_stateless_calls(seed):
  """NumPy's Philox (draws.batch_draws) and TensorFlow's kernel for the normals give, bit for
  bit, the draws of TensorFlow's per-example stateless calls: epochs 0, 1 and a large one, in
  one call as a batch crossing epochs does."""
  epochs = np.repeat(np.array([0, 1, 2**33 + 7], np.int64), 100)
  ks = np.tile(np.arange(100, dtype=np.int64) * 977, 3)
  offset, flip, alpha_key, alpha_counter = draws.batch_draws(seed, epochs, ks, 256, 224)
  want = tf_draws_of(seed, tf.constant(epochs), tf.constant(ks), 256, 224, 0.1)
  np.testing.assert_array_equal(offset, want[0].numpy())
  np.testing.assert_array_equal(flip, want[1].numpy())
  np.testing.assert_array_equal(batch_alphas(alpha_key, alpha_counter, 0.1), want[2].numpy())


def test_train_batch_matches_numpy_reference(tiny):
  """Every example the step receives = mean-subtracted crop, flipped, plus lighting,
  computed here in NumPy from the decoded images and TensorFlow's draws for (seed, epoch, k);
  the host sends the uint8 crop and the draws, the step's transformation does the rest."""
  config, info = tiny
  split = info.source.train
  pixels = decoded(split)
  images = pixels.astype(np.float32)
  mean = info.stats.mean_image
  lam, vec = info.stats.eigvals, info.stats.eigvecs
  transform = data.train_transform(info, config.input)
  batches = take(train(config, info), 5)  # crosses epoch 0 -> 1
  n, bsz = split.num_examples, config.batch_size
  epochs, ks = np.divmod(np.arange(5 * bsz), n)
  offsets, flips, alphas = (v.numpy() for v in tf_draws_of(
      config.seed, tf.constant(epochs), tf.constant(ks), S, C, 0.1))
  for s, batch in enumerate(batches):
    network_input = device_inputs(batch, transform)
    for i in range(bsz):
      p = s * bsz + i
      e, k = divmod(p, n)
      idx = int(pipeline.epoch_permutation(config.seed, e, n)[k])
      (oy, ox), flip, alpha = offsets[p], flips[p], alphas[p]
      np.testing.assert_array_equal(batch['image'][i], pixels[idx, oy:oy + C, ox:ox + C])
      ref = (images[idx] - mean)[oy:oy + C, ox:ox + C]
      if flip:
        ref = ref[:, ::-1]
      ref = ref + vec @ (alpha * lam / 255.0)  # 'paper' convention
      assert batch['label'][i] == split.labels[idx]
      np.testing.assert_allclose(network_input[i], ref, atol=2e-3)


@pytest.mark.parametrize('channel_order', ['rgb', 'bgr'])
def test_step_transformation_equals_the_host_implementation(tiny, channel_order):
  """The mean image, the reflection and the lighting moved into the step give what the host
  computed before on the same crops and draws: bit for bit without lighting (the same float32
  operations, reordered only by exact permutations), within float32 rounding with it (the
  3x3 product eigvecs @ (alpha * scale): TensorFlow's kernel fuses multiply-adds, XLA's
  does not), i.e. at most a couple of units in the last place of the pixel or of the offset."""
  config, info = tiny
  config = tiny_config(config.data_dir, channel_order=channel_order)
  transform = data.train_transform(info, config.input)
  scale = augment.lighting_scale(info.stats.eigvals, 'paper')
  bgr = channel_order == 'bgr'
  for batch in take(train(config, info, start_step=1), 3):
    got = device_inputs(batch, transform)
    want = host_reference(batch, info.stats.mean_image, info.stats.eigvecs, scale, bgr)
    delta = np.abs(info.stats.eigvecs @ (batch['alpha'] * scale).T).max()
    bound = 2 * np.spacing(np.abs(want)) + 2 * np.spacing(np.float32(delta))
    assert np.all(np.abs(got - want) <= bound), np.abs(got - want).max()
    unlit = {**batch, 'alpha': np.zeros_like(batch['alpha'])}
    np.testing.assert_array_equal(
        device_inputs(unlit, transform),
        host_reference(unlit, info.stats.mean_image, info.stats.eigvecs, scale, bgr))


def test_raw_storage_gives_the_jpeg_paths_examples_bitwise(tiny):
  """input.storage='raw' holds the decoded pixels of the same JPEGs: every training batch
  (crops, draws, labels) and evaluation batch equals the JPEG path's, bit for bit (so the
  JPEG path's windowed decoding equals a full decode, and both read the same draws)."""
  config, info = tiny
  raw = tiny_config(config.data_dir, storage='raw')
  raw_info = info_of(raw)
  assert raw_info.source.train.storage == 'raw'
  assert len(raw_info.source.train.payload[0]) == S * S * 3
  for a, b in zip(take(train(config, info, start_step=3), 4),
                  take(train(raw, raw_info, start_step=3), 4)):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  for a, b in zip(evaluate(config, info, ten_crop=True), evaluate(raw, raw_info, ten_crop=True)):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_epochs_are_permutations(tiny):
  config, info = tiny
  n = info.num_train_examples
  perms = [pipeline.epoch_permutation(config.seed, e, n).numpy()
           for e in range(3)]
  for perm in perms:
    assert sorted(perm.tolist()) == list(range(n))
  assert not np.array_equal(perms[0], perms[1])


def test_ten_crop_pixel_exact():
  img = np.arange(9 * 9 * 3, dtype=np.float32).reshape(9, 9, 3)
  out = augment.ten_crop(tf.constant(img), 5).numpy()
  assert out.shape == (10, 5, 5, 3)
  ref = [img[2:7, 2:7], img[0:5, 0:5], img[0:5, 4:9], img[4:9, 0:5],
         img[4:9, 4:9]]
  ref = ref + [r[:, ::-1] for r in ref]
  for got, want in zip(out, ref):
    np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(
      augment.center_crop(tf.constant(img), 5).numpy(), img[2:7, 2:7])


@pytest.mark.parametrize('convention', ['paper', 'cuda_convnet2'])
def test_lighting_noise_statistics(convention):
  lam = np.array([5000.0, 900.0, 100.0], np.float32)
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
  vec = q.astype(np.float32)
  scale = augment.lighting_scale(lam, convention)
  _, _, alpha_key, alpha_counter = draws.batch_draws(1, np.zeros(4000), np.arange(4000), 8, 1)
  alpha = batch_alphas(alpha_key, alpha_counter, 0.1)
  transform = data.TrainTransform(np.zeros((1, 1, 3), np.float32), vec, scale, bgr=False)
  # The step's lighting offset alone: one-pixel crops of a zero image minus a zero mean.
  delta = np.asarray(jax.jit(steps.transform_crops, static_argnums=4)(
      np.zeros((4000, 1, 1, 3), np.uint8), np.zeros((4000, 2), np.int32),
      np.zeros(4000, bool), alpha, transform))[:, 0, 0]  # (4000, 3)
  proj = delta @ vec  # coordinates along each principal component
  want = 0.1 * (lam / 255.0 if convention == 'paper' else np.sqrt(lam))
  np.testing.assert_allclose(proj.std(0), want, rtol=0.06)
  assert np.all(np.abs(proj.mean(0)) < 4 * want / np.sqrt(4000))


def test_lighting_off(tiny):
  config, info = tiny
  off = tiny_config(config.data_dir, lighting_std=0.0)
  a = next(train(off, info))
  b = next(train(config, info))
  assert not a['alpha'].any() and b['alpha'].all()
  for key in ('image', 'label', 'offset', 'flip'):
    np.testing.assert_array_equal(a[key], b[key])
  transform = data.train_transform(info, config.input)
  d = (device_inputs(b, transform) - device_inputs(a, transform)).reshape(12, -1, 3)
  # Lighting adds one RGB offset per image, the same at every pixel.
  np.testing.assert_allclose(d, np.broadcast_to(d[:, :1], d.shape), atol=1e-3)
  assert np.abs(d).max() > 0


def test_lighting_draws_are_per_image_and_presentation(tiny):
  """Section 4.1: alpha is drawn once per image each time it is used. Over two epochs every
  image comes twice with two different alphas; within a batch no two images share one; the
  same seed and step give the same alphas again."""
  config, info = tiny
  n, bsz = info.num_train_examples, config.batch_size
  steps_two_epochs = 2 * n // bsz  # 40 examples, batch 12: 6 batches
  batches = take(train(config, info), steps_two_epochs + 1)
  seen = {}
  for s, batch in enumerate(batches[:steps_two_epochs]):
    assert len({tuple(a) for a in batch['alpha']}) == bsz
    for i in range(bsz):
      e, k = divmod(s * bsz + i, n)
      idx = int(pipeline.epoch_permutation(config.seed, e, n)[k])
      seen.setdefault(idx, {})[e] = batch['alpha'][i]
  twice = [alphas for alphas in seen.values() if len(alphas) == 2]
  assert len(twice) >= n - bsz
  assert all(not np.array_equal(alphas[0], alphas[1]) for alphas in twice)
  again = next(train(config, info, start_step=steps_two_epochs))
  np.testing.assert_array_equal(again['alpha'], batches[steps_two_epochs]['alpha'])


def test_deterministic_and_resumable(tiny):
  config, info = tiny
  run1 = take(train(config, info), 8)
  run2 = take(train(config, info), 8)
  resumed = take(train(config, info, start_step=5), 3)
  for a, b in [*zip(run1, run2), *zip(run1[5:], resumed)]:
    assert a.keys() == b.keys() == {'image', 'label', 'offset', 'flip', 'alpha'}
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  other = tiny_config(config.data_dir)
  other.seed = 4
  c = next(train(other, info))
  assert not np.array_equal(c['image'], run1[0]['image'])


def test_two_processes_see_the_same_global_batch(tiny):
  config, info = tiny
  whole = take(train(config, info, start_step=2), 2)
  halves = [take(train(config, info, start_step=2,
                                     process_index=j, process_count=2), 2)
            for j in range(2)]
  for s in range(2):
    for key in whole[s]:
      np.testing.assert_array_equal(
          np.concatenate([halves[0][s][key], halves[1][s][key]]),
          whole[s][key])


@pytest.mark.parametrize('process_count', [1, 2])
def test_padded_eval_counts_every_example_once(tiny, process_count):
  config, info = tiny
  split = info.source.eval
  labels, masks = [], []
  for j in range(process_count):
    batches = list(evaluate(config, info, process_index=j,
                                      process_count=process_count))
    assert len(batches) == -(-N_VAL // 12)  # 22 examples, batch 12 -> 2
    labels.append([b['label'] for b in batches])
    masks.append([b['mask'] for b in batches])
  # Re-assemble the global batches and check the order and the padding.
  lab = np.concatenate([np.concatenate([labels[j][s]
                                        for j in range(process_count)])
                        for s in range(2)])
  mask = np.concatenate([np.concatenate([masks[j][s]
                                         for j in range(process_count)])
                         for s in range(2)])
  assert mask.sum() == N_VAL and mask[:N_VAL].all() and not mask[N_VAL:].any()
  np.testing.assert_array_equal(lab[:N_VAL], split.labels)


def test_eval_center_crop_matches_numpy(tiny):
  config, info = tiny
  images = decoded(info.source.eval).astype(np.float32)
  batch = next(evaluate(config, info))
  m = (S - C) // 2
  ref = (images[:12] - info.stats.mean_image)[:, m:m + C, m:m + C]
  np.testing.assert_allclose(batch['image'], ref, atol=1e-4)


def _tf_data_iterator(stream) -> weakref.ref:
  """A weak reference to the tf.data iterator behind a stream (a generator over
  `as_numpy_iterator()`), found by its public type among what the numpy iterator holds."""
  numpy_iterator = stream.gi_yieldfrom
  held = [v for v in gc.get_referents(numpy_iterator) if isinstance(v, tf.data.Iterator)]
  assert len(held) == 1, held
  return weakref.ref(held[0])


def test_closed_or_exhausted_streams_release_their_tf_data_iterator(tiny):
  """Without waiting for the cycle collector, which may only run at interpreter exit."""
  config, info = tiny
  gc.disable()
  try:
    stream = train(config, info)
    next(stream)
    owned = _tf_data_iterator(stream)
    stream.close()
    assert owned() is None
    stream = evaluate(config, info)
    next(stream)
    owned = _tf_data_iterator(stream)
    assert sum(1 for _ in stream) == -(-N_VAL // config.batch_size) - 1
    assert owned() is None
  finally:
    gc.enable()


def test_data_imports_nothing_of_alexnet_jax_but_errors():
  """alexnet_jax.data is a leaf: of the package it imports only alexnet_jax.errors."""
  code = ('import sys, alexnet_jax.data\n'
          'print(sorted(m for m in sys.modules if m.startswith("alexnet_jax")))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                       env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'}).stdout
  modules = eval(out.strip().splitlines()[-1])  # a printed list of names
  outside = [m for m in modules if m not in ('alexnet_jax', 'alexnet_jax.errors')
             and not m.startswith('alexnet_jax.data')]
  assert not outside, outside
  assert 'alexnet_jax.data.pipeline' in modules  # the check saw the whole package


def test_check_input_config_accepts_every_experiment():
  for name in config_lib.experiment_names():
    config = config_lib.load(name)
    data.check_input_config(config.dataset, config.input)


@pytest.mark.parametrize('field, value, words', [
    ('lighting_convention', 'fancy', "input.lighting_convention='fancy' must be one of 'paper'"),
    ('crop_size', 300, 'input.crop_size=300 is larger than input.image_size=256'),
    ('image_size', 0, 'input.image_size=0 must be a positive integer'),
    ('lighting_std', -0.1, 'input.lighting_std=-0.1 must be a number >= 0'),
    ('jpeg_quality', 101, 'input.jpeg_quality=101 must be an integer in 1..100'),
    ('num_threads', 0, 'input.num_threads=0 must be None (all cores)'),
    ('prepared_dir', '', "input.prepared_dir='' must be None"),
    ('storage', 'png', "input.storage='png' must be one of 'jpeg', 'raw'"),
])
def test_check_input_config_rejects(field, value, words):
  config = config_lib.base_config()
  config.input[field] = value
  with pytest.raises(errors.ConfigError) as e:
    data.check_input_config(config.dataset, config.input)
  assert words in str(e.value)
  assert '\n' not in str(e.value)


def test_raw_storage_needs_a_prepared_folder():
  config = config_lib.base_config()
  config.input.storage, config.input.folder.prepare = 'raw', False
  with pytest.raises(errors.ConfigError, match="input.storage='raw' describes a prepared copy"):
    data.check_input_config('folder', config.input)
  data.check_input_config('shapes', config.input)  # the embedded dataset: decoded in memory


def test_check_input_config_names_every_problem_and_the_dataset():
  config = config_lib.base_config()
  config.input.shapes.train_examples = 0
  config.input.lighting_convention = 'fancy'
  with pytest.raises(errors.ConfigError) as e:
    data.check_input_config('shapes', config.input)
  assert 'input.shapes.train_examples=0' in str(e.value)
  assert 'input.lighting_convention' in str(e.value)
  with pytest.raises(errors.ConfigError, match="Unknown dataset 'cifar'"):
    data.check_input_config('cifar', config.input)
  with config.unlocked():
    del config.input['shapes']
  with pytest.raises(errors.ConfigError, match='no field input.shapes.train_examples'):
    data.check_input_config('shapes', config.input)


def test_bad_lighting_convention_fails_before_the_data_is_read(tmp_path):
  config = tiny_config(tmp_path / 'never', lighting_convention='cuda-convnet2')
  with pytest.raises(errors.ConfigError, match='lighting_convention'):
    info_of(config)
  assert not (tmp_path / 'never').exists()


def test_iterators_check_their_config(tiny):
  config, info = tiny
  bad = tiny_config(config.data_dir, lighting_convention='fancy')
  with pytest.raises(errors.ConfigError, match='lighting_convention'):
    data.train_transform(info, bad.input)
  with pytest.raises(errors.ConfigError, match='crop_size=40 is larger'):
    evaluate(tiny_config(config.data_dir, crop_size=40), info)
  with pytest.raises(errors.ConfigError, match='not divisible by the process count 5'):
    train(config, info, process_count=5)


@pytest.mark.slow
def test_prepare_program_prints_the_statistics(tmp_path):
  """python -m alexnet_jax.tools.prepare: generates the data, computes and prints the statistics."""
  args = ['--config=experiments/demo.py', f'--config.data_dir={tmp_path}',
          '--config.input.shapes.train_examples=24', '--config.input.shapes.eval_examples=12',
          f'--config.input.image_size={S}', f'--config.input.crop_size={C}']
  out = _run_prepare(args + ['--config.input.storage=raw'])
  assert out.returncode == 0, out.stderr
  # The disk budget comes first: 36 images of S x S x 3 bytes, held in memory (the embedded
  # dataset is decoded once when it is loaded).
  assert out.stdout.splitlines()[0] == (
      f"input.storage='raw': 36 images x {S * S * 3:,} bytes = {36 * S * S * 3 / 1e6:.1f} MB, "
      'held in memory (the embedded dataset): nothing prepared on disk.')
  # TFDS announces the generation on stdout first; the report follows.
  first, rest = out.stdout[out.stdout.index('shapes: '):].split('\n', 1)
  assert first.startswith(f'shapes: 12 classes, 24 train / 12 eval examples of {S}x{S} in '
                          f'{tmp_path}{os.sep}')
  stats = stats_lib.load(stats_lib.stats_path(first.rsplit(' in ', 1)[1], S))
  assert stats.num_images == 24 and stats.mean_image.shape == (S, S, 3)
  assert rest.strip() == stats.describe()


@pytest.mark.parametrize('arg, words', [
    ('--config.input.lighting_convention=fancy', 'input.lighting_convention'),
    ('--config.input.no_such_field=1', 'no_such_field'),
])
def test_prepare_program_bad_field_is_one_line(tmp_path, arg, words):
  out = _run_prepare(['--config=demo', f'--config.data_dir={tmp_path}', arg])
  assert out.returncode == 1
  assert 'Traceback' not in out.stderr
  errors_printed = [line for line in out.stderr.splitlines() if line.startswith('error:')]
  assert len(errors_printed) == 1 and words in errors_printed[0]
  assert out.stderr.rstrip().splitlines()[-1] == errors_printed[0]
  assert not os.listdir(tmp_path)  # nothing was generated


def _run_prepare(args):
  return subprocess.run([sys.executable, '-m', 'alexnet_jax.tools.prepare', *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300,
                        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
