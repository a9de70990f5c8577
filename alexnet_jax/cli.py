"""What every command-line program shares: the config flag, short errors, quiet logs.

A program (`alexnet_jax/main.py`, `benchmark.py`, `prepare.py`, ...) defines
its flags at module level, calls `define_config_flag()` if it reads an
experiment config, and ends with `cli.run(main)`. A user error (any
`errors.AlexNetError`, a missing config file, a misspelt `--config.<field>`)
then prints one paragraph to stderr and exits with status 1, no traceback
(`DISK_FULL_STATUS` when the disk of the workdir is full).
"""

from collections.abc import Callable
import dataclasses
import logging as std_logging
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from alexnet_jax import config as config_lib
from alexnet_jax import errors

# Exit statuses of the programs besides 0 (done): a user error (one paragraph on
# stderr), a run that a signal stopped after saving (resumable), and a run that
# stopped because its disk is full (one paragraph; resumable once there is room).
USER_ERROR_STATUS = 1
STOPPED_STATUS = 3
DISK_FULL_STATUS = 4

# The flags defined below belong to the program that asks for them (its --helpshort lists them).
flags.disclaim_key_flags()


def define_config_flag() -> None:
  """--config=PATH or NAME (a packaged experiment), with --config.<field>=value overrides."""
  config_flags.DEFINE_config_file(
      'config', None, 'An experiment config: a file (experiments/paper.py) or a packaged name '
      f'({", ".join(config_lib.experiment_names())}).', lock_config=True)


@dataclasses.dataclass(frozen=True)
class RunFlags:
  """The flags of a program that reads a trained run (evaluate, predict, features, ...)."""
  workdir: flags.FlagHolder
  step: flags.FlagHolder
  data_dir: flags.FlagHolder
  batch_size: flags.FlagHolder | None


def define_run_flags(workdir_help: str, *, batch_size: bool = True) -> RunFlags:
  """--workdir (required), --step, --data_dir and, with `batch_size`, --batch_size."""
  workdir = flags.DEFINE_string('workdir', None, workdir_help, required=True)
  step = flags.DEFINE_string('step', 'latest', "The checkpoint: a step number, 'latest' or "
                             "'best' (the lowest validation top-1 error).")
  data_dir = flags.DEFINE_string('data_dir', None, "Where the run's dataset is (default: the "
                                 "run's config.data_dir).")
  size = flags.DEFINE_integer('batch_size', None, "Images per step (default: the run's "
                              'eval_batch_size or batch_size).') if batch_size else None
  return RunFlags(workdir, step, data_dir, size)


def fail(message: str, status: int = USER_ERROR_STATUS) -> None:
  """Prints `error: message` to stderr and exits with `status`."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(status)


def _resolve_config_argument(arg: str) -> str:
  """--config=NAME -> --config=<the packaged file>; other arguments unchanged."""
  if not arg.startswith('--config='):
    return arg
  return '--config=' + config_lib.experiment_path(arg[len('--config='):])


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a short error for a missing config or a misspelt field."""
  try:
    argv = [_resolve_config_argument(a) for a in argv]
    argv = flags.FLAGS(argv)
    if 'config' in flags.FLAGS and flags.FLAGS['config'].present:
      flags.FLAGS.config.keys()  # the file loads lazily: a broken one fails here
    return argv
  except errors.AlexNetError as e:
    fail(str(e))
  except OSError as e:  # the config file is missing or does not load
    fail(str(e))
  except flags.Error as e:
    fail(f'{str(e).rstrip(".")}. Pass --helpfull to see the flags.')
  except (AttributeError, KeyError) as e:  # ml_collections: no such config field
    fail(f'the config has no field {e}; the fields and their meaning are in '
         'alexnet_jax/config.py.')


class _QuietOrbax(std_logging.Filter):
  """Keeps orbax's per-save INFO chatter out of the console; its warnings stay."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


def run(main: Callable[[list[str]], None], *, positional: bool = False) -> None:
  """`app.run(main)` with the parsing above and user errors as one paragraph.

  positional: the program takes arguments besides flags (e.g. image files).
  """

  def guarded(argv):
    if len(argv) > 1 and not positional:
      raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
    logging.get_absl_handler().addFilter(_QuietOrbax())
    try:
      main(argv)
    except errors.DiskFullError as e:
      fail(str(e), DISK_FULL_STATUS)
    except errors.AlexNetError as e:
      fail(str(e))

  app.run(guarded, flags_parser=parse_flags)
