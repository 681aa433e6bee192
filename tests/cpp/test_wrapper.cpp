// weft.hpp with exceptions: every wrapper call, callables destroyed exactly once,
// exceptions from every callback kind, tasks and futures, a process task, embedding in
// a poll() loop, pools with hooks.
#include "weft.hpp"

#include "harness.hpp"
#include "counted.hpp"

#include <atomic>
#include <csignal>
#include <future>
#include <poll.h>
#include <stdexcept>
#include <thread>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

/// Runs the loop until `cond` or a time limit (ms, times the valgrind slack).
bool run_until(weft::loop &loop, std::function<bool()> cond, double ms = 5000) {
    return harness::eventually(cond, [&] { loop.run(weft::run_mode::once); }, ms);
}

}  // namespace

TEST(posts_timers_and_handles) {
    weft::loop loop;
    int posted = 0, fired = 0, ticks = 0;
    weft::handle p = loop.post([&] { posted++; });
    weft::handle once = loop.after(5ms, [&] { fired++; });
    weft::handle every = loop.every(1ms, [&](weft::handle &self) {
        if (++ticks == 3) CHECK(self.cancel());
    });
    CHECK(p.id() >= WEFT_ID_MIN && once.id() >= WEFT_ID_MIN && every.id() >= WEFT_ID_MIN);
    CHECK(p.active() && once.active() && every.active());
    loop.run();  // returns once nothing is registered
    CHECK_EQ(posted, 1);
    CHECK_EQ(fired, 1);
    CHECK_EQ(ticks, 3);
    CHECK(!p.active() && !once.active() && !every.active());
    CHECK(!once.cancel() && !every.cancel());
    CHECK(!loop.alive());
    // a cancelled timer never fires; cancel by id answers as weft_cancel
    weft::handle later = loop.after(1h, [&] { fired++; });
    CHECK(loop.timeout().has_value());
    CHECK(loop.cancel(later.id()));
    CHECK(!later.active());
    CHECK(!loop.cancel(later.id()));
    CHECK(!loop.timeout().has_value() || loop.timeout()->count() >= 0);
    loop.run(weft::run_mode::nowait);
    CHECK_EQ(fired, 1);
}

TEST(move_only_captures_are_destroyed_exactly_once) {
    counted::reset();
    {
        weft::loop loop;
        int runs = 0;
        loop.post([c = counted(), &runs] { runs += *c.token; });                 // runs, then ends
        weft::handle t = loop.after(1h, [c = counted()] { (void)c; });           // cancelled
        loop.every(1h, [c = counted()] { (void)c; });                            // ends with the loop
        weft::handle s = loop.subscribe("a.*", [c = counted()](std::string_view, std::string_view) { (void)c; });
        weft::scoped_handle w = loop.after(1h, [c = counted()] { (void)c; });    // scope exit cancels
        std::function<void()> f = [c = std::make_shared<counted>()] { (void)c; };  // copyable
        loop.post(f);                                                            // a copy is boxed
        CHECK_EQ(counted::owners(), 6);
        CHECK(t.cancel());
        CHECK_EQ(counted::owners(), 5);
        CHECK(s.cancel());
        CHECK_EQ(counted::owners(), 4);
        loop.run(weft::run_mode::nowait);
        CHECK_EQ(runs, 1);
        CHECK_EQ(counted::owners(), 3);  // the post ran; `every`, `w`, and f's counted (f holds it)
        // a refused registration destroys its callable at once, exactly once
        bool threw = false;
        try {
            loop.watch(-1, weft::readable, [c = counted()](int, std::uint32_t) { (void)c; });
        } catch (const weft::error &) {
            threw = true;
        }
        CHECK(threw);
        CHECK_EQ(counted::owners(), 3);
        t = loop.every(1h, [] {});
    }
    // the loop's destructor ended `every` and `t`, `w` cancelled itself, f went
    CHECK_EQ(counted::owners(), 0);
    CHECK_EQ(counted::destroyed_owners(), counted::made());
    CHECK_EQ(counted::made(), 7);
}

