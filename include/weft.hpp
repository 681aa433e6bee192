/*
 * weft.hpp: a header-only C++17 interface to weft, over weft.h and nothing else.
 *
 * The C ABI stays the only binary interface: this header compiles into the program that
 * includes it. What it adds to weft.h:
 *   - weft::loop and weft::pool own their C object (move-only; the destructor frees);
 *   - callbacks are any callable (lambdas with captures, std::function, move-only
 *     callables), kept on the heap and destroyed through weft's free_fn, exactly once,
 *     on the thread weft.h documents for free_fn;
 *   - registrations return a weft::handle (id(), cancel(), active()); a
 *     weft::scoped_handle cancels when it goes out of scope;
 *   - a refused call throws weft::error (a std::system_error with weft's code and the
 *     text of weft_last_error); every such call also has an overload taking a
 *     std::error_code& last, which never throws, and which is all that is declared when
 *     the program is built without exceptions (-fno-exceptions);
 *   - an exception thrown by a callback never unwinds into weft's frames: the trampoline
 *     catches it and hands it to the loop's exception handler (loop::on_exception;
 *     by default it prints the exception and calls std::terminate).
 *
 *     weft::loop loop;
 *     loop.after(std::chrono::milliseconds(10), [&] { std::puts("10 ms later"); });
 *     loop.run();
 *
 * Threads: as in weft.h, any thread may call any member unless its comment says
 * otherwise; callbacks run on the thread running the loop.
 */
#ifndef WEFT_HPP
#define WEFT_HPP

#include "weft.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define WEFT_HPP_EXCEPTIONS 1
#include <future>
#else
#define WEFT_HPP_EXCEPTIONS 0
#endif

