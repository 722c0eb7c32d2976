"""Multi-stage configs (torchdistill's ``train.stage1``, ``train.stage2``): trained end to end, resumed exactly.

A stage change gives the box a new optimizer and scheduler; ``--resume`` at (or after) a stage boundary must put the
box in the stage the checkpoint was written in before restoring their states.
"""
import json
import os

import pytest
import torch

import runner_support as support

pytestmark = pytest.mark.usefixtures('one_torch_thread')

CONFIG = os.path.join(support.CONFIG_DIR, 'runner_tiny_two_stage.yaml')
ARGS = ['--config', CONFIG, '--device', 'cpu', '--seed', '0']
CKPT_DIR = os.path.join('ckpt', 'tiny_two_stage')


def _prepare(folder):
    return support.prepare_tiny_run_folder(folder)


def _summary(folder):
    with open(os.path.join(folder, CKPT_DIR, 'student.json')) as fp:
        return json.load(fp)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    """The folder of an uninterrupted two-stage run."""
    full = _prepare(str(tmp_path_factory.mktemp('two_stage') / 'uninterrupted'))
    result = support.run_cli(ARGS, cwd=full)
    assert result.returncode == 0, result.stderr[-2000:]
    return full, result.stdout


def test_two_stage_config_trains_each_stage_with_its_own_optimizer(uninterrupted):
    full, out = uninterrupted
    summary = _summary(full)
    assert summary['planned_epochs'] == 3 and [e['epoch'] for e in summary['epochs']] == [1, 2, 3]
    # stage 1 ran at lr 0.05, stage 2 (its own optimizer) at lr 0.01
    assert [round(e['lr'], 6) for e in summary['epochs']] == [0.05, 0.01, 0.01]
    assert 'Advanced to stage 2' in out
    assert 'Epoch 3/3  step 4/4' in out and '(ce ' in out.split('Advanced to stage 2')[1]  # per-term lines in stage 2


@pytest.mark.parametrize('exit_at_epoch', [1, 2], ids=['killed-at-stage-boundary', 'killed-inside-stage-2'])
def test_two_stage_config_resumes_bitwise(tmp_path, uninterrupted, exit_at_epoch):
    full, _ = uninterrupted
    summary = _summary(full)

    killed = _prepare(str(tmp_path / 'killed'))
    result = support.run_cli(ARGS, cwd=killed, extra_env={'TTM_TEST_EXIT_AT_EPOCH': str(exit_at_epoch)})
    assert result.returncode == 3, result.stderr[-2000:]
    assert torch.load(os.path.join(killed, CKPT_DIR, 'student.last.pt'), weights_only=False)['epoch'] == exit_at_epoch

    result = support.run_cli(ARGS + ['--resume'], cwd=killed)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ('student.last.pt', 'student.pt'):
        expected = torch.load(os.path.join(full, CKPT_DIR, name), weights_only=False)
        resumed = torch.load(os.path.join(killed, CKPT_DIR, name), weights_only=False)
        assert expected['epoch'] == resumed['epoch']
        for key, tensor in expected['model'].items():
            assert torch.equal(tensor, resumed['model'][key]), f'{name}: {key} differs after resume'
        if name == 'student.last.pt':
            assert expected['optimizer']['param_groups'][0]['lr'] == resumed['optimizer']['param_groups'][0]['lr']
    resumed_summary = _summary(killed)
    for a, b in zip(summary['epochs'], resumed_summary['epochs']):
        assert (a['epoch'], a['train_loss'], a['val_top1'], a['lr']) == \
            (b['epoch'], b['train_loss'], b['val_top1'], b['lr'])


def test_a_teacher_cache_is_refused_when_a_later_stage_trains_on_another_dataset(tmp_path, capsys, monkeypatch):
    """The cache is checked against the first stage's training dataset: a stage that trains on another dataset
    would read logits of other images (refused before anything is built)."""
    monkeypatch.chdir(_prepare(str(tmp_path / 'run')))
    line = support.cli_error(capsys, ARGS + ['--device-data', '--teacher-cache', 'cache',
                                             '--set', 'train.stage2.train_data_loader.dataset_id=tiny/val'])
    assert line == ("error: runtime.teacher_cache holds the teacher's logits on train.stage1.train_data_loader's "
                    "dataset 'tiny/train' (the one the cache is checked against), but train.stage2.train_data_loader "
                    "trains on 'tiny/val'; run this config without the cache")
