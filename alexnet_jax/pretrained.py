"""The BVLC AlexNet's published weights in this project's two-tower layout, and back.

BVLC AlexNet (BVLC/caffe models/bvlc_alexnet, deploy.prototxt) is the paper's
network as Caffe trained it: 227x227 BGR input minus the ILSVRC-2012 mean,
conv1 11x11/4 with no padding, ReLU, LRN (local_size 5, alpha 1e-4, beta 0.75,
k 1, alpha divided by local_size), 3/2 max-pooling, conv2 5x5 pad 2 group 2,
conv3 3x3 pad 1 over both groups, conv4 and conv5 3x3 pad 1 group 2, pool5,
fc6, fc7 (ReLU, dropout) and fc8, softmax. Caffe's `group: 2` is the paper's
two towers: group g of a layer is tower g, and every concatenation puts tower
0's channels first, as `AlexNet._cross_towers` does. One difference: Caffe's
norm1 and norm2 normalize the whole blob, so the LRN windows of maps 46-49
(norm1) and 126-129 (norm2) span both groups, where each of the paper's GPUs
normalized its own maps (model field `lrn_across_towers`).

The framework-neutral layout ("BVLC layout", what `read_*` return and
`write_npz` writes) is Caffe's: {layer: (weight, bias)} float32 with

  conv weight (out, in // groups, kh, kw)   groups 1, 2, 1, 2, 2 for conv1..conv5
  fc weight   (out, in)                     fc6's input flattened in (C, H, W) order

which PyTorch's nn.Conv2d(groups=2) / nn.Linear and Caffe read as they are
(nn.LocalResponseNorm(5, 1e-4, 0.75, k=1) is Caffe's LRN).

Readers: `read_caffemodel` (NetParameter in the current `layer` format and
the 2014 V1 `layers` format, which the published bvlc_alexnet.caffemodel
uses), `read_onnx` (the ONNX model zoo's bvlcalexnet-12.onnx; needs the
`onnx` extra), `read_npz`, and `read_mean` for Caffe's mean image
(data/ilsvrc12/imagenet_mean.binaryproto or python/caffe/imagenet/
ilsvrc_2012_mean.npy). `write_workdir` turns weights into a workdir the other
commands read like a trained run, evaluated and used with BVLC's protocol
(`bvlc_config`); `export_stablehlo` writes a self-contained inference function.
"""

import functools
import hashlib
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from alexnet_jax import checkpoint
from alexnet_jax import config as config_lib
from alexnet_jax import errors
from alexnet_jax import model as model_lib
from alexnet_jax import rundir

Weights = dict[str, tuple[np.ndarray, np.ndarray]]

# deploy.prototxt: (weight, bias) shapes, Caffe layout.
BVLC_SHAPES = {
    'conv1': ((96, 3, 11, 11), (96,)),
    'conv2': ((256, 48, 5, 5), (256,)),
    'conv3': ((384, 256, 3, 3), (384,)),
    'conv4': ((384, 192, 3, 3), (384,)),
    'conv5': ((256, 192, 3, 3), (256,)),
    'fc6': ((4096, 9216), (4096,)),
    'fc7': ((4096, 4096), (4096,)),
    'fc8': ((1000, 4096), (1000,)),
}
GROUPS = {'conv1': 1, 'conv2': 2, 'conv3': 1, 'conv4': 2, 'conv5': 2}
POOL5 = (256, 6, 6)  # (C, H, W) of fc6's input
TOWERS = 2
IMAGE_SIZE = 227
# The layer sequence of deploy.prototxt, data/dropout/softmax/loss layers left out.
# CaffeNet (bvlc_reference_caffenet) has the same shapes but pools before LRN.
LAYER_SEQUENCE = tuple('conv relu lrn pool conv relu lrn pool conv relu conv relu conv relu pool '
                       'fc relu fc relu fc'.split())
