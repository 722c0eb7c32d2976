"""One spec per loss the plugin registers: what the loss tests know about it, in one place.

The loss tests iterate the plugin's registered mid-level losses (:func:`registered_losses`, read from torchdistill's
registry) and take what they need from ``SPECS[key]``: the arguments with valid values, the error cases with their
messages, the public function and slow reference of each variant, the identities, the golden figures. A registered
loss without a spec fails ``tests/test_loss_specs.py`` with a message naming the loss and the fields to write; so does
a spec that leaves out an argument of the loss's signature (:func:`spec_problems`). ``docs/extending.md`` says what
the tests then check.
"""
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import pytest
import torch
from torch import Tensor
from torchdistill.losses.registry import MIDDLE_LEVEL_LOSS_DICT, get_mid_level_loss

import loss_identities as identities
import slow_reference as slow
import slow_reference_features as slow_features
import slow_reference_mlkd as slow_mlkd
import ttm_torchdistill  # noqa: F401  (registers the losses)
import ttm_torchdistill.feature_functional as FF
import ttm_torchdistill.functional as F
from ttm_torchdistill.checks.signatures import accepted_arguments

SPEC_FILE = 'tests/loss_specs.py'
PLUGIN_PREFIX = 'ttm_torchdistill.'
MAX_LOGIT = 'max_logit'

#: The generic properties tests/test_losses_properties.py checks for every variant of every registered loss, and which
#: a spec may declare not to hold (``LossSpec.exempt``), with the reason.
PROPERTIES = {
    'slow_reference': 'value and student gradients equal the variant\'s slow float64 reference',
    'gradcheck': 'torch.autograd.gradcheck of the public function',
    'shift_invariant': 'adding a constant to each row of every logit tensor changes nothing',
    'zero_at_teacher': 'the loss is 0 when each student tensor equals its teacher tensor',
    'teacher_gets_no_gradient': 'the public function detaches the teacher (the adapter always must)',
    'per_sample_temperature': 'a per-sample temperature tensor: gradcheck, resolve_temperature bit for bit, a '
                              'constant tensor equal to the number',
    'finite_at_100': 'finite value and gradient for float32 logits of magnitude 100',
    'finite_under_autocast': 'a finite float32 value from half-precision inputs under autocast',
}


@dataclass(frozen=True)
class ErrorCase:
    """Building the loss with ``kwargs`` (over ``LossSpec.valid[0]``) raises ``error`` matching ``match``."""
    kwargs: Mapping[str, Any]
    error: type
    match: str

    @property
    def id(self) -> str:
        return ','.join(f'{k}={v!r}' for k, v in self.kwargs.items())


@dataclass(frozen=True)
class Variant:
    """One configuration of a loss, computed three ways: the adapter, the public function and a slow reference.

    :param name: test id, e.g. ``'kd_standardized'``.
    :param kwargs: given to both the adapter (over ``LossSpec.valid[0]``) and ``LossSpec.function``.
    :param reference: ``reference(x, y, temperature=T, **kwargs)``: an independent float64 computation (the
        ``tests/slow_reference*.py`` modules) of the inputs ``x`` (by name) and targets ``y``; ``None`` only with
        ``LossSpec.exempt['slow_reference']``.
    """
    name: str
    kwargs: Mapping[str, Any]
    reference: Optional[Callable[..., Tensor]]


