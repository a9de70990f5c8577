"""Subprocess side of tests/test_parallel.py: JAX with several (simulated) CPU devices.

The device count must be fixed before JAX is imported, so the pytest process
(one CPU device, shared with the other test files) runs this file instead:

  python tests/parallel_worker.py checks OUT_DIR
      8 simulated devices: the equivalence, communication, memory and
      bad-input checks. Writes OUT_DIR/checks.json and the reference
      parameters of the multi-process run (OUT_DIR/reference.npz).
  python tests/parallel_worker.py member PROCESS_ID NUM_PROCESSES PORT OUT_DIR
      One process of a multi-process run (2 CPU devices each, coordinator on
      127.0.0.1:PORT): MP_STEPS data-parallel steps, then OUT_DIR/member{id}.npz.
  python tests/parallel_worker.py report [BATCH [DATA MODEL]]
      Not a test: lowers and compiles (without running) the training step of
      the full-size network (default batch 128, mesh (4, 2)) and prints its
      collectives; the table in docs/parallel.md comes from it.

Everything is float32 with jax_default_matmul_precision='highest'.
"""

import json
import os
import sys
import time

_MODE = sys.argv[1] if len(sys.argv) > 1 else 'checks'
_DEVICES = 2 if _MODE == 'member' else 8
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           f' --xla_force_host_platform_device_count={_DEVICES}')

import flax.linen as nn  # noqa: E402
import hlo  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from alexnet_jax import layers  # noqa: E402
from alexnet_jax import model as model_lib  # noqa: E402
from alexnet_jax import parallel  # noqa: E402
from alexnet_jax import steps  # noqa: E402
from alexnet_jax.optim import paper_sgd  # noqa: E402

jax.config.update('jax_default_matmul_precision', 'highest')

BATCH = 16            # global batch of every check
NUM_CLASSES = 10
CROPS = 10
REAL_EVAL_ROWS = 13   # rows 13..15 of the eval batch are padding (mask False)
MESHES = ((1, 1), (1, 2), (4, 2), (8, 1))
MP_STEPS = 3
MP_MESH = (2, 2)      # data over the two processes, the towers within each
# conv4's gathered input has the same shape as conv3's: only the count can tell.
LEAKY_LAYERS = ('conv4',)


def small_model(**overrides) -> model_lib.AlexNet:
  return model_lib.AlexNet(num_classes=NUM_CLASSES, image_size=67,
                           conv_features=(16, 32, 32, 32, 32), fc_features=64, **overrides)


def optimizer() -> optax.GradientTransformation:
  return paper_sgd(0.01)


def train_batch(seed: int, model: model_lib.AlexNet) -> dict:
  rng = np.random.default_rng(seed)
  s = model.image_size
  return {'image': rng.normal(size=(BATCH, s, s, 3)).astype(np.float32),
          'label': rng.integers(0, NUM_CLASSES, BATCH).astype(np.int32)}


def eval_batch(seed: int, model: model_lib.AlexNet, crops: int) -> dict:
  rng = np.random.default_rng(seed)
  s = model.image_size
  shape = (BATCH, crops, s, s, 3) if crops > 1 else (BATCH, s, s, 3)
  image = rng.normal(size=shape).astype(np.float32)
  image[REAL_EVAL_ROWS:] = 1e3  # padding: must not count
  return {'image': image, 'label': rng.integers(0, NUM_CLASSES, BATCH).astype(np.int32),
          'mask': np.arange(BATCH) < REAL_EVAL_ROWS}


def dropout_key(step: int) -> jax.Array:
  return jax.random.fold_in(jax.random.key(7), step)


def to_host(tree):
  return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


def flat_dict(tree) -> dict:
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def velocity(opt_state):
  """The momentum (optax.trace) of paper_sgd's state."""
  def is_trace(s):
    return isinstance(s, optax.TraceState)
  (trace,) = [s for s in jax.tree.leaves(opt_state, is_leaf=is_trace) if is_trace(s)]
  return trace.trace


def rel_diff(a, b) -> float:
  """max over leaves of max|a - b| / max|b| (float64)."""
  worst = 0.0
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    worst = max(worst, float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-30)))
  return worst


def updates(new, old):
  return jax.tree.map(lambda n, o: np.asarray(n, np.float64) - np.asarray(o, np.float64), new, old)


