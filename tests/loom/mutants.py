#!/usr/bin/env python3
"""Shows that each loom model catches the bug it guards (`make loom-mutants`).

For each mutant below: copy the crate to target/loom-mutants/tree, remove or weaken
one fence, flag or lock in the copy, run the model that guards it, and expect it to
FAIL. A mutant the model does not catch, or a mutant whose text is no longer in the
source (the list is stale), fails this script.

Usage: tests/loom/mutants.py [NAME...]   (no name: all of them)
"""
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = os.path.join(ROOT, "target", "loom-mutants")

# name: (file, text as in the source, replacement, model test)
MUTANTS = {
    "inbox: the producer's fence between its claim and `awake`": (
        "src/inbox.rs",
        "        after_rmw();\n        if !self.awake.0.load(LOAD_AFTER_RMW) && seq == self.records.head_after_fence() {",
        "        if !self.awake.0.load(LOAD_AFTER_RMW) && seq == self.records.head_after_fence() {",
        "loom_inbox_wakeup",
    ),
    "inbox: doze's fence between `awake` and the tail": (
        "src/inbox.rs",
        "        fence(SeqCst); // the Dekker pair with the producers (see crate::sync)\n",
        "",
        "loom_inbox_wakeup",
    ),
    "inbox: the producer rings only for the record at `head`": (
        "src/inbox.rs",
        "seq == self.records.head_after_fence()",
        "seq == self.records.head_after_fence() + 1",
        "loom_inbox_wakeup",
    ),
    "queue: the new block stored before the index leaves the marker (Release)": (
        "src/inbox/queue.rs",
        "self.tail.0.index.fetch_add(1, Release);",
        "self.tail.0.index.fetch_add(1, Relaxed);",
        "loom_inbox_blocks_fifo",
    ),
    "queue: a slot's stamp is stored Release (the record's hand-over)": (
        "src/inbox/queue.rs",
        "slot.stamp.store(stamp(index, kind), Release);",
        "slot.stamp.store(stamp(index, kind), Relaxed);",
        "loom_inbox_hand_over",
    ),
    "queue: the consumer skips a cancelled slot": (
        "src/inbox/queue.rs",
        "                CANCELLED => true,\n",
        "",
        "loom_inbox_cancel_races_take",
    ),
    "inbox: close waits for ringers": (
        "src/inbox.rs",
        "        while self.ringers.load(Acquire) != 0 {\n            crate::sync::yield_now();\n        }\n        self.bell_life.end();",
        "        self.bell_life.end();",
        "loom_inbox_close_while_ringing",
    ),
    "inbox: ring's fence between `ringers` and `closed`": (
        "src/inbox.rs",
        "        fence(SeqCst); // the Dekker pair with `close`\n",
        "",
        "loom_inbox_close_while_ringing",
    ),
    "completions: give_back's fence before it reads `awake`": (
        "src/inbox.rs",
        "                after_rmw();\n                self.life.touch();",
        "                self.life.touch();",
        "loom_completions_wakeup",
    ),
    "completions: close_done waits for givers": (
        "src/inbox.rs",
        "        while self.givers.load(Acquire) != 0 {\n            crate::sync::yield_now();\n        }",
        "",
        "loom_completions_close",
    ),
    "completions: take_done's acquire (the hand-over of the result)": (
        "src/inbox.rs",
        "let list = self.done.0.swap(std::ptr::null_mut(), SeqCst);",
        "let list = self.done.0.swap(std::ptr::null_mut(), Relaxed);",
        "loom_cell_result",
    ),
    "cell: WORK_GONE, set by the pool when it drops the work": (
        "src/task/cell.rs",
        "                this.work.with_mut(|work| unsafe { ManuallyDrop::drop(&mut *work) });\n                this.stage.fetch_or(WORK_GONE, Release);",
        "                this.work.with_mut(|work| unsafe { ManuallyDrop::drop(&mut *work) });",
        "loom_cell_ends_while_running",
    ),
    "cell: the cancel flag": (
        "src/task/cell.rs",
        "    pub fn cancel(&self) -> bool {\n        self.cancelled.store(true, SeqCst);",
        "    pub fn cancel(&self) -> bool {",
        "loom_cell_cancel_races_start",
    ),
    "cell: QUEUED -> ABANDONED by compare-and-swap": (
        "src/task/cell.rs",
        "        self.stage.compare_exchange(QUEUED, ABANDONED, SeqCst, SeqCst).is_ok()",
        "        { let q = self.stage.load(SeqCst) == QUEUED; if q { self.stage.store(ABANDONED, SeqCst); } q }",
        "loom_cell_cancel_races_start",
    ),
    "table: a cancel holds `ends` from the id check to the flag": (
        "src/task/table.rs",
        "        let _ends = self.hold_ends();\n        // SAFETY: the table's cells live as long as the table.",
        "        // SAFETY: the table's cells live as long as the table.",
        "loom_table_cancel_by_id",
    ),
    "watchdog: enter's Release fence before the fields": (
        "src/watchdog/current.rs",
        "        fence(Release);\n        self.id.store(id, Relaxed);",
        "        self.id.store(id, Relaxed);",
        "loom_watchdog_reads_one_callback",
    ),
    "watchdog: peek's Acquire fence before the second load": (
        "src/watchdog/current.rs",
        "        fence(Acquire);\n        (self.seq.load(Relaxed) == seq)",
        "        (self.seq.load(Relaxed) == seq)",
        "loom_watchdog_reads_one_callback",
    ),
    "gate: enter's Acquire": (
        "src/gate.rs",
        "            .compare_exchange(0, held(me), Acquire, Relaxed)\n            .is_ok()",
        "            .compare_exchange(0, held(me), Relaxed, Relaxed)\n            .is_ok()",
        "loom_gate_hands_over_the_state",
    ),
    "gate: take's Acquire": (
        "src/gate.rs",
        "                if self.word.compare_exchange(0, held(me), Acquire, Relaxed).is_ok() {\n                    return Ok(run());",
        "                if self.word.compare_exchange(0, held(me), Relaxed, Relaxed).is_ok() {\n                    return Ok(run());",
        "loom_gate_hands_over_the_state",
    ),
    "gate: the give-back's Release": (
        "src/gate.rs",
        "            How::Call(_) | How::Run => self.gate.word.store(0, Release),",
        "            How::Call(_) | How::Run => self.gate.word.store(0, Relaxed),",
        "loom_gate_hands_over_the_state",
    ),
    "gate: a guard made only on success": (
        "src/gate.rs",
        "            .then(|| Held { gate: self, how: How::Call(me) })",
        "            .then_some(Held { gate: self, how: How::Call(me) })",
        "loom_gate_hands_over_the_state",
    ),
    "gate: a call on the kept gate fences before it reads the word again": (
        "src/gate.rs",
        "            crate::barrier::light(); // the Dekker pair with take's barrier::heavy\n",
        "",
        "loom_gate_kept_between_calls_is_taken_away",
    ),
    "gate: a taker fences before it reads busy": (
        "src/gate.rs",
        "                    crate::barrier::heavy(); // the Dekker pair with enter's barrier::light\n",
        "",
        "loom_gate_kept_between_calls_is_taken_away",
    ),
    "gate: a taker waits for the keeper's call": (
        "src/gate.rs",
        "                    while self.busy.load(Acquire) == other {",
        "                    while false && self.busy.load(Acquire) == other {",
        "loom_gate_kept_between_calls_is_taken_away",
    ),
    "gate: a call on the kept gate ends with a Release store": (
        "src/gate.rs",
        "            How::Sticky => self.gate.busy.store(0, Release),",
        "            How::Sticky => self.gate.busy.store(0, Relaxed),",
        "loom_gate_kept_between_calls_is_taken_away",
    ),
    "gate: the kept gate is made sticky with a Release store": (
        "src/gate.rs",
        "            How::Call(me) if self.gate.keeps => self.gate.word.store(sticky(me), Release),",
        "            How::Call(me) if self.gate.keeps => self.gate.word.store(sticky(me), Relaxed),",
        "loom_gate_kept_between_calls_is_taken_away",
    ),
    "gate: a nested call is refused": (
        "src/gate.rs",
        "            if self.busy.load(Relaxed) == me {\n                return None; // a call nested in this thread's own",
        "            if false {\n                return None; // a call nested in this thread's own",
        "loom_gate_kept_between_calls_is_taken_away",
    ),
    "signal: ring_all's fence between `in_handler` and the slots": (
        "src/signal.rs",
        "        fence(SeqCst); // the Dekker pair with `unregister`\n",
        "",
        "loom_signal_bells",
    ),
    "signal: unregister's fence between the slot and `in_handler`": (
        "src/signal.rs",
        "        fence(SeqCst); // the Dekker pair with `ring_all`\n",
        "",
        "loom_signal_bells",
    ),
    "sleep: wake_if_needed's fence between `events` and the counters": (
        "src/pool/sleep.rs",
        "        after_rmw();\n        if self.searching.load(LOAD_AFTER_RMW) == 0",
        "        if self.searching.load(LOAD_AFTER_RMW) == 0",
        "loom_sleep_last_searcher",
    ),
    "sleep: sleep_unless's fence between the counters and `events`": (
        "src/pool/sleep.rs",
        "        fence(SeqCst); // the Dekker pair with the submitters (the counters, then events)\n",
        "",
        "loom_sleep_last_searcher",
    ),
    "sleep: sleep_unless checks `events` again under the mutex": (
        "src/pool/sleep.rs",
        "        if self.events.load(Acquire) == seen && !queues.shutting_down() {",
        "        if seen == seen && !queues.shutting_down() {",
        "loom_sleep_wakeup",
    ),
    "sleep: sleep_unless checks shutdown under the mutex": (
        "src/pool/sleep.rs",
        "        if self.events.load(Acquire) == seen && !queues.shutting_down() {",
        "        if self.events.load(Acquire) == seen {",
        "loom_sleep_wakeup",
    ),
    "sleep: wake_one notifies under the mutex": (
        "src/pool/sleep.rs",
        "        let waiting = self.sleep.lock().unwrap_or_else(|p| p.into_inner());\n        if *waiting > 0 {",
        "        {",
        "loom_sleep_last_searcher",
    ),
    "sleep: wake_all notifies under the mutex": (
        "src/pool/sleep.rs",
        "        let _guard = self.sleep.lock().unwrap_or_else(|p| p.into_inner());\n        self.wake.notify_all();",
        "        self.wake.notify_all();",
        "loom_sleep_wakeup",
    ),
    "sleep: run_found's fence between `searching` and the queues": (
        "src/pool/sleep.rs",
        "            fence(SeqCst); // the Dekker pair with the submitters (searching, then the queues)\n",
        "",
        "loom_sleep_last_searcher_two_queues",
    ),
    "parked: park's fence between raising `full` and reading `cancelled`": (
        "src/loop/parked.rs",
        "        self.full.swap(true, SeqCst);\n        after_rmw();\n",
        "        self.full.swap(true, SeqCst);\n",
        "loom_parked_cancel_races_the_end_of_a_call",
    ),
    "parked: a cancel takes a handler parked since its lock": (
        "src/loop/parked.rs",
        "        if !self.full.load(LOAD_AFTER_RMW) {\n            return None;\n        }\n        self.take()",
        "        None",
        "loom_parked_cancel_races_the_end_of_a_call",
    ),
    "sleep: the last searcher wakes a sleeper": (
        "src/pool/sleep.rs",
        "            queues.queued()\n        } {\n            self.wake_one();\n        }",
        "            queues.queued()\n        } {}",
        "loom_sleep_last_searcher",
    ),
    "stage: the owner checks `want` after it gives the stage back": (
        "src/pool/stage.rs",
        "        if self.want.load(Relaxed) && self.word.compare_exchange(0, OWNER, Acquire, Relaxed).is_ok() {",
        "        if false && self.word.compare_exchange(0, OWNER, Acquire, Relaxed).is_ok() {",
        "loom_pool_stage_two_jobs",
    ),
    "stage: the owner fences between its give-back and `want`": (
        "src/pool/stage.rs",
        "        if self.plain {\n            crate::barrier::light();\n        } else {\n            fence(SeqCst);\n        }",
        "",
        "loom_pool_stage_two_jobs",
    ),
    "stage: a last look fences between `want` and the stage's word": (
        "src/pool/stage.rs",
        "                    if self.plain {\n                        crate::barrier::heavy();\n                    } else {\n                        fence(SeqCst);\n                    }",
        "",
        "loom_pool_stage_two_jobs",
    ),
    "stage: a last look takes a stage given back meanwhile": (
        "src/pool/stage.rs",
        "                    if self.word.load(Relaxed) == OWNER {",
        "                    if true {",
        "loom_pool_stage_one_worker",
    ),
    "stage: a taker gives the stage back with Release": (
        "src/pool/stage.rs",
        "        let (n, left) = self.move_oldest(into);\n        self.word.store(0, Release);",
        "        let (n, left) = self.move_oldest(into);\n        self.word.store(0, Relaxed);",
        "loom_pool_stage_two_jobs",
    ),
    "stage: a take that leaves jobs staged makes a submission (the model's Cpu::find_job)": (
        "src/loom_models/pool.rs",
        "                    if left {\n                        // Cpu::find_job: jobs left staged (TAKE_MAX is 1 here).\n"
        "                        self.0.sleep.submitted();\n                    }\n",
        "",
        "loom_pool_stage_two_jobs",
    ),
    "stage: the owner gives the stage back with Release": (
        "src/pool/stage.rs",
        "        });\n        self.word.store(0, Release);",
        "        });\n        self.word.store(0, Relaxed);",
        "loom_pool_stage_two_jobs",
    ),
    "stage: a push into an empty stage is a submission": (
        "src/pool/stage.rs",
        "            len == 1\n",
        "            len == 0\n",
        "loom_pool_stage_one_job",
    ),
    "timers: schedule publishes ARMED with Release": (
        "src/timer/table.rs",
        "        record.state.store(state(generation, ARMED) | flag, Release);",
        "        record.state.store(state(generation, ARMED) | flag, Relaxed);",
        "loom_timers_cancel_against_fire_and_reuse",
    ),
    "timers: the straight line publishes ARMED with Release": (
        "src/timer/fast.rs",
        "                (*record).state.store(state(generation, ARMED) | PACKED, Release);",
        "                (*record).state.store(state(generation, ARMED) | PACKED, Relaxed);",
        "loom_timers_packed_owner_cancel_against_foreign_cancel",
    ),
    "timers: the straight line publishes a never-used record by `count` with Release": (
        "src/timer/fast.rs",
        "        self.chunks.count.store(index + 1, Release);",
        "        self.chunks.count.store(index + 1, Relaxed);",
        "loom_timers_packed_owner_cancel_against_foreign_cancel",
    ),
    "timers: a never-used record is published by `count` with Release": (
        "src/timer/table.rs",
        "        self.chunks.count.store(index + 1, Release);",
        "        self.chunks.count.store(index + 1, Relaxed);",
        "loom_timers_cancel_against_fire_and_reuse",
    ),
    "timers: a canceller's claim is Acquire": (
        "src/timer/table.rs",
        "            if record.state.compare_exchange(current, claimed, Acquire, Relaxed).is_err() {",
        "            if record.state.compare_exchange(current, claimed, Relaxed, Relaxed).is_err() {",
        "loom_timers_cancel_against_fire_and_reuse",
    ),
    "timers: a canceller stores CANCELLED with Release": (
        "src/timer/table.rs",
        "            record.state.store(state(generation, CANCELLED), Release);",
        "            record.state.store(state(generation, CANCELLED), Relaxed);",
        "loom_timers_cancel_against_fire_and_reuse",
    ),
    "timers: the owner waits for a claimed record": (
        "src/timer/table.rs",
        "                CLAIMED => crate::sync::yield_now(),\n                CANCELLED => {\n                    self.release(own, index, generation, Relaxed);",
        "                CLAIMED | CANCELLED => {\n                    self.release(own, index, generation, Relaxed);",
        "loom_timers_cancel_against_fire_and_reuse",
    ),
    "timers: the owner's cancel claims the record by CAS while another thread cancels": (
        "src/timer/table.rs",
        "        record.state.compare_exchange(current, free, Acquire, Relaxed).ok()\n",
        "        record.state.store(free, Relaxed);\n        Some(current)\n",
        "loom_timers_owner_cancel_against_foreign_cancel",
    ),
    "timers: the owner's plain cancel looks for cancels from other threads": (
        "src/timer/table.rs",
        "            let alone = self.foreign.load(Acquire) == 0;",
        "            let alone = true;",
        "loom_timers_owner_cancel_against_foreign_cancel",
    ),
    "timers: the owner's fence between `cancelling` and `foreign`": (
        "src/timer/table.rs",
        "            crate::barrier::light(); // the Dekker pair with cancel_foreign's barrier::heavy\n",
        "",
        "loom_timers_owner_cancel_against_foreign_cancel",
    ),
    "timers: a foreign cancel's barrier between `foreign` and `cancelling`": (
        "src/timer/table.rs",
        "        crate::barrier::heavy(); // the Dekker pair with free_armed's barrier::light\n",
        "",
        "loom_timers_owner_cancel_against_foreign_cancel",
    ),
    "timers: a foreign cancel is counted out with Release": (
        "src/timer/table.rs",
        "        self.foreign.fetch_sub(1, Release);",
        "        self.foreign.fetch_sub(1, Relaxed);",
        "loom_timers_owner_cancel_against_foreign_cancel",
    ),
    "timers: a foreign cancel waits for the owner's plain cancel": (
        "src/timer/table.rs",
        "        while self.cancelling.load(Acquire) != 0 {",
        "        while false && self.cancelling.load(Acquire) != 0 {",
        "loom_timers_owner_cancel_against_foreign_cancel",
    ),
    "timers: firing claims the record by CAS": (
        "src/timer/table.rs",
        "                if record.state.compare_exchange(current, running, Acquire, Relaxed).is_err() {\n                    continue;\n                }",
        "                record.state.store(running, Relaxed);",
        "loom_timers_cancel_against_fire_and_reuse",
    ),
}