# norm1, norm2: (local_size, alpha, beta, k).
BVLC_LRN = (5, 1e-4, 0.75, 1.0)
# BGR means of Caffe's ILSVRC-2012 mean image (BVLC/caffe python/caffe/imagenet/
# ilsvrc_2012_mean.npy averaged over pixels): Caffe's classification examples.
CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
# The published bvlc_alexnet.caffemodel's SHA-1 (BVLC/caffe models/bvlc_alexnet/readme.md).
BVLC_SHA1 = '9116a64c0fbe4459d18f4bb6b56d647b63920377'
# Caffe's class list in label order (data/ilsvrc12/synset_words.txt), shipped in the package.
SYNSET_WORDS = os.path.join(os.path.dirname(__file__), 'synset_words.txt')
# The two classes whose synset_words entries are the same single word ('crane'), told apart
# as in tensorflow_datasets/datasets/siscore/labels.py (IMAGENET_LABELS_LIST, 134 and 517).
SAME_WORDS = {'n02012849': 'crane (bird)', 'n03126707': 'crane (machine)'}

_CAFFE_TYPES = {'Convolution': 'conv', 'ReLU': 'relu', 'LRN': 'lrn', 'Pooling': 'pool',
                'InnerProduct': 'fc'}
# V1LayerParameter.LayerType values of the same layers.
_CAFFE_V1_TYPES = {4: 'conv', 18: 'relu', 15: 'lrn', 17: 'pool', 14: 'fc'}
_ONNX_TYPES = {'Conv': 'conv', 'Relu': 'relu', 'LRN': 'lrn', 'MaxPool': 'pool', 'Gemm': 'fc',
               'AveragePool': 'average-pool', 'MatMul': 'matmul'}


class PretrainedError(errors.AlexNetError, ValueError):
  """A weights file cannot be read or is not the BVLC AlexNet; nothing was written."""


# ------------------------------------------------------------------ Caffe files

@functools.cache
def caffe_messages() -> dict[str, type]:
  """The caffe.proto messages a .caffemodel / .binaryproto needs, built at run time.

  Field numbers from BVLC/caffe src/caffe/proto/caffe.proto; only the fields
  read here are declared (protobuf skips the others). V1LayerParameter.type
  is declared int32 (wire-compatible with its enum). Returns {name: class}.
  """
  from google.protobuf import descriptor_pb2
  from google.protobuf import descriptor_pool
  from google.protobuf import message_factory
  F = descriptor_pb2.FieldDescriptorProto
  types = {'int32': F.TYPE_INT32, 'uint32': F.TYPE_UINT32, 'int64': F.TYPE_INT64,
           'float': F.TYPE_FLOAT, 'double': F.TYPE_DOUBLE, 'string': F.TYPE_STRING,
           'bytes': F.TYPE_BYTES}
  schema = {  # message: [(field, number, type, repeated, default)]
      'BlobShape': [('dim', 1, 'int64', True, None)],
      'BlobProto': [('shape', 7, 'BlobShape', False, None), ('data', 5, 'float', True, None),
                    ('double_data', 8, 'double', True, None), ('num', 1, 'int32', False, None),
                    ('channels', 2, 'int32', False, None), ('height', 3, 'int32', False, None),
                    ('width', 4, 'int32', False, None)],
      'LRNParameter': [('local_size', 1, 'uint32', False, '5'), ('alpha', 2, 'float', False, '1'),
                       ('beta', 3, 'float', False, '0.75'), ('k', 5, 'float', False, '1')],
      'LayerParameter': [('name', 1, 'string', False, None), ('type', 2, 'string', False, None),
                         ('blobs', 7, 'BlobProto', True, None),
                         ('lrn_param', 118, 'LRNParameter', False, None)],
      'V1LayerParameter': [('layer', 1, 'bytes', False, None), ('name', 4, 'string', False, None),
                           ('type', 5, 'int32', False, None), ('blobs', 6, 'BlobProto', True, None),
                           ('lrn_param', 18, 'LRNParameter', False, None)],
      'NetParameter': [('name', 1, 'string', False, None),
                       ('layers', 2, 'V1LayerParameter', True, None),
                       ('layer', 100, 'LayerParameter', True, None)],
  }
  file = descriptor_pb2.FileDescriptorProto(name='alexnet_jax_caffe.proto', package='caffe',
                                            syntax='proto2')
  for message, fields in schema.items():
    m = file.message_type.add(name=message)
    for name, number, kind, repeated, default in fields:
      f = m.field.add(name=name, number=number,
                      label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
      if kind in types:
        f.type = types[kind]
      else:
        f.type, f.type_name = F.TYPE_MESSAGE, f'.caffe.{kind}'
      if default is not None:
        f.default_value = default
      if repeated and kind in ('int64', 'float', 'double'):
        f.options.packed = True
  pool = descriptor_pool.DescriptorPool()
  pool.Add(file)
  return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f'caffe.{name}'))
          for name in schema}


