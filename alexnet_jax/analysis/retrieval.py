"""Section 6.1's proposal measured: retrieval by short binary codes of fc7, against fc7 itself.

    run = rundir.open_run(workdir)
    fc7, labels = retrieval.split_features(run, 'train')
    report = retrieval.retrieval_report(run, bits=64)   # codes vs fc7, precision@k

The codes are `binary_codes`'s; the searches stream with `neighbours.search`;
the passes over the data are `alexnet_jax.inference`'s.
"""

import jax
import numpy as np

from alexnet_jax import data
from alexnet_jax import inference
from alexnet_jax import rundir
from alexnet_jax.analysis import binary_codes


def split_features(run: rundir.TrainedRun, split: str, *, max_examples: int | None = None,
                   batch_size: int | None = None, data_dir: str | None = None,
                   info: data.DatasetInfo | None = None) -> tuple[np.ndarray, np.ndarray]:
  """The fc7 vectors (N, fc_features) float32 and labels (N,) of a split's first
  `max_examples` examples (all when None), in split order."""
  fc7, labels, count = [], [], 0
  for batch in inference.feature_batches(run, split, batch_size=batch_size, data_dir=data_dir,
                                         info=info):
    fc7.append(batch['fc7'])
    labels.append(batch['label'])
    count += len(batch['label'])
    if max_examples is not None and count >= max_examples:
      break
  return np.concatenate(fc7)[:max_examples], np.concatenate(labels)[:max_examples]


def retrieval_report(run: rundir.TrainedRun, bits: int, *, k: int = 10,
                     train_steps: int = 2000, max_train_examples: int | None = None,
                     max_queries: int | None = None, search_batch_size: int = 4096,
                     batch_size: int | None = None, data_dir: str | None = None,
                     seed: int = 0) -> dict:
  """Section 6.1's proposal measured: retrieval by `bits`-bit codes against raw fc7 vectors.

  Trains a `binary_codes.CodeAutoEncoder` on the fc7 vectors of the training
  split, then, for each validation query, finds the k nearest training
  examples by Hamming distance between codes and by Euclidean distance
  between fc7 vectors (both with `neighbours.search`, streamed in batches of
  `search_batch_size`), and reports precision@k (same class), the chance
  level, and each search's time and memory.

  Returns a JSON-ready dict (see `binary_codes.timed_search` for the time and
  memory fields).
  """
  info = inference.dataset_info(run, data_dir)
  train_fc7, train_labels = split_features(run, 'train', max_examples=max_train_examples,
                                           batch_size=batch_size, info=info)
  query_fc7, query_labels = split_features(run, 'validation', max_examples=max_queries,
                                           batch_size=batch_size, info=info)
  coder = binary_codes.train_coder(train_fc7, bits, steps=train_steps, seed=seed)
  train_codes, query_codes = coder.codes(train_fc7), coder.codes(query_fc7)
  searches = {
      'hamming': binary_codes.timed_search(query_codes, train_codes, k, 'hamming',
                                           search_batch_size),
      'euclidean': binary_codes.timed_search(query_fc7, train_fc7, k, 'euclidean',
                                             search_batch_size)}
  return {
      'workdir': run.workdir, 'step': run.step, 'bits': bits, 'k': k,
      'train_examples': len(train_labels), 'queries': len(query_labels),
      'fc7_features': int(train_fc7.shape[1]), 'autoencoder_steps': train_steps,
      'autoencoder_final_loss': coder.final_loss,
      'chance_precision': binary_codes.chance_precision(query_labels, train_labels),
      'backend': jax.default_backend(),
      **{name: {'precision_at_k': binary_codes.precision_at_k(query_labels, s['ids'],
                                                               train_labels),
                'seconds': s['seconds'], 'index_bytes': s['index_bytes'],
                'working_bytes': s['working_bytes']}
         for name, s in searches.items()}}
