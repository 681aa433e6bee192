/*
 * weft/loop.hpp: weft::loop, an event loop, and weft::version.
 * Part of weft.hpp, the header-only C++17 interface to weft: include <weft.hpp>.
 */
#ifndef WEFT_HPP_LOOP
#define WEFT_HPP_LOOP

#include "handle.hpp"
#include "pool.hpp"
#include "task.hpp"

namespace weft {

// ---- the loop -------------------------------------------------------------------------

/// An event loop (`weft_loop`). Move-only; the destructor frees it (`weft_loop_free`),
/// which ends every registration and destroys every callable still held.
///
/// Callables: `post`, `after` and `every` take `f()` or `f(weft::handle&)`; `watch`
/// takes `f(int fd, std::uint32_t events)`; `on_signal` takes `f(int signum)`;
/// `subscribe` takes `f(std::string_view topic, std::string_view payload)` (payload
/// is bytes, valid during the call). Each may also take a `weft::handle&` first, the
/// registration itself (to cancel an interval or a subscription from inside).
class loop {
public:
#if WEFT_HPP_EXCEPTIONS
    /// Creates a loop; throws weft::error when weft cannot.
    loop() : loop(make_checked()) {}
#endif
    /// Creates a loop; on failure sets `ec` and the loop is empty (`!loop`).
    explicit loop(std::error_code &ec) noexcept {
        ec.clear();
        st_.reset(new (std::nothrow) detail::loop_state);
        if (!st_) {
            ec = std::make_error_code(std::errc::not_enough_memory);
            return;
        }
        lp_ = weft_loop_new();
        if (!lp_) {
            st_.reset();
            detail::fail(ec, WEFT_ERR_IO);
        }
    }
    loop(loop &&o) noexcept : lp_(std::exchange(o.lp_, nullptr)), st_(std::move(o.st_)) {}
    loop &operator=(loop &&o) noexcept {
        if (this != &o) {
            reset();
            lp_ = std::exchange(o.lp_, nullptr);
            st_ = std::move(o.st_);
        }
        return *this;
    }
    loop(const loop &) = delete;
    loop &operator=(const loop &) = delete;
    ~loop() {
        if (!reset()) st_.release();  // the loop's callbacks may still read it
    }

    weft_loop *native() const noexcept { return lp_; }
    explicit operator bool() const noexcept { return lp_ != nullptr; }

    /// Frees the loop now (`weft_loop_free`): every registration ends and its callable
    /// is destroyed on this thread; the object becomes empty. Returns false when weft
    /// refused because the loop is running (from its own callback, or another thread
    /// runs it): then nothing was freed and the object still holds the loop. A
    /// destructor that meets that refusal leaks the loop rather than crash.
    bool reset() noexcept {
        if (!lp_) return true;
        weft_cancel(lp_, 0);  // sets this thread's last error to NOT_FOUND: a marker
        weft_loop_free(lp_);
        if (weft_last_error_code() == WEFT_ERR_BUSY) return false;
        lp_ = nullptr;
        st_.reset();
        return true;
    }

    /// Sets the handler of exceptions that escape this loop's callbacks (it runs on the
    /// loop thread, inside the pass). Default: print and std::terminate. Set it before
    /// the loop runs; not from another thread while it runs.
    void on_exception(std::function<void(std::exception_ptr)> handler) {
        if (st_) st_->on_exception = std::move(handler);
    }

    // -- running ------------------------------------------------------------------

    /// `weft_loop_run` on the calling thread.
    void run(run_mode mode, std::error_code &ec) noexcept {
        check(weft_loop_run(lp_, static_cast<int>(mode)), ec);
    }
    /// `weft_loop_stop`: the run returns after its current pass. Any thread.
    void stop(std::error_code &ec) noexcept { check(weft_loop_stop(lp_), ec); }
    /// `weft_loop_set_pass_limit`.
    void set_pass_limit(std::uint32_t max_records, std::error_code &ec) noexcept {
        check(weft_loop_set_pass_limit(lp_, max_records), ec);
    }
#if WEFT_HPP_EXCEPTIONS
    void run(run_mode mode = run_mode::until_done) {
        detail::checked([&](std::error_code &ec) { run(mode, ec); });
    }
    void stop() {
        detail::checked([&](std::error_code &ec) { stop(ec); });
    }
    void set_pass_limit(std::uint32_t max_records) {
        detail::checked([&](std::error_code &ec) { set_pass_limit(max_records, ec); });
    }
#endif
    /// True while anything is registered or queued (`weft_loop_alive`).
    bool alive() const noexcept { return weft_loop_alive(lp_) == 1; }

