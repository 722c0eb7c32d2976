"""The one place where a registered component that cannot be built becomes a message the user can act on.

A component is a ``{key, kwargs}`` entry of the config that torchdistill turns into an object: the models, the
criterion with each ``WeightedSumLoss`` sub-term and its ``criterion_wrapper``, the optimizer and scheduler,
auxiliary model wrappers, and the processes (``pre_epoch_process``, ``forward_proc``, ...).

:func:`check_components` runs before anything is built (preflight): every key is registered and every ``kwargs``
fits the signature of the registered class (:mod:`ttm_torchdistill.checks.signatures`). What a signature cannot show
(a value the class rejects, a ``TypeError`` from inside a body) is caught at build time and turned into a message by
:func:`explain_box_failure` (and, for models, by :func:`ttm_torchdistill.run.model_loading.build.build_model`). Every
message names the config path, the key the user wrote (never a private base class), the argument at fault, the
closest valid name and the valid ones.
"""
import copy
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Tuple

from torchdistill.core.interfaces.registry import (
    FORWARD_PROC_FUNC_DICT, POST_EPOCH_PROC_FUNC_DICT, POST_FORWARD_PROC_FUNC_DICT, PRE_EPOCH_PROC_FUNC_DICT,
    PRE_FORWARD_PROC_FUNC_DICT,
)
from torchdistill.losses.registry import (
    HIGH_LEVEL_LOSS_DICT, LOSS_DICT, LOSS_WRAPPER_DICT, LOW_LEVEL_LOSS_DICT, MIDDLE_LEVEL_LOSS_DICT, get_mid_level_loss,
)
from torchdistill.models.registry import AUXILIARY_MODEL_WRAPPER_DICT
from torchdistill.optim.registry import OPTIM_DICT, SCHEDULER_DICT

from ...checks.signatures import accepted_arguments, argument_problem, public_text, suggestion
from ...errors import RunError, one_line
from ..model_loading.lookup import model_callable
from .walk import iter_train_stage_configs

#: The process entries of a training stage and the registry each key is looked up in.
PROCESS_REGISTRIES = {
    'pre_epoch_process': PRE_EPOCH_PROC_FUNC_DICT, 'pre_forward_process': PRE_FORWARD_PROC_FUNC_DICT,
    'post_forward_process': POST_FORWARD_PROC_FUNC_DICT, 'post_epoch_process': POST_EPOCH_PROC_FUNC_DICT,
}


@dataclass
class Component:
    """One ``{key, kwargs}`` entry of the config and what torchdistill calls with it.

    :param where: config path of the entry, e.g. ``train.criterion.kwargs.sub_terms.wttm.criterion``.
    :param kind: what it is, for messages (``loss``, ``loss wrapper``, ``optimizer``, ...).
    :param key: the key the user wrote.
    :param target: the registered class or function.
    :param kwargs: the entry's ``kwargs`` (None when absent).
    :param positional: leading parameters torchdistill fills itself (a wrapper's loss, an optimizer's params).
    :param implicit: keyword arguments torchdistill passes itself.
    """
    where: str
    kind: str
    key: str
    target: Any
    kwargs: Any
    positional: int = 0
    implicit: Tuple[str, ...] = ()


def _unknown_key(where: str, kind: str, key: Any, registry: Dict[str, Any]) -> RunError:
    close = suggestion(str(key), registry)
    hint = f" (did you mean '{close}'?)" if close else ''
    return RunError(f'{where}: unknown {kind} {key!r}{hint}; registered: {", ".join(sorted(registry))}')


def _lookup(where: str, kind: str, key: Any, *registries: Dict[str, Any]) -> Any:
    for registry in registries:
        if key in registry:
            return registry[key]
    merged = dict()
    for registry in registries:
        merged.update(registry)
    raise _unknown_key(where, kind, key, merged)


