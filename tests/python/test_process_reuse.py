"""reuse_children: a process task's child may run later process tasks, but only tasks
spawned before it was forked (they are in its copy-on-write memory; weft sends their
numbers, never a function: weft_spawn_options.reuse_child with the binding's fork_fn)."""

import os
import signal
import threading
import time

import pytest

import weft
from conftest import open_fds, registry_size, run, run_all, zombie_children

# Changed by the parent between two spawns (test_spawned_after_the_fork_never_runs_in_it).
STAGE = "before"
# Changed by tasks in their child (test_side_effects_stay_in_the_child).
COUNTER = []


def pid_and(value):
    return os.getpid(), value


def gone(pid):
    return not os.path.exists(f"/proc/{pid}")


def test_the_default_is_on_and_the_argument_is_checked():
    with weft.Loop() as lp:
        assert lp.reuse_children is True
    with weft.Loop(reuse_children=False) as lp:
        assert lp.reuse_children is False
    for bad in (1, 0, None, "yes", 1.0):
        with pytest.raises(TypeError, match="reuse_children"):
            weft.Loop(reuse_children=bad)


def test_tasks_spawned_together_share_children():
    with weft.Loop(max_children=2) as lp:
        futures = [lp.spawn(pid_and, i, on="process") for i in range(20)]
        run_all(lp, futures)
        results = [f.result() for f in futures]
    assert [value for _, value in results] == list(range(20))
    pids = {pid for pid, _ in results}
    assert os.getpid() not in pids
    # The first two children were forked by the first two spawns (only their own task
    # existed then); the next two run all the rest.
    assert len(pids) <= 4, pids


def test_fork_per_task_without_reuse():
    with weft.Loop(max_children=2, reuse_children=False) as lp:
        futures = [lp.spawn(pid_and, i, on="process") for i in range(6)]
        run_all(lp, futures)
        results = [f.result() for f in futures]
    assert [value for _, value in results] == list(range(6))
    assert len({pid for pid, _ in results}) == 6


def stage_after(seconds):
    time.sleep(seconds)
    return os.getpid(), STAGE


def test_spawned_after_the_fork_never_runs_in_it():
    global STAGE
    STAGE = "before"
    try:
        with weft.Loop(max_children=1) as lp:
            first = lp.spawn(stage_after, 0.3, on="process")  # its child is forked now
            queued = lp.spawn(stage_after, 0, on="process")  # waits: not in first's child
            STAGE = "after"
            later = lp.spawn(stage_after, 0, on="process")
            run_all(lp, [first, queued, later])
            (first_pid, first_stage), (queued_pid, _), (later_pid, later_stage) = (
                first.result(), queued.result(), later.result())
    finally:
        STAGE = "before"
    assert first_stage == "before"
    assert later_stage == "after"  # it saw everything done before its spawn returned
    assert later_pid != first_pid and queued_pid != first_pid


def test_spawned_from_a_done_callback_sees_what_came_before():
    global STAGE
    STAGE = "before"
    try:
        with weft.Loop(max_children=1) as lp:
            futures = [lp.spawn(stage_after, 0.05, on="process") for _ in range(4)]
            late = []

            def spawn_more(_):
                global STAGE
                STAGE = "after"
                late.append(lp.spawn(stage_after, 0, on="process"))
                late[0].add_done_callback(lambda f: lp.stop())

            futures[0].add_done_callback(spawn_more)
            run(lp)
            assert all(f.done() for f in futures)
            assert late[0].result()[1] == "after"
    finally:
        STAGE = "before"
    pids = [f.result()[0] for f in futures]
    assert len(set(pids[1:])) == 1  # tasks 1..3 shared one child


def bump():
    COUNTER.append(1)
    return os.getpid(), len(COUNTER)


def test_side_effects_stay_in_the_child():
    """Documented: later tasks of the same child see what earlier ones changed there,
    as with a ProcessPoolExecutor's workers; the parent never does."""
    with weft.Loop(max_children=1) as lp:
        futures = [lp.spawn(bump, on="process") for _ in range(5)]
        run_all(lp, futures)
        results = [f.result() for f in futures]
    assert COUNTER == []
    assert results[0][1] == 1  # alone in the child forked by the first spawn
    assert len({pid for pid, _ in results[1:]}) == 1
    assert [n for _, n in results[1:]] == [1, 2, 3, 4]


def report_pid(lp, value):
    lp.emit("pid", str(os.getpid()))
    return os.getpid(), value


