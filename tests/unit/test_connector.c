/* Unit tests for lib/net/connector against real sockets and a real DNS
 * server: dnsmasq (as in unit.dns) serves SRV records whose targets are
 * loopback listeners on ports chosen when the group starts. Each test runs
 * on a private loop and ends with connector_free(), dns_free(), a loop that
 * runs dry and uv_loop_close() == 0. */
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
#include "net/conn.h"
#include "net/connector.h"
#include "net/dns.h"

typedef struct fixture {
    dnsmasq_t dns;
    unsigned short open_a, open_b; /* listeners in the tests */
    unsigned short closed;         /* nothing listens: refused */
} fixture_t;

static int group_setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    f->open_a = test_free_port();
    do
        f->open_b = test_free_port();
    while (f->open_b == f->open_a);
    do
        f->closed = test_free_port();
    while (f->closed == f->open_a || f->closed == f->open_b);
    char r[6][128];
    /* order.test: a (priority 10) before b (priority 20), both up.
     * fallback.test: the first target refuses, the second is up.
     * down.test: every target refuses. */
    snprintf(r[0], sizeof(r[0]),
             "--srv-host=_xmpp-client._tcp.order.test,a.order.test,%u,10,1",
             f->open_a);
    snprintf(r[1], sizeof(r[1]),
             "--srv-host=_xmpp-client._tcp.order.test,b.order.test,%u,20,1",
             f->open_b);
    snprintf(r[2], sizeof(r[2]),
             "--srv-host=_xmpp-client._tcp.fallback.test,a.order.test,%u,"
             "10,1",
             f->closed);
    snprintf(r[3], sizeof(r[3]),
             "--srv-host=_xmpp-client._tcp.fallback.test,b.order.test,%u,"
             "20,1",
             f->open_b);
    snprintf(r[4], sizeof(r[4]),
             "--srv-host=_xmpp-client._tcp.down.test,a.order.test,%u,10,1",
             f->closed);
    snprintf(r[5], sizeof(r[5]),
             "--srv-host=_xmpps-client._tcp.tls.test,a.order.test,%u,10,1",
             f->open_a);
    char *records[] = {
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        "--srv-host=_xmpp-client._tcp.dot.test",
        "--srv-host=_xmpps-client._tcp.dot.test",
        /* Two addresses: 127.0.0.9 refuses (nothing listens there). */
        "--host-record=a.order.test,127.0.0.9",
        "--host-record=a.order.test,127.0.0.1",
        "--host-record=b.order.test,127.0.0.1",
    };
    if (dnsmasq_start(&f->dns, "test_connector", records,
                      sizeof(records) / sizeof(records[0]), false) < 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    fixture_t *f = *state;
    dnsmasq_stop(&f->dns);
    free(f);
    return 0;
}

/* ---- a loop with listeners ------------------------------------------ */

typedef struct ctx {
    uv_loop_t loop;
    uv_tcp_t listen[2];
    unsigned accepted[2];
    int nlisten;
    dns_t *dns;
    connector_t *k;
    int calls;
    connector_result_t r;
    char host[64];
    bool conn_closed;
} ctx_t;

static void on_accept(uv_stream_t *l, int status)
{
    ctx_t *c = l->data;
    assert_int_equal(status, 0);
    uv_tcp_t *t = malloc(sizeof(*t));
    assert_non_null(t);
    uv_tcp_init(&c->loop, t);
    assert_int_equal(uv_accept(l, (uv_stream_t *)t), 0);
    c->accepted[l == (uv_stream_t *)&c->listen[0] ? 0 : 1]++;
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void listen_on(ctx_t *c, unsigned short port)
{
    uv_tcp_t *t = &c->listen[c->nlisten++];
    uv_tcp_init(&c->loop, t);
    t->data = c;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    assert_int_equal(uv_tcp_bind(t, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)t, 8, on_accept), 0);
}

static void ctx_open(ctx_t *c, const fixture_t *f)
{
    memset(c, 0, sizeof(*c));
    assert_int_equal(uv_loop_init(&c->loop), 0);
    char err[256];
    c->dns = dns_new(&c->loop, f->dns.servers, err, sizeof(err));
    assert_non_null(c->dns);
    c->k = connector_new(&c->loop, c->dns);
    assert_non_null(c->k);
}

