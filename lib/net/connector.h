/* connector: from an XMPP domain to a connected conn_t (RFC 6120 §3.2).
 *
 * One attempt looks the domain's SRV records up (_xmpp-client and
 * _xmpps-client through lib/net/dns, in the order RFC 2782 gives; the
 * domain itself on port 5222 when there are none), resolves each target's
 * addresses and tries them one after the other, each bounded by a connect
 * timeout, until one connects; then the next target. A fixed "host[:port]"
 * replaces the lookup. The result is a connected conn_t that the caller
 * takes over (conn_set_owner), or an error. Retrying later with a growing,
 * jittered delay is the caller's choice, computed by connector_backoff_ms.
 *
 * Used by the client library; server-to-server connections use it next
 * (with _xmpp-server records). */
#ifndef STARLING_NET_CONNECTOR_H
#define STARLING_NET_CONNECTOR_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "net/conn.h"
#include "net/dns.h"

typedef enum connector_error {
    CONNECTOR_OK = 0,
    CONNECTOR_ERR_DNS = -1,     /* the SRV lookup failed: see dns_err */
    CONNECTOR_ERR_CONNECT = -2, /* no address of any target connected */
    CONNECTOR_ERR_NOMEM = -3,
} connector_error_t;

typedef struct connector_opts {
    const char *domain; /* A-label domain for the SRV lookup */
    const char *server; /* "host", "host:port" or "[v6]:port" instead of
                           SRV; NULL: look the domain up */
    bool direct_tls;    /* with server: TLS from the first byte (default
                           port 5223 instead of 5222) */
    unsigned connect_timeout_ms; /* per address; 0: the kernel's */
    /* DNS_SERVICE_CLIENT (0, the default) or DNS_SERVICE_SERVER: which SRV
     * records, and the default ports (5222/5223, or 5269/5270 for a
     * server's "host" without a port). */
    dns_service_t service;
    conn_opts_t conn; /* for the connections made */
} connector_opts_t;

/* The result of an attempt. On CONNECTOR_OK conn is connected and belongs
 * to the callee (which must conn_set_owner it and eventually close it);
 * direct_tls says whether the target wants TLS from the first byte, and
 * host/port which target it was. dns_err is the lookup's error for
 * CONNECTOR_ERR_DNS. */
typedef struct connector_result {
    int err;
    int dns_err;
    conn_t *conn;
    bool direct_tls;
    const char *host;
    unsigned short port;
} connector_result_t;

typedef void (*connector_cb)(void *ud, const connector_result_t *r);

typedef struct connector connector_t;

/* A connector using dns (which must outlive it). NULL when out of
 * memory. */
connector_t *connector_new(uv_loop_t *loop, dns_t *dns);

/* Starts an attempt; cb is called once (never from inside this call).
 * Returns 0, or -1 when an attempt is already running or o->server is not
 * a valid "host[:port]". The strings in o are copied. */
int connector_start(connector_t *k, const connector_opts_t *o, connector_cb cb,
                    void *ud);

/* Stops the attempt in progress; its callback is not called. */
void connector_cancel(connector_t *k);
bool connector_busy(const connector_t *k);

/* Frees the connector (cancelling any attempt); memory still referred to
 * by the loop is released once the loop is done with it. */
void connector_free(connector_t *k);

/* RFC 6120 §3.3: the delay before reconnection attempt number `attempts`
 * (0 for the first retry): a random time between half and one and a half
 * times a base that doubles with each failure, 1 s up to 64 s, so that the
 * clients of a restarted server do not all come back at once. `random` is
 * a uniformly random 32-bit value. */
unsigned connector_backoff_ms(unsigned attempts, uint32_t random);

#endif
