"""Every command the project documents runs as written: the docs are the first test suite.

Commands are read from README.md and docs/*.md (shell blocks, and inline
`python -m alexnet_jax...` or `--config=...` spans) and from the docstrings of
the experiment configs and of the programs. Each one is

  - run as written, with only SIZE overrides appended (steps, examples, batch
    size, layer widths) and its paths moved under one temporary folder (the
    same documented path always to the same place, so that a run a document
    trains is the one its next command evaluates), against stand-ins for what
    CI cannot have: TFDS's mock data for ImageNet, Imagenette and CIFAR-10
    (tests/docs_runner.py), a folder of images written here, a hand-encoded
    caffemodel and Caffe mean file (tests/convert_reference.py);
  - or, when it is a synopsis (`--workdir=DIR [--step=N|latest|best]`),
    checked flag by flag against the program's flags;
  - or listed in EXCLUDED with the reason it cannot run here.

A documented command that is none of these fails
`test_every_documented_command_is_run_checked_or_excluded`, so a new line in
the docs cannot go untested.
"""

import ast
import concurrent.futures
import dataclasses
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import convert_reference as caffe_files
import numpy as np
import pytest

from alexnet_jax import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNNER = REPO / 'tests' / 'docs_runner.py'

# Documented commands that cannot run here, by a pattern of their text, with the reason.
EXCLUDED = {
    r'^python3 -m venv': 'creates the environment: .ci/run does exactly this before the tests',
    r'^\.venv/bin/pip install': 'installs the package: .ci/run does exactly this',
    r'-m pytest tests': 'the test suite itself: .ci/run runs it',
    r'^rm ': "deletes a user's downloaded ImageNet archives; nothing to check",
    r'tensorboard --logdir': 'starts a web server; tests/test_metrics.py reads the event files',
    r'^srun |^export |^for |^done|^PORT=|\$i|\$PORT|^wait': (
        'SLURM / several hosts / a shell loop of processes: the two-process path is run by '
        'tests/test_train.py::test_two_processes_one_tower_each_match_one_process'),
    r'coordinator_address=10\.': 'needs a second host at 10.0.0.1',
    r'tests/parallel_worker\.py': 'the multi-device test worker; tests/test_parallel.py runs it',
    r'benchmarks/shutdown\.py': ('times the full demo\'s exit (minutes); tests/test_train.py '
                                 'checks that a run leaves no input iterator alive'),
    r'--compare_torch': ('PyTorch is no dependency of the package; '
                         'tests/test_tools_benchmark.py runs the comparison where it is installed'),
}

# Documented commands whose SIZE overrides make them end otherwise: (status, what the output
# says), with the reason.
EXPECTED = {
    r'tools\.relu_vs_tanh': (1, r'is the (lowest|highest) of --rates', (
        "one epoch (SIZE) cannot tell the rates apart, so the program's check that the best "
        'rate is not at the grid\'s edge stops it, as it must; '
        'tests/test_analysis_relu_vs_tanh.py runs the sweep to a result')),
}

