"""Tests of the pretrained-weights converter: alexnet_jax.pretrained and alexnet_jax.tools.convert.

Nothing is downloaded: the .caffemodel files (both NetParameter formats), the
mean files and the ONNX file (shaped like the model zoo's bvlcalexnet-12) are
built here with random values of the BVLC shapes, and the converted network is
compared with an independent float64 NumPy forward pass of deploy.prototxt
(tests/convert_reference.py).
"""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys

import convert_reference as ref
import jax
import numpy as np
import pytest

from alexnet_jax import checkpoint
from alexnet_jax import model as model_lib
from alexnet_jax import pretrained
from alexnet_jax.data import synthetic

NUM_IMAGES = 7


def _convert_cli(*args: str) -> subprocess.CompletedProcess:
  """python -m alexnet_jax.tools.convert *args."""
  return subprocess.run([sys.executable, '-m', 'alexnet_jax.tools.convert', *args],
                        capture_output=True, text=True, timeout=600)


def _params_equal(a, b) -> bool:
  return jax.tree.structure(a) == jax.tree.structure(b) and all(
      map(np.array_equal, jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope='module')
def weights():
  return ref.random_weights(seed=0)


@pytest.fixture(scope='module')
def images():
  """Rendered 256x256 scenes, Caffe's test-time preprocessing: centre 227 crop, RGB -> BGR,
  minus the BGR mean, float32 (N, 227, 227, 3). The reference gets them transposed to NCHW."""
  rng = np.random.default_rng(1)
  rgb = np.stack([synthetic.render(i, 256, rng) for i in range(NUM_IMAGES)]).astype(np.float32)
  off = (256 - 227) // 2
  bgr = rgb[:, off:off + 227, off:off + 227, ::-1]
  return np.ascontiguousarray(bgr - np.float32(pretrained.CAFFE_MEAN_BGR), np.float32)


@pytest.fixture(scope='module')
def files(tmp_path_factory, weights):
  """The same weights as a current-format .caffemodel and a 2014 V1 one (legacy 4-D blob
  shapes, some values unpacked, like the published bvlc_alexnet.caffemodel)."""
  folder = tmp_path_factory.mktemp('files')
  blobs = {k: list(v) for k, v in weights.items()}
  (folder / 'v2.caffemodel').write_bytes(ref.caffemodel_bytes(blobs))
  (folder / 'v1.caffemodel').write_bytes(ref.caffemodel_bytes(
      blobs, v1=True, legacy=True, unpacked=('conv1', 'fc8')))
  return {'v2': str(folder / 'v2.caffemodel'), 'v1': str(folder / 'v1.caffemodel')}


@pytest.fixture(scope='module')
def onnx_files(tmp_path_factory, weights):
  """The same weights in the ONNX zoo's graph, and with fc7 stored transposed (transB=0)."""
  onnx = pytest.importorskip('onnx')
  folder = tmp_path_factory.mktemp('onnx')
  files = {}
  for name, transposed in (('bvlcalexnet-12.onnx', False), ('fc7_transposed.onnx', True)):
    model = ref.onnx_model(weights, fc7_transposed=transposed)
    onnx.checker.check_model(model, full_check=True)  # shapes infer: 224 in, 6x6 at pool5
    onnx.save(model, str(folder / name))
    files[name] = str(folder / name)
  return files


@pytest.fixture(scope='module')
def workdir(tmp_path_factory, files):
  path = str(tmp_path_factory.mktemp('converted') / 'bvlc')
  pretrained.write_workdir(path, pretrained.read_caffemodel(files['v2']), source='caffe',
                           weights_path=files['v2'])
  return path


@pytest.fixture(scope='module')
def converted(workdir, images):
  """(model built from the workdir's config.json, its params, softmax on `images`)."""
  config, params = pretrained.load_workdir(workdir)
  model = model_lib.from_config(config.model, 1000, image_size=config.input.crop_size)
  probs = np.asarray(jax.nn.softmax(model.apply({'params': params}, images), axis=-1))
  return model, params, probs


def test_converted_network_matches_caffe_reference(weights, images, converted):
  """The workdir's network gives deploy.prototxt's probabilities to 1e-5 relative."""
  model, params, probs = converted
  want = ref.caffe_forward(weights, images.transpose(0, 3, 1, 2))
  np.testing.assert_allclose(probs, want, rtol=1e-5, atol=0)
  # Not vacuous: the outputs depend on the image and are far from uniform...
  assert np.all(probs.max(axis=1) / probs.min(axis=1) > 50)
  assert len(set(probs.argmax(axis=1))) > 1
  # ...and normalizing each tower's maps alone (the paper's LRN) is measurably different.
  per_tower = model.clone(lrn_across_towers=False).apply({'params': params}, images)
  assert np.max(np.abs(np.asarray(jax.nn.softmax(per_tower)) - want) / want) > 1e-3


def _assert_weights_equal(got, want, what):
  assert list(got) == list(want), what
  for layer, (w, b) in want.items():
    np.testing.assert_array_equal(got[layer][0], w, err_msg=f'{what} {layer}')
    np.testing.assert_array_equal(got[layer][1], b, err_msg=f'{what} {layer}')


def test_caffemodel_formats_read_the_same(files, weights):
  """Current and V1 .caffemodel, packed or not, legacy blob shapes: the original weights."""
  for name in ('v2', 'v1'):
    _assert_weights_equal(pretrained.read_caffemodel(files[name]), weights, name)


def test_onnx_gives_the_caffemodels_network(onnx_files, weights, workdir):
  """The zoo-shaped graph (224 input, Reshape by an initializer, Gemm transB=1, padded pool5)
  and a transB=0 variant read as the original weights; the zoo file's parameters are those of
  the workdir converted from the caffemodel, bit for bit."""
  zoo = pretrained.read_onnx(onnx_files['bvlcalexnet-12.onnx'])
  _assert_weights_equal(zoo, weights, 'zoo')
  _assert_weights_equal(pretrained.read_onnx(onnx_files['fc7_transposed.onnx']), weights,
                        'fc7 transposed')
  assert _params_equal(pretrained.to_params(zoo), checkpoint.load_params(workdir)[1])


def test_layout_is_a_permutation_with_the_model_shapes(weights):
  """to_params fills the model's parameter shapes; from_params inverts it exactly."""
  params = pretrained.to_params(weights)
  model = pretrained.bvlc_model()
  shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(
      (1, 227, 227, 3), np.float32))['params']
  assert jax.tree.map(np.shape, params) == jax.tree.map(lambda s: s.shape, shapes)
  back = pretrained.from_params(params)
  assert all(np.array_equal(back[k][i], weights[k][i]) for k in weights for i in (0, 1))
  # conv2 is grouped: tower 1's kernel is Caffe's group 1 (outputs 128..255), HWIO.
  np.testing.assert_array_equal(params['conv2']['kernel'][1],
                                weights['conv2'][0][128:].transpose(2, 3, 1, 0))
  assert model_lib.conv1_padding(227) == 0


