"""Where the training step's time goes on CPU: per-op thread time of one traced step.

  python benchmarks/profile_step.py [--batch_size=128] [--top=40]

Compiles the paper's training step (`alexnet_jax.timing.train_step_timer`),
runs two untimed steps, traces one with `jax.profiler.trace(...,
create_perfetto_trace=True)`, sums the trace's complete events by op name
and prints the largest with the HLO each fused op wraps (its result shape,
convolution/dot/reduce-window, and the JAX op it came from). Thread times of
the two cores add up. Convolutions on XLA's Eigen path (the library's CPU
default: `compilation.jit` compiles the step with a compiler option that keeps
them out of YNNPACK) do not appear as traced ops; run with
XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=+individual_convolution (a
setting of your own, which `compilation.jit` leaves alone) to see them, as
YNNPACK fusions.
"""

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile
import time

import jax

from alexnet_jax import model as model_lib
from alexnet_jax import timing


def fused_ops(hlo_text: str) -> dict:
  """{fusion name: (result type, main op, JAX op name)} of a compiled module's text."""
  bodies, current = {}, None
  for line in hlo_text.splitlines():
    head = re.match(r'^(?:ENTRY )?%?([\w.\-]+) ', line)
    if line and not line.startswith(' ') and '{' in line and head:
      current = head.group(1)
      bodies[current] = []
    elif current:
      bodies[current].append(line)
  found = {}
  for line in hlo_text.splitlines():
    m = re.match(r'\s*(?:ROOT )?%([\w.\-]+) = (\S+) fusion\(.*calls=%?([\w.\-]+)', line)
    if m:
      body = ' '.join(bodies.get(m.group(3), []))
      op = re.search(r'(convolution|dot|reduce-window|select-and-scatter)\(', body)
      name = re.search(r'op_name="([^"]+)"', body)
      found[m.group(1)] = (m.group(2)[:40], op.group(1) if op else '',
                           name.group(1)[-70:] if name else '')
  return found


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--top', type=int, default=40)
  args = parser.parse_args()
  timer = timing.train_step_timer(model_lib.AlexNet(), args.batch_size)
  timer.warm(2)
  trace_dir = tempfile.mkdtemp()
  start = time.perf_counter()
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    timer.run(1)
  print(f'traced step: {time.perf_counter() - start:.2f} s wall (with tracing)')
  path = sorted(glob.glob(f'{trace_dir}/**/*perfetto_trace.json.gz', recursive=True))[-1]
  events = json.load(gzip.open(path))
  events = events['traceEvents'] if isinstance(events, dict) else events
  totals = collections.Counter()
  for e in events:
    if e.get('ph') == 'X' and 'dur' in e and not e['name'].startswith(('$', 'Thunk', 'Slinky')):
      totals[e['name']] += e['dur'] / 1e3
  ops = fused_ops(timer.hlo_text)
  print(f'op time, both threads: {sum(totals.values()) / 1e3:.2f} s')
  for name, ms in totals.most_common(args.top):
    print(f'{ms:9.1f} ms  {name:30s} {ops.get(name, "")}')


if __name__ == '__main__':
  main()