# Appended to every documented run of a program: sizes only.
SIZE = {
    'alexnet_jax.main': [
        '--config.num_train_steps=1', '--config.batch_size=4', '--config.eval_batch_size=4',
        '--config.ten_crop_eval=False', '--config.checkpoint_every_steps=1',
        '--config.log_every_steps=1', '--config.eval_every_steps=1',
        '--config.model.conv_features=(8,16,16,16,16)', '--config.model.fc_features=32',
        '--config.input.shapes.train_examples=32', '--config.input.shapes.eval_examples=8'],
    'alexnet_jax.tools.prepare': ['--config.input.shapes.train_examples=32',
                                  '--config.input.shapes.eval_examples=8'],
    'alexnet_jax.tools.benchmark': ['--steps=1', '--warmup=0', '--rounds=1', '--batch_size=8',
                                    '--image_size=67', '--num_classes=10'],
    'alexnet_jax.tools.evaluate': ['--batch_size=4'],
    'alexnet_jax.tools.features': ['--batch_size=4'],
    'alexnet_jax.tools.figures': ['--queries=2', '--batch_size=4'],
    'alexnet_jax.tools.retrieval': ['--train_steps=5', '--max_train_examples=16',
                                    '--max_queries=4', '--search_batch_size=8',
                                    '--batch_size=4'],
    'alexnet_jax.tools.relu_vs_tanh': ['--epochs=1', '--shapes_examples=64', '--rates=0.01,0.02'],
    'alexnet_jax.tools.bench_input': ['--images=16', '--steps=2', '--batch_size=8'],
}
MOCK_EXAMPLES = 8  # per split, for the TFDS datasets CI cannot download
MOCKED = ('imagenet2012', 'imagenette', 'cifar10')
PATH_FLAGS = ('workdir', 'workdirs', 'ensemble', 'baseline', 'out', 'output', 'data_dir',
              'config.data_dir', 'config.init_from', 'weights', 'mean', 'folder')


@dataclasses.dataclass(frozen=True)
class Documented:
  """One command line and where it is documented ('README.md:245')."""
  where: str
  text: str


def _shell_lines(block: str) -> list[str]:
  """The commands of a shell block: continuations joined, comments dropped, `&&` split."""
  lines = []
  for line in block.replace('\\\n', ' ').splitlines():
    line = re.sub(r'\s+#.*$', '', line).strip()
    if line and not line.startswith('#'):
      lines += [part.strip() for part in line.split(' && ')]
  return lines


def _markdown(path: pathlib.Path) -> list[Documented]:
  text = path.read_text()
  found = []
  for block in re.finditer(r'```(?:sh|bash|console)\n(.*?)```', text, re.S):
    line = text[:block.start()].count('\n') + 1
    cwd = None
    for command in _shell_lines(block.group(1)):
      if command.startswith('cd '):
        cwd = command[3:]
        continue
      found.append(Documented(f'{path.name}:{line}', f'cd {cwd} && {command}' if cwd else command))
  prose = re.sub(r'```.*?```', '', text, flags=re.S)
  for span in re.finditer(r'`([^`\n]*(?:python -m alexnet_jax|^--config=)[^`\n]*)`', prose, re.M):
    found.append(Documented(f'{path.name}:{prose[:span.start()].count(chr(10)) + 1}',
                            span.group(1)))
  for span in re.finditer(r'`(--config=[^`\n]+)`', prose):
    found.append(Documented(f'{path.name}:{prose[:span.start()].count(chr(10)) + 1}',
                            span.group(1)))
  return found


def _docstring(path: pathlib.Path) -> list[Documented]:
  doc = ast.get_docstring(ast.parse(path.read_text())) or ''
  return [Documented(path.relative_to(REPO).as_posix(), line)
          for line in _shell_lines(doc) if re.match(r'(\.venv/bin/)?python3? -m alexnet_jax', line)]


def documented_commands() -> list[Documented]:
  """Every command line of the README, docs/*.md and the configs' and programs' docstrings."""
  commands = []
  for path in [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]:
    commands += _markdown(path)
  programs = [REPO / 'alexnet_jax' / 'main.py', *sorted((REPO / 'alexnet_jax' / 'tools').glob(
      '[!_]*.py'))]
  for path in [*sorted((REPO / 'experiments').glob('[!_]*.py')), *programs]:
    commands += _docstring(path)
  return commands


def _excluded(text: str) -> str | None:
  return next((reason for pattern, reason in EXCLUDED.items() if re.search(pattern, text)), None)


def _needs_flags(module: str) -> bool:
  source = (REPO / (module.replace('.', '/') + '.py')).read_text()
  return 'required=True' in source or 'mark_flags_as_required' in source or (
      'define_run_flags(' in source)


