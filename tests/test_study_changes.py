"""A study whose values change between two ``study run``: more epochs continue its runs, other changes are refused
until ``--continue-changed`` (recorded in the summary, listed apart by ``report``) or ``--restart-changed`` (the
folder moved aside, the run started again). Driven through the command line, on the local executor, with one tiny
CIFAR-100 config and one seed."""
import contextlib
import io
import json
import os

import pytest

import runner_support as support
import study_files
from study_files import KD
from ttm_torchdistill.commands import report as report_cli
from ttm_torchdistill.commands import study as study_cli

pytestmark = pytest.mark.usefixtures('one_torch_thread')

RUN = ['run', 'study.yaml', '--executor', 'local']


def command(main, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def study(tmp_path, monkeypatch):
    folder = str(tmp_path)
    study_files.study_folder(folder)
    monkeypatch.chdir(folder)
    monkeypatch.setenv('PYTHONPATH', support.subprocess_env()['PYTHONPATH'])
    monkeypatch.setenv('OMP_NUM_THREADS', '1')

    def write(*values):
        study_files.write_study(folder, configs=['configs/cifar100/kd/tiny_from_tiny.yaml'], seeds=[0], runtime=None,
                                set=list(values))
    return folder, write


def summary(folder):
    with open(os.path.join(folder, 'runs', 'tiny', 'runs', KD, 'base', 'seed0', 'student.json')) as fp:
        return json.load(fp)


def test_more_epochs_continue_and_other_changes_are_refused_until_asked(study):
    folder, write = study
    write('train.num_epochs=1')
    assert command(study_cli.main, RUN)[0] == 0
    write('train.num_epochs=2')  # more epochs: the finished run continues, no flag needed
    code, out, err = command(study_cli.main, RUN)
    assert code == 0, err[-2000:]
    first = summary(folder)
    assert [e['epoch'] for e in first['epochs']] == [1, 2] and first['changed_mid_run'] == []
    assert [a['more_epochs'] for a in first['attempts']] == [[], ['train.num_epochs: 1.0 -> 2.0']]

    write('train.num_epochs=3', 'train.optimizer.kwargs.lr=0.1')
    code, out, err = command(study_cli.main, RUN)
    assert code == 1 and err.strip() == (
        'error: study.yaml: nothing started: 1 run (0 finished) was trained with other values than the study now '
        f'asks: {KD}/base/seed0 (train.optimizer.kwargs.lr: 0.05 -> 0.1); study run --continue-changed continues the '
        'unfinished ones under the new values (their summaries record the change; finished ones keep their '
        'results), --restart-changed starts them all again (their folders are moved to runs/tiny/replaced/); more '
        'epochs alone need neither')
    assert summary(folder)['epochs'] == first['epochs']  # nothing trained
    code, out, err = command(study_cli.main, ['status', 'study.yaml'])
    assert f'  {KD}/base/seed0 (unfinished): train.optimizer.kwargs.lr: 0.05 -> 0.1' in out

    code, out, err = command(study_cli.main, RUN + ['--continue-changed'])
    assert code == 0, err[-2000:]
    continued = summary(folder)
    assert [e['epoch'] for e in continued['epochs']] == [1, 2, 3]
    assert continued['changed_mid_run'] == ['train.optimizer.kwargs.lr: 0.05 -> 0.1']
    code, out, err = command(study_cli.main, ['status', 'study.yaml'])
    assert f'changed mid-run (continued with --continue-changed' in out
    assert f'  {KD}/base/seed0: train.optimizer.kwargs.lr: 0.05 -> 0.1' in out
    code, out, err = command(report_cli.main, ['runs/tiny'])
    assert code == 0 and '**Changed mid-run, not averaged (1)**' in out and f'| {KD} |' not in out

    write('train.num_epochs=3', 'train.optimizer.kwargs.lr=0.2')
    code, out, err = command(study_cli.main, RUN + ['--restart-changed'])
    assert code == 0, err[-2000:]
    restarted = summary(folder)
    assert len(restarted['attempts']) == 1 and restarted['changed_mid_run'] == []
    assert restarted['overrides'][:2] == ['train.num_epochs=3', 'train.optimizer.kwargs.lr=0.2']
    replaced = os.path.join(folder, 'runs', 'tiny', 'replaced')
    [stamp] = os.listdir(replaced)
    with open(os.path.join(replaced, stamp, KD, 'base', 'seed0', 'student.json')) as fp:
        assert json.load(fp)['changed_mid_run'] == continued['changed_mid_run']  # the earlier run is kept
