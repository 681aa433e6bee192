/* The post queue's edges under load (src/inbox/queue.rs): producers crossing block
 * boundaries together, cancellers walking the blocks while the loop reads through them
 * and frees them, and a loop freed with records still queued across several blocks. */
#include "harness.h"

#include <sched.h>

enum { PRODUCERS = 4, CANCELLERS = 2 };

typedef struct {
    track t;
    int producer;
    long rank;
} qpost;

typedef struct {
    weft_loop *lp;
    qpost *posts;          /* PRODUCERS x per_producer, producer-major */
    _Atomic weft_id *ids;  /* published by the producers for the cancellers */
    _Atomic int *rcs;      /* each post's cancel result, or 1: not tried */
    long per_producer;
    long next[PRODUCERS];  /* the rank each producer's next delivered post must have */
    _Atomic long out_of_order;
    weft_id keepalive;
} qstate;

static qstate *qs;

static void qpost_cb(weft_loop *lp, weft_id id, void *ud) {
    qpost *p = (qpost *)ud;
    track_note_call(&p->t, lp, id);
    /* FIFO per producer among the posts that ran (cancelled ones are skipped) */
    if (p->rank < qs->next[p->producer]) atomic_fetch_add(&qs->out_of_order, 1);
    qs->next[p->producer] = p->rank + 1;
}

static void qpost_free(void *ud) {
    qpost *p = (qpost *)ud;
    atomic_fetch_add(&p->t.frees, 1);
}

typedef struct {
    int index;
} worker;

static void *producer_thread(void *arg) {
    int k = ((worker *)arg)->index;
    for (long i = 0; i < qs->per_producer; i++) {
        long at = k * qs->per_producer + i;
        weft_id id = weft_post(qs->lp, qpost_cb, &qs->posts[at], qpost_free);
        CHECK(id != 0);
        atomic_store(&qs->ids[at], id);
    }
    return NULL;
}

/* Cancels every third post of every producer as soon as its id is published: some are
 * still queued (OK), some already ran or are running (NOT_FOUND). */
static void *canceller_thread(void *arg) {
    int c = ((worker *)arg)->index;
    for (long i = c; i < qs->per_producer; i += 3 * CANCELLERS) {
        for (int k = 0; k < PRODUCERS; k++) {
            long at = k * qs->per_producer + i;
            weft_id id;
            while ((id = atomic_load(&qs->ids[at])) == 0) sched_yield();
            atomic_store(&qs->rcs[at], weft_cancel(qs->lp, id));
        }
    }
    return NULL;
}

static void stop_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id, (void)ud;
    CHECK_OK(weft_cancel(lp, qs->keepalive));
}

TEST(producers_and_cancellers_race_the_loop_across_blocks) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    qs = calloc(1, sizeof *qs);
    qs->lp = lp;
    qs->per_producer = h_scale(100000, 5000);
    long total = PRODUCERS * qs->per_producer;
    qs->posts = calloc((size_t)total, sizeof *qs->posts);
    qs->ids = calloc((size_t)total, sizeof *qs->ids);
    qs->rcs = calloc((size_t)total, sizeof *qs->rcs);
    for (long at = 0; at < total; at++) {
        qs->posts[at].producer = (int)(at / qs->per_producer);
        qs->posts[at].rank = at % qs->per_producer;
        atomic_store(&qs->rcs[at], 1);
    }
    qs->keepalive = CHECK_ID(weft_subscribe(lp, "keepalive", never_event_cb, NULL, NULL));
    bg_loop bg;
    bg_start(&bg, lp, WEFT_RUN_DEFAULT); /* the loop runs while they post and cancel */
    worker w[PRODUCERS + CANCELLERS];
    pthread_t th[PRODUCERS + CANCELLERS];
    for (int i = 0; i < PRODUCERS + CANCELLERS; i++) {
        w[i].index = i < PRODUCERS ? i : i - PRODUCERS;
        pthread_create(&th[i], NULL, i < PRODUCERS ? producer_thread : canceller_thread, &w[i]);
    }
    for (int i = 0; i < PRODUCERS + CANCELLERS; i++) pthread_join(th[i], NULL);
    /* Everything is posted and every cancel made: once the loop has settled them all,
     * a last post stops it. */
    CHECK_ID(weft_post(lp, stop_cb, NULL, NULL));
    bg_join(&bg, h_slack_ms(30000), "the stop post cancels the keepalive");
    CHECK_OK(bg.rc);
    long bad = 0, cancelled = 0;
    for (long at = 0; at < total; at++) {
        qpost *p = &qs->posts[at];
        int rc = atomic_load(&qs->rcs[at]), calls = atomic_load(&p->t.calls);
        bool ok = rc == 1 ? calls == 1 : (rc == WEFT_OK && calls == 0) || (rc == WEFT_ERR_NOT_FOUND && calls == 1);
        cancelled += rc == WEFT_OK;
        if (!ok || atomic_load(&p->t.frees) != 1) {
            if (bad++ < 5)
                h_fail(__FILE__, __LINE__, "post %ld: cancel rc %d, calls %d, frees %d", at, rc, calls,
                       atomic_load(&p->t.frees));
        }
    }
    fprintf(stderr, "    %ld posts, %ld cancelled while queued\n", total, cancelled);
    CHECK_EQ(bad, 0);
    CHECK_EQ(atomic_load(&qs->out_of_order), 0);
    weft_loop_free(lp);
    free(qs->posts);
    free((void *)qs->ids);
    free((void *)qs->rcs);
    free(qs);
}

