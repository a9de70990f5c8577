"""The paper's figures of a trained network, drawn with matplotlib (Agg, no display needed).

- `kernel_mosaic` / `kernels_figure`: the conv1 kernels, tower 0's block
  above tower 1's (Figure 3), and `colour_specificity`, the measure that
  tests the paper's observation that one tower's kernels are largely
  colour-agnostic and the other's colour-specific (section 6.1).
- `predictions_figure`: images with their top-5 classes (Figure 4, left).
- `neighbours_figure`: query images and the training images nearest to them
  in fc7 space (Figure 4, right).
- `curves_figure`: training loss and validation error against epochs, with
  the learning-rate drops of section 5 marked.

Every function returns a `matplotlib.figure.Figure` (or an array) and keeps
no global pyplot state; `save_png` writes one, `figure_pixels` renders one to
an RGB array (for TensorBoard). Nothing here imports TensorFlow.
"""

from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from alexnet_jax import rundir

# Bar colours of the predictions figure: the true class red, as in Figure 4.
TRUE_CLASS_COLOUR = '#d62728'
OTHER_CLASS_COLOUR = '#1f77b4'
# The mosaic's background (gaps between kernels and between tower blocks).
BACKGROUND = 1.0


def colour_specificity(kernels: np.ndarray) -> np.ndarray:
  """How colour-specific each conv1 kernel is: its chromatic fraction, in [0, 1].

  For a kernel w (kh, kw, 3) let g be its grey part, the mean of the three
  colour weights at each position broadcast back to the three channels, and
  c = w - g its chromatic part. The measure is |c| / |w| (Frobenius norms): 0
  for a kernel that weights R, G and B alike everywhere (it sees only
  intensity: colour-agnostic), sqrt(2/3) = 0.816 for a kernel with weights in
  one channel only, 1 for one whose colour weights sum to zero at every
  position (it sees only colour). It ignores the kernel's scale. Kernels of
  independent random weights (the initialization) are near sqrt(2/3) too:
  the chromatic part is two of the three dimensions of each RGB triple.

  Args:
    kernels: conv1's kernel parameter, (towers, kh, kw, 3, kernels per tower).

  Returns:
    (towers, kernels per tower) float64; 0 for an all-zero kernel.
  """
  w = np.asarray(kernels, np.float64)
  chroma = w - w.mean(axis=3, keepdims=True)
  chroma_norm = np.sqrt(np.sum(chroma ** 2, axis=(1, 2, 3)))
  norm = np.sqrt(np.sum(w ** 2, axis=(1, 2, 3)))
  return np.divide(chroma_norm, norm, out=np.zeros_like(norm), where=norm > 0)


def kernel_tiles(kernels: np.ndarray) -> np.ndarray:
  """conv1 kernels (towers, kh, kw, 3, n) -> (towers, n, kh, kw, 3) tiles, each scaled to [0, 1].

  Each kernel is shifted and scaled by its own minimum and range (a constant
  kernel becomes mid-grey 0.5).
  """
  tiles = np.moveaxis(np.asarray(kernels, np.float64), -1, 1)
  low = tiles.min(axis=(2, 3, 4), keepdims=True)
  span = tiles.max(axis=(2, 3, 4), keepdims=True) - low
  return np.where(span > 0, (tiles - low) / np.where(span > 0, span, 1.0), 0.5)


