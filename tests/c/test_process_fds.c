/* Which of the parent's fds a process task's child keeps (weft_spawn_options' keep_fds
 * and inherit_fds): by default only 0, 1, 2 and its own pipes, so a socket the parent
 * closes ends for its peer at once, while the child still runs; keep_fds or inherit_fds
 * keep the old behaviour for the fds a work needs. */
#include "harness.h"
#include "tasks_util.h"
#include "process_util.h"

#include <sys/resource.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>

/* Holds the child until the test opens the gate (at most 3 s). */
static int gated_work(weft_task *t, void *ud) {
    (void)t;
    ptask *p = (ptask *)ud;
    shm_enter(p->shm);
    uint64_t end = now_ms() + 3000;
    while (!atomic_load(&p->shm->gate) && now_ms() < end) sleep_ms(2);
    return 0;
}

/* Whether `fd` shows its peer's end (EOF or hang-up) within `ms`. */
static bool peer_end_within(int fd, int ms) {
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, ms) <= 0) return false;
    char c;
    return read(fd, &c, 1) == 0;
}

static void wait_started(pshm *s, int n) {
    uint64_t end = now_ms() + 5000;
    while (atomic_load(&s->started) < n && now_ms() < end) sleep_ms(1);
}

/* A socket pair end handed to a child: closed in the parent while the child runs, the
 * peer sees the end at once (before), or only once the child exits (kept). */
static void socket_closed_while_a_child_runs(int mode) {
    ENV_BEGIN();
    int sp[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
    ptask p;
    pt_init(&p, s);
    weft_spawn_options o = proc_opts(0, 0);
    int keep[2] = {sp[1], 1000}; /* an fd that is not open may be listed */
    if (mode == 1) o.inherit_fds = true;
    if (mode == 2) {
        o.keep_fds = keep;
        o.keep_fds_len = 2;
    }
    CHECK(pt_spawn(lp, gated_work, &p, mode == 3 ? NULL : &o) != 0);
    wait_started(s, 1);
    CHECK_EQ(atomic_load(&s->started), 1);
    close(sp[1]);
    /* Nothing else holds the socket: its end shows at once (the bound is only slack for
     * valgrind and load). */
    bool ended = peer_end_within(sp[0], mode == 0 || mode == 3 ? (int)h_slack_ms(300) : 300);
    if (mode == 0 || mode == 3) {
        CHECK_MSG(ended, "the peer saw no end within %d ms: the child holds the socket", (int)h_slack_ms(300));
    } else {
        CHECK_MSG(!ended, "the child kept the socket, yet the peer saw its end");
    }
    atomic_store(&s->gate, 1);
    weft_loop_run(lp, WEFT_RUN_DEFAULT);
    CHECK_EQ(p.status, 0);
    if (mode == 1 || mode == 2) CHECK(peer_end_within(sp[0], 2000));
    close(sp[0]);
    ENV_END();
}

TEST(by_default_a_socket_closed_in_the_parent_ends_at_once) { socket_closed_while_a_child_runs(0); }
TEST(with_null_options_a_socket_closed_in_the_parent_ends_at_once) { socket_closed_while_a_child_runs(3); }
TEST(inherit_fds_keeps_the_socket_open_in_the_child) { socket_closed_while_a_child_runs(1); }
TEST(keep_fds_keeps_the_listed_socket_open_in_the_child) { socket_closed_while_a_child_runs(2); }

/* The Gate One shape: a server stops listening while a render runs in a child; a new
 * connection is refused at once (not accepted by a socket the child holds). */
TEST(a_listening_socket_closed_while_a_child_runs_refuses_connections) {
    ENV_BEGIN();
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(ls >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    REQUIRE(bind(ls, (struct sockaddr *)&a, sizeof a) == 0);
    REQUIRE(listen(ls, 16) == 0);
    REQUIRE(getsockname(ls, (struct sockaddr *)&a, &alen) == 0);
    ptask p;
    pt_init(&p, s);
    CHECK(pt_spawn(lp, gated_work, &p, NULL) != 0);
    wait_started(s, 1);
    close(ls);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(c >= 0);
    int rc = connect(c, (struct sockaddr *)&a, sizeof a);
    int err = errno;
    CHECK_MSG(rc == -1 && err == ECONNREFUSED, "connect: rc %d (%s): the child holds the listening socket", rc,
              strerror(err));
    close(c);
    atomic_store(&s->gate, 1);
    weft_loop_run(lp, WEFT_RUN_DEFAULT);
    CHECK_EQ(p.status, 0);
    ENV_END();
}

/* The work writes the fds it has open (from /proc/self/fd, without its own listing fd)
 * and, for each, whether it is a pipe or a socket: 'p', 's' or 'o'. */
static int fds_work(weft_task *t, void *ud) {
    (void)ud;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) return 1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd == dirfd(d)) continue;
        struct stat st;
        char kind = 'o';
        if (fstat(fd, &st) == 0) kind = S_ISFIFO(st.st_mode) ? 'p' : S_ISSOCK(st.st_mode) ? 's' : 'o';
        int rec[2] = {fd, kind};
        weft_task_write(t, rec, sizeof rec);
    }
    closedir(d);
    return 0;
}

