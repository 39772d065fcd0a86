/* External components (component.h): listeners, one stream per connection,
 * and the router's transport for component domains.
 *
 * Lifetimes as in s2s: a connection is freed only once its conn has
 * reported `closed` and its timer is closed; every path that ends one goes
 * through comp_close(), which is idempotent. A connection that completed
 * the handshake is the domain's (bound[i]) until it closes. */
#include "component/component.h"
#include "listen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "net/conn.h"
#include "stream/stream_component.h"

enum {
    OUT_SOFT_LIMIT = 4 * 1024 * 1024,
    OUT_HARD_LIMIT = 16 * 1024 * 1024,
};

typedef struct comp_conn comp_conn_t;

typedef struct comp_listener {
    struct comp_listener *next;
    struct components *c;
    uv_tcp_t tcp;
    char name[80];
} comp_listener_t;

struct comp_conn {
    comp_conn_t *prev, *next;
    struct components *c;
    conn_t *conn;
    cstream_t *cs;
    uv_timer_t timer;
    bool closing, timer_closed;
    long index; /* in cfg->components once authenticated, else -1 */
    unsigned long id;
};

typedef struct components {
    worker_t *w;
    const server_t *srv;
    const server_config_t *cfg;
    comp_listener_t *listeners;
    comp_conn_t *conns;
    comp_conn_t **bound; /* per configured component: its connection */
    router_remote_t transport;
    xml_limits_t limits_preauth, limits;
    bool shutting_down;
} components_t;

static const logger_t *log_of(const components_t *c)
{
    return &c->srv->log;
}

static long index_of(const components_t *c, const char *domain)
{
    for (size_t i = 0; i < c->cfg->component_count; i++)
        if (strcmp(c->cfg->components[i].domain, domain) == 0)
            return (long)i;
    return -1;
}

/* ------------------------------------------------------------ transport */

/* router_remote_t.send for component domains: to the component, or, while
 * it is away, an error for a message or an IQ (presence is dropped, as for
 * an absent resource). */
static void transport_send(void *ud, xml_tree_t *tree, const char *domain)
{
    components_t *c = ud;
    long i = index_of(c, domain);
    comp_conn_t *cc = i >= 0 ? c->bound[i] : NULL;
    if (cc != NULL && cstream_send_element(cc->cs, tree->root)) {
        xml_tree_free(tree);
        return;
    }
    LOG(log_of(c), LOG_DEBUG, 0, "%s for %s: the component is not connected",
        tree->root->name, domain);
    if (strcmp(tree->root->name, "presence") != 0)
        router_bounce(c->w->router, tree->root, "cancel",
                      "service-unavailable");
    xml_tree_free(tree);
}

/* ------------------------------------------------------------ connections */

static void comp_maybe_free(comp_conn_t *cc)
{
    if (!cc->closing || !cc->timer_closed || cc->conn != NULL)
        return;
    components_t *c = cc->c;
    if (cc->prev != NULL)
        cc->prev->next = cc->next;
    else
        c->conns = cc->next;
    if (cc->next != NULL)
        cc->next->prev = cc->prev;
    c->w->component_conns--;
    cstream_free(cc->cs);
    free(cc);
}

static void on_timer_closed(uv_handle_t *h)
{
    comp_conn_t *cc = h->data;
    cc->timer_closed = true;
    comp_maybe_free(cc);
}

static void comp_close(comp_conn_t *cc)
{
    if (cc->closing)
        return;
    cc->closing = true;
    components_t *c = cc->c;
    if (cc->index >= 0 && c->bound[cc->index] == cc) {
        c->bound[cc->index] = NULL;
        LOG(log_of(c), LOG_INFO, cc->id, "component %s disconnected",
            c->cfg->components[cc->index].domain);
    }
    uv_timer_stop(&cc->timer);
    uv_close((uv_handle_t *)&cc->timer, on_timer_closed);
    if (cc->conn != NULL)
        conn_close(cc->conn, (unsigned)(c->cfg->close_timeout * 1000.0));
}

