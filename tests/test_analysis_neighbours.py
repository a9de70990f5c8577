"""The streamed nearest-neighbour search against brute-force NumPy searches."""

import numpy as np
import pytest

from alexnet_jax import errors
from alexnet_jax.analysis import binary_codes
from alexnet_jax.analysis import neighbours


def brute_force(queries, candidates, ids, k, distance):
  """All distances at once in float64 / int, then a lexicographic (distance, id) sort."""
  dist = np.array([[distance(q, x) for x in candidates] for q in queries])
  order = np.array([np.lexsort((ids, row))[:k] for row in dist])
  return np.take_along_axis(dist, order, 1), ids[order]


def euclidean_squared(q, x):
  return float(np.sum((np.float64(q) - np.float64(x)) ** 2))


def hamming_bits(q, x):
  return int(np.sum(np.unpackbits(q) != np.unpackbits(x)))


@pytest.mark.parametrize('batch_size', [1, 7, 50, 200])
def test_euclidean_matches_brute_force_across_batches(batch_size):
  rng = np.random.default_rng(0)
  queries = rng.normal(size=(9, 32)).astype(np.float32)
  candidates = rng.normal(size=(200, 32)).astype(np.float32)
  ids = rng.permutation(1000)[:200]  # ids need not follow the stream's order
  dist, got = neighbours.search(
      queries, neighbours.array_batches(candidates, batch_size, ids), k=6)
  want_dist, want = brute_force(queries, candidates, ids, 6, euclidean_squared)
  np.testing.assert_array_equal(got, want)
  np.testing.assert_allclose(dist, want_dist, rtol=1e-5)


@pytest.mark.parametrize('batch_size', [3, 10, 64])
def test_ties_go_to_the_smaller_id_whatever_the_batching(batch_size):
  # Integer coordinates: every distance is exact in float32, and most are tied.
  rng = np.random.default_rng(1)
  queries = rng.integers(0, 3, size=(12, 4)).astype(np.float32)
  candidates = rng.integers(0, 3, size=(64, 4)).astype(np.float32)
  ids = rng.permutation(64) + 100
  dist, got = neighbours.search(
      queries, neighbours.array_batches(candidates, batch_size, ids), k=10)
  want_dist, want = brute_force(queries, candidates, ids, 10, euclidean_squared)
  assert len(np.unique(want_dist)) < want_dist.size / 3  # many ties indeed
  np.testing.assert_array_equal(dist, want_dist)
  np.testing.assert_array_equal(got, want)


def test_hamming_matches_brute_force():
  rng = np.random.default_rng(2)
  queries = rng.integers(0, 256, size=(8, 4), dtype=np.uint8)  # 32-bit codes
  candidates = rng.integers(0, 256, size=(300, 4), dtype=np.uint8)
  ids = np.arange(300)
  dist, got = neighbours.search(queries, neighbours.array_batches(candidates, 64, ids), k=7,
                                metric='hamming')
  want_dist, want = brute_force(queries, candidates, ids, 7, hamming_bits)
  np.testing.assert_array_equal(dist, want_dist)
  np.testing.assert_array_equal(got, want)


def test_packed_codes_hamming_distance_counts_differing_bits():
  bits = np.array([[1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0],
                   [0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]], bool)
  codes = binary_codes.pack(bits)
  assert codes.shape == (2, 2) and codes.dtype == np.uint8
  assert np.asarray(neighbours.hamming(codes[:1], codes))[0].tolist() == [0, 6]


def test_fewer_candidates_than_k_leave_empty_places():
  dist, ids = neighbours.search(np.zeros((1, 2), np.float32),
                                [(np.array([5, 3]), np.array([[1, 0], [2, 0]], np.float32))], k=4)
  assert ids.tolist() == [[5, 3, -1, -1]]
  np.testing.assert_array_equal(dist, [[1, 4, np.inf, np.inf]])


def test_bad_arguments_are_user_errors():
  with pytest.raises(errors.ConfigError, match='cosine'):
    neighbours.RunningTopK(np.zeros((1, 2)), 3, 'cosine')
  top = neighbours.RunningTopK(np.zeros((1, 2), np.float32), 3)
  with pytest.raises(errors.DataError, match='ids'):
    top.add(np.array([-1]), np.zeros((1, 2), np.float32))
