/* Unit tests for lib/net/dns: the RFC 2782 / XEP-0368 ordering on its own,
 * then the resolver on a libuv loop against a real DNS server, dnsmasq
 * (scripts/deps installs dnsmasq-base), started by the test on a free
 * loopback port and stopped by PID. Every resolver test ends with
 * dns_free(), a loop that runs dry and uv_loop_close() == 0, so a handle
 * left open fails the test and, under ASan/LSan, so does a leak. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dnsmasq_fixture.h"
#include "net/dns.h"

/* ---- dns_order_srv ----------------------------------------------------- */

/* xorshift32: a fixed seed makes every run of the statistics identical. */
static unsigned rnd_xorshift(void *ctx)
{
    uint32_t *s = ctx;
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* A scripted value source: returns the values in order, then 0. */
typedef struct script {
    const unsigned *v;
    size_t n, i;
} script_t;

static unsigned rnd_script(void *ctx)
{
    script_t *s = ctx;
    return s->i < s->n ? s->v[s->i++] : 0;
}

static unsigned rnd_zero(void *ctx)
{
    (void)ctx;
    return 0;
}

static unsigned rnd_max(void *ctx)
{
    (void)ctx;
    return ~0u;
}

static void test_order_empty(void **state)
{
    (void)state;
    dns_targets_t out = {(dns_target_t *)1, 7};
    assert_int_equal(dns_order_srv(NULL, 0, rnd_zero, NULL, &out), DNS_OK);
    assert_null(out.v);
    assert_int_equal(out.n, 0);
    dns_targets_free(&out);
    dns_targets_free(NULL);
}

static void test_order_priority(void **state)
{
    (void)state;
    dns_srv_t v[] = {
        {"c", 3, 30, 1, false},   {"a", 1, 10, 50, false},
        {"d", 4, 40, 0, false},   {"b", 2, 20, 7, false},
        {"a2", 5, 10, 50, false},
    };
    uint32_t seed = 12345;
    for (int round = 0; round < 50; round++) {
        dns_targets_t out;
        assert_int_equal(dns_order_srv(v, 5, rnd_xorshift, &seed, &out),
                         DNS_OK);
        assert_int_equal(out.n, 5);
        /* The two priority-10 records come first in either order, then
         * 20, 30, 40 exactly. */
        assert_true((strcmp(out.v[0].host, "a") == 0 &&
                     strcmp(out.v[1].host, "a2") == 0) ||
                    (strcmp(out.v[0].host, "a2") == 0 &&
                     strcmp(out.v[1].host, "a") == 0));
        assert_string_equal(out.v[2].host, "b");
        assert_int_equal(out.v[2].port, 2);
        assert_string_equal(out.v[3].host, "c");
        assert_string_equal(out.v[4].host, "d");
        assert_false(out.v[4].direct_tls);
        /* Hosts are copies. */
        assert_ptr_not_equal(out.v[2].host, v[3].host);
        dns_targets_free(&out);
        assert_null(out.v);
    }
}

/* RFC 2782's running sums, checked step by step with chosen numbers. */
static void test_order_running_sum(void **state)
{
    (void)state;
    dns_srv_t v[] = {
        {"w1", 1, 0, 1, false},
        {"w2", 2, 0, 2, false},
        {"w3", 3, 0, 3, false},
    };
    /* Sum 6, sums 1, 3, 6: 4 picks w3. Then w1, w2 (sums 1, 3): 2 picks
     * w2. Then w1 alone. */
    const unsigned picks[] = {4, 2, 0};
    script_t s = {picks, 3, 0};
    dns_targets_t out;
    assert_int_equal(dns_order_srv(v, 3, rnd_script, &s, &out), DNS_OK);
    assert_int_equal(out.n, 3);
    assert_string_equal(out.v[0].host, "w3");
    assert_string_equal(out.v[1].host, "w2");
    assert_string_equal(out.v[2].host, "w1");
    dns_targets_free(&out);

    /* The number is taken modulo sum + 1, so 6 + 7 = 13 → 6 → w3, and
     * 1 is "≤ running sum 1" → w1. */
    const unsigned picks2[] = {13, 1, 0};
    script_t s2 = {picks2, 3, 0};
    assert_int_equal(dns_order_srv(v, 3, rnd_script, &s2, &out), DNS_OK);
    assert_string_equal(out.v[0].host, "w3");
    assert_string_equal(out.v[1].host, "w1");
    assert_string_equal(out.v[2].host, "w2");
    dns_targets_free(&out);
}

/* Over 10,000 orderings the first choice follows the weights. With the
 * choice in [0, sum] inclusive, record i is first with probability
 * (w_i + [i == 0]) / (sum + 1): 11/101, 20/101, 70/101 here. */
static void test_order_weight_distribution(void **state)
{
    (void)state;
    dns_srv_t v[] = {
        {"ten", 1, 5, 10, false},
        {"twenty", 2, 5, 20, false},
        {"seventy", 3, 5, 70, false},
    };
    const int runs = 10000;
    int first[3] = {0, 0, 0};
    uint32_t seed = 0x9e3779b9u;
    for (int i = 0; i < runs; i++) {
        dns_targets_t out;
        assert_int_equal(dns_order_srv(v, 3, rnd_xorshift, &seed, &out),
                         DNS_OK);
        assert_int_equal(out.n, 3);
        for (int k = 0; k < 3; k++)
            if (strcmp(out.v[0].host, v[k].host) == 0)
                first[k]++;
        dns_targets_free(&out);
    }
    const double expect[3] = {11.0 / 101, 20.0 / 101, 70.0 / 101};
    for (int k = 0; k < 3; k++) {
        double got = (double)first[k] / runs;
        /* ±0.02 is more than six standard deviations at these sizes. */
        assert_true(got > expect[k] - 0.02 && got < expect[k] + 0.02);
    }
}

static void test_order_zero_weights(void **state)
{
    (void)state;
    dns_srv_t v[] = {
        {"heavy", 1, 0, 10, false},
        {"zero-a", 2, 0, 0, false},
        {"zero-b", 3, 0, 0, false},
    };
    dns_targets_t out;
    /* RFC 2782 puts zero weights at the front: a choice of 0 takes the
     * first of them (running sum 0 ≥ 0). */
    assert_int_equal(dns_order_srv(v, 3, rnd_zero, NULL, &out), DNS_OK);
    assert_string_equal(out.v[0].host, "zero-a");
    assert_string_equal(out.v[1].host, "zero-b");
    assert_string_equal(out.v[2].host, "heavy");
    dns_targets_free(&out);
    /* Any other choice takes the weighted one, then the zeros in order. */
    assert_int_equal(dns_order_srv(v, 3, rnd_max, NULL, &out), DNS_OK);
    assert_string_equal(out.v[0].host, "heavy");
    assert_string_equal(out.v[1].host, "zero-a");
    assert_string_equal(out.v[2].host, "zero-b");
    dns_targets_free(&out);

    /* All weights 0: nothing to weigh, the answer's order stays. */
    dns_srv_t z[] = {
        {"z1", 1, 0, 0, false},
        {"z2", 2, 0, 0, false},
        {"z3", 3, 0, 0, false},
    };
    uint32_t seed = 7;
    assert_int_equal(dns_order_srv(z, 3, rnd_xorshift, &seed, &out), DNS_OK);
    assert_string_equal(out.v[0].host, "z1");
    assert_string_equal(out.v[1].host, "z2");
    assert_string_equal(out.v[2].host, "z3");
    dns_targets_free(&out);

    /* Zero weight is rarely first: 1 time in 11 with weights {0, 10}. */
    dns_srv_t r[] = {{"w", 1, 0, 10, false}, {"z", 2, 0, 0, false}};
    int zero_first = 0;
    for (int i = 0; i < 11000; i++) {
        assert_int_equal(dns_order_srv(r, 2, rnd_xorshift, &seed, &out),
                         DNS_OK);
        zero_first += strcmp(out.v[0].host, "z") == 0;
        dns_targets_free(&out);
    }
    assert_in_range(zero_first, 800, 1200);
}

/* XEP-0368: direct TLS first at equal priority, whatever the weights;
 * priority still decides between different priorities. */
static void test_order_direct_tls_first(void **state)
{
    (void)state;
    dns_srv_t v[] = {
        {"starttls-10", 5222, 10, 1000, false}, {"tls-10", 5223, 10, 1, true},
        {"starttls-5", 5222, 5, 1, false},      {"tls-20", 443, 20, 1, true},
        {"tls-10b", 5223, 10, 0, true},
    };
    uint32_t seed = 99;
    for (int round = 0; round < 20; round++) {
        dns_targets_t out;
        assert_int_equal(dns_order_srv(v, 5, rnd_xorshift, &seed, &out),
                         DNS_OK);
        assert_int_equal(out.n, 5);
        assert_string_equal(out.v[0].host, "starttls-5");
        assert_false(out.v[0].direct_tls);
        assert_true(out.v[1].direct_tls);
        assert_true(out.v[2].direct_tls);
        assert_int_equal(out.v[1].port, 5223);
        assert_string_equal(out.v[3].host, "starttls-10");
        assert_string_equal(out.v[4].host, "tls-20");
        assert_true(out.v[4].direct_tls);
        assert_int_equal(out.v[4].port, 443);
        dns_targets_free(&out);
    }
}

/* At most DNS_SRV_MAX targets, and they are the first of the order. */
static void test_order_bounds(void **state)
{
    (void)state;
    enum { N = 100 };
    dns_srv_t *v = calloc(N, sizeof(*v));
    char(*names)[16] = calloc(N, 16);
    assert_non_null(v);
    assert_non_null(names);
    for (int i = 0; i < N; i++) {
        /* Priorities N-1 .. 0, so the answer's order is the reverse. */
        snprintf(names[i], 16, "p%d", N - 1 - i);
        v[i].host = names[i];
        v[i].port = (unsigned short)(1000 + i);
        v[i].priority = (unsigned short)(N - 1 - i);
        v[i].weight = (unsigned short)(i * 655);
        v[i].direct_tls = (i % 2) != 0;
    }
    uint32_t seed = 1;
    dns_targets_t out;
    assert_int_equal(dns_order_srv(v, N, rnd_xorshift, &seed, &out), DNS_OK);
    assert_int_equal(out.n, DNS_SRV_MAX);
    for (int i = 0; i < DNS_SRV_MAX; i++) {
        char want[16];
        snprintf(want, sizeof(want), "p%d", i);
        assert_string_equal(out.v[i].host, want);
    }
    dns_targets_free(&out);

    /* The largest weights cannot overflow the running sum. */
    for (int i = 0; i < N; i++) {
        v[i].priority = 0;
        v[i].weight = 65535;
    }
    assert_int_equal(dns_order_srv(v, N, rnd_max, NULL, &out), DNS_OK);
    assert_int_equal(out.n, DNS_SRV_MAX);
    dns_targets_free(&out);
    free(names);
    free(v);
}

static void test_strerror(void **state)
{
    (void)state;
    const int codes[] = {DNS_OK,
                         DNS_ERR_NOT_FOUND,
                         DNS_ERR_UNAVAILABLE,
                         DNS_ERR_FAILED,
                         DNS_ERR_CANCELLED,
                         DNS_ERR_NOMEM,
                         -99};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *s = dns_strerror(codes[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
    }
}

/* ---- the resolver against dnsmasq -------------------------------------- */

typedef dnsmasq_t server_t;

static int server_start(void **state)
{
    /* 40 records are more than a 512-byte UDP answer holds: c-ares gets a
     * truncated answer and asks again over TCP. */
    enum { MANY = 40 };
    char many[MANY][96];
    char *fixed[] = {
        "--srv-host=_xmpp-client._tcp.example.test,xmpp.example.test,5222,"
        "10,5",
        "--srv-host=_xmpps-client._tcp.example.test,xmpps.example.test,5223,"
        "10,5",
        /* Server-to-server records of the same domain (RFC 6120 §3.2,
         * XEP-0368): direct TLS and STARTTLS, and a "." for a domain
         * with no federation. */
        "--srv-host=_xmpp-server._tcp.example.test,s2s.example.test,5269,"
        "10,5",
        "--srv-host=_xmpps-server._tcp.example.test,s2ss.example.test,5270,"
        "10,5",
        "--srv-host=_xmpp-server._tcp.nofed.test",
        "--host-record=xmpp.example.test,127.0.0.2,::2",
        "--host-record=v4.example.test,127.0.0.4",
        /* Lower priority value for STARTTLS wins over direct TLS. */
        "--srv-host=_xmpp-client._tcp.prio.test,a.prio.test,5222,5,1",
        "--srv-host=_xmpps-client._tcp.prio.test,b.prio.test,5223,20,1",
        /* Only STARTTLS, and a "." for direct TLS. */
        "--srv-host=_xmpp-client._tcp.plain.test,p.plain.test,5222,0,0",
        "--srv-host=_xmpps-client._tcp.plain.test",
        /* "." for both services; "." for STARTTLS alone; "." for STARTTLS
         * with a direct TLS record. */
        "--srv-host=_xmpp-client._tcp.dot.test",
        "--srv-host=_xmpps-client._tcp.dot.test",
        "--srv-host=_xmpp-client._tcp.dotplain.test",
        "--srv-host=_xmpp-client._tcp.dottls.test",
        "--srv-host=_xmpps-client._tcp.dottls.test,t.dottls.test,443,0,0",
        /* A name with an address but no SRV records (NXDOMAIN for the
         * SRV names), and SRV names that exist without SRV data. */
        "--address=/nosrv.test/127.0.0.3",
        "--txt-record=_xmpp-client._tcp.nodata.test,no SRV here",
        "--txt-record=_xmpps-client._tcp.nodata.test,no SRV here",
    };
    enum { NFIXED = sizeof(fixed) / sizeof(fixed[0]) };
    char *records[NFIXED + MANY];
    for (size_t i = 0; i < NFIXED; i++)
        records[i] = fixed[i];
    for (int i = 0; i < MANY; i++) {
        snprintf(many[i], sizeof(many[i]),
                 "--srv-host=_xmpp-client._tcp.many.test,h%d.many.test,5222,"
                 "%d,1",
                 MANY - 1 - i, MANY - 1 - i);
        records[NFIXED + i] = many[i];
    }
    server_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -1;
    /* TEST_DNS_VERBOSE=1 shows dnsmasq's log of every query. */
    if (dnsmasq_start(s, "test_dns", records, NFIXED + MANY,
                      getenv("TEST_DNS_VERBOSE") != NULL) < 0) {
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static int server_stop(void **state)
{
    server_t *s = *state;
    if (s == NULL)
        return 0;
    dnsmasq_stop(s);
    free(s);
    return 0;
}

/* What one callback saw. */
typedef struct result {
    int calls;
    int err;
    dns_targets_t *targets;
    struct sockaddr_storage *addrs;
    size_t naddrs;
    /* Optional action inside the callback: dns_free(free_in_cb), then
     * check that `cancelled` has had its callback, with CANCELLED. */
    dns_t *free_in_cb;
    struct result *cancelled;
    /* Optional: a resolve on this resolver from inside the callback. */
    dns_t *resolve_in_cb;
    struct result *nested;
} result_t;

static void on_addr(void *ud, int err, struct sockaddr_storage *addrs,
                    size_t n);

static void free_in_callback(struct result *r)
{
    if (r->free_in_cb == NULL)
        return;
    dns_free(r->free_in_cb);
    r->free_in_cb = NULL;
    if (r->cancelled != NULL) {
        assert_int_equal(r->cancelled->calls, 1);
        assert_int_equal(r->cancelled->err, DNS_ERR_CANCELLED);
    }
}

static void on_xmpp(void *ud, int err, dns_targets_t *targets)
{
    result_t *r = ud;
    r->calls++;
    r->err = err;
    r->targets = targets;
    if (err != DNS_OK)
        assert_null(targets);
    else
        assert_non_null(targets);
    if (r->resolve_in_cb != NULL) {
        /* During dns_free(): refused at once, without a query. */
        dns_resolve_addr(r->resolve_in_cb, "192.0.2.9", 1, on_addr, r->nested);
        assert_int_equal(r->nested->calls, 1);
        assert_int_equal(r->nested->err, DNS_ERR_CANCELLED);
        r->resolve_in_cb = NULL;
    }
    free_in_callback(r);
}

static void on_addr(void *ud, int err, struct sockaddr_storage *addrs, size_t n)
{
    result_t *r = ud;
    r->calls++;
    r->err = err;
    /* The addresses are lent for the callback: keep a copy. */
    if (err != DNS_OK) {
        assert_null(addrs);
        assert_int_equal(n, 0);
    } else {
        assert_true(n >= 1 && n <= DNS_ADDR_MAX);
        r->addrs = malloc(n * sizeof(*addrs));
        assert_non_null(r->addrs);
        memcpy(r->addrs, addrs, n * sizeof(*addrs));
        r->naddrs = n;
    }
    free_in_callback(r);
}

static void result_clear(result_t *r)
{
    if (r->targets != NULL) {
        dns_targets_free(r->targets);
        free(r->targets);
    }
    free(r->addrs);
    memset(r, 0, sizeof(*r));
}

typedef struct ctx {
    uv_loop_t loop;
    dns_t *dns;
} ctx_t;

static void ctx_open_config(ctx_t *c, const dns_config_t *cfg)
{
    assert_int_equal(uv_loop_init(&c->loop), 0);
    char err[256] = "";
    c->dns = dns_new_config(&c->loop, cfg, err, sizeof(err));
    if (c->dns == NULL)
        fail_msg("dns_new: %s", err);
}

static void ctx_open(ctx_t *c, server_t *s)
{
    dns_config_t cfg = {.servers = s->servers, .timeout_ms = 1000, .tries = 2};
    ctx_open_config(c, &cfg);
}

/* Frees the resolver (if still there) and proves the loop ends clean. */
static void ctx_close(ctx_t *c)
{
    dns_free(c->dns);
    c->dns = NULL;
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&c->loop), 0);
}

/* Resolves `domain`; the loop runs dry on its own when the resolver has
 * nothing left to do, which is part of what is being tested. */
static void xmpp(ctx_t *c, const char *domain, result_t *r)
{
    memset(r, 0, sizeof(*r));
    dns_resolve_xmpp(c->dns, domain, on_xmpp, r);
    assert_int_equal(r->calls, 0); /* never from inside the call */
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r->calls, 1);
}

static void xmpp_server(ctx_t *c, const char *domain, result_t *r)
{
    memset(r, 0, sizeof(*r));
    dns_resolve_xmpp_service(c->dns, domain, DNS_SERVICE_SERVER, on_xmpp, r);
    assert_int_equal(r->calls, 0);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r->calls, 1);
}