static void on_timer(uv_timer_t *t)
{
    comp_conn_t *cc = t->data;
    LOG(log_of(cc->c), LOG_INFO, cc->id,
        "component connection from %s: no handshake in time",
        conn_peer_addr(cc->conn));
    cstream_error(cc->cs, "connection-timeout", NULL);
}

static int h_send(void *ud, const char *data, size_t len)
{
    comp_conn_t *cc = ud;
    if (cc->conn == NULL)
        return -1;
    int rc = conn_write(cc->conn, data, len);
    return rc == CONN_OK || rc == CONN_ERR_CLOSED ? 0 : -1;
}

/* The tag of stanza blocks: what a broken connection did not write goes
 * back to the router (on_unsent). */
static char stanza_tag;

static int h_send_stanza(void *ud, const char *data, size_t len)
{
    comp_conn_t *cc = ud;
    if (cc->conn == NULL)
        return -1;
    /* Closing: refused, so that the router answers it instead. */
    return conn_write_block(cc->conn, data, len, &stanza_tag) == CONN_OK ? 0
                                                                         : -1;
}

static void h_close(void *ud)
{
    comp_close(ud);
}

static const char *h_secret(void *ud, const char *domain)
{
    comp_conn_t *cc = ud;
    long i = index_of(cc->c, domain);
    return i >= 0 ? cc->c->cfg->components[i].secret : NULL;
}

static const char *h_authenticated(void *ud, const char *domain)
{
    comp_conn_t *cc = ud;
    components_t *c = cc->c;
    long i = index_of(c, domain);
    if (i < 0)
        return "host-unknown";
    if (c->bound[i] != NULL) {
        /* XEP-0114 §3 allows conflict: the running one keeps its domain. */
        LOG(log_of(c), LOG_INFO, cc->id,
            "component %s: refused a second connection from %s", domain,
            conn_peer_addr(cc->conn));
        return "conflict";
    }
    c->bound[i] = cc;
    cc->index = i;
    uv_timer_stop(&cc->timer);
    LOG(log_of(c), LOG_INFO, cc->id, "component %s connected from %s", domain,
        conn_peer_addr(cc->conn));
    return NULL;
}

static void h_stanza(void *ud, xml_tree_t *stanza)
{
    comp_conn_t *cc = ud;
    router_route_component(cc->c->w->router, stanza);
}

static const cstream_hooks_t hooks = {
    .send = h_send,
    .send_stanza = h_send_stanza,
    .close = h_close,
    .secret = h_secret,
    .authenticated = h_authenticated,
    .stanza = h_stanza,
};

static void on_data(void *ud, const char *data, size_t len)
{
    comp_conn_t *cc = ud;
    if (!cc->closing)
        cstream_feed(cc->cs, data, len);
}

static void on_error(void *ud, int err)
{
    comp_conn_t *cc = ud;
    LOG(log_of(cc->c), LOG_DEBUG, cc->id, "component connection ended: %s",
        conn_strerror(err));
    cstream_abort(cc->cs);
    comp_close(cc);
}

static void on_closed(void *ud)
{
    comp_conn_t *cc = ud;
    cc->conn = NULL;
    comp_close(cc);
    comp_maybe_free(cc);
}

/* A stanza queued for a component whose connection broke before it was
 * written is routed again: to the component's next connection, or an
 * error for its sender (never lost without a word). */
static void on_unsent(void *ud, const char *data, size_t len, void *tag)
{
    comp_conn_t *cc = ud;
    if (tag == &stanza_tag)
        router_requeue_bytes(cc->c->w->router, data, len);
}

static void requeue_unsent(void *arg, const char *data, size_t len, void *tag)
{
    on_unsent(arg, data, len, tag);
}

/* The component does not read: it loses its domain first, so that what
 * it never got goes back to the router as errors for the senders (or to
 * its next connection). */
static void on_overflow(void *ud)
{
    comp_conn_t *cc = ud;
    LOG(log_of(cc->c), LOG_WARN, cc->id,
        "component does not read; over %d bytes queued: dropping it",
        OUT_HARD_LIMIT);
    cstream_error(cc->cs, "policy-violation",
                  "The component does not read what the server sends");
    comp_close(cc);
    conn_unsent_walk(cc->conn, requeue_unsent, cc);
}

