"""The task state machine: pure rules, checked by example and against an independent model."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from coordinatord.errors import ConflictError, InvalidArgumentError, LimitExceededError, NotFoundError
from coordinatord.services import task_rules
from coordinatord.services.shared import iso_timestamp
from coordinatord.services.task_rules import STATUSES, StepStatus, Task

T0 = 1_770_955_200.0  # 2026-02-13T04:00:00Z


def statuses(task: Task) -> list[str]:
    return [step.status for step in task.steps]


def test_create_matches_the_seeds_create_task() -> None:
    """A new task has every step pending, index 0, equal ISO timestamps and version 1."""
    task = task_rules.create("implement-redis-docs", ["gather", "write", "review"], T0)
    assert task.model_dump(mode="json") == {
        "taskId": "implement-redis-docs",
        "status": "pending",
        "steps": [
            {"name": "gather", "status": "pending"},
            {"name": "write", "status": "pending"},
            {"name": "review", "status": "pending"},
        ],
        "currentStepIndex": 0,
        "createdAt": "2026-02-13T04:00:00.000Z",
        "updatedAt": "2026-02-13T04:00:00.000Z",
        "version": 1,
    }


def test_advance_walks_the_steps_as_the_seed_does() -> None:
    """Each advance completes the current step and starts the next; past the last, completed."""
    task = task_rules.create("t", ["a", "b", "c"], T0)
    task = task_rules.advance(task, T0 + 1)
    assert statuses(task) == ["completed", "in_progress", "pending"]
    assert (task.status, task.currentStepIndex, task.version) == ("in_progress", 1, 2)
    assert task.updatedAt == "2026-02-13T04:00:01.000Z" and task.createdAt == "2026-02-13T04:00:00.000Z"
    task = task_rules.advance(task_rules.advance(task, T0 + 2), T0 + 3)
    assert statuses(task) == ["completed"] * 3
    assert (task.status, task.currentStepIndex) == ("completed", 3)
    assert task_rules.progress(task).currentStep == "completed"


def test_advancing_a_finished_or_failed_task_is_refused() -> None:
    """A completed task cannot advance, nor can a failed one until its step is fixed."""
    done = task_rules.advance(task_rules.create("t", ["only"], T0), T0)
    with pytest.raises(ConflictError, match="'t' is already completed"):
        task_rules.advance(done, T0)
    failed = task_rules.update(task_rules.create("t", ["a", "b"], T0), "b", "failed", T0)
    with pytest.raises(ConflictError, match=r"has failed \(step 'b'\).*task_update"):
        task_rules.advance(failed, T0)
    retried = task_rules.update(failed, "b", "pending", T0)
    assert task_rules.advance(retried, T0).currentStepIndex == 1


def test_advance_keeps_a_blocked_next_step_blocked() -> None:
    """Only an explicit update unblocks a step; advancing the one before it does not."""
    task = task_rules.update(task_rules.create("t", ["a", "b"], T0), 1, "blocked", T0)
    task = task_rules.advance(task, T0)
    assert statuses(task) == ["completed", "blocked"] and task.status == "blocked"


def test_update_rederives_status_and_current_step() -> None:
    """Updating one step never touches others; the pointer and status follow the steps."""
    task = task_rules.create("t", ["a", "b", "c"], T0)
    task = task_rules.update(task, "c", "completed", T0)
    assert (task.status, task.currentStepIndex, statuses(task)) == (
        "in_progress",
        0,
        ["pending", "pending", "completed"],
    )
    task = task_rules.update(task, 0, "completed", T0)
    assert task.currentStepIndex == 1 and statuses(task)[1] == "pending"  # moved, not started
    task = task_rules.update(task, "a", "in_progress", T0)  # reopening moves the pointer back
    assert task.currentStepIndex == 0


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (["pending", "pending"], "pending"),
        (["completed", "pending"], "in_progress"),
        (["pending", "in_progress"], "in_progress"),
        (["completed", "blocked"], "blocked"),
        (["blocked", "failed"], "failed"),
        (["completed", "failed"], "failed"),
        (["completed", "completed"], "completed"),
    ],
)
def test_status_derivation_table(steps: list[StepStatus], expected: str) -> None:
    """The documented precedence: failed > all completed > blocked > started > pending."""
    assert task_rules.derive_status(steps) == expected


def test_steps_by_name_index_or_digit_string() -> None:
    """A step name wins over an index; a digit string naming no step is an index."""
    task = task_rules.create("t", ["1", "b", "c"], T0)
    assert task_rules.step_index(task, "1") == 0
    assert task_rules.step_index(task, 1) == 1
    assert task_rules.step_index(task, "2") == 2
    with pytest.raises(NotFoundError, match="no step named 'x' \\(steps: '1', 'b', 'c'\\)"):
        task_rules.step_index(task, "x")
    with pytest.raises(NotFoundError, match="no step 3; step indexes run from 0 to 2"):
        task_rules.step_index(task, 3)
    with pytest.raises(NotFoundError):
        task_rules.step_index(task, -1)


def test_step_list_checks() -> None:
    """Empty, oversized, blank, control-character and duplicate step names are refused."""
    with pytest.raises(InvalidArgumentError, match="at least one step"):
        task_rules.check_steps([], 10, 16)
    with pytest.raises(LimitExceededError, match=r"tasks\.max_steps = 2"):
        task_rules.check_steps(["a", "b", "c"], 2, 16)
    with pytest.raises(LimitExceededError, match=r"'steps\[1\]' is 17 bytes.*max_step_name_bytes = 16"):
        task_rules.check_steps(["a", "x" * 17], 10, 16)
    with pytest.raises(InvalidArgumentError, match=r"'steps\[0\]' must be a non-empty"):
        task_rules.check_steps(["  "], 10, 16)
    with pytest.raises(InvalidArgumentError, match="control characters"):
        task_rules.check_steps(["a\nb"], 10, 16)
    with pytest.raises(InvalidArgumentError, match=r"'steps\[2\]' repeats the step name 'a'"):
        task_rules.check_steps(["a", "b", "a"], 10, 16)
    assert task_rules.check_steps(["a", "b"], 2, 16) == ["a", "b"]


def test_percent_rounds_half_up_like_math_round() -> None:
    """1 of 8 steps is 12.5 %, which the seed's Math.round shows as 13 (Python's round: 12)."""
    task = task_rules.create("t", [str(i) for i in range(8)], T0)
    assert task_rules.progress(task_rules.advance(task, T0)).percentComplete == 13


# --- The state machine against an independent model ------------------------------------------


def model_status(steps: list[str]) -> str:
    """The documented derivation, written independently of the module under test."""
    if any(s == "failed" for s in steps):
        return "failed"
    if steps.count("completed") == len(steps):
        return "completed"
    if any(s == "blocked" for s in steps):
        return "blocked"
    if any(s in ("in_progress", "completed") for s in steps):
        return "in_progress"
    return "pending"


def model_current(steps: list[str]) -> int:
    for index, status in enumerate(steps):
        if status != "completed":
            return index
    return len(steps)


class TaskMachine(RuleBasedStateMachine):
    """Random sequences of advance/update against a plain list of step statuses."""

    task: Task
    model: list[str]
    names: list[str]
    now: float

    @initialize(count=st.integers(min_value=1, max_value=8))
    def create(self, count: int) -> None:
        self.names = [f"step-{i}" for i in range(count)]
        self.now = T0
        self.task = task_rules.create("machine", self.names, self.now)
        self.model = ["pending"] * count

    @rule(dt=st.floats(min_value=0, max_value=10_000))
    def advance(self, dt: float) -> None:
        before = self.task
        if model_status(self.model) in ("completed", "failed"):
            with pytest.raises(ConflictError):
                task_rules.advance(self.task, self.now + dt)
            return
        self.now += dt
        self.task = task_rules.advance(self.task, self.now)
        index = model_current(self.model)
        self.model[index] = "completed"
        following = model_current(self.model)
        if following < len(self.model) and self.model[following] == "pending":
            self.model[following] = "in_progress"
        assert self.task.version == before.version + 1

    @rule(data=st.data(), status=st.sampled_from(STATUSES), by_name=st.booleans())
    def update(self, data: st.DataObject, status: StepStatus, by_name: bool) -> None:
        index = data.draw(st.integers(min_value=0, max_value=len(self.model) - 1))
        step: str | int = self.names[index] if by_name else index
        before = self.task
        self.task = task_rules.update(self.task, step, status, self.now)
        self.model[index] = status
        assert self.task.version == before.version + 1

    @rule(bad=st.sampled_from(["nope", "99", 99, -1]))
    def update_unknown_step(self, bad: str | int) -> None:
        with pytest.raises(NotFoundError):
            task_rules.update(self.task, bad, "completed", self.now)

    @invariant()
    def document_follows_the_model(self) -> None:
        assert statuses(self.task) == self.model
        assert [step.name for step in self.task.steps] == self.names
        assert self.task.status == model_status(self.model)
        assert self.task.currentStepIndex == model_current(self.model)
        assert self.task.createdAt == iso_timestamp(T0)
        assert self.task.updatedAt == iso_timestamp(self.now)

    @invariant()
    def progress_is_consistent(self) -> None:
        progress = task_rules.progress(self.task)
        done = self.model.count("completed")
        assert progress.completedSteps == done
        assert progress.totalSteps == len(self.model)
        assert 0 <= progress.percentComplete <= 100
        assert (progress.percentComplete == 100) == (done == len(self.model))
        assert (progress.percentComplete == 0) == (done == 0 or done * 200 < len(self.model))
        assert abs(progress.percentComplete - done / len(self.model) * 100) <= 0.5
        current = model_current(self.model)
        expected_step = self.names[current] if current < len(self.names) else "completed"
        assert progress.currentStep == expected_step
        assert progress.status == self.task.status


TaskMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
test_task_state_machine = TaskMachine.TestCase
