"""Release files agree with each other, and no tracked file holds internal notes."""

import configparser
import importlib.metadata
import pathlib
import re
import subprocess

import yaml

import alexnet_jax

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_license_is_the_apache_2_text():
  """The same text as the Apache-2.0 LICENSE that JAX ships."""
  license_text = (REPO / 'LICENSE').read_text()
  jax_license = importlib.metadata.distribution('jax').read_text('licenses/LICENSE')
  assert license_text == jax_license
  assert 'Apache License' in license_text and 'Version 2.0, January 2004' in license_text


def test_one_version_everywhere():
  setup = configparser.ConfigParser()
  setup.read(REPO / 'setup.cfg')
  assert setup['metadata']['version'] == 'attr: alexnet_jax.__version__'
  assert importlib.metadata.version('alexnet_jax') == alexnet_jax.__version__
  citation = yaml.safe_load((REPO / 'CITATION.cff').read_text())
  assert citation['version'] == alexnet_jax.__version__
  changelog = (REPO / 'CHANGELOG.md').read_text()
  first_release = re.search(r'^## \[([^\]]+)\]', changelog, re.MULTILINE).group(1)
  assert first_release == alexnet_jax.__version__


def test_license_and_citation_agree():
  setup = configparser.ConfigParser()
  setup.read(REPO / 'setup.cfg')
  citation = yaml.safe_load((REPO / 'CITATION.cff').read_text())
  assert setup['metadata']['license'] == citation['license'] == 'Apache-2.0'
  paper = citation['preferred-citation']
  assert paper['title'] == 'ImageNet Classification with Deep Convolutional Neural Networks'
  assert [a['family-names'] for a in paper['authors']] == ['Krizhevsky', 'Sutskever', 'Hinton']
  assert paper['year'] == 2012 and 'NIPS 2012' in paper['collection-title']
  assert citation['cff-version'] == '1.2.0' and citation['authors']


# Notes meant for the people building the project, not its users: references
# outside the repository, tracker numbers, remarks about the build machines.
INTERNAL_NOTES = re.compile('|'.join([
    r'\.\./shared', r'\bissue #?\d', r'issue #', r'\bthe first session\b',
    r"machines have no\s+internet", r"this project's machines", r'/tmp/p_\w+\.md',
]), re.IGNORECASE)


def test_no_internal_notes_in_tracked_files():
  files = subprocess.run(['git', 'ls-files'], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.split()
  if not files:  # not a git checkout (an sdist): nothing tracked to check
    return
  this_file = pathlib.Path(__file__).relative_to(REPO).as_posix()
  found = []
  for name in files:
    path = REPO / name
    if name == this_file or not path.is_file() or path.suffix in ('.png', '.jpg', '.npz'):
      continue
    text = path.read_text(errors='replace')
    found += [f'{name}: {m.group(0)!r}' for m in INTERNAL_NOTES.finditer(text)]
  assert not found, found

