#include "net/connector.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The lifetime problem: DNS answers and connect callbacks may arrive after
 * the attempt that asked for them was cancelled, or after connector_free.
 * Each DNS request carries the attempt's generation in a small token, and
 * the connector counts what is outstanding; it is freed only when nothing
 * refers to it any more. */
struct connector {
    uv_loop_t *loop;
    dns_t *dns;
    uv_timer_t *timer; /* connect timeout; heap, closed asynchronously */

    connector_opts_t o;
    char *domain, *server;
    connector_cb cb;
    void *ud;
    unsigned gen; /* of the attempt in progress */
    bool busy, freeing;
    unsigned pending; /* DNS requests and connects in flight */

    dns_targets_t targets;
    size_t target_i;
    struct sockaddr_storage *addrs;
    size_t naddrs, addr_i;
    conn_t *conn; /* the connect in flight */
};

typedef struct token {
    connector_t *k;
    unsigned gen;
} token_t;

static void maybe_free(connector_t *k)
{
    if (!k->freeing || k->pending > 0 || k->timer != NULL)
        return;
    dns_targets_free(&k->targets);
    free(k->addrs);
    free(k->domain);
    free(k->server);
    free(k);
}

static void on_timer_closed(uv_handle_t *h)
{
    connector_t *k = h->data;
    free(h);
    k->timer = NULL;
    maybe_free(k);
}

connector_t *connector_new(uv_loop_t *loop, dns_t *dns)
{
    connector_t *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return NULL;
    k->timer = malloc(sizeof(*k->timer));
    if (k->timer == NULL) {
        free(k);
        return NULL;
    }
    k->loop = loop;
    k->dns = dns;
    uv_timer_init(loop, k->timer);
    k->timer->data = k;
    return k;
}

static void finish(connector_t *k, const connector_result_t *r)
{
    k->busy = false;
    k->gen++;
    uv_timer_stop(k->timer);
    k->cb(k->ud, r);
}

static void fail(connector_t *k, int err, int dns_err)
{
    connector_result_t r = {.err = err, .dns_err = dns_err};
    finish(k, &r);
}

static token_t *token_new(connector_t *k)
{
    token_t *t = malloc(sizeof(*t));
    if (t == NULL)
        return NULL;
    t->k = k;
    t->gen = k->gen;
    k->pending++;
    return t;
}

/* Takes the token back: returns the connector when the answer is still
 * wanted, NULL otherwise (and frees a connector nothing refers to). */
static connector_t *token_take(token_t *t)
{
    connector_t *k = t->k;
    bool current = t->gen == k->gen && k->busy && !k->freeing;
    free(t);
    k->pending--;
    if (!current) {
        maybe_free(k);
        return NULL;
    }
    return k;
}

static void try_next_address(connector_t *k);

static void on_connect_timeout(uv_timer_t *t)
{
    connector_t *k = t->data;
    if (k->conn == NULL)
        return;
    /* Give up on this address (its callback comes back cancelled). */
    conn_abort(k->conn);
    k->conn = NULL;
    try_next_address(k);
}

static void on_connect(conn_t *c, int status, void *ud)
{
    connector_t *k = ud;
    k->pending--;
    if (c != k->conn || k->freeing || !k->busy) {
        if (status == 0)
            conn_abort(c); /* connected too late: nobody wants it */
        maybe_free(k);
        return;
    }
    k->conn = NULL;
    uv_timer_stop(k->timer);
    if (status < 0) {
        /* Next address, next target (RFC 6120 §3.2.1). */
        conn_abort(c);
        try_next_address(k);
        return;
    }
    const dns_target_t *t = &k->targets.v[k->target_i - 1];
    connector_result_t r = {.err = CONNECTOR_OK,
                            .conn = c,
                            .direct_tls = t->direct_tls,
                            .host = t->host,
                            .port = t->port};
    finish(k, &r);
}

static void try_address(connector_t *k, const struct sockaddr *sa)
{
    conn_t *c = conn_new(k->loop, &k->o.conn, NULL, NULL);
    if (c == NULL) {
        fail(k, CONNECTOR_ERR_NOMEM, 0);
        return;
    }
    k->conn = c;
    if (conn_connect(c, sa, on_connect, k) < 0) {
        k->conn = NULL;
        conn_abort(c);
        try_next_address(k);
        return;
    }
    k->pending++;
    if (k->o.connect_timeout_ms > 0)
        uv_timer_start(k->timer, on_connect_timeout, k->o.connect_timeout_ms,
                       0);
}

static void on_addrs(void *ud, int err, struct sockaddr_storage *addrs,
                     size_t n)
{
    connector_t *k = token_take(ud);
    if (k == NULL)
        return;
    free(k->addrs);
    k->addrs = NULL;
    k->naddrs = k->addr_i = 0;
    if (err == DNS_OK && n > 0) {
        k->addrs = malloc(n * sizeof(*addrs));
        if (k->addrs != NULL) {
            memcpy(k->addrs, addrs, n * sizeof(*addrs));
            k->naddrs = n;
        }
    }
    try_next_address(k);
}

