"""The config of a run: loading with ``--set`` applied before any tag runs, finding things in it, the ``runtime:``
block, the ``--smoke`` copy, and every check made before anything expensive is built."""
from .loading import LoadedConfig, apply_override, compose_file, load_config  # noqa: F401  (the room's face)
