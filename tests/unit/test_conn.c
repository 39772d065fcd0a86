/* Unit tests for lib/net/conn: real loopback sockets on a private libuv
 * loop. A listener accepts into a conn_t; the peer is either another
 * conn_t (conn_connect) or a raw non-blocking socket that the test reads
 * only when it wants to (a peer that stops reading). Every test ends with
 * the loop closing cleanly: every handle freed, every block released. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "base/buf.h"
#include "base/rcbuf.h"
#include "net/conn.h"
#include "net/tls.h"

/* ---- fixture: certificates made at test time ------------------------ */

typedef struct fx {
    char dir[64];
    char crt[128], key[128];
} fx_t;

static int group_setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/starling-conn-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->crt, sizeof(f->crt), "%s/srv.crt", f->dir);
    snprintf(f->key, sizeof(f->key), "%s/srv.key", f->dir);
    char err[256];
    if (tls_make_self_signed("example.org", 2, f->crt, f->key, err,
                             sizeof(err)) != TLS_OK)
        return -1;
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    fx_t *f = *state;
    unlink(f->crt);
    unlink(f->key);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- one side of a connection, as its owner sees it ----------------- */

typedef struct side {
    conn_t *conn;
    buf_t in;
    int tls_status; /* 1: not yet */
    int error;      /* first error event, 0: none */
    int soft_up, soft_down;
    bool overflowed, resumed, closed;
    /* overflow: the tags of the detached blocks, in order */
    long unsent_first, unsent_last, unsent_count;
    bool unsent_in_order;
    const char *final;  /* queued during the overflow event */
    unsigned linger_ms; /* conn_close during the overflow event */
    bool close_on_error;
} side_t;

static void ev_data(void *ud, const char *data, size_t len)
{
    side_t *s = ud;
    assert_int_equal(buf_append(&s->in, data, len), 0);
}

static void ev_tls_done(void *ud, int status)
{
    side_t *s = ud;
    s->tls_status = status;
}

static void ev_error(void *ud, int err)
{
    side_t *s = ud;
    if (s->error == 0)
        s->error = err;
    if (s->close_on_error)
        conn_close(s->conn, 1000);
}

static void ev_soft(void *ud, bool over)
{
    side_t *s = ud;
    if (over)
        s->soft_up++;
    else
        s->soft_down++;
}

static void walk_unsent(void *arg, const char *data, size_t len, void *tag)
{
    side_t *s = arg;
    long t = (long)(intptr_t)tag;
    (void)data;
    if (tag == NULL) /* owned bytes, coalesced */
        return;
    assert_int_equal(len, 4096);
    if (s->unsent_count == 0)
        s->unsent_first = t;
    else if (t != s->unsent_last + 1)
        s->unsent_in_order = false;
    s->unsent_last = t;
    s->unsent_count++;
}

static void ev_overflow(void *ud)
{
    side_t *s = ud;
    s->overflowed = true;
    s->unsent_in_order = true;
    conn_unsent_walk(s->conn, walk_unsent, s);
    if (s->final != NULL)
        assert_int_equal(conn_write(s->conn, s->final, strlen(s->final)),
                         CONN_OK);
    conn_close(s->conn, s->linger_ms);
}

static void ev_resumed(void *ud)
{
    side_t *s = ud;
    s->resumed = true;
}

static void ev_closed(void *ud)
{
    side_t *s = ud;
    s->closed = true;
    s->conn = NULL;
}

static const conn_events_t events = {
    .data = ev_data,
    .tls_done = ev_tls_done,
    .error = ev_error,
    .soft_limit = ev_soft,
    .overflow = ev_overflow,
    .resumed = ev_resumed,
    .closed = ev_closed,
};

/* ---- a loop with a listener on 127.0.0.1 ---------------------------- */

typedef struct net {
    uv_loop_t loop;
    uv_tcp_t listener;
    struct sockaddr_in addr;
    conn_opts_t server_opts;
    side_t server, client;
    bool connected;
    int connect_status;
} net_t;

static void on_listener_conn(uv_stream_t *l, int status)
{
    net_t *n = l->data;
    assert_int_equal(status, 0);
    assert_null(n->server.conn);
    n->server.tls_status = 1;
    n->server.conn = conn_new(&n->loop, &n->server_opts, &events, &n->server);
    assert_non_null(n->server.conn);
    assert_int_equal(conn_accept(n->server.conn, l), 0);
    conn_read_start(n->server.conn);
}

