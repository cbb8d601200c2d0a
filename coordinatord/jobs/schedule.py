"""Which jobs the daemon runs, and how often (``[jobs]`` in config.toml)."""

from __future__ import annotations

from coordinatord.jobs import Jobs, archiver, memory_bank, reaper, sweep
from coordinatord.settings import JobSettings

HEARTBEAT_SWEEP = "heartbeat_sweep"
LOCK_REAPER = "lock_reaper"
SESSION_ARCHIVER = "session_archiver"
MEMORY_BANK_REFRESH = "memory_bank_refresh"


def register_all(jobs: Jobs, settings: JobSettings) -> None:
    jobs.add(HEARTBEAT_SWEEP, settings.heartbeat_sweep_s, sweep.run)
    jobs.add(LOCK_REAPER, settings.lock_reap_s, reaper.run)
    # These two read and write files under the project roots of the host they run on.
    jobs.add(SESSION_ARCHIVER, settings.archive_s, archiver.run, per_host=True)
    jobs.add(MEMORY_BANK_REFRESH, settings.memory_bank_refresh_s, memory_bank.run, per_host=True)