namespace weft {

// ---- errors ------------------------------------------------------------------------

/// The error category of weft's `weft_result` codes: `message` is `weft_strerror`.
inline const std::error_category &category() noexcept {
    struct cat final : std::error_category {
        const char *name() const noexcept override { return "weft"; }
        std::string message(int code) const override { return weft_strerror(code); }
    };
    static const cat instance;
    return instance;
}

/// This thread's last error message (`weft_last_error`), empty when none.
inline std::string last_error() {
    std::string text(weft_last_error(nullptr, 0), '\0');
    if (!text.empty()) weft_last_error(text.data(), text.size() + 1);
    return text;
}

/// A refused call: `code().value()` is the `weft_result`, `what()` weft's message.
class error : public std::system_error {
public:
    error(int code, const std::string &what) : std::system_error(code, category(), what) {}
};

namespace detail {

/// Sets `ec` from this thread's last failure (or `fallback` if weft set no code).
inline void fail(std::error_code &ec, int fallback = WEFT_ERR_INVALID) noexcept {
    int code = weft_last_error_code();
    ec.assign(code != 0 ? code : fallback, category());
}

#if WEFT_HPP_EXCEPTIONS
/// Throws weft::error for `ec`, with weft's message.
[[noreturn]] inline void raise(const std::error_code &ec) {
    std::string text = last_error();
    throw error(ec.value(), text.empty() ? ec.message() : text);
}
/// Runs the `error_code` form of a call and throws when it failed.
template <class F> auto checked(F &&call) {
    std::error_code ec;
    if constexpr (std::is_void_v<decltype(call(ec))>) {
        call(ec);
        if (ec) raise(ec);
    } else {
        auto value = call(ec);
        if (ec) raise(ec);
        return value;
    }
}
#endif

/// A NUL-terminated copy of a string_view, on the stack when short.
class cstr {
public:
    explicit cstr(std::string_view s) {
        if (s.size() < sizeof small_) {
            std::memcpy(small_, s.data(), s.size());
            small_[s.size()] = '\0';
            ptr_ = small_;
        } else {
            big_.assign(s.data(), s.size());
            ptr_ = big_.c_str();
        }
    }
    const char *get() const noexcept { return ptr_; }
    /// True when `s` holds a NUL: weft would see a shorter string.
    static bool has_nul(std::string_view s) noexcept {
        return s.find('\0') != std::string_view::npos;
    }

private:
    char small_[128];
    std::string big_;
    const char *ptr_;
};

/// A whole number of milliseconds, rounded up (never early); negative counts as 0.
template <class Rep, class Period>
std::uint64_t to_ms(std::chrono::duration<Rep, Period> d) noexcept {
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
    return ms < 0 ? 0 : static_cast<std::uint64_t>(ms);
}

/// What a loop keeps on the heap (its address survives moves of weft::loop).
struct loop_state {
    std::function<void(std::exception_ptr)> on_exception;
};

/// Reports an exception that escaped a callback to the loop's handler.
inline void escaped(loop_state *ls, std::exception_ptr e) noexcept {
#if WEFT_HPP_EXCEPTIONS
    if (ls && ls->on_exception) {
        try {
            ls->on_exception(e);
            return;
        } catch (...) {
            e = std::current_exception();
        }
    }
    std::string what = "an exception of unknown type";
    try {
        std::rethrow_exception(e);
    } catch (const std::exception &x) {
        what = x.what();
    } catch (...) {
    }
    std::fprintf(stderr, "weft: a callback threw (%s); no loop handler took it\n",
                 what.c_str());
#else
    (void)ls, (void)e;
#endif
    std::terminate();
}

/// Calls `body`, catching what it throws (when exceptions are on).
template <class Body> void guarded(loop_state *ls, Body &&body) noexcept {
#if WEFT_HPP_EXCEPTIONS
    try {
        body();
    } catch (...) {
        escaped(ls, std::current_exception());
    }
#else
    (void)ls;
    body();
#endif
}

/// A registration's heap block: the callable, and the state a handle reads.
///
/// Two owners share it: the registration (released by weft's free_fn, which destroys
/// the callable there and then) and the handles (each holds a reference). Whichever
/// lets go last frees the block, so a handle may outlive the registration and still
/// answer `active()`.
struct box_base {
    std::atomic<unsigned> refs{1};
    std::atomic<bool> ended{false};
    weft_loop *lp = nullptr;
    loop_state *ls = nullptr;
    virtual void end() noexcept = 0;  // destroys the callable
    virtual ~box_base() = default;
    void retain() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
    void release() noexcept {
        if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }
    /// weft's free_fn of every registration made here.
    static void free_fn(void *ud) noexcept {
        auto *b = static_cast<box_base *>(ud);
        b->end();
        b->ended.store(true, std::memory_order_release);
        b->release();
    }
};

template <class F> struct box final : box_base {
    std::optional<F> fn;
    template <class G> explicit box(G &&g) : fn(std::in_place, std::forward<G>(g)) {}
    void end() noexcept override { fn.reset(); }
};

}  // namespace detail

// ---- handles -------------------------------------------------------------------------

/// A registration: its id, and whether it is still live. Copyable; a handle does not
/// keep the registration alive and does not cancel it when destroyed.
class handle {
public:
    handle() noexcept = default;
    handle(const handle &o) noexcept : box_(o.box_), id_(o.id_) {
        if (box_) box_->retain();
    }
    handle(handle &&o) noexcept : box_(std::exchange(o.box_, nullptr)), id_(std::exchange(o.id_, 0)) {}
    handle &operator=(handle o) noexcept {
        std::swap(box_, o.box_);
        std::swap(id_, o.id_);
        return *this;
    }
    ~handle() {
        if (box_) box_->release();
    }

    /// The registration's `weft_id` (0 for an empty handle).
    weft_id id() const noexcept { return id_; }
    explicit operator bool() const noexcept { return id_ != 0; }

    /// `weft_cancel`: true when this call ended the registration, false when it had
    /// ended already (or the handle is empty). A task's `done` still runs.
    /// An ended registration is not asked again, so a handle that outlives its loop
    /// may still be cancelled (it answers false).
    bool cancel() noexcept {
        return active() && weft_cancel(box_->lp, id_) == WEFT_OK;
    }

    /// True until the registration has ended (its callable was destroyed): cancelled,
    /// a one-shot that ran, a task after `done`, or its loop freed.
    bool active() const noexcept {
        return box_ && !box_->ended.load(std::memory_order_acquire);
    }

private:
    friend class loop;
    handle(detail::box_base *b, weft_id id) noexcept : box_(b), id_(id) { b->retain(); }
    detail::box_base *box_ = nullptr;
    weft_id id_ = 0;
};

/// A handle that cancels its registration when it goes out of scope. Move-only.
class scoped_handle {
public:
    scoped_handle() noexcept = default;
    scoped_handle(handle h) noexcept : h_(std::move(h)) {}  // NOLINT: implicit by design
    scoped_handle(scoped_handle &&) noexcept = default;
    scoped_handle &operator=(scoped_handle &&o) noexcept {
        if (this != &o) {
            h_.cancel();
            h_ = std::move(o.h_);
        }
        return *this;
    }
    scoped_handle(const scoped_handle &) = delete;
    scoped_handle &operator=(const scoped_handle &) = delete;
    ~scoped_handle() { h_.cancel(); }

