"""alexnet_jax: the two-tower AlexNet of Krizhevsky, Sutskever & Hinton (2012) in JAX/Flax.

model (the network), layers (its pieces), optim (the paper's update),
parallel (towers and data over devices), data (the tf.data pipeline),
train (`train_and_evaluate`), main (the command line). See README.md.

Importing the package first checks the installed JAX stack against FLOORS,
from the distributions' metadata and without importing any of them: an older
jax would otherwise fail deep inside the package (no `jax.shard_map`) and
only when that code runs. Nothing else happens at import.
"""

import importlib.metadata
import re

# The release; setup.cfg, CITATION.cff and CHANGELOG.md name the same one.
__version__ = '0.1.0'

# The oldest versions the package runs on: setup.cfg's install_requires, the
# environment CI tests them in (.ci/floor-requirements.txt) and the notebooks'
# first cell say the same. jax 0.6.1 added `jax.shard_map` (parallel.py) and
# needs jaxlib 0.6.1; orbax-checkpoint 0.11.31 added the manager option
# lightweight_initialize (checkpoint.py's readers); flax and optax: the oldest
# releases tested, the code uses only their long-stable API.
FLOORS = {'jax': '0.6.1', 'jaxlib': '0.6.1', 'flax': '0.10.0', 'optax': '0.2.0',
          'orbax-checkpoint': '0.11.31'}


def _release(version: str) -> tuple[int, ...]:
  """The release numbers of a version string: '0.7.2.dev20250801' and '0.7.2rc1' -> (0, 7, 2).

  A pre-release or nightly counts as its release: such builds are newer than
  the previous release, which is what the floor is about.
  """
  match = re.match(r'\d+(?:\.\d+)*', version)
  return tuple(int(part) for part in match.group(0).split('.')) if match else ()


def _and(items: list[str]) -> str:
  return ', '.join(items[:-1]) + ' and ' + items[-1] if len(items) > 1 else items[0]


def _check_floors() -> None:
  """Raises ImportError, one sentence, when an installed package is older than FLOORS.

  A package that is not installed is left to the import that needs it, which
  names it.
  """
  old = []
  for name, floor in FLOORS.items():
    try:
      installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      continue
    if _release(installed) < _release(floor):
      old.append((name, installed, floor))
  if old:
    needed = ' '.join(f"'{name}>={floor}'" for name, _, floor in old)
    raise ImportError(
        f'alexnet_jax {__version__} needs '
        + _and([f'{name}>={floor}' for name, _, floor in old])
        + ', but this environment has '
        + _and([f'{name} {installed}' for name, installed, _ in old])
        + f': upgrade with pip install -U {needed} (on a GPU or TPU, jax[cuda12] or jax[tpu] '
        'in place of jax; README, "Installation").')


_check_floors()
