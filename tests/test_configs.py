"""The experiment configs: they parse offline, name the plugin, resolve every model and loss key, carry the papers'
hyperparameters and numbers, and pass the runner's ``--smoke`` check.

The shipped configs are generated from the experiment table (ttm_torchdistill/config_generator/); the tests check those
files against the generator and the rows, and a spot-check list typed from the papers against the papers. A config
whose first line does not say the generator wrote it there is a user's own (docs/configs.md): it is welcome anywhere
under configs/, and checked for what holds for every config (tests/config_checks.py), its keys resolving and
``--smoke``, not against a row. The folder checked is configs/ of the repository, or the one named by
$TTM_CONFIGS_ROOT (tests/test_user_configs.py runs these tests on copies of the tree).
"""
import copy
import dataclasses
import functools
import inspect
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
import yaml
from torch.utils.data import Dataset
from torchdistill.common import main_util, yaml_util

import config_checks
from ttm_torchdistill.config_generator import EXPERIMENTS, Experiment, generate
from ttm_torchdistill.config_generator.render import COMMAND, EDIT_THE_ROW, GENERATED_AS, render
from ttm_torchdistill.config_generator.table import repdistiller_recipe, torchdistill_imagenet_recipe

# --------------------------------------------------------------------------------------------------------------
# Loading the shipped experiment YAMLs offline.
#
# torchdistill's ``load_yaml_file`` executes every ``!import_call`` while parsing, and the datasets block of
# an experiment builds torchvision's CIFAR100 with ``download=True`` (or an ImageFolder over a tree that is
# not here). The tests therefore load configs in two ways, neither of which touches the network or the disk:
#
# * :func:`load_with_torchdistill` runs torchdistill's own loader and constructors, but a dataset class met
#   by ``!import_call`` is not instantiated: its keyword arguments are bound to the class's signature (so a
#   misspelt argument still fails) and a :class:`DatasetCall` stands in for the dataset. Everything else
#   (transforms, samplers, torchvision weight enums) is built for real.
# * :func:`load_recorded` keeps every custom tag as a :class:`Tagged` value, so two datasets blocks can be
#   compared as written, and the tests can see which tags a file uses.
# --------------------------------------------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[1]
#: The configs folder under test: $TTM_CONFIGS_ROOT (e.g. a copy of configs/ with files of one's own), else configs/.
CONFIG_ROOT = Path(os.environ.get('TTM_CONFIGS_ROOT') or REPO_ROOT / 'configs').resolve()
if not CONFIG_ROOT.is_dir():
    raise FileNotFoundError(f'TTM_CONFIGS_ROOT={CONFIG_ROOT} is not a folder; expected the configs folder to check '
                            f'(configs/ of the repository, or a copy of it with your own files)')
#: How the advice of a failing test names the generator: for this very folder, so that running it fixes it.
GENERATE = (COMMAND if CONFIG_ROOT == (REPO_ROOT / 'configs').resolve() else
            f'{COMMAND} --out {shlex.quote(str(CONFIG_ROOT))}')


def config_paths():
    """Every experiment YAML of the folder under test (not the study files of studies/), sorted, as paths below
    it (``cifar100/wttm/x.yaml``)."""
    return [Path(relative) for relative in generate.config_files(CONFIG_ROOT)]


def experiment_name(path: Path) -> str:
    """The run-summary ``experiment`` of a config: its path below configs/ without ``.yaml``."""
    return Path(path).with_suffix('').as_posix()


@dataclasses.dataclass(frozen=True)
class DatasetCall:
    """What ``!import_call`` would have built for a dataset: the class and its keyword arguments."""
    cls: type
    kwargs: Any


def _import_call_without_datasets(key, package=None, init=None, **kwargs):
    obj = main_util.import_get(key, package)
    if inspect.isclass(obj) and issubclass(obj, Dataset):
        init = init or dict()
        args, call_kwargs = init.get('args', list()), init.get('kwargs', dict())
        inspect.signature(obj).bind(*args, **call_kwargs)
        return DatasetCall(obj, call_kwargs)
    return main_util.import_call(key, package=package, init=init, **kwargs)


def load_with_torchdistill(path, monkeypatch):
    """Load ``path`` with torchdistill 1.1.5's loader, datasets bound but not built (see above)."""
    monkeypatch.setattr(yaml_util, 'import_call', _import_call_without_datasets)
    return yaml_util.load_yaml_file(str(CONFIG_ROOT / path))


def torchdistill_tags(tmp_dir):
    """The custom tags torchdistill's loader understands (it registers them on ``yaml.FullLoader`` when used)."""
    probe = Path(tmp_dir) / 'empty.yaml'
    probe.write_text('{}\n')
    yaml_util.load_yaml_file(str(probe))
    return {tag for tag in yaml.FullLoader.yaml_constructors if isinstance(tag, str) and tag.startswith('!')}


@dataclasses.dataclass(frozen=True)
class Tagged:
    """A custom-tagged YAML node kept as written: the tag and its (recursively loaded) value."""
    tag: str
    value: Any


class RecordingLoader(getattr(yaml, 'CFullLoader', yaml.FullLoader)):
    """``yaml.FullLoader`` that records torchdistill's custom tags instead of executing them."""


def _record_mapping(loader, tag_suffix, node):
    if isinstance(node, yaml.MappingNode):
        return Tagged('!' + tag_suffix, _freeze(loader.construct_mapping(node, deep=True)))
    if isinstance(node, yaml.SequenceNode):
        return Tagged('!' + tag_suffix, tuple(loader.construct_sequence(node, deep=True)))
    return Tagged('!' + tag_suffix, loader.construct_scalar(node))


def _freeze(mapping):
    # Tagged is hashable/comparable; keep mappings as sorted tuples of items inside it.
    return tuple(sorted(mapping.items(), key=lambda kv: str(kv[0])))


# An own copy of the constructor table without custom tags: torchdistill registers its constructors on
# yaml.FullLoader, and a subclass would otherwise inherit (and execute) them once torchdistill has loaded a file.
RecordingLoader.yaml_constructors = {
    tag: constructor for tag, constructor in RecordingLoader.yaml_constructors.items()
    if not (isinstance(tag, str) and tag.startswith('!'))}
RecordingLoader.add_multi_constructor('!', _record_mapping)


@functools.lru_cache(maxsize=None)
def _load_recorded_text(path):
    with open(CONFIG_ROOT / path) as f:
        return yaml.load(f, Loader=RecordingLoader)


def load_recorded(path):
    """Load ``path`` keeping every ``!tag`` as a :class:`Tagged` value (nothing is imported or called).

    Parsed once per file (collection needs every config several times); callers get a deep copy.
    """
    return copy.deepcopy(_load_recorded_text(Path(path)))


def tags_used(node):
    """All tags used anywhere in a recorded config."""
    found = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Tagged):
            found.add(item.tag)
            stack.append(item.value)
        elif isinstance(item, dict):
            stack.extend(item.values())
            stack.extend(item.keys())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return found


