"""The signature check behind every component message: which arguments a registered class accepts."""
import pytest
import torchvision.models
from torch import nn
from torchdistill.losses.mid_level import SimpleLossWrapper
from torchdistill.models.registry import MODEL_DICT

from ttm_torchdistill.errors import RunError
from ttm_torchdistill.losses import ATKDLoss, WTTMLoss
from ttm_torchdistill.run.config import component_errors
from ttm_torchdistill.checks.signatures import accepted_arguments, argument_problem

PATHS = ['student_module_path', 'student_module_io', 'teacher_module_path', 'teacher_module_io']


def test_plugin_adapters_include_their_private_base_arguments():
    accepted = accepted_arguments(WTTMLoss)
    assert accepted.names == ['temperature', 'teacher_only_max'] + PATHS
    assert accepted.required == ['temperature'] and not accepted.open
    accepted = accepted_arguments(ATKDLoss)
    assert accepted.names == ['temperature', 'standardize', 'teacher_only_max'] + PATHS and accepted.required == []


def test_other_packages_kwargs_are_open_because_bodies_may_read_them():
    # SimpleLossWrapper(low_level_loss, **kwargs) reads kwargs['input']: no name may be called unknown.
    accepted = accepted_arguments(SimpleLossWrapper, positional=1)
    assert accepted.names == [] and accepted.open
    assert argument_problem('SimpleLossWrapper', accepted, {'input': {}, 'target': {}}) is None
    assert accepted_arguments(torchvision.models.resnet18).open


def test_closed_signatures_and_positional_and_implicit_arguments():
    accepted = accepted_arguments(nn.CrossEntropyLoss)
    assert 'label_smoothing' in accepted.names and not accepted.open
    assert accepted_arguments(MODEL_DICT['cifar_resnet8']).names == ['num_classes']
    sgd = accepted_arguments(__import__('torch').optim.SGD, positional=1)
    assert 'params' not in sgd.names and 'momentum' in sgd.names

    class Aux(nn.Module):
        def __init__(self, student_model, device, scale=1.0):
            super().__init__()
    assert accepted_arguments(Aux, implicit=('student_model', 'device')).names == ['scale']


def test_problem_text_names_unknown_missing_and_valid():
    accepted = accepted_arguments(WTTMLoss)
    text = argument_problem('WTTMLoss', accepted, {'temprature': 4.0})
    assert text.startswith("WTTMLoss has no argument 'temprature' (did you mean 'temperature'?); WTTMLoss accepts: ")
    text = argument_problem('WTTMLoss', accepted, {'student_module_path': '.'})
    assert "WTTMLoss needs 'temperature', which is not given" in text
    assert argument_problem('WTTMLoss', accepted, {'temperature': 4.0, 'teacher_module_io': 'output'}) is None


def test_components_of_a_multi_stage_config_and_kwargs_that_are_not_a_mapping():
    config = {'models': {'student_model': {'key': 'cifar_resnet8', 'kwargs': {'num_classes': 100}}},
              'train': {'stage1': {'optimizer': {'key': 'SGD', 'kwargs': {'lr': 0.1}}},
                        'stage2': {'optimizer': {'key': 'SGD', 'kwargs': [0.1]}}}}
    wheres = [c.where for c in component_errors.iter_components(config)]
    assert wheres == ['models.student_model', 'train.stage1.optimizer', 'train.stage2.optimizer']
    with pytest.raises(RunError, match=r'^train\.stage2\.optimizer\.kwargs must be a mapping of argument names to '
                                       r'values for optimizer \'SGD\', got list \[0\.1\]$'):
        component_errors.check_components(config)


def test_model_failure_fallback_names_the_key_not_a_private_class():
    from ttm_torchdistill.run.model_loading.build import explain_model_failure
    error = explain_model_failure(
        TypeError("_Private.__init__() got an unexpected keyword argument 'x'"), 'models.student_model', 'net',
        None, {'x': 1})
    assert str(error) == ("cannot build model 'net' from models.student_model.kwargs={'x': 1}: TypeError: net got an "
                          "unexpected keyword argument 'x'")
