/* Server-to-server connections on libuv (s2s.h): listeners and incoming
 * streams, outgoing links (one per pair of domains, plus short-lived
 * dialback verification links), the queue of stanzas waiting for a link,
 * and the answers to the stream layer's questions (certificates, dialback
 * keys).
 *
 * Lifetimes. An incoming stream or a link is freed only once its
 * connection has reported `closed` and its timer is closed; every path
 * that ends one goes through in_close() / link_close(), which are
 * idempotent, and the free happens from a libuv callback. A verification
 * link refers to the incoming stream that asked for it; when that stream
 * ends first, the link forgets it (in_close clears the pointers). An
 * outgoing pair (s2s_out_t) lives until s2s_free(): one small record per
 * remote domain ever contacted. */
#include "s2s/s2s.h"
#include "listen.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/rand.h"
#include "base/xalloc.h"
#include "jid/jid.h"
#include "net/conn.h"
#include "net/connector.h"
#include "net/dns.h"
#include "net/tls.h"
#include "stream/stanza.h"
#include "stream/stream.h"
#include "stream/stream_client.h"

enum {
    OUT_SOFT_LIMIT = 4 * 1024 * 1024,
    OUT_HARD_LIMIT = 16 * 1024 * 1024,
};

typedef struct s2s_in s2s_in_t;
typedef struct s2s_link s2s_link_t;
typedef struct s2s_out s2s_out_t;

typedef struct s2s_listener {
    struct s2s_listener *next;
    s2s_t *s;
    uv_tcp_t tcp;
    bool direct_tls;
    char name[80];
} s2s_listener_t;

typedef struct queued {
    struct queued *next;
    xml_tree_t *tree;
} queued_t;

typedef enum out_state {
    OUT_IDLE,    /* no link */
    OUT_SETUP,   /* a link is being set up; stanzas wait */
    OUT_READY,   /* authenticated: stanzas go out at once */
    OUT_BACKOFF, /* the last attempt failed; until retry_at stanzas bounce */
} out_state_t;

/* Everything we send from one of our domains to one remote domain. */
struct s2s_out {
    s2s_out_t *next;
    char *local, *remote;
    out_state_t state;
    s2s_link_t *link; /* OUT_SETUP, OUT_READY */
    queued_t *head, *tail;
    size_t queued;
    unsigned attempts;     /* failures in a row */
    uint64_t retry_at;     /* loop time (ms) */
    const char *condition; /* what the last failure gives in backoff */
};

typedef enum link_kind {
    LINK_OUT,    /* authenticates and carries stanzas */
    LINK_VERIFY, /* asks the authoritative server about a dialback key */
} link_kind_t;

/* One outgoing connection. */
struct s2s_link {
    s2s_link_t *prev, *next;
    s2s_t *s;
    link_kind_t kind;
    s2s_out_t *out;         /* LINK_OUT */
    s2s_in_t *in;           /* LINK_VERIFY: who asked; NULL once it ended */
    char *local, *remote;   /* our domain, theirs */
    char *vid, *vkey;       /* LINK_VERIFY: stream id and key */
    connector_t *connector; /* NULL once done */
    conn_t *conn;           /* NULL until connected and once freed */
    sclient_t *sc;
    bool direct_tls;
    uv_timer_t timer;
    bool closing, timer_closed, ready, answered;
    unsigned long id;
};

/* One incoming stream. */
struct s2s_in {
    s2s_in_t *prev, *next;
    s2s_t *s;
    conn_t *conn;
    stream_t *stream;
    uv_timer_t timer;
    bool closing, timer_closed;
    unsigned long id;
};

struct s2s {
    worker_t *w;
    const server_t *srv;
    const server_config_t *cfg;
    unsigned char secret[32];
    dns_t *dns;
    tls_ctx_t *tls_in, *tls_in_direct, *tls_out, *tls_out_direct;
    stream_config_t stream_cfg, stream_cfg_direct;
    /* The domains other servers may address: ours and the components'. */
    const char **hosts;
    s2s_listener_t *listeners;
    s2s_out_t *outs;
    s2s_link_t *links;
    s2s_in_t *ins;
    router_remote_t remote;
    bool shutting_down;
};

static void link_close(s2s_link_t *l, const char *condition);
static void in_close(s2s_in_t *in);
static void out_connect(s2s_t *s, s2s_out_t *o);

static const logger_t *log_of(const s2s_t *s)
{
    return &s->srv->log;
}

/* ---------------------------------------------------------- dialback key */

