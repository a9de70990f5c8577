"""Tests of alexnet_jax.parallel: two towers on two devices plus data parallelism.

The checks that need several devices run JAX in subprocesses
(tests/parallel_worker.py) with simulated CPU devices, because the device count
is fixed when JAX starts and this pytest process has one CPU device:

- one "checks" subprocess with 8 devices runs the equivalence, communication,
  memory and bad-input checks and writes their raw numbers as JSON;
- two "member" subprocesses with 2 devices each form a jax.distributed run
  (coordinator on 127.0.0.1) and train 3 steps data-parallel.

All three start together (module fixture) so the file pays JAX's start-up and
compilation once; the assertions below read their results. The network is a
narrow AlexNet (conv 16-32-32-32-32, fc 64, 10 classes, 67x67 input) with the
full two-tower structure and dropout; the global batch is 16.
"""

import collections
import json
import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
from unittest import mock

import hlo
import jax
import numpy as np
import optax
import ports
import pytest

from alexnet_jax import parallel
from alexnet_jax import steps
from alexnet_jax.model import AlexNet

WORKER = Path(__file__).with_name('parallel_worker.py')
CHECKS_TIMEOUT_S = 420    # a hang fails the test instead of blocking it
MEMBERS_TIMEOUT_S = 300
# What a member prints when the coordinator cannot bind its port (the first with gRPC's
# error log shown, the second with TF_CPP_MIN_LOG_LEVEL=3).
TOL = 1e-5                # relative, float32 with matmul precision 'highest'
MESHES = ('(1, 1)', '(1, 2)', '(4, 2)', '(8, 1)')

# The worker's network and batch (tests/parallel_worker.py).
SMALL = dict(num_classes=10, image_size=67, conv_features=(16, 32, 32, 32, 32), fc_features=64)
BATCH = 16
REAL_EVAL_ROWS = 13


def _env() -> dict:
  env = dict(os.environ)
  env['JAX_PLATFORMS'] = 'cpu'   # simulated CPU devices even where a GPU is present
  env.pop('XLA_FLAGS', None)     # the worker sets the device count itself
  return env




def _start(log: Path, *args) -> subprocess.Popen:
  """Starts the worker with its output going to the file `log`.

  Not a pipe: one that nobody reads while the test waits for another process could fill
  up and block the worker.
  """
  with open(log, 'w') as f:
    return subprocess.Popen([sys.executable, str(WORKER), *map(str, args)], env=_env(),
                            stdout=f, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, log: Path, deadline: float, what: str) -> None:
  """Waits for proc until the deadline; kills it on timeout; fails on a non-zero exit."""
  try:
    proc.wait(timeout=max(deadline - time.monotonic(), 1))
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
    pytest.fail(f'{what} timed out; output:\n{log.read_text()[-4000:]}')
  if proc.returncode:
    pytest.fail(f'{what} exited with {proc.returncode}; output:\n{log.read_text()[-4000:]}')


