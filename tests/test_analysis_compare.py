"""alexnet_jax.analysis.compare and its program: runs side by side against the paper."""

import json
import os
import subprocess
import sys

import pytest

from alexnet_jax import ablations
from alexnet_jax import config as config_lib
from alexnet_jax import errors
from alexnet_jax import train
from alexnet_jax.analysis import compare


def _short(spec, data_dir):
  config = config_lib.load(spec)
  config.data_dir = data_dir
  config.input.shapes.train_examples, config.input.shapes.eval_examples = 48, 24
  config.batch_size = 24
  config.num_train_steps = 2
  config.model.conv_features = (16, 32, 48, 48, 32)
  config.model.fc_features = 64
  config.ten_crop_eval = False  # ten-crop columns: test_claims_and_differences_from_written_runs
  return config


def _last(workdir, key):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line)[key] for line in f if key in json.loads(line)][-1]


def test_two_short_runs_compare(tmp_path):
  """A baseline and a no-LRN run of two steps: the differences are the runs' last logged errors
  subtracted (in points), the claim is no_lrn with the paper's +1.4 / +1.2."""
  data_dir = str(tmp_path / 'data')
  workdirs = [str(tmp_path / 'baseline'), str(tmp_path / 'no_lrn')]
  train.train_and_evaluate(_short('demo_ablation', data_dir), workdirs[0])
  train.train_and_evaluate(_short('demo_ablation:no_lrn', data_dir), workdirs[1])
  base, run = compare.compare(workdirs)
  assert base.is_baseline and not run.is_baseline
  assert [c.name for c in run.claims] == ['no_lrn'] and not base.claims
  for column, key in compare.ERRORS[:2]:
    assert run.errors[column] == _last(workdirs[1], key)
    expected = 100 * (_last(workdirs[1], key) - _last(workdirs[0], key))
    assert run.differences[column] == pytest.approx(expected, abs=1e-9)
  table = compare.markdown([base, run])
  d = run.differences
  assert (f'| no_lrn | no_lrn | {100 * run.errors["top1"]:.1f} / {100 * run.errors["top5"]:.1f} '
          f'| — / — | {d["top1"]:+.1f} / {d["top5"]:+.1f} | — / — | +1.4 / +1.2 |') in table


def _fake_run(path, errors_, **fields):
  """A workdir with config.json (base_config with `fields`: 'input.lighting_std' -> value) and
  one metrics.jsonl evaluation line."""
  config = config_lib.base_config()
  config.dataset = 'shapes'
  for dotted, value in fields.items():
    *parents, leaf = dotted.split('__')
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  os.makedirs(path)
  with open(os.path.join(path, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort())
  with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
    f.write(json.dumps({'step': 5, 'eval_top1_error': 0.9, 'eval_top5_error': 0.5}) + '\n')
    f.write(json.dumps({'step': 10, **errors_}) + '\n')
  return str(path)


def test_claims_and_differences_from_written_runs(tmp_path):
  """Lighting off against the baseline: +2.0 / -1.0 points at the last evaluation, ten-crop
  missing ('—'), the paper's +1.0 / —; the baseline given explicitly goes first."""
  base = _fake_run(tmp_path / 'base', {'eval_top1_error': 0.30, 'eval_top5_error': 0.10})
  dark = _fake_run(tmp_path / 'dark', {'eval_top1_error': 0.32, 'eval_top5_error': 0.09},
                   input__lighting_std=0.0)
  rows = compare.compare([dark, base], baseline=base)
  assert [r.workdir for r in rows] == [base, dark]
  assert rows[1].differences['top1'] == pytest.approx(2.0)
  assert rows[1].differences['top5'] == pytest.approx(-1.0)
  assert rows[1].differences['ten_crop_top1'] is None
  assert rows[1].claims == (ablations.ABLATIONS['no_lighting'],)
  assert '| dark | no_lighting | 32.0 / 9.0 | — / — | +2.0 / -1.0 | — / — | +1.0 / — |' in (
      compare.markdown(rows))


def test_runs_on_different_data_are_refused_and_nothing_is_written(tmp_path):
  """A run on another class subset of the embedded dataset: one-paragraph ConfigError from the
  library; the program exits 1 with it and writes no table."""
  base = _fake_run(tmp_path / 'base', {'eval_top1_error': 0.3, 'eval_top5_error': 0.1})
  other = _fake_run(tmp_path / 'other', {'eval_top1_error': 0.3, 'eval_top5_error': 0.1},
                    input__shapes__classes=(0, 1, 2))
  with pytest.raises(errors.ConfigError, match='did not train on the data of the baseline'):
    compare.compare([base, other])
  output = tmp_path / 'table.md'
  done = subprocess.run([sys.executable, '-m', 'alexnet_jax.tools.compare',
                         f'--workdirs={base},{other}',
                         f'--output={output}'], capture_output=True, text=True)
  assert done.returncode == 1
  assert 'error: ' in done.stderr and 'Traceback' not in done.stderr
  assert not output.exists()


def test_not_a_run_is_a_workdir_error(tmp_path):
  base = _fake_run(tmp_path / 'base', {'eval_top1_error': 0.3, 'eval_top5_error': 0.1})
  with pytest.raises(errors.CheckpointError, match='no config.json'):
    compare.compare([base, str(tmp_path)])
  (tmp_path / 'started').mkdir()
  (tmp_path / 'started' / 'config.json').write_text(open(os.path.join(base, 'config.json')).read())
  with pytest.raises(errors.WorkdirError, match='no metrics.jsonl'):
    compare.compare([base, str(tmp_path / 'started')])
