"""Runs side by side: seed groups, differences to a baseline with their noise, the paper's figures.

`compare(workdirs, baseline)` reads each run's config.json, metrics.jsonl (the
last center-crop and ten-crop evaluation) and the ensemble evaluations
`python -m alexnet_jax.tools.evaluate --ensemble` wrote into it. Runs whose
configs differ only in the seed (and in fields that do not change what is
learned, `LOGISTICS`) form a `Group`; the baseline run's group is the
reference. For every other group:

* changes: the fields whose values differ from the baseline's;
* claims: the paper's ablations whose changes (`ablations.changes`) are all
  among them; confounds: the other changed fields (the number of epochs, a
  dropout form, ...), with which the paper's figure is not comparable;
* for each error, the difference of the group's mean to the baseline group's
  in points and its 95% interval (Welch: `difference_interval`), when both
  groups have at least two runs.

`markdown(groups, ensembles)` renders the tables `python -m
alexnet_jax.tools.compare` prints. Runs evaluated on different data are
refused.

Nothing here imports JAX or TensorFlow.
"""

import dataclasses
import glob
import json
import math
import os
from typing import Any

import ml_collections
import numpy as np
import scipy.stats

from alexnet_jax import ablations
from alexnet_jax import errors
from alexnet_jax import rundir

# (column, metrics.jsonl key) of the errors a comparison reports.
ERRORS = (('top1', 'eval_top1_error'), ('top5', 'eval_top5_error'),
          ('ten_crop_top1', 'eval_ten_crop_top1_error'),
          ('ten_crop_top5', 'eval_ten_crop_top5_error'))
# Fields that say where or how often, not what is learned: never a confound. Names ending
# in '.' cover a group. The seed is what a group varies.
LOGISTICS = ('seed', 'data_dir', 'checkpoint_every_steps', 'keep_checkpoints', 'log_every_steps',
             'allow_config_change', 'eval_batch_size', 'ten_crop_eval', 'input.num_threads',
             'input.prepare_workers', 'input.prepared_dir', 'input.stats_dir',
             'input.synset_words', 'mesh.', 'distributed.')
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Interval:
  """A difference of means (points) and its `LEVEL` interval (None: too few runs)."""
  difference: float
  low: float | None
  high: float | None

  @property
  def sign(self) -> str:
    """'above 0', 'below 0' (the interval excludes zero on that side), 'contains 0' or '—'."""
    if self.low is None:
      return '—'
    return 'above 0' if self.low > 0 else 'below 0' if self.high < 0 else 'contains 0'


@dataclasses.dataclass(frozen=True)
class Group:
  """Runs of one config that differ in the seed only.

  Attributes:
    workdirs: the runs, in the order given.
    seeds: their config.seed.
    errors: {'top1', 'top5', 'ten_crop_top1', 'ten_crop_top5'}: each run's last logged error
      (fractions); a column some run lacks (ten-crop off, run cut short) is left out.
    changes: {dotted field: value} that differ from the baseline's config.
    claims: the paper's ablations these changes make.
    confounds: the changed fields no claim accounts for.
    differences: per column of `errors`, this group's mean minus the baseline group's
      (points), with its interval.
    is_baseline: this is the baseline's group.
  """
  workdirs: tuple[str, ...]
  seeds: tuple[int, ...]
  errors: dict[str, tuple[float, ...]]
  changes: dict[str, Any]
  claims: tuple[ablations.Ablation, ...]
  confounds: tuple[str, ...]
  differences: dict[str, Interval]
  is_baseline: bool


@dataclasses.dataclass(frozen=True)
class Ensemble:
  """An `evaluate --ensemble` result: k networks' softmax outputs averaged.

  Attributes:
    workdir: the run evaluated with the others.
    members: k, the networks averaged.
    single, averaged: {'top1', 'top5'} errors (fractions) of that run alone and of the
      ensemble, center crop, from the same evaluation.
  """
  workdir: str
  members: int
  single: dict[str, float]
  averaged: dict[str, float]


def difference_interval(values: list[float], reference: list[float],
                        level: float = LEVEL) -> Interval:
  """mean(values) - mean(reference) with Welch's t interval (unequal variances).

  The interval is d +- t * sqrt(s1^2 / n1 + s2^2 / n2), t the (1 + level) / 2
  quantile of Student's t with the Welch-Satterthwaite degrees of freedom
  (s: the sample standard deviations). Fewer than two values on either side,
  or no spread at all: no interval.
  """
  a, b = np.asarray(values, float), np.asarray(reference, float)
  d = float(a.mean() - b.mean())
  if len(a) < 2 or len(b) < 2:
    return Interval(d, None, None)
  va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
  if va + vb == 0:
    return Interval(d, None, None)
  df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
  half = float(scipy.stats.t.ppf((1 + level) / 2, df)) * math.sqrt(va + vb)
  return Interval(d, d - half, d + half)