def _loss_components(where: str, criterion: Dict[str, Any]) -> Iterator[Component]:
    # Unknown criterion keys are reported earlier, with every registered key (preflight.check_loss_keys).
    key = criterion.get('key')
    if key in HIGH_LEVEL_LOSS_DICT:
        yield Component(f'{where}.criterion', 'loss', key, HIGH_LEVEL_LOSS_DICT[key],
                        {k: v for k, v in (criterion.get('kwargs') or dict()).items()},
                        positional=len(criterion.get('args') or ()))
    sub_terms = (criterion.get('kwargs') or dict()).get('sub_terms') or dict()
    for name, term in sub_terms.items():
        term_where = f'{where}.criterion.kwargs.sub_terms.{name}'
        if not isinstance(term, dict) or 'criterion' not in term or 'weight' not in term:
            raise RunError(f'{term_where} must be a mapping with `criterion:` and `weight:` (torchdistill reads '
                           f'both), got {term!r}')
        sub = term['criterion']
        if not isinstance(sub, dict):
            continue  # an already built loss module (!import_call)
        sub_key = sub.get('key')
        target = MIDDLE_LEVEL_LOSS_DICT.get(sub_key) or LOSS_DICT.get(sub_key) or LOW_LEVEL_LOSS_DICT.get(sub_key)
        if target is not None:
            yield Component(f'{term_where}.criterion', 'loss', sub_key, target, sub.get('kwargs'))
        wrapper = term.get('criterion_wrapper')
        if isinstance(wrapper, dict) and wrapper:
            wrapper_key = wrapper.get('key')
            target = _lookup(f'{term_where}.criterion_wrapper.key', 'loss wrapper', wrapper_key, LOSS_WRAPPER_DICT)
            yield Component(f'{term_where}.criterion_wrapper', 'loss wrapper', wrapper_key, target,
                            wrapper.get('kwargs'), positional=1 + len(wrapper.get('args') or ()))


def _stage_components(where: str, stage: Dict[str, Any]) -> Iterator[Component]:
    for name, registry in PROCESS_REGISTRIES.items():
        if stage.get(name) is not None:
            _lookup(f'{where}.{name}', name.replace('_', '-'), stage[name], registry)
    for role in ('teacher', 'student'):
        block = stage.get(role)
        if not isinstance(block, dict):
            continue
        if block.get('forward_proc') is not None:
            _lookup(f'{where}.{role}.forward_proc', 'forward process', block['forward_proc'], FORWARD_PROC_FUNC_DICT)
        aux = block.get('auxiliary_model_wrapper')
        if isinstance(aux, dict) and aux.get('key') is not None:
            target = _lookup(f'{where}.{role}.auxiliary_model_wrapper.key', 'auxiliary model wrapper', aux['key'],
                             AUXILIARY_MODEL_WRAPPER_DICT)
            yield Component(f'{where}.{role}.auxiliary_model_wrapper', 'auxiliary model wrapper', aux['key'], target,
                            aux.get('kwargs'), implicit=(f'{role}_model', 'device', 'device_ids', 'distributed'))
    criterion = stage.get('criterion')
    if isinstance(criterion, dict):
        yield from _loss_components(where, criterion)
    optimizer = stage.get('optimizer')
    if isinstance(optimizer, dict) and optimizer:
        target = _lookup(f'{where}.optimizer.key', 'optimizer', optimizer.get('key'), OPTIM_DICT)
        yield Component(f'{where}.optimizer', 'optimizer', optimizer['key'], target, optimizer.get('kwargs'),
                        positional=1)
    scheduler = stage.get('scheduler')
    if isinstance(scheduler, dict) and scheduler:
        target = _lookup(f'{where}.scheduler.key', 'scheduler', scheduler.get('key'), SCHEDULER_DICT)
        yield Component(f'{where}.scheduler', 'scheduler', scheduler['key'], target, scheduler.get('kwargs'),
                        positional=1)


def iter_components(config: Dict[str, Any]) -> Iterator[Component]:
    """Every buildable entry of the config: models, then each training stage's components.

    :raises RunError: an unknown model, process, wrapper, optimizer or scheduler key (with the closest key).
    """
    for name, model_config in (config.get('models') or dict()).items():
        if not isinstance(model_config, dict) or model_config.get('repo_or_dir') is not None:
            continue  # torch.hub models: their signature is only known once downloaded
        target = model_callable(model_config, f'models.{name}', config)
        yield Component(f'models.{name}', 'model', model_config.get('key'), target, model_config.get('kwargs'))
    for where, stage in iter_train_stage_configs(config):
        yield from _stage_components(where, stage)