def _is_synopsis(text: str) -> bool:
  """A usage line with placeholders rather than a command (DIR, FILE, [optional], a|b), or
  a mention of a program that cannot run without flags."""
  if re.search(r'\[|\||\bDIR\b|\bFILE\b|=N\b|\.\.\.|<\w+>|=PATH', text):
    return True
  mention = re.fullmatch(r'(\.venv/bin/)?python3? -m (alexnet_jax[\w.]*)', text.strip())
  return bool(mention) and _needs_flags(mention.group(2))


@dataclasses.dataclass(frozen=True)
class Command:
  """A documented command made runnable: the module, its arguments, the folder it runs in."""
  where: str
  text: str
  module: str
  args: tuple[str, ...]
  cwd: str | None  # a documented `cd DIR &&`, before moving


def parse(doc: Documented) -> Command | None:
  """The program and arguments of a runnable documented command; None for anything else."""
  text = doc.text
  cwd = None
  if text.startswith('cd '):
    cwd, text = text[3:].split(' && ', 1)
  if text.startswith('--config='):  # a fragment of the main command, as the README gives it
    name = re.sub(r'\W+', '_', text.split('--config=')[1].split()[0])
    text = f'python -m alexnet_jax.main --workdir=/tmp/{name}_run {text}'
  words = shlex.split(text)
  if len(words) < 3 or not re.fullmatch(r'(\.venv/bin/)?python3?', words[0]) or words[1] != '-m':
    return None
  if not words[2].startswith('alexnet_jax.'):
    return None
  return Command(doc.where, doc.text, words[2], tuple(words[3:]), cwd)


def _flag(args, name: str) -> str | None:
  """The value of --name=value in args (the last one), or None."""
  values = [a.split('=', 1)[1] for a in args if a.startswith(f'--{name}=')]
  return values[-1] if values else None


class Stand:
  """Where the documented paths go, the stand-in datasets and files, and what ran."""

  def __init__(self, root: pathlib.Path):
    self.root = root
    self.aliases = {}  # a documented path -> the one whose run stands for it
    self.private = {}  # (command text, its workdir) -> a workdir of its own
    self.data = {name: root / 'data' / name for name in ('shapes', *MOCKED, 'folder')}
    for link in ('experiments', 'benchmarks'):
      (root / link).symlink_to(REPO / link)

  def moved(self, path: str, cwd: str | None = None) -> str:
    """A documented path under the temporary folder (relative ones stay relative)."""
    path = self.aliases.get(path, path)
    if path.startswith('~'):
      path = '/home' + path[1:]
    if not path.startswith('/'):
      return str((pathlib.Path(self.moved(cwd)) if cwd else self.root) / path)
    return str(self.root / 'paths' / path.strip('/'))

  def claim(self, commands: list[Command]) -> None:
    """Gives a run its own workdir when an earlier, different command trained in the same
    documented one (the README's one-tower example and experiments/one_tower.py)."""
    owners = {}
    for index, command in enumerate(commands):
      workdir = _flag(command.args, 'workdir')
      if workdir and _writes(command, self):
        workdir = self.aliases.get(workdir, workdir)
        if owners.setdefault(workdir, command.text) != command.text:
          self.private[command.text, workdir] = f'{workdir}__{index}'

  def move_args(self, command: Command) -> list[str]:
    """The arguments with every path moved."""
    args = []
    for arg in command.args:
      name = arg[2:].split('=', 1)[0] if arg.startswith('--') else None
      if name in PATH_FLAGS and '=' in arg:
        values = [self.aliases.get(v, v) for v in arg.split('=', 1)[1].split(',')]
        values = [self.private.get((command.text, v), v) for v in values]
        arg = f'--{name}=' + ','.join(self.moved(v, command.cwd) for v in values)
      args.append(arg)
    return args