# --------------------------------------------------------------------------------------------------------------
# The experiment table (ttm_torchdistill.config_generator) is the one source of the configs. The tests read its rows
# and check that (1) the shipped files are exactly what the generator writes from them, (2) each file means what
# its row says (criterion terms, recipe, reference block), and (3) a spot-check list of numbers typed here from
# the papers (each entry names its table) is carried by the configs, so a wrong number in the table cannot pass by
# agreeing with itself.
# --------------------------------------------------------------------------------------------------------------
ROWS = {f'{exp.name}.yaml': exp for exp in EXPERIMENTS}  # by the path below configs/ the row writes
ROW_IDS = [exp.name for exp in EXPERIMENTS]
CIFAR_SMALL_LR_STUDENTS = {'MobileNetV2', 'ShuffleV1', 'ShuffleV2'}  # lr 0.01 in RepDistiller/TTM/DIST/ATKD
IO = dict(student_module_path='.', student_module_io='output', teacher_module_path='.', teacher_module_io='output')


def row(path) -> Experiment:
    """The table row that generates ``path`` (only asked of the generator's files, :data:`GENERATED`)."""
    exp = ROWS.get(Path(path).as_posix())
    if exp is None:
        pytest.fail(f'{path}: a row-based check asked for its row, but no row of the table writes this path; the '
                    f'row-based tests take GENERATED (the generator\'s files) only: fix the test', pytrace=False)
    return exp


def describe(path):
    """(dataset, method, student, teacher, variant) of a config, from its row."""
    exp = row(path)
    return exp.dataset, exp.method, exp.student.name, exp.teacher and exp.teacher.name, exp.variant


def expected_terms(exp: Experiment):
    """{sub-term name: (loss key, kwargs, weight)} that a row's hyperparameters mean for torchdistill.

    For TTM/WTTM the expected kwargs hold ``gamma`` (the paper's symbol) instead of ``temperature``. A new method
    needs its meaning spelt out here once; its rows are then checked without further tests.
    """
    h = {name: param.value for name, param in exp.hyper.items()}
    ce = {'ce': ('CrossEntropyLoss', {'reduction': 'mean'}, h.get('ce_weight'))}
    if exp.method == 'ce':
        return ce
    if exp.method in ('ttm', 'wttm'):
        return {**ce, exp.method: (exp.method.upper() + 'Loss', {'gamma': h['gamma'], **IO}, h['beta'])}
    if exp.method == 'dist':  # tau^2 inside the loss, the DIST weight outside
        return {**ce, 'dist': ('ATDISTLoss', {'beta': h['beta'], 'gamma': h['gamma'],
                                              'temperature': h['temperature'], **IO}, h['weight'])}
    if exp.method == 'kd':  # torchdistill's KDLoss: alpha * CE + beta * T^2 KL inside one term
        return {'kd': ('KDLoss', {'temperature': h['temperature'], 'alpha': h['alpha'], 'beta': h['beta'],
                                  'reduction': 'batchmean', **IO}, 1.0)}
    if exp.method == 'atkd':
        return {**ce, 'atkd': ('ATKDLoss', {'temperature': h['temperature'], 'standardize': h['standardize'], **IO},
                               h['weight'])}
    if exp.method in ('mlkd', 'mlkd_at'):  # the authors' gamma on CE of each view, beta on the MLKD sum
        ce_view = ('CrossEntropyLoss', {'reduction': 'mean'}, h['ce_weight'])
        return {'ce_weak': ce_view, 'ce_strong': ce_view,
                'mlkd': ('MLKDLoss', {'temperature': h['temperature'], 'standardize': h['standardize'],
                                      'code_faithful': h['code_faithful']}, h['weight'])}
    if exp.method in ('dkd', 'dkd_at'):  # DKD's weights live inside the loss
        return {**ce, 'dkd': ('DKDLoss', {'alpha': h['alpha'], 'beta': h['beta'], 'temperature': h['temperature'],
                                          'standardize': h['standardize'], 'warmup_epochs': h['warmup_epochs'],
                                          **IO}, 1.0)}
    if exp.method in ('wttm_crd', 'wttm_itrd'):  # TTM Appendix A.5: CE + beta WTTM + mu L_feature
        wttm = {'wttm': ('WTTMLoss', {'gamma': h['gamma'], **IO}, h['beta'])}
        if exp.method == 'wttm_crd':  # torchdistill's CRDLoss on the heads' outputs, memory = training set
            return {**ce, **wttm, 'crd': ('CRDLoss', {
                'teacher_norm_module_path': 'embed', 'student_norm_module_path': 'embed',
                'student_empty_module_path': 'supp', 'input_size': h['feat_dim'], 'output_size': h['n_data'],
                'num_negative_samples': h['nce_k'], 'num_samples': h['n_data'], 'temperature': h['nce_t'],
                'momentum': h['nce_m'], 'eps': h['nce_eps']}, h['mu'])}
        return {**ce, **wttm, 'itrd': ('ITRDLoss', {
            'lambda_corr': h['lambda_corr'], 'lambda_mutual': h['lambda_mutual'], 'alpha_it': h['alpha_it'],
            'eps': h['itrd_eps'], 'student_embed_module_path': 'embed', 'student_module_path': 'features',
            'teacher_module_path': exp.teacher.features[0], 'teacher_module_io': 'input'}, h['mu'])}
    raise AssertionError(f'{exp.name}: method {exp.method!r} has no expected criterion in expected_terms()')


