/*
 * soak.h: the shared state of weft's soak test (see soak.c for what the test does).
 *
 * Every registration the soak makes carries an `item` as its user_data. An item counts
 * its callbacks, its `done` and its free_fn, and says what it must see (a one-shot that
 * fires once unless a cancel was tried, a task whose status and result match its mode).
 * Items live in the list of the driver thread that made them until their free_fn runs;
 * the lists bound the work in flight (back-pressure) and let the checkpoints find a
 * one-shot that never ended. Memory of an ended item waits in a quarantine before it is
 * freed, so that a callback or a second free_fn after the free_fn is seen (the item says
 * FREED) rather than reading memory given back to malloc.
 *
 * The counters are per kind of registration; the checks at the end compare them exactly.
 */
#ifndef WEFT_SOAK_H
#define WEFT_SOAK_H

#include <weft.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    LOOPS = 4,
    DRIVERS = 8,
    PAIRS_PER_DRIVER = 2, /* socket pairs each driver writes to; watched for good */
    DRIVER_CAP = 256,     /* items a driver keeps in flight at most (back-pressure) */
    LIST_CAP = 320,       /* room above the cap for follow-ups made by loop callbacks */
    STALE_RING = 64,      /* ended ids each driver remembers, for stale-id checks */
};

/* The kinds of registration, each with its own counters. */
typedef enum kind {
    K_POST,
    K_AFTER,       /* weft_timer_after */
    K_EVERY,       /* weft_timer_every */
    K_SUB,         /* weft_subscribe */
    K_WATCH,       /* weft_watch_fd */
    K_LOOP_TASK,   /* weft_spawn(WEFT_ON_LOOP) */
    K_CPU,         /* weft_spawn(WEFT_ON_CPU) */
    K_IO,          /* weft_spawn(WEFT_ON_IO) */
    K_PROC,        /* weft_spawn(WEFT_ON_PROCESS) */
    K_CANCEL_POST, /* a post whose callback cancels another registration */
    NKINDS
} kind;

extern const char *const kind_names[NKINDS];

static inline bool kind_one_shot(kind k) { return k == K_POST || k == K_AFTER || k == K_CANCEL_POST; }
static inline bool kind_task(kind k) { return k == K_LOOP_TASK || k == K_CPU || k == K_IO || k == K_PROC; }

/* What a task's work does, and so what its `done` must get. */
typedef enum task_mode {
    M_NORMAL,  /* returns expect_status with result bytes (and events) */
    M_TIMEOUT, /* outlives its timeout: WEFT_ERR_TIMEOUT */
    M_CRASH,   /* a process task's child that exits without a status: WEFT_ERR_CRASHED */
} task_mode;

/* What an fd watch does when it fires. */
typedef enum watch_flavour {
    W_DRAIN,         /* reads what is there (and counts it) */
    W_WRITABLE_ONCE, /* a writable watch that cancels itself at its first call */
    W_CHURN,         /* a socket pair of its own: read, cancel itself; free_fn closes it */
} watch_flavour;

#define ITEM_LIVE 0x5e11ab1eu
#define ITEM_FREED 0xdeadf1eeu

typedef struct item {
    _Atomic uint32_t magic;
    kind kind;
    int loop;   /* index in g_loops */
    int driver; /* whose list holds it */
    int slot;   /* its index in that list (under the driver's lock) */
    bool permanent; /* made at the start, ended by weft_loop_free */
    uint64_t serial;
    uint64_t born_ms;
    /* References: weft's (until free_fn), the driver's while it registers, and one for
     * each cancel in progress (driver_pick, a cancelling post). The last one out judges
     * the item (item_release): by then its calls, done and cancels are all known. */
    _Atomic int refs;
    _Atomic int fires, dones, freed, cancel_tried;
    _Atomic int cancel_ok;       /* a weft_cancel of it returned OK: no call may start after */
    _Atomic int calls_after_cancel; /* calls that began after that (the one in flight) */
    bool registered_ok;          /* the registration call succeeded */
    bool freed_in_teardown;      /* by weft_loop_free */
    int done_status;
    _Atomic weft_id id;
    /* timers */
    int fire_limit; /* K_EVERY: cancels itself after this many calls (0: never) */
    /* tasks */
    task_mode mode;
    int expect_status;
    uint32_t result_len;
    uint32_t work_us;
    int nevents; /* events the work emits */
    int depth;   /* 1 for a follow-up spawned by a done callback */
    _Atomic int events_seen; /* K_PROC: its events delivered so far */
    /* watches */
    watch_flavour flavour;
    int fd, fd2;
    /* cancel posts: the item to cancel, with a reference held until the cancel is made */
    struct item *_Atomic target;
} item;

typedef struct stale_id {
    weft_id id;
    int loop;
} stale_id;

typedef struct pair {
    int rd, wr; /* a socket pair: drivers write to wr, watches drain rd */
} pair;

typedef struct driver {
    int index;
    uint64_t rng;
    pthread_t thread;
    pthread_mutex_t lock; /* guards items, live_by_kind and stale */
    item *items[LIST_CAP];
    _Atomic int count;
    int live_by_kind[NKINDS];
    stale_id stale[STALE_RING];
    unsigned stale_next;
    pair pairs[PAIRS_PER_DRIVER];
    long ops;
} driver;

/* Counters. `regs` counts a registration before the call is made (and is taken back if
 * it fails), so that a checkpoint reading the free count first never sees more frees
 * than registrations. */
