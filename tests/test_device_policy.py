"""What the run changes in its config copy to fit the machine: loaders, wrappers, SyncBatchNorm (CPU-testable)."""
import logging
import os

import pytest
import torch
from torch import nn

import runner_support as support
from ttm_torchdistill import cli
from ttm_torchdistill.errors import RunError
from ttm_torchdistill.run.machine import fit_to_machine as policy
from ttm_torchdistill.run.machine.context import DistContext
from ttm_torchdistill.run.model_loading.build import build_model

TINY = os.path.join(support.CONFIG_DIR, 'runner_tiny_kd.yaml')


def ctx_for(device='cpu', distributed=False, local_world_size=1):
    device = torch.device(device)
    ids = [device.index] if distributed and device.type == 'cuda' else None
    return DistContext(distributed, 0, local_world_size if distributed else 1, device, ids, 0, local_world_size)


@pytest.mark.parametrize('asked, device, distributed, flag, expected', [
    ('DistributedDataParallel', 'cuda', False, False, None),  # the configs' GPU recipe in one process
    ('DataParallel', 'cuda', False, False, None),
    (None, 'cuda', False, True, 'DataParallel'),  # --data-parallel asks for it
    ('DistributedDataParallel', 'cuda', False, True, 'DataParallel'),
    ('DistributedDataParallel', 'cuda', True, False, 'DistributedDataParallel'),
    ('DataParallel', 'cuda', True, False, 'DistributedDataParallel'),  # DP would keep the ranks apart
    (None, 'cuda', True, False, None),  # the runner wraps the student in DDP itself
    ('DataParallel', 'cpu', False, False, None),
    ('DistributedDataParallel', 'cpu', True, False, None),  # gloo: DDP comes from ensure_ddp
])
def test_wrapper_decision(asked, device, distributed, flag, expected):
    assert policy.wrapper_decision(asked, device, distributed, flag) == expected


def test_wrapper_decision_refuses_unknown_and_sharding_wrappers():
    with pytest.raises(ValueError, match=r"unknown wrapper 'DistributedDataParalel' \(did you mean "
                                         r"'DistributedDataParallel'\?\); expected one of DataParallel, "):
        policy.wrapper_decision('DistributedDataParalel', 'cuda', False, False)
    with pytest.raises(ValueError, match=r"wrapper 'FullyShardedDataParallel' shards the model, but the runner "
                                         r"validates and saves the whole student; use DistributedDataParallel"):
        policy.wrapper_decision('FullyShardedDataParallel', 'cuda', True, False)


def _config(wrapper='DistributedDataParallel', **loader_kwargs):
    return {'models': {'student_model': {'key': 'cifar_resnet8'}},
            'train': {'train_data_loader': {'dataset_id': 'a', 'kwargs': dict(loader_kwargs)},
                      'teacher': {'wrapper': wrapper}, 'student': {'wrapper': {'key': wrapper, 'kwargs': {}}}},
            'test': {'test_data_loader': {'dataset_id': 'b', 'kwargs': {'num_workers': 8}}}}


def test_one_process_on_cuda_1_trains_there_unwrapped_unless_data_parallel_is_asked(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 4)
    ctx = ctx_for('cuda:1')
    config = _config()
    notes = policy.fit_config_to_machine(config, ctx, cores=64)
    assert config['train']['teacher']['wrapper'] is None and config['train']['student']['wrapper'] is None
    assert 'train.student.wrapper: DistributedDataParallel -> None' in notes
    assert policy.box_device_ids(ctx, data_parallel=False) is None
    config = _config()
    policy.fit_config_to_machine(config, ctx, data_parallel=True, cores=64)
    assert config['train']['student']['wrapper'] == {'key': 'DataParallel', 'kwargs': {}}
    # DataParallel keeps the model on (and gathers to) its first device: --device's GPU.
    assert policy.box_device_ids(ctx, data_parallel=True) == [1, 0, 2, 3]


def test_data_parallel_flag_needs_one_process_and_cuda(caplog):
    with pytest.raises(RunError, match=r'^--data-parallel spreads one process over several GPUs; under torchrun'):
        policy.check_data_parallel(ctx_for('cuda:0', distributed=True), device_count=2)
    with pytest.raises(RunError, match=r'^--data-parallel needs CUDA devices, but the run is on cpu'):
        policy.check_data_parallel(ctx_for('cpu'), device_count=0)
    with caplog.at_level(logging.WARNING, logger='ttm_torchdistill.run'):
        policy.check_data_parallel(ctx_for('cuda:0'), device_count=1)
    assert 'only 1 GPU visible' in caplog.text


