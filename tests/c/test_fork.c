/* fork: in a child of a process that used weft, every call that touches a loop returns
 * WEFT_ERR_FORKED; every fd weft creates is close-on-exec; loops leave no fd behind. */
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

/* The fds of this process (as a bitmap over 0..4095). */
enum { MAXFD = 4096 };
static int list_fds(unsigned char *set) {
    memset(set, 0, MAXFD);
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int self = dirfd(d), n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd != self && fd < MAXFD) set[fd] = 1, n++;
    }
    closedir(d);
    return n;
}

TEST(every_weft_fd_is_close_on_exec_and_freed_with_its_loop) {
    static unsigned char before[MAXFD], with_loop[MAXFD], after[MAXFD];
    REQUIRE(list_fds(before) > 0);
    weft_loop *lp;
    int p[2];
    REQUIRE(loop_and_pipe(&lp, p));
    /* registrations of every kind, in case any of them makes an fd */
    CHECK_ID(weft_timer_after(lp, 100000, never_cb, NULL, NULL));
    CHECK_ID(weft_timer_every(lp, 100000, never_cb, NULL, NULL));
    CHECK_ID(weft_watch_fd(lp, p[0], WEFT_READABLE, never_fd_cb, NULL, NULL));
    CHECK_ID(weft_watch_signal(lp, SIGUSR2, never_signal_cb, NULL, NULL));
    CHECK_ID(weft_subscribe(lp, "y", never_event_cb, NULL, NULL));
    CHECK_OK(weft_emit(lp, "x", NULL, 0));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    list_fds(with_loop);
    int made = 0;
    for (int fd = 0; fd < MAXFD; fd++) {
        if (!with_loop[fd] || before[fd] || fd == p[0] || fd == p[1]) continue;
        made++;
        int flags = fcntl(fd, F_GETFD);
        CHECK_MSG(flags >= 0 && (flags & FD_CLOEXEC), "weft's fd %d is not close-on-exec", fd);
    }
    CHECK_MSG(made >= 1, "weft_loop_new made no fd?");
    CHECK(with_loop[weft_loop_fd(lp)]);
    free_loop_and_pair(lp, p);
    list_fds(after);
    for (int fd = 0; fd < MAXFD; fd++)
        CHECK_MSG(after[fd] == before[fd], "fd %d %s after weft_loop_free", fd,
                  after[fd] ? "is left open" : "was closed");
}

/* Run as "WEFT_TEST_LIST_FDS=1 test_fork" (by the test below, through exec), the
 * program prints the fds it was started with, opening none itself, and exits. */
__attribute__((constructor)) static void list_fds_and_exit(void) {
    if (!getenv("WEFT_TEST_LIST_FDS")) return;
    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0) printf("%d\n", fd);
    fflush(stdout);
    _exit(0);
}

/* Reads `fd` to its end into buf (NUL-terminated, at most cap - 1 bytes) and closes
 * it, then waits for the child `pid`. Returns the bytes read; *status gets the child's
 * wait status. */
static size_t read_all_and_reap(int fd, pid_t pid, char *buf, size_t cap, int *status) {
    size_t n = 0;
    ssize_t r;
    while ((r = read(fd, buf + n, cap - 1 - n)) > 0) n += (size_t)r;
    buf[n] = '\0';
    close(fd);
    *status = 0;
    waitpid(pid, status, 0);
    return n;
}

/* After exec, a child sees none of weft's fds. */
TEST(weft_fds_do_not_survive_exec) {
    static unsigned char before[MAXFD], with_loop[MAXFD];
    list_fds(before);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    CHECK_ID(weft_watch_signal(lp, SIGUSR2, never_signal_cb, NULL, NULL));
    list_fds(with_loop);
    int out[2];
    REQUIRE(pipe2(out, O_CLOEXEC) == 0);
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        setenv("WEFT_TEST_LIST_FDS", "1", 1);
        execl(h_argv0, h_argv0, (char *)NULL); /* natively, also under valgrind */
        _exit(127);
    }
    close(out[1]);
    char buf[8192];
    int status;
    read_all_and_reap(out[0], pid, buf, sizeof buf, &status);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int lines = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, "\n", &save); tok; tok = strtok_r(NULL, "\n", &save)) {
        int fd = atoi(tok);
        lines++;
        CHECK_MSG(fd < 0 || fd >= MAXFD || before[fd] || !with_loop[fd],
                  "the exec'd child inherited weft's fd %d", fd);
    }
    CHECK(lines >= 2); /* at least stdout and stderr */
    weft_loop_free(lp);
}

