"""The embedded offline dataset `alexnet_shapes`: coloured shapes in clutter.

A TFDS `GeneratorBasedBuilder` registered by importing this module. Nothing is
downloaded: every image is rendered with NumPy from a seed and JPEG-encoded
(quality 90, like ImageNet), so `download_and_prepare` works offline. Two
difficulties (`DIFFICULTIES`, config field input.shapes.difficulty): 'easy',
described first, and 'hard'.

'easy': 12 classes, the combinations of 4 shapes x 3 colour families:

    label = 3 * shape + colour     shape in (disc, square, triangle, cross)
                                   colour in (red, green, blue)

so every colour appears in 4 classes and every shape in 3. A class is told
apart only by spatial structure (the outline) AND colour together: the mean
colour of an image says at best which colour family the object has (and the
background, clutter and illumination blur even that), never its shape; see
`colour_histogram_accuracy` and its test. Each image varies in object
position, scale and rotation, object hue/saturation/value, background colour
and gradient, clutter (line segments and dots, some in front of the object),
an illumination gradient, a per-channel colour cast and sensor noise, so random
crops, horizontal reflections (all four shapes are mirror-symmetric up to
their rotation, which is itself symmetric) and PCA lighting all matter.

'hard': 12 classes, the outline alone (`HARD_SHAPES`); the object's hue is
drawn independently of its class, so colour carries no label information (a
nearest-class-mean classifier on 64-cell colour histograms stays near
chance, 1/12: `colour_histogram_accuracy` and its test). Objects vary more
in size and position, over backgrounds textured with
colour noise and a grating, and up to one opaque patch hides part of the
object; clutter, illumination, colour cast and noise are the easy set's
(`Difficulty` lists every range).

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

EASY_SHAPES = ('disc', 'square', 'triangle', 'cross')
# Every shape has a mirror axis, so its horizontal reflection (section 4.1) is the same shape
# turned: reflections keep the label. Some differ only in detail at 64 px (disc and hexagon,
# ellipse and bar).
HARD_SHAPES = EASY_SHAPES + ('ellipse', 'bar', 'hexagon', 'star', 'ring', 'crescent', 'tee',
                             'arrow')
COLOURS = ('red', 'green', 'blue')
COLOUR_HUES = (0.0, 1.0 / 3.0, 2.0 / 3.0)  # HSV hue of each colour family
_SPLIT_IDS = {'train': 0, 'validation': 1}


@dataclasses.dataclass(frozen=True)
class Difficulty:
  """What decides an image's label and how much varies around it.

  Lengths are in pixels of a 64-pixel image (scaled with the side), angles in
  radians, ranges [low, high) of a uniform draw.

  Attributes:
    shapes: the object outlines (HARD_SHAPES names).
    colour_is_label: True: a class is (shape, colour family), 3 families, the object's hue
      within 0.05 of the family's; False: a class is the shape alone, the hue uniform.
    radius: the object's size.
    rotation: the object's angle is uniform in [-rotation, rotation].
    centre: the object's centre, as a fraction of the side, in both coordinates.
    texture: amplitude (0..1 of full scale) of the background's colour-noise and grating
      texture; 0: a smooth gradient only.
    clutter, front_clutter: how many strokes and dots are drawn behind and in front of
      the object.
    occluders: at most this many opaque rectangles drawn over the object's area.
    light: the strongest illumination gradient across the image (0.6: +-30%).
    brightness: a global factor on the image.
    cast: each channel is scaled by a factor in [1 - cast, 1 + cast].
    noise: the standard deviation of the sensor noise, in 0..255 levels.
  """
  shapes: tuple[str, ...]
  colour_is_label: bool
  radius: tuple[float, float]
  rotation: float
  centre: tuple[float, float]
  texture: float
  clutter: tuple[int, int]
  front_clutter: tuple[int, int]
  occluders: int
  light: float
  brightness: tuple[float, float]
  cast: float
  noise: float

  @property
  def class_names(self) -> tuple[str, ...]:
    if self.colour_is_label:
      return tuple(f'{c} {s}' for s in self.shapes for c in COLOURS)
    return self.shapes

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


DIFFICULTIES = {
    # 12 classes, 4 shapes x 3 colour families: colour alone narrows a class to 4
    # (experiments/demo.py reaches 0.4% top-1 error).
    'easy': Difficulty(EASY_SHAPES, colour_is_label=True, radius=(9.0, 17.0), rotation=0.35,
                       centre=(0.32, 0.68), texture=0.0, clutter=(3, 9), front_clutter=(0, 3),
                       occluders=0, light=0.6, brightness=(0.7, 1.25), cast=0.15, noise=5.0),
    # 12 shapes in any colour, turned up to 20 degrees, over textured backgrounds, partly
    # hidden. Harder settings were measured with experiments/demo_hard.py's network
    # (2026-12-07), 4 more outlines (pentagon, frame, semicircle, ell) in each: turned up to 34
    # degrees, 49% top-1 error after 45 epochs at rate 0.02 and 52% after 36 at 0.01, both
    # still falling about 1 point an epoch; in any orientation, at chance for 7 epochs; with texture
    # 0.25, more clutter, two occluders and radii from 6, at chance for 5 epochs.
    'hard': Difficulty(HARD_SHAPES, colour_is_label=False, radius=(7.0, 19.0), rotation=0.35,
                       centre=(0.3, 0.7), texture=0.15, clutter=(3, 9), front_clutter=(0, 3),
                       occluders=1, light=0.6, brightness=(0.7, 1.25), cast=0.15, noise=5.0),
}
# The default ('easy') dataset's classes.
CLASS_NAMES = DIFFICULTIES['easy'].class_names
NUM_CLASSES = len(CLASS_NAMES)  # 12


def _hsv(h, s, v):
  return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


def _box(x: np.ndarray, y: np.ndarray, hx: float, hy: float) -> np.ndarray:
  """Signed distance to the axis-aligned rectangle of half sides hx, hy."""
  dx, dy = np.abs(x) - hx, np.abs(y) - hy
  out = np.sqrt(np.maximum(dx, 0) ** 2 + np.maximum(dy, 0) ** 2)
  return out + np.minimum(np.maximum(dx, dy), 0)


def _disc(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
  return np.sqrt(x * x + y * y) - r


def _polygon(x: np.ndarray, y: np.ndarray, sides: int, inradius: float) -> np.ndarray:
  """A regular polygon with a vertex pointing up (-y): the max of its edges' half-planes."""
  normals = np.pi / 2 + np.pi / sides + 2 * np.pi * np.arange(sides) / sides
  return np.max([x * np.cos(a) + y * np.sin(a) for a in normals], axis=0) - inradius


