"""Every session of a run, as the run records it: which epochs it trained, on which host, with which code and config.

A run may be trained in several sessions (``--resume`` after a kill, a requeue, a time limit). Each session appends
one attempt record (:func:`attempt_record`), with the config paths that changed since the previous session (more
epochs, or a change allowed by ``--continue-changed``). The list is saved in every last-epoch checkpoint, copied
into the run summary (``attempts``, and ``changed_mid_run``: the changes other than more epochs), and written at
the start of each session to ``<dst_ckpt stem>.attempts.json`` with the session's composed config, so that
``study`` can compare a run with what the study now asks without loading a checkpoint.
"""
import json
import os
import socket
import time
from typing import Any, Dict, List, Optional

from ..atomic import atomic_file
from .config.identity import is_epoch_change, tree_changes

ATTEMPTS_FORMAT = 1


def attempts_path(dst_ckpt: str) -> str:
    """``resource/ckpt/x.pt`` -> ``resource/ckpt/x.attempts.json``."""
    return os.path.splitext(dst_ckpt)[0] + '.attempts.json'


def attempt_record(identity: Dict[str, Any], runtime: Dict[str, Any], from_epoch: int, world_size: int,
                   previous_tree: Any, tree: Any, track: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """One session of the run: it starts after ``from_epoch`` completed epochs.

    :param identity: the session's :func:`~.train.checkpoint.run_identity`.
    :param previous_tree: the config the previous session trained with (None for the first, or when a checkpoint
        of an earlier version recorded none).
    :param track: the trackers the session writes to (:meth:`~.track.Tracking.attempt_info`; a resumed session
        continues the tracker run of the last attempt that has one), None when it writes to none.
    """
    changes = tree_changes(previous_tree, tree) if previous_tree is not None and tree is not None else []
    return {'from_epoch': from_epoch, 'started': time.strftime('%Y-%m-%d %H:%M:%S'), 'host': socket.gethostname(),
            'world_size': world_size, 'seed': identity['seed'], 'config': identity.get('config'),
            'config_digest': identity.get('config_digest'),
            'config_sha256': identity['config_sha256'], 'overrides': list(identity['overrides']),
            'code_version': identity.get('code_version'), 'runtime': runtime,
            'more_epochs': [c.text() for c in changes if is_epoch_change(c)],
            'changes': [c.text() for c in changes if not is_epoch_change(c)], 'track': track}


def last_track(attempts: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The ``track`` record of the last attempt that wrote to trackers (None when none did)."""
    return next((attempt['track'] for attempt in reversed(attempts) if attempt.get('track')), None)


def changed_mid_run(attempts: List[Dict[str, Any]]) -> List[str]:
    """The config changes (more epochs aside) between the sessions of a run, as ``path: old -> new`` texts."""
    return [change for attempt in attempts for change in attempt.get('changes') or []]


def write_attempts(path: str, attempts: List[Dict[str, Any]], tree: Any) -> None:
    """Write the attempts file (atomically): the attempts so far and the config of the last one."""
    with atomic_file(path, 'w') as pending:
        json.dump({'format': ATTEMPTS_FORMAT, 'attempts': attempts, 'config_tree': tree}, pending.file, indent=1)
        pending.file.write('\n')


def read_attempts(path: str) -> Optional[Dict[str, Any]]:
    """The attempts file at ``path`` (None when there is none or it cannot be read)."""
    try:
        with open(path, encoding='utf-8') as fp:
            data = json.load(fp)
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get('format') == ATTEMPTS_FORMAT else None


def _recorded_run(dst_ckpt: str) -> Optional[Dict[str, Any]]:
    """``{config, config_digest, finished}`` of the run whose files are at ``dst_ckpt`` (its summary, else its
    attempts file), or None when there is none."""
    summary_path = os.path.splitext(dst_ckpt)[0] + '.json'
    for path, finished in ((summary_path, True), (attempts_path(dst_ckpt), False)):
        try:
            with open(path, encoding='utf-8') as fp:
                data = json.load(fp)
        except (OSError, json.JSONDecodeError):
            continue
        if finished and isinstance(data, dict):
            return {'config': data.get('config'), 'config_digest': data.get('config_digest'), 'finished': True}
        attempts = data.get('attempts') if isinstance(data, dict) else None
        if attempts:
            last = attempts[-1]
            return {'config': last.get('config'), 'config_digest': last.get('config_digest'), 'finished': False}
    return None


def another_runs_files(dst_ckpt: str, config_path: str, config_digest: Optional[str]) -> Optional[str]:
    """What a new run at ``dst_ckpt`` would overwrite of *another* experiment (a config with another digest, or
    another config file when no digest was recorded), as text; None when the files there are this experiment's own
    (or there are none)."""
    recorded = _recorded_run(dst_ckpt)
    if recorded is None:
        return None
    if recorded['config_digest'] is not None and config_digest is not None:
        if recorded['config_digest'] == config_digest:
            return None
    elif recorded['config'] is None or os.path.abspath(recorded['config']) == os.path.abspath(config_path):
        return None
    state = 'finished run' if recorded['finished'] else 'unfinished run'
    digest = f', config digest {recorded["config_digest"][:12]}' if recorded['config_digest'] else ''
    return f'the {state} of {recorded["config"]}{digest}'
