/* Topics: patterns, copied payloads, ordering under threads, subscribers that change
 * the subscriptions from their callbacks, bad patterns and topics. */
#include "harness.h"

#include <stdint.h>

/* Records every event a subscriber sees. */
#define LOG_MAX 64
typedef struct {
    int n;
    char topics[LOG_MAX][32];
    char payloads[LOG_MAX][32];
    size_t lens[LOG_MAX];
    weft_id subs[LOG_MAX];
    _Atomic int frees;
} ev_log;

static void log_cb(weft_loop *lp, weft_id sub, const char *topic, const void *payload, size_t len,
                   void *ud) {
    (void)lp;
    ev_log *l = (ev_log *)ud;
    if (l->n < LOG_MAX) {
        snprintf(l->topics[l->n], sizeof l->topics[0], "%s", topic);
        size_t n = len < sizeof l->payloads[0] - 1 ? len : sizeof l->payloads[0] - 1;
        if (n) memcpy(l->payloads[l->n], payload, n);
        l->payloads[l->n][n] = '\0';
        l->lens[l->n] = len;
        l->subs[l->n] = sub;
    }
    l->n++;
}
static void log_free(void *ud) { atomic_fetch_add(&((ev_log *)ud)->frees, 1); }
static void log_init(ev_log *l) { memset((void *)l, 0, sizeof *l); }

TEST(patterns_exact_prefix_and_all) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ev_log exact, prefix, all, deep, none;
    log_init(&exact);
    log_init(&prefix);
    log_init(&all);
    log_init(&deep);
    log_init(&none);
    weft_id s1 = CHECK_ID(weft_subscribe(lp, "job.done", log_cb, &exact, log_free));
    weft_id s2 = CHECK_ID(weft_subscribe(lp, "job.*", log_cb, &prefix, log_free));
    weft_id s3 = CHECK_ID(weft_subscribe(lp, "*", log_cb, &all, log_free));
    weft_id s4 = CHECK_ID(weft_subscribe(lp, "job.a.*", log_cb, &deep, log_free));
    weft_id s5 = CHECK_ID(weft_subscribe(lp, "nothing.here", log_cb, &none, log_free));
    const char *topics[] = {"job.done", "job", "jobs.x", "job.a.b", "log.ready", "job.done.x", "j"};
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++)
        CHECK_OK(weft_emit(lp, topics[i], topics[i], strlen(topics[i])));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(exact.n, 1);
    CHECK(strcmp(exact.topics[0], "job.done") == 0);
    CHECK_EQ(exact.subs[0], s1);
    /* "job.*" matches "job.done", "job.a.b", "job.done.x"; not "job", not "jobs.x" */
    CHECK_EQ(prefix.n, 3);
    CHECK(strcmp(prefix.topics[0], "job.done") == 0);
    CHECK(strcmp(prefix.topics[1], "job.a.b") == 0);
    CHECK(strcmp(prefix.topics[2], "job.done.x") == 0);
    CHECK_EQ(prefix.subs[0], s2);
    CHECK_EQ(all.n, 7);
    for (int i = 0; i < all.n && i < 7; i++) {
        CHECK(strcmp(all.topics[i], topics[i]) == 0); /* emit order */
        CHECK(strcmp(all.payloads[i], topics[i]) == 0);
        CHECK_EQ(all.lens[i], strlen(topics[i]));
    }
    CHECK_EQ(deep.n, 1);
    CHECK(strcmp(deep.topics[0], "job.a.b") == 0);
    CHECK_EQ(none.n, 0);
    weft_id subs[] = {s1, s2, s3, s4, s5};
    for (int i = 0; i < 5; i++) CHECK_OK(weft_cancel(lp, subs[i]));
    CHECK_EQ(exact.frees + prefix.frees + all.frees + deep.frees + none.frees, 5);
    weft_loop_free(lp);
}

