"""Runner building blocks: checkpoint formats and atomic writes, --set parsing, summary naming, smoke edits."""
import logging
import os

import pytest
import torch

import runner_support as support
from ttm_torchdistill.run.train import checkpoint
from ttm_torchdistill.run.config.loading import load_config
from ttm_torchdistill.errors import RunError
from ttm_torchdistill.run.model_loading.weights import load_weights
from ttm_torchdistill.run.config.smoke import smoke_config
from ttm_torchdistill.run.summary import experiment_name

TINY = os.path.join(support.CONFIG_DIR, 'runner_tiny_kd.yaml')
LOGGER = logging.getLogger('test_runner_units')


@pytest.mark.parametrize('layout', ['repdistiller', 'bare', 'data_parallel'])
def test_teacher_checkpoint_layouts_load_as_they_are(tmp_path, layout):
    torch.manual_seed(0)
    source = support.TinyBNNet(10, width=4)
    state = source.state_dict()
    if layout == 'repdistiller':
        saved = {'model': state, 'epoch': 240, 'accuracy': 71.2, 'optimizer': {'state': {}}}
    elif layout == 'bare':
        saved = state
    else:
        saved = {'model': {f'module.{k}': v for k, v in state.items()}}
    path = str(tmp_path / 'ckpt.pth')
    torch.save(saved, path)
    target = support.TinyBNNet(10, width=4)
    assert load_weights(target, path, 'models.teacher_model.src_ckpt', logger=LOGGER)
    for key, value in state.items():
        assert torch.equal(target.state_dict()[key], value)


def test_missing_checkpoint_is_an_error_and_dropped_only_by_the_smoke_copy(tmp_path):
    model = support.TinyBNNet(10)
    with pytest.raises(RunError, match=r'checkpoint not found: .*nope\.pt \(models\.teacher_model\.src_ckpt\)'):
        load_weights(model, str(tmp_path / 'nope.pt'), 'models.teacher_model.src_ckpt', logger=LOGGER)
    config = {'models': {'teacher_model': {'key': 'x', 'src_ckpt': str(tmp_path / 'nope.pt')},
                         'student_model': {'key': 'y', 'src_ckpt': 'https://example.org/s.pth'}},
              'train': {'teacher': {'src_ckpt': str(tmp_path / 'gone.pt')}}}
    smoke, notes = smoke_config(config, str(tmp_path))
    assert smoke['models']['teacher_model']['src_ckpt'] is None
    assert smoke['models']['student_model']['src_ckpt'] is None
    assert smoke['train']['teacher']['src_ckpt'] is None
    assert config['models']['teacher_model']['src_ckpt'] == str(tmp_path / 'nope.pt')  # the original is untouched
    assert sum('not available; random weights' in note for note in notes) == 3


def test_pickled_objects_need_allow_pickle(tmp_path):
    import argparse
    path = str(tmp_path / 'torchdistill_style.pt')
    model = support.TinyBNNet(10, width=4)
    torch.save({'model': model.state_dict(), 'args': argparse.Namespace(seed=0)}, path)
    with pytest.raises(RunError, match=r'holds a pickled argparse\.Namespace object, which only loads by running '
                                       r'code .* rerun with --allow_pickle; otherwise re-save only its weights'):
        load_weights(support.TinyBNNet(10, width=4), path, 'models.student_model.src_ckpt', LOGGER)
    assert load_weights(support.TinyBNNet(10, width=4), path, 'models.student_model.src_ckpt', LOGGER,
                        allow_pickle=True)


