"""What ``study plan`` and ``study status`` print: runs with their state, counts, failures, running epochs."""
import os
from typing import List, Optional

from .plan import ChangedRun, Plan, Run, missing_teachers, missing_teachers_text
from .task_state import STATES, TaskState, last_epoch, read_json, task_id


def _table(rows: List[List[str]]) -> List[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ['  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def _plural(n: int, word: str) -> str:
    return f'{n} {word}{"" if n == 1 else "s"}'


def format_plan(plan: Plan, states: List[TaskState]) -> str:
    """The runs (id, experiment, variant, seed, state) and the teacher caches built first."""
    by_id = {task_id(s.task): s for s in states}
    counts = [(len(plan.runs), 'run'), (len({r.experiment for r in plan.runs}), 'experiment'),
              (len({r.variant for r in plan.runs}), 'variant'), (len(plan.study.seeds), 'seed')]
    lines = [f'study {plan.study.name}: {_plural(*counts[0])} ({" x ".join(_plural(*c) for c in counts[1:])}) in '
             f'{plan.out}', '']
    rows = [['run', 'experiment', 'variant', 'seed', 'state', 'teacher cache']]
    for run in plan.runs:
        rows.append([run.run_id, run.experiment, run.variant, str(run.seed), by_id[run.run_id].state,
                     run.cache.key if run.cache is not None else '-'])
    lines += _table(rows)
    if plan.caches:
        lines += ['', f'built first: {len(plan.caches)} teacher cache(s), each read by the runs above that name it:']
        rows = [['cache', 'state', 'epochs', 'runs', 'command']]  # a complete cache serves every epoch: "all"
        for cache in plan.caches:
            readers = sum(run.cache is not None and run.cache.key == cache.key for run in plan.runs)
            rows.append([cache.key, by_id[task_id(cache)].state, 'all' if cache.epochs is None else str(cache.epochs),
                         str(readers),
                         ' '.join(cache.build_argv('python')[1:])])
        lines += _table(rows)
    if plan.study.runtime.device_data == 'auto':
        stock = sorted({run.experiment for run in plan.runs if '--device-data' not in run.flags})
        if stock:
            lines.append(f'on torchdistill\'s loader (device_data: auto; the device data path refuses them): '
                         f'{", ".join(stock)}')
    reasons = sorted({run.no_cache for run in plan.runs if run.cache is None and run.no_cache
                      and plan.study.runtime.teacher_cache in ('auto', 'per_seed')})
    for reason in reasons:
        names = [run.experiment for run in plan.runs if run.cache is None and run.no_cache == reason]
        lines.append(f'no teacher cache for {", ".join(sorted(set(names)))}: {reason}')
    missing = missing_teachers(plan, [run for run in plan.runs if by_id[run.run_id].state != 'done'])
    if missing:
        lines.append(f'study run refuses to start: {missing_teachers_text(plan, missing)}')
    return '\n'.join(lines) + '\n'


def _changed_lines(plan: Plan, changed: List[ChangedRun]) -> List[str]:
    """Runs trained with other values than the study now asks, and finished runs whose config changed between their
    sessions (read from their summaries)."""
    lines = []
    if changed:
        lines += ['', 'trained with other values than the study now asks (study run refuses to go on until '
                      '--continue-changed or --restart-changed):']
        lines += [f'  {c.run.run_id} ({"finished" if c.finished else "unfinished"}): {"; ".join(c.changes)}'
                  for c in changed]
    mid_run = [(run, (read_json(run.summary) or dict()).get('changed_mid_run')) for run in plan.runs
               if os.path.isfile(run.summary)]
    mid_run = [(run, changes) for run, changes in mid_run if changes]
    if mid_run:
        lines += ['', 'changed mid-run (continued with --continue-changed; report lists them apart, never averaged):']
        lines += [f'  {run.run_id}: {"; ".join(changes)}' for run, changes in mid_run]
    return lines


def format_status(plan: Plan, states: List[TaskState], changed: Optional[List[ChangedRun]] = None) -> str:
    """Counts per state; failed tasks with their ``error:`` line and log; running runs with their epoch; runs whose
    values changed (``changed``: :func:`~.plan.changed_runs`, and the summaries' ``changed_mid_run``)."""
    runs = [s for s in states if isinstance(s.task, Run)]
    caches = [s for s in states if not isinstance(s.task, Run)]
    lines = []
    for what, group in (('runs', runs), ('teacher caches', caches)):
        if not group:
            continue
        what = what if len(group) != 1 else what[:-1]  # 1 run, 1 teacher cache
        counts = ', '.join(f'{sum(s.state == name for s in group)} {name}' for name in STATES
                           if any(s.state == name for s in group))
        lines.append(f'study {plan.study.name}: {len(group)} {what}: {counts}')
    failed = [s for s in states if s.state == 'failed']
    if failed:
        lines += ['', 'failed:']
        for s in failed:
            lines.append(f'  {task_id(s.task)}: {s.detail}')
            if s.log:
                lines.append(f'    log: {s.log}')
    running = [s for s in states if s.state in ('running', 'queued', 'interrupted')]
    if running:
        lines += ['', 'running, queued or interrupted:']
        for s in running:
            epoch = last_epoch(s.task) if isinstance(s.task, Run) else None
            where = f'epoch {epoch}' if epoch else 'no epoch done yet' if isinstance(s.task, Run) else 'building'
            lines.append(f'  {task_id(s.task)}: {s.state} ({s.detail}), {where}')
    lines += _changed_lines(plan, changed or [])
    lines += ['', f'report: python -m ttm_torchdistill report {plan.out}']
    return '\n'.join(lines) + '\n'


def manifest(plan: Plan) -> dict:
    """``<out>/plan.json``: what ``report OUT`` needs to list missing and failed runs."""
    return {'format': 1, 'study': plan.study.name, 'study_file': os.path.abspath(plan.study.path),
            'runs': [{'id': run.run_id, 'experiment': run.experiment, 'variant': run.variant, 'seed': run.seed,
                      'config': run.config, 'overrides': list(run.overrides),
                      'summary': os.path.relpath(run.summary, plan.out),
                      'folder': os.path.relpath(run.folder, plan.out)} for run in plan.runs]}
