/* dns: c-ares on a libuv loop (see dns.h).
 *
 * c-ares never blocks here: it tells us through sock_state_cb which sockets
 * it wants watched, each gets a uv_poll_t, and one uv_timer_t follows
 * ares_timeout() so that retries and timeouts happen without any socket
 * activity. Answers are never handed to the caller from inside c-ares:
 * a finished request goes onto a queue that a uv_idle_t drains on the next
 * loop iteration. That keeps the caller's callbacks out of c-ares' own
 * call stack (where dns_free() would destroy the channel under it) and
 * makes "the callback runs on the loop, never from inside the resolve
 * call" true even for answers c-ares gives synchronously.
 *
 * Lifetimes: dns_t owns the channel, the timer, the idle handle and one
 * dns_poll_t per c-ares socket. A request is owned by c-ares (as the
 * argument of its queries) until its last query ends, then by the done
 * queue until its callback has run. dns_t is freed in the close callback
 * of its last libuv handle, so it outlives every callback that refers to
 * it. */
#include "net/dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>

#include "base/rand.h"

/* RFC 6120 §3.2.2: the fallback when there is no _xmpp-client record. */
#define XMPP_CLIENT_PORT 5222
#define XMPP_SERVER_PORT 5269
/* RFC 1035 §2.3.4: 255 octets on the wire, 253 characters as text. */
#define DNS_NAME_MAX 253

typedef struct dns_poll dns_poll_t;
struct dns_poll {
    uv_poll_t h;
    dns_t *d;
    ares_socket_t fd;
    dns_poll_t *next;
};

typedef struct dns_req dns_req_t;

/* The argument of one SRV query: which service it asked for. */
typedef struct dns_srv_query {
    dns_req_t *req;
    int status;                   /* ARES_* once answered */
    struct ares_srv_reply *reply; /* parsed answer, owned until finish */
} dns_srv_query_t;

enum { SRV_XMPPS = 0, SRV_XMPP = 1 };

struct dns_req {
    dns_req_t *next; /* in the done queue */
    dns_t *d;
    bool is_xmpp;
    int err;
    void *ud;
    dns_xmpp_cb xmpp_cb;
    dns_addr_cb addr_cb;
    /* dns_resolve_xmpp */
    char *domain;
    unsigned short fallback_port; /* 5222 or 5269 */
    unsigned pending;             /* SRV queries not yet answered */
    dns_srv_query_t srv[2];
    dns_targets_t targets;
    /* dns_resolve_addr */
    unsigned short port;
    struct sockaddr_storage *addrs;
    size_t naddrs;
};

struct dns {
    uv_loop_t *loop;
    ares_channel ch;
    uv_timer_t timer;
    uv_idle_t idle;
    dns_poll_t *polls;
    /* Finished requests whose callbacks have not run, oldest first. */
    dns_req_t *done_head;
    dns_req_t **done_tail;
    size_t ndone;
    /* libuv handles not yet closed (timer, idle, polls); freed at 0 once
     * closing. */
    unsigned handles;
    bool closing;
};

static void dns_free_now(dns_t *d);

const char *dns_strerror(int err)
{
    switch (err) {
    case DNS_OK:
        return "success";
    case DNS_ERR_NOT_FOUND:
        return "no such domain";
    case DNS_ERR_UNAVAILABLE:
        return "the domain offers no XMPP service";
    case DNS_ERR_FAILED:
        return "DNS lookup failed";
    case DNS_ERR_CANCELLED:
        return "DNS lookup cancelled";
    case DNS_ERR_NOMEM:
        return "out of memory";
    default:
        return "unknown DNS error";
    }
}

static int dns_err_from_ares(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return DNS_OK;
    case ARES_ENODATA:
    case ARES_ENOTFOUND:
    case ARES_ENONAME:
    case ARES_EBADNAME:
        return DNS_ERR_NOT_FOUND;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        return DNS_ERR_CANCELLED;
    case ARES_ENOMEM:
        return DNS_ERR_NOMEM;
    default:
        return DNS_ERR_FAILED;
    }
}

void dns_targets_free(dns_targets_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].host);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

/* ---- RFC 2782 ordering ------------------------------------------------ */

typedef struct srv_cand {
    const dns_srv_t *s;
    size_t index; /* position in the input, for a deterministic sort */
} srv_cand_t;

