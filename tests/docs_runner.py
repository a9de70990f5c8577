"""Runs `python -m MODULE ARGS...` under TFDS's mock data: the stand-in for datasets CI cannot
download (ImageNet, Imagenette, CIFAR-10), used by tests/test_docs.py.

  python tests/docs_runner.py EXAMPLES MODULE ARGS...

tfds.testing.mock_data replaces every TFDS dataset read in this process by
EXAMPLES random examples per split with the dataset's real features and class
names; the program itself runs unchanged, as `python -m MODULE` would run it.
"""

import runpy
import sys

import tensorflow_datasets as tfds


def main() -> None:
  examples, module, *args = sys.argv[1:]
  sys.argv = [module, *args]
  with tfds.testing.mock_data(num_examples=int(examples)):
    runpy.run_module(module, run_name='__main__', alter_sys=True)


if __name__ == '__main__':
  main()