def _check_file(path: str, what: str) -> None:
  if not os.path.isfile(path):
    raise PretrainedError(f'The {what} {path!r} does not exist or is not a file.')


def _parse(path: str, message: str, what: str):
  _check_file(path, what)
  proto = caffe_messages()[message]()
  with open(path, 'rb') as f:
    raw = f.read()
  try:
    proto.ParseFromString(raw)
  except Exception as e:  # protobuf's DecodeError and friends
    raise PretrainedError(
        f'{path} ({len(raw)} bytes) cannot be parsed as a Caffe {message} ({e}): the file is '
        f'truncated or is not a {what}. Download it again.') from None
  return proto


def _blob(blob, where: str) -> np.ndarray:
  """A BlobProto's values with its shape: `shape.dim`, else the legacy (num, channels, height,
  width)."""
  shape = (tuple(blob.shape.dim) if blob.HasField('shape')
           else (blob.num, blob.channels, blob.height, blob.width))
  values = np.asarray(blob.data if len(blob.data) else blob.double_data, np.float32)
  if values.size != int(np.prod(shape)):
    raise PretrainedError(
        f'{where} holds {values.size} values but its shape {shape} needs {int(np.prod(shape))}: '
        'the file is truncated or corrupt. Download it again.')
  return values.reshape(shape)


def read_caffemodel(path: str) -> Weights:
  """The BVLC AlexNet weights of a .caffemodel (NetParameter, `layer` or V1 `layers`).

  Returns {layer: (weight, bias)} in the BVLC layout (module docstring), after
  checking every layer's name and shape, the layer order (when the file
  records the parameter-free layers) and the LRN settings.
  """
  net = _parse(path, 'NetParameter', '.caffemodel (Caffe NetParameter)')
  if any(layer.HasField('layer') for layer in net.layers):
    raise PretrainedError(
        f'{path} is in Caffe\'s pre-2014 V0 format; convert it with Caffe\'s '
        'upgrade_net_proto_binary tool first.')
  layers, sequence, lrns = {}, [], []
  for layer in list(net.layers) + list(net.layer):
    is_v1 = layer.DESCRIPTOR.name == 'V1LayerParameter'
    kind = _CAFFE_V1_TYPES.get(layer.type) if is_v1 else _CAFFE_TYPES.get(layer.type)
    if kind:
      sequence.append(kind)
    if kind == 'lrn':
      p = layer.lrn_param
      lrns.append((layer.name, (p.local_size, p.alpha, p.beta, p.k)))
    if len(layer.blobs) and layer.name not in layers:
      layers[layer.name] = [_blob(b, f'Blob {i} of layer {layer.name!r} in {path}')
                            for i, b in enumerate(layer.blobs)]
  return _validate(layers, sequence, lrns, path)


MEAN_FORMATS = ('a Caffe BlobProto .binaryproto of shape (1, 3, S, S), such as '
                'data/ilsvrc12/imagenet_mean.binaryproto of get_ilsvrc_aux.sh, or a NumPy .npy '
                'of shape (3, S, S) or (S, S, 3), such as python/caffe/imagenet/'
                'ilsvrc_2012_mean.npy; BGR, S >= 227')