@dataclass(frozen=True)
class LossSpec:
    """What the tests know about one registered loss.

    :param function: the public function computing the adapter's value (``ttm_torchdistill.functional``).
    :param args: its positional arguments, by input name (``inputs``) or ``'targets'``.
    :param inputs: the tensors the adapter reads, each named by the prefix of its ``<prefix>_module_path``
        argument (``'student'``, ``'teacher'``, ``'student_strong'``, ...). The tests give each an (N, C) tensor
        at the path the built adapter holds.
    :param valid: kwargs that build a working loss; the first is the minimal one (the base of ``errors``). Together
        they give every argument of the signature at least once.
    :param errors: construction errors; together they cover every argument of the signature.
    :param variants: the configurations checked against the function and the slow reference.
    :param identities: checks without arguments that the loss satisfies (``tests/loss_identities.py``).
    :param views: ``(student, teacher)`` input pairs whose max-logit temperature ``last_temperature`` records, one
        row per pair; empty for a loss without ``temperature``.
    :param reference_temperatures: temperatures the slow references are compared at (``(None,)``: no temperature).
    :param zero_temperatures: temperatures at which the loss is 0 when the student equals the teacher.
    :param exempt: generic property (``PROPERTIES``) -> why it does not hold for this loss.
    :param golden: reference name in ``tests/fixtures/losses.json`` -> the adapter's kwargs from a case's params.
    """
    function: Callable[..., Tensor]
    args: Tuple[str, ...]
    inputs: Tuple[str, ...]
    valid: Tuple[Mapping[str, Any], ...]
    errors: Tuple[ErrorCase, ...]
    variants: Tuple[Variant, ...]
    identities: Tuple[Callable[[], None], ...]
    views: Tuple[Tuple[str, str], ...] = ()
    reference_temperatures: Tuple[Any, ...] = (1.0, 4.0, MAX_LOGIT)
    zero_temperatures: Tuple[Any, ...] = (2.0, MAX_LOGIT)
    exempt: Mapping[str, str] = field(default_factory=dict)
    golden: Mapping[str, Callable[[dict], dict]] = field(default_factory=dict)

    @property
    def required(self) -> Dict[str, Any]:
        """The minimal kwargs that build the loss."""
        return dict(self.valid[0])

    def holds(self, prop: str) -> bool:
        """Whether the generic property ``prop`` is to be checked (it applies and is not exempted)."""
        assert prop in PROPERTIES, prop
        if prop == 'per_sample_temperature' and not self.views:
            return False
        return prop not in self.exempt

    def temperatures(self, *values) -> Tuple[Any, ...]:
        """``values`` for a loss with a temperature, else ``(None,)`` (call without one)."""
        return tuple(values) if self.views else (None,)


# ---- error cases shared by several losses (each spec lists its own) ----

def temperature_errors() -> Tuple[ErrorCase, ...]:
    return (
        ErrorCase({'temperature': 0}, ValueError, r"temperature must be a positive number or 'max_logit', got 0"),
        ErrorCase({'temperature': 'auto'}, ValueError, r"got 'auto'"),
        ErrorCase({'temperature': 2.0, 'teacher_only_max': True}, ValueError,
                  r"teacher_only_max=True needs temperature='max_logit', got 2\.0"),
        ErrorCase({'temperature': MAX_LOGIT, 'teacher_only_max': 'yes'}, TypeError,
                  r"teacher_only_max must be True or False, got 'yes'"),
    )


def weight_errors(name: str) -> Tuple[ErrorCase, ...]:
    return (ErrorCase({name: -0.5}, ValueError, rf'{name} must be a finite, non-negative number, got -0\.5'),
            ErrorCase({name: '1'}, TypeError, rf"{name} must be a non-negative real number, got '1' \(str\)"))


def flag_error(name: str, bad: Any = 'true') -> ErrorCase:
    return ErrorCase({name: bad}, TypeError, rf'{name} must be True or False, got {bad!r}')


def path_errors(names: Sequence[str], bad: Any = 3) -> Tuple[ErrorCase, ...]:
    """The logit adapters' check of a module path or io: a string."""
    return tuple(ErrorCase({name: bad}, TypeError, rf'{name} must be a string, got {bad!r}') for name in names)


LOGITS = ('student', 'teacher')
LOGIT_PATHS = ('student_module_path', 'student_module_io', 'teacher_module_path', 'teacher_module_io')
OTHER_PATHS = {'student_module_path': 'fc', 'student_module_io': 'input', 'teacher_module_path': 'head',
               'teacher_module_io': 'output'}
ONE_VIEW = (('student', 'teacher'),)


# ---- slow references of each variant, in the spec's calling convention ----

def _ttm_reference(x, y, temperature):
    return slow.ttm(x['student'], x['teacher'], temperature)


def _wttm_reference(x, y, temperature):
    return slow.ttm(x['student'], x['teacher'], temperature, weighted=True)


def _dist_reference(x, y, temperature, beta, gamma):
    return slow.dist(x['student'], x['teacher'], beta, gamma, temperature)


