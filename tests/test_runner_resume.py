"""``--resume`` after a SIGKILL ends with weights bitwise identical to an uninterrupted run (CPU, fixed seed)."""
import json
import os

import torch

import runner_support as support
from ttm_torchdistill.run.train.checkpoint import load_last

TINY = os.path.join(support.CONFIG_DIR, 'runner_tiny_kd.yaml')
# 3 epochs of 4 steps; each sample costs 15 ms so that an epoch lasts ~0.5 s and the kill lands mid-run.
ARGS = ['--config', TINY, '--device', 'cpu', '--seed', '0', '--set',
        'datasets.tiny/train.init.kwargs={num_samples: 32, image_size: 8, num_classes: 10, seed: 0, delay_s: 0.015}']
LAST = os.path.join('ckpt', 'tiny_kd', 'student.last.pt')


def _prepare(folder):
    return support.prepare_tiny_run_folder(folder)


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    full = _prepare(str(tmp_path / 'uninterrupted'))
    result = support.run_cli(ARGS, cwd=full)
    assert result.returncode == 0, result.stderr[-2000:]

    killed = _prepare(str(tmp_path / 'killed'))
    support.kill_after_first_checkpoint(killed, ARGS, LAST)
    interrupted = torch.load(os.path.join(killed, LAST), weights_only=False)
    assert interrupted['epoch'] < 3, 'the run finished before it could be killed'
    assert not os.path.exists(os.path.join(killed, 'ckpt', 'tiny_kd', 'student.json'))

    result = support.run_cli(ARGS + ['--resume'], cwd=killed)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f'Resuming from {LAST} at epoch {interrupted["epoch"] + 1}/3' in result.stdout

    for name in ('student.last.pt', 'student.pt'):
        expected = torch.load(os.path.join(full, 'ckpt', 'tiny_kd', name), weights_only=False)
        resumed = torch.load(os.path.join(killed, 'ckpt', 'tiny_kd', name), weights_only=False)
        assert expected['epoch'] == resumed['epoch']
        for key, tensor in expected['model'].items():
            assert torch.equal(tensor, resumed['model'][key]), f'{name}: {key} differs after resume'
    with open(os.path.join(full, 'ckpt', 'tiny_kd', 'student.json')) as fp:
        full_summary = json.load(fp)
    with open(os.path.join(killed, 'ckpt', 'tiny_kd', 'student.json')) as fp:
        resumed_summary = json.load(fp)
    assert [e['epoch'] for e in resumed_summary['epochs']] == [1, 2, 3]
    for a, b in zip(full_summary['epochs'], resumed_summary['epochs']):
        assert (a['train_loss'], a['val_top1'], a['lr']) == (b['train_loss'], b['val_top1'], b['lr'])
    assert resumed_summary['best'] == full_summary['best'] and resumed_summary['test'] == full_summary['test']

    # Resuming a run whose last epoch is saved (killed before its summary, say) trains nothing more: it tests the
    # best student and writes the same summary.
    os.remove(os.path.join(killed, 'ckpt', 'tiny_kd', 'student.json'))
    result = support.run_cli(ARGS + ['--resume'], cwd=killed)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f'--resume: {LAST} holds all 3 epochs; testing the best student and writing the summary' in result.stdout
    assert 'Epoch 3/3  step' not in result.stdout
    with open(os.path.join(killed, 'ckpt', 'tiny_kd', 'student.json')) as fp:
        finished = json.load(fp)
    assert finished['epochs'] == resumed_summary['epochs'] and finished['test'] == resumed_summary['test']


AUX = os.path.join(support.CONFIG_DIR, 'runner_tiny_aux.yaml')
AUX_LAST = os.path.join('ckpt', 'tiny_aux', 'student.last.pt')


def test_resume_restores_auxiliary_heads_and_loss_buffers(tmp_path):
    """A trainable student wrapper (embedding head) and a loss buffer are in the last checkpoint, not in the best
    one, and a run ended after epoch 2 and resumed ends as the uninterrupted run does."""
    args = ['--config', AUX, '--device', 'cpu', '--seed', '0']
    full = _prepare(str(tmp_path / 'uninterrupted'))
    result = support.run_cli(args, cwd=full)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = torch.load(os.path.join(full, AUX_LAST), weights_only=False)
    assert set(expected['box_state']) == {'student_module', 'criterion.sub_terms.embed'}
    assert int(expected['box_state']['criterion.sub_terms.embed']['calls']) == 3 * 4
    assert 'embed.linear.weight' in expected['box_state']['student_module']
    best = torch.load(os.path.join(full, 'ckpt', 'tiny_aux', 'student.pt'), weights_only=True)
    assert set(best['model']) == set(support.TinyBNNet(10, width=8).state_dict())  # the student alone

    killed = _prepare(str(tmp_path / 'killed'))
    result = support.run_cli(args, cwd=killed, extra_env={'TTM_TEST_EXIT_AT_EPOCH': '2'})
    assert result.returncode == 3, result.stderr[-2000:]
    result = support.run_cli(args + ['--resume'], cwd=killed)
    assert result.returncode == 0, result.stderr[-2000:]
    resumed = torch.load(os.path.join(killed, AUX_LAST), weights_only=False)
    for part in ('student_module', 'criterion.sub_terms.embed'):
        for key, value in expected['box_state'][part].items():
            assert torch.equal(value, resumed['box_state'][part][key]), f'{part}.{key} differs after resume'
    for key, value in expected['model'].items():
        assert torch.equal(value, resumed['model'][key]), key