    weft_id id() const noexcept { return h_.id(); }
    bool cancel() noexcept { return h_.cancel(); }
    bool active() const noexcept { return h_.active(); }
    /// Gives the registration up without cancelling it.
    handle release() noexcept { return std::move(h_); }

private:
    handle h_;
};

// ---- tasks ----------------------------------------------------------------------------

/// Where `loop::spawn` runs a task's work (`weft_where`).
enum class where : int {
    loop = WEFT_ON_LOOP,
    io = WEFT_ON_IO,
    cpu = WEFT_ON_CPU,
    process = WEFT_ON_PROCESS,
};

/// How `loop::run` runs (`weft_run_mode`).
enum class run_mode : int {
    until_done = WEFT_RUN_DEFAULT,
    once = WEFT_RUN_ONCE,
    nowait = WEFT_RUN_NOWAIT,
};

/// Readiness bits of an fd watch.
enum io : std::uint32_t {
    readable = WEFT_READABLE,
    writable = WEFT_WRITABLE,
    hangup = WEFT_HANGUP,
    failed = WEFT_ERROR,
};

/// A task as its work sees it: valid only during the work call, on its thread.
class task {
public:
    explicit task(weft_task *t) noexcept : t_(t) {}
    /// True once the task was cancelled or timed out (`weft_task_cancelled`).
    bool cancelled() const noexcept { return weft_task_cancelled(t_); }
    /// Appends bytes to the task's result (`weft_task_write`).
    bool write(const void *data, std::size_t len) noexcept {
        return weft_task_write(t_, data, len) == WEFT_OK;
    }
    bool write(std::string_view s) noexcept { return write(s.data(), s.size()); }
    /// Emits an event to the task's loop (`weft_task_emit`); false if refused.
    bool emit(std::string_view topic, std::string_view payload = {}) {
        if (detail::cstr::has_nul(topic)) return false;
        detail::cstr t(topic);
        return weft_task_emit(t_, t.get(), payload.data(), payload.size()) == WEFT_OK;
    }
    weft_task *native() const noexcept { return t_; }

private:
    weft_task *t_;
};

/// What a task's `done` receives.
struct task_result {
    weft_id id = 0;
    /// What work returned (>= 0), or WEFT_ERR_CANCELLED, WEFT_ERR_TIMEOUT,
    /// WEFT_ERR_CRASHED, WEFT_ERR_IO; WEFT_ERR_PANIC when work threw (see `exception`).
    int status = 0;
    /// The bytes work wrote; valid until `done` returns.
    std::string_view data;
    /// What work threw (thread tasks), else null.
    std::exception_ptr exception;
    bool ok() const noexcept { return status >= 0; }
};

/// Options of `loop::spawn` (`weft_spawn_options`), set by chained calls.
class spawn_options {
public:
    spawn_options() noexcept {
        std::memset(&o_, 0, sizeof o_);
        o_.size = sizeof o_;
    }
    template <class Rep, class Period>
    spawn_options &timeout(std::chrono::duration<Rep, Period> d) noexcept {
        o_.timeout_ms = detail::to_ms(d);
        return *this;
    }
    /// Runs the task on `p` (a weft::pool of the kind `where` names).
    spawn_options &on(const class pool &p) noexcept;
    spawn_options &on(weft_pool *p) noexcept {
        o_.pool = p;
        return *this;
    }
    spawn_options &max_children(std::uint32_t n) noexcept {
        o_.max_children = n;
        return *this;
    }
    spawn_options &reuse_child(bool on = true) noexcept {
        o_.reuse_child = on;
        return *this;
    }
    spawn_options &inherit_fds(bool on = true) noexcept {
        o_.inherit_fds = on;
        return *this;
    }
    spawn_options &keep_fds(std::vector<int> fds) {
        keep_ = std::move(fds);
        return *this;
    }
    /// The C struct, pointing into this object: valid while it lives unchanged.
    const weft_spawn_options *native() const noexcept {
        o_.keep_fds = keep_.empty() ? nullptr : keep_.data();
        o_.keep_fds_len = keep_.size();
        return &o_;
    }

private:
    mutable weft_spawn_options o_;
    std::vector<int> keep_;
};

// ---- pools ----------------------------------------------------------------------------

/// A worker pool (`weft_pool`). Move-only; the destructor frees it, which waits for
/// running work (`weft_pool_free`). Give it to tasks with `spawn_options().on(pool)`.
class pool {
public:
    enum kind : int { cpu = WEFT_POOL_CPU, io = WEFT_POOL_IO };

