"""The cyclic garbage collector paused while a merge builds its many small objects.

Loading a school's state and planning its merge allocate tens of thousands of dicts and
tuples that live until the merge ends, and none of them form cycles the merge needs freed.
Each allocation burst triggers collections that walk everything alive (the state included),
which cost a large share of a merge (issue 18's profile). Reference counting still frees
everything; the collector resumes when the last merge of the process is done.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_paused = 0  # merges running in this process that asked for the pause
_was_enabled = True


@contextmanager
def paused() -> Iterator[None]:
    """Nested and concurrent uses are counted: the collector comes back after the last."""
    global _paused, _was_enabled
    with _lock:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0 and _was_enabled:
                gc.enable()


def gc_paused(function: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with paused():
            return function(*args, **kwargs)

    return wrapper