static void net_open(net_t *n, const conn_opts_t *server_opts)
{
    memset(n, 0, sizeof(*n));
    assert_int_equal(uv_loop_init(&n->loop), 0);
    if (server_opts != NULL)
        n->server_opts = *server_opts;
    uv_tcp_init(&n->loop, &n->listener);
    n->listener.data = n;
    uv_ip4_addr("127.0.0.1", 0, &n->addr);
    assert_int_equal(
        uv_tcp_bind(&n->listener, (const struct sockaddr *)&n->addr, 0), 0);
    int len = sizeof(n->addr);
    uv_tcp_getsockname(&n->listener, (struct sockaddr *)&n->addr, &len);
    assert_int_equal(
        uv_listen((uv_stream_t *)&n->listener, 8, on_listener_conn), 0);
}

/* Runs the loop until *flag or 10 s pass. */
static void run_until(net_t *n, const bool *flag)
{
    uint64_t deadline = uv_now(&n->loop) + 10000;
    while (!*flag && uv_now(&n->loop) < deadline)
        uv_run(&n->loop, UV_RUN_ONCE);
    assert_true(*flag);
}

static void on_connected(conn_t *c, int status, void *ud)
{
    net_t *n = ud;
    (void)c;
    n->connect_status = status;
    n->connected = true;
}

static void net_connect(net_t *n, const conn_opts_t *o)
{
    n->client.tls_status = 1;
    n->client.conn = conn_new(&n->loop, o, &events, &n->client);
    assert_non_null(n->client.conn);
    assert_int_equal(conn_connect(n->client.conn,
                                  (const struct sockaddr *)&n->addr,
                                  on_connected, n),
                     0);
    run_until(n, &n->connected);
    assert_int_equal(n->connect_status, 0);
    assert_string_equal(conn_peer_addr(n->client.conn), "127.0.0.1");
    conn_read_start(n->client.conn);
    while (n->server.conn == NULL)
        uv_run(&n->loop, UV_RUN_ONCE);
}

static void on_listener_closed(uv_handle_t *h)
{
    (void)h;
}

/* Closes what is left and checks that nothing leaked: every handle
 * closed, so the loop closes. */
static void net_close(net_t *n)
{
    if (n->server.conn != NULL)
        conn_abort(n->server.conn);
    if (n->client.conn != NULL)
        conn_abort(n->client.conn);
    uv_close((uv_handle_t *)&n->listener, on_listener_closed);
    while (uv_run(&n->loop, UV_RUN_ONCE) != 0)
        ;
    assert_int_equal(uv_loop_close(&n->loop), 0);
    buf_free(&n->server.in);
    buf_free(&n->client.in);
}

static void wait_bytes(net_t *n, side_t *s, size_t len)
{
    uint64_t deadline = uv_now(&n->loop) + 10000;
    while (s->in.len < len && uv_now(&n->loop) < deadline)
        uv_run(&n->loop, UV_RUN_ONCE);
    assert_int_equal(s->in.len, len);
}

/* ---- tests ----------------------------------------------------------- */

static void test_plain_order(void **state)
{
    (void)state;
    net_t n;
    net_open(&n, NULL);
    net_connect(&n, NULL);
    rcbuf_t *shared = rcbuf_new("<shared/>", 9);
    assert_int_equal(conn_write(n.client.conn, "<a/>", 4), CONN_OK);
    assert_int_equal(conn_send_shared(n.client.conn, shared), CONN_OK);
    assert_int_equal(conn_write(n.client.conn, "<b/>", 4), CONN_OK);
    assert_int_equal(conn_send_shared_tagged(n.client.conn, shared, &n),
                     CONN_OK);
    assert_int_equal(conn_write(n.client.conn, "<c/>", 4), CONN_OK);
    /* The queue holds references until the bytes are written. */
    assert_true(rcbuf_refs(shared) >= 1);
    const char *want = "<a/><shared/><b/><shared/><c/>";
    wait_bytes(&n, &n.server, strlen(want));
    assert_string_equal(n.server.in.data, want);
    assert_int_equal(rcbuf_refs(shared), 1);
    assert_int_equal(conn_queued(n.client.conn), 0);
    assert_false(conn_is_tls(n.client.conn));

    /* Orderly close by the server: the client sees EOF. */
    assert_int_equal(conn_write(n.server.conn, "bye", 3), CONN_OK);
    conn_close(n.server.conn, 1000);
    assert_int_equal(conn_write(n.server.conn, "late", 4), CONN_ERR_CLOSED);
    run_until(&n, &n.server.closed);
    while (n.client.error == 0)
        uv_run(&n.loop, UV_RUN_ONCE);
    assert_int_equal(n.client.error, CONN_ERR_EOF);
    assert_string_equal(n.client.in.data, "bye");
    rcbuf_unref(shared);
    net_close(&n);
    assert_true(n.client.closed);
}