/* Posts left queued across many blocks, some cancelled in the middle, when the loop is
 * freed without running: each free_fn runs once. */
TEST(a_loop_freed_with_blocks_of_posts_queued_frees_each_once) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    long n = h_scale(50000, 5000);
    track *t = calloc((size_t)n, sizeof *t);
    weft_id *ids = calloc((size_t)n, sizeof *ids);
    for (long i = 0; i < n; i++) ids[i] = CHECK_ID(weft_post(lp, track_cb, &t[i], track_free));
    for (long i = 0; i < n; i += 7) CHECK_OK(weft_cancel(lp, ids[i]));
    for (long i = 0; i < n; i += 7) CHECK_RC(weft_cancel(lp, ids[i]), WEFT_ERR_NOT_FOUND);
    weft_loop_free(lp);
    long bad = 0;
    for (long i = 0; i < n; i++) bad += atomic_load(&t[i].calls) != 0 || atomic_load(&t[i].frees) != 1;
    CHECK_EQ(bad, 0);
    free(t);
    free(ids);
}

/* ---- cancels from a callback of the pass, across a block's end ------------------- */

typedef struct {
    weft_id self, earlier, victim;
    int rc_self, rc_earlier, rc_victim, rc_again;
    track *victim_track;
} slice_canceller;

static void slice_cancel_cb(weft_loop *lp, weft_id id, void *ud) {
    slice_canceller *c = (slice_canceller *)ud;
    CHECK_EQ(id, c->self);
    c->rc_self = weft_cancel(lp, c->self);       /* running: it has started */
    c->rc_earlier = weft_cancel(lp, c->earlier); /* ran in an earlier pass */
    c->rc_victim = weft_cancel(lp, c->victim);   /* taken with this one, not yet run */
    /* its free_fn has run already (at the cancel), and a second cancel finds nothing */
    CHECK_EQ(atomic_load(&c->victim_track->frees), 1);
    c->rc_again = weft_cancel(lp, c->victim);
}

/* The queue's blocks hold 1023 posts: 600 run first, then a canceller and 900 more are
 * taken in one slice that crosses into the next block; the canceller (on the loop
 * thread) takes back a post of that slice in the next block, which is then skipped and
 * freed once; its own id and an earlier post's are not found. */
