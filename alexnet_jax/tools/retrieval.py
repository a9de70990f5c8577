r"""Image retrieval by short binary codes of fc7 (section 6.1), against search on fc7 itself.

  python -m alexnet_jax.tools.retrieval --workdir=/tmp/alexnet_demo --bits=64
  python -m alexnet_jax.tools.retrieval --workdir=/tmp/alexnet_demo --bits=32 --k=5

Trains an auto-encoder with a binarized bottleneck on the fc7 vectors of the
training split, then retrieves, for every validation image, the k training
images with the nearest codes (Hamming) and with the nearest fc7 vectors
(Euclidean), and reports precision@k (the fraction of retrieved images of the
query's class) with each search's time and memory. Prints a table and writes
<workdir>/retrieval/bits<N>.json. The work is done by
`alexnet_jax.analysis.retrieval_report`.

Memory: the training split's fc7 vectors are held on the host (N x fc_features
x 4 bytes: 21 GB for ImageNet's 1.28M x 4096); --max_train_examples bounds them.
"""

import os

from absl import flags

from alexnet_jax import cli
from alexnet_jax import rundir
from alexnet_jax.analysis import retrieval

_RUN = cli.define_run_flags('A training run (python -m alexnet_jax.main).')
_BITS = flags.DEFINE_integer('bits', 64, 'Code length in bits (a multiple of 8).', lower_bound=8)
_K = flags.DEFINE_integer('k', 10, 'Images retrieved per query.', lower_bound=1)
_TRAIN_STEPS = flags.DEFINE_integer('train_steps', 2000, 'Auto-encoder training steps.',
                                    lower_bound=1)
_MAX_TRAIN = flags.DEFINE_integer('max_train_examples', None,
                                  'Use only the first N training images (default: all).')
_MAX_QUERIES = flags.DEFINE_integer('max_queries', None,
                                    'Use only the first N validation images (default: all).')
_SEARCH_BATCH = flags.DEFINE_integer('search_batch_size', 4096,
                                     'Candidates per step of the searches.', lower_bound=1)
flags.register_validator('bits', lambda bits: bits % 8 == 0, '--bits must be a multiple of 8.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the auto-encoder.')


def main(argv):
  del argv
  run = rundir.open_run(_RUN.workdir.value, _RUN.step.value)
  out_dir = os.path.join(run.workdir, rundir.RETRIEVAL_DIR)
  rundir.check_out_dir(out_dir)
  report = retrieval.retrieval_report(
      run, _BITS.value, k=_K.value, train_steps=_TRAIN_STEPS.value,
      max_train_examples=_MAX_TRAIN.value, max_queries=_MAX_QUERIES.value,
      search_batch_size=_SEARCH_BATCH.value, batch_size=_RUN.batch_size.value,
      data_dir=_RUN.data_dir.value, seed=_SEED.value)
  os.makedirs(out_dir, exist_ok=True)
  path = rundir.write_json(os.path.join(out_dir, f'bits{_BITS.value}.json'), report)
  print(f"{report['queries']} validation queries against {report['train_examples']} training "
        f"images, step {report['step']}, k={report['k']}, {report['backend']}; chance precision "
        f"{report['chance_precision']:.3f}")
  print(f"{'search':<28} {'precision@k':>11} {'seconds':>9} {'index MB':>9} {'working MB':>10}")
  rows = [(f"Hamming, {report['bits']}-bit codes", report['hamming']),
          (f"Euclidean, {report['fc7_features']}-d fc7", report['euclidean'])]
  for name, r in rows:
    print(f"{name:<28} {r['precision_at_k']:>11.3f} {r['seconds']:>9.3f} "
          f"{r['index_bytes'] / 1e6:>9.2f} {r['working_bytes'] / 1e6:>10.2f}")
  print(path)


if __name__ == '__main__':
  cli.run(main)
