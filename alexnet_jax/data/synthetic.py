"""The embedded offline dataset `alexnet_shapes`: coloured shapes in clutter.

A TFDS `GeneratorBasedBuilder` registered by importing this module. Nothing is
downloaded: every image is rendered with NumPy from a seed and JPEG-encoded
(quality 90, like ImageNet), so `download_and_prepare` works offline.

Classes (12) are the combinations of 4 shapes x 3 colour families:

    label = 3 * shape + colour     shape in (disc, square, triangle, cross)
                                   colour in (red, green, blue)

so every colour appears in 4 classes and every shape in 3. A class is told
apart only by spatial structure (the outline) AND colour together: the mean
colour of an image says at best which colour family the object has (and the
background, clutter and illumination blur even that), never its shape; see
`mean_colour_ncm_accuracy` and its test. Each image varies in object
position, scale and rotation, object hue/saturation/value, background colour
and gradient, clutter (line segments and dots, some in front of the object),
an illumination gradient, a per-channel colour cast and sensor noise, so random
crops, horizontal reflections (all four shapes are mirror-symmetric up to
their rotation, which is itself symmetric) and PCA lighting all matter.

Images are `uint8` RGB, `image_size x image_size` (default 64; any side
>= 16 works, geometry scales with it). Splits: `train` and `validation`
(the ImageNet split names), each rendered from its own seed stream, so the
validation images are held out. Generating 6,000 64x64 images with their
statistics took about 7.5 s on one core (docs/benchmarks.md).
"""

import colorsys
import dataclasses
import importlib.resources
import importlib.resources.abc
import sys

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

# tensorflow-datasets 4.9.10 looks up `importlib_resources.abc.Traversable`
# (a backport it only declares as a dependency for Python < 3.9) when it
# locates a builder's code, e.g. in download_and_prepare. The standard
# library module is the same API on Python >= 3.9: alias it instead of adding
# a dependency.
sys.modules.setdefault('importlib_resources', importlib.resources)

SHAPES = ('disc', 'square', 'triangle', 'cross')
COLOURS = ('red', 'green', 'blue')
COLOUR_HUES = (0.0, 1.0 / 3.0, 2.0 / 3.0)  # HSV hue of each colour family
CLASS_NAMES = tuple(f'{c} {s}' for s in SHAPES for c in COLOURS)
NUM_CLASSES = len(CLASS_NAMES)  # 12
_SPLIT_IDS = {'train': 0, 'validation': 1}


def _hsv(h, s, v):
  return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


def _shape_sdf(shape: int, x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
  """Signed distance (pixels, < 0 inside) of shape `shape` of size `r`.

  `x`, `y` are coordinates relative to the shape centre, already rotated.
  """
  if shape == 0:  # disc
    return np.sqrt(x * x + y * y) - r
  if shape == 1:  # square (half side 0.85 r)
    h = 0.85 * r
    dx, dy = np.abs(x) - h, np.abs(y) - h
    out = np.sqrt(np.maximum(dx, 0) ** 2 + np.maximum(dy, 0) ** 2)
    return out + np.minimum(np.maximum(dx, dy), 0)
  if shape == 2:  # equilateral triangle pointing up, circumradius 1.2 r
    rr = 1.2 * r
    # Intersection of 3 half-planes; max of their signed distances is a good
    # enough SDF for anti-aliasing at the edges.
    yy = -y  # image y grows downwards; make the apex point up
    n = np.array([[0.0, -1.0], [np.sqrt(3) / 2, 0.5], [-np.sqrt(3) / 2, 0.5]])
    d = [x * nx + yy * ny - rr * 0.5 for nx, ny in n]  # inradius rr/2
    return np.maximum(np.maximum(d[0], d[1]), d[2])
  # cross: union of two bars, arms 1.0 r long, 0.32 r half-thick
  t = 0.32 * r
  def box(hx, hy):
    dx, dy = np.abs(x) - hx, np.abs(y) - hy
    out = np.sqrt(np.maximum(dx, 0) ** 2 + np.maximum(dy, 0) ** 2)
    return out + np.minimum(np.maximum(dx, dy), 0)
  return np.minimum(box(r, t), box(t, r))


def _segment_dist(px, py, ax, ay, bx, by):
  """Distance of every pixel to the segment a-b."""
  vx, vy = bx - ax, by - ay
  wx, wy = px - ax, py - ay
  t = np.clip((wx * vx + wy * vy) / (vx * vx + vy * vy + 1e-9), 0.0, 1.0)
  dx, dy = wx - t * vx, wy - t * vy
  return np.sqrt(dx * dx + dy * dy)


def render(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
  """Renders one image of class `label`: uint8 array (size, size, 3), RGB."""
  shape, colour = divmod(int(label), len(COLOURS))
  u = size / 64.0  # geometry is specified for 64 px and scaled
  ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5

  # Background: blend of two low-saturation colours along a random direction.
  c0 = _hsv(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.2, 0.85))
  c1 = _hsv(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.2, 0.85))
  ang = rng.uniform(0, 2 * np.pi)
  ramp = ((xs - size / 2) * np.cos(ang) + (ys - size / 2) * np.sin(ang)) / size + 0.5
  ramp = np.clip(ramp, 0, 1)[..., None]
  img = c0 * (1 - ramp) + c1 * ramp

  def clutter(n):
    nonlocal img
    for _ in range(n):
      col = _hsv(rng.random(), rng.uniform(0, 1), rng.uniform(0.1, 1))
      if rng.random() < 0.7:  # line segment
        a = rng.uniform(0, size, 2)
        b = a + rng.normal(0, 14 * u, 2)
        d = _segment_dist(xs, ys, a[0], a[1], b[0], b[1])
        w = rng.uniform(0.4, 1.0) * u
      else:  # small dot
        a = rng.uniform(0, size, 2)
        d = np.sqrt((xs - a[0]) ** 2 + (ys - a[1]) ** 2)
        w = rng.uniform(1.0, 2.5) * u
      alpha = np.clip(w + 0.5 - d, 0, 1)[..., None]
      img = img * (1 - alpha) + col * alpha

  clutter(rng.integers(3, 9))

  # The object (the class): shape x colour family, jittered.
  cx, cy = rng.uniform(0.32, 0.68, 2) * size
  r = rng.uniform(9.0, 17.0) * u
  th = rng.uniform(-0.35, 0.35)  # radians, about +-20 degrees
  x, y = xs - cx, ys - cy
  xr = np.cos(th) * x + np.sin(th) * y
  yr = -np.sin(th) * x + np.cos(th) * y
  sdf = _shape_sdf(shape, xr, yr, r)
  alpha = np.clip(0.5 - sdf, 0, 1)[..., None]
  obj = _hsv(COLOUR_HUES[colour] + rng.uniform(-0.05, 0.05),
             rng.uniform(0.6, 1.0), rng.uniform(0.55, 1.0))
  # Mild shading across the object.
  shade = 1 + 0.25 * ((xr * np.cos(ang) + yr * np.sin(ang)) / (r + 1e-6))[..., None]
  img = img * (1 - alpha) + np.clip(obj * shade, 0, 1) * alpha

  clutter(rng.integers(0, 3))  # a few in front (occlusion)

  # Illumination: gradient, global brightness and a per-channel colour cast.
  ang2 = rng.uniform(0, 2 * np.pi)
  grad = ((xs - size / 2) * np.cos(ang2) + (ys - size / 2) * np.sin(ang2)) / size
  light = 1 + rng.uniform(0, 0.6) * grad
  img = img * light[..., None] * rng.uniform(0.7, 1.25)
  img = img * rng.uniform(0.85, 1.15, 3).astype(np.float32)
  img = img * 255.0 + rng.normal(0, 5.0, img.shape)
  return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def example(split: str, index: int, size: int, seed: int) -> tuple[np.ndarray, int]:
  """(image uint8 (size, size, 3), label) of example `index` of `split`.

  Pure function of its arguments. Labels cycle through the classes so every
  class has the same count (within 1).
  """
  rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
  label = index % NUM_CLASSES
  return render(label, size, rng), label


