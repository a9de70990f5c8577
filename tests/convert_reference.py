"""An independent BVLC AlexNet for the converter's tests: file writers and a NumPy forward pass.

Nothing here uses alexnet_jax.model or alexnet_jax.pretrained:

* `caffemodel_bytes` / `blob_bytes` encode Caffe's NetParameter and BlobProto
  with a hand-written protobuf wire encoder and the field numbers of BVLC/caffe
  src/caffe/proto/caffe.proto, so a wrong number in the converter's schema
  cannot cancel out.
* `onnx_model` builds the ONNX model zoo's graph (bvlcalexnet-12: Caffe2's
  export) with onnx.helper.
* `opencv_linear_resize` is OpenCV's INTER_LINEAR resize (what Caffe's
  convert_imageset warps images with) written out in NumPy.
* `caffe_forward` is the network of models/bvlc_alexnet/deploy.prototxt written
  from Caffe's layer definitions in float64 NumPy: NCHW, grouped convolution
  as separate groups, ceil-mode pooling, LRN `x / (k + alpha / n * sum x^2)^beta`
  over a zero-padded window of n channels, fc6 reading pool5 flattened (C, H, W).
"""

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# (weight, bias) shapes of deploy.prototxt, Caffe layout.
SHAPES = {
    'conv1': ((96, 3, 11, 11), (96,)), 'conv2': ((256, 48, 5, 5), (256,)),
    'conv3': ((384, 256, 3, 3), (384,)), 'conv4': ((384, 192, 3, 3), (384,)),
    'conv5': ((256, 192, 3, 3), (256,)), 'fc6': ((4096, 9216), (4096,)),
    'fc7': ((4096, 4096), (4096,)), 'fc8': ((1000, 4096), (1000,))}
# deploy.prototxt: (stride, pad, group) of the convolutions.
CONV = {'conv1': (4, 0, 1), 'conv2': (1, 2, 2), 'conv3': (1, 1, 1), 'conv4': (1, 1, 2),
        'conv5': (1, 1, 2)}
# (name, Caffe type) of every layer of deploy.prototxt after the input.
BVLC_LAYERS = [
    ('conv1', 'Convolution'), ('relu1', 'ReLU'), ('norm1', 'LRN'), ('pool1', 'Pooling'),
    ('conv2', 'Convolution'), ('relu2', 'ReLU'), ('norm2', 'LRN'), ('pool2', 'Pooling'),
    ('conv3', 'Convolution'), ('relu3', 'ReLU'), ('conv4', 'Convolution'), ('relu4', 'ReLU'),
    ('conv5', 'Convolution'), ('relu5', 'ReLU'), ('pool5', 'Pooling'),
    ('fc6', 'InnerProduct'), ('relu6', 'ReLU'), ('drop6', 'Dropout'),
    ('fc7', 'InnerProduct'), ('relu7', 'ReLU'), ('drop7', 'Dropout'),
    ('fc8', 'InnerProduct'), ('prob', 'Softmax')]
# V1LayerParameter.LayerType (caffe.proto).
V1_TYPES = {'Convolution': 4, 'ReLU': 18, 'LRN': 15, 'Pooling': 17, 'InnerProduct': 14,
            'Dropout': 6, 'Softmax': 20}
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 1.0


# ------------------------------------------------------------------ protobuf wire format

def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    byte, value = value & 0x7F, value >> 7
    out.append(byte | (0x80 if value else 0))
    if not value:
      return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited field (wire type 2): strings, messages, packed arrays."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
  return _varint(number << 3) + _varint(value)


def _float_field(number: int, value: float) -> bytes:
  return _varint(number << 3 | 5) + np.float32(value).tobytes()


def blob_bytes(array: np.ndarray, *, legacy: bool = False, packed: bool = True) -> bytes:
  """A BlobProto: shape (field 7, BlobShape.dim packed) or legacy num/channels/height/width
  (1-4, leading 1s as Caffe's 2014 blobs had), float data (5) packed or one field per value."""
  array = np.asarray(array, '<f4')
  if legacy:
    dims = (1,) * (4 - array.ndim) + array.shape
    head = b''.join(_int_field(n, d) for n, d in zip((1, 2, 3, 4), dims))
  else:
    head = _field(7, _field(1, b''.join(_varint(d) for d in array.shape)))
  if packed:
    return head + _field(5, array.tobytes())
  records = np.empty(array.size, [('key', 'u1'), ('value', '<f4')])
  records['key'], records['value'] = 5 << 3 | 5, array.ravel()
  return head + records.tobytes()


def _lrn_param() -> bytes:
  return (_int_field(1, LRN_SIZE) + _float_field(2, LRN_ALPHA) + _float_field(3, LRN_BETA)
          + _float_field(5, LRN_K))