/* Several subscribers with the same pattern each see each event once. */
TEST(every_matching_subscriber_sees_each_event_once) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ev_log l[4];
    for (int i = 0; i < 4; i++) log_init(&l[i]);
    CHECK_ID(weft_subscribe(lp, "a.b", log_cb, &l[0], log_free));
    CHECK_ID(weft_subscribe(lp, "a.b", log_cb, &l[1], log_free));
    CHECK_ID(weft_subscribe(lp, "a.*", log_cb, &l[2], log_free));
    CHECK_ID(weft_subscribe(lp, "a.*", log_cb, &l[3], log_free));
    CHECK_OK(weft_emit(lp, "a.b", "1", 1));
    CHECK_OK(weft_emit(lp, "a.b", "2", 1));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(l[i].n, 2);
        CHECK(strcmp(l[i].payloads[0], "1") == 0 && strcmp(l[i].payloads[1], "2") == 0);
    }
    weft_loop_free(lp);
    for (int i = 0; i < 4; i++) CHECK_EQ(atomic_load(&l[i].frees), 1);
}

/* The payload (and topic) are copied by emit: changing the buffers afterwards does not
 * change what subscribers see. */
TEST(payload_and_topic_are_copied) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ev_log l;
    log_init(&l);
    CHECK_ID(weft_subscribe(lp, "*", log_cb, &l, log_free));
    char topic[16] = "t.one";
    char payload[16] = "original";
    CHECK_OK(weft_emit(lp, topic, payload, 8));
    strcpy(topic, "t.two");
    strcpy(payload, "CHANGED!");
    CHECK_OK(weft_emit(lp, topic, payload, 8));
    memset(topic, 0, sizeof topic);
    memset(payload, 'X', sizeof payload);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(l.n, 2);
    CHECK(strcmp(l.topics[0], "t.one") == 0);
    CHECK(strcmp(l.payloads[0], "original") == 0);
    CHECK(strcmp(l.topics[1], "t.two") == 0);
    CHECK(strcmp(l.payloads[1], "CHANGED!") == 0);
    weft_loop_free(lp);
}

/* Binary payloads (NUL bytes included) arrive byte for byte; big ones too; the topic
 * is NUL-terminated. */
typedef struct {
    size_t len;
    uint32_t sum;
    int calls;
    int topic_ok;
} bin_check;

static void bin_cb(weft_loop *lp, weft_id sub, const char *topic, const void *payload, size_t len,
                   void *ud) {
    (void)lp, (void)sub;
    bin_check *b = (bin_check *)ud;
    b->calls++;
    b->len = len;
    b->topic_ok = strcmp(topic, "bin") == 0;
    uint32_t s = 0;
    for (size_t i = 0; i < len; i++) s = s * 31 + ((const unsigned char *)payload)[i];
    b->sum = s;
}

TEST(binary_and_large_payloads_arrive_intact) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    bin_check b = {0, 0, 0, 0};
    CHECK_ID(weft_subscribe(lp, "bin", bin_cb, &b, NULL));
    size_t sizes[] = {1, 2, 255, 4096, 1 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        unsigned char *buf = malloc(sizes[k]);
        uint32_t s = 0;
        for (size_t i = 0; i < sizes[k]; i++) {
            buf[i] = (unsigned char)(i * 7 % 256); /* includes NUL bytes */
            s = s * 31 + buf[i];
        }
        CHECK_OK(weft_emit(lp, "bin", buf, sizes[k]));
        free(buf);
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        CHECK_EQ(b.calls, (int)k + 1);
        CHECK_EQ(b.len, sizes[k]);
        CHECK_EQ(b.sum, s);
        CHECK(b.topic_ok);
    }
    weft_loop_free(lp);
}

/* len 0 with a NULL payload is fine; NULL with len > 0 is WEFT_ERR_NULL; a length
 * above PTRDIFF_MAX is WEFT_ERR_INVALID (and the payload is not read). */