def test_not_a_state_dict_is_refused(tmp_path):
    path = str(tmp_path / 'weird.pt')
    torch.save({'model': 'not weights'}, path)
    with pytest.raises(RunError, match='holds neither a state_dict nor a dict with a "model" state_dict'):
        load_weights(support.TinyBNNet(10), path, 'models.student_model.src_ckpt', logger=LOGGER)


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = str(tmp_path / 'student.last.pt')
    checkpoint.atomic_save({'epoch': 1}, path)

    def broken_save(obj, fp):
        fp.write(b'partial')
        raise OSError('disk full')
    monkeypatch.setattr(checkpoint.torch, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        checkpoint.atomic_save({'epoch': 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False) == {'epoch': 1}
    assert os.listdir(tmp_path) == ['student.last.pt']


def test_last_and_summary_paths():
    assert checkpoint.last_ckpt_path('./resource/ckpt/a/b.pt') == './resource/ckpt/a/b.last.pt'
    assert checkpoint.last_ckpt_path('ckpt/model') == 'ckpt/model.last'
    assert checkpoint.summary_path('./resource/ckpt/a/b.pt') == './resource/ckpt/a/b.json'


def test_rng_state_round_trip():
    import random
    import numpy as np
    state = checkpoint.capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoint.restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_load_last_refuses_other_files(tmp_path):
    path = str(tmp_path / 'x.last.pt')
    torch.save({'model': {}}, path)
    with pytest.raises(RunError, match='is not a last-epoch checkpoint written by this runner'):
        checkpoint.load_last(path)


def test_summary_without_epochs_has_no_sentinel_values():
    from ttm_torchdistill.run.summary import build_summary
    identity = {'seed': None, 'config_sha256': '0' * 64, 'overrides': []}
    summary = build_summary('x.yaml', None, identity, 1, 3, [], {'epoch': None, 'top1': -1.0, 'top5': None},
                            {'student': {'top1': 1.0, 'top5': 2.0}, 'teacher': None}, {'best': 'a', 'last': 'b'}, 0.5)
    assert summary['best'] == {'epoch': None, 'top1': None, 'top5': None}
    assert summary['last'] == {'epoch': None, 'top1': None, 'top5': None}


@pytest.mark.parametrize('path, expected', [
    ('configs/cifar100/wttm/wrn_16_2_from_wrn_40_2.yaml', ('cifar100/wttm/wrn_16_2_from_wrn_40_2', 'cifar100')),
    ('/x/configs/ilsvrc2012/wttm/resnet18_from_resnet34.yaml', ('ilsvrc2012/wttm/resnet18_from_resnet34',
                                                                'ilsvrc2012')),
    ('my_run.yaml', ('my_run', None)),
    ('tests/configs/runner_tiny_kd.yaml', ('runner_tiny_kd', None)),
])
def test_experiment_name(path, expected):
    assert experiment_name(path) == expected


def test_smoke_edits_config_and_redirects_checkpoints(tmp_path):
    original = load_config(os.path.join(support.CONFIG_DIR, 'runner_ilsvrc2012_smoke.yaml')).config
    config, notes = smoke_config(original, str(tmp_path))
    assert original['train']['num_epochs'] != 1 or original['models']['teacher_model']['kwargs']['weights'] is not None
    assert config['train']['num_epochs'] == 1
    for loader in (config['train']['train_data_loader'], config['train']['val_data_loader'],
                   config['test']['test_data_loader']):
        assert loader['kwargs']['batch_size'] == 4 and loader['kwargs']['num_workers'] == 0
    assert config['models']['student_model']['dst_ckpt'].startswith(str(tmp_path))
    assert config['models']['teacher_model']['kwargs']['weights'] is None
    assert any('pretrained weights' in note for note in notes)


@pytest.mark.parametrize('value, expected', [('1e-3', 1e-3), ('"1e-3"', '1e-3'), ('[1, 2]', [1, 2]), ('', None),
                                             ('true', True), ('abc', 'abc'), ('{a: 1}', {'a': 1})])
def test_set_value_parsing(value, expected):
    config = load_config(TINY, [f'train.log_freq={value}']).config
    assert config['train']['log_freq'] == expected


def _tree(text):
    import yaml
    from ttm_torchdistill.run.config.identity import config_tree
    return config_tree(yaml.compose(text))


def test_resume_identity_refuses_another_seed(tmp_path):
    config = tmp_path / 'c.yaml'
    config.write_text('a: 1\n')
    started = checkpoint.run_identity(str(config), 0, ['train.num_epochs=2'])
    assert checkpoint.check_same_run(started, dict(started), 'last.pt') == []
    with pytest.raises(RunError, match=r'last.pt was started with --seed 0, now --seed 1; resume with --seed 0 '
                                       r'\(or without --seed, which takes the recorded one\)$'):
        checkpoint.check_same_run(started, checkpoint.run_identity(str(config), 1, ['train.num_epochs=2']),
                                  'last.pt')
    drawn = checkpoint.run_identity(str(config), 123, [], seed_drawn=True)
    with pytest.raises(RunError, match=r'started with seed 123 \(drawn, no --seed given\), now --seed 7; resume with '
                                       r'--seed 123'):
        checkpoint.check_same_run(drawn, checkpoint.run_identity(str(config), 7, []), 'last.pt')
    legacy = dict(started, seed=None)
    assert checkpoint.check_same_run(legacy, started, 'last.pt')[0] == (logging.WARNING, (
        'last.pt was written by a run without a recorded seed: the resumed run cannot be bitwise identical'))


def test_resume_refuses_a_changed_config_naming_each_path(tmp_path):
    config = tmp_path / 'c.yaml'
    config.write_text('a: 1\n')
    identity = checkpoint.run_identity(str(config), 0, [])
    before = _tree('train: {num_epochs: 2, lr: 0.1, log_freq: 5}\nmodels: {s: {dst_ckpt: a.pt}}')
    after = _tree('train: {num_epochs: 2, lr: 0.05, log_freq: 9}\nmodels: {s: {dst_ckpt: b.pt}}')
    with pytest.raises(RunError, match=r"^--resume: the config differs from the one last.pt was trained with "
                                       r"\(train.lr: 0.1 -> 0.05\); continuing would mix two experiments in one run: "
                                       r"start it again without --resume .* or continue it anyway with --resume "
                                       r"--continue-changed \(the summary records the change\)$"):
        checkpoint.check_same_run(identity, identity, 'last.pt', before, after)
    notes = checkpoint.check_same_run(identity, identity, 'last.pt', before, after, continue_changed=True)
    assert notes == [(logging.WARNING, 'continuing under a changed config (--continue-changed): train.lr: 0.1 -> '
                                       '0.05; the summary records it')]


def test_resume_with_more_epochs_is_a_continuation(tmp_path):
    config = tmp_path / 'c.yaml'
    config.write_text('a: 1\n')
    identity = checkpoint.run_identity(str(config), 0, [])
    notes = checkpoint.check_same_run(identity, identity, 'last.pt', _tree('train: {num_epochs: 240}'),
                                      _tree('train: {num_epochs: 300}'))
    assert notes == [(logging.INFO, 'more epochs than the run started with: train.num_epochs: 240.0 -> 300.0 (the '
                                    'run continues to the new end; the schedule follows the config)')]
    with pytest.raises(RunError, match=r'train.num_epochs: 300.0 -> 240.0'):  # fewer is another run
        checkpoint.check_same_run(identity, identity, 'last.pt', _tree('train: {num_epochs: 300}'),
                                  _tree('train: {num_epochs: 240}'))


def test_resume_of_an_earlier_versions_checkpoint_compares_file_and_overrides(tmp_path):
    config = tmp_path / 'c.yaml'
    config.write_text('a: 1\n')
    started = checkpoint.run_identity(str(config), 0, ['train.num_epochs=2'])
    legacy = {key: started[key] for key in ('seed', 'seed_drawn', 'config_sha256', 'overrides')}
    config.write_text('a: 2\n')
    notes = checkpoint.check_same_run(legacy, checkpoint.run_identity(str(config), 0, []), 'last.pt')
    assert [note for _, note in notes] == [
        'the config file changed since the run started',
        "--set overrides differ: started with ['train.num_epochs=2'], now []",
        'last.pt was written by a version whose data loaders drew augmentation otherwise (torch worker seeding, now '
        'per-sample-1): the run will not be bitwise identical']


def test_resume_restores_a_best_checkpoint_lost_between_the_two_writes(tmp_path, monkeypatch, capsys):
    from ttm_torchdistill import cli
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    torch.save({'model': support.TinyBNNet(10, width=16).state_dict()}, 'teacher.pt')
    tiny = os.path.join(support.CONFIG_DIR, 'runner_tiny_kd.yaml')
    assert cli.main(['--config', tiny, '--device', 'cpu', '--seed', '0', '--set', 'train.num_epochs=1']) == 0
    # a kill after the last-epoch checkpoint, before the best one (epoch 1 is the best so far)
    os.remove('ckpt/tiny_kd/student.pt')
    capsys.readouterr()
    assert cli.main(['--config', tiny, '--device', 'cpu', '--seed', '0', '--resume']) == 0
    out = capsys.readouterr().out
    assert '--resume: more epochs than the run started with: train.num_epochs: 1.0 -> 3.0' in out
    assert '--resume: restored the best checkpoint of epoch 1 at ckpt/tiny_kd/student.pt' in out
    assert torch.load('ckpt/tiny_kd/student.pt', weights_only=True)['epoch'] in (1, 2)
    # a new run without --resume says it overwrites the earlier one
    assert cli.main(['--config', tiny, '--device', 'cpu', '--seed', '0']) == 0
    assert 'starting a new run: ckpt/tiny_kd/student.last.pt (and ckpt/tiny_kd/student.pt) of an earlier run ' \
           'will be overwritten' in capsys.readouterr().out


@pytest.mark.parametrize('allow_pickle', [False, True])
def test_url_checkpoints_are_unpickled_only_with_allow_pickle(monkeypatch, allow_pickle):
    seen = {}
    state = support.TinyBNNet(10, width=4).state_dict()

    def fake_download(url, **kwargs):
        seen.update(kwargs, url=url)
        return {'model': state}
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', fake_download)
    target = support.TinyBNNet(10, width=4)
    assert load_weights(target, 'https://example.org/t.pth', 'models.teacher_model.src_ckpt',
                        logger=LOGGER, allow_pickle=allow_pickle)
    assert seen['url'] == 'https://example.org/t.pth' and seen['weights_only'] is (not allow_pickle)


def test_resume_restores_cuda_rng_of_the_devices_present_and_reports_the_rest(monkeypatch):
    """A checkpoint of a 4-GPU machine resumed where 2 are visible: no IndexError, 2 restored, one note."""
    state = checkpoint.capture_rng_state()
    state['cuda'] = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]
    restored = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setattr(torch.cuda, 'set_rng_state', lambda value, device: restored.append((device, int(value[0]))))
    notes = checkpoint.restore_rng_state(state)
    assert restored == [(0, 0), (1, 1)]
    assert len(notes) == 1 and 'CUDA RNG states of 4 devices, 2 visible now' in notes[0]
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    restored.clear()
    assert 'of 4 devices, 0 visible now' in checkpoint.restore_rng_state(state)[0] and restored == []


def test_config_loader_has_every_tag_torchdistill_registers(tmp_path):
    """ConfigLoader takes its tags from torchdistill itself; compare with what torchdistill puts on FullLoader."""
    import yaml
    from torchdistill.common import yaml_util
    from ttm_torchdistill.run.config.loading import ConfigLoader, torchdistill_constructors
    probe = tmp_path / 'empty.yaml'
    probe.write_text('{}\n')
    yaml_util.load_yaml_file(str(probe))  # registers torchdistill's tags on the global FullLoader
    expected = {t: c for t, c in yaml.FullLoader.yaml_constructors.items() if isinstance(t, str) and t.startswith('!')}
    assert expected and torchdistill_constructors() == expected
    assert {t: c for t, c in ConfigLoader.yaml_constructors.items() if t in expected} == expected


def test_one_line_messages():
    from ttm_torchdistill.errors import UserError, error_line, one_line
    assert one_line(ValueError('a\n   b\tc')) == 'a b c'
    assert one_line(ValueError('\x1b[1mWeights only load failed\x1b[0m. x')) == 'Weights only load failed. x'
    assert one_line(ValueError('')) == 'ValueError'
    assert one_line(ValueError('x' * 400)).endswith('...') and len(one_line(ValueError('x' * 400))) == 303
    assert error_line(UserError('bad thing\nsecond')) == 'error: bad thing second'
    assert error_line(KeyError('k')) == "error: KeyError: 'k' (rerun with --traceback for details)"


@pytest.mark.skipif(not hasattr(os, 'fchmod'), reason='POSIX permissions')
@pytest.mark.parametrize('umask, expected', [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_file_has_the_mode_open_would_give(tmp_path, umask, expected):
    from ttm_torchdistill.atomic import atomic_file
    previous = os.umask(umask)
    try:
        with atomic_file(tmp_path / 'summary.json', 'w') as pending:
            pending.file.write('{}')
    finally:
        os.umask(previous)
    assert (tmp_path / 'summary.json').stat().st_mode & 0o777 == expected


@pytest.mark.skipif(not hasattr(os, 'fchmod'), reason='POSIX permissions')
@pytest.mark.parametrize('proc_readable', [True, False], ids=['proc_status', 'set_and_reset'])
def test_umask_is_read_with_or_without_proc(monkeypatch, proc_readable):
    from ttm_torchdistill import atomic

    refused = []

    def no_proc(path, *args, **kwargs):
        refused.append(path)
        raise PermissionError(path)

    if not proc_readable:
        monkeypatch.setattr(atomic, 'open', no_proc, raising=False)
    previous = os.umask(0o027)
    try:
        assert atomic.current_umask() == 0o027
        assert os.umask(0o027) == 0o027  # left as it was
    finally:
        os.umask(previous)
    assert refused == ([] if proc_readable else ['/proc/self/status'])


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path):
    from ttm_torchdistill.atomic import atomic_file
    path = tmp_path / 'sub' / 'summary.json'
    with atomic_file(path, 'w') as pending:
        pending.file.write('old')
        assert not path.exists() and os.path.isfile(pending.temp_path)
    with pytest.raises(RuntimeError, match='interrupted'):
        with atomic_file(path, 'w') as pending:
            pending.file.write('new but incomplete')
            raise RuntimeError('interrupted')
    assert path.read_text() == 'old' and os.listdir(path.parent) == ['summary.json']


def test_atomic_file_syncs_the_folder_after_the_rename(tmp_path, monkeypatch):
    """The rename must reach the disk before the next file is written (last, then best checkpoint)."""
    import stat
    from ttm_torchdistill import atomic
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, 'fsync', lambda fd: events.append(
        'fsync folder' if stat.S_ISDIR(os.fstat(fd).st_mode) else 'fsync file') or real_fsync(fd))
    monkeypatch.setattr(atomic.os, 'replace', lambda a, b: events.append('rename') or real_replace(a, b))
    with atomic.atomic_file(tmp_path / 'last.pt') as pending:
        pending.file.write(b'x')
    assert events == ['fsync file', 'rename', 'fsync folder']


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    """Only this host's writers that have ended: a live writer's file, another host's and other names stay."""
    import socket
    import subprocess
    import sys
    from ttm_torchdistill.atomic import atomic_file
    ended = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    dead_pid, host = int(ended.stdout), socket.gethostname()
    names = {'dead': f'.last.pt.{dead_pid}@{host}.abcd1234.tmp', 'alive': f'.last.pt.{os.getpid()}@{host}.efgh5678.tmp',
             'other host': f'.last.pt.{dead_pid}@elsewhere.example.ijkl9012.tmp',
             'other name': f'.best.pt.{dead_pid}@{host}.mnop3456.tmp', 'earlier version': '.last.pt.qrst7890.tmp'}
    for name in names.values():
        (tmp_path / name).write_bytes(b'partial')
    with atomic_file(tmp_path / 'last.pt') as pending:
        assert os.path.basename(pending.temp_path).startswith(f'.last.pt.{os.getpid()}@{host}.')
        pending.file.write(b'x')
    left = set(os.listdir(tmp_path))
    assert names['dead'] not in left
    assert {names[k] for k in ('alive', 'other host', 'other name', 'earlier version')} | {'last.pt'} == left


def test_pre_epoch_process_first_name_is_an_alias():
    from torchdistill.core.interfaces.registry import get_pre_epoch_proc_func
    from ttm_torchdistill.processes import eval_teacher_and_set_loss_epoch
    assert get_pre_epoch_proc_func('eval_teacher_pre_epoch_process') is eval_teacher_and_set_loss_epoch
    assert get_pre_epoch_proc_func('eval_teacher_and_set_loss_epoch') is eval_teacher_and_set_loss_epoch


class _Planted:
    """What a file planted in a run folder may hold: unpickling it calls ``open(marker, 'w')``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, 'w')


def test_resume_reads_the_last_checkpoint_without_running_code_it_holds(tmp_path):
    marker = str(tmp_path / 'code_ran')
    path = str(tmp_path / 'student.last.pt')
    torch.save({'format': checkpoint.LAST_FORMAT, 'rng': checkpoint.capture_rng_state(), 'box_state': _Planted(marker)},
               path)
    with pytest.raises(RunError, match=r"^--resume: .*student.last.pt holds objects that "
                                       r"torch.load\(weights_only=True\) does not read \(io.open\); a last-epoch "
                                       r"checkpoint of this runner holds none: if you trust the file, --allow_pickle "
                                       r"reads it with pickle"):
        checkpoint.load_last(path)
    assert not os.path.exists(marker)
    # the RNG states themselves (numpy's uint32 array included) are read with weights_only=True
    torch.save({'format': checkpoint.LAST_FORMAT, 'rng': checkpoint.capture_rng_state()}, path)
    assert checkpoint.load_last(path)['rng']['numpy'][0] == 'MT19937'
