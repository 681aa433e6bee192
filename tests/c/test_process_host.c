/* Process tasks and the host: weft_loop_free with children running or waiting, and
 * children forked by the host (weft_adopt_child, weft_child_task, weft_child_exit).
 *
 * Children never use the harness's CHECK: they report through shared memory (CCHECK in
 * process_util.h), their result bytes or their status. Every test ends with HYG_END:
 * the fd count back to its baseline, and no child of this process left at all. */
#include "harness.h"
#include "tasks_util.h"
#include "process_util.h"
#include "process_work.h"

#include <poll.h>
#include <sched.h>

/* ---- children forked by the host: helpers --------------------------------------------------- */

/* ---- freeing the loop ------------------------------------------------------------------------ */

/* weft_loop_free with a child sleeping 30 s kills and reaps it: it returns quickly, no
 * zombie is left, free_fn ran once and done did not. The same for an adopted child
 * (whose read end the loop closes). A task waiting for a slot is dropped too: its
 * free_fn runs, and it never forks; so is one cancelled whose done is still queued. */
TEST(freeing_the_loop_kills_and_reaps_its_children) {
    ENV_BEGIN();
    int marker[2];
    REQUIRE(pipe(marker) == 0);
    ptask a, b, c, d;
    pt_init(&a, s);
    pt_init(&b, s);
    pt_init(&c, s);
    pt_init(&d, NULL);
    a.ms = 30000;
    b.ctx = &marker[1];
    c.ctx = &marker[1];
    weft_spawn_options o = proc_opts(0, 1);
    CHECK_ID(weft_spawn(lp, WEFT_ON_PROCESS, sleepy_work, never_done_fn, &a, pt_free, &o));
    CHECK_ID(weft_spawn(lp, WEFT_ON_PROCESS, marker_work, never_done_fn, &b, pt_free, &o));
    /* c: cancelled while waiting, its done(CANCELLED) still queued when the loop goes */
    weft_id cid = CHECK_ID(weft_spawn(lp, WEFT_ON_PROCESS, marker_work, never_done_fn, &c, pt_free, &o));
    CHECK_MSG(WAIT_FOR(atomic_load(&s->started) == 1, h_slack_ms(3000)), "the child never started");
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_OK(weft_cancel(lp, cid));
    /* d: an adopted child, sleeping */
    host_child hc = host_fork(host_sleeper_body, 30000);
    REQUIRE(hc.pid > 0);
    CHECK_ID(weft_adopt_child(lp, hc.pid, hc.rfd, never_done_fn, &d, pt_free, NULL));
    int pid = atomic_load(&s->pid);
    CHECK_EQ(proc_children().all, 2);
    uint64_t t0 = now_ns();
    weft_loop_free(lp);
    double took = (double)(now_ns() - t0) / 1e6;
    CHECK_MSG(took < (double)h_slack_ms(500), "weft_loop_free took %.1f ms", took);
    CHECK_MSG(pid_gone(pid), "the child %d was not reaped by weft_loop_free", pid);
    CHECK_MSG(pid_gone(hc.pid), "the adopted child %d was not reaped by weft_loop_free", (int)hc.pid);
    kids k = proc_children();
    CHECK_MSG(k.all == 0, "%d children (%d zombies) after weft_loop_free", k.all, k.zombies);
    CHECK_EQ(atomic_load(&a.frees), 1);
    CHECK_EQ(atomic_load(&b.frees), 1);
    CHECK_EQ(atomic_load(&c.frees), 1);
    CHECK_EQ(atomic_load(&d.frees), 1);
    CHECK_EQ(a.free_pid, getpid());
    CHECK_EQ(atomic_load(&a.dones) + atomic_load(&b.dones) + atomic_load(&c.dones) + atomic_load(&d.dones), 0);
    CHECK_EQ(atomic_load(&s->finished), 0);
    CHECK_EQ(atomic_load(&s->forked_marker), 0);
    char buf[4];
    CHECK(read_now(marker[0], buf, sizeof buf) < 0 && errno == EAGAIN);
    close(marker[0]);
    close(marker[1]);
    shm_free(s);
    HYG_END(h);
}

