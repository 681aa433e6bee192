/*
 * weft/handle.hpp: weft::handle and weft::scoped_handle, what registrations return.
 * Part of weft.hpp, the header-only C++17 interface to weft: include <weft.hpp>.
 */
#ifndef WEFT_HPP_HANDLE
#define WEFT_HPP_HANDLE

#include "error.hpp"

namespace weft {

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

}  // namespace weft

#endif /* WEFT_HPP_HANDLE */