TEST(a_callback_cancels_a_post_of_its_own_slice_across_a_block_end) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    enum { FIRST = 600, LATER = 900, VICTIM = 800 };
    static track first[FIRST], later[LATER];
    slice_canceller c = {0};
    for (int i = 0; i < FIRST; i++) {
        track_init(&first[i]);
        weft_id id = CHECK_ID(weft_post(lp, track_cb, &first[i], track_free));
        if (i == FIRST / 2) c.earlier = id;
    }
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    for (int i = 0; i < FIRST; i++) CHECK_EQ(atomic_load(&first[i].calls), 1);
    c.self = CHECK_ID(weft_post(lp, slice_cancel_cb, &c, NULL));
    for (int i = 0; i < LATER; i++) {
        track_init(&later[i]);
        weft_id id = CHECK_ID(weft_post(lp, track_cb, &later[i], track_free));
        if (i == VICTIM) c.victim = id;
    }
    c.victim_track = &later[VICTIM];
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(c.rc_self, WEFT_ERR_NOT_FOUND);
    CHECK_EQ(c.rc_earlier, WEFT_ERR_NOT_FOUND);
    CHECK_EQ(c.rc_victim, WEFT_OK);
    CHECK_EQ(c.rc_again, WEFT_ERR_NOT_FOUND);
    for (int i = 0; i < LATER; i++) {
        CHECK_EQ(atomic_load(&later[i].calls), i == VICTIM ? 0 : 1);
        CHECK_EQ(atomic_load(&later[i].frees), 1);
    }
    CHECK_RC(weft_cancel(lp, c.victim), WEFT_ERR_NOT_FOUND);
    weft_loop_free(lp);
    for (int i = 0; i < LATER; i++) CHECK_EQ(atomic_load(&later[i].frees), 1);
    for (int i = 0; i < FIRST; i++) CHECK_EQ(atomic_load(&first[i].frees), 1);
}

typedef struct {
    weft_id self, first_next, later_next;
    int rc_first, rc_later;
    track *reposted;
    long reposts;
} edge_canceller;

/* Runs from the last slot of a block: cancels posts in the next block (the loop has
 * moved on to it, the block it read through is retired after this call), then posts
 * more than a block's worth itself, so fresh blocks are needed while this one is held. */
static void edge_cancel_cb(weft_loop *lp, weft_id id, void *ud) {
    edge_canceller *c = (edge_canceller *)ud;
    CHECK_EQ(id, c->self);
    c->rc_first = weft_cancel(lp, c->first_next);
    c->rc_later = weft_cancel(lp, c->later_next);
    for (long i = 0; i < c->reposts; i++) {
        track_init(&c->reposted[i]);
        CHECK_ID(weft_post(lp, track_cb, &c->reposted[i], track_free));
    }
}

/* A block holds 1023 posts: the 1023rd of a fresh loop is its first block's last. Its
 * callback cancels the next block's first post and a later one (both skipped, each
 * freed once), and posts 2 blocks' worth more, which run once each in later passes. */
TEST(the_last_post_of_a_block_cancels_into_the_next_and_posts_more) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    enum { BEFORE = 1022, AFTER = 300, FIRST_NEXT = 0, LATER_NEXT = 200, REPOSTS = 2100 };
    static track before[BEFORE], after[AFTER], reposted[REPOSTS];
    edge_canceller c = { .reposted = reposted, .reposts = REPOSTS };
    for (int i = 0; i < BEFORE; i++) {
        track_init(&before[i]);
        CHECK_ID(weft_post(lp, track_cb, &before[i], track_free));
    }
    c.self = CHECK_ID(weft_post(lp, edge_cancel_cb, &c, NULL));
    for (int i = 0; i < AFTER; i++) {
        track_init(&after[i]);
        weft_id id = CHECK_ID(weft_post(lp, track_cb, &after[i], track_free));
        if (i == FIRST_NEXT) c.first_next = id;
        if (i == LATER_NEXT) c.later_next = id;
    }
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(c.rc_first, WEFT_OK);
    CHECK_EQ(c.rc_later, WEFT_OK);
    for (int i = 0; i < BEFORE; i++) CHECK_EQ(atomic_load(&before[i].calls), 1);
    for (int i = 0; i < AFTER; i++) {
        int cancelled = i == FIRST_NEXT || i == LATER_NEXT;
        CHECK_EQ(atomic_load(&after[i].calls), cancelled ? 0 : 1);
        CHECK_EQ(atomic_load(&after[i].frees), 1);
    }
    for (int pass = 0; pass < 10; pass++) CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    for (int i = 0; i < REPOSTS; i++) {
        CHECK_EQ(atomic_load(&reposted[i].calls), 1);
        CHECK_EQ(atomic_load(&reposted[i].frees), 1);
    }
    weft_loop_free(lp);
    for (int i = 0; i < BEFORE; i++) CHECK_EQ(atomic_load(&before[i].frees), 1);
    for (int i = 0; i < REPOSTS; i++) CHECK_EQ(atomic_load(&reposted[i].frees), 1);
}
