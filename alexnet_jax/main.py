r"""Trains AlexNet from a config file.

  python -m alexnet_jax.main --workdir=/tmp/demo --config=experiments/demo.py
  python -m alexnet_jax.main --workdir=/tmp/run --config=experiments/paper.py \
      --config.batch_size=256 --config.model.towers=1

Rerunning the same command resumes from the latest checkpoint in --workdir.
The work is done by `alexnet_jax.train.train_and_evaluate`.
"""

import logging as std_logging
import os
import sys

# TensorFlow (the input pipeline) prints C++ start-up notices; keep warnings.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from alexnet_jax import checkpoint
from alexnet_jax import data
from alexnet_jax import errors
from alexnet_jax import train

_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and logs.')
config_flags.DEFINE_config_file('config', None, 'Path to a config file in experiments/.',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])

# Errors that mean "the user asked for something that cannot be done": one
# paragraph and exit status 1 instead of a traceback.
USER_ERRORS = (errors.ConfigError, data.DataError, checkpoint.CheckpointMismatchError,
               train.WorkdirError, train.NonFiniteLossError)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a short error for a missing config file or a
  misspelt --config.<field>."""
  try:
    argv = flags.FLAGS(argv)
    flags.FLAGS.config.keys()  # loads the file (lazily loaded): fails here if it is missing
    return argv
  except OSError as e:  # the config file is missing or does not load
    print(f'error: {e}', file=sys.stderr)
  except flags.Error as e:
    print(f'error: {e}\nPass --helpfull to see the flags.', file=sys.stderr)
  except (AttributeError, KeyError) as e:  # ml_collections: no such config field
    print(f'error: the config has no field {e}; the fields and their meaning are in '
          'alexnet_jax/config.py.', file=sys.stderr)
  sys.exit(1)


class _QuietOrbax(std_logging.Filter):
  """Keeps orbax's per-save INFO chatter out of the console; its warnings stay."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  logging.get_absl_handler().addFilter(_QuietOrbax())
  try:
    result = train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)
  except USER_ERRORS as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  logging.info('Finished at step %d: %s', result['step'],
               {k: round(v, 4) for k, v in result.items() if k.startswith('eval')})


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