# Numbers typed from the papers (TTM: Zheng & Yang, ICLR 2024; DIST: Huang et al., NeurIPS 2022; ATKD's README), and
# from the authors' configs and logs (mdistiller, MLKD, the
# logit-standardisation fork), not from the table: (experiment, what, value, where).
# ``what`` is 'top1' (reference block), 'gamma' (1/temperature of the TTM/WTTM term), 'beta' (its weight),
# 'lr', or '<term>.weight' / '<term>.<kwarg>' of the criterion.
SPOT_CHECKS = [
    ('cifar100/ttm/vgg8_from_vgg13', 'gamma', 0.1, 'TTM Table 8, confirmed by the TTM README'),
    ('cifar100/ttm/vgg8_from_vgg13', 'beta', 45, 'TTM Table 8, confirmed by the TTM README'),
    ('cifar100/ttm/vgg8_from_vgg13', 'top1', 74.33, 'TTM Table 1'),
    ('cifar100/wttm/wrn_16_2_from_wrn_40_2', 'beta', 4, 'TTM Table 8'),
    ('cifar100/wttm/wrn_16_2_from_wrn_40_2', 'top1', 76.37, 'TTM Table 1'),
    ('cifar100/wttm/resnet20_from_resnet56', 'gamma', 0.3, 'TTM Table 8'),
    ('cifar100/wttm/ShuffleV2_from_resnet32x4', 'gamma', 0.4, 'TTM Table 9'),
    ('cifar100/wttm/ShuffleV2_from_resnet32x4', 'beta', 16, 'TTM Table 9'),
    ('cifar100/ttm/vgg8_from_ResNet50', 'beta', 70, 'TTM Table 9'),
    ('cifar100/ttm/vgg8_from_ResNet50', 'top1', 74.87, 'TTM Table 3'),
    ('cifar100/kd/resnet8x4_from_resnet32x4', 'top1', 73.33, 'TTM Table 1, KD row'),
    ('cifar100/dist/wrn_40_1_from_wrn_40_2', 'top1', 74.73, 'TTM Table 1, DIST row'),
    ('cifar100/dist/ShuffleV1_from_resnet32x4', 'dist.temperature', 4.0, 'DIST dist_cifar.yaml (tau 4)'),
    ('cifar100/dist/ShuffleV1_from_resnet32x4', 'dist.weight', 2.0, 'DIST dist_cifar.yaml (kd_loss_weight 2)'),
    ('cifar100/dkd/resnet8x4_from_resnet32x4', 'top1', 76.32, 'TTM Table 1, DKD row'),
    ('cifar100/atkd/resnet8x4_from_resnet32x4', 'atkd.weight', 9.0, 'ATKD README (-b 9)'),
    ('cifar100/atkd/resnet8x4_from_resnet32x4', 'ce.weight', 0.1, 'ATKD README (-r 0.1)'),
    ('cifar100/ce/MobileNetV2', 'top1', 64.60, 'TTM Table 3, student row'),
    ('cifar100/ce/MobileNetV2', 'lr', 0.01, 'RepDistiller lr for MobileNetV2'),
    ('cifar100/ce/resnet32x4', 'top1', 79.42, 'TTM Table 1, teacher row'),
    ('ilsvrc2012/wttm/resnet18_from_resnet34', 'gamma', 0.8, 'TTM Table 10'),
    ('ilsvrc2012/wttm/resnet18_from_resnet34', 'top1', 72.19, 'TTM Table 5'),
    ('ilsvrc2012/wttm/mobilenet_v1_from_resnet50', 'beta', 3.5, 'TTM Table 10'),
    ('ilsvrc2012/dist/resnet18_from_resnet34', 'top1', 72.07, 'DIST README B1 (TTM Table 5)'),
    ('ilsvrc2012/kd/resnet18_from_resnet34', 'top1', 71.21, 'TTM Table 7'),
    ('cifar100/wttm_crd/vgg8_from_vgg13', 'gamma', 0.2, 'TTM Table 8, confirmed by the TTM README'),
    ('cifar100/wttm_crd/vgg8_from_vgg13', 'beta', 4, 'TTM Table 8, confirmed by the TTM README'),
    ('cifar100/wttm_crd/vgg8_from_vgg13', 'top1', 74.71, 'TTM Table 1/11, WTTM+CRD row'),
    ('cifar100/wttm_crd/vgg8_from_vgg13', 'crd.weight', 0.8, 'TTM Appendix A.5 (mu = 0.8 with CRD)'),
    ('cifar100/wttm_crd/ShuffleV1_from_wrn_40_2', 'beta', 0.16, 'TTM Table 9'),
    ('cifar100/wttm_crd/ShuffleV1_from_wrn_40_2', 'top1', 76.86, 'TTM Table 3/12, WTTM+CRD row'),
    ('cifar100/wttm_crd/resnet20_from_resnet56', 'beta', 0.6, 'TTM Table 8 (reconstruction)'),
    ('cifar100/wttm_itrd/resnet8x4_from_resnet32x4', 'top1', 77.36, 'TTM Table 1/11, WTTM+ITRD row'),
    ('cifar100/wttm_itrd/resnet8x4_from_resnet32x4', 'itrd.alpha_it', 1.01, 'TTM Appendix A.5 (same architecture)'),
    ('cifar100/wttm_itrd/wrn_16_2_from_wrn_40_2', 'top1', 76.65, 'TTM Table 11 and the TTM README'),
    ('cifar100/wttm_itrd/resnet32_from_resnet110', 'beta', 0.015, 'TTM Table 8 (reconstruction)'),
    ('cifar100/wttm_itrd/MobileNetV2_from_ResNet50', 'gamma', 0.2, 'TTM Table 9'),
    ('cifar100/wttm_itrd/MobileNetV2_from_ResNet50', 'beta', 0.02, 'TTM Table 9'),
    ('cifar100/wttm_itrd/MobileNetV2_from_ResNet50', 'itrd.lambda_mutual', 0.0, 'TTM Appendix A.5'),
    ('cifar100/wttm_itrd/MobileNetV2_from_ResNet50', 'itrd.alpha_it', 1.5, 'TTM Appendix A.5 (other architecture)'),
    ('cifar100/wttm_itrd/MobileNetV2_from_ResNet50', 'top1', 71.56, 'TTM Table 3/12, WTTM+ITRD row'),
    ('cifar100/wttm_itrd/MobileNetV2_from_ResNet50', 'lr', 0.01, 'RepDistiller lr for MobileNetV2'),
    ('cifar100/wttm_itrd/ShuffleV2_from_resnet32x4', 'itrd.lambda_mutual', 1.0, 'TTM Appendix A.5'),
    ('cifar100/wttm_itrd/ShuffleV2_from_resnet32x4', 'itrd.weight', 1.0, 'TTM Appendix A.5 (mu = 1 with ITRD)'),
    ('cifar100/dkd/wrn_16_2_from_wrn_40_2', 'dkd.beta', 6.0, 'mdistiller configs/cifar100/dkd/wrn40_2_wrn_16_2.yaml'),
    ('cifar100/dkd/resnet20_from_resnet56', 'dkd.beta', 2.0, 'mdistiller configs/cifar100/dkd/res56_res20.yaml'),
    ('cifar100/dkd/MobileNetV2_from_vgg13', 'dkd.beta', 6.0, 'mdistiller configs/cifar100/dkd/vgg13_mv2.yaml'),
    ('cifar100/dkd/ShuffleV2_from_resnet32x4', 'dkd.beta', 8.0, 'mdistiller cfg.py default (res32x4_shuv2.yaml)'),
    ('cifar100/dkd/vgg8_from_vgg13', 'top1', 74.68, 'TTM Table 1, DKD row'),
    ('cifar100/dkd/ShuffleV1_from_wrn_40_2', 'top1', 76.70, 'TTM Table 3, DKD row'),
    ('cifar100/dkd/ShuffleV1_from_wrn_40_2', 'lr', 0.01, 'mdistiller configs/cifar100/dkd/wrn40_2_shuv1.yaml'),
    ('cifar100/dkd_at/vgg8_from_vgg13', 'dkd.beta', 6.0, 'mdistiller configs/cifar100/dkd/vgg13_vgg8.yaml'),
    ('cifar100/dkd_at/resnet32_from_resnet110', 'dkd.warmup_epochs', 20, 'mdistiller cfg.py WARMUP'),
    ('cifar100/mlkd/resnet8x4_from_resnet32x4', 'top1', 77.08, 'logit-standardisation README, MLKD row'),
    ('cifar100/mlkd/ShuffleV2_from_resnet32x4', 'top1', 78.44, 'logit-standardisation README, MLKD row'),
    ('cifar100/mlkd/resnet8x4_from_resnet32x4', 'mlkd.weight', 0.9, 'MLKD cfg.py KD.LOSS.KD_WEIGHT'),
    ('cifar100/mlkd/resnet8x4_from_resnet32x4', 'ce_weak.weight', 0.1, 'MLKD cfg.py KD.LOSS.CE_WEIGHT'),
    ('cifar100/mlkd/resnet8x4_from_resnet32x4', 'mlkd.temperature', 4.0, 'MLKD cfg.py KD.TEMPERATURE'),
    ('cifar100/mlkd/wrn_16_2_from_wrn_40_2', 'lr', 0.05, 'ATKD train_student.py default'),
    ('cifar100/mlkd/ShuffleV2_from_resnet32x4', 'lr', 0.01, 'ATKD train_student.py (ShuffleV2)'),
    ('cifar100/mlkd_at/vgg8_from_vgg13', 'mlkd.weight', 6.0, 'logit-standardisation log mlkd,vgg13,vgg8,2,6'),
    ('cifar100/mlkd_at/MobileNetV2_from_vgg13', 'mlkd.weight', 6.0, 'log mlkd,vgg13,MobileNetV2,2,6'),
    ('cifar100/mlkd_at/ShuffleV2_from_resnet32x4', 'mlkd.weight', 6.0, 'log mlkd,resnet32x4,ShuffleV2,2,6'),
    ('cifar100/mlkd_at/wrn_40_1_from_wrn_40_2', 'mlkd.weight', 9.0, 'log mlkd,wrn_40_2,wrn_40_1,2,9'),
    ('cifar100/mlkd_at/resnet8x4_from_resnet32x4', 'ce_strong.weight', 0.1, 'logit-standardisation cfg.py CE_WEIGHT'),
]


