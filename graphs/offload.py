"""Evaluating expressions without holding the event loop.

An evaluation starts on the loop, where almost all of them end within microseconds.
One still going when the node's slice of loop time (LOOP_SLICE_SECONDS) is used up is
stopped (`LeaveTheLoop`) and run again from the start in a worker thread, with what is
left of its time budget: expressions are pure, so running one twice changes nothing.

Two things stop an evaluation on the loop: the budget's own checks (every loop pass,
call, allocating operator and filter item), and, when the loop runs in the main thread,
a SIGALRM timer, whose handler interrupts any Python code, filters included. A worker
thread that runs past its deadline is stopped the same way, with an asynchronous
exception raised into it. Long C calls cannot be interrupted: the size limits keep each
one short.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import ctypes
import signal
import threading
import time
import weakref
from collections.abc import Callable
from threading import get_ident
from typing import Any, TypeVar

from flowloom.graphs.budget import (
    LOOP_SLICE_SECONDS,
    WORKER_YIELD_SECONDS,
    Budget,
    LeaveTheLoop,
    LimitExceeded,
)

T = TypeVar("T")
_INF = float("inf")
WORKER_THREADS = 4  # evaluations off the loop at once, per event loop
_STOP_GRACE_S = 0.05  # a worker past its deadline gets this long to notice on its own


class _HardStop(BaseException):
    pass


class _Stopwatch:
    """SIGALRM as a stopwatch for the evaluation running on the main thread's loop. The
    timer is armed only when none is pending, so most evaluations make no system call:
    one that fires early is set again for the rest of the slice. (An instance, not
    class attributes: writing those would flush the type's caches every evaluation.)"""

    def __init__(self) -> None:
        self.active = False
        self.leave_at = 0.0
        self.fires_at = 0.0  # when the pending timer fires; 0: none pending
        self.armed_cpu = 0.0  # the main thread's CPU clock when the timer was armed
        self.ready: bool | None = None  # None: not tried yet
        self.main = threading.main_thread().ident

    def handler(self, signum: int, frame: Any) -> None:
        self.fires_at = 0.0
        if not self.active:  # the evaluation ended before the signal was handled
            return
        now = time.monotonic()
        if now < self.leave_at or self.extend(now) is not None:
            self.arm(self.leave_at - now, restart=False)
        elif _drops_exceptions(frame):
            self.arm(0.001, restart=False)  # raised here, Python would drop it: later
        else:
            self.active = False
            raise LeaveTheLoop

    def extend(self, now: float) -> float | None:
        """When the slice is over by the wall clock but the main thread has not run that
        long (the machine was busy): when it could be over, else None. The thread's
        clock counts from when the timer was armed: at or before the evaluation began."""
        used = time.thread_time() - self.armed_cpu
        if used >= LOOP_SLICE_SECONDS:
            return None
        self.leave_at = now + LOOP_SLICE_SECONDS - used
        return self.leave_at

    def arm(self, seconds: float, *, restart: bool = True) -> None:
        if signal.getsignal(signal.SIGALRM) != self.handler:  # (a new bound method each time)
            self.ready = False  # someone else took SIGALRM: leave it to them
            return
        if restart:
            self.armed_cpu = time.thread_time()
        seconds = max(seconds, 1e-4)  # already due: at once (0 would disarm it)
        self.fires_at = time.monotonic() + seconds
        signal.setitimer(signal.ITIMER_REAL, seconds)

    def usable(self) -> bool:
        """Whether SIGALRM is free (asked once): it is taken then, and given up at exit."""
        if self.ready is None:
            self.ready = signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)
            if self.ready:
                signal.signal(signal.SIGALRM, self.handler)
                # A timer still pending as Python shuts down (and puts SIGALRM back to
                # its default) would kill the process.
                atexit.register(signal.setitimer, signal.ITIMER_REAL, 0)
        return self.ready


_Alarm = _Stopwatch()


def _drops_exceptions(frame: Any) -> bool:
    """Whether the interrupted code is a finalizer or a weakref callback (run by the
    garbage collector in the middle of anything): Python drops what they raise."""
    for _ in range(4):
        if frame is None:
            return False
        code = frame.f_code
        if code.co_name == "__del__" or code.co_filename.endswith(
                ("weakref.py", "_weakrefset.py")):
            return True
        frame = frame.f_back
    return False


def on_the_loop(budget: Budget, work: Callable[[], T]) -> T:
    """`work()` (pure: it only evaluates expressions) on the event loop, for at most the
    budget's slice of loop time: past it, LeaveTheLoop (then call off_the_loop)."""
    started = time.monotonic()
    left = budget.seconds - budget.spent
    slice_left = LOOP_SLICE_SECONDS - budget.loop_spent
    if left <= 0:
        raise LimitExceeded(budget.timed_out())
    # What earlier evaluations allocated stays charged, even when this one leaves at once.
    budget.restart_allocated = budget.allocated
    if slice_left <= 0:
        raise LeaveTheLoop
    if budget.cpu_deadline is not None:  # on the loop only the slice counts (after a worker)
        budget.deadline, budget.cpu_deadline = _INF, None
    leave_at = budget.leave_at = started + (slice_left if slice_left < left else left)
    watched = get_ident() == _Alarm.main and (_Alarm.ready or _Alarm.usable())
    if watched:
        _Alarm.leave_at, _Alarm.active = leave_at, True
        budget.watch = _Alarm
        if not _Alarm.fires_at:
            _Alarm.arm(leave_at - started)
    try:
        return work()
    finally:
        if watched:
            _Alarm.active = False
            budget.watch = None
        budget.leave_at = _INF
        # Wall time, at most the slice: past it, the evaluation would have been stopped
        # (what is more is the machine's doing).
        used = time.monotonic() - started
        used = slice_left if used > slice_left else used
        budget.loop_spent += used
        budget.spent += used
        if budget.run is not None:
            budget.run.expression_seconds += used