typedef struct stats {
    _Atomic long regs[NKINDS], frees[NKINDS], teardown_frees[NKINDS];
    _Atomic long fires[NKINDS], dones[NKINDS];
    _Atomic long cancel_ok[NKINDS], cancel_not_found[NKINDS];
    _Atomic long ran_and_cancelled[NKINDS]; /* one-shots called, whose cancel also returned OK */
    _Atomic long done_ok[NKINDS], done_cancelled[NKINDS], done_timeout[NKINDS],
        done_crashed[NKINDS];
    _Atomic long emits[LOOPS];          /* events emitted to topics "soak.*" of each loop */
    _Atomic long counted[LOOPS];        /* of those, seen by the loop's permanent "soak.*" */
    _Atomic long deliveries;            /* every subscriber call */
    _Atomic long proc_events;           /* events of process tasks delivered */
    _Atomic long fd_written, fd_read;   /* bytes through the drivers' socket pairs */
    _Atomic long fd_full;               /* writes refused: a full socket buffer */
    _Atomic long modifies;              /* weft_watch_fd_modify calls */
    _Atomic long late_calls;            /* calls in flight when a cancel from another thread said OK */
    _Atomic long bad_inputs;            /* bad calls made, each refused as documented */
    _Atomic long failures;
} stats;

extern stats g;
extern weft_loop *g_loops[LOOPS];
extern weft_pool *g_cpu_pool, *g_io_pool;
extern driver g_drivers[DRIVERS];
extern _Atomic int g_stop;     /* the drivers stop */
extern _Atomic int g_teardown; /* the loops are being freed: free_fns without a callback are fine */
extern uint64_t g_seed;
extern unsigned g_leak_bytes; /* SOAK_LEAK */

/* ---- items.c ------------------------------------------------------------------------ */

/* Records a failure (the first 40 are printed); the run stops at the next check. */
void soak_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t now_ms(void);
void sleep_us(unsigned us);
uint64_t rnd(uint64_t *state);
/* A random number below n, from this thread's own generator (loop and pool threads). */
uint64_t rnd_here(uint64_t n);

/* A new item of driver d's list (NULL when the list is full; d NULL: a permanent item
 * in no list); refs = 2: weft's and the caller's. */
item *item_new(driver *d, kind k, int loop);
/* The registration call returned `id`: keeps it, or (id 0) records the failure and ends
 * the item (no free_fn will run). Returns the id; the caller keeps its reference
 * (item_put). */
weft_id item_registered(item *it, weft_id id, const char *call);
/* Drops a reference. */
void item_put(item *it);
/* The free_fn of every item. */
void item_free_fn(void *ud);
/* A free_fn for calls that must fail: it must never run. */
void never_free_fn(void *ud);
/* True if the item is alive (else a failure naming `where` is recorded). */
bool item_alive(item *it, const char *where);
/* A random live item of d's list, of kind `want` (any: NKINDS), with a reference taken
 * (item_put it), marked as one a cancel is tried on. NULL when there is none. */
item *driver_pick(driver *d, kind want);
/* A random ended id of d (false when none yet). */
bool driver_stale(driver *d, stale_id *out);
/* weft_cancel of the item (by `id`, or 0: the id its registration returned) on its loop,
 * the caller holding a reference: counts the result and marks the item when it is OK.
 * `who` names the calling thread for messages. */
int cancel_item(item *it, weft_id id, const char *who);
/* The items' memory back to malloc (at the end). */
void quarantine_drain(void);

/* Callbacks (items.c). */
void post_cb(weft_loop *lp, weft_id id, void *ud);
void timer_cb(weft_loop *lp, weft_id id, void *ud);
void cancel_post_cb(weft_loop *lp, weft_id id, void *ud);
void event_cb(weft_loop *lp, weft_id id, const char *topic, const void *payload, size_t len, void *ud);
void counting_event_cb(weft_loop *lp, weft_id id, const char *topic, const void *payload, size_t len,
                       void *ud);
void proc_event_cb(weft_loop *lp, weft_id id, const char *topic, const void *payload, size_t len,
                   void *ud);
void watch_cb(weft_loop *lp, weft_id id, int fd, uint32_t events, void *ud);

/* Payloads of the drivers' emits: a header and bytes whose hash it holds. */
#define EMIT_MAGIC 0xe1e1e1e1u
#define PROC_MAGIC 0x9c9c9c9cu
typedef struct emit_head {
    uint32_t magic;
    uint32_t len; /* bytes after the header */
    uint64_t hash;
} emit_head;
typedef struct proc_event {
    uint32_t magic;
    uint32_t seq;
    uint64_t serial;
    item *task; /* the parent's item: still alive, as events come before done */
} proc_event;
/* Emits an event of len random bytes (plus the header) to `topic` of loop `loop`,
 * counted when the topic starts with "soak.". With task != NULL, from inside its work. */
void emit_payload(int loop, weft_task *task, const char *topic, size_t len, uint64_t *rng);
uint64_t fnv(const void *p, size_t n);
/* The result bytes of task `serial`, from offset `off`. */
void pattern_fill(unsigned char *buf, size_t n, uint64_t serial, size_t off);

/* ---- tasks.c ------------------------------------------------------------------------ */

/* Spawns a task of kind k (K_LOOP_TASK, K_CPU, K_IO, K_PROC) for driver d, from its
 * thread, in a random mode. Returns its item, with the caller's reference (item_put),
 * or NULL if not spawned. */
item *spawn_task(driver *d, kind k, int loop);
/* From a done callback: a CPU task spawned on the loop's own thread. */
void spawn_follow_up(weft_loop *lp, int loop, item *parent);

/* ---- driver.c ----------------------------------------------------------------------- */

void *driver_main(void *arg);
/* Bad calls: each must be refused with its documented code. */
void bad_input(driver *d);

#endif /* WEFT_SOAK_H */
