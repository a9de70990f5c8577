r"""Checks the installation: what JAX runs on, and whether that is what the machine has.

  python -m alexnet_jax.tools.doctor

Prints the package, JAX, TensorFlow and TensorFlow Datasets versions, JAX's
backend and devices, and the accelerators the machine shows (an NVIDIA
driver: `nvidia-smi` on PATH or /dev/nvidia0; a TPU: /dev/accel* or
/dev/vfio). When it has one but JAX runs on the CPU, it prints a warning with
the install line that fixes it (README, "Installation") and exits with
status 2; otherwise 0. The checks are `alexnet_jax.installation`'s.
"""

import sys

from alexnet_jax import cli
from alexnet_jax import installation


def main(argv):
  del argv
  lines, warning = installation.report()
  print('\n'.join(lines))
  if warning:
    print(warning)
    sys.exit(installation.UNUSED_ACCELERATOR_STATUS)


if __name__ == '__main__':
  cli.run(main)