def _kd_reference(x, y, temperature, standardize):
    return slow.kd(x['student'], x['teacher'], temperature, standardize=standardize)


def _dkd_reference(x, y, temperature, alpha, beta, warmup_epochs, standardize=False):
    assert warmup_epochs == 0, 'the slow reference has no warm-up'
    return slow.dkd(x['student'], x['teacher'], y, alpha, beta, temperature, standardize=standardize)


def _mlkd_reference(x, y, temperature, standardize=False, code_faithful=True):
    reference = slow_mlkd.mlkd if code_faithful else slow_mlkd.quirk_free
    return reference(x['student'], x['teacher'], x['student_strong'], x['teacher_strong'], temperature=temperature,
                     standardize=standardize)


def _itrd_reference(x, y, lambda_corr, lambda_mutual, alpha_it, eps=0.0):
    # equal widths: the authors' code gives the mutual term the raw student features
    return (lambda_corr * slow_features.itrd_correlation(x['student_embed'], x['teacher'], alpha_it, eps=eps)
            + lambda_mutual * slow_features.itrd_mutual(x['student'], x['teacher']))


def _ttm_spec(function, reference, name, identity_checks) -> LossSpec:
    return LossSpec(
        function=function, args=LOGITS, inputs=LOGITS,
        valid=({'temperature': 10.0}, {'temperature': 1.25}, {'temperature': MAX_LOGIT},
               {'temperature': MAX_LOGIT, 'teacher_only_max': True}, dict(OTHER_PATHS, temperature=2.0)),
        errors=temperature_errors() + path_errors(LOGIT_PATHS),
        variants=(Variant(name, {}, reference),),
        identities=identity_checks,
        views=ONE_VIEW,
        zero_temperatures=(1.0,),  # the target is the transformed teacher: it is the student's softmax only at T = 1
        golden={name: lambda p: {'temperature': 1.0 / p['exponent']}},
    )


def _kd_golden(p):
    return {'temperature': p['temperature'], 'standardize': p.get('standardize', False)}


MLKD_PATHS = LOGIT_PATHS + ('student_strong_module_path', 'student_strong_module_io', 'teacher_strong_module_path',
                            'teacher_strong_module_io')
ITRD_BASE = {'teacher_module_path': 'fc'}