def read_mean(path: str) -> np.ndarray:
  """Caffe's mean image as float32 (3, S, S), BGR: a .binaryproto or a .npy.

  Caffe's ILSVRC-2012 mean comes as data/ilsvrc12/imagenet_mean.binaryproto
  (a BlobProto, 1 x 3 x 256 x 256) and as python/caffe/imagenet/
  ilsvrc_2012_mean.npy (float64 (3, 256, 256)); both are BGR, and
  CAFFE_MEAN_BGR is the latter's per-channel average. A .npy may also be
  (S, S, 3); the channels are taken as BGR either way.

  Raises:
    PretrainedError: the file is missing, in neither format, or not a square mean of
      side >= 227; the message names the formats read (MEAN_FORMATS).
  """
  _check_file(path, 'mean file')
  with open(path, 'rb') as f:
    is_npy = f.read(6) == b'\x93NUMPY'
  if is_npy:
    try:
      mean = np.load(path, allow_pickle=False)
    except ValueError as e:
      raise PretrainedError(f'{path} cannot be read as a NumPy .npy file ({e}). The mean is '
                            f'read from {MEAN_FORMATS}.') from None
    if mean.ndim == 3 and mean.shape[-1] == 3 and mean.shape[0] != 3:
      mean = mean.transpose(2, 0, 1)
  else:
    try:
      mean = _blob(_parse(path, 'BlobProto', 'Caffe mean file'), f'The mean in {path}')
    except PretrainedError:
      raise PretrainedError(f'{path} is not a mean file this program reads: the mean is read '
                            f'from {MEAN_FORMATS}.') from None
    mean = mean.reshape(mean.shape[1:]) if mean.ndim == 4 and mean.shape[0] == 1 else mean
  if (mean.ndim != 3 or mean.shape[0] != 3 or mean.shape[1] != mean.shape[2]
      or mean.shape[1] < IMAGE_SIZE or not np.issubdtype(mean.dtype, np.number)):
    raise PretrainedError(f'The mean in {path} has shape {mean.shape}; the mean is read from '
                          f'{MEAN_FORMATS}.')
  return np.ascontiguousarray(mean, np.float32)


def sha1_warning(path: str) -> str | None:
  """None when `path` is the published bvlc_alexnet.caffemodel (its SHA-1 is BVLC_SHA1),
  else a warning that names both SHA-1s."""
  digest = hashlib.sha1()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 24), b''):
      digest.update(chunk)
  if digest.hexdigest() == BVLC_SHA1:
    return None
  return (f'{path} has SHA-1 {digest.hexdigest()}, not {BVLC_SHA1}, the published '
          'bvlc_alexnet.caffemodel\'s (models/bvlc_alexnet/readme.md): it is another file '
          '(a fine-tuned copy, or a damaged download). Converted all the same; download it '
          'again if you meant the published network.')


# ------------------------------------------------------------------ ONNX, npz

def _onnx():
  try:
    import onnx
    import onnx.numpy_helper
  except ImportError:
    raise PretrainedError(
        'Reading ONNX files needs the onnx package, which is an optional extra: '
        "pip install 'alexnet_jax[onnx]' (or pip install onnx==1.23.2).") from None
  return onnx


def read_onnx(path: str) -> Weights:
  """The BVLC AlexNet weights of an ONNX file (the model zoo's bvlcalexnet-12.onnx).

  The graph's Conv and Gemm nodes, in order, are conv1..conv5 and fc6..fc8;
  their weight and bias inputs are initializers (or Constant nodes). Returns
  the BVLC layout. The zoo's graph takes 224x224 input and pads its pooling
  (Caffe2's port of Caffe's ceil-mode pooling); the weights are the same, and
  the converted network takes Caffe's 227x227 input.
  """
  onnx = _onnx()
  _check_file(path, 'ONNX file')
  try:
    graph = onnx.load(path).graph
  except Exception as e:  # DecodeError, missing external data, ...
    raise PretrainedError(f'{path} cannot be read as an ONNX model ({type(e).__name__}: {e}): '
                          'the file is truncated or is not an .onnx file.') from None
  values = {t.name: t for t in graph.initializer}
  for node in graph.node:
    if node.op_type == 'Constant' and node.attribute and node.attribute[0].name == 'value':
      values[node.output[0]] = node.attribute[0].t
  nodes = [n for n in graph.node if n.op_type in ('Conv', 'Gemm', 'MatMul')]
  found = [n.op_type for n in nodes]
  if found != ['Conv'] * 5 + ['Gemm'] * 3:
    raise PretrainedError(
        f'{path} does not hold the BVLC AlexNet: its graph should have 5 Conv then 3 Gemm nodes '
        f'(conv1..conv5, fc6..fc8), but has {" ".join(found) or "none"}.')
  layers = {}
  for name, node in zip(BVLC_SHAPES, nodes):
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    inputs = [values.get(i) for i in node.input[1:3]]
    if len(inputs) < 2 or any(t is None for t in inputs):
      raise PretrainedError(f'{path}: the {node.op_type} node {node.name!r} ({name}) takes its '
                            'weights or bias from another node, not from an initializer.')
    w, b = (onnx.numpy_helper.to_array(t).astype(np.float32) for t in inputs)
    if node.op_type == 'Conv' and attrs.get('group', 1) != GROUPS[name]:
      raise PretrainedError(f'{path}: the Conv node {node.name!r} ({name}) has group='
                            f'{attrs.get("group", 1)}; BVLC AlexNet\'s {name} has '
                            f'group={GROUPS[name]}.')
    if node.op_type == 'Gemm':  # y = alpha * x @ op(B) + beta * C
      if attrs.get('transA', 0):
        raise PretrainedError(f'{path}: the Gemm node {node.name!r} ({name}) has transA=1.')
      w = (w if attrs.get('transB', 0) else w.T) * np.float32(attrs.get('alpha', 1.0))
      b = b * np.float32(attrs.get('beta', 1.0))
    layers[name] = [w, b]
  sequence = [_ONNX_TYPES[n.op_type] for n in graph.node if n.op_type in _ONNX_TYPES]
  lrns = []
  for node in graph.node:
    if node.op_type == 'LRN':
      a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
      lrns.append((node.name, (a.get('size'), a.get('alpha', 1e-4), a.get('beta', 0.75),
                               a.get('bias', 1.0))))
  return _validate(layers, sequence, lrns, path)


