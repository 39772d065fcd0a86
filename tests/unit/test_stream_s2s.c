/* The server-to-server halves of lib/stream: the receiving half
 * (stream_new_s2s_in) coupled in memory with the initiating half
 * (sclient_new_s2s, sclient_new_s2s_verify) — what one sends is fed to
 * the other; a fake TLS layer reports both handshakes done at once — and
 * the receiving half fed scripted bytes for what our initiating half never
 * sends (bad dialback, foreign 'from', stanzas before authorization).
 * Dialback keys are whatever the test says; server/s2s computes real ones
 * (unit.s2s_key in test_federation checks XEP-0185). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "stream/stream.h"
#include "stream/stream_client.h"

static const char *hosts[] = {"b.test"};

struct pair {
    stream_t *in;   /* the receiving server (b.test) */
    sclient_t *out; /* the initiating server (a.test) */
    buf_t o2i, i2o;
    bool in_tls, out_tls;  /* start_tls asked */
    bool cert_valid;       /* what peer_cert_valid answers */
    const char *db_answer; /* for dialback_result: NULL valid, or a cond */
    bool auto_answer;
    /* What the receiving side saw. */
    char db_from[64], db_to[64], db_key[128];
    char vf_from[64], vf_to[64], vf_id[128], vf_key[128];
    int in_closed;
    xml_tree_t *stanzas[8];
    size_t nstanzas;
    /* What the initiating side saw. */
    int ready, out_closed;
    int failed_err;
    char failed_cond[64];
    char stream_id[128];
    int verified; /* 0 none, 1 valid, 2 invalid */
};

static struct pair P;

/* ------------------------------------------------ receiving half hooks */

static void in_send(void *ud, const char *data, size_t len)
{
    struct pair *p = ud;
    assert_int_equal(buf_append(&p->i2o, data, len), 0);
}

static void in_start_tls(void *ud)
{
    ((struct pair *)ud)->in_tls = true;
}

static void in_close(void *ud)
{
    ((struct pair *)ud)->in_closed++;
}

static void in_stanza(void *ud, xml_tree_t *t)
{
    struct pair *p = ud;
    assert_true(p->nstanzas < 8);
    p->stanzas[p->nstanzas++] = t;
}

static bool in_cert_valid(void *ud, const char *domain)
{
    struct pair *p = ud;
    return p->cert_valid && strcmp(domain, "a.test") == 0;
}

static void in_db_result(void *ud, const char *from, const char *to,
                         const char *key)
{
    struct pair *p = ud;
    snprintf(p->db_from, sizeof(p->db_from), "%s", from);
    snprintf(p->db_to, sizeof(p->db_to), "%s", to);
    snprintf(p->db_key, sizeof(p->db_key), "%s", key);
    if (p->auto_answer)
        stream_dialback_result(p->in, from, to, p->db_answer);
}

static void in_db_verify(void *ud, const char *from, const char *to,
                         const char *id, const char *key)
{
    struct pair *p = ud;
    snprintf(p->vf_from, sizeof(p->vf_from), "%s", from);
    snprintf(p->vf_to, sizeof(p->vf_to), "%s", to);
    snprintf(p->vf_id, sizeof(p->vf_id), "%s", id);
    snprintf(p->vf_key, sizeof(p->vf_key), "%s", key);
    stream_dialback_verify_done(p->in, from, to, id,
                                strcmp(key, "good-key") == 0);
}

static const stream_hooks_t in_hooks = {
    .send = in_send,
    .start_tls = in_start_tls,
    .close = in_close,
    .stanza = in_stanza,
    .peer_cert_valid = in_cert_valid,
    .dialback_result = in_db_result,
    .dialback_verify = in_db_verify,
};

/* ----------------------------------------------- initiating half hooks */

static void out_send(void *ud, const char *data, size_t len)
{
    struct pair *p = ud;
    assert_int_equal(buf_append(&p->o2i, data, len), 0);
}

static void out_start_tls(void *ud)
{
    ((struct pair *)ud)->out_tls = true;
}

static void out_close(void *ud)
{
    ((struct pair *)ud)->out_closed++;
}

static void out_ready(void *ud, const jid_t *jid)
{
    assert_null(jid);
    ((struct pair *)ud)->ready++;
}

static void out_stanza(void *ud, xml_tree_t *t)
{
    (void)ud;
    xml_tree_free(t);
}

static void out_failed(void *ud, int err, const char *cond, const char *text,
                       const char *desc)
{
    struct pair *p = ud;
    (void)text;
    (void)desc;
    p->failed_err = err;
    snprintf(p->failed_cond, sizeof(p->failed_cond), "%s",
             cond != NULL ? cond : "");
}

