// tour.cpp: weft from C++ (include/weft.hpp). examples/c/tour.c is the same program
// written against the C header. `make -C examples/cpp run`, or `make demo`.
//
//   loop.after(d, f) / loop.every(d, f)      timers -> weft::handle (cancel, active)
//   loop.subscribe(pattern, f) / emit()      publish/subscribe ("job.*", "*")
//   loop.watch(fd, weft::readable, f)        fd readiness
//   loop.spawn(where, work, done)            work on a pool thread or in a forked child
//   loop.post(f)                             from any thread
#include <weft.hpp>

#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

static const clock_type::time_point t0 = clock_type::now();

template <class... A> static void log(const char *fmt, A... a) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t0);
    std::printf("%4lld ms  ", static_cast<long long>(ms.count()));
    std::printf(fmt, a...);
    std::putchar('\n');
}

int main() {
    weft::loop loop;
    log("weft %s, loop fd %d", weft::version().data(), loop.fd());

    // 1. Timers.
    int ticks = 0;
    loop.every(100ms, [&](weft::handle &self) {
        log("tick %d", ++ticks);
        if (ticks == 5) self.cancel();  // from its own callback: final
    });
    weft::handle once = loop.after(250ms, [] { log("after 250 ms"); });
    log("timer id %#llx", static_cast<unsigned long long>(once.id()));
    loop.after(1s, [] { log("never: cancelled"); }).cancel();

    // 2. Events: any number of subscribers; payloads are bytes.
    loop.subscribe("job.*", [](weft::handle &sub, std::string_view topic, std::string_view p) {
        log("[job.*] %.*s: %.*s", int(topic.size()), topic.data(), int(p.size()), p.data());
        if (topic == "job.done") sub.cancel();
    });
    loop.subscribe("job.done", [](weft::handle &sub, std::string_view, std::string_view p) {
        log("[job.done] the job says %.*s; unsubscribing", int(p.size()), p.data());
        sub.cancel();
    });
    loop.emit("job.progress", "50%");
    loop.emit("job.progress", "100%");
    loop.after(50ms, [&] { loop.emit("job.done", "ok"); });

    // 3. An fd watch: a pipe, written to by a timer.
    int fds[2];
    if (pipe(fds) != 0) return 1;
    loop.watch(fds[0], weft::readable, [fds](weft::handle &self, int fd, std::uint32_t ev) {
        char buf[100];
        ssize_t n = read(fd, buf, sizeof buf);
        log("fd %d readable (events %u): \"%.*s\"", fd, ev, int(n > 0 ? n : 0), buf);
        self.cancel();
        close(fds[0]);
        close(fds[1]);
    });
    loop.after(150ms, [fds] { (void)!write(fds[1], "hello through a pipe", 20); });

    // 4. Work off the loop: a CPU task, an IO task that times out, a process task.
    std::string numbers = "1 2 3 4 5";
    loop.spawn(weft::where::cpu,
               [numbers](weft::task &t) {
                   std::istringstream in(numbers);
                   long sum = 0;
                   for (long x; in >> x;) sum += x;
                   t.write(std::to_string(sum));
               },
               [](const weft::task_result &r) {
                   log("cpu task: sum = %.*s", int(r.data.size()), r.data.data());
               });
    loop.spawn(weft::where::io,
               [](weft::task &t) {
                   while (!t.cancelled()) std::this_thread::sleep_for(5ms);
               },
               [](const weft::task_result &r) {
                   log("io task: %s", weft_strerror(r.status));
               },
               weft::spawn_options().timeout(200ms));
    loop.spawn(weft::where::process,
               [](weft::task &t) {
                   t.emit("job.progress", "from the child");
                   t.write("pid " + std::to_string(getpid()));
                   return 0;
               },
               [](const weft::task_result &r) {
                   log("process task (parent pid %d): %.*s", int(getpid()),
                       int(r.data.size()), r.data.data());
               });

    // 5. A post from another thread.
    std::thread([&] { loop.post([] { log("posted from another thread"); }); }).join();

    loop.run();  // until nothing is registered
    log("done");
}
