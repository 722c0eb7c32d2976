"""``--holdout N``: validate on N training images held out (class-balanced, a fixed split seed), never on the test
set, which only the final test reads; the switch gives the run the same YAML, written by hand, gives.

Driven from the command line on CIFAR-100 files generated in torchvision's format, with the tests' own configs
(``tests/configs/torchdistill_vocabulary/holdout_base.yaml`` and its hand-written split ``holdout_written.yaml``).
"""
import collections
import json
import os

import pytest
import torch

import runner_support as support
from ttm_torchdistill.datasets import HoldoutPart, holdout_indices, holdout_split

BASE = os.path.join(support.CONFIG_DIR, 'torchdistill_vocabulary', 'holdout_base.yaml')
WRITTEN = os.path.join(support.CONFIG_DIR, 'torchdistill_vocabulary', 'holdout_written.yaml')
COMMON = ['--device', 'cpu', '--seed', '0']


def test_holdout_indices_are_class_balanced_sorted_and_fixed_by_their_seed():
    targets = [i % 10 for i in range(200)]
    held = holdout_indices(targets, 200, 30, seed=0)
    assert held == sorted(held) and len(set(held)) == 30
    assert set(collections.Counter(targets[i] for i in held).values()) == {3}
    assert held == holdout_indices(targets, 200, 30, seed=0) != holdout_indices(targets, 200, 30, seed=1)
    uneven = holdout_indices([0] * 150 + [1] * 50, 200, 10, seed=0)  # proportional: 7.5 and 2.5
    assert collections.Counter(0 if i < 150 else 1 for i in uneven) == {0: 8, 1: 2}
    assert len(holdout_indices(None, 200, 30, seed=0, class_balanced=False)) == 30


@pytest.mark.parametrize('size', [0, 200], ids=['none', 'all'])
def test_a_holdout_must_leave_images_on_both_sides(size):
    with pytest.raises(ValueError, match=rf'^holdout must be between 1 and 199 \(the training set has 200 samples\), '
                                         rf'got {size}$'):
        holdout_indices(None, 200, size, seed=0, class_balanced=False)


def test_class_balance_needs_targets():
    with pytest.raises(ValueError, match=r"^a class-balanced holdout needs the dataset's targets"):
        holdout_indices(None, 200, 10, seed=0)


def test_holdout_split_parts_are_disjoint_cover_the_source_and_carry_their_transform():
    source = support.TinyTensorDataset(num_samples=40, image_size=4, num_classes=4)
    train, held = holdout_split(source, 8, seed=0, sub_splits_configs=[{'transform': 'train'}, {'transform': 'val'}])
    assert isinstance(held, HoldoutPart) and sorted(train.indices + held.indices) == list(range(40))
    assert held.targets == [source.targets[i] for i in held.indices] and held.classes == source.classes
    assert (train.dataset.transform, held.dataset.transform) == ('train', 'val')
    with pytest.raises(ValueError, match=r"^sub_splits_configs: unknown keys \['transforms'\]; expected transform, "
                                         r"target_transform$"):
        holdout_split(source, 8, sub_splits_configs=[{'transforms': 1}, {}])


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    support.write_tiny_cifar100('data/cifar100', num_train=60, num_test=20)
    torch.manual_seed(7)
    torch.save({'model': support.TinyBNNet(100, width=8).state_dict()}, 'teacher.pt')
    return tmp_path


def _summary(path='ckpt/student.json'):
    with open(path) as fp:
        return json.load(fp)


def test_the_switch_trains_the_run_the_hand_written_split_trains(folder, capsys):
    support.cli_ok(capsys, ['--config', WRITTEN] + COMMON)
    written = torch.load('ckpt/student.last.pt', weights_only=False)['model']
    out = support.cli_ok(capsys, ['--config', BASE, '--holdout', '10', '--overwrite'] + COMMON)
    assert 'Holding out 10 of the 60 samples of cifar100/train for validation (seed 0, class-balanced)' in out
    switched = torch.load('ckpt/student.last.pt', weights_only=False)['model']
    assert all(torch.equal(value, switched[key]) for key, value in written.items())
    summary = _summary()
    assert summary['holdout'] == {'size': 10, 'asked': 10, 'seed': 0, 'class_balanced': True,
                                  'dataset': 'cifar100/train', 'held_out': 'cifar100/train/holdout',
                                  'indices_sha256': summary['holdout']['indices_sha256']}
    assert summary['selected_on'] == 'cifar100/train/holdout' and summary['runtime']['holdout'] == 10