def kernel_mosaic(kernels: np.ndarray, columns: int = 16, gap: int = 1,
                  tower_gap: int = 4) -> np.ndarray:
  """The conv1 kernels as one RGB image: a block per tower, tower 0's on top (Figure 3).

  Within a block, kernel i sits at row i // columns, column i % columns,
  with `gap` background pixels between tiles; `tower_gap` background rows
  separate the blocks. The paper's net (2 towers of 48 kernels, 11 x 11)
  gives two blocks of 3 x 16 tiles.

  Returns:
    float64 (H, W, 3) in [0, 1], background `BACKGROUND`.
  """
  tiles = kernel_tiles(kernels)
  towers, n, kh, kw, _ = tiles.shape
  columns = min(columns, n)
  rows = -(-n // columns)
  block_h = rows * kh + (rows - 1) * gap
  width = columns * kw + (columns - 1) * gap
  mosaic = np.full((towers * block_h + (towers - 1) * tower_gap, width, 3), BACKGROUND)
  for t in range(towers):
    top = t * (block_h + tower_gap)
    for i in range(n):
      y = top + (i // columns) * (kh + gap)
      x = (i % columns) * (kw + gap)
      mosaic[y:y + kh, x:x + kw] = tiles[t, i]
  return mosaic


def kernels_figure(kernels: np.ndarray, step: int | None = None) -> Figure:
  """Figure 3: `kernel_mosaic`, titled with each tower's mean `colour_specificity`."""
  mosaic = kernel_mosaic(kernels)
  specificity = colour_specificity(kernels).mean(axis=1)
  fig = Figure(figsize=(mosaic.shape[1] / 20, mosaic.shape[0] / 20 + 0.8), dpi=100)
  ax = fig.add_subplot()
  ax.imshow(mosaic, interpolation='nearest')
  ax.set_axis_off()
  towers = ', '.join(f'tower {t}: {s:.2f}' for t, s in enumerate(specificity))
  ax.set_title(f'conv1 kernels{"" if step is None else f" at step {step}"}\n'
               f'mean colour specificity {towers}', fontsize=8)
  return fig


def display_images(crops: np.ndarray, mean_crop: np.ndarray) -> np.ndarray:
  """Mean-subtracted crops (N, C, C, 3) -> displayable RGB in [0, 1] (the mean added back)."""
  return np.clip((np.asarray(crops, np.float32) + mean_crop) / 255.0, 0.0, 1.0)


def predictions_figure(images: np.ndarray, probs: np.ndarray, labels: np.ndarray,
                       class_names: Sequence[str], top: int = 5) -> Figure:
  """Figure 4, left: each image above its `top` most probable classes as bars.

  images: (N, H, W, 3) in [0, 1]; probs: (N, classes); labels: (N,) true
  classes. Each image is titled with its true class; the bars list the top
  classes, most probable first, the true class's bar in `TRUE_CLASS_COLOUR`
  when it is among them.
  """
  n = len(images)
  top = min(top, probs.shape[1])
  fig = Figure(figsize=(1.9 * n, 3.6), dpi=100)
  grid = fig.add_gridspec(2, n, height_ratios=(1.2, 1))
  for i in range(n):
    image_ax = fig.add_subplot(grid[0, i])
    image_ax.imshow(images[i], interpolation='nearest')
    image_ax.set_axis_off()
    image_ax.set_title(class_names[labels[i]], fontsize=8)
    order = np.argsort(-probs[i], kind='stable')[:top]
    bars_ax = fig.add_subplot(grid[1, i])
    colours = [TRUE_CLASS_COLOUR if c == labels[i] else OTHER_CLASS_COLOUR for c in order]
    bars_ax.barh(np.arange(top), probs[i, order], color=colours)
    bars_ax.set_yticks(np.arange(top), [class_names[c] for c in order], fontsize=6)
    bars_ax.invert_yaxis()
    bars_ax.set_xlim(0, 1)
    bars_ax.tick_params(axis='x', labelsize=6)
  fig.tight_layout()
  return fig


def neighbours_figure(query_images: np.ndarray, query_labels: np.ndarray,
                      neighbour_images: np.ndarray, neighbour_labels: np.ndarray,
                      class_names: Sequence[str]) -> Figure:
  """Figure 4, right: a row per query, the query first, then its neighbours, nearest first.

  query_images: (Q, H, W, 3) in [0, 1]; neighbour_images: (Q, k, H, W, 3);
  labels: (Q,) and (Q, k). Titles name the classes.
  """
  q, k = neighbour_labels.shape
  fig = Figure(figsize=(1.2 * (k + 1), 1.35 * q), dpi=100)
  axes = fig.subplots(q, k + 1, squeeze=False)
  for row in range(q):
    axes[row, 0].imshow(query_images[row], interpolation='nearest')
    axes[row, 0].set_title(f'query: {class_names[query_labels[row]]}', fontsize=6)
    for col in range(k):
      axes[row, col + 1].imshow(neighbour_images[row, col], interpolation='nearest')
      axes[row, col + 1].set_title(class_names[neighbour_labels[row, col]], fontsize=6)
  for ax in axes.flat:
    ax.set_axis_off()
  fig.tight_layout()
  return fig


def learning_rate_drops(rows: Sequence[dict]) -> list[int]:
  """Steps after which the learning rate was lowered: the last logged step at each old rate."""
  logged = [(r['step'], r['learning_rate']) for r in rows if 'learning_rate' in r]
  return [step for (step, rate), (_, next_rate) in zip(logged, logged[1:]) if next_rate < rate]


def curves_figure(rows: Sequence[dict], steps_per_epoch: int) -> Figure:
  """Training loss and validation top-1 / top-5 error against epochs, rate drops dashed.

  rows: metrics.jsonl's objects (`alexnet_jax.metrics`).
  """
  train = [r for r in rows if 'train_loss' in r]
  evals = [r for r in rows if 'eval_top1_error' in r]
  fig = Figure(figsize=(9, 3.2), dpi=100)
  loss_ax, error_ax = fig.subplots(1, 2)
  loss_ax.plot([r['step'] / steps_per_epoch for r in train], [r['train_loss'] for r in train])
  loss_ax.set(xlabel='epoch', ylabel='training loss')
  if train and min(r['train_loss'] for r in train) > 0:
    loss_ax.set_yscale('log')
  epochs = [r['step'] / steps_per_epoch for r in evals]
  error_ax.plot(epochs, [r['eval_top1_error'] for r in evals], marker='.', label='top-1')
  error_ax.plot(epochs, [r['eval_top5_error'] for r in evals], marker='.', label='top-5')
  error_ax.set(xlabel='epoch', ylabel='validation error', ylim=(0, 1))
  for step in learning_rate_drops(rows):
    for ax in (loss_ax, error_ax):
      ax.axvline(step / steps_per_epoch, color='grey', linestyle='--', linewidth=0.8)
  error_ax.legend(fontsize=8)
  fig.tight_layout()
  return fig


def figure_pixels(fig: Figure) -> np.ndarray:
  """Renders a figure: uint8 (H, W, 3)."""
  canvas = FigureCanvasAgg(fig)
  canvas.draw()
  return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(fig: Figure, path: str) -> None:
  """Writes `fig` as a PNG at `path` (atomically: a temporary file, then a rename)."""
  FigureCanvasAgg(fig)
  rundir.atomic_write(path, lambda f: fig.savefig(f, format='png', bbox_inches='tight'),
                    binary=True)
