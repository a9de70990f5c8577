r"""Section 6.1's figures of a trained network, as PNGs under <workdir>/figures/.

  python -m alexnet_jax.tools.figures --workdir=/tmp/alexnet_demo
  python -m alexnet_jax.tools.figures --workdir=/tmp/alexnet_demo --step=best --queries=4

Writes kernels.png (Figure 3: the conv1 kernels, tower 0's above tower 1's)
with kernels.json (each tower's colour specificity, `plots.colour_specificity`,
also printed), predictions.png (validation images and their top-5 classes,
Figure 4 left), neighbours.png (for each of those images the six training
images with the nearest fc7 vectors, Figure 4 right) and curves.png (from
metrics.jsonl). The work is done by `alexnet_jax.analysis.write_figures`.
"""

from absl import flags

from alexnet_jax import cli
from alexnet_jax import rundir
from alexnet_jax.analysis import figures

_RUN = cli.define_run_flags('A training run (python -m alexnet_jax.main).')
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Where to write (default: <workdir>/figures).')
_QUERIES = flags.DEFINE_integer('queries', 8, 'Validation images in the predictions and '
                                'neighbours figures.')
_NEIGHBOURS = flags.DEFINE_integer('neighbours', 6, 'Training images shown per query.')


def main(argv):
  del argv
  run = rundir.open_run(_RUN.workdir.value, _RUN.step.value)
  result = figures.write_figures(run, _OUT_DIR.value, queries=_QUERIES.value,
                                  neighbour_count=_NEIGHBOURS.value,
                                  batch_size=_RUN.batch_size.value, data_dir=_RUN.data_dir.value)
  print(f'conv1 colour specificity at step {run.step} (0: grey kernels, 0.82: random or '
        'one-channel, 1: pure colour):')
  for tower, values in enumerate(result['kernels']['towers']):
    print(f"  tower {tower}: mean {values['mean']:.3f}, median {values['median']:.3f}")
  for path in result['paths']:
    print(path)


if __name__ == '__main__':
  cli.run(main)
