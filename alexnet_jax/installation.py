"""What this installation runs on: versions, JAX's backend and devices, the machine's accelerators.

`report()` is what `python -m alexnet_jax.tools.doctor` prints.
"""

import glob
import importlib.metadata
import os
import shutil
import sys

import jax

import alexnet_jax

# The doctor's exit status when the machine has an accelerator JAX does not use
# (README, "Installation"), so that a setup script can tell it from success.
UNUSED_ACCELERATOR_STATUS = 2


def detect_accelerators(root: str = '/') -> dict[str, str]:
  """{'gpu' or 'tpu': the evidence} for the accelerators this machine shows.

  root: where /dev is looked for (tests point it at a fake tree); `nvidia-smi`
  is looked for on PATH.
  """
  found = {}
  nvidia = os.path.join(root, 'dev', 'nvidia0')
  if os.path.exists(nvidia):
    found['gpu'] = nvidia
  elif shutil.which('nvidia-smi'):
    found['gpu'] = shutil.which('nvidia-smi')
  tpu = sorted(glob.glob(os.path.join(root, 'dev', 'accel*')))
  vfio = os.path.join(root, 'dev', 'vfio')
  if tpu:
    found['tpu'] = tpu[0]
  elif os.path.isdir(vfio) and os.listdir(vfio):  # TPU v5 and later
    found['tpu'] = vfio
  return found


def unused_accelerator_warning(accelerators: dict[str, str], backend: str) -> str | None:
  """The warning for an accelerator that JAX does not use (backend 'cpu'), else None."""
  if backend != 'cpu' or not accelerators:
    return None
  kind, evidence = next(iter(accelerators.items()))
  extra = {'gpu': 'cuda12', 'tpu': 'tpu'}[kind]
  return (f'WARNING: this machine has a {kind.upper()} ({evidence}) but JAX runs on the CPU, '
          'and trains far slower. Install JAX for it: '
          f"pip install -r requirements.txt -e '.[{extra}]' (README, \"Installation\"), then "
          'run this check again.')


def _version(distribution: str) -> str:
  try:
    return importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return 'not installed'


def report() -> tuple[list[str], str | None]:
  """(the lines to print, the warning or None) for this machine and environment."""
  tensorflow = _version('tensorflow-cpu')
  if tensorflow == 'not installed':
    tensorflow = _version('tensorflow')
  accelerators = detect_accelerators()
  lines = [
      f'alexnet_jax {alexnet_jax.__version__}, Python {sys.version.split()[0]} on {sys.platform}',
      f'JAX {jax.__version__} (jaxlib {_version("jaxlib")}): backend {jax.default_backend()}, '
      f'{jax.device_count()} devices: {", ".join(str(d) for d in jax.devices())}',
      f'TensorFlow {tensorflow}, TensorFlow Datasets {_version("tensorflow-datasets")}, '
      f'array_record {_version("array-record")}',
      'accelerators on this machine: '
      + (', '.join(f'{k} ({v})' for k, v in accelerators.items()) or 'none seen'),
  ]
  return lines, unused_accelerator_warning(accelerators, jax.default_backend())
