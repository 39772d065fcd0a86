#include "net/conn.h"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "base/buf.h"

enum {
    OWN_READ_BUF = 16 * 1024,
    WRITE_MAX_BUFS = 64,          /* blocks gathered into one write */
    WRITE_MAX_BYTES = 256 * 1024, /* plaintext per write (TLS: encrypted) */
    OWN_COALESCE = 16 * 1024,     /* owned bytes appended to an owned tail */
};

/* One queued block: owned bytes or a shared rcbuf. `raw` blocks were
 * queued before conn_start_tls and go out unencrypted. */
typedef struct conn_block {
    struct conn_block *next;
    rcbuf_t *shared; /* NULL: the bytes are in own */
    buf_t own;
    void *tag;
    bool raw;
    bool whole;     /* one unit (a stanza): nothing is appended to it */
    bool unlimited; /* not counted against the hard limit */
    /* Once in a write: where the block's bytes end on the wire, counted
     * from the connection's first byte (ciphertext on a TLS connection),
     * so that what the peer acknowledged tells which blocks it has
     * whole. */
    uint64_t end;
} conn_block_t;

/* A layer turns socket bytes into owner plaintext (input) and queued
 * blocks into the next write (output). */
typedef struct conn_layer {
    const char *name;
    void (*input)(conn_t *c, const char *data, size_t len);
    /* Fills c->bufs/c->nbufs for the next write; moves the blocks it used
     * to c->inflight. */
    void (*output)(conn_t *c);
    /* Queues the orderly end of the layer (close_notify). */
    void (*shutdown)(conn_t *c);
} conn_layer_t;

struct conn {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_timer_t timer; /* pause (open) or linger (closing) */
    /* One request at a time: the connect comes first, the shutdown only
     * once no write is in flight; sharing the memory keeps an idle
     * connection small. */
    union {
        uv_connect_t connect;
        uv_write_t write;
        uv_shutdown_t shutdown;
    } req;
    const conn_layer_t *layer;
    conn_events_t ev;
    void *ud;
    conn_opts_t o;
    conn_connect_cb connect_cb;
    void *connect_ud;

    conn_block_t *head, *tail; /* not yet written */
    size_t queued;             /* bytes in head..tail */
    size_t unlimited;          /* of those, in blocks exempt from the limit */
    conn_block_t *inflight;    /* blocks of the write in flight */
    buf_t wire;                /* TLS: ciphertext of the write in flight */
    size_t inflight_bytes;
    uv_buf_t *bufs; /* WRITE_MAX_BUFS while writing, else NULL */
    unsigned nbufs;
    /* Tagged blocks the kernel took but the peer has not acknowledged yet:
     * kept until it does, so that a connection that dies with them still
     * in the kernel's send queue can hand them back. */
    conn_block_t *sent_head, *sent_tail;
    uint64_t wire_total;  /* bytes the kernel took, from the first one */
    uint64_t acked;       /* of those, acknowledged by the peer (at most) */
    conn_block_t *unsent; /* detached at overflow, during the event only */

    tls_conn_t *tls;
    bool handshaking;

    char *own_read_buf;
    double tokens;
    uint64_t tokens_ms;
    uint64_t paused_until;

    bool want_read, reading, paused, connecting;
    bool writing, closing, broken, handles_closed, shutting_down;
    bool close_notify_due; /* TLS: close_notify once the queue is written */
    /* FIN sent, waiting (until linger_deadline) for the peer to acknowledge
     * what the kernel still holds before the handles close. */
    bool draining;
    uint64_t linger_deadline; /* uv_now() ms; 0: no bound */
    bool soft_over, overflowing, nomem;
    bool graceful; /* closing after the output drained and FIN was sent */
    /* Listed in o.flusher's connections waiting for the turn's end. */
    bool flush_listed;
    conn_t *flush_prev, *flush_next;
    int handles_open;
    char addr[48];
};

const char *conn_strerror(int err)
{
    switch (err) {
    case CONN_OK:
        return "ok";
    case CONN_ERR_NOMEM:
        return "out of memory";
    case CONN_ERR_EOF:
        return "the peer closed the connection";
    case CONN_ERR_IO:
        return "read or write failed";
    case CONN_ERR_TLS:
        return "TLS failed";
    case CONN_ERR_TLS_VERIFY:
        return "the peer certificate did not verify";
    case CONN_ERR_TLS_CLOSED:
        return "the peer ended TLS";
    case CONN_ERR_CLOSED:
        return "the connection is closed";
    default:
        return "unknown error";
    }
}