def mean_colour_ncm_accuracy(num_train: int = 600, num_val: int = 300, size: int = 32,
                             seed: int = 0) -> float:
  """Accuracy of a nearest-class-mean classifier on mean RGB (diagnostic).

  Shows that the classes are not separable by one pixel statistic (chance is
  1/12 = 0.083; knowing the colour family perfectly would cap it at 1/4).
  """
  def feats(split, n):
    xs, ys = [], []
    for i in range(n):
      im, lab = example(split, i, size, seed)
      xs.append(im.reshape(-1, 3).mean(0))
      ys.append(lab)
    return np.array(xs), np.array(ys)
  xt, yt = feats('train', num_train)
  xv, yv = feats('validation', num_val)
  means = np.stack([xt[yt == c].mean(0) for c in range(NUM_CLASSES)])
  pred = np.argmin(((xv[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
  return float((pred == yv).mean())


@dataclasses.dataclass(eq=False)
class ShapesConfig(tfds.core.BuilderConfig):
  """Builder config: stored side, split sizes and generation seed."""
  image_size: int = 64
  num_train: int = 5000
  num_validation: int = 1000
  seed: int = 0


def shapes_config(*, image_size: int, num_train: int, num_validation: int,
                  seed: int) -> ShapesConfig:
  """A config whose name encodes its parameters (so each has its own folder)."""
  return ShapesConfig(
      name=f's{image_size}_n{num_train}_v{num_validation}_seed{seed}',
      description=(f'{image_size}x{image_size} JPEG, {num_train} train / '
                   f'{num_validation} validation images, seed {seed}'),
      image_size=image_size, num_train=num_train, num_validation=num_validation, seed=seed)


class AlexnetShapes(tfds.core.GeneratorBasedBuilder):
  """12 classes of coloured shapes in clutter, rendered offline from a seed."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  # The default when the dataset is loaded by name (tfds.load('alexnet_shapes')).
  BUILDER_CONFIGS = [shapes_config(image_size=64, num_train=5000, num_validation=1000, seed=0)]

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(s, s, 3), encoding_format='jpeg'),
            'label': tfds.features.ClassLabel(names=list(CLASS_NAMES)),
        }),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    cfg = self.builder_config
    return {
        'train': self._generate_examples('train', cfg.num_train),
        'validation': self._generate_examples('validation', cfg.num_validation),
    }

  def _generate_examples(self, split, n):
    cfg = self.builder_config
    for i in range(n):
      image, label = example(split, i, cfg.image_size, cfg.seed)
      jpeg = tf.io.encode_jpeg(image, quality=90).numpy()
      yield i, {'image': jpeg, 'label': label}
