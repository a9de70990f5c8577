r"""Evaluates a trained network (or an ensemble) over every example of a split, read-only.

  python -m alexnet_jax.tools.evaluate --workdir=DIR [--step=N|latest|best] [--crops=1|10|both] \
      [--split=validation|train] [--ensemble=DIR2,DIR3,...] [--data_dir=DIR] [--batch_size=N] \
      [--resize=shorter_side|warp]

Restores the checkpoint (the latest by default) without writing to it, runs
the test-time preprocessing of the run's config (center crop, and/or the ten
views of section 4.1 with their softmax outputs averaged), and prints a table
of the loss and the top-1 / top-5 error (section 6's measures). --ensemble
adds networks whose softmax outputs are averaged with this one's (section 6's
5-CNN / 7-CNN rows; every member's latest checkpoint, the same classes and
input preprocessing). --resize evaluates with another protocol than the
run's input.resize ('shorter_side': section 2's; 'warp': BVLC's, the default
of a converted network). The results, with the protocol they were measured
with ("protocol": the run's input conventions), go to
<workdir>/eval/<split>-step<N>.json (<split>-step<N>-<resize>.json with
--resize), the only file written; checkpoints and metrics.jsonl are left as
they are.
The work is done by `alexnet_jax.inference`.
"""

from absl import flags

from alexnet_jax import cli
from alexnet_jax import inference
from alexnet_jax import rundir

_RUN = cli.define_run_flags('The run to evaluate.')
_CROPS = flags.DEFINE_enum('crops', 'both', ['1', '10', 'both'],
                           'The center crop (1), the ten views of section 4.1 (10), or both.')
_SPLIT = flags.DEFINE_string('split', 'validation', "The split: 'validation' or 'train'.")
_ENSEMBLE = flags.DEFINE_list('ensemble', [], 'Other runs (workdirs, their latest checkpoint) '
                              'whose softmax outputs are averaged with this one\'s.')
_RESIZE = flags.DEFINE_enum('resize', None, ['shorter_side', 'warp'],
                            "How an image becomes S x S (default: the run's input.resize): "
                            "'shorter_side' (section 2) or 'warp' (BVLC's).")


def main(argv):
  del argv
  run = inference.with_resize(rundir.open_run(_RUN.workdir.value, _RUN.step.value),
                              _RESIZE.value)
  runs = [run] + [inference.with_resize(rundir.open_run(workdir), _RESIZE.value)
                  for workdir in _ENSEMBLE.value]
  inference.check_ensemble(runs)
  rundir.check_writable(inference.evaluation_path(run, _SPLIT.value, _RESIZE.value))
  info = inference.dataset_info(run, _RUN.data_dir.value)
  views = {'1': [False], '10': [True], 'both': [False, True]}[_CROPS.value]
  rows = {}
  for ten_crop in views:
    result = inference.evaluate(runs, _SPLIT.value, ten_crop=ten_crop,
                                batch_size=_RUN.batch_size.value, info=info)
    view = 'ten_crop' if ten_crop else 'center'
    rows[view] = result['model']
    if 'ensemble' in result:
      rows[f'ensemble_{view}'] = result['ensemble']
  path = inference.write_evaluation(run, _SPLIT.value, {
      'workdir': run.workdir, 'step': run.step, 'split': _SPLIT.value,
      'protocol': inference.protocol(run), 'ensemble': [r.workdir for r in runs[1:]],
      'results': rows}, _RESIZE.value)
  print(f'{run.workdir} step {run.step}, {_SPLIT.value} split '
        f'({int(next(iter(rows.values()))["count"])} examples), protocol '
        f'{", ".join(f"{k}={v!r}" for k, v in inference.protocol(run).items())}:')
  print(f'{"":<26} {"loss":>8} {"top-1 error":>12} {"top-5 error":>12}')
  for name, m in rows.items():
    label = name.replace('_', ' ').replace('ten crop', 'ten-crop')
    if name.startswith('ensemble'):
      label = label.replace('ensemble', f'ensemble of {len(runs)},')
    print(f'{label:<26} {m["loss"]:8.4f} {m["top1_error"]:12.2%} {m["top5_error"]:12.2%}')
  print(f'Wrote {path}.')


if __name__ == '__main__':
  cli.run(main)