TEST(payload_null_and_length_rules) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ev_log l;
    log_init(&l);
    CHECK_ID(weft_subscribe(lp, "*", log_cb, &l, log_free));
    CHECK_OK(weft_emit(lp, "empty", NULL, 0));
    CHECK_OK(weft_emit(lp, "empty2", "ignored", 0));
    CHECK_RC(weft_emit(lp, "x", NULL, 1), WEFT_ERR_NULL);
    CHECK_ERR_HAS("weft_emit: payload is NULL with len 1");
    CHECK_RC(weft_emit(lp, "x", NULL, SIZE_MAX), WEFT_ERR_NULL);
    char one = 'a';
    CHECK_RC(weft_emit(lp, "x", &one, SIZE_MAX), WEFT_ERR_INVALID);
    CHECK_ERR_HAS("weft_emit: len 18446744073709551615");
    CHECK_RC(weft_emit(lp, "x", &one, (size_t)PTRDIFF_MAX + 1), WEFT_ERR_INVALID);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(l.n, 2); /* only the two good ones */
    CHECK(strcmp(l.topics[0], "empty") == 0);
    CHECK_EQ(l.lens[0], 0);
    CHECK(strcmp(l.topics[1], "empty2") == 0);
    CHECK_EQ(l.lens[1], 0);
    weft_loop_free(lp);
}

TEST(bad_patterns_and_topics_are_invalid) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    const char *bad_patterns[] = {"", "a*", "*.b", ".*", "a.*.*", "a.b*", "job*", "**", "a.*b",
                                  "*a", "\xff\xfe", "a.\xc3"};
    for (size_t i = 0; i < sizeof bad_patterns / sizeof bad_patterns[0]; i++) {
        weft_id id = weft_subscribe(lp, bad_patterns[i], never_event_cb, NULL, never_free);
        CHECK_MSG(id == 0, "pattern \"%s\" was accepted", bad_patterns[i]);
        CHECK_ERR_HAS("weft_subscribe: pattern");
    }
    const char *bad_topics[] = {"", "a.*", "*", "a*b", "\xff", "x.\xc3"};
    for (size_t i = 0; i < sizeof bad_topics / sizeof bad_topics[0]; i++) {
        int rc = weft_emit(lp, bad_topics[i], "p", 1);
        CHECK_MSG(rc == WEFT_ERR_INVALID, "topic \"%s\": rc %d", bad_topics[i], rc);
        CHECK_ERR_HAS("weft_emit: topic");
    }
    /* good odd ones */
    ev_log l;
    log_init(&l);
    CHECK_ID(weft_subscribe(lp, "a", log_cb, &l, log_free));
    CHECK_ID(weft_subscribe(lp, "a.", log_cb, &l, log_free));
    CHECK_ID(weft_subscribe(lp, "ab.*", log_cb, &l, log_free));
    CHECK_ID(weft_subscribe(lp, "\xc3\xa9t\xc3\xa9.*", log_cb, &l, log_free)); /* UTF-8 */
    CHECK_OK(weft_emit(lp, "a", NULL, 0));
    CHECK_OK(weft_emit(lp, "a.", NULL, 0));
    CHECK_OK(weft_emit(lp, "\xc3\xa9t\xc3\xa9.x", NULL, 0));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(l.n, 3);
    CHECK(!weft_loop_run(lp, WEFT_RUN_NOWAIT));
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&l.frees), 4);
}

/* "Subscribers that exist when the event is delivered see it." */
TEST(subscribers_are_matched_at_delivery) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ev_log early, late;
    log_init(&early);
    log_init(&late);
    weft_id e = CHECK_ID(weft_subscribe(lp, "t", log_cb, &early, log_free));
    CHECK_OK(weft_emit(lp, "t", "1", 1));
    CHECK_ID(weft_subscribe(lp, "t", log_cb, &late, log_free)); /* after emit, before delivery */
    CHECK_OK(weft_cancel(lp, e));                                /* gone before delivery */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(early.n, 0);
    CHECK_EQ(late.n, 1);
    CHECK_EQ(atomic_load(&early.frees), 1);
    weft_loop_free(lp);
}

/* A subscriber that cancels itself inside its callback: OK, no more events (not even
 * ones already queued), freed once after the callback. */
typedef struct {
    int calls;
    int rc, rc_again;
    _Atomic int frees;
    int frees_in_cb;
} self_unsub;

