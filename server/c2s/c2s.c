/* Client-to-server connections on libuv: accept, TLS, timers, rate limits,
 * and the hooks that connect a stream_t to the store and the router.
 *
 * Lifetimes. A session is freed only when (a) its libuv handles have all
 * been closed and (b) no asynchronous request (store lookup, password check
 * on the thread pool) still refers to it. Every path that ends a connection
 * goes through session_close(), which is idempotent; the free happens in
 * session_maybe_free() from a libuv callback, never inside a stream hook. */
#include "c2s/c2s.h"
#include "listen.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/rand.h"
#include "base/xalloc.h"
#include "c2s/csi.h"
#include "c2s/sm.h"
#include "net/conn.h"

/* Output queued for a client that does not read: past the soft limit the
 * connection says so (a later step stops feeding it); past the hard limit
 * the client gets <policy-violation/> as far as its socket takes it and is
 * dropped, rather than letting one slow reader hold unbounded memory. */
enum {
    OUT_SOFT_LIMIT = 1024 * 1024,
    OUT_HARD_LIMIT = 4 * 1024 * 1024,
};

typedef struct c2s_listener c2s_listener_t;
typedef struct c2s_addr c2s_addr_t;

struct c2s_listener {
    c2s_listener_t *next;
    worker_t *w;
    uv_tcp_t tcp;
    bool direct_tls;
    char name[80];
};

enum timer_mode {
    TIMER_HANDSHAKE, /* accept → bound */
    TIMER_IDLE,      /* bound: no byte from the client for this long */
    TIMER_PING,      /* idle, pinged (XEP-0199 §4.2): waiting for any byte */
    TIMER_CLOSE,     /* our close tag sent: waiting for the client's */
    TIMER_RESUME,    /* connection lost: kept for XEP-0198 resumption */
};

/* Connections and unfinished authentications per client address
 * (limits.max_connections_per_address, max_unauthenticated_per_address).
 * An entry lives while a connection from its address does. */
struct c2s_addr {
    c2s_addr_t *next;
    unsigned connections;
    unsigned unauthenticated;
    char addr[48];
};

/* Recent SASL failures per client address and per account, to slow down
 * guessing. Small fixed tables: an attacker with many addresses or
 * accounts only evicts entries, and eviction only forgets a delay. A key
 * longer than the slot is cut; accounts that share the first 127 bytes
 * then share a count, which only delays failures. */
enum { AUTH_SLOTS = 256 };
typedef struct auth_slot {
    char key[128]; /* an address, or node@domain */
    unsigned failures;
    uint64_t last_ms;
} auth_slot_t;

/* Open connections per client address, hashed into buckets. */
enum { C2S_ADDR_BUCKETS = 1024 };

/* The c2s component of one worker (c2s.h): touched only on its loop. */
struct c2s {
    c2s_listener_t *listeners;
    auth_slot_t auth_slots[AUTH_SLOTS];    /* per client address */
    auth_slot_t account_slots[AUTH_SLOTS]; /* per account, any address */
    c2s_addr_t *addrs[C2S_ADDR_BUCKETS];
};

/* One client connection. Owns its stream and timer; refers to its
 * connection (lib/net/conn), which it closes and which tells it when it is
 * gone (conn_events.closed). */
struct c2s_session {
    route_target_t target;
    c2s_session_t *prev, *next;
    worker_t *w;         /* the loop this session lives on */
    const server_t *srv; /* w->srv: shared, read-only */
    const stream_config_t *stream_cfg;
    conn_t *conn; /* NULL once the connection is freed */
    uv_timer_t timer;
    enum timer_mode timer_mode;
    unsigned long pings; /* XEP-0199 pings sent, for their ids */
    stream_t *stream;
    c2s_addr_t *addr_entry; /* counts this connection */
    bool unauthenticated;   /* counted in addr_entry->unauthenticated */

    bool closing;
    bool timer_closed;
    unsigned pending; /* async requests that refer to this session */
    bool auth_delay;  /* a SASL failure is being held back (paused read) */
    /* Reading is stopped because its own output is over the soft limit,
     * or because the router holds its stanzas (router_hold); it resumes
     * when neither is true. */
    bool out_paused, held_paused;
    char *account; /* node@domain of the last SASL lookup, or NULL */
    /* Stanzas queued for this session alone that its connection never
     * wrote: routed again when the session is freed, outside any routing
     * in progress (issue 7, item 7). */
    rcbuf_t **unsent;
    size_t unsent_count;
    /* XEP-0198, once the client enabled it: the counters and what the
     * client has not acknowledged (which, when the session ends, goes back
     * to the router instead of `unsent`, a part of it). */
    bool sm_on;
    bool sm_r_pending; /* our <r/> not answered yet */
    bool sm_a_pending; /* the client's <r/>, answered once settled */
    sm_t sm;
    char sm_id[32]; /* "" unless resumable */
    /* Its connection is gone and it waits (TIMER_RESUME) for a new one to
     * resume it: still bound, stanzas for it go to its unacknowledged
     * queue. */
    bool hibernating;
    /* It handed its connection to a session that resumed (it only closes:
     * what its old connection never wrote is in the other's queue). */
    bool taken_over;
    /* XEP-0352: what waits while the client says it is inactive. */
    csi_t csi;
};

static void session_close(c2s_session_t *s);
static void session_after_stream(c2s_session_t *s);
static void read_update(c2s_session_t *s);
static const conn_events_t c2s_conn_events;

/* Tags of routed stanzas in the connection's queue: whether this session
 * was the stanza's only recipient (it goes back to the router if it is
 * never written) or one of several (another resource has it). */
#define TAG_SOLE   ((void *)(uintptr_t)1)
#define TAG_SHARED ((void *)(uintptr_t)2)

static const route_target_ops_t c2s_target_ops;

