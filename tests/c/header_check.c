/* include/weft.h compiles as pedantic C11, included twice (its include guard works). */
#include <weft.h>
#include <weft.h>

#include <stdio.h>
#include <string.h>

/* Every type and macro of the header is usable from C. */
static void cb(weft_loop *lp, weft_id id, void *ud) { (void)lp, (void)id, (void)ud; }
static void fd_cb(weft_loop *lp, weft_id id, int fd, uint32_t ev, void *ud) {
    (void)lp, (void)id, (void)fd, (void)ev, (void)ud;
}
static void sig_cb(weft_loop *lp, weft_id id, int signum, void *ud) {
    (void)lp, (void)id, (void)signum, (void)ud;
}
static void ev_cb(weft_loop *lp, weft_id id, const char *t, const void *p, size_t n, void *ud) {
    (void)lp, (void)id, (void)t, (void)p, (void)n, (void)ud;
}

int main(void) {
    weft_cb c = cb;
    weft_fd_cb f = fd_cb;
    weft_signal_cb s = sig_cb;
    weft_event_cb e = ev_cb;
    weft_free_fn fr = NULL;
    weft_run_mode modes[] = {WEFT_RUN_DEFAULT, WEFT_RUN_ONCE, WEFT_RUN_NOWAIT};
    weft_result r = WEFT_ERR_FORKED;
    unsigned bits = WEFT_READABLE | WEFT_WRITABLE | WEFT_HANGUP | WEFT_ERROR;
    int ok = c && f && s && e && !fr && modes[2] == 2 && r == -12 && bits == 15 &&
             weft_abi_version() == WEFT_ABI_VERSION && weft_version() != NULL;
    printf("== header_c: %d passed, %d failed\n", ok ? 1 : 0, ok ? 0 : 1);
    return ok ? 0 : 1;
}