TEST(a_handle_outlives_its_loop) {
    weft::handle h;
    {
        weft::loop loop;
        h = loop.after(1h, [] {});
        CHECK(h.active());
    }
    CHECK(!h.active());
    CHECK(!h.cancel());
    weft::handle empty;
    CHECK(!empty && !empty.active() && !empty.cancel() && empty.id() == 0);
}

TEST(refused_calls_throw_weft_error_with_weft_s_message) {
    weft::loop loop;
    try {
        loop.watch(-1, weft::readable, [](int, std::uint32_t) {});
        CHECK(!"watch(-1) did not throw");
    } catch (const weft::error &e) {
        CHECK_EQ(e.code().value(), (int)WEFT_ERR_INVALID);
        CHECK(e.code().category() == weft::category());
        CHECK(std::string(e.what()).find("weft_watch_fd") != std::string::npos);
        const std::system_error &base = e;  // derived from std::system_error
        CHECK(base.code() == e.code());
    }
    for (auto bad : {"", "a*", "*.b", "job*"}) {
        bool threw = false;
        try {
            loop.subscribe(bad, [](std::string_view, std::string_view) {});
        } catch (const weft::error &e) {
            threw = e.code().value() == WEFT_ERR_INVALID;
        }
        CHECK(threw);
    }
    bool threw = false;
    try {
        loop.emit(std::string_view("a\0b", 3), "x");  // a NUL inside the topic
    } catch (const weft::error &e) {
        threw = e.code().value() == WEFT_ERR_INVALID;
    }
    CHECK(threw);
    threw = false;
    try {
        loop.every(0ms, [] {});
    } catch (const weft::error &e) {
        threw = std::string(e.what()).find("weft_timer_every") != std::string::npos;
    }
    CHECK(threw);
    // the error_code forms report the same without throwing
    std::error_code ec;
    weft::handle h = loop.watch(-1, weft::readable, [](int, std::uint32_t) {}, ec);
    CHECK(!h && ec.value() == WEFT_ERR_INVALID && ec.category() == weft::category());
    CHECK(weft::last_error().find("weft_watch_fd") != std::string::npos);
    loop.emit("ok.topic", "", ec);
    CHECK(!ec);
    loop.run(weft::run_mode::nowait, ec);
    CHECK(!ec);
    // a running loop refuses a second run from its own callback
    std::error_code inner;
    loop.post([&] { loop.run(weft::run_mode::nowait, inner); });
    loop.run(weft::run_mode::nowait);
    CHECK_EQ(inner.value(), (int)WEFT_ERR_BUSY);
}

TEST(exceptions_from_every_callback_kind_reach_the_handler) {
    weft::loop loop;
    std::vector<std::string> caught;
    loop.on_exception([&](std::exception_ptr e) {
        try {
            std::rethrow_exception(e);
        } catch (const std::exception &x) {
            caught.push_back(x.what());
        }
    });
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK(write(fds[1], "x", 1) == 1);
    loop.post([] { throw std::runtime_error("post"); });
    loop.after(0ms, [] { throw std::runtime_error("timer"); });
    weft::handle w = loop.watch(fds[0], weft::readable, [](weft::handle &self, int, std::uint32_t) {
        self.cancel();  // level-triggered: it would throw in every pass
        throw std::runtime_error("fd");
    });
    weft::handle sig = loop.on_signal(SIGUSR1, [](int) { throw std::runtime_error("signal"); });
    weft::handle sub = loop.subscribe("boom", [](std::string_view, std::string_view) {
        throw std::runtime_error("event");
    });
    loop.emit("boom");
    std::raise(SIGUSR1);
    weft_result status = WEFT_OK;
    loop.spawn(weft::where::loop, [](weft::task &) { return 0; },
               [](const weft::task_result &) { throw std::runtime_error("done"); });
    loop.spawn(weft::where::cpu, [](weft::task &) -> int { throw std::runtime_error("work"); },
               [&](const weft::task_result &r) {
                   status = static_cast<weft_result>(r.status);
                   try {
                       std::rethrow_exception(r.exception);
                   } catch (const std::exception &x) {
                       caught.push_back(std::string("done saw ") + x.what());
                   }
               });
    CHECK(run_until(loop, [&] { return caught.size() >= 7; }));
    CHECK_EQ((int)caught.size(), 7);
    for (auto want : {"post", "timer", "fd", "signal", "event", "done", "done saw work"}) {
        bool seen = false;
        for (auto &c : caught) seen |= c == want;
        CHECK(seen);
        if (!seen) std::printf("    missing: %s\n", want);
    }
    CHECK_EQ((int)status, (int)WEFT_ERR_PANIC);
    CHECK(!w.active());
    sig.cancel();
    sub.cancel();
    close(fds[0]);
    close(fds[1]);
}

