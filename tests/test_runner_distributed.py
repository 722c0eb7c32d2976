"""torchrun with 2 gloo processes on CPU: synchronised students equal to one process on the global batch."""
import json
import os
import subprocess
import sys

import torch

import runner_support as support

DDP = os.path.join(support.CONFIG_DIR, 'runner_tiny_ddp.yaml')


def _prepare(folder):
    os.makedirs(folder)
    torch.manual_seed(5)
    torch.save({'model': support.TinyLinearNet(10, hidden=32).state_dict()}, os.path.join(folder, 'teacher.pt'))
    return folder


def _load(folder, name):
    return torch.load(os.path.join(folder, name), weights_only=False)


def test_two_gloo_processes_match_one_process_on_the_global_batch(tmp_path):
    # 2 ranks x 8 samples per step vs 1 process x 16 samples per step, BatchNorm-free teacher and student.
    two = _prepare(str(tmp_path / 'two_ranks'))
    command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
               f'--master_port={support.free_port()}', '-m', 'ttm_torchdistill', '--config', DDP, '--device', 'cpu',
               '--world_size', '2', '--seed', '0', '--set', 'train.train_data_loader.kwargs.batch_size=8']
    result = subprocess.run(command, cwd=two, env=support.subprocess_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    two_ranks_stdout = result.stdout
    one = _prepare(str(tmp_path / 'one_rank'))
    result = support.run_cli(['--config', DDP, '--device', 'cpu', '--seed', '0'], cwd=one)
    assert result.returncode == 0, result.stderr[-3000:]

    # After epoch 1 (2 optimizer steps): identical across ranks, equal to the single process.
    rank0, rank1 = _load(two, 'params_rank0_epoch1.pt'), _load(two, 'params_rank1_epoch1.pt')
    single = _load(one, 'params_rank0_epoch1.pt')
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f'{key} differs between ranks'
        assert torch.allclose(rank0[key], single[key], rtol=0, atol=1e-6), key
    assert not torch.equal(single['fc1.weight'], _load(one, 'params_rank0_epoch0.pt')['fc1.weight'])

    # After the whole run (4 steps): only rank 0 wrote the checkpoints, which match the single process.
    final_two, final_one = _load(two, 'ckpt/student.last.pt'), _load(one, 'ckpt/student.last.pt')
    for key in final_one['model']:
        assert torch.allclose(final_two['model'][key], final_one['model'][key], rtol=0, atol=1e-6), key
    assert sorted(os.listdir(os.path.join(two, 'ckpt'))) == ['student.attempts.json', 'student.json', 'student.last.pt',
                                                         'student.pt']
    with open(os.path.join(two, 'ckpt', 'student.json')) as fp:
        summary_two = json.load(fp)
    with open(os.path.join(one, 'ckpt', 'student.json')) as fp:
        summary_one = json.load(fp)
    assert summary_two['world_size'] == 2 and summary_one['world_size'] == 1
    # Metrics are reduced over ranks: the validation/test numbers cover the whole sets.
    for a, b in zip(summary_two['epochs'], summary_one['epochs']):
        assert abs(a['train_loss'] - b['train_loss']) < 1e-5
        assert (a['val_top1'], a['val_top5']) == (b['val_top1'], b['val_top5'])
    assert summary_two['test'] == summary_one['test']
    # Only rank 0 logs progress.
    assert two_ranks_stdout.count('Epoch 2/2 done') == 1 and two_ranks_stdout.count('Start training') == 1


def _torchrun(config, cwd, probe, extra_env=None):
    command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
               f'--master_port={support.free_port()}', '-m', 'ttm_torchdistill', '--config', config, '--device', 'cpu',
               '--world_size', '2', '--seed', '0']
    env = support.subprocess_env(dict({'TTM_TEST_PROBE': probe}, **(extra_env or dict())))
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_first_run_downloads_the_data_once_then_the_other_rank_builds(tmp_path):
    folder = str(tmp_path)
    torch.save({'model': support.TinyLinearNet(100, in_features=3072, hidden=8).state_dict()},
               os.path.join(folder, 'teacher.pt'))
    events_path = os.path.join(folder, 'events.txt')
    result = _torchrun(os.path.join(support.CONFIG_DIR, 'runner_tiny_cifar_download.yaml'), folder, 'download',
                       {'TTM_TEST_EVENTS': events_path})
    assert result.returncode == 0, result.stderr[-3000:]
    with open(events_path) as fp:
        events = [line.split(' ', 1) for line in fp.read().splitlines()]
    downloads = [(rank, what) for rank, what in events if what.startswith('download')]
    assert downloads == [('0', 'download start'), ('0', 'download end')]  # one rank downloads, once
    # Rank 1 starts building only after rank 0 has built both datasets (download and extraction included).
    first_rank1 = next(i for i, (rank, _) in enumerate(events) if rank == '1')
    rank0_done = max(i for i, (rank, what) in enumerate(events) if rank == '0' and what.startswith('build end'))
    assert first_rank1 > rank0_done, events
    assert sum(1 for rank, what in events if rank == '1' and what.startswith('build end')) == 2