def spot_value(config, what):
    """The value ``what`` (see SPOT_CHECKS) of a loaded config."""
    terms = config['train']['criterion']['kwargs']['sub_terms']
    if what == 'top1':
        return config['reference']['top1']
    if what == 'lr':
        return config['train']['optimizer']['kwargs']['lr']
    if what in ('gamma', 'beta'):
        (name,) = [n for n in terms if n in ('ttm', 'wttm')]
        term = terms[name]
        return 1.0 / term['criterion']['kwargs']['temperature'] if what == 'gamma' else term['weight']
    name, key = what.split('.')
    return terms[name]['weight'] if key == 'weight' else terms[name]['criterion']['kwargs'][key]


CONFIGS = config_paths()
CONFIG_IDS = [experiment_name(p) for p in CONFIGS]
#: The users' configs: every file whose first line does not say the generator wrote it at its path.
OWN = generate.own_files(CONFIG_ROOT)
#: The generator's files of the table's rows (checked against their rows); an orphan is in neither list.
GENERATED = [p for p in CONFIGS if p.as_posix() in ROWS and p.as_posix() not in OWN]
GENERATED_IDS = [experiment_name(p) for p in GENERATED]
USER = [p for p in CONFIGS if p.as_posix() in OWN]


@pytest.fixture(scope='module')
def plugin():
    import ttm_torchdistill
    return ttm_torchdistill


# --------------------------------------------------------------------------------------------------------------
# Inventory, parsing, dependencies, headers
# --------------------------------------------------------------------------------------------------------------
def test_configs_folder_holds_no_generated_file_without_a_row():
    """Every other file is welcome: the generator's files are told apart by their first line (docs/configs.md)."""
    orphans = generate.orphans(CONFIG_ROOT, ROWS)
    assert not orphans, '\n'.join(f'{CONFIG_ROOT / problem.relative}: {problem.advice}' for problem in orphans)


@pytest.mark.parametrize('exp', EXPERIMENTS, ids=ROW_IDS)
def test_shipped_config_is_what_the_generator_writes(exp):
    relative = f'{exp.name}.yaml'
    problem = generate.row_problem(CONFIG_ROOT, relative, render(exp), GENERATE)
    if problem is not None:
        pytest.fail(f'{CONFIG_ROOT / relative}: {problem.advice}', pytrace=False)


@pytest.mark.parametrize('name,what,value,source', SPOT_CHECKS, ids=[f'{n}:{w}' for n, w, _, _ in SPOT_CHECKS])
def test_configs_carry_the_papers_numbers(name, what, value, source):
    actual = spot_value(load_recorded(f'{name}.yaml'), what)
    assert math.isclose(actual, value, rel_tol=1e-12), f'{name}: {what} is {actual}, {source} says {value}'


def test_configs_use_only_tags_torchdistill_registers(tmp_path):
    known = torchdistill_tags(tmp_path)
    for path in CONFIGS:
        unknown = tags_used(load_recorded(path)) - known
        assert not unknown, (f'{CONFIG_ROOT / path} uses tags torchdistill 1.1.5 does not register: {sorted(unknown)}; '
                             f'the ones it does: {sorted(known)}')


def _loader_dataset_ids(config):
    """{where: dataset_id} of the data loaders a config has (train, val, test)."""
    places = (('train', 'train_data_loader'), ('train', 'val_data_loader'), ('test', 'test_data_loader'))
    return {f'{section}.{loader}.dataset_id': config[section][loader].get('dataset_id')
            for section, loader in places
            if isinstance(config.get(section), dict) and isinstance(config[section].get(loader), dict)}


@pytest.mark.parametrize('path', CONFIGS, ids=CONFIG_IDS)
def test_config_parses_with_torchdistill_loader_offline(path, monkeypatch):
    config = load_with_torchdistill(path, monkeypatch)
    generated = path in GENERATED
    problems = config_checks.section_problems(config, str(CONFIG_ROOT / path), generated)
    assert not problems, '\n'.join(problems)
    datasets = config['datasets']
    assert datasets and all(isinstance(d, DatasetCall) for d in datasets.values()), \
        f'{CONFIG_ROOT / path}: datasets should map ids to !import_call of a dataset class, got {datasets}'
    loader_ids = _loader_dataset_ids(config)
    unknown = {where: ident for where, ident in loader_ids.items() if ident not in datasets}
    assert 'train.train_data_loader.dataset_id' in loader_ids and not unknown, \
        f'{CONFIG_ROOT / path}: data loaders name {loader_ids}, datasets are {list(datasets)}: name one of those'


@pytest.mark.parametrize('path', CONFIGS, ids=CONFIG_IDS)
def test_config_names_plugin_and_teacher_eval_process(path):
    config = load_recorded(path)
    # torchdistill 1.1.5 DistillationBox.setup_pre_post_processes: get_pre_epoch_proc_func(<key string>)
    problems = config_checks.every_config_problems(config, str(CONFIG_ROOT / path), generated=path in GENERATED)
    assert not problems, '\n'.join(problems)
    if path not in GENERATED:
        return  # what the generator writes beside that is checked against the row below
    assert config['dependencies'] == [config_checks.PLUGIN]
    if 'teacher_model' in config['models']:
        teacher = config['train']['teacher']
        if describe(path)[1] == 'wttm_crd':  # CRD trains the teacher's head (embed_t), not the teacher itself
            assert teacher['requires_grad'] is True and teacher['frozen_modules'] == ['model']
        else:
            assert teacher['requires_grad'] is False
    else:
        assert set(config['models']) == {'model'} and 'pre_epoch_process' not in config['train']


def test_plugin_registers_the_pre_epoch_process(plugin):
    from torchdistill.core.interfaces.registry import get_pre_epoch_proc_func
    assert callable(get_pre_epoch_proc_func('eval_teacher_and_set_loss_epoch'))


