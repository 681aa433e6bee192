// include/weft.h compiles as C++17, included twice, with C linkage for its functions.
#include <weft.h>
#include <weft.h>

#include <cstdio>

static void cb(weft_loop *, weft_id, void *) {}
static void ev_cb(weft_loop *, weft_id, const char *, const void *, size_t, void *) {}

int main() {
    weft_cb c = cb;
    weft_event_cb e = ev_cb;
    weft_result r = WEFT_OK;
    bool ok = c != nullptr && e != nullptr && r == 0 &&
              weft_abi_version() == WEFT_ABI_VERSION && weft_strerror(WEFT_ERR_NULL) != nullptr;
    // The functions link with C names: call a few that need no loop.
    weft_loop *lp = weft_loop_new();
    ok = ok && lp != nullptr && weft_loop_run(lp, WEFT_RUN_NOWAIT) == WEFT_OK;
    weft_loop_free(lp);
    std::printf("== header_cpp: %d passed, %d failed\n", ok ? 1 : 0, ok ? 0 : 1);
    return ok ? 0 : 1;
}
