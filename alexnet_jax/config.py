"""Every config field the project reads, with the paper's values as defaults.

The experiment files (experiments/*.py in a checkout, `alexnet_jax.experiments`
once installed) start from `base_config()` and change what their setting
needs. `load(spec)` is the one way to load one: a path
(`experiments/paper.py`) or the name of a packaged experiment (`paper`). Any
field can be overridden on the command line (`--config.batch_size=256`,
`--config.model.towers=1`) or set in Python on the loaded config, which is
locked so that a misspelt field fails at once.

A field whose default is None is derived from others when the run starts; the
comment next to it says from what.
"""

import dataclasses
import importlib
import importlib.util
import json
import os

import ml_collections
from ml_collections import config_dict

from alexnet_jax import errors

EXPERIMENTS_PACKAGE = 'alexnet_jax.experiments'


def placeholder(field_type):
  """A field that is None (derived, or required) until set, typed so that a command-line
  flag can set it (ml_collections cannot override a field whose value is a plain None).
  Experiment files use it too: `config.data_dir = config_lib.placeholder(str)`."""
  return config_dict.placeholder(field_type)


def base_config() -> ml_collections.ConfigDict:
  """The paper's recipe (sections 2-5) on ILSVRC-2012."""
  c = ml_collections.ConfigDict()
  # Data: 'shapes' (embedded, offline), 'imagenet2012', 'imagenette', or
  # 'folder' (train/<class>/*, val/<class>/* under data_dir).
  c.dataset = 'imagenet2012'
  c.data_dir = '~/tensorflow_datasets'
  c.input = ml_collections.ConfigDict(dict(
      image_size=256,                 # stored side S (section 2)
      # How an image becomes S x S: 'shorter_side' (section 2: the shorter side to S,
      # antialiased, then the central S x S) or 'warp' (BVLC's Caffe models: the whole
      # image to S x S, bilinear without antialiasing, as OpenCV's INTER_LINEAR).
      resize='shorter_side',
      crop_size=224,                  # training and test crop C (section 4.1)
      lighting_std=0.1,               # std of the PCA lighting alphas (section 4.1); 0: off
      lighting_convention='paper',    # 'paper' (eigenvalues) or 'cuda_convnet2' (their roots)
      num_threads=placeholder(int),         # tf.data threads; None: all cores
      stats_dir=placeholder(str),           # where stats_<S>.npz lives; None: beside the data
      prepared_dir=placeholder(str),        # None: <data_dir>/alexnet_jax_prepared/<dataset>_<S>
      prepare_workers=placeholder(int),     # threads of the one-time preparation; None: all cores
      jpeg_quality=90,                # of the prepared S x S JPEGs
      # The prepared copy's records: 'jpeg' (S x S JPEGs) or 'raw' (S x S x 3 uint8: about 10x
      # the disk, 197 KB an image at 256, read several times faster: docs/benchmarks.md).
      storage='jpeg',
      synset_words=placeholder(str),        # '<wnid> <words>' file for readable class names
      # What the network takes (section 2: minus the mean image, RGB). Caffe's
      # converted networks: mean='caffe' (mean_file, else the per-channel mean_bgr),
      # channel_order='bgr' (the mean is subtracted first, then the channels reversed).
      channel_order='rgb',            # 'rgb' or 'bgr'
      mean='dataset',                 # 'dataset' (the mean image of stats_<S>.npz) or 'caffe'
      mean_bgr=[104.00698793, 116.66876762, 122.67891434],  # Caffe's ILSVRC-2012 BGR means
      mean_file=placeholder(str),           # (S, S, 3) BGR .npy; relative: to the workdir
      # classes: the class indices kept (relabelled 0..k-1 in this order); None: all of them.
      # difficulty: 'easy' (12 classes, shape x colour) or 'hard' (12 shapes, any colour;
      # alexnet_jax/data/synthetic.py).
      shapes=ml_collections.ConfigDict(dict(train_examples=5000, eval_examples=1000, seed=0,
                                            classes=placeholder(tuple), difficulty='easy')),
      imagenette=ml_collections.ConfigDict(dict(variant='full-size-v2')),
      folder=ml_collections.ConfigDict(dict(prepare=True)),  # False: decode originals each time
  ))

  # Schedule (section 5): batch 128, about 90 epochs.
  c.batch_size = 128                  # global, over all devices and processes
  c.eval_batch_size = placeholder(int)      # global; None: batch_size (ten crops: 10x the images)
  c.num_epochs = 90
  c.num_train_steps = placeholder(int)      # None: num_epochs of the training split
  c.eval_every_steps = placeholder(int)     # None: once per epoch
  c.checkpoint_every_steps = 2000
  c.keep_checkpoints = 3
  c.log_every_steps = 100
  c.seed = 0
  c.ten_crop_eval = True              # final evaluation with ten crops (section 4.1)
  # Resume despite a change to a field in RESUME_FIXED (README, "Resuming").
  c.allow_config_change = False

  # The paper's update (section 5) and learning-rate policy.
  c.learning_rate = 0.01
  c.momentum = 0.9
  c.weight_decay = 5e-4
  c.decay_biases = True               # False: no weight decay on biases (cuda-convnet2)
  c.bias_lr_multiplier = 1.0          # 2.0: biases learn twice as fast (cuda-convnet2)
  c.lr_policy = 'plateau'             # 'plateau' (the paper), 'steps' or 'dexp' (cuda-convnet2)
  # max_error: no drop while the best validation error is above it (still at chance).
  c.plateau = ml_collections.ConfigDict(
      dict(patience=2, min_delta=0.001, factor=0.1, max_drops=3, max_error=1.0))
  c.lr_steps = ml_collections.ConfigDict(dict(boundaries=[], factor=0.1))
  # lr_policy 'dexp' (alexnet_jax.optim.dexp_schedule): weights from learning_rate and biases
  # from learning_rate * bias_lr_multiplier, each down by its factor in that many equal stages.
  # Defaults: cuda-convnet2's layers/layer-params-imagenet-1gpu.cfg, lines 6-7.
  c.dexp = ml_collections.ConfigDict(dict(weights_factor=250.0, weights_steps=4,
                                          biases_factor=10.0, biases_steps=2))

  # The network: alexnet_jax.model.AlexNet's fields. num_classes comes from
  # the data and image_size from input.crop_size.
  c.model = ml_collections.ConfigDict(dict(
      towers=2, conv_features=placeholder(tuple), fc_features=4096, lrn=True,
      lrn_convention='paper', lrn_k=2.0, lrn_across_towers=False, pool_window=3, pool_stride=2,
      activation='relu', conv6=False, dropout_rate=0.5, init_std=0.01,
      dropout_form='paper',           # 'paper' (x (1 - rate) at test, section 4.2) or 'inverted'
      remove_conv='',                 # '' or 'conv2' / 'conv3' / 'conv4' left out (section 7)
      # 'float32' (true float32 convolutions and matmuls, also on GPUs), 'default'
      # (TF32 on Ampere and later GPUs) or 'bfloat16' (bfloat16 compute, float32 params).
      matmul_precision='float32'))

  # Devices (docs/parallel.md): None: model=2 when the devices pair up and the
  # network has two towers, data = the remaining devices.
  c.mesh = ml_collections.ConfigDict(dict(data=placeholder(int), model=placeholder(int)))
  # Several processes: None and '' are detected by jax.distributed.
  c.distributed = ml_collections.ConfigDict(dict(
      enabled=False, coordinator_address=placeholder(str), num_processes=placeholder(int),
      process_id=placeholder(int)))
  # Converted weights (alexnet_jax.tools.convert): the format and file they came from.
  c.pretrained = ml_collections.ConfigDict(dict(source='', weights=''))
  # Transfer (alexnet_jax.transfer): a run's workdir (or a converted one) whose latest
  # checkpoint initializes every parameter of the same name and shape; a fresh start only.
  # Its conventions (transfer.CONVENTIONS: input preparation, LRN, dropout form) replace
  # the fields this config leaves at these defaults.
  c.init_from = placeholder(str)
  return c


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The step arithmetic of a run: when to log, evaluate and save."""
  total_steps: int
  steps_per_epoch: int
  eval_every: int
  log_every: int
  checkpoint_every: int

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, num_train_examples: int) -> 'Schedule':
    steps_per_epoch = max(1, num_train_examples // config.batch_size)
    total = config.num_train_steps or config.num_epochs * steps_per_epoch
    return cls(total, steps_per_epoch, config.eval_every_steps or steps_per_epoch,
               config.log_every_steps, config.checkpoint_every_steps)

  def _due(self, step: int, every: int) -> bool:
    return step % every == 0 or step == self.total_steps

  def log_due(self, step: int) -> bool:
    return self._due(step, self.log_every)

  def eval_due(self, step: int) -> bool:
    return self._due(step, self.eval_every)

  def checkpoint_due(self, step: int) -> bool:
    return self._due(step, self.checkpoint_every)


def experiment_path(spec: str) -> str:
  """The file of an experiment: `spec` itself when it is a file, else the packaged one.

  A get_config argument after a colon ('demo_ablation:no_lrn') is kept on the result.
  """
  if os.path.isfile(spec):
    return spec
  spec, has_arg, arg = spec.partition(':')
  suffix = f':{arg}' if has_arg else ''
  if os.path.isfile(spec):
    return spec + suffix
  name = os.path.splitext(os.path.basename(spec))[0]
  found = importlib.util.find_spec(f'{EXPERIMENTS_PACKAGE}.{name}') if name.isidentifier() else None
  if found is None or found.origin is None:
    raise errors.ConfigError(
        f'No experiment config {spec!r}: give the path of a config file (experiments/paper.py) '
        f'or the name of one in {EXPERIMENTS_PACKAGE} ({", ".join(experiment_names())}).')
  return found.origin + suffix


def experiment_names() -> list[str]:
  """The packaged experiments' names."""
  package = importlib.import_module(EXPERIMENTS_PACKAGE)
  folder = os.path.dirname(package.__file__)
  return sorted(f[:-3] for f in os.listdir(folder) if f.endswith('.py') and f != '__init__.py')


