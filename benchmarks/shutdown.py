r"""Measures how long a finished run takes to exit after its final evaluation.

Runs `python -m alexnet_jax.main` `--rounds` times in a fresh workdir each,
stamps every log line as it arrives (this process's monotonic clock, not the
log's own timestamps) and prints, per round, the seconds from the final
evaluation's line (the ten-crop one when the config has it) to the "Finished"
line and to the process's exit.

  python benchmarks/shutdown.py --rounds=5 -- --config=demo \
      --config.num_train_steps=2 --config.log_every_steps=1

Arguments after `--` go to alexnet_jax.main (--workdir is added).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

FINAL_EVAL = ('ten-crop evaluation over', 'evaluation over')


def one_round(main_args: list[str]) -> dict[str, float]:
  """Runs one training job; the seconds after its final evaluation's log line."""
  with tempfile.TemporaryDirectory() as workdir:
    proc = subprocess.Popen(
        [sys.executable, '-m', 'alexnet_jax.main', f'--workdir={workdir}/run', *main_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    evaluations, finished = {}, None
    for line in proc.stderr:
      now = time.monotonic()
      for kind in FINAL_EVAL:
        if kind in line:
          evaluations[kind] = now
          break
      if 'Finished at step' in line:
        finished = now
    proc.wait()
    exited = time.monotonic()
  if proc.returncode != 0 or finished is None or not evaluations:
    raise SystemExit(f'The run failed (exit status {proc.returncode}) or logged no final '
                     'evaluation; run the same alexnet_jax.main command by hand to see why.')
  final = evaluations.get(FINAL_EVAL[0], evaluations.get(FINAL_EVAL[1]))
  return {'to_finished_line': finished - final, 'to_exit': exited - final}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('main_args', nargs='*', help='arguments for alexnet_jax.main')
  args = parser.parse_args()
  rows = [one_round(args.main_args) for _ in range(args.rounds)]
  print('| round | final eval line -> "Finished" line (s) | final eval line -> exit (s) |')
  print('|---|---|---|')
  for i, row in enumerate(rows, 1):
    print(f'| {i} | {row["to_finished_line"]:.2f} | {row["to_exit"]:.2f} |')
  exits = [row['to_exit'] for row in rows]
  print(f'median {statistics.median(exits):.2f} s, max {max(exits):.2f} s to exit')


if __name__ == '__main__':
  main()
