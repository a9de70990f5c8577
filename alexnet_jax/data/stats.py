"""Training-set statistics: the mean image and the PCA of RGB pixel values.

Section 2 of the paper subtracts "the mean activity over the training set from
each pixel" (a per-pixel mean image, S x S x 3), and section 4.1's lighting
augmentation uses the eigenvectors and eigenvalues of the 3x3 covariance of
RGB pixel values over the training set. Both are computed here in one
streaming pass with float64 accumulators and saved as `stats_<S>.npz` next to
the data; `load_or_compute` reuses the file when present.

Pixel scale: 0..255 (uint8 values). eigvals are in (0..255)^2 units, sorted
descending; eigvecs are unit columns (eigvecs[:, i] is component p_i), each
signed so that its entries sum to >= 0 (a sign convention only; the lighting
noise is symmetric).
"""

from collections.abc import Callable
from collections.abc import Iterable
import dataclasses
import os

from absl import logging
import numpy as np

STATS_VERSION = 1


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetStats:
  """The statistics of a training split, all in the 0..255 pixel scale.

  Attributes:
    mean_image: float32 (S, S, 3).
    eigvals: float32 (3,), descending.
    eigvecs: float32 (3, 3), columns are the components.
    covariance: float64 (3, 3), of the RGB values over all pixels.
    rgb_mean: float64 (3,).
    num_images: how many images they were computed from.
  """
  mean_image: np.ndarray = dataclasses.field(repr=False)
  eigvals: np.ndarray
  eigvecs: np.ndarray
  covariance: np.ndarray
  rgb_mean: np.ndarray
  num_images: int

  def describe(self) -> str:
    """A few lines for people: counts, the RGB mean and covariance, the PCA."""
    with np.printoptions(precision=4, suppress=True):
      return (f'images: {self.num_images}\n'
              f'mean image: {self.mean_image.shape}, overall RGB mean {self.rgb_mean}\n'
              f'RGB covariance (0..255 units):\n{self.covariance}\n'
              f'eigenvalues: {self.eigvals}  (in [0,1] units: {self.eigvals / 255.0**2})\n'
              f'eigenvectors (columns):\n{self.eigvecs}')


class StatsAccumulator:
  """Streaming float64 sums over batches of uint8 images (n, S, S, 3)."""

  def __init__(self):
    self.n_images = 0
    self.n_pixels = 0
    self.sum_image = None
    # Sums of the pixel values shifted by 128 (exact in float64, and the
    # shift keeps E[xx^T] - E[x]E[x]^T from cancelling badly).
    self.sum_x = np.zeros(3, np.float64)
    self.sum_xx = np.zeros((3, 3), np.float64)

  def update(self, images: np.ndarray) -> None:
    """Adds a batch (n, S, S, 3) or one image (S, S, 3)."""
    images = np.asarray(images)
    if images.ndim == 3:
      images = images[None]
    if self.sum_image is None:
      self.sum_image = np.zeros(images.shape[1:], np.float64)
    self.sum_image += images.sum(axis=0, dtype=np.float64)
    x = images.reshape(-1, 3).astype(np.float64) - 128.0
    self.sum_x += x.sum(axis=0)
    self.sum_xx += x.T @ x
    self.n_images += images.shape[0]
    self.n_pixels += x.shape[0]

  def result(self) -> DatasetStats:
    """The statistics of every image added so far (at least one)."""
    if not self.n_images:
      raise ValueError('no images seen')
    mean_image = (self.sum_image / self.n_images).astype(np.float32)
    m = self.sum_x / self.n_pixels
    cov = self.sum_xx / self.n_pixels - np.outer(m, m)  # population covariance
    eigvals, eigvecs = pca(cov)
    return DatasetStats(mean_image=mean_image, eigvals=eigvals, eigvecs=eigvecs, covariance=cov,
                        rgb_mean=m + 128.0, num_images=self.n_images)


def pca(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(eigvals float32 (3,) descending, eigvecs float32 (3, 3) columns) of a covariance."""
  w, v = np.linalg.eigh(np.asarray(cov, np.float64))
  order = np.argsort(w)[::-1]
  w, v = w[order], v[:, order]
  v = v * np.where(v.sum(axis=0) < 0, -1.0, 1.0)
  return np.maximum(w, 0).astype(np.float32), v.astype(np.float32)


def compute(batches: Iterable[np.ndarray]) -> DatasetStats:
  """The statistics of uint8 (n, S, S, 3) batches."""
  acc = StatsAccumulator()
  for b in batches:
    acc.update(b)
  return acc.result()


def save(stats: DatasetStats, path: str) -> None:
  """Writes `stats` to `path` (.npz) atomically: a crash never leaves a half-written file."""
  tmp = path + '.tmp.npz'
  np.savez(tmp, version=STATS_VERSION, mean_image=stats.mean_image, eigvals=stats.eigvals,
           eigvecs=stats.eigvecs, covariance=stats.covariance, rgb_mean=stats.rgb_mean,
           num_images=stats.num_images)
  os.replace(tmp, path)


def load(path: str) -> DatasetStats:
  """The statistics `save` wrote to `path`."""
  with np.load(path) as z:
    return DatasetStats(mean_image=z['mean_image'], eigvals=z['eigvals'], eigvecs=z['eigvecs'],
                        covariance=z['covariance'], rgb_mean=z['rgb_mean'],
                        num_images=int(z['num_images']))


def stats_path(directory: str, image_size: int) -> str:
  """The file of the statistics of S x S images in `directory`: stats_<S>.npz."""
  return os.path.join(directory, f'stats_{image_size}.npz')


def load_or_compute(directory: str, image_size: int,
                    batches_fn: Callable[[], Iterable[np.ndarray]], *,
                    force: bool = False) -> DatasetStats:
  """Loads `stats_<S>.npz` from `directory`, or computes and saves it.

  Args:
    directory: where the file is (or will be).
    image_size: S.
    batches_fn: () -> iterable of uint8 (n, S, S, 3) batches of the training
      split, called only when computing.
    force: compute (and overwrite the file) even when it exists.
  """
  path = stats_path(directory, image_size)
  if os.path.exists(path) and not force:
    return load(path)
  logging.info('Computing the mean image and the RGB PCA over the training split -> %s', path)
  stats = compute(batches_fn())
  os.makedirs(directory, exist_ok=True)
  save(stats, path)
  return stats
