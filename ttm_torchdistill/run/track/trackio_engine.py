"""trackio: its local SQLite database in ``<track_dir>/trackio`` (trackio's ``$TRACKIO_DIR``; ``TRACKIO_DIR=<track_dir>/
trackio trackio show`` opens the dashboard), one run per run name, continued by name when the run resumes.

Training points are at the global step, epoch points and the final test at the epoch's number (with an ``epoch``
field). A resumed session reads what the run holds (trackio's ``SQLiteStorage.get_logs``) and adds only later
points. trackio has no run status: a failed run gets an error alert (shown by the dashboard) with its error line.
"""
import os
import sys
from typing import Any, Dict, Optional, Tuple

from ...errors import RunError
from .tracker_plan import EngineSpec, TrackPlan


def import_trackio(folder: str):
    """trackio, pointed at ``folder``: trackio reads ``$TRACKIO_DIR`` once, when it is imported (the variable is put
    back afterwards, so that this process's environment stays as it was)."""
    folder = os.path.abspath(folder)
    module = sys.modules.get('trackio.utils')
    if module is None:
        previous = os.environ.get('TRACKIO_DIR')
        os.environ['TRACKIO_DIR'] = folder
        try:
            import trackio
        finally:
            if previous is None:
                del os.environ['TRACKIO_DIR']
            else:
                os.environ['TRACKIO_DIR'] = previous
        return trackio
    current = getattr(module, 'TRACKIO_DIR', None)
    if current is not None and os.path.abspath(str(current)) != folder:
        raise RunError(f'trackio was imported in this process with its folder {current}; this run writes to {folder} '
                       f'(run the command in a new process, or give --track-dir {os.path.dirname(str(current))})')
    import trackio
    return trackio


class TrackioEngine:
    """One session of the run's trackio run; ``spec.kwargs`` (the config's ``tracker.kwargs``) go to
    ``trackio.init``."""
    name = 'trackio'

    def __init__(self, plan: TrackPlan, spec: EngineSpec, continuing: bool, run_config: Dict[str, Any]):
        self.folder = os.path.join(plan.folder, 'trackio')
        self.trackio = trackio = import_trackio(self.folder)
        kwargs = dict(spec.kwargs)
        for key, value in (('project', plan.project), ('name', plan.name), ('group', plan.group),
                           ('config', run_config), ('resume', 'allow' if continuing else 'never'), ('embed', False)):
            kwargs.setdefault(key, value)
        self.project, self.run_name = kwargs['project'], kwargs['name']
        self.marks: Tuple[Optional[int], ...] = self._marks() if continuing else (None, None, None)
        trackio.init(**kwargs)

    def _marks(self) -> Tuple[Optional[int], ...]:
        """The last training step, epoch and tested epoch the run (the latest of its name) holds."""
        from trackio.sqlite_storage import SQLiteStorage
        rows = SQLiteStorage.get_logs(self.project, self.run_name)
        return tuple(max((row['step'] for row in rows if tag in row), default=None)
                     for tag in ('train/loss', 'val/acc1', 'test/student/acc1'))

    def log(self, values: Dict[str, float], step: int, epoch: Optional[int]) -> None:
        if epoch is None:
            self.trackio.log(values, step=step)
        else:
            self.trackio.log({**values, 'epoch': epoch}, step=epoch)

    def flush(self) -> None:
        """Nothing to do: trackio's own thread writes its queue to the database every half second."""

    def final(self, values: Dict[str, float], epoch: int) -> None:
        self.log(values, epoch, epoch)

    def close(self, failure: Optional[str], epoch: Optional[int]) -> None:
        if failure:
            self.trackio.alert(title='run failed', text=failure, level=self.trackio.AlertLevel.ERROR)
        self.trackio.finish()
