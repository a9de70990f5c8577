"""Stopping: several processes agree on the step they save, and the best
checkpoint by validation error is kept besides the latest ones."""

import re
import signal
import socket
import time

from conftest import final_params
from conftest import run_main
from conftest import small_config
from conftest import small_flags
from conftest import wait_for_checkpoint
import numpy as np
import pytest

from alexnet_jax import checkpoint
from alexnet_jax import cli
from alexnet_jax import train


def _two_processes(workdir, data_dir, **overrides):
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  flags = small_flags(data_dir, **{
      'distributed.enabled': True, 'mesh.model': 2, 'distributed.num_processes': 2,
      'distributed.coordinator_address': f'127.0.0.1:{port}', **overrides})
  return [run_main(workdir, flags + [f'--config.distributed.process_id={i}'], wait=False)
          for i in range(2)]


def _finish(procs, timeout=240):
  try:
    return [p.communicate(timeout=timeout)[0] for p in procs]
  finally:
    for p in procs:
      p.kill()


@pytest.mark.slow
def test_two_processes_signalled_at_different_steps_save_one_step_and_resume_exactly(
    data_dir, tmp_path):
  """SIGINT to process 0, then a second later SIGTERM to process 1: both stop at
  the same step (JAX's preemption service), save it, exit 3; resumed, they end
  with the parameters of a run that never stopped (one process, one device,
  same seeded data)."""
  workdir = str(tmp_path / 'run')
  procs = _two_processes(workdir, data_dir, num_train_steps=100000)
  wait_for_checkpoint(workdir, 3, procs[0])
  procs[0].send_signal(signal.SIGINT)
  time.sleep(1.0)
  if procs[1].poll() is None:
    procs[1].send_signal(signal.SIGTERM)
  outputs = _finish(procs)
  stopped = []
  for p, out, name in zip(procs, outputs, ('SIGINT', 'SIGTERM')):
    assert p.returncode == cli.STOPPED_STATUS, out[-3000:]
    stopped.append(int(re.search(rf'Stopped at step (\d+) by {name}', out).group(1)))
  assert stopped[0] == stopped[1] == checkpoint.all_steps(workdir)[-1]
  stop_step = stopped[0]

  total = stop_step + 2
  outputs = _finish(_two_processes(workdir, data_dir, num_train_steps=total))
  assert all('Finished at step' in out for out in outputs), outputs[0][-3000:]
  reference = str(tmp_path / 'reference')
  train.train_and_evaluate(small_config(data_dir, num_train_steps=total), reference)
  step, params = final_params(workdir)
  ref_step, ref = final_params(reference)
  assert step == ref_step == total
  for name, value in ref.items():
    np.testing.assert_allclose(params[name], value, rtol=0, atol=1e-5 * np.abs(value).max(),
                               err_msg=name)