    /// Options beyond kind and size, as in `weft_pool_options`; the hooks are any
    /// callables, called on each pool thread with its index.
    struct options {
        std::string name;
        std::size_t stack_size = 0;
        std::chrono::milliseconds keep_alive{0};
        std::function<void(std::uint32_t)> on_thread_start, on_thread_stop;
    };

#if WEFT_HPP_EXCEPTIONS
    /// A pool of `k` with `threads` threads (0: the kind's default); throws on error.
    explicit pool(kind k, std::uint32_t threads = 0) : pool(k, threads, options()) {}
    pool(kind k, std::uint32_t threads, options opts) {
        std::error_code ec;
        make(k, threads, std::move(opts), ec);
        if (ec) detail::raise(ec);
    }
#endif
    pool(kind k, std::uint32_t threads, options opts, std::error_code &ec) noexcept {
        make(k, threads, std::move(opts), ec);
    }
    pool(pool &&o) noexcept : p_(std::exchange(o.p_, nullptr)), hooks_(std::move(o.hooks_)) {}
    pool &operator=(pool &&o) noexcept {
        if (this != &o) {
            reset();
            p_ = std::exchange(o.p_, nullptr);
            hooks_ = std::move(o.hooks_);
        }
        return *this;
    }
    pool(const pool &) = delete;
    pool &operator=(const pool &) = delete;
    ~pool() { reset(); }

    weft_pool *native() const noexcept { return p_; }
    explicit operator bool() const noexcept { return p_ != nullptr; }
    /// Frees the pool now (waits for running work); the object becomes empty.
    void reset() noexcept {
        if (p_) weft_pool_free(std::exchange(p_, nullptr));
        hooks_.reset();
    }

private:
    struct hooks {
        std::function<void(std::uint32_t)> start, stop;
        static void on_start(std::uint32_t i, void *ud) {
            auto *h = static_cast<hooks *>(ud);
            detail::guarded(nullptr, [&] { h->start(i); });
        }
        static void on_stop(std::uint32_t i, void *ud) {
            auto *h = static_cast<hooks *>(ud);
            detail::guarded(nullptr, [&] { h->stop(i); });
        }
    };

    void make(kind k, std::uint32_t threads, options opts, std::error_code &ec) noexcept {
        ec.clear();
        weft_pool_options o;
        std::memset(&o, 0, sizeof o);
        o.size = sizeof o;
        o.kind = k;
        o.threads = threads;
        o.name = opts.name.empty() ? nullptr : opts.name.c_str();
        o.stack_size = opts.stack_size;
        o.keep_alive_ms = static_cast<std::uint32_t>(opts.keep_alive.count());
        if (opts.on_thread_start || opts.on_thread_stop) {
            hooks_.reset(new (std::nothrow) hooks{std::move(opts.on_thread_start),
                                                  std::move(opts.on_thread_stop)});
            if (!hooks_) {
                ec = std::make_error_code(std::errc::not_enough_memory);
                return;
            }
            if (hooks_->start) o.on_thread_start = &hooks::on_start;
            if (hooks_->stop) o.on_thread_stop = &hooks::on_stop;
            o.hook_data = hooks_.get();
        }
        p_ = weft_pool_new(&o);
        if (!p_) {
            hooks_.reset();
            detail::fail(ec);
        }
    }

    weft_pool *p_ = nullptr;
    std::unique_ptr<hooks> hooks_;
};

inline spawn_options &spawn_options::on(const pool &p) noexcept { return on(p.native()); }

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

    void check(int rc, std::error_code &ec) noexcept {
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
        static void done_tramp(weft_loop *, weft_id id, int status, const std::uint8_t *data,
                               std::size_t len, void *ud) {
            auto *b = static_cast<task_box *>(static_cast<detail::box_base *>(ud));
            task_result r;
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

#endif /* WEFT_HPP */