SPECS: Dict[str, LossSpec] = {
    'TTMLoss': _ttm_spec(F.ttm_loss, _ttm_reference, 'ttm', (
        identities.ttm_at_temperature_one_is_kl_from_teacher_to_student,
        identities.ttm_is_kd_minus_renyi_entropy_plus_shannon_entropy)),
    'WTTMLoss': _ttm_spec(F.wttm_loss, _wttm_reference, 'wttm', (
        identities.wttm_at_temperature_one_is_kl_from_teacher_to_student,
        identities.wttm_weight_is_the_teacher_power_sum)),
    'ATDISTLoss': LossSpec(
        function=F.dist_loss, args=LOGITS, inputs=LOGITS,
        valid=({}, {'beta': 0.0, 'gamma': 2.0}, {'temperature': 4.0}, {'temperature': MAX_LOGIT},
               {'temperature': MAX_LOGIT, 'teacher_only_max': True}, dict(OTHER_PATHS)),
        errors=temperature_errors() + weight_errors('beta') + weight_errors('gamma') + path_errors(LOGIT_PATHS),
        variants=(Variant('dist', {'beta': 1.5, 'gamma': 0.5}, _dist_reference),),
        identities=(identities.dist_is_zero_when_student_equals_teacher_up_to_its_eps,),
        views=ONE_VIEW,
        reference_temperatures=(1.0, 4.0),  # the slow reference takes one tau for the batch
        exempt={'zero_at_teacher': "the authors' eps leaves 1 - rho = eps / (|a|^2 + eps) > 0 (the identity "
                                   'dist_is_zero_when_student_equals_teacher_up_to_its_eps checks both)'},
        golden={'dist': lambda p: {'beta': p['beta'], 'gamma': p['gamma'], 'temperature': p['tau']}},
    ),
    'ATKDLoss': LossSpec(
        function=F.kd_loss, args=LOGITS, inputs=LOGITS,
        valid=({}, {'temperature': 4.0, 'standardize': False}, {'temperature': 2.0, 'standardize': True},
               {'teacher_only_max': True}, dict(OTHER_PATHS)),
        errors=temperature_errors() + (flag_error('standardize'),) + path_errors(LOGIT_PATHS),
        variants=(Variant('kd', {'standardize': False}, _kd_reference),
                  Variant('kd_standardized', {'standardize': True}, _kd_reference)),
        identities=(identities.standardized_kd_ignores_a_positive_scale_and_a_shift_of_each_row,),
        views=ONE_VIEW,
        golden={'kd': _kd_golden, 'atkd': _kd_golden},
    ),
    'DKDLoss': LossSpec(
        function=F.dkd_loss, args=LOGITS + ('targets',), inputs=LOGITS,
        valid=({}, {'alpha': 0.0, 'beta': 2.0}, {'temperature': MAX_LOGIT, 'standardize': True},
               {'warmup_epochs': 0}, {'temperature': MAX_LOGIT, 'teacher_only_max': True}, dict(OTHER_PATHS)),
        errors=temperature_errors() + weight_errors('alpha') + weight_errors('beta') + (flag_error('standardize'),)
        + tuple(ErrorCase({'warmup_epochs': bad}, ValueError,
                          rf'warmup_epochs must be a non-negative integer, got {bad!r}') for bad in (-1, 2.5, True))
        + path_errors(LOGIT_PATHS),
        variants=(Variant('dkd', {'alpha': 1.0, 'beta': 8.0, 'warmup_epochs': 0}, _dkd_reference),
                  Variant('dkd_standardized', {'alpha': 0.5, 'beta': 2.0, 'standardize': True, 'warmup_epochs': 0},
                          _dkd_reference)),
        identities=(identities.kd_is_tckd_plus_weighted_nckd, identities.dkd_warmup_scales_linearly_then_saturates),
        views=ONE_VIEW,
        golden={'dkd': lambda p: dict(p, warmup_epochs=0)},  # the reference has no warm-up (factor 1)
    ),
    'MLKDLoss': LossSpec(
        function=F.mlkd_loss, args=('student', 'teacher', 'student_strong', 'teacher_strong'),
        inputs=('student', 'teacher', 'student_strong', 'teacher_strong'),
        valid=({}, {'temperature': MAX_LOGIT, 'standardize': True}, {'temperature': 2.0, 'code_faithful': False},
               {'temperature': MAX_LOGIT, 'teacher_only_max': True},
               dict(OTHER_PATHS, student_strong_module_path='fc2', student_strong_module_io='input',
                    teacher_strong_module_path='head2', teacher_strong_module_io='output')),
        errors=temperature_errors() + (
            ErrorCase({'temprature': 4.0}, TypeError,
                      r"^MLKDLoss has no argument 'temprature' \(did you mean 'temperature'\?\)"),
            ErrorCase({'temperature': -2}, ValueError, r"temperature must be a positive number or 'max_logit', got -2"),
            ErrorCase({'code_faithful': None}, TypeError, r'code_faithful must be True or False, got None'),
            ErrorCase({'standardize': 'True'}, TypeError, r"standardize must be True or False, got 'True'"),
            ErrorCase({'teacher_only_max': True}, ValueError,
                      r"teacher_only_max=True needs temperature='max_logit', got 4\.0"),
            ErrorCase({'student_strong_module_path': 3}, TypeError,
                      r'student_strong_module_path must be a string, got 3'),
            ErrorCase({'teacher_strong_module_io': None}, TypeError,
                      r'teacher_strong_module_io must be a string, got None'),
            ErrorCase({'student_module_path': ['weak']}, TypeError,
                      r"student_module_path must be a string, got \['weak'\]"),
        ) + path_errors([name for name in MLKD_PATHS
                         if name not in ('student_strong_module_path', 'teacher_strong_module_io')], bad=1.5),
        variants=(Variant('code_faithful', {}, _mlkd_reference),
                  Variant('standardized', {'standardize': True}, _mlkd_reference),
                  Variant('quirk_free', {'code_faithful': False}, _mlkd_reference)),
        identities=(identities.mlkd_with_the_weak_view_matched_leaves_the_strong_view_kd,
                    identities.standardized_mlkd_ignores_a_positive_scale_and_a_shift_of_each_row),
        views=(('student', 'teacher'), ('student_strong', 'teacher_strong')),
        exempt={'per_sample_temperature': 'MLKD resolves each view\'s temperatures itself and refuses a tensor '
                                          '(test_mlkd_loss.py gradchecks its core at per-sample temperatures)'},
    ),
    'ITRDLoss': LossSpec(
        function=FF.itrd_loss, args=('student_embed', 'student', 'teacher'),
        inputs=('student_embed', 'student', 'teacher'),
        valid=(ITRD_BASE, dict(ITRD_BASE, lambda_corr=0.0, lambda_mutual=0.5),
               dict(ITRD_BASE, lambda_mutual=0.0, alpha_it=1.01), dict(ITRD_BASE, mutual_uses_embedding=True),
               dict(ITRD_BASE, mutual_uses_embedding=False, eps=1e-6),
               {'teacher_module_path': 'head', 'teacher_module_io': 'output', 'student_embed_module_path': 'emb',
                'student_embed_module_io': 'input', 'student_module_path': 'feat', 'student_module_io': 'input'}),
        errors=(
            ErrorCase({'lambda_corr': -1.0}, ValueError,
                      r'lambda_corr must be a finite, non-negative number, got -1\.0'),
            ErrorCase({'lambda_mutual': '1'}, TypeError,
                      r"lambda_mutual must be a non-negative real number, got '1' \(str\)"),
            ErrorCase({'lambda_mutual': True}, TypeError,
                      r'lambda_mutual must be a non-negative real number, got True \(bool\)'),
            ErrorCase({'alpha_it': 0.0}, ValueError, r'alpha_it must be positive \(1\.01 and 1\.5 in the TTM runs\), '
                                                     r'got 0\.0'),
            ErrorCase({'alpha_it': float('inf')}, ValueError,
                      r'alpha_it must be a finite, non-negative number, got inf'),
            ErrorCase({'eps': -1e-6}, ValueError, r'eps must be a finite, non-negative number, got -1e-06'),
            ErrorCase({'mutual_uses_embedding': 'auto'}, TypeError,
                      r"mutual_uses_embedding must be True or False, got 'auto'"),
            ErrorCase({'teacher_module_io': 'out'}, ValueError, r"teacher_module_io must be 'input' or 'output', "
                                                                r"got 'out'"),
            ErrorCase({'student_module_path': ''}, TypeError,
                      r"student_module_path must be a non-empty string, got ''"),
            ErrorCase({'alpha': 1.5}, TypeError, r"^ITRDLoss has no argument 'alpha' \(did you mean 'alpha_it'\?\)"),
            ErrorCase({'teacher_module_path': 3}, TypeError, r'teacher_module_path must be a non-empty string, got 3'),
            ErrorCase({'student_embed_module_path': None}, TypeError,
                      r'student_embed_module_path must be a non-empty string, got None'),
            ErrorCase({'student_embed_module_io': 'in'}, ValueError,
                      r"student_embed_module_io must be 'input' or 'output', got 'in'"),
            ErrorCase({'student_module_io': 'outputs'}, ValueError,
                      r"student_module_io must be 'input' or 'output', got 'outputs'"),
        ),
        variants=(Variant('authors', {'lambda_corr': 2.0, 'lambda_mutual': 1.0, 'alpha_it': 1.5}, _itrd_reference),
                  Variant('same_architecture_eps', {'lambda_corr': 2.0, 'lambda_mutual': 1.0, 'alpha_it': 1.01,
                                                    'eps': 1e-6}, _itrd_reference)),
        identities=(identities.itrd_correlation_of_perfectly_correlated_features_is_log2_of_d_over_n_to_the_2_alpha,
                    identities.itrd_correlation_ignores_the_scale_and_shift_of_teacher_columns,
                    identities.itrd_mutual_is_zero_for_a_rank_one_teacher_and_ignores_row_scale),
        reference_temperatures=(None,),
        zero_temperatures=(),
        exempt={'shift_invariant': 'features, not logits: the Gram matrices of the mutual term see a shift',
                'zero_at_teacher': 'the student has no teacher counterpart of its raw features, and the correlation '
                                   'term is log2 of a sum, not 0, at perfect correlation (an identity checks its '
                                   'value)',
                'teacher_gets_no_gradient': 'itrd_loss leaves detaching the teacher to its caller: the ITRDLoss '
                                            'adapter detaches it (checked for every adapter)',
                'finite_at_100': 'features of +-100 have columns constant over the batch, where the authors\' eps 0 '
                                 'gives NaN by design (test_feature_losses.py: eps > 0 keeps it finite)'},
    ),
}