    // -- monitoring -----------------------------------------------------------------

    /// The loop's counters (`weft_loop_get_stats`): passes, callbacks by kind,
    /// registrations by kind, tasks, queue depths, busy and idle time, timer lateness.
    /// Any thread; reading does not slow the loop. A loop being freed: WEFT_ERR_CLOSED.
    weft_loop_stats stats(std::error_code &ec) const noexcept {
        weft_loop_stats st;
        std::memset(&st, 0, sizeof st);
        st.size = sizeof st;
        check(weft_loop_get_stats(lp_, &st), ec);
        return st;
    }
    /// Names a live registration, task or queued post for the watchdog's reports
    /// (`weft_set_label`); an empty label removes the name. Any thread. An id that is
    /// not live: WEFT_ERR_NOT_FOUND; a NUL inside `label`: WEFT_ERR_INVALID.
    void set_label(weft_id id, std::string_view label, std::error_code &ec) {
        if (detail::cstr::has_nul(label)) {
            refuse(ec);
            return;
        }
        detail::cstr l(label);
        check(weft_set_label(lp_, id, label.empty() ? nullptr : l.get()), ec);
    }
    void set_label(const handle &h, std::string_view label, std::error_code &ec) {
        set_label(h.id(), label, ec);
    }
#if WEFT_HPP_EXCEPTIONS
    weft_loop_stats stats() const {
        return detail::checked([&](std::error_code &ec) { return stats(ec); });
    }
    void set_label(weft_id id, std::string_view label) {
        detail::checked([&](std::error_code &ec) { set_label(id, label, ec); });
    }
    void set_label(const handle &h, std::string_view label) {
        detail::checked([&](std::error_code &ec) { set_label(h, label, ec); });
    }
#endif

    // -- embedding ------------------------------------------------------------------

    /// The embedding fd (`weft_loop_fd`): readable whenever `run(run_mode::nowait)`
    /// has work. -1 for an empty loop.
    int fd() const noexcept {
        int fd = weft_loop_fd(lp_);
        return fd < 0 ? -1 : fd;
    }
    /// Time until the next timer (`weft_loop_timeout_ms`): nullopt when none is pending.
    std::optional<std::chrono::milliseconds> timeout() const noexcept {
        std::int64_t ms = weft_loop_timeout_ms(lp_);
        if (ms < 0) return std::nullopt;
        return std::chrono::milliseconds(ms);
    }

    // -- registrations --------------------------------------------------------------