/* Issue 7, item 5: with a flusher, output queued inside a callback is
 * written at the end of the loop's turn, not from inside the call that
 * queued it; what one turn queued goes out together. */
static void test_flusher_defers(void **state)
{
    (void)state;
    net_t n;
    net_open(&n, NULL);
    conn_flusher_t f;
    conn_flusher_init(&n.loop, &f);
    conn_opts_t o = {.flusher = &f};
    net_connect(&n, &o);
    rcbuf_t *shared = rcbuf_new("<b/>", 4);
    assert_int_equal(conn_write(n.client.conn, "<a/>", 4), CONN_OK);
    assert_int_equal(conn_send_shared(n.client.conn, shared), CONN_OK);
    /* Queued, not yet handed to the socket. */
    assert_int_equal(conn_in_flight(n.client.conn), 0);
    assert_int_equal(conn_queued(n.client.conn), 8);
    assert_ptr_equal(f.head, n.client.conn);
    wait_bytes(&n, &n.server, 8);
    assert_string_equal(n.server.in.data, "<a/><b/>");
    assert_null(f.head);
    /* A connection that ends while it waits is taken off the list. */
    assert_int_equal(conn_write(n.client.conn, "<c/>", 4), CONN_OK);
    assert_ptr_equal(f.head, n.client.conn);
    conn_abort(n.client.conn);
    assert_null(f.head);
    run_until(&n, &n.client.closed);
    n.client.conn = NULL;
    rcbuf_unref(shared);
    conn_flusher_close(&f);
    net_close(&n);
}

static void fill_block(char *p, size_t len, long i)
{
    memset(p, 'a' + (int)(i % 26), len);
    snprintf(p, len, "[%06ld]", i);
    p[8] = '-';
}

/* 8 MiB in blocks of mixed kinds, far more than the socket buffers take:
 * uv_write completes in parts and one write is in flight at a time; the
 * peer gets every byte, in order. */
static void test_plain_large(void **state)
{
    (void)state;
    net_t n;
    net_open(&n, NULL);
    net_connect(&n, NULL);
    enum { BLOCK = 4096, COUNT = 2048 };
    char block[BLOCK];
    buf_t want = BUF_INIT;
    for (long i = 0; i < COUNT; i++) {
        fill_block(block, BLOCK, i);
        assert_int_equal(buf_append(&want, block, BLOCK), 0);
        if (i % 3 == 0) {
            rcbuf_t *b = rcbuf_new(block, BLOCK);
            assert_int_equal(conn_send_shared(n.server.conn, b), CONN_OK);
            rcbuf_unref(b);
        } else {
            assert_int_equal(conn_write(n.server.conn, block, BLOCK), CONN_OK);
        }
    }
    assert_true(conn_queued(n.server.conn) > 0);
    wait_bytes(&n, &n.client, want.len);
    assert_memory_equal(n.client.in.data, want.data, want.len);
    buf_free(&want);
    net_close(&n);
}

