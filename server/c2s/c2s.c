/* Client-to-server connections on libuv: accept, TLS, timers, rate limits,
 * and the hooks that connect a stream_t to the store and the router.
 *
 * Lifetimes. A session is freed only when (a) its libuv handles have all
 * been closed and (b) no asynchronous request (store lookup, password check
 * on the thread pool) still refers to it. Every path that ends a connection
 * goes through session_close(), which is idempotent; the free happens in
 * session_maybe_free() from a libuv callback, never inside a stream hook. */
#include "c2s/c2s.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

/* Bytes queued for a client that does not read; past this the connection
 * is dropped rather than letting one slow reader hold unbounded memory. */
enum { OUT_HARD_LIMIT = 4 * 1024 * 1024 };

struct c2s_listener {
    c2s_listener_t *next;
    server_t *srv;
    uv_tcp_t tcp;
    bool direct_tls;
    char name[80];
};

enum timer_mode {
    TIMER_HANDSHAKE, /* accept → bound */
    TIMER_IDLE,      /* bound: no byte from the client for this long */
    TIMER_CLOSE,     /* our close tag sent: waiting for the client's */
};

struct c2s_session {
    route_target_t target;
    c2s_session_t *prev, *next;
    server_t *srv;
    const stream_config_t *stream_cfg;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_timer_t throttle; /* resumes reading after a pause */
    enum timer_mode timer_mode;
    stream_t *stream;
    tls_conn_t *tls;
    bool tls_handshaking;
    bool direct_tls;
    char addr[48];

    buf_t out;      /* waiting to be written */
    buf_t inflight; /* being written */
    uv_write_t wreq;
    bool writing;

    bool closing; /* close once the output is flushed */
    bool broken;  /* a read or write failed: nothing more can be sent */
    bool handles_closed;
    int handles_open;
    unsigned pending; /* async requests that refer to this session */
    bool paused;
    bool auth_delay; /* a SASL failure is being held back (throttle timer) */
    double tokens;
    uint64_t tokens_ms;
};

static void session_close(c2s_session_t *s);
static void session_after_stream(c2s_session_t *s);

static c2s_session_t *from_target(route_target_t *t)
{
    return (c2s_session_t *)((char *)t - offsetof(c2s_session_t, target));
}

/* ---------------------------------------------------------------- free */

static void session_maybe_free(c2s_session_t *s)
{
    if (s->handles_open > 0 || s->pending > 0 || !s->handles_closed)
        return;
    server_t *srv = s->srv;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    srv->session_count--;
    router_unbind(srv->router, &s->target);
    jid_clear(&s->target.jid);
    stream_free(s->stream);
    tls_conn_free(s->tls);
    buf_free(&s->out);
    buf_free(&s->inflight);
    LOG(&srv->log, LOG_DEBUG, s->target.conn, "connection freed");
    free(s);
}

static void on_handle_closed(uv_handle_t *h)
{
    c2s_session_t *s = h->data;
    s->handles_open--;
    session_maybe_free(s);
}

static void close_handles(c2s_session_t *s)
{
    if (s->handles_closed)
        return;
    s->handles_closed = true;
    uv_close((uv_handle_t *)&s->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    uv_close((uv_handle_t *)&s->throttle, on_handle_closed);
}

/* --------------------------------------------------------------- output */

static void flush_out(c2s_session_t *s);

static void on_write(uv_write_t *req, int status)
{
    c2s_session_t *s = req->data;
    s->writing = false;
    buf_free(&s->inflight);
    if (status < 0) {
        LOG(&s->srv->log, LOG_DEBUG, s->target.conn, "write failed: %s",
            uv_strerror(status));
        s->broken = true;
        s->out.len = 0;
        stream_abort(s->stream); /* calls session_close via the hook */
        session_close(s);
        close_handles(s); /* nothing more can be written */
        return;
    }
    flush_out(s);
}

static void flush_out(c2s_session_t *s)
{
    if (s->handles_closed)
        return;
    if (!s->writing && s->out.len > 0) {
        s->inflight = s->out;
        s->out = (buf_t)BUF_INIT;
        uv_buf_t b = uv_buf_init(s->inflight.data, (unsigned)s->inflight.len);
        s->wreq.data = s;
        int rc = uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &b, 1, on_write);
        if (rc < 0) {
            buf_free(&s->inflight);
            close_handles(s);
            return;
        }
        s->writing = true;
        return;
    }
    if (!s->writing && s->out.len == 0) {
        buf_free(&s->out); /* an idle session holds no buffer */
        if (s->closing)
            close_handles(s);
    }
}