static void addr(ctx_t *c, const char *host, unsigned short port, result_t *r)
{
    memset(r, 0, sizeof(*r));
    dns_resolve_addr(c->dns, host, port, on_addr, r);
    assert_int_equal(r->calls, 0);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r->calls, 1);
}

static void assert_target(const dns_target_t *t, const char *host,
                          unsigned short port, bool tls)
{
    assert_string_equal(t->host, host);
    assert_int_equal(t->port, port);
    assert_int_equal(t->direct_tls, tls);
}

static void test_xmpp_tls_first(void **state)
{
    ctx_t c;
    ctx_open(&c, *state);
    result_t r;
    /* Several times: equal priority must never let weights reorder. */
    for (int i = 0; i < 5; i++) {
        xmpp(&c, "example.test", &r);
        assert_int_equal(r.err, DNS_OK);
        assert_int_equal(r.targets->n, 2);
        assert_target(&r.targets->v[0], "xmpps.example.test", 5223, true);
        assert_target(&r.targets->v[1], "xmpp.example.test", 5222, false);
        result_clear(&r);
    }
    xmpp(&c, "prio.test", &r);
    assert_int_equal(r.err, DNS_OK);
    assert_int_equal(r.targets->n, 2);
    assert_target(&r.targets->v[0], "a.prio.test", 5222, false);
    assert_target(&r.targets->v[1], "b.prio.test", 5223, true);
    result_clear(&r);
    ctx_close(&c);
}

