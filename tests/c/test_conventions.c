/* Conventions every function keeps: weft_last_error, weft_strerror, versions, NULL
 * arguments, and free_fn never running for a failed registration. */
#define _GNU_SOURCE 1
#include "harness.h"

#include <elf.h>
#include <link.h>

#include <limits.h>
#include <signal.h>

/* ---- weft_last_error -------------------------------------------------------------- */

static void *fresh_thread_last_error(void *arg) {
    int *ok = (int *)arg;
    char buf[16];
    memset(buf, 'x', sizeof buf);
    size_t n = weft_last_error(buf, sizeof buf);
    *ok = (n == 0 && buf[0] == '\0');
    /* NULL with len 0 and NULL with len > 0 (no write) give the length too. */
    *ok = *ok && weft_last_error(NULL, 0) == 0 && weft_last_error(NULL, 16) == 0;
    return NULL;
}

TEST(last_error_is_empty_on_a_thread_without_failures) {
    pthread_t t;
    int ok = 0;
    pthread_create(&t, NULL, fresh_thread_last_error, &ok);
    pthread_join(t, NULL);
    CHECK(ok);
}

TEST(last_error_code_tells_why_an_id_call_failed) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    CHECK_EQ(weft_timer_after(NULL, 1, track_cb, NULL, never_free), 0);
    CHECK_EQ(weft_last_error_code(), WEFT_ERR_NULL);
    CHECK_EQ(weft_watch_fd(lp, -1, WEFT_READABLE, track_fd_cb, NULL, never_free), 0);
    CHECK_EQ(weft_last_error_code(), WEFT_ERR_INVALID);
    CHECK_EQ(weft_spawn(lp, WEFT_ON_PROCESS, NULL, NULL, NULL, never_free, NULL), 0);
    CHECK_EQ(weft_last_error_code(), WEFT_ERR_NULL);
    CHECK_RC(weft_cancel(lp, 12345), WEFT_ERR_NOT_FOUND);
    CHECK_EQ(weft_last_error_code(), WEFT_ERR_NOT_FOUND);
    /* A successful call leaves it as it was, like the message. */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(weft_last_error_code(), WEFT_ERR_NOT_FOUND);
    weft_loop_free(lp);
}

TEST(last_error_returns_full_length_and_truncates) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    CHECK_ID_FAILS(weft_watch_fd(lp, -1, WEFT_READABLE, track_fd_cb, NULL, never_free),
                   "weft_watch_fd: fd -1");
    size_t full = weft_last_error(NULL, 0);
    char big[512];
    CHECK_EQ(weft_last_error(big, sizeof big), full);
    CHECK_EQ(strlen(big), full);
    CHECK(full > strlen("weft_watch_fd: fd -1"));
    CHECK_MSG(strncmp(big, "weft_watch_fd: fd -1 ", 21) == 0, "message: \"%s\"", big);

    /* Truncation: len - 1 bytes and a NUL, return value still the full length. */
    char small[8];
    memset(small, 'x', sizeof small);
    CHECK_EQ(weft_last_error(small, sizeof small), full);
    CHECK_EQ(strlen(small), 7);
    CHECK(memcmp(small, big, 7) == 0);

    char one[1] = {'x'};
    CHECK_EQ(weft_last_error(one, 1), full);
    CHECK_EQ(one[0], '\0');

    /* NULL buf with a length: nothing written, length returned. */
    CHECK_EQ(weft_last_error(NULL, 100), full);

    /* Exactly full + 1 bytes holds the whole message. */
    char *exact = malloc(full + 1);
    memset(exact, 'x', full + 1);
    CHECK_EQ(weft_last_error(exact, full + 1), full);
    CHECK(strcmp(exact, big) == 0);
    free(exact);
    weft_loop_free(lp);
}

TEST(last_error_is_kept_by_successful_calls) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    CHECK_RC(weft_cancel(lp, 42), WEFT_ERR_NOT_FOUND);
    char before[256];
    weft_last_error(before, sizeof before);
    CHECK_MSG(strncmp(before, "weft_cancel: ", 13) == 0, "message: \"%s\"", before);
    /* Successful calls of every kind leave it alone. */
    track t;
    track_init(&t);
    weft_id id = CHECK_ID(weft_timer_after(lp, 0, track_cb, &t, track_free));
    CHECK_OK(weft_cancel(lp, id));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_OK(weft_emit(lp, "a.b", NULL, 0));
    CHECK_OK(weft_loop_stop(lp));
    CHECK(weft_loop_fd(lp) >= 0);
    (void)weft_loop_timeout_ms(lp);
    (void)weft_strerror(-3);
    (void)weft_version();
    weft_loop *other = weft_loop_new();
    weft_loop_free(other);
    char after[256];
    weft_last_error(after, sizeof after);
    CHECK_MSG(strcmp(before, after) == 0, "\"%s\" became \"%s\"", before, after);
    weft_loop_free(lp);
}