def _run_members(mp_dir: Path) -> None:
  """The two-process run, coordinator on 127.0.0.1, results in mp_dir.

  When the coordinator could not bind its port (taken since `ports.free_port` chose it), both
  members start again on a new port.
  """
  for attempt in range(1, ports.PORT_ATTEMPTS + 1):
    port = ports.free_port()
    outputs = [mp_dir / f'member{i}-attempt{attempt}.log' for i in range(2)]
    procs = [_start(outputs[i], 'member', i, 2, port, mp_dir) for i in range(2)]
    ports.wait_for_all(procs, MEMBERS_TIMEOUT_S)
    texts = [o.read_text() for o in outputs]
    failed = any(p.returncode for p in procs)
    collided = any(m in t for m in ports.PORT_IN_USE for t in texts) or ports.port_taken(port)
    if attempt < ports.PORT_ATTEMPTS and failed and collided:
      continue
    for i in sorted(range(2), key=lambda i: procs[i].returncode == -signal.SIGKILL):
      if procs[i].returncode:
        pytest.fail(f'multi-process member {i} (port {port}, attempt {attempt}) exited with '
                    f'{procs[i].returncode} ({-signal.SIGKILL}: killed here after a timeout '
                    f'or after its partner failed); output:\n{texts[i][-4000:]}')
    return


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Runs the checks worker and, meanwhile, the two-process run; returns their results."""
  checks_dir = tmp_path_factory.mktemp('checks')
  mp_dir = tmp_path_factory.mktemp('multiprocess')
  start = time.monotonic()
  checks_log = checks_dir / 'checks.log'
  checks_proc = _start(checks_log, 'checks', checks_dir)
  try:
    _run_members(mp_dir)
    _finish(checks_proc, checks_log, start + CHECKS_TIMEOUT_S, 'the checks worker')
  finally:
    if checks_proc.poll() is None:
      checks_proc.kill()
      checks_proc.wait()
  return {'checks': json.loads((checks_dir / 'checks.json').read_text()),
          'reference': dict(np.load(checks_dir / 'reference.npz')),
          'members': [json.loads((mp_dir / f'member{i}.json').read_text()) for i in range(2)],
          'member_params': [dict(np.load(mp_dir / f'member{i}.npz')) for i in range(2)]}


@pytest.fixture(scope='module')
def checks(runs):
  return runs['checks']


# ---------------------------------------------------------------------------
# 1. Equivalence across meshes.

@pytest.mark.slow
def test_worker_had_eight_devices(checks):
  assert checks['devices'] == 8


@pytest.mark.slow
def test_dropout_is_active(checks):
  """The equivalence below is with dropout on: another key gives another loss."""
  plain = checks['plain']
  assert abs(plain['loss'] - plain['loss_other_dropout_key']) > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize('mesh', MESHES)
def test_train_step_matches_plain_single_device_step(checks, mesh):
  """Loss, new parameters, parameter updates (new - old) and velocity after one step
  on each mesh against a plain jit(value_and_grad) step without mesh or shard_map."""
  r = checks['equivalence'][mesh]
  assert r['loss_rel'] < TOL, r
  assert r['params_rel'] < TOL, r
  assert r['velocity_rel'] < TOL, r   # the update v itself, before w + v is rounded
  # new - old, less one float32 spacing of w per element (the rounding of w + v).
  assert r['updates_rel_beyond_rounding'] < TOL, r


@pytest.mark.slow
@pytest.mark.parametrize('mesh', MESHES)
def test_train_step_keeps_state_sharding(checks, mesh):
  """The new parameters come back with the input sharding (tower axis over 'model'), so
  donation reuses the buffers and the next step does not recompile."""
  assert checks['equivalence'][mesh]['out_shardings_kept']


@pytest.mark.slow
@pytest.mark.parametrize('crops', ['1', '10'])
@pytest.mark.parametrize('mesh', MESHES)
def test_eval_step_sums_match_numpy(checks, mesh, crops):
  """Center-crop and 10-crop eval with 3 padded rows (garbage images, mask False): the
  sums equal a NumPy evaluation of the 13 real rows on every mesh."""
  got, want = checks['eval'][mesh][crops], checks['plain_eval'][crops]
  assert got['count'] == REAL_EVAL_ROWS
  assert got['top1_errors'] == want['top1_errors']
  assert got['top5_errors'] == want['top5_errors']
  assert got['loss'] == pytest.approx(want['loss'], rel=TOL)


# ---------------------------------------------------------------------------
# 2. Communication pattern of the compiled step, mesh (data=4, model=2).

def cross_tower_shapes(model: AlexNet, local_batch: int) -> list[tuple[int, ...]]:
  """Per-device shapes of the four cross-tower inputs, both towers gathered:
  before conv3 (pool2 maps), fc6 (pool5 maps), fc7 and fc8."""
  _, _, s3, s5 = model.feature_map_sizes()
  c = model.features_per_layer
  last_conv = 256 if model.conv6 else c[4]
  return [(local_batch, s3, s3, c[1]), (local_batch, s5, s5, last_conv),
          (local_batch, model.fc_features), (local_batch, model.fc_features)]


def communication_problems(collectives: list[dict], model: AlexNet, local_batch: int,
                           local_param_elements: int) -> list[str]:
  """What in a compiled step's collectives breaks the two-tower placement ([] = none).

  Allowed: over 'model', exactly one all-gather per cross-tower input (forward) and
  one reduce-scatter or all-reduce of the same size (its transpose, backward);
  small collectives (no more elements than this device's rows of logits) of the
  output assembly, loss and metrics over any axes; all-reduces over 'data' only,
  which must cover every gradient (at least the device's parameter count).
  Anything else larger than the logits across 'model' is a leak of activations.
  """
  towers = model.towers
  expected = collections.Counter(cross_tower_shapes(model, local_batch))
  small = local_batch * model.num_classes
  forward, backward = collections.Counter(), collections.Counter()
  data_reduced, problems = 0, []
  for c in collectives:
    axes, op = set(c['axes']), c['op']
    shapes = [tuple(s) for s in c['shapes']]
    what = f"{op} over {'+'.join(sorted(axes))} of {shapes}"
    if not axes:
      continue  # groups of one device: no communication
    if c['elements'] <= small:
      if op not in ('all-reduce', 'all-gather'):
        problems.append(f'unexpected small {what}')
      continue
    if axes == {'model'} and len(shapes) == 1:
      (shape,) = shapes
      widened = shape[:-1] + (shape[-1] * towers,)
      if op == 'all-gather' and shape in expected:
        forward[shape] += 1
        continue
      if op == 'reduce-scatter' and widened in expected:
        backward[widened] += 1
        continue
      if op == 'all-reduce' and shape in expected:
        backward[shape] += 1
        continue
    if axes == {'data'} and op == 'all-reduce':
      data_reduced += c['elements']
      continue
    problems.append(f'unexpected {what}')
  if forward != expected:
    problems.append(f'forward all-gathers over model {dict(forward)}, expected {dict(expected)}')
  if backward != expected:
    problems.append(f'backward reduce-scatters over model {dict(backward)}, '
                    f'expected {dict(expected)}')
  if data_reduced < local_param_elements:
    problems.append(f'all-reduces over data cover {data_reduced} elements, fewer than the '
                    f'{local_param_elements} parameters of a device')
  return problems


def _local_param_elements(model: AlexNet, model_devices: int) -> int:
  shapes = jax.eval_shape(
      lambda k: model.init(k, np.zeros((1, model.image_size, model.image_size, 3), np.float32)),
      jax.random.key(0))['params']
  return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes)) // model_devices


@pytest.mark.slow
def test_cross_tower_collectives_are_the_four_gathers_and_their_transposes(checks):
  model = AlexNet(**SMALL)
  collectives = checks['collectives']
  problems = communication_problems(collectives, model, BATCH // 4,
                                    _local_param_elements(model, 2))
  assert problems == [], problems
  # The same, counted directly: 4 gathers and 4 reduce-scatters of activations over 'model'.
  big = [c for c in collectives if c['elements'] > BATCH // 4 * model.num_classes]
  over_model = collections.Counter(c['op'] for c in big if c['axes'] == ['model'])
  assert over_model == {'all-gather': 4, 'reduce-scatter': 4}, over_model
  assert all(c['axes'] == ['data'] for c in big if c['op'] == 'all-reduce')


@pytest.mark.slow
def test_communication_check_flags_a_tower_gathered_elsewhere(checks):
  """A deliberately wrong network whose conv4 also reads the other tower (an extra
  all-gather of conv3's output, the same shape as the legitimate gather before conv3)
  must fail the check above."""
  model = AlexNet(**SMALL)
  for layer, collectives in checks['leaky_collectives'].items():
    leaky_params = _local_param_elements(model, 2)  # a lower bound: conv4 is wider there
    problems = communication_problems(collectives, model, BATCH // 4, leaky_params)
    assert any('forward all-gathers' in p for p in problems), (layer, problems)
    assert any('backward' in p for p in problems), (layer, problems)


def test_hlo_replica_group_formats():
  """The three printed forms of replica groups, on a (data=4, model=2) mesh."""
  mesh = jax.sharding.AbstractMesh((4, 2), ('data', 'model'))
  line = '  %x = f32[4,8]{1,0} all-gather(f32[4,4]{1,0} %y), replica_groups={}, dimensions={1}'
  cases = {
      'replica_groups={{0,1},{2,3},{4,5},{6,7}}': ('model',),
      'replica_groups={{0,2,4,6},{1,3,5,7}}': ('data',),
      'replica_groups=[4,2]<=[8]': ('model',),
      'replica_groups=[2,4]<=[4,2]T(1,0)': ('data',),
      'replica_groups=[1,8]<=[8]': ('data', 'model'),
      "replica_groups=mesh['axis_0'=4,'axis_1'=2] {'axis_1'}": ('model',),
      "replica_groups=mesh['axis_0'=4,'axis_1'=2] {'axis_0'}": ('data',),
      "replica_groups=mesh['axis_0'=4,'axis_1'=2] {'axis_0','axis_1'}": ('data', 'model'),
      "replica_groups=mesh['axis_0'=4,'axis_1'=2] {'axis_0':(2)2}": ('data',),
      "replica_groups=mesh['axis_0'=4,'axis_1'=2], device_ids=([4,2]<=[2,4]T(1,0)) {'axis_1'}":
          ('data',),
      'replica_groups={{0},{1},{2},{3},{4},{5},{6},{7}}': (),
  }
  for groups, axes in cases.items():
    (c,) = hlo.hlo_collectives(line.replace('replica_groups={}', groups), mesh)
    assert (c.op, c.axes, c.shapes) == ('all-gather', axes, ((4, 8),)), groups
  permuted = ("replica_groups=mesh['axis_0'=4,'axis_1'=2], device_ids=([4,2]<=[2,4]T(1,0)) "
              "{'axis_1'}")
  (c,) = hlo.hlo_collectives(line.replace('replica_groups={}', permuted), mesh)
  assert c.group_size == 2
  with pytest.raises(ValueError, match='replica_groups'):
    hlo.hlo_collectives(line.replace('replica_groups={}', 'replica_groups=<<0>>'), mesh)


# ---------------------------------------------------------------------------
# 3. Memory: with model=2 every device holds one tower of every layer.

@pytest.mark.parametrize('tree', ['params', 'velocity', 'params_after_step',
                                  'velocity_after_step'])
@pytest.mark.slow
def test_each_device_holds_one_tower(checks, tree):
  leaves = checks['memory'][tree]
  assert len(leaves) == 16  # kernel and bias of conv1-5, fc6-8
  per_device = collections.Counter()
  total = 0
  for leaf in leaves:
    shape = leaf['shape']
    assert shape[0] == 2, leaf['path']
    assert len(leaf['shards']) == 8, leaf['path']
    total += math.prod(shape)
    for s in leaf['shards']:
      assert s['shape'] == [1] + shape[1:], (leaf['path'], s)
      m = s['model_coord']
      assert s['towers'] == [m, m + 1], (leaf['path'], s)   # device (d, m) holds tower m
      per_device[s['device']] += math.prod(s['shape'])
  assert sorted(per_device) == list(range(8))
  assert set(per_device.values()) == {total // 2}


# ---------------------------------------------------------------------------
# 4. Two processes (jax.distributed on CPU, gloo) against one.

@pytest.mark.slow
def test_two_processes_match_one(runs):
  members, ref_losses = runs['members'], runs['checks']['mp_reference_losses']
  assert [m['process_count'] for m in members] == [2, 2]
  assert [m['process_index'] for m in members] == [0, 1]
  assert all(m['local_devices'] == 2 and m['devices'] == 4 for m in members)
  # Mesh (data=2, model=2): each process holds one data row (both towers) ...
  assert all(m['mesh_processes'] == [[0, 0], [1, 1]] for m in members)
  # ... and feeds its half of the global batch.
  assert [m['rows'] for m in members] == [[0, BATCH // 2], [BATCH // 2, BATCH]]
  assert [m['input_shard'] for m in members] == [[0, 2], [1, 2]]   # the pipeline's (index, count)
  for m in members:
    np.testing.assert_allclose(m['losses'], ref_losses, rtol=TOL)
  reference = runs['reference']
  for params in runs['member_params']:
    assert sorted(params) == sorted(reference)
    for name, want in reference.items():
      err = np.max(np.abs(params[name] - want)) / np.max(np.abs(want))
      assert err < TOL, (name, err)
  for name in reference:  # both processes hold the same parameters
    np.testing.assert_array_equal(runs['member_params'][0][name], runs['member_params'][1][name])
  # The parameters moved: 3 steps are not a no-op.
  assert ref_losses[0] != ref_losses[-1]


# ---------------------------------------------------------------------------
# 5. Bad input: ValueError naming the numbers, before any compilation.

def test_mesh_larger_than_the_devices():
  one = jax.devices()[:1]
  with pytest.raises(ValueError, match=r'data=1 x model=2 needs 2 devices, but 1 are'):
    parallel.make_mesh(1, 2, devices=one)
  with pytest.raises(ValueError, match=r'data=4 x model=1 needs 4 devices, but 1 are'):
    parallel.make_mesh(4, 1, devices=one)
  with pytest.raises(ValueError, match=r'data=5 x model=2 needs 10 devices, but 8 are'):
    parallel.mesh_shape(5, 2, 8)
  with pytest.raises(ValueError, match=r'mesh.model=2 does not divide the 7 devices'):
    parallel.mesh_shape(None, 2, 7)
  assert parallel.mesh_shape(None, 2, 8) == (4, 2)
  assert parallel.mesh_shape(None, 1, 8) == (8, 1)


def test_model_minus_one_pairs_devices_when_it_can():
  """mesh.model=None (the configs' default): one tower per device where the
  devices pair up, both towers on every device otherwise."""
  assert parallel.mesh_shape(None, None, 8) == (4, 2)
  assert parallel.mesh_shape(None, None, 2) == (1, 2)
  assert parallel.mesh_shape(None, None, 1) == (1, 1)
  assert parallel.mesh_shape(None, None, 3) == (3, 1)        # an odd count cannot pair
  assert parallel.mesh_shape(1, None, 3) == (1, 2)         # one pair fits in three
  assert parallel.mesh_shape(None, None, 8, towers=1) == (8, 1)


@pytest.mark.slow
def test_mesh_errors_with_eight_devices(checks):
  errors = checks['errors']
  assert '10 rows' in errors['shard_batch_10_rows_data_4']
  assert '4 devices of the data axis' in errors['shard_batch_10_rows_data_4']
  assert 'global batch of 10' in errors['process_rows_10_data_4']
  assert 'needs 10 devices, but 8' in errors['mesh_5x2_on_8']
  assert 'does not divide the 7 devices' in errors['mesh_auto_x2_on_7_devices']
  assert checks['process_rows_16'] == [0, 16]
  assert checks['input_shard_16'] == [0, 1]


@pytest.mark.parametrize('model', [0, 3, 4])
def test_model_axis_other_than_one_or_two(model):
  with pytest.raises(ValueError, match=rf'mesh.model must be 1 or 2 .*got {model}'):
    parallel.make_mesh(None, model, devices=jax.devices()[:1])


def test_two_model_devices_need_two_towers():
  with pytest.raises(ValueError, match=r'mesh.model=2 needs a network with 2 towers, '
                                       r'but model.towers=1'):
    parallel.make_mesh(1, 2, towers=1, devices=jax.devices()[:1])
  one_tower = AlexNet(**{**SMALL, 'towers': 1})
  mesh = jax.sharding.AbstractMesh((1, 2), ('data', 'model'))
  with pytest.raises(ValueError, match=r'model axis has 2 devices .* towers=1'):
    steps.make_train_step(one_tower, optax.sgd(0.1), mesh)
  with pytest.raises(ValueError, match=r'model axis has 2 devices .* towers=1'):
    steps.make_eval_step(one_tower, mesh)


@pytest.mark.parametrize('batch,data', [(10, 4), (127, 2), (3, 8)])
def test_global_batch_not_divisible_by_data(batch, data):
  mesh = jax.sharding.AbstractMesh((data, 1), ('data', 'model'))
  with pytest.raises(ValueError, match=rf'global batch of {batch} cannot be split over the '
                                       rf'{data} devices'):
    parallel.check_batch_size(batch, mesh)
  with pytest.raises(ValueError, match=rf'global batch of {batch}'):
    parallel.process_rows(batch, mesh)


def test_initialize_distributed_checks_its_arguments():
  with pytest.raises(ValueError, match=r'process_id=2 must lie in 0..1 for num_processes=2'):
    parallel.initialize_distributed('127.0.0.1:1', 2, 2)
  with pytest.raises(ValueError, match=r'num_processes must be at least 1 .*got 0'):
    parallel.initialize_distributed('127.0.0.1:1', 0, 0)
  with pytest.raises(ValueError, match=r'process_id must be 0 or more .*got -2'):
    parallel.initialize_distributed('127.0.0.1:1', 2, -2)


def test_one_device_per_process_pairs_share_rows():
  """One device per process, mesh (data=2, model=2) over 4 processes: the two processes of
  a tower pair must feed the same rows (process_rows / input_shard), not process j's j-th
  quarter. Simulated with stand-in devices that report their process."""
  class Dev:
    def __init__(self, i):
      self.id = self.process_index = i

  mesh = jax.sharding.Mesh(np.array([[Dev(0), Dev(1)], [Dev(2), Dev(3)]], object),
                           ('data', 'model'))
  want = {0: (0, 2), 1: (0, 2), 2: (1, 2), 3: (1, 2)}
  for process, shard in want.items():
    with mock.patch.object(jax, 'process_index', return_value=process):
      got = parallel.input_shard(16, mesh)
    assert got == shard, (process, got)