def _write_image(path: pathlib.Path, seed: int) -> None:
  import tensorflow as tf  # noqa: PLC0415 - only the stand-in images need it
  pixels = np.random.default_rng(seed).integers(0, 256, (48 + seed % 7, 64, 3), np.uint8)
  encode = tf.io.encode_png if path.suffix.lower() == '.png' else tf.io.encode_jpeg
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(encode(pixels).numpy())


def make_folder_dataset(root: pathlib.Path) -> None:
  """train/<class>/*.JPEG and val/<class>/*.JPEG: three classes of random images."""
  for split, count in (('train', 6), ('val', 2)):
    for c in range(3):
      for i in range(count):
        _write_image(root / split / f'n0000000{c}' / f'{i}.JPEG', 10 * c + i)


def _dataset(command: Command, stand: Stand, args: list[str]) -> str | None:
  """The dataset a command reads: its config's, or that of the run it opens."""
  spec = _flag(command.args, 'config')
  if spec is not None and spec != '...':
    spec = str(REPO / spec) if spec.startswith('experiments/') else spec
    return config_lib.load(spec).dataset
  if command.module.endswith('relu_vs_tanh'):
    return _flag(command.args, 'dataset') or 'shapes'
  workdir = _flag(args, 'workdir')
  if workdir and os.path.exists(os.path.join(workdir, 'config.json')):
    with open(os.path.join(workdir, 'config.json')) as f:
      return json.load(f)['dataset']
  return None


def _prepare_inputs(command: Command, stand: Stand, args: list[str]) -> list[str]:
  """Stand-ins for the files and data a command names; returns the arguments to append."""
  extra = list(SIZE.get(command.module, []))
  source = _flag(args, 'config.init_from')
  if source and json.loads((pathlib.Path(source) / 'config.json').read_text())['pretrained'][
      'source']:  # a converted network: its layers keep their published widths
    extra = [a for a in extra if not a.startswith(('--config.model.conv_features',
                                                   '--config.model.fc_features'))]
  for name in ('out', 'output'):
    if _flag(args, name):
      pathlib.Path(_flag(args, name)).parent.mkdir(parents=True, exist_ok=True)
  dataset = _dataset(command, stand, args)
  data_flag = 'config.data_dir' if command.module in (
      'alexnet_jax.main', 'alexnet_jax.tools.prepare') else 'data_dir'
  data_dir = _flag(args, data_flag)
  if dataset and data_flag == 'config.data_dir' and data_dir is None:
    data_dir = str(stand.data[dataset])
    extra.append(f'--config.data_dir={data_dir}')
  if data_dir and dataset:
    os.makedirs(data_dir, exist_ok=True)
  if dataset == 'folder' and data_dir and not os.path.isdir(os.path.join(data_dir, 'train')):
    make_folder_dataset(pathlib.Path(data_dir))
  if dataset == 'imagenet2012' and data_dir:
    manual = pathlib.Path(data_dir) / 'downloads' / 'manual'
    manual.mkdir(parents=True, exist_ok=True)
    for archive in ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar'):
      (manual / archive).touch()
  if command.module == 'alexnet_jax.tools.relu_vs_tanh' and dataset == 'cifar10':
    extra.append(f'--data_dir={stand.data["cifar10"]}')
    os.makedirs(stand.data['cifar10'], exist_ok=True)
  for arg in args:
    if arg.startswith(('--weights=', '--mean=')):
      value = arg.split('=', 1)[1]
    elif arg.startswith('-'):
      continue
    else:
      value = arg  # a positional argument: an image file
    path = pathlib.Path(value) if os.path.isabs(value) else stand.root / value
    if path.exists():
      continue
    if path.suffix.lower() in ('.jpg', '.jpeg', '.png'):
      _write_image(path, len(path.name))
    elif path.suffix == '.caffemodel':
      weights = {k: list(v) for k, v in caffe_files.random_weights(seed=0).items()}
      path.write_bytes(caffe_files.caffemodel_bytes(weights))
    elif path.suffix == '.binaryproto':
      mean = np.random.default_rng(2).uniform(0, 255, (1, 3, 256, 256)).astype(np.float32)
      path.write_bytes(caffe_files.blob_bytes(mean, legacy=True))
  return extra