static int srv_cand_cmp(const void *a, const void *b)
{
    const srv_cand_t *x = a, *y = b;
    if (x->s->priority != y->s->priority)
        return x->s->priority < y->s->priority ? -1 : 1;
    /* XEP-0368 §3 mixes both services' priorities and weights but lets a
     * client prefer one kind; at equal priority we take direct TLS first,
     * which saves the STARTTLS round trips and never sends a byte in the
     * clear. */
    if (x->s->direct_tls != y->s->direct_tls)
        return x->s->direct_tls ? -1 : 1;
    /* RFC 2782: "all those with weight 0 are placed at the beginning of
     * the list" before the running sums are computed. */
    if ((x->s->weight == 0) != (y->s->weight == 0))
        return x->s->weight == 0 ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static bool srv_same_group(const srv_cand_t *a, const srv_cand_t *b)
{
    return a->s->priority == b->s->priority &&
           a->s->direct_tls == b->s->direct_tls;
}

int dns_order_srv(const dns_srv_t *v, size_t n, unsigned (*rnd)(void *ctx),
                  void *ctx, dns_targets_t *out)
{
    out->v = NULL;
    out->n = 0;
    if (n == 0)
        return DNS_OK;
    size_t keep = n < DNS_SRV_MAX ? n : DNS_SRV_MAX;
    srv_cand_t *c = calloc(n, sizeof(*c));
    out->v = calloc(keep, sizeof(*out->v));
    if (c == NULL || out->v == NULL) {
        free(c);
        free(out->v);
        out->v = NULL;
        return DNS_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        c[i].s = &v[i];
        c[i].index = i;
    }
    qsort(c, n, sizeof(*c), srv_cand_cmp);

    /* c[g..e) is one group (same priority and kind) whose members have
     * not been chosen yet; chosen ones are rotated to c[g] and g moves
     * past them. Work is bounded by n * DNS_SRV_MAX, whatever n is. */
    size_t g = 0;
    while (g < n && out->n < keep) {
        size_t e = g + 1;
        while (e < n && srv_same_group(&c[e], &c[g]))
            e++;
        while (g < e && out->n < keep) {
            /* RFC 2782, "Usage rules": sum the weights, take a uniform
             * random number in [0, sum] and choose the first record whose
             * running sum is at least that number. Weights are 16 bits and
             * a group holds at most n records, so the sum fits easily. */
            uint64_t sum = 0;
            for (size_t i = g; i < e; i++)
                sum += c[i].s->weight;
            uint64_t r = sum == 0 ? 0 : (uint64_t)rnd(ctx) % (sum + 1);
            uint64_t run = 0;
            size_t pick = e - 1;
            for (size_t i = g; i < e; i++) {
                run += c[i].s->weight;
                if (run >= r) {
                    pick = i;
                    break;
                }
            }
            srv_cand_t chosen = c[pick];
            /* Keep the rest in order so that zero weights stay in front
             * for the next round, as RFC 2782 requires. */
            memmove(&c[g + 1], &c[g], (pick - g) * sizeof(*c));
            c[g] = chosen;
            g++;
            dns_target_t *t = &out->v[out->n];
            t->host = strdup(chosen.s->host);
            if (t->host == NULL) {
                free(c);
                dns_targets_free(out);
                return DNS_ERR_NOMEM;
            }
            t->port = chosen.s->port;
            t->direct_tls = chosen.s->direct_tls;
            out->n++;
        }
        g = e;
    }
    free(c);
    return DNS_OK;
}

/* The production value source for the weighted choice: SRV weights spread
 * load, so any unpredictable value will do; should the kernel fail, 0
 * merely makes the choice deterministic. */
static unsigned srv_rnd(void *ctx)
{
    (void)ctx;
    unsigned r = 0;
    if (rand_bytes(&r, sizeof(r)) != 0)
        return 0;
    return r;
}

/* ---- the libuv side of c-ares ------------------------------------------ */

static void on_handle_closed(uv_handle_t *h)
{
    dns_t *d = h->data;
    if (h->type == UV_POLL)
        free(h); /* the uv_poll_t is the first member of its dns_poll_t */
    if (--d->handles == 0 && d->closing)
        dns_free_now(d);
}

static void on_timer(uv_timer_t *t);

/* Re-arms the timer for c-ares' next deadline (a retry or a timeout), or
 * stops it when no query is outstanding. Called after everything that can
 * start, answer or time out a query. */
static void dns_arm_timer(dns_t *d)
{
    if (d->closing)
        return;
    struct timeval tv;
    if (ares_timeout(d->ch, NULL, &tv) == NULL) {
        uv_timer_stop(&d->timer);
        return;
    }
    /* Round up: waking a millisecond early would only find nothing due and
     * re-arm for the remainder, over and over. */
    uint64_t ms =
        (uint64_t)tv.tv_sec * 1000 + ((uint64_t)tv.tv_usec + 999) / 1000;
    uv_update_time(d->loop);
    uv_timer_start(&d->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *t)
{
    dns_t *d = t->data;
    ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns_arm_timer(d);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    dns_poll_t *p = (dns_poll_t *)h;
    dns_t *d = p->d;
    ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;
    if (status < 0) {
        /* Let c-ares meet the error on the socket itself: it then fails
         * over to the next server or retries, as it would with select. */
        rfd = wfd = p->fd;
    } else {
        if (events & UV_READABLE)
            rfd = p->fd;
        if (events & UV_WRITABLE)
            wfd = p->fd;
    }
    /* This may close the socket, and with it `p`, through sock_state_cb. */
    ares_process_fd(d->ch, rfd, wfd);
    dns_arm_timer(d);
}

static void poll_close(dns_poll_t *p)
{
    dns_t *d = p->d;
    for (dns_poll_t **pp = &d->polls; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    uv_close((uv_handle_t *)&p->h, on_handle_closed);
}

/* c-ares opens, re-targets and closes sockets through this. It announces a
 * close before it closes the descriptor, so the poll handle stops watching
 * it while the number still means this socket. */
static void on_sock_state(void *data, ares_socket_t fd, int readable,
                          int writable)
{
    dns_t *d = data;
    dns_poll_t *p = d->polls;
    while (p != NULL && p->fd != fd)
        p = p->next;
    if (!readable && !writable) {
        if (p != NULL)
            poll_close(p);
        return;
    }
    if (p == NULL) {
        /* Should this fail, nobody watches the socket; the timer still
         * runs, so the query ends as a timeout (DNS_ERR_FAILED) rather than
         * never. There is no way to tell c-ares from here. */
        p = calloc(1, sizeof(*p));
        if (p == NULL)
            return;
        if (uv_poll_init_socket(d->loop, &p->h, fd) != 0) {
            free(p);
            return;
        }
        p->h.data = d;
        p->d = d;
        p->fd = fd;
        p->next = d->polls;
        d->polls = p;
        d->handles++;
    }
    int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
    if (uv_poll_start(&p->h, events, on_poll) != 0)
        poll_close(p);
}

/* ---- requests ---------------------------------------------------------- */

static void req_free(dns_req_t *r)
{
    for (int i = 0; i < 2; i++)
        if (r->srv[i].reply != NULL)
            ares_free_data(r->srv[i].reply);
    dns_targets_free(&r->targets);
    free(r->addrs);
    free(r->domain);
    free(r);
}

/* Runs the caller's callback and frees the request. A cancelled request
 * loses any answer it already had: the caller asked for no more. */
static void req_deliver(dns_req_t *r, bool cancel)
{
    int err = cancel ? DNS_ERR_CANCELLED : r->err;
    if (r->is_xmpp) {
        dns_targets_t *t = NULL;
        if (err == DNS_OK) {
            t = malloc(sizeof(*t));
            if (t == NULL) {
                err = DNS_ERR_NOMEM;
            } else {
                *t = r->targets;
                r->targets.v = NULL;
                r->targets.n = 0;
            }
        }
        r->xmpp_cb(r->ud, err, t);
    } else {
        /* Lent for the callback; req_free() releases it. */
        if (err == DNS_OK)
            r->addr_cb(r->ud, err, r->addrs, r->naddrs);
        else
            r->addr_cb(r->ud, err, NULL, 0);
    }
    req_free(r);
}

static void on_idle(uv_idle_t *h)
{
    dns_t *d = h->data;
    uv_idle_stop(&d->idle);
    /* Only what is queued now: a callback that starts a request answered
     * at once (an IP literal) gets it on the next iteration, so a caller
     * that keeps asking cannot starve the loop. The queue stays in `d`
     * meanwhile, so that dns_free() from a callback cancels the rest
     * before it returns. */
    for (size_t n = d->ndone; n > 0 && d->done_head != NULL; n--) {
        dns_req_t *r = d->done_head;
        d->done_head = r->next;
        if (d->done_head == NULL)
            d->done_tail = &d->done_head;
        d->ndone--;
        req_deliver(r, false);
    }
}

static void req_done(dns_req_t *r, int err)
{
    dns_t *d = r->d;
    r->err = err;
    r->next = NULL;
    *d->done_tail = r;
    d->done_tail = &r->next;
    d->ndone++;
    if (!d->closing)
        uv_idle_start(&d->idle, on_idle);
}

static dns_req_t *req_new(dns_t *d, void *ud)
{
    dns_req_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->d = d;
    r->ud = ud;
    return r;
}

/* Copies `host` without the brackets of an IPv6 literal into buf if it is
 * an IP literal, and fills *ss with port. */
static bool parse_ip_literal(const char *host, unsigned short port,
                             struct sockaddr_storage *ss, char *buf,
                             size_t buflen)
{
    size_t len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    if (len == 0 || len >= buflen || len >= INET6_ADDRSTRLEN)
        return false;
    memcpy(buf, host, len);
    buf[len] = '\0';
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, buf, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        return true;
    }
    if (inet_pton(AF_INET6, buf, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        return true;
    }
    return false;
}

static bool name_ok(const char *name)
{
    size_t len = name != NULL ? strlen(name) : 0;
    return len > 0 && len <= DNS_NAME_MAX + 1; /* +1: a trailing dot */
}

/* ---- dns_resolve_xmpp ---------------------------------------------------- */

typedef enum { SVC_NONE, SVC_DOT, SVC_RECORDS, SVC_FAILED } svc_state_t;

/* RFC 2782: a target of "." (which c-ares expands to "") means "decidedly
 * not available". A record that cannot be connected to (port 0) counts as
 * no record. */
static bool srv_usable(const struct ares_srv_reply *s)
{
    return s->host[0] != '\0' && strcmp(s->host, ".") != 0 && s->port != 0;
}

static svc_state_t svc_state(const dns_srv_query_t *q)
{
    if (q->status == ARES_ENODATA || q->status == ARES_ENOTFOUND)
        return SVC_NONE;
    if (q->status != ARES_SUCCESS)
        return SVC_FAILED;
    for (const struct ares_srv_reply *s = q->reply; s != NULL; s = s->next)
        if (srv_usable(s))
            return SVC_RECORDS;
    /* Only "." (or unusable) records: RFC 6120 §3.2.1 step 3 speaks of a
     * single "." record; more than one of them means the same. */
    return SVC_DOT;
}

/* Adds the usable records of one service to v[*n..], keeping at most
 * DNS_SRV_MAX of them: those with the lowest priority values, since the
 * order tries those first. Bounded work whatever the answer held. */
static void srv_collect(const dns_srv_query_t *q, bool direct_tls, dns_srv_t *v,
                        size_t *n)
{
    size_t base = *n, k = 0;
    for (const struct ares_srv_reply *s = q->reply; s != NULL; s = s->next) {
        if (!srv_usable(s))
            continue;
        dns_srv_t rec = {
            .host = s->host,
            .port = s->port,
            .priority = s->priority,
            .weight = s->weight,
            .direct_tls = direct_tls,
        };
        if (k < DNS_SRV_MAX) {
            v[base + k++] = rec;
            continue;
        }
        size_t worst = base;
        for (size_t i = base + 1; i < base + k; i++)
            if (v[i].priority > v[worst].priority)
                worst = i;
        if (rec.priority < v[worst].priority)
            v[worst] = rec;
    }
    *n = base + k;
}

static int xmpp_fallback(dns_req_t *r)
{
    /* RFC 6120 §3.2.2: no SRV records, so the domain itself, on the
     * xmpp-client port, with STARTTLS. */
    r->targets.v = calloc(1, sizeof(*r->targets.v));
    if (r->targets.v == NULL)
        return DNS_ERR_NOMEM;
    r->targets.v[0].host = strdup(r->domain);
    if (r->targets.v[0].host == NULL) {
        free(r->targets.v);
        r->targets.v = NULL;
        return DNS_ERR_NOMEM;
    }
    r->targets.v[0].port = r->fallback_port;
    r->targets.v[0].direct_tls = false;
    r->targets.n = 1;
    return DNS_OK;
}

static int xmpp_merge(dns_req_t *r)
{
    dns_srv_query_t *tls = &r->srv[SRV_XMPPS], *plain = &r->srv[SRV_XMPP];
    if (tls->status == ARES_ECANCELLED || tls->status == ARES_EDESTRUCTION ||
        plain->status == ARES_ECANCELLED || plain->status == ARES_EDESTRUCTION)
        return DNS_ERR_CANCELLED;
    svc_state_t st = svc_state(tls), sp = svc_state(plain);

    if (st == SVC_RECORDS || sp == SVC_RECORDS) {
        /* XEP-0368 §3: both services' records form one list. A "." or a
         * failure of the other service takes nothing away from these. */
        dns_srv_t v[2 * DNS_SRV_MAX];
        size_t n = 0;
        if (st == SVC_RECORDS)
            srv_collect(tls, true, v, &n);
        if (sp == SVC_RECORDS)
            srv_collect(plain, false, v, &n);
        return dns_order_srv(v, n, srv_rnd, NULL, &r->targets);
    }
    if (tls->status == ARES_ENOMEM || plain->status == ARES_ENOMEM)
        return DNS_ERR_NOMEM;
    if (sp == SVC_DOT) {
        /* RFC 6120 §3.2.1 step 3: a "." target aborts SRV processing and
         * the fallback SHOULD NOT be attempted. Unless direct TLS could
         * not be asked, the domain offers no client service at all. */
        return st == SVC_FAILED ? DNS_ERR_FAILED : DNS_ERR_UNAVAILABLE;
    }
    if (sp == SVC_FAILED && st == SVC_FAILED) {
        /* RFC 6120 §3.2.2 would fall back, but a server that answered
         * neither query will not answer the address query either; the
         * caller learns the real reason sooner this way. */
        return DNS_ERR_FAILED;
    }
    /* No _xmpp-client records (or that lookup failed while the other one
     * was answered): RFC 6120 §3.2.2. A "." for _xmpps-client only says
     * there is no direct TLS. */
    return xmpp_fallback(r);
}

static void on_srv(void *arg, int status, int timeouts, unsigned char *abuf,
                   int alen)
{
    (void)timeouts;
    dns_srv_query_t *q = arg;
    dns_req_t *r = q->req;
    if (status == ARES_SUCCESS) {
        struct ares_srv_reply *reply = NULL;
        status = ares_parse_srv_reply(abuf, alen, &reply);
        if (status == ARES_SUCCESS)
            q->reply = reply;
        else if (reply != NULL)
            ares_free_data(reply);
    }
    q->status = status;
    if (--r->pending > 0)
        return;
    int err = xmpp_merge(r);
    /* The answers are copied into r->targets; the rest goes now. */
    for (int i = 0; i < 2; i++) {
        if (r->srv[i].reply != NULL)
            ares_free_data(r->srv[i].reply);
        r->srv[i].reply = NULL;
    }
    req_done(r, err);
}

void dns_resolve_xmpp(dns_t *d, const char *domain, dns_xmpp_cb cb, void *ud)
{
    dns_resolve_xmpp_service(d, domain, DNS_SERVICE_CLIENT, cb, ud);
}

void dns_resolve_xmpp_service(dns_t *d, const char *domain, dns_service_t svc,
                              dns_xmpp_cb cb, void *ud)
{
    if (d->closing) {
        cb(ud, DNS_ERR_CANCELLED, NULL);
        return;
    }
    dns_req_t *r = req_new(d, ud);
    if (r == NULL) {
        cb(ud, DNS_ERR_NOMEM, NULL);
        return;
    }
    r->is_xmpp = true;
    r->xmpp_cb = cb;
    r->fallback_port =
        svc == DNS_SERVICE_SERVER ? XMPP_SERVER_PORT : XMPP_CLIENT_PORT;
    if (!name_ok(domain)) {
        req_done(r, DNS_ERR_NOT_FOUND);
        return;
    }
    struct sockaddr_storage ss;
    char lit[INET6_ADDRSTRLEN];
    if (parse_ip_literal(domain, r->fallback_port, &ss, lit, sizeof(lit))) {
        /* An IP-literal domain has no SRV records to ask for. */
        r->domain = strdup(lit);
        req_done(r, r->domain != NULL ? xmpp_fallback(r) : DNS_ERR_NOMEM);
        return;
    }
    r->domain = strdup(domain);
    if (r->domain == NULL) {
        req_done(r, DNS_ERR_NOMEM);
        return;
    }
    static const char *const services[2][2] = {
        {[SRV_XMPPS] = "_xmpps-client._tcp.",
         [SRV_XMPP] = "_xmpp-client._tcp."},
        {[SRV_XMPPS] = "_xmpps-server._tcp.",
         [SRV_XMPP] = "_xmpp-server._tcp."},
    };
    const char *const *service = services[svc == DNS_SERVICE_SERVER];
    char name[sizeof("_xmpps-client._tcp.") + DNS_NAME_MAX + 1];
    r->pending = 2;
    for (int i = 0; i < 2; i++) {
        r->srv[i].req = r;
        snprintf(name, sizeof(name), "%s%s", service[i], domain);
        /* ares_query, not ares_search: the name is absolute, and search
         * domains would ask other zones for our service. c-ares may answer
         * from inside this call (no memory, a bad name); on_srv copes,
         * and the caller still hears on the next loop iteration. */
        ares_query(d->ch, name, ns_c_in, ns_t_srv, on_srv, &r->srv[i]);
    }
    dns_arm_timer(d);
}

/* ---- dns_resolve_addr ---------------------------------------------------- */

static void on_addrinfo(void *arg, int status, int timeouts,
                        struct ares_addrinfo *ai)
{
    (void)timeouts;
    dns_req_t *r = arg;
    int err = dns_err_from_ares(status);
    if (err == DNS_OK) {
        size_t n = 0;
        for (struct ares_addrinfo_node *p = ai != NULL ? ai->nodes : NULL;
             p != NULL && n < DNS_ADDR_MAX; p = p->ai_next)
            if (p->ai_family == AF_INET || p->ai_family == AF_INET6)
                n++;
        r->addrs = n > 0 ? calloc(n, sizeof(*r->addrs)) : NULL;
        if (n == 0) {
            err = DNS_ERR_NOT_FOUND;
        } else if (r->addrs == NULL) {
            err = DNS_ERR_NOMEM;
        } else {
            for (struct ares_addrinfo_node *p = ai->nodes;
                 p != NULL && r->naddrs < n; p = p->ai_next) {
                struct sockaddr_storage *ss = &r->addrs[r->naddrs];
                if (p->ai_family == AF_INET &&
                    p->ai_addrlen >= sizeof(struct sockaddr_in)) {
                    memcpy(ss, p->ai_addr, sizeof(struct sockaddr_in));
                    ((struct sockaddr_in *)ss)->sin_port = htons(r->port);
                } else if (p->ai_family == AF_INET6 &&
                           p->ai_addrlen >= sizeof(struct sockaddr_in6)) {
                    memcpy(ss, p->ai_addr, sizeof(struct sockaddr_in6));
                    ((struct sockaddr_in6 *)ss)->sin6_port = htons(r->port);
                } else {
                    continue;
                }
                r->naddrs++;
            }
            if (r->naddrs == 0)
                err = DNS_ERR_NOT_FOUND;
        }
    }
    if (ai != NULL)
        ares_freeaddrinfo(ai);
    req_done(r, err);
}

void dns_resolve_addr(dns_t *d, const char *host, unsigned short port,
                      dns_addr_cb cb, void *ud)
{
    if (d->closing) {
        cb(ud, DNS_ERR_CANCELLED, NULL, 0);
        return;
    }
    dns_req_t *r = req_new(d, ud);
    if (r == NULL) {
        cb(ud, DNS_ERR_NOMEM, NULL, 0);
        return;
    }
    r->addr_cb = cb;
    r->port = port;
    if (!name_ok(host)) {
        req_done(r, DNS_ERR_NOT_FOUND);
        return;
    }
    struct sockaddr_storage ss;
    char lit[INET6_ADDRSTRLEN];
    if (parse_ip_literal(host, port, &ss, lit, sizeof(lit))) {
        r->addrs = malloc(sizeof(*r->addrs));
        if (r->addrs == NULL) {
            req_done(r, DNS_ERR_NOMEM);
            return;
        }
        *r->addrs = ss;
        r->naddrs = 1;
        req_done(r, DNS_OK);
        return;
    }
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    ares_getaddrinfo(d->ch, host, NULL, &hints, on_addrinfo, r);
    dns_arm_timer(d);
}

/* ---- life cycle ---------------------------------------------------------- */

dns_t *dns_new(uv_loop_t *loop, const char *servers, char *err, size_t errlen)
{
    dns_config_t cfg = {.servers = servers};
    return dns_new_config(loop, &cfg, err, errlen);
}

dns_t *dns_new_config(uv_loop_t *loop, const dns_config_t *cfg, char *err,
                      size_t errlen)
{
    static const dns_config_t defaults = {NULL, 0, 0};
    if (cfg == NULL)
        cfg = &defaults;
    /* c-ares reference-counts its process-wide initialisation since 1.10.0
     * (ares_library_init(3), AVAILABILITY; in 1.18.1 a plain counter in
     * ares_library_init.c), so every resolver takes one reference and
     * dns_free_now() drops it. */
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
        return NULL;
    }
    dns_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        ares_library_cleanup();
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->loop = loop;
    d->done_tail = &d->done_head;

    struct ares_options o;
    memset(&o, 0, sizeof(o));
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_DOMAINS;
    o.sock_state_cb = on_sock_state;
    o.sock_state_cb_data = d;
    /* No search domains: XMPP domains and SRV targets are fully qualified,
     * and ares_getaddrinfo() would otherwise retry an NXDOMAIN name with
     * every search suffix of resolv.conf. */
    o.domains = NULL;
    o.ndomains = 0;
    if (cfg->timeout_ms > 0) {
        mask |= ARES_OPT_TIMEOUTMS;
        o.timeout =
            cfg->timeout_ms > INT32_MAX ? INT32_MAX : (int)cfg->timeout_ms;
    }
    if (cfg->tries > 0) {
        mask |= ARES_OPT_TRIES;
        o.tries = cfg->tries > 100 ? 100 : (int)cfg->tries;
    }
    rc = ares_init_options(&d->ch, &o, mask);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
        free(d);
        ares_library_cleanup();
        return NULL;
    }
    if (cfg->servers != NULL) {
        rc = ares_set_servers_ports_csv(d->ch, cfg->servers);
        if (rc != ARES_SUCCESS) {
            snprintf(err, errlen, "DNS servers \"%s\": %s", cfg->servers,
                     ares_strerror(rc));
            ares_destroy(d->ch);
            free(d);
            ares_library_cleanup();
            return NULL;
        }
    }
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    uv_idle_init(loop, &d->idle);
    d->idle.data = d;
    d->handles = 2;
    return d;
}

static void dns_free_now(dns_t *d)
{
    free(d);
    ares_library_cleanup();
}

void dns_free(dns_t *d)
{
    if (d == NULL || d->closing)
        return;
    d->closing = true;
    /* Cancelled queries come back to on_srv / on_addrinfo, which queue
     * their requests; ares_destroy() then ends anything a callback added
     * (EDESTRUCTION) and announces the closing of every socket, which
     * closes its poll handle. */
    ares_cancel(d->ch);
    ares_destroy(d->ch);
    d->ch = NULL;
    while (d->polls != NULL)
        poll_close(d->polls);
    /* Callbacks may call dns_resolve_* (answered CANCELLED at once) or
     * dns_free() (a no-op now), never anything that touches the queue. */
    dns_req_t *r = d->done_head;
    d->done_head = NULL;
    d->done_tail = &d->done_head;
    d->ndone = 0;
    while (r != NULL) {
        dns_req_t *next = r->next;
        req_deliver(r, true);
        r = next;
    }
    uv_close((uv_handle_t *)&d->timer, on_handle_closed);
    uv_close((uv_handle_t *)&d->idle, on_handle_closed);
}