@pytest.mark.parametrize('path', GENERATED, ids=GENERATED_IDS)
def test_config_header_gives_the_reference_the_sources_and_one_command(path):
    text = (CONFIG_ROOT / path).read_text()
    lines = text.split('\ndependencies:')[0].strip().splitlines()
    # the first two lines tell the generator's files from the users' (docs/configs.md)
    assert lines[:2] == [f'{GENERATED_AS}configs/{path.as_posix()}', EDIT_THE_ROW], lines[:2]
    header = lines[2:]
    assert all(line.startswith('#') for line in header), 'the header must be a comment block'
    assert len(header) <= 16, f'{path}: a header of {len(header)} lines; it holds what the run needs, no more'
    dataset, method, student, teacher, variant = describe(path)
    config = f'configs/{path.as_posix()}'
    command = (f'python -m ttm_torchdistill --config {config}' if dataset == 'cifar100' else
               f'torchrun --nproc_per_node=8 -m ttm_torchdistill --config {config} --world_size 8')
    assert [line for line in header if '--config' in line] == [f'#   {command}'], f'{path}: one command, the run'
    sources = [n for n, line in enumerate(header) if line.startswith('# Sources: the comment beside each value')]
    assert len(sources) == 1 and header[1].startswith('# Reference: ')
    reference = ' '.join(line.lstrip('# ') for line in header[1:sources[0]])  # the reference sentence, unwrapped
    top1 = row(path).reference.top1
    if top1 is not None:
        assert f'{top1:.2f}' in reference, f'{path}: the header should quote the paper number {top1:.2f}'
    else:
        assert 'reference.top1 is null' in reference
    if dataset == 'cifar100' and teacher is not None:  # the teacher's source is said above its src_ckpt
        assert f'fetch-teachers --names {teacher}\n' in text and f'configs/cifar100/ce/{teacher}.yaml' in text
    if dataset == 'ilsvrc2012':
        assert 'IMAGENET1K_V1' in text and '32 x 8 processes = 256' in text


# --------------------------------------------------------------------------------------------------------------
# Shared blocks
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('dataset', ['cifar100', 'ilsvrc2012'])
def test_datasets_block_identical_across_dataset(dataset):
    paths = [p for p in GENERATED if describe(p)[0] == dataset]
    assert len(paths) > 1
    first = load_recorded(paths[0])['datasets']
    for path in paths[1:]:
        assert load_recorded(path)['datasets'] == first, f'{path} datasets block differs from {paths[0]}'


def _dataset_root_occurrences(path):
    return (CONFIG_ROOT / path).read_text().count('./resource/dataset/')


@pytest.mark.parametrize('path', GENERATED, ids=GENERATED_IDS)
def test_dataset_root_written_once(path):
    assert _dataset_root_occurrences(path) == 1, f'{path}: the dataset root should be written once (an anchor)'


def test_cifar100_datasets_match_repdistiller(monkeypatch):
    config = load_with_torchdistill('cifar100/ce/resnet20.yaml', monkeypatch)
    train, test = config['datasets']['cifar100/train'], config['datasets']['cifar100/test']
    assert train.cls is torchvision.datasets.CIFAR100 and test.cls is torchvision.datasets.CIFAR100
    assert train.kwargs['root'] == test.kwargs['root'] == './resource/dataset/cifar100'
    assert (train.kwargs['train'], test.kwargs['train']) == (True, False)
    assert train.kwargs['download'] is True and test.kwargs['download'] is True
    t = train.kwargs['transform'].transforms
    assert [type(x).__name__ for x in t] == ['RandomCrop', 'RandomHorizontalFlip', 'ToTensor', 'Normalize']
    assert t[0].size == (32, 32) and t[0].padding == 4 and t[1].p == 0.5
    assert list(t[3].mean) == [0.5071, 0.4867, 0.4408] and list(t[3].std) == [0.2675, 0.2565, 0.2761]
    assert [type(x).__name__ for x in test.kwargs['transform'].transforms] == ['ToTensor', 'Normalize']


def test_imagenet_datasets_match_torchdistill_recipe(monkeypatch):
    config = load_with_torchdistill('ilsvrc2012/wttm/resnet18_from_resnet34.yaml', monkeypatch)
    train, val = config['datasets']['ilsvrc2012/train'], config['datasets']['ilsvrc2012/val']
    assert train.cls is torchvision.datasets.ImageFolder and val.cls is torchvision.datasets.ImageFolder
    assert train.kwargs['root'] == './resource/dataset/ilsvrc2012/train'
    assert val.kwargs['root'] == './resource/dataset/ilsvrc2012/val'
    t = train.kwargs['transform'].transforms
    assert [type(x).__name__ for x in t] == ['RandomResizedCrop', 'RandomHorizontalFlip', 'ToTensor', 'Normalize']
    assert tuple(t[0].size) == (224, 224)
    v = val.kwargs['transform'].transforms
    assert [type(x).__name__ for x in v] == ['Resize', 'CenterCrop', 'ToTensor', 'Normalize']
    assert v[0].size == 256 and tuple(v[1].size) == (224, 224)


# --------------------------------------------------------------------------------------------------------------
# Recipe and paper hyperparameters
# --------------------------------------------------------------------------------------------------------------
def typed_recipe(dataset, method, student):
    """The recipe every row of ``dataset`` shares, typed from the papers (not from the table), by dotted place."""
    recipe = {'optimizer.key': 'SGD', 'scheduler.key': 'MultiStepLR', 'scheduler.gamma': 0.1,
              'optimizer.nesterov': False,  # RepDistiller and torchdistill: plain momentum
              'optimizer.momentum': 0.9,
              # RepDistiller keeps the last partial batch; DIST's loaders drop it (its intra-class term sees batches)
              'train_data_loader.drop_last': method == 'dist'}
    if dataset == 'cifar100':  # RepDistiller validates and tests on the CIFAR-100 test split with batch_size / 2
        return {**recipe, 'num_epochs': 240, 'optimizer.lr': 0.01 if student in CIFAR_SMALL_LR_STUDENTS else 0.05,
                'optimizer.weight_decay': 5e-4, 'scheduler.milestones': [150, 180, 210],
                'train_data_loader.batch_size': 64, 'val_data_loader.batch_size': 32,
                'test_data_loader.batch_size': 32, 'val_data_loader.dataset_id': 'cifar100/test',
                'test_data_loader.dataset_id': 'cifar100/test'}
    return {**recipe, 'num_epochs': 100, 'optimizer.lr': 0.1, 'optimizer.weight_decay': 1e-4,
            'scheduler.milestones': [30, 60, 90],
            'train_data_loader.batch_size': 32}  # 32 per process x 8 processes = 256 (DIST B1: 32 per GPU)


def recipe_of(config):
    """The places of :func:`typed_recipe` in a loaded config."""
    train = config['train']
    optimizer, scheduler = train['optimizer'], train['scheduler']
    loaders = {'train_data_loader': train['train_data_loader'], 'val_data_loader': train['val_data_loader'],
               'test_data_loader': config['test']['test_data_loader']}
    found = {'optimizer.key': optimizer['key'], 'scheduler.key': scheduler['key'], 'num_epochs': train['num_epochs'],
             'optimizer.nesterov': optimizer['kwargs'].get('nesterov', False)}
    found.update({f'optimizer.{name}': optimizer['kwargs'].get(name) for name in ('lr', 'momentum', 'weight_decay')})
    found.update({f'scheduler.{name}': scheduler['kwargs'].get(name) for name in ('milestones', 'gamma')})
    for name, loader in loaders.items():
        kwargs = loader['kwargs']
        found.update({f'{name}.dataset_id': loader['dataset_id'], f'{name}.drop_last': kwargs.get('drop_last'),
                      f'{name}.batch_size': kwargs['batch_size']})
    return found


#: Where the table builds each dataset's shared recipe.
RECIPE_BUILDERS = {'cifar100': repdistiller_recipe, 'ilsvrc2012': torchdistill_imagenet_recipe}


