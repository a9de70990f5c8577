"""The paper's claims about its own design, as config changes with the figures it reports.

Each `Ablation` changes a baseline config (experiments/paper.py, or the demo's
scaled-down twin) the way one sentence of the paper describes, and says what
the paper measured: the change in top-1 / top-5 error of the changed network
against the full one, in percentage points (None where the paper gives no
figure), and on which data (`PaperFigure.data`, as the paper names it). The
experiment configs apply them (experiments/no_lrn.py,
experiments/demo_ablation.py:no_lrn, ...) and `alexnet_jax.analysis.compare`
finds the claims a run tests from the fields it changes against its baseline
(`changes`).

Nothing here imports JAX or TensorFlow.
"""

from collections.abc import Callable
import dataclasses
from typing import Any

import ml_collections

from alexnet_jax import errors

# The data of a figure, as the paper names it. The ablation sentences of sections 3-4 and 7
# name no set; section 2 says where most experiments ran (UNNAMED_NOTE).
UNNAMED_ILSVRC = 'ILSVRC, set not named†'
UNNAMED_NOTE = ('† Section 2: "ILSVRC-2010 is the only version of ILSVRC for which the test set '
                'labels are available, so this is the version on which we performed most of our '
                'experiments."')
ILSVRC2012_VAL = 'ILSVRC-2012 validation'
ILSVRC2010_TEST = 'ILSVRC-2010 test'


@dataclasses.dataclass(frozen=True)
class PaperFigure:
  """A difference the paper reports: changed minus reference network, in points.

  Attributes:
    top1, top5: the change of the top-1 / top-5 error (None: not reported).
    data: the data it was measured on, as the paper names it.
  """
  top1: float | None
  top5: float | None
  data: str


@dataclasses.dataclass(frozen=True)
class Ablation:
  """One claim of the paper as a config change.

  Attributes:
    name: the experiment's name (experiments/<name>.py).
    claim: what the paper says, with its section.
    figure: the paper's figure for it.
    apply: changes a config in place; None for a flow rather than a change (finetune:
      experiments/pretrain_conv6.py, then experiments/finetune.py with init_from).
    any_value: dotted fields the claim is about whatever value `apply` gives them
      (minus_conv: any middle layer removed).
  """
  name: str
  claim: str
  figure: PaperFigure
  apply: Callable[[ml_collections.ConfigDict], None] | None
  any_value: tuple[str, ...] = ()