/* ---- children forked by the host ------------------------------------------------------------- */

/* A host-forked child speaking through weft_child_task: 3 events, a result, status 9. */
static int host_body(int wfd, int arg) {
    (void)arg;
    weft_task *t = weft_child_task(wfd);
    if (t == NULL) return 101;
    if (weft_task_cancelled(t)) return 102;
    for (uint32_t i = 0; i < 3; i++)
        if (weft_task_emit(t, "host.ev", &i, sizeof i) != WEFT_OK) return 103;
    if (weft_task_write(t, "from the ", 9) != WEFT_OK) return 104;
    if (weft_task_write(t, "host", 4) != WEFT_OK) return 104;
    weft_child_exit(t, 9);
    return 105; /* not reached */
}

/* A child forked by the test itself reports through weft_child_task: done gets status 9
 * and the result, the events arrive before done, and the loop closes the read end. */
TEST(host_forked_child_is_adopted) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ptask p;
    pt_init(&p, NULL);
    p.count_kids = true;
    weft_id sub = CHECK_ID(weft_subscribe(lp, "host.ev", on_host_ev, &p, NULL));
    host_child hc = host_fork(host_body, 0);
    REQUIRE(hc.pid > 0);
    weft_id id = CHECK_ID(weft_adopt_child(lp, hc.pid, hc.rfd, pt_done, &p, pt_free, NULL));
    if (id == 0) {
        kill(hc.pid, SIGKILL);
        waitpid(hc.pid, NULL, 0);
        close(hc.rfd);
    }
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(5000)), "done never ran");
    CHECK_MSG(p.status == 9, "status %d (%s)", p.status, p.err);
    CHECK_MSG(p.len == 13 && memcmp(p.head, "from the host", 13) == 0, "result \"%.*s\"", (int)p.len, p.head);
    CHECK_EQ(p.events_at_done, 3);
    CHECK(p.done_id == id);
    CHECK(pthread_equal(p.done_thread, pthread_self()));
    CHECK_EQ(p.kids_at_done.all, 0);
    CHECK(pid_gone(hc.pid));
    WAIT_FREED(p);
    CHECK_EQ(p.free_pid, getpid());
    CHECK_OK(weft_cancel(lp, sub));
    weft_loop_free(lp);
    HYG_END(h); /* the read end was closed by weft */
}

/* A child that finished (a zombie) before the parent adopted it: its output, waiting in
 * the pipe, still arrives. */
TEST(host_forked_child_that_exited_before_adoption) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ptask p;
    pt_init(&p, NULL);
    host_child hc = host_fork(host_body, 0);
    REQUIRE(hc.pid > 0);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    CHECK(waitid(P_PID, (id_t)hc.pid, &si, WEXITED | WNOWAIT) == 0); /* exited, not reaped */
    CHECK_ID(weft_adopt_child(lp, hc.pid, hc.rfd, pt_done, &p, pt_free, NULL));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(5000)), "done never ran");
    CHECK_MSG(p.status == 9, "status %d (%s)", p.status, p.err);
    CHECK_MSG(p.len == 13 && memcmp(p.head, "from the host", 13) == 0, "result \"%.*s\"", (int)p.len, p.head);
    CHECK(pid_gone(hc.pid));
    WAIT_FREED(p);
    weft_loop_free(lp);
    HYG_END(h);
}

