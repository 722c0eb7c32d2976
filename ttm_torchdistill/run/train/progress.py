"""The progress lines of an epoch: loss and sub-terms, adaptive temperature, lr, img/s and ETA."""
import time
from typing import Optional, Tuple

from ..console import format_duration
from .meter import Window


class EpochProgress:
    """Formats the periodic progress line from the windows read by :class:`StepMeter`; keeps the epoch's mean loss.

    :param epoch: 1-indexed epoch.
    :param num_epochs: total epochs of the run.
    :param steps: steps in this epoch.
    """

    def __init__(self, epoch: int, num_epochs: int, steps: int):
        self.epoch, self.num_epochs, self.steps = epoch, num_epochs, steps
        self.start = time.time()
        self.loss_sum, self.loss_count, self.skipped = 0.0, 0, 0
        self.window: Optional[Window] = None
        self.window_images, self.window_start = 0, time.time()
        self.images = 0  # of this process in the epoch (the summary's train_images multiplies by the world size)
        self.train_time = 0.0  # seconds of the pre-epoch process and the training steps, set when they are done
        self.temps: Optional[Tuple[float, float, float]] = None
        self.images_per_s = 0.0  # of the last line's window, over all processes

    def count_images(self, batch_size: int) -> None:
        self.window_images += batch_size
        self.images += batch_size

    def add_window(self, window: Window) -> None:
        """Take a window of steps read from the device."""
        self.loss_sum += window.loss_sum
        self.loss_count += window.steps - window.nonfinite_steps
        self.skipped += max(window.nonfinite_steps, window.skipped_steps)
        self.window = window
        if window.temperatures is not None:
            self.temps = window.temperatures

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.loss_count, 1)

    def line(self, step: int, lr: float, world_size: int) -> str:
        """The progress line after ``step`` (1-indexed), from the last window; resets the image counter."""
        now = time.time()
        window = self.window
        finite_steps = max(window.steps - window.nonfinite_steps, 1) if window is not None else 1
        loss = window.loss_sum / finite_steps if window is not None else float('nan')
        terms = ', '.join(f'{k} {v:.4f}' for k, v in window.term_means.items()) if window is not None else ''
        imgs = self.images_per_s = self.window_images * world_size / max(now - self.window_start, 1e-9)
        per_step = (now - self.start) / max(step, 1)
        eta_epoch = per_step * (self.steps - step)
        eta_total = eta_epoch + per_step * self.steps * (self.num_epochs - self.epoch)
        text = (f'Epoch {self.epoch}/{self.num_epochs}  step {step}/{self.steps}  '
                f'loss {loss:.4f}' + (f' ({terms})' if terms else ''))
        if self.temps is not None:
            text += f'  T mean {self.temps[0]:.3f} min {self.temps[1]:.3f} max {self.temps[2]:.3f}'
        if self.skipped:
            text += f'  skipped steps {self.skipped}'
        text += (f'  lr {lr:.6g}  {imgs:.1f} img/s  ETA epoch {format_duration(eta_epoch)} '
                 f'total {format_duration(eta_total)}')
        self.window_images, self.window_start = 0, now
        return text