static void *fail_on_thread(void *arg) {
    weft_loop *lp = (weft_loop *)arg;
    weft_cancel(lp, 7); /* NOT_FOUND on this thread only */
    char buf[128];
    weft_last_error(buf, sizeof buf);
    return (void *)(intptr_t)(strncmp(buf, "weft_cancel: id 0x7", 19) == 0);
}

TEST(last_error_is_per_thread) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    CHECK_RC(weft_loop_run(lp, 77), WEFT_ERR_INVALID);
    CHECK_ERR_HAS("weft_loop_run: mode 77");
    pthread_t t;
    void *ok = NULL;
    pthread_create(&t, NULL, fail_on_thread, lp);
    pthread_join(t, &ok);
    CHECK(ok != NULL);
    CHECK_ERR_HAS("weft_loop_run: mode 77"); /* the other thread's failure is not ours */
    weft_loop_free(lp);
}

/* Each message names the function, the argument, and the value. */
TEST(messages_name_function_argument_and_value) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    CHECK_ID_FAILS(weft_watch_fd(lp, -1, WEFT_READABLE, never_fd_cb, NULL, never_free),
                   "weft_watch_fd: fd -1");
    CHECK_ID_FAILS(weft_timer_after(lp, UINT64_MAX, never_cb, NULL, never_free),
                   "weft_timer_after: delay_ms 18446744073709551615");
    CHECK_ID_FAILS(weft_timer_every(lp, 0, never_cb, NULL, never_free),
                   "weft_timer_every: interval_ms 0");
    CHECK_ID_FAILS(weft_watch_signal(lp, 65, never_signal_cb, NULL, never_free),
                   "weft_watch_signal: signum 65");
    CHECK_ID_FAILS(weft_subscribe(lp, "a*", never_event_cb, NULL, never_free),
                   "weft_subscribe: pattern \"a*\"");
    CHECK_RC(weft_emit(lp, "a.*", NULL, 0), WEFT_ERR_INVALID);
    CHECK_ERR_HAS("weft_emit: topic \"a.*\"");
    CHECK_RC(weft_emit(lp, "a", NULL, 5), WEFT_ERR_NULL);
    CHECK_ERR_HAS("weft_emit: payload is NULL");
    CHECK_RC(weft_cancel(lp, 0x1234), WEFT_ERR_NOT_FOUND);
    CHECK_ERR_HAS("weft_cancel: id 0x1234");
    CHECK_RC(weft_watch_fd_modify(lp, 0x99, 7), WEFT_ERR_INVALID);
    CHECK_ERR_HAS("weft_watch_fd_modify: interest 0x7");
    CHECK_RC(weft_loop_run(lp, -1), WEFT_ERR_INVALID);
    CHECK_ERR_HAS("weft_loop_run: mode -1");
    weft_loop_free(lp);
}

/* ---- strerror and versions ----------------------------------------------------------- */

TEST(strerror_names_every_code) {
    static const struct {
        int code;
        const char *name;
    } codes[] = {
        {WEFT_OK, "WEFT_OK"},
        {WEFT_ERR_NULL, "WEFT_ERR_NULL"},
        {WEFT_ERR_INVALID, "WEFT_ERR_INVALID"},
        {WEFT_ERR_NOT_FOUND, "WEFT_ERR_NOT_FOUND"},
        {WEFT_ERR_CLOSED, "WEFT_ERR_CLOSED"},
        {WEFT_ERR_BUSY, "WEFT_ERR_BUSY"},
        {WEFT_ERR_CANCELLED, "WEFT_ERR_CANCELLED"},
        {WEFT_ERR_TIMEOUT, "WEFT_ERR_TIMEOUT"},
        {WEFT_ERR_CRASHED, "WEFT_ERR_CRASHED"},
        {WEFT_ERR_PANIC, "WEFT_ERR_PANIC"},
        {WEFT_ERR_IO, "WEFT_ERR_IO"},
        {WEFT_ERR_UNSUPPORTED, "WEFT_ERR_UNSUPPORTED"},
        {WEFT_ERR_FORKED, "WEFT_ERR_FORKED"},
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = weft_strerror(codes[i].code);
        CHECK(s != NULL);
        if (s == NULL) continue;
        size_t n = strlen(codes[i].name);
        /* "WEFT_ERR_NULL: ...", and not a prefix of a longer name */
        CHECK_MSG(strncmp(s, codes[i].name, n) == 0 && s[n] == ':' && strlen(s) > n + 2,
                  "weft_strerror(%d) = \"%s\"", codes[i].code, s);
    }
    int unknown[] = {1, 2, -13, -100, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = weft_strerror(unknown[i]);
        CHECK(s != NULL);
        CHECK_MSG(s && strcmp(s, "unknown weft_result code") == 0, "weft_strerror(%d) = \"%s\"",
                  unknown[i], s ? s : "(null)");
    }
    /* Static: the same pointer every time. */
    CHECK(weft_strerror(-3) == weft_strerror(-3));
}