def mean_interval(values: list[float], level: float = LEVEL) -> Interval:
  """mean(values) with Student's t interval, mean +- t(n - 1) * s / sqrt(n) (paired
  differences: one value per run). Fewer than two values or no spread: no interval."""
  a = np.asarray(values, float)
  if len(a) < 2 or a.std() == 0:
    return Interval(float(a.mean()), None, None)
  half = float(scipy.stats.t.ppf((1 + level) / 2, len(a) - 1)) * a.std(ddof=1) / math.sqrt(len(a))
  return Interval(float(a.mean()), float(a.mean()) - half, float(a.mean()) + half)


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


def ensembles(workdir: str) -> list[Ensemble]:
  """The center-crop ensemble evaluations of `evaluate --ensemble` in <workdir>/eval/."""
  found = []
  for path in sorted(glob.glob(os.path.join(workdir, 'eval', '*.json'))):
    with open(path) as f:
      written = json.load(f)
    results = written.get('results', {})
    if written.get('ensemble') and 'ensemble_center' in results and 'center' in results:
      found.append(Ensemble(workdir, 1 + len(written['ensemble']),
                            *({k: results[view][f'{k}_error'] for k in ('top1', 'top5')}
                              for view in ('center', 'ensemble_center'))))
  return found


def _is_logistics(name: str) -> bool:
  return any(name == f or (f.endswith('.') and name.startswith(f)) for f in LOGISTICS)