static void test_xmpp_fallback(void **state)
{
    ctx_t c;
    ctx_open(&c, *state);
    result_t r;
    /* NXDOMAIN for both SRV names of a domain that has an address. */
    xmpp(&c, "nosrv.test", &r);
    assert_int_equal(r.err, DNS_OK);
    assert_int_equal(r.targets->n, 1);
    assert_target(&r.targets->v[0], "nosrv.test", 5222, false);
    result_clear(&r);
    /* NODATA for both. */
    xmpp(&c, "nodata.test", &r);
    assert_int_equal(r.err, DNS_OK);
    assert_int_equal(r.targets->n, 1);
    assert_target(&r.targets->v[0], "nodata.test", 5222, false);
    result_clear(&r);
    /* A domain that does not exist at all: still the fallback (SRV names
     * not existing say nothing about the domain); its address lookup then
     * fails. */
    xmpp(&c, "nx.test", &r);
    assert_int_equal(r.err, DNS_OK);
    assert_int_equal(r.targets->n, 1);
    assert_target(&r.targets->v[0], "nx.test", 5222, false);
    result_clear(&r);
    addr(&c, "nx.test", 5222, &r);
    assert_int_equal(r.err, DNS_ERR_NOT_FOUND);
    result_clear(&r);
    /* "." for direct TLS only, and no STARTTLS record: direct TLS is
     * unavailable, STARTTLS falls back to the domain. */
    xmpp(&c, "plain.test", &r);
    assert_int_equal(r.err, DNS_OK);
    assert_int_equal(r.targets->n, 1);
    assert_target(&r.targets->v[0], "p.plain.test", 5222, false);
    result_clear(&r);
    /* IP literals: no query, port 5222, brackets gone. */
    xmpp(&c, "192.0.2.1", &r);
    assert_int_equal(r.err, DNS_OK);
    assert_int_equal(r.targets->n, 1);
    assert_target(&r.targets->v[0], "192.0.2.1", 5222, false);
    result_clear(&r);
    xmpp(&c, "[2001:db8::1]", &r);
    assert_int_equal(r.err, DNS_OK);
    assert_target(&r.targets->v[0], "2001:db8::1", 5222, false);
    result_clear(&r);
    /* Names that cannot be asked for. */
    xmpp(&c, "", &r);
    assert_int_equal(r.err, DNS_ERR_NOT_FOUND);
    result_clear(&r);
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    xmpp(&c, longname, &r);
    assert_int_equal(r.err, DNS_ERR_NOT_FOUND);
    result_clear(&r);
    ctx_close(&c);
}