def test_two_nodes_sharing_a_folder_download_once_and_wait_past_the_collective_timeout(tmp_path):
    """Two torchrun agents (--nnodes=2, one process each) on one machine: two nodes whose leaders share a folder.

    Rank 0 downloads first; the other node's leader then finds the files. The download takes longer than the
    process group's timeout (--dist-timeout 0.1 min = 6 s): the waiting rank waits in the data-build group instead.
    """
    folder = str(tmp_path)
    torch.save({'model': support.TinyLinearNet(100, in_features=3072, hidden=8).state_dict()},
               os.path.join(folder, 'teacher.pt'))
    events_path = os.path.join(folder, 'events.txt')
    port = support.free_port()
    env = support.subprocess_env({'TTM_TEST_PROBE': 'download', 'TTM_TEST_EVENTS': events_path,
                                  'TTM_TEST_DOWNLOAD_SECONDS': '12'})
    agents = [subprocess.Popen(
        [sys.executable, '-m', 'torch.distributed.run', '--nnodes=2', '--nproc_per_node=1', f'--node_rank={node}',
         '--master_addr=127.0.0.1', f'--master_port={port}', '-m', 'ttm_torchdistill', '--config',
         os.path.join(support.CONFIG_DIR, 'runner_tiny_cifar_download.yaml'), '--device', 'cpu', '--world_size', '2',
         '--seed', '0', '--dist-timeout', '0.1'], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for node in (0, 1)]
    outputs = [agent.communicate(timeout=300) for agent in agents]
    for agent, (out, err) in zip(agents, outputs):
        assert agent.returncode == 0, err[-3000:]
    with open(events_path) as fp:
        events = [line.split(' ', 1) for line in fp.read().splitlines()]
    assert [(rank, what) for rank, what in events if what.startswith('download')] == [('0', 'download start'),
                                                                                   ('0', 'download end')]
    first_rank1 = next(i for i, (rank, _) in enumerate(events) if rank == '1')
    rank0_done = max(i for i, (rank, what) in enumerate(events) if rank == '0' and what.startswith('build end'))
    assert first_rank1 > rank0_done, events


def test_ranks_without_the_best_checkpoint_test_the_best_weights(tmp_path):
    # Each rank in its own folder, as on two nodes without a shared filesystem: rank 1 never sees ckpt/student.pt.
    for rank in (0, 1):
        os.makedirs(tmp_path / f'rank{rank}')
        torch.manual_seed(3)
        torch.save({'model': support.TinyLinearNet(11).state_dict()}, tmp_path / f'rank{rank}' / 'teacher.pt')
    result = _torchrun(os.path.join(support.CONFIG_DIR, 'runner_tiny_rank_dirs.yaml'), str(tmp_path), 'rank_dirs')
    assert result.returncode == 0, result.stderr[-3000:]
    assert not os.path.exists(tmp_path / 'rank1' / 'ckpt')
    best = torch.load(tmp_path / 'rank0' / 'ckpt' / 'student.pt', weights_only=False)
    last = torch.load(tmp_path / 'rank0' / 'ckpt' / 'student.last.pt', weights_only=False)
    assert best['epoch'] == 1 and last['epoch'] == 2  # best and last weights differ, so the test can tell
    assert not torch.equal(best['model']['fc.weight'], last['model']['fc.weight'])
    for rank in (0, 1):
        tested = torch.load(tmp_path / f'rank{rank}' / 'tested_student.pt', weights_only=False)
        for key, value in best['model'].items():
            assert torch.equal(tested[key], value), (rank, key)
    # sync_bn: True cannot run on CPU (torch's SyncBatchNorm refuses it): plain BatchNorm, and the log says so.
    assert 'sync_bn ignored: SyncBatchNorm does not run on cpu' in result.stdout