def kill_myself(lp):
    lp.emit("pid", str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_long(lp):
    lp.emit("pid", str(os.getpid()))
    lp.emit("started", "")
    time.sleep(10)


@pytest.mark.parametrize("failure", ["crash", "timeout", "cancel", "exit0", "exit3", "raises"])
def test_a_failure_fails_only_its_task(failure):
    with weft.Loop(max_children=1) as lp:
        pids = []
        lp.subscribe("pid", lambda t, p: pids.append(int(p)))
        first = lp.spawn(report_pid, lp, "first", on="process")  # alone in its child
        before = lp.spawn(report_pid, lp, "before", on="process")  # shares the next child
        if failure == "crash":
            bad = lp.spawn(kill_myself, lp, on="process")
        elif failure == "timeout":
            bad = lp.spawn(sleep_long, lp, on="process", timeout=0.3)
        elif failure == "cancel":
            bad = lp.spawn(sleep_long, lp, on="process")
            lp.subscribe("started", lambda t, p: bad.cancel())
        elif failure == "exit0":
            bad = lp.spawn(os._exit, 0, on="process")
        elif failure == "exit3":
            bad = lp.spawn(os._exit, 3, on="process")
        else:
            bad = lp.spawn(int, "nope", on="process")
        after = [lp.spawn(report_pid, lp, i, on="process") for i in range(3)]
        start = time.monotonic()
        run_all(lp, [first, before, bad] + after)
        assert time.monotonic() - start < 5
    assert first.result()[1] == "first" and before.result()[1] == "before"
    assert [f.result()[1] for f in after] == [0, 1, 2]
    shared = before.result()[0]
    if failure == "crash":
        exc = bad.exception()
        assert isinstance(exc, weft.ChildCrashed) and "SIGKILL" in str(exc)
    elif failure == "timeout":
        assert isinstance(bad.exception(), TimeoutError)
    elif failure == "cancel":
        assert bad.cancelled()
    elif failure == "exit0":
        assert isinstance(bad.exception(), weft.ChildCrashed)
    elif failure == "exit3":
        exc = bad.exception()
        assert isinstance(exc, weft.ChildCrashed) and "code 3" in str(exc)
    else:
        assert type(bad.exception()) is ValueError
    if failure == "raises":  # an exception is an outcome: the child carries on
        assert {pid for pid, _ in (f.result() for f in after)} == {shared}
    else:
        if failure not in ("exit0", "exit3"):
            assert pids[2] == shared  # the bad task ran in the shared child...
        assert all(f.result()[0] != shared for f in after)  # ...which is gone
        assert len({f.result()[0] for f in after}) == 1  # the rest share a new one


def emit_then_return(lp, i, n):
    for j in range(n):
        lp.emit("ev", f"{i} {j}")
    return os.getpid(), i


def test_events_of_tasks_sharing_a_child_arrive_before_their_result():
    with weft.Loop(max_children=1) as lp:
        seen = []
        lp.subscribe("ev", lambda t, p: seen.append(("event",) + tuple(map(int, p.split()))))
        futures = [lp.spawn(emit_then_return, lp, i, 200, on="process") for i in range(6)]
        for fut in futures:
            fut.add_done_callback(lambda f: seen.append(("result", f.result()[1])))
        run_all(lp, futures)
    assert len({f.result()[0] for f in futures[1:]}) == 1  # they did share a child
    expected = []
    for i in range(6):
        expected += [("event", i, j) for j in range(200)] + [("result", i)]
    assert seen == expected


def test_cancel_queued_tasks_while_a_child_serves_others():
    with weft.Loop(max_children=1) as lp:
        futures = [lp.spawn(stage_after, 0.02, on="process") for _ in range(6)]
        assert futures[0].running() and not futures[3].running()
        assert futures[3].cancel() is True
        canceller = threading.Thread(target=futures[4].cancel)
        canceller.start()
        canceller.join()
        run_all(lp, futures)
    assert futures[3].cancelled() and futures[4].cancelled()
    assert [f.result()[1] for i, f in enumerate(futures) if i not in (3, 4)] == ["before"] * 4


def test_timeout_counts_from_spawn_while_queued_behind_a_shared_child():
    with weft.Loop(max_children=1) as lp:
        start = time.monotonic()
        first = lp.spawn(stage_after, 0.01, on="process")
        slow = [lp.spawn(stage_after, 0.15, on="process") for _ in range(3)]
        started = []
        lp.subscribe("late", lambda t, p: started.append(p))
        # It would start at ~0.46 s: it never does (it would emit "late").
        late = lp.spawn(lambda: lp.emit("late", "started") or stage_after(0), on="process", timeout=0.25)
        waited = []
        late.add_done_callback(lambda f: waited.append(time.monotonic() - start))
        run_all(lp, [first, late] + slow)
    assert isinstance(late.exception(), TimeoutError)
    assert started == []
    assert waited[0] < 0.4
    assert all(f.result()[1] == "before" for f in slow)


def test_close_with_a_shared_child_running_and_tasks_queued():
    baseline = open_fds()
    lp = weft.Loop(max_children=1)
    pids = []
    first = lp.spawn(pid_and, 0, on="process")  # alone in the first child
    futures = [lp.spawn(sleep_long, lp, on="process") for _ in range(3)]  # share the next
    lp.subscribe("pid", lambda t, p: pids.append(int(p)))
    lp.subscribe("started", lambda t, p: lp.stop())
    run(lp)
    # futures[0] runs (it emitted "started"); weft forked its child on the loop thread,
    # which tells the binding nothing, so its future says pending, not running.
    assert first.result()[1] == 0 and not futures[0].done() and len(pids) == 1
    lp.close()
    assert all(f.cancelled() for f in futures)
    assert not os.path.exists(f"/proc/{pids[0]}")
    assert zombie_children() == []
    assert open_fds() == baseline


def test_no_zombies_and_no_leaked_fds_after_a_mixed_run():
    baseline = open_fds()
    with weft.Loop(max_children=3) as lp:
        futures = [lp.spawn(pid_and, i, on="process") for i in range(30)]
        futures.append(lp.spawn(kill_myself, lp, on="process"))
        futures += [lp.spawn(pid_and, i, on="process") for i in range(30, 40)]
        futures.append(lp.spawn(os._exit, 0, on="process"))
        timed_out = lp.spawn(time.sleep, 5, on="process", timeout=0.05)
        cancelled = lp.spawn(time.sleep, 5, on="process")
        lp.call_later(0.1, cancelled.cancel)
        futures += [lp.spawn(emit_then_return, lp, i, 10, on="process") for i in range(10)]
        run_all(lp, futures + [timed_out, cancelled])
        assert [f.result()[1] for f in futures[:30]] == list(range(30))
        assert [f.result()[1] for f in futures[31:41]] == list(range(30, 40))
        assert [f.result()[1] for f in futures[-10:]] == list(range(10))
        assert isinstance(futures[30].exception(), weft.ChildCrashed)
        assert isinstance(futures[41].exception(), weft.ChildCrashed)
        assert isinstance(timed_out.exception(), TimeoutError)
        assert cancelled.cancelled()
        assert len({f.result()[0] for f in futures[:30]}) < 15
        run(lp)  # until the last child is reaped
    assert zombie_children() == []
    assert open_fds() == baseline
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # weft reaped every child


def test_a_worker_holds_no_other_workers_pipes():
    """A worker forked while another runs must not keep that one's control pipe open:
    the older one would then never see its pipe end (and exit) while the newer lives."""
    with weft.Loop(max_children=2) as lp:
        quick = lp.spawn(stage_after, 0.1, on="process")
        slow = lp.spawn(stage_after, 5, on="process")  # forked while quick's child runs
        quick.add_done_callback(lambda f: lp.call_later(0.4, lp.stop))
        run(lp)
        quick_pid = quick.result()[0]
        assert not os.path.exists(f"/proc/{quick_pid}")  # it exited and was reaped
        assert not slow.done()
        assert slow.cancel() is True
        run(lp)
    assert zombie_children() == []


def test_large_events_and_results_between_small_ones():
    with weft.Loop(max_children=1) as lp:
        got = []
        lp.subscribe("big", lambda t, p: got.append(p))

        def big(i):
            lp.emit("big", bytes([i]) * (3 << 20))
            lp.emit("big", b"small")
            return bytes([i]) * ((1 << 20) + i)

        futures = [lp.spawn(big, i, on="process") for i in range(4)]
        run_all(lp, futures)
    for i, fut in enumerate(futures):
        assert fut.result() == bytes([i]) * ((1 << 20) + i)
        assert got[2 * i] == bytes([i]) * (3 << 20) and got[2 * i + 1] == b"small"


def pipe_ends(pid, mode):
    """The pipes process pid holds open for mode (os.O_RDONLY, os.O_WRONLY): {inode: fd}."""
    found = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            with open(f"/proc/{pid}/fdinfo/{name}") as f:
                flags = int(next(line for line in f if line.startswith("flags:")).split()[1], 8)
        except (OSError, StopIteration):
            continue
        if target.startswith("pipe:") and flags & 3 == mode:
            found[target] = int(name)
    return found


def weft_pipe_fd():
    """In a process task's child: the write end of the pipe weft reports through, the
    one write end the child holds that its parent does not (weft closes it in the
    parent after the fork)."""
    parent = pipe_ends(os.getppid(), os.O_WRONLY)
    ours = [fd for inode, fd in pipe_ends("self", os.O_WRONLY).items() if inode not in parent]
    assert len(ours) == 1, ours
    return ours[0]


def break_the_protocol():
    os.write(weft_pipe_fd(), b"\x05\x00\x00\x00Xjunk!")  # a frame of an unknown kind
    time.sleep(10)


def test_a_child_that_breaks_the_pipe_protocol():
    """A task that writes garbage to weft's pipe: its child is killed, the task fails
    with ChildCrashed, and the tasks after it run in another child."""
    with weft.Loop(max_children=1) as lp:
        first = lp.spawn(pid_and, 0, on="process")
        before = lp.spawn(pid_and, 1, on="process")  # shares the next child with bad
        bad = lp.spawn(break_the_protocol, on="process")
        after = lp.spawn(pid_and, 2, on="process")
        start = time.monotonic()
        run_all(lp, [first, before, bad, after])
        assert time.monotonic() - start < 3
    exc = bad.exception()
    assert isinstance(exc, weft.ChildCrashed) and "broke the pipe protocol" in str(exc)
    assert before.result()[1] == 1 and after.result()[1] == 2
    assert after.result()[0] != before.result()[0]
    assert gone(before.result()[0])
    assert zombie_children() == []


def emit_pid_then_sleep(lp, topic, seconds):
    lp.emit(topic, str(os.getpid()))
    time.sleep(seconds)
    return os.getpid(), topic


def test_cancel_and_timeout_of_waiting_and_running_tasks_with_shared_children():
    baseline = open_fds()
    with weft.Loop(max_children=1) as lp:
        seen = {}
        subscription = lp.subscribe("*", lambda t, p: seen.setdefault(t, []).append(int(p)))
        start = time.monotonic()
        first = lp.spawn(pid_and, "first", on="process")  # alone in its child
        running_cancelled = lp.spawn(emit_pid_then_sleep, lp, "rc", 10, on="process")
        waiting_cancelled = lp.spawn(emit_pid_then_sleep, lp, "wc", 0, on="process")
        waiting_timed_out = lp.spawn(emit_pid_then_sleep, lp, "wt", 0, on="process", timeout=0.3)
        between = lp.spawn(emit_pid_then_sleep, lp, "between", 0, on="process")
        # its timeout leaves a loaded machine time to start the shared child first
        running_timed_out = lp.spawn(emit_pid_then_sleep, lp, "rt", 10, on="process", timeout=2.5)
        last = lp.spawn(emit_pid_then_sleep, lp, "last", 0, on="process")
        assert waiting_cancelled.cancel() is True
        lp.call_later(0.5, running_cancelled.cancel)  # after waiting_timed_out's deadline
        futures = [first, running_cancelled, waiting_cancelled, waiting_timed_out, between,
                   running_timed_out, last]
        run_all(lp, futures)
        elapsed = time.monotonic() - start
        subscription.cancel()
        run(lp)  # until every child is reaped
    assert elapsed < 6
    assert running_cancelled.cancelled() and waiting_cancelled.cancelled()
    assert isinstance(waiting_timed_out.exception(), TimeoutError)
    assert isinstance(running_timed_out.exception(), TimeoutError)
    assert "wc" not in seen and "wt" not in seen  # they never started
    # rc's child was killed; between and rt then shared a new child, which the timeout
    # killed; last got a third.
    assert gone(seen["rc"][0]) and seen["between"] == seen["rt"]
    assert gone(seen["rt"][0]) and last.result()[0] != seen["rt"][0]
    assert between.result() == (seen["between"][0], "between") and last.result()[1] == "last"
    assert zombie_children() == []
    assert open_fds() == baseline


def test_a_child_forked_on_the_loop_thread_runs_only_tasks_spawned_before_its_fork():
    """The snapshot rule for a child forked when a slot frees: a task spawned while it
    runs (after its fork) never runs in it, and sees the parent as it was at its spawn."""
    global STAGE
    STAGE = "before"
    try:
        with weft.Loop(max_children=1) as lp:
            first = lp.spawn(stage_after, 0.05, on="process")  # forked now, alone
            forked_later = lp.spawn(emit_pid_then_sleep, lp, "b", 0.2, on="process")  # waits
            queued = lp.spawn(stage_after, 0, on="process")  # waits: in b's snapshot
            late = []

            def spawn_after_the_fork(topic, payload):  # b's child has been forked
                global STAGE
                STAGE = "after"
                late.append(lp.spawn(stage_after, 0, on="process"))

            lp.subscribe("b", spawn_after_the_fork)
            run_all(lp, [first, forked_later, queued])
            run_all(lp, late)
            b_pid = forked_later.result()[0]
            assert first.result()[0] != b_pid
            assert queued.result() == (b_pid, "before")  # spawned before b's fork
            late_pid, late_stage = late[0].result()
            assert late_pid != b_pid and late_stage == "after"
    finally:
        STAGE = "before"


def test_registrations_end_with_their_tasks():
    before = registry_size()
    with weft.Loop(max_children=2) as lp:
        futures = [lp.spawn(pid_and, i, on="process") for i in range(10)]
        run_all(lp, futures)
        run(lp)
        assert registry_size() == before + 1  # every process task's entry was freed (1: call_soon's)
    assert registry_size() == before