/* Puts plaintext on the wire, through TLS when it is on. */
static void put_bytes(c2s_session_t *s, const char *data, size_t len)
{
    if (s->closing || s->handles_closed)
        return;
    if (s->tls != NULL) {
        if (tls_conn_write(s->tls, data, len) != TLS_OK ||
            tls_conn_take_output(s->tls, &s->out) != TLS_OK) {
            session_close(s);
            return;
        }
    } else if (buf_append(&s->out, data, len) < 0) {
        session_close(s);
        return;
    }
    if (s->out.len + s->inflight.len > OUT_HARD_LIMIT) {
        LOG(&s->srv->log, LOG_WARN, s->target.conn,
            "client does not read; %zu bytes queued: dropping it",
            s->out.len + s->inflight.len);
        s->out.len = 0;
        stream_abort(s->stream);
        session_close(s);
        close_handles(s); /* the stuck write never ends: cancel it */
        return;
    }
    flush_out(s);
}

/* --------------------------------------------------------------- timers */

static void on_timer(uv_timer_t *t)
{
    c2s_session_t *s = t->data;
    switch (s->timer_mode) {
    case TIMER_HANDSHAKE:
    case TIMER_IDLE:
        LOG(&s->srv->log, LOG_INFO, s->target.conn, "%s timeout",
            s->timer_mode == TIMER_IDLE ? "idle" : "negotiation");
        stream_error(s->stream, "connection-timeout", NULL);
        session_after_stream(s);
        break;
    case TIMER_CLOSE:
        /* RFC 6120 §4.4: the client did not answer our close tag in a
         * reasonable time; the stream is void. */
        stream_abort(s->stream);
        session_close(s);
        close_handles(s); /* do not wait for output the peer never reads */
        break;
    }
}

static void set_timer(c2s_session_t *s, enum timer_mode mode, double seconds)
{
    if (s->handles_closed)
        return;
    s->timer_mode = mode;
    if (seconds <= 0) {
        uv_timer_stop(&s->timer);
        return;
    }
    uv_timer_start(&s->timer, on_timer, (uint64_t)(seconds * 1000.0), 0);
}

static void on_resume(uv_timer_t *t);

static void pause_reading(c2s_session_t *s, uint64_t ms)
{
    if (s->handles_closed || ms == 0)
        return;
    uv_read_stop((uv_stream_t *)&s->tcp);
    s->paused = true;
    uv_timer_start(&s->throttle, on_resume, ms, 0);
}

/* ------------------------------------------------------------ the stream */

/* After any call into the stream: follow its state. */
static void session_after_stream(c2s_session_t *s)
{
    if (s->handles_closed)
        return;
    stream_state_t st = stream_state(s->stream);
    if (st == STREAM_CLOSING && s->timer_mode != TIMER_CLOSE) {
        /* No stanza may be routed to a stream we are closing. */
        router_unbind(s->srv->router, &s->target);
        set_timer(s, TIMER_CLOSE, s->srv->cfg->close_timeout);
    }
    flush_out(s);
}

static void hook_send(void *ud, const char *data, size_t len)
{
    put_bytes(ud, data, len);
}

static void hook_start_tls(void *ud)
{
    c2s_session_t *s = ud;
    s->tls = tls_conn_new_server(s->srv->tls);
    if (s->tls == NULL) {
        session_close(s);
        return;
    }
    s->tls_handshaking = true;
}

