/*
 * weft/pool.hpp: weft::pool, a worker pool.
 * Part of weft.hpp, the header-only C++17 interface to weft: include <weft.hpp>.
 */
#ifndef WEFT_HPP_POOL
#define WEFT_HPP_POOL

#include "task.hpp"

namespace weft {

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

    /// This pool's counters (`weft_pool_get_stats`): threads, busy threads, tasks
    /// queued and run, steals, threads started and retired. Any thread. An empty
    /// (moved-from or reset) pool: WEFT_ERR_NULL.
    weft_pool_stats stats(std::error_code &ec) const noexcept {
        if (p_ == nullptr) {  // an empty pool would read the default CPU pool's
            ec.assign(WEFT_ERR_NULL, category());
            return {};
        }
        return stats_of(p_, WEFT_POOL_CPU, ec);
    }
    /// The default pool of `k`'s counters (all zero until its first task). Any thread.
    /// A `k` that is neither cpu nor io: WEFT_ERR_INVALID.
    static weft_pool_stats default_stats(kind k, std::error_code &ec) noexcept {
        return stats_of(nullptr, k, ec);
    }
#if WEFT_HPP_EXCEPTIONS
    weft_pool_stats stats() const {
        return detail::checked([&](std::error_code &ec) { return stats(ec); });
    }
    static weft_pool_stats default_stats(kind k) {
        return detail::checked([&](std::error_code &ec) { return default_stats(k, ec); });
    }
#endif
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

    static weft_pool_stats stats_of(const weft_pool *p, int k, std::error_code &ec) noexcept {
        weft_pool_stats st;
        std::memset(&st, 0, sizeof st);
        st.size = sizeof st;
        if (p == nullptr && k != WEFT_POOL_CPU && k != WEFT_POOL_IO) {
            ec.assign(WEFT_ERR_INVALID, category());
        } else if (weft_pool_get_stats(p, static_cast<weft_pool_kind>(k), &st) < 0) {
            detail::fail(ec);
        } else {
            ec.clear();
        }
        return st;
    }

    weft_pool *p_ = nullptr;
    std::unique_ptr<hooks> hooks_;
};

inline spawn_options &spawn_options::on(const pool &p) noexcept { return on(p.native()); }

}  // namespace weft

#endif /* WEFT_HPP_POOL */
