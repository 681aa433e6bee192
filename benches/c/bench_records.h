/* bench_records.h: the cross-thread record workloads' shared producer and consumer
 * logic (and, for the baselines, a mutex-protected record queue). Included by
 * bench_common.h. */
#ifndef BENCH_RECORDS_H
#define BENCH_RECORDS_H

/* ---- cross-thread records: shared producer and consumer logic ------------- */
struct rec {
    struct rec *next;   /* intrusive link, used by the baselines' queue */
    uint32_t seq;       /* rank among its producer's records */
    uint32_t producer;
    uint64_t t0;        /* post time (wakeup_latency) */
};

/* run_xpost's modes: cross_thread_post (one producer thread), wakeup_latency,
 * cross_thread_post_4 (four producer threads, N_POST records in all) */
enum { XPOST_1 = 0, XPOST_LATENCY = 1, XPOST_4 = 2 };
#define XPOST_MAX_PRODUCERS 4

/* One cross-thread run.  The system-specific part supplies post(), called on
 * the producer thread, and calls xpost_deliver() on the loop thread for every
 * record; xpost_deliver() returns 1 after the last one. */
struct xpost {
    /* What the producers read on every post: written before they start, never after. */
    void (*post)(struct rec *);
    int latency;            /* 0: cross_thread_post(_4), 1: wakeup_latency */
    uint32_t n;
    uint32_t producers;     /* each posts n / producers records, in order */
    struct rec *recs;
    /* What the loop writes on every delivery, on cache lines of its own: sharing a line
     * with the producers' fields would make every system's post miss the cache. */
    _Alignas(64) uint32_t next[XPOST_MAX_PRODUCERS];  /* each producer's next rank */
    uint64_t *lat_ns;
    uint64_t got;
    uint32_t out_of_order;
    _Atomic uint32_t done;  /* records delivered, visible to the producer (latency) */
    _Alignas(64) pthread_t thread[XPOST_MAX_PRODUCERS];
    struct span span;
};

/* one producer thread: its share of the records, recs[first, first + n / producers) */
struct xpost_share {
    struct xpost *x;
    uint32_t first;
};
static struct xpost_share xpost_shares[XPOST_MAX_PRODUCERS];

static void *xpost_producer(void *arg)
{
    struct xpost_share *share = arg;
    struct xpost *x = share->x;
    const struct timespec gap = { 0, LATENCY_GAP_NS };
    uint32_t end = share->first + x->n / x->producers;
    for (uint32_t i = share->first; i < end; i++) {
        if (x->latency) {
            /* wait until the loop has handled the previous sample and gone
             * back to sleep, then post one record */
            while (atomic_load_explicit(&x->done, memory_order_acquire) < i)
                sched_yield();
            nanosleep(&gap, NULL);
            x->recs[i].t0 = now_ns();
        }
        x->post(&x->recs[i]);
    }
    return NULL;
}

static void xpost_init(struct xpost *x, int mode, void (*post)(struct rec *))
{
    memset(x, 0, sizeof *x);
    x->post = post;
    x->latency = mode == XPOST_LATENCY;
    x->producers = mode == XPOST_4 ? 4 : 1;
    x->n = x->latency ? N_LATENCY : N_POST;
    x->recs = xcalloc(x->n, sizeof *x->recs);
    uint32_t share = x->n / x->producers;
    for (uint32_t i = 0; i < x->n; i++) {
        x->recs[i].producer = i / share;
        x->recs[i].seq = i % share;
    }
    if (x->latency)
        x->lat_ns = xcalloc(x->n, sizeof *x->lat_ns);
}

static void xpost_start(struct xpost *x)
{
    watchdog("records delivered", &x->got, x->n);
    x->span = span_start();
    for (uint32_t k = 0; k < x->producers; k++) {
        xpost_shares[k] = (struct xpost_share){ x, k * (x->n / x->producers) };
        check(pthread_create(&x->thread[k], NULL, xpost_producer, &xpost_shares[k]) == 0);
    }
}

static int xpost_deliver(struct xpost *x, struct rec *r)
{
    if (x->latency)
        x->lat_ns[r->seq] = now_ns() - r->t0;
    /* FIFO per producer */
    if (r->seq != x->next[r->producer])
        x->out_of_order++;
    x->next[r->producer] = r->seq + 1;
    x->got++;
    atomic_store_explicit(&x->done, (uint32_t)x->got, memory_order_release);
    return x->got == x->n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* call after the loop returned */
static void xpost_report(struct xpost *x)
{
    double wall = span_wall_s(x->span);
    for (uint32_t k = 0; k < x->producers; k++)
        check(pthread_join(x->thread[k], NULL) == 0);
    if (x->got != x->n)
        die("%llu of %u records delivered", (unsigned long long)x->got, x->n);
    if (x->out_of_order)
        fprintf(stderr, "%s: %u records delivered out of FIFO order\n",
                bench_system, x->out_of_order);
    if (!x->latency) {
        result(x->producers == 1 ? "cross_thread_post" : "cross_thread_post_4",
               "recs_per_s=%.0f wall_s=%.4f out_of_order=%u", x->n / wall, wall, x->out_of_order);
        return;
    }
    qsort(x->lat_ns, x->n, sizeof *x->lat_ns, cmp_u64);
    result("wakeup_latency", "median_us=%.2f p99_us=%.2f max_us=%.2f",
           x->lat_ns[x->n / 2] / 1e3, x->lat_ns[(size_t)(x->n * 0.99)] / 1e3,
           x->lat_ns[x->n - 1] / 1e3);
}

/* Baselines' transport: a mutex-protected intrusive FIFO.  push() reports
 * whether the queue was empty, so the producer wakes the loop only on the
 * empty -> non-empty transition; the loop takes the whole list at once. */
struct mq {
    pthread_mutex_t mu;
    struct rec *head, *tail;
};
#define MQ_INIT { PTHREAD_MUTEX_INITIALIZER, NULL, NULL }

static inline int mq_push(struct mq *q, struct rec *r)
{
    r->next = NULL;
    pthread_mutex_lock(&q->mu);
    int was_empty = q->head == NULL;
    if (was_empty)
        q->head = r;
    else
        q->tail->next = r;
    q->tail = r;
    pthread_mutex_unlock(&q->mu);
    return was_empty;
}

static inline struct rec *mq_take(struct mq *q)
{
    pthread_mutex_lock(&q->mu);
    struct rec *list = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->mu);
    return list;
}

/* ==== worker pools (pool_roundtrip, fork_join, task_overhead, task_memory) ==== */

/* The pool size N: the CPUs this process may run on (as run.py computes it). */
static maybe_unused unsigned bench_cores(void)
{
    cpu_set_t set;
    check(sched_getaffinity(0, sizeof set, &set) == 0);
    return (unsigned)CPU_COUNT(&set);
}

/* the threads of this process besides the main thread (pool threads, here) */
static maybe_unused unsigned other_threads(void)
{
    unsigned n = 0;
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    check(f != NULL);
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %u", &n) == 1)
            break;
    fclose(f);
    return n - 1;
}

#endif /* BENCH_RECORDS_H */