static void self_unsub_cb(weft_loop *lp, weft_id sub, const char *t, const void *p, size_t n,
                          void *ud) {
    (void)t, (void)p, (void)n;
    self_unsub *s = (self_unsub *)ud;
    s->calls++;
    s->rc = weft_cancel(lp, sub);
    s->rc_again = weft_cancel(lp, sub);
    s->frees_in_cb = atomic_load(&s->frees);
}
static void self_unsub_free(void *ud) { atomic_fetch_add(&((self_unsub *)ud)->frees, 1); }

TEST(subscriber_cancels_itself_in_its_callback) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    self_unsub s = {0, -99, -99, 0, -1};
    CHECK_ID(weft_subscribe(lp, "t.*", self_unsub_cb, &s, self_unsub_free));
    ev_log other;
    log_init(&other);
    CHECK_ID(weft_subscribe(lp, "t.*", log_cb, &other, log_free));
    for (int i = 0; i < 5; i++) CHECK_OK(weft_emit(lp, "t.x", NULL, 0));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(s.calls, 1);
    CHECK_EQ(s.rc, WEFT_OK);
    CHECK_EQ(s.rc_again, WEFT_ERR_NOT_FOUND);
    CHECK_EQ(s.frees_in_cb, 0);
    CHECK_EQ(atomic_load(&s.frees), 1);
    CHECK_EQ(other.n, 5); /* the other subscriber is unaffected */
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&s.frees), 1);
}

/* A subscriber that subscribes and emits from its callback. The new subscription sees
 * later events; the emitted event is delivered in a later pass (no recursion). */
typedef struct {
    int calls;
    ev_log child;
    weft_id child_id;
} spawner;

static void spawner_cb(weft_loop *lp, weft_id sub, const char *topic, const void *p, size_t n,
                       void *ud) {
    (void)sub, (void)p, (void)n;
    spawner *s = (spawner *)ud;
    s->calls++;
    if (strcmp(topic, "start") == 0) {
        s->child_id = CHECK_ID(weft_subscribe(lp, "next.*", log_cb, &s->child, log_free));
        CHECK_OK(weft_emit(lp, "next.one", "from-cb", 7));
    }
}

TEST(subscriber_subscribes_and_emits_in_its_callback) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    spawner *s = calloc(1, sizeof *s);
    weft_id root = CHECK_ID(weft_subscribe(lp, "*", spawner_cb, s, NULL));
    CHECK_OK(weft_emit(lp, "start", NULL, 0));
    CHECK_OK(weft_emit(lp, "next.zero", "queued", 6)); /* queued before the new sub existed */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(s->calls, 2);
    /* the new subscription existed when "next.zero" was delivered */
    CHECK_EQ(s->child.n, 1);
    CHECK(strcmp(s->child.topics[0], "next.zero") == 0);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT)); /* the event emitted from the callback */
    CHECK_EQ(s->calls, 3);
    CHECK_EQ(s->child.n, 2);
    CHECK(strcmp(s->child.topics[1], "next.one") == 0);
    CHECK(strcmp(s->child.payloads[1], "from-cb") == 0);
    CHECK_OK(weft_cancel(lp, root));
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&s->child.frees), 1);
    free(s);
}

/* An endless emit chain (each callback emits again) makes one delivery per pass and
 * never starves the pass: NOWAIT returns. */
static void chain_emit_cb(weft_loop *lp, weft_id sub, const char *t, const void *p, size_t n,
                          void *ud) {
    (void)sub, (void)t, (void)p, (void)n;
    (*(int *)ud)++;
    CHECK_OK(weft_emit(lp, "chain", NULL, 0));
}

TEST(emit_from_a_callback_is_delivered_in_the_next_pass) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    int calls = 0;
    CHECK_ID(weft_subscribe(lp, "chain", chain_emit_cb, &calls, NULL));
    CHECK_OK(weft_emit(lp, "chain", NULL, 0));
    for (int i = 1; i <= 10; i++) {
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        CHECK_EQ(calls, i);
    }
    weft_loop_free(lp); /* with one event still queued */
}