static void out_db_key(void *ud, const char *stream_id)
{
    struct pair *p = ud;
    snprintf(p->stream_id, sizeof(p->stream_id), "%s", stream_id);
    sclient_s2s_dialback(p->out, "the-key");
}

static void out_verified(void *ud, bool valid)
{
    ((struct pair *)ud)->verified = valid ? 1 : 2;
}

static const sclient_hooks_t out_hooks = {
    .send = out_send,
    .start_tls = out_start_tls,
    .close = out_close,
    .ready = out_ready,
    .stanza = out_stanza,
    .failed = out_failed,
    .dialback_key = out_db_key,
    .dialback_verified = out_verified,
};

/* ----------------------------------------------------------- plumbing */

static stream_config_t in_cfg(bool tls, bool dialback)
{
    stream_config_t c = {0};
    c.hosts = hosts;
    c.host_count = 1;
    c.tls_available = tls;
    c.tls_required = tls;
    c.dialback = dialback;
    c.max_auth_failures = 3;
    xml_limits_default(&c.limits);
    c.limits_preauth = c.limits;
    return c;
}

static stream_config_t CFG;

static void pair_new(bool tls, bool dialback, bool have_cert, bool verify)
{
    memset(&P, 0, sizeof(P));
    CFG = in_cfg(tls, dialback);
    P.in = stream_new_s2s_in(&CFG, &in_hooks, &P);
    assert_non_null(P.in);
    sclient_s2s_config_t oc = {.from = "a.test",
                               .to = "b.test",
                               .allow_plaintext = !tls,
                               .have_cert = have_cert,
                               .dialback = true};
    P.out = verify ? sclient_new_s2s_verify(&oc, "stream-id-1", "good-key",
                                            &out_hooks, &P)
                   : sclient_new_s2s(&oc, &out_hooks, &P);
    assert_non_null(P.out);
    P.auto_answer = true;
}

static void pair_free(void)
{
    stream_free(P.in);
    sclient_free(P.out);
    buf_free(&P.o2i);
    buf_free(&P.i2o);
    for (size_t i = 0; i < P.nstanzas; i++)
        xml_tree_free(P.stanzas[i]);
}

/* Moves bytes both ways until nothing moves; a fake TLS handshake when
 * both sides asked for one. */
static void pump(void)
{
    for (int round = 0; round < 100; round++) {
        bool moved = false;
        if (P.o2i.len > 0) {
            buf_t b = P.o2i;
            P.o2i = (buf_t)BUF_INIT;
            stream_feed(P.in, b.data, b.len);
            buf_free(&b);
            moved = true;
        }
        if (P.i2o.len > 0) {
            buf_t b = P.i2o;
            P.i2o = (buf_t)BUF_INIT;
            sclient_feed(P.out, b.data, b.len);
            buf_free(&b);
            moved = true;
        }
        if (P.in_tls && P.out_tls) {
            P.in_tls = P.out_tls = false;
            stream_tls_done(P.in, true, NULL);
            sclient_tls_info_t info = {.have_client_cert = true,
                                       .peer_cert_valid = P.cert_valid};
            sclient_tls_done(P.out, true, &info);
            moved = true;
        }
        if (!moved)
            return;
    }
    fail_msg("the two halves never went quiet");
}

static const xml_node_t *stanza(size_t i)
{
    assert_true(i < P.nstanzas);
    return P.stanzas[i]->root;
}

/* Sends raw bytes from the initiating side's transport. */
static void raw_to_in(const char *s)
{
    stream_feed(P.in, s, strlen(s));
}

static bool in_sent(const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= P.i2o.len; i++)
        if (memcmp(P.i2o.data + i, needle, n) == 0)
            return true;
    return false;
}

/* ---------------------------------------------------------------- tests */

static void test_dialback(void **state)
{
    (void)state;
    pair_new(true, true, false, false);
    sclient_start(P.out);
    pump();
    assert_int_equal(P.ready, 1);
    assert_string_equal(P.db_from, "a.test");
    assert_string_equal(P.db_to, "b.test");
    assert_string_equal(P.db_key, "the-key");
    assert_string_equal(P.stream_id, stream_id(P.in));
    assert_null(sclient_mechanism(P.out));
    assert_true(stream_s2s_authorized(P.in, "a.test", "b.test"));
    assert_false(stream_s2s_authorized(P.in, "c.test", "b.test"));
    assert_string_equal(stream_peer_domain(P.in), "a.test");
    /* A stanza goes through, in jabber:server, with both addresses. */
    xml_tree_t *t = xml_tree_new();
    xml_node_t *m = xml_element_new(t, NULL, XML_NS_CLIENT, "message");
    xml_element_set_attr(t, m, NULL, "from", "alice@a.test/r");
    xml_element_set_attr(t, m, NULL, "to", "bob@b.test");
    assert_true(sclient_send(P.out, m));
    xml_tree_free(t);
    pump();
    assert_int_equal(P.nstanzas, 1);
    assert_string_equal(stanza(0)->ns, XML_NS_SERVER);
    assert_string_equal(xml_element_attr(stanza(0), NULL, "from"),
                        "alice@a.test/r");
    assert_int_equal(P.in_closed, 0);
    pair_free();
}

