// A small test harness for the C++ tests: TEST(name) cases, CHECK(cond) and CHECK_EQ,
// each case run in order (or those named on the command line), "N passed, M failed"
// at the end, exit status 1 on any failure. Works with and without exceptions.
#ifndef WEFT_TEST_HARNESS_HPP
#define WEFT_TEST_HARNESS_HPP

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace harness {

struct test_case {
    const char *name;
    void (*fn)();
};
inline std::vector<test_case> &cases() {
    static std::vector<test_case> all;
    return all;
}
inline int &failures() {
    static int n = 0;
    return n;
}
struct registrar {
    registrar(const char *name, void (*fn)()) { cases().push_back({name, fn}); }
};

inline void fail(const char *file, int line, const std::string &what) {
    std::printf("    FAIL %s:%d: %s\n", file, line, what.c_str());
    failures()++;
}

/// Under valgrind everything is slower: time limits are multiplied by this.
inline double slack() {
    const char *v = std::getenv("WEFT_TEST_VALGRIND");
    return v && *v && std::strcmp(v, "0") != 0 ? 20.0 : 1.0;
}

/// Waits up to `ms` (times slack) for `cond`, calling `step` between checks.
inline bool eventually(std::function<bool()> cond, std::function<void()> step, double ms) {
    auto end = std::chrono::steady_clock::now() +
               std::chrono::microseconds(static_cast<long long>(ms * 1000 * slack()));
    while (!cond()) {
        if (std::chrono::steady_clock::now() > end) return false;
        step();
    }
    return true;
}

inline int run_all(int argc, char **argv) {
    const char *prog = std::strrchr(argv[0], '/') ? std::strrchr(argv[0], '/') + 1 : argv[0];
    int passed = 0, failed = 0;
    for (auto &c : cases()) {
        bool chosen = argc < 2;
        for (int a = 1; a < argc; a++) chosen |= std::strcmp(argv[a], c.name) == 0;
        if (!chosen) continue;
        int before = failures();
        auto t0 = std::chrono::steady_clock::now();
        c.fn();
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - t0).count();
        bool ok = failures() == before;
        std::printf("  %s %s (%lld ms)\n", ok ? "ok  " : "FAIL", c.name, (long long)ms);
        (ok ? passed : failed)++;
    }
    std::printf("== %s: %d passed, %d failed\n", prog, passed, failed);
    return failed ? 1 : 0;
}

}  // namespace harness

#define TEST(name)                                                            \
    static void test_##name();                                                \
    static harness::registrar reg_##name(#name, &test_##name);                \
    static void test_##name()

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) harness::fail(__FILE__, __LINE__, #cond);                \
    } while (0)

#define CHECK_EQ(a, b)                                                        \
    do {                                                                      \
        auto va_ = (a);                                                       \
        auto vb_ = (b);                                                       \
        if (!(va_ == vb_))                                                    \
            harness::fail(__FILE__, __LINE__,                                 \
                          std::string(#a " == " #b ": ") + std::to_string(va_) + \
                              " != " + std::to_string(vb_));                  \
    } while (0)

#define TEST_MAIN() \
    int main(int argc, char **argv) { return harness::run_all(argc, argv); }

#endif
