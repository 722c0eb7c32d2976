"""Bitwise exactness under torchrun (2 gloo processes on CPU): one seed for every rank, and per-rank resume.

* A run without ``--seed`` draws one seed on rank 0 for every rank and records it; the same command with
  ``--seed <recorded>`` trains the same student bit for bit (with ``--device-data`` every rank draws its
  permutation and augmentation from the seed: ranks with different seeds would shard the data with gaps).
* A run killed with SIGKILL after epoch 1 and continued with ``--resume`` ends with the weights of the uninterrupted
  run, bit for bit, on the stock path and with ``--device-data``. The stock case runs each rank in its own folder,
  as on two nodes without a shared filesystem: only rank 0's folder holds the checkpoint, which every rank
  resumes from. The config's student has dropout and its pre-epoch
  process draws ``rank + 1`` numbers per epoch, so the ranks' random states differ: restoring rank 0's states on
  every rank would not end equal.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

import runner_support as support

CONFIG = os.path.join(support.CONFIG_DIR, 'runner_tiny_cifar_exact.yaml')
LAST = os.path.join('ckpt', 'student.last.pt')
SUMMARY = os.path.join('ckpt', 'student.json')


def _folder(root, name, rank_dirs):
    """A run folder with the tiny CIFAR-100 and the teacher (in rank0/ and rank1/ each when ``rank_dirs``)."""
    folder = str(root / name)
    for place in ([os.path.join(folder, 'rank0'), os.path.join(folder, 'rank1')] if rank_dirs else [folder]):
        os.makedirs(place)
        support.write_tiny_cifar100(os.path.join(place, 'data', 'cifar100'), num_train=40, num_test=20)
        torch.manual_seed(7)
        torch.save({'model': support.TinyBNNet(100, width=8).state_dict()}, os.path.join(place, 'teacher.pt'))
    return os.path.join(folder, 'rank0') if rank_dirs else folder


def _torchrun(folder, args, kill_at_epoch=None):
    rank_dirs = os.path.basename(folder) == 'rank0'
    command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
               f'--master_port={support.free_port()}', '-m', 'ttm_torchdistill', '--config', CONFIG,
               '--device', 'cpu', '--world_size', '2'] + args
    extra = {'TTM_TEST_PROBE': 'no_md5,rank_dirs' if rank_dirs else 'no_md5'}
    cwd = os.path.dirname(folder) if rank_dirs else folder
    if kill_at_epoch is not None:
        extra['TTM_TEST_KILL_AT_EPOCH'] = str(kill_at_epoch)
    return subprocess.run(command, cwd=cwd, env=support.subprocess_env(extra), capture_output=True, text=True,
                          timeout=300)


def _ok(result):
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def _last(folder):
    return torch.load(os.path.join(folder, LAST), weights_only=False)


def _assert_same_weights(a, b):
    assert a['epoch'] == b['epoch']
    for key, value in a['model'].items():
        assert torch.equal(value, b['model'][key]), key


def _kill_then_resume(root, name, args, resume_args, rank_dirs):
    folder = _folder(root, name, rank_dirs)
    killed = _torchrun(folder, args, kill_at_epoch=1)
    assert killed.returncode != 0
    assert _last(folder)['epoch'] == 1  # epoch 1 was saved before the kill
    _ok(_torchrun(folder, resume_args + ['--resume']))
    return folder


#: torchdistill's loader with two persistent worker processes per rank, as the shipped configs load
PERSISTENT_WORKERS = ['--set', 'train.train_data_loader.kwargs={batch_size: 8, num_workers: 2, drop_last: False, '
                      'persistent_workers: True}']


@pytest.mark.parametrize('runtime,rank_dirs', [([], True), (PERSISTENT_WORKERS, False), (['--device-data'], False)],
                         ids=['stock-folder-per-rank', 'stock-persistent-workers', 'device-data'])
def test_unseeded_run_is_reproduced_by_its_recorded_seed_killed_and_resumed(tmp_path, runtime, rank_dirs):
    first = _folder(tmp_path, 'first', rank_dirs)
    out = _ok(_torchrun(first, runtime)).stdout
    with open(os.path.join(first, SUMMARY)) as fp:
        summary = json.load(fp)
    seed = summary['seed']
    assert isinstance(seed, int) and summary['seed_drawn'] is True
    assert f'No --seed given: drew seed {seed} (rank 0, shared by every rank)' in out
    reference = _last(first)
    assert reference['epoch'] == 3
    assert len(reference['rng_per_rank']) == 2 and reference['rng_per_rank'][0] == reference['rng']

    # The same command with --seed <recorded>, killed with SIGKILL after epoch 1, then continued with --resume
    # without --seed (the recorded seed is taken, each rank restores its own RNG states): the same student.
    resumed = _kill_then_resume(tmp_path, 'resumed', runtime + ['--seed', str(seed)], runtime, rank_dirs)
    _assert_same_weights(_last(resumed), reference)
    with open(os.path.join(resumed, SUMMARY)) as fp:
        assert json.load(fp)['seed'] == seed
    if rank_dirs:  # rank 1 never wrote (nor found) a checkpoint in its own folder
        assert not os.path.exists(os.path.join(os.path.dirname(resumed), 'rank1', 'ckpt'))


def test_the_seed_sets_the_order_of_torchdistill_distributed_sampler(tmp_path):
    """Two torchrun runs that differ only in --seed, with the student's initial weights loaded from one file and no
    random augmentation or dropout (the training set read through the test transform): the order is all that
    the seed can change, and it must (torch's DistributedSampler defaults to seed 0 for every run)."""
    fixed = ['--set', 'train.train_data_loader.dataset_id=cifar100/test',
             '--set', 'models.student_model={key: test_runner_tiny_bn_net, kwargs: {num_classes: 100, width: 8}, '
             'src_ckpt: student_init.pt, dst_ckpt: ckpt/student.pt}']
    students, summaries = [], []
    for seed in (0, 1):
        folder = _folder(tmp_path, f'seed{seed}', rank_dirs=False)
        torch.manual_seed(3)
        torch.save({'model': support.TinyBNNet(100, width=8).state_dict()}, os.path.join(folder, 'student_init.pt'))
        _ok(_torchrun(folder, fixed + ['--seed', str(seed)]))
        students.append(_last(folder))
        with open(os.path.join(folder, SUMMARY)) as fp:
            summaries.append(json.load(fp))
    assert [s['sampler_seed'] for s in summaries] == [0, 1]
    assert any(not torch.equal(value, students[1]['model'][key]) for key, value in students[0]['model'].items())