static void test_dialback_invalid(void **state)
{
    (void)state;
    pair_new(true, true, false, false);
    P.db_answer = "invalid";
    sclient_start(P.out);
    pump();
    assert_int_equal(P.ready, 0);
    assert_int_equal(P.failed_err, SCLIENT_ERR_DIALBACK);
    assert_string_equal(P.failed_cond, "invalid");
    assert_false(stream_s2s_authorized(P.in, "a.test", "b.test"));
    pair_free();
}

static void test_dialback_error(void **state)
{
    (void)state;
    pair_new(true, true, false, false);
    P.db_answer = "remote-server-not-found";
    sclient_start(P.out);
    pump();
    assert_int_equal(P.failed_err, SCLIENT_ERR_DIALBACK);
    assert_string_equal(P.failed_cond, "remote-server-not-found");
    pair_free();
}

static void test_external(void **state)
{
    (void)state;
    pair_new(true, true, true, false);
    P.cert_valid = true;
    sclient_start(P.out);
    pump();
    assert_int_equal(P.ready, 1);
    assert_string_equal(sclient_mechanism(P.out), "EXTERNAL");
    assert_string_equal(P.db_key, ""); /* no dialback was needed */
    assert_true(stream_s2s_authorized(P.in, "a.test", "b.test"));
    pair_free();
}

/* No valid certificate: EXTERNAL is not offered; dialback it is. */
static void test_external_not_offered(void **state)
{
    (void)state;
    pair_new(true, true, true, false);
    P.cert_valid = false;
    sclient_start(P.out);
    pump();
    assert_int_equal(P.ready, 1);
    assert_null(sclient_mechanism(P.out));
    assert_string_equal(P.db_key, "the-key");
    pair_free();
}

/* Neither EXTERNAL nor dialback: the initiating side says why. */
static void test_no_way_in(void **state)
{
    (void)state;
    pair_new(true, false, true, false);
    sclient_start(P.out);
    pump();
    assert_int_equal(P.ready, 0);
    assert_int_equal(P.failed_err, SCLIENT_ERR_NO_MECH);
    pair_free();
}

static void test_verify(void **state)
{
    (void)state;
    pair_new(true, true, false, true);
    sclient_start(P.out);
    pump();
    assert_int_equal(P.verified, 1);
    assert_string_equal(P.vf_from, "a.test");
    assert_string_equal(P.vf_to, "b.test");
    assert_string_equal(P.vf_id, "stream-id-1");
    assert_string_equal(P.vf_key, "good-key");
    pair_free();
}

/* Scripted peers from here on: a plaintext stream (no TLS configured). */
#define HDR                                                                    \
    "<stream:stream xmlns='jabber:server' "                                    \
    "xmlns:stream='http://etherx.jabber.org/streams' "                         \
    "xmlns:db='jabber:server:dialback' from='a.test' to='b.test' "             \
    "version='1.0'>"

static void scripted(bool dialback_valid)
{
    pair_new(false, true, false, false);
    raw_to_in(HDR);
    assert_true(in_sent("urn:xmpp:features:dialback"));
    P.db_answer = dialback_valid ? NULL : "invalid";
    raw_to_in("<db:result from='a.test' to='b.test'>k</db:result>");
}

static void test_foreign_from(void **state)
{
    (void)state;
    scripted(true);
    assert_true(in_sent("type='valid'"));
    raw_to_in("<message from='eve@evil.test' to='bob@b.test'/>");
    assert_true(in_sent("<invalid-from"));
    assert_int_equal(P.nstanzas, 0);
    pair_free();
}

static void test_to_unserved(void **state)
{
    (void)state;
    scripted(true);
    raw_to_in("<message from='x@a.test' to='bob@c.test'/>");
    assert_true(in_sent("<host-unknown"));
    assert_int_equal(P.nstanzas, 0);
    pair_free();
}

static void test_no_addresses(void **state)
{
    (void)state;
    scripted(true);
    raw_to_in("<message to='bob@b.test'/>");
    assert_true(in_sent("<improper-addressing"));
    pair_free();
}