/* ------------------------------------------------------------- blocks */

static size_t block_len(const conn_block_t *b)
{
    return b->shared != NULL ? rcbuf_len(b->shared) : b->own.len;
}

static const char *block_data(const conn_block_t *b)
{
    return b->shared != NULL ? rcbuf_data(b->shared) : b->own.data;
}

static void block_free(conn_block_t *b)
{
    rcbuf_unref(b->shared);
    buf_free(&b->own);
    free(b);
}

static void blocks_free(conn_block_t *b)
{
    while (b != NULL) {
        conn_block_t *next = b->next;
        block_free(b);
        b = next;
    }
}

static conn_block_t *queue_pop(conn_t *c)
{
    conn_block_t *b = c->head;
    c->head = b->next;
    if (c->head == NULL)
        c->tail = NULL;
    b->next = NULL;
    c->queued -= block_len(b);
    if (b->unlimited)
        c->unlimited -= block_len(b);
    return b;
}

/* ------------------------------------------------------------ flusher */

static void flush(conn_t *c);

static void flusher_remove(conn_t *c)
{
    if (!c->flush_listed)
        return;
    conn_flusher_t *f = c->o.flusher;
    if (c->flush_prev != NULL)
        c->flush_prev->flush_next = c->flush_next;
    else
        f->head = c->flush_next;
    if (c->flush_next != NULL)
        c->flush_next->flush_prev = c->flush_prev;
    c->flush_prev = c->flush_next = NULL;
    c->flush_listed = false;
}

/* Writes for every listed connection, one at a time: a write that fails
 * may close others (and unlist them) or queue more (and list them). */
static void flusher_run(conn_flusher_t *f)
{
    while (f->head != NULL) {
        conn_t *c = f->head;
        flusher_remove(c);
        flush(c);
    }
    uv_check_stop(&f->check);
    uv_idle_stop(&f->idle);
}

static void on_flusher_check(uv_check_t *h)
{
    flusher_run(h->data);
}

static void on_flusher_idle(uv_idle_t *h)
{
    flusher_run(h->data);
}

void conn_flusher_init(uv_loop_t *loop, conn_flusher_t *f)
{
    memset(f, 0, sizeof(*f));
    uv_check_init(loop, &f->check);
    uv_idle_init(loop, &f->idle);
    f->check.data = f;
    f->idle.data = f;
}

void conn_flusher_close(conn_flusher_t *f)
{
    uv_close((uv_handle_t *)&f->check, NULL);
    uv_close((uv_handle_t *)&f->idle, NULL);
}

static void flusher_add(conn_t *c)
{
    if (c->flush_listed)
        return;
    conn_flusher_t *f = c->o.flusher;
    if (f->head == NULL) {
        /* The check runs after this turn's I/O callbacks; the idle handle
         * makes a turn that queued from a timer poll without blocking. */
        uv_check_start(&f->check, on_flusher_check);
        uv_idle_start(&f->idle, on_flusher_idle);
    }
    c->flush_next = f->head;
    c->flush_prev = NULL;
    if (f->head != NULL)
        f->head->flush_prev = c;
    f->head = c;
    c->flush_listed = true;
}

/* Bytes the kernel took that the peer has not acknowledged (SIOCOUTQ).
 * False when that cannot be asked (the handle is closing): then nothing is
 * known beyond what was seen last. */
static bool unacked(conn_t *c, uint64_t *out)
{
    uv_os_fd_t fd;
    int n = 0;
    /* uv_fileno() fails once uv_close() was called. */
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 ||
        ioctl(fd, SIOCOUTQ, &n) != 0 || n < 0)
        return false;
    *out = (uint64_t)n;
    return true;
}