static void on_conn_closed(void *ud)
{
    ctx_t *c = ud;
    c->conn_closed = true;
}

static const conn_events_t owner_events = {.closed = on_conn_closed};

static void on_result(void *ud, const connector_result_t *r)
{
    ctx_t *c = ud;
    c->calls++;
    c->r = *r;
    snprintf(c->host, sizeof(c->host), "%s", r->host ? r->host : "");
    if (r->conn != NULL) {
        conn_set_owner(r->conn, &owner_events, c);
        conn_close(r->conn, 1000);
    }
}

static void run_until_result(ctx_t *c)
{
    uint64_t deadline = uv_now(&c->loop) + 10000;
    while (c->calls == 0 && uv_now(&c->loop) < deadline)
        uv_run(&c->loop, UV_RUN_ONCE);
    assert_int_equal(c->calls, 1);
}

static void ctx_close(ctx_t *c)
{
    connector_free(c->k);
    dns_free(c->dns);
    for (int i = 0; i < c->nlisten; i++)
        uv_close((uv_handle_t *)&c->listen[i], NULL);
    while (uv_run(&c->loop, UV_RUN_ONCE) != 0)
        ;
    assert_int_equal(uv_loop_close(&c->loop), 0);
    if (c->r.conn != NULL)
        assert_true(c->conn_closed);
}

static void start(ctx_t *c, const char *domain, const char *server,
                  bool direct_tls, unsigned timeout_ms)
{
    connector_opts_t o = {.domain = domain,
                          .server = server,
                          .direct_tls = direct_tls,
                          .connect_timeout_ms = timeout_ms};
    assert_int_equal(connector_start(c->k, &o, on_result, c), 0);
    assert_true(connector_busy(c->k));
    /* One attempt at a time. */
    assert_int_equal(connector_start(c->k, &o, on_result, c), -1);
}

/* ---- tests ----------------------------------------------------------- */

/* RFC 2782: the lower priority value first. a.order.test has two
 * addresses, of which 127.0.0.9 refuses: the next address is tried. */
static void test_srv_order(void **state)
{
    fixture_t *f = *state;
    ctx_t c;
    ctx_open(&c, f);
    listen_on(&c, f->open_a);
    listen_on(&c, f->open_b);
    start(&c, "order.test", NULL, false, 0);
    run_until_result(&c);
    assert_int_equal(c.r.err, CONNECTOR_OK);
    assert_non_null(c.r.conn);
    assert_string_equal(c.host, "a.order.test");
    assert_int_equal(c.r.port, f->open_a);
    assert_false(c.r.direct_tls);
    assert_false(connector_busy(c.k));
    while (c.accepted[0] == 0)
        uv_run(&c.loop, UV_RUN_ONCE);
    assert_int_equal(c.accepted[1], 0);
    ctx_close(&c);
}

/* The first target refuses: the next one (RFC 6120 §3.2.1). */
static void test_target_fallback(void **state)
{
    fixture_t *f = *state;
    ctx_t c;
    ctx_open(&c, f);
    listen_on(&c, f->open_b);
    start(&c, "fallback.test", NULL, false, 0);
    run_until_result(&c);
    assert_int_equal(c.r.err, CONNECTOR_OK);
    assert_string_equal(c.host, "b.order.test");
    assert_int_equal(c.r.port, f->open_b);
    ctx_close(&c);
}

static void test_direct_tls_target(void **state)
{
    fixture_t *f = *state;
    ctx_t c;
    ctx_open(&c, f);
    listen_on(&c, f->open_a);
    start(&c, "tls.test", NULL, false, 0);
    run_until_result(&c);
    assert_int_equal(c.r.err, CONNECTOR_OK);
    assert_true(c.r.direct_tls);
    ctx_close(&c);
}

static void test_all_refuse(void **state)
{
    fixture_t *f = *state;
    ctx_t c;
    ctx_open(&c, f);
    start(&c, "down.test", NULL, false, 0);
    run_until_result(&c);
    assert_int_equal(c.r.err, CONNECTOR_ERR_CONNECT);
    assert_null(c.r.conn);
    ctx_close(&c);
}