static void test_before_authorization(void **state)
{
    (void)state;
    pair_new(false, true, false, false);
    raw_to_in(HDR "<message from='x@a.test' to='bob@b.test'/>");
    assert_true(in_sent("<not-authorized"));
    assert_int_equal(P.nstanzas, 0);
    pair_free();
}

static void test_invalid_key_then_stanza(void **state)
{
    (void)state;
    scripted(false);
    assert_true(in_sent("type='invalid'"));
    raw_to_in("<message from='x@a.test' to='bob@b.test'/>");
    assert_true(in_sent("<invalid-from"));
    assert_int_equal(P.nstanzas, 0);
    pair_free();
}

/* XEP-0220 §2.4: a 'to' we do not serve gets item-not-found. */
static void test_dialback_unknown_host(void **state)
{
    (void)state;
    pair_new(false, true, false, false);
    raw_to_in(HDR "<db:result from='a.test' to='x.test'>k</db:result>");
    assert_true(in_sent("type='error'"));
    assert_true(in_sent("<item-not-found"));
    assert_string_equal(P.db_key, "");
    pair_free();
}

/* A second domain over the same stream (XEP-0220 §2.1 multiplexing). */
static void test_piggyback(void **state)
{
    (void)state;
    scripted(true);
    raw_to_in("<db:result from='conf.a.test' to='b.test'>k2</db:result>");
    raw_to_in("<presence from='room@conf.a.test/n' to='bob@b.test'/>");
    assert_int_equal(P.nstanzas, 1);
    raw_to_in("<presence from='x@other.test' to='bob@b.test'/>");
    assert_true(in_sent("<invalid-from"));
    assert_int_equal(P.nstanzas, 1);
    pair_free();
}

/* TLS required: dialback before STARTTLS is refused. */
static void test_tls_required(void **state)
{
    (void)state;
    pair_new(true, true, false, false);
    raw_to_in(HDR);
    assert_true(in_sent("<starttls"));
    assert_false(in_sent("urn:xmpp:features:dialback"));
    raw_to_in("<db:result from='a.test' to='b.test'>k</db:result>");
    assert_true(in_sent("<policy-violation"));
    assert_string_equal(P.db_key, "");
    pair_free();
}

/* Answers on an incoming stream, and missing attributes. */
static void test_bad_dialback(void **state)
{
    (void)state;
    pair_new(false, true, false, false);
    raw_to_in(HDR "<db:result from='a.test' to='b.test' type='valid'/>");
    assert_true(in_sent("<unsupported-stanza-type"));
    pair_free();
    pair_new(false, true, false, false);
    raw_to_in(HDR "<db:verify from='a.test' to='b.test'>k</db:verify>");
    assert_true(in_sent("<improper-addressing"));
    pair_free();
    pair_new(false, false, false, false);
    raw_to_in(HDR "<db:result from='a.test' to='b.test'>k</db:result>");
    assert_true(in_sent("<unsupported-stanza-type"));
    pair_free();
}

/* jabber:client stanzas on a server stream. */
static void test_client_namespace(void **state)
{
    (void)state;
    scripted(true);
    raw_to_in("<message xmlns='jabber:client' from='x@a.test' "
              "to='bob@b.test'/>");
    assert_true(in_sent("<invalid-namespace"));
    pair_free();
}

/* Our header declares the dialback namespace and answers the peer. */
static void test_header(void **state)
{
    (void)state;
    pair_new(false, true, false, false);
    raw_to_in(HDR);
    assert_true(in_sent("xmlns='jabber:server'"));
    assert_true(in_sent("xmlns:db='jabber:server:dialback'"));
    assert_true(in_sent("from='b.test'"));
    assert_true(in_sent("to='a.test'"));
    pair_free();
    pair_new(false, true, false, false);
    raw_to_in("<stream:stream xmlns='jabber:server' "
              "xmlns:stream='http://etherx.jabber.org/streams' "
              "from='a.test' to='nowhere.test' version='1.0'>");
    assert_true(in_sent("<host-unknown"));
    pair_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dialback),
        cmocka_unit_test(test_dialback_invalid),
        cmocka_unit_test(test_dialback_error),
        cmocka_unit_test(test_external),
        cmocka_unit_test(test_external_not_offered),
        cmocka_unit_test(test_no_way_in),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_foreign_from),
        cmocka_unit_test(test_to_unserved),
        cmocka_unit_test(test_no_addresses),
        cmocka_unit_test(test_before_authorization),
        cmocka_unit_test(test_invalid_key_then_stanza),
        cmocka_unit_test(test_dialback_unknown_host),
        cmocka_unit_test(test_piggyback),
        cmocka_unit_test(test_tls_required),
        cmocka_unit_test(test_bad_dialback),
        cmocka_unit_test(test_client_namespace),
        cmocka_unit_test(test_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