static void test_tls(void **state)
{
    fx_t *f = *state;
    char err[256];
    tls_ctx_opts_t so = {.cert_file = f->crt, .key_file = f->key};
    tls_ctx_t *sctx = tls_ctx_new_server(&so, err, sizeof(err));
    tls_ctx_opts_t co = {.ca_file = f->crt};
    tls_ctx_t *cctx = tls_ctx_new_client(&co, err, sizeof(err));
    assert_non_null(sctx);
    assert_non_null(cctx);

    net_t n;
    net_open(&n, NULL);
    net_connect(&n, NULL);
    /* STARTTLS: the server's <proceed/> is queued before the switch and
     * goes out in plaintext; the client switches once it has read it. */
    assert_int_equal(conn_write(n.server.conn, "<proceed/>", 10), CONN_OK);
    assert_int_equal(conn_start_tls(n.server.conn, sctx, NULL), CONN_OK);
    wait_bytes(&n, &n.client, 10);
    assert_string_equal(n.client.in.data, "<proceed/>");
    buf_reset(&n.client.in);
    /* Queued before the handshake ends: sent encrypted after it. */
    assert_int_equal(conn_start_tls(n.client.conn, cctx, "example.org"),
                     CONN_OK);
    rcbuf_t *shared = rcbuf_new("<shared/>", 9);
    assert_int_equal(conn_write(n.client.conn, "<early/>", 8), CONN_OK);
    assert_int_equal(conn_send_shared(n.client.conn, shared), CONN_OK);
    while (n.client.tls_status == 1 || n.server.tls_status == 1)
        uv_run(&n.loop, UV_RUN_ONCE);
    assert_int_equal(n.client.tls_status, CONN_OK);
    assert_int_equal(n.server.tls_status, CONN_OK);
    assert_true(conn_is_tls(n.server.conn));

    /* Both ends derive the same channel-binding data. */
    unsigned char a[32], b[32];
    assert_int_equal(conn_cb_exporter(n.server.conn, a, sizeof(a)), 32);
    assert_int_equal(conn_cb_exporter(n.client.conn, b, sizeof(b)), 32);
    assert_memory_equal(a, b, 32);
    char **names = NULL;
    assert_int_equal(conn_peer_names(n.client.conn, &names), 3);
    assert_string_equal(names[0], "example.org");
    tls_names_free(names);

    wait_bytes(&n, &n.server, 17);
    assert_string_equal(n.server.in.data, "<early/><shared/>");
    assert_int_equal(rcbuf_refs(shared), 1);
    rcbuf_unref(shared);

    /* An orderly close sends close_notify: the client reads what came
     * before it, then learns that TLS ended (not a truncation). */
    assert_int_equal(conn_write(n.server.conn, "</stream>", 9), CONN_OK);
    conn_close(n.server.conn, 1000);
    while (n.client.error == 0)
        uv_run(&n.loop, UV_RUN_ONCE);
    assert_int_equal(n.client.error, CONN_ERR_TLS_CLOSED);
    assert_string_equal(n.client.in.data, "</stream>");
    net_close(&n);
    tls_ctx_free(sctx);
    tls_ctx_free(cctx);
}

static void test_tls_verify_fails(void **state)
{
    fx_t *f = *state;
    char err[256];
    tls_ctx_opts_t so = {.cert_file = f->crt, .key_file = f->key};
    tls_ctx_t *sctx = tls_ctx_new_server(&so, err, sizeof(err));
    tls_ctx_opts_t co = {.ca_file = f->crt};
    tls_ctx_t *cctx = tls_ctx_new_client(&co, err, sizeof(err));
    net_t n;
    net_open(&n, NULL);
    net_connect(&n, NULL);
    n.server.close_on_error = true;
    assert_int_equal(conn_start_tls(n.server.conn, sctx, NULL), CONN_OK);
    assert_int_equal(conn_start_tls(n.client.conn, cctx, "wrong.example"),
                     CONN_OK);
    while (n.client.tls_status == 1)
        uv_run(&n.loop, UV_RUN_ONCE);
    assert_int_equal(n.client.tls_status, CONN_ERR_TLS_VERIFY);
    conn_close(n.client.conn, 1000);
    net_close(&n);
    tls_ctx_free(sctx);
    tls_ctx_free(cctx);
}

/* A raw peer socket with a small receive buffer, connected to the
 * listener; the test reads it only when it chooses to. */
static int raw_peer(net_t *n)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    assert_int_equal(
        connect(fd, (const struct sockaddr *)&n->addr, sizeof(n->addr)), 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    while (n->server.conn == NULL)
        uv_run(&n->loop, UV_RUN_ONCE);
    return fd;
}

/* Reads what the raw peer has until EOF (true) or 10 s. */
static bool raw_drain(net_t *n, int fd, buf_t *out)
{
    uint64_t deadline = uv_now(&n->loop) + 10000;
    char b[65536];
    while (uv_now(&n->loop) < deadline) {
        ssize_t r = recv(fd, b, sizeof(b), 0);
        if (r == 0)
            return true;
        if (r > 0)
            assert_int_equal(buf_append(out, b, (size_t)r), 0);
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            return false;
        uv_run(&n->loop, UV_RUN_NOWAIT);
        if (r < 0)
            usleep(1000);
    }
    return false;
}