    /// Runs `f` on the loop thread in its next pass (`weft_post`).
    template <class F> handle post(F &&f, std::error_code &ec) {
        return add<F>(std::forward<F>(f), ec, [&](void *ud) {
            return weft_post(lp_, &tramp<F>, ud, &detail::box_base::free_fn);
        });
    }
    /// Runs `f` once, `delay` from now, rounded up to whole ms (`weft_timer_after`).
    template <class Rep, class Period, class F>
    handle after(std::chrono::duration<Rep, Period> delay, F &&f, std::error_code &ec) {
        std::uint64_t ms = detail::to_ms(delay);
        return add<F>(std::forward<F>(f), ec, [&](void *ud) {
            return weft_timer_after(lp_, ms, &tramp<F>, ud, &detail::box_base::free_fn);
        });
    }
    /// Runs `f` every `interval` until cancelled (`weft_timer_every`).
    template <class Rep, class Period, class F>
    handle every(std::chrono::duration<Rep, Period> interval, F &&f, std::error_code &ec) {
        std::uint64_t ms = detail::to_ms(interval);
        return add<F>(std::forward<F>(f), ec, [&](void *ud) {
            return weft_timer_every(lp_, ms, &tramp<F>, ud, &detail::box_base::free_fn);
        });
    }
    /// Watches `fd` for `interest` (`io::readable | io::writable`), level-triggered
    /// (`weft_watch_fd`). weft does not own the fd: cancel before closing it.
    template <class F>
    handle watch(int fd, std::uint32_t interest, F &&f, std::error_code &ec) {
        return add<F>(std::forward<F>(f), ec, [&](void *ud) {
            return weft_watch_fd(lp_, fd, interest, &fd_tramp<F>, ud, &detail::box_base::free_fn);
        });
    }
    /// Changes a watch's interest (`weft_watch_fd_modify`).
    void modify(const handle &watch, std::uint32_t interest, std::error_code &ec) noexcept {
        check(weft_watch_fd_modify(lp_, watch.id(), interest), ec);
    }
    /// Calls `f(signum)` on the loop thread after `signum` arrives (`weft_watch_signal`).
    template <class F> handle on_signal(int signum, F &&f, std::error_code &ec) {
        return add<F>(std::forward<F>(f), ec, [&](void *ud) {
            return weft_watch_signal(lp_, signum, &signal_tramp<F>, ud,
                                     &detail::box_base::free_fn);
        });
    }
    /// Subscribes to topics matching `pattern` (`weft_subscribe`): "a.b", "a.*", "*".
    template <class F>
    handle subscribe(std::string_view pattern, F &&f, std::error_code &ec) {
        if (detail::cstr::has_nul(pattern)) return refuse(ec);
        detail::cstr p(pattern);
        return add<F>(std::forward<F>(f), ec, [&](void *ud) {
            return weft_subscribe(lp_, p.get(), &event_tramp<F>, ud, &detail::box_base::free_fn);
        });
    }
    /// Emits an event (`weft_emit`); the payload is copied. Any thread.
    void emit(std::string_view topic, std::string_view payload, std::error_code &ec) {
        if (detail::cstr::has_nul(topic)) {
            refuse(ec);
            return;
        }
        detail::cstr t(topic);
        check(weft_emit(lp_, t.get(), payload.data(), payload.size()), ec);
    }
    /// The same, with the payload as a pointer and a length.
    void emit(std::string_view topic, const void *data, std::size_t len, std::error_code &ec) {
        emit(topic, std::string_view(static_cast<const char *>(data), data ? len : 0), ec);
    }
    /// `weft_cancel` by id: true when it ended the registration.
    bool cancel(weft_id id) noexcept { return weft_cancel(lp_, id) == WEFT_OK; }

