"""The random draws of training examples (section 4.1), a batch at a time.

Every random choice of one example is drawn from a stateless key derived from
(seed, epoch, k), k its index in the epoch, with TensorFlow's Philox-4x32-10
stream (alg='philox'), pinned so that it is the same on every machine and
TensorFlow build. The stream is defined by these TensorFlow calls, per example:

    key = [seed, 0x5EED]                                  (int64)
    key = tf.random.experimental.stateless_fold_in(key, epoch, alg='philox')
    key = tf.random.experimental.stateless_fold_in(key, k, alg='philox')
    sub_i = tf.random.experimental.stateless_fold_in(key, i, alg='philox')  (int32, i = 0, 1, 2)
    offset = tf.random.stateless_uniform([2], sub_0, 0, S - C + 1, tf.int32, 'philox')
    flip = tf.random.stateless_uniform([], sub_1, alg='philox') < 0.5
    alpha = tf.random.stateless_normal([3], sub_2, stddev=std, alg='philox')

Run per example inside tf.data, those calls cost about as much as decoding a
raw crop (some 120 small TensorFlow ops; docs/benchmarks.md). `batch_draws`
computes the same bits for a whole batch with NumPy: Philox is integer
arithmetic, reproduced here from TensorFlow's kernels (philox_random.h,
random_distributions.h) and checked against the calls above
(tests/test_data_pipeline.py). Only the normal alphas stay with TensorFlow's
kernel (`lighting_alpha`, one op per example), because their Box-Muller
transform uses the C library's logf and sincosf, which NumPy does not
reproduce bit for bit; `batch_draws` gives the Philox key and counter it needs.
"""

import numpy as np
import tensorflow as tf

# Philox-4x32-10 (Salmon et al. 2011) as TensorFlow's philox_random.h spells it.
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
# The fixed key with which a shape-[2] seed is scrambled into a key and a counter
# (stateless_random_ops.cc; random_ops_util._philox_scramble_seed).
_SCRAMBLE_KEY = (0x3EC8F720, 0x02461E29)
PHILOX = 1  # TensorFlow's RNG algorithm id of Philox (random_ops_util.Algorithm.PHILOX)
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


def _philox(key: tuple[np.ndarray, np.ndarray], counter: list[np.ndarray]) -> list[np.ndarray]:
  """The first Philox-4x32-10 block of each row: four (n,) arrays of 32-bit words.

  key: two (n,) words; counter: four (n,) words, low word first. Words are held
  in uint64 arrays (the 32x32-bit products need 64 bits) and returned so.
  """
  k0, k1 = (np.asarray(w, np.uint64) for w in key)
  c0, c1, c2, c3 = (np.asarray(w, np.uint64) for w in counter)
  for r in range(10):
    p0, p1 = c0 * _M0, c2 * _M1
    c0, c1, c2, c3 = ((p1 >> _SHIFT32) ^ c1 ^ k0, p1 & _MASK32,
                      (p0 >> _SHIFT32) ^ c3 ^ k1, p0 & _MASK32)
    if r < 9:
      k0, k1 = (k0 + _W0) & _MASK32, (k1 + _W1) & _MASK32
  return [c0, c1, c2, c3]


