"""The ``runtime:`` block and its flags: parsing, precedence, errors, and runs with each option on the CPU.

What a GPU would add (fp16 on CUDA, non-blocking copies from pinned memory) is reasoned about in the README; the
fp16 gradient-scaler path is exercised here with CPU float16 autocast, which torch supports.
"""
import os

import pytest
import torch

import runner_support as support
from ttm_torchdistill import cli
from ttm_torchdistill.errors import RunError
from ttm_torchdistill.run.config import runtime as runtime_module
from ttm_torchdistill.run.config.runtime import Runtime, resolve_runtime, split_runtime_overrides

pytestmark = pytest.mark.usefixtures('one_torch_thread')

TINY = os.path.join(support.CONFIG_DIR, 'runner_tiny_kd.yaml')
LAST = os.path.join('ckpt', 'tiny_kd', 'student.last.pt')


def run_ok(capsys, args):
    return support.cli_ok(capsys, args + ['--device', 'cpu', '--seed', '0'])


def run_error(capsys, args):
    return support.cli_error(capsys, args + ['--device', 'cpu'])


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    torch.save({'model': support.TinyBNNet(10, width=16).state_dict()}, 'teacher.pt')
    return tmp_path


# ------------------------------------------------------------------------------------------------ parsing

def test_defaults_and_description():
    assert resolve_runtime(None, {}, {}) == Runtime()
    assert Runtime().describe() == 'runtime: defaults (stock torchdistill path)'
    assert Runtime(device_data=True, amp='bf16').describe() == 'runtime: device_data, amp=bf16'


def test_precedence_file_then_set_then_flags():
    resolved = resolve_runtime({'amp': 'bf16', 'compile': True}, {'amp': 'off', 'channels_last': True},
                               {'compile': False})
    assert resolved == Runtime(amp='off', channels_last=True, compile=False)


def test_yaml_off_is_amp_off():
    assert resolve_runtime({'amp': False}, {}, {}).amp == 'off'  # an unquoted `off` in YAML 1.1 is False


def test_set_runtime_needs_no_block():
    rest, values = split_runtime_overrides(['train.num_epochs=1', 'runtime.amp=bf16', 'runtime.device_data=true'])
    assert rest == ['train.num_epochs=1'] and values == {'amp': 'bf16', 'device_data': True}


@pytest.mark.parametrize('block, set_values, flags, message', [
    ({'amp': 'fp8'}, {}, {}, r"runtime.amp: amp must be one of off, bf16, fp16, got 'fp8'"),
    ({'devcie_data': True}, {}, {}, r"runtime: unknown runtime key 'devcie_data'; expected one of device_data, amp"),
    ({}, {'compile': 'yes'}, {}, r"--set runtime: compile must be true or false, got 'yes'"),
    ('fast', {}, {}, r"runtime: must be a mapping of device_data, amp, .*, got 'fast'"),
    ({}, {}, {'teacher_cache': 'cache/'}, r'runtime.teacher_cache needs runtime.device_data'),
])
def test_bad_runtime_values_are_one_line_errors(block, set_values, flags, message):
    with pytest.raises(RunError, match=message):
        resolve_runtime(block, set_values, flags)


def test_bad_set_runtime_path():
    with pytest.raises(RunError, match=r"expected runtime.KEY=VALUE with KEY one of device_data"):
        split_runtime_overrides(['runtime.amp.x=1'])


def test_fp16_needs_cuda(workdir, capsys):
    line = run_error(capsys, ['--config', TINY, '--amp', 'fp16'])
    assert line == 'error: amp fp16 needs a CUDA device (it trains with a gradient scaler), the run is on cpu; ' \
                   'use --amp bf16'


def test_unknown_runtime_key_in_the_file_is_one_line(workdir, capsys, tmp_path):
    config = tmp_path / 'with_runtime.yaml'
    config.write_text(open(TINY).read() + '\nruntime: {amp: bf16, fast: true}\n')
    line = run_error(capsys, ['--config', str(config)])
    assert "unknown runtime key 'fast'" in line


# ------------------------------------------------------------------------------------------------ runs

