r"""Trains AlexNet from an experiment config.

  python -m alexnet_jax.main --workdir=/tmp/demo --config=experiments/demo.py
  python -m alexnet_jax.main --workdir=/tmp/run --config=experiments/paper.py \
      --config.batch_size=256 --config.model.towers=1

--config also takes a packaged experiment's name (`--config=demo`). Rerunning
the same command resumes from the latest checkpoint in --workdir. The work is
done by `alexnet_jax.train.train_and_evaluate`.

Exit status: 0 when the run finished (last line "Finished at step N: ...");
3 (`cli.STOPPED_STATUS`) when SIGTERM or SIGINT stopped it after saving (last
line "Stopped at step N by SIGTERM; rerun the same command to resume.");
4 (`cli.DISK_FULL_STATUS`) when the disk of --workdir filled up (one paragraph
on stderr: how much one checkpoint needs; the checkpoints saved before are
intact, so the same command resumes once there is room); 1 for an error the
user fixes (one paragraph on stderr).
"""

import sys

from absl import flags
from absl import logging

from alexnet_jax import cli
from alexnet_jax import train

_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and logs.')
cli.define_config_flag()
flags.mark_flags_as_required(['config', 'workdir'])

def main(argv):
  del argv
  result = train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)
  if result['interrupted']:
    logging.info('Stopped at step %d by %s; rerun the same command to resume.', result['step'],
                 result['stopped_by'])
    sys.exit(cli.STOPPED_STATUS)
  logging.info('Finished at step %d: %s', result['step'],
               {k: round(v, 4) for k, v in result.items() if k.startswith('eval')})


if __name__ == '__main__':
  cli.run(main)