@pytest.mark.parametrize('path', GENERATED, ids=GENERATED_IDS)
def test_training_recipe(path):
    exp = row(path)
    build = RECIPE_BUILDERS[exp.dataset]
    shared = build(exp.student.name, exp.recipe.drop_last) if exp.dataset == 'cifar100' else build(exp.recipe.drop_last)
    if exp.recipe != shared:
        pytest.skip(f'{exp.name}: a recipe of its own, not {build.__name__}() of the table: the typed recipe does not '
                    f'apply (its file is compared with its row by test_shipped_config_is_what_the_generator_writes)')
    typed, actual = typed_recipe(exp.dataset, exp.method, exp.student.name), recipe_of(load_recorded(path))
    wrong = [f'{place} is {actual[place]!r}, the papers\' recipe says {value!r}' for place, value in typed.items()
             if actual[place] != value]
    assert not wrong, (f'{path}: ' + '; '.join(wrong) + f'. The rows share {build.__name__}() in '
                       f'ttm_torchdistill/config_generator/table.py: fix it there (or, if the papers say otherwise, '
                       f'typed_recipe() in tests/test_configs.py), then run {GENERATE}')


@pytest.mark.parametrize('path', GENERATED, ids=GENERATED_IDS)
def test_models_and_checkpoint_paths(path):
    dataset, method, student, teacher, variant = describe(path)
    models = load_recorded(path)['models']
    stem = Path(path).stem
    if method == 'ce':
        assert models['model']['key'] == f'cifar_{student}'
        assert models['model']['kwargs'] == {'num_classes': 100}
        assert models['model']['dst_ckpt'] == f'./resource/ckpt/cifar100/ce/{student}.pt'
        return
    s, t = models['student_model'], models['teacher_model']
    assert s['dst_ckpt'] == f'./resource/ckpt/{dataset}/{method}/{stem}.pt'
    assert not s['src_ckpt']
    if dataset == 'cifar100':
        assert (s['key'], t['key']) == (f'cifar_{student}', f'cifar_{teacher}')
        assert s['kwargs'] == t['kwargs'] == {'num_classes': 100}
        assert t['src_ckpt'] == f'./resource/ckpt/cifar100/teachers/{teacher}_vanilla/ckpt_epoch_240.pth'
    else:
        assert (s['key'], t['key']) == (student, teacher)
        assert s['kwargs'] == {'num_classes': 1000} and t['kwargs']['num_classes'] == 1000
        assert not t['src_ckpt']


def test_imagenet_teacher_weights_are_torchvision_imagenet1k_v1(monkeypatch):
    for path in GENERATED:
        if describe(path)[0] != 'ilsvrc2012':
            continue
        teacher = load_with_torchdistill(path, monkeypatch)['models']['teacher_model']
        weights = teacher['kwargs']['weights']
        assert weights.name == 'IMAGENET1K_V1' and type(weights).__name__.lower().startswith(teacher['key'])


@pytest.mark.parametrize('path', GENERATED, ids=GENERATED_IDS)
def test_criterion_matches_the_row(path):
    criterion = load_recorded(path)['train']['criterion']
    assert criterion['key'] == 'WeightedSumLoss'
    terms = criterion['kwargs']['sub_terms']
    expected = expected_terms(row(path))
    assert set(terms) == set(expected), f'{path}: sub-terms {sorted(terms)} != {sorted(expected)}'
    for name, (key, kwargs, weight) in expected.items():
        term = terms[name]
        assert term['criterion']['key'] == key
        assert math.isclose(term['weight'], weight, rel_tol=1e-12), \
            f'{path}: {name} weight {term["weight"]} != {weight}'
        actual = dict(term['criterion']['kwargs'])
        if 'gamma' in kwargs and key in ('TTMLoss', 'WTTMLoss'):
            # the papers tune gamma; the loss takes temperature = 1/gamma
            gamma = kwargs.pop('gamma')
            temperature = actual.pop('temperature')
            assert math.isclose(1.0 / temperature, gamma, rel_tol=1e-12), \
                f'{path}: 1/temperature = {1.0 / temperature} but the paper\'s gamma is {gamma}'
        assert actual == kwargs, f'{path}: {name} kwargs {actual} != {kwargs}'
        if key == 'CrossEntropyLoss':  # the student's logits; of one view for MLKD (ce_weak, ce_strong)
            wrapper = term['criterion_wrapper']
            view = name.split('_')[1] if name.startswith('ce_') else '.'
            assert wrapper['key'] == 'SimpleLossWrapper'
            assert wrapper['kwargs']['input'] == {'is_from_teacher': False, 'module_path': view, 'io': 'output'}
            assert wrapper['kwargs']['target'] == {'uses_label': True}


@pytest.mark.parametrize('path', GENERATED, ids=GENERATED_IDS)
def test_reference_block(path):
    expected = row(path).reference
    reference = load_recorded(path)['reference']
    top1 = expected.top1
    assert set(reference) - {'note'} == {'paper', 'table', 'top1'}
    assert (reference['paper'], reference['table'], reference.get('note')) == (expected.paper, expected.table,
                                                                               expected.note)
    assert reference['top1'] == top1, f'{path}: reference.top1 {reference["top1"]} != table {top1}'
    if top1 is None:
        assert reference.get('note'), f'{path}: a null top1 must say why in reference.note'


# --------------------------------------------------------------------------------------------------------------
# WTTM+CRD and WTTM+ITRD: heads, hooks and the dataset wrapper (docs/crd_itrd.md)
# --------------------------------------------------------------------------------------------------------------
FEATURE_CONFIGS = [p for p in GENERATED if describe(p)[1] in ('wttm_crd', 'wttm_itrd')]
# Penultimate features of RepDistiller's models, typed from docs/crd_itrd.md section 4 (not from the table).
PENULTIMATE = {'fc': {'wrn_40_2': 128, 'wrn_16_2': 128, 'wrn_40_1': 64, 'resnet56': 64, 'resnet110': 64,
                      'resnet20': 64, 'resnet32': 64, 'resnet32x4': 256, 'resnet8x4': 256},
               'classifier': {'vgg13': 512, 'vgg8': 512, 'MobileNetV2': 1280},
               'linear': {'ShuffleV1': 960, 'ShuffleV2': 1024, 'ResNet50': 2048}}