def update_rel_beyond_rounding(new, ref_new, old) -> float:
  """Like rel_diff of the updates (new - old), less one float32 spacing of the new
  parameter per element: w + v is rounded to float32, so two velocities that agree
  to 1e-7 can give updates that differ by one ulp of w (which is much larger than
  1e-5 of the update where |w| >> |v|, e.g. a bias of 1 moved by 1e-4)."""
  worst = 0.0
  for n, r, o in zip(jax.tree.leaves(new), jax.tree.leaves(ref_new), jax.tree.leaves(old)):
    du = np.abs((np.float64(n) - o) - (np.float64(r) - o))
    allowance = np.spacing(np.maximum(np.abs(n), np.abs(r)).astype(np.float32)).astype(np.float64)
    scale = max(np.max(np.abs(np.float64(r) - o)), 1e-30)
    worst = max(worst, float(np.max(np.maximum(du - allowance, 0.0)) / scale))
  return worst


# ---------------------------------------------------------------------------
# Plain single-device reference: no mesh, no shard_map.

def plain_reference(model, tx, params, batch, keys):
  """(loss, new params, velocity) of one step per dropout key, from the same params."""
  @jax.jit
  def step(p, key):
    def loss_fn(p):
      logits = model.apply({'params': p}, batch['image'], train=True, rngs={'dropout': key})
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
    loss, grads = jax.value_and_grad(loss_fn)(p)
    upd, opt = tx.update(grads, tx.init(p), p)
    return loss, optax.apply_updates(p, upd), velocity(opt)
  return [(float(loss), to_host(p), to_host(v)) for loss, p, v in (step(params, k) for k in keys)]


def plain_eval(model, params, batches) -> list:
  """The eval sums of each batch in NumPy over its real rows only (one forward pass)."""
  n = REAL_EVAL_ROWS
  flat = [b['image'][:n].reshape(-1, *b['image'].shape[-3:]) for b in batches]
  logits = np.asarray(jax.jit(lambda p, x: model.apply({'params': p}, x))(
      params, np.concatenate(flat)), np.float64)
  splits = np.cumsum([len(f) for f in flat])[:-1]
  return [_eval_sums(part, b) for part, b in zip(np.split(logits, splits), batches)]


def _eval_sums(logits, batch) -> dict:
  n = REAL_EVAL_ROWS
  crops = logits.shape[0] // n
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs = (probs / probs.sum(-1, keepdims=True)).reshape(n, crops, -1).mean(1)
  labels = batch['label'][:n]
  order = np.argsort(-probs, axis=1)
  return {'loss': float(-np.log(probs[np.arange(n), labels]).sum()),
          'top1_errors': float(np.sum(order[:, 0] != labels)),
          'top5_errors': float(np.sum(~np.any(order[:, :5] == labels[:, None], axis=1))),
          'count': float(n)}


# ---------------------------------------------------------------------------
# Checks with 8 simulated devices.

def shard_report(tree, mesh) -> list:
  """Per leaf: global shape and, per device, its shard's shape and tower slice."""
  out = []
  for path, x in jax.tree_util.tree_leaves_with_path(tree):
    shards = []
    for s in x.addressable_shards:
      (pos,) = np.argwhere(mesh.devices == s.device)
      tower = s.index[0] if s.index else slice(None)
      shards.append({'device': int(s.device.id), 'model_coord': int(pos[1]),
                     'shape': list(s.data.shape),
                     'towers': [tower.start or 0, x.shape[0] if tower.stop is None else tower.stop]
                     if x.ndim else None})
    out.append({'path': jax.tree_util.keystr(path), 'shape': list(x.shape), 'shards': shards})
  return out


def collectives_json(step, args, mesh) -> list:
  text = step.lower(*args).compile().as_text()
  return [{'op': c.op, 'axes': list(c.axes), 'shapes': [list(s) for s in c.shapes],
           'elements': c.elements, 'name': c.name}
          for c in hlo.hlo_collectives(text, mesh)]


class GatheringConv(layers.TowerConv):
  """A deliberately wrong TowerConv for the negative communication check: the
  layers named in LEAKY read both towers (all-gather over 'model' under the
  mesh, concatenation when both towers are local)."""
  LEAKY = ()

  @nn.compact
  def __call__(self, xs):
    if self.name in self.LEAKY:
      if self.local_towers == 1:
        xs = tuple(jax.lax.all_gather(x, 'model', axis=x.ndim - 1, tiled=True) for x in xs)
      else:
        xs = (jnp.concatenate(xs, axis=-1),) * self.local_towers
    return super().__call__(xs)


def abstract_state(model, tx, mesh):
  """Parameters and optimizer state as sharded ShapeDtypeStructs (enough to lower a step)."""
  shapes = jax.eval_shape(
      lambda k: model.init(k, jnp.zeros((1, model.image_size, model.image_size, 3)))['params'],
      jax.random.key(0))
  opt_shapes = jax.eval_shape(tx.init, shapes)

  def abstract(tree):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        tree, parallel.state_sharding(tree, mesh))

  return abstract(shapes), abstract(opt_shapes)


