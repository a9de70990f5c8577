"""Tests of alexnet_jax.optim against a literal NumPy version of section 5's update."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from alexnet_jax import optim

STEPS = 24
BOUNDARIES = (8, 16)   # two rate drops
BASE_LR = 0.01         # the paper's initial rate
MOMENTUM, WD = 0.9, 5e-4
TOL = 1e-6


def _eps(step, base=BASE_LR, factor=0.1):
  """The rate of update `step` (0-based): divided by 10 at each boundary."""
  return np.float32(base * factor ** sum(step >= b for b in BOUNDARIES))


def _params_and_grads(seed=0):
  """A small params dict with 'kernel' and 'bias' leaves (std 0.1), and STEPS random N(0, 1)
  gradients for it."""
  rng = np.random.default_rng(seed)
  shapes = {'conv': {'kernel': (3, 3, 2, 4), 'bias': (4,)}, 'fc': {'kernel': (5, 3), 'bias': (3,)}}
  params = jax.tree.map(lambda s: rng.normal(0.0, 0.1, s).astype(np.float32), shapes,
                        is_leaf=lambda s: isinstance(s, tuple))
  grads = [jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), params)
           for _ in range(STEPS)]
  return params, grads


def _numpy_paper_sgd(params, grads, rates, momentum=MOMENTUM, weight_decay=WD,
                     decay_biases=True, bias_lr_multiplier=1.0, bias_rates=None):
  """v <- m v - wd eps w - eps g;  w <- w + v, literally, per leaf; returns the weights after
  every step. A bias leaf uses eps * bias_lr_multiplier, or bias_rates[step] when given,
  and, without decay_biases, wd = 0."""
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  grad_leaves = [jax.tree.leaves(g) for g in grads]
  history = [[] for _ in grads]
  for i, (path, w) in enumerate(leaves):
    bias = path[-1].key == 'bias'
    mult = np.float32(bias_lr_multiplier if bias else 1.0)
    wd = np.float32(0.0 if bias and not decay_biases else weight_decay)
    w, v = w.copy(), np.zeros_like(w)
    for step, gs in enumerate(grad_leaves):
      eps = np.float32(bias_rates[step] if bias and bias_rates is not None else rates[step] * mult)
      v = np.float32(momentum) * v - wd * eps * w - eps * gs[i]
      w = w + v
      history[step].append(w.copy())
  return history  # per step: the leaves in tree order


def _run(tx, params, grads, set_rate=None):
  """Applies tx for every gradient; `set_rate(step, state)` may rewrite the state first."""
  state = tx.init(params)
  update = jax.jit(tx.update)
  history = []
  for step, g in enumerate(grads):
    if set_rate is not None:
      state = set_rate(step, state)
    updates, state = update(g, state, params)
    params = optax.apply_updates(params, updates)
    history.append([np.asarray(a) for a in jax.tree.leaves(params)])
  return history


def _max_diff(a, b):
  return max(float(np.max(np.abs(x - y))) for sa, sb in zip(a, b) for x, y in zip(sa, sb))


def _set_lr_by_hand(step, state):
  """What a training loop does: write the rate into the injected hyperparameters."""
  if step in BOUNDARIES:
    lr = state.hyperparams['learning_rate']
    state.hyperparams['learning_rate'] = jnp.asarray(_eps(step), lr.dtype)
  return state


def test_paper_sgd_with_schedule_matches_numpy():
  """paper_sgd(steps_schedule) equals the literal formula over 24 steps with two rate drops."""
  params, grads = _params_and_grads()
  rates = [_eps(s) for s in range(STEPS)]
  want = _numpy_paper_sgd(params, grads, rates)
  got = _run(optim.paper_sgd(optim.steps_schedule(BASE_LR, list(BOUNDARIES))), params, grads)
  assert _max_diff(got, want) < TOL


def test_steps_schedule_values():
  """eps(step) = lr * factor ** (boundaries <= step)."""
  sched = optim.steps_schedule(0.01, [3, 5], factor=0.5)
  np.testing.assert_allclose([float(sched(s)) for s in range(7)],
                             [0.01, 0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025], rtol=1e-6)


def test_paper_sgd_under_inject_hyperparams_matches_numpy():
  """With the rate set by hand in opt_state.hyperparams mid-run, the velocity keeps its past."""
  params, grads = _params_and_grads(1)
  rates = [_eps(s) for s in range(STEPS)]
  want = _numpy_paper_sgd(params, grads, rates)
  tx = optax.inject_hyperparams(optim.paper_sgd)(learning_rate=BASE_LR)
  got = _run(tx, params, grads, set_rate=_set_lr_by_hand)
  assert _max_diff(got, want) < TOL
  # Without the drops the result differs: the hand-set rate really acted.
  no_drop = _numpy_paper_sgd(params, grads, [np.float32(BASE_LR)] * STEPS)
  assert _max_diff(got, no_drop) > 1e-2


def test_optax_sgd_differs_after_rate_drop():
  """optax.sgd(momentum) rescales the accumulated velocity when the rate drops: equal to the
  paper's update before the first drop, different after it. This is why paper_sgd exists."""
  params, grads = _params_and_grads(2)
  rates = [_eps(s) for s in range(STEPS)]
  want = _numpy_paper_sgd(params, grads, rates, weight_decay=0.0)
  sched = optim.steps_schedule(BASE_LR, list(BOUNDARIES))
  got = _run(optax.sgd(sched, momentum=MOMENTUM), params, grads)
  first = BOUNDARIES[0]
  assert _max_diff(got[:first], want[:first]) < TOL
  assert _max_diff(got[first:first + 1], want[first:first + 1]) > 1e-2
  # paper_sgd with no weight decay does match here.
  ours = _run(optim.paper_sgd(sched, weight_decay=0.0), params, grads)
  assert _max_diff(ours, want) < TOL