/* A peer that stops reading: the soft limit is reported, then at the hard
 * limit the unwritten blocks are detached (tags in order, the last one
 * written last), a final message bypasses the limit, and once the peer
 * reads again it gets every block that had been handed to the socket, then
 * the final message, then EOF. */
static void test_backpressure(void **state)
{
    (void)state;
    conn_opts_t o = {.soft_limit = 64 * 1024, .hard_limit = 512 * 1024};
    net_t n;
    net_open(&n, &o);
    int fd = raw_peer(&n);
    n.server.final = "FINAL";
    n.server.linger_ms = 5000;
    enum { BLOCK = 4096 };
    char block[BLOCK];
    long i;
    for (i = 0; i < 100000 && !n.server.overflowed; i++) {
        fill_block(block, BLOCK, i);
        /* Shared blocks and owned whole blocks, alternately. */
        if (i % 2 == 0) {
            assert_int_equal(conn_write_block(n.server.conn, block, BLOCK,
                                              (void *)(intptr_t)i),
                             CONN_OK);
        } else {
            rcbuf_t *b = rcbuf_new(block, BLOCK);
            assert_int_equal(
                conn_send_shared_tagged(n.server.conn, b, (void *)(intptr_t)i),
                CONN_OK);
            rcbuf_unref(b);
        }
        uv_run(&n.loop, UV_RUN_NOWAIT);
    }
    assert_true(n.server.overflowed);
    assert_int_equal(n.server.soft_up, 1);
    assert_true(n.server.unsent_count > 0);
    assert_true(n.server.unsent_in_order);
    assert_int_equal(n.server.unsent_last, i - 1);
    /* Closing: nothing more is accepted. */
    assert_int_equal(conn_write(n.server.conn, "x", 1), CONN_ERR_CLOSED);

    buf_t got = BUF_INIT;
    assert_true(raw_drain(&n, fd, &got));
    long sent = n.server.unsent_first;
    assert_int_equal(got.len, (size_t)sent * BLOCK + 5);
    for (long k = 0; k < sent; k++) {
        fill_block(block, BLOCK, k);
        assert_memory_equal(got.data + k * BLOCK, block, BLOCK);
    }
    assert_memory_equal(got.data + sent * BLOCK, "FINAL", 5);
    run_until(&n, &n.server.closed);
    buf_free(&got);
    close(fd);
    net_close(&n);
}

static void ev_unsent(void *ud, const char *data, size_t len, void *tag)
{
    walk_unsent(ud, data, len, tag);
}

static const conn_events_t events_hand_back = {
    .data = ev_data,
    .error = ev_error,
    .unsent = ev_unsent,
    .closed = ev_closed,
};

/* Issue 7, item 7: a connection cut short (abort) hands back, in order,
 * exactly the tagged blocks its peer never got whole — queued, in the
 * write in flight, or unacknowledged in the kernel (discarded by a reset):
 * what the peer reads afterwards and what was handed back are every block,
 * with no gap and no overlap. */