# ---- the registry, and what a spec must hold ----

def registered_losses(registry: Optional[Mapping[str, Any]] = None) -> Dict[str, type]:
    """The mid-level losses this package registers (its own classes; test helpers registered by tests are not)."""
    registry = MIDDLE_LEVEL_LOSS_DICT if registry is None else registry
    return {key: cls for key, cls in sorted(registry.items())
            if (getattr(cls, '__module__', '') or '').startswith(PLUGIN_PREFIX)}


def _spec_fields() -> str:
    required = [f.name for f in fields(LossSpec) if f.default is MISSING and f.default_factory is MISSING]
    return ', '.join(f'{name}=...' for name in required)


def missing_spec_message(key: str, cls: Any) -> str:
    return (f'{key} ({cls.__module__}.{cls.__qualname__}) is registered but has no spec: add '
            f'SPECS[{key!r}] = LossSpec({_spec_fields()}) to {SPEC_FILE} (docs/extending.md says what each field '
            f'holds); until then no loss test checks it')


def spec_of(key: str) -> LossSpec:
    """``SPECS[key]``, or a test failure saying what to add."""
    if key not in SPECS:
        pytest.fail(missing_spec_message(key, MIDDLE_LEVEL_LOSS_DICT[key]), pytrace=False)
    return SPECS[key]