@dataclasses.dataclass(frozen=True)
class Outcome:
  returncode: int
  output: str


def run(command: Command, stand: Stand) -> Outcome:
  """Runs `command` as written (paths moved, SIZE appended) in the temporary folder."""
  args = stand.move_args(command)
  args += _prepare_inputs(command, stand, args)
  dataset = _dataset(command, stand, args)
  argv = [sys.executable, '-m', command.module, *args]
  if dataset in MOCKED:
    argv = [sys.executable, str(RUNNER), str(MOCK_EXAMPLES), command.module, *args]
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': str(REPO)}
  if _flag(command.args, 'mesh_data'):  # several accelerators: simulated CPU devices
    env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
  cwd = stand.moved(command.cwd) if command.cwd else str(stand.root)
  os.makedirs(cwd, exist_ok=True)
  done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
  return Outcome(done.returncode, done.stdout + done.stderr)


def _writes(command: Command, stand: Stand) -> set[str]:
  if command.module == 'alexnet_jax.main' or _flag(command.args, 'from'):
    return {stand.moved(_flag(command.args, 'workdir') or '', command.cwd)}
  return set()


def _reads(command: Command, stand: Stand) -> set[str]:
  paths = {_flag(command.args, 'config.init_from')}
  if command.module != 'alexnet_jax.main' and not _flag(command.args, 'from'):
    paths.add(_flag(command.args, 'workdir'))
  for name in ('workdirs', 'ensemble'):
    paths |= set((_flag(command.args, name) or '').split(','))
  return {stand.moved(p, command.cwd) for p in paths if p}


def _data_key(command: Command, stand: Stand) -> str | None:
  """The stand-in data folder a command prepares on first use (None: it reads a run)."""
  if command.module not in ('alexnet_jax.main', 'alexnet_jax.tools.prepare'):
    return None
  return _flag(stand.move_args(command), 'config.data_dir') or _dataset(command, stand, [])


def run_all(commands: list[Command], stand: Stand) -> dict[str, Outcome]:
  """Runs the commands two at a time, each once every run it reads has been written; the
  first command on each data folder runs alone on it (it prepares the folder)."""
  pending = {c.text: c for c in commands}
  producers = {}
  for c in commands:
    for path in _writes(c, stand):
      producers.setdefault(path, set()).add(c.text)
  outcomes, prepared = {}, set()
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    running = {}
    while pending or running:
      busy = {_data_key(c, stand) for c in running.values()} - prepared
      for c in list(pending.values()):
        if len(running) == 2:
          break
        key = _data_key(c, stand)
        inputs_done = all(p in outcomes for path in _reads(c, stand)
                          for p in producers.get(path, ()) if p != c.text)
        if inputs_done and (key is None or key in prepared or key not in busy):
          running[pool.submit(run, c, stand)] = pending.pop(c.text)
          busy.add(key)
      if not running:  # what is left waits on runs that no command makes: run it anyway
        c = pending.pop(next(iter(pending)))
        running[pool.submit(run, c, stand)] = c
      done, _ = concurrent.futures.wait(running, return_when='FIRST_COMPLETED')
      for future in done:
        c = running.pop(future)
        outcomes[c.text] = future.result()
        prepared.add(_data_key(c, stand))
  return outcomes


def _program_flags(module: str) -> set[str]:
  """The flags a program defines, read from its source (and the shared cli definitions)."""
  path = REPO / (module.replace('.', '/') + '.py')
  source = path.read_text()
  names = set(re.findall(r"DEFINE_\w+\(\s*'(\w+)'", source))
  if 'define_config_flag()' in source:
    names.add('config')
  if 'define_run_flags(' in source:
    names |= {'workdir', 'step', 'data_dir'}
    if 'batch_size=False' not in source:
      names.add('batch_size')
  return names


