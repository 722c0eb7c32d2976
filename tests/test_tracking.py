"""Trackers read back with their own readers: a 2-epoch tiny CIFAR-100 run (5 steps per epoch, a progress read every
2 steps and at the epoch's end) writes to every installed tracker at once; every listed scalar is at the expected
steps, validation and test equal the run summary's. Also: one error line for a missing package or a bad value,
before anything is built, and torchdistill's ``tracker:`` block with ``engine: tensorboard``."""
import glob
import json
import os

import numpy as np
import pytest

import runner_support as support
import track_support as track
from track_support import CONFIG, RUN_NAME as NAME, tracked  # noqa: F401 (a fixture shared with the resume tests)

pytestmark = pytest.mark.usefixtures('one_torch_thread')

#: global steps of the progress reads: steps 2, 4, 5 of epoch 1, then 5 + (2, 4, 5)
TRAIN_STEPS = [2, 4, 5, 7, 9, 10]
TRAIN_TAGS = ['train/loss', 'train/loss/ce', 'train/loss/wttm', 'train/loss/probe', 'train/temperature/mean',
              'train/temperature/min', 'train/temperature/max', 'train/lr', 'train/images_per_s', 'train/peak_mem_mb']
EPOCH_TAGS = {'val/acc1': 'val_top1', 'val/acc5': 'val_top5', 'epoch/time_s': 'epoch_time_s',
              'epoch/train_time_s': 'train_time_s', 'epoch/train_loss': 'train_loss', 'epoch/lr': 'lr'}


def _check_series(series, summary, exact=True):
    """Every listed scalar at the expected steps, once each; epochs and test equal the summary's."""
    close = (lambda a, b: a == b) if exact else (lambda a, b: np.float32(a) == np.float32(b))
    for tag in TRAIN_TAGS:
        assert [step for step, _ in series[tag]] == TRAIN_STEPS, tag
    for tag, key in EPOCH_TAGS.items():
        assert [step for step, _ in series[tag]] == [1, 2], tag
        for (step, value), epoch in zip(series[tag], summary['epochs']):
            assert close(value, epoch[key]), (tag, step, value, epoch[key])
    assert [v for _, v in series['train/lr']][:3] == pytest.approx([0.2] * 3)


def test_tensorboard_holds_every_scalar_at_its_step(tracked):
    track.require('tensorboard')
    folders = glob.glob(os.path.join(tracked['folder'], 'track', 'tensorboard', NAME))
    assert len(folders) == 1, os.listdir(os.path.join(tracked['folder'], 'track', 'tensorboard'))
    read = track.tensorboard_series(folders[0])
    summary = tracked['summary']
    _check_series(read['scalars'], summary, exact=False)  # event files hold float32
    assert [v for _, v in read['scalars']['val/acc1']] != [0.0, 0.0], 'validation never moved: a weak check'
    for role in ('student', 'teacher'):
        for k in (1, 5):
            (step, value), = read['scalars'][f'test/{role}/acc{k}']
            assert step == 2 and value == np.float32(summary['test'][role][f'top{k}'])
    config = read['texts']['run/config/text_summary'][0][1]
    assert summary['config_digest'] in config and '"world_size": 1' in config and '"tensorboard":' in config
    assert read['texts']['run/status/text_summary'] == [(2, 'finished')]


def test_wandb_offline_run_holds_every_metric(tracked):
    track.require('wandb')
    attempts = tracked['summary']['attempts']
    run_id = attempts[0]['track']['id']
    sessions = track.wandb_sessions(os.path.join(tracked['folder'], 'track'), run_id)
    assert len(sessions) == 1 and sessions[0]['exit_code'] == 0
    run = sessions[0]['run']
    assert (run.run_id, run.display_name, run.run_group, run.project) == (run_id, NAME, NAME.rsplit('/', 1)[0],
                                                                          'ttm_torchdistill')
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    summary = tracked['summary']
    assert config['seed'] == 0 and config['config_digest'] == summary['config_digest']
    assert config['overrides'] == ['train.optimizer.kwargs.lr=0.2'] and config['versions']['wandb']
    assert config['runtime'] == summary['runtime'] and config['config']['train']['num_epochs'] == 2
    _check_series(track.wandb_series(sessions), summary)
    assert [row['_step'] for row in sessions[0]['rows']] == TRAIN_STEPS  # epoch rows share the epoch's last step
    for role in ('student', 'teacher'):
        assert sessions[0]['summary'][f'test/{role}/acc1'] == summary['test'][role]['top1']