/* The server service: _xmpps-server / _xmpp-server, fallback 5269. */
static void test_xmpp_server(void **state)
{
    ctx_t c;
    ctx_open(&c, *state);
    result_t r;
    xmpp_server(&c, "example.test", &r);
    assert_int_equal(r.err, DNS_OK);
    assert_int_equal(r.targets->n, 2);
    assert_target(&r.targets->v[0], "s2ss.example.test", 5270, true);
    assert_target(&r.targets->v[1], "s2s.example.test", 5269, false);
    result_clear(&r);
    xmpp_server(&c, "nosrv.test", &r);
    assert_int_equal(r.err, DNS_OK);
    assert_int_equal(r.targets->n, 1);
    assert_target(&r.targets->v[0], "nosrv.test", 5269, false);
    result_clear(&r);
    xmpp_server(&c, "nofed.test", &r);
    assert_int_equal(r.err, DNS_ERR_UNAVAILABLE);
    result_clear(&r);
    xmpp_server(&c, "192.0.2.1", &r);
    assert_int_equal(r.err, DNS_OK);
    assert_target(&r.targets->v[0], "192.0.2.1", 5269, false);
    result_clear(&r);
    ctx_close(&c);
}

static void test_xmpp_dot(void **state)
{
    ctx_t c;
    ctx_open(&c, *state);
    result_t r;
    xmpp(&c, "dot.test", &r);
    assert_int_equal(r.err, DNS_ERR_UNAVAILABLE);
    result_clear(&r);
    /* "." for STARTTLS and nothing for direct TLS: no fallback either
     * (RFC 6120 §3.2.1). */
    xmpp(&c, "dotplain.test", &r);
    assert_int_equal(r.err, DNS_ERR_UNAVAILABLE);
    result_clear(&r);
    /* "." for STARTTLS, a record for direct TLS: that record. */
    xmpp(&c, "dottls.test", &r);
    assert_int_equal(r.err, DNS_OK);
    assert_int_equal(r.targets->n, 1);
    assert_target(&r.targets->v[0], "t.dottls.test", 443, true);
    result_clear(&r);
    ctx_close(&c);
}