def _one_tower(config: ml_collections.ConfigDict) -> None:
  """Footnote 2's net: one tower, half the kernels in conv1-conv4, conv5 and the fc layers kept."""
  config.model.towers = 1
  if config.model.conv_features is not None:  # a scaled-down net: halve its own counts
    *first, last = config.model.conv_features
    config.model.conv_features = tuple(f // 2 for f in first) + (last,)


def _set(fields: dict) -> Callable[[ml_collections.ConfigDict], None]:
  """An `apply` that sets fields named by dotted paths ('model.lrn') to values."""
  def apply(config):
    for dotted, value in fields.items():
      *parents, leaf = dotted.split('.')
      node = config
      for parent in parents:
        node = node[parent]
      node[leaf] = value
  return apply


ABLATIONS = {a.name: a for a in [
    Ablation('no_lrn', 'Section 3.3: response normalization reduces the top-1 and top-5 error '
             'rates by 1.4% and 1.2%.', PaperFigure(1.4, 1.2, UNNAMED_ILSVRC),
             _set({'model.lrn': False})),
    Ablation('no_overlap', 'Section 3.4: overlapping pooling (z=3, s=2) reduces the top-1 and '
             'top-5 error rates by 0.4% and 0.3% against s=z=2.',
             PaperFigure(0.4, 0.3, UNNAMED_ILSVRC),
             _set({'model.pool_window': 2, 'model.pool_stride': 2})),
    Ablation('one_tower', 'Section 3.2: the two-GPU net reduces the top-1 and top-5 error rates '
             'by 1.7% and 1.2% against a one-GPU net with half the kernels in each conv layer '
             '(footnote 2: but the last).', PaperFigure(1.7, 1.2, UNNAMED_ILSVRC), _one_tower),
    Ablation('no_lighting', 'Section 4.1: the PCA lighting noise reduces the top-1 error rate by '
             'over 1%.', PaperFigure(1.0, None, UNNAMED_ILSVRC),
             _set({'input.lighting_std': 0.0})),
    Ablation('no_dropout', 'Section 4.2: without dropout the network overfits substantially; '
             'dropout roughly doubles the iterations needed to converge (no error figure).',
             PaperFigure(None, None, UNNAMED_ILSVRC), _set({'model.dropout_rate': 0.0})),
    Ablation('minus_conv', 'Section 7: removing any middle conv layer costs about 2% top-1.',
             PaperFigure(2.0, None, UNNAMED_ILSVRC), _set({'model.remove_conv': 'conv4'}),
             any_value=('model.remove_conv',)),
    Ablation('cuda_convnet', "cuda-convnet2's released one-GPU ImageNet recipe "
             '(layers/layer-params-imagenet-1gpu.cfg, 2014): LRN alpha / n, biases at twice '
             "the weights' rate without weight decay, the 'dexp' rate schedules; the paper "
             'states no figure.', PaperFigure(None, None, 'none'),
             _set({'model.lrn_convention': 'cuda_convnet', 'bias_lr_multiplier': 2.0,
                   'decay_biases': False, 'lr_policy': 'dexp'})),
    Ablation('finetune', 'Table 2: pre-training (with a sixth conv layer, on the Fall 2011 '
             'release) then fine-tuning on ILSVRC-2012 gives 39.0% / 16.6% against 40.7% / '
             '18.2% for one CNN trained from scratch.', PaperFigure(-1.7, -1.6, ILSVRC2012_VAL),
             None),
]}

# Section 6's other rows, which `compare` puts beside a run's ten-crop and ensemble errors:
# (what, the paper's figure as the error of that row minus one network's center crop).
TEN_CROP = ('37.5% / 17.0% with ten crops against 39.0% / 18.3% without (section 6 and its '
            'footnote)', PaperFigure(-1.5, -1.3, ILSVRC2010_TEST))
ENSEMBLES = {
    5: ('5 CNNs averaged against 1 CNN (Table 2): 38.1% / 16.4% against 40.7% / 18.2%',
        PaperFigure(-2.6, -1.8, ILSVRC2012_VAL)),
    7: ('7 CNNs, two pre-trained on Fall 2011, against 1 CNN (Table 2): 36.7% / 15.4% against '
        '40.7% / 18.2%', PaperFigure(-4.0, -2.8, ILSVRC2012_VAL)),
}


def apply(config: ml_collections.ConfigDict, name: str) -> None:
  """Changes `config` in place as ablation `name` does ('' changes nothing: the baseline).

  Raises:
    errors.ConfigError: `name` is not an ablation.
  """
  if not name:
    return
  choices = [a.name for a in ABLATIONS.values() if a.apply is not None]
  if name not in choices:
    raise errors.ConfigError(f'No ablation {name!r}: choose one of {", ".join(choices)}, or none '
                             'for the baseline (transfer is experiments/finetune.py).')
  ABLATIONS[name].apply(config)


def flatten(config: ml_collections.ConfigDict | dict, prefix: str = '') -> dict[str, Any]:
  """{dotted field: value} of every leaf; lists become tuples (JSON reads tuples as lists)."""
  leaves = {}
  for key, value in config.items():
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      leaves.update(flatten(value, f'{prefix}{key}.'))
    else:
      leaves[prefix + key] = tuple(value) if isinstance(value, list) else value
  return leaves


def changes(ablation: Ablation, baseline: ml_collections.ConfigDict) -> dict[str, Any]:
  """{dotted field: value} that `ablation` changes in `baseline` (empty: baseline has it).

  A value of None stands for any: the fields of `any_value`, and init_from for a flow
  (finetune: any run to start from).
  """
  if ablation.apply is None:
    return {} if baseline.init_from else {'init_from': None}
  changed = ml_collections.ConfigDict(baseline.to_dict())
  ablation.apply(changed)
  old, new = flatten(baseline), flatten(changed)
  return {k: None if k in ablation.any_value else v for k, v in new.items() if old[k] != v}
