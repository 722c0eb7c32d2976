"""A tracker run over the sessions of a run: SIGKILL in the middle of epoch 2, then ``--resume``, leaves one
continuous series per metric in every installed tracker (each point once, the same steps as an uninterrupted run,
the same id); a failed run is marked failed; torchrun with two gloo processes writes one run (rank 0)."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import runner_support as support
import track_support as track
from track_support import RUN_ARGS as ARGS, RUN_NAME as NAME, tracked  # noqa: F401 (the uninterrupted run)
from test_tracking import EPOCH_TAGS, TRAIN_STEPS, TRAIN_TAGS

pytestmark = pytest.mark.usefixtures('one_torch_thread')



def _series_by_engine(folder, run_id):
    """``{engine: {metric: [(x, value), ...]}}`` of what each installed tracker holds for the run."""
    read = {}
    if track.installed('tensorboard'):
        read['tensorboard'] = track.tensorboard_series(os.path.join(folder, 'track', 'tensorboard', NAME))['scalars']
    if track.installed('wandb'):
        read['wandb'] = track.wandb_series(track.wandb_sessions(os.path.join(folder, 'track'), run_id))
    if track.installed('trackio'):
        store = track.trackio_store(os.path.join(folder, 'track'), 'ttm_torchdistill', NAME)
        read['trackio'] = track.trackio_series(store['logs'])
    return read


@pytest.fixture(scope='module')
def killed_and_resumed(tmp_path_factory, tracked):
    engines = track.available_engines()
    folder = track.prepare_folder(str(tmp_path_factory.mktemp('resume') / 'run'))
    # call 10 is epoch 2's last step: the killed session has logged steps 7 and 9 of epoch 2, not its end
    killed = support.run_cli(ARGS + ['--track', ','.join(engines)], cwd=folder,
                             extra_env={'TTM_TEST_KILL_AT_CALL': '10'})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not os.path.exists(os.path.join(folder, 'ckpt', 'student.json'))
    resumed = support.run_cli(ARGS + ['--track', ','.join(engines), '--resume'], cwd=folder)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight, other = tracked['folder'], tracked['summary']
    summary = track.read_summary(folder)
    return {'folder': folder, 'summary': summary,
            'series': _series_by_engine(folder, summary['attempts'][0]['track']['id']),
            'straight': _series_by_engine(straight, other['attempts'][0]['track']['id'])}


@pytest.mark.parametrize('engine', ['tensorboard', 'wandb', 'trackio'])
def test_a_killed_and_resumed_run_is_one_series(killed_and_resumed, engine):
    track.require(engine)
    series, straight = killed_and_resumed['series'][engine], killed_and_resumed['straight'][engine]
    summary = killed_and_resumed['summary']
    for tag in TRAIN_TAGS:
        assert [step for step, _ in series[tag]] == TRAIN_STEPS, (tag, series[tag])
    for tag in ('train/loss', 'train/loss/wttm', 'train/temperature/max', 'train/lr'):
        assert series[tag] == straight[tag], tag  # the resumed run is the uninterrupted one, bit for bit
    for tag, key in EPOCH_TAGS.items():
        assert [step for step, _ in series[tag]] == [1, 2], (tag, series[tag])
        assert [np.float32(v) for _, v in series[tag]] == [np.float32(e[key]) for e in summary['epochs']], tag


def test_the_sessions_share_one_tracker_run(killed_and_resumed):
    attempts = killed_and_resumed['summary']['attempts']
    assert len(attempts) == 2 and attempts[0]['track']['id'] == attempts[1]['track']['id']
    folder = killed_and_resumed['folder']
    if track.installed('tensorboard'):
        assert os.listdir(os.path.join(folder, 'track', 'tensorboard', 'runner_tiny_track', 'lr=0.2')) == ['seed0']
    if track.installed('wandb'):
        sessions = track.wandb_sessions(os.path.join(folder, 'track'), attempts[0]['track']['id'])
        assert [s['exit_code'] for s in sessions] == [None, 0]  # the killed session never ended
        assert len({s['run'].run_id for s in sessions}) == 1
    if track.installed('trackio'):
        store = track.trackio_store(os.path.join(folder, 'track'), 'ttm_torchdistill', NAME)
        assert store['runs'] == [NAME]


def test_a_failed_run_is_marked_failed(tmp_path):
    engines = track.available_engines()
    if not engines:
        pytest.skip('no tracker installed (pip install -e ".[track]")')
    folder = track.prepare_folder(str(tmp_path / 'run'))
    result = support.run_cli(ARGS + ['--track', ','.join(engines)], cwd=folder,
                             extra_env={'TTM_TEST_FAIL_AT_CALL': '7'})
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith('error: ValueError: probe failure at call 7'), result.stderr[-2000:]
    if 'tensorboard' in engines:
        texts = track.tensorboard_series(os.path.join(folder, 'track', 'tensorboard', NAME))['texts']
        assert texts['run/status/text_summary'] == [(1, f'failed: {error}')]
    if 'wandb' in engines:
        run_id = next(name.rsplit('-', 1)[1] for name in os.listdir(os.path.join(folder, 'track', 'wandb'))
                      if name.startswith('offline-run-'))
        session, = track.wandb_sessions(os.path.join(folder, 'track'), run_id)
        assert session['exit_code'] == 1 and session['summary']['failure'] == error
    if 'trackio' in engines:
        store = track.trackio_store(os.path.join(folder, 'track'), 'ttm_torchdistill', NAME)
        assert [(a['title'], a['text'], a['level']) for a in store['alerts']] == [('run failed', error, 'error')]


def test_torchrun_two_processes_write_one_run(tmp_path):
    """Rank 0 alone writes: one event file, the points of one run (each rank trains on half the batches)."""
    track.require('tensorboard')
    folder = track.prepare_folder(str(tmp_path / 'run'))
    command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
               f'--master_port={support.free_port()}', '-m', 'ttm_torchdistill'] + ARGS + \
        ['--world_size', '2', '--track', 'tensorboard']
    result = subprocess.run(command, cwd=folder, env=support.subprocess_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run = os.path.join(folder, 'track', 'tensorboard', NAME)
    assert len(os.listdir(run)) == 1 and os.listdir(os.path.join(folder, 'track', 'tensorboard')) == \
        ['runner_tiny_track']
    scalars = track.tensorboard_series(run)['scalars']
    summary = track.read_summary(folder)
    assert summary['world_size'] == 2
    assert [step for step, _ in scalars['train/loss']] == [2, 3, 5, 6]  # 3 steps per rank and epoch
    assert [np.float32(v) for _, v in scalars['val/acc1']] == [np.float32(e['val_top1']) for e in summary['epochs']]