TEST(version_matches_the_header) {
    const char *v = weft_version();
    REQUIRE(v != NULL);
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", WEFT_VERSION_MAJOR, WEFT_VERSION_MINOR,
             WEFT_VERSION_PATCH);
    CHECK_MSG(strcmp(v, want) == 0, "weft_version() = \"%s\", header says %s", v, want);
    CHECK(weft_version() == v);
    CHECK_EQ(weft_abi_version(), WEFT_ABI_VERSION);
}

/* ---- NULL arguments -------------------------------------------------------------------- */

TEST(null_loop_is_refused_by_every_function) {
    track t;
    track_init(&t);
    CHECK_RC(weft_loop_run(NULL, WEFT_RUN_DEFAULT), WEFT_ERR_NULL);
    CHECK_ERR_HAS("weft_loop_run: loop is NULL");
    CHECK_RC(weft_loop_run(NULL, WEFT_RUN_NOWAIT), WEFT_ERR_NULL);
    CHECK_RC(weft_loop_stop(NULL), WEFT_ERR_NULL);
    CHECK_ERR_HAS("weft_loop_stop: loop is NULL");
    CHECK_EQ(weft_loop_fd(NULL), -1);
    CHECK_ERR_HAS("weft_loop_fd: loop is NULL");
    CHECK_EQ(weft_loop_timeout_ms(NULL), -1);
    CHECK_ERR_HAS("weft_loop_timeout_ms: loop is NULL");
    CHECK_ID_FAILS(weft_post(NULL, track_cb, &t, track_free), "weft_post: loop is NULL");
    CHECK_ID_FAILS(weft_timer_after(NULL, 1, track_cb, &t, track_free),
                   "weft_timer_after: loop is NULL");
    CHECK_ID_FAILS(weft_timer_every(NULL, 1, track_cb, &t, track_free),
                   "weft_timer_every: loop is NULL");
    CHECK_RC(weft_cancel(NULL, 1), WEFT_ERR_NULL);
    CHECK_ERR_HAS("weft_cancel: loop is NULL");
    CHECK_ID_FAILS(weft_watch_fd(NULL, 0, WEFT_READABLE, track_fd_cb, &t, track_free),
                   "weft_watch_fd: loop is NULL");
    CHECK_RC(weft_watch_fd_modify(NULL, 1, WEFT_READABLE), WEFT_ERR_NULL);
    CHECK_ERR_HAS("weft_watch_fd_modify: loop is NULL");
    CHECK_ID_FAILS(weft_watch_signal(NULL, SIGUSR1, track_signal_cb, &t, track_free),
                   "weft_watch_signal: loop is NULL");
    CHECK_ID_FAILS(weft_subscribe(NULL, "a", track_event_cb, &t, track_free),
                   "weft_subscribe: loop is NULL");
    CHECK_RC(weft_emit(NULL, "a", "x", 1), WEFT_ERR_NULL);
    CHECK_ERR_HAS("weft_emit: loop is NULL");
    CHECK_EQ(atomic_load(&t.frees), 0);
    CHECK_EQ(atomic_load(&t.calls), 0);
}

TEST(loop_free_null_is_a_noop) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    CHECK_RC(weft_cancel(lp, 5), WEFT_ERR_NOT_FOUND);
    char before[256];
    weft_last_error(before, sizeof before);
    weft_loop_free(NULL);
    char after[256];
    weft_last_error(after, sizeof after);
    CHECK_MSG(strcmp(before, after) == 0, "weft_loop_free(NULL) set \"%s\"", after);
    weft_loop_free(lp);
}