void s2s_dialback_key(const unsigned char *secret, size_t secret_len,
                      const char *receiving, const char *originating,
                      const char *stream_id, char out[65])
{
    /* XEP-0185 §3: key = HMAC-SHA256(SHA256(secret) as hex, "receiving
     * originating id"), as hex. */
    unsigned char h[32], mac[32];
    char hk[65];
    unsigned int n = 0;
    static const char hex[] = "0123456789abcdef";
    EVP_Digest(secret, secret_len, h, NULL, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) {
        hk[2 * i] = hex[h[i] >> 4];
        hk[2 * i + 1] = hex[h[i] & 15];
    }
    hk[64] = '\0';
    buf_t msg = BUF_INIT;
    if (buf_append(&msg, receiving, strlen(receiving)) < 0 ||
        buf_append(&msg, " ", 1) < 0 ||
        buf_append(&msg, originating, strlen(originating)) < 0 ||
        buf_append(&msg, " ", 1) < 0 ||
        buf_append(&msg, stream_id, strlen(stream_id)) < 0)
        xalloc_fail(256);
    if (HMAC(EVP_sha256(), hk, 64, (const unsigned char *)msg.data, msg.len,
             mac, &n) == NULL)
        xalloc_fail(64);
    buf_free(&msg);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[64] = '\0';
}

/* ------------------------------------------------------------- the queue */

static const char *bounce_type(const char *condition)
{
    return strcmp(condition, "remote-server-timeout") == 0 ? "wait" : "cancel";
}

static void bounce(s2s_t *s, xml_tree_t *tree, const char *condition)
{
    router_bounce(s->w->router, tree->root, bounce_type(condition), condition);
    xml_tree_free(tree);
}

static void out_bounce_all(s2s_t *s, s2s_out_t *o, const char *condition)
{
    while (o->head != NULL) {
        queued_t *q = o->head;
        o->head = q->next;
        bounce(s, q->tree, condition);
        free(q);
    }
    o->tail = NULL;
    o->queued = 0;
}

/* The tag of stanza blocks on links: on_link_unsent routes them again. */
static char stanza_tag;

/* Writes one stanza on a ready link, as a block of its own that comes
 * back through on_link_unsent if the link breaks before it is written.
 * Its jabber:client elements are serialized without a namespace
 * declaration, so that on the s2s stream they are in its default
 * namespace, jabber:server — and read as in a jabber:client stream when
 * handed back. False when the link no longer takes it (closing): the
 * caller answers it. */
static bool link_write(s2s_link_t *l, const xml_node_t *el)
{
    buf_t b = BUF_INIT;
    if (xml_serialize(el, XML_NS_CLIENT, &b) < 0)
        xalloc_fail(b.cap);
    bool ok = l->conn != NULL &&
              conn_write_block(l->conn, b.data, b.len, &stanza_tag) == CONN_OK;
    buf_free(&b);
    return ok;
}

static void link_idle_timer(s2s_link_t *l);

static void out_flush(s2s_out_t *o)
{
    while (o->head != NULL) {
        queued_t *q = o->head;
        o->head = q->next;
        if (link_write(o->link, q->tree->root))
            xml_tree_free(q->tree);
        else
            bounce(o->link->s, q->tree, "remote-server-timeout");
        free(q);
    }
    o->tail = NULL;
    o->queued = 0;
    link_idle_timer(o->link);
}

static s2s_out_t *out_get(s2s_t *s, const char *local, const char *remote)
{
    for (s2s_out_t *o = s->outs; o != NULL; o = o->next)
        if (strcmp(o->local, local) == 0 && strcmp(o->remote, remote) == 0)
            return o;
    s2s_out_t *o = xcalloc(1, sizeof(*o));
    o->local = xstrdup(local);
    o->remote = xstrdup(remote);
    o->next = s->outs;
    s->outs = o;
    return o;
}

/* router_remote_t.send: a stanza of ours for `domain`. */
static void remote_send(void *ud, xml_tree_t *tree, const char *domain)
{
    s2s_t *s = ud;
    const char *from = xml_element_attr(tree->root, NULL, "from");
    jid_t f;
    if (from == NULL || jid_parse(from, strlen(from), 0, &f) != JID_OK) {
        xml_tree_free(tree);
        return;
    }
    if (!(router_serves(s->w->router, f.domain) ||
          router_is_component(s->w->router, f.domain)) ||
        s->shutting_down) {
        /* RFC 6120 §10.1-4 (feature set): only what is from us (or from
         * one of our components) goes out. */
        LOG(log_of(s), LOG_DEBUG, 0, "%s from %s to %s not sent",
            tree->root->name, from, domain);
        jid_clear(&f);
        if (s->shutting_down)
            bounce(s, tree, "remote-server-not-found");
        else
            xml_tree_free(tree);
        return;
    }
    s2s_out_t *o = out_get(s, f.domain, domain);
    jid_clear(&f);
    if (o->state == OUT_READY) {
        if (!link_write(o->link, tree->root)) {
            bounce(s, tree, "remote-server-timeout");
            return;
        }
        link_idle_timer(o->link);
        xml_tree_free(tree);
        return;
    }
    if (o->state == OUT_BACKOFF) {
        if (uv_now(s->w->loop) < o->retry_at) {
            bounce(s, tree, o->condition);
            return;
        }
        o->state = OUT_IDLE;
    }
    if (o->queued >= s->cfg->s2s_queue_max) {
        LOG(log_of(s), LOG_INFO, 0, "s2s queue for %s full (%zu stanzas)",
            o->remote, o->queued);
        bounce(s, tree, "remote-server-timeout");
        return;
    }
    queued_t *q = xcalloc(1, sizeof(*q));
    q->tree = tree;
    if (o->tail != NULL)
        o->tail->next = q;
    else
        o->head = q;
    o->tail = q;
    o->queued++;
    if (o->state == OUT_IDLE)
        out_connect(s, o);
}