def test_trackio_store_holds_every_metric(tracked):
    track.require('trackio')
    store = track.trackio_store(os.path.join(tracked['folder'], 'track'), 'ttm_torchdistill', NAME)
    assert store['runs'] == [NAME] and not store['alerts']
    summary = tracked['summary']
    series = track.trackio_series(store['logs'])
    _check_series(series, summary)
    assert series['test/student/acc1'] == [(2, summary['test']['student']['top1'])]
    assert store['config']['config_digest'] == summary['config_digest'] and store['config']['_Group'] == \
        NAME.rsplit('/', 1)[0]


def test_the_attempt_and_summary_name_the_tracker_run(tracked):
    attempt = tracked['summary']['attempts'][0]['track']
    assert attempt['name'] == NAME and attempt['engines'] == track.available_engines()
    assert 'track' not in tracked['summary']['runtime']  # trackers are not a speed option: report rows stay one
    assert f'Tracking {NAME}' in tracked['stdout'] and not tracked['stderr'].strip()


def test_a_missing_tracker_package_is_one_error_line_before_anything_is_built(tmp_path, monkeypatch, capsys):
    from ttm_torchdistill.run.track import tracker_plan
    monkeypatch.chdir(track.prepare_folder(str(tmp_path / 'run')))
    monkeypatch.delitem(__import__('sys').modules, 'wandb', raising=False)
    real = tracker_plan.importlib.util.find_spec
    monkeypatch.setattr(tracker_plan.importlib.util, 'find_spec', lambda name: None if name == 'wandb' else real(name))
    line = support.cli_error(capsys, ['--config', CONFIG, '--device', 'cpu', '--track', 'tensorboard,wandb'])
    assert line == ('error: runtime.track: wandb is not installed; install the extra: pip install '
                    '"ttm_torchdistill[wandb]" (in a checkout: pip install -e ".[wandb]")')
    assert not os.path.exists('ckpt') and not os.path.exists('track')


@pytest.mark.parametrize('args, expected', [
    (['--track', 'mlflow'], "error: command line: unknown tracker 'mlflow'; expected tensorboard, wandb, trackio"),
    (['--set', 'runtime.track=[tensorboard, 3]'], 'error: --set runtime: track must be a list of tensorboard'),
    (['--track', 'tensorboard', '--track-name', '../up'], 'error: runtime.track_name: expected a relative name'),
])
def test_bad_tracking_values_are_one_error_line(tmp_path, monkeypatch, capsys, args, expected):
    monkeypatch.chdir(track.prepare_folder(str(tmp_path / 'run')))
    line = support.cli_error(capsys, ['--config', CONFIG, '--device', 'cpu'] + args)
    assert line.startswith(expected), line


def test_a_bad_tracker_block_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(track.prepare_folder(str(tmp_path / 'run')))
    with open('bad.yaml', 'w') as fp:
        fp.write(open(CONFIG).read() + "\ntracker: {engine: 'mlflow'}\n")
    line = support.cli_error(capsys, ['--config', 'bad.yaml', '--device', 'cpu'])
    assert line == "error: tracker.engine: expected one of tensorboard, wandb, trackio, got 'mlflow'"


def test_torchdistill_tracker_block_with_engine_tensorboard(tmp_path, monkeypatch, capsys):
    """The config's own block: its kwargs go to the writer (here its folder); no flag needed."""
    track.require('tensorboard')
    monkeypatch.chdir(track.prepare_folder(str(tmp_path / 'run')))
    with open('tb.yaml', 'w') as fp:
        fp.write(open(CONFIG).read() + "\ntracker: {engine: 'tensorboard', kwargs: {log_dir: 'tb_here'}}\n")
    support.cli_ok(capsys, ['--config', 'tb.yaml', '--device', 'cpu', '--seed', '0', '--set', 'train.num_epochs=1'])
    scalars = track.tensorboard_series('tb_here')['scalars']
    assert [step for step, _ in scalars['train/loss']] == [2, 4, 5] and [s for s, _ in scalars['val/acc1']] == [1]