TEST(null_callbacks_and_strings_are_refused_without_free) {
    weft_loop *lp;
    int fds[2];
    REQUIRE(loop_and_pipe(&lp, fds));
    track t;
    track_init(&t);
    CHECK_ID_FAILS(weft_post(lp, NULL, &t, track_free), "weft_post: cb is NULL");
    CHECK_ID_FAILS(weft_timer_after(lp, 1, NULL, &t, track_free), "weft_timer_after: cb is NULL");
    CHECK_ID_FAILS(weft_timer_every(lp, 1, NULL, &t, track_free), "weft_timer_every: cb is NULL");
    CHECK_ID_FAILS(weft_watch_fd(lp, fds[0], WEFT_READABLE, NULL, &t, track_free),
                   "weft_watch_fd: cb is NULL");
    CHECK_ID_FAILS(weft_watch_signal(lp, SIGUSR1, NULL, &t, track_free),
                   "weft_watch_signal: cb is NULL");
    CHECK_ID_FAILS(weft_subscribe(lp, "a", NULL, &t, track_free), "weft_subscribe: cb is NULL");
    CHECK_ID_FAILS(weft_subscribe(lp, NULL, track_event_cb, &t, track_free),
                   "weft_subscribe: pattern is NULL");
    CHECK_RC(weft_emit(lp, NULL, "x", 1), WEFT_ERR_NULL);
    CHECK_ERR_HAS("weft_emit: topic is NULL");
    CHECK_RC(weft_emit(lp, "a", NULL, 1), WEFT_ERR_NULL);
    CHECK_ERR_HAS("weft_emit: payload is NULL with len 1");
    CHECK_EQ(atomic_load(&t.frees), 0);
    /* Nothing was registered: the loop is idle. */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(weft_loop_timeout_ms(lp), -1);
    free_loop_and_pair(lp, fds);
    CHECK_EQ(atomic_load(&t.frees), 0);
}

/* A NULL free_fn is allowed for every registration kind. */
TEST(null_free_fn_is_allowed) {
    weft_loop *lp;
    int fds[2];
    REQUIRE(loop_and_pipe(&lp, fds));
    track t;
    track_init(&t);
    CHECK_ID(weft_post(lp, track_cb, &t, NULL));
    CHECK_ID(weft_timer_after(lp, 0, track_cb, &t, NULL));
    weft_id every = CHECK_ID(weft_timer_every(lp, 1000, track_cb, &t, NULL));
    weft_id w = CHECK_ID(weft_watch_fd(lp, fds[1], WEFT_WRITABLE, track_fd_cb, &t, NULL));
    weft_id s = CHECK_ID(weft_watch_signal(lp, SIGUSR2, track_signal_cb, &t, NULL));
    weft_id sub = CHECK_ID(weft_subscribe(lp, "*", track_event_cb, &t, NULL));
    CHECK_OK(weft_cancel(lp, every));
    CHECK_OK(weft_cancel(lp, w));
    CHECK_OK(weft_cancel(lp, s));
    CHECK_OK(weft_cancel(lp, sub));
    CHECK_ID(weft_subscribe(lp, "x", track_event_cb, &t, NULL));
    weft_loop_free(lp); /* with pending post, timer and subscription */
    CHECK_EQ(atomic_load(&t.frees), 0);
    close(fds[0]);
    close(fds[1]);
}

/* Every kind of bad input to a registration leaves free_fn uncalled. */
TEST(failed_registrations_never_call_free_fn) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    long frees_before = atomic_load(&h_frees);
    char path[] = "/tmp/weft-test-XXXXXX";
    int file = mkstemp(path);
    REQUIRE(file >= 0);
    unlink(path);
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    int closed = dup(fds[0]);
    close(closed);
    track t;
    track_init(&t);
    CHECK_EQ(weft_timer_after(lp, UINT64_MAX, track_cb, &t, track_free), 0);
    CHECK_EQ(weft_timer_after(lp, 1ull << 35, track_cb, &t, track_free), 0);
    CHECK_EQ(weft_timer_every(lp, 0, track_cb, &t, track_free), 0);
    CHECK_EQ(weft_timer_every(lp, UINT64_MAX, track_cb, &t, track_free), 0);
    CHECK_EQ(weft_watch_fd(lp, -1, WEFT_READABLE, track_fd_cb, &t, track_free), 0);
    CHECK_EQ(weft_watch_fd(lp, closed, WEFT_READABLE, track_fd_cb, &t, track_free), 0);
    CHECK_EQ(weft_watch_fd(lp, file, WEFT_READABLE, track_fd_cb, &t, track_free), 0);
    CHECK_EQ(weft_watch_fd(lp, fds[0], 4, track_fd_cb, &t, track_free), 0);
    CHECK_EQ(weft_watch_fd(lp, weft_loop_fd(lp), WEFT_READABLE, track_fd_cb, &t, track_free), 0);
    CHECK_EQ(weft_watch_signal(lp, 0, track_signal_cb, &t, track_free), 0);
    CHECK_EQ(weft_watch_signal(lp, SIGKILL, track_signal_cb, &t, track_free), 0);
    CHECK_EQ(weft_subscribe(lp, "", track_event_cb, &t, track_free), 0);
    CHECK_EQ(weft_subscribe(lp, "*.x", track_event_cb, &t, track_free), 0);
    CHECK_EQ(atomic_load(&t.frees), 0);
    CHECK_EQ(atomic_load(&h_frees), frees_before);
    /* None of them registered anything. */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&t.frees), 0);
    close(file);
    close(fds[0]);
    close(fds[1]);
}