/* Frees the sent blocks the peer has acknowledged. */
static void prune_sent(conn_t *c)
{
    uint64_t outq;
    if (c->sent_head == NULL || c->broken || !unacked(c, &outq))
        return;
    uint64_t acked = c->wire_total - outq;
    if (acked > c->acked)
        c->acked = acked;
    while (c->sent_head != NULL && c->sent_head->end <= c->acked) {
        conn_block_t *b = c->sent_head;
        c->sent_head = b->next;
        block_free(b);
    }
    if (c->sent_head == NULL)
        c->sent_tail = NULL;
}

/* The connection is gone: every tagged block the peer never acknowledged
 * whole — sent but unacknowledged, in flight, still queued — goes back to
 * the owner, in order. close_handles() made sure that none of it can still
 * arrive (a reset discards the kernel's send queue). */
static void hand_back(conn_t *c)
{
    if (c->ev.unsent == NULL)
        return;
    const conn_block_t *lists[] = {c->sent_head, c->inflight, c->head};
    /* After an orderly end (output drained, FIN sent) what the kernel holds
     * still reaches a peer that reads. */
    for (size_t i = c->graceful ? 2 : 0; i < 3; i++)
        for (const conn_block_t *b = lists[i]; b != NULL; b = b->next)
            if (b->tag != NULL && (i == 2 || b->end > c->acked))
                c->ev.unsent(c->ud, block_data(b), block_len(b), b->tag);
}

static void on_handle_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->handles_open > 0)
        return;
    hand_back(c);
    if (c->ev.closed != NULL)
        c->ev.closed(c->ud);
    blocks_free(c->sent_head);
    blocks_free(c->head);
    blocks_free(c->inflight);
    buf_free(&c->wire);
    free(c->bufs);
    tls_conn_free(c->tls);
    free(c->own_read_buf);
    free(c);
}

/* Whether a tagged block was not acknowledged whole (sent or in flight
 * past c->acked). */
static bool tagged_unacked(const conn_t *c)
{
    const conn_block_t *lists[] = {c->sent_head, c->inflight};
    for (size_t i = 0; i < 2; i++)
        for (const conn_block_t *b = lists[i]; b != NULL; b = b->next)
            if (b->tag != NULL && b->end > c->acked)
                return true;
    return false;
}