def copy_tree(tree):
    if os.path.exists(tree):
        shutil.rmtree(tree)
    os.makedirs(tree)
    for name in ("Cargo.toml", "Cargo.lock", "build.rs", "rustfmt.toml"):
        if os.path.exists(os.path.join(ROOT, name)):
            shutil.copy(os.path.join(ROOT, name), tree)
    shutil.copytree(os.path.join(ROOT, "src"), os.path.join(tree, "src"))


def run(name, mutant):
    path, text, replacement, test = mutant
    tree = os.path.join(WORK, "tree")
    copy_tree(tree)
    target = os.path.join(tree, path)
    source = open(target).read()
    # One edit, or a list of (text, replacement) edits made together.
    for text, replacement in text if isinstance(text, list) else [(text, replacement)]:
        if source.count(text) != 1:
            return f"stale: the text is in {path} {source.count(text)} times (expected once)"
        source = source.replace(text, replacement)
    open(target, "w").write(source)
    env = dict(os.environ)
    env["RUSTFLAGS"] = "--cfg loom"
    env["CARGO_TARGET_DIR"] = os.path.join(WORK, "target")
    env.setdefault("LOOM_MAX_PREEMPTIONS", "3")
    started = time.time()
    proc = subprocess.run(
        ["cargo", "test", "--release", "--lib", "--quiet", test, "--", "--exact", f"loom_models::{module(test)}::{test}"],
        cwd=tree, env=env, capture_output=True, text=True,
    )
    took = time.time() - started
    out = proc.stdout + proc.stderr
    if "error[" in out or "could not compile" in out:
        return "the mutant does not compile:\n" + out[-3000:]
    if "running 1 test" not in out:
        return "the model did not run:\n" + out[-3000:]
    if proc.returncode == 0:
        return f"NOT caught: {test} passed with the mutant ({took:.0f} s)"
    reason = next((l.strip() for l in out.splitlines() if "panicked" in l or "Causality" in l or "deadlock" in l.lower()), "")
    print(f"caught  {name}\n        by {test} in {took:.0f} s: {reason[:160]}", flush=True)
    return None


def module(test):
    return test.split("_")[1]


def main():
    names = sys.argv[1:] or list(MUTANTS)
    failures = []
    for name in names:
        problem = run(name, MUTANTS[name])
        if problem:
            print(f"FAILED  {name}: {problem}", flush=True)
            failures.append(name)
    print(f"{len(names) - len(failures)} of {len(names)} mutants caught by their models")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
