"""For the multi-process tests: free ports for jax.distributed's coordinator, collision
checks, and waiting for a group of processes."""

import errno
import socket
import time

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


def wait_for_all(procs, timeout):
  """Waits until every process has ended, or one failed, or `timeout` seconds passed.

  Kills the ones still running then: after a failure their partners would wait in vain.
  """
  deadline = time.monotonic() + timeout
  try:
    while any(p.poll() is None for p in procs):
      if any(p.poll() for p in procs) or time.monotonic() > deadline:
        break
      time.sleep(0.2)
  finally:
    for p in procs:  # only our own children, by handle
      if p.poll() is None:
        p.kill()
        p.wait()
