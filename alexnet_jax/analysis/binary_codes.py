"""Short binary codes of fc7 vectors learned with an auto-encoder (section 6.1), and retrieval.

Section 6.1: "Computing similarity by using Euclidean distance between two
4096-dimensional, real-valued vectors is inefficient, but it could be made
efficient by training an auto-encoder to compress these vectors to short
binary codes." `CodeAutoEncoder` maps a (standardized) fc7 vector through a
hidden layer to `bits` units whose signs are the code; the decoder
reconstructs the vector from the +-1 code. The sign has no gradient, so
training passes the gradient straight through it (`straight_through_sign`).
`precision_at_k` compares retrieval by Hamming distance between codes with
retrieval by Euclidean distance between the raw fc7 vectors
(`alexnet_jax.analysis.neighbours`).

Nothing here imports TensorFlow.
"""

import dataclasses
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from alexnet_jax import errors
from alexnet_jax.analysis import neighbours


def straight_through_sign(x: jax.Array) -> jax.Array:
  """+1 where x >= 0, else -1; its gradient is taken as the identity's (straight-through)."""
  sign = jnp.where(x >= 0, 1.0, -1.0).astype(x.dtype)
  return x + jax.lax.stop_gradient(sign - x)


class CodeAutoEncoder(nn.Module):
  """fc7 (N, D) -> code logits (N, bits) -> +-1 code -> reconstruction (N, D).

  Call returns (reconstruction, code logits); `encode` returns the logits
  alone (their signs are the code).
  """
  bits: int
  features: int
  hidden: int = 512

  def setup(self):
    self.enc_hidden = nn.Dense(self.hidden)
    self.enc_code = nn.Dense(self.bits)
    self.dec_hidden = nn.Dense(self.hidden)
    self.dec_out = nn.Dense(self.features)

  def encode(self, x: jax.Array) -> jax.Array:
    return self.enc_code(nn.relu(self.enc_hidden(x)))

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    # tanh keeps the logits where the straight-through gradient is meaningful.
    logits = jnp.tanh(self.encode(x))
    code = straight_through_sign(logits)
    return self.dec_out(nn.relu(self.dec_hidden(code))), logits


@dataclasses.dataclass(frozen=True)
class Standardizer:
  """Per-feature mean and standard deviation of the training vectors: x -> (x - mean) / std."""
  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def fit(cls, vectors: np.ndarray) -> 'Standardizer':
    mean = vectors.mean(axis=0, dtype=np.float64)
    std = vectors.std(axis=0, dtype=np.float64)
    return cls(mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32))

  def __call__(self, vectors: np.ndarray) -> np.ndarray:
    return ((vectors - self.mean) / self.std).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class TrainedCoder:
  """An auto-encoder fitted to a set of fc7 vectors; `codes(vectors)` packs their bits."""
  model: CodeAutoEncoder
  params: dict
  standardizer: Standardizer
  final_loss: float

  def codes(self, vectors: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """(N, D) fc7 vectors -> (N, bits / 8) uint8 packed codes."""
    encode = jax.jit(lambda p, x: self.model.apply({'params': p}, x, method='encode') >= 0)
    bits = [np.asarray(encode(self.params, self.standardizer(vectors[i:i + batch_size])))
            for i in range(0, len(vectors), batch_size)]
    return pack(np.concatenate(bits) if bits else np.zeros((0, self.model.bits), bool))


def pack(bits: np.ndarray) -> np.ndarray:
  """(N, bits) bool -> (N, bits / 8) uint8, 8 bits to a byte (most significant first)."""
  return np.packbits(bits, axis=1)


def train_coder(vectors: np.ndarray, bits: int, *, steps: int = 2000, batch_size: int = 256,
                learning_rate: float = 1e-3, hidden: int = 512, seed: int = 0) -> TrainedCoder:
  """Fits a `CodeAutoEncoder` with `bits`-bit codes to (N, D) vectors by mean squared error.

  Adam on minibatches drawn with replacement from the standardized vectors.
  """
  if bits < 8 or bits % 8:
    raise errors.ConfigError(f'The code length must be a positive multiple of 8 bits, got '
                             f'{bits}.')
  if len(vectors) < 2:
    raise errors.DataError(f'Training the auto-encoder needs at least 2 vectors, got '
                           f'{len(vectors)}.')
  standardizer = Standardizer.fit(vectors)
  data = jnp.asarray(standardizer(vectors))
  model = CodeAutoEncoder(bits=bits, features=vectors.shape[1], hidden=hidden)
  init_key, data_key = jax.random.split(jax.random.key(seed))
  params = model.init(init_key, data[:1])['params']
  tx = optax.adam(learning_rate)
  opt_state = tx.init(params)

  def loss_fn(p, x):
    reconstruction, _ = model.apply({'params': p}, x)
    return jnp.mean((reconstruction - x) ** 2)

  @jax.jit
  def step(p, o, key):
    x = data[jax.random.randint(key, (batch_size,), 0, data.shape[0])]
    loss, grads = jax.value_and_grad(loss_fn)(p, x)
    updates, o = tx.update(grads, o, p)
    return optax.apply_updates(p, updates), o, loss

  loss = jnp.nan
  for i in range(steps):
    params, opt_state, loss = step(params, opt_state, jax.random.fold_in(data_key, i))
  return TrainedCoder(model, params, standardizer, float(loss))


def precision_at_k(query_labels: np.ndarray, neighbour_ids: np.ndarray,
                   candidate_labels: np.ndarray) -> float:
  """Mean over queries of the fraction of their k neighbours with the query's label."""
  return float(np.mean(candidate_labels[neighbour_ids] == query_labels[:, None]))


def chance_precision(query_labels: np.ndarray, candidate_labels: np.ndarray) -> float:
  """Expected precision of neighbours drawn at random: sum over classes of p_query * p_candidate."""
  classes = max(query_labels.max(), candidate_labels.max()) + 1
  p_query = np.bincount(query_labels, minlength=classes) / len(query_labels)
  p_candidate = np.bincount(candidate_labels, minlength=classes) / len(candidate_labels)
  return float(np.sum(p_query * p_candidate))


def timed_search(queries: np.ndarray, candidates: np.ndarray, k: int, metric: str,
                 batch_size: int) -> dict:
  """`neighbours.search` over an in-memory candidate array, timed after a warm-up batch.

  Returns {'ids': (Q, k), 'seconds': the search's wall time (compilation
  excluded), 'index_bytes': the candidates' size in memory, 'working_bytes':
  the device arrays of one merge step (the (Q, batch + k) distances and ids)}.
  """
  warm = neighbours.RunningTopK(queries, k, metric)
  warm.add(np.arange(min(batch_size, len(candidates))), candidates[:batch_size])
  tail = len(candidates) % batch_size
  if tail:  # the last, smaller batch compiles once too
    warm.add(np.arange(tail), candidates[-tail:])
  warm.result()
  start = time.perf_counter()
  _, ids = neighbours.search(queries, neighbours.array_batches(candidates, batch_size), k, metric)
  seconds = time.perf_counter() - start
  batch = min(batch_size, len(candidates))
  return {'ids': ids, 'seconds': seconds, 'index_bytes': int(candidates.nbytes),
          'working_bytes': int(len(queries) * (batch + k) * 2 * 4)}
