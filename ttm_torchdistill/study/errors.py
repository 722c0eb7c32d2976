"""The study's one-line errors."""
from ..errors import UserError


class StudyError(UserError):
    """A study file, a study folder or a study command that cannot be used; the message names the key or file."""