/* The link of o failed before it was ready. */
static void out_failed(s2s_t *s, s2s_out_t *o, const char *condition)
{
    o->link = NULL;
    o->attempts++;
    uint32_t r = 0;
    (void)rand_bytes(&r, sizeof(r));
    unsigned delay = connector_backoff_ms(o->attempts - 1, r);
    o->state = OUT_BACKOFF;
    o->retry_at = uv_now(s->w->loop) + delay;
    o->condition = condition;
    LOG(log_of(s), LOG_INFO, 0,
        "s2s %s -> %s failed (%s); %zu stanza(s) bounced; next attempt "
        "after %u ms",
        o->local, o->remote, condition, o->queued, delay);
    out_bounce_all(s, o, condition);
}

/* ------------------------------------------------------------------ links */

static void link_maybe_free(s2s_link_t *l)
{
    if (!l->closing || !l->timer_closed || l->conn != NULL)
        return;
    s2s_t *s = l->s;
    if (l->prev != NULL)
        l->prev->next = l->next;
    else
        s->links = l->next;
    if (l->next != NULL)
        l->next->prev = l->prev;
    s->w->s2s_count--;
    if (l->connector != NULL)
        connector_free(l->connector);
    sclient_free(l->sc);
    free(l->local);
    free(l->remote);
    free(l->vid);
    free(l->vkey);
    free(l);
}

static void on_link_timer_closed(uv_handle_t *h)
{
    s2s_link_t *l = h->data;
    l->timer_closed = true;
    link_maybe_free(l);
}

/* Ends a link: what it was for fails with `condition` (NULL: it ended
 * normally). Idempotent. */
static void link_close(s2s_link_t *l, const char *condition)
{
    if (l->closing)
        return;
    l->closing = true;
    s2s_t *s = l->s;
    if (l->kind == LINK_OUT && l->out != NULL && l->out->link == l) {
        s2s_out_t *o = l->out;
        if (!l->ready) {
            out_failed(s, o,
                       condition != NULL ? condition
                                         : "remote-server-not-found");
        } else {
            o->link = NULL;
            o->state = OUT_IDLE;
            o->attempts = 0;
            /* Stanzas that arrived meanwhile start a new link. */
            if (o->queued > 0)
                out_connect(s, o);
        }
    }
    if (l->kind == LINK_VERIFY && !l->answered && l->in != NULL) {
        l->answered = true;
        /* XEP-0220 §2.4: the key could not be checked. */
        stream_dialback_result(l->in->stream, l->remote, l->local,
                               "remote-server-not-found");
    }
    if (l->connector != NULL)
        connector_cancel(l->connector);
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, on_link_timer_closed);
    if (l->conn != NULL)
        conn_close(l->conn, (unsigned)(s->cfg->close_timeout * 1000.0));
}

static void on_link_timer(uv_timer_t *t)
{
    s2s_link_t *l = t->data;
    if (l->ready) {
        /* Idle: close the stream politely. */
        LOG(log_of(l->s), LOG_DEBUG, l->id, "s2s link to %s idle: closing",
            l->remote);
        sclient_close(l->sc); /* our close tag, flushed by conn_close */
        link_close(l, NULL);
        return;
    }
    LOG(log_of(l->s), LOG_INFO, l->id, "s2s link to %s: negotiation timeout",
        l->remote);
    /* First: the abort's close hook must not pick the condition. */
    link_close(l, "remote-server-timeout");
    if (l->sc != NULL)
        sclient_abort(l->sc);
}

static void link_idle_timer(s2s_link_t *l)
{
    double t = l->s->cfg->s2s_idle_timeout;
    if (t > 0)
        uv_timer_start(&l->timer, on_link_timer, (uint64_t)(t * 1000.0), 0);
    else
        uv_timer_stop(&l->timer);
}

static void lk_send(void *ud, const char *data, size_t len)
{
    s2s_link_t *l = ud;
    if (l->conn != NULL)
        conn_write(l->conn, data, len);
}