@pytest.mark.parametrize('decay_biases, bias_lr_multiplier', [(True, 1.0), (False, 1.0),
                                                              (True, 2.0), (False, 2.0)])
def test_bias_options_match_numpy_per_leaf(decay_biases, bias_lr_multiplier):
  """decay_biases=False (no wd on 'bias' leaves) and bias_lr_multiplier (bias eps x m) follow
  the formula applied per leaf; 'kernel' leaves are unaffected."""
  params, grads = _params_and_grads(3)
  rates = [_eps(s) for s in range(STEPS)]
  want = _numpy_paper_sgd(params, grads, rates, decay_biases=decay_biases,
                          bias_lr_multiplier=bias_lr_multiplier)
  tx = optim.paper_sgd(optim.steps_schedule(BASE_LR, list(BOUNDARIES)),
                       decay_biases=decay_biases, bias_lr_multiplier=bias_lr_multiplier)
  got = _run(tx, params, grads)
  assert _max_diff(got, want) < TOL
  if (decay_biases, bias_lr_multiplier) != (True, 1.0):
    plain = _numpy_paper_sgd(params, grads, rates)
    assert _max_diff(want, plain) > 20 * TOL  # the option matters at this tolerance


def _config(lr_policy, decay_biases=True, bias_lr_multiplier=1.0):
  return ml_collections.ConfigDict(dict(
      learning_rate=BASE_LR, momentum=MOMENTUM, weight_decay=WD, lr_policy=lr_policy,
      lr_steps=dict(boundaries=list(BOUNDARIES), factor=0.1),
      dexp=dict(weights_factor=250.0, weights_steps=4, biases_factor=10.0, biases_steps=2),
      decay_biases=decay_biases, bias_lr_multiplier=bias_lr_multiplier))


def _cuda_convnet2_dexp(base, tgt_factor, num_steps, progress):
  """DiscreteExpParameterSchedule of akrizhevsky/cuda-convnet2 (cudaconvnet/src/lr.cu, lines
  94-113), transcribed line by line: the constructor fills _rates, getValue scans them."""
  rates = []
  for i in range(num_steps - 1):
    p = float(i) / (num_steps - 1)
    rates.append(base * pow(1.0 / tgt_factor, p))  # ExpParameterSchedule::getValue
  rates.append(base / tgt_factor)
  for i in range(len(rates)):
    if progress <= float(i + 1) / len(rates):
      return rates[i]
  return rates[-1]


@pytest.mark.parametrize('base, tgt_factor, num_steps, total', [
    (0.01, 250.0, 4, 40), (0.02, 10.0, 2, 40), (0.01, 250.0, 4, 37), (0.02, 25.0, 3, 10),
    (0.01, 10.0, 1, 8)])
