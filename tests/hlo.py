"""Reads the collectives of a compiled (SPMD-partitioned) step: test tooling.

`hlo_collectives(step.lower(...).compile().as_text(), mesh)` lists every
collective with the mesh axes its device groups span, which is how the tests
check that the two towers communicate only where Figure 2 says.
docs/parallel.md shows how to use it on your own step.
"""

import dataclasses
import math
import re

import jax
import numpy as np

COLLECTIVE_OPS = ('all-gather', 'all-reduce', 'reduce-scatter', 'all-to-all',
                  'ragged-all-to-all', 'collective-permute', 'collective-broadcast')

_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*(?P<type>.+?)\s+'
    r'(?P<op>' + '|'.join(COLLECTIVE_OPS) + r')(?P<start>-start)?\((?P<rest>.*)$')
_SHAPE = re.compile(r'\b(?P<dtype>[a-z]+\d*)\[(?P<dims>[\d,]*)\]')
_IOTA = re.compile(r'\[(?P<shape>[\d,]+)\]<=\[(?P<dims>[\d,]+)\](?:T\((?P<perm>[\d,]+)\))?')


@dataclasses.dataclass(frozen=True)
class Collective:
  """One collective of a compiled (SPMD-partitioned) HLO module.

  op: 'all-gather', 'all-reduce', 'reduce-scatter', ... (async '-start' forms
  folded in). axes: the mesh axes along which its groups' devices differ:
  ('model',), ('data',), ('data', 'model') or () (no communication).
  shapes: its per-device result shapes (several for a combined all-reduce).
  group_size: devices per group.
  """
  name: str
  op: str
  axes: tuple[str, ...]
  shapes: tuple[tuple[int, ...], ...]
  dtypes: tuple[str, ...]
  group_size: int

  @property
  def elements(self) -> int:
    return sum(math.prod(s) for s in self.shapes)


def _balanced(text: str) -> str:
  """The leading {...} group of text, braces balanced."""
  depth = 0
  for i, ch in enumerate(text):
    depth += {'{': 1, '}': -1}.get(ch, 0)
    if depth == 0:
      return text[:i + 1]
  raise ValueError(f'Unbalanced braces in {text[:80]!r}.')


def _iota_groups(m: re.Match) -> np.ndarray:
  dims = [int(d) for d in m['dims'].split(',')]
  ids = np.arange(math.prod(dims)).reshape(dims)
  if m['perm']:
    ids = ids.transpose([int(p) for p in m['perm'].split(',')])
  return ids.reshape([int(d) for d in m['shape'].split(',')])


def _mesh_groups(text: str) -> list[list[int]]:
  """Groups of `mesh['a'=4,'b'=2](, device_ids=(...))? {'b'}` (sub-axes 'a':(pre)size)."""
  m = re.match(r"mesh\[(?P<axes>[^\]]*)\](?:, device_ids=\((?P<ids>[^()]*(?:\([^()]*\))?)\))?"
               r"\s*\{(?P<group>[^}]*)\}", text)
  if not m:
    raise ValueError(f'Unknown replica_groups format {text[:80]!r}.')
  axes = re.findall(r"'?([^'=,\s]+)'?=(\d+)", m['axes'])
  names, sizes = [a for a, _ in axes], [int(s) for _, s in axes]
  if m['ids'] is None:
    ids = np.arange(math.prod(sizes)).reshape(sizes)
  elif (iota := _IOTA.fullmatch(m['ids'].strip())):
    ids = _iota_groups(iota).reshape(sizes)
  else:
    ids = np.array([int(i) for i in re.findall(r'\d+', m['ids'])]).reshape(sizes)
  # Split every axis into (pre, size, rest) so a sub-axis is one dimension.
  split_shape, grouped = [], []
  refs = re.findall(r"'?([^':,\s]+)'?(?::\((\d+)\)(\d+))?", m['group'])
  by_axis = {name: (int(pre), int(size)) for name, pre, size in refs if pre}
  whole = {name for name, pre, _ in refs if not pre}
  for name, size in zip(names, sizes):
    pre, sub = by_axis.get(name, (1, size))
    base = len(split_shape)
    split_shape += [pre, sub, size // (pre * sub)]
    if name in whole or name in by_axis:
      grouped.append(base + 1)
  ids = ids.reshape(split_shape)
  others = [d for d in range(ids.ndim) if d not in grouped]
  group_size = math.prod(split_shape[d] for d in grouped)
  return ids.transpose(others + grouped).reshape(-1, group_size).tolist()


def _groups(rest: str, num_devices: int) -> list[list[int]]:
  m = re.search(r'(replica_groups|source_target_pairs)=', rest)
  if not m:
    return [list(range(num_devices))]
  text = rest[m.end():]
  if text.startswith('{'):
    groups = [[int(i) for i in g.split(',')]
              for g in re.findall(r'\{([\d,]+)\}', _balanced(text))]
    return groups or [list(range(num_devices))]
  if text.startswith('['):
    iota = _IOTA.match(text)
    if not iota:
      raise ValueError(f'Unknown replica_groups format {text[:80]!r}.')
    return _iota_groups(iota).tolist()
  if text.startswith('mesh['):
    return _mesh_groups(text)
  raise ValueError(f'Unknown replica_groups format {text[:80]!r}.')


def hlo_collectives(hlo_text: str, mesh: jax.sharding.Mesh) -> list[Collective]:
  """The collectives of a compiled step, each with the mesh axes it spans.

  hlo_text: `step.lower(...).compile().as_text()` of a computation over `mesh`
  (a Mesh or AbstractMesh; device i of the HLO is the i-th in row-major mesh
  order, `mesh.devices.flat`, as `jax.jit` assigns them).
  Replica groups are read in all three printed forms: explicit lists
  {{0,1},{2,3}}, iota [4,2]<=[8] (with an optional transpose T(1,0)) and
  mesh['axis_0'=4,'axis_1'=2] {'axis_1'}.
  """
  names, sizes = tuple(mesh.shape), tuple(mesh.shape.values())
  coords = np.stack(np.unravel_index(np.arange(math.prod(sizes)), sizes), -1)
  found = []
  for line in hlo_text.splitlines():
    m = _INSTRUCTION.match(line)
    if not m:
      continue
    shapes = [(s['dtype'], tuple(int(d) for d in s['dims'].split(',') if d))
              for s in _SHAPE.finditer(m['type'])]
    if m['start'] and m['op'] != 'all-reduce' and len(shapes) > 1:
      shapes = shapes[len(shapes) // 2:]  # (operands, results) of an async start
    groups = _groups(m['rest'], len(coords))
    varying = set()
    for group in groups:
      c = coords[np.asarray(group)]
      varying |= {names[a] for a in range(c.shape[1]) if len(set(c[:, a])) > 1}
    found.append(Collective(
        name=m['name'], op=m['op'], axes=tuple(a for a in names if a in varying),
        shapes=tuple(s for _, s in shapes), dtypes=tuple(d for d, _ in shapes),
        group_size=len(groups[0])))
  return found