/* Raw bytes that break the protocol (an unknown frame kind), then a long sleep. */
static int malformed_body(int wfd, int arg) {
    static const unsigned char junk[] = {1, 0, 0, 0, 'X', 'z'};
    if (arg == 1) {
        /* a good 'W' frame first */
        static const unsigned char good[] = {2, 0, 0, 0, 'W', 'o', 'k'};
        if (write(wfd, good, sizeof good) != (ssize_t)sizeof good) return 2;
    }
    if (write(wfd, junk, sizeof junk) != (ssize_t)sizeof junk) return 1;
    sleep_ms(5000);
    return 0;
}

/* A host-forked child that writes a malformed frame: it is killed, and done gets
 * CRASHED with "protocol" in weft_last_error, at once (not after the child's sleep). */
TEST(host_forked_child_breaking_the_protocol_is_crashed) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    for (int variant = 0; variant < 2; variant++) {
        ptask p;
        pt_init(&p, NULL);
        host_child hc = host_fork(malformed_body, variant);
        REQUIRE(hc.pid > 0);
        uint64_t t0 = now_ns();
        CHECK_ID(weft_adopt_child(lp, hc.pid, hc.rfd, pt_done, &p, pt_free, NULL));
        CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(3000)), "done never ran");
        double after = pt_done_after_ms(&p, t0);
        CHECK_RC(p.status, WEFT_ERR_CRASHED);
        CHECK(p.result_null);
        CHECK_MSG(strstr(p.err, "protocol") != NULL, "weft_last_error inside done: \"%s\"", p.err);
        CHECK_MSG(after < (double)h_slack_ms(1000), "done came %.1f ms after the adoption", after);
        CHECK_MSG(pid_gone(hc.pid), "the child %d was not killed and reaped", (int)hc.pid);
        WAIT_FREED(p);
    }
    weft_loop_free(lp);
    HYG_END(h);
}

/* options.timeout_ms applies to an adopted child: done(TIMEOUT) at the deadline, and
 * the child is killed and reaped; so does weft_cancel (done(CANCELLED)). */
TEST(adopted_child_timeout_and_cancel_kill_it) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ptask p;
    pt_init(&p, NULL);
    host_child hc = host_fork(host_sleeper_body, 5000);
    REQUIRE(hc.pid > 0);
    uint64_t timeout = (uint64_t)h_scale(100, 500);
    weft_spawn_options o = proc_opts(timeout, 0);
    uint64_t t0 = now_ns();
    CHECK_ID(weft_adopt_child(lp, hc.pid, hc.rfd, pt_done, &p, pt_free, &o));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(3000)), "done never ran");
    double after = pt_done_after_ms(&p, t0);
    CHECK_RC(p.status, WEFT_ERR_TIMEOUT);
    CHECK(p.result_null);
    CHECK_MSG(after >= (double)timeout - 1 && after < (double)timeout + (double)h_slack_ms(200),
              "done came %.1f ms after the adoption (timeout %" PRIu64 " ms)", after, timeout);
    CHECK_MSG(pid_gone(hc.pid), "the child %d was not killed and reaped", (int)hc.pid);
    WAIT_FREED(p);
    /* and weft_cancel: CANCELLED, the child killed and reaped */
    ptask q;
    pt_init(&q, NULL);
    hc = host_fork(host_sleeper_body, 5000);
    REQUIRE(hc.pid > 0);
    weft_id id = CHECK_ID(weft_adopt_child(lp, hc.pid, hc.rfd, pt_done, &q, pt_free, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    t0 = now_ns();
    CHECK_OK(weft_cancel(lp, id));
    CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
    CHECK_MSG(run_until(lp, &q.dones, 1, h_slack_ms(3000)), "done never ran");
    after = pt_done_after_ms(&q, t0);
    CHECK_RC(q.status, WEFT_ERR_CANCELLED);
    CHECK_MSG(after < (double)h_slack_ms(200), "done came %.1f ms after the cancel", after);
    CHECK_MSG(pid_gone(hc.pid), "the child %d was not killed and reaped", (int)hc.pid);
    WAIT_FREED(q);
    weft_loop_free(lp);
    HYG_END(h);
}