    /// Runs `work(weft::task&)` where `place` says, then `done(const task_result&)` on
    /// the loop thread, exactly once (`weft_spawn`). `work` returns its status (an int
    /// >= 0) or void (status 0). An exception thrown by a thread task's work reaches
    /// `done` as `task_result::exception` with status WEFT_ERR_PANIC; in a process
    /// task it ends the child, and `done` gets WEFT_ERR_CRASHED. Both callables are
    /// destroyed after both have finished, on the thread weft documents for free_fn.
    template <class W, class D>
    handle spawn(where place, W &&work, D &&done, const spawn_options &opts,
                 std::error_code &ec) {
        using T = task_box<std::decay_t<W>, std::decay_t<D>>;
        ec.clear();
        T *b = new (std::nothrow) T(std::forward<W>(work), std::forward<D>(done), place);
        if (!b) {
            ec = std::make_error_code(std::errc::not_enough_memory);
            return {};
        }
        b->lp = lp_;
        b->ls = st_.get();
        b->timed = opts.timed();
        weft_id id = weft_spawn(lp_, static_cast<int>(place), &T::work_tramp, &T::done_tramp,
                                b, &detail::box_base::free_fn, opts.native());
        return settle(b, id, ec);
    }

#if WEFT_HPP_EXCEPTIONS
    template <class F> handle post(F &&f) {
        return detail::checked([&](std::error_code &ec) { return post(std::forward<F>(f), ec); });
    }
    template <class Rep, class Period, class F>
    handle after(std::chrono::duration<Rep, Period> delay, F &&f) {
        return detail::checked(
            [&](std::error_code &ec) { return after(delay, std::forward<F>(f), ec); });
    }
    template <class Rep, class Period, class F>
    handle every(std::chrono::duration<Rep, Period> interval, F &&f) {
        return detail::checked(
            [&](std::error_code &ec) { return every(interval, std::forward<F>(f), ec); });
    }
    template <class F> handle watch(int fd, std::uint32_t interest, F &&f) {
        return detail::checked(
            [&](std::error_code &ec) { return watch(fd, interest, std::forward<F>(f), ec); });
    }
    void modify(const handle &watch, std::uint32_t interest) {
        detail::checked([&](std::error_code &ec) { modify(watch, interest, ec); });
    }
    template <class F> handle on_signal(int signum, F &&f) {
        return detail::checked(
            [&](std::error_code &ec) { return on_signal(signum, std::forward<F>(f), ec); });
    }
    template <class F> handle subscribe(std::string_view pattern, F &&f) {
        return detail::checked(
            [&](std::error_code &ec) { return subscribe(pattern, std::forward<F>(f), ec); });
    }
    void emit(std::string_view topic, std::string_view payload = {}) {
        detail::checked([&](std::error_code &ec) { emit(topic, payload, ec); });
    }
    void emit(std::string_view topic, const void *data, std::size_t len) {
        detail::checked([&](std::error_code &ec) { emit(topic, data, len, ec); });
    }
    template <class W, class D>
    handle spawn(where place, W &&work, D &&done, const spawn_options &opts = {}) {
        return detail::checked([&](std::error_code &ec) {
            return spawn(place, std::forward<W>(work), std::forward<D>(done), opts, ec);
        });
    }
    /// Runs `work` as `spawn` does and returns a future of the bytes it wrote. The
    /// future is set on the loop thread, in `done`: wait for it on another thread, or
    /// poll it, never block the loop's own thread on it. A status other than >= 0
    /// becomes a weft::error; what work threw is rethrown by `get()`.
    template <class W>
    std::future<std::string> spawn_future(where place, W &&work, const spawn_options &opts = {}) {
        auto promise = std::make_shared<std::promise<std::string>>();
        std::future<std::string> result = promise->get_future();
        spawn(place, std::forward<W>(work),
              [promise](const task_result &r) {
                  if (r.exception) {
                      promise->set_exception(r.exception);
                  } else if (r.ok()) {
                      promise->set_value(std::string(r.data));
                  } else {
                      std::string text = last_error();
                      promise->set_exception(std::make_exception_ptr(
                          error(r.status, text.empty() ? weft_strerror(r.status) : text)));
                  }
              },
              opts);
        return result;
    }
#endif

private:
#if WEFT_HPP_EXCEPTIONS
    static loop make_checked() {
        std::error_code ec;
        loop l(ec);
        if (ec) detail::raise(ec);
        return l;
    }
#endif

    static void check(int rc, std::error_code &ec) noexcept {
        if (rc < 0)
            detail::fail(ec, rc);
        else
            ec.clear();
    }
    /// A call refused before reaching weft (a NUL inside a string).
    static handle refuse(std::error_code &ec) noexcept {
        ec.assign(WEFT_ERR_INVALID, category());
        return {};
    }

    /// Boxes `f`, makes the registration, and returns its handle.
    template <class F, class Register>
    handle add(F &&f, std::error_code &ec, Register &&reg) {
        using B = detail::box<std::decay_t<F>>;
        ec.clear();
        B *b = new (std::nothrow) B(std::forward<F>(f));
        if (!b) {
            ec = std::make_error_code(std::errc::not_enough_memory);
            return {};
        }
        b->lp = lp_;
        b->ls = st_.get();
        return settle(b, reg(static_cast<void *>(static_cast<detail::box_base *>(b))), ec);
    }
    /// After the C call: a handle, or (id 0: weft never calls free_fn) the box freed.
    static handle settle(detail::box_base *b, weft_id id, std::error_code &ec) noexcept {
        if (id == 0) {
            detail::fail(ec);
            delete b;
            return {};
        }
        return handle(b, id);
    }