/* "." for both services: no XMPP there, said by DNS. */
static void test_dns_error(void **state)
{
    fixture_t *f = *state;
    ctx_t c;
    ctx_open(&c, f);
    start(&c, "dot.test", NULL, false, 0);
    run_until_result(&c);
    assert_int_equal(c.r.err, CONNECTOR_ERR_DNS);
    assert_int_equal(c.r.dns_err, DNS_ERR_UNAVAILABLE);
    ctx_close(&c);
}

/* A fixed server replaces the lookup; its default port follows
 * direct_tls; a malformed one is refused at once. */
static void test_fixed_server(void **state)
{
    fixture_t *f = *state;
    ctx_t c;
    ctx_open(&c, f);
    listen_on(&c, f->open_b);
    connector_opts_t bad = {.server = "[::1"};
    assert_int_equal(connector_start(c.k, &bad, on_result, &c), -1);
    bad.server = "host:0";
    assert_int_equal(connector_start(c.k, &bad, on_result, &c), -1);
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%u", f->open_b);
    start(&c, NULL, server, true, 0);
    run_until_result(&c);
    assert_int_equal(c.r.err, CONNECTOR_OK);
    assert_true(c.r.direct_tls);
    assert_string_equal(c.host, "127.0.0.1");
    ctx_close(&c);
}

/* A listener whose accept queue is full drops SYNs: the connect hangs
 * until the timeout gives up on it. */
static void test_connect_timeout(void **state)
{
    fixture_t *f = *state;
    ctx_t c;
    ctx_open(&c, f);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    getsockname(l, (struct sockaddr *)&sa, &len);
    assert_int_equal(listen(l, 0), 0);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&sa, sizeof(sa));
    }
    usleep(100000);
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%u", ntohs(sa.sin_port));
    uint64_t t0 = uv_now(&c.loop);
    start(&c, NULL, server, false, 300);
    run_until_result(&c);
    uv_update_time(&c.loop);
    assert_int_equal(c.r.err, CONNECTOR_ERR_CONNECT);
    assert_true(uv_now(&c.loop) - t0 >= 290);
    assert_true(uv_now(&c.loop) - t0 < 5000);
    ctx_close(&c);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(l);
}

/* Cancelled or freed with work in flight: no callback, nothing leaked. */
static void test_cancel_and_free(void **state)
{
    fixture_t *f = *state;
    ctx_t c;
    ctx_open(&c, f);
    listen_on(&c, f->open_a);
    start(&c, "order.test", NULL, false, 0);
    connector_cancel(c.k);
    assert_false(connector_busy(c.k));
    /* A new attempt after a cancel works, and the old answer is
     * ignored. */
    start(&c, "fallback.test", NULL, false, 0);
    connector_free(c.k);
    c.k = NULL;
    for (int i = 0; i < 20; i++)
        uv_run(&c.loop, UV_RUN_NOWAIT);
    assert_int_equal(c.calls, 0);
    dns_free(c.dns);
    uv_close((uv_handle_t *)&c.listen[0], NULL);
    while (uv_run(&c.loop, UV_RUN_ONCE) != 0)
        ;
    assert_int_equal(uv_loop_close(&c.loop), 0);
    assert_int_equal(c.calls, 0);
}

/* RFC 6120 §3.3: a random delay between half and one and a half times a
 * base that doubles per failure from 1 s, capped at 64 s. */
static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(connector_backoff_ms(0, 0), 500);
    assert_int_equal(connector_backoff_ms(0, 1000), 1500);
    assert_int_equal(connector_backoff_ms(0, 1001), 500);
    assert_int_equal(connector_backoff_ms(1, 0), 1000);
    assert_int_equal(connector_backoff_ms(3, 0), 4000);
    assert_int_equal(connector_backoff_ms(6, 0), 32000);
    assert_int_equal(connector_backoff_ms(7, 0), 32000);
    assert_int_equal(connector_backoff_ms(100, UINT32_MAX),
                     32000 + UINT32_MAX % 64001);
    for (uint32_t r = 0; r < 100000; r += 7) {
        unsigned ms = connector_backoff_ms(2, r);
        assert_true(ms >= 2000 && ms <= 6000);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_srv_order),
        cmocka_unit_test(test_target_fallback),
        cmocka_unit_test(test_direct_tls_target),
        cmocka_unit_test(test_all_refuse),
        cmocka_unit_test(test_dns_error),
        cmocka_unit_test(test_fixed_server),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_cancel_and_free),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