def test_dexp_schedule_matches_cuda_convnet2(base, tgt_factor, num_steps, total):
  """Update `count` (0-based) has progress count / total (convnet.py's get_progress: the
  batches done before it over all); every update's rate is lr.cu's, in float32."""
  schedule = jax.jit(optim.dexp_schedule(base, tgt_factor, num_steps, total))
  for count in range(total + 2):
    want = _cuda_convnet2_dexp(base, tgt_factor, num_steps, min(1.0, count / total))
    np.testing.assert_allclose(float(schedule(jnp.int32(count))), want, rtol=1e-6)


def test_dexp_schedule_released_imagenet_values():
  """epsW=dexp[base=0.01;tgtFactor=250;numSteps=4] over 100 updates: 0.01, then divided by
  250 ** (1/3) = 6.30 after updates 25, 50 and 75 (the 26th, 51st and 76th use the new rate)."""
  schedule = optim.dexp_schedule(0.01, 250.0, 4, 100)
  got = [float(schedule(jnp.int32(c))) for c in (0, 25, 26, 50, 51, 75, 76, 99)]
  step = 250.0 ** (-1 / 3)
  want = [0.01, 0.01, 0.01 * step, 0.01 * step, 0.01 * step ** 2, 0.01 * step ** 2, 4e-5,
          4e-5]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_make_optimizer_dexp_matches_numpy():
  """lr_policy 'dexp': weights and biases each follow lr.cu's schedule from their own base
  (learning_rate and learning_rate * bias_lr_multiplier), biases without weight decay."""
  params, grads = _params_and_grads(6)
  rates = [_cuda_convnet2_dexp(BASE_LR, 250.0, 4, s / STEPS) for s in range(STEPS)]
  bias_rates = [_cuda_convnet2_dexp(2 * BASE_LR, 10.0, 2, s / STEPS) for s in range(STEPS)]
  want = _numpy_paper_sgd(params, grads, rates, decay_biases=False, bias_rates=bias_rates)
  tx = optim.make_optimizer(_config('dexp', False, 2.0), total_steps=STEPS)
  assert _max_diff(_run(tx, params, grads), want) < TOL
  with pytest.raises(ValueError, match='total_steps'):
    optim.make_optimizer(_config('dexp'))


@pytest.mark.parametrize('decay_biases, bias_lr_multiplier', [(True, 1.0), (False, 2.0)])
def test_make_optimizer_steps_matches_numpy(decay_biases, bias_lr_multiplier):
  """lr_policy 'steps': the config's boundaries and factor drive the rate; hyperparams show it."""
  params, grads = _params_and_grads(4)
  rates = [_eps(s) for s in range(STEPS)]
  want = _numpy_paper_sgd(params, grads, rates, decay_biases=decay_biases,
                          bias_lr_multiplier=bias_lr_multiplier)
  tx = optim.make_optimizer(_config('steps', decay_biases, bias_lr_multiplier))
  got = _run(tx, params, grads)
  assert _max_diff(got, want) < TOL
  # After update i, hyperparams hold the rate update i used.
  state, update = tx.init(params), jax.jit(tx.update)
  for step, g in enumerate(grads):
    _, state = update(g, state, params)
    np.testing.assert_allclose(float(state.hyperparams['learning_rate']), _eps(step), rtol=1e-6)


@pytest.mark.parametrize('decay_biases, bias_lr_multiplier', [(True, 1.0), (False, 2.0)])
def test_make_optimizer_plateau_driven_by_policy_matches_numpy(decay_biases, bias_lr_multiplier):
  """lr_policy 'plateau': the loop feeds validation errors to Plateau and writes
  learning_rate(base, state) into hyperparams; the drops land at steps 8 and 16."""
  params, grads = _params_and_grads(5)
  rates = [_eps(s) for s in range(STEPS)]
  want = _numpy_paper_sgd(params, grads, rates, decay_biases=decay_biases,
                          bias_lr_multiplier=bias_lr_multiplier)
  cfg = _config('plateau', decay_biases, bias_lr_multiplier)
  tx = optim.make_optimizer(cfg)
  policy = optim.Plateau(patience=2, min_delta=0.0)
  # One evaluation before every update; errors stall at evaluations 7, 8 and 15, 16.
  errors = [0.9 - 0.01 * e for e in range(STEPS)]
  for e in (7, 8, 15, 16):
    errors[e] = 1.0
  plateau_state = optim.PlateauState()

  def evaluate(step, state):
    nonlocal plateau_state
    plateau_state, dropped = policy.update(plateau_state, errors[step])
    assert dropped == (step in BOUNDARIES)
    lr = policy.learning_rate(cfg.learning_rate, plateau_state)
    state.hyperparams['learning_rate'] = jnp.asarray(lr, state.hyperparams['learning_rate'].dtype)
    return state
  got = _run(tx, params, grads, set_rate=evaluate)
  assert _max_diff(got, want) < TOL
  assert plateau_state.drops == 2