def _path_prefixes(names: Sequence[str]) -> List[str]:
    return [name[:-len('_module_path')] for name in names if name.endswith('_module_path')]


def _argument_problems(key: str, spec: LossSpec, names: Sequence[str]) -> List[str]:
    where = f'{SPEC_FILE}: SPECS[{key!r}]'
    problems = []
    given = {name for config in spec.valid for name in config}
    problems += [f'{where}.valid passes {name!r}, which {key} does not accept' for name in sorted(given - set(names))]
    problems += [f'{where}.valid never gives {name!r}: add a kwargs with a valid value' for name in names
                 if name not in given]
    covered = {name for case in spec.errors for name in case.kwargs}
    problems += [f'{where}.errors has no case for {name!r}: add ErrorCase({{{name!r}: <bad value>}}, <error>, '
                 f'<message regex>)' for name in names if name not in covered]
    if sorted(spec.inputs) != sorted(_path_prefixes(names)):
        problems.append(f'{where}.inputs is {spec.inputs}, but {key} reads {tuple(_path_prefixes(names))} '
                        f'(the prefixes of its *_module_path arguments)')
    if ('temperature' in names) != bool(spec.views):
        problems.append(f'{where}.views must name the (student, teacher) inputs of each temperature exactly when '
                        f'{key} takes a temperature')
    return problems


def _content_problems(key: str, spec: LossSpec) -> List[str]:
    where = f'{SPEC_FILE}: SPECS[{key!r}]'
    problems = []
    unknown_args = [a for a in spec.args if a not in spec.inputs and a != 'targets']
    if unknown_args:
        problems.append(f'{where}.args names {unknown_args}, neither inputs nor \'targets\'')
    if not spec.variants:
        problems.append(f'{where}.variants is empty: add Variant(name, kwargs, reference)')
    if any(v.reference is None for v in spec.variants) and 'slow_reference' not in spec.exempt:
        problems.append(f'{where}: a variant has no slow reference: write one in tests/slow_reference*.py, or say '
                        f"why there is none in exempt['slow_reference']")
    if not spec.identities:
        problems.append(f'{where}.identities is empty: add a check of an identity the loss satisfies '
                        f'(tests/loss_identities.py)')
    problems += [f'{where}.exempt names {name!r}, not one of {sorted(PROPERTIES)}' for name in spec.exempt
                 if name not in PROPERTIES]
    problems += [f'{where}.exempt[{name!r}] gives no reason' for name, reason in spec.exempt.items()
                 if not str(reason).strip()]
    return problems