@pytest.mark.parametrize('path', FEATURE_CONFIGS, ids=[experiment_name(p) for p in FEATURE_CONFIGS])
def test_feature_heads_hooks_and_negatives(path):
    dataset, method, student, teacher, variant = describe(path)
    where = {name: module for module, names in PENULTIMATE.items() for name in names}
    untyped = sorted({student, teacher} - set(where))
    assert not untyped, (f'{path}: no penultimate module and width typed for {untyped} in PENULTIMATE of '
                         f'tests/test_configs.py: add them, typed from the model\'s code (docs/crd_itrd.md, section 4)')
    train = load_recorded(path)['train']
    s, t = train['student'], train['teacher']
    head = s['auxiliary_model_wrapper']
    assert head['key'] == 'PenultimateEmbedding'
    assert head['kwargs']['input_module_path'] == where[student] and head['kwargs']['input_module_io'] == 'input'
    terms = train['criterion']['kwargs']['sub_terms']
    if method == 'wttm_crd':
        wrapper = train['train_data_loader']['dataset_wrapper']
        crd = terms['crd']['criterion']['kwargs']
        assert wrapper['key'] == 'CRDDatasetWrapper' and wrapper['kwargs']['mode'] == 'exact'
        assert wrapper['kwargs']['num_negative_samples'] == crd['num_negative_samples'] == 16384
        assert crd['output_size'] == crd['num_samples'] == 50000  # CIFAR-100 training samples
        assert s['forward_proc'] == 'forward_batch_supp_dict' and s['forward_hook'] == {'input': ['supp'],
                                                                                        'output': ['embed']}
        teacher_head = t['auxiliary_model_wrapper']['kwargs']
        assert t['auxiliary_model_wrapper']['key'] == 'PenultimateEmbedding'
        assert teacher_head['input_module_path'] == where[teacher] and teacher_head['normalize'] is True
        assert head['kwargs']['normalize'] is True
        assert head['kwargs']['out_features'] == teacher_head['out_features'] == crd['input_size'] == 128
        assert t['forward_hook'] == {'input': [], 'output': ['embed']}
    else:
        itrd = terms['itrd']['criterion']['kwargs']
        assert 'dataset_wrapper' not in train['train_data_loader'] and 'auxiliary_model_wrapper' not in t
        assert head['kwargs']['normalize'] is False
        assert head['kwargs']['out_features'] == PENULTIMATE[where[teacher]][teacher]  # the teacher's width
        assert t['forward_hook'] == {'input': [where[teacher]], 'output': []}
        assert itrd['teacher_module_path'] == where[teacher] and itrd['teacher_module_io'] == 'input'
        assert s['forward_hook'] == {'input': [], 'output': ['features', 'embed']}
        assert itrd['eps'] == 0.0  # the authors' code; only --smoke adds an eps


@pytest.mark.parametrize('name', sorted(n for names in PENULTIMATE.values() for n in names))
def test_penultimate_modules_take_the_pooled_features(name, plugin):
    from torchdistill.models.registry import get_model
    (module_path,) = [m for m, names in PENULTIMATE.items() if name in names]
    model = get_model(f'cifar_{name}', num_classes=100).eval()
    seen = []
    module = dict(model.named_modules())[module_path]
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    handle.remove()
    assert seen == [torch.Size([2, PENULTIMATE[module_path][name]])]


# --------------------------------------------------------------------------------------------------------------
# DKD and MLKD, plain and with the max-logit temperature; MLKD's two views (docs/mlkd.md)
# --------------------------------------------------------------------------------------------------------------
TWO_VIEW_CONFIGS = [p for p in GENERATED if describe(p)[1] in ('mlkd', 'mlkd_at')]


@pytest.mark.parametrize('method', sorted(config_checks.PAIR_METHODS))
def test_cifar100_method_covers_the_papers_pairs(method):
    """Each method of the README's CIFAR-100 tables has a row for the 13 pairs of TTM Tables 1 and 3 (typed in
    tests/config_checks.py); rows for other pairs and variants of a pair are welcome."""
    problems = config_checks.missing_pairs(EXPERIMENTS, method)
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize('method', ['dkd_at', 'mlkd_at'])
def test_max_logit_variants_differ_from_their_host_only_in_the_temperature(method):
    host = method[:-3]
    for path in [p for p in GENERATED if describe(p)[:2] == ('cifar100', method)]:
        terms = load_recorded(path)['train']['criterion']['kwargs']['sub_terms']
        host_path = Path(path.parts[0], host, *path.parts[2:])
        assert host_path in GENERATED, (f'{path} differs from its host {host_path} only in the temperature, but the '
                                        f'host has no row: add the {host} row of the same pair and variant to '
                                        f'{config_checks.PAIR_METHODS[host]}')
        host_terms = load_recorded(host_path)['train']['criterion']['kwargs']['sub_terms']
        kwargs, host_kwargs = terms[host]['criterion']['kwargs'], host_terms[host]['criterion']['kwargs']
        assert (kwargs['temperature'], kwargs['standardize']) == ('max_logit', True)
        assert isinstance(host_kwargs['temperature'], float) and host_kwargs['standardize'] is False
        if host == 'dkd':  # the pair's alpha, beta and warm-up stay DKD's
            assert {k: v for k, v in kwargs.items() if k not in ('temperature', 'standardize')} == \
                {k: v for k, v in host_kwargs.items() if k not in ('temperature', 'standardize')}


@pytest.mark.parametrize('path', TWO_VIEW_CONFIGS, ids=[experiment_name(p) for p in TWO_VIEW_CONFIGS])
def test_two_views_dataset_wrapper_and_model_wrappers(path, monkeypatch):
    config = load_with_torchdistill(path, monkeypatch)
    train = config['train']
    wrapper = train['train_data_loader']['dataset_wrapper']
    assert wrapper['key'] == 'TwoViewDataset' and set(wrapper['kwargs']) == {'strong_transform'}
    strong = wrapper['kwargs']['strong_transform'].transforms
    weak = config['datasets']['cifar100/train'].kwargs['transform'].transforms
    # the authors' strong view: their weak pipeline with RandAugment(2, 10) after the flip (atkd dataset/cifar100.py)
    assert [type(t).__name__ for t in strong] == ['RandomCrop', 'RandomHorizontalFlip', 'StrongAugment', 'ToTensor',
                                                  'Normalize']
    assert strong[2].num_ops == 2
    assert [repr(t) for t in strong[:2] + strong[3:]] == [repr(t) for t in weak]
    for role in ('teacher', 'student'):
        block = train[role]
        assert block['auxiliary_model_wrapper'] == {'key': 'TwoViewModel'}
        assert block['forward_hook'] == {'input': [], 'output': ['weak', 'strong']}
    assert train['teacher']['requires_grad'] is False and train['student']['requires_grad'] is True


# --------------------------------------------------------------------------------------------------------------
# Keys resolve through torchdistill's registries once the plugin is imported
# --------------------------------------------------------------------------------------------------------------
def _models(path):
    """{entry name: model entry} of a config's ``models`` (a user's malformed section is reported elsewhere)."""
    models = load_recorded(path).get('models')
    return {name: model for name, model in models.items() if isinstance(model, dict)} if isinstance(models, dict) \
        else {}


def _model_specs():
    """(id, key, (path, entry name)): each key of the generated configs once, and each key of each user's file."""
    specs = {}
    for path in GENERATED:
        for name, model in _models(path).items():
            specs.setdefault(model.get('key'), (model.get('key'), (path, name)))
    for path in USER:  # a user's file is checked with its own kwargs
        for name, model in _models(path).items():
            specs.setdefault(f'{model.get("key")}@{experiment_name(path)}', (model.get('key'), (path, name)))
    return [(ident, key, where) for ident, (key, where) in sorted(specs.items(), key=lambda item: str(item[0]))]


MODEL_SPECS = _model_specs()


@pytest.mark.parametrize('key,where', [(key, where) for _, key, where in MODEL_SPECS],
                         ids=[str(ident) for ident, _, _ in MODEL_SPECS])