/* 40 records: the answer comes over TCP after a truncated UDP one, and
 * only the DNS_SRV_MAX best are kept, in priority order. */
static void test_xmpp_many_records(void **state)
{
    ctx_t c;
    ctx_open(&c, *state);
    result_t r;
    xmpp(&c, "many.test", &r);
    assert_int_equal(r.err, DNS_OK);
    assert_int_equal(r.targets->n, DNS_SRV_MAX);
    for (int i = 0; i < DNS_SRV_MAX; i++) {
        char want[32];
        snprintf(want, sizeof(want), "h%d.many.test", i);
        assert_target(&r.targets->v[i], want, 5222, false);
    }
    result_clear(&r);
    ctx_close(&c);
}

static bool has_addr(const result_t *r, int family, const char *ip,
                     unsigned short port)
{
    for (size_t i = 0; i < r->naddrs; i++) {
        char buf[INET6_ADDRSTRLEN];
        const struct sockaddr_storage *ss = &r->addrs[i];
        if (ss->ss_family != family)
            continue;
        if (family == AF_INET) {
            const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
            inet_ntop(AF_INET, &s4->sin_addr, buf, sizeof(buf));
            if (strcmp(buf, ip) == 0 && ntohs(s4->sin_port) == port)
                return true;
        } else {
            const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, buf, sizeof(buf));
            if (strcmp(buf, ip) == 0 && ntohs(s6->sin6_port) == port)
                return true;
        }
    }
    return false;
}