def test_resume_under_a_changed_config_is_refused_unless_asked_and_then_recorded(tmp_path):
    """A run stopped after epoch 2 and resumed with another --set value is refused (one error line naming the path
    and both values, nothing trained); with --continue-changed it continues and its summary records the change in
    each session's record and in ``changed_mid_run``; more epochs are a continuation, recorded as such."""
    args = ['--config', AUX, '--device', 'cpu', '--seed', '0']
    folder = _prepare(str(tmp_path / 'run'))
    result = support.run_cli(args, cwd=folder, extra_env={'TTM_TEST_EXIT_AT_EPOCH': '2'})
    assert result.returncode == 3, result.stderr[-2000:]
    with open(os.path.join(folder, 'ckpt', 'tiny_aux', 'student.attempts.json')) as fp:
        recorded = json.load(fp)
    assert [a['from_epoch'] for a in recorded['attempts']] == [0]
    assert recorded['config_tree']['train']['optimizer']['kwargs']['lr'] == 0.05

    changed = args + ['--set', 'train.optimizer.kwargs.lr=0.1', '--resume']
    result = support.run_cli(changed, cwd=folder)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        'error: --resume: the config differs from the one ckpt/tiny_aux/student.last.pt was trained with '
        '(train.optimizer.kwargs.lr: 0.05 -> 0.1); continuing would mix two experiments in one run: start it again '
        'without --resume (its checkpoints are overwritten), or continue it anyway with --resume --continue-changed '
        '(the summary records the change)')
    assert load_last(os.path.join(folder, AUX_LAST))['epoch'] == 2  # nothing trained

    result = support.run_cli(changed + ['--continue-changed', '--set', 'train.num_epochs=4'], cwd=folder)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(os.path.join(folder, 'ckpt', 'tiny_aux', 'student.json')) as fp:
        summary = json.load(fp)
    assert [e['epoch'] for e in summary['epochs']] == [1, 2, 3, 4]
    assert summary['changed_mid_run'] == ['train.optimizer.kwargs.lr: 0.05 -> 0.1']
    assert [(a['from_epoch'], a['more_epochs'], a['changes']) for a in summary['attempts']] == [
        (0, [], []), (2, ['train.num_epochs: 3.0 -> 4.0'], ['train.optimizer.kwargs.lr: 0.05 -> 0.1'])]
    assert summary['overrides'] == ['train.optimizer.kwargs.lr=0.1', 'train.num_epochs=4']


def test_a_copied_config_does_not_overwrite_the_original_runs_files(tmp_path):
    """A copy of a config keeps the original's dst_ckpt: running it would overwrite the original's finished run.
    Refused with one line naming both configs and the way out; --overwrite replaces it; the same config again is
    its own run and is overwritten with a warning, as before."""
    folder = _prepare(str(tmp_path / 'run'))
    assert support.run_cli(ARGS, cwd=folder).returncode == 0
    copy = os.path.join(folder, 'my_variant.yaml')
    with open(TINY) as source, open(copy, 'w') as target:
        target.write(source.read().replace('alpha: 0.5', 'alpha: 0.7'))
    changed = ['--config', copy] + ARGS[2:]
    result = support.run_cli(changed, cwd=folder)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f'error: ckpt/tiny_kd/student.pt holds the finished run of {TINY}, config digest ')
    assert line.endswith(f'this run is {copy} (config digest ' + line.split('(config digest ')[1].split(')')[0] +
                         ') and would overwrite that run\'s checkpoints and summary: give this config its own dst_ckpt '
                         '(models.student_model.dst_ckpt in the config, or --set models.student_model.dst_ckpt=...), '
                         'or pass --overwrite to replace that run')
    with open(os.path.join(folder, 'ckpt', 'tiny_kd', 'student.json')) as fp:
        assert json.load(fp)['config'] == TINY  # untouched
    assert support.run_cli(changed + ['--overwrite'], cwd=folder).returncode == 0
    with open(os.path.join(folder, 'ckpt', 'tiny_kd', 'student.json')) as fp:
        assert json.load(fp)['config'] == copy
    result = support.run_cli(changed, cwd=folder)  # the same config again: its own run, overwritten with a warning
    assert result.returncode == 0 and 'starting a new run: ckpt/tiny_kd/student.last.pt' in result.stdout
