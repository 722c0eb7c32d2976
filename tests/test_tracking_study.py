"""A study on the local executor with TensorBoard: one folder per run under the study's tracker folder, grouped by
experiment and variant; a run continued by a later ``study run`` (its summary gone, as after a kill before it was
written) appends to its own folder without a duplicated point."""
import os
import shutil
import subprocess
import sys

import pytest
import yaml

import runner_support as support
import track_support as track

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _study_folder(folder):
    os.makedirs(os.path.join(folder, 'configs', 'tiny'))
    shutil.copy(track.CONFIG, os.path.join(folder, 'configs', 'tiny', 'track.yaml'))
    track.prepare_folder(os.path.join(folder, 'base'))
    for name in os.listdir(os.path.join(folder, 'base')):
        shutil.move(os.path.join(folder, 'base', name), folder)
    study = {'name': 'tracked', 'out': 'runs/tracked', 'configs': ['configs/tiny/track.yaml'], 'seeds': [0, 1],
             'set': ['train.num_epochs=1'], 'grid': {'train.optimizer.kwargs.lr': [0.05, 0.2]},
             'runtime': {'track': ['tensorboard']}, 'resources': {'gpus': 0, 'cpus': 1, 'mem_gb': 1, 'time_min': 10}}
    with open(os.path.join(folder, 'study.yaml'), 'w') as fp:
        yaml.safe_dump(study, fp, sort_keys=False)
    return folder


def _study_run(folder):
    result = subprocess.run([sys.executable, '-m', 'ttm_torchdistill', 'study', 'run', 'study.yaml', '--executor',
                             'local', '--slots', '2'], cwd=folder, env=support.subprocess_env(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])


def test_a_study_writes_one_tensorboard_folder_per_run_grouped_by_experiment_and_variant(tmp_path):
    track.require('tensorboard')
    folder = _study_folder(str(tmp_path / 'study'))
    _study_run(folder)
    board = os.path.join(folder, 'runs', 'tracked', 'track', 'tensorboard')
    runs = sorted(os.path.relpath(root, board) for root, _, files in os.walk(board)
                  if any(f.startswith('events.out.tfevents') for f in files))
    assert runs == [f'tiny/track/lr={lr}/seed{seed}' for lr in ('0.05', '0.2') for seed in (0, 1)]
    # the run's own folder says where its tracker run is: the attempts name it
    run = os.path.join(folder, 'runs', 'tracked', 'runs', 'tiny', 'track', 'lr=0.2', 'seed1')
    with open(os.path.join(run, 'student.attempts.json')) as fp:
        attempt = yaml.safe_load(fp)['attempts'][0]['track']
    assert attempt['name'] == 'tiny/track/lr=0.2/seed1' and attempt['project'] == 'tracked'
    before = track.tensorboard_series(os.path.join(board, 'tiny/track/lr=0.2/seed1'))['scalars']

    os.remove(os.path.join(run, 'student.json'))  # as if killed after its last checkpoint: the next attempt resumes
    _study_run(folder)
    after = track.tensorboard_series(os.path.join(board, 'tiny/track/lr=0.2/seed1'))['scalars']
    assert after['train/loss'] == before['train/loss'] and after['val/acc1'] == before['val/acc1']
    assert [step for step, _ in after['test/student/acc1']] == [1]
    with open(os.path.join(run, 'student.attempts.json')) as fp:
        attempts = yaml.safe_load(fp)['attempts']
    assert len(attempts) == 2 and attempts[1]['track']['id'] == attempts[0]['track']['id']