static void test_addr(void **state)
{
    ctx_t c;
    ctx_open(&c, *state);
    result_t r;
    addr(&c, "xmpp.example.test", 5222, &r);
    assert_int_equal(r.err, DNS_OK);
    assert_int_equal(r.naddrs, 2);
    assert_true(has_addr(&r, AF_INET, "127.0.0.2", 5222));
    assert_true(has_addr(&r, AF_INET6, "::2", 5222));
    result_clear(&r);
    /* A only (AAAA is NODATA). */
    addr(&c, "v4.example.test", 443, &r);
    assert_int_equal(r.err, DNS_OK);
    assert_int_equal(r.naddrs, 1);
    assert_true(has_addr(&r, AF_INET, "127.0.0.4", 443));
    result_clear(&r);
    addr(&c, "nosrv.test", 5222, &r);
    assert_int_equal(r.err, DNS_OK);
    assert_true(has_addr(&r, AF_INET, "127.0.0.3", 5222));
    result_clear(&r);
    /* A name that exists without addresses (only SRV records). */
    addr(&c, "_xmpp-client._tcp.example.test", 5222, &r);
    assert_int_equal(r.err, DNS_ERR_NOT_FOUND);
    result_clear(&r);
    addr(&c, "missing.example.test", 5222, &r);
    assert_int_equal(r.err, DNS_ERR_NOT_FOUND);
    result_clear(&r);
    /* IP literals, answered without a query. */
    addr(&c, "192.0.2.7", 5223, &r);
    assert_int_equal(r.err, DNS_OK);
    assert_int_equal(r.naddrs, 1);
    assert_true(has_addr(&r, AF_INET, "192.0.2.7", 5223));
    result_clear(&r);
    addr(&c, "[::1]", 5222, &r);
    assert_int_equal(r.err, DNS_OK);
    assert_int_equal(r.naddrs, 1);
    assert_true(has_addr(&r, AF_INET6, "::1", 5222));
    result_clear(&r);
    addr(&c, "2001:db8::5", 1, &r);
    assert_int_equal(r.err, DNS_OK);
    assert_true(has_addr(&r, AF_INET6, "2001:db8::5", 1));
    result_clear(&r);
    ctx_close(&c);
}

