/* Registration ids are checked, never trusted: stale, cancelled, finished, forged,
 * foreign and 0 ids all give WEFT_ERR_NOT_FOUND. */
#include "harness.h"

#include <signal.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

TEST(zero_id_is_never_found) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    CHECK_RC(weft_cancel(lp, 0), WEFT_ERR_NOT_FOUND);
    CHECK_ERR_HAS("weft_cancel: id 0x0");
    CHECK_RC(weft_watch_fd_modify(lp, 0, WEFT_READABLE), WEFT_ERR_NOT_FOUND);
    CHECK_ID(weft_subscribe(lp, "a", never_event_cb, NULL, NULL));
    CHECK_ID(weft_post(lp, never_cb, NULL, NULL));
    CHECK_RC(weft_cancel(lp, 0), WEFT_ERR_NOT_FOUND);
    weft_loop_free(lp);
}

TEST(cancelled_ids_go_stale_for_every_kind) {
    weft_loop *lp;
    int fds[2];
    REQUIRE(loop_and_pipe(&lp, fds));
    track t[6];
    for (int i = 0; i < 6; i++) track_init(&t[i]);
    weft_id ids[6] = {
        CHECK_ID(weft_post(lp, track_cb, &t[0], track_free)),
        CHECK_ID(weft_timer_after(lp, 10000, track_cb, &t[1], track_free)),
        CHECK_ID(weft_timer_every(lp, 10000, track_cb, &t[2], track_free)),
        CHECK_ID(weft_watch_fd(lp, fds[0], WEFT_READABLE, track_fd_cb, &t[3], track_free)),
        CHECK_ID(weft_watch_signal(lp, SIGUSR2, track_signal_cb, &t[4], track_free)),
        CHECK_ID(weft_subscribe(lp, "a.*", track_event_cb, &t[5], track_free)),
    };
    /* All different, and never below WEFT_ID_MIN (bindings keep the ids below for their
     * own). */
    for (int i = 0; i < 6; i++) {
        CHECK_MSG(ids[i] >= WEFT_ID_MIN, "id %d is %llx", i, (unsigned long long)ids[i]);
        for (int j = i + 1; j < 6; j++) CHECK_MSG(ids[i] != ids[j], "ids %d and %d equal", i, j);
    }
    for (int i = 0; i < 6; i++) {
        CHECK_OK(weft_cancel(lp, ids[i]));
        CHECK_RC(weft_cancel(lp, ids[i]), WEFT_ERR_NOT_FOUND); /* double cancel */
        CHECK_RC(weft_cancel(lp, ids[i]), WEFT_ERR_NOT_FOUND);
    }
    CHECK_RC(weft_watch_fd_modify(lp, ids[3], WEFT_WRITABLE), WEFT_ERR_NOT_FOUND);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    for (int i = 0; i < 6; i++) {
        CHECK_EQ(atomic_load(&t[i].calls), 0);
        CHECK_EQ(atomic_load(&t[i].frees), 1);
    }
    /* A stale id stays stale when its slot is reused by a new registration. */
    track u;
    track_init(&u);
    weft_id again = CHECK_ID(weft_timer_after(lp, 10000, track_cb, &u, track_free));
    for (int i = 0; i < 6; i++) {
        CHECK(again != ids[i]);
        CHECK_RC(weft_cancel(lp, ids[i]), WEFT_ERR_NOT_FOUND);
    }
    CHECK_EQ(atomic_load(&u.frees), 0);
    CHECK_OK(weft_cancel(lp, again));
    CHECK_EQ(atomic_load(&u.frees), 1);
    free_loop_and_pair(lp, fds);
}

TEST(finished_ids_go_stale) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track post, timer;
    track_init(&post);
    track_init(&timer);
    weft_id p = CHECK_ID(weft_post(lp, track_cb, &post, track_free));
    weft_id t = CHECK_ID(weft_timer_after(lp, 0, track_cb, &timer, track_free));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&post.calls), 1);
    CHECK_EQ(atomic_load(&timer.calls), 1);
    CHECK_EQ(post.last_id, p); /* the callback is told its own id */
    CHECK_EQ(timer.last_id, t);
    CHECK_RC(weft_cancel(lp, p), WEFT_ERR_NOT_FOUND);
    CHECK_RC(weft_cancel(lp, t), WEFT_ERR_NOT_FOUND);
    CHECK_EQ(atomic_load(&post.frees), 1);
    CHECK_EQ(atomic_load(&timer.frees), 1);
    weft_loop_free(lp);
}