static void lk_start_tls(void *ud)
{
    s2s_link_t *l = ud;
    tls_ctx_t *ctx = l->direct_tls ? l->s->tls_out_direct : l->s->tls_out;
    if (ctx == NULL || conn_start_tls(l->conn, ctx, l->remote) != CONN_OK)
        link_close(l, "remote-server-not-found");
}

static void lk_close(void *ud)
{
    link_close(ud, NULL);
}

static void lk_ready(void *ud, const jid_t *jid)
{
    s2s_link_t *l = ud;
    (void)jid;
    if (l->kind != LINK_OUT || l->closing)
        return;
    l->ready = true;
    l->out->state = OUT_READY;
    l->out->attempts = 0;
    LOG(log_of(l->s), LOG_INFO, l->id, "s2s %s -> %s ready (%s)", l->local,
        l->remote,
        sclient_mechanism(l->sc) != NULL ? "SASL EXTERNAL" : "dialback");
    out_flush(l->out);
}

static void lk_stanza(void *ud, xml_tree_t *stanza)
{
    (void)ud;
    xml_tree_free(stanza); /* no XEP-0288: nothing comes back this way */
}

static void lk_failed(void *ud, int err, const char *condition,
                      const char *text, const char *description)
{
    s2s_link_t *l = ud;
    LOG(log_of(l->s), LOG_INFO, l->id, "s2s link %s -> %s: %s%s%s%s", l->local,
        l->remote, description, condition != NULL ? " (" : "",
        condition != NULL ? condition : "", condition != NULL ? ")" : "");
    (void)text;
    (void)err;
    link_close(l, "remote-server-not-found");
}

static void lk_dialback_key(void *ud, const char *stream_id)
{
    s2s_link_t *l = ud;
    char key[65];
    s2s_dialback_key(l->s->secret, sizeof(l->s->secret), l->remote, l->local,
                     stream_id, key);
    sclient_s2s_dialback(l->sc, key);
}

static void lk_dialback_verified(void *ud, bool valid)
{
    s2s_link_t *l = ud;
    if (l->kind != LINK_VERIFY || l->answered)
        return;
    l->answered = true;
    if (l->in != NULL)
        stream_dialback_result(l->in->stream, l->remote, l->local,
                               valid ? NULL : "invalid");
    LOG(log_of(l->s), LOG_INFO, l->id, "dialback key of %s for %s: %s",
        l->remote, l->local, valid ? "valid" : "invalid");
    sclient_close(l->sc);
}

static const sclient_hooks_t link_hooks = {
    .send = lk_send,
    .start_tls = lk_start_tls,
    .close = lk_close,
    .ready = lk_ready,
    .stanza = lk_stanza,
    .failed = lk_failed,
    .dialback_key = lk_dialback_key,
    .dialback_verified = lk_dialback_verified,
};

static void on_link_data(void *ud, const char *data, size_t len)
{
    s2s_link_t *l = ud;
    if (!l->closing)
        sclient_feed(l->sc, data, len);
}

static void on_link_tls_done(void *ud, int status)
{
    s2s_link_t *l = ud;
    if (l->closing)
        return;
    tls_conn_t *tls = conn_tls(l->conn);
    sclient_tls_info_t info = {
        .have_client_cert = l->s->srv->cfg->cert_file != NULL,
        .peer_cert_valid =
            status == CONN_OK &&
            tls_conn_peer_valid_for(tls, l->remote, "xmpp-server"),
    };
    if (status == CONN_OK && !info.peer_cert_valid) {
        const char *why = tls_conn_verify_error(tls);
        LOG(log_of(l->s), LOG_INFO, l->id,
            "s2s link to %s: the certificate is not valid for the domain "
            "(%s)",
            l->remote, why[0] != '\0' ? why : "it does not name it");
    }
    if (status == CONN_OK && l->s->cfg->s2s_secure_auth &&
        !info.peer_cert_valid) {
        link_close(l, "remote-server-not-found");
        return;
    }
    sclient_tls_done(l->sc, status == CONN_OK, &info);
    if (status == CONN_OK && l->direct_tls && !l->closing)
        sclient_start(l->sc);
}

static void on_link_error(void *ud, int err)
{
    s2s_link_t *l = ud;
    LOG(log_of(l->s), LOG_DEBUG, l->id, "s2s link to %s: %s", l->remote,
        conn_strerror(err));
    link_close(l, "remote-server-not-found");
}

/* A stanza written on a link that broke before the peer took it is
 * routed again (a new link, or an error for its sender). */
static void on_link_unsent(void *ud, const char *data, size_t len, void *tag)
{
    s2s_link_t *l = ud;
    if (tag == &stanza_tag)
        router_requeue_bytes(l->s->w->router, data, len);
}

static void link_requeue_unsent(void *arg, const char *data, size_t len,
                                void *tag)
{
    on_link_unsent(arg, data, len, tag);
}

/* The peer does not read: the link goes (its out starts over) and what it
 * never took is routed again. */