def caffemodel_bytes(weights: dict, *, v1: bool = False, layers: list | None = None,
                     legacy: bool = False, unpacked: tuple[str, ...] = ()) -> bytes:
  """A NetParameter named AlexNet with `layers` ((name, type); default BVLC_LAYERS) in the
  current format (LayerParameter, field 100: name 1, type 2, blobs 7, lrn_param 118) or V1
  (V1LayerParameter, field 2: name 4, type 5 enum, blobs 6, lrn_param 18). Layers named in
  `weights` ({name: [arrays]}) carry those blobs; those in `unpacked` store data unpacked."""
  out = [_field(1, b'AlexNet')]
  for name, kind in layers or BVLC_LAYERS:
    blobs = [blob_bytes(a, legacy=legacy, packed=name not in unpacked)
             for a in weights.get(name, ())]
    if v1:
      body = _field(4, name.encode()) + _int_field(5, V1_TYPES[kind])
      body += b''.join(_field(6, b) for b in blobs)
      body += _field(18, _lrn_param()) if kind == 'LRN' else b''
      out.append(_field(2, body))
    else:
      body = _field(1, name.encode()) + _field(2, kind.encode())
      body += b''.join(_field(7, b) for b in blobs)
      body += _field(118, _lrn_param()) if kind == 'LRN' else b''
      out.append(_field(100, body))
  return b''.join(out)


# ------------------------------------------------------------------ ONNX

def onnx_model(weights: dict, *, fc_as_matmul: bool = False, fc7_transposed: bool = False):
  """The ONNX zoo's bvlcalexnet-12 graph with `weights` ({name: (w, b)}, Caffe layout) as
  initializers named like the zoo's (conv1_w_0, conv1_b_0, ...).

  As the zoo's file (Caffe2's export): opset 12, input data_0 of shape (1, 3, 224, 224),
  MaxPool pool5 with pads [0, 0, 1, 1] (Caffe's ceil-mode rounding at that size), pool5
  reshaped to (1, 9216) by a Reshape whose shape is the initializer OC2_DUMMY_1, Gemm with
  transB=1, Dropout after fc6 and fc7, Softmax. fc7_transposed: fc7 stored (in, out) with
  transB=0 (a valid Gemm the reader must undo); fc_as_matmul: MatMul + Add instead of Gemm
  (not AlexNet's graph as the converter expects it).
  """
  from onnx import TensorProto
  from onnx import helper
  from onnx import numpy_helper
  inits, nodes = [], []
  x = 'data_0'

  def add(op, name, inputs, **attrs):
    nonlocal x
    nodes.append(helper.make_node(op, [x] + inputs, [name], name=name, **attrs))
    x = name

  def params(name, w, b):
    inits.extend([numpy_helper.from_array(np.asarray(w, np.float32), f'{name}_w_0'),
                  numpy_helper.from_array(np.asarray(b, np.float32), f'{name}_b_0')])
    return [f'{name}_w_0', f'{name}_b_0']

  for name, kind in BVLC_LAYERS:
    out = f'{name}_1'
    if kind == 'Convolution':
      w, b = weights[name]
      stride, pad, group = CONV[name]
      add('Conv', out, params(name, w, b), kernel_shape=list(w.shape[2:]), strides=[stride] * 2,
          pads=[pad] * 4, group=group)
    elif kind == 'InnerProduct':
      w, b = weights[name]
      if name == 'fc6':
        inits.append(numpy_helper.from_array(np.asarray([1, 9216], np.int64), 'OC2_DUMMY_1'))
        add('Reshape', 'OC2_DUMMY_0', ['OC2_DUMMY_1'])
      if fc_as_matmul:
        add('MatMul', f'{name}_mm', params(name, np.asarray(w).T, b)[:1])
        add('Add', out, [f'{name}_b_0'])
      elif name == 'fc7' and fc7_transposed:
        add('Gemm', out, params(name, np.asarray(w).T, b), transB=0)
      else:
        add('Gemm', out, params(name, w, b), transB=1)
    elif kind == 'LRN':
      add('LRN', out, [], size=LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, bias=LRN_K)
    elif kind == 'Pooling':
      add('MaxPool', out, [], kernel_shape=[3, 3], strides=[2, 2],
          pads=[0, 0, 1, 1] if name == 'pool5' else [0, 0, 0, 0])
    else:
      add({'ReLU': 'Relu'}.get(kind, kind), name if kind != 'Softmax' else 'prob_1', [])
  graph = helper.make_graph(
      nodes, 'bvlcalexnet', [helper.make_tensor_value_info('data_0', TensorProto.FLOAT,
                                                           [1, 3, 224, 224])],
      [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 1000])], inits)
  return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 12)])


# ------------------------------------------------------------------ Caffe's input

