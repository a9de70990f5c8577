"""Every error a user fixes by changing what they asked for: one family.

Programs (`python -m alexnet_jax.main` and the other commands) catch
`AlexNetError` and print its message alone, one paragraph, with exit status 1
(`cli.DISK_FULL_STATUS` for a `DiskFullError`);
library callers (notebooks) can catch the base class or a subclass. Each
subclass also derives from the built-in exception it refines, so code that
catches `ValueError` or `OSError` keeps working.
"""


class AlexNetError(Exception):
  """Base class: the message says what is wrong and what to change."""


class ConfigError(AlexNetError, ValueError):
  """The config asks for something that cannot be built (a field, a mesh, a batch size)."""


class DataError(AlexNetError):
  """The data cannot be found or read (missing archives, an empty folder, a bad file)."""


class CheckpointError(AlexNetError, ValueError):
  """A checkpoint is missing or does not fit the network the config describes."""


class UnreadableCheckpointError(CheckpointError):
  """A checkpoint's files cannot be read (truncated, missing or damaged)."""

  def __init__(self, message: str, step: int, cause: str):
    super().__init__(message)
    self.step = step  # the checkpoint's step
    self.cause = cause  # 'Type: message' of the error that reading it raised


class DiskFullError(AlexNetError, OSError):
  """The disk of the workdir is full: a checkpoint (or a log) could not be written."""


class WorkdirError(AlexNetError, OSError):
  """The workdir cannot be created or written."""


class NonFiniteLossError(AlexNetError, FloatingPointError):
  """The training loss or the parameters became NaN or infinite."""