def leaky_collectives(leaky_layer, tx, mesh, batch):
  """The collectives of a training step whose `leaky_layer` also reads the other tower."""
  original = layers.TowerConv
  GatheringConv.LEAKY = (leaky_layer,)
  layers.TowerConv = GatheringConv   # model.py looks it up as layers.TowerConv
  try:
    model = small_model()
    params, opt = abstract_state(model, tx, mesh)
    step = steps.make_train_step(model, tx, mesh)
    return collectives_json(step, (params, opt, batch, dropout_key(0)), mesh)
  finally:
    layers.TowerConv = original


def error_of(fn) -> str | None:
  try:
    fn()
  except ValueError as e:
    return str(e)
  return None


def run_checks(out_dir: str) -> dict:
  t0 = time.time()
  timings = {}
  model, tx = small_model(), optimizer()
  assert model.dropout_rate > 0
  params0 = to_host(parallel.init_params(model, parallel.make_mesh(1, 1), jax.random.key(0)))
  batch = train_batch(1, model)
  result = {'devices': len(jax.devices())}

  # Plain reference (one device, no mesh) and the effect of dropout.
  (ref_loss, ref_params, ref_velocity), (other_key_loss, _, _) = plain_reference(
      model, tx, params0, batch, [dropout_key(0), dropout_key(1)])
  result['plain'] = {'loss': ref_loss, 'loss_other_dropout_key': other_key_loss}

  evals = {crops: eval_batch(2 + crops, model, crops) for crops in (1, CROPS)}
  result['plain_eval'] = dict(zip(map(str, evals),
                                 plain_eval(model, params0, list(evals.values()))))
  timings['plain'] = time.time() - t0

  equivalence, eval_sums = {}, {}
  for shape in MESHES:
    t = time.time()
    mesh = parallel.make_mesh(*shape)
    sharding = parallel.state_sharding(params0, mesh)
    params = jax.device_put(params0, sharding)
    opt = parallel.init_opt_state(tx, params, mesh)
    step = steps.make_train_step(model, tx, mesh)
    args = (params, opt, parallel.shard_batch(batch, mesh), dropout_key(0))
    if shape == (4, 2):
      result['collectives'] = collectives_json(step, args, mesh)
      result['memory'] = {'params': shard_report(params, mesh),
                          'velocity': shard_report(velocity(opt), mesh)}
    new_params, new_opt, metrics = step(*args)
    new_params_host, new_velocity = to_host(new_params), to_host(velocity(new_opt))
    equivalence[str(shape)] = {
        'loss': float(metrics['loss']),
        'loss_rel': abs(float(metrics['loss']) - ref_loss) / abs(ref_loss),
        'params_rel': rel_diff(new_params_host, ref_params),
        'updates_rel': rel_diff(updates(new_params_host, params0), updates(ref_params, params0)),
        'updates_rel_beyond_rounding': update_rel_beyond_rounding(
            new_params_host, ref_params, params0),
        'velocity_rel': rel_diff(new_velocity, ref_velocity),
        'out_shardings_kept': all(
            a.sharding.is_equivalent_to(s, a.ndim) for a, s in
            zip(jax.tree.leaves(new_params), jax.tree.leaves(sharding))),
    }
    if shape == (4, 2):
      result['memory'].update({'params_after_step': shard_report(new_params, mesh),
                               'velocity_after_step': shard_report(velocity(new_opt), mesh)})
    if shape == (1, 1):  # the reference of the multi-process run: MP_STEPS steps here
      mp_losses = []
      p = jax.device_put(params0, sharding)
      o = parallel.init_opt_state(tx, p, mesh)
      for i in range(MP_STEPS):
        p, o, m = step(p, o, parallel.shard_batch(train_batch(100 + i, model), mesh),
                       dropout_key(100 + i))
        mp_losses.append(float(m['loss']))
      np.savez(os.path.join(out_dir, 'reference.npz'), **flat_dict(to_host(p)))
      result['mp_reference_losses'] = mp_losses
    eval_step = steps.make_eval_step(model, mesh)
    eval_params = jax.device_put(params0, sharding)
    eval_sums[str(shape)] = {
        str(c): {k: float(v)
                 for k, v in eval_step(eval_params, parallel.shard_batch(b, mesh)).items()}
        for c, b in evals.items()}
    timings[str(shape)] = time.time() - t
  result['equivalence'] = equivalence
  result['eval'] = eval_sums

  # Negative communication checks: a tower's activations gathered where they must not be.
  t = time.time()
  mesh = parallel.make_mesh(4, 2)
  sharded = parallel.shard_batch(batch, mesh)
  result['leaky_collectives'] = {layer: leaky_collectives(layer, tx, mesh, sharded)
                                 for layer in LEAKY_LAYERS}
  timings['leaky'] = time.time() - t

  # Bad input that needs several devices.
  result['errors'] = {
      'shard_batch_10_rows_data_4': error_of(lambda: parallel.shard_batch(
          {'label': np.zeros(10, np.int32)}, mesh)),
      'process_rows_10_data_4': error_of(lambda: parallel.process_rows(10, mesh)),
      'mesh_5x2_on_8': error_of(lambda: parallel.make_mesh(5, 2)),
      'mesh_auto_x2_on_7_devices': error_of(
          lambda: parallel.make_mesh(None, 2, devices=jax.devices()[:7])),
  }
  result['process_rows_16'] = [parallel.process_rows(16, mesh).start,
                               parallel.process_rows(16, mesh).stop]
  result['input_shard_16'] = list(parallel.input_shard(16, mesh))
  timings['total'] = time.time() - t0
  result['timings'] = timings
  return result