def test_workdir_reads_like_a_run(workdir, weights):
  config = json.load(open(os.path.join(workdir, 'config.json')))
  assert config['model']['towers'] == 2
  assert config['model']['lrn_convention'] == 'cuda_convnet'
  assert config['model']['lrn_k'] == 1.0 and config['model']['lrn_across_towers'] is True
  assert config['input']['crop_size'] == 227
  assert config['input']['channel_order'] == 'bgr' and config['input']['mean'] == 'caffe'
  step, params = checkpoint.load_params(workdir)
  assert step == 0
  assert _params_equal(params, pretrained.to_params(weights))
  classes = json.load(open(os.path.join(workdir, 'class_names.json')))
  assert (classes['wnids'], classes['class_names']) == tuple(map(list, pretrained.class_names()))


def _tfds_file(relative):
  return os.path.join(importlib.util.find_spec('tensorflow_datasets').submodule_search_locations[0],
                      relative)


def test_class_names_are_caffes_and_distinct():
  """The shipped synset_words.txt against two independent lists: TFDS imagenet2012's wnids and
  TFDS siscore's ImageNet words (the same words, its two cranes renamed). Every name is the
  first synonym, the second added where two classes share it; all 1000 distinct, ignoring
  case."""
  wnids, names = pretrained.class_names()
  with open(_tfds_file('datasets/imagenet2012/labels.txt')) as f:
    assert wnids == f.read().split()
  spec = importlib.util.spec_from_file_location('siscore_labels',
                                                _tfds_file('datasets/siscore/labels.py'))
  siscore = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(siscore)
  with open(pretrained.SYNSET_WORDS) as f:
    words = [line.rstrip('\n').split(' ', 1)[1] for line in f]
  differ = [i for i, (a, b) in enumerate(zip(words, siscore.IMAGENET_LABELS_LIST)) if a != b]
  assert differ == [134, 517] and words[134] == words[517] == 'crane'
  assert len({n.lower() for n in names}) == 1000
  assert (wnids[0], names[0]) == ('n01440764', 'tench')
  assert (names[134], names[517]) == ('crane (bird)', 'crane (machine)')
  assert (names[264], names[474]) == ('Cardigan, Cardigan Welsh corgi', 'cardigan')
  assert (names[638], names[639]) == ('maillot', 'maillot, tank suit')
  assert (wnids[999], names[999]) == ('n15075141', 'toilet tissue')