/* Registrations attempted from a free_fn while weft_loop_free runs get CLOSED (and their
 * own free_fn is not called); the loop-free in progress is not disturbed. */
typedef struct {
    weft_loop *lp;
    int post_closed, timer_closed, every_closed, sub_closed, watch_closed, sig_closed, emit_rc;
    int run_rc, extra_frees;
    int fd;
} closing_probe;

static void probe_extra_free(void *ud) { ((closing_probe *)ud)->extra_frees++; }

static void probe_free(void *ud) {
    closing_probe *p = (closing_probe *)ud;
    char buf[256];
    p->post_closed = weft_post(p->lp, never_cb, p, probe_extra_free) == 0;
    weft_last_error(buf, sizeof buf);
    p->post_closed = p->post_closed && strstr(buf, "weft_post") != NULL;
    p->timer_closed = weft_timer_after(p->lp, 0, never_cb, p, probe_extra_free) == 0;
    p->every_closed = weft_timer_every(p->lp, 1, never_cb, p, probe_extra_free) == 0;
    p->sub_closed = weft_subscribe(p->lp, "*", never_event_cb, p, probe_extra_free) == 0;
    p->watch_closed =
        weft_watch_fd(p->lp, p->fd, WEFT_READABLE, never_fd_cb, p, probe_extra_free) == 0;
    p->sig_closed = weft_watch_signal(p->lp, SIGUSR2, never_signal_cb, p, probe_extra_free) == 0;
    p->emit_rc = weft_emit(p->lp, "x", NULL, 0);
    p->run_rc = weft_loop_run(p->lp, WEFT_RUN_NOWAIT);
}

TEST(registering_from_a_free_fn_during_loop_free_gives_closed) {
    weft_loop *lp;
    int fds[2];
    REQUIRE(loop_and_pipe(&lp, fds));
    closing_probe p = {.lp = lp, .fd = fds[0]};
    CHECK_ID(weft_subscribe(lp, "never", never_event_cb, &p, probe_free));
    weft_loop_free(lp);
    CHECK(p.post_closed);
    CHECK(p.timer_closed);
    CHECK(p.every_closed);
    CHECK(p.sub_closed);
    CHECK(p.watch_closed);
    CHECK(p.sig_closed);
    CHECK_EQ(p.emit_rc, WEFT_ERR_CLOSED);
    CHECK_MSG(p.run_rc == WEFT_ERR_CLOSED || p.run_rc == WEFT_ERR_BUSY,
              "weft_loop_run during weft_loop_free returned %d", p.run_rc);
    CHECK_EQ(p.extra_frees, 0);
    close(fds[0]);
    close(fds[1]);
}

/* libweft.so is linked with -z nodelete: a host that dlcloses it (Node at exit, an
 * interpreter tearing down) cannot unmap code a pool thread still runs. Read the flag
 * from the loaded library's dynamic section. */
static int find_nodelete(struct dl_phdr_info *info, size_t size, void *out) {
    (void)size;
    if (strstr(info->dlpi_name, "libweft.so") == NULL) return 0;
    int *flag = out;
    *flag = 0; /* found the library; the flag is set below if present */
    for (int i = 0; i < info->dlpi_phnum; i++) {
        if (info->dlpi_phdr[i].p_type != PT_DYNAMIC) continue;
        const ElfW(Dyn) *dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
        for (; dyn->d_tag != DT_NULL; dyn++)
            if (dyn->d_tag == DT_FLAGS_1 && (dyn->d_un.d_val & DF_1_NODELETE)) *flag = 1;
    }
    return 1;
}

TEST(the_library_is_never_unloaded) {
    int nodelete = -1;
    dl_iterate_phdr(find_nodelete, &nodelete);
    CHECK_MSG(nodelete != -1, "libweft.so is not among the loaded objects");
    CHECK_MSG(nodelete == 1, "libweft.so lacks DF_1_NODELETE (-z nodelete, see build.rs)");
}