def _words(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(low, high) 32-bit words (in uint64) of int32/int64 values, sign-extended to 64 bits
  as TensorFlow casts a seed."""
  x = np.asarray(x).astype(np.int64).view(np.uint64)
  return x & _MASK32, x >> _SHIFT32


def _join(low: np.ndarray, high: np.ndarray) -> np.ndarray:
  """uint64 from two 32-bit words."""
  return low | (high << _SHIFT32)


def _key_counter(seed0: np.ndarray, seed1: np.ndarray) -> tuple[tuple, list]:
  """The Philox (key, counter) of each shape-[2] seed (seed0[j], seed1[j]): what
  `tf.random.stateless_*(seed=..., alg='philox')` derives before drawing."""
  (a_lo, a_hi), (b_lo, b_hi) = _words(seed0), _words(seed1)
  n = a_lo.shape[0]
  key = (np.full(n, _SCRAMBLE_KEY[0], np.uint64), np.full(n, _SCRAMBLE_KEY[1], np.uint64))
  mix = _philox(key, [a_lo, a_hi, b_lo, b_hi])
  zero = np.zeros(n, np.uint64)
  return (mix[0], mix[1]), [zero, zero, mix[2], mix[3]]


def _full_int64(seed0: np.ndarray, seed1: np.ndarray) -> np.ndarray:
  """stateless_uniform(shape=[], seed, dtype=int64) of each seed: what stateless_fold_in
  puts first in the new seed."""
  block = _philox(*_key_counter(seed0, seed1))
  return _join(block[0], block[1]).view(np.int64)  # the low word first


def batch_draws(seed: int, epoch: np.ndarray, k: np.ndarray, image_size: int,
                crop_size: int) -> tuple[np.ndarray, ...]:
  """The draws of the examples (seed, epoch[j], k[j]), as the calls in the module
  docstring make them.

  Args:
    seed: the run's seed.
    epoch, k: int64 (n,).
    image_size, crop_size: S and C.

  Returns:
    offset: int32 (n, 2), the crop's (y, x), uniform over 0..S-C (section 4.1:
      "random 224x224 patches ... from the 256x256 images").
    flip: bool (n,), a horizontal reflection with probability 1/2.
    alpha_key: uint64 (n, 1) and alpha_counter: uint64 (n, 2), the Philox key
      and counter of each example's lighting alphas (`lighting_alpha`).
  """
  k = np.asarray(k, np.int64)
  n = k.shape[0]
  # fold_in(fold_in([seed, 0x5EED], epoch), k) = (a draw that depends on the epoch only, k).
  epochs, row_epoch = np.unique(np.asarray(epoch, np.int64), return_inverse=True)
  first = _full_int64(np.array([seed], np.int64), np.array([0x5EED], np.int64))
  per_epoch = _full_int64(np.repeat(first, epochs.shape[0]), epochs)
  # sub_key(key, i) = (int32 draw of key, i): the draw is the same for every i.
  sub = _philox(*_key_counter(per_epoch[row_epoch.reshape(-1)], k))[0].astype(np.uint32)
  subs = np.tile(sub.view(np.int32), 3)
  keys, counters = _key_counter(subs, np.repeat(np.arange(3, dtype=np.int32), n))
  # Sub keys 0 and 1 draw the offsets (UniformDistribution<int32>: lo + word % range) and
  # the flip (Uint32ToFloat: a float in [1, 2) with the word's 23 low bits as its
  # mantissa, minus 1), from the first words of their blocks.
  block = _philox((keys[0][:2 * n], keys[1][:2 * n]), [c[:2 * n] for c in counters])
  span = np.uint64(image_size - crop_size + 1)
  offset = np.stack([block[0][:n] % span, block[1][:n] % span], axis=1).astype(np.int32)
  mantissa = ((block[0][n:] & np.uint64(0x7FFFFF)) | np.uint64(127 << 23)).astype(np.uint32)
  flip = mantissa.view(np.float32) - np.float32(1.0) < np.float32(0.5)
  # Sub key 2's lighting alphas: the V2 ops take key = words 0 | 1 << 32 and
  # counter = (words 0 | 1 << 32, words 2 | 3 << 32).
  alpha_key = _join(keys[0][2 * n:], keys[1][2 * n:])[:, None]
  alpha_counter = np.stack([_join(counters[0][2 * n:], counters[1][2 * n:]),
                            _join(counters[2][2 * n:], counters[3][2 * n:])], axis=1)
  return offset, flip, alpha_key, alpha_counter


def lighting_alpha(alpha_key: tf.Tensor, alpha_counter: tf.Tensor, std: float) -> tf.Tensor:
  """alpha float32 (3,) ~ N(0, std) of one example, drawn once per image and presentation
  (section 4.1), from its Philox key (1,) and counter (2,) (`batch_draws`): the bits of
  tf.random.stateless_normal([3], sub_2, stddev=std, alg='philox')."""
  rnd = tf.raw_ops.StatelessRandomNormalV2(shape=[3], key=alpha_key, counter=alpha_counter,
                                           alg=PHILOX, dtype=tf.float32)
  return rnd * std + 0.0  # as stateless_normal computes it
