"""Configs written in torchdistill's own vocabulary run through the runner, and the ones it cannot run end in one
line that says why: torchdistill's pre-1.0 dataset layout, a component configured for another torchdistill version
(a key its constructor looks up is missing), a torch hub model without network. The configs are the tests' own
(``tests/configs/torchdistill_vocabulary/``); the split construct is covered in ``test_dataset_splits.py``, stages in
``test_runner_multistage.py`` and auxiliary wrappers in ``test_runner_resume.py``."""
import os

import pytest
import torch
from torch import nn

import runner_support as support
from ttm_torchdistill.run.config.component_errors import explain_box_failure

OLD_LAYOUT = os.path.join(support.CONFIG_DIR, 'torchdistill_vocabulary', 'pre_1_0_layout.yaml')
SPLIT = os.path.join(support.CONFIG_DIR, 'torchdistill_vocabulary', 'random_split_ce.yaml')


@pytest.mark.parametrize('smoke', [[], ['--smoke']], ids=['run', 'smoke'])
def test_the_pre_1_0_dataset_layout_is_named_before_anything_is_built(tmp_path, monkeypatch, capsys, smoke):
    monkeypatch.chdir(tmp_path)
    line = support.cli_error(capsys, ['--config', OLD_LAYOUT, '--device', 'cpu'] + smoke)
    assert line == ("error: datasets.cifar10 is written in torchdistill's pre-1.0 layout (a `splits:` mapping of "
                    "dataset ids with transform_configs), which torchdistill 1.1.5 does not read: write each split as "
                    "its own entry under datasets:, an !import_call of the dataset class with its transform (the "
                    "layout of torchdistill 1.x's sample configs and of this plugin's configs/)")
    assert not os.path.exists('data')  # nothing was downloaded or built


def test_a_key_missing_from_a_components_configuration_names_the_entry_the_class_and_the_key():
    """torchdistill 1.1.5's VariationalDistributor4VID reads regressors.<name>.kwargs; a config written for a later
    release names it regressor_kwargs. The constructor's KeyError becomes one line naming all three."""
    from torchdistill.models.wrapper import VariationalDistributor4VID
    regressors = {'regressor1': {'io': 'output', 'path': 'student_model.layer1',
                                 'regressor_kwargs': {'in_channels': 4, 'middle_channels': 8, 'out_channels': 8}}}
    with pytest.raises(KeyError) as raised:
        VariationalDistributor4VID(nn.Linear(2, 2), regressors, torch.device('cpu'), None, False)
    config = {'train': {'student': {'auxiliary_model_wrapper': {'key': 'VariationalDistributor4VID',
                                                                'kwargs': {'regressors': regressors}}}}}
    message = str(explain_box_failure(raised.value, config))
    assert message == ("train.student.auxiliary_model_wrapper (VariationalDistributor4VID): torchdistill's "
                       "VariationalDistributor4VID looks for the key 'kwargs' in its configuration, which is not "
                       "there; the config may be written for another torchdistill version than this one "
                       "(torchdistill 1.1.5): compare the entry with "
                       "torchdistill.models.wrapper.VariationalDistributor4VID")


def test_a_torch_hub_model_without_network_says_what_to_put_where(tmp_path, monkeypatch, capsys):
    """torch.hub.load offline (faked: CI may or may not reach GitHub) raises torch's own RuntimeError."""
    def offline(repo_or_dir, model, *args, **kwargs):
        raise RuntimeError('It looks like there is no internet connection and the repo could not be found in the '
                           f'cache ({torch.hub.get_dir()})')
    monkeypatch.setattr(torch.hub, 'load', offline)
    monkeypatch.chdir(tmp_path)
    line = support.cli_error(capsys, ['--config', SPLIT, '--smoke', '--set',
                                      'models.model={key: custom_resnet, repo_or_dir: someone/models, kwargs: {}, '
                                      'dst_ckpt: ckpt/x.pt}'])
    folder = os.path.join(torch.hub.get_dir(), 'someone_models_<branch>')
    assert line == (f"error: models.model: model 'custom_resnet' comes from the torch hub repository 'someone/models' "
                    f"(models.model.repo_or_dir), which could not be fetched (It looks like there is no internet "
                    f"connection and the repo could not be found in the cache ({torch.hub.get_dir()})); without "
                    f"network, copy that repository's checkout to {folder} (the hub cache, where torch.hub.load looks "
                    f"first; on a machine with network, python -c \"import torch; torch.hub.list('someone/models')\" "
                    f"fills it), or set models.model.repo_or_dir to a local clone of it and models.model.kwargs.source "
                    f"to 'local'")
