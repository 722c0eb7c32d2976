"""Model zoo tests, driven by torchdistill's model registry (a newly registered ``cifar_*`` key is tested here
without writing a new test) and checked against the golden file computed with RepDistiller's own code.

The golden file (``cifar_models.json``) is found by ``conftest.load_reference`` and only read.
"""
import inspect
import json
import math
import subprocess
import sys

import pytest
import torch
import torchvision

import ttm_torchdistill  # noqa: F401  (registers the models)
from conftest import load_reference
from torchdistill.models.registry import MODEL_DICT

GOLDEN = load_reference('cifar_models.json')
GOLDEN_MODELS = GOLDEN['models']

CIFAR_KEYS = sorted(key for key in MODEL_DICT if key.startswith('cifar_'))
PLUGIN_KEYS = sorted(key for key, obj in MODEL_DICT.items()
                     if getattr(obj, '__module__', '').startswith('ttm_torchdistill.'))


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _golden(key):
    return GOLDEN_MODELS[key[len('cifar_'):]]


def _golden_layout(key):
    """A state_dict of zeros with the golden keys and shapes (BatchNorm counters as integers)."""
    return {name: torch.zeros(shape, dtype=torch.long if name.endswith('num_batches_tracked') else torch.float32)
            for name, shape in _golden(key)['state_dict'].items()}


def _fill(state_dict):
    """The deterministic fill rule, written as the golden file's ``about`` field states it."""
    generator = torch.Generator().manual_seed(0)
    filled = {}
    for name in sorted(state_dict):
        tensor = state_dict[name]
        shape = tensor.shape
        if not tensor.is_floating_point():
            filled[name] = tensor
        elif name.endswith('running_var'):
            filled[name] = 0.5 + torch.rand(shape, generator=generator)
        elif name.endswith('running_mean'):
            filled[name] = 0.1 * torch.randn(shape, generator=generator)
        elif tensor.dim() >= 2:
            fan_in = tensor.numel() // shape[0]
            filled[name] = torch.randn(shape, generator=generator) * math.sqrt(1.0 / fan_in)
        elif name.endswith('weight'):
            filled[name] = 0.5 + 0.1 * torch.randn(shape, generator=generator)
        else:
            filled[name] = 0.1 * torch.randn(shape, generator=generator)
    return filled


def test_fill_rule_is_the_one_the_golden_file_states():
    about = GOLDEN['about']
    for phrase in ('one torch.Generator seeded 0', 'keys in sorted order', 'running_var = 0.5 + rand',
                   'running_mean = 0.1*randn', 'randn * sqrt(1/fan_in) with fan_in = numel // shape[0]',
                   'weight = 0.5 + 0.1*randn', 'the rest = 0.1*randn',
                   'torch.linspace(-1, 1, 2*3*32*32).reshape(2, 3, 32, 32)'):
        assert phrase in about, phrase


def test_registered_cifar_keys_are_exactly_the_golden_architectures():
    assert len(GOLDEN_MODELS) == 22
    assert set(CIFAR_KEYS) == {'cifar_' + name for name in GOLDEN_MODELS}


@pytest.mark.parametrize('key', PLUGIN_KEYS)
def test_constructor_takes_only_num_classes(key):
    parameters = inspect.signature(MODEL_DICT[key]).parameters
    assert list(parameters) == ['num_classes']
    assert parameters['num_classes'].default == (1000 if key == 'mobilenet_v1' else 100)


@pytest.mark.parametrize('key', CIFAR_KEYS)
def test_train_step_shapes_and_gradients(key):
    torch.manual_seed(0)
    model = MODEL_DICT[key]().train()
    logits = model(torch.randn(2, 3, 32, 32))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 100)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 99])).backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f'parameters without gradient: {no_grad[:5]}'
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == _golden(key)['num_params']


@pytest.mark.parametrize('key', CIFAR_KEYS)
def test_golden_layout_loads_strictly_and_filled_logits_match(key):
    model = MODEL_DICT[key]()
    model.load_state_dict(_golden_layout(key), strict=True)
    model.load_state_dict(_fill(_golden_layout(key)), strict=True)
    x = torch.linspace(-1, 1, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32)
    with torch.no_grad():
        logits = model.eval()(x)
    expected = torch.tensor(_golden(key)['output_after_fill'])
    assert list(logits.shape) == _golden(key)['output_shape'] == [2, 100]
    torch.testing.assert_close(logits, expected, rtol=0.0, atol=1e-4)


