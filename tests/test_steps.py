"""The evaluation step's sums (`steps.error_sums`) against hand-counted values."""

import jax
import numpy as np

from alexnet_jax import steps


def test_error_sums_with_ties():
  """Ties go to the lower class index (lax.top_k), which the expected values spell out."""
  probs = np.array([
      [0.30, 0.30, 0.20, 0.10, 0.05, 0.05],  # label 1 tied with 0 for first: top-1 wrong
      [0.30, 0.30, 0.20, 0.10, 0.05, 0.05],  # label 0 tied with 1 for first: right
      [0.25, 0.20, 0.20, 0.15, 0.10, 0.10],  # label 5 tied with 4 for fifth: top-5 wrong
      [0.25, 0.20, 0.20, 0.15, 0.10, 0.10],  # label 4 fifth: top-5 right
      [0.10, 0.10, 0.10, 0.10, 0.10, 0.50],  # padding row: ignored
  ], np.float32)
  labels = np.array([1, 0, 5, 4, 0], np.int32)
  mask = np.array([True, True, True, True, False])
  sums = jax.tree.map(float, steps.error_sums(probs, labels, mask))
  assert sums['count'] == 4
  assert sums['top1_errors'] == 3  # rows 0, 2, 3
  assert sums['top5_errors'] == 1  # row 2
  np.testing.assert_allclose(sums['loss'], -np.log([0.30, 0.30, 0.10, 0.10]).sum(), rtol=1e-6)