TEST(fd_watches_read_and_modify) {
    weft::loop loop;
    int fds[2];
    CHECK(pipe(fds) == 0);
    std::string got;
    weft::handle w = loop.watch(fds[0], weft::readable, [&](weft::handle &self, int fd, std::uint32_t ev) {
        CHECK(ev & weft::readable);
        char buf[16];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) got.append(buf, static_cast<std::size_t>(n));
        if (got.size() >= 5) self.cancel();
    });
    std::thread writer([&] { CHECK(write(fds[1], "hello", 5) == 5); });
    CHECK(run_until(loop, [&] { return !w.active(); }));
    writer.join();
    CHECK(got == "hello");
    // modify: a paused watch is not called
    int calls = 0;
    weft::handle w2 = loop.watch(fds[1], weft::writable, [&](int, std::uint32_t) { calls++; });
    loop.modify(w2, 0);
    loop.run(weft::run_mode::nowait);
    CHECK_EQ(calls, 0);
    loop.modify(w2, weft::writable);
    loop.run(weft::run_mode::nowait);
    CHECK_EQ(calls, 1);
    CHECK(w2.cancel());
    bool threw = false;
    try {
        loop.modify(w2, weft::writable);
    } catch (const weft::error &e) {
        threw = e.code().value() == WEFT_ERR_NOT_FOUND;
    }
    CHECK(threw);
    close(fds[0]);
    close(fds[1]);
}

TEST(topics_carry_bytes_and_signals_arrive) {
    weft::loop loop;
    std::vector<std::pair<std::string, std::string>> seen;
    weft::handle sub = loop.subscribe("job.*", [&](std::string_view topic, std::string_view payload) {
        seen.emplace_back(topic, payload);
    });
    loop.emit("job.done", std::string_view("a\0b", 3));
    loop.emit("job.x");
    loop.emit("other", "ignored");
    int signals = 0;
    weft::handle sig = loop.on_signal(SIGUSR2, [&](int s) { signals += s == SIGUSR2; });
    std::raise(SIGUSR2);
    CHECK(run_until(loop, [&] { return seen.size() == 2 && signals == 1; }));
    CHECK(seen[0].first == "job.done" && seen[0].second == std::string("a\0b", 3));
    CHECK(seen[1].first == "job.x" && seen[1].second.empty());
    CHECK(sub.cancel() && sig.cancel());
}

TEST(tasks_write_emit_and_complete_once) {
    weft::loop loop;
    std::vector<std::string> events;
    loop.subscribe("progress", [&](std::string_view, std::string_view p) { events.emplace_back(p); });
    int dones = 0;
    std::string result;
    for (auto place : {weft::where::cpu, weft::where::io, weft::where::loop}) {
        loop.spawn(place,
                   [](weft::task &t) {
                       CHECK(!t.cancelled());
                       t.emit("progress", "half");
                       t.write("hello ");
                       t.write("world");
                       return 3;
                   },
                   [&](const weft::task_result &r) {
                       dones++;
                       CHECK_EQ(r.status, 3);
                       CHECK(r.ok() && !r.exception);
                       result = std::string(r.data);
                   });
    }
    CHECK(run_until(loop, [&] { return dones == 3; }));
    CHECK(result == "hello world");
    CHECK_EQ((int)events.size(), 3);
    // a timeout: done gets WEFT_ERR_TIMEOUT while the work still runs (or before it
    // starts: then it never does). The work may outlive this frame: what it reads is
    // its own (a shared flag), never the frame's.
    auto stop = std::make_shared<std::atomic<bool>>(false);
    int status = 0;
    loop.spawn(weft::where::io,
               [stop](weft::task &t) {
                   while (!t.cancelled() && !*stop) std::this_thread::sleep_for(1ms);
               },
               [&](const weft::task_result &r) { status = r.status; },
               weft::spawn_options().timeout(20ms));
    CHECK(run_until(loop, [&] { return status != 0; }));
    CHECK_EQ(status, (int)WEFT_ERR_TIMEOUT);
    // cancel before it starts (a loop task starts in the next pass)
    int cancelled = 0;
    weft::handle h = loop.spawn(weft::where::loop, [](weft::task &) { CHECK(!"ran"); },
                                [&](const weft::task_result &r) { cancelled = r.status; });
    CHECK(h.cancel());
    CHECK(run_until(loop, [&] { return cancelled != 0; }));
    CHECK_EQ(cancelled, (int)WEFT_ERR_CANCELLED);
    CHECK(run_until(loop, [&] { return !h.active(); }));
    *stop = true;
}

