/*
 * weft/error.hpp: weft::error, weft::category, and the details every part shares.
 * Part of weft.hpp, the header-only C++17 interface to weft: include <weft.hpp>.
 */
#ifndef WEFT_HPP_ERROR
#define WEFT_HPP_ERROR

#include "../weft.h"


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

}  // namespace weft

#endif /* WEFT_HPP_ERROR */
