"""The paper's image transformations as TensorFlow functions (section 4.1).

Pixel scale everywhere: float32 in 0..255 (the uint8 values of the decoded
JPEG, cast), so the mean image and the RGB covariance are in the paper's pixel
units. Shapes: an image is (S, S, 3) with S the stored side (256 for
ImageNet), a crop is (C, C, 3) with C the crop side (224).

In training the host only draws (crop offsets, reflection, lighting alphas:
draws.py) and cuts the uint8 crop; the arithmetic (mean image, reflection,
lighting, float conversion) runs inside the training step on the accelerator
(alexnet_jax/steps.py), from `lighting_scale` and the statistics.
"""

import numpy as np
import tensorflow as tf

from alexnet_jax import errors

LIGHTING_CONVENTIONS = ('paper', 'cuda_convnet2')
# input.resize: how an image of any size becomes the stored S x S image.
RESIZES = ('shorter_side', 'warp')


def lighting_scale(eigvals, convention: str) -> np.ndarray:
  """The per-component scale s_i (float32 (3,)), with delta = eigvecs @ (alpha * s) in pixel units.

  Args:
    eigvals: the eigenvalues L_i of the 0..255 RGB covariance (what `stats` stores).
    convention: 'paper': the paper's formula [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T
      with the eigenvalues l_i of the covariance of pixels in the unit scale
      [0, 1] (the scale of fb.resnet.torch's widely copied constants, which
      reproduces the paper's intent: a change of a few intensity levels). In
      0..255 units the shift is 255 * a_i * (L_i / 255^2) = a_i * L_i / 255.
      'cuda_convnet2': the authors' later code, a_i * sqrt(L_i): the standard
      deviation along each component, independent of the pixel scale.

  The training step adds delta to every pixel on the device (section 4.1; the
  host draws alpha, `draws.lighting_alpha`).

  Raises:
    errors.ConfigError: an unknown convention.
  """
  eigvals = np.asarray(eigvals, np.float32)
  if convention == 'paper':
    return eigvals / np.float32(255.0)
  if convention == 'cuda_convnet2':
    return np.sqrt(np.maximum(eigvals, np.float32(0.0)))
  raise errors.ConfigError(f'Unknown input.lighting_convention {convention!r}; use '
                           f'{" or ".join(repr(c) for c in LIGHTING_CONVENTIONS)}.')


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


def warp(image, size: int) -> tf.Tensor:
  """BVLC's preprocessing: the whole image to size x size, its aspect ratio not kept.

  image: uint8 (H, W, 3) -> uint8 (size, size, 3). Caffe's convert_imageset
  (examples/imagenet/create_imagenet.sh with RESIZE=true) calls
  cv::resize(img, out, cv::Size(256, 256)) (BVLC/caffe src/caffe/util/io.cpp,
  line 84), OpenCV's INTER_LINEAR: output pixel x reads the input at
  (x + 0.5) * W / size - 0.5, the two neighbours weighted linearly, indices
  clamped at the borders, no antialiasing. tf.image.resize's bilinear without
  antialiasing uses the same sample positions; rounded to the nearest integer
  (OpenCV's 11-bit fixed-point weights differ by at most one level).
  """
  out = tf.image.resize(image, [size, size], method='bilinear', antialias=False)
  out = tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)
  return tf.ensure_shape(out, [size, size, 3])


def stored_image(image, size: int, resize: str) -> tf.Tensor:
  """uint8 (H, W, 3) -> the stored uint8 (size, size, 3) image, as input.resize says:
  'shorter_side' (`resize_short_side_center_crop`, section 2) or 'warp' (`warp`, BVLC's).

  Raises:
    errors.ConfigError: an unknown `resize`.
  """
  if resize == 'shorter_side':
    return resize_short_side_center_crop(image, size)
  if resize == 'warp':
    return warp(image, size)
  raise errors.ConfigError(f'Unknown input.resize {resize!r}; use '
                           f'{" or ".join(repr(r) for r in RESIZES)}.')