def component_problem(component: Component) -> Optional[str]:
    """The message for a component whose ``kwargs`` do not fit its signature, or None."""
    kwargs = component.kwargs
    if kwargs is None:
        kwargs = dict()
    if not isinstance(kwargs, dict):
        return (f'{component.where}.kwargs must be a mapping of argument names to values for {component.kind} '
                f'{component.key!r}, got {type(kwargs).__name__} {kwargs!r}')
    accepted = accepted_arguments(component.target, component.positional, component.implicit)
    problem = argument_problem(str(component.key), accepted, kwargs)
    return None if problem is None else f'{component.where}.kwargs: {problem}'


def check_components(config: Dict[str, Any]) -> None:
    """Preflight: every component key is registered and every ``kwargs`` fits its signature.

    :raises RunError: on the first problem, in config order.
    """
    for component in iter_components(config):
        problem = component_problem(component)
        if problem is not None:
            raise RunError(problem)


def _isolated_loss_failure(config: Dict[str, Any]) -> Optional[Tuple[str, str, BaseException]]:
    """Build each loss sub-term alone (on copies) to find the one that fails: ``(where, key, exception)``."""
    for where, stage in iter_train_stage_configs(config):
        criterion = stage.get('criterion')
        if not isinstance(criterion, dict):
            continue
        sub_terms = (criterion.get('kwargs') or dict()).get('sub_terms') or dict()
        for name, term in sub_terms.items():
            if not isinstance(term, dict) or not isinstance(term.get('criterion'), dict):
                continue
            try:
                get_mid_level_loss(copy.deepcopy(term['criterion']), copy.deepcopy(term.get('criterion_wrapper')))
            except Exception as exc:  # the failure being looked for, whatever its type
                return f'{where}.criterion.kwargs.sub_terms.{name}.criterion', str(term['criterion'].get('key')), exc
    return None


def explain_box_failure(exc: BaseException, config: Dict[str, Any]) -> RunError:
    """The message for a failure to set up torchdistill's training box from ``train:`` (the build-time fallback).

    A signature problem preflight could not see is reported as such; otherwise each loss sub-term is built alone
    to name the one that fails; otherwise the original message is given with the ``train:`` block as the place.
    """
    for component in iter_components(config):
        problem = component_problem(component)
        if problem is not None:
            return RunError(problem)
    found = _isolated_loss_failure(config)
    if found is not None:
        where, key, cause = found
        return RunError(f'{where}: loss {key!r} rejected its kwargs: {type(cause).__name__}: '
                        f'{public_text(cause, key)}')
    if isinstance(exc, KeyError):
        missing = _missing_key_message(exc, config)
        if missing is not None:
            return RunError(missing)
    return RunError(f'cannot set up training from `train:`: {type(exc).__name__}: {one_line(exc)}')


def _failing_class(exc: BaseException) -> Optional[type]:
    """The class whose constructor raised ``exc`` (the innermost ``__init__`` frame of the traceback), or None."""
    found, trace = None, exc.__traceback__
    while trace is not None:
        frame = trace.tb_frame
        if frame.f_code.co_name == '__init__' and 'self' in frame.f_locals:
            found = type(frame.f_locals['self'])
        trace = trace.tb_next
    return found


def _missing_key_message(exc: KeyError, config: Dict[str, Any]) -> Optional[str]:
    """A constructor that looked up a key its config entry lacks: name the entry, the class and the key (a config
    written for another torchdistill version uses other names)."""
    cls = _failing_class(exc)
    if cls is None:
        return None
    entries = [c for c in iter_components(config) if c.target is cls or c.key == cls.__name__]
    where = entries[0].where if entries else f'the `train:` block ({cls.__name__})'
    return (f'{where} ({cls.__name__}): torchdistill\'s {cls.__name__} looks for the key {exc.args[0]!r} in its '
            f'configuration, which is not there; the config may be written for another torchdistill version than '
            f'this one ({_torchdistill_version()}): compare the entry with {cls.__module__}.{cls.__qualname__}')


def _torchdistill_version() -> str:
    import torchdistill
    return f'torchdistill {getattr(torchdistill, "__version__", "of unknown version")}'
