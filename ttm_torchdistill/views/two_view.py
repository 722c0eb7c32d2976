"""MLKD's two views of each image inside torchdistill's pipeline: a dataset wrapper and a model wrapper.

The authors of MLKD train on a weak and a strong view of every image (their ``MultipleApply`` of two
pipelines, each with its own crop and flip) and run the student and the teacher **once per view**: two forward
passes, so that BatchNorm normalises each view with its own batch statistics (concatenating the views into one
batch would mix them). torchdistill 1.1.5 feeds one batch to one forward process per model; these two pieces
fit the two views into that:

* ``TwoViewDataset`` (dataset wrapper, ``train_data_loader.dataset_wrapper``): each item is
  ``(views, target, supp_dict)`` with ``views`` of shape ``(2, C, H, W)``: the weak view (the wrapped dataset's
  own ``transform``) and the strong view (``strong_transform``), both made from the same raw image. Stacking them
  keeps the batch one tensor ``(N, 2, C, H, W)``, which the runner moves, counts and logs as usual.
* ``TwoViewModel`` (auxiliary model wrapper, ``train.student``/``train.teacher``): runs the wrapped model on
  ``views[:, 0]`` and then on ``views[:, 1]``, passes the logits through the identity modules ``weak`` and
  ``strong`` (hook their outputs to read each view), and returns the weak view's logits (the view the authors
  report training accuracy on). It has no parameters; the student's checkpoint is the wrapped model's.

Cross-entropy on both views (``CE(weak) + CE(strong)``, the authors' ``loss_cls``) is two ``SimpleLossWrapper``
sub-terms of ``WeightedSumLoss`` reading ``weak`` and ``strong``; ``MLKDLoss`` reads both views of both models.

.. code-block:: yaml

    train:
      train_data_loader:
        dataset_id: 'cifar100/train'   # its transform: the weak view (crop, flip, ToTensor, Normalize)
        dataset_wrapper:
          key: 'TwoViewDataset'
          kwargs:
            strong_transform: !import_call
              key: 'torchvision.transforms.Compose'
              init:
                kwargs:
                  transforms:
                    - !import_call {key: 'torchvision.transforms.RandomCrop', init: {kwargs: {size: 32, padding: 4}}}
                    - !import_call {key: 'torchvision.transforms.RandomHorizontalFlip', init: {kwargs: {p: 0.5}}}
                    - !import_call {key: 'ttm_torchdistill.views.StrongAugment'}
                    - !import_call {key: 'torchvision.transforms.ToTensor'}
                    - !import_call
                      key: 'torchvision.transforms.Normalize'
                      init: {kwargs: {mean: [0.5071, 0.4867, 0.4408], std: [0.2675, 0.2565, 0.2761]}}
      teacher:
        auxiliary_model_wrapper: {key: 'TwoViewModel'}
        forward_hook: {input: [], output: ['weak', 'strong']}
        requires_grad: False
      student:
        auxiliary_model_wrapper: {key: 'TwoViewModel'}
        forward_hook: {input: [], output: ['weak', 'strong']}
        requires_grad: True

Jin, Wang & Lin, "Multi-Level Logit Distillation", CVPR 2023
(https://github.com/Jin-Ying/Multi-Level-Logit-Distillation); the same two-view loop in
https://github.com/kei813121/atkd (``helper/loops.py``, ``dataset/cifar100.py``).

Registered keys: ``TwoViewDataset`` (dataset wrapper), ``TwoViewModel`` (auxiliary model wrapper).
"""
import copy
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn
from torchdistill.datasets.wrapper import BaseDatasetWrapper
from torchdistill.models.wrapper import AuxiliaryModelWrapper

from .._registry import auxiliary_model_wrapper, dataset_wrapper

__all__ = ['TWO_VIEW_DATASET', 'TWO_VIEW_MODEL', 'TwoViewDataset', 'TwoViewModel']

#: The registry key of the two-view dataset wrapper (the runner's device data path translates its strong view).
TWO_VIEW_DATASET = 'TwoViewDataset'
#: The registry key of the two-view model wrapper (a teacher cache serves the weak view of a teacher wrapped in it).
TWO_VIEW_MODEL = 'TwoViewModel'


def _describe(obj: Any) -> str:
    return f'{type(obj).__module__}.{type(obj).__qualname__}'


