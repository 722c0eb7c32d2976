"""Rank 0's trackers of one session of a run: what is logged, when, and how a resumed run continues its series.

What is logged (names shared by every engine; ``train/loss``, ``train/lr``, ``val/acc1`` and ``val/acc5`` are
torchdistill's own):

- at each ``log_freq`` read of the training steps (the progress line's numbers; no extra read of the device),
  at the global step ``epoch_index * steps_per_epoch + step``: ``train/loss`` (the window's mean),
  ``train/loss/<term>`` for each ``WeightedSumLoss`` term, ``train/temperature/mean|min|max`` where a loss has an
  adaptive temperature, ``train/lr``, ``train/images_per_s`` (all ranks), ``train/peak_mem_mb`` (CUDA: the
  allocator's peak; CPU: the process's peak resident memory);
- after each epoch's validation, at the epoch's number: ``val/acc1``, ``val/acc5``, ``epoch/time_s``,
  ``epoch/train_time_s``, ``epoch/train_loss``, ``epoch/lr`` (the summary's values);
- at the end: ``test/student/acc1|acc5`` and ``test/teacher/acc1|acc5``;
- once, as the run's configuration: the composed config after ``--set``, the overrides, seed, world size, runtime
  options, package versions, config digests and code version.

A run keeps one tracker run over its sessions: the id (W&B) and name are recorded in each attempt of the run
(``attempts[].track``), and a resumed session asks each engine for the last training step, epoch and final test it
holds and logs only later points. So a kill mid-epoch leaves one series: the points the killed session wrote stay,
the resumed session adds the rest. An epoch's points are handed over before its checkpoint is written.
"""
import logging
import platform
import resource
import uuid
from importlib import metadata
from typing import Any, Dict, List, Optional

import torch

from .tracker_plan import MODULES, TrackPlan
from .tensorboard_engine import TensorBoardEngine
from .trackio_engine import TrackioEngine
from .wandb_engine import WandbEngine

logger = logging.getLogger('ttm_torchdistill.run')