    /// Calls the box's callable with a handle to itself first, if it takes one.
    template <class F, class... Args>
    static void call(weft_loop *, weft_id id, void *ud, Args... args) {
        auto *b = static_cast<detail::box<std::decay_t<F>> *>(static_cast<detail::box_base *>(ud));
        detail::guarded(b->ls, [&] {
            auto &fn = *b->fn;
            if constexpr (std::is_invocable_v<decltype(fn), handle &, Args...>) {
                handle self(b, id);
                fn(self, args...);
            } else {
                fn(args...);
            }
        });
    }
    template <class F> static void tramp(weft_loop *lp, weft_id id, void *ud) {
        call<F>(lp, id, ud);
    }
    template <class F>
    static void fd_tramp(weft_loop *lp, weft_id id, int fd, std::uint32_t events, void *ud) {
        call<F>(lp, id, ud, fd, events);
    }
    template <class F> static void signal_tramp(weft_loop *lp, weft_id id, int signum, void *ud) {
        call<F>(lp, id, ud, signum);
    }
    template <class F>
    static void event_tramp(weft_loop *lp, weft_id id, const char *topic, const void *payload,
                            std::size_t len, void *ud) {
        call<F>(lp, id, ud, std::string_view(topic),
                std::string_view(static_cast<const char *>(payload), len));
    }

    /// A task's heap block: work and done, and what work threw.
    template <class W, class D> struct task_box final : detail::box_base {
        std::optional<W> work;
        std::optional<D> done;
        where place;
        bool timed = false;
        std::exception_ptr thrown;
        template <class W2, class D2>
        task_box(W2 &&w, D2 &&d, where p)
            : work(std::in_place, std::forward<W2>(w)), done(std::in_place, std::forward<D2>(d)),
              place(p) {}
        void end() noexcept override {
            work.reset();
            done.reset();
        }
        static int work_tramp(weft_task *t, void *ud) {
            auto *b = static_cast<task_box *>(static_cast<detail::box_base *>(ud));
            task tk(t);
#if WEFT_HPP_EXCEPTIONS
            try {
                return run_work(*b->work, tk);
            } catch (...) {
                if (b->place == where::process) {
                    std::fputs("weft: a process task's work threw; its child ends\n", stderr);
                    std::_Exit(70);
                }
                b->thrown = std::current_exception();
                return 0;
            }
#else
            return run_work(*b->work, tk);
#endif
        }
        static void done_tramp(weft_loop *lp, weft_id id, int status, const std::uint8_t *data,
                               std::size_t len, void *ud) {
            auto *b = static_cast<task_box *>(static_cast<detail::box_base *>(ud));
            task_result r;
            if (b->timed) {
                weft_task_timing t{};
                t.size = sizeof t;
                if (weft_task_get_timing(lp, id, &t) == WEFT_OK) r.timing = t;
            }
            r.id = id;
            r.status = status;
            r.data = std::string_view(reinterpret_cast<const char *>(data), data ? len : 0);
            if (b->thrown && status >= 0) {
                r.status = WEFT_ERR_PANIC;
                r.exception = std::move(b->thrown);
            }
            detail::guarded(b->ls, [&] { (*b->done)(static_cast<const task_result &>(r)); });
        }
        static int run_work(W &w, task &tk) {
            if constexpr (std::is_invocable_r_v<int, W &, task &> &&
                          !std::is_void_v<std::invoke_result_t<W &, task &>>) {
                return w(tk);
            } else {
                w(tk);
                return 0;
            }
        }
    };

    weft_loop *lp_ = nullptr;
    std::unique_ptr<detail::loop_state> st_;
};

/// The library's version ("MAJOR.MINOR.PATCH").
inline std::string_view version() noexcept { return weft_version(); }

}  // namespace weft

#endif /* WEFT_HPP_LOOP */