def _star(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
  """A five-pointed star, points at r, notches at 0.45 r (radial distance)."""
  sector = 2 * np.pi / 5
  angle = np.mod(np.arctan2(x, -y) + sector / 2, sector) / sector  # 0.5 at a point
  edge = 0.45 * r + 0.55 * r * (1 - 2 * np.abs(angle - 0.5))
  return np.sqrt(x * x + y * y) - edge


def _triangle(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
  """An equilateral triangle pointing up, circumradius 1.2 r."""
  rr = 1.2 * r
  # Intersection of 3 half-planes; max of their signed distances is a good
  # enough SDF for anti-aliasing at the edges.
  yy = -y  # image y grows downwards; make the apex point up
  n = np.array([[0.0, -1.0], [np.sqrt(3) / 2, 0.5], [-np.sqrt(3) / 2, 0.5]])
  d = [x * nx + yy * ny - rr * 0.5 for nx, ny in n]  # inradius rr/2
  return np.maximum(np.maximum(d[0], d[1]), d[2])


def _arrow(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
  """An arrow pointing up: a head from -r to -0.1 r, 1.5 r wide, on a stem 0.5 r wide."""
  side = np.hypot(0.9, 0.75)
  head = np.maximum.reduce([y + 0.1 * r, (0.9 * x - 0.75 * (y + r)) / side,
                            (-0.9 * x - 0.75 * (y + r)) / side])
  return np.minimum(head, _box(x, y - 0.45 * r, 0.25 * r, 0.55 * r))


# Signed distance (pixels, < 0 inside) of each outline of size r, in coordinates relative
# to the shape's centre, already rotated.
_SDFS = {
    'disc': _disc,
    'square': lambda x, y, r: _box(x, y, 0.85 * r, 0.85 * r),
    'triangle': _triangle,
    # arms 1.0 r long, 0.32 r half-thick
    'cross': lambda x, y, r: np.minimum(_box(x, y, r, 0.32 * r), _box(x, y, 0.32 * r, r)),
    'ellipse': lambda x, y, r: (np.sqrt((x / r) ** 2 + (y / (0.55 * r)) ** 2) - 1) * 0.55 * r,
    'bar': lambda x, y, r: _box(x, y, r, 0.4 * r),
    'hexagon': lambda x, y, r: _polygon(x, y, 6, 0.9 * r),
    'star': _star,
    'ring': lambda x, y, r: np.abs(_disc(x, y, 0.7 * r)) - 0.3 * r,
    'crescent': lambda x, y, r: np.maximum(_disc(x, y, r), -_disc(x - 0.5 * r, y, 0.85 * r)),
    'tee': lambda x, y, r: np.minimum(_box(x, y + 0.72 * r, r, 0.28 * r),
                                      _box(x, y - 0.28 * r, 0.28 * r, 0.72 * r)),
    'arrow': _arrow,
}


def _segment_dist(px, py, ax, ay, bx, by):
  """Distance of every pixel to the segment a-b."""
  vx, vy = bx - ax, by - ay
  wx, wy = px - ax, py - ay
  t = np.clip((wx * vx + wy * vy) / (vx * vx + vy * vy + 1e-9), 0.0, 1.0)
  dx, dy = wx - t * vx, wy - t * vy
  return np.sqrt(dx * dx + dy * dy)


def _texture(xs: np.ndarray, ys: np.ndarray, size: int, rng: np.random.Generator,
             amplitude: float) -> np.ndarray:
  """(size, size, 3) offsets within +-amplitude: coarse colour noise plus a coloured grating."""
  cells = rng.integers(3, 9)
  coarse = rng.uniform(-1, 1, (cells, cells, 3)).astype(np.float32)
  t = np.linspace(0, cells - 1, size)
  i = np.minimum(t.astype(int), cells - 2)
  f = (t - i).astype(np.float32)
  rows = coarse[i] * (1 - f)[:, None, None] + coarse[i + 1] * f[:, None, None]
  noise = rows[:, i] * (1 - f)[None, :, None] + rows[:, i + 1] * f[None, :, None]
  period = rng.uniform(4.0, 16.0) * size / 64.0
  angle = rng.uniform(0, 2 * np.pi)
  phase = 2 * np.pi * (xs * np.cos(angle) + ys * np.sin(angle)) / period + rng.uniform(0, 2 * np.pi)
  grating = np.sin(phase)[..., None] * rng.uniform(-1, 1, 3).astype(np.float32)
  return amplitude * (0.6 * noise + 0.4 * grating)


def render(label: int, size: int, rng: np.random.Generator,
           difficulty: Difficulty = DIFFICULTIES['easy']) -> np.ndarray:
  """Renders one image of class `label`: uint8 array (size, size, 3), RGB."""
  d = difficulty
  shape, colour = divmod(int(label), len(COLOURS)) if d.colour_is_label else (int(label), None)
  u = size / 64.0  # geometry is specified for 64 px and scaled
  ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5

  # Background: blend of two low-saturation colours along a random direction.
  c0 = _hsv(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.2, 0.85))
  c1 = _hsv(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.2, 0.85))
  ang = rng.uniform(0, 2 * np.pi)
  ramp = ((xs - size / 2) * np.cos(ang) + (ys - size / 2) * np.sin(ang)) / size + 0.5
  ramp = np.clip(ramp, 0, 1)[..., None]
  img = c0 * (1 - ramp) + c1 * ramp
  if d.texture:
    img = np.clip(img + _texture(xs, ys, size, rng, d.texture), 0, 1)

  def paint(sdf, col):
    nonlocal img
    alpha = np.clip(0.5 - sdf, 0, 1)[..., None]
    img = img * (1 - alpha) + col * alpha

  def clutter(n):
    for _ in range(n):
      col = _hsv(rng.random(), rng.uniform(0, 1), rng.uniform(0.1, 1))
      if rng.random() < 0.7:  # line segment
        a = rng.uniform(0, size, 2)
        b = a + rng.normal(0, 14 * u, 2)
        dist = _segment_dist(xs, ys, a[0], a[1], b[0], b[1])
        w = rng.uniform(0.4, 1.0) * u
      else:  # small dot
        a = rng.uniform(0, size, 2)
        dist = np.sqrt((xs - a[0]) ** 2 + (ys - a[1]) ** 2)
        w = rng.uniform(1.0, 2.5) * u
      paint(dist - w, col)

  clutter(rng.integers(*d.clutter))

  # The object (the class), jittered.
  cx, cy = rng.uniform(*d.centre, 2) * size
  r = rng.uniform(*d.radius) * u
  th = rng.uniform(-d.rotation, d.rotation)
  x, y = xs - cx, ys - cy
  xr = np.cos(th) * x + np.sin(th) * y
  yr = -np.sin(th) * x + np.cos(th) * y
  sdf = _SDFS[d.shapes[shape]](xr, yr, r)
  hue = rng.random() if colour is None else COLOUR_HUES[colour] + rng.uniform(-0.05, 0.05)
  obj = _hsv(hue, rng.uniform(0.6, 1.0), rng.uniform(0.55, 1.0))
  # Mild shading across the object.
  shade = 1 + 0.25 * ((xr * np.cos(ang) + yr * np.sin(ang)) / (r + 1e-6))[..., None]
  paint(sdf, np.clip(obj * shade, 0, 1))

  clutter(rng.integers(*d.front_clutter))  # some in front (occlusion)
  for _ in range(rng.integers(0, d.occluders + 1) if d.occluders else 0):
    ox, oy = (cx, cy) + rng.normal(0, 0.8 * r, 2)
    oa = rng.uniform(0, np.pi)
    ex, ey = xs - ox, ys - oy
    patch = _box(np.cos(oa) * ex + np.sin(oa) * ey, -np.sin(oa) * ex + np.cos(oa) * ey,
                 *rng.uniform(0.15, 0.45, 2) * r)
    paint(patch, _hsv(rng.random(), rng.uniform(0, 1), rng.uniform(0.1, 1)))

  # Illumination: gradient, global brightness and a per-channel colour cast.
  ang2 = rng.uniform(0, 2 * np.pi)
  grad = ((xs - size / 2) * np.cos(ang2) + (ys - size / 2) * np.sin(ang2)) / size
  light = 1 + rng.uniform(0, d.light) * grad
  img = img * light[..., None] * rng.uniform(*d.brightness)
  img = img * rng.uniform(1 - d.cast, 1 + d.cast, 3).astype(np.float32)
  img = img * 255.0 + rng.normal(0, d.noise, img.shape)
  return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def example(split: str, index: int, size: int, seed: int,
            difficulty: str = 'easy') -> tuple[np.ndarray, int]:
  """(image uint8 (size, size, 3), label) of example `index` of `split`.

  Pure function of its arguments. Labels cycle through the classes so every
  class has the same count (within 1).
  """
  d = DIFFICULTIES[difficulty]
  rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
  label = index % d.num_classes
  return render(label, size, rng, d), label


def colour_histogram_accuracy(difficulty: str = 'easy', num_train: int = 600, num_val: int = 300,
                              size: int = 32, bins: int = 4, seed: int = 0) -> float:
  """Validation accuracy of a nearest-class-mean classifier on colour histograms (diagnostic).

  Each image is described by the fraction of its pixels in each of bins**3 RGB
  cells; how far that beats chance (1 / num_classes) is what colour alone
  says about the label.
  """
  def feats(split, n):
    xs, ys = [], []
    for i in range(n):
      im, lab = example(split, i, size, seed, difficulty)
      cells = (im.reshape(-1, 3).astype(np.int64) * bins) // 256
      flat = (cells[:, 0] * bins + cells[:, 1]) * bins + cells[:, 2]
      xs.append(np.bincount(flat, minlength=bins ** 3) / len(flat))
      ys.append(lab)
    return np.array(xs), np.array(ys)
  xt, yt = feats('train', num_train)
  xv, yv = feats('validation', num_val)
  classes = DIFFICULTIES[difficulty].num_classes
  means = np.stack([xt[yt == c].mean(0) for c in range(classes)])
  pred = np.argmin(((xv[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
  return float((pred == yv).mean())


@dataclasses.dataclass(eq=False)
class ShapesConfig(tfds.core.BuilderConfig):
  """Builder config: stored side, split sizes, generation seed and difficulty."""
  image_size: int = 64
  num_train: int = 5000
  num_validation: int = 1000
  seed: int = 0
  difficulty: str = 'easy'


def shapes_config(*, image_size: int, num_train: int, num_validation: int,
                  seed: int, difficulty: str = 'easy') -> ShapesConfig:
  """A config whose name encodes its parameters (so each has its own folder)."""
  suffix = '' if difficulty == 'easy' else f'_{difficulty}'
  return ShapesConfig(
      name=f's{image_size}_n{num_train}_v{num_validation}_seed{seed}{suffix}',
      description=(f'{image_size}x{image_size} JPEG, {num_train} train / '
                   f'{num_validation} validation images, seed {seed}, {difficulty}'),
      image_size=image_size, num_train=num_train, num_validation=num_validation, seed=seed,
      difficulty=difficulty)


class AlexnetShapes(tfds.core.GeneratorBasedBuilder):
  """Coloured shapes in clutter (12 classes), rendered offline from a seed."""

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
            'label': tfds.features.ClassLabel(
                names=list(DIFFICULTIES[self.builder_config.difficulty].class_names)),
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
      image, label = example(split, i, cfg.image_size, cfg.seed, cfg.difficulty)
      jpeg = tf.io.encode_jpeg(image, quality=90).numpy()
      yield i, {'image': jpeg, 'label': label}