static void close_handles(conn_t *c)
{
    if (c->handles_closed)
        return;
    c->handles_closed = true;
    c->closing = true;
    c->reading = false;
    flusher_remove(c);
    if (!c->graceful && !c->broken) {
        /* Cut short: closing cancels the write in flight (what libuv still
         * holds of it never reached the kernel), and what the kernel holds
         * unacknowledged is discarded by a reset rather than sent later,
         * so that what is handed back is exactly what the peer never
         * got. */
        uint64_t total = c->wire_total;
        if (c->writing)
            total += c->inflight_bytes -
                     uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
        uint64_t outq = 0;
        if (!unacked(c, &outq))
            outq = total - c->acked; /* nothing more is known */
        if (total - outq > c->acked)
            c->acked = total - outq;
        /* A reset only when a stanza is at stake: closing on untagged
         * bytes (a close tag, close_notify) ends with FIN as usual. */
        uv_os_fd_t fd;
        struct linger lg = {1, 0};
        if (outq > 0 && tagged_unacked(c) &&
            uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    /* Broken (reset, failed write): nothing is known past the last
     * acknowledgement seen. */
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* --------------------------------------------------------------- reading */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    conn_t *c = h->data;
    (void)suggested;
    if (c->o.read_buf != NULL) {
        *b = uv_buf_init(c->o.read_buf, (unsigned)c->o.read_buf_size);
        return;
    }
    if (c->own_read_buf == NULL)
        c->own_read_buf = malloc(OWN_READ_BUF);
    *b = uv_buf_init(c->own_read_buf,
                     c->own_read_buf != NULL ? OWN_READ_BUF : 0);
}

static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *b);

/* Reads exactly when the owner wants to, no pause holds, and the
 * connection is open. */
static void update_reading(conn_t *c)
{
    bool want = c->want_read && !c->paused && !c->closing && !c->broken &&
                !c->handles_closed;
    if (want == c->reading)
        return;
    if (want) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = true;
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void on_timer(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->draining) {
        uint64_t outq;
        if (unacked(c, &outq) && outq == 0) {
            c->graceful = true; /* the peer has it all */
            close_handles(c);
        } else if (uv_now(c->loop) >= c->linger_deadline) {
            conn_abort(c); /* a reset: the rest is handed back */
        }
        return;
    }
    if (c->closing) {
        /* The linger time passed with output still queued: the peer does
         * not read, so nothing more will reach it. */
        conn_abort(c);
        return;
    }
    c->paused = false;
    update_reading(c);
    if (c->ev.resumed != NULL)
        c->ev.resumed(c->ud);
}

void conn_pause(conn_t *c, uint64_t ms)
{
    if (c->closing || ms == 0)
        return;
    uint64_t until = uv_now(c->loop) + ms;
    if (c->paused && until <= c->paused_until)
        return;
    c->paused = true;
    c->paused_until = until;
    uv_timer_start(&c->timer, on_timer, ms, 0);
    update_reading(c);
}

/* Token bucket: rate_limit bytes per second, up to rate_burst saved. */
static void rate_account(conn_t *c, size_t n)
{
    if (c->o.rate_limit == 0)
        return;
    uint64_t now = uv_now(c->loop);
    c->tokens +=
        (double)c->o.rate_limit * (double)(now - c->tokens_ms) / 1000.0;
    if (c->tokens > (double)c->o.rate_burst)
        c->tokens = (double)c->o.rate_burst;
    c->tokens_ms = now;
    c->tokens -= (double)n;
    if (c->tokens < 0) {
        double ms = -c->tokens * 1000.0 / (double)c->o.rate_limit;
        conn_pause(c, (uint64_t)ms + 1);
    }
}

static void report_error(conn_t *c, int err)
{
    if (c->broken || c->closing)
        return;
    c->want_read = false;
    update_reading(c);
    if (c->ev.error != NULL)
        c->ev.error(c->ud, err);
}

static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = h->data;
    if (n == 0 || c->closing)
        return;
    if (n < 0) {
        if (n != UV_EOF)
            c->broken = true; /* nothing more can be sent either */
        int err = n == UV_EOF ? CONN_ERR_EOF : CONN_ERR_IO;
        c->want_read = false;
        update_reading(c);
        if (c->ev.error != NULL)
            c->ev.error(c->ud, err);
        return;
    }
    rate_account(c, (size_t)n);
    prune_sent(c); /* the peer speaks: it has likely acknowledged more */
    c->layer->input(c, b->base, (size_t)n);
    flush(c);
}

void conn_read_start(conn_t *c)
{
    c->want_read = true;
    update_reading(c);
}

void conn_read_stop(conn_t *c)
{
    c->want_read = false;
    update_reading(c);
}

/* --------------------------------------------------------------- writing */

static void check_soft(conn_t *c)
{
    if (c->o.soft_limit == 0)
        return;
    bool over = conn_queued(c) > c->o.soft_limit;
    if (over == c->soft_over)
        return;
    c->soft_over = over;
    if (c->ev.soft_limit != NULL)
        c->ev.soft_limit(c->ud, over);
}

static void on_write(uv_write_t *req, int status);

static void finish_close(conn_t *c);

static void flush(conn_t *c)
{
    if (c->writing || c->handles_closed)
        return;
    if (c->broken) {
        if (c->closing)
            close_handles(c);
        return;
    }
    c->nbufs = 0;
    c->inflight_bytes = 0;
    c->layer->output(c);
    if (c->nomem) {
        /* No memory to describe the write: as if the write failed. */
        blocks_free(c->inflight);
        c->inflight = NULL;
        c->inflight_bytes = 0;
        c->broken = true;
        if (c->closing)
            close_handles(c);
        else if (c->ev.error != NULL)
            c->ev.error(c->ud, CONN_ERR_NOMEM);
        return;
    }
    if (c->nbufs == 0) {
        /* An idle connection holds no buffer. */
        buf_free(&c->wire);
        free(c->bufs);
        c->bufs = NULL;
        check_soft(c);
        if (c->closing)
            finish_close(c);
        return;
    }
    c->req.write.data = c;
    int rc = uv_write(&c->req.write, (uv_stream_t *)&c->tcp, c->bufs, c->nbufs,
                      on_write);
    if (rc < 0) {
        /* Nothing was written: the blocks stay for hand_back(). */
        c->broken = true;
        if (c->closing)
            close_handles(c);
        else if (c->ev.error != NULL)
            c->ev.error(c->ud, CONN_ERR_IO);
        return;
    }
    c->writing = true;
}

