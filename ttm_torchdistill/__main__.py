"""``python -m ttm_torchdistill``: see :mod:`ttm_torchdistill.cli`."""
import sys

from .cli import main

sys.exit(main())