def _data_of(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What decides the evaluation images: runs that differ here are not comparable."""
  data = {'dataset': config.dataset, 'input.image_size': config.input.image_size,
          'input.crop_size': config.input.crop_size}
  if config.dataset == 'folder':
    data['data_dir'] = config.data_dir
  if config.dataset == 'imagenette':
    data['input.imagenette.variant'] = config.input.imagenette.variant
  if config.dataset == 'shapes':
    shapes = ablations.flatten(config.input.shapes, 'input.shapes.')
    data.update({k: v for k, v in shapes.items() if k != 'input.shapes.train_examples'})
  return data


def _learning_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return {k: v for k, v in ablations.flatten(config).items() if not _is_logistics(k)}


def _claims(changes: dict[str, Any], baseline: ml_collections.ConfigDict
            ) -> tuple[tuple[ablations.Ablation, ...], tuple[str, ...]]:
  """(the ablations `changes` make, the changed fields none of them accounts for)."""
  claims, explained = [], set()
  for ablation in ablations.ABLATIONS.values():
    needed = ablations.changes(ablation, baseline)
    if needed and all(k in changes and (v is None or changes[k] == v) for k, v in needed.items()):
      claims.append(ablation)
      explained |= set(needed)
  return tuple(claims), tuple(k for k in changes if k not in explained)


def compare(workdirs: list[str], baseline: str | None = None) -> list[Group]:
  """One `Group` per config, the baseline's first, then in the order of `workdirs`.

  Raises:
    errors.WorkdirError: a workdir is not a run or has no evaluation.
    errors.ConfigError: no second config to compare, or runs evaluated on different data
      (dataset, folder, class subset, difficulty, generation seed, validation size,
      image or crop size), whose errors are not comparable.
  """
  baseline = baseline or (workdirs[0] if workdirs else None)
  ordered = [baseline] + [w for w in workdirs if os.path.abspath(w) != os.path.abspath(baseline)]
  configs = [rundir.read_config(w) for w in ordered]
  data = [_data_of(c) for c in configs]
  different = [w for w, d in zip(ordered[1:], data[1:]) if d != data[0]]
  if different:
    raise errors.ConfigError(
        f'{", ".join(different)} did not train on the data of the baseline {baseline} '
        f'({data[0]} there); their errors are not comparable. Compare runs on the same data, '
        'or choose another --baseline.')
  reference = _learning_fields(configs[0])
  members: dict[tuple, list[int]] = {}
  changes_of = {}
  for i, config in enumerate(configs):
    fields = _learning_fields(config)
    changes = {k: v for k, v in fields.items() if reference.get(k) != v}
    key = tuple(sorted(changes.items(), key=lambda kv: kv[0]))
    members.setdefault(key, []).append(i)
    changes_of[key] = changes
  if len(members) < 2:
    raise errors.ConfigError('A comparison needs runs of at least two configs: give --workdirs='
                             'A,B (and --baseline=A, else the first one is the baseline); runs '
                             'that differ only in the seed form one group.')
  measured = [final_errors(w) for w in ordered]
  groups = []
  for key, rows in members.items():
    errors_ = {column: tuple(measured[i][column] for i in rows) for column, _ in ERRORS
               if all(measured[i][column] is not None for i in rows)}
    claims, confounds = _claims(changes_of[key], configs[0])
    groups.append(Group(tuple(ordered[i] for i in rows), tuple(configs[i].seed for i in rows),
                        errors_, changes_of[key], claims, confounds, {}, not key))
  base = groups[0]
  return [dataclasses.replace(g, differences={
      column: difference_interval([100 * v for v in values],
                                  [100 * v for v in base.errors[column]])
      for column, values in g.errors.items() if column in base.errors}) for g in groups]


def _name(workdir: str) -> str:
  return os.path.basename(os.path.normpath(workdir))


def _mean_sd(values: tuple[float, ...]) -> str:
  mean = 100 * float(np.mean(values))
  if len(values) < 2:
    return f'{mean:.1f}'
  return f'{mean:.1f} ± {100 * float(np.std(values, ddof=1)):.1f}'


def _interval(interval: Interval | None) -> str:
  if interval is None:
    return '—'
  if interval.low is None:
    return f'{interval.difference:+.1f}'
  return f'{interval.difference:+.1f} [{interval.low:+.1f}, {interval.high:+.1f}]'


def _figure(figure: ablations.PaperFigure) -> str:
  def points(v):
    return '—' if v is None else f'{v:+.1f}'
  if figure.top1 is None and figure.top5 is None:
    return 'no figure'
  return f'{points(figure.top1)} / {points(figure.top5)} ({figure.data})'


def _value(value: Any) -> str:
  return ','.join(map(str, value)).join('()') if isinstance(value, tuple) else repr(value)


def markdown(groups: list[Group], ensemble_rows: list[Ensemble] = ()) -> str:
  """The comparison as Markdown: one row per group, then the claims, then the ensembles.

  Errors in percent as the mean ± standard deviation over a group's runs;
  differences to the baseline group in points with their 95% interval in
  brackets, and on which side of zero that interval lies; the paper's figures
  in points, with the data it measured them on.
  """
  lines = [f'{LEVEL:.0%} intervals (Welch) of the difference of mean errors to the baseline '
           'group, in points; errors in percent, mean ± sd over the runs.', '',
           '| runs | seeds | tests | confounds | top-1 error | top-5 error | top-1 difference '
           '| top-1 interval | top-5 difference | ten-crop top-1 | ten-crop top-1 difference '
           '| paper |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|']
  for g in groups:
    e, d = g.errors, g.differences
    if g.is_baseline:
      tests, confounds, paper = 'baseline', '', ''
    else:
      tests = ', '.join(c.name for c in g.claims) or 'no claim of the paper'
      confounds = ', '.join(f'{k}={_value(g.changes[k])}' for k in g.confounds)
      paper = ('not comparable (confounds)' if g.confounds else
               '; '.join(_figure(c.figure) for c in g.claims) or '—')
    cells = [', '.join(map(_name, g.workdirs)), ', '.join(map(str, g.seeds)), tests, confounds,
             *(_mean_sd(e[k]) if k in e else '—' for k in ('top1', 'top5')),
             '' if g.is_baseline else _interval(d.get('top1')),
             '' if g.is_baseline or 'top1' not in d else d['top1'].sign,
             '' if g.is_baseline else _interval(d.get('top5')),
             _mean_sd(e['ten_crop_top1']) if 'ten_crop_top1' in e else '—',
             '' if g.is_baseline else _interval(d.get('ten_crop_top1')), paper]
    lines.append('| ' + ' | '.join(cells) + ' |')
  claims = {c.name: c for g in groups for c in g.claims}
  if claims:
    lines += [''] + [f'- {name} (paper: {_figure(c.figure)}): {c.claim}'
                     for name, c in claims.items()]
  if any(c.figure.data == ablations.UNNAMED_ILSVRC for c in claims.values()):
    lines += ['', ablations.UNNAMED_NOTE]
  ten_crop_text, ten_crop_figure = ablations.TEN_CROP
  lines += ['', 'Ten crops (section 4.1) against the center crop, in points, mean over the runs '
            f'[95% interval] (paper: {_figure(ten_crop_figure)}: {ten_crop_text}):', '',
            '| runs | ten-crop minus center top-1 | top-5 |', '|---|---|---|']
  for g in groups:
    if 'ten_crop_top1' in g.errors:
      cells = [_interval(mean_interval(
          [100 * (t - c) for t, c in zip(g.errors[f'ten_crop_{k}'], g.errors[k])]))
               for k in ('top1', 'top5')]
      lines.append(f'| {", ".join(map(_name, g.workdirs))} | {cells[0]} | {cells[1]} |')
  if ensemble_rows:
    paper = '; '.join(f'{text}: {_figure(f)}' for text, f in ablations.ENSEMBLES.values())
    lines += ['', f'Ensembles (center crop; paper: {paper}):', '',
              '| run | networks | alone | averaged | difference |', '|---|---|---|---|---|']
    for r in ensemble_rows:
      lines.append(f'| {_name(r.workdir)} | {r.members} | '
                   f'{100 * r.single["top1"]:.1f} / {100 * r.single["top5"]:.1f} | '
                   f'{100 * r.averaged["top1"]:.1f} / {100 * r.averaged["top5"]:.1f} | '
                   f'{100 * (r.averaged["top1"] - r.single["top1"]):+.1f} / '
                   f'{100 * (r.averaged["top5"] - r.single["top5"]):+.1f} |')
  return '\n'.join(lines) + '\n'
