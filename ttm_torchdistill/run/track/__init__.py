"""Watch runs where researchers already look: TensorBoard, Weights & Biases and trackio (docs/tracking.md).

:mod:`.plan` decides which trackers a run writes to and checks that their packages are installed (before anything is
built); :mod:`.tracking` is what rank 0 logs, from the numbers the runner reads anyway; one module per engine.
"""
from .tracker_plan import TrackPlan, check_installed, plan_tracking
from .tracking import Tracking, run_config

__all__ = ['TrackPlan', 'Tracking', 'check_installed', 'plan_tracking', 'run_config']
