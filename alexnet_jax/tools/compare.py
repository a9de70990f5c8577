r"""Compares finished runs: final errors, differences to a baseline, the paper's figures.

  python -m alexnet_jax.tools.compare --workdirs=/tmp/abl/baseline,/tmp/abl/no_lrn \
      --output=/tmp/abl/compare.md
  python -m alexnet_jax.tools.compare --workdirs=/tmp/abl/baseline,/tmp/abl/no_lrn \
      --baseline=/tmp/abl/no_lrn --output=table.md

Prints a Markdown table (`alexnet_jax.analysis.compare`): each run's last top-1 /
top-5 validation error with the center crop and with ten crops (from its
metrics.jsonl), the difference to the baseline in points, and beside it the
difference the paper reports for the claim the run tests (looked up from the
fields its config changes against the baseline's: alexnet_jax/ablations.py),
and writes the table to --output. Runs on different data are refused.
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
                                '(default: the first of --workdirs).')
_OUTPUT = flags.DEFINE_string('output', 'compare.md', 'Where the Markdown table is written.')


def main(argv):
  del argv
  table = compare.markdown(compare.compare(_WORKDIRS.value, _BASELINE.value))
  print(table, end='')
  try:
    rundir.atomic_write(_OUTPUT.value, lambda f: f.write(table))
  except OSError as e:
    raise errors.WorkdirError(f'Cannot write the table to {_OUTPUT.value!r}: {e.strerror}. '
                              'Choose another --output.') from None
  print(f'Written to {os.path.abspath(_OUTPUT.value)}.')


if __name__ == '__main__':
  cli.run(main)