/* Random 64-bit values, and live ids with bits flipped, name nothing. */
TEST(forged_ids_are_not_found) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track t[3];
    for (int i = 0; i < 3; i++) track_init(&t[i]);
    weft_id live[3] = {
        CHECK_ID(weft_timer_after(lp, 100000, track_cb, &t[0], track_free)),
        CHECK_ID(weft_subscribe(lp, "x", track_event_cb, &t[1], track_free)),
        CHECK_ID(weft_post(lp, track_cb, &t[2], track_free)),
    };
    long n = h_scale(200000, 20000);
    for (long i = 0; i < n; i++) {
        weft_id forged = rng();
        if (forged == live[0] || forged == live[1] || forged == live[2]) continue;
        int rc = weft_cancel(lp, forged);
        if (rc != WEFT_ERR_NOT_FOUND) {
            h_fail(__FILE__, __LINE__, "weft_cancel(forged %#" PRIx64 ") = %d", forged, rc);
            break;
        }
        rc = weft_watch_fd_modify(lp, forged, 0);
        if (rc != WEFT_ERR_NOT_FOUND) {
            h_fail(__FILE__, __LINE__, "weft_watch_fd_modify(forged %#" PRIx64 ") = %d", forged, rc);
            break;
        }
    }
    /* Every single-bit change of a live id. */
    for (int k = 0; k < 3; k++) {
        for (int bit = 0; bit < 64; bit++) {
            weft_id forged = live[k] ^ (1ull << bit);
            if (forged == live[0] || forged == live[1] || forged == live[2]) continue;
            CHECK_MSG(weft_cancel(lp, forged) == WEFT_ERR_NOT_FOUND,
                      "live id %#" PRIx64 " with bit %d flipped was accepted", live[k], bit);
        }
        weft_id next = live[k] + 1;
        if (next != live[0] && next != live[1] && next != live[2])
            CHECK_MSG(weft_cancel(lp, next) == WEFT_ERR_NOT_FOUND, "id + 1 accepted");
        CHECK_MSG(weft_cancel(lp, UINT64_MAX) == WEFT_ERR_NOT_FOUND, "UINT64_MAX accepted");
    }
    /* The live ones were not disturbed. */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&t[2].calls), 1);
    for (int i = 0; i < 3; i++) CHECK_EQ(atomic_load(&t[i].frees), i == 2 ? 1 : 0);
    CHECK_OK(weft_cancel(lp, live[0]));
    CHECK_OK(weft_cancel(lp, live[1]));
    for (int i = 0; i < 3; i++) CHECK_EQ(atomic_load(&t[i].frees), 1);
    weft_loop_free(lp);
}

TEST(another_loops_ids_are_not_found) {
    weft_loop *a = weft_loop_new();
    weft_loop *b = weft_loop_new();
    REQUIRE(a != NULL && b != NULL);
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    track ta[4], tb[4];
    for (int i = 0; i < 4; i++) track_init(&ta[i]), track_init(&tb[i]);
    /* The same registrations in the same order in both loops. */
    weft_id ia[4] = {
        CHECK_ID(weft_timer_after(a, 100000, track_cb, &ta[0], track_free)),
        CHECK_ID(weft_watch_fd(a, fds[0], WEFT_READABLE, track_fd_cb, &ta[1], track_free)),
        CHECK_ID(weft_subscribe(a, "x", track_event_cb, &ta[2], track_free)),
        CHECK_ID(weft_post(a, track_cb, &ta[3], track_free)),
    };
    weft_id ib[4] = {
        CHECK_ID(weft_timer_after(b, 100000, track_cb, &tb[0], track_free)),
        CHECK_ID(weft_watch_fd(b, fds[0], WEFT_READABLE, track_fd_cb, &tb[1], track_free)),
        CHECK_ID(weft_subscribe(b, "x", track_event_cb, &tb[2], track_free)),
        CHECK_ID(weft_post(b, track_cb, &tb[3], track_free)),
    };
    for (int i = 0; i < 4; i++) {
        CHECK_MSG(ia[i] != ib[i], "registration %d has the same id in both loops", i);
        CHECK_RC(weft_cancel(a, ib[i]), WEFT_ERR_NOT_FOUND);
        CHECK_RC(weft_cancel(b, ia[i]), WEFT_ERR_NOT_FOUND);
    }
    CHECK_RC(weft_watch_fd_modify(a, ib[1], WEFT_WRITABLE), WEFT_ERR_NOT_FOUND);
    for (int i = 0; i < 4; i++) CHECK_EQ(atomic_load(&ta[i].frees) + atomic_load(&tb[i].frees), 0);
    weft_loop_free(a);
    weft_loop_free(b);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(atomic_load(&ta[i].frees), 1);
        CHECK_EQ(atomic_load(&tb[i].frees), 1);
        CHECK_EQ(atomic_load(&ta[i].calls) + atomic_load(&tb[i].calls), 0);
    }
    close(fds[0]);
    close(fds[1]);
}

