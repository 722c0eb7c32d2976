"""ttm_torchdistill: TTM/WTTM, DIST and max-logit adaptive-temperature distillation for torchdistill.

Importing the package registers its losses, models, processes and MLKD's two-view wrappers in torchdistill's
registries (name it under ``dependencies:`` in a torchdistill YAML to make them available there).
"""
__version__ = '0.1.0'

from . import functional, losses  # noqa: E402,F401  (importing losses registers them)
from . import models  # noqa: E402,F401  (importing models registers them)
from . import processes  # noqa: E402,F401  (registers eval_teacher_and_set_loss_epoch)
from . import feature_losses  # noqa: E402,F401  (registers PenultimateEmbedding and ITRDLoss)
from . import views  # noqa: E402,F401  (registers TwoViewDataset and TwoViewModel)
from . import datasets  # noqa: E402,F401  (registers CIFAR100Format and CIFAR10Format)