def _shape(command: Command) -> tuple:
  """A command with its paths blanked and its config resolved: commands of one shape differ
  only in the folders they use, and one run stands for all of them."""
  args = []
  for arg in command.args:
    name, _, value = arg[2:].partition('=') if arg.startswith('--') else ('', '', arg)
    if name in PATH_FLAGS:
      arg = f'--{name}=' + ','.join('<path>' for _ in value.split(','))
    elif name == 'config':
      arg = '--config=' + config_lib.experiment_path(
          str(REPO / value) if value.startswith('experiments/') else value).replace(str(REPO), '')
    args.append(arg)
  return command.module, tuple(args)


def distinct(commands: list[Command]) -> tuple[list[Command], dict[str, str]]:
  """One command per shape (the first documented), and the aliases that send the
  others' workdirs to its."""
  kept, aliases = {}, {}
  for command in commands:
    first = kept.setdefault(_shape(command), command)
    if first is not command:
      for name in ('workdir', 'config.init_from'):
        mine, theirs = _flag(command.args, name), _flag(first.args, name)
        if mine and theirs and mine != theirs and not command.cwd:
          aliases[mine] = theirs
  return list(kept.values()), aliases


DOCUMENTED = documented_commands()
RUNNABLE = {d.text: parse(d) for d in DOCUMENTED
            if not _excluded(d.text) and not _is_synopsis(d.text) and parse(d)}
DISTINCT, ALIASES = distinct(list(RUNNABLE.values()))


def test_every_documented_command_is_run_checked_or_excluded():
  neither = [f'{d.where}: {d.text}' for d in DOCUMENTED
             if not (_excluded(d.text) or _is_synopsis(d.text) or parse(d))]
  assert neither == [], 'add these to EXCLUDED with the reason, or make them runnable'
  assert len(RUNNABLE) >= 30  # the extraction itself keeps working


@pytest.mark.parametrize('doc', [d for d in DOCUMENTED if _is_synopsis(d.text)
                                 and not _excluded(d.text) and parse(d)],
                         ids=lambda d: f'{d.where}')
def test_synopsis_names_only_real_flags(doc):
  command = parse(doc)
  if '<' in command.module:  # a family: `python -m alexnet_jax.tools.<name>`
    assert (REPO / command.module.split('<')[0].replace('.', '/')).is_dir(), doc.where
    return
  named = {re.split(r'[=\[\]| ]', a[2:])[0] for a in command.args if a.startswith('--')}
  named = {n.split('.')[0] for n in named if n}
  assert named - _program_flags(command.module) == set(), doc.where


@dataclasses.dataclass(frozen=True)
class Ran:
  """Every distinct documented command, run once per session: where its paths went, and how
  each ended."""
  stand: Stand
  outcomes: dict[str, Outcome]

  def workdir(self, documented: str) -> pathlib.Path:
    """Where the run a document calls `documented` (e.g. '/tmp/alexnet_demo') went."""
    return pathlib.Path(self.stand.moved(documented))

  def output(self, pattern: str) -> str:
    """The output of the one distinct command whose text matches `pattern`."""
    found = [o.output for text, o in self.outcomes.items() if re.search(pattern, text)]
    assert len(found) == 1, (pattern, len(found))
    return found[0]


@pytest.fixture(scope='module')
def ran(tmp_path_factory) -> Ran:
  stand = Stand(tmp_path_factory.mktemp('docs'))
  stand.aliases.update(ALIASES)
  stand.claim(DISTINCT)
  return Ran(stand, run_all(DISTINCT, stand))


