/* archive_bench: how the XEP-0313 archive store (server/store/store_archive.c)
 * behaves with a large archive for one account. A benchmark: it prints
 * figures and asserts nothing.
 *
 *     build/bin/archive_bench [MESSAGES [DB]]     (default 1000000, a file
 *                                                  in /tmp, removed after)
 *
 * It fills one account's archive through the store API (each message its
 * own request and transaction, as the server archives them; 100 different
 * peers, a millisecond apart), then times the queries a client makes: the
 * newest page, the oldest page, the page after an id in the middle, the
 * newest page with one peer, a time span in the middle, each 200 times. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "store/store.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

typedef struct wait {
    bool done;
    int err;
    unsigned pending;
    size_t count;
} wait_t;

static void on_done(void *ud, int err)
{
    wait_t *w = ud;
    if (err != STORE_OK)
        w->err = err;
    if (--w->pending == 0)
        w->done = true;
}

static void on_items(void *ud, int err, const store_archive_item_t *items,
                     size_t count, bool complete)
{
    wait_t *w = ud;
    (void)items;
    (void)complete;
    w->err = err;
    w->count = count;
    w->done = true;
}

static void fill_cred(scram_cred_t *c, size_t key_len)
{
    memset(c, 0, sizeof(*c));
    c->iterations = 4096;
    c->salt_len = 16;
    c->key_len = key_len;
}

static double query(uv_loop_t *loop, store_t *s, const store_archive_query_t *q,
                    size_t *count)
{
    enum { RUNS = 200 };
    double t0 = now_ms();
    for (int i = 0; i < RUNS; i++) {
        wait_t w = {0};
        store_archive_query(s, "example.org", "alice", q, on_items, &w);
        store_wait(loop, &w.done);
        if (w.err != STORE_OK) {
            fprintf(stderr, "query failed: %s\n", store_strerror(w.err));
            exit(1);
        }
        *count = w.count;
    }
    return (now_ms() - t0) / RUNS;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    char path[256];
    snprintf(path, sizeof(path), "%s",
             argc > 2 ? argv[2] : "/tmp/starling-archive-bench.db");
    unlink(path);
    uv_loop_t loop;
    uv_loop_init(&loop);
    store_t *s;
    char err[256];
    if (store_open(&loop, path, &s, err, sizeof(err)) != STORE_OK) {
        fprintf(stderr, "%s: %s\n", path, err);
        return 1;
    }
    store_account_t a = {.domain = "example.org", .node = "alice"};
    fill_cred(&a.sha1, 20);
    fill_cred(&a.sha256, 32);
    wait_t w = {.pending = 1};
    store_account_create(s, &a, on_done, &w);
    store_wait(&loop, &w.done);

    /* Fill: requests in flights of 1000, as a busy server would queue. */
    int64_t base = 1700000000000;
    char stanza[200], sid[24], peer[64];
    double t0 = now_ms();
    for (long i = 0; i < n;) {
        w = (wait_t){0};
        long end = i + 1000 < n ? i + 1000 : n;
        w.pending = (unsigned)(end - i);
        for (; i < end; i++) {
            snprintf(sid, sizeof(sid), "s%09ld", i);
            snprintf(peer, sizeof(peer), "contact%ld@example.net", i % 100);
            int len = snprintf(stanza, sizeof(stanza),
                               "<message xmlns='jabber:client' to='alice@"
                               "example.org' from='%s/phone' type='chat'><body>"
                               "message number %ld</body></message>",
                               peer, i);
            store_archive_item_t it = {.sid = sid,
                                       .ts = base + i,
                                       .peer = peer,
                                       .peer_res = "phone",
                                       .outgoing = i % 2 == 0,
                                       .stanza = stanza,
                                       .len = (size_t)len};
            store_archive_put(s, "example.org", "alice", &it, on_done, &w);
        }
        store_wait(&loop, &w.done);
        if (w.err != STORE_OK) {
            fprintf(stderr, "archive put failed: %s\n", store_strerror(w.err));
            return 1;
        }
    }
    double fill = now_ms() - t0;
    struct stat st;
    stat(path, &st);
    printf("archive of one account: %ld messages stored in %.1f s "
           "(%.0f messages/s; each its own request, the store commits\n"
           "  those queued together as one transaction); database %.0f MiB\n",
           n, fill / 1e3, (double)n / (fill / 1e3),
           (double)st.st_size / (1024.0 * 1024.0));

    char mid[24], span_peer[64];
    snprintf(mid, sizeof(mid), "s%09ld", n / 2);
    snprintf(span_peer, sizeof(span_peer), "contact42@example.net");
    struct {
        const char *what;
        store_archive_query_t q;
    } qs[] = {
        {"newest page (RSM <before/>, 50)", {.before = "", .max = 50}},
        {"oldest page (50)", {.max = 50}},
        {"page after an id in the middle (50)", {.after = mid, .max = 50}},
        {"newest page with one peer (50)",
         {.peer = span_peer, .before = "", .max = 50}},
        {"one second in the middle (up to 1000)",
         {.start = base + n / 2, .end = base + n / 2 + 999, .max = 1000}},
    };
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        size_t count = 0;
        double ms = query(&loop, s, &qs[i].q, &count);
        printf("  %-40s %8.3f ms per query (%zu items)\n", qs[i].what, ms,
               count);
    }
    bool closed = false;
    store_close(s, NULL, NULL);
    (void)closed;
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (argc <= 2) {
        unlink(path);
        char side[300];
        snprintf(side, sizeof(side), "%s-wal", path);
        unlink(side);
        snprintf(side, sizeof(side), "%s-shm", path);
        unlink(side);
    }
    return 0;
}