def test_make_optimizer_rejects_unknown_policy():
  """An unknown lr_policy is a ValueError naming the choices."""
  with pytest.raises(ValueError, match='plateau'):
    optim.make_optimizer(_config('cosine'))


def _feed(policy, errors, state=None):
  state = optim.PlateauState() if state is None else state
  drops = []
  for error in errors:
    state, dropped = policy.update(state, error)
    drops.append(dropped)
  return state, drops


def test_plateau_patience():
  """The rate drops after `patience` evaluations in a row without improvement, then the count
  restarts."""
  policy = optim.Plateau(patience=3)
  state, drops = _feed(policy, [0.5, 0.4, 0.45, 0.4, 0.41, 0.42, 0.43, 0.44])
  assert drops == [False, False, False, False, True, False, False, True]
  assert state.drops == 2 and state.best_error == 0.4 and state.evals_since_best == 0


def test_plateau_improvement_resets_wait():
  """An improvement in between restarts the patience count."""
  policy = optim.Plateau(patience=2)
  state, drops = _feed(policy, [0.5, 0.6, 0.45, 0.6, 0.44, 0.6])
  assert drops == [False] * 6
  assert state == optim.PlateauState(0.44, 1, 0)


def test_plateau_min_delta():
  """An improvement smaller than min_delta counts as no improvement."""
  policy = optim.Plateau(patience=2, min_delta=0.01)
  state, drops = _feed(policy, [0.5, 0.495, 0.491])
  assert drops == [False, False, True]
  assert state.best_error == 0.5
  state, drops = _feed(policy, [0.5, 0.489], optim.PlateauState())
  assert drops == [False, False] and state.best_error == 0.489 and state.evals_since_best == 0


def test_plateau_at_most_max_drops():
  """Never more than max_drops drops (three in the paper): the rate ends at base / 1000."""
  policy = optim.Plateau(patience=1, factor=0.1, max_drops=3)
  state, drops = _feed(policy, [0.5] + [0.6] * 10)
  assert sum(drops) == 3 and drops[1:4] == [True] * 3
  assert state.drops == 3
  np.testing.assert_allclose(policy.learning_rate(0.01, state), 1e-5, rtol=1e-12)


def test_plateau_learning_rate():
  """learning_rate(base, state) = base * factor ** drops; the defaults: factor 0.1, three drops."""
  policy = optim.Plateau()
  assert policy.factor == 0.1 and policy.max_drops == 3
  for drops in range(4):
    np.testing.assert_allclose(policy.learning_rate(0.01, optim.PlateauState(drops=drops)),
                               0.01 * 0.1 ** drops, rtol=1e-12)


def test_dexp_bad_fields_are_config_errors():
  for args in ((0.01, 0.0, 4, 10), (0.01, 10.0, 0, 10), (0.01, 10.0, 2.5, 10)):
    with pytest.raises(ValueError, match='config.dexp'):
      optim.dexp_schedule(*args)


def test_plateau_waits_while_the_error_is_above_max_error():
  """A network still at chance (best error above max_error) keeps its rate however long the
  error stalls; once the error has fallen below max_error, the usual patience applies."""
  policy = optim.Plateau(patience=2, min_delta=0.0, max_error=0.9)
  state, drops = _feed(policy, [0.94, 0.94, 0.95, 0.94, 0.94])
  assert not any(drops) and state.drops == 0
  state, drops = _feed(policy, [0.85, 0.86, 0.86], state)
  assert drops == [False, False, True] and state.drops == 1
