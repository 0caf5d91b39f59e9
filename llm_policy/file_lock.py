"""An exclusive lock on a file for work that one process at a time may do, with a reported, bounded wait.

The lock is the operating system's (``filelock``: ``flock`` on POSIX), so it is released when its
process ends, killed or not: a lock is never left stale.  Within one process the lock is
re-entrant, so a function that holds it may call another that takes it too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout


class LockHeldError(TimeoutError):
    """Another process held the lock for longer than the wait allowed (the message names the lock and the fix)."""


@contextmanager
def exclusive(lock_file: Path, doing: str, timeout: float, fix: str) -> Iterator[None]:
    """Hold ``lock_file`` for the block, after waiting at most ``timeout`` seconds for another holder.

    A wait is said on stderr once, when it starts.

    :param doing: what the holder does, for the messages ("converting X into Y").
    :param timeout: seconds to wait (0: refuse at once if the lock is held).
    :param fix: what to do when the wait ends without the lock, for the error.
    :raises LockHeldError: the lock was still held after ``timeout`` seconds.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    # one lock object per file in a process: a block nested in another on the same file re-enters it
    lock = FileLock(lock_file, is_singleton=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if timeout <= 0:
            raise LockHeldError(f"another process holds {lock_file} ({doing}); {fix}") from None
        print(f"glam-rl: another process is {doing} (lock {lock_file}); waiting up to {timeout:.0f} s", file=sys.stderr)
        sys.stderr.flush()
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise LockHeldError(
                f"waited {timeout:.0f} s for the process holding {lock_file} ({doing}); {fix}"
            ) from None
    try:
        yield
    finally:
        lock.release()
