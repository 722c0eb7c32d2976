"""Results of many runs, across seeds, next to the papers' numbers (``python -m ttm_torchdistill report``).

:mod:`.tables` loads the run summaries, groups, aggregates, formats and plots them; :mod:`.tuned_table` adds the
tuned table of a study that searched (``search/tuned.json`` and its confirm runs).
"""
from typing import List, Sequence, Tuple

from . import tables
from .tables import (  # noqa: F401  (the report's public names)
    COLUMNS, FORMATS, ReportError, Row, RunSummary, StudyRuns, aggregate, collect, format_csv, format_json,
    format_markdown, group_runs, load_summary, mean_std, paper_reference, plot_runs, read_study_folder, runtime_label,
)
from .tuned_table import with_tuned


def report_text(paths: Sequence[str], fmt: str = 'markdown') -> Tuple[str, List[Row], StudyRuns]:
    """Load, group, aggregate and format, with the tuned table of a study that searched; returns ``(text, rows,
    study runs)``."""
    text, rows, study = tables.report_text(paths, fmt)
    return with_tuned(text, fmt, paths), rows, study
