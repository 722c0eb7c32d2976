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
    assert sorted(os.listdir(os.path.join(two, 'ckpt'))) == ['student.json', 'student.last.pt', 'student.pt']
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
