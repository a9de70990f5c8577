"""The error a user fixes by changing the config: the CLI prints its message alone.

Raised for invalid network fields, meshes that do not fit the devices, batch
sizes that do not split, unknown policies. A ValueError subclass, so library
callers can catch either.
"""


class ConfigError(ValueError):
  """The config asks for something that cannot be built; the message says what to change."""
