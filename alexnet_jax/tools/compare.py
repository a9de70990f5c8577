r"""Compares finished runs: seed groups, differences to a baseline with 95% intervals, the paper.

  python -m alexnet_jax.tools.compare --workdirs=/tmp/abl/baseline,/tmp/abl/no_lrn \
      --output=/tmp/abl/compare.md
  python -m alexnet_jax.tools.compare --workdirs=/tmp/abl/baseline,/tmp/abl/no_lrn \
      --baseline=/tmp/abl/no_lrn --output=table.md

Prints Markdown tables (`alexnet_jax.analysis.compare`): the runs grouped by
config (runs that differ only in the seed form one group), each group's last
top-1 / top-5 validation error with the center crop and with ten crops (from
metrics.jsonl) as mean ± sd, the difference of its mean to the baseline
group's in points with a 95% interval, the paper's claim the group tests
(the fields its config changes against the baseline's:
alexnet_jax/ablations.py) with the paper's figure and its data, or the
confounds that make that figure not comparable; then the ten-crop gain and
any `evaluate --ensemble` results written into the runs. Writes the same to
--output. Runs evaluated on different data are refused.
"""

import os

from absl import flags

from alexnet_jax import cli
from alexnet_jax import errors
from alexnet_jax import rundir
from alexnet_jax.analysis import compare

_WORKDIRS = flags.DEFINE_list('workdirs', None, 'The runs to compare (comma-separated workdirs).',
                              required=True)
_BASELINE = flags.DEFINE_string('baseline', None, 'The run the others are compared with '
                                '(default: the first of --workdirs); with its seed group.')
_OUTPUT = flags.DEFINE_string('output', 'compare.md', 'Where the Markdown table is written.')


def main(argv):
  del argv
  groups = compare.compare(_WORKDIRS.value, _BASELINE.value)
  table = compare.markdown(groups, [e for g in groups for w in g.workdirs
                                    for e in compare.ensembles(w)])
  print(table, end='')
  try:
    rundir.atomic_write(_OUTPUT.value, lambda f: f.write(table))
  except OSError as e:
    raise errors.WorkdirError(f'Cannot write the table to {_OUTPUT.value!r}: {e.strerror}. '
                              'Choose another --output.') from None
  print(f'Written to {os.path.abspath(_OUTPUT.value)}.')


if __name__ == '__main__':
  cli.run(main)
