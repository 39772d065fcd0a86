/* A dnsmasq on a free loopback port, serving the records a test gives it,
 * for the unit tests of lib/net/dns and lib/net/connector. dnsmasq is a
 * Debian package that scripts/deps installs (dnsmasq-base). */
#ifndef STARLING_TESTS_DNSMASQ_FIXTURE_H
#define STARLING_TESTS_DNSMASQ_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct dnsmasq {
    pid_t pid;
    unsigned short port;
    char servers[64]; /* "127.0.0.1:port" for dns_new */
} dnsmasq_t;

/* A port free for both UDP and TCP on 127.0.0.1 right now. */
unsigned short test_free_port(void);
/* Whether something accepts TCP connections on 127.0.0.1:port. */
bool test_tcp_port_open(unsigned short port);
/* Monotonic seconds. */
double test_now_s(void);

/* Starts dnsmasq answering only for names under .test, with `records`
 * (dnsmasq options such as "--srv-host=..."), and waits until it serves.
 * `verbose` lets dnsmasq log every query to stderr. Returns 0, or -1 with
 * the reason on stderr (`who` names the test). */
int dnsmasq_start(dnsmasq_t *d, const char *who, char *const *records,
                  size_t count, bool verbose);
void dnsmasq_stop(dnsmasq_t *d);

#endif