static c2s_session_t *from_target(route_target_t *t)
{
    return (c2s_session_t *)((char *)t - offsetof(c2s_session_t, target));
}

static const char *session_addr(const c2s_session_t *s)
{
    return s->addr_entry != NULL ? s->addr_entry->addr : "";
}

/* ------------------------------------------------------ per address */

static size_t addr_hash(const char *addr)
{
    size_t h = 5381;
    for (const char *p = addr; *p != '\0'; p++)
        h = h * 33 + (unsigned char)*p;
    return h % C2S_ADDR_BUCKETS;
}

static c2s_addr_t *addr_get(c2s_t *c, const char *addr)
{
    c2s_addr_t **bucket = &c->addrs[addr_hash(addr)];
    for (c2s_addr_t *a = *bucket; a != NULL; a = a->next)
        if (strcmp(a->addr, addr) == 0)
            return a;
    c2s_addr_t *a = xcalloc(1, sizeof(*a));
    snprintf(a->addr, sizeof(a->addr), "%s", addr);
    a->next = *bucket;
    *bucket = a;
    return a;
}

static void addr_release(c2s_t *c, c2s_addr_t *a)
{
    if (a == NULL || --a->connections > 0)
        return;
    for (c2s_addr_t **pp = &c->addrs[addr_hash(a->addr)]; *pp != NULL;
         pp = &(*pp)->next) {
        if (*pp == a) {
            *pp = a->next;
            free(a);
            return;
        }
    }
}

/* The session no longer counts as an unfinished authentication. */
static void session_authenticated(c2s_session_t *s)
{
    if (!s->unauthenticated)
        return;
    s->unauthenticated = false;
    s->addr_entry->unauthenticated--;
}

/* ---------------------------------------------------------------- free */

