"""The notebooks run headless from top to bottom (a short run: a few steps on a small dataset)."""

import ast
import os
import pathlib
import re
import subprocess
import sys

from nbclient import NotebookClient
import nbformat
import pytest

import alexnet_jax

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / 'notebooks'


def execute(name, tmp_path, monkeypatch):
  """Runs notebooks/<name> in a fresh kernel with the short settings; returns it executed."""
  for key, value in {'ALEXNET_NOTEBOOK_STEPS': '4', 'ALEXNET_NOTEBOOK_TRAIN_EXAMPLES': '64',
                     'ALEXNET_NOTEBOOK_EVAL_EXAMPLES': '16',
                     'ALEXNET_NOTEBOOK_DATA_DIR': str(tmp_path / 'tfds'),
                     'ALEXNET_NOTEBOOK_WORKDIR': str(tmp_path / 'run'),
                     'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3'}.items():
    monkeypatch.setenv(key, value)
  notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
  NotebookClient(notebook, timeout=240, kernel_name='python3',
                 resources={'metadata': {'path': str(tmp_path)}}).execute()
  return notebook


def text(cell, stream=('stdout', 'stderr')):
  """What a cell printed on `stream` (absl's log lines go to stderr)."""
  return ''.join(o.get('text', '') for o in cell.outputs
                 if o.output_type == 'stream' and o.name in stream)


def png_count(notebook):
  return sum('image/png' in o.get('data', {}) for cell in notebook.cells
             if cell.cell_type == 'code' for o in cell.outputs)


def test_every_notebook_starts_with_the_repository_url_and_a_colab_badge():
  for path in sorted(NOTEBOOKS.glob('*.ipynb')):
    notebook = nbformat.read(path, as_version=4)
    assert f'colab.research.google.com/github/OWNER/alexnet_jax/blob/main/notebooks/{path.name}' \
        in notebook.cells[0].source
    first_code = next(c for c in notebook.cells if c.cell_type == 'code')
    assert first_code.source.splitlines()[1].startswith('REPO_URL = ')


_OLD_JAX = r"""
import importlib.metadata, sys
real = importlib.metadata.version
importlib.metadata.version = lambda name: '0.5.3' if name in ('jax', 'jaxlib') else real(name)
try:
  exec(sys.stdin.read(), {})
except RuntimeError as e:
  print(e)
print('imported:', sorted({'jax', 'absl', 'alexnet_jax'} & set(sys.modules)))
"""


@pytest.mark.parametrize('name', ['quickstart.ipynb', 'explore.ipynb'])
def test_first_cell_stops_on_a_jax_older_than_the_floor(name):
  """The first code cell holds the package's floor and, with an older jax, stops before it
  installs or imports anything, saying how to upgrade."""
  notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
  source = next(c for c in notebook.cells if c.cell_type == 'code').source
  floors = ast.literal_eval(re.search(r'^FLOORS = (\{.*?\})', source, re.M | re.S).group(1))
  assert floors == alexnet_jax.FLOORS
  assert source.index('raise RuntimeError') < source.index("if 'google.colab' in sys.modules")
  out = subprocess.run([sys.executable, '-c', _OLD_JAX], input=source, capture_output=True,
                       text=True, timeout=60, check=True).stdout
  floor = floors['jax']
  assert out.startswith(f'This runtime has jax 0.5.3 and jaxlib 0.5.3; alexnet_jax needs jax '
                        f'and jaxlib {floor} or later.')
  assert f'!pip install -U "jax[cuda12]>={floor}"' in out and 'Restart session' in out
  assert out.strip().endswith('imported: []')


@pytest.mark.slow
def test_quickstart_trains_evaluates_and_draws(tmp_path, monkeypatch):
  notebook = execute('quickstart.ipynb', tmp_path, monkeypatch)
  code = [c for c in notebook.cells if c.cell_type == 'code']
  progress = text(code[1])
  assert 'step 4/4' in progress and 'images/s' in progress  # absl INFO lines reach the notebook
  assert "'step': 4" in code[1].outputs[-1]['data']['text/plain']
  assert 'ten crops: top-1 error' in text(code[2])
  assert png_count(notebook) == 4  # kernels, predictions, neighbours, curves
  assert sorted(os.listdir(tmp_path / 'run' / 'figures')) == [
      'curves.png', 'kernels.json', 'kernels.png', 'neighbours.png', 'predictions.png']


@pytest.mark.slow
def test_explore_classifies_and_retrieves(tmp_path, monkeypatch):
  notebook = execute('explore.ipynb', tmp_path, monkeypatch)
  code = [c for c in notebook.cells if c.cell_type == 'code']
  assert 'at step 4: 2 towers' in text(code[1])
  assert len(text(code[2], 'stdout').strip().splitlines()) == 5  # the top-5 classes of the photo
  assert text(code[3]).count('mean colour specificity') == 2
  assert png_count(notebook) == 2
  assert 'hamming  : precision@10' in text(code[4]) and 'euclidean: precision@10' in text(code[4])


@pytest.mark.parametrize('name', ['quickstart.ipynb', 'explore.ipynb'])
def test_committed_outputs_are_small_png_and_text(name):
  notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
  for cell in notebook.cells:
    for output in cell.get('outputs', []):
      assert set(output.get('data', {})) <= {'image/png', 'text/plain'}
  assert (NOTEBOOKS / name).stat().st_size < 1_500_000