@dataset_wrapper(TWO_VIEW_DATASET)
class TwoViewDataset(BaseDatasetWrapper):
    """A weak and a strong view of each image, stacked: items ``(views (2, C, H, W), target, {})``.

    The weak view is the wrapped dataset's own ``transform``; the strong view is ``strong_transform``; each
    starts from the raw image, so each draws its own crop and flip, as the authors' ``MultipleApply`` does. The raw
    image is read from a shallow copy of the dataset whose ``transform`` is None (the dataset itself is not
    changed and its arrays are shared, not copied).

    :param org_dataset: a dataset that applies its ``transform`` attribute to a raw (PIL) image in
        ``__getitem__`` and returns ``(image, target)``, as torchvision's CIFAR and ImageFolder do; its
        ``transform`` makes the weak view.
    :param strong_transform: the strong view's pipeline (e.g. crop, flip,
        :class:`~ttm_torchdistill.views.StrongAugment`, ToTensor, Normalize); it must give a tensor of
        the weak view's shape.
    :raises TypeError: a dataset without a ``transform`` (or with None), or a strong transform that is not callable.

    .. code-block:: yaml

        train_data_loader:
          dataset_id: 'cifar100/train'
          dataset_wrapper:
            key: 'TwoViewDataset'
            kwargs:
              strong_transform: !import_call  # crop, flip, StrongAugment, ToTensor, Normalize
                key: 'torchvision.transforms.Compose'
                init: {kwargs: {transforms: [...]}}
    """

    def __init__(self, org_dataset, strong_transform: Callable):
        super().__init__(org_dataset)
        weak = getattr(org_dataset, 'transform', None)
        if weak is None:
            raise TypeError(f'TwoViewDataset needs a dataset whose `transform` makes the weak view; '
                            f'{_describe(org_dataset)} has transform {weak!r}')
        if not callable(strong_transform):
            raise TypeError(f'strong_transform must be a callable transform, got {_describe(strong_transform)}')
        self.weak_transform = weak
        self.strong_transform = strong_transform
        self.raw_dataset = copy.copy(org_dataset)
        self.raw_dataset.transform = None

    def __getitem__(self, index):
        item = self.raw_dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f'TwoViewDataset expects (image, target) items from {_describe(self.org_dataset)}, got '
                            f'{type(item).__name__}')
        image, target = item
        if isinstance(image, Tensor):
            raise TypeError(f'{_describe(self.org_dataset)} returned a tensor with its `transform` set to None: '
                            'TwoViewDataset needs the raw image to make both views (a dataset that transforms '
                            'through another attribute cannot be wrapped)')
        weak, strong = self.weak_transform(image), self.strong_transform(image)
        for name, view in (('weak (the dataset\'s transform)', weak), ('strong (strong_transform)', strong)):
            if not isinstance(view, Tensor):
                raise TypeError(f'the {name} view must be a tensor (end the pipeline with ToTensor), got '
                                f'{type(view).__name__}')
        if weak.shape != strong.shape:
            raise ValueError(f'the weak and strong views must have the same shape to be batched together, got '
                             f'{tuple(weak.shape)} and {tuple(strong.shape)}')
        return torch.stack([weak, strong]), target, dict()


@auxiliary_model_wrapper(TWO_VIEW_MODEL)
class TwoViewModel(AuxiliaryModelWrapper):
    """Run a model once per view of a ``(N, 2, C, H, W)`` batch; hook ``weak`` and ``strong`` for the logits.

    ``forward(views)`` returns ``model(views[:, 0])`` (the weak view's output) after computing
    ``model(views[:, 1])``; the outputs also pass through the identity modules ``weak`` and ``strong``. The two
    calls are separate, so a model in train mode normalises each view with that view's batch statistics and
    updates its BatchNorm running statistics twice per step (weak, then strong), as in the authors' loop. One call
    of this module is one forward of DistributedDataParallel, which wraps it whole.

    A wrapped module with a ``two_view_forward(weak, strong)`` method makes both outputs in one call instead (the
    runner's cached teacher: the weak view's logits from a teacher cache, the strong view's from the teacher).

    :param teacher_model: the teacher (given by torchdistill for a teacher-side wrapper).
    :param student_model: the student (given by torchdistill for a student-side wrapper).
    :param device: given by torchdistill; unused (the box moves the modules).
    :param device_ids: given by torchdistill; unused.
    :param distributed: given by torchdistill; unused (the box wraps the whole wrapper).
    :param find_unused_parameters: given by torchdistill; unused.

    .. code-block:: yaml

        student:
          auxiliary_model_wrapper: {key: 'TwoViewModel'}
          forward_hook: {input: [], output: ['weak', 'strong']}
          requires_grad: True
    """

    def __init__(self, teacher_model: Optional[nn.Module] = None, student_model: Optional[nn.Module] = None,
                 device=None, device_ids=None, distributed: bool = False, find_unused_parameters=None):
        super().__init__()
        if (teacher_model is None) == (student_model is None):
            raise ValueError('TwoViewModel wraps exactly one model: give teacher_model or student_model '
                             '(torchdistill passes the one of the block the wrapper is configured in)')
        model = teacher_model if teacher_model is not None else student_model
        if not isinstance(model, nn.Module):
            raise TypeError(f'the wrapped model must be an nn.Module, got {type(model).__name__}')
        self.model = model
        self.weak = nn.Identity()
        self.strong = nn.Identity()

    def forward(self, views: Tensor) -> Tensor:
        if not isinstance(views, Tensor) or views.dim() < 2 or views.shape[1] != 2:
            shape = tuple(views.shape) if isinstance(views, Tensor) else type(views).__name__
            raise ValueError(f'TwoViewModel expects a batch of two views of shape (N, 2, ...) from the '
                             f'{TWO_VIEW_DATASET} dataset wrapper, got {shape}')
        weak, strong = views.unbind(1)
        two_view_forward = getattr(self.model, 'two_view_forward', None)
        if callable(two_view_forward):
            weak_output, strong_output = two_view_forward(weak, strong)
            output = self.weak(weak_output)
            self.strong(strong_output)
            return output
        output = self.weak(self.model(weak))
        self.strong(self.model(strong))
        return output