/* 4 threads x 50k events while the loop runs: each subscriber sees each thread's events
 * in emit order, none dropped or merged. */
enum { EMITTERS = 4 };

typedef struct {
    long next[EMITTERS];
    long seen;
    long bad;
} order_sub;

typedef struct {
    int thread;
    long seq;
} ev_payload;

static void order_cb(weft_loop *lp, weft_id sub, const char *topic, const void *payload,
                     size_t len, void *ud) {
    (void)lp, (void)sub, (void)topic;
    order_sub *o = (order_sub *)ud;
    ev_payload e;
    if (len != sizeof e) {
        o->bad++;
        return;
    }
    memcpy(&e, payload, sizeof e);
    if (e.thread < 0 || e.thread >= EMITTERS || o->next[e.thread] != e.seq)
        o->bad++;
    else
        o->next[e.thread]++;
    o->seen++;
}

typedef struct {
    weft_loop *lp;
    int thread;
    long count;
    long failures;
} emitter_arg;

static void *emitter(void *arg) {
    emitter_arg *a = (emitter_arg *)arg;
    char topic[32];
    snprintf(topic, sizeof topic, "load.t%d", a->thread);
    for (long i = 0; i < a->count; i++) {
        ev_payload e = {a->thread, i};
        if (weft_emit(a->lp, topic, &e, sizeof e) != WEFT_OK) a->failures++;
    }
    return NULL;
}

static void stop_loop_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id, (void)ud;
    CHECK_OK(weft_loop_stop(lp));
}

TEST(emits_from_many_threads_keep_per_thread_order) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    long per_thread = h_scale(50000, 2000);
    order_sub *all = calloc(1, sizeof *all);
    order_sub *prefix = calloc(1, sizeof *prefix);
    order_sub *exact0 = calloc(1, sizeof *exact0);
    weft_id s1 = CHECK_ID(weft_subscribe(lp, "*", order_cb, all, NULL));
    weft_id s2 = CHECK_ID(weft_subscribe(lp, "load.*", order_cb, prefix, NULL));
    weft_id s3 = CHECK_ID(weft_subscribe(lp, "load.t0", order_cb, exact0, NULL));
    bg_loop b;
    bg_start(&b, lp, WEFT_RUN_DEFAULT);
    emitter_arg args[EMITTERS];
    pthread_t th[EMITTERS];
    for (int i = 0; i < EMITTERS; i++) {
        args[i] = (emitter_arg){lp, i, per_thread, 0};
        pthread_create(&th[i], NULL, emitter, &args[i]);
    }
    for (int i = 0; i < EMITTERS; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(args[i].failures, 0);
    }
    /* everything is queued now; a post from this thread comes after all of it */
    CHECK_ID(weft_post(lp, stop_loop_cb, NULL, NULL));
    bg_join(&b, h_slack_ms(5000), "deliver the events, then run the post that stops it");
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT)); /* anything left after a forced stop */
    CHECK_EQ(b.rc, WEFT_OK);
    CHECK_EQ(all->bad, 0);
    CHECK_EQ(prefix->bad, 0);
    CHECK_EQ(exact0->bad, 0);
    CHECK_EQ(all->seen, per_thread * EMITTERS);
    CHECK_EQ(prefix->seen, per_thread * EMITTERS);
    CHECK_EQ(exact0->seen, per_thread);
    for (int i = 0; i < EMITTERS; i++) CHECK_EQ(all->next[i], per_thread);
    CHECK_OK(weft_cancel(lp, s1));
    CHECK_OK(weft_cancel(lp, s2));
    CHECK_OK(weft_cancel(lp, s3));
    weft_loop_free(lp);
    free(all);
    free(prefix);
    free(exact0);
}

/* Events emitted into a loop that is never run again are released by weft_loop_free
 * (valgrind checks the memory); subscriptions are freed once. */