@pytest.mark.slow
@pytest.mark.parametrize('command', DISTINCT, ids=lambda c: f'{c.where} {c.text[:80]}')
def test_documented_command_runs_as_written(ran, command):
  """Each distinct command (the others of its shape differ only in their folders)."""
  outcome = ran.outcomes[command.text]
  where, text = command.where, command.text
  status, says, _ = next((e for p, e in EXPECTED.items() if re.search(p, text)), (0, '', ''))
  assert outcome.returncode == status, f'{where}: {text}\n{outcome.output}'
  assert re.search(says, outcome.output), f'{where}: {text}\n{outcome.output}'
  assert 'Traceback' not in outcome.output, f'{where}: {text}\n{outcome.output}'


# The journeys a user takes through the documented commands, each ending in values.

def _final_evaluation(workdir: pathlib.Path) -> dict:
  rows = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  last = max(r['step'] for r in rows)
  return {k: v for r in rows if r['step'] == last for k, v in r.items()}


def _predictions(output: str) -> list[tuple[float, str]]:
  """(probability, class) of each line `predict` prints for a file, in printed order."""
  return [(float(p) / 100, name) for p, name in re.findall(r'^\s+([\d.]+)%\s+(.+?)\s*$',
                                                         output, re.M)]


@pytest.mark.slow
def test_journey_own_photos_train_evaluate_predict(ran):
  """README "Your own photos": the folder run's evaluation equals its own final one, and
  predict ranks the folder's classes, most probable first."""
  workdir = ran.workdir('/tmp/my_photos')
  final = _final_evaluation(workdir)
  (report,) = (workdir / 'eval').glob('validation-step*.json')
  center = json.loads(report.read_text())['results']['center']
  assert center['top1_error'] == final['eval_top1_error']
  assert center['loss'] == final['eval_loss']
  classes = json.loads((workdir / 'class_names.json').read_text())['class_names']
  ranked = _predictions(ran.output(r'tools\.predict --workdir=/tmp/my_photos'))
  assert len(ranked) == min(5, len(classes))
  assert [p for p, _ in ranked] == sorted((p for p, _ in ranked), reverse=True)
  assert all(any(c in name for c in classes) for _, name in ranked)
  assert sum(p for p, _ in ranked) <= 1.0001


@pytest.mark.slow
def test_journey_pretrain_conv6_then_finetune(ran):
  """experiments/finetune.py: the fine-tune restores every pre-trained layer but the output
  layer (conv1-conv6, fc6, fc7: 16 tensors; fc8 of other classes starts afresh), and both
  it and the run from scratch finish with an evaluation."""
  output = ran.output(r'finetune\.py:demo\s+--config\.init_from')
  assert re.search(r'restored 16 parameters, kept the initialization of 2\b', output), output
  for run in ('/tmp/finetune_demo', '/tmp/scratch_demo'):
    assert 0 <= _final_evaluation(ran.workdir(run))['eval_top1_error'] <= 1


@pytest.mark.slow
def test_journey_trained_run_figures_retrieval(ran):
  """README "Figures and retrieval" on the demo run: the files named, kernels.json's two
  towers' colour specificity in [0, 1], and the retrieval report's figures."""
  figures = ran.workdir('/tmp/alexnet_demo') / 'figures'
  assert {p.name for p in figures.iterdir()} >= {'kernels.png', 'kernels.json',
                                                  'predictions.png', 'neighbours.png'}
  towers = json.loads((figures / 'kernels.json').read_text())['towers']
  assert [len(t['per_kernel']) for t in towers] == [4, 4]  # SIZE's conv1: 8 kernels
  assert all(0 <= x <= 1 for t in towers for x in t['per_kernel'])
  report = json.loads((ran.workdir('/tmp/alexnet_demo') / 'retrieval' / 'bits64.json')
                      .read_text())
  assert report['bits'] == 64 and report['queries'] == 4
  for search in ('hamming', 'euclidean'):
    assert 0 <= report[search]['precision_at_k'] <= 1