static void hook_close(void *ud)
{
    session_close(ud);
}

static void on_account(void *ud, int err, const store_account_t *a)
{
    c2s_session_t *s = ud;
    s->pending--;
    if (s->handles_closed || s->closing) {
        session_maybe_free(s);
        return;
    }
    if (err == STORE_OK)
        stream_sasl_account(s->stream, true, &a->sha1, &a->sha256,
                            a->has_digest_md5 ? a->digest_md5 : NULL);
    else if (err == STORE_ERR_NOT_FOUND)
        stream_sasl_account(s->stream, false, NULL, NULL, NULL);
    else
        stream_sasl_lookup_failed(s->stream);
    session_after_stream(s);
}

static void hook_lookup_account(void *ud, const char *domain, const char *node)
{
    c2s_session_t *s = ud;
    s->pending++;
    store_account_get(s->srv->store, domain, node, on_account, s);
}

struct pw_work {
    uv_work_t req;
    c2s_session_t *s;
    sasl_server_t *sess;
    bool ok;
};

static void pw_work(uv_work_t *req)
{
    struct pw_work *w = req->data;
    /* PBKDF2 runs here, on the thread pool, never on the loop. */
    w->ok = sasl_server_check_password(w->sess);
}

static void pw_done(uv_work_t *req, int status)
{
    struct pw_work *w = req->data;
    c2s_session_t *s = w->s;
    bool ok = status == 0 && w->ok;
    free(w);
    s->pending--;
    if (s->handles_closed || s->closing) {
        session_maybe_free(s);
        return;
    }
    stream_sasl_password_checked(s->stream, ok);
    session_after_stream(s);
}

static void hook_check_password(void *ud, sasl_server_t *sess)
{
    c2s_session_t *s = ud;
    struct pw_work *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        stream_sasl_password_checked(s->stream, false);
        return;
    }
    w->s = s;
    w->sess = sess;
    w->req.data = w;
    s->pending++;
    if (uv_queue_work(s->srv->loop, &w->req, pw_work, pw_done) < 0) {
        s->pending--;
        free(w);
        stream_sasl_password_checked(s->stream, false);
    }
}

static uint64_t now_ms(const server_t *srv)
{
    return uv_now(srv->loop);
}

/* Repeated SASL failures from one address are answered ever more slowly:
 * the n-th failure within ten minutes is held back auth_failure_delay ×
 * (n - 1) seconds, up to 30 s, on whichever connection it happens, and
 * nothing else from that client is read or handled meanwhile. */
static unsigned hook_auth_failed(void *ud)
{
    c2s_session_t *s = ud;
    server_t *srv = s->srv;
    uint64_t now = now_ms(srv);
    size_t h = 0;
    for (const char *p = s->addr; *p != '\0'; p++)
        h = h * 31 + (unsigned char)*p;
    auth_slot_t *slot = &srv->auth_slots[h % AUTH_SLOTS];
    if (strcmp(slot->addr, s->addr) != 0 || now - slot->last_ms > 600000) {
        snprintf(slot->addr, sizeof(slot->addr), "%s", s->addr);
        slot->failures = 0;
    }
    double delay = srv->cfg->auth_failure_delay * slot->failures;
    slot->failures++;
    slot->last_ms = now;
    if (delay > 30.0)
        delay = 30.0;
    LOG(&srv->log, LOG_INFO, s->target.conn,
        "authentication failed from %s (%u recent); answering in %.1f s",
        s->addr, slot->failures, delay);
    unsigned ms = (unsigned)(delay * 1000.0);
    if (ms > 0) {
        s->auth_delay = true;
        pause_reading(s, ms);
    }
    return ms;
}