TEST(futures_get_the_result_or_the_exception) {
    weft::loop loop;
    std::future<std::string> ok = loop.spawn_future(weft::where::cpu, [](weft::task &t) {
        t.write("rendered");
    });
    std::future<std::string> bad = loop.spawn_future(weft::where::cpu, [](weft::task &) -> int {
        throw std::invalid_argument("no such recording");
    });
    std::future<std::string> late = loop.spawn_future(
        weft::where::io, [](weft::task &t) { while (!t.cancelled()) std::this_thread::sleep_for(1ms); },
        weft::spawn_options().timeout(10ms));
    loop.run();
    CHECK(ok.get() == "rendered");
    bool threw = false;
    try {
        bad.get();
    } catch (const std::invalid_argument &e) {
        threw = std::string(e.what()) == "no such recording";
    }
    CHECK(threw);
    threw = false;
    try {
        late.get();
    } catch (const weft::error &e) {
        threw = e.code().value() == WEFT_ERR_TIMEOUT;
    }
    CHECK(threw);
}

TEST(a_process_task_runs_in_a_child) {
    weft::loop loop;
    pid_t parent = getpid();
    std::vector<int> statuses;
    std::string out;
    loop.spawn(weft::where::process,
               [parent](weft::task &t) {
                   t.write(getpid() != parent ? "child" : "parent");
                   return 7;
               },
               [&](const weft::task_result &r) {
                   statuses.push_back(r.status);
                   out = std::string(r.data);
               });
    loop.spawn(weft::where::process, [](weft::task &) -> int { throw std::runtime_error("x"); },
               [&](const weft::task_result &r) { statuses.push_back(r.status); });
    loop.run();
    CHECK_EQ((int)statuses.size(), 2);
    CHECK(out == "child");
    bool seven = false, crashed = false;
    for (int s : statuses) {
        seven |= s == 7;
        crashed |= s == WEFT_ERR_CRASHED;
    }
    CHECK(seven && crashed);
}

TEST(embedded_in_a_poll_loop) {
    weft::loop loop;
    int fired = 0, posted = 0;
    loop.after(3ms, [&] { fired++; });
    loop.after(6ms, [&] { fired++; });
    std::thread other([&] { loop.post([&] { posted++; }); });
    other.join();
    int fd = loop.fd();
    CHECK(fd >= 0);
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (loop.alive() && std::chrono::steady_clock::now() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        auto t = loop.timeout();
        poll(&p, 1, t ? static_cast<int>(t->count()) : 1000);
        loop.run(weft::run_mode::nowait);
    }
    CHECK_EQ(fired, 2);
    CHECK_EQ(posted, 1);
    CHECK(!loop.timeout().has_value());
}