/* ---- in a forked child -------------------------------------------------------------- */

/* The child reports each failed check as a line on a pipe; the parent prints them. */
static int child_report_fd = -1;
static int child_failures;

static void child_fail(int line, const char *what) {
    char msg[600];
    int n = snprintf(msg, sizeof msg, "line %d: %s [weft_last_error: %s]\n", line, what,
                     h_last_error());
    if (write(child_report_fd, msg, (size_t)n) < 0) {
    }
    child_failures++;
}

#define CHILD_CHECK(cond)                           \
    do {                                            \
        if (!(cond)) child_fail(__LINE__, #cond);   \
    } while (0)

static bool err_has(const char *needle) { return strstr(h_last_error(), needle) != NULL; }

static _Atomic int parent_frees;
static void parent_free(void *ud) {
    (void)ud;
    atomic_fetch_add(&parent_frees, 1);
}

static void child_checks(weft_loop *lp, weft_id sub, weft_id timer, weft_id post, int pipe_fd) {
    int frees_at_fork = atomic_load(&parent_frees);
    /* weft_loop_new refuses */
    weft_loop *mine = weft_loop_new();
    CHILD_CHECK(mine == NULL);
    CHILD_CHECK(err_has("weft_loop_new") && err_has("fork"));
    /* every registration on the parent's loop refuses, without free_fn */
    CHILD_CHECK(weft_post(lp, never_cb, NULL, never_free) == 0);
    CHILD_CHECK(err_has("weft_post") && err_has("fork"));
    CHILD_CHECK(weft_timer_after(lp, 0, never_cb, NULL, never_free) == 0);
    CHILD_CHECK(err_has("weft_timer_after") && err_has("fork"));
    CHILD_CHECK(weft_timer_every(lp, 10, never_cb, NULL, never_free) == 0);
    CHILD_CHECK(err_has("fork"));
    CHILD_CHECK(weft_watch_fd(lp, pipe_fd, WEFT_READABLE, never_fd_cb, NULL, never_free) == 0);
    CHILD_CHECK(err_has("fork"));
    CHILD_CHECK(weft_watch_signal(lp, SIGUSR1, never_signal_cb, NULL, never_free) == 0);
    CHILD_CHECK(err_has("fork"));
    CHILD_CHECK(weft_subscribe(lp, "a", never_event_cb, NULL, never_free) == 0);
    CHILD_CHECK(err_has("fork"));
    CHILD_CHECK(weft_emit(lp, "a", "b", 1) == WEFT_ERR_FORKED);
    CHILD_CHECK(weft_cancel(lp, sub) == WEFT_ERR_FORKED);
    CHILD_CHECK(weft_cancel(lp, timer) == WEFT_ERR_FORKED);
    CHILD_CHECK(weft_cancel(lp, post) == WEFT_ERR_FORKED);
    CHILD_CHECK(weft_watch_fd_modify(lp, sub, 0) == WEFT_ERR_FORKED);
    CHILD_CHECK(weft_loop_run(lp, WEFT_RUN_DEFAULT) == WEFT_ERR_FORKED);
    CHILD_CHECK(weft_loop_run(lp, WEFT_RUN_ONCE) == WEFT_ERR_FORKED);
    CHILD_CHECK(weft_loop_run(lp, WEFT_RUN_NOWAIT) == WEFT_ERR_FORKED);
    CHILD_CHECK(weft_loop_stop(lp) == WEFT_ERR_FORKED);
    CHILD_CHECK(weft_loop_alive(lp) == WEFT_ERR_FORKED);
    CHILD_CHECK(weft_loop_timeout_ms(lp) == -1);
    CHILD_CHECK(err_has("fork"));
    /* freeing the parent's loop does nothing: no free_fn runs, the loop stays as it is */
    weft_loop_free(lp);
    CHILD_CHECK(atomic_load(&parent_frees) == frees_at_fork);
    CHILD_CHECK(weft_emit(lp, "a", NULL, 0) == WEFT_ERR_FORKED);
    /* calls that touch no loop still work */
    CHILD_CHECK(weft_abi_version() == WEFT_ABI_VERSION);
    CHILD_CHECK(weft_version() != NULL);
    CHILD_CHECK(strncmp(weft_strerror(WEFT_ERR_FORKED), "WEFT_ERR_FORKED", 15) == 0);
    CHILD_CHECK(weft_last_error(NULL, 0) > 0);
}

TEST(forked_child_gets_forked_from_every_loop_call) {
    weft_loop *lp;
    int p[2];
    REQUIRE(loop_and_pipe(&lp, p));
    track t;
    track_init(&t);
    weft_id sub = CHECK_ID(weft_subscribe(lp, "*", never_event_cb, NULL, parent_free));
    weft_id timer = CHECK_ID(weft_timer_after(lp, 100000, never_cb, NULL, parent_free));
    weft_id post = CHECK_ID(weft_post(lp, track_cb, &t, track_free));
    int report[2];
    REQUIRE(pipe(report) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(report[0]);
        child_report_fd = report[1];
        child_checks(lp, sub, timer, post, p[0]);
        _exit(child_failures > 100 ? 100 : child_failures);
    }
    close(report[1]);
    char buf[8192];
    int status;
    size_t n = read_all_and_reap(report[0], pid, buf, sizeof buf, &status);
    CHECK_MSG(WIFEXITED(status), "the child did not exit normally (status %#x)", status);
    if (n > 0) h_fail(__FILE__, __LINE__, "in the forked child:\n%s", buf);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child exited with %d",
              WEXITSTATUS(status));
    /* the parent's loop is untouched and works */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&t.calls), 1);
    CHECK_EQ(atomic_load(&t.frees), 1);
    CHECK_OK(weft_emit(lp, "still.works", NULL, 0));
    free_loop_and_pair(lp, p);
    CHECK_EQ(atomic_load(&parent_frees), 2);
}

