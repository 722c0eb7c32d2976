"""``--resume`` is bitwise with the shipped configs' own loader settings: worker processes, persistent or not.

Driven from outside as a user meets it: the shipped ``wttm/resnet8x4_from_resnet32x4.yaml`` on CIFAR-100 files
generated in torchvision's format (read with the plugin's own-data key), its loaders with 2 worker processes
(``persistent_workers`` as shipped, and off), SIGKILL once the first epoch is saved, then ``--resume``. The students
must equal, bit for bit, an uninterrupted run loading in the main process (``num_workers: 0``): the batches depend on
the run seed only, not on the workers. The teacher is a random ``cifar_resnet8x4`` (the shipped resnet32x4 costs
5x more on a CPU and changes nothing here). The torchrun case is in ``test_runner_exactness.py``.
"""
import os
import threading

import torch

import runner_support as support

CONFIG = os.path.join(support.REPO_ROOT, 'configs', 'cifar100', 'wttm', 'resnet8x4_from_resnet32x4.yaml')
LAST = os.path.join('ckpt', 'student.last.pt')
COMMON = ['--config', CONFIG, '--device', 'cpu', '--seed', '0',
          '--set', 'datasets.*.key=ttm_torchdistill.datasets.CIFAR100Format',
          '--set', 'datasets.*.init.kwargs.root=data',
          '--set', 'models.teacher_model.key=cifar_resnet8x4', '--set', 'models.teacher_model.src_ckpt=teacher.pt',
          '--set', 'models.student_model.dst_ckpt=ckpt/student.pt', '--set', 'train.num_epochs=3']


def _workers(count, persistent):
    return [argument for name in ('train_data_loader', 'val_data_loader')
            for argument in ('--set', f'train.{name}.kwargs.num_workers={count}',
                             '--set', f'train.{name}.kwargs.persistent_workers={persistent}')]


def _folder(root, name):
    folder = str(root / name)
    os.makedirs(folder)
    support.write_tiny_cifar100(os.path.join(folder, 'data'), num_train=128, num_test=32)
    from ttm_torchdistill.models.cifar_resnet import resnet8x4
    torch.manual_seed(1)
    torch.save({'model': resnet8x4(num_classes=100).state_dict()}, os.path.join(folder, 'teacher.pt'))
    return folder


def _kill_after_first_epoch(folder, args):
    support.kill_after_first_checkpoint(folder, args, LAST)
    assert torch.load(os.path.join(folder, LAST), weights_only=False)['epoch'] < 3


def _kill_and_resume(folder, args, results, name):
    try:
        _kill_after_first_epoch(folder, args)
        results[name] = support.run_cli(args + ['--resume'], cwd=folder, timeout=300)
    except BaseException as exc:  # reported by the test thread
        results[name] = exc


def test_resume_with_worker_processes_equals_the_uninterrupted_run(tmp_path):
    reference = _folder(tmp_path, 'main-process')
    runs = {'persistent': _workers(2, True), 'not-persistent': _workers(2, False)}
    folders = {name: _folder(tmp_path, name) for name in runs}
    results = {}
    threads = [threading.Thread(target=_kill_and_resume, args=(folders[name], COMMON + args, results, name))
               for name, args in runs.items()]
    for thread in threads:
        thread.start()
    done = support.run_cli(COMMON + _workers(0, False), cwd=reference, timeout=300)
    for thread in threads:
        thread.join()
    assert done.returncode == 0, done.stderr[-2000:]
    expected = torch.load(os.path.join(reference, LAST), weights_only=False)
    for name, folder in folders.items():
        result = results[name]
        if isinstance(result, BaseException):
            raise result
        assert result.returncode == 0, f'{name}: {result.stderr[-2000:]}'
        assert 'Resuming from ckpt/student.last.pt at epoch' in result.stdout, name
        resumed = torch.load(os.path.join(folder, LAST), weights_only=False)
        assert resumed['epoch'] == expected['epoch'] == 3
        differing = [key for key, value in expected['model'].items() if not torch.equal(value, resumed['model'][key])]
        assert not differing, f'{name}: {len(differing)} tensors differ from the uninterrupted run: {differing[:3]}'
        same = ('epoch', 'lr', 'train_loss', 'val_top1', 'val_top5')
        assert [{k: e[k] for k in same} for e in resumed['history']] == \
            [{k: e[k] for k in same} for e in expected['history']], name

