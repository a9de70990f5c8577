"""Free ports for the multi-process tests' jax.distributed coordinator, and collision checks."""

import errno
import socket

# What a process prints when jax.distributed's coordinator cannot bind its port (the
# first with gRPC's error log shown, the second with TF_CPP_MIN_LOG_LEVEL=3).
PORT_IN_USE = ('Failed to add port to server', 'Failed to start RPC server')
PORT_ATTEMPTS = 3


def free_port() -> int:
  """A port no socket is bound to now, on every interface (the coordinator binds [::]:PORT).

  Another program may still take it before the coordinator does: the caller retries.
  """
  try:
    s = socket.socket(socket.AF_INET6)
    s.bind(('::', 0))
  except OSError:  # no IPv6
    s = socket.socket(socket.AF_INET)
    s.bind(('', 0))
  with s:
    return s.getsockname()[1]


def port_taken(port: int) -> bool:
  """Whether some other socket holds `port` now (to call after our processes ended).

  Tells a coordinator that could not bind its port from other failures, whatever was
  printed (with TF_CPP_MIN_LOG_LEVEL=3 the coordinator may just crash).
  """
  for family, host in ((socket.AF_INET6, '::'), (socket.AF_INET, '')):
    try:
      with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        s.bind((host, port))
      return False
    except OSError as e:
      if e.errno == errno.EADDRINUSE:
        return True
  return False

