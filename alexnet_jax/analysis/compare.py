"""Runs side by side: final errors, differences to a baseline, and the paper's figure for each.

`compare(workdirs, baseline)` reads each run's config.json and metrics.jsonl
(the last center-crop and ten-crop evaluation), subtracts the baseline's
errors, and looks up which of the paper's claims the run tests
(`ablations.claims_of`: the ablations it has and the baseline has not).
`markdown(rows)` renders the table `python -m alexnet_jax.tools.compare` prints.

Nothing here imports JAX or TensorFlow.
"""

import dataclasses
import os

from alexnet_jax import ablations
from alexnet_jax import errors
from alexnet_jax import rundir

# (column, metrics.jsonl key) of the errors a comparison reports.
ERRORS = (('top1', 'eval_top1_error'), ('top5', 'eval_top5_error'),
          ('ten_crop_top1', 'eval_ten_crop_top1_error'),
          ('ten_crop_top5', 'eval_ten_crop_top5_error'))


@dataclasses.dataclass(frozen=True)
class Row:
  """One run of a compare.

  Attributes:
    workdir: the run's directory.
    errors: {'top1', 'top5', 'ten_crop_top1', 'ten_crop_top5'}: the last logged error as a
      fraction, None when never logged (ten-crop: config.ten_crop_eval off or the run cut short).
    differences: the same keys, this run's error minus the baseline's, in percentage points
      (None where either is missing).
    claims: the paper's claims this run tests against the baseline.
    is_baseline: this is the baseline run.
  """
  workdir: str
  errors: dict[str, float | None]
  differences: dict[str, float | None]
  claims: tuple[ablations.Ablation, ...]
  is_baseline: bool


def final_errors(workdir: str) -> dict[str, float | None]:
  """The last logged value of each error of `ERRORS` in <workdir>/metrics.jsonl.

  Raises:
    errors.WorkdirError: no metrics.jsonl, or no evaluation in it.
  """
  rows = rundir.read_metrics(workdir)
  if not rows:
    raise errors.WorkdirError(f'{workdir} has no metrics.jsonl: it is not a training run or has '
                              'not started. Give the --workdir of runs of alexnet_jax.main.')
  last = {}
  for row in rows:
    last.update(row)
  found = {column: last.get(key) for column, key in ERRORS}
  if found['top1'] is None:
    raise errors.WorkdirError(f'{workdir}/{rundir.METRICS_FILE} holds no evaluation yet (no '
                              "eval_top1_error); wait for the run's first evaluation or leave it "
                              'out of the compare.')
  return found


def _dataset_of(config) -> tuple:
  """What makes two runs' errors comparable: the dataset, its location and class subset."""
  classes = config.input.shapes.classes
  return (config.dataset, config.data_dir if config.dataset == 'folder' else '',
          tuple(classes) if classes is not None else None, config.input.crop_size)


def compare(workdirs: list[str], baseline: str | None = None) -> list[Row]:
  """One `Row` per run, the baseline (by default the first run) first.

  Raises:
    errors.WorkdirError: a workdir is not a run or has no evaluation.
    errors.ConfigError: fewer than two runs, or runs on different data (dataset, folder,
      class subset or crop size), whose errors are not comparable.
  """
  baseline = baseline or (workdirs[0] if workdirs else None)
  ordered = [baseline] + [w for w in workdirs if os.path.abspath(w) != os.path.abspath(baseline)]
  if len(ordered) < 2:
    raise errors.ConfigError('A comparison needs at least two runs: give --workdirs=A,B (and '
                             '--baseline=A, else the first one is the baseline).')
  configs = [rundir.read_config(w) for w in ordered]
  data = [_dataset_of(c) for c in configs]
  different = [w for w, d in zip(ordered[1:], data[1:]) if d != data[0]]
  if different:
    raise errors.ConfigError(
        f'{", ".join(different)} did not train on the data of the baseline {baseline} '
        f'(dataset, folder, class subset, crop size: {data[0]} there); their errors are not '
        'comparable. Compare runs on the same data, or choose another --baseline.')
  measured = [final_errors(w) for w in ordered]
  rows = []
  for i, (workdir, config, errors_) in enumerate(zip(ordered, configs, measured)):
    differences = {k: None if v is None or measured[0][k] is None else
                   100.0 * (v - measured[0][k]) for k, v in errors_.items()}
    rows.append(Row(workdir, errors_, differences,
                    tuple(ablations.claims_of(config, configs[0])), i == 0))
  return rows


def _percent(value: float | None) -> str:
  return '—' if value is None else f'{100.0 * value:.1f}'


def _points(value: float | None) -> str:
  return '—' if value is None else f'{value:+.1f}'


def _pair(first: str, second: str) -> str:
  return f'{first} / {second}'


def markdown(rows: list[Row]) -> str:
  """The comparison as a Markdown table, then the claims it tests.

  Errors in percent (top-1 / top-5); differences to the baseline and the
  paper's in percentage points ('—': not measured or not reported).
  """
  lines = ['| run | tests | top-1 / top-5 error (%) | ten-crop (%) | difference | '
           'ten-crop difference | paper |', '|---|---|---|---|---|---|---|']
  for row in rows:
    e, d = row.errors, row.differences
    if row.is_baseline:
      tests, diff, diff10, paper = 'baseline', '', '', ''
    else:
      tests = ', '.join(c.name for c in row.claims) or 'no claim of the paper'
      diff = _pair(_points(d['top1']), _points(d['top5']))
      diff10 = _pair(_points(d['ten_crop_top1']), _points(d['ten_crop_top5']))
      paper = '; '.join(_pair(_points(c.top1), _points(c.top5)) for c in row.claims)
    lines.append(f'| {os.path.basename(os.path.normpath(row.workdir))} | {tests} | '
                 f'{_pair(_percent(e["top1"]), _percent(e["top5"]))} | '
                 f'{_pair(_percent(e["ten_crop_top1"]), _percent(e["ten_crop_top5"]))} | '
                 f'{diff} | {diff10} | {paper} |')
  claims = {c.name: c for row in rows for c in row.claims}
  if claims:
    lines += [''] + [f'- {name}: {c.claim}' for name, c in claims.items()]
  return '\n'.join(lines) + '\n'
