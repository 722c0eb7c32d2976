"""Reading a tensor out of torchdistill's io dicts (``{module_path: {'input'|'output': tensor}}``) with a message
that says what the dict holds and which config entry to check."""
from torch import Tensor


def read_io(io_dict: dict, path: str, io: str, model: str, check: str) -> Tensor:
    """``io_dict[path][io]``, or a KeyError naming what is there.

    :param model: ``'student'`` or ``'teacher'``.
    :param check: what to check in the config, e.g. ``"student_module_path/_io and the forward hooks of the student"``.
    """
    try:
        return io_dict[path][io]
    except KeyError:
        raise KeyError(f'the {model} io_dict has no {io!r} for module path {path!r}; it holds '
                       f'{ {k: sorted(v) for k, v in io_dict.items()} } (check {check} in the config)') from None