typedef struct fds_seen {
    int n;
    int rec[64][2];
} fds_seen;

static void fds_done(weft_loop *lp, weft_id id, int status, const uint8_t *result, size_t len, void *ud) {
    (void)lp, (void)id;
    fds_seen *f = (fds_seen *)ud;
    f->n = status == 0 ? (int)(len / sizeof f->rec[0]) : -1;
    if (f->n > 64) f->n = 64;
    if (f->n > 0) memcpy(f->rec, result, (size_t)f->n * sizeof f->rec[0]);
}

/* The child has 0, 1, 2, its result pipe (and for a reused child its control socket),
 * the listed fds, and nothing else of the parent's many. */
static void child_fds_are(bool reuse) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    int extra[8];
    for (int i = 0; i < 8; i++) REQUIRE((extra[i] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0);
    int keep[2] = {extra[3], extra[6]};
    weft_spawn_options o = proc_opts(0, 0);
    o.keep_fds = keep;
    o.keep_fds_len = 2;
    o.reuse_child = reuse;
    fds_seen f;
    memset(&f, 0, sizeof f);
    CHECK(weft_spawn(lp, WEFT_ON_PROCESS, fds_work, fds_done, &f, NULL, &o) != 0);
    weft_loop_run(lp, WEFT_RUN_DEFAULT);
    int pipes = 0, socks = 0, others = 0;
    bool std[3] = {false, false, false}, kept[2] = {false, false};
    /* valgrind keeps fds of its own above the limit it shows the program, and a
     * program cannot close them: not the parent's. */
    struct rlimit nofile;
    getrlimit(RLIMIT_NOFILE, &nofile);
    for (int i = 0; i < f.n; i++) {
        int fd = f.rec[i][0], kind = f.rec[i][1];
        if ((rlim_t)fd >= nofile.rlim_cur) continue;
        if (fd <= 2) std[fd] = true;
        else if (fd == keep[0]) kept[0] = true;
        else if (fd == keep[1]) kept[1] = true;
        else if (kind == 'p') pipes++;
        else if (kind == 's') socks++;
        else {
            others++;
            h_fail(__FILE__, __LINE__, "the child has fd %d open, of the parent's", fd);
        }
    }
    CHECK(f.n > 0);
    CHECK(std[0] && std[1] && std[2]);
    CHECK(kept[0] && kept[1]);
    CHECK_EQ(pipes, 1);
    CHECK_EQ(socks, reuse ? 1 : 0);
    CHECK_EQ(others, 0);
    for (int i = 0; i < 8; i++) close(extra[i]);
    weft_loop_free(lp);
    HYG_END(h);
}

TEST(the_child_has_only_std_fds_its_pipe_and_keep_fds) { child_fds_are(false); }
TEST(a_reused_child_has_only_std_fds_its_pipe_socket_and_keep_fds) { child_fds_are(true); }

/* keep_fds with a length but no array, or a negative fd; and on a task of no child. */
TEST(keep_fds_refuses_bad_inputs) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ptask p;
    pt_init(&p, NULL);
    weft_spawn_options o = proc_opts(0, 0);
    o.keep_fds_len = 1;
    CHECK_EQ(weft_spawn(lp, WEFT_ON_PROCESS, gated_work, pt_done, &p, NULL, &o), 0u);
    CHECK_EQ(weft_last_error_code(), WEFT_ERR_NULL);
    int bad = -1;
    o.keep_fds = &bad;
    CHECK_EQ(weft_spawn(lp, WEFT_ON_PROCESS, gated_work, pt_done, &p, NULL, &o), 0u);
    CHECK_EQ(weft_last_error_code(), WEFT_ERR_INVALID);
    weft_spawn_options io = proc_opts(0, 0);
    io.inherit_fds = true;
    CHECK_EQ(weft_spawn(lp, WEFT_ON_IO, gated_work, pt_done, &p, NULL, &io), 0u);
    CHECK_EQ(weft_last_error_code(), WEFT_ERR_INVALID);
    weft_loop_free(lp);
}