static void hook_bind(void *ud, const jid_t *user, const char *resource)
{
    c2s_session_t *s = ud;
    const char *cond = router_bind(s->srv->router, &s->target, user, resource);
    if (cond != NULL) {
        LOG(&s->srv->log, LOG_INFO, s->target.conn, "bind refused: %s", cond);
        stream_bind_done(s->stream, NULL, cond);
        return;
    }
    char full[JID_FORMAT_BUF];
    jid_format(&s->target.jid, false, full, sizeof(full));
    LOG(&s->srv->log, LOG_INFO, s->target.conn, "bound %s", full);
    stream_bind_done(s->stream, s->target.jid.resource, NULL);
    set_timer(s, TIMER_IDLE, s->srv->cfg->idle_timeout);
}

static void hook_stanza(void *ud, xml_tree_t *stanza)
{
    c2s_session_t *s = ud;
    router_route(s->srv->router, &s->target, stanza);
}

static const stream_hooks_t c2s_hooks = {
    .send = hook_send,
    .start_tls = hook_start_tls,
    .close = hook_close,
    .lookup_account = hook_lookup_account,
    .check_password = hook_check_password,
    .auth_failed = hook_auth_failed,
    .bind = hook_bind,
    .stanza = hook_stanza,
};

/* ------------------------------------------------------- router target */

static bool target_deliver(route_target_t *t, route_stanza_t *st)
{
    c2s_session_t *s = from_target(t);
    rcbuf_t *b = route_stanza_bytes(st);
    bool ok = stream_send_raw(s->stream, rcbuf_data(b), rcbuf_len(b));
    flush_out(s);
    return ok;
}

static void target_kick(route_target_t *t, const char *condition)
{
    c2s_session_t *s = from_target(t);
    stream_error(s->stream, condition, NULL);
    session_after_stream(s);
}

static const route_target_ops_t c2s_target_ops = {
    .deliver = target_deliver,
    .kick = target_kick,
};

/* ----------------------------------------------------------------- input */

static void session_close(c2s_session_t *s)
{
    if (s->closing)
        return;
    s->closing = true;
    router_unbind(s->srv->router, &s->target);
    if (!s->handles_closed) {
        uv_read_stop((uv_stream_t *)&s->tcp);
        uv_timer_stop(&s->throttle);
        /* RFC 8446 §6.1: TLS ends with close_notify, so that the client
         * can tell our end from a truncation. */
        if (s->tls != NULL && !s->broken && !s->tls_handshaking &&
            tls_conn_shutdown(s->tls) == TLS_OK)
            tls_conn_take_output(s->tls, &s->out);
        /* Output a client never reads must not keep the connection. */
        set_timer(s, TIMER_CLOSE, s->srv->cfg->close_timeout);
    }
    flush_out(s); /* closes the handles once the output is written */
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    c2s_session_t *s = h->data;
    (void)suggested;
    /* libuv reads into this and calls on_read before the next allocation,
     * so one buffer per loop serves every connection. */
    *b = uv_buf_init((char *)s->srv->read_buf, sizeof(s->srv->read_buf));
}

static void tls_handshake_progress(c2s_session_t *s)
{
    if (!s->tls_handshaking || !tls_conn_handshake_done(s->tls))
        return;
    s->tls_handshaking = false;
    unsigned char exporter[32], unique[64];
    int elen = tls_conn_cb_exporter(s->tls, exporter, sizeof(exporter));
    int ulen = tls_conn_cb_unique(s->tls, unique, sizeof(unique));
    char **names = NULL;
    int nnames = tls_conn_peer_names(s->tls, &names);
    stream_tls_info_t info = {
        .cb_exporter = elen > 0 ? exporter : NULL,
        .cb_exporter_len = elen > 0 ? (size_t)elen : 0,
        .cb_unique = ulen > 0 ? unique : NULL,
        .cb_unique_len = ulen > 0 ? (size_t)ulen : 0,
        .cert_names = (const char *const *)names,
        .cert_name_count = nnames > 0 ? (size_t)nnames : 0,
    };
    LOG(&s->srv->log, LOG_DEBUG, s->target.conn, "TLS established: %s%s%s",
        tls_conn_version(s->tls), tls_conn_alpn(s->tls) ? ", ALPN " : "",
        tls_conn_alpn(s->tls) ? tls_conn_alpn(s->tls) : "");
    stream_tls_done(s->stream, true, &info);
    if (names != NULL)
        tls_names_free(names);
}