static void on_write(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    c->writing = false;
    if (status < 0) {
        /* The blocks stay for hand_back(): cancelled by our close, or
         * failed. */
        c->broken = true;
    } else {
        /* The kernel took the write: tagged blocks wait for the peer's
         * acknowledgement, the rest is done. */
        c->wire_total += c->inflight_bytes;
        conn_block_t *b = c->inflight;
        while (b != NULL) {
            conn_block_t *next = b->next;
            b->next = NULL;
            if (b->tag != NULL) {
                if (c->sent_tail != NULL)
                    c->sent_tail->next = b;
                else
                    c->sent_head = b;
                c->sent_tail = b;
            } else {
                block_free(b);
            }
            b = next;
        }
        c->inflight = NULL;
        c->inflight_bytes = 0;
        buf_reset(&c->wire);
        prune_sent(c);
    }
    if (c->handles_closed)
        return;
    if (status < 0) {
        c->broken = true;
        if (c->closing) {
            close_handles(c);
            return;
        }
        c->want_read = false;
        update_reading(c);
        if (c->ev.error != NULL)
            c->ev.error(c->ud, CONN_ERR_IO);
        return;
    }
    flush(c);
}

static void add_buf(conn_t *c, const char *data, size_t len)
{
    /* Taken only while writing, so that an idle connection is small. */
    if (c->bufs == NULL &&
        (c->bufs = malloc(WRITE_MAX_BUFS * sizeof(*c->bufs))) == NULL) {
        c->nomem = true;
        return;
    }
    /* libuv only reads the bytes of a write; its type is not const. */
    c->bufs[c->nbufs++] = uv_buf_init((char *)(uintptr_t)data, (unsigned)len);
    c->inflight_bytes += len;
}

/* Moves blocks from the head of the queue to the write in flight, as they
 * are (no copy). With only_raw, stops at the first block to encrypt. */
static void take_blocks(conn_t *c, bool only_raw)
{
    conn_block_t **tailp = &c->inflight;
    while (*tailp != NULL)
        tailp = &(*tailp)->next;
    while (c->head != NULL && c->nbufs < WRITE_MAX_BUFS &&
           c->inflight_bytes < WRITE_MAX_BYTES && !c->nomem &&
           (!only_raw || c->head->raw)) {
        conn_block_t *b = queue_pop(c);
        add_buf(c, block_data(b), block_len(b));
        b->end = c->wire_total + c->inflight_bytes;
        *tailp = b;
        tailp = &b->next;
    }
}

/* ---- the plain layer */

static void plain_input(conn_t *c, const char *data, size_t len)
{
    if (c->ev.data != NULL)
        c->ev.data(c->ud, data, len);
}

static void plain_output(conn_t *c)
{
    take_blocks(c, false);
}

static void plain_shutdown(conn_t *c)
{
    (void)c;
}

static const conn_layer_t plain_layer = {
    .name = "plain",
    .input = plain_input,
    .output = plain_output,
    .shutdown = plain_shutdown,
};

/* ---- the TLS layer */

static void tls_fail(conn_t *c, int rc)
{
    int err = rc == TLS_ERR_VERIFY ? CONN_ERR_TLS_VERIFY : CONN_ERR_TLS;
    if (c->handshaking) {
        c->handshaking = false;
        /* The alert, if any, still goes out. */
        c->want_read = false;
        update_reading(c);
        if (c->ev.tls_done != NULL)
            c->ev.tls_done(c->ud, err);
        return;
    }
    report_error(c, err);
}

