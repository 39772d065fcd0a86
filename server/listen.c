#include "listen.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

int server_listen(uv_loop_t *loop, uv_tcp_t *tcp, const config_listener_t *lc,
                  uv_connection_cb cb, const char *kind, const logger_t *log,
                  char *name, size_t namelen)
{
    uv_tcp_init(loop, tcp);
    struct sockaddr_storage ss;
    int rc =
        strchr(lc->address, ':') != NULL
            ? uv_ip6_addr(lc->address, lc->port, (struct sockaddr_in6 *)&ss)
            : uv_ip4_addr(lc->address, lc->port, (struct sockaddr_in *)&ss);
    if (rc == 0)
        rc = uv_tcp_bind(tcp, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)tcp, 511, cb);
    if (rc != 0) {
        LOG(log, LOG_ERROR, 0, "cannot listen for %s on %s:%d: %s", kind,
            lc->address, lc->port, uv_strerror(rc));
        return -1;
    }
    /* Port 0 asks the kernel for one; say which (tests read this). */
    int len = sizeof(ss);
    uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len);
    int port = ss.ss_family == AF_INET6
                   ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                   : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    /* Component streams (XEP-0114) have no TLS at all. */
    snprintf(name, namelen, "%s:%d (%s)", lc->address, port,
             lc->direct_tls                   ? "direct TLS"
             : strcmp(kind, "component") == 0 ? "no TLS"
                                              : "STARTTLS");
    LOG(log, LOG_INFO, 0, "%s listening on %s", kind, name);
    return 0;
}