def package_versions(engines) -> Dict[str, Optional[str]]:
    """Python's and the installed distributions' versions (None for one that is not installed as a distribution)."""
    versions: Dict[str, Optional[str]] = {'python': platform.python_version()}
    for name in ('torch', 'torchvision', 'torchdistill', 'ttm_torchdistill') + tuple(MODULES[e][0] for e in engines):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: the caching allocator's peak (host bookkeeping, no synchronisation); CPU: the peak resident memory of the
    process (``ru_maxrss``, KiB on Linux)."""
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_values(window, lr: float, images_per_s: float, device: torch.device) -> Dict[str, float]:
    """The numbers of one progress line (:class:`~..train.meter.Window`), by tracker name."""
    values = {'train/loss': window.loss_sum / max(window.steps - window.nonfinite_steps, 1)}
    for term, mean in window.term_means.items():
        values[f'train/loss/{term}'] = mean
    if window.temperatures is not None:
        for stat, value in zip(('mean', 'min', 'max'), window.temperatures):
            values[f'train/temperature/{stat}'] = value
    values.update({'train/lr': lr, 'train/images_per_s': images_per_s, 'train/peak_mem_mb': peak_memory_mb(device)})
    return values


def epoch_values(record: Dict[str, Any]) -> Dict[str, float]:
    """An epoch of the run's history (the summary's ``epochs`` entry), by tracker name."""
    return {'val/acc1': record['val_top1'], 'val/acc5': record['val_top5'], 'epoch/time_s': record['epoch_time_s'],
            'epoch/train_time_s': record['train_time_s'], 'epoch/train_loss': record['train_loss'],
            'epoch/lr': record['lr']}


def test_values(results: Dict[str, Any]) -> Dict[str, float]:
    """The final test (``{'student': {'top1', 'top5'}, 'teacher': ...}``), by tracker name."""
    return {f'test/{role}/acc{k}': metrics[f'top{k}'] for role, metrics in results.items() if metrics
            for k in (1, 5)}


def run_config(identity: Dict[str, Any], config_tree: Any, runtime: Dict[str, Any], world_size: int,
               plan: TrackPlan, device: torch.device) -> Dict[str, Any]:
    """The run's configuration as the trackers record it.

    :param identity: the run's identity (``checkpoint.run_identity``: seed, config path and digests, overrides, code
        version).
    :param config_tree: the composed config after ``--set``, as JSON data.
    """
    return {'config': config_tree, 'config_path': identity.get('config'), 'overrides': list(identity['overrides']),
            'seed': identity['seed'], 'seed_drawn': identity.get('seed_drawn'), 'world_size': world_size,
            'device': str(device), 'runtime': runtime, 'config_digest': identity.get('config_digest'),
            'config_sha256': identity.get('config_sha256'), 'code_version': identity.get('code_version'),
            'versions': package_versions(plan.engine_names()), 'run_name': plan.name, 'group': plan.group}


class Tracking:
    """The run's trackers in this process (rank 0 only: other ranks have none).

    :param previous: the ``track`` record of the run's last tracked attempt (None for a new run or one never tracked
        before): its id is kept, and the engines it names continue their runs.
    """

    def __init__(self, plan: TrackPlan, run_config: Dict[str, Any], previous: Optional[Dict[str, Any]],
                 device: torch.device):
        self.plan, self.run_config, self.device = plan, run_config, device
        self.run_id = previous['id'] if previous else uuid.uuid4().hex[:16]
        self.continued = set(previous.get('engines') or ()) if previous else set()
        self.engines: List[Any] = []
        self.steps = 1
        self.last_epoch: Optional[int] = None

    def _open(self, engine: str, continuing: bool):
        spec = next(s for s in self.plan.engines if s.engine == engine)
        if engine == 'wandb':
            return WandbEngine(self.plan, spec, continuing, self.run_config, self.run_id)
        cls = TensorBoardEngine if engine == 'tensorboard' else TrackioEngine
        return cls(self.plan, spec, continuing, self.run_config)

    def start(self, first_epoch: int, steps: int, history: List[Dict[str, Any]]) -> None:
        """Open the trackers before the first epoch of this session (``first_epoch`` 0-indexed, ``steps`` per epoch);
        an engine new to a resumed run gets the epochs already trained from ``history``."""
        self.steps = max(steps, 1)
        for engine in self.plan.engine_names():
            continuing = first_epoch > 0 and engine in self.continued
            opened = self._open(engine, continuing)
            self.engines.append(opened)
            if first_epoch > 0 and not continuing:
                for record in history:
                    opened.log(epoch_values(record), record['epoch'] * self.steps, record['epoch'])
        self.last_epoch = first_epoch or None
        folders = ', '.join(f'{e.name} {e.folder}' for e in self.engines)
        logger.info(f'Tracking {self.plan.name} (project {self.plan.project}, id {self.run_id}): {folders}')

    def attempt_info(self) -> Dict[str, Any]:
        """What an attempt records: the tracker run's id, name, project, engines and folders."""
        return {'id': self.run_id, 'name': self.plan.name, 'project': self.plan.project,
                'engines': [e.name for e in self.engines], 'folders': {e.name: e.folder for e in self.engines}}

    def train_point(self, epoch: int, step: int, steps: int, window, lr: float, images_per_s: float) -> None:
        """A progress line's numbers (``epoch`` 0-indexed, ``step`` 1-indexed of the epoch's ``steps``)."""
        self.steps = steps  # a later stage may read another loader
        global_step = epoch * steps + step
        values = train_values(window, lr, images_per_s, self.device)
        for engine in self.engines:
            if engine.marks[0] is None or global_step > engine.marks[0]:
                engine.log(values, global_step, None)

    def epoch_point(self, record: Dict[str, Any]) -> None:
        """An epoch's validation and times (before its checkpoint is written: each engine's files are up to date)."""
        epoch = record['epoch']
        for engine in self.engines:
            if engine.marks[1] is None or epoch > engine.marks[1]:
                engine.log(epoch_values(record), epoch * self.steps, epoch)
            engine.flush()
        self.last_epoch = epoch

    def test_point(self, results: Dict[str, Any]) -> None:
        """The final test, at the last epoch (once: a session resumed after it, before the summary, adds none)."""
        values, epoch = test_values(results), self.last_epoch or 0
        for engine in self.engines if values else ():
            if engine.marks[2] is None or epoch > engine.marks[2]:
                engine.final(values, epoch)

    def close(self, failure: Optional[str]) -> None:
        """End every tracker run: finished, or failed with ``failure`` (the run's error line)."""
        for engine in self.engines:
            engine.close(failure, self.last_epoch)
        self.engines = []
