/*
 * embed_poll.c: running weft inside a host's own event loop.
 *
 * Many programs already own their main loop (poll, GLib, libuv, asyncio, Node). They
 * embed weft with two calls:
 *
 *   weft_loop_fd(loop)                  one fd that is readable whenever weft has work
 *                                       (due timers, ready watches, posts, events)
 *   weft_loop_run(loop, WEFT_RUN_NOWAIT)  do that work now, on the host's thread
 *
 * and, optionally, weft_loop_timeout_ms(loop) as the host's poll timeout: the time to
 * weft's next timer (-1: none).
 *
 * Here the host polls a pipe of its own, fed by a "producer" thread, next to weft's fd.
 * weft runs a repeating timer on the side. The host stops when its pipe is at EOF and
 * weft's timer is done.
 */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <weft.h>

static void fail(const char *what)
{
    char msg[256];
    weft_last_error(msg, sizeof msg);
    fprintf(stderr, "embed_poll: %s failed: %s\n", what, msg);
    exit(1);
}

/* The host's own input: three lines, 80 ms apart, then EOF. */
static void *producer(void *arg)
{
    int write_fd = *(int *)arg;
    for (int i = 1; i <= 3; i++) {
        nanosleep(&(struct timespec){.tv_nsec = 80 * 1000 * 1000}, NULL);
        char line[32];
        int len = snprintf(line, sizeof line, "host input %d\n", i);
        if (write(write_fd, line, (size_t)len) != len)
            perror("embed_poll: write");
    }
    close(write_fd);
    return NULL;
}

struct ticker {
    int ticks;
    bool done; /* set by free_ticker: weft has nothing left to do */
};

/* A weft timer. It runs inside weft_loop_run(NOWAIT), so on the host's thread. */
static void on_tick(weft_loop *loop, weft_id id, void *user_data)
{
    struct ticker *ticker = user_data;
    printf("weft tick %d\n", ++ticker->ticks);
    if (ticker->ticks == 6 && weft_cancel(loop, id) != WEFT_OK)
        fail("weft_cancel");
}

static void free_ticker(void *user_data)
{
    struct ticker *ticker = user_data;
    ticker->done = true;
}

int main(void)
{
    weft_loop *loop = weft_loop_new();
    if (!loop)
        fail("weft_loop_new");
    struct ticker ticker = {0};
    if (weft_timer_every(loop, 50, on_tick, &ticker, free_ticker) == 0)
        fail("weft_timer_every");

    int host_pipe[2];
    if (pipe(host_pipe) != 0) {
        perror("embed_poll: pipe");
        return 1;
    }
    pthread_t thread;
    if (pthread_create(&thread, NULL, producer, &host_pipe[1]) != 0) {
        fprintf(stderr, "embed_poll: pthread_create failed\n");
        return 1;
    }

    int weft_fd = weft_loop_fd(loop);
    if (weft_fd < 0)
        fail("weft_loop_fd");

    /* The host's loop. poll() ignores entries whose fd is negative. */
    struct pollfd fds[2] = {
        {.fd = weft_fd, .events = POLLIN},
        {.fd = host_pipe[0], .events = POLLIN},
    };
    while (!ticker.done || fds[1].fd >= 0) {
        /* Wake for weft's next timer even if the host has nothing to do. (weft_fd also
         * becomes readable when a timer is due; the timeout is for hosts that prefer to
         * track time themselves.) */
        int64_t timeout_ms = weft_loop_timeout_ms(loop);
        int timeout = timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms;

        int ready = poll(fds, 2, timeout);
        if (ready < 0) {
            perror("embed_poll: poll");
            return 1;
        }

        /* weft's turn: run what is ready now, never blocking the host. Cheap to call
         * when nothing is ready, so a timeout (ready == 0) is handled the same way. */
        if (ready == 0 || (fds[0].revents & POLLIN)) {
            if (weft_loop_run(loop, WEFT_RUN_NOWAIT) != WEFT_OK)
                fail("weft_loop_run");
        }

        /* The host's own fd. */
        if (fds[1].revents & (POLLIN | POLLHUP)) {
            char buf[128];
            ssize_t n = read(fds[1].fd, buf, sizeof buf);
            if (n > 0) {
                printf("host read: %.*s", (int)n, buf);
            } else {
                printf("host input: EOF\n");
                close(fds[1].fd);
                fds[1].fd = -1;
            }
        }
    }

    pthread_join(thread, NULL);
    weft_loop_free(loop);

    if (ticker.ticks != 6) {
        fprintf(stderr, "embed_poll: %d weft ticks, expected 6\n", ticker.ticks);
        return 1;
    }
    return 0;
}