static void on_link_overflow(void *ud)
{
    s2s_link_t *l = ud;
    LOG(log_of(l->s), LOG_WARN, l->id,
        "s2s link to %s: the peer does not read; over %d bytes queued",
        l->remote, OUT_HARD_LIMIT);
    link_close(l, "remote-server-timeout");
    conn_unsent_walk(l->conn, link_requeue_unsent, l);
}

static void on_link_closed(void *ud)
{
    s2s_link_t *l = ud;
    l->conn = NULL;
    link_close(l, "remote-server-not-found");
    link_maybe_free(l);
}

static const conn_events_t link_conn_events = {
    .data = on_link_data,
    .tls_done = on_link_tls_done,
    .error = on_link_error,
    .overflow = on_link_overflow,
    .unsent = on_link_unsent,
    .closed = on_link_closed,
};

static void on_link_connected(void *ud, const connector_result_t *r)
{
    s2s_link_t *l = ud;
    if (r->err != CONNECTOR_OK) {
        LOG(log_of(l->s), LOG_INFO, l->id, "s2s: cannot connect to %s (%s)",
            l->remote,
            r->err == CONNECTOR_ERR_DNS ? dns_strerror(r->dns_err)
                                        : "no address answered");
        link_close(l, "remote-server-not-found");
        return;
    }
    l->conn = r->conn;
    l->direct_tls = r->direct_tls;
    conn_set_owner(l->conn, &link_conn_events, l);
    LOG(log_of(l->s), LOG_DEBUG, l->id, "s2s: connected to %s:%u for %s",
        r->host, r->port, l->remote);
    const server_config_t *cfg = l->s->cfg;
    sclient_s2s_config_t sc = {
        .from = l->local,
        .to = l->remote,
        .direct_tls = r->direct_tls,
        .allow_plaintext = !cfg->s2s_require_encryption,
        .have_cert = l->s->tls_out != NULL && cfg->cert_file != NULL,
        .dialback = cfg->s2s_dialback && !cfg->s2s_secure_auth,
    };
    xml_limits_default(&sc.limits);
    sc.limits.max_element_size = cfg->max_stanza_size;
    l->sc = l->kind == LINK_VERIFY
                ? sclient_new_s2s_verify(&sc, l->vid, l->vkey, &link_hooks, l)
                : sclient_new_s2s(&sc, &link_hooks, l);
    if (l->sc == NULL) {
        link_close(l, "internal-server-error");
        return;
    }
    conn_read_start(l->conn);
    if (l->direct_tls)
        lk_start_tls(l);
    else
        sclient_start(l->sc);
}

static const config_route_t *route_of(const s2s_t *s, const char *domain)
{
    for (size_t i = 0; i < s->cfg->s2s_route_count; i++)
        if (strcmp(s->cfg->s2s_routes[i].domain, domain) == 0)
            return &s->cfg->s2s_routes[i];
    return NULL;
}

static s2s_link_t *link_new(s2s_t *s, link_kind_t kind, const char *local,
                            const char *remote)
{
    worker_t *w = s->w;
    s2s_link_t *l = xcalloc(1, sizeof(*l));
    l->s = s;
    l->kind = kind;
    l->local = xstrdup(local);
    l->remote = xstrdup(remote);
    l->id = ++w->next_conn_id;
    uv_timer_init(w->loop, &l->timer);
    l->timer.data = l;
    l->next = s->links;
    if (s->links != NULL)
        s->links->prev = l;
    s->links = l;
    w->s2s_count++;
    return l;
}

/* Starts connecting a link: the static route, or DNS. */
static void link_start(s2s_link_t *l)
{
    s2s_t *s = l->s;
    const config_route_t *rt = route_of(s, l->remote);
    char server[300];
    char *ascii = NULL;
    connector_opts_t o = {
        .service = DNS_SERVICE_SERVER,
        .connect_timeout_ms = (unsigned)(s->cfg->s2s_connect_timeout * 1000),
        .conn = {.flusher = &s->w->flusher,
                 .soft_limit = OUT_SOFT_LIMIT,
                 .hard_limit = OUT_HARD_LIMIT,
                 .linger_ms = (unsigned)(s->cfg->close_timeout * 1000.0)},
    };
    if (rt != NULL) {
        snprintf(server, sizeof(server),
                 strchr(rt->host, ':') != NULL ? "[%s]:%d" : "%s:%d", rt->host,
                 rt->port);
        o.server = server;
        o.direct_tls = rt->direct_tls;
        o.domain = l->remote;
    } else {
        if (jid_domain_to_ascii(l->remote, &ascii) != JID_OK) {
            link_close(l, "remote-server-not-found");
            return;
        }
        o.domain = ascii;
    }
    l->connector = connector_new(s->w->loop, s->dns);
    if (l->connector == NULL ||
        connector_start(l->connector, &o, on_link_connected, l) < 0) {
        free(ascii);
        link_close(l, "remote-server-not-found");
        return;
    }
    free(ascii);
    uv_timer_start(&l->timer, on_link_timer,
                   (uint64_t)(s->cfg->handshake_timeout * 1000.0), 0);
}