static void rate_limit(c2s_session_t *s, size_t n)
{
    const server_config_t *cfg = s->srv->cfg;
    if (cfg->rate_limit == 0)
        return;
    uint64_t now = now_ms(s->srv);
    s->tokens +=
        (double)cfg->rate_limit * (double)(now - s->tokens_ms) / 1000.0;
    if (s->tokens > (double)cfg->rate_burst)
        s->tokens = (double)cfg->rate_burst;
    s->tokens_ms = now;
    s->tokens -= (double)n;
    if (s->tokens < 0) {
        /* Read less to slow a fast sender down (CONVENTIONS.md, I/O). */
        double ms = -s->tokens * 1000.0 / (double)cfg->rate_limit;
        pause_reading(s, (uint64_t)ms + 1);
    }
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *b)
{
    c2s_session_t *s = h->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        LOG(&s->srv->log, LOG_DEBUG, s->target.conn, "connection ended: %s",
            nread == UV_EOF ? "EOF" : uv_strerror((int)nread));
        if (nread != UV_EOF)
            s->broken = true;
        stream_abort(s->stream);
        session_close(s);
        return;
    }
    if (s->closing)
        return;
    rate_limit(s, (size_t)nread);
    if (s->timer_mode == TIMER_IDLE)
        set_timer(s, TIMER_IDLE, s->srv->cfg->idle_timeout);

    if (s->tls == NULL) {
        stream_feed(s->stream, b->base, (size_t)nread);
        session_after_stream(s);
        return;
    }
    int rc = tls_conn_feed(s->tls, b->base, (size_t)nread);
    tls_conn_take_output(s->tls, &s->out);
    if (rc != TLS_OK && rc != TLS_ERR_CLOSED) {
        LOG(&s->srv->log, LOG_INFO, s->target.conn, "TLS failed: %s",
            tls_conn_error_text(s->tls));
        if (s->tls_handshaking)
            stream_tls_done(s->stream, false, NULL);
        else
            stream_abort(s->stream);
        session_close(s);
        return;
    }
    tls_handshake_progress(s);
    buf_t plain = BUF_INIT;
    int rrc = tls_conn_read(s->tls, &plain);
    if (plain.len > 0)
        stream_feed(s->stream, plain.data, plain.len);
    buf_free(&plain);
    if (s->tls != NULL && !s->closing)
        tls_conn_take_output(s->tls, &s->out);
    if (rc == TLS_ERR_CLOSED || rrc == TLS_ERR_CLOSED) {
        stream_abort(s->stream);
        session_close(s);
        return;
    }
    session_after_stream(s);
}

static void on_resume(uv_timer_t *t)
{
    c2s_session_t *s = t->data;
    s->paused = false;
    if (s->closing || s->handles_closed)
        return;
    if (s->auth_delay) {
        s->auth_delay = false;
        stream_auth_delay_done(s->stream);
        session_after_stream(s);
        if (s->closing || s->handles_closed)
            return;
    }
    uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    }
    return false;
}