def test_loaders_fit_the_cores_and_the_device():
    config = _config(num_workers=8, pin_memory=True, persistent_workers=True, prefetch_factor=4)
    notes = policy.fit_config_to_machine(config, ctx_for('cpu'), cores=2)
    assert config['train']['train_data_loader']['kwargs'] == {'num_workers': 2, 'pin_memory': False,
                                                              'persistent_workers': True, 'prefetch_factor': 4}
    assert 'train.train_data_loader.kwargs.pin_memory: True -> False' in notes
    assert '(workers capped at 2: 2 cores for 1 process(es) on this node)' in notes
    # torchrun with 4 processes on this node and 2 cores: no workers, so no worker-only options.
    config = _config(num_workers=8, pin_memory=True, persistent_workers=True, prefetch_factor=4)
    policy.fit_config_to_machine(config, ctx_for('cuda:0', distributed=True, local_world_size=4), cores=2)
    kwargs = config['train']['train_data_loader']['kwargs']
    assert kwargs == {'num_workers': 0, 'pin_memory': True}  # pinning kept: the run is on a GPU
    loader = torch.utils.data.DataLoader(list(range(4)), **dict(kwargs, pin_memory=False))  # torch accepts them
    assert list(loader)


def test_cores_follow_the_affinity_mask(monkeypatch):
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 3, 5}, raising=False)
    assert policy.cores_available() == 3
    monkeypatch.delattr(os, 'sched_getaffinity', raising=False)
    monkeypatch.setattr(os, 'cpu_count', lambda: 6)
    assert policy.cores_available() == 6
    assert policy.worker_cap(6, 4) == 1 and policy.worker_cap(2, 4) == 0


def test_sync_bn_converts_any_model_only_where_it_runs():
    assert policy.sync_bn_applies(ctx_for('cuda:0', distributed=True))
    assert not policy.sync_bn_applies(ctx_for('cuda:0'))  # one process: nothing to synchronise
    assert not policy.sync_bn_applies(ctx_for('cpu', distributed=True))  # torch's SyncBatchNorm refuses CPU
    entry = {'key': 'cifar_resnet8', 'kwargs': {'num_classes': 10}, 'sync_bn': True}
    model = build_model(entry, 'models.student_model', {}, convert_sync_bn=True)
    kinds = {type(m) for m in model.modules()}
    assert nn.SyncBatchNorm in kinds and nn.BatchNorm2d not in kinds  # the plugin's own model, not only torchvision
    model = build_model(dict(entry, sync_bn=False), 'models.student_model', {}, convert_sync_bn=True)
    assert nn.SyncBatchNorm not in {type(m) for m in model.modules()}
    model = build_model(entry, 'models.student_model', {}, convert_sync_bn=False)
    assert nn.SyncBatchNorm not in {type(m) for m in model.modules()}


def test_gpu_recipe_config_trains_unwrapped_in_one_cpu_process_without_pin_warning(tmp_path, monkeypatch, capsys,
                                                                                  recwarn):
    monkeypatch.chdir(tmp_path)
    torch.save({'model': support.TinyBNNet(10, width=16).state_dict()}, 'teacher.pt')
    import torchdistill.core.distillation as distillation
    seen = []
    original = distillation.wrap_model

    def recording_wrap_model(model, model_config, *args, **kwargs):
        seen.append(model_config.get('wrapper'))
        wrapped = original(model, model_config, *args, **kwargs)
        seen.append(type(wrapped).__name__)
        return wrapped
    monkeypatch.setattr(distillation, 'wrap_model', recording_wrap_model)
    monkeypatch.setattr(policy, 'cores_available', lambda: 1)
    loader = '{batch_size: 8, num_workers: 8, pin_memory: True, persistent_workers: True}'
    code = cli.main(['--config', TINY, '--device', 'cpu', '--set', 'train.num_epochs=1',
                     '--set', 'train.student={forward_proc: forward_batch_only, requires_grad: True, '
                              'wrapper: DataParallel}',
                     '--set', 'train.teacher={forward_proc: forward_batch_only, requires_grad: False, '
                              'wrapper: {key: DistributedDataParallel, kwargs: {}}}',
                     '--set', f'train.train_data_loader.kwargs={loader}'])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert seen == [None, 'TinyBNNet', None, 'TinyBNNet']  # teacher and student reach torchdistill unwrapped
    assert out.out.count('fitted to this machine: train.train_data_loader.kwargs.pin_memory: True -> False') == 1
    assert 'fitted to this machine: train.train_data_loader.kwargs.num_workers: 8 -> 1' in out.out
    assert 'fitted to this machine: train.student.wrapper: DataParallel -> None' in out.out
    assert not [w for w in recwarn if 'pin_memory' in str(w.message)]