@pytest.mark.parametrize('key', ['cifar_resnet8', 'cifar_wrn_16_1', 'cifar_ShuffleV2'])
def test_num_classes_sets_the_output_width(key):
    with torch.no_grad():
        assert MODEL_DICT[key](num_classes=10).eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_misspelt_constructor_argument_is_rejected():
    with pytest.raises(TypeError, match='num_class'):
        MODEL_DICT['cifar_resnet8'](num_class=10)


def test_features_are_reachable_by_repdistiller_module_paths_with_forward_hooks():
    from torchdistill.core.forward_hook import ForwardHookManager
    model = MODEL_DICT['cifar_resnet8x4']().eval()
    manager = ForwardHookManager(torch.device('cpu'))
    manager.add_hook(model, 'layer3', requires_input=False, requires_output=True)
    manager.add_hook(model, 'fc', requires_input=True, requires_output=False)
    with torch.no_grad():
        model(torch.zeros(2, 3, 32, 32))
    io_dict = manager.pop_io_dict()
    assert io_dict['layer3']['output'].shape == (2, 256, 8, 8)
    assert io_dict['fc']['input'].shape == (2, 256)


def _mobilenet_v1_parameter_count_from_the_paper(num_classes=1000):
    """Count of Howard et al. (2017) Table 1, width 1.0, plus the BatchNorm scale and shift after every conv."""
    stem = 3 * 3 * 3 * 32 + 2 * 32
    widths = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    separable = sum(9 * c_in + 2 * c_in + c_in * c_out + 2 * c_out for c_in, c_out in zip(widths, widths[1:]))
    return stem + separable + 1024 * num_classes + num_classes


def test_mobilenet_v1_imagenet_shapes_and_parameter_count():
    # The count is derived from the paper's layer table (not from the model), and must be its "4.2 million".
    expected = _mobilenet_v1_parameter_count_from_the_paper()
    assert expected == 4231976 and round(expected / 1e6, 1) == 4.2
    model = MODEL_DICT['mobilenet_v1']().eval()
    assert sum(p.numel() for p in model.parameters()) == expected
    state = model.state_dict()
    # The layout of the DIST code's mobilenet_v1, so its checkpoints load by name.
    assert state['model.0.0.weight'].shape == (32, 3, 3, 3)
    assert state['model.13.0.weight'].shape == (1024, 1, 3, 3)
    assert state['model.13.3.weight'].shape == (1024, 1024, 1, 1)
    assert state['fc.weight'].shape == (1000, 1024)
    torch.manual_seed(0)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, 1000) and torch.isfinite(logits).all()


def _torchdistill_builtin_keys():
    """Model-like keys torchdistill itself registers, read in a fresh interpreter without this plugin."""
    code = ('import json, torchdistill.core, torchdistill.losses, torchdistill.models\n'
            'from torchdistill.models import registry as r\n'
            'print(json.dumps(sorted(set(r.MODEL_DICT) | set(r.ADAPTATION_MODULE_DICT)'
            ' | set(r.AUXILIARY_MODEL_WRAPPER_DICT))))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_no_plugin_model_key_shadows_torchvision_or_torchdistill():
    from torchdistill.models.official import OFFICIAL_MODEL_DICT
    assert set(PLUGIN_KEYS) == {'cifar_' + name for name in GOLDEN_MODELS} | {'mobilenet_v1'}
    builtin = _torchdistill_builtin_keys()
    assert {'resnet20', 'resnet56', 'wide_resnet40_4'} <= builtin  # the probe does see torchdistill's keys
    assert not set(PLUGIN_KEYS) & builtin
    # torchdistill's runner resolves torchvision names (classification, detection, segmentation) first.
    assert not set(PLUGIN_KEYS) & set(OFFICIAL_MODEL_DICT)
    assert not set(PLUGIN_KEYS) & set(torchvision.models.list_models())


@pytest.mark.parametrize('quantized', [False, True])
def test_runner_lookup_order_reaches_the_plugin_models(quantized):
    # torchdistill's image-classification runner asks torchvision first and falls back to the registry.
    from torchdistill.models.official import get_image_classification_model
    from torchdistill.models.registry import get_model
    for key in PLUGIN_KEYS:
        assert get_image_classification_model({'key': key, 'kwargs': {}, 'quantized': quantized}) is None, key
    assert type(get_model('cifar_resnet8', num_classes=10)).__module__ == 'ttm_torchdistill.models.cifar_resnet'