def spec_problems(registered: Mapping[str, Any], specs: Mapping[str, LossSpec]) -> List[str]:
    """Everything that keeps the loss tests from checking every registered loss in full, one message each."""
    problems = [missing_spec_message(key, cls) for key, cls in registered.items() if key not in specs]
    problems += [f'{SPEC_FILE} has SPECS[{key!r}], but ttm_torchdistill registers no loss {key!r}: remove the spec '
                 f'or register the loss' for key in specs if key not in registered]
    for key, cls in registered.items():
        if key in specs:
            problems += _argument_problems(key, specs[key], accepted_arguments(cls).names)
            problems += _content_problems(key, specs[key])
    return problems


REGISTERED: List[str] = list(registered_losses())


# ---- building, feeding and calling a loss the way the tests do ----

def build(key: str, kwargs: Mapping[str, Any], epoch: Optional[int] = 100):
    """The loss built by torchdistill's registry, with ``set_epoch(epoch)`` when it has one."""
    criterion = get_mid_level_loss({'key': key, 'kwargs': dict(kwargs)})
    if epoch is not None and hasattr(criterion, 'set_epoch'):
        criterion.set_epoch(epoch)
    return criterion


def make_inputs(spec: LossSpec, n: int = 5, c: int = 7, seed: int = 0, scale: float = 3.0,
                dtype: torch.dtype = torch.float64) -> Tuple[Dict[str, Tensor], Tensor]:
    """``(x, y)``: one (n, c) tensor per input (the students' requiring grad) and n targets."""
    g = torch.Generator().manual_seed(seed)
    x = {}
    for name in spec.inputs:
        x[name] = torch.randn(n, c, generator=g, dtype=dtype) * scale
        if name.startswith('student'):
            x[name].requires_grad_()
    return x, torch.randint(0, c, (n,), generator=g)


def students(x: Mapping[str, Tensor]) -> List[str]:
    return [name for name in x if name.startswith('student')]


def io_dicts(criterion, x: Mapping[str, Tensor]) -> Tuple[dict, dict]:
    """The (student, teacher) io dicts holding each input at the path and io the built loss reads it from."""
    dicts = {'student': {}, 'teacher': {}}
    for name, tensor in x.items():
        path, io = getattr(criterion, f'{name}_module_path'), getattr(criterion, f'{name}_module_io')
        slot = dicts[name.split('_')[0]].setdefault(path, {})
        assert io not in slot, f'two inputs at {path!r}/{io!r}: give them different paths in the spec'
        slot[io] = tensor
    return dicts['student'], dicts['teacher']


def options(temperature: Any = None, **more) -> Dict[str, Any]:
    """The temperature option (none for ``None``) plus ``more``."""
    return dict(more) if temperature is None else dict(more, temperature=temperature)


def call_function(spec: LossSpec, variant: Variant, x: Mapping[str, Tensor], y: Tensor, **opts) -> Tensor:
    """``spec.function`` on the inputs, with the variant's kwargs and ``opts``."""
    args = [y if name == 'targets' else x[name] for name in spec.args]
    return spec.function(*args, **variant.kwargs, **opts)


def call_adapter(key: str, spec: LossSpec, variant: Variant, x: Mapping[str, Tensor], y: Tensor, **opts) -> Tensor:
    """The registered adapter built with the variant's kwargs and ``opts``, on the same inputs."""
    criterion = build(key, {**spec.required, **variant.kwargs, **opts})
    return criterion(*io_dicts(criterion, x), y)


def variant_params(prop: Optional[str] = None, temperatures: Optional[Callable[[LossSpec], Sequence]] = None):
    """pytest params ``(key, variant[, temperature])`` of every registered loss with a spec, where ``prop`` holds."""
    params = []
    for key in REGISTERED:
        spec = SPECS.get(key)  # a loss without a spec fails test_loss_specs.py
        if spec is None or (prop is not None and not spec.holds(prop)):
            continue
        for variant in spec.variants:
            if temperatures is None:
                params.append(pytest.param(key, variant, id=f'{key}-{variant.name}'))
            else:
                params += [pytest.param(key, variant, t, id=f'{key}-{variant.name}-{t}') for t in temperatures(spec)]
    return params
