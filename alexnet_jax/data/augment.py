"""The paper's image transformations as TensorFlow functions (section 4.1).

Pixel scale everywhere: float32 in 0..255 (the uint8 values of the decoded
JPEG, cast), so the mean image and the RGB covariance are in the paper's pixel
units. Shapes: an image is (S, S, 3) with S the stored side (256 for
ImageNet), a crop is (C, C, 3) with C the crop side (224).

Randomness is stateless: every random choice of one example is drawn from a
key derived from (seed, epoch, k) by `example_key`, with the Philox algorithm
pinned so that the stream is the same on every machine and TensorFlow build.
"""

import tensorflow as tf

from alexnet_jax import errors

PHILOX = 'philox'
LIGHTING_CONVENTIONS = ('paper', 'cuda_convnet2')


def example_key(seed, epoch, k) -> tf.Tensor:
  """The int64 (2,) stateless key of the k-th example of epoch `epoch`."""
  key = tf.stack([tf.cast(seed, tf.int64), tf.constant(0x5EED, tf.int64)])
  key = tf.random.experimental.stateless_fold_in(key, tf.cast(epoch, tf.int64), alg=PHILOX)
  return tf.random.experimental.stateless_fold_in(key, tf.cast(k, tf.int64), alg=PHILOX)


def sub_key(key, i: int) -> tf.Tensor:
  """The key of the i-th random choice made with `key`."""
  return tf.random.experimental.stateless_fold_in(key, i, alg=PHILOX)


def random_crop_params(key, image_size: int, crop_size: int):
  """(offset_y, offset_x, flip) of one example.

  Offsets are int32, uniform over 0..image_size-crop_size inclusive (section
  4.1: "random 224x224 patches (and their horizontal reflections) from the
  256x256 images"); flip is a bool, True with probability 1/2.
  """
  off = tf.random.stateless_uniform([2], seed=sub_key(key, 0), minval=0,
                                    maxval=image_size - crop_size + 1, dtype=tf.int32, alg=PHILOX)
  flip = tf.random.stateless_uniform([], seed=sub_key(key, 1), alg=PHILOX) < 0.5
  return off[0], off[1], flip


def lighting_alpha(key, std: float) -> tf.Tensor:
  """alpha (3,) float32 ~ N(0, std), drawn once per image and use (section 4.1)."""
  return tf.random.stateless_normal([3], seed=sub_key(key, 2), stddev=std, alg=PHILOX)


def lighting_scale(eigvals, convention: str) -> tf.Tensor:
  """The per-component scale s_i, with delta = eigvecs @ (alpha * s) in pixel units.

  Args:
    eigvals: the eigenvalues L_i of the 0..255 RGB covariance (what `stats` stores).
    convention: 'paper': the paper's formula [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T
      with the eigenvalues l_i of the covariance of pixels in the unit scale
      [0, 1] (the scale of fb.resnet.torch's widely copied constants, which
      reproduces the paper's intent: a change of a few intensity levels). In
      0..255 units the shift is 255 * a_i * (L_i / 255^2) = a_i * L_i / 255.
      'cuda_convnet2': the authors' later code, a_i * sqrt(L_i): the standard
      deviation along each component, independent of the pixel scale.

  Raises:
    errors.ConfigError: an unknown convention.
  """
  eigvals = tf.convert_to_tensor(eigvals, tf.float32)
  if convention == 'paper':
    return eigvals / 255.0
  if convention == 'cuda_convnet2':
    return tf.sqrt(tf.maximum(eigvals, 0.0))
  raise errors.ConfigError(f'Unknown input.lighting_convention {convention!r}; use '
                           f'{" or ".join(repr(c) for c in LIGHTING_CONVENTIONS)}.')


def lighting_delta(alpha, eigvecs, scale) -> tf.Tensor:
  """The RGB offset(s) to add to every pixel: (..., 3) = eigvecs @ (alpha * scale).

  eigvecs: (3, 3), columns are the principal components p_i.
  """
  eigvecs = tf.convert_to_tensor(eigvecs, tf.float32)
  return tf.linalg.matvec(eigvecs, alpha * scale)


def ten_crop(image, crop_size: int) -> tf.Tensor:
  """The test-time views (section 4.1): (10, C, C, 3) from an (S, S, 3) image.

  Order: center, top-left, top-right, bottom-left, bottom-right, then the
  horizontal reflections of those five in the same order.
  """
  s = tf.shape(image)[0]
  c = crop_size
  m = (s - c) // 2
  offsets = [(m, m), (0, 0), (0, s - c), (s - c, 0), (s - c, s - c)]
  crops = tf.stack([image[y:y + c, x:x + c] for y, x in offsets])
  return tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)


def center_crop(image, crop_size: int) -> tf.Tensor:
  """The central (C, C, 3) window of an (S, S, 3) image."""
  s = tf.shape(image)[0]
  m = (s - crop_size) // 2
  return image[m:m + crop_size, m:m + crop_size]


def resize_short_side_center_crop(image, size: int) -> tf.Tensor:
  """Section 2's preprocessing: the shorter side to `size`, then the central size x size.

  image: uint8 (H, W, 3) -> uint8 (size, size, 3). Antialiased bilinear (area
  averaging when shrinking), rounded to the nearest integer.
  """
  shape = tf.shape(image)
  h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  scale = tf.cast(size, tf.float32) / tf.minimum(h, w)
  nh = tf.maximum(size, tf.cast(tf.round(h * scale), tf.int32))
  nw = tf.maximum(size, tf.cast(tf.round(w * scale), tf.int32))
  resized = tf.image.resize(image, [nh, nw], method='bilinear', antialias=True)
  y = (nh - size) // 2
  x = (nw - size) // 2
  out = resized[y:y + size, x:x + size]
  out = tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)
  return tf.ensure_shape(out, [size, size, 3])