static void out_connect(s2s_t *s, s2s_out_t *o)
{
    s2s_link_t *l = link_new(s, LINK_OUT, o->local, o->remote);
    l->out = o;
    o->link = l;
    o->state = OUT_SETUP;
    LOG(log_of(s), LOG_INFO, l->id, "s2s %s -> %s: connecting", o->local,
        o->remote);
    link_start(l);
}

/* ------------------------------------------------------- incoming streams */

static void in_maybe_free(s2s_in_t *in)
{
    if (!in->closing || !in->timer_closed || in->conn != NULL)
        return;
    s2s_t *s = in->s;
    if (in->prev != NULL)
        in->prev->next = in->next;
    else
        s->ins = in->next;
    if (in->next != NULL)
        in->next->prev = in->prev;
    s->w->s2s_count--;
    stream_free(in->stream);
    free(in);
}

static void on_in_timer_closed(uv_handle_t *h)
{
    s2s_in_t *in = h->data;
    in->timer_closed = true;
    in_maybe_free(in);
}

static void in_close(s2s_in_t *in)
{
    if (in->closing)
        return;
    in->closing = true;
    for (s2s_link_t *l = in->s->links; l != NULL; l = l->next)
        if (l->in == in)
            l->in = NULL;
    uv_timer_stop(&in->timer);
    uv_close((uv_handle_t *)&in->timer, on_in_timer_closed);
    if (in->conn != NULL)
        conn_close(in->conn, (unsigned)(in->s->cfg->close_timeout * 1000.0));
}

static void on_in_timer(uv_timer_t *t)
{
    s2s_in_t *in = t->data;
    LOG(log_of(in->s), LOG_INFO, in->id, "s2s stream from %s: timeout",
        conn_peer_addr(in->conn));
    stream_error(in->stream, "connection-timeout", NULL);
}

static void in_timer(s2s_in_t *in, double seconds)
{
    if (in->closing)
        return;
    if (seconds > 0)
        uv_timer_start(&in->timer, on_in_timer, (uint64_t)(seconds * 1000.0),
                       0);
    else
        uv_timer_stop(&in->timer);
}

static void ih_send(void *ud, const char *data, size_t len)
{
    s2s_in_t *in = ud;
    if (in->conn != NULL)
        conn_write(in->conn, data, len);
}

static void ih_start_tls(void *ud)
{
    s2s_in_t *in = ud;
    if (conn_start_tls(in->conn, in->s->tls_in, NULL) != CONN_OK)
        in_close(in);
}

static void ih_close(void *ud)
{
    in_close(ud);
}

static void ih_stanza(void *ud, xml_tree_t *stanza)
{
    s2s_in_t *in = ud;
    stanza_to_client_ns(stanza->root, XML_NS_SERVER);
    router_route_remote(in->s->w->router, stanza);
}

static bool ih_peer_cert_valid(void *ud, const char *domain)
{
    s2s_in_t *in = ud;
    tls_conn_t *tls = in->conn != NULL ? conn_tls(in->conn) : NULL;
    return tls != NULL && tls_conn_peer_valid_for(tls, domain, "xmpp-server");
}

/* XEP-0220 §2.1.2: the originating server `from` claims to be itself with
 * `key`; its authoritative server is asked over a link of our own. */
static void ih_dialback_result(void *ud, const char *from, const char *to,
                               const char *key)
{
    s2s_in_t *in = ud;
    s2s_t *s = in->s;
    LOG(log_of(s), LOG_DEBUG, in->id, "dialback: %s claims %s; asking it",
        conn_peer_addr(in->conn), from);
    s2s_link_t *l = link_new(s, LINK_VERIFY, to, from);
    l->in = in;
    l->vid = xstrdup(stream_id(in->stream));
    l->vkey = xstrdup(key);
    link_start(l);
}

/* XEP-0220 §2.3: we are the authoritative server: is this our key? */
static void ih_dialback_verify(void *ud, const char *from, const char *to,
                               const char *id, const char *key)
{
    s2s_in_t *in = ud;
    char want[65];
    /* `from` is the receiving server that asks, `to` our domain that
     * originated the stream with id `id`. */
    s2s_dialback_key(in->s->secret, sizeof(in->s->secret), from, to, id, want);
    bool valid = strlen(key) == 64 && CRYPTO_memcmp(want, key, 64) == 0;
    stream_dialback_verify_done(in->stream, from, to, id, valid);
}