static void tls_input(conn_t *c, const char *data, size_t len)
{
    int rc = tls_conn_feed(c->tls, data, len);
    if (rc != TLS_OK && rc != TLS_ERR_CLOSED) {
        tls_fail(c, rc);
        return;
    }
    if (c->handshaking && tls_conn_handshake_done(c->tls)) {
        c->handshaking = false;
        if (c->ev.tls_done != NULL)
            c->ev.tls_done(c->ud, CONN_OK);
        if (c->closing || c->broken)
            return;
    }
    buf_t plain = BUF_INIT;
    int rrc = tls_conn_read(c->tls, &plain);
    if (plain.len > 0 && c->ev.data != NULL)
        c->ev.data(c->ud, plain.data, plain.len);
    buf_free(&plain);
    if (c->closing || c->broken)
        return;
    if (rc == TLS_ERR_CLOSED || rrc == TLS_ERR_CLOSED)
        report_error(c, CONN_ERR_TLS_CLOSED);
    else if (rrc != TLS_OK)
        report_error(c, CONN_ERR_TLS);
}

static void tls_output(conn_t *c)
{
    /* Plaintext queued before the switch (<proceed/>) goes first. */
    take_blocks(c, true);
    if (c->nbufs > 0)
        return;
    /* Ciphertext the layer made on its own (handshake, alerts, blocks
     * encrypted at shutdown) comes before the blocks encrypted here. */
    conn_block_t **tailp = &c->inflight;
    while (*tailp != NULL)
        tailp = &(*tailp)->next;
    size_t done = 0;
    while (!c->handshaking && !c->shutting_down && c->head != NULL &&
           !c->head->raw && done < WRITE_MAX_BYTES) {
        conn_block_t *b = queue_pop(c);
        done += block_len(b);
        int rc = tls_conn_write(c->tls, block_data(b), block_len(b));
        /* Kept in flight until the write completes, with the end of its
         * records, so that a write cut short can hand it back. */
        b->end = c->wire_total + c->wire.len + tls_conn_output_pending(c->tls);
        *tailp = b;
        tailp = &b->next;
        if (rc != TLS_OK)
            break;
    }
    if (c->close_notify_due && c->head == NULL) {
        /* RFC 8446 §6.1: close_notify last, after everything queued. */
        c->close_notify_due = false;
        tls_conn_shutdown(c->tls);
        c->shutting_down = true;
    }
    if (tls_conn_take_output(c->tls, &c->wire) != TLS_OK || c->wire.len == 0)
        return;
    add_buf(c, c->wire.data, c->wire.len);
}

static void tls_shutdown(conn_t *c)
{
    if (c->handshaking)
        return;
    /* What is queued is still written block by block, each kept with its
     * tag until acknowledged (a peer that never reads gets it handed
     * back); close_notify follows the last one (tls_output). */
    c->close_notify_due = true;
}

static const conn_layer_t tls_layer = {
    .name = "tls",
    .input = tls_input,
    .output = tls_output,
    .shutdown = tls_shutdown,
};

/* ------------------------------------------------------------- queueing */

static void overflow(conn_t *c)
{
    c->overflowing = true;
    /* Detach what was never written (raw blocks are a handful of bytes
     * before a TLS switch and stay). */
    conn_block_t *keep = NULL, **kp = &keep, **up = &c->unsent;
    while (c->head != NULL) {
        conn_block_t *b = queue_pop(c);
        if (b->raw) {
            *kp = b;
            kp = &b->next;
            c->queued += block_len(b);
        } else {
            *up = b;
            up = &b->next;
        }
    }
    c->head = keep;
    c->tail = keep;
    while (c->tail != NULL && c->tail->next != NULL)
        c->tail = c->tail->next;
    if (c->ev.overflow != NULL)
        c->ev.overflow(c->ud);
    blocks_free(c->unsent);
    c->unsent = NULL;
    if (!c->closing)
        conn_close(c, c->o.linger_ms ? c->o.linger_ms : 10000);
}

static void enqueue(conn_t *c, conn_block_t *b)
{
    b->raw = false;
    if (c->tail != NULL)
        c->tail->next = b;
    else
        c->head = b;
    c->tail = b;
    c->queued += block_len(b);
}

/* After queueing: the limits, then a write if none is in flight. */
static void after_queue(conn_t *c)
{
    if (c->o.hard_limit > 0 && !c->overflowing &&
        conn_queued(c) - c->unlimited > c->o.hard_limit) {
        overflow(c);
        return;
    }
    check_soft(c);
    if (c->o.flusher != NULL && !c->closing)
        flusher_add(c);
    else
        flush(c);
}

