/* render: the case weft was asked for. A terminal-session recording is rendered to
 * HTML in a forked child (seconds of CPU, megabytes of output) while the loop keeps a
 * 10 ms heartbeat; the child reports progress as events; the HTML arrives in `done` and
 * goes to a "connection" (here a socketpair) that only the parent holds.
 *
 * Nothing is serialised on the way in: the child sees the recording, the connection and
 * everything else through the copy-on-write snapshot fork makes. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <weft.h>

enum { FRAMES = 12000, COLS = 80, ROWS = 24 };

/* What the spawner shares with its work by pointer: no copy, no pickling. */
struct session {
    char (*frames)[ROWS][COLS]; /* the recording */
    int connection;             /* the parent's end of the client connection */
    weft_id heartbeat, progress;
    uint64_t last_beat_ns, worst_gap_ns;
    int beats;
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* In the child: render every frame as an HTML <pre>, escaping, with a little styling
 * per cell (that is where the CPU goes), streaming the result in chunks. */
static int render(weft_task *task, void *user_data) {
    struct session *s = user_data;
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    if (out == NULL) return 1;
    const char *head = "<html><body>\n";
    weft_task_write(task, head, strlen(head));
    for (int f = 0; f < FRAMES; f++) {
        len = 0;
        len += (size_t)snprintf(out + len, cap - len, "<pre id=\"f%d\">", f);
        for (int r = 0; r < ROWS; r++) {
            for (int c = 0; c < COLS; c++) {
                char ch = s->frames[f][r][c];
                const char *cell = ch == '<' ? "&lt;" : ch == '>' ? "&gt;" : ch == '&' ? "&amp;" : NULL;
                if (cap - len < 64) {
                    weft_task_write(task, out, len);
                    len = 0;
                }
                if (cell) len += (size_t)snprintf(out + len, cap - len, "%s", cell);
                else if ((r * COLS + c + f) % 7 == 0)
                    len += (size_t)snprintf(out + len, cap - len, "<b>%c</b>", ch);
                else out[len++] = ch;
            }
            out[len++] = '\n';
        }
        len += (size_t)snprintf(out + len, cap - len, "</pre>\n");
        weft_task_write(task, out, len);
        if (f % 2000 == 1999) {
            int done_frames = f + 1;
            weft_task_emit(task, "render.progress", &done_frames, sizeof done_frames);
        }
    }
    free(out);
    weft_task_write(task, "</body></html>\n", 15);
    return 0;
}

static void on_progress(weft_loop *loop, weft_id id, const char *topic, const void *payload,
                        size_t len, void *user_data) {
    (void)loop, (void)id, (void)user_data;
    int frames;
    if (len == sizeof frames) {
        memcpy(&frames, payload, sizeof frames);
        printf("%s: %d of %d frames\n", topic, frames, FRAMES);
    }
}

static void beat(weft_loop *loop, weft_id id, void *user_data) {
    (void)loop, (void)id;
    struct session *s = user_data;
    uint64_t now = now_ns();
    if (s->beats++ > 0 && now - s->last_beat_ns > s->worst_gap_ns) s->worst_gap_ns = now - s->last_beat_ns;
    s->last_beat_ns = now;
}

static int failures;

static void rendered(weft_loop *loop, weft_id id, int status, const uint8_t *html, size_t len,
                     void *user_data) {
    (void)id;
    struct session *s = user_data;
    if (status != 0) {
        char why[256];
        weft_last_error(why, sizeof why);
        fprintf(stderr, "render failed: %s (%s)\n", weft_strerror(status), why);
        failures++;
    } else {
        /* On the loop thread, with the parent's connection: hand the HTML over. */
        size_t sent = 0;
        while (sent < len) {
            ssize_t n = write(s->connection, html + sent, len - sent);
            if (n <= 0) break;
            sent += (size_t)n;
        }
        printf("rendered %zu bytes of HTML, sent %zu to the connection\n", len, sent);
        if (sent != len || len < (size_t)FRAMES * ROWS * COLS) failures++;
    }
    printf("heartbeat: %d beats, worst gap %.1f ms\n", s->beats, (double)s->worst_gap_ns / 1e6);
    weft_cancel(loop, s->heartbeat);
    weft_cancel(loop, s->progress);
}

int main(void) {
    struct session s = {0};
    s.frames = malloc(sizeof *s.frames * FRAMES);
    if (s.frames == NULL) return 1;
    for (int f = 0; f < FRAMES; f++)
        for (int r = 0; r < ROWS; r++)
            for (int c = 0; c < COLS; c++) s.frames[f][r][c] = "$ ls -l <dir> && echo ok "[(f + r + c) % 25];
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) return 1;
    s.connection = pair[0];
    /* The client drains its end in another process, as a browser would. */
    pid_t client = fork();
    if (client == 0) {
        close(pair[0]);
        char buf[1 << 16];
        size_t total = 0;
        ssize_t n;
        while ((n = read(pair[1], buf, sizeof buf)) > 0) total += (size_t)n;
        _exit(total > 0 ? 0 : 1);
    }
    close(pair[1]);

    weft_loop *loop = weft_loop_new();
    if (loop == NULL) return 1;
    s.heartbeat = weft_timer_every(loop, 10, beat, &s, NULL);
    s.progress = weft_subscribe(loop, "render.*", on_progress, NULL, NULL);
    weft_spawn_options options = {.size = sizeof options, .timeout_ms = 60000};
    if (weft_spawn(loop, WEFT_ON_PROCESS, render, rendered, &s, NULL, &options) == 0) {
        char why[256];
        weft_last_error(why, sizeof why);
        fprintf(stderr, "spawn: %s\n", why);
        return 1;
    }
    int rc = weft_loop_run(loop, WEFT_RUN_DEFAULT);
    weft_loop_free(loop);
    close(pair[0]);
    int st = 0, client_status = 1;
    if (waitpid(client, &st, 0) == client && WIFEXITED(st)) client_status = WEXITSTATUS(st);
    free(s.frames);
    return rc == 0 && failures == 0 && client_status == 0 ? 0 : 1;
}