async def off_the_loop(budget: Budget, work: Callable[[], T]) -> T:
    """`work()` again from the start, in a worker thread, after on_the_loop left."""
    budget.leave_at = _INF  # (the signal may have cut on_the_loop's finally)
    budget.loop_spent = LOOP_SLICE_SECONDS
    budget.allocated = budget.restart_allocated  # what the stopped attempt allocated is gone
    return await _in_a_worker(budget, work)


async def evaluate_budgeted(budget: Budget, work: Callable[[], T]) -> T:
    """`work()` (pure: it only evaluates expressions) within `budget`, holding the event
    loop at most for the budget's slice of loop time."""
    try:
        return on_the_loop(budget, work)
    except LeaveTheLoop:
        return await off_the_loop(budget, work)


_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary())


async def _in_a_worker(budget: Budget, work: Callable[[], T]) -> T:
    """In a thread of its own, once one of WORKER_THREADS is free (waiting for it costs
    no CPU, so no budget). Past the budget's CPU time (read from the thread's clock,
    once the wall clock says it may be due) the thread is stopped."""
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(WORKER_THREADS)
    await slots.acquire()
    left = budget.seconds - budget.spent
    job = _Job(work, budget, left, loop, slots, contextvars.copy_context())
    thread = threading.Thread(target=job.run, name="flowloom-expression", daemon=True)
    thread.start()
    try:
        wait = left + _STOP_GRACE_S
        while True:
            try:
                async with asyncio.timeout(wait):
                    return await asyncio.shield(job.future)  # type: ignore[no-any-return]
            except TimeoutError:
                used = job.cpu_used(thread)
                if used >= left + _STOP_GRACE_S:
                    job.abandon()
                    raise LimitExceeded(budget.timed_out()) from None
                wait = left + _STOP_GRACE_S - used  # it was waiting: give it the rest
    except asyncio.CancelledError:
        job.abandon()
        raise
    finally:
        budget.add_spent(min(job.cpu_used(thread), left))


_busy: set[_Job] = set()


def busy_workers() -> int:
    """Worker threads evaluating right now (ended ones may still be exiting)."""
    return len(_busy)


class _Job:
    """One evaluation in its own thread, which frees its slot only once it has ended."""

    def __init__(self, work: Callable[[], Any], budget: Budget, left: float,
                 loop: asyncio.AbstractEventLoop, slots: asyncio.Semaphore,
                 context: contextvars.Context) -> None:
        self.work, self.budget, self.left = work, budget, left
        self.loop, self.slots, self.context = loop, slots, context
        self.future: asyncio.Future[Any] = loop.create_future()
        self.lock = threading.Lock()
        self.ident: int | None = None
        self.ended = self.stopping = False
        self.cpu_started: float | None = None
        self.cpu_ended: float | None = None
        self.wall_started = time.monotonic()

    def cpu_used(self, thread: threading.Thread) -> float:
        """The thread's CPU time in the evaluation so far (wall time where the platform
        cannot read another thread's clock)."""
        if self.cpu_started is None:
            return 0.0
        if self.cpu_ended is not None:
            return self.cpu_ended - self.cpu_started
        try:
            clock = time.pthread_getcpuclockid(thread.ident or 0)
            return time.clock_gettime(clock) - self.cpu_started
        except (AttributeError, OSError):
            return time.monotonic() - self.wall_started

    def run(self) -> None:
        outcome: tuple[bool, Any]
        try:
            try:
                with self.lock:
                    self.ident = threading.get_ident()
                    _busy.add(self)
                self.wall_started = time.monotonic()
                self.cpu_started = time.thread_time()
                self.budget.deadline = self.wall_started + min(self.left,
                                                               WORKER_YIELD_SECONDS)
                self.budget.cpu_deadline = self.cpu_started + self.left
                outcome = (True, self.context.run(self.work))
            finally:
                self.cpu_ended = time.thread_time()
                with self.lock:  # stop() raises nothing into this thread after this
                    self.ended = True
                    _busy.discard(self)
                    if self.stopping:  # drop a stop raised too late to matter
                        _raise_in(self.ident, None)
        except _HardStop:
            outcome = (False, LimitExceeded("stopped past its deadline"))
        except BaseException as exc:  # handed to the awaiting task
            outcome = (False, exc)
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self.loop.call_soon_threadsafe(self._settle, outcome)

    def _settle(self, outcome: tuple[bool, Any]) -> None:
        self.slots.release()
        if not self.future.done():
            ok, value = outcome
            if ok:
                self.future.set_result(value)
            else:
                self.future.set_exception(value)

    def abandon(self) -> None:
        """Nobody waits for the answer: stop the thread at its next Python instruction
        (a C call it is in runs to its end)."""
        self.future.add_done_callback(_retrieve)
        with self.lock:
            if self.ident is not None and not self.ended and not self.stopping:
                self.stopping = True
                _raise_in(self.ident, _HardStop)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # read, so asyncio does not log it as never retrieved


def _raise_in(ident: int | None, exc: type[BaseException] | None) -> None:
    if ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(ident), ctypes.py_object(exc) if exc is not None else None)