/* "Ids are checked, never trusted: a ... foreign id gives WEFT_ERR_NOT_FOUND". Loops
 * are told apart by a tag in the id; this holds however many loops the process has
 * made before, so two live loops never hand out the same id. */
TEST(ids_of_live_loops_never_coincide_however_many_loops_were_made) {
    weft_loop *a = weft_loop_new();
    REQUIRE(a != NULL);
    track ta;
    track_init(&ta);
    weft_id ia = CHECK_ID(weft_timer_after(a, 100000, track_cb, &ta, track_free));
    int collided_at = -1;
    for (int i = 0; i < 5000 && collided_at < 0; i++) {
        weft_loop *b = weft_loop_new();
        if (b == NULL) {
            h_fail(__FILE__, __LINE__, "weft_loop_new failed at %d", i);
            break;
        }
        track tb;
        track_init(&tb);
        weft_id ib = weft_timer_after(b, 100000, track_cb, &tb, track_free);
        if (ib == ia) {
            collided_at = i;
            /* b cancelling "its" timer must not reach a's */
            CHECK_RC(weft_cancel(a, ib), WEFT_ERR_NOT_FOUND);
            CHECK_EQ(atomic_load(&ta.frees), 0);
        }
        weft_loop_free(b);
    }
    CHECK_MSG(collided_at < 0,
              "loop number %d made after loop a gave a live timer the same id %#" PRIx64
              " as a's live timer",
              collided_at + 1, ia);
    weft_loop_free(a);
    CHECK_EQ(atomic_load(&ta.frees), 1);
}

/* A post's id is NOT_FOUND once it has started (cancel from inside it, or after). */
static void cancel_self_post(weft_loop *lp, weft_id id, void *ud) {
    track *t = (track *)ud;
    track_note_call(t, lp, id);
    CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
}

TEST(post_id_is_not_found_once_started) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track t;
    track_init(&t);
    weft_id id = CHECK_ID(weft_post(lp, cancel_self_post, &t, track_free));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&t.calls), 1);
    CHECK_EQ(atomic_load(&t.frees), 1);
    CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
    weft_loop_free(lp);
}

/* watch_fd_modify with an id that is live but not an fd watch: INVALID. */
TEST(watch_fd_modify_on_a_non_watch_id_is_invalid) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track t;
    track_init(&t);
    weft_id timer = CHECK_ID(weft_timer_after(lp, 100000, track_cb, &t, track_free));
    weft_id sub = CHECK_ID(weft_subscribe(lp, "a", track_event_cb, &t, track_free));
    CHECK_RC(weft_watch_fd_modify(lp, timer, WEFT_READABLE), WEFT_ERR_INVALID);
    CHECK_ERR_HAS("is not an fd watch");
    CHECK_RC(weft_watch_fd_modify(lp, sub, 0), WEFT_ERR_INVALID);
    weft_id post = CHECK_ID(weft_post(lp, track_cb, &t, track_free));
    int rc = weft_watch_fd_modify(lp, post, 0);
    CHECK_MSG(rc == WEFT_ERR_INVALID || rc == WEFT_ERR_NOT_FOUND,
              "weft_watch_fd_modify(post id) = %d", rc);
    CHECK_EQ(atomic_load(&t.frees), 0);
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&t.frees), 3);
}