TEST(pools_run_hooks_and_tasks) {
    std::atomic<int> started{0}, stopped{0};
    weft::pool::options o;
    o.name = "cpp-pool";
    o.on_thread_start = [&](std::uint32_t) { started++; };
    o.on_thread_stop = [&](std::uint32_t) { stopped++; };
    weft::pool pool(weft::pool::cpu, 2, o);
    CHECK(pool);
    weft::loop loop;
    int dones = 0;
    for (int i = 0; i < 10; i++)
        loop.spawn(weft::where::cpu, [](weft::task &t) { t.write("x"); },
                   [&](const weft::task_result &r) { dones += r.data == "x"; },
                   weft::spawn_options().on(pool));
    loop.run();
    CHECK_EQ(dones, 10);
    CHECK(started >= 1);
    pool.reset();
    CHECK_EQ(started.load(), stopped.load());
    CHECK(!pool);
    bool threw = false;
    try {
        weft::pool bad(static_cast<weft::pool::kind>(7));
    } catch (const weft::error &e) {
        threw = e.code().value() == WEFT_ERR_INVALID;
    }
    CHECK(threw);
}

TEST(stats_labels_and_timings) {
    weft::loop loop;
    int posts = 0;
    loop.post([&] { posts++; });
    weft::handle slow = loop.after(1h, [] {});
    loop.set_label(slow, "hourly");
    loop.set_label(slow, "");  // removes the name
    loop.set_label(slow.id(), "hourly again");
    loop.run(weft::run_mode::nowait);
    weft_loop_stats st = loop.stats();
    CHECK_EQ(st.size, sizeof st);
    CHECK(st.passes >= 1);
    CHECK_EQ(st.post_callbacks, 1u);
    CHECK_EQ(st.timers, 1u);
    CHECK(slow.cancel());
    // a stale id, and a NUL inside the label, are refused
    std::error_code ec;
    loop.set_label(slow, "gone", ec);
    CHECK_EQ(ec.value(), WEFT_ERR_NOT_FOUND);
    weft::handle again = loop.after(1h, [] {});
    loop.set_label(again, std::string_view("a\0b", 3), ec);
    CHECK_EQ(ec.value(), WEFT_ERR_INVALID);
    bool threw = false;
    try {
        loop.set_label(slow.id(), "gone");
    } catch (const weft::error &e) {
        threw = e.code().value() == WEFT_ERR_NOT_FOUND;
    }
    CHECK(threw);
    CHECK(again.cancel());

    // timings: only for a task spawned with spawn_options().timing()
    weft::pool pool(weft::pool::cpu, 1);
    std::optional<weft_task_timing> timed, untimed;
    loop.spawn(weft::where::cpu, [](weft::task &) { std::this_thread::sleep_for(2ms); },
               [&](const weft::task_result &r) { timed = r.timing; },
               weft::spawn_options().on(pool).timing());
    loop.spawn(weft::where::cpu, [](weft::task &) {}, [&](const weft::task_result &r) { untimed = r.timing; },
               weft::spawn_options().on(pool));
    loop.run();
    CHECK(timed.has_value() && !untimed.has_value());
    if (timed) {
        CHECK(timed->queued_ns > 0 && timed->queued_ns <= timed->started_ns);
        CHECK(timed->started_ns < timed->finished_ns && timed->finished_ns <= timed->done_ns);
        CHECK(timed->finished_ns - timed->started_ns >= 2'000'000u);
    }
    // a pool counts a task once its work returns, which may be just after its done
    CHECK(harness::eventually([&] { return pool.stats().tasks_run == 2; }, [] {
        std::this_thread::sleep_for(1ms);
    }, 5000));
    CHECK_EQ(pool.stats().threads, 1u);
    CHECK(loop.stats().done_callbacks == 2u);
    weft_pool_stats io = weft::pool::default_stats(weft::pool::io);
    CHECK_EQ(io.size, sizeof io);
    pool.reset();
    pool.stats(ec);  // an empty pool has no counters
    CHECK_EQ(ec.value(), WEFT_ERR_NULL);
}

TEST(loops_move_and_refuse_to_free_while_running) {
    weft::loop a;
    int caught = 0;
    a.on_exception([&](std::exception_ptr) { caught++; });
    a.post([] { throw 1; });
    weft::loop b = std::move(a);  // the registration and the handler move with it
    CHECK(!a && b);
    bool refused = false;
    b.post([&] { refused = !b.reset(); });
    b.run();
    CHECK_EQ(caught, 1);
    CHECK(refused);
    CHECK(b);
    CHECK(b.reset());
    CHECK(!b);
}