static int write_owned(conn_t *c, const void *data, size_t len, bool merge,
                       void *tag)
{
    if (c->closing || c->broken)
        return CONN_ERR_CLOSED;
    if (len == 0)
        return CONN_OK;
    conn_block_t *t = c->tail;
    if (merge && t != NULL && t->shared == NULL && t->tag == NULL && !t->raw &&
        !t->whole && t->own.len + len <= OWN_COALESCE) {
        if (buf_append(&t->own, data, len) < 0)
            return CONN_ERR_NOMEM;
        c->queued += len;
    } else {
        conn_block_t *b = calloc(1, sizeof(*b));
        if (b == NULL)
            return CONN_ERR_NOMEM;
        if (buf_append(&b->own, data, len) < 0) {
            free(b);
            return CONN_ERR_NOMEM;
        }
        b->tag = tag;
        b->whole = !merge;
        enqueue(c, b);
    }
    after_queue(c);
    return CONN_OK;
}

int conn_write(conn_t *c, const void *data, size_t len)
{
    return write_owned(c, data, len, true, NULL);
}

int conn_write_block(conn_t *c, const void *data, size_t len, void *tag)
{
    return write_owned(c, data, len, false, tag);
}

int conn_send_shared_tagged(conn_t *c, rcbuf_t *rb, void *tag)
{
    return conn_send_shared_ex(c, rb, tag, false);
}

int conn_send_shared_ex(conn_t *c, rcbuf_t *rb, void *tag, bool unlimited)
{
    if (c->closing || c->broken)
        return CONN_ERR_CLOSED;
    conn_block_t *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return CONN_ERR_NOMEM;
    b->shared = rcbuf_ref(rb);
    b->tag = tag;
    enqueue(c, b);
    if (unlimited) {
        b->unlimited = true;
        c->unlimited += block_len(b);
    }
    after_queue(c);
    return CONN_OK;
}

int conn_send_shared(conn_t *c, rcbuf_t *b)
{
    return conn_send_shared_tagged(c, b, NULL);
}

void conn_unsent_walk(conn_t *c, conn_unsent_cb fn, void *arg)
{
    for (conn_block_t *b = c->unsent; b != NULL; b = b->next)
        fn(arg, block_data(b), block_len(b), b->tag);
}

size_t conn_in_flight(const conn_t *c)
{
    return c->writing ? c->inflight_bytes : 0;
}

size_t conn_queued(const conn_t *c)
{
    return c->queued + c->inflight_bytes;
}

/* ----------------------------------------------------------------- TLS */

int conn_start_tls(conn_t *c, tls_ctx_t *ctx, const char *server_name)
{
    if (c->tls != NULL || c->closing)
        return CONN_ERR_CLOSED;
    c->tls = server_name != NULL ? tls_conn_new_client(ctx, server_name)
                                 : tls_conn_new_server(ctx);
    if (c->tls == NULL)
        return CONN_ERR_NOMEM;
    for (conn_block_t *b = c->head; b != NULL; b = b->next)
        b->raw = true;
    c->handshaking = true;
    c->layer = &tls_layer;
    flush(c); /* a client's ClientHello */
    return CONN_OK;
}

bool conn_is_tls(const conn_t *c)
{
    return c->tls != NULL;
}

tls_conn_t *conn_tls(conn_t *c)
{
    return c->tls;
}

int conn_cb_exporter(conn_t *c, unsigned char *out, size_t size)
{
    return c->tls != NULL ? tls_conn_cb_exporter(c->tls, out, size) : -1;
}

int conn_cb_unique(conn_t *c, unsigned char *out, size_t size)
{
    return c->tls != NULL ? tls_conn_cb_unique(c->tls, out, size) : -1;
}

int conn_peer_names(conn_t *c, char ***names)
{
    *names = NULL;
    return c->tls != NULL ? tls_conn_peer_names(c->tls, names) : 0;
}

/* -------------------------------------------------------------- closing */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn_t *c = req->data;
    uint64_t outq = 0;
    if (status == 0 && c->linger_deadline != 0 && unacked(c, &outq) &&
        outq > 0) {
        /* Everything was written and FIN follows it, but the peer has not
         * taken it all: wait for that within the linger time, so that a
         * peer that never reads gets it handed back instead of lost. */
        c->draining = true;
        uv_timer_start(&c->timer, on_timer, 20, 20);
        return;
    }
    c->graceful = status == 0;
    close_handles(c);
}

