"""What the config tests check, as functions that return problems (each saying what is expected, what arrived and
what to do), so that tests/test_configs.py runs them on a configs folder and tests/test_user_configs.py on a
changed table or a hand-written config. Standard library only.

Two kinds of rules:

* what holds for **every** config, generated or written by hand (:func:`every_config_problems`): the plugin named
  under ``dependencies:``, torchdistill's sections present, and a teacher distilled in eval mode;
* what holds for the **table** (:func:`missing_pairs`): every method of the README's CIFAR-100 tables has a plain
  row for each teacher-student pair of TTM Tables 1 and 3. Rows for other pairs, and variants, are welcome.
"""
from typing import Any, Dict, Iterable, List, Mapping, Tuple

PLUGIN = {'name': 'ttm_torchdistill'}
TEACHER_EVAL = 'eval_teacher_and_set_loss_epoch'
#: The sections every config has; a generated one has exactly these and ``reference`` and ``test``.
REQUIRED_SECTIONS = ('dependencies', 'datasets', 'models', 'train')
GENERATED_SECTIONS = ('dependencies', 'reference', 'datasets', 'models', 'train', 'test')

TABLE = 'ttm_torchdistill/config_generator/table.py'
TABLE_DKD_MLKD = 'ttm_torchdistill/config_generator/table_dkd_mlkd.py'
#: The 13 (teacher, student) pairs of TTM Tables 1 and 3 (RepDistiller's), typed from the paper, not the table.
PAPER_PAIRS = (
    ('wrn_40_2', 'wrn_16_2'), ('wrn_40_2', 'wrn_40_1'), ('resnet56', 'resnet20'), ('resnet110', 'resnet20'),
    ('resnet110', 'resnet32'), ('resnet32x4', 'resnet8x4'), ('vgg13', 'vgg8'),
    ('vgg13', 'MobileNetV2'), ('ResNet50', 'MobileNetV2'), ('ResNet50', 'vgg8'), ('resnet32x4', 'ShuffleV1'),
    ('resnet32x4', 'ShuffleV2'), ('wrn_40_2', 'ShuffleV1'),
)
#: The CIFAR-100 methods of the README's tables, each with where its per-pair rows are written.
PAIR_METHODS = {
    'ttm': f'CIFAR100_TTM_WTTM in {TABLE}', 'wttm': f'CIFAR100_TTM_WTTM in {TABLE}',
    'kd': f'CIFAR100_BASELINES in {TABLE}', 'dist': f'CIFAR100_BASELINES in {TABLE}',
    'atkd': f'CIFAR100_BASELINES in {TABLE}',
    'wttm_crd': f'CIFAR100_WTTM_FEATURES in {TABLE}', 'wttm_itrd': f'CIFAR100_WTTM_FEATURES in {TABLE}',
    'dkd': f'CIFAR100_DKD in {TABLE_DKD_MLKD}', 'dkd_at': f'CIFAR100_DKD in {TABLE_DKD_MLKD}',
    'mlkd': f'CIFAR100_MLKD in {TABLE_DKD_MLKD}', 'mlkd_at': f'CIFAR100_MLKD in {TABLE_DKD_MLKD}',
}


def section_problems(config: Any, name: str, generated: bool) -> List[str]:
    """The top-level sections: a generated config has exactly :data:`GENERATED_SECTIONS`, any config at least
    :data:`REQUIRED_SECTIONS`."""
    if not isinstance(config, dict):
        return [f'{name}: the file holds {type(config).__name__}, expected a mapping of sections '
                f'({", ".join(REQUIRED_SECTIONS)}, ...)']
    if generated:
        if set(config) != set(GENERATED_SECTIONS):
            return [f'{name}: sections {list(config)}, the generator writes {list(GENERATED_SECTIONS)}; edit the '
                    f'generator (ttm_torchdistill/config_generator/render.py), not the file']
        return []
    missing = [section for section in REQUIRED_SECTIONS if section not in config]
    if missing:
        return [f'{name}: no {", ".join(missing)} section; a config has {", ".join(REQUIRED_SECTIONS)} (and '
                f'usually test and reference): copy them from a config under configs/']
    return []


def plugin_problems(config: Mapping[str, Any], name: str) -> List[str]:
    """The plugin named under ``dependencies:`` (torchdistill imports it, which registers its keys)."""
    dependencies = config.get('dependencies')
    if not isinstance(dependencies, list) or PLUGIN not in dependencies:
        return [f"{name}: dependencies is {dependencies!r}, expected a list holding {PLUGIN!r}: add the lines "
                f"\"dependencies:\" and \"  - name: 'ttm_torchdistill'\" (torchdistill imports the plugin, which "
                f'registers its losses, models and pre-epoch process)']
    return []


def teacher_problems(config: Mapping[str, Any], name: str) -> List[str]:
    """A config distilling from ``models.teacher_model`` puts the teacher in eval mode every epoch."""
    models, train = config.get('models'), config.get('train')
    if not isinstance(models, dict) or 'teacher_model' not in models:
        return []
    process = train.get('pre_epoch_process') if isinstance(train, dict) else None
    if process != TEACHER_EVAL:
        return [f"{name}: distils from models.teacher_model, but train.pre_epoch_process is {process!r}; expected "
                f"'{TEACHER_EVAL}' (the plugin's: the teacher in eval mode every epoch, the epoch handed to "
                f'epoch-dependent losses): set it under train:']
    return []


def every_config_problems(config: Any, name: str, generated: bool = False) -> List[str]:
    """What holds for every config, generated or a user's own (see the module docstring)."""
    problems = section_problems(config, name, generated)
    if isinstance(config, dict):
        problems += plugin_problems(config, name) + teacher_problems(config, name)
    return problems


def pairs(experiments: Iterable[Any], method: str) -> Dict[Tuple[str, str], List[str]]:
    """{(teacher, student): experiment names} of the plain (variant-less) CIFAR-100 rows of ``method``."""
    found: Dict[Tuple[str, str], List[str]] = {}
    for exp in experiments:
        if exp.dataset == 'cifar100' and exp.method == method and not exp.variant and exp.teacher is not None:
            found.setdefault((exp.teacher.name, exp.student.name), []).append(exp.name)
    return found


def missing_pairs(experiments: Iterable[Any], method: str) -> List[str]:
    """One line per pair of :data:`PAPER_PAIRS` that ``method`` has no plain row for, saying where to add it."""
    have = pairs(list(experiments), method)
    return [f'cifar100/{method} has no row for teacher {teacher} -> student {student} (a pair of TTM Tables 1 and '
            f'3, which every method of the README\'s CIFAR-100 tables covers; found {len(have)} pairs): add it to '
            f'{PAIR_METHODS[method]}, then run python -m ttm_torchdistill generate-configs'
            for teacher, student in PAPER_PAIRS if (teacher, student) not in have]