static const conn_events_t conn_events = {
    .data = on_data,
    .error = on_error,
    .overflow = on_overflow,
    .unsent = on_unsent,
    .closed = on_closed,
};

static void on_connection(uv_stream_t *server_handle, int status)
{
    comp_listener_t *ls = server_handle->data;
    components_t *c = ls->c;
    worker_t *w = c->w;
    if (status < 0 || c->shutting_down)
        return;
    comp_conn_t *cc = xcalloc(1, sizeof(*cc));
    cc->c = c;
    cc->index = -1;
    cc->id = ++w->next_conn_id;
    uv_timer_init(w->loop, &cc->timer);
    cc->timer.data = cc;
    cc->next = c->conns;
    if (c->conns != NULL)
        c->conns->prev = cc;
    c->conns = cc;
    w->component_conns++;
    conn_opts_t co = {
        .flusher = &w->flusher,
        .soft_limit = OUT_SOFT_LIMIT,
        .hard_limit = OUT_HARD_LIMIT,
        .linger_ms = (unsigned)(c->cfg->close_timeout * 1000.0),
        .read_buf = (char *)w->read_buf,
        .read_buf_size = sizeof(w->read_buf),
    };
    cc->conn = conn_new(w->loop, &co, &conn_events, cc);
    cc->cs = cstream_new(&c->limits_preauth, &c->limits, &hooks, cc);
    if (cc->conn == NULL || conn_accept(cc->conn, server_handle) < 0 ||
        cc->cs == NULL) {
        comp_close(cc);
        return;
    }
    LOG(log_of(c), LOG_DEBUG, cc->id, "component connection from %s on %s",
        conn_peer_addr(cc->conn), ls->name);
    uv_timer_start(&cc->timer, on_timer,
                   (uint64_t)(c->cfg->handshake_timeout * 1000.0), 0);
    conn_read_start(cc->conn);
}

/* ----------------------------------------------------------------- start */

int component_start(worker_t *w)
{
    const server_t *srv = w->srv;
    const server_config_t *cfg = srv->cfg;
    w->components = NULL;
    if (cfg->component_count == 0)
        return 0;
    components_t *c = xcalloc(1, sizeof(*c));
    w->components = c;
    c->w = w;
    c->srv = srv;
    c->cfg = cfg;
    c->bound = xcalloc(cfg->component_count, sizeof(*c->bound));
    c->limits_preauth = srv->stream_cfg.limits_preauth;
    c->limits = srv->stream_cfg.limits;
    for (size_t i = 0; i < cfg->component_listen_count; i++) {
        comp_listener_t *l = xcalloc(1, sizeof(*l));
        l->c = c;
        l->next = c->listeners;
        c->listeners = l;
        int rc = server_listen(w->loop, &l->tcp, &cfg->component_listen[i],
                               on_connection, "component", log_of(c), l->name,
                               sizeof(l->name));
        l->tcp.data = l;
        if (rc < 0)
            return -1;
    }
    c->transport = (router_remote_t){transport_send, c};
    router_set_components(w->router, &c->transport);
    LOG(log_of(c), LOG_INFO, 0, "%zu component(s) configured",
        cfg->component_count);
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

void component_shutdown(worker_t *w, const char *condition)
{
    components_t *c = w->components;
    if (c == NULL)
        return;
    c->shutting_down = true;
    router_set_components(w->router, NULL);
    for (comp_listener_t *l = c->listeners; l != NULL;) {
        comp_listener_t *next = l->next;
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        l = next;
    }
    c->listeners = NULL;
    for (comp_conn_t *cc = c->conns; cc != NULL; cc = cc->next)
        if (!cc->closing)
            cstream_error(cc->cs, condition, NULL);
}

void component_free(worker_t *w)
{
    components_t *c = w->components;
    if (c == NULL)
        return;
    for (comp_listener_t *l = c->listeners; l != NULL;) {
        comp_listener_t *next = l->next;
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        l = next;
    }
    free(c->bound);
    free(c);
    w->components = NULL;
}