static void test_hand_back_on_abort(void **state)
{
    (void)state;
    net_t n;
    net_open(&n, NULL);
    int fd = raw_peer(&n);
    conn_set_owner(n.server.conn, &events_hand_back, &n.server);
    n.server.unsent_in_order = true;
    enum { BLOCK = 4096, N = 1500 };
    char block[BLOCK];
    for (long i = 0; i < N; i++) {
        fill_block(block, BLOCK, i);
        rcbuf_t *b = rcbuf_new(block, BLOCK);
        /* Tags are block numbers from 1 (NULL means untagged). */
        assert_int_equal(conn_send_shared_tagged(n.server.conn, b,
                                                 (void *)(intptr_t)(i + 1)),
                         CONN_OK);
        rcbuf_unref(b);
        uv_run(&n.loop, UV_RUN_NOWAIT);
    }
    /* Let the peer's (possibly delayed) acknowledgements arrive: what was
     * received but not yet acknowledged would be handed back too (at least
     * once, never lost). */
    for (int k = 0; k < 300; k++) {
        uv_run(&n.loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    assert_true(conn_queued(n.server.conn) > 0); /* the peer is stuck */
    conn_abort(n.server.conn);
    run_until(&n, &n.server.closed);
    buf_t got = BUF_INIT;
    raw_drain(&n, fd, &got); /* what reached it, then the reset */
    long whole = (long)(got.len / BLOCK);
    for (long k = 0; k < whole; k++) {
        fill_block(block, BLOCK, k);
        assert_memory_equal(got.data + k * BLOCK, block, BLOCK);
    }
    assert_true(n.server.unsent_count > 0);
    assert_true(n.server.unsent_in_order);
    assert_int_equal(n.server.unsent_first, whole + 1);
    assert_int_equal(n.server.unsent_last, N);
    assert_int_equal(n.server.unsent_count, N - whole);
    buf_free(&got);
    close(fd);
    net_close(&n);
}

/* The peer never reads again: the linger time bounds the close. */
static void test_hard_limit_linger(void **state)
{
    (void)state;
    conn_opts_t o = {.hard_limit = 256 * 1024};
    net_t n;
    net_open(&n, &o);
    int fd = raw_peer(&n);
    n.server.linger_ms = 300;
    char block[4096];
    memset(block, 'x', sizeof(block));
    for (int i = 0; i < 100000 && !n.server.overflowed; i++) {
        /* Owned bytes, through conn_write. */
        conn_write(n.server.conn, block, sizeof(block));
        uv_run(&n.loop, UV_RUN_NOWAIT);
    }
    assert_true(n.server.overflowed);
    assert_true(conn_closing(n.server.conn));
    uint64_t t0 = uv_now(&n.loop);
    run_until(&n, &n.server.closed);
    /* The peer never reads, so only the linger bound ends it. */
    assert_true(uv_now(&n.loop) - t0 >= 250);
    close(fd);
    net_close(&n);
}

/* Pausing stops reading for a while; `resumed` follows, and bytes sent
 * meanwhile arrive after it. The rate limit pauses the same way. */
static void test_pause_and_rate(void **state)
{
    (void)state;
    conn_opts_t o = {.rate_limit = 20000, .rate_burst = 20000};
    net_t n;
    net_open(&n, &o);
    net_connect(&n, NULL);
    conn_pause(n.server.conn, 300);
    uint64_t t0 = uv_now(&n.loop);
    assert_int_equal(conn_write(n.client.conn, "ping", 4), CONN_OK);
    run_until(&n, &n.server.resumed);
    assert_true(uv_now(&n.loop) - t0 >= 290);
    wait_bytes(&n, &n.server, 4);

    /* 60,000 bytes at 20,000 B/s with a 20,000 B burst: reads of up to
     * 16 KiB, the last one ending the wait, leave at least 1.1 s. */
    n.server.resumed = false;
    buf_reset(&n.server.in);
    char block[10000];
    memset(block, 'r', sizeof(block));
    t0 = uv_now(&n.loop);
    for (int i = 0; i < 6; i++)
        assert_int_equal(conn_write(n.client.conn, block, sizeof(block)),
                         CONN_OK);
    wait_bytes(&n, &n.server, 60000);
    assert_true(n.server.resumed);
    assert_true(uv_now(&n.loop) - t0 >= 1100);
    net_close(&n);
}

/* Aborting while a connect is in flight: the callback says cancelled and
 * the conn is still freed once. */
static void test_abort_connecting(void **state)
{
    (void)state;
    net_t n;
    net_open(&n, NULL);
    n.client.conn = conn_new(&n.loop, NULL, &events, &n.client);
    assert_int_equal(conn_connect(n.client.conn,
                                  (const struct sockaddr *)&n.addr,
                                  on_connected, &n),
                     0);
    conn_abort(n.client.conn);
    run_until(&n, &n.client.closed);
    assert_true(n.connected);
    assert_int_equal(n.connect_status, UV_ECANCELED);
    net_close(&n);
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(conn_strerror(CONN_ERR_TLS_CLOSED),
                        "the peer ended TLS");
    assert_string_equal(conn_strerror(12345), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_plain_order),
        cmocka_unit_test(test_flusher_defers),
        cmocka_unit_test(test_hand_back_on_abort),
        cmocka_unit_test(test_plain_large),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_tls_verify_fails),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_hard_limit_linger),
        cmocka_unit_test(test_pause_and_rate),
        cmocka_unit_test(test_abort_connecting),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
