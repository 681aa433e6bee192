/*
 * pipe_watch.c: watching a file descriptor.
 *
 *   weft_watch_fd(loop, fd, WEFT_READABLE, cb, ...)
 *
 * calls cb(loop, id, fd, events, ...) on the loop thread in every pass while the fd is
 * ready (level-triggered). `events` holds the ready interest bits plus WEFT_HANGUP and
 * WEFT_ERROR, which are always reported.
 *
 * Here a repeating timer writes three messages into a pipe and then closes the write
 * end; the watch prints what it reads, sees WEFT_HANGUP, and cancels itself.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <weft.h>

static void fail(const char *what)
{
    char msg[256];
    weft_last_error(msg, sizeof msg);
    fprintf(stderr, "pipe_watch: %s failed: %s\n", what, msg);
    exit(1);
}

struct pipe_ends {
    int read_fd;
    int write_fd;
    int sent;      /* messages written by the timer */
    int hangup;    /* set when the watch saw WEFT_HANGUP */
};

/* Timer: every 50 ms write one message; after the third, close the write end (the
 * reader will see a hang-up) and cancel this timer. */
static void on_write_tick(weft_loop *loop, weft_id id, void *user_data)
{
    struct pipe_ends *p = user_data;
    char line[32];
    int len = snprintf(line, sizeof line, "message %d\n", ++p->sent);
    if (write(p->write_fd, line, (size_t)len) != len) {
        perror("pipe_watch: write");
        exit(1);
    }
    if (p->sent == 3) {
        close(p->write_fd);
        p->write_fd = -1;
        if (weft_cancel(loop, id) != WEFT_OK)
            fail("weft_cancel(timer)");
    }
}

/* Watch: runs while the read end is readable or hung up. */
static void on_readable(weft_loop *loop, weft_id id, int fd, uint32_t events, void *user_data)
{
    struct pipe_ends *p = user_data;
    char buf[128];

    printf("events:%s%s%s\n", (events & WEFT_READABLE) ? " READABLE" : "",
           (events & WEFT_HANGUP) ? " HANGUP" : "", (events & WEFT_ERROR) ? " ERROR" : "");
    if (events & WEFT_HANGUP)
        p->hangup = 1;

    /* Data may still be buffered when the hang-up arrives: read until read() says EOF. */
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
        printf("read: %.*s", (int)n, buf);
        return; /* level-triggered: called again next pass while more is buffered */
    }
    if (n < 0) {
        perror("pipe_watch: read");
        exit(1);
    }
    /* EOF: cancel the watch before closing the fd (weft does not own it). */
    printf("EOF\n");
    if (weft_cancel(loop, id) != WEFT_OK)
        fail("weft_cancel(watch)");
    close(fd);
    p->read_fd = -1;
}

int main(void)
{
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe_watch: pipe");
        return 1;
    }
    struct pipe_ends p = {.read_fd = fds[0], .write_fd = fds[1]};

    weft_loop *loop = weft_loop_new();
    if (!loop)
        fail("weft_loop_new");
    if (weft_watch_fd(loop, p.read_fd, WEFT_READABLE, on_readable, &p, NULL) == 0)
        fail("weft_watch_fd");
    if (weft_timer_every(loop, 50, on_write_tick, &p, NULL) == 0)
        fail("weft_timer_every");

    /* Returns once the timer and the watch have both cancelled themselves. */
    if (weft_loop_run(loop, WEFT_RUN_DEFAULT) != WEFT_OK)
        fail("weft_loop_run");
    weft_loop_free(loop);

    if (p.sent != 3 || !p.hangup || p.read_fd != -1) {
        fprintf(stderr, "pipe_watch: sent %d, hangup %d, read end %s\n", p.sent, p.hangup,
                p.read_fd == -1 ? "closed" : "open");
        return 1;
    }
    return 0;
}