def load(spec: str) -> ml_collections.ConfigDict:
  """The locked config of an experiment: a file path or a packaged name ('demo').

  'name:arg' (or 'path.py:arg') passes arg to the experiment's get_config, as
  `--config=experiments/demo_ablation.py:no_lrn` does on the command line.
  """
  path, has_arg, arg = experiment_path(spec).partition(':')
  module_spec = importlib.util.spec_from_file_location(f'_alexnet_experiment_{id(path)}', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(arg) if has_arg else module.get_config()
  config.lock()
  return config


def check_fields(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming every field of `config` that base_config does not know,
  or a required field left unset (REQUIRED).

  A locked config (from `load` or the command line) cannot gain fields; this
  catches them in a config built or unlocked by hand.
  """
  unknown = sorted(set(_paths(config)) - set(_paths(base_config())))
  if unknown:
    raise errors.ConfigError(
        f'The config has no field {", ".join(unknown)}; the fields and their meaning are in '
        'alexnet_jax/config.py.')
  for field, flag in REQUIRED.items():
    if config[field] in (None, ''):
      where = FOLDER_LAYOUT if config.dataset == 'folder' else 'the dataset\'s TFDS directory'
      raise errors.ConfigError(f'config.{field} is not set, and this experiment needs it: pass '
                               f'{flag} ({where}).')


# Fields a run cannot start without, with the flag that sets them (an experiment may
# leave one a `placeholder`, as experiments/folder.py does with data_dir).
REQUIRED = {'data_dir': '--config.data_dir=/path/to/folder'}
FOLDER_LAYOUT = 'a folder holding train/<class>/*.JPEG and val/<class>/*.JPEG'


def _paths(config, prefix: str = '') -> list[str]:
  """The dotted names of every leaf field."""
  names = []
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      names += _paths(value, f'{prefix}{key}.')
    else:
      names.append(prefix + key)
  return names


# Fields whose change alters the steps a run has already taken: batch s of the
# input stream is a function of the seed, the batch size, the dataset and the
# input fields; the network and the update rule make the parameters. A resume
# with one of them changed stops unless allow_config_change is set
# (`train.train_and_evaluate`). Names ending in '.' cover a whole group.
RESUME_FIXED = ('dataset', 'batch_size', 'seed', 'input.', 'model.', 'momentum', 'weight_decay',
                'decay_biases', 'bias_lr_multiplier', 'lr_policy')
# Input fields that say where files are or how fast to read them, not what is read.
RESUME_FREE = ('input.num_threads', 'input.prepare_workers', 'input.prepared_dir',
               'input.stats_dir', 'input.synset_words', 'allow_config_change')


def is_fixed_on_resume(name: str) -> bool:
  """Whether a change of field `name` (dotted) alters the steps already taken."""
  if name in RESUME_FREE:
    return False
  return any(name == f or (f.endswith('.') and name.startswith(f)) for f in RESUME_FIXED)


def resume_changes(started: dict, config: ml_collections.ConfigDict
                   ) -> dict[str, tuple[object, object]]:
  """{dotted field: (value the run started with, value in `config`)} for every field
  that differs; `started` is the run's config.json. Fields `started` lacks (added
  to the project since) are not compared."""
  def flat(tree, prefix=''):
    leaves = {}
    for key, value in tree.items():
      if isinstance(value, dict):
        leaves.update(flat(value, f'{prefix}{key}.'))
      else:
        leaves[prefix + key] = value
    return leaves
  old, new = flat(started), flat(json.loads(config.to_json_best_effort()))
  return {name: (old[name], new[name]) for name in sorted(old.keys() & new.keys())
          if old[name] != new[name]}