def opencv_linear_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """cv::resize(image, (width, height), INTER_LINEAR) for uint8 (H, W, C), in float64.

  OpenCV's imgproc/src/resize.cpp, per axis: output index d reads the input at
  f = (d + 0.5) * in / out - 0.5, s = floor(f), weights (1 - (f - s), f - s) on
  pixels s and s + 1; s < 0 becomes 0 with weight 1 on it, s >= in - 1 becomes
  in - 1 likewise. Rounded to the nearest integer (OpenCV computes in 11-bit
  fixed point, which can differ by one level).
  """
  out = np.asarray(image, np.float64)
  for axis, size in ((0, height), (1, width)):
    n = out.shape[axis]
    f = (np.arange(size) + 0.5) * (n / size) - 0.5
    s = np.floor(f).astype(int)
    f -= s
    f[s < 0], s[s < 0] = 0, 0
    f[s >= n - 1], s[s >= n - 1] = 0, n - 1
    shape = [1] * out.ndim
    shape[axis] = size
    f = f.reshape(shape)
    out = (1 - f) * np.take(out, s, axis=axis) + f * np.take(out, np.minimum(s + 1, n - 1),
                                                              axis=axis)
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ the network

def _conv(x, w, b, stride, pad, group):
  """Caffe's Convolution: x (N, C, H, W), w (O, C / group, kh, kw); group g's outputs
  O_g = w[g*O/group:(g+1)*O/group] read channels x[:, g*C/group:(g+1)*C/group]."""
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  o, cg, kh, kw = w.shape
  windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
  outs = [np.tensordot(windows[:, g * cg:(g + 1) * cg], w[g * o // group:(g + 1) * o // group],
                       axes=([1, 4, 5], [1, 2, 3]))  # (N, H', W', O / group)
          for g in range(group)]
  return np.concatenate(outs, axis=-1).transpose(0, 3, 1, 2) + b[None, :, None, None]


def _max_pool(x, kernel=3, stride=2):
  """Caffe's MAX Pooling: ceil((H - kernel) / stride) + 1 outputs, windows clipped at the edge."""
  n, c, h, w = x.shape
  oh, ow = (math.ceil((s - kernel) / stride) + 1 for s in (h, w))
  padded = np.full((n, c, (oh - 1) * stride + kernel, (ow - 1) * stride + kernel), -np.inf)
  padded[:, :, :h, :w] = x
  return sliding_window_view(padded, (kernel, kernel), axis=(2, 3))[
      :, :, ::stride, ::stride].max(axis=(-2, -1))


def _lrn(x):
  """Caffe's LRN across channels: x / (k + alpha / n * sum of the n-window's squares)^beta."""
  half = (LRN_SIZE - 1) // 2
  squares = np.pad(x * x, ((0, 0), (half, half), (0, 0), (0, 0)))
  sums = sum(squares[:, i:i + x.shape[1]] for i in range(LRN_SIZE))
  return x * (LRN_K + LRN_ALPHA / LRN_SIZE * sums) ** -LRN_BETA


def caffe_forward(weights: dict, images: np.ndarray) -> np.ndarray:
  """deploy.prototxt's `prob` for (N, 3, 227, 227) BGR mean-subtracted images, float64.

  weights: {layer: (w, b)} in Caffe's layout. Dropout is the identity at test time.
  """
  x = np.asarray(images, np.float64)
  p = {k: (np.asarray(w, np.float64), np.asarray(b, np.float64)) for k, (w, b) in weights.items()}
  def relu(v):
    return np.maximum(v, 0.0)
  x = _max_pool(_lrn(relu(_conv(x, *p['conv1'], *CONV['conv1']))))
  x = _max_pool(_lrn(relu(_conv(x, *p['conv2'], *CONV['conv2']))))
  x = relu(_conv(x, *p['conv3'], *CONV['conv3']))
  x = relu(_conv(x, *p['conv4'], *CONV['conv4']))
  x = _max_pool(relu(_conv(x, *p['conv5'], *CONV['conv5'])))
  x = x.reshape(x.shape[0], -1)  # (N, 256 * 6 * 6) in (C, H, W) order
  for name in ('fc6', 'fc7'):
    x = relu(x @ p[name][0].T + p[name][1])
  logits = x @ p['fc8'][0].T + p['fc8'][1]
  logits -= logits.max(axis=1, keepdims=True)
  return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def random_weights(seed: int = 0, gain: float = 1.0, fc8_gain: float = 0.15) -> dict:
  """Weights of the BVLC shapes, float32: N(0, gain^2 / fan_in) kernels (std 0.026 in conv1,
  0.01-0.03 elsewhere), N(0, 0.01^2) biases. With mean-subtracted pixels the conv1/conv2 maps
  reach the hundreds, so LRN's sum term matters; fc8_gain keeps the logits within a few units."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, (wshape, bshape) in SHAPES.items():
    std = (fc8_gain if name == 'fc8' else gain) / math.sqrt(int(np.prod(wshape[1:])))
    out[name] = (rng.normal(0.0, std, wshape).astype(np.float32),
                 rng.normal(0.0, 0.01, bshape).astype(np.float32))
  return out