def test_v1_caffemodel_and_mean_through_the_program(tmp_path, files, workdir):
  """The program imports the published format (V1, legacy shapes), keeps the mean image,
  warns that the file is not the published one (both SHA-1s named) and states the
  conventions."""
  mean = np.random.default_rng(2).uniform(0, 255, (3, 256, 256)).astype(np.float32)
  mean_path = tmp_path / 'imagenet_mean.binaryproto'
  mean_path.write_bytes(ref.blob_bytes(mean[None], legacy=True))
  out = str(tmp_path / 'v1')
  result = _convert_cli('--from=caffe', f'--weights={files["v1"]}', f'--mean={mean_path}',
                        f'--workdir={out}')
  assert result.returncode == 0, result.stderr
  digest = hashlib.sha1(open(files['v1'], 'rb').read()).hexdigest()
  assert f'SHA-1 {digest}, not {pretrained.BVLC_SHA1}' in result.stderr
  assert "input.resize='warp'" in result.stderr and "model.lrn_k=1.0" in result.stderr
  assert _params_equal(checkpoint.load_params(out)[1], checkpoint.load_params(workdir)[1])
  np.testing.assert_array_equal(np.load(os.path.join(out, 'caffe_mean.npy')),
                                mean.transpose(1, 2, 0))
  assert json.load(open(os.path.join(out, 'config.json')))['input']['mean_file'] == (
      'caffe_mean.npy')