/* "every call that touches a loop returns WEFT_ERR_FORKED": weft_loop_fd on the
 * parent's loop in a child gives WEFT_ERR_FORKED rather than the parent's epoll fd. */
TEST(forked_child_gets_no_loop_fd) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    int parent_fd = weft_loop_fd(lp);
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) _exit(weft_loop_fd(lp) == WEFT_ERR_FORKED ? 0 : 1);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "weft_loop_fd(parent's loop) in a forked child returned the fd (%d) instead of "
              "WEFT_ERR_FORKED",
              parent_fd);
    weft_loop_free(lp);
}

/* A loop running on another thread while the process forks: the child is refused, the
 * parent's loop goes on. */
static void stop_it(weft_loop *lp, weft_id id, void *ud) {
    (void)id, (void)ud;
    CHECK_OK(weft_loop_stop(lp));
}

TEST(fork_while_a_loop_runs_on_another_thread) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track tick;
    track_init(&tick);
    CHECK_ID(weft_timer_every(lp, 1, track_cb, &tick, track_free));
    bg_loop b;
    bg_start(&b, lp, WEFT_RUN_DEFAULT);
    sleep_ms(20);
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int bad = 0;
        bad += weft_post(lp, never_cb, NULL, never_free) != 0;
        bad += weft_emit(lp, "x", NULL, 0) != WEFT_ERR_FORKED;
        bad += weft_loop_run(lp, WEFT_RUN_NOWAIT) != WEFT_ERR_FORKED;
        bad += weft_loop_new() != NULL;
        weft_loop_free(lp); /* must not block on the parent's running loop */
        _exit(bad);
    }
    int status = 0;
    uint64_t end = now_ms() + h_slack_ms(5000);
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < end) sleep_ms(1);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        h_fail(__FILE__, __LINE__, "the forked child hung");
    } else {
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    CHECK_ID(weft_post(lp, stop_it, NULL, NULL));
    bg_join(&b, h_slack_ms(5000), "run the post that stops it");
    CHECK_EQ(b.rc, WEFT_OK);
    CHECK(atomic_load(&tick.calls) > 0);
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&tick.frees), 1);
}
