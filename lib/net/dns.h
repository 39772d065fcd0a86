/* dns: where to connect for an XMPP domain (RFC 6120 §3.2, XEP-0368),
 * resolved asynchronously with c-ares on a libuv loop.
 *
 * dns_resolve_xmpp() looks up _xmpps-client._tcp (direct TLS) and
 * _xmpp-client._tcp (STARTTLS) SRV records, orders them by RFC 2782
 * priority and weighted random choice with direct TLS first at equal
 * priority (XEP-0368 §3), and falls back to the domain itself on port 5222
 * (STARTTLS) when there are no SRV records (RFC 6120 §3.2.2). A single "."
 * target means the service is decidedly not available (RFC 2782). The
 * address lookups of each target happen when the connector tries it.
 *
 * Threads: a resolver belongs to the thread that runs its loop. dns_new()
 * and dns_free() also take and drop c-ares' process-wide initialisation
 * (ares_library_init, reference-counted but not thread-safe), so they must
 * not run concurrently with each other on different threads. */
#ifndef STARLING_NET_DNS_H
#define STARLING_NET_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

/* At most this many targets come out of one dns_resolve_xmpp() or
 * dns_order_srv(), and at most this many addresses out of one
 * dns_resolve_addr(): a DNS answer is peer-controlled data. The resolver
 * keeps at most DNS_SRV_MAX records of each service (those of the lowest
 * priority values) before ordering. */
#define DNS_SRV_MAX  32
#define DNS_ADDR_MAX 32

typedef struct dns_target {
    char *host; /* a DNS name or an IP literal (no brackets) */
    unsigned short port;
    bool direct_tls; /* from _xmpps-client: TLS from the first byte */
} dns_target_t;

typedef struct dns_targets {
    dns_target_t *v;
    size_t n;
} dns_targets_t;

/* Frees the hosts and the array (not `t` itself); NULL is allowed. */
void dns_targets_free(dns_targets_t *t);

typedef struct dns dns_t;

/* A resolver on `loop`. `servers` (NULL: the system's resolv.conf) is a
 * comma-separated list of host:port, e.g. "127.0.0.1:5353" or
 * "[::1]:5353", so that tests can answer from a loopback DNS server.
 * Returns NULL with a reason in err. */
dns_t *dns_new(uv_loop_t *loop, const char *servers, char *err, size_t errlen);

/* dns_new() with retry settings: `timeout_ms` is the first try's timeout
 * per server (c-ares doubles it on each later round), `tries` the number
 * of rounds over the servers. 0 keeps the system's values (resolv.conf
 * "options timeout: attempts:", else c-ares' 5000 ms and 4 tries). */
typedef struct dns_config {
    const char *servers;
    unsigned timeout_ms;
    unsigned tries;
} dns_config_t;
dns_t *dns_new_config(uv_loop_t *loop, const dns_config_t *cfg, char *err,
                      size_t errlen);

/* Cancels outstanding queries and frees the resolver once libuv has closed
 * its handles (so the loop must run on). Every callback not yet run runs
 * before dns_free() returns, with DNS_ERR_CANCELLED, even for a query whose
 * answer had already arrived. A resolve called from such a callback gets
 * DNS_ERR_CANCELLED at once; after dns_free() returns, `d` must not be
 * used. Calling it from a resolver callback is allowed. */
void dns_free(dns_t *d);

enum {
    DNS_OK = 0,
    DNS_ERR_NOT_FOUND = -1,   /* no such domain, or no address for it */
    DNS_ERR_UNAVAILABLE = -2, /* SRV "." : no XMPP service there */
    DNS_ERR_FAILED = -3,      /* server failure, timeout */
    DNS_ERR_CANCELLED = -4,
    DNS_ERR_NOMEM = -5,
};
const char *dns_strerror(int err);

/* The ordered targets for an XMPP client connection to `domain` (an ASCII
 * domain: IDNs converted by the caller with jid_domain_to_ascii; an IP
 * literal, bracketed or not, is answered without a query). The callback
 * runs once, on the loop, never from inside dns_resolve_xmpp() (except
 * DNS_ERR_NOMEM when not even the request can be allocated, and
 * DNS_ERR_CANCELLED during dns_free()); it owns `targets`
 * (dns_targets_free) when err is DNS_OK, and targets is NULL otherwise.
 *
 * Outcome: records of either service give DNS_OK with those records (a
 * "." or a failure of the other service does not matter then). Otherwise
 * "." for _xmpp-client gives DNS_ERR_UNAVAILABLE (RFC 6120 §3.2.1: no
 * fallback); no records for _xmpp-client (NXDOMAIN or no data), or a
 * failure of one service while the other answered, gives the fallback
 * target {domain, 5222, STARTTLS} (RFC 6120 §3.2.2); both queries failing
 * gives DNS_ERR_FAILED, since the address lookup of the fallback would
 * only fail the same way. */
typedef void (*dns_xmpp_cb)(void *ud, int err, dns_targets_t *targets);
void dns_resolve_xmpp(dns_t *d, const char *domain, dns_xmpp_cb cb, void *ud);

/* Which XMPP service to look up: clients (_xmpps-client / _xmpp-client,
 * fallback port 5222) or servers (_xmpps-server / _xmpp-server, fallback
 * port 5269, RFC 6120 §3.2 for server-to-server). */
typedef enum dns_service {
    DNS_SERVICE_CLIENT = 0,
    DNS_SERVICE_SERVER = 1,
} dns_service_t;
/* dns_resolve_xmpp() for either service, with the same rules. */
void dns_resolve_xmpp_service(dns_t *d, const char *domain, dns_service_t svc,
                              dns_xmpp_cb cb, void *ud);

/* Addresses of one host (A and AAAA, in c-ares' RFC 6724 order), each
 * with `port` set, for the connector. An IP literal (bracketed or not) is
 * answered without a query. Same callback rules as dns_resolve_xmpp(),
 * except that `addrs` is lent: valid during the callback only (copy what
 * is kept). On DNS_OK n ≥ 1; on an error addrs is NULL and n is 0. */
typedef void (*dns_addr_cb)(void *ud, int err, struct sockaddr_storage *addrs,
                            size_t n);
void dns_resolve_addr(dns_t *d, const char *host, unsigned short port,
                      dns_addr_cb cb, void *ud);

/* RFC 2782 ordering, exposed for unit tests: sorts v[0..n) by priority,
 * and within a priority picks by weight using `rnd` (a value source the
 * test controls; the running-sum choice takes rnd() % (sum + 1)); direct_tls
 * records go first at equal priority. Writes at most DNS_SRV_MAX targets
 * (the first ones of the order) with copies of the hosts into `out`.
 * Returns 0, or DNS_ERR_NOMEM with `out` empty. */
typedef struct dns_srv {
    char *host;
    unsigned short port, priority, weight;
    bool direct_tls;
} dns_srv_t;
int dns_order_srv(const dns_srv_t *v, size_t n, unsigned (*rnd)(void *ctx),
                  void *ctx, dns_targets_t *out);

#endif