def test_a_failure_on_rank_0_stops_the_other_ranks_instead_of_leaving_them_waiting(monkeypatch):
    from ttm_torchdistill.run.machine import context as distributed
    votes = []

    def fake_any_rank(flag, ctx, long_wait=False):  # the all-reduce, as seen by one rank: True when any voted True
        votes.append((flag, long_wait))
        return flag or fake_any_rank.others_failed
    monkeypatch.setattr(distributed, 'any_rank', fake_any_rank)
    rank0 = ctx_for('cpu', distributed=True)
    same_node, other_node = ctx_for('cpu', distributed=True), ctx_for('cpu', distributed=True)
    same_node.local_rank, same_node.rank = 1, 1
    other_node.local_rank, other_node.rank = 0, 2

    def broken():
        raise RunError('no data')
    fake_any_rank.others_failed = False
    with pytest.raises(RunError, match='^no data$'):  # rank 0 reports its own error, after voting
        distributed.rank0_first(broken, rank0, 'building the datasets')
    assert votes == [(True, True)]  # in the coordination group: a download may outlast the process group's timeout
    fake_any_rank.others_failed = True
    calls = []
    for ctx in (same_node, other_node):
        with pytest.raises(RunError, match=rf'^building the datasets failed on another rank \(its error is reported '
                                           rf'there\); rank {ctx.rank} stopped$'):
            distributed.rank0_first(lambda: calls.append(1), ctx, 'building the datasets')
    assert calls == []  # nobody builds after a failed rank 0
    fake_any_rank.others_failed = False
    order = []
    for ctx in (rank0, other_node, same_node):
        assert distributed.rank0_first(lambda: order.append(ctx.rank) or 'built', ctx, 'building') == 'built'
    assert order == [0, 2, 1]


def test_one_process_on_cuda_k_makes_k_the_current_device(monkeypatch):
    from ttm_torchdistill.run.machine.context import init_distributed
    monkeypatch.delenv('RANK', raising=False)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    current = []
    monkeypatch.setattr(torch.cuda, 'set_device', lambda device: current.append(torch.device(device)))
    ctx = init_distributed('cuda:1', 1, 'env://')
    assert ctx.device == torch.device('cuda', 1) and current == [torch.device('cuda', 1)]
    current.clear()
    init_distributed('cuda', 1, 'env://')  # no index: CUDA's current device is the one meant
    init_distributed('cpu', 1, 'env://')
    assert current == []


@pytest.mark.parametrize('flag, message', [
    ('--teacher-cache=cache', r'^error: --data-parallel cannot read a teacher cache \(each DataParallel replica sees a '
                              r'slice of the batch'),
    ('--compile', r'^error: --data-parallel cannot run a compiled model \(the compiled call is bound to the module on '
                  r'the first GPU'),
])
def test_data_parallel_refuses_the_teacher_cache_and_compile_before_building(tmp_path, monkeypatch, capsys, flag,
                                                                            message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'set_device', lambda device: None)
    built = []
    monkeypatch.setattr('ttm_torchdistill.run.prepare.build_real_datasets', lambda loaded: built.append(1))
    args = ['--config', TINY, '--device', 'cuda:0', '--data-parallel', flag]
    if flag.startswith('--teacher-cache'):
        args.append('--device-data')
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip()
    import re
    assert re.match(message, err), err
    assert built == []


@pytest.mark.parametrize('key, kwargs, device, amp, fused', [
    ('SGD', {'lr': 0.05}, 'cuda:0', 'fp16', True),  # the scaler reads its inf check every step otherwise
    ('AdamW', {}, 'cuda:0', 'fp16', True),
    ('SGD', {'lr': 0.05, 'fused': False}, 'cuda:0', 'fp16', False),  # the config decides when it says
    ('SGD', {'lr': 0.05}, 'cuda:0', 'bf16', False),  # no scaler, no read to avoid: the optimizer is left as written
    ('SGD', {'lr': 0.05}, 'cpu', 'fp16', False),
    ('RMSprop', {}, 'cuda:0', 'fp16', False),  # no fused kernel
])
def test_fp16_on_cuda_fuses_the_optimizer(key, kwargs, device, amp, fused):
    config = _config()
    config['train']['optimizer'] = {'key': key, 'kwargs': dict(kwargs)}
    notes = policy.fit_config_to_machine(config, ctx_for(device), cores=2, device_count=1, amp=amp)
    assert config['train']['optimizer']['kwargs'].get('fused', False) is (fused or kwargs.get('fused', False))
    assert any('optimizer.kwargs.fused: True' in note for note in notes) is fused
    if fused:  # torch accepts it (constructing a fused optimizer needs no CUDA tensor until its first step)
        getattr(torch.optim, key)([nn.Parameter(torch.zeros(2))], **config['train']['optimizer']['kwargs'])