/* Several requests in flight at once on one resolver. */
static void test_concurrent(void **state)
{
    ctx_t c;
    ctx_open(&c, *state);
    result_t r[4];
    memset(r, 0, sizeof(r));
    dns_resolve_xmpp(c.dns, "example.test", on_xmpp, &r[0]);
    dns_resolve_xmpp(c.dns, "dot.test", on_xmpp, &r[1]);
    dns_resolve_addr(c.dns, "xmpp.example.test", 1, on_addr, &r[2]);
    dns_resolve_xmpp(c.dns, "many.test", on_xmpp, &r[3]);
    assert_int_equal(uv_run(&c.loop, UV_RUN_DEFAULT), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i].calls, 1);
    assert_int_equal(r[0].err, DNS_OK);
    assert_int_equal(r[0].targets->n, 2);
    assert_int_equal(r[1].err, DNS_ERR_UNAVAILABLE);
    assert_int_equal(r[2].err, DNS_OK);
    assert_int_equal(r[2].naddrs, 2);
    assert_int_equal(r[3].err, DNS_OK);
    assert_int_equal(r[3].targets->n, DNS_SRV_MAX);
    for (int i = 0; i < 4; i++)
        result_clear(&r[i]);
    ctx_close(&c);
}

/* A UDP socket that is bound but never read: queries sent there are
 * neither answered nor refused. */
static int blackhole(unsigned short *port)
{
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(u >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(u, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(u, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return u;
}

/* dns_free() while queries are in flight: every callback runs once with
 * CANCELLED, inside dns_free(), and nothing is left behind. */
static void test_cancel(void **state)
{
    (void)state;
    unsigned short port;
    int hole = blackhole(&port);
    char servers[64];
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", port);
    dns_config_t cfg = {.servers = servers, .timeout_ms = 5000, .tries = 1};
    ctx_t c;
    ctx_open_config(&c, &cfg);
    result_t r[3], nested;
    memset(r, 0, sizeof(r));
    memset(&nested, 0, sizeof(nested));
    r[0].resolve_in_cb = c.dns;
    r[0].nested = &nested;
    dns_resolve_xmpp(c.dns, "example.test", on_xmpp, &r[0]);
    dns_resolve_addr(c.dns, "xmpp.example.test", 5222, on_addr, &r[1]);
    /* Let the queries leave and the loop spin once without answers. */
    assert_int_equal(uv_run(&c.loop, UV_RUN_NOWAIT), 1);
    assert_int_equal(r[0].calls + r[1].calls, 0);
    /* Answered at once, but not yet delivered: cancelled all the same. */
    dns_resolve_addr(c.dns, "192.0.2.1", 5222, on_addr, &r[2]);
    dns_free(c.dns);
    c.dns = NULL;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].err, DNS_ERR_CANCELLED);
    }
    ctx_close(&c);
    close(hole);
}

/* dns_free() from inside a callback cancels what is still pending or
 * answered but not yet delivered, before it returns. */
