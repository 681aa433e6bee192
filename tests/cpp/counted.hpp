// A move-only type that counts its instances, to check that weft.hpp destroys each
// callable's capture exactly once. An "owner" is an instance that holds the token (not
// moved from): every one made must be destroyed exactly once as an owner.
#ifndef WEFT_TEST_COUNTED_HPP
#define WEFT_TEST_COUNTED_HPP

#include <atomic>
#include <memory>

struct counted {
    std::unique_ptr<int> token;
    counted() : token(new int(1)) {
        made_n()++;
        owners_n()++;
    }
    counted(counted &&o) noexcept : token(std::move(o.token)) {}
    counted &operator=(counted &&) = delete;
    ~counted() {
        if (token) {
            owners_n()--;
            destroyed_n()++;
        }
    }
    static int made() { return made_n().load(); }
    static int owners() { return owners_n().load(); }
    static int destroyed_owners() { return destroyed_n().load(); }
    static void reset() { made_n() = 0, owners_n() = 0, destroyed_n() = 0; }

private:
    static std::atomic<int> &made_n() { static std::atomic<int> n{0}; return n; }
    static std::atomic<int> &owners_n() { static std::atomic<int> n{0}; return n; }
    static std::atomic<int> &destroyed_n() { static std::atomic<int> n{0}; return n; }
};

#endif
