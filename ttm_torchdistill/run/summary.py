"""The machine-readable run summary (``<dst_ckpt without suffix>.json``) read by ``python -m ttm_torchdistill report``.

Schema (format 1)::

    {"format": 1, "config": str, "experiment": str, "dataset": str|null, "reference": dict|null,
     "seed": int, "seed_drawn": bool, "sampler_seed": int|null, "world_size": int, "overrides": [str],
     "config_sha256": str,
     "planned_epochs": int|null,
     "epochs": [{"epoch", "lr", "train_loss", "val_top1", "val_top5", "epoch_time_s", "train_time_s",
                 "train_images"}],
     "best": {"epoch", "top1", "top5"}, "last": {"epoch", "top1", "top5"},
     "test": {"student": {"top1", "top5"}, "teacher": {"top1", "top5"}|null},
     "checkpoints": {"best": str, "last": str}, "wall_time_s": float, "session_time_s": float,
     "runtime": {"device_data", "amp", "channels_last", "compile", "teacher_cache"},
     "config_digest": str|null, "code_version": str|null, "attempts": [{...}], "changed_mid_run": [str],
     "selected_on": str|null, "holdout": {"size", "asked", "seed", "class_balanced", "dataset", "held_out",
                                           "indices_sha256"}|null}

``epoch_time_s`` is the whole epoch (training and validation), ``train_time_s`` its training part, and
``train_images`` the images trained on in the epoch over all processes (both absent from summaries written
before they were recorded). ``sampler_seed`` seeds the training order when it is set explicitly: a
``DistributedSampler``'s under torchrun (the run seed unless the config's sampler sets one) or the device loader's;
null in a one-process run on torchdistill's loader, whose order comes from the run seed's generator.
``config_digest`` identifies the composed config after ``--set`` (paths that move files or tune loading left out,
:mod:`~ttm_torchdistill.run.config.identity`), ``attempts`` lists every session of the run
(:mod:`~ttm_torchdistill.run.attempts`) and ``changed_mid_run`` the config changes between them other than more
epochs (``--resume --continue-changed``): ``report`` never averages such a run with others. ``selected_on`` is the
dataset the best epoch was chosen on (the validation loader's; the test set in the papers' protocol), ``holdout`` the
split of ``--holdout`` (:mod:`~ttm_torchdistill.run.config.holdout`).
"""
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from ..atomic import atomic_file
from .attempts import changed_mid_run

SUMMARY_FORMAT = 1


def experiment_name(config_path: str) -> Tuple[str, Optional[str]]:
    """``configs/cifar100/wttm/a_from_b.yaml`` -> ``('cifar100/wttm/a_from_b', 'cifar100')``; else ``(stem, None)``.

    The part below the last ``configs`` folder of the path names the experiment; its first folder the dataset.
    """
    parts = os.path.normpath(os.path.abspath(os.path.expanduser(config_path))).split(os.sep)
    stem = os.path.splitext(parts[-1])[0]
    if 'configs' in parts[:-1]:
        index = len(parts) - 1 - parts[::-1].index('configs')
        below = parts[index + 1:-1] + [stem]
        if len(below) > 1:
            return '/'.join(below), below[0]
    return stem, None


def build_summary(config_path: str, reference: Optional[Dict[str, Any]], identity: Dict[str, Any],
                  world_size: int, planned_epochs: Optional[int], epochs: List[Dict[str, Any]],
                  best: Dict[str, Any], test: Dict[str, Any], checkpoints: Dict[str, str],
                  wall_time_s: float, runtime: Optional[Dict[str, Any]] = None,
                  session_time_s: Optional[float] = None, sampler_seed: Optional[int] = None,
                  attempts: Optional[List[Dict[str, Any]]] = None, selected_on: Optional[str] = None,
                  holdout: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Assemble the summary dict with exactly the keys of the schema above.

    :param wall_time_s: training time, all sessions of a resumed run added up (the epochs, validation and
        checkpoints; not start-up or the final test).
    :param session_time_s: this invocation from start-up to the summary (building, the epochs it trained, the final
        test).

    :param identity: ``{'seed', 'config_sha256', 'overrides'}`` of the run (``checkpoint.run_identity``).
    :param runtime: the run's speed options (``Runtime.as_dict()``).
    :param planned_epochs: the config's number of epochs, so a shortened or unfinished run can be told apart.
    """
    experiment, dataset = experiment_name(config_path)
    last = epochs[-1] if epochs else None
    return {
        'format': SUMMARY_FORMAT, 'config': config_path, 'experiment': experiment, 'dataset': dataset,
        'reference': reference if isinstance(reference, dict) else None, 'seed': identity['seed'],
        'seed_drawn': bool(identity.get('seed_drawn', False)), 'sampler_seed': sampler_seed, 'world_size': world_size,
        'overrides': list(identity['overrides']),
        'config_sha256': identity['config_sha256'], 'planned_epochs': planned_epochs, 'epochs': epochs,
        'best': {'epoch': best.get('epoch'), 'top1': best.get('top1'), 'top5': best.get('top5')}
        if best.get('epoch') is not None else {'epoch': None, 'top1': None, 'top5': None},
        'last': {'epoch': last['epoch'], 'top1': last['val_top1'], 'top5': last['val_top5']} if last else
        {'epoch': None, 'top1': None, 'top5': None},
        'test': test, 'checkpoints': checkpoints, 'wall_time_s': wall_time_s, 'session_time_s': session_time_s,
        'runtime': runtime, 'config_digest': identity.get('config_digest'),
        'code_version': identity.get('code_version'), 'attempts': list(attempts or []),
        'changed_mid_run': changed_mid_run(attempts or []), 'selected_on': selected_on, 'holdout': holdout,
    }


def write_summary(path: str, summary: Dict[str, Any]) -> None:
    """Write ``summary`` as JSON atomically (a reader never sees half a file)."""
    with atomic_file(path, 'w') as pending:
        json.dump(summary, pending.file, indent=2)
        pending.file.write('\n')
