"""Nearest neighbours streamed over a large set: a running top-k per query (section 6.1).

Section 6.1 of the paper compares images by the Euclidean distance between
their fc7 vectors (Figure 4, right) and proposes short binary codes compared
by Hamming distance instead. Both searches here stream the candidates (the
training set) in batches through one jitted merge step that keeps, per
query, the k best (distance, id) pairs seen so far, so memory is
O(queries x (k + batch)), never O(candidates x features).

Order: ascending distance, ties broken by the smaller id, so the result does
not depend on how the candidates were split into batches. When fewer than k
candidates were streamed the missing places hold distance inf and id -1.

Nothing here imports TensorFlow.
"""

from collections.abc import Callable
from collections.abc import Iterable
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax import errors

# Ids are carried as int32 on the device (JAX's default integer width).
_MAX_ID = np.iinfo(np.int32).max


def squared_euclidean(queries: jax.Array, candidates: jax.Array) -> jax.Array:
  """(Q, D), (B, D) float -> (Q, B) squared Euclidean distances, float32.

  |q|^2 - 2 q.x + |x|^2 with the product at full float32 precision, clipped at 0.
  """
  queries, candidates = queries.astype(jnp.float32), candidates.astype(jnp.float32)
  dots = jnp.matmul(queries, candidates.T, precision=jax.lax.Precision.HIGHEST)
  norms_q = jnp.sum(queries * queries, axis=1)
  norms_x = jnp.sum(candidates * candidates, axis=1)
  return jnp.maximum(norms_q[:, None] - 2.0 * dots + norms_x[None, :], 0.0)


def hamming(queries: jax.Array, candidates: jax.Array) -> jax.Array:
  """(Q, W), (B, W) uint8 packed codes (`binary_codes.pack`) -> (Q, B) int32 Hamming distances."""
  differing = jax.lax.population_count(jnp.bitwise_xor(queries[:, None, :], candidates[None]))
  return jnp.sum(differing.astype(jnp.int32), axis=-1)


METRICS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    'euclidean': squared_euclidean, 'hamming': hamming}


@functools.partial(jax.jit, static_argnames=('metric', 'k'))
def _merge(best_dist, best_ids, queries, candidates, candidate_ids, *, metric: str, k: int):
  """The running top-k after one more batch: sort (distance, id) pairs, keep the first k."""
  dist = METRICS[metric](queries, candidates).astype(best_dist.dtype)
  ids = jnp.broadcast_to(candidate_ids[None, :], dist.shape)
  all_dist = jnp.concatenate([best_dist, dist], axis=1)
  all_ids = jnp.concatenate([best_ids, ids], axis=1)
  # Lexicographic on (distance, id): ties go to the smaller id, whatever the batching.
  all_dist, all_ids = jax.lax.sort((all_dist, all_ids), dimension=1, num_keys=2)
  return all_dist[:, :k], all_ids[:, :k]


@dataclasses.dataclass
class RunningTopK:
  """The k nearest candidates of each query, updated batch by batch on the device.

  queries: (Q, D) float vectors for 'euclidean', (Q, W) uint8 packed codes for
  'hamming'. `add(ids, candidates)` merges a batch; `result()` returns
  (distances (Q, k), ids (Q, k)) as NumPy arrays: squared Euclidean distances
  (float32) or Hamming distances (int32, 2**31 - 1 for a missing place),
  ascending, ties by smaller id.
  """
  queries: np.ndarray
  k: int
  metric: str = 'euclidean'

  def __post_init__(self):
    if self.metric not in METRICS:
      raise errors.ConfigError(f'Unknown distance {self.metric!r}; choose one of '
                               f'{", ".join(METRICS)}.')
    if self.k < 1:
      raise errors.ConfigError(f'k must be at least 1, got {self.k}.')
    self._queries = jnp.asarray(self.queries)
    dtype = jnp.float32 if self.metric == 'euclidean' else jnp.int32
    fill = jnp.inf if self.metric == 'euclidean' else _MAX_ID
    q = self._queries.shape[0]
    self._dist = jnp.full((q, self.k), fill, dtype)
    self._ids = jnp.full((q, self.k), -1, jnp.int32)
    self._count = 0

  def add(self, ids: np.ndarray, candidates: np.ndarray) -> None:
    """Merges a batch: ids (B,) non-negative integers < 2**31, candidates (B, D) or (B, W)."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() > _MAX_ID):
      raise errors.DataError(f'Candidate ids must lie in 0..{_MAX_ID}, got {ids.min()}..'
                             f'{ids.max()}.')
    self._dist, self._ids = _merge(self._dist, self._ids, self._queries, jnp.asarray(candidates),
                                   jnp.asarray(ids, jnp.int32), metric=self.metric, k=self.k)
    self._count += len(ids)

  def result(self) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(self._dist), np.asarray(self._ids).astype(np.int64)


def search(queries: np.ndarray, batches: Iterable[tuple[np.ndarray, np.ndarray]], k: int,
           metric: str = 'euclidean') -> tuple[np.ndarray, np.ndarray]:
  """The k nearest candidates of each query over a stream of (ids, candidates) batches.

  Returns (distances (Q, k), ids (Q, k)) as `RunningTopK.result`.
  """
  top = RunningTopK(queries, k, metric)
  for ids, candidates in batches:
    top.add(ids, candidates)
  return top.result()


def array_batches(vectors: np.ndarray, batch_size: int,
                  ids: np.ndarray | None = None) -> Iterable[tuple[np.ndarray, np.ndarray]]:
  """(ids, vectors) batches of an in-memory array (ids default to the row numbers)."""
  ids = np.arange(len(vectors)) if ids is None else ids
  for start in range(0, len(vectors), batch_size):
    yield ids[start:start + batch_size], vectors[start:start + batch_size]
