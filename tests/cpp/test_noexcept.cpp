// weft.hpp built with -fno-exceptions: the std::error_code forms of every call, and
// callables destroyed exactly once, with no exception machinery at all.
#include "weft.hpp"

#include "harness.hpp"
#include "counted.hpp"

#include <csignal>
#include <unistd.h>

#if WEFT_HPP_EXCEPTIONS
#error "test_noexcept must be built with -fno-exceptions"
#endif

using namespace std::chrono_literals;

TEST(error_codes_instead_of_exceptions) {
    std::error_code ec;
    weft::loop loop(ec);
    CHECK(!ec && loop);
    weft::handle h = loop.watch(-1, weft::readable, [](int, std::uint32_t) {}, ec);
    CHECK(!h);
    CHECK_EQ(ec.value(), (int)WEFT_ERR_INVALID);
    CHECK(ec.category() == weft::category());
    CHECK(weft::last_error().find("weft_watch_fd") != std::string::npos);
    h = loop.subscribe("a*", [](std::string_view, std::string_view) {}, ec);
    CHECK(!h && ec.value() == WEFT_ERR_INVALID);
    loop.emit(std::string_view("a\0b", 3), "x", ec);
    CHECK_EQ(ec.value(), (int)WEFT_ERR_INVALID);
    h = loop.every(0ms, [] {}, ec);
    CHECK(!h && ec.value() == WEFT_ERR_INVALID);
    loop.run(static_cast<weft::run_mode>(99), ec);
    CHECK_EQ(ec.value(), (int)WEFT_ERR_INVALID);
    weft::pool bad(static_cast<weft::pool::kind>(7), 0, {}, ec);
    CHECK(!bad && ec.value() == WEFT_ERR_INVALID);
    weft::pool::default_stats(static_cast<weft::pool::kind>(7), ec);
    CHECK_EQ(ec.value(), (int)WEFT_ERR_INVALID);
    bad.stats(ec);
    CHECK_EQ(ec.value(), (int)WEFT_ERR_NULL);
    weft_loop_stats st = loop.stats(ec);
    CHECK(!ec && st.size == sizeof st);
    loop.set_label(WEFT_ID_MIN, "nobody", ec);
    CHECK_EQ(ec.value(), (int)WEFT_ERR_NOT_FOUND);
}

TEST(registrations_run_and_free_once) {
    counted::reset();
    {
        std::error_code ec;
        weft::loop loop(ec);
        int posted = 0, fired = 0, ticks = 0, events = 0, signals = 0;
        loop.post([&, c = counted()] { posted += *c.token; }, ec);
        CHECK(!ec);
        loop.after(2ms, [&, c = counted()] { fired++; (void)c; }, ec);
        loop.every(1ms, [&, c = counted()](weft::handle &self) {
            (void)c;
            if (++ticks == 3) self.cancel();
        }, ec);
        weft::handle sub = loop.subscribe("t.*", [&, c = counted()](std::string_view t, std::string_view p) {
            (void)c;
            events += t == "t.x" && p == "data";
        }, ec);
        weft::handle sig = loop.on_signal(SIGUSR1, [&](int) { signals++; }, ec);
        loop.emit("t.x", "data", ec);
        std::raise(SIGUSR1);
        int fds[2];
        CHECK(pipe(fds) == 0);
        CHECK(write(fds[1], "z", 1) == 1);
        int reads = 0;
        loop.watch(fds[0], weft::readable, [&, c = counted()](weft::handle &self, int fd, std::uint32_t) {
            char b;
            reads += read(fd, &b, 1) == 1;
            self.cancel();
        }, ec);
        std::string result;
        loop.spawn(weft::where::cpu, [](weft::task &t) { t.write("done"); return 0; },
                   [&, c = counted()](const weft::task_result &r) { result = std::string(r.data); },
                   weft::spawn_options(), ec);
        CHECK(!ec);
        CHECK(harness::eventually(
            [&] { return posted && fired && ticks == 3 && events && signals && reads && !result.empty(); },
            [&] { loop.run(weft::run_mode::once, ec); }, 5000));
        CHECK(result == "done");
        CHECK(sub.active());
        CHECK_EQ(counted::owners(), 1);  // the subscription's, until the loop goes
        sig.cancel();
        close(fds[0]);
        close(fds[1]);
    }
    CHECK_EQ(counted::owners(), 0);
    CHECK_EQ(counted::made(), 6);
    CHECK_EQ(counted::destroyed_owners(), 6);
}

TEST_MAIN()
