/*
 * timers.c: a one-shot timer, a repeating timer, and cancelling a timer from its own
 * callback.
 *
 *   weft_timer_after(loop, ms, cb, ...)   calls cb once, ms milliseconds from now
 *   weft_timer_every(loop, ms, cb, ...)   calls cb every ms milliseconds until cancelled
 *   weft_cancel(loop, id)                 ends any registration, from any callback too
 *
 * weft_loop_run(loop, WEFT_RUN_DEFAULT) returns by itself once nothing is registered,
 * so this program never calls weft_loop_stop.
 */
#include <stdio.h>
#include <stdlib.h>

#include <weft.h>

/* Every weft call that fails returns 0 (ids), NULL (pointers) or a negative code (ints),
 * and leaves a message naming the function and the bad argument for this thread. */
static void fail(const char *what)
{
    char msg[256];
    weft_last_error(msg, sizeof msg);
    fprintf(stderr, "timers: %s failed: %s\n", what, msg);
    exit(1);
}

struct ticker {
    int ticks; /* calls so far */
    int limit; /* cancel after this many */
};

/* Runs on the loop thread every interval. `id` is this timer's own id. */
static void on_tick(weft_loop *loop, weft_id id, void *user_data)
{
    struct ticker *ticker = user_data;
    ticker->ticks++;
    printf("tick %d\n", ticker->ticks);
    if (ticker->ticks == ticker->limit) {
        /* Cancelling from inside the callback is allowed: the timer never fires again,
         * and its free_fn runs right after this callback returns. */
        if (weft_cancel(loop, id) != WEFT_OK)
            fail("weft_cancel");
    }
}

/* The free_fn: weft calls it exactly once, when the registration ends (here: after the
 * cancel above). It is where user_data is released. */
static void free_ticker(void *user_data)
{
    struct ticker *ticker = user_data;
    printf("ticker done after %d ticks\n", ticker->ticks);
    free(ticker);
}

static void on_timeout(weft_loop *loop, weft_id id, void *user_data)
{
    (void)loop;
    (void)id;
    int *fired = user_data;
    *fired = 1;
    printf("one-shot timer fired\n");
}

int main(void)
{
    /* The header you compiled against must match the library you run with. */
    if (weft_abi_version() != WEFT_ABI_VERSION) {
        fprintf(stderr, "timers: libweft ABI %u, header ABI %d\n",
                (unsigned)weft_abi_version(), WEFT_ABI_VERSION);
        return 1;
    }
    printf("weft %s\n", weft_version());

    weft_loop *loop = weft_loop_new();
    if (!loop)
        fail("weft_loop_new");

    /* Every 100 ms, five times. weft owns `ticker` from here on: free_ticker frees it. */
    struct ticker *ticker = malloc(sizeof *ticker);
    if (!ticker)
        return 1;
    *ticker = (struct ticker){.ticks = 0, .limit = 5};
    if (weft_timer_every(loop, 100, on_tick, ticker, free_ticker) == 0) {
        free(ticker); /* a failed call never runs free_fn: user_data is still ours */
        fail("weft_timer_every");
    }

    /* Once, after 250 ms (between tick 2 and tick 3). No free_fn: `fired` is on our
     * stack and outlives the loop run. */
    int fired = 0;
    if (weft_timer_after(loop, 250, on_timeout, &fired, NULL) == 0)
        fail("weft_timer_after");

    /* Runs until both timers are gone: about 500 ms. */
    if (weft_loop_run(loop, WEFT_RUN_DEFAULT) != WEFT_OK)
        fail("weft_loop_run");
    weft_loop_free(loop);

    if (!fired) {
        fprintf(stderr, "timers: the one-shot timer never fired\n");
        return 1;
    }
    return 0;
}
