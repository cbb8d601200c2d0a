"""The task state machine: pure functions over a frozen :class:`Task`, no I/O.

A task is an ordered list of named steps, each ``pending``, ``in_progress``, ``blocked``,
``completed`` or ``failed``. Only step statuses are ever *chosen*; everything else in the
document follows from them, so no sequence of calls can leave it inconsistent:

Task status, first rule that matches:
    1. some step is ``failed``                  → ``failed``
    2. every step is ``completed``              → ``completed``
    3. some step is ``blocked``                 → ``blocked``
    4. some step is ``in_progress``/``completed`` → ``in_progress``
    5. otherwise (every step ``pending``)       → ``pending``

``currentStepIndex`` is the index of the first step that is not ``completed``, or
``len(steps)`` when all are (``currentStep`` then reads ``"completed"``, as in the seed).

Transitions (each returns a new task with ``version + 1`` and ``updatedAt = now``):
    * :func:`advance` — the seed's ``advanceTask``: the current step becomes ``completed``
      (whatever it was: advancing says "this step is done"), and the new current step, if it
      is ``pending``, becomes ``in_progress``. A ``blocked`` next step stays blocked: only an
      explicit :func:`update` unblocks. Advancing a ``completed`` or ``failed`` task is refused.
    * :func:`update` — sets one step (by name or 0-based index) to any status and touches no
      other step; ``currentStepIndex`` and the task status are then derived again, so
      completing the current step moves the pointer to the next unfinished step (without
      starting it), and reopening an earlier step moves the pointer back. Updating is allowed
      in every task status: it is how a failed step is retried or a finished task reopened.

``percentComplete`` is ``round(completed / total * 100)`` rounding halves up, as the seed's
JavaScript ``Math.round`` does (Python's ``round`` would round halves to even).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from coordinatord.errors import ConflictError, InvalidArgumentError, LimitExceededError, NotFoundError
from coordinatord.services.shared import iso_timestamp

StepStatus = Literal["pending", "in_progress", "blocked", "completed", "failed"]
STATUSES: tuple[StepStatus, ...] = ("pending", "in_progress", "blocked", "completed", "failed")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]+")


class Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    status: StepStatus


class Task(BaseModel):
    """The stored document: the seed's ``createTask`` shape plus ``version``.

    ``version`` defaults to 0 so that a document the seed's own code wrote (no version) can
    still be advanced; our first write then makes it version 1.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    taskId: str
    status: StepStatus
    steps: tuple[Step, ...] = Field(min_length=1)
    currentStepIndex: int = Field(ge=0)
    createdAt: str
    updatedAt: str
    version: int = Field(default=0, ge=0)


class Progress(BaseModel):
    """The seed's ``getTaskProgress`` fields."""

    model_config = ConfigDict(frozen=True)

    taskId: str
    status: StepStatus
    percentComplete: int
    currentStep: str
    totalSteps: int
    completedSteps: int


def derive_status(statuses: tuple[StepStatus, ...] | list[StepStatus]) -> StepStatus:
    """The task status that a list of step statuses implies (rules in the module docstring)."""
    if "failed" in statuses:
        return "failed"
    if all(status == "completed" for status in statuses):
        return "completed"
    if "blocked" in statuses:
        return "blocked"
    if "in_progress" in statuses or "completed" in statuses:
        return "in_progress"
    return "pending"


def current_index(statuses: tuple[StepStatus, ...] | list[StepStatus]) -> int:
    """The first step not completed, or ``len(statuses)`` when every step is."""
    return next((i for i, status in enumerate(statuses) if status != "completed"), len(statuses))