static void test_free_in_callback(void **state)
{
    (void)state;
    unsigned short port;
    int hole = blackhole(&port);
    char servers[64];
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", port);
    dns_config_t cfg = {.servers = servers, .timeout_ms = 5000, .tries = 1};
    ctx_t c;
    ctx_open_config(&c, &cfg);
    result_t first, pending, answered;
    memset(&first, 0, sizeof(first));
    memset(&pending, 0, sizeof(pending));
    memset(&answered, 0, sizeof(answered));
    dns_resolve_xmpp(c.dns, "example.test", on_xmpp, &pending);
    first.free_in_cb = c.dns;
    first.cancelled = &answered;
    dns_resolve_addr(c.dns, "127.0.0.1", 5222, on_addr, &first);
    /* Answered too, and queued behind `first`: cancelled inside its
     * dns_free(), before that returns. */
    dns_resolve_addr(c.dns, "::1", 5222, on_addr, &answered);
    double t0 = test_now_s();
    assert_int_equal(uv_run(&c.loop, UV_RUN_DEFAULT), 0);
    /* Well before the 5 s timeout: dns_free ended the wait. */
    assert_true(test_now_s() - t0 < 2.0);
    assert_int_equal(first.calls, 1);
    assert_int_equal(first.err, DNS_OK);
    assert_int_equal(pending.calls, 1);
    assert_int_equal(pending.err, DNS_ERR_CANCELLED);
    assert_int_equal(answered.calls, 1);
    assert_int_equal(uv_loop_close(&c.loop), 0);
    result_clear(&first);
    result_clear(&pending);
    close(hole);
}

/* No answer at all: DNS_ERR_FAILED once c-ares' tries are used up, in
 * bounded time (100 ms, then 200 ms). */
static void test_timeout(void **state)
{
    (void)state;
    unsigned short port;
    int hole = blackhole(&port);
    char servers[64];
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", port);
    dns_config_t cfg = {.servers = servers, .timeout_ms = 100, .tries = 2};
    ctx_t c;
    ctx_open_config(&c, &cfg);
    result_t r;
    double t0 = test_now_s();
    xmpp(&c, "example.test", &r);
    double dt = test_now_s() - t0;
    assert_int_equal(r.err, DNS_ERR_FAILED);
    assert_true(dt >= 0.1 && dt < 2.0);
    result_clear(&r);
    t0 = test_now_s();
    addr(&c, "xmpp.example.test", 5222, &r);
    dt = test_now_s() - t0;
    assert_int_equal(r.err, DNS_ERR_FAILED);
    assert_true(dt >= 0.1 && dt < 2.0);
    result_clear(&r);
    ctx_close(&c);
    close(hole);
}

/* A closed port refuses (ICMP port unreachable): FAILED, quickly. */
static void test_refused(void **state)
{
    (void)state;
    unsigned short port;
    int hole = blackhole(&port);
    close(hole); /* now nothing listens there */
    char servers[64];
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", port);
    dns_config_t cfg = {.servers = servers, .timeout_ms = 1000, .tries = 2};
    ctx_t c;
    ctx_open_config(&c, &cfg);
    result_t r;
    double t0 = test_now_s();
    xmpp(&c, "example.test", &r);
    assert_int_equal(r.err, DNS_ERR_FAILED);
    assert_true(test_now_s() - t0 < 5.0);
    result_clear(&r);
    ctx_close(&c);
}

static void test_bad_servers(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char err[256] = "";
    assert_null(dns_new(&loop, "not an address", err, sizeof(err)));
    assert_true(strlen(err) > 0);
    /* The system's configuration works without a query being made. */
    dns_t *d = dns_new(&loop, NULL, err, sizeof(err));
    assert_non_null(d);
    dns_free(d);
    dns_free(NULL);
    /* Two resolvers at once share c-ares' initialisation. */
    dns_t *a = dns_new(&loop, "127.0.0.1:53", err, sizeof(err));
    dns_t *b = dns_new(&loop, "127.0.0.1:53", err, sizeof(err));
    assert_non_null(a);
    assert_non_null(b);
    dns_free(a);
    dns_free(b);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest order[] = {
        cmocka_unit_test(test_order_empty),
        cmocka_unit_test(test_order_priority),
        cmocka_unit_test(test_order_running_sum),
        cmocka_unit_test(test_order_weight_distribution),
        cmocka_unit_test(test_order_zero_weights),
        cmocka_unit_test(test_order_direct_tls_first),
        cmocka_unit_test(test_order_bounds),
        cmocka_unit_test(test_strerror),
    };
    const struct CMUnitTest resolver[] = {
        cmocka_unit_test(test_bad_servers),
        cmocka_unit_test(test_xmpp_tls_first),
        cmocka_unit_test(test_xmpp_fallback),
        cmocka_unit_test(test_xmpp_server),
        cmocka_unit_test(test_xmpp_dot),
        cmocka_unit_test(test_xmpp_many_records),
        cmocka_unit_test(test_addr),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_free_in_callback),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_refused),
    };
    /* A write to a socket whose peer is gone must fail, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    int failed = cmocka_run_group_tests_name("dns_order", order, NULL, NULL);
    failed += cmocka_run_group_tests_name("dns_resolver", resolver,
                                          server_start, server_stop);
    return failed;
}
