"""Two views of each image (MLKD's weak and strong augmentation) inside torchdistill's pipeline.

:class:`StrongAugment` is the strong view's augmentation (on PIL images; :mod:`.device_augment` is the same on
batches of tensors, for the device data path); :class:`TwoViewDataset` (dataset wrapper) and :class:`TwoViewModel`
(auxiliary model wrapper) carry both views through one step (:mod:`.two_view`).
"""
from .augment import StrongAugment  # noqa: F401  (YAML: key 'ttm_torchdistill.views.StrongAugment')
from .two_view import TWO_VIEW_DATASET, TwoViewDataset, TwoViewModel  # noqa: F401  (registers both wrappers)