TEST(posts_from_many_threads_arrive_once_each) {
    weft::loop loop;
    std::atomic<int> got{0};
    weft::handle keep = loop.every(1h, [] {});
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++)
        threads.emplace_back([&] {
            for (int i = 0; i < 2000; i++) loop.post([&, c = counted()] { got++; (void)c; });
        });
    std::thread runner([&] { loop.run(); });
    for (auto &t : threads) t.join();
    while (got.load() < 8000) std::this_thread::sleep_for(1ms);
    loop.post([&] { keep.cancel(); });
    runner.join();
    CHECK_EQ(got.load(), 8000);
}

TEST(stop_pass_limit_and_process_options) {
    weft::loop loop;
    // stop from another thread ends a run that would go on for an hour
    weft::handle hour = loop.after(1h, [] {});
    std::thread stopper([&] {
        std::this_thread::sleep_for(20ms);
        loop.stop();
    });
    loop.run();
    stopper.join();
    CHECK(hour.active());
    CHECK(hour.cancel());
    // a pass limit of 2: three posts take two passes
    loop.set_pass_limit(2);
    int ran = 0;
    for (int i = 0; i < 3; i++) loop.post([&] { ran++; });
    loop.run(weft::run_mode::nowait);
    CHECK_EQ(ran, 2);
    loop.run(weft::run_mode::nowait);
    CHECK_EQ(ran, 3);
    loop.set_pass_limit(0);
    // process tasks: one child at a time, reused; a kept fd is open in the child
    int fds[2];
    CHECK(pipe(fds) == 0);
    std::vector<std::string> pids;
    auto opts = weft::spawn_options().max_children(1).reuse_child().keep_fds({fds[1]});
    for (int i = 0; i < 3; i++)
        loop.spawn(weft::where::process,
                   [&fds](weft::task &t) {
                       t.write(std::to_string(getpid()));
                       return write(fds[1], "k", 1) == 1 ? 0 : 1;
                   },
                   [&, c = counted()](const weft::task_result &r) {
                       CHECK_EQ(r.status, 0);
                       pids.emplace_back(r.data);
                   },
                   opts);
    loop.run();
    CHECK_EQ((int)pids.size(), 3);
    // the first forks inside its spawn, before the others exist; the second forks when
    // the first is over, with the third spawned, so its child runs the third too
    CHECK(pids[1] == pids[2]);
    char buf[8];
    CHECK_EQ((int)read(fds[0], buf, sizeof buf), 3);
    close(fds[0]);
    close(fds[1]);
    // emit with a pointer and a length
    std::string got;
    loop.subscribe("bin", [&](weft::handle &self, std::string_view, std::string_view p) {
        got = std::string(p);
        self.cancel();
    });
    const unsigned char bytes[4] = {0, 1, 2, 255};
    loop.emit("bin", bytes, sizeof bytes);
    loop.run();
    CHECK(got == std::string("\0\1\2\xff", 4));
}

TEST(task_captures_are_destroyed_once_after_work_and_done) {
    counted::reset();
    {
        weft::loop loop;
        int dones = 0;
        for (auto place : {weft::where::loop, weft::where::io, weft::where::cpu})
            loop.spawn(place, [c = counted()](weft::task &t) { t.write("w"); (void)c; },
                       [&, c = counted()](const weft::task_result &) { dones++; (void)c; });
        // one cancelled before it starts, one left for the loop's destructor
        weft::handle h = loop.spawn(weft::where::loop, [c = counted()](weft::task &) { (void)c; },
                                    [c = counted()](const weft::task_result &) { (void)c; });
        CHECK(h.cancel());
        loop.after(1h, [c = counted()] { (void)c; });
        CHECK(run_until(loop, [&] { return dones == 3 && !h.active(); }));
        CHECK_EQ(counted::owners(), 1);  // the timer's
    }
    CHECK_EQ(counted::owners(), 0);
    CHECK_EQ(counted::made(), 9);
    CHECK_EQ(counted::destroyed_owners(), 9);
}

TEST_MAIN()