static const stream_hooks_t in_hooks = {
    .send = ih_send,
    .start_tls = ih_start_tls,
    .close = ih_close,
    .stanza = ih_stanza,
    .peer_cert_valid = ih_peer_cert_valid,
    .dialback_result = ih_dialback_result,
    .dialback_verify = ih_dialback_verify,
};

static void on_in_data(void *ud, const char *data, size_t len)
{
    s2s_in_t *in = ud;
    if (in->closing)
        return;
    in_timer(in, in->s->cfg->s2s_idle_timeout);
    stream_feed(in->stream, data, len);
}

static void on_in_tls_done(void *ud, int status)
{
    s2s_in_t *in = ud;
    if (in->closing)
        return;
    stream_tls_info_t info = {0};
    stream_tls_done(in->stream, status == CONN_OK, &info);
}

static void on_in_error(void *ud, int err)
{
    s2s_in_t *in = ud;
    LOG(log_of(in->s), LOG_DEBUG, in->id, "s2s stream ended: %s",
        conn_strerror(err));
    stream_abort(in->stream);
    in_close(in);
}

static void on_in_closed(void *ud)
{
    s2s_in_t *in = ud;
    in->conn = NULL;
    in_close(in);
    in_maybe_free(in);
}

static const conn_events_t in_conn_events = {
    .data = on_in_data,
    .tls_done = on_in_tls_done,
    .error = on_in_error,
    .closed = on_in_closed,
};

static void on_s2s_connection(uv_stream_t *server_handle, int status)
{
    s2s_listener_t *ls = server_handle->data;
    s2s_t *s = ls->s;
    worker_t *w = s->w;
    if (status < 0 || s->shutting_down)
        return;
    s2s_in_t *in = xcalloc(1, sizeof(*in));
    in->s = s;
    in->id = ++w->next_conn_id;
    uv_timer_init(w->loop, &in->timer);
    in->timer.data = in;
    in->next = s->ins;
    if (s->ins != NULL)
        s->ins->prev = in;
    s->ins = in;
    w->s2s_count++;
    conn_opts_t co = {
        .flusher = &w->flusher,
        .soft_limit = OUT_SOFT_LIMIT,
        .hard_limit = OUT_HARD_LIMIT,
        .linger_ms = (unsigned)(s->cfg->close_timeout * 1000.0),
        .read_buf = (char *)w->read_buf,
        .read_buf_size = sizeof(w->read_buf),
    };
    in->conn = conn_new(w->loop, &co, &in_conn_events, in);
    in->stream = stream_new_s2s_in(
        ls->direct_tls ? &s->stream_cfg_direct : &s->stream_cfg, &in_hooks, in);
    if (in->conn == NULL || conn_accept(in->conn, server_handle) < 0 ||
        in->stream == NULL) {
        in_close(in);
        return;
    }
    LOG(log_of(s), LOG_INFO, in->id, "s2s connection from %s on %s",
        conn_peer_addr(in->conn), ls->name);
    if (ls->direct_tls &&
        conn_start_tls(in->conn, s->tls_in_direct, NULL) != CONN_OK) {
        in_close(in);
        return;
    }
    in_timer(in, s->cfg->handshake_timeout);
    conn_read_start(in->conn);
}

/* ----------------------------------------------------------------- start */

static tls_ctx_t *make_ctx(s2s_t *s, bool server, const char *alpn)
{
    const server_config_t *cfg = s->cfg;
    char err[512];
    tls_ctx_opts_t o = {
        .cert_file = cfg->cert_file,
        .key_file = cfg->key_file,
        .ca_file = cfg->s2s_ca_file,
        .alpn = alpn,
        .legacy_ciphers = cfg->legacy_ciphers,
        .verify_soft = true,
        .request_peer_cert = server,
    };
    tls_ctx_t *ctx = server ? tls_ctx_new_server(&o, err, sizeof(err))
                            : tls_ctx_new_client(&o, err, sizeof(err));
    if (ctx == NULL)
        LOG(log_of(s), LOG_ERROR, 0, "s2s TLS: %s", err);
    return ctx;
}

static int listen_on(s2s_t *s, const config_listener_t *lc)
{
    s2s_listener_t *l = xcalloc(1, sizeof(*l));
    l->s = s;
    l->direct_tls = lc->direct_tls;
    l->next = s->listeners;
    s->listeners = l;
    int rc = server_listen(s->w->loop, &l->tcp, lc, on_s2s_connection, "s2s",
                           log_of(s), l->name, sizeof(l->name));
    l->tcp.data = l;
    return rc;
}