TEST(undelivered_events_are_released_at_loop_free) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ev_log l;
    log_init(&l);
    CHECK_ID(weft_subscribe(lp, "*", log_cb, &l, log_free));
    char payload[1000];
    memset(payload, 'p', sizeof payload);
    for (int i = 0; i < 1000; i++) CHECK_OK(weft_emit(lp, "ev", payload, (size_t)i));
    CHECK_EQ(weft_loop_timeout_ms(lp), 0);
    weft_loop_free(lp);
    CHECK_EQ(l.n, 0);
    CHECK_EQ(atomic_load(&l.frees), 1);
}

/* Subscriptions and emits are per loop. */
TEST(topics_are_per_loop) {
    weft_loop *a = weft_loop_new();
    weft_loop *b = weft_loop_new();
    REQUIRE(a && b);
    ev_log la, lb;
    log_init(&la);
    log_init(&lb);
    CHECK_ID(weft_subscribe(a, "*", log_cb, &la, log_free));
    CHECK_ID(weft_subscribe(b, "*", log_cb, &lb, log_free));
    CHECK_OK(weft_emit(a, "x", "a", 1));
    CHECK_OK(weft_loop_run(a, WEFT_RUN_NOWAIT));
    CHECK_OK(weft_loop_run(b, WEFT_RUN_NOWAIT));
    CHECK_EQ(la.n, 1);
    CHECK_EQ(lb.n, 0);
    weft_loop_free(a);
    weft_loop_free(b);
}

/* Many subscriptions to one topic, "job.*" and "*", half cancelled in a scrambled order
 * (which compacts the subscriber lists several times): the survivors are called once
 * each, in subscription order within each pattern, every free function runs exactly
 * once, and cancelling a cancelled subscription answers NOT_FOUND. */
#define MANY_SUBS 6000
static int many_seen[MANY_SUBS];
static int many_order[MANY_SUBS];
static int many_n;
static _Atomic int many_frees;

static void many_cb(weft_loop *lp, weft_id sub, const char *topic, const void *payload,
                    size_t len, void *ud) {
    (void)lp; (void)sub; (void)topic; (void)payload; (void)len;
    int i = (int)(intptr_t)ud;
    many_seen[i]++;
    if (many_n < MANY_SUBS) many_order[many_n++] = i;
}
static void many_free(void *ud) { (void)ud; atomic_fetch_add(&many_frees, 1); }

TEST(many_subscriptions_cancelled_in_any_order_keep_order) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    static weft_id ids[MANY_SUBS];
    static const char *pats[3] = {"job.done", "job.*", "*"};
    memset(many_seen, 0, sizeof many_seen);
    many_n = 0;
    atomic_store(&many_frees, 0);
    for (int i = 0; i < MANY_SUBS; i++)
        ids[i] = CHECK_ID(weft_subscribe(lp, pats[i % 3], many_cb, (void *)(intptr_t)i, many_free));
    /* cancel those with (i * 7919) % 10 >= 5, visiting i in a scrambled order
     * (2654435761 is prime, so k -> k * 2654435761 mod MANY_SUBS is a permutation) */
    int cancelled = 0;
    for (uint64_t k = 0; k < MANY_SUBS; k++) {
        uint64_t i = (k * 2654435761u) % MANY_SUBS;
        if ((i * 7919u) % 10 < 5) continue;
        CHECK_OK(weft_cancel(lp, ids[i]));
        cancelled++;
    }
    CHECK(cancelled > MANY_SUBS / 3 && cancelled < MANY_SUBS * 2 / 3);
    CHECK_EQ(atomic_load(&many_frees), cancelled);
    CHECK_OK(weft_emit(lp, "job.done", "x", 1));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(many_n, MANY_SUBS - cancelled);
    for (int i = 0; i < MANY_SUBS; i++) {
        int alive = (i * 7919) % 10 < 5;
        CHECK_EQ(many_seen[i], alive);
        if (!alive) CHECK_EQ(weft_cancel(lp, ids[i]), WEFT_ERR_NOT_FOUND);
    }
    /* within each pattern, subscription order */
    int last[3] = {-1, -1, -1};
    for (int k = 0; k < many_n; k++) {
        int i = many_order[k];
        CHECK(i > last[i % 3]);
        last[i % 3] = i;
    }
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&many_frees), MANY_SUBS);
}
