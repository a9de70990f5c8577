"""The paper's update rule and learning-rate policies (section 5).

    v <- momentum * v - weight_decay * eps * w - eps * dL/dw
    w <- w + v

The learning rate eps multiplies the gradient *before* it enters the
velocity, so changing eps acts only on gradients from then on; the velocity
keeps what it accumulated. `optax.sgd(eps, momentum)` scales after the
momentum trace instead, which is the same only while eps is constant.

Nothing here imports TensorFlow.
"""

import dataclasses
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from alexnet_jax import errors


def is_bias(params: Any) -> Any:
  """A pytree of bools like `params`: True for leaves named 'bias'."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], 'key', None) == 'bias', params)


def not_bias(params: Any) -> Any:
  return jax.tree.map(lambda b: not b, is_bias(params))


def paper_sgd(learning_rate: float | optax.Schedule, momentum: float = 0.9,
              weight_decay: float = 5e-4, *, decay_biases: bool = True,
              bias_lr_multiplier: float = 1.0,
              bias_learning_rate: float | optax.Schedule | None = None
              ) -> optax.GradientTransformation:
  """The velocity update of section 5 as an optax chain.

  Args:
    learning_rate: eps, a float or an optax schedule of the update count.
      Works under `optax.inject_hyperparams(paper_sgd)` so a training loop can
      set the rate at run time.
    momentum: velocity decay (0.9).
    weight_decay: 0.0005; applied as weight_decay * eps * w inside the velocity.
    decay_biases: False follows the authors' later code (cuda-convnet2): no
      weight decay on biases.
    bias_lr_multiplier: 2.0 follows the same code: biases learn twice as fast.
    bias_learning_rate: the biases' own rate (a float or a schedule), in place of
      learning_rate * bias_lr_multiplier: cuda-convnet2's epsB, which follows a schedule
      of its own (`dexp_schedule`).

  Returns:
    A GradientTransformation whose updates are the velocity v; apply them with
    `optax.apply_updates(params, updates)` (w <- w + v).
  """
  if bias_learning_rate is None:
    scale = [optax.masked(optax.scale(bias_lr_multiplier), is_bias),
             optax.scale_by_learning_rate(learning_rate)]
  else:
    scale = [optax.masked(optax.scale_by_learning_rate(learning_rate), not_bias),
             optax.masked(optax.scale_by_learning_rate(bias_learning_rate), is_bias)]
  return optax.chain(
      optax.add_decayed_weights(weight_decay, mask=None if decay_biases else not_bias),
      *scale,                       # -eps * (dL/dw + wd * w)
      optax.trace(decay=momentum),  # v <- momentum * v + that
  )


def steps_schedule(learning_rate: float, boundaries: list[int],
                   factor: float = 0.1) -> optax.Schedule:
  """eps(step) = learning_rate * factor ** (number of boundaries <= step)."""
  return optax.piecewise_constant_schedule(learning_rate, {int(b): factor for b in boundaries})


def dexp_schedule(base: float, target_factor: float, num_steps: int,
                  total_steps: int) -> optax.Schedule:
  """cuda-convnet2's 'dexp' policy: `num_steps` equal stages from base down to base / target_factor.

  Stage i < num_steps - 1 runs at base * target_factor ** (-i / (num_steps - 1)), the
  last at base / target_factor (`DiscreteExpParameterSchedule`,
  cudaconvnet/src/lr.cu lines 94-113 of akrizhevsky/cuda-convnet2). An update
  whose progress p (the fraction of the run done before it) satisfies
  p <= (i + 1) / num_steps, for the first such i, runs at stage i's rate. There
  progress counts data files of many minibatches (`get_progress`, convnet.py
  lines 293-295); here it is count / total_steps, with count the updates
  already applied (optax's schedule argument), so the rate changes at a step.

  Args:
    base: the first stage's rate.
    target_factor: base over the last stage's rate (> 0).
    num_steps: the number of stages (>= 1; as in lr.cu, 1 stage runs at base / target_factor).
    total_steps: the run's length in updates.

  Returns:
    schedule(count int array) -> float32 rate.

  Raises:
    errors.ConfigError: a factor that is not positive, or fewer than one stage or step.
  """
  if not (target_factor > 0 and int(num_steps) == num_steps >= 1 and total_steps >= 1):
    raise errors.ConfigError(
        f'dexp needs a target factor > 0, at least one stage and one step; got target factor '
        f'{target_factor}, {num_steps} stages, {total_steps} steps (config.dexp).')
  exponents = np.arange(num_steps - 1) / max(num_steps - 1, 1)
  rates = jnp.asarray(np.append(base * (1.0 / target_factor) ** exponents,
                                base / target_factor), jnp.float32)

  def schedule(count):
    # The first i with count / total <= (i + 1) / n, in integers: ceil(count * n / total) - 1.
    stage = (count * num_steps + total_steps - 1) // total_steps - 1
    return rates[jnp.clip(stage, 0, num_steps - 1)]

  return schedule


class PlateauState(NamedTuple):
  """What the plateau policy remembers between evaluations (checkpointed)."""
  best_error: float = float('inf')
  evals_since_best: int = 0
  drops: int = 0


@dataclasses.dataclass(frozen=True)
class Plateau:
  """Section 5: "divide the learning rate by 10 when the validation error rate
  stopped improving with the current learning rate", three times in all.

  An evaluation improves on the best so far when its error is lower by more
  than `min_delta`. After `patience` evaluations in a row without
  improvement the rate drops by `factor`, the count restarts, and after
  `max_drops` drops it stays where it is. While the best error is above
  `max_error` (a network still at chance, whose error has not started to
  improve) the rate does not drop.
  """
  patience: int = 2
  min_delta: float = 0.0
  factor: float = 0.1
  max_drops: int = 3
  max_error: float = 1.0

  def update(self, state: PlateauState, error: float) -> tuple[PlateauState, bool]:
    """Takes one validation error; returns the new state and whether the rate dropped."""
    if error < state.best_error - self.min_delta:
      return PlateauState(error, 0, state.drops), False
    waited = state.evals_since_best + 1
    if waited >= self.patience and state.drops < self.max_drops and (
        state.best_error <= self.max_error):
      return PlateauState(state.best_error, 0, state.drops + 1), True
    return PlateauState(state.best_error, waited, state.drops), False

  def learning_rate(self, base: float, state: PlateauState) -> float:
    """The rate after the drops made so far: base * factor ** drops."""
    return base * self.factor ** state.drops


def learning_rate(opt_state: Any) -> float:
  """The current rate of an optimizer from `make_optimizer`."""
  return float(opt_state.hyperparams['learning_rate'])


def set_learning_rate(opt_state: Any, rate: float) -> Any:
  """`opt_state` with the run-time learning rate set to `rate` (placed like the old one).

  The velocity keeps what it accumulated: the new rate scales gradients from
  the next step on, as in section 5's update.
  """
  old = opt_state.hyperparams['learning_rate']
  new = jax.device_put(np.asarray(rate, old.dtype), old.sharding)
  return opt_state._replace(hyperparams={**opt_state.hyperparams, 'learning_rate': new})


LR_POLICIES = ('plateau', 'steps', 'dexp')


def make_optimizer(config, total_steps: int | None = None) -> optax.GradientTransformation:
  """The optimizer a config asks for, with the rate as a run-time hyperparameter.

  The current rate (of the weights) is `opt_state.hyperparams['learning_rate']`.
  With lr_policy 'plateau' the training loop writes it; with 'steps' or 'dexp'
  the schedule sets it. 'dexp' gives weights and biases schedules of their own
  (`dexp_schedule` over `total_steps` updates): the weights from learning_rate, the
  biases from learning_rate * bias_lr_multiplier, with config.dexp's factors and stages.
  """
  rates = {}
  if config.lr_policy == 'steps':
    rates['learning_rate'] = steps_schedule(
        config.learning_rate, list(config.lr_steps.boundaries), config.lr_steps.factor)
  elif config.lr_policy == 'plateau':
    rates['learning_rate'] = config.learning_rate
  elif config.lr_policy == 'dexp':
    if total_steps is None:
      raise errors.ConfigError("lr_policy 'dexp' needs the run's length: pass total_steps.")
    d = config.dexp
    rates['learning_rate'] = dexp_schedule(config.learning_rate, d.weights_factor,
                                           d.weights_steps, total_steps)
    rates['bias_learning_rate'] = dexp_schedule(config.learning_rate * config.bias_lr_multiplier,
                                                d.biases_factor, d.biases_steps, total_steps)
  else:
    raise errors.ConfigError(f'lr_policy must be one of {", ".join(map(repr, LR_POLICIES))}, '
                             f'got {config.lr_policy!r}.')
  return optax.inject_hyperparams(paper_sgd, static_args=('decay_biases', 'bias_lr_multiplier'))(
      **rates, momentum=config.momentum, weight_decay=config.weight_decay,
      decay_biases=config.decay_biases, bias_lr_multiplier=config.bias_lr_multiplier)