/* The output is drained: FIN, then close. */
static void finish_close(conn_t *c)
{
    if (c->handles_closed)
        return;
    c->req.shutdown.data = c;
    if (c->broken || c->connecting ||
        uv_shutdown(&c->req.shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        close_handles(c);
}

void conn_close(conn_t *c, unsigned linger_ms)
{
    if (c->closing)
        return;
    c->closing = true;
    update_reading(c);
    uv_timer_stop(&c->timer);
    if (c->broken) {
        close_handles(c);
        return;
    }
    c->layer->shutdown(c);
    if (linger_ms > 0) {
        c->linger_deadline = uv_now(c->loop) + linger_ms;
        uv_timer_start(&c->timer, on_timer, linger_ms, 0);
    }
    flush(c);
}

void conn_abort(conn_t *c)
{
    c->closing = true;
    close_handles(c);
}

bool conn_closing(const conn_t *c)
{
    return c->closing;
}

/* ------------------------------------------------------------- creating */

conn_t *conn_new(uv_loop_t *loop, const conn_opts_t *o, const conn_events_t *ev,
                 void *ud)
{
    conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->loop = loop;
    if (o != NULL)
        c->o = *o;
    if (ev != NULL)
        c->ev = *ev;
    c->ud = ud;
    c->layer = &plain_layer;
    c->tokens = (double)c->o.rate_burst;
    c->tokens_ms = uv_now(loop);
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    return c;
}

void conn_set_owner(conn_t *c, const conn_events_t *ev, void *ud)
{
    c->ev = *ev;
    c->ud = ud;
}

static void note_peer(conn_t *c)
{
    struct sockaddr_storage ss;
    conn_peer_sockaddr(c, &ss);
    if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, c->addr, sizeof(c->addr));
    else if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, c->addr, sizeof(c->addr));
}

/* TCP keepalive on every connection, both directions: a peer that
 * vanished without a FIN or RST (a phone that lost its network, a NAT that
 * forgot the mapping) is found after CONN_KEEPALIVE_IDLE s of silence plus
 * CONN_KEEPALIVE_COUNT unanswered probes CONN_KEEPALIVE_INTERVAL s apart,
 * even when nothing above pings it. */
enum {
    CONN_KEEPALIVE_IDLE = 120,
    CONN_KEEPALIVE_INTERVAL = 30,
    CONN_KEEPALIVE_COUNT = 4,
};

static void set_keepalive(conn_t *c)
{
    uv_tcp_keepalive(&c->tcp, 1, CONN_KEEPALIVE_IDLE);
#if defined(TCP_KEEPINTVL) && defined(TCP_KEEPCNT)
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
        int intvl = CONN_KEEPALIVE_INTERVAL, cnt = CONN_KEEPALIVE_COUNT;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    }
#endif
}

int conn_accept(conn_t *c, uv_stream_t *listener)
{
    int rc = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (rc < 0)
        return rc;
    uv_tcp_nodelay(&c->tcp, 1);
    set_keepalive(c);
    note_peer(c);
    return 0;
}

static void on_connect(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    c->connecting = false;
    if (status == 0 && !c->closing) {
        uv_tcp_nodelay(&c->tcp, 1);
        set_keepalive(c);
        note_peer(c);
    }
    if (c->connect_cb != NULL)
        c->connect_cb(c, c->closing && status == 0 ? UV_ECANCELED : status,
                      c->connect_ud);
}

int conn_connect(conn_t *c, const struct sockaddr *sa, conn_connect_cb cb,
                 void *ud)
{
    c->connect_cb = cb;
    c->connect_ud = ud;
    c->req.connect.data = c;
    int rc = uv_tcp_connect(&c->req.connect, &c->tcp, sa, on_connect);
    c->connecting = rc == 0;
    return rc;
}

const char *conn_peer_addr(const conn_t *c)
{
    return c->addr;
}

void conn_peer_sockaddr(const conn_t *c, struct sockaddr_storage *out)
{
    int len = sizeof(*out);
    memset(out, 0, sizeof(*out));
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)out, &len);
}