def write_npz(path: str, weights: Weights) -> None:
  """Writes the BVLC layout as `<layer>.weight`, `<layer>.bias` float32 arrays."""
  arrays = {}
  for name, (w, b) in weights.items():
    arrays[f'{name}.weight'], arrays[f'{name}.bias'] = w, b
  rundir.atomic_write(path, lambda f: np.savez(f, **arrays), binary=True)


def read_npz(path: str) -> Weights:
  """Weights written by `write_npz` (or by hand in that layout), checked like the others."""
  _check_file(path, '.npz file')
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = dict(f)
  except Exception as e:  # zipfile.BadZipFile, ValueError, ...
    raise PretrainedError(f'{path} cannot be read as an .npz file ({type(e).__name__}: {e}).')
  layers = {}
  for key, value in arrays.items():
    name, _, part = key.rpartition('.')
    if part in ('weight', 'bias'):
      layers.setdefault(name, [None, None])[part == 'bias'] = value
    else:
      layers[key] = [value]
  return _validate(layers, None, [], path)


# ------------------------------------------------------------------ checks, layouts

def _fit(array: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
  """`array` with `shape`, or None. Legacy 4-D blobs pad shapes with leading 1s
  ((1, 1, 4096, 9216) for fc6's weights, (1, 1, 1, 96) for a bias): they fit too."""
  if array is None:
    return None
  def squeeze(s):
    return tuple(s)[next((i for i, d in enumerate(s) if d != 1), len(s)):]
  if tuple(array.shape) != shape and squeeze(array.shape) != squeeze(shape):
    return None
  return np.ascontiguousarray(array.reshape(shape), np.float32)


def _validate(layers: dict[str, list], sequence: list[str] | None,
              lrns: list[tuple[str, tuple]], source: str) -> Weights:
  """The BVLC layout of `layers` ({name: [weight, bias]} as read), or PretrainedError naming
  the first mismatch: a missing or extra layer, a shape, the layer order or an LRN setting."""
  found = '; '.join(f'{n} {" ".join(str(tuple(np.shape(a))) for a in blobs)}'
                    for n, blobs in layers.items())
  extra = [n for n in layers if n not in BVLC_SHAPES]
  missing = [n for n in BVLC_SHAPES if n not in layers]
  if missing or extra:
    problems = ([f'no layer {", ".join(missing)}'] if missing else []) + (
        [f'other layers with weights ({", ".join(extra)})'] if extra else [])
    raise PretrainedError(
        f'{source} does not hold the BVLC AlexNet: it has {" and ".join(problems)}; expected '
        f'weights for exactly {", ".join(BVLC_SHAPES)}. Found: {found or "no weights"}.')
  weights = {}
  for name, shapes in BVLC_SHAPES.items():
    blobs = layers[name]
    if len(blobs) != 2:
      raise PretrainedError(f'{source}: layer {name} has {len(blobs)} parameter arrays; '
                            'BVLC AlexNet\'s has 2 (weights and bias).')
    fitted = [_fit(a, s) for a, s in zip(blobs, shapes)]
    for what, array, got, shape in zip(('weights', 'bias'), blobs, fitted, shapes):
      if got is None:
        found_shape = 'none' if array is None else tuple(np.shape(array))
        raise PretrainedError(
            f'{source} does not hold the BVLC AlexNet: layer {name} has {what} of shape '
            f'{found_shape}, expected {shape} (BVLC/caffe models/bvlc_alexnet/deploy.prototxt).')
      if not np.all(np.isfinite(got)):
        raise PretrainedError(f'{source}: layer {name}\'s {what} hold NaN or infinite values.')
    weights[name] = tuple(fitted)
  if sequence is not None and ({'relu', 'lrn', 'pool'} & set(sequence)):
    if tuple(sequence) != LAYER_SEQUENCE:
      raise PretrainedError(
          f'{source} has the BVLC AlexNet\'s shapes but not its layer order: expected '
          f'{" ".join(LAYER_SEQUENCE)}, found {" ".join(sequence)} (CaffeNet, for one, pools '
          'before LRN; this program converts only the BVLC AlexNet).')
  for name, values in lrns:
    if values[0] != BVLC_LRN[0] or not np.allclose(values[1:], BVLC_LRN[1:], rtol=1e-6):
      raise PretrainedError(
          f'{source}: the LRN layer {name!r} has (size, alpha, beta, k) = {values}; the BVLC '
          f'AlexNet\'s are {BVLC_LRN}.')
  return weights


def to_params(weights: Weights) -> dict[str, Any]:
  """The BVLC layout -> AlexNet(towers=2) params (NumPy float32), exactly (a permutation).

  Tower t of every layer holds Caffe's output channels/units t*n..(t+1)*n-1
  (n = out / 2); for conv2, conv4, conv5 these are Caffe's group t, which
  reads the input channels of tower t, as the towers do. conv1, conv3 and the
  fc layers read every input channel, tower 0's first: the same order Caffe's
  blobs have. Only fc6's input order differs: Caffe flattens pool5 as
  (C, H, W), the model as (H, W, C).
  """
  params = {}
  for name, (w, b) in weights.items():
    out = w.shape[0] // TOWERS
    if name.startswith('conv'):  # (out, cin, kh, kw) -> (towers, kh, kw, cin, out / towers)
      kernel = w.reshape(TOWERS, out, *w.shape[1:]).transpose(0, 3, 4, 2, 1)
    else:
      if name == 'fc6':  # input index c*36 + h*6 + w -> h*6*256 + w*256 + c
        w = w.reshape(-1, *POOL5).transpose(0, 2, 3, 1).reshape(w.shape)
      kernel = w.reshape(TOWERS, out, w.shape[1]).transpose(0, 2, 1)  # (towers, in, out / t)
    params[name] = {'kernel': np.ascontiguousarray(kernel, np.float32),
                    'bias': np.ascontiguousarray(b.reshape(TOWERS, out), np.float32)}
  return params


def from_params(params: dict[str, Any], source: str = 'The parameters') -> Weights:
  """AlexNet(towers=2) params -> the BVLC layout, the inverse of `to_params`.

  source: what the params are, for the error raised when they are not the BVLC shapes.
  """
  if sorted(params) != sorted(BVLC_SHAPES):
    raise PretrainedError(f'{source} does not hold the BVLC AlexNet: its layers are '
                          f'{", ".join(sorted(params))}, expected {", ".join(BVLC_SHAPES)}.')
  weights = {}
  for name in BVLC_SHAPES:
    kernel, bias = (np.asarray(params[name][k], np.float32) for k in ('kernel', 'bias'))
    if name.startswith('conv'):
      t, kh, kw, cin, out = kernel.shape
      w = kernel.transpose(0, 4, 3, 1, 2).reshape(t * out, cin, kh, kw)
    else:
      t, din, out = kernel.shape
      w = kernel.transpose(0, 2, 1).reshape(t * out, din)
      if name == 'fc6' and din == int(np.prod(POOL5)):
        h, wd, c = POOL5[1], POOL5[2], POOL5[0]
        w = w.reshape(-1, h, wd, c).transpose(0, 3, 1, 2).reshape(t * out, din)
    weights[name] = (np.ascontiguousarray(w), bias.reshape(-1))
  return _validate({n: list(wb) for n, wb in weights.items()}, None, [], source)


# ------------------------------------------------------------------ workdir

def bvlc_config() -> ml_collections.ConfigDict:
  """The project config of the BVLC network: base_config() with Caffe's input and LRN.

  Fields set: the model's LRN (Caffe's: k = 1, alpha divided by n, the window
  over both towers' maps) and dropout form (inverted), input.resize ('warp':
  BVLC's protocol, every image warped to 256 x 256), input.crop_size (227),
  input.channel_order ('bgr': the network takes Caffe's BGR order),
  input.mean ('caffe': subtract Caffe's ILSVRC-2012 mean, input.mean_bgr per
  channel or the image in input.mean_file, relative to the workdir, when one
  was converted). `write_workdir` adds pretrained (where the weights came from).
  """
  c = config_lib.base_config()
  c.model.towers = TOWERS
  c.model.lrn_convention = 'cuda_convnet'  # Caffe: alpha / local_size
  c.model.lrn_k = BVLC_LRN[3]
  # Caffe's norm1/norm2 normalize the whole blob: the window of maps 46-49 (norm1) and
  # 126-129 (norm2) spans both groups, where the paper's towers normalize their own maps.
  c.model.lrn_across_towers = True
  c.model.dropout_form = 'inverted'  # Caffe scales kept units in training: identity at test
  c.input.crop_size = IMAGE_SIZE  # conv1_padding(227) == 0: Caffe's unpadded conv1
  c.input.image_size = 256
  c.input.resize = 'warp'  # examples/imagenet/create_imagenet.sh: every image to 256 x 256
  c.input.channel_order = 'bgr'
  c.input.mean = 'caffe'
  c.input.mean_bgr = list(CAFFE_MEAN_BGR)
  return c


def bvlc_model(**overrides) -> model_lib.AlexNet:
  """The AlexNet that runs the BVLC weights: bvlc_config()'s fields, 1000 classes, 227 input."""
  c = bvlc_config()
  return model_lib.from_config(c.model, 1000, image_size=c.input.crop_size, **overrides)


def class_names() -> tuple[list[str], list[str]]:
  """(wnids, names) of ILSVRC-2012's 1000 classes, index = label: Caffe's order and words.

  From synset_words.txt (shipped with the package; Caffe's data/ilsvrc12 file
  of get_ilsvrc_aux.sh): sorted wnids, the order of Caffe's labels, the ONNX
  zoo's and TFDS imagenet2012's. A name is the first synonym of the class's
  words; where two classes share it (ignoring case: 'Cardigan' the corgi and
  'cardigan' the sweater, two 'maillot's) the second synonym follows it
  ('Cardigan, Cardigan Welsh corgi'), and the two 'crane's with no second
  synonym are SAME_WORDS'. Every name is distinct, ignoring case.
  """
  with open(SYNSET_WORDS) as f:
    wnids, words = zip(*(line.rstrip('\n').split(' ', 1) for line in f if line.strip()))
  synonyms = [[w.strip() for w in entry.split(',')] for entry in words]
  firsts = [s[0].lower() for s in synonyms]
  names = [SAME_WORDS.get(wnid) or (', '.join(s[:2]) if firsts.count(s[0].lower()) > 1 else s[0])
           for wnid, s in zip(wnids, synonyms)]
  if len(wnids) != 1000 or list(wnids) != sorted(wnids) or len({n.lower() for n in names}) != 1000:
    raise PretrainedError(f'{SYNSET_WORDS} does not hold 1000 sorted classes with distinct names; '
                          'reinstall alexnet_jax.')
  return list(wnids), names


def save_checkpoint(workdir: str, params: dict[str, Any], step: int = 0) -> None:
  """Writes {'params': params, 'step': step} as orbax step `step` under <workdir>/checkpoints.

  What `checkpoint.load_params` reads; a training run resuming from it needs
  the optimizer state too (not written here).
  """
  manager = checkpoint.make_manager(workdir, keep=1)
  manager.save(step, args=ocp.args.StandardSave(
      {'params': params, 'step': np.asarray(step, np.int32)}), force=True)
  manager.wait_until_finished()
  manager.close()


def check_new_workdir(workdir: str) -> None:
  """Raises PretrainedError if `workdir` holds a run (the import would mix with it)."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise PretrainedError(f'The workdir {workdir} exists and is not a directory.')
  if os.path.isdir(workdir) and rundir.holds_run(workdir):
    raise PretrainedError(f'The workdir {workdir} already holds a run (config.json or '
                          'checkpoints); choose a new --workdir for the converted network.')


def write_workdir(workdir: str, weights: Weights, *, source: str = '', weights_path: str = '',
                  mean: np.ndarray | None = None) -> None:
  """Writes a workdir other commands read like a trained run's: the checkpoint (step 0),
  config.json (bvlc_config()), class_names.json ({'wnids', 'class_names'}: `class_names`)
  and, with `mean` ((3, S, S) BGR, `read_mean`), caffe_mean.npy ((S, S, 3) BGR float32,
  input.mean_file; input.image_size = S, 256 for Caffe's).

  Everything is computed and checked before the first file is written.
  """
  check_new_workdir(workdir)
  params = to_params(weights)
  wnids, names = class_names()
  config = bvlc_config()
  config.pretrained.source, config.pretrained.weights = source, weights_path
  if mean is not None:
    config.input.mean_file = 'caffe_mean.npy'
    config.input.image_size = int(mean.shape[1])
  rundir.make_workdir(workdir)
  if mean is not None:
    rundir.write_npy(os.path.join(workdir, config.input.mean_file),
                   np.ascontiguousarray(mean.transpose(1, 2, 0), np.float32))
  rundir.write_class_names(workdir, names, wnids)
  rundir.write_config(workdir, config)
  save_checkpoint(workdir, params)


def check_crop_size(crop: int, network: ml_collections.ConfigDict, where: str) -> None:
  """Raises PretrainedError when `network` (a workdir's config, `where` its folder) is a
  converted BVLC network's (pretrained.source set) and `crop` is not Caffe's 227."""
  if network.pretrained.source and crop != IMAGE_SIZE:
    raise PretrainedError(
        f'The network in {where} was converted from Caffe\'s BVLC AlexNet, which takes '
        f'{IMAGE_SIZE}x{IMAGE_SIZE} crops, but input.crop_size={crop}. Caffe pools with '
        f'ceil-mode windows and this model with floor-mode ones; the two agree only at '
        f'{IMAGE_SIZE} (55, 27, 13, 6 after conv1 and the three poolings), so another crop size '
        f'would compute another function. Use input.crop_size={IMAGE_SIZE} (leave it unset '
        'when fine-tuning with init_from: the converted value is adopted).')


def load_workdir(workdir: str) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
  """(config, params as NumPy) of a workdir: a converted network or a trained run."""
  config = rundir.read_config(workdir)
  _, params = checkpoint.load_params(workdir)
  return config, params


# ------------------------------------------------------------------ StableHLO

def export_stablehlo(model: model_lib.AlexNet, params: dict[str, Any], path: str,
                     platforms: tuple[str, ...] = ('cpu', 'cuda')) -> None:
  """Writes `jax.export`'s serialization of images -> probabilities, the weights inside.

  The function takes float32 (batch, S, S, 3) images prepared as the model
  expects (for the BVLC network: 227x227, BGR, minus the mean, 0..255 units)
  and returns float32 (batch, num_classes) softmax probabilities; batch is
  symbolic. Run it with plain JAX:

    exported = jax.export.deserialize(bytearray(open(path, 'rb').read()))
    probabilities = exported.call(images)
  """
  params = jax.tree.map(jnp.asarray, params)

  def predict(images):
    return jax.nn.softmax(model.apply({'params': params}, images, train=False), axis=-1)

  batch, = jax.export.symbolic_shape('batch')
  spec = jax.ShapeDtypeStruct((batch, model.image_size, model.image_size, 3), jnp.float32)
  exported = jax.export.export(jax.jit(predict), platforms=platforms)(spec)
  rundir.atomic_write(path, lambda f: f.write(exported.serialize()), binary=True)
