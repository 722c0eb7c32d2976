"""Weights & Biases: offline unless told otherwise (``tracker.kwargs.mode`` or ``$WANDB_MODE``), so nothing needs an
account; each session writes ``<track_dir>/wandb/offline-run-<time>-<id>``, all with the run's id, and
``wandb sync <track_dir>/wandb/offline-run-*-<id>`` uploads them later as one run, in order.

Steps: W&B's step is the global training step (monotonic over the sessions of a run); ``train/*`` are charted
against ``train/step``, ``val/*`` and ``epoch/*`` against ``epoch``, the final test goes to the run's summary. A
resumed session reads what the earlier sessions of the run wrote (their ``.wandb`` files, with W&B's own record
schema; online: the run's summary) and adds only later points. A failed run ends with exit code 1 (W&B shows it
failed) and its error line in the summary.
"""
import glob
import json
import os
import struct
from typing import Any, Dict, Iterator, Optional, Tuple

from .tracker_plan import EngineSpec, TrackPlan

#: ``.wandb`` files: a 7-byte header (``:W&B``, magic, version), then records of W&B's protobuf ``Record`` framed as
#: a LevelDB log (32 KiB blocks; each chunk a 7-byte header: crc32c, length, type full/first/middle/last).
HEADER, BLOCK, CHUNK_HEADER = 7, 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _chunks(data: bytes) -> Iterator[Tuple[int, bytes]]:
    pos = HEADER
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack('<IHB', data[pos:pos + CHUNK_HEADER])
        if kind == 0:  # zero padding up to the block's end
            pos += left
            continue
        yield kind, data[pos + CHUNK_HEADER:pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length


def wandb_records(path: str) -> Iterator[Any]:
    """The records of a ``.wandb`` file as W&B's ``Record`` messages (a record cut by a kill is left out)."""
    from wandb.proto import wandb_internal_pb2
    with open(path, 'rb') as fp:
        data = fp.read()
    if data[:4] != b':W&B':
        raise ValueError(f'{path}: not a W&B run file (it starts with {data[:4]!r}, expected b":W&B")')
    pending = None
    for kind, chunk in _chunks(data):
        if kind in (FULL, FIRST):
            pending = chunk
        elif pending is not None:
            pending += chunk
        if kind in (FULL, LAST) and pending is not None:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = None


def history_rows(path: str) -> Iterator[Dict[str, Any]]:
    """The history rows (``run.log`` calls) of a ``.wandb`` file as ``{key: value}``."""
    for record in wandb_records(path):
        if record.WhichOneof('record_type') == 'history':
            yield {item.key or '/'.join(item.nested_key): json.loads(item.value_json) for item in record.history.item}


#: seconds between W&B's writes of its ``.wandb`` file (W&B's default: 15); a killed process loses what W&B had not
#: written yet, and a resumed run continues from what the file holds
FLUSH_INTERVAL_S = 1.0


def settings_kwargs(wandb) -> Dict[str, Any]:
    """W&B's settings beyond the defaults: console capture off (it would copy the run's log lines into W&B),
    silent (its banner stays off the run's stderr), and the file written every :data:`FLUSH_INTERVAL_S` seconds where
    this W&B has the setting (``x_transaction_log_flush_interval``, experimental in W&B 0.31)."""
    settings = {'console': 'off', 'silent': True}
    if 'x_transaction_log_flush_interval' in wandb.Settings.model_fields:
        settings['x_transaction_log_flush_interval'] = FLUSH_INTERVAL_S
    return settings


def session_files(folder: str, run_id: str) -> list:
    """The ``.wandb`` files of every session of run ``run_id`` below ``folder``, oldest first."""
    return sorted(glob.glob(os.path.join(folder, 'wandb', f'*-{run_id}', f'run-{run_id}.wandb')))


class WandbEngine:
    """One session of the run's W&B run; ``spec.kwargs`` (the config's ``tracker.kwargs``) go to ``wandb.init``."""
    name = 'wandb'

    def __init__(self, plan: TrackPlan, spec: EngineSpec, continuing: bool, run_config: Dict[str, Any],
                 run_id: str):
        import wandb
        kwargs = dict(spec.kwargs)
        kwargs.setdefault('mode', os.environ.get('WANDB_MODE') or 'offline')
        for key, value in (('project', plan.project), ('name', plan.name), ('group', plan.group), ('id', run_id),
                           ('dir', plan.folder), ('resume', 'allow'), ('config', run_config)):
            kwargs.setdefault(key, value)
        kwargs.setdefault('settings', wandb.Settings(**settings_kwargs(wandb)))
        os.makedirs(kwargs['dir'], exist_ok=True)
        earlier = session_files(kwargs['dir'], kwargs['id']) if continuing else []
        self.run = wandb.init(**kwargs)
        self.folder = os.path.dirname(self.run.dir)
        self.marks = self._marks(earlier) if continuing else (None, None, None)
        for pattern, axis in (('train/*', 'train/step'), ('val/*', 'epoch'), ('epoch/*', 'epoch')):
            self.run.define_metric(pattern, step_metric=axis)

    def _marks(self, earlier: list) -> Tuple[Optional[int], ...]:
        """The last training step and epoch the run holds (the final test is in the summary: written again)."""
        if self.run.offline:
            rows = [row for path in earlier for row in history_rows(path)]
            return (max((int(row['train/step']) for row in rows if 'train/loss' in row), default=None),
                    max((int(row['epoch']) for row in rows if 'val/acc1' in row), default=None), None)
        summary = self.run.summary
        return (summary.get('train/step'), summary.get('epoch') if 'val/acc1' in summary else None, None)

    def log(self, values: Dict[str, float], step: int, epoch: Optional[int]) -> None:
        axis = {'train/step': step} if epoch is None else {'epoch': epoch}
        self.run.log({**values, **axis}, step=step)

    def flush(self) -> None:
        """Nothing to do: ``run.log`` hands each row to W&B's service process, which writes it."""

    def final(self, values: Dict[str, float], epoch: int) -> None:
        self.run.summary.update(values)

    def close(self, failure: Optional[str], epoch: Optional[int]) -> None:
        if failure:
            self.run.summary['failure'] = failure
        self.run.finish(exit_code=1 if failure else 0)