def test_bf16_channels_last_run_records_its_runtime(workdir, capsys):
    out = run_ok(capsys, ['--config', TINY, '--set', 'train.num_epochs=1', '--amp', 'bf16', '--channels-last'])
    assert 'Start training (runtime: amp=bf16, channels_last)' in out
    import json
    with open(os.path.join('ckpt', 'tiny_kd', 'student.json')) as fp:
        summary = json.load(fp)
    assert summary['runtime'] == {'device_data': False, 'amp': 'bf16', 'channels_last': True, 'compile': False,
                                  'teacher_cache': None, 'holdout': None, 'holdout_seed': 0}
    state = torch.load(os.path.join('ckpt', 'tiny_kd', 'student.pt'), weights_only=True)['model']
    assert all(value.dtype != torch.bfloat16 for value in state.values())  # weights stay float32 under autocast


def test_validation_runs_as_training_does_and_the_test_in_float32(workdir, capsys, monkeypatch):
    from ttm_torchdistill.run import final_evaluation
    from ttm_torchdistill.run.train import loop
    seen = []
    for where, module in (('validation', loop), ('test', final_evaluation)):
        def recording(model, loader, ctx, runtime, where=where, evaluate=module.evaluate):
            seen.append((where, runtime.amp, runtime.channels_last))
            return evaluate(model, loader, ctx, runtime)
        monkeypatch.setattr(module, 'evaluate', recording)
    run_ok(capsys, ['--config', TINY, '--set', 'train.num_epochs=1', '--amp', 'bf16', '--channels-last'])
    assert seen[0] == ('validation', 'bf16', True)
    assert set(seen[1:]) == {('test', 'off', True)}  # teacher and student, measured as the papers measure them


