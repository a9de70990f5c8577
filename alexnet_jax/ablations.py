"""The paper's claims about its own design, as config changes with the figures it reports.

Each `Ablation` changes a baseline config (experiments/paper.py, or the demo's
scaled-down twin) the way one sentence of the paper describes, and says what
the paper measured: the change in top-1 / top-5 validation error on ILSVRC-2012
of the changed network against the full one, in percentage points (None where
the paper gives no figure). The experiment configs apply them
(experiments/no_lrn.py, experiments/demo_ablation.py:no_lrn, ...) and
`alexnet_jax.analysis.compare` looks a run's claim up by the fields that differ from
its baseline.

Nothing here imports JAX or TensorFlow.
"""

from collections.abc import Callable
import dataclasses

import ml_collections

from alexnet_jax import errors

# ILSVRC-2012's training images (section 2), for the step arithmetic of the paper-scale configs.
IMAGENET_TRAIN_EXAMPLES = 1_281_167


@dataclasses.dataclass(frozen=True)
class Ablation:
  """One claim of the paper as a config change.

  Attributes:
    name: the experiment's name (experiments/<name>.py).
    claim: what the paper says, with its section.
    top1, top5: the paper's change of the validation error in points, changed minus
      full network (None: not reported).
    apply: changes a config in place, given the config and its training-set size; None for a
      flow rather than a change (finetune: experiments/pretrain_conv6.py, experiments/finetune.py).
    applied: True when a config has the change (the run's side of `comparison`).
  """
  name: str
  claim: str
  top1: float | None
  top5: float | None
  apply: Callable[[ml_collections.ConfigDict, int], None] | None
  applied: Callable[[ml_collections.ConfigDict], bool]


def _one_tower(config: ml_collections.ConfigDict, train_examples: int) -> None:
  """Footnote 2's net: one tower, half the kernels in conv1-conv4, conv5 and the fc layers kept."""
  del train_examples
  config.model.towers = 1
  if config.model.conv_features is not None:  # a scaled-down net: halve its own counts
    *first, last = config.model.conv_features
    config.model.conv_features = tuple(f // 2 for f in first) + (last,)


def _cuda_convnet(config: ml_collections.ConfigDict, train_examples: int) -> None:
  """The authors' released code: LRN alpha / n, biases at twice the rate and without weight
  decay, and the rate divided by 10 at 25%, 50% and 75% of the run."""
  config.model.lrn_convention = 'cuda_convnet'
  config.bias_lr_multiplier = 2.0
  config.decay_biases = False
  config.lr_policy = 'steps'
  total = config.num_train_steps or config.num_epochs * max(1, train_examples // config.batch_size)
  config.lr_steps.boundaries = [total // 4, total // 2, 3 * total // 4]


def _set(fields: dict) -> Callable[[ml_collections.ConfigDict, int], None]:
  """An `apply` that sets fields named by dotted paths ('model.lrn') to values."""
  def apply(config, train_examples):
    del train_examples
    for dotted, value in fields.items():
      *parents, leaf = dotted.split('.')
      node = config
      for parent in parents:
        node = node[parent]
      node[leaf] = value
  return apply


ABLATIONS = {a.name: a for a in [
    Ablation('no_lrn', 'Section 3.3: response normalization reduces the top-1 and top-5 error '
             'rates by 1.4% and 1.2%.', 1.4, 1.2, _set({'model.lrn': False}),
             lambda c: not c.model.lrn),
    Ablation('no_overlap', 'Section 3.4: overlapping pooling (z=3, s=2) reduces the top-1 and '
             'top-5 error rates by 0.4% and 0.3% against s=z=2.', 0.4, 0.3,
             _set({'model.pool_window': 2, 'model.pool_stride': 2}),
             lambda c: c.model.pool_window <= c.model.pool_stride),
    Ablation('one_tower', 'Section 3.2: the two-GPU net reduces the top-1 and top-5 error rates '
             'by 1.7% and 1.2% against a one-GPU net with half the kernels in each conv layer '
             '(footnote 2: but the last).', 1.7, 1.2, _one_tower, lambda c: c.model.towers == 1),
    Ablation('no_lighting', 'Section 4.1: the PCA lighting noise reduces the top-1 error rate by '
             'over 1%.', 1.0, None, _set({'input.lighting_std': 0.0}),
             lambda c: c.input.lighting_std == 0),
    Ablation('no_dropout', 'Section 4.2: without dropout the network overfits substantially; '
             'dropout roughly doubles the iterations needed to converge (no error figure).',
             None, None, _set({'model.dropout_rate': 0.0}), lambda c: c.model.dropout_rate == 0),
    Ablation('minus_conv', 'Section 7: removing any middle conv layer costs about 2% top-1.', 2.0,
             None, _set({'model.remove_conv': 'conv4'}), lambda c: bool(c.model.remove_conv)),
    Ablation('cuda_convnet', "The authors' released-code conventions (LRN alpha / n, bias rate "
             'x2, no bias decay, fixed rate drops); the paper states no figure.', None, None,
             _cuda_convnet, lambda c: c.model.lrn_convention == 'cuda_convnet'),
    Ablation('finetune', 'Table 2: pre-training (with a sixth conv layer, on the Fall 2011 '
             'release) then fine-tuning on ILSVRC-2012 gives 39.0% / 16.6% against 40.7% / '
             '18.2% for one CNN trained from scratch.', -1.7, -1.6, None,
             lambda c: bool(c.init_from)),
]}


def apply(config: ml_collections.ConfigDict, name: str, train_examples: int) -> None:
  """Changes `config` in place as ablation `name` does ('' changes nothing: the baseline).

  Raises:
    errors.ConfigError: `name` is not an ablation.
  """
  if not name:
    return
  changes = [a.name for a in ABLATIONS.values() if a.apply is not None]
  if name not in changes:
    raise errors.ConfigError(f'No ablation {name!r}: choose one of {", ".join(changes)}, or none '
                             'for the baseline (transfer is experiments/finetune.py).')
  ABLATIONS[name].apply(config, train_examples)


def claims_of(run: ml_collections.ConfigDict,
              baseline: ml_collections.ConfigDict) -> list[Ablation]:
  """The ablations `run` has and `baseline` has not (what a comparison of the two tests)."""
  return [a for a in ABLATIONS.values() if a.applied(run) and not a.applied(baseline)]
