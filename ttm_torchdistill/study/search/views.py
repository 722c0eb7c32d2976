"""What ``study plan`` and ``study status`` print for a study with ``search:``: the space and budget, where each
experiment's search stands, and the confirm runs (their states as for any run)."""
import os
from typing import List

from .. import slurm_queue, task_state
from ..status import format_status
from .confirm import TUNED_VARIANT, confirm_plan, progress
from .engine import search_dir
from .trials import search_plan


def space_lines(plan) -> List[str]:
    spec = plan.study.search
    lines = [f'search: {spec.trials} trials per experiment on {plan.study.runtime.holdout} held-out training images '
             f'(holdout seed {plan.study.runtime.holdout_seed}), seeds {list(spec.seeds or plan.study.seeds[:1])} '
             f'per trial; TPE (sampler seed {spec.sampler_seed}, {spec.startup_trials} random trials first); '
             + ('no pruning' if spec.pruner is None else
                f'median pruner after {spec.pruner.startup_trials} trials, from epoch {spec.pruner.warmup_epochs + 1}'),
             f'storage: {spec.storage or os.path.join(search_dir(plan.out), "<experiment>", "journal.log")}']
    for param in spec.space:
        what = f'one of {list(param.choices)}' if param.choices is not None else \
            f'{"int" if param.is_int else "float"} in [{param.low}, {param.high}]' + (' log' if param.log else '') \
            + (f' step {param.step}' if param.step else '')
        lines.append(f'  {param.path}: {what}')
    return lines


def search_text(plan) -> str:
    """``study plan`` and ``study status`` of a search study."""
    search = search_plan(plan)
    found = progress(search)
    lines = space_lines(plan) + [item.text() for item in found]
    lines += [f'  trial runs: {os.path.join(search_dir(plan.out), t.experiment, "trial<N>", "seed<S>")}'
              for t in search.templates]
    confirm = confirm_plan(search, found)
    waiting = [item.experiment for item in found if not item.finished]
    if waiting:
        lines.append(f'confirm ({TUNED_VARIANT}, full training set, seeds {list(plan.study.seeds)}): once the search '
                     f'is finished: {", ".join(waiting)}')
    text = '\n'.join(lines) + '\n'
    if confirm.runs:
        text += format_status(confirm, task_state.plan_states(confirm, slurm_queue.QueueSnapshot()))
    return text