class AutocastRecorder(torch.nn.Module):
    """Records, for each batch, the autocast dtype it ran under (None when off) and whether it came channels-last."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3 * 2 * 2, 10)
        self.calls = []

    def forward(self, images):
        dtype = torch.get_autocast_dtype('cpu') if torch.is_autocast_enabled('cpu') else None
        self.calls.append((dtype, images.is_contiguous(memory_format=torch.channels_last)))
        return self.linear(images.flatten(1))


@pytest.mark.parametrize('runtime, expected', [
    (Runtime(), (None, False)),
    (Runtime(amp='bf16'), (torch.bfloat16, False)),
    (Runtime(amp='bf16', channels_last=True), (torch.bfloat16, True)),
], ids=['float32', 'bf16', 'bf16-channels-last'])
def test_evaluate_runs_the_model_under_the_runtime(runtime, expected):
    from ttm_torchdistill.run.machine.context import init_distributed
    from ttm_torchdistill.run.train.evaluation import evaluate
    model = AutocastRecorder()
    batches = [(torch.randn(4, 3, 2, 2), torch.randint(0, 10, (4,))) for _ in range(2)]
    top1, top5, seen = evaluate(model, batches, init_distributed('cpu', 1, 'env://'), runtime)
    assert model.calls == [expected, expected] and seen == 8 and 0 <= top1 <= top5 <= 100


def test_fp16_scaler_state_is_saved_and_restored_by_resume(workdir, capsys, monkeypatch):
    """The scaler path (CPU float16 autocast stands in for CUDA): its scale is in the last checkpoint and a
    resumed run starts from it."""
    monkeypatch.setattr(runtime_module, 'check_device', lambda runtime, device_type, data_parallel=False: None)
    import ttm_torchdistill.run.prepare as prepare_module
    monkeypatch.setattr(prepare_module, 'check_device', lambda runtime, device_type, data_parallel=False: None)
    run_ok(capsys, ['--config', TINY, '--set', 'train.num_epochs=2', '--amp', 'fp16'])
    saved = torch.load(LAST, weights_only=False)
    assert saved['scaler'] is not None and saved['scaler']['scale'] > 0
    restored = {}
    original = torch.amp.GradScaler.load_state_dict

    def spy(self, state):
        restored.update(state)
        return original(self, state)
    monkeypatch.setattr(torch.amp.GradScaler, 'load_state_dict', spy)
    run_ok(capsys, ['--config', TINY, '--set', 'train.num_epochs=3', '--amp', 'fp16', '--resume'])
    assert restored['scale'] == saved['scaler']['scale']


def test_compiled_models_train_and_save_plain_keys(workdir, capsys):
    out = run_ok(capsys, ['--config', TINY, '--set', 'train.num_epochs=1', '--compile'])
    assert 'runtime: compile' in out
    state = torch.load(os.path.join('ckpt', 'tiny_kd', 'student.pt'), weights_only=True)['model']
    assert not any(key.startswith('_orig_mod.') for key in state)
    assert set(state) == set(support.TinyBNNet(10, width=8).state_dict())


def test_checkpoint_of_a_compiled_wrapper_loads_into_the_plain_model(tmp_path):
    """A checkpoint saved from ``torch.compile(model)`` (keys prefixed ``_orig_mod.``) loads either way."""
    import logging
    from ttm_torchdistill.run.model_loading.weights import load_weights
    model = support.TinyBNNet(10, width=4)
    path = str(tmp_path / 'compiled.pt')
    torch.save({'model': {f'_orig_mod.{k}': v for k, v in model.state_dict().items()}}, path)
    target = support.TinyBNNet(10, width=4)
    assert load_weights(target, path, 'models.student_model.src_ckpt', logging.getLogger('test'))
    for key, value in model.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


# ------------------------------------------------------------------------------------------------ stock path details

def test_distributed_sampler_gets_each_epoch():
    """The pre-epoch process hands every epoch to a DistributedSampler (a new shuffle each epoch, as torch wants)."""
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
    from ttm_torchdistill.processes import eval_teacher_and_set_loss_epoch

    class Box:
        distributed = True
        teacher_io_dict, student_io_dict = {}, {}
        student_model, teacher_model = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
        criterion = torch.nn.MSELoss()
        train_data_loader = DataLoader(TensorDataset(torch.zeros(8, 1)), batch_size=2,
                                       sampler=DistributedSampler(TensorDataset(torch.zeros(8, 1)), num_replicas=2,
                                                                  rank=0))
    box = Box()
    for epoch in (0, 1, 5):
        eval_teacher_and_set_loss_epoch(box, epoch=epoch)
        assert box.train_data_loader.sampler.epoch == epoch
    assert not box.teacher_model.training


@pytest.mark.parametrize('flag, expected', [([], True), (['-disable_cudnn_benchmark'], False)])
def test_cudnn_benchmark_is_on_while_training_unless_disabled(workdir, capsys, monkeypatch, flag, expected):
    from ttm_torchdistill.run import runner
    seen = []
    original = runner.train

    def spy(*args, **kwargs):
        seen.append(torch.backends.cudnn.benchmark)
        return original(*args, **kwargs)
    monkeypatch.setattr(runner, 'train', spy)
    run_ok(capsys, ['--config', TINY, '--set', 'train.num_epochs=1'] + flag)
    assert seen == [expected]


def test_batches_are_copied_without_blocking_only_to_cuda():
    """non_blocking copies overlap with compute from pinned host memory on CUDA; on the CPU they are plain copies."""
    from ttm_torchdistill.run.machine.context import DistContext
    from ttm_torchdistill.run.train.step import TrainStep
    cpu = TrainStep(None, DistContext(False, 0, 1, torch.device('cpu'), None), Runtime(), None)
    cuda = TrainStep(None, DistContext(False, 0, 1, torch.device('cuda', 0), None), Runtime(), None)
    assert (cpu.non_blocking, cuda.non_blocking) == (False, True)


def test_fp16_run_whose_every_step_is_skipped_stops(workdir, capsys, monkeypatch):
    """A NaN loss from the 3rd step on: the scaler skips every update, so the run stops once 24 steps in a row (and
    a whole log_freq window) were skipped, instead of ending "successfully" (CPU float16 stands in for CUDA)."""
    monkeypatch.setattr(runtime_module, 'check_device', lambda runtime, device_type, data_parallel=False: None)
    import ttm_torchdistill.run.prepare as prepare_module
    monkeypatch.setattr(prepare_module, 'check_device', lambda runtime, device_type, data_parallel=False: None)
    # 4 steps per epoch, read every 2: epoch 1 skips steps 3-4, epochs 2-6 skip 20 more, epoch 7 reaches 24 at step 2
    code = cli.main(['--config', TINY, '--device', 'cpu', '--seed', '0', '--amp', 'fp16', '--set', 'train.num_epochs=9',
                     '--set', 'models.student_model.key=test_runner_nan_net',
                     '--set', 'models.student_model.kwargs={num_classes: 10, nan_from_call: 3}'])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.strip() == (
        'error: amp fp16: the gradient scaler skipped the last 24 steps in a row, up to epoch 7 step 2 of 4 (inf or '
        'nan gradients at every scale: nothing is learned); nothing of this epoch was saved; last good checkpoint: '
        'ckpt/tiny_kd/student.last.pt; try --amp bf16 or float32')
    assert 'skipped steps 2' in captured.out  # the progress line counts the skipped updates meanwhile


def test_fp16_scaler_skips_are_seen_without_reading_the_device():
    """scaled_post_forward reports a skipped update as a device tensor (the scaler lowers its scale exactly then)."""
    from ttm_torchdistill.run.train.step import scaled_post_forward

    class Box:
        stage_grad_count, grad_accum_step, max_grad_norm, lr_scheduler, scheduling_step = 0, 1, None, None, 0

    model = torch.nn.Linear(3, 2)
    box = Box()
    box.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler('cpu')
    finite = model(torch.ones(1, 3)).sum()
    first = scaled_post_forward(box, finite, scaler)
    assert first.dtype == torch.bool and first.device.type == 'cpu' and not first
    skipped = scaled_post_forward(box, model(torch.ones(1, 3)).sum() * float('inf'), scaler)
    assert skipped


def test_compiled_models_keep_one_static_graph_per_batch_size():
    """A last partial batch would otherwise send every later batch through a graph with a symbolic batch size."""
    from ttm_torchdistill.run.train.step import mark_batch_static

    def run(mark):
        torch._dynamo.reset()
        graphs = []

        def recording_backend(graph_module, example_inputs):
            graphs.append(['symbolic' if not isinstance(x, torch.Tensor) else tuple(x.shape) for x in example_inputs])
            return graph_module.forward
        compiled = torch.compile(support.TinyLinearNet(10, in_features=12), backend=recording_backend)
        for batch in (4, 4, 3, 4, 3):  # full batches, the epoch's last partial one, the next epoch
            images = torch.randn(batch, 3, 2, 2)
            compiled(mark_batch_static(images) if mark else images)
        return graphs
    assert [graph[0] for graph in run(mark=True)] == [(4, 3, 2, 2), (3, 3, 2, 2)]
    assert run(mark=False)[1][0] == 'symbolic'  # what the marking prevents


def test_distributed_student_is_compiled_inside_ddp_not_before(tmp_path):
    """torch compiles the DDP wrapper (so the gradient all-reduce can overlap the compiled backward), not the module
    inside it; one gloo process stands in for a torchrun rank."""
    from torch import distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from ttm_torchdistill.run.train import box as training_box
    from ttm_torchdistill.run.machine.context import DistContext
    from ttm_torchdistill.run.config.runtime import Runtime, apply_model_runtime
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0, world_size=1)
    try:
        ctx = DistContext(True, 0, 1, torch.device('cpu'), None)
        runtime = Runtime(compile=True)
        student = support.TinyLinearNet(10)
        apply_model_runtime(student, runtime, compile_now=not ctx.distributed)

        class Box:
            pass
        box = Box()
        box.student_model = student
        training_box.wrap_student(box, ctx, runtime)
        assert isinstance(box.student_model, DistributedDataParallel) and box.student_model.module is student
        assert box.student_model._compiled_call_impl is not None and student._compiled_call_impl is None
        training_box.wrap_student(box, ctx, runtime)  # after a stage change: already wrapped and compiled
        assert box.student_model.module is student
    finally:
        dist.destroy_process_group()