int s2s_start(worker_t *w)
{
    const server_t *srv = w->srv;
    const server_config_t *cfg = srv->cfg;
    w->s2s = NULL;
    if (!cfg->s2s_enabled)
        return 0;
    s2s_t *s = xcalloc(1, sizeof(*s));
    w->s2s = s;
    s->w = w;
    s->srv = srv;
    s->cfg = cfg;
    if (cfg->s2s_dialback_secret != NULL)
        EVP_Digest(cfg->s2s_dialback_secret, strlen(cfg->s2s_dialback_secret),
                   s->secret, NULL, EVP_sha256(), NULL);
    else if (rand_bytes(s->secret, sizeof(s->secret)) < 0)
        return -1;
    if (cfg->cert_file != NULL) {
        s->tls_in = make_ctx(s, true, NULL);
        s->tls_in_direct = make_ctx(s, true, "xmpp-server");
        s->tls_out = make_ctx(s, false, NULL);
        s->tls_out_direct = make_ctx(s, false, "xmpp-server");
        if (s->tls_in == NULL || s->tls_in_direct == NULL ||
            s->tls_out == NULL || s->tls_out_direct == NULL)
            return -1;
    } else if (cfg->s2s_require_encryption) {
        LOG(log_of(s), LOG_ERROR, 0,
            "s2s requires encryption but no certificate is configured");
        return -1;
    }
    char err[256];
    dns_config_t dc = {.servers = cfg->s2s_dns};
    s->dns = dns_new_config(w->loop, &dc, err, sizeof(err));
    if (s->dns == NULL) {
        LOG(log_of(s), LOG_ERROR, 0, "s2s DNS: %s", err);
        return -1;
    }
    stream_config_t *sc = &s->stream_cfg;
    *sc = srv->stream_cfg;
    /* Components are reachable from other servers like our own domains
     * (their DNS records point here). */
    s->hosts =
        xcalloc(cfg->host_count + cfg->component_count + 1, sizeof(*s->hosts));
    for (size_t i = 0; i < cfg->host_count; i++)
        s->hosts[i] = cfg->hosts[i];
    for (size_t i = 0; i < cfg->component_count; i++)
        s->hosts[cfg->host_count + i] = cfg->components[i].domain;
    sc->hosts = s->hosts;
    sc->host_count = cfg->host_count + cfg->component_count;
    sc->features = NULL;
    sc->feature_count = 0;
    sc->tls_available = s->tls_in != NULL;
    sc->tls_required = cfg->s2s_require_encryption;
    sc->tls_direct = false;
    sc->mechs = 1u << SASL_MECH_EXTERNAL;
    sc->dialback = cfg->s2s_dialback && !cfg->s2s_secure_auth;
    s->stream_cfg_direct = *sc;
    s->stream_cfg_direct.tls_direct = true;
    s->stream_cfg_direct.tls_available = false;
    for (size_t i = 0; i < cfg->s2s_count; i++) {
        if (cfg->s2s[i].direct_tls && s->tls_in_direct == NULL) {
            LOG(log_of(s), LOG_ERROR, 0,
                "s2s %s:%d wants direct TLS but no certificate is configured",
                cfg->s2s[i].address, cfg->s2s[i].port);
            return -1;
        }
        if (listen_on(s, &cfg->s2s[i]) < 0)
            return -1;
    }
    s->remote = (router_remote_t){remote_send, s};
    router_set_remote(w->router, &s->remote);
    LOG(log_of(s), LOG_INFO, 0, "federation on (dialback %s%s)",
        sc->dialback ? "allowed" : "off",
        cfg->s2s_secure_auth ? ", valid certificates required" : "");
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

void s2s_shutdown(worker_t *w, const char *condition)
{
    s2s_t *s = w->s2s;
    if (s == NULL)
        return;
    s->shutting_down = true;
    router_set_remote(w->router, NULL);
    for (s2s_listener_t *l = s->listeners; l != NULL;) {
        s2s_listener_t *next = l->next;
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        l = next;
    }
    s->listeners = NULL;
    for (s2s_out_t *o = s->outs; o != NULL; o = o->next)
        out_bounce_all(s, o, "remote-server-not-found");
    for (s2s_in_t *in = s->ins; in != NULL; in = in->next)
        if (!in->closing)
            stream_error(in->stream, condition, NULL);
    for (s2s_link_t *l = s->links; l != NULL; l = l->next) {
        if (l->closing)
            continue;
        if (l->ready)
            sclient_close(l->sc);
        else
            link_close(l, "remote-server-not-found");
    }
}

void s2s_free(worker_t *w)
{
    s2s_t *s = w->s2s;
    if (s == NULL)
        return;
    while (s->outs != NULL) {
        s2s_out_t *o = s->outs;
        s->outs = o->next;
        out_bounce_all(s, o, "remote-server-not-found");
        free(o->local);
        free(o->remote);
        free(o);
    }
    dns_free(s->dns);
    free(s->hosts);
    tls_ctx_free(s->tls_in);
    tls_ctx_free(s->tls_in_direct);
    tls_ctx_free(s->tls_out);
    tls_ctx_free(s->tls_out_direct);
    free(s);
    w->s2s = NULL;
}