# ---------------------------------------------------------------------------
# One member of a multi-process run.

def assemble(x) -> np.ndarray:
  """The global value of x from this process's shards (which must cover it)."""
  full = np.zeros(x.shape, x.dtype)
  covered = np.zeros(x.shape, bool)
  for s in x.addressable_shards:
    full[s.index] = np.asarray(s.data)
    covered[s.index] = True
  assert covered.all(), 'this process does not hold the whole array'
  return full


def run_member(process_id: int, num_processes: int, port: int, out_dir: str) -> dict:
  index, count = parallel.initialize_distributed(
      f'127.0.0.1:{port}', num_processes, process_id, initialization_timeout=60)
  model, tx = small_model(), optimizer()
  mesh = parallel.make_mesh(*MP_MESH)
  params = parallel.init_params(model, mesh, jax.random.key(0))
  opt = parallel.init_opt_state(tx, params, mesh)
  step = steps.make_train_step(model, tx, mesh)
  rows = parallel.process_rows(BATCH, mesh)
  shard = parallel.input_shard(BATCH, mesh)
  losses = []
  for i in range(MP_STEPS):
    local = {k: v[rows] for k, v in train_batch(100 + i, model).items()}
    params, opt, metrics = step(params, opt, parallel.shard_batch(local, mesh),
                                dropout_key(100 + i))
    losses.append(float(metrics['loss']))   # replicated: every process can read it
  np.savez(os.path.join(out_dir, f'member{process_id}.npz'),
           **{jax.tree_util.keystr(path): assemble(leaf)
              for path, leaf in jax.tree_util.tree_leaves_with_path(params)})
  info = {'process_index': index, 'process_count': count, 'rows': [rows.start, rows.stop],
          'input_shard': list(shard),
          'local_devices': len(jax.local_devices()), 'devices': len(jax.devices()),
          'mesh_processes': [[d.process_index for d in row] for row in mesh.devices],
          'losses': losses}
  jax.distributed.shutdown()
  return info


# ---------------------------------------------------------------------------
# The documentation's table: the full-size network, compiled but not run.

def run_report(batch_size: int, data: int, model_devices: int) -> None:
  model = model_lib.AlexNet()
  tx = optimizer()
  mesh = parallel.make_mesh(data, model_devices)
  params, opt = abstract_state(model, tx, mesh)
  bs = parallel.batch_sharding(mesh)
  batch = {'image': jax.ShapeDtypeStruct((batch_size, 224, 224, 3), jnp.float32, sharding=bs),
           'label': jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=bs)}
  t = time.time()
  step = steps.make_train_step(model, tx, mesh)
  text = step.lower(params, opt, batch, dropout_key(0)).compile().as_text()
  print(f'compiled in {time.time() - t:.0f} s', file=sys.stderr)
  for c in hlo.hlo_collectives(text, mesh):
    shapes = ', '.join('x'.join(map(str, s)) for s in c.shapes[:4])
    more = f' (+{len(c.shapes) - 4} more)' if len(c.shapes) > 4 else ''
    axes = '+'.join(c.axes) or '-'
    print(f'{c.op:15s} {axes:11s} {c.elements:>10d} {c.dtypes[0]}  {shapes}{more}')


if __name__ == '__main__':
  if _MODE == 'checks':
    out = sys.argv[2]
    results = run_checks(out)
    with open(os.path.join(out, 'checks.json'), 'w') as f:
      json.dump(results, f)
  elif _MODE == 'member':
    pid, nproc, port, out = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    info = run_member(pid, nproc, port, out)
    with open(os.path.join(out, f'member{pid}.json'), 'w') as f:
      json.dump(info, f)
  elif _MODE == 'report':
    given = list(map(int, sys.argv[2:5]))
    batch_size, data, model_devices = given + [128, 4, 2][len(given):]
    run_report(batch_size, data, model_devices)
  else:
    sys.exit(f'unknown mode {_MODE!r}')