def test_model_key_resolves(key, where, plugin, monkeypatch):
    from torchdistill.models.registry import MODEL_DICT, get_model
    path, name = where
    config = load_with_torchdistill(path, monkeypatch)['models'][name]
    kwargs = dict(config.get('kwargs') or {})
    if key in torchvision.models.__dict__:
        # torchdistill resolves torchvision names first; building with IMAGENET1K_V1 would download, so bind only
        inspect.signature(torchvision.models.__dict__[key]).bind(**kwargs)
        weights = kwargs.get('weights')
        if weights is not None:
            assert len(weights.meta['categories']) == kwargs.get('num_classes', 1000), \
                f'{CONFIG_ROOT / path}: models.{name}: {weights} has {len(weights.meta["categories"])} classes'
        return
    assert key in MODEL_DICT, (f'{CONFIG_ROOT / path}: models.{name}.key {key!r} is neither a torchvision model '
                               f'nor registered with torchdistill by ttm_torchdistill (or the modules named under '
                               f'dependencies:); registered: {sorted(k for k in MODEL_DICT if isinstance(k, str))}')
    model = get_model(key, **kwargs).eval()
    size = 32 if key.startswith('cifar_') else 224
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    if 'num_classes' in kwargs:
        assert out.shape == (2, kwargs['num_classes']), \
            f'{CONFIG_ROOT / path}: models.{name} gives {tuple(out.shape)} for 2 images, expected (2, num_classes)'



def _criterion_cases():
    """Each criterion of the generated configs once, and every user's file."""
    seen, cases = set(), []
    for path in GENERATED:
        crit = load_recorded(path)['train']['criterion']
        signature = repr(crit)
        if signature not in seen:
            seen.add(signature)
            cases.append(path)
    return cases + USER


def _add_hooked_io(io_dict, exp, config, generator, batch=8):
    """What the heads and hooks of a WTTM+CRD / WTTM+ITRD / MLKD config put into the io_dicts, as random tensors."""
    terms = config['train']['criterion']['kwargs']['sub_terms']
    student, teacher = io_dict['student'], io_dict['teacher']
    if 'mlkd' in terms:  # TwoViewModel's hooks only: the weak view is the logits given, the strong view another
        logits = student.pop('.')['output'], teacher.pop('.')['output']
        student['weak'], teacher['weak'] = {'output': logits[0]}, {'output': logits[1]}
        student['strong'] = {'output': 0.5 * logits[0] + torch.randn(logits[0].shape, generator=generator)}
        teacher['strong'] = {'output': torch.randn(logits[1].shape, generator=generator)}
    if 'crd' in terms:
        kwargs = terms['crd']['criterion']['kwargs']
        embed = [torch.nn.functional.normalize(torch.randn(batch, kwargs['input_size'], generator=generator), dim=1)
                 for _ in range(2)]
        student['embed'], teacher['embed'] = {'output': embed[0]}, {'output': embed[1]}
        contrast = torch.randint(kwargs['output_size'], (batch, kwargs['num_negative_samples'] + 1),
                                 generator=generator)
        student['supp'] = {'input': {'pos_idx': torch.arange(batch), 'contrast_idx': contrast}}
    if 'itrd' in terms:
        width = config['train']['student']['auxiliary_model_wrapper']['kwargs']['out_features']
        student['embed'] = {'output': torch.randn(batch, width, generator=generator)}
        student['features'] = {'output': torch.randn(batch, exp.student.features[1], generator=generator)}
        teacher[exp.teacher.features[0]] = {'input': torch.randn(batch, width, generator=generator)}


@pytest.mark.parametrize('path', _criterion_cases(), ids=[experiment_name(p) for p in _criterion_cases()])
def test_criterion_builds_through_torchdistill_registry(path, plugin, monkeypatch):
    from torchdistill.losses.registry import get_high_level_loss
    config = load_with_torchdistill(path, monkeypatch)
    if path in USER:  # a user's file: its loss keys build; --smoke feeds the criterion what its hooks give
        try:
            get_high_level_loss(config['train']['criterion'])
        except Exception as error:  # torchdistill's error names the key, not the file nor what to do
            pytest.fail(f'{CONFIG_ROOT / path}: train.criterion does not build through torchdistill\'s registry '
                        f'({type(error).__name__}: {error}); every loss key must be torchdistill\'s or registered by '
                        f'a module named under dependencies: (ttm_torchdistill registers its own when imported)',
                        pytrace=False)
        return
    criterion = get_high_level_loss(config['train']['criterion'])
    num_classes = 100 if describe(path)[0] == 'cifar100' else 1000
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(8, num_classes, generator=generator, requires_grad=True)
    teacher = torch.randn(8, num_classes, generator=generator)
    targets = torch.randint(num_classes, (8,), generator=generator)
    # WeightedSumLoss keeps its sub-terms in a plain dict (not a ModuleDict): reach them through term_dict,
    # as the plugin's pre-epoch process does, to hand epoch 1 to epoch-dependent losses (DKD warm-up).
    for sub_criterion, _ in criterion.term_dict.values():
        for module in sub_criterion.modules():
            if hasattr(module, 'set_epoch'):
                module.set_epoch(1)
    io_dict = {'student': {'.': {'output': student}}, 'teacher': {'.': {'output': teacher}}}
    _add_hooked_io(io_dict, row(path), config, generator)
    loss = criterion(io_dict, dict(), targets)
    # torchdistill's CRDLoss returns shape (1,), and so does the weighted sum then (docs/crd_itrd.md, section 2)
    shape = (1,) if 'crd' in config['train']['criterion']['kwargs']['sub_terms'] else ()
    assert loss.shape == shape and torch.isfinite(loss).all()
    loss.backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------------------------
# --smoke through the runner (in-process: one interpreter start instead of one per config)
# --------------------------------------------------------------------------------------------------------------
def _smoke_cover():
    """Configs whose --smoke runs together exercise every model key, loss set-up and dataset.

    Configs of the same method differ only in model keys and numbers (checked above), so a greedy cover of
    the model keys, the methods (loss set-ups) and the two datasets keeps the suite fast.
    TTM_SMOKE_ALL=1 runs every config.
    """
    if os.environ.get('TTM_SMOKE_ALL') == '1':
        return list(CONFIGS)
    features = {}
    for path in GENERATED:
        dataset, method, student, teacher, variant = describe(path)
        models = load_recorded(path)['models']
        features[path] = ({('model', m['key']) for m in models.values()}
                          | {('method', method, variant), ('data', dataset)})
    uncovered = set().union(*features.values())
    chosen = []
    while uncovered:
        best = max(sorted(features), key=lambda p: len(features[p] & uncovered))
        chosen.append(best)
        uncovered -= features[best]
    return sorted(chosen) + USER  # every user's file runs: nothing else tries it


SMOKE_CASES = _smoke_cover()


def test_smoke_cover_runs_every_method():
    methods = {describe(p)[1] for p in GENERATED}
    assert {describe(p)[1] for p in SMOKE_CASES if p in GENERATED} == methods


@pytest.mark.parametrize('path', SMOKE_CASES, ids=[experiment_name(p) for p in SMOKE_CASES])
def test_config_passes_smoke(path, tmp_path, monkeypatch):
    from ttm_torchdistill import cli
    monkeypatch.chdir(tmp_path)  # nothing the smoke run might write lands in the repository
    monkeypatch.setattr(sys, 'argv', ['ttm_torchdistill', '--config', str(CONFIG_ROOT / path), '--smoke',
                                      '--device', 'cpu'])
    try:
        status = cli.main()
    except SystemExit as exit_:
        status = exit_.code
    assert status in (0, None), f'--smoke of {CONFIG_ROOT / path} exited with {status} (its log above says why)'
    written = sorted(p for p in (tmp_path / 'resource' / 'ckpt').rglob('*') if p.is_file())
    assert not written, f'--smoke must not write into the real checkpoint paths, wrote {written}'
