/*
 * weft/task.hpp: what a task sees (weft::task, weft::task_result) and weft::spawn_options.
 * Part of weft.hpp, the header-only C++17 interface to weft: include <weft.hpp>.
 */
#ifndef WEFT_HPP_TASK
#define WEFT_HPP_TASK

#include "error.hpp"

namespace weft {

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
    /// When the task was queued, started, finished and its `done` called
    /// (`weft_task_get_timing`), for a task spawned with `spawn_options().timing()`;
    /// otherwise empty.
    std::optional<weft_task_timing> timing;
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
    /// Stamps the task's times for `done` to read in `task_result::timing`
    /// (`WEFT_SPAWN_TIMING`: a few clock reads per task).
    spawn_options &timing(bool on = true) noexcept {
        o_.flags = on ? (o_.flags | WEFT_SPAWN_TIMING) : (o_.flags & ~std::uint64_t(WEFT_SPAWN_TIMING));
        return *this;
    }
    bool timed() const noexcept { return (o_.flags & WEFT_SPAWN_TIMING) != 0; }
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

}  // namespace weft

#endif /* WEFT_HPP_TASK */