static void session_maybe_free(c2s_session_t *s)
{
    if (s->conn != NULL || s->pending > 0 || !s->timer_closed || s->hibernating)
        return;
    worker_t *w = s->w;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        w->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    w->session_count--;
    router_unbind(w->router, &s->target);
    if (s->sm_on) {
        /* XEP-0198 §4: what the client never acknowledged counts as not
         * delivered (the stanzas never written are among them). */
        size_t n = sm_unacked(&s->sm), sole = 0;
        for (size_t i = 0; i < n; i++) {
            const sm_entry_t *e = sm_at(&s->sm, i);
            if (!e->sole)
                continue;
            sole++;
            router_requeue_bytes(w->router, rcbuf_data(e->bytes),
                                 rcbuf_len(e->bytes));
        }
        if (n > 0)
            LOG(&w->srv->log, LOG_INFO, s->target.conn,
                "%zu stanza(s) never acknowledged: %zu routed again", n, sole);
        sm_clear(&s->sm);
    } else if (s->unsent_count > 0) {
        LOG(&w->srv->log, LOG_INFO, s->target.conn,
            "%zu stanza(s) never written: routed again", s->unsent_count);
    }
    for (size_t i = 0; i < s->unsent_count; i++) {
        if (!s->sm_on && !s->taken_over)
            router_requeue_bytes(w->router, rcbuf_data(s->unsent[i]),
                                 rcbuf_len(s->unsent[i]));
        rcbuf_unref(s->unsent[i]);
    }
    free(s->unsent);
    csi_clear(&s->csi);
    jid_clear(&s->target.jid);
    stream_free(s->stream);
    session_authenticated(s);
    addr_release(w->c2s, s->addr_entry);
    free(s->account);
    LOG(&s->srv->log, LOG_DEBUG, s->target.conn, "connection freed");
    free(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    c2s_session_t *s = h->data;
    s->timer_closed = true;
    session_maybe_free(s);
}

/* Ends the stream without another byte from it (the transport is gone, or
 * the client has had its time) and closes the connection: at once with
 * `now`, else once the queued output is written. */
static void session_end(c2s_session_t *s, bool now)
{
    stream_abort(s->stream); /* calls session_close via the hook */
    session_close(s);
    if (now && s->conn != NULL)
        conn_abort(s->conn);
}

/* --------------------------------------------------------------- timers */

static void set_timer(c2s_session_t *s, enum timer_mode mode, double seconds);

static void sm_count(c2s_session_t *s, const char *data, size_t len, bool sole);
static void sm_counted(c2s_session_t *s, rcbuf_t *b, bool sole);

/* An XEP-0199 ping from the server to the bound resource; false when the
 * stream cannot take it. The answer is consumed by the router (a result
 * for the server). */
static bool send_ping(c2s_session_t *s)
{
    if (!stream_is_bound(s->stream))
        return false;
    char full[JID_FORMAT_BUF], id[40];
    jid_format(&s->target.jid, false, full, sizeof(full));
    snprintf(id, sizeof(id), "starling-ping-%lu", ++s->pings);
    buf_t b = BUF_INIT;
    int rc = buf_append_str(&b, "<iq type='get' id='");
    rc |= buf_append_str(&b, id);
    rc |= buf_append_str(&b, "' from='");
    rc |= xml_escape_attr(s->target.jid.domain, s->target.jid.domain_len, &b);
    rc |= buf_append_str(&b, "' to='");
    rc |= xml_escape_attr(full, strlen(full), &b);
    rc |= buf_append_str(&b, "'><ping xmlns='urn:xmpp:ping'/></iq>");
    bool ok = rc == 0 && stream_send_raw(s->stream, b.data, b.len);
    if (ok)
        sm_count(s, b.data, b.len, false);
    buf_free(&b);
    if (ok)
        LOG(&s->srv->log, LOG_DEBUG, s->target.conn, "idle: pinged %s", full);
    return ok;
}

static void on_timer(uv_timer_t *t)
{
    c2s_session_t *s = t->data;
    switch (s->timer_mode) {
    case TIMER_IDLE:
        /* XEP-0199 §4.2: a silent client is asked whether it is there
         * before it is cut; any byte it sends counts as the answer. */
        if (s->srv->cfg->ping_timeout > 0 && send_ping(s)) {
            set_timer(s, TIMER_PING, s->srv->cfg->ping_timeout);
            break;
        }
        /* fall through */
    case TIMER_HANDSHAKE:
    case TIMER_PING:
        LOG(&s->srv->log, LOG_INFO, s->target.conn, "%s timeout",
            s->timer_mode == TIMER_HANDSHAKE ? "negotiation"
            : s->timer_mode == TIMER_PING    ? "ping"
                                             : "idle");
        stream_error(s->stream, "connection-timeout", NULL);
        session_after_stream(s);
        break;
    case TIMER_CLOSE:
        /* RFC 6120 §4.4: the client did not answer our close tag in a
         * reasonable time; the stream is void, and output it never reads
         * must not keep the connection. */
        session_end(s, true);
        break;
    case TIMER_RESUME:
        LOG(&s->srv->log, LOG_INFO, s->target.conn,
            "not resumed in time: session ended");
        s->hibernating = false;
        session_close(s);
        session_maybe_free(s);
        break;
    }
}

static void set_timer(c2s_session_t *s, enum timer_mode mode, double seconds)
{
    if (s->closing)
        return;
    s->timer_mode = mode;
    if (seconds <= 0) {
        uv_timer_stop(&s->timer);
        return;
    }
    uv_timer_start(&s->timer, on_timer, (uint64_t)(seconds * 1000.0), 0);
}

/* ------------------------------------------------------------ the stream */

/* After any call into the stream: follow its state. */
static void session_after_stream(c2s_session_t *s)
{
    if (s->closing)
        return;
    if (s->unauthenticated && stream_is_authenticated(s->stream))
        session_authenticated(s);
    stream_state_t st = stream_state(s->stream);
    if (st == STREAM_CLOSING && s->timer_mode != TIMER_CLOSE) {
        /* No stanza may be routed to a stream we are closing. */
        router_unbind(s->w->router, &s->target);
        set_timer(s, TIMER_CLOSE, s->srv->cfg->close_timeout);
    }
}

static void hook_send(void *ud, const char *data, size_t len)
{
    c2s_session_t *s = ud;
    if (s->conn == NULL)
        return;
    /* Negotiation and errors; routed stanzas are queued as shared blocks
     * by target_deliver. */
    conn_write(s->conn, data, len);
}

static void hook_start_tls(void *ud)
{
    c2s_session_t *s = ud;
    if (conn_start_tls(s->conn, s->srv->tls, NULL) != CONN_OK)
        session_close(s);
}

static void hook_close(void *ud)
{
    c2s_session_t *s = ud;
    if (!s->hibernating) /* its stream ended; the session waits */
        session_close(s);
}

static void on_account(void *ud, int err, const store_account_t *a)
{
    c2s_session_t *s = ud;
    s->pending--;
    if (s->closing) {
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
    /* Heap, not an array: an idle session stays small (a JID can be 3 KiB
     * long); failing to note it only skips the per-account count. */
    free(s->account);
    size_t n = strlen(node) + strlen(domain) + 2;
    s->account = xmalloc(n);
    snprintf(s->account, n, "%s@%s", node, domain);
    s->pending++;
    store_account_get(s->srv->store, domain, node, on_account, s);
}

/* XEP-0077 before authentication: the request a module answers. */
typedef struct preauth_req {
    module_preauth_t p; /* first */
    c2s_session_t *s;
} preauth_req_t;

static void preauth_answer(module_preauth_t *p, const xml_node_t *answer)
{
    preauth_req_t *r = (preauth_req_t *)p;
    c2s_session_t *s = r->s;
    xml_tree_free(p->iq);
    free(r);
    s->pending--;
    if (s->closing) {
        session_maybe_free(s);
        return;
    }
    stream_preauth_done(s->stream, answer);
    session_after_stream(s);
}

static bool hook_preauth_iq(void *ud, const char *domain, xml_tree_t *iq)
{
    c2s_session_t *s = ud;
    preauth_req_t *r = xcalloc(1, sizeof(*r));
    r->s = s;
    r->p = (module_preauth_t){.iq = iq,
                              .domain = domain,
                              .address = session_addr(s),
                              .conn = s->target.conn,
                              .answer = preauth_answer};
    s->pending++;
    if (module_registry_preauth_iq(s->srv->modules, &r->p))
        return true;
    s->pending--;
    free(r);
    return false;
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
    if (s->closing) {
        session_maybe_free(s);
        return;
    }
    stream_sasl_password_checked(s->stream, ok);
    session_after_stream(s);
}

static void hook_check_password(void *ud, sasl_server_t *sess)
{
    c2s_session_t *s = ud;
    struct pw_work *w = xcalloc(1, sizeof(*w));
    w->s = s;
    w->sess = sess;
    w->req.data = w;
    s->pending++;
    if (uv_queue_work(s->w->loop, &w->req, pw_work, pw_done) < 0) {
        s->pending--;
        free(w);
        stream_sasl_password_checked(s->stream, false);
    }
}

/* Counts a failure in the slot for `key` and returns how many recent
 * failures it had before this one. */
static unsigned count_failure(auth_slot_t *slots, const char *key, uint64_t now)
{
    size_t h = 0;
    for (const char *p = key; *p != '\0'; p++)
        h = h * 31 + (unsigned char)*p;
    auth_slot_t *slot = &slots[h % AUTH_SLOTS];
    if (strncmp(slot->key, key, sizeof(slot->key) - 1) != 0 ||
        now - slot->last_ms > 600000) {
        snprintf(slot->key, sizeof(slot->key), "%s", key);
        slot->failures = 0;
    }
    unsigned before = slot->failures++;
    slot->last_ms = now;
    return before;
}

/* Repeated SASL failures are answered ever more slowly: the n-th failure
 * within ten minutes from one address, or against one account from
 * anywhere, is held back auth_failure_delay × (n - 1) seconds, up to 30 s,
 * on whichever connection it happens, and nothing else from that client is
 * read or handled meanwhile. With the unfinished authentications per
 * address bounded (limits.max_unauthenticated_per_address), this bounds
 * how fast one address can guess, however many connections it opens. */
static unsigned hook_auth_failed(void *ud)
{
    c2s_session_t *s = ud;
    const server_t *srv = s->srv;
    c2s_t *c = s->w->c2s;
    uint64_t now = uv_now(s->w->loop);
    unsigned by_addr = count_failure(c->auth_slots, session_addr(s), now);
    unsigned by_account = 0;
    if (s->account != NULL)
        by_account = count_failure(c->account_slots, s->account, now);
    unsigned n = by_addr > by_account ? by_addr : by_account;
    double delay = srv->cfg->auth_failure_delay * n;
    if (delay > 30.0)
        delay = 30.0;
    LOG(&srv->log, LOG_INFO, s->target.conn,
        "authentication failed from %s for %s (%u recent from the address, "
        "%u for the account); answering in %.1f s",
        session_addr(s), s->account != NULL ? s->account : "?", by_addr + 1,
        by_account + 1, delay);
    unsigned ms = (unsigned)(delay * 1000.0);
    if (ms > 0 && s->conn != NULL) {
        s->auth_delay = true;
        conn_pause(s->conn, ms);
    }
    return ms;
}

static void hook_bind(void *ud, const jid_t *user, const char *resource)
{
    c2s_session_t *s = ud;
    const char *cond = router_bind(s->w->router, &s->target, user, resource);
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
    router_route(s->w->router, &s->target, stanza);
}

/* ------------------------------------------- XEP-0198 stream management */

#define NS_SM "urn:xmpp:sm:3"

/* Our <r/> goes out once this many stanzas wait for an ack. */
enum { SM_REQUEST_AFTER = 5 };

/* A stanza sent to the client: counted and kept until acknowledged. */
static void sm_counted(c2s_session_t *s, rcbuf_t *b, bool sole)
{
    if (!s->sm_on)
        return;
    sm_push(&s->sm, b, sole);
    size_t n = sm_unacked(&s->sm);
    if (n > s->srv->cfg->sm_max_unacked && s->hibernating) {
        LOG(&s->srv->log, LOG_INFO, s->target.conn,
            "%zu stanzas wait for a resumption: session ended", n);
        s->hibernating = false;
        session_close(s);
        return;
    }
    if (n > s->srv->cfg->sm_max_unacked) {
        LOG(&s->srv->log, LOG_INFO, s->target.conn,
            "%zu stanzas not acknowledged: closing", n);
        stream_error(s->stream, "policy-violation",
                     "too many stanzas not acknowledged");
        session_after_stream(s);
        return;
    }
    if (!s->sm_r_pending && n >= SM_REQUEST_AFTER) {
        static const char r[] = "<r xmlns='" NS_SM "'/>";
        s->sm_r_pending = stream_send_nonza(s->stream, r, sizeof(r) - 1);
    }
}

static void sm_count(c2s_session_t *s, const char *data, size_t len, bool sole)
{
    if (!s->sm_on)
        return;
    rcbuf_t *b = rcbuf_new(data, len);
    if (b == NULL)
        xalloc_fail(len);
    sm_counted(s, b, sole);
    rcbuf_unref(b);
}

static void hook_send_stanza(void *ud, const char *data, size_t len)
{
    c2s_session_t *s = ud;
    if (s->conn == NULL)
        return;
    conn_write(s->conn, data, len);
    sm_count(s, data, len, false);
}

/* <a h='h'/>: the stanzas handled since enable (§4). */
static void sm_answer(c2s_session_t *s)
{
    char out[80];
    uint32_t h = stream_stanzas_in(s->stream) - s->sm.in_base;
    int n = snprintf(out, sizeof(out), "<a xmlns='" NS_SM "' h='%lu'/>",
                     (unsigned long)h);
    stream_send_nonza(s->stream, out, (size_t)n);
}

static bool parse_h(const char *v, uint32_t *h)
{
    if (v == NULL || v[0] < '0' || v[0] > '9' || strlen(v) > 10)
        return false;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end != '\0' || n > UINT32_MAX)
        return false;
    *h = (uint32_t)n;
    return true;
}

static void sm_failed(stream_t *st, const char *condition)
{
    char out[200];
    int n = snprintf(out, sizeof(out),
                     "<failed xmlns='" NS_SM "'><%s xmlns='"
                     "urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>",
                     condition);
    stream_send_nonza(st, out, (size_t)n);
}

/* Keeps a session whose connection was lost for a resumption (XEP-0198
 * §5): false when it cannot be resumed (it then ends as usual). */
static bool session_hibernate(c2s_session_t *s)
{
    if (!s->sm_on || s->sm_id[0] == '\0' || s->closing || s->hibernating ||
        !stream_is_bound(s->stream) || stream_state(s->stream) != STREAM_OPEN ||
        s->w->shutting_down)
        return false;
    s->hibernating = true;
    s->target.detached = true;
    stream_abort(s->stream); /* hook_close leaves the session be */
    if (s->conn != NULL)
        conn_close(s->conn, 0);
    set_timer(s, TIMER_RESUME, s->srv->cfg->sm_resume_timeout);
    LOG(&s->srv->log, LOG_INFO, s->target.conn,
        "connection lost: session kept %g s for resumption (%zu "
        "unacknowledged)",
        s->srv->cfg->sm_resume_timeout, sm_unacked(&s->sm));
    return true;
}

/* `cur`, whose client resumes `old`, hands it its connection and stream
 * and takes old's (if any) to close them. */
static void session_take_over(c2s_session_t *old, c2s_session_t *cur)
{
    conn_t *oc = old->conn;
    stream_t *os = old->stream;
    c2s_addr_t *oa = old->addr_entry;
    const stream_config_t *ocfg = old->stream_cfg;
    bool opaused = old->out_paused;
    old->conn = cur->conn;
    old->stream = cur->stream;
    old->addr_entry = cur->addr_entry;
    old->stream_cfg = cur->stream_cfg;
    old->out_paused = cur->out_paused;
    conn_set_owner(old->conn, &c2s_conn_events, old);
    stream_set_owner(old->stream, old);
    cur->conn = oc;
    cur->stream = os;
    cur->addr_entry = oa;
    cur->stream_cfg = ocfg;
    cur->out_paused = opaused;
    if (oc != NULL)
        conn_set_owner(oc, &c2s_conn_events, cur);
    stream_set_owner(os, cur);
    old->hibernating = false;
    old->target.detached = false;
    cur->taken_over = true;
}

static void csi_flush(c2s_session_t *s);

/* §5: <resume previd='...' h='...'/> on a stream authenticated as the same
 * account and not bound: this stream continues the old session. */
static void sm_resume(c2s_session_t *cur, stream_t *st, const xml_node_t *el)
{
    const char *previd = xml_element_attr(el, NULL, "previd");
    const jid_t *user = stream_user(st);
    uint32_t h;
    if (user == NULL || stream_is_bound(st) || cur->sm_on) {
        sm_failed(st, "unexpected-request");
        return;
    }
    /* A resumable session stays bound (hibernating too): the account's
     * few sessions are where to look, not every session of the worker. */
    c2s_session_t *old = NULL;
    for (route_target_t *t =
             previd != NULL ? router_resources(cur->w->router, user) : NULL;
         t != NULL; t = t->next_resource) {
        c2s_session_t *o = t->ops == &c2s_target_ops ? from_target(t) : NULL;
        if (o != NULL && o != cur && o->sm_on && o->sm_id[0] != '\0' &&
            !o->closing && strcmp(o->sm_id, previd) == 0) {
            old = o;
            break;
        }
    }
    if (old == NULL || !jid_bare_equal(&old->target.jid, user)) {
        sm_failed(st, "item-not-found");
        return;
    }
    if (!parse_h(xml_element_attr(el, NULL, "h"), &h) || !sm_ack(&old->sm, h)) {
        stream_error(st, "undefined-condition",
                     "handled-count-too-high (or no h)");
        return;
    }
    uint32_t h_in = stream_stanzas_in(old->stream) - old->sm.in_base;
    if (!stream_resume_bound(st, &old->target.jid)) {
        sm_failed(st, "unexpected-request");
        return;
    }
    session_take_over(old, cur);
    old->sm.in_base = stream_stanzas_in(old->stream) - h_in;
    old->sm_r_pending = false;
    char out[120];
    int n = snprintf(out, sizeof(out),
                     "<resumed xmlns='" NS_SM "' h='%lu' previd='%s'/>",
                     (unsigned long)h_in, old->sm_id);
    stream_send_nonza(old->stream, out, (size_t)n);
    size_t count = sm_unacked(&old->sm);
    for (size_t i = 0; i < count; i++) {
        const sm_entry_t *e = sm_at(&old->sm, i);
        conn_send_shared_ex(old->conn, e->bytes,
                            e->sole ? TAG_SOLE : TAG_SHARED, true);
    }
    /* XEP-0352: a stream begins active. */
    old->csi.inactive = false;
    csi_flush(old);
    set_timer(old, TIMER_IDLE, old->srv->cfg->idle_timeout);
    read_update(old);
    LOG(&old->srv->log, LOG_INFO, old->target.conn,
        "resumed from %s (connection c%lu), %zu stanza(s) sent again",
        conn_peer_addr(old->conn), cur->target.conn, count);
    /* The connection that was old's (if it still seemed alive) ends. */
    stream_abort(cur->stream);
    session_close(cur);
    if (cur->conn != NULL)
        conn_abort(cur->conn);
}

/* The elements of urn:xmpp:sm:3 the client sends (XEP-0198 §3, §4, §5). */
static void sm_handle(stream_t *st, void *owner_ud, const stream_feature_t *f,
                      xml_tree_t *t)
{
    (void)f;
    c2s_session_t *s = owner_ud;
    const char *name = t->root->name;
    if (strcmp(name, "enable") == 0) {
        if (!stream_is_bound(st) || s->sm_on) {
            /* §3: before binding, or a second time. */
            static const char failed[] =
                "<failed xmlns='" NS_SM "'><unexpected-request xmlns='"
                "urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>";
            stream_send_nonza(st, failed, sizeof(failed) - 1);
        } else {
            sm_init(&s->sm, stream_stanzas_in(st));
            s->sm_on = true;
            const char *resume = xml_element_attr(t->root, NULL, "resume");
            double timeout = s->srv->cfg->sm_resume_timeout;
            bool resumable =
                resume != NULL &&
                (strcmp(resume, "true") == 0 || strcmp(resume, "1") == 0) &&
                timeout > 0 && rand_id(s->sm_id, sizeof(s->sm_id), 128) == 0;
            char out[160];
            int n;
            if (resumable)
                n = snprintf(out, sizeof(out),
                             "<enabled xmlns='" NS_SM
                             "' id='%s' resume='true' max='%u'/>",
                             s->sm_id, (unsigned)timeout);
            else
                n = snprintf(out, sizeof(out), "<enabled xmlns='" NS_SM "'/>");
            if (!resumable)
                s->sm_id[0] = '\0';
            stream_send_nonza(st, out, (size_t)n);
            LOG(&s->srv->log, LOG_DEBUG, s->target.conn,
                "stream management enabled%s", resumable ? " (resumable)" : "");
        }
    } else if (strcmp(name, "resume") == 0) {
        sm_resume(s, st, t->root);
    } else if (!s->sm_on ||
               (strcmp(name, "r") != 0 && strcmp(name, "a") != 0)) {
        stream_error(
            st, s->sm_on ? "unsupported-stanza-type" : "unexpected-request",
            NULL);
    } else if (strcmp(name, "r") == 0) {
        /* §4: h counts what the server has taken responsibility for; a
         * stanza still waiting for the store (offline storage, held) is
         * not yet that: the answer waits until they are done. */
        if (router_busy(&s->target))
            s->sm_a_pending = true;
        else
            sm_answer(s);
    } else {
        uint32_t h;
        if (!parse_h(xml_element_attr(t->root, NULL, "h"), &h)) {
            stream_error(st, "invalid-xml", "<a/> needs h, a number");
        } else if (!sm_ack(&s->sm, h)) {
            /* §4: acknowledging more than was sent. */
            char text[96];
            snprintf(text, sizeof(text),
                     "handled-count-too-high: h %lu, sent %lu",
                     (unsigned long)h, (unsigned long)s->sm.sent);
            stream_error(st, "undefined-condition", text);
        } else {
            s->sm_r_pending = false;
        }
    }
    xml_tree_free(t);
}

const stream_feature_t c2s_sm_feature = {
    NS_SM, "sm", STREAM_FEAT_AFTER_AUTH, false, NULL, sm_handle, NULL,
};

static const stream_hooks_t c2s_hooks = {
    .send = hook_send,
    .start_tls = hook_start_tls,
    .close = hook_close,
    .lookup_account = hook_lookup_account,
    .preauth_iq = hook_preauth_iq,
    .check_password = hook_check_password,
    .auth_failed = hook_auth_failed,
    .bind = hook_bind,
    .stanza = hook_stanza,
    .send_stanza = hook_send_stanza,
};

/* ------------------------------------------------------- router target */

/* Stanzas an inactive client may have waiting before they all go. */
enum { CSI_MAX_HELD = 256 };

/* A routed stanza onto the connection, counted for XEP-0198. */
static bool session_write(c2s_session_t *s, rcbuf_t *b, bool sole,
                          bool requeued)
{
    if (conn_send_shared_ex(s->conn, b, sole ? TAG_SOLE : TAG_SHARED,
                            requeued) != CONN_OK)
        return false;
    sm_counted(s, b, sole);
    return true;
}

/* XEP-0352: what waited for the client goes out, in order. */
static void csi_flush(c2s_session_t *s)
{
    size_t n;
    csi_entry_t *v = csi_take(&s->csi, &n);
    for (size_t i = 0; i < n && !s->closing && s->conn != NULL; i++)
        session_write(s, v[i].bytes, v[i].sole, false);
    csi_entries_free(v, n);
}

#define NS_CSI "urn:xmpp:csi:0"

static void csi_handle(stream_t *st, void *owner_ud, const stream_feature_t *f,
                       xml_tree_t *t)
{
    (void)f;
    c2s_session_t *s = owner_ud;
    const char *name = t->root->name;
    if (strcmp(name, "inactive") == 0) {
        s->csi.inactive = true;
    } else if (strcmp(name, "active") == 0) {
        s->csi.inactive = false;
        if (stream_is_bound(st))
            csi_flush(s);
    } else {
        stream_error(st, "unsupported-stanza-type", NULL);
    }
    xml_tree_free(t);
}

const stream_feature_t c2s_csi_feature = {
    NS_CSI, "csi", STREAM_FEAT_AFTER_AUTH, false, NULL, csi_handle, NULL,
};

static bool target_deliver(route_target_t *t, route_stanza_t *st)
{
    c2s_session_t *s = from_target(t);
    if (s->hibernating) {
        /* Kept for the resumed stream, or routed again if none comes. */
        sm_counted(s, route_stanza_bytes(st), !st->shared);
        return true;
    }
    /* Only a bound, open stream takes stanzas (as stream_send_raw). The
     * block is the one serialization every recipient shares. */
    if (stream_state(s->stream) != STREAM_OPEN || !stream_is_bound(s->stream) ||
        conn_closing(s->conn))
        return false;
    rcbuf_t *b = route_stanza_bytes(st);
    if (s->csi.inactive) {
        switch (csi_classify(st->el)) {
        case CSI_DROP:
            return true;
        case CSI_HOLD:
            csi_hold(&s->csi, st->el, b, !st->shared);
            if (s->csi.count > CSI_MAX_HELD)
                csi_flush(s);
            return true;
        case CSI_URGENT:
            csi_flush(s); /* what waited goes first */
            break;
        }
    }
    return session_write(s, b, !st->shared, st->requeued);
}

static void target_kick(route_target_t *t, const char *condition)
{
    c2s_session_t *s = from_target(t);
    if (s->hibernating) {
        s->hibernating = false;
        session_close(s);
        session_maybe_free(s);
        return;
    }
    stream_error(s->stream, condition, NULL);
    session_after_stream(s);
}

static void read_update(c2s_session_t *s)
{
    if (s->conn == NULL)
        return;
    if (s->out_paused || s->held_paused)
        conn_read_stop(s->conn);
    else if (!s->closing)
        conn_read_start(s->conn);
}

static void target_pause(route_target_t *t, bool paused)
{
    c2s_session_t *s = from_target(t);
    s->held_paused = paused;
    read_update(s);
}

static void target_settled(route_target_t *t)
{
    c2s_session_t *s = from_target(t);
    if (s->sm_a_pending && !s->hibernating && !s->closing) {
        s->sm_a_pending = false;
        sm_answer(s);
    }
}

static const route_target_ops_t c2s_target_ops = {
    .deliver = target_deliver,
    .kick = target_kick,
    .pause = target_pause,
    .settled = target_settled,
};

/* ------------------------------------------------------- connection */

static void session_close(c2s_session_t *s)
{
    if (s->closing)
        return;
    s->closing = true;
    router_unbind(s->w->router, &s->target);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
    /* RFC 8446 §6.1: TLS ends with close_notify (the connection sends it),
     * so that the client can tell our end from a truncation. Output a
     * client never reads must not keep the connection: close_timeout. */
    if (s->conn != NULL)
        conn_close(s->conn, (unsigned)(s->srv->cfg->close_timeout * 1000.0));
}

static void on_conn_data(void *ud, const char *data, size_t len)
{
    c2s_session_t *s = ud;
    if (s->closing)
        return;
    if (s->timer_mode == TIMER_IDLE || s->timer_mode == TIMER_PING)
        set_timer(s, TIMER_IDLE, s->srv->cfg->idle_timeout);
    stream_feed(s->stream, data, len);
    session_after_stream(s);
}

static void on_conn_tls_done(void *ud, int status)
{
    c2s_session_t *s = ud;
    if (s->closing)
        return;
    if (status != CONN_OK) {
        LOG(&s->srv->log, LOG_INFO, s->target.conn, "TLS failed: %s",
            tls_conn_error_text(conn_tls(s->conn)));
        stream_tls_done(s->stream, false, NULL);
        session_after_stream(s);
        return;
    }
    unsigned char exporter[32], unique[64];
    int elen = conn_cb_exporter(s->conn, exporter, sizeof(exporter));
    int ulen = conn_cb_unique(s->conn, unique, sizeof(unique));
    char **names = NULL;
    int nnames = conn_peer_names(s->conn, &names);
    stream_tls_info_t info = {
        .cb_exporter = elen > 0 ? exporter : NULL,
        .cb_exporter_len = elen > 0 ? (size_t)elen : 0,
        .cb_unique = ulen > 0 ? unique : NULL,
        .cb_unique_len = ulen > 0 ? (size_t)ulen : 0,
        .cert_names = (const char *const *)names,
        .cert_name_count = nnames > 0 ? (size_t)nnames : 0,
    };
    tls_conn_t *tls = conn_tls(s->conn);
    LOG(&s->srv->log, LOG_DEBUG, s->target.conn, "TLS established: %s%s%s",
        tls_conn_version(tls), tls_conn_alpn(tls) ? ", ALPN " : "",
        tls_conn_alpn(tls) ? tls_conn_alpn(tls) : "");
    stream_tls_done(s->stream, true, &info);
    if (names != NULL)
        tls_names_free(names);
    session_after_stream(s);
}

static void on_conn_error(void *ud, int err)
{
    c2s_session_t *s = ud;
    LOG(&s->srv->log, err == CONN_ERR_TLS ? LOG_INFO : LOG_DEBUG,
        s->target.conn, "connection ended: %s%s%s", conn_strerror(err),
        err == CONN_ERR_TLS ? ": " : "",
        err == CONN_ERR_TLS ? tls_conn_error_text(conn_tls(s->conn)) : "");
    if (!session_hibernate(s))
        session_end(s, false);
}

static void on_conn_soft_limit(void *ud, bool over)
{
    c2s_session_t *s = ud;
    LOG(&s->srv->log, LOG_DEBUG, s->target.conn,
        over ? "output queue above %d bytes" : "output queue below %d bytes",
        OUT_SOFT_LIMIT);
    /* CONVENTIONS.md, I/O: a client whose own output piles up (it sends
     * faster than it reads what comes back: results, bounces) is not read
     * until that drains, so that it slows itself down instead of being
     * dropped at the hard limit. */
    s->out_paused = over;
    read_update(s);
}

/* Keeps a stanza this session alone was to receive and never got. */
static void keep_unsent(c2s_session_t *s, const char *data, size_t len,
                        void *tag)
{
    if (tag != TAG_SOLE)
        return; /* another resource has it, or not a routed stanza */
    rcbuf_t *b = rcbuf_new(data, len);
    if (b == NULL)
        xalloc_fail(len);
    s->unsent =
        xreallocarray(s->unsent, s->unsent_count + 1, sizeof(*s->unsent));
    s->unsent[s->unsent_count++] = b;
}

static void collect_unsent(void *arg, const char *data, size_t len, void *tag)
{
    keep_unsent(arg, data, len, tag);
}

/* The client stopped reading and its queue crossed the hard limit: the
 * unwritten stanzas are detached and go back to the router when the
 * session is freed, and the client is told why before it is dropped
 * (issue 7, item 7; RFC 6120 §4.9.3.12). */
static void on_conn_overflow(void *ud)
{
    c2s_session_t *s = ud;
    size_t before = s->unsent_count;
    conn_unsent_walk(s->conn, collect_unsent, s);
    LOG(&s->srv->log, LOG_WARN, s->target.conn,
        "client does not read; over %d bytes queued: dropping it "
        "(%zu stanzas never written go back to the router)",
        OUT_HARD_LIMIT, s->unsent_count - before);
    stream_error(s->stream, "policy-violation",
                 "Your client does not read what the server sends");
    session_end(s, false);
}

/* The connection ended with stanzas it never wrote whole. */
static void on_conn_unsent(void *ud, const char *data, size_t len, void *tag)
{
    keep_unsent(ud, data, len, tag);
}

static void on_conn_resumed(void *ud)
{
    c2s_session_t *s = ud;
    if (s->closing || !s->auth_delay)
        return;
    s->auth_delay = false;
    stream_auth_delay_done(s->stream);
    session_after_stream(s);
}

static void on_conn_closed(void *ud)
{
    c2s_session_t *s = ud;
    s->conn = NULL;
    if (!s->closing && !s->hibernating && !session_hibernate(s))
        session_end(s, false); /* closed under us: a write failed */
    session_maybe_free(s);
}

static const conn_events_t c2s_conn_events = {
    .data = on_conn_data,
    .tls_done = on_conn_tls_done,
    .error = on_conn_error,
    .soft_limit = on_conn_soft_limit,
    .overflow = on_conn_overflow,
    .unsent = on_conn_unsent,
    .resumed = on_conn_resumed,
    .closed = on_conn_closed,
};

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

/* A connection over a per-address limit gets a stream error and nothing
 * else: its stream is opened only to say why (RFC 6120 §4.9.1.1 allows the
 * error before the client's header is read). */
static const char *over_address_limit(const server_t *srv, const c2s_addr_t *a)
{
    const server_config_t *cfg = srv->cfg;
    if (a->connections > cfg->max_connections_per_address)
        return "too many connections from your address";
    if (a->unauthenticated > cfg->max_unauthenticated_per_address)
        return "too many unauthenticated connections from your address";
    return NULL;
}

static void on_connection(uv_stream_t *server_handle, int status)
{
    c2s_listener_t *l = server_handle->data;
    worker_t *w = l->w;
    const server_t *srv = w->srv;
    if (status < 0 || w->shutting_down)
        return;
    c2s_session_t *s = xcalloc(1, sizeof(*s));
    s->w = w;
    s->srv = srv;
    s->target.ops = &c2s_target_ops;
    s->target.conn = ++w->next_conn_id;
    conn_opts_t co = {
        .flusher = &w->flusher,
        .soft_limit = OUT_SOFT_LIMIT,
        .hard_limit = OUT_HARD_LIMIT,
        .rate_limit = srv->cfg->rate_limit,
        .rate_burst = srv->cfg->rate_burst,
        .linger_ms = (unsigned)(srv->cfg->close_timeout * 1000.0),
        .read_buf = (char *)w->read_buf,
        .read_buf_size = sizeof(w->read_buf),
    };
    uv_timer_init(w->loop, &s->timer);
    s->timer.data = s;
    s->next = w->sessions;
    if (w->sessions != NULL)
        w->sessions->prev = s;
    w->sessions = s;
    w->session_count++;
    s->conn = conn_new(w->loop, &co, &c2s_conn_events, s);
    if (s->conn == NULL || conn_accept(s->conn, server_handle) < 0) {
        s->closing = true;
        if (s->conn != NULL)
            conn_abort(s->conn);
        uv_close((uv_handle_t *)&s->timer, on_timer_closed);
        return;
    }
    struct sockaddr_storage ss;
    conn_peer_sockaddr(s->conn, &ss);
    if (l->direct_tls)
        s->stream_cfg = &srv->stream_cfg_direct;
    else if (srv->cfg->allow_plain_loopback && is_loopback(&ss))
        s->stream_cfg = &srv->stream_cfg_loopback;
    else
        s->stream_cfg = &srv->stream_cfg;
    s->stream = stream_new_c2s(s->stream_cfg, &c2s_hooks, s);
    s->addr_entry = addr_get(w->c2s, conn_peer_addr(s->conn));
    if (s->stream == NULL || s->addr_entry == NULL) {
        s->closing = true;
        conn_abort(s->conn);
        uv_close((uv_handle_t *)&s->timer, on_timer_closed);
        return;
    }
    s->addr_entry->connections++;
    s->addr_entry->unauthenticated++;
    s->unauthenticated = true;
    LOG(&srv->log, LOG_INFO, s->target.conn, "connection from %s on %s",
        session_addr(s), l->name);
    const char *over = over_address_limit(srv, s->addr_entry);
    if (over != NULL) {
        LOG(&srv->log, LOG_WARN, s->target.conn, "%s (%s): refused", over,
            session_addr(s));
        if (s->stream_cfg->tls_direct) {
            /* No XML before the TLS handshake: just close. */
            session_end(s, true);
            return;
        }
        stream_error(s->stream, "policy-violation", over);
        session_end(s, false);
        return;
    }
    if (s->stream_cfg->tls_direct &&
        conn_start_tls(s->conn, srv->tls_direct, NULL) != CONN_OK) {
        session_end(s, true);
        return;
    }
    set_timer(s, TIMER_HANDSHAKE, srv->cfg->handshake_timeout);
    conn_read_start(s->conn);
}

/* ------------------------------------------------------------- listeners */

int c2s_start(worker_t *w)
{
    const server_t *srv = w->srv;
    c2s_t *c = xcalloc(1, sizeof(*c));
    w->c2s = c;
    for (size_t i = 0; i < srv->cfg->c2s_count; i++) {
        const config_listener_t *lc = &srv->cfg->c2s[i];
        if (lc->direct_tls && srv->tls_direct == NULL) {
            LOG(&srv->log, LOG_ERROR, 0,
                "c2s %s:%d wants direct TLS but no certificate is configured",
                lc->address, lc->port);
            return -1;
        }
        c2s_listener_t *l = xcalloc(1, sizeof(*l));
        l->w = w;
        l->direct_tls = lc->direct_tls;
        l->next = c->listeners;
        c->listeners = l;
        if (server_listen(w->loop, &l->tcp, lc, on_connection, "c2s", &srv->log,
                          l->name, sizeof(l->name)) < 0)
            return -1;
        l->tcp.data = l;
    }
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

void c2s_shutdown(worker_t *w, const char *condition)
{
    w->shutting_down = true;
    for (c2s_listener_t *l = w->c2s->listeners; l != NULL;) {
        c2s_listener_t *next = l->next;
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        l = next;
    }
    w->c2s->listeners = NULL;
    for (c2s_session_t *s = w->sessions; s != NULL;) {
        c2s_session_t *next = s->next;
        if (s->hibernating) {
            s->hibernating = false;
            session_close(s);
            session_maybe_free(s);
        } else if (!s->closing) {
            stream_error(s->stream, condition, NULL);
            session_after_stream(s);
        }
        s = next;
    }
}

void c2s_free(worker_t *w)
{
    free(w->c2s);
    w->c2s = NULL;
}