@pytest.fixture(scope='module')
def mean_files(tmp_path_factory):
  """One BGR mean image in each format read: Caffe's imagenet_mean.binaryproto (legacy
  1x3x256x256 and with a BlobShape), ilsvrc_2012_mean.npy's float64 (3, 256, 256), and an
  (S, S, 3) .npy; and files that are not a mean."""
  folder = tmp_path_factory.mktemp('means')
  mean = np.random.default_rng(5).uniform(0, 255, (3, 256, 256)).astype(np.float32)
  (folder / 'imagenet_mean.binaryproto').write_bytes(ref.blob_bytes(mean[None], legacy=True))
  (folder / 'shape.binaryproto').write_bytes(ref.blob_bytes(mean[None]))
  np.save(folder / 'ilsvrc_2012_mean.npy', mean.astype(np.float64))
  np.save(folder / 'hwc.npy', mean.transpose(1, 2, 0))
  np.save(folder / 'small.npy', mean[:, :200, :200])
  (folder / 'notes.binaryproto').write_text('mean: 104, 117, 123\n')
  raw = (folder / 'imagenet_mean.binaryproto').read_bytes()
  (folder / 'truncated.binaryproto').write_bytes(raw[:len(raw) // 2])
  return mean, folder


@pytest.mark.parametrize('name', ['imagenet_mean.binaryproto', 'shape.binaryproto',
                                  'ilsvrc_2012_mean.npy', 'hwc.npy'])
def test_each_mean_format_reads_as_caffes_mean(mean_files, name):
  mean, folder = mean_files
  got = pretrained.read_mean(str(folder / name))
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, mean)


@pytest.mark.parametrize('name', ['small.npy', 'notes.binaryproto', 'truncated.binaryproto'])
def test_a_file_that_is_not_a_mean_names_the_formats_read(mean_files, name):
  _, folder = mean_files
  with pytest.raises(pretrained.PretrainedError) as info:
    pretrained.read_mean(str(folder / name))
  message = str(info.value)
  assert name in message and '\n' not in message and 'Download it again' not in message
  assert '.binaryproto' in message and 'ilsvrc_2012_mean.npy' in message


def test_the_published_file_gets_no_warning(files, monkeypatch):
  assert files['v2'] in pretrained.sha1_warning(files['v2'])
  digest = hashlib.sha1(open(files['v2'], 'rb').read()).hexdigest()
  monkeypatch.setattr(pretrained, 'BVLC_SHA1', digest)
  assert pretrained.sha1_warning(files['v2']) is None


@pytest.mark.slow
def test_npz_round_trip(tmp_path, workdir, weights):
  """import -> --to=npz (Caffe/PyTorch grouped layout) -> --from=npz gives identical params."""
  npz = str(tmp_path / 'alexnet.npz')
  result = _convert_cli('--to=npz', f'--workdir={workdir}', f'--out={npz}')
  assert result.returncode == 0, result.stderr
  with np.load(npz) as f:
    assert sorted(f) == sorted(f'{k}.{p}' for k in weights for p in ('weight', 'bias'))
    assert f['conv2.weight'].shape == (256, 48, 5, 5) and f['fc6.weight'].shape == (4096, 9216)
    for k, (w, b) in weights.items():
      np.testing.assert_array_equal(f[f'{k}.weight'], w)
      np.testing.assert_array_equal(f[f'{k}.bias'], b)
  again = str(tmp_path / 'again')
  result = _convert_cli('--from=npz', f'--weights={npz}', f'--workdir={again}')
  assert result.returncode == 0, result.stderr
  assert _params_equal(checkpoint.load_params(again)[1], checkpoint.load_params(workdir)[1])


_RUN_EXPORTED = r'''
import sys
import jax
import numpy as np
with open(sys.argv[1], 'rb') as f:
  exported = jax.export.deserialize(bytearray(f.read()))
images = np.load(sys.argv[2])
np.savez(sys.argv[3], **{str(n): np.asarray(exported.call(images[:n])) for n in (1, 7)})
assert not [m for m in sys.modules if m.split('.')[0] == 'alexnet_jax'], 'imported alexnet_jax'
'''


@pytest.mark.slow
def test_stablehlo_export_runs_with_plain_jax(tmp_path, workdir, images, converted):
  """--to=stablehlo: a fresh process that never imports alexnet_jax gets the model's
  probabilities for batch sizes 1 and 7 (one export: the batch is symbolic)."""
  exported = str(tmp_path / 'alexnet.jax_export')
  result = _convert_cli('--to=stablehlo', f'--workdir={workdir}', f'--out={exported}',
                        '--platforms=cpu')
  assert result.returncode == 0, result.stderr
  np.save(tmp_path / 'images.npy', images)
  # Without the session's compilation cache: the export holds the weights as constants, and
  # caching its two executables would write 450 MB.
  env = {k: v for k, v in os.environ.items() if k != 'JAX_COMPILATION_CACHE_DIR'}
  result = subprocess.run([sys.executable, '-c', _RUN_EXPORTED, exported,
                           str(tmp_path / 'images.npy'), str(tmp_path / 'out.npz')],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr
  probs = converted[2]
  with np.load(tmp_path / 'out.npz') as out:
    assert out['1'].shape == (1, 1000) and out['7'].shape == (7, 1000)
    np.testing.assert_allclose(out['7'], probs, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(out['1'], probs[:1], rtol=1e-5, atol=1e-9)


# ------------------------------------------------------------------ bad input

def _tiny(shape_w=(1, 1), shape_b=(1,)):
  return [np.zeros(shape_w, np.float32), np.zeros(shape_b, np.float32)]


def _bad_files(folder, weights, files):
  """{case: (format, path, words the error must contain)}."""
  blobs = {k: list(v) for k, v in weights.items()}
  out = {}
  raw = open(files['v2'], 'rb').read()
  (folder / 'truncated.caffemodel').write_bytes(raw[:len(raw) * 3 // 5])
  out['truncated'] = ('caffe', 'truncated.caffemodel', ['truncated'])
  vgg = [('conv1_1', 'Convolution'), ('relu1_1', 'ReLU'), ('conv1_2', 'Convolution'),
         ('pool1', 'Pooling'), ('fc6', 'InnerProduct'), ('fc7', 'InnerProduct'),
         ('fc8', 'InnerProduct')]
  vgg_blobs = {'conv1_1': _tiny((64, 3, 3, 3), (64,)), 'conv1_2': _tiny((64, 64, 3, 3), (64,)),
               'fc6': _tiny((4096, 25088), (4096,)), 'fc7': _tiny(), 'fc8': _tiny()}
  (folder / 'vgg.caffemodel').write_bytes(ref.caffemodel_bytes(vgg_blobs, layers=vgg))
  out['vgg'] = ('caffe', 'vgg.caffemodel', ['no layer conv1, conv2', 'conv1_1 (64, 3, 3, 3)'])
  ungrouped = {k: _tiny() for k in weights}
  ungrouped['conv1'] = blobs['conv1']
  ungrouped['conv2'] = _tiny((256, 96, 5, 5), (256,))
  (folder / 'ungrouped.caffemodel').write_bytes(ref.caffemodel_bytes(ungrouped))
  out['ungrouped'] = ('caffe', 'ungrouped.caffemodel',
                      ['layer conv2', '(256, 96, 5, 5)', 'expected (256, 48, 5, 5)'])
  caffenet = list(ref.BVLC_LAYERS)  # bvlc_reference_caffenet: pool, then LRN
  caffenet[2], caffenet[3] = caffenet[3], caffenet[2]
  (folder / 'caffenet.caffemodel').write_bytes(ref.caffemodel_bytes(blobs, layers=caffenet))
  out['caffenet'] = ('caffe', 'caffenet.caffemodel', ['layer order', 'conv relu pool lrn'])
  try:
    import onnx
    onnx.save(ref.onnx_model({k: _tiny((4, 4), (4,)) if k.startswith('fc') else v
                              for k, v in weights.items()}, fc_as_matmul=True),
              str(folder / 'matmul.onnx'))
    out['onnx_matmul'] = ('onnx', 'matmul.onnx', ['5 Conv then 3 Gemm', 'MatMul'])
  except ImportError:  # the onnx extra is not installed
    pass
  np.savez(folder / 'fc8_10.npz', **{f'{k}.{p}': a for k, (w, b) in weights.items()
                                     for p, a in (('weight', w[:10] if k == 'fc8' else w),
                                                  ('bias', b[:10] if k == 'fc8' else b))})
  out['npz_classes'] = ('npz', 'fc8_10.npz', ['layer fc8', '(10, 4096)', '(1000, 4096)'])
  return out


@pytest.fixture(scope='module')
def bad_files(tmp_path_factory, weights, files):
  folder = tmp_path_factory.mktemp('bad')
  return {k: (fmt, str(folder / name), words)
          for k, (fmt, name, words) in _bad_files(folder, weights, files).items()}


@pytest.mark.parametrize('case', ['truncated', 'vgg', 'ungrouped', 'caffenet', 'onnx_matmul',
                                  'npz_classes'])
def test_bad_input_names_the_mismatch_and_writes_nothing(tmp_path, bad_files, case):
  if case not in bad_files:
    pytest.skip('needs the onnx extra')
  fmt, path, words = bad_files[case]
  read = {'caffe': pretrained.read_caffemodel, 'onnx': pretrained.read_onnx,
          'npz': pretrained.read_npz}[fmt]
  out = str(tmp_path / 'never')
  with pytest.raises(pretrained.PretrainedError) as info:
    pretrained.write_workdir(out, read(path))
  message = str(info.value)
  for word in words:
    assert word in message, message
  assert '\n' not in message
  assert not os.path.exists(out)


def test_bad_input_through_the_program(tmp_path, bad_files):
  """One paragraph on stderr, exit status 1, no workdir."""
  out = str(tmp_path / 'never')
  result = _convert_cli('--from=caffe', f'--weights={bad_files["ungrouped"][1]}',
                        f'--workdir={out}')
  assert result.returncode == 1
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and 'conv2' in errors[0] and 'Traceback' not in result.stderr
  assert not os.path.exists(out)


def test_missing_onnx_package_names_the_extra(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, 'onnx', None)
  with pytest.raises(pretrained.PretrainedError, match=r"alexnet_jax\[onnx\]"):
    pretrained.read_onnx(str(tmp_path / 'bvlcalexnet-12.onnx'))


def test_existing_run_is_not_overwritten(workdir, weights):
  before = open(os.path.join(workdir, 'config.json')).read()
  with pytest.raises(pretrained.PretrainedError, match='already holds a run'):
    pretrained.write_workdir(workdir, weights)
  assert open(os.path.join(workdir, 'config.json')).read() == before