/* Tries the next address of the current target, then the next target. */
static void try_next_address(connector_t *k)
{
    if (k->addr_i < k->naddrs) {
        try_address(k, (struct sockaddr *)&k->addrs[k->addr_i++]);
        return;
    }
    free(k->addrs);
    k->addrs = NULL;
    k->naddrs = k->addr_i = 0;
    if (k->target_i < k->targets.n) {
        dns_target_t *t = &k->targets.v[k->target_i++];
        token_t *tok = token_new(k);
        if (tok == NULL) {
            fail(k, CONNECTOR_ERR_NOMEM, 0);
            return;
        }
        dns_resolve_addr(k->dns, t->host, t->port, on_addrs, tok);
        return;
    }
    fail(k, CONNECTOR_ERR_CONNECT, 0);
}

static void on_targets(void *ud, int err, dns_targets_t *targets)
{
    connector_t *k = token_take(ud);
    if (k == NULL || err != DNS_OK) {
        dns_targets_free(targets);
        free(targets);
        if (k != NULL)
            fail(k, CONNECTOR_ERR_DNS, err);
        return;
    }
    dns_targets_free(&k->targets);
    k->targets = *targets;
    free(targets);
    k->target_i = 0;
    try_next_address(k);
}

/* "host", "host:port" or "[v6]:port" into one target. */
static int parse_server(connector_t *k, const char *s, bool direct_tls)
{
    char host[256];
    bool server = k->o.service == DNS_SERVICE_SERVER;
    unsigned port =
        server ? (direct_tls ? 5270 : 5269) : (direct_tls ? 5223 : 5222);
    const char *colon = strrchr(s, ':');
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL)
            return -1;
        snprintf(host, sizeof(host), "%.*s", (int)(end - s - 1), s + 1);
        if (end[1] == ':')
            port = (unsigned)atoi(end + 2);
    } else if (colon != NULL && strchr(s, ':') == colon) {
        snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
        port = (unsigned)atoi(colon + 1);
    } else {
        snprintf(host, sizeof(host), "%s", s);
    }
    if (port == 0 || port > 65535)
        return -1;
    k->targets.v = calloc(1, sizeof(dns_target_t));
    if (k->targets.v == NULL || (k->targets.v[0].host = strdup(host)) == NULL)
        return -1;
    k->targets.v[0].port = (unsigned short)port;
    k->targets.v[0].direct_tls = direct_tls;
    k->targets.n = 1;
    return 0;
}

int connector_start(connector_t *k, const connector_opts_t *o, connector_cb cb,
                    void *ud)
{
    if (k->busy || k->freeing)
        return -1;
    free(k->domain);
    free(k->server);
    k->domain = o->domain != NULL ? strdup(o->domain) : NULL;
    k->server = o->server != NULL ? strdup(o->server) : NULL;
    if ((o->domain != NULL && k->domain == NULL) ||
        (o->server != NULL && k->server == NULL))
        return -1;
    k->o = *o;
    k->o.domain = k->domain;
    k->o.server = k->server;
    k->cb = cb;
    k->ud = ud;
    dns_targets_free(&k->targets);
    k->target_i = 0;
    free(k->addrs);
    k->addrs = NULL;
    k->naddrs = k->addr_i = 0;
    if (k->server != NULL) {
        if (parse_server(k, k->server, o->direct_tls) < 0) {
            dns_targets_free(&k->targets);
            return -1;
        }
        k->busy = true;
        try_next_address(k);
        return 0;
    }
    if (k->domain == NULL)
        return -1;
    token_t *tok = token_new(k);
    if (tok == NULL)
        return -1;
    k->busy = true;
    dns_resolve_xmpp_service(k->dns, k->domain, k->o.service, on_targets, tok);
    return 0;
}

void connector_cancel(connector_t *k)
{
    if (!k->busy)
        return;
    k->busy = false;
    k->gen++;
    uv_timer_stop(k->timer);
    if (k->conn != NULL) {
        conn_abort(k->conn);
        k->conn = NULL;
    }
}

bool connector_busy(const connector_t *k)
{
    return k->busy;
}

void connector_free(connector_t *k)
{
    if (k == NULL)
        return;
    connector_cancel(k);
    k->freeing = true;
    if (k->timer != NULL)
        uv_close((uv_handle_t *)k->timer, on_timer_closed);
}

unsigned connector_backoff_ms(unsigned attempts, uint32_t random)
{
    unsigned base = 1000u << (attempts < 6 ? attempts : 6);
    return base / 2 + random % (base + 1);
}