def check_steps(steps: list[str], max_steps: int, max_name_bytes: int) -> list[str]:
    """Refuse an empty or oversized step list, bad names, and duplicate names.

    Duplicates are refused because :func:`update` finds a step by name: two steps with one
    name would make that ambiguous.
    """
    if not steps:
        raise InvalidArgumentError("argument 'steps' must name at least one step")
    if len(steps) > max_steps:
        raise LimitExceededError(
            f"argument 'steps' has {len(steps)} steps; the limit is tasks.max_steps = {max_steps}"
        )
    seen: set[str] = set()
    for index, name in enumerate(steps):
        argument = f"steps[{index}]"
        if not name.strip():
            raise InvalidArgumentError(f"argument {argument!r} must be a non-empty step name")
        if _CONTROL.search(name):
            raise InvalidArgumentError(f"argument {argument!r} must not contain control characters")
        size = len(name.encode("utf-8", "surrogatepass"))
        if size > max_name_bytes:
            raise LimitExceededError(
                f"argument {argument!r} is {size} bytes; "
                f"the limit is tasks.max_step_name_bytes = {max_name_bytes}"
            )
        if name in seen:
            raise InvalidArgumentError(
                f"argument {argument!r} repeats the step name {name!r}; step names must be unique"
            )
        seen.add(name)
    return steps


def _build(task_id: str, steps: tuple[Step, ...], created: str, now: float, version: int) -> Task:
    statuses = tuple(step.status for step in steps)
    return Task(
        taskId=task_id,
        status=derive_status(statuses),
        steps=steps,
        currentStepIndex=current_index(statuses),
        createdAt=created,
        updatedAt=iso_timestamp(now),
        version=version,
    )


def create(task_id: str, steps: list[str], now: float, version: int = 1) -> Task:
    """A new task, every step pending (the seed's ``createTask``).

    ``version`` is above the version of any document this one replaces, so a writer still
    holding the old document cannot mistake the new one for it.
    """
    return _build(
        task_id, tuple(Step(name=n, status="pending") for n in steps), iso_timestamp(now), now, version
    )


def advance(task: Task, now: float) -> Task:
    """Complete the current step and start the next one (see the module docstring)."""
    # Derived again rather than read: a document written by other code may carry a stale status.
    status = derive_status([s.status for s in task.steps])
    if status == "completed":
        raise ConflictError(f"task {task.taskId!r} is already completed; there is no step to advance")
    if status == "failed":
        failed = ", ".join(repr(s.name) for s in task.steps if s.status == "failed")
        raise ConflictError(
            f"task {task.taskId!r} has failed (step {failed}); set the failed step's status with "
            "task_update before advancing"
        )
    steps = list(task.steps)
    index = current_index([s.status for s in steps])
    steps[index] = Step(name=steps[index].name, status="completed")
    following = current_index([s.status for s in steps])
    if following < len(steps) and steps[following].status == "pending":
        steps[following] = Step(name=steps[following].name, status="in_progress")
    return _build(task.taskId, tuple(steps), task.createdAt, now, task.version + 1)


def step_index(task: Task, step: str | int) -> int:
    """The index of a step named by name or by 0-based index.

    A name wins; a string of digits that names no step is read as an index, because agents
    often send numbers as strings.
    """
    if isinstance(step, str):
        for index, candidate in enumerate(task.steps):
            if candidate.name == step:
                return index
        if not _DIGITS.fullmatch(step):
            names = ", ".join(repr(s.name) for s in task.steps[:20])
            more = ", …" if len(task.steps) > 20 else ""
            raise NotFoundError(f"task {task.taskId!r} has no step named {step!r} (steps: {names}{more})")
        step = int(step)
    if not 0 <= step < len(task.steps):
        raise NotFoundError(
            f"task {task.taskId!r} has no step {step}; step indexes run from 0 to {len(task.steps) - 1}"
        )
    return step


def update(task: Task, step: str | int, status: StepStatus, now: float) -> Task:
    """Set one step's status; the task's status and current step follow from the steps. (A
    status outside StepStatus is refused by the tool's argument model, before it gets here.)"""
    index = step_index(task, step)
    steps = list(task.steps)
    steps[index] = Step(name=steps[index].name, status=status)
    return _build(task.taskId, tuple(steps), task.createdAt, now, task.version + 1)


def progress(task: Task) -> Progress:
    """The seed's ``getTaskProgress``."""
    total = len(task.steps)
    completed = sum(1 for step in task.steps if step.status == "completed")
    index = task.currentStepIndex
    return Progress(
        taskId=task.taskId,
        status=task.status,
        # Integer form of Math.round(completed / total * 100): halves round up.
        percentComplete=(200 * completed + total) // (2 * total),
        currentStep=task.steps[index].name if index < total else "completed",
        totalSteps=total,
        completedSteps=completed,
    )