def test_the_test_set_is_read_only_after_training(folder, capsys, monkeypatch):
    """Every dataset records its builds and reads (in order, in one file): with --holdout no test image is built or
    read before the last training or validation read; without it, validation reads the test set every epoch."""
    reads = os.path.join(folder, 'reads.txt')
    monkeypatch.setenv('TTM_TEST_READS', reads)
    recording = ['--set', 'datasets.*.key=runner_support.ReadRecordingCIFAR100']
    support.cli_ok(capsys, ['--config', BASE, '--holdout', '10'] + recording + COMMON)
    with open(reads) as fp:
        events = fp.read().split('\n')[:-1]
    first_test = events.index('test build')
    assert 'train read' in events and 'test read' in events[first_test:]
    assert not any(event.startswith('test') for event in events[:first_test])
    assert 'train read' not in events[first_test:], 'a training image was read after the test set was built'
    os.remove(reads)
    support.cli_ok(capsys, ['--config', BASE, '--overwrite'] + recording + COMMON)
    with open(reads) as fp:
        events = fp.read().split('\n')[:-1]
    assert events.index('test read') < len(events) - events[::-1].index('train read') - 1  # validation: during training


def test_smoke_with_the_switch(folder, capsys):
    out = support.cli_ok(capsys, ['--config', BASE, '--holdout', '5000', '--smoke'])
    assert 'Holding out 16 of the' in out


def test_a_bad_holdout_is_one_error_line(folder, capsys):
    line = support.cli_error(capsys, ['--config', BASE, '--holdout', '0'])
    assert line == 'error: command line: holdout must be a positive number of training images (or null), got 0'
    line = support.cli_error(capsys, ['--config', BASE, '--holdout', '60'])
    assert line.startswith("error: dataset 'cifar100/train/holdout_split' (ttm_torchdistill.datasets.CIFAR100Format) "
                           "cannot be built from the config: ValueError: holdout must be between 1 and 59")


def test_a_study_with_a_holdout_runs_it_and_does_not_take_its_runs_for_changed(tmp_path, monkeypatch):
    """runtime.holdout in a study file reaches every run as --holdout; the study compares what it asks with what
    each run recorded after the same rewrite, so a second `study run` finds nothing changed and nothing to do."""
    import contextlib
    import io
    import study_files
    from ttm_torchdistill.commands import study as study_cli
    study_files.study_folder(str(tmp_path))
    study_files.write_study(str(tmp_path), configs=['configs/cifar100/kd/tiny_from_tiny.yaml'], seeds=[0],
                            runtime={'holdout': 10}, set=['train.num_epochs=1'])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('PYTHONPATH', support.subprocess_env()['PYTHONPATH'])
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    for expected in ('1 to do', '0 to do'):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            assert study_cli.main(['run', 'study.yaml', '--executor', 'local']) == 0, err.getvalue()
        assert expected in err.getvalue()
    summary = _summary('runs/tiny/runs/cifar100/kd/tiny_from_tiny/base/seed0/student.json')
    assert summary['holdout']['size'] == 10 and summary['selected_on'] == 'cifar100/train/holdout'


@pytest.mark.parametrize('config', ['wttm_crd/resnet8x4_from_resnet32x4', 'mlkd/resnet8x4_from_resnet32x4'],
                         ids=['crd-memory-bank', 'mlkd-two-views'])
def test_the_switch_with_crd_and_mlkd(tmp_path, monkeypatch, capsys, config):
    """CRD's memory bank is sized by the training part (its negatives are drawn from the training part), MLKD's
    two-view wrapper takes the training part's transform as its weak view."""
    monkeypatch.chdir(tmp_path)
    out = support.cli_ok(capsys, ['--config', os.path.join(support.REPO_ROOT, 'configs', 'cifar100', f'{config}.yaml'),
                                  '--smoke', '--holdout', '100'])
    assert 'Holding out 16 of the 64 samples of cifar100/train' in out


def test_crd_memory_follows_the_training_part():
    """RepDistiller's n_data is the training set's size: with a held-out split, the training part's."""
    from ttm_torchdistill.run.config.holdout import fit_crd_to_training_part
    source = support.TinyTensorDataset(num_samples=40, image_size=4, num_classes=4)
    train, held = holdout_split(source, 8)
    crd = {'key': 'CRDLoss', 'kwargs': {'output_size': 40, 'num_samples': 40, 'num_negative_samples': 16}}
    config = {'train': {'train_data_loader': {'dataset_id': 't'}, 'criterion': {'kwargs': {'sub_terms': {
        'crd': {'criterion': crd}}}}}}
    notes = fit_crd_to_training_part(config, {'t': train})
    assert crd['kwargs'] == {'output_size': 32, 'num_samples': 32, 'num_negative_samples': 16}
    assert notes == ['train.criterion.kwargs.sub_terms.crd.criterion.kwargs.output_size: 40 -> 32 (the training part)',
                     'train.criterion.kwargs.sub_terms.crd.criterion.kwargs.num_samples: 40 -> 32 (the training part)']