static void on_connection(uv_stream_t *server_handle, int status)
{
    c2s_listener_t *l = server_handle->data;
    server_t *srv = l->srv;
    if (status < 0 || srv->shutting_down)
        return;
    c2s_session_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return;
    s->srv = srv;
    s->target.ops = &c2s_target_ops;
    s->target.conn = ++srv->next_conn_id;
    uv_tcp_init(srv->loop, &s->tcp);
    uv_timer_init(srv->loop, &s->timer);
    uv_timer_init(srv->loop, &s->throttle);
    s->tcp.data = s->timer.data = s->throttle.data = s;
    s->handles_open = 3;
    s->next = srv->sessions;
    if (srv->sessions != NULL)
        srv->sessions->prev = s;
    srv->sessions = s;
    srv->session_count++;
    if (uv_accept(server_handle, (uv_stream_t *)&s->tcp) < 0) {
        s->closing = true;
        close_handles(s);
        return;
    }
    uv_tcp_nodelay(&s->tcp, 1);

    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &sslen);
    if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, s->addr, sizeof(s->addr));
    else if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, s->addr, sizeof(s->addr));

    s->direct_tls = l->direct_tls;
    if (l->direct_tls)
        s->stream_cfg = &srv->stream_cfg_direct;
    else if (srv->cfg->allow_plain_loopback && is_loopback(&ss))
        s->stream_cfg = &srv->stream_cfg_loopback;
    else
        s->stream_cfg = &srv->stream_cfg;
    s->stream = stream_new_c2s(s->stream_cfg, &c2s_hooks, s);
    if (s->stream == NULL) {
        s->closing = true;
        close_handles(s);
        return;
    }
    if (l->direct_tls) {
        s->tls = tls_conn_new_server(srv->tls_direct);
        if (s->tls == NULL) {
            stream_abort(s->stream);
            session_close(s);
            return;
        }
        s->tls_handshaking = true;
    }
    s->tokens = (double)srv->cfg->rate_burst;
    s->tokens_ms = now_ms(srv);
    LOG(&srv->log, LOG_INFO, s->target.conn, "connection from %s on %s",
        s->addr, l->name);
    set_timer(s, TIMER_HANDSHAKE, srv->cfg->handshake_timeout);
    uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
}

/* ------------------------------------------------------------- listeners */

int c2s_start(server_t *srv)
{
    for (size_t i = 0; i < srv->cfg->c2s_count; i++) {
        const config_listener_t *lc = &srv->cfg->c2s[i];
        if (lc->direct_tls && srv->tls_direct == NULL) {
            LOG(&srv->log, LOG_ERROR, 0,
                "c2s %s:%d wants direct TLS but no certificate is configured",
                lc->address, lc->port);
            return -1;
        }
        c2s_listener_t *l = calloc(1, sizeof(*l));
        if (l == NULL)
            return -1;
        l->srv = srv;
        l->direct_tls = lc->direct_tls;
        uv_tcp_init(srv->loop, &l->tcp);
        l->tcp.data = l;
        l->next = srv->listeners;
        srv->listeners = l;
        struct sockaddr_storage ss;
        int rc =
            strchr(lc->address, ':') != NULL
                ? uv_ip6_addr(lc->address, lc->port, (struct sockaddr_in6 *)&ss)
                : uv_ip4_addr(lc->address, lc->port, (struct sockaddr_in *)&ss);
        if (rc == 0)
            rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
        if (rc != 0) {
            LOG(&srv->log, LOG_ERROR, 0, "cannot listen on %s:%d: %s",
                lc->address, lc->port, uv_strerror(rc));
            return -1;
        }
        /* Port 0 asks the kernel for one; say which (tests read this). */
        int len = sizeof(ss);
        uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len);
        int port = ss.ss_family == AF_INET6
                       ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
        snprintf(l->name, sizeof(l->name), "%s:%d (%s)", lc->address, port,
                 lc->direct_tls ? "direct TLS" : "STARTTLS");
        LOG(&srv->log, LOG_INFO, 0, "c2s listening on %s", l->name);
    }
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

void c2s_shutdown(server_t *srv, const char *condition)
{
    srv->shutting_down = true;
    for (c2s_listener_t *l = srv->listeners; l != NULL;) {
        c2s_listener_t *next = l->next;
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        l = next;
    }
    srv->listeners = NULL;
    for (c2s_session_t *s = srv->sessions; s != NULL; s = s->next) {
        if (s->closing)
            continue;
        stream_error(s->stream, condition, NULL);
        session_after_stream(s);
    }
}
