/* The client half of a c2s stream (lib/stream/stream_client.c), fed from
 * memory in two ways:
 *  - coupled with our own server state machine (lib/stream, stream_new_c2s)
 *    in memory: what one side sends is fed to the other, with a fake TLS
 *    layer whose start_tls hooks just report both handshakes done with the
 *    same channel-binding data. That runs the full STARTTLS → SASL → bind
 *    negotiation with real SCRAM (including -PLUS) on both ends;
 *  - scripted server byte streams, for what our server never sends (no
 *    STARTTLS, <failure/> to STARTTLS, bad versions, malformed XML, a
 *    required session).
 * Both are fed whole and one byte at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "sasl/scram.h"
#include "stream/stream.h"
#include "stream/stream_client.h"

#define PASSWORD "r0m30"

/* ------------------------------------------------------- the pair */

static const unsigned char exporter[32] = {
    9, 8, 7, 6,  5,  4,  3,  2,  1,  0,  1,  2,  3,  4,  5,  6,
    7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22};
static const unsigned char unique[12] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5,
                                         0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab};
static const char *hosts[] = {"localhost"};
static unsigned char secret[32] = {1, 2, 3};

/* Made once: PBKDF2 at 4096 iterations is the slow part of every test. */
static scram_cred_t cred_sha1, cred_sha256;
static unsigned char md5_hash[16];

struct pair {
    stream_t *srv;
    sclient_t *cl;
    bool byte_mode; /* feed one byte at a time */

    buf_t c2s, s2c;   /* bytes in flight */
    buf_t client_out; /* everything the client sent */

    /* TLS data each side sees. */
    bool give_exporter, give_unique;
    bool tls_fails;

    /* Server owner. */
    const char *bind_condition;
    const char *error_in_lookup; /* stream_error from the lookup hook */
    int srv_closed;
    char bound_resource[64];
    xml_tree_t *srv_stanzas[4];
    int srv_nstanzas;

    /* Client owner. */
    int failed, ready, cl_closed, cl_tls_started;
    int err;
    char cond[64], text[128], desc[256];
    char ready_jid[256];
    xml_tree_t *cl_stanzas[4];
    int cl_nstanzas;
    bool sent_after_close;
    bool close_tag_seen;
};

/* --- server hooks */

static void s_send(void *ud, const char *d, size_t n)
{
    struct pair *p = ud;
    buf_append(&p->s2c, d, n);
}

static void s_start_tls(void *ud)
{
    (void)ud; /* the client's start_tls hook completes both handshakes */
}

static void s_close(void *ud)
{
    ((struct pair *)ud)->srv_closed++;
}

static void s_lookup(void *ud, const char *domain, const char *node)
{
    struct pair *p = ud;
    assert_string_equal(domain, "localhost");
    if (p->error_in_lookup != NULL) {
        stream_error(p->srv, p->error_in_lookup, "going down");
        return;
    }
    bool found = strcmp(node, "juliet") == 0;
    stream_sasl_account(p->srv, found, &cred_sha1, &cred_sha256,
                        found ? md5_hash : NULL);
}

static void s_check_password(void *ud, sasl_server_t *sess)
{
    struct pair *p = ud;
    stream_sasl_password_checked(p->srv, sasl_server_check_password(sess));
}

static void s_bind(void *ud, const jid_t *user, const char *resource)
{
    struct pair *p = ud;
    assert_string_equal(user->node, "juliet");
    if (p->bind_condition != NULL) {
        stream_bind_done(p->srv, NULL, p->bind_condition);
        return;
    }
    snprintf(p->bound_resource, sizeof(p->bound_resource), "%s",
             resource != NULL ? resource : "gen123");
    stream_bind_done(p->srv, p->bound_resource, NULL);
}

static void s_stanza(void *ud, xml_tree_t *t)
{
    struct pair *p = ud;
    assert_true(p->srv_nstanzas < 4);
    p->srv_stanzas[p->srv_nstanzas++] = t;
}

static const stream_hooks_t srv_hooks = {
    .send = s_send,
    .start_tls = s_start_tls,
    .close = s_close,
    .lookup_account = s_lookup,
    .check_password = s_check_password,
    .bind = s_bind,
    .stanza = s_stanza,
};

/* --- client hooks */

static void c_send(void *ud, const char *d, size_t n)
{
    struct pair *p = ud;
    if (p->close_tag_seen)
        p->sent_after_close = true;
    buf_append(&p->c2s, d, n);
    buf_append(&p->client_out, d, n);
    if (p->client_out.data != NULL &&
        strstr(p->client_out.data, "</stream:stream>") != NULL)
        p->close_tag_seen = true;
}

static void c_start_tls(void *ud)
{
    struct pair *p = ud;
    p->cl_tls_started++;
    stream_tls_info_t si = {0};
    sclient_tls_info_t ci = {0};
    if (p->give_exporter) {
        si.cb_exporter = ci.cb_exporter = exporter;
        si.cb_exporter_len = ci.cb_exporter_len = sizeof(exporter);
    }
    if (p->give_unique) {
        si.cb_unique = ci.cb_unique = unique;
        si.cb_unique_len = ci.cb_unique_len = sizeof(unique);
    }
    if (p->srv != NULL)
        stream_tls_done(p->srv, !p->tls_fails, &si);
    sclient_tls_done(p->cl, !p->tls_fails, &ci);
}

static void c_close(void *ud)
{
    ((struct pair *)ud)->cl_closed++;
}

static void c_ready(void *ud, const jid_t *jid)
{
    struct pair *p = ud;
    p->ready++;
    assert_int_equal(p->failed, 0);
    assert_true(jid_format(jid, false, p->ready_jid, sizeof(p->ready_jid)) > 0);
}

static void c_stanza(void *ud, xml_tree_t *t)
{
    struct pair *p = ud;
    assert_true(p->ready == 1);
    assert_true(p->cl_nstanzas < 4);
    p->cl_stanzas[p->cl_nstanzas++] = t;
}

static void c_failed(void *ud, int err, const char *cond, const char *text,
                     const char *desc)
{
    struct pair *p = ud;
    p->failed++;
    assert_int_equal(p->cl_closed, 0);
    p->err = err;
    snprintf(p->cond, sizeof(p->cond), "%s", cond != NULL ? cond : "");
    snprintf(p->text, sizeof(p->text), "%s", text != NULL ? text : "");
    assert_non_null(desc);
    snprintf(p->desc, sizeof(p->desc), "%s", desc);
}

static const sclient_hooks_t cl_hooks = {
    .send = c_send,
    .start_tls = c_start_tls,
    .close = c_close,
    .ready = c_ready,
    .stanza = c_stanza,
    .failed = c_failed,
};

static void setup_creds(void)
{
    static bool done;
    if (done)
        return;
    assert_int_equal(scram_make(SCRAM_SHA1, PASSWORD, 4096, &cred_sha1), 0);
    assert_int_equal(scram_make(SCRAM_SHA256, PASSWORD, 4096, &cred_sha256), 0);
    assert_int_equal(
        scram_digest_md5_hash("juliet", "localhost", PASSWORD, md5_hash), 0);
    done = true;
}

static stream_config_t srv_cfg(unsigned mechs, bool tls)
{
    stream_config_t c;
    memset(&c, 0, sizeof(c));
    c.hosts = hosts;
    c.host_count = 1;
    c.tls_available = tls;
    c.tls_required = tls;
    c.mechs = mechs;
    c.offer_plus = true;
    c.max_auth_failures = 3;
    xml_limits_default(&c.limits);
    c.limits_preauth = c.limits;
    c.limits_preauth.max_element_size = 4096;
    c.server_secret = secret;
    c.server_secret_len = sizeof(secret);
    c.scram_iterations = 4096;
    return c;
}

static sclient_config_t cl_cfg(const char *jid, const char *password)
{
    sclient_config_t c;
    memset(&c, 0, sizeof(c));
    c.jid = jid;
    c.password = password;
    c.allow_plain = true;
    xml_limits_default(&c.limits);
    return c;
}

#define ALL_MECHS                                                              \
    (1u << SASL_MECH_SCRAM_SHA256_PLUS | 1u << SASL_MECH_SCRAM_SHA256 |        \
     1u << SASL_MECH_SCRAM_SHA1_PLUS | 1u << SASL_MECH_SCRAM_SHA1 |            \
     1u << SASL_MECH_PLAIN)

static void pair_init(struct pair *p, const stream_config_t *scfg,
                      const sclient_config_t *ccfg, bool byte_mode)
{
    setup_creds();
    memset(p, 0, sizeof(*p));
    p->byte_mode = byte_mode;
    p->give_exporter = true;
    if (scfg != NULL) {
        p->srv = stream_new_c2s(scfg, &srv_hooks, p);
        assert_non_null(p->srv);
    }
    p->cl = sclient_new(ccfg, &cl_hooks, p);
    assert_non_null(p->cl);
}

static void pair_done(struct pair *p)
{
    sclient_free(p->cl);
    stream_free(p->srv);
    buf_free(&p->c2s);
    buf_free(&p->s2c);
    buf_free(&p->client_out);
    for (int i = 0; i < p->srv_nstanzas; i++)
        xml_tree_free(p->srv_stanzas[i]);
    for (int i = 0; i < p->cl_nstanzas; i++)
        xml_tree_free(p->cl_stanzas[i]);
}

/* Feeds bytes to the client whole or one at a time. */
static void to_client(struct pair *p, const char *d, size_t n)
{
    if (!p->byte_mode) {
        sclient_feed(p->cl, d, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        sclient_feed(p->cl, d + i, 1);
}

static void feed_client(struct pair *p, const char *s)
{
    to_client(p, s, strlen(s));
}

/* Moves bytes between the two sides until both are quiet. */
static void pump(struct pair *p)
{
    for (int round = 0; round < 100; round++) {
        if (p->c2s.len == 0 && p->s2c.len == 0)
            return;
        if (p->c2s.len > 0) {
            buf_t b = p->c2s;
            p->c2s = (buf_t)BUF_INIT;
            if (p->byte_mode)
                for (size_t i = 0; i < b.len; i++)
                    stream_feed(p->srv, b.data + i, 1);
            else
                stream_feed(p->srv, b.data, b.len);
            buf_free(&b);
        }
        if (p->s2c.len > 0) {
            buf_t b = p->s2c;
            p->s2c = (buf_t)BUF_INIT;
            to_client(p, b.data, b.len);
            buf_free(&b);
        }
    }
    fail_msg("the two sides never went quiet");
}

static bool client_sent(const struct pair *p, const char *needle)
{
    return p->client_out.data != NULL &&
           strstr(p->client_out.data, needle) != NULL;
}

/* ------------------------------------------------- coupled tests */

/* STARTTLS → SASL with `mechs` offered → bind, expecting `mech`. */
static void login(struct pair *p, const char *mech, const char *jid)
{
    sclient_start(p->cl);
    assert_int_equal(sclient_state(p->cl), SCLIENT_NEGOTIATING);
    pump(p);
    if (p->failed)
        fail_msg("failed: %d %s %s", p->err, p->cond, p->desc);
    assert_int_equal(p->cl_tls_started, 1);
    assert_int_equal(p->ready, 1);
    assert_int_equal(sclient_state(p->cl), SCLIENT_READY);
    assert_string_equal(sclient_mechanism(p->cl), mech);
    assert_string_equal(p->ready_jid, jid);
    char buf[256];
    assert_true(jid_format(sclient_jid(p->cl), false, buf, sizeof(buf)) > 0);
    assert_string_equal(buf, jid);
    assert_true(stream_is_bound(p->srv));
    /* Three headers: plaintext, after TLS, after SASL (feature set 4-4,
     * 5-3). */
    int headers = 0;
    for (const char *s = p->client_out.data;
         (s = strstr(s, "<stream:stream")) != NULL; s++)
        headers++;
    assert_int_equal(headers, 3);
}

static void close_both(struct pair *p)
{
    sclient_close(p->cl);
    assert_int_equal(sclient_state(p->cl), SCLIENT_CLOSING);
    pump(p);
    assert_int_equal(p->cl_closed, 1);
    assert_int_equal(p->srv_closed, 1);
    assert_int_equal(sclient_state(p->cl), SCLIENT_CLOSED);
    assert_int_equal(p->failed, 0);
    assert_false(p->sent_after_close);
}

static void run_full_flow(bool byte_mode)
{
    stream_config_t scfg = srv_cfg(ALL_MECHS, true);
    sclient_config_t ccfg = cl_cfg("juliet@localhost/balcony", PASSWORD);
    struct pair p;
    pair_init(&p, &scfg, &ccfg, byte_mode);
    login(&p, "SCRAM-SHA-256-PLUS", "juliet@localhost/balcony");
    /* RFC 9266: tls-exporter (base64 of "p=tls-export"). */
    assert_true(client_sent(&p, "mechanism='SCRAM-SHA-256-PLUS'>"
                                "cD10bHMtZXhwb3J0"));
    /* 5-2: no whitespace between our negotiation elements. */
    assert_true(client_sent(&p, "xml:lang='en'><starttls xmlns="));
    assert_true(client_sent(&p, "<bind xmlns='urn:ietf:params:xml:ns:"
                                "xmpp-bind'><resource>balcony</resource>"));
    assert_false(client_sent(&p, "xmpp-session"));

    /* Stanzas both ways. */
    xml_tree_t *t = xml_tree_new();
    xml_node_t *m = xml_element_new(t, NULL, XML_NS_CLIENT, "message");
    xml_element_set_attr(t, m, NULL, "to", "romeo@localhost");
    xml_element_add_text(t, xml_element_new(t, m, XML_NS_CLIENT, "body"), "hi",
                         2);
    assert_true(sclient_send(p.cl, m));
    pump(&p);
    assert_int_equal(p.srv_nstanzas, 1);
    assert_true(stream_send_element(p.srv, m));
    pump(&p);
    assert_int_equal(p.cl_nstanzas, 1);
    assert_string_equal(p.cl_stanzas[0]->root->name, "message");
    xml_tree_free(t);

    close_both(&p);
    pair_done(&p);
}

static void test_full_flow(void **state)
{
    (void)state;
    run_full_flow(false);
}

static void test_full_flow_bytewise(void **state)
{
    (void)state;
    run_full_flow(true);
}

static void test_header_exact(void **state)
{
    (void)state;
    sclient_config_t ccfg = cl_cfg("juliet@localhost/balcony", PASSWORD);
    struct pair p;
    pair_init(&p, NULL, &ccfg, false);
    assert_int_equal(sclient_state(p.cl), SCLIENT_CONNECTING);
    assert_null(sclient_jid(p.cl));
    assert_null(sclient_mechanism(p.cl));
    sclient_start(p.cl);
    assert_string_equal(
        p.client_out.data,
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' "
        "from='juliet@localhost' to='localhost' version='1.0' "
        "xml:lang='en'>");
    pair_done(&p);

    /* A JID without a localpart cannot log in. */
    ccfg = cl_cfg("localhost", PASSWORD);
    assert_null(sclient_new(&ccfg, &cl_hooks, NULL));
    ccfg = cl_cfg("a@b@c", PASSWORD);
    assert_null(sclient_new(&ccfg, &cl_hooks, NULL));
}

static void test_plus_tls_unique(void **state)
{
    (void)state;
    for (int bm = 0; bm < 2; bm++) {
        stream_config_t scfg = srv_cfg(ALL_MECHS, true);
        sclient_config_t ccfg = cl_cfg("juliet@localhost/r", PASSWORD);
        struct pair p;
        pair_init(&p, &scfg, &ccfg, bm);
        p.give_exporter = false;
        p.give_unique = true;
        login(&p, "SCRAM-SHA-256-PLUS", "juliet@localhost/r");
        /* The gs2 header names the binding: base64 of "p=tls-unique". */
        assert_true(client_sent(&p, "mechanism='SCRAM-SHA-256-PLUS'>"
                                    "cD10bHMtdW5pcXVl"));
        close_both(&p);
        pair_done(&p);
    }
}

static void test_mechanism_variants(void **state)
{
    (void)state;
    static const struct {
        unsigned mechs;
        const char *name;
    } v[] = {
        {1u << SASL_MECH_SCRAM_SHA1, "SCRAM-SHA-1"},
        {1u << SASL_MECH_SCRAM_SHA256, "SCRAM-SHA-256"},
        {1u << SASL_MECH_SCRAM_SHA1_PLUS | 1u << SASL_MECH_SCRAM_SHA1,
         "SCRAM-SHA-1-PLUS"},
        {1u << SASL_MECH_PLAIN, "PLAIN"},
        {1u << SASL_MECH_PLAIN | 1u << SASL_MECH_SCRAM_SHA1, "SCRAM-SHA-1"},
        {1u << SASL_MECH_DIGEST_MD5, "DIGEST-MD5"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        for (int bm = 0; bm < 2; bm++) {
            stream_config_t scfg = srv_cfg(v[i].mechs, true);
            sclient_config_t ccfg = cl_cfg("juliet@localhost/r", PASSWORD);
            struct pair p;
            pair_init(&p, &scfg, &ccfg, bm);
            login(&p, v[i].name, "juliet@localhost/r");
            close_both(&p);
            pair_done(&p);
        }
    }
}

static void test_wrong_password(void **state)
{
    (void)state;
    static const unsigned mechs[] = {ALL_MECHS, 1u << SASL_MECH_SCRAM_SHA1,
                                     1u << SASL_MECH_PLAIN};
    for (size_t i = 0; i < 3; i++) {
        for (int bm = 0; bm < 2; bm++) {
            stream_config_t scfg = srv_cfg(mechs[i], true);
            sclient_config_t ccfg = cl_cfg("juliet@localhost", "wrong");
            struct pair p;
            pair_init(&p, &scfg, &ccfg, bm);
            sclient_start(p.cl);
            pump(&p);
            assert_int_equal(p.failed, 1);
            assert_int_equal(p.err, SCLIENT_ERR_AUTH);
            assert_string_equal(p.cond, "not-authorized");
            assert_int_equal(p.ready, 0);
            /* We closed; the server answered; both ends are done. */
            assert_int_equal(p.cl_closed, 1);
            assert_int_equal(p.srv_closed, 1);
            assert_false(p.sent_after_close);
            assert_null(sclient_jid(p.cl));
            pair_done(&p);
        }
    }
}

static void test_bind_generated_and_conflict(void **state)
{
    (void)state;
    for (int bm = 0; bm < 2; bm++) {
        stream_config_t scfg = srv_cfg(ALL_MECHS, true);
        sclient_config_t ccfg = cl_cfg("juliet@localhost", PASSWORD);
        struct pair p;
        pair_init(&p, &scfg, &ccfg, bm);
        login(&p, "SCRAM-SHA-256-PLUS", "juliet@localhost/gen123");
        /* 7-2: an empty bind asks the server to choose. */
        assert_true(client_sent(&p, "<bind xmlns='urn:ietf:params:xml:ns:"
                                    "xmpp-bind'/></iq>"));
        close_both(&p);
        pair_done(&p);

        pair_init(&p, &scfg, &ccfg, bm);
        p.bind_condition = "conflict";
        sclient_start(p.cl);
        pump(&p);
        assert_int_equal(p.failed, 1);
        assert_int_equal(p.err, SCLIENT_ERR_BIND);
        assert_string_equal(p.cond, "conflict");
        assert_int_equal(p.ready, 0);
        assert_int_equal(p.cl_closed, 1);
        assert_false(p.sent_after_close);
        pair_done(&p);
    }
}

static void test_stream_error_mid_negotiation(void **state)
{
    (void)state;
    for (int bm = 0; bm < 2; bm++) {
        stream_config_t scfg = srv_cfg(1u << SASL_MECH_SCRAM_SHA1, true);
        sclient_config_t ccfg = cl_cfg("juliet@localhost", PASSWORD);
        struct pair p;
        pair_init(&p, &scfg, &ccfg, bm);
        p.error_in_lookup = "system-shutdown";
        sclient_start(p.cl);
        pump(&p);
        assert_int_equal(p.failed, 1);
        assert_int_equal(p.err, SCLIENT_ERR_STREAM);
        assert_string_equal(p.cond, "system-shutdown");
        assert_string_equal(p.text, "going down");
        assert_int_equal(p.cl_closed, 1);
        assert_int_equal(p.srv_closed, 1); /* our close tag answered it */
        assert_true(client_sent(&p, "</stream:stream>"));
        assert_false(p.sent_after_close);
        pair_done(&p);
    }
}

static void test_server_closes(void **state)
{
    (void)state;
    for (int bm = 0; bm < 2; bm++) {
        stream_config_t scfg = srv_cfg(ALL_MECHS, true);
        sclient_config_t ccfg = cl_cfg("juliet@localhost/x", PASSWORD);
        struct pair p;
        pair_init(&p, &scfg, &ccfg, bm);
        login(&p, "SCRAM-SHA-256-PLUS", "juliet@localhost/x");
        stream_close(p.srv);
        pump(&p);
        /* RFC 6120 §4.4: we answer with our close tag and close. */
        assert_int_equal(p.failed, 1);
        assert_int_equal(p.err, SCLIENT_ERR_CLOSED);
        assert_int_equal(p.cl_closed, 1);
        assert_int_equal(p.srv_closed, 1);
        assert_int_equal(sclient_state(p.cl), SCLIENT_CLOSED);
        xml_tree_t *t = xml_tree_new();
        xml_node_t *m = xml_element_new(t, NULL, XML_NS_CLIENT, "message");
        assert_false(sclient_send(p.cl, m));
        xml_tree_free(t);
        assert_false(p.sent_after_close);
        pair_done(&p);
    }
}

static void test_plain_only_without_tls(void **state)
{
    (void)state;
    stream_config_t scfg = srv_cfg(1u << SASL_MECH_PLAIN, false);
    sclient_config_t ccfg = cl_cfg("juliet@localhost", PASSWORD);
    ccfg.allow_plaintext = true;
    struct pair p;
    pair_init(&p, &scfg, &ccfg, false);
    sclient_start(p.cl);
    pump(&p);
    /* Our server withholds PLAIN without TLS: an empty list. */
    assert_int_equal(p.failed, 1);
    assert_int_equal(p.err, SCLIENT_ERR_NO_MECH);
    assert_int_equal(p.cl_closed, 1);
    assert_false(client_sent(&p, "<auth"));
    pair_done(&p);

    /* A scripted server that does offer PLAIN in plaintext. */
    pair_init(&p, NULL, &ccfg, false);
    sclient_start(p.cl);
    feed_client(&p, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                    "xmlns:stream='http://etherx.jabber.org/streams' "
                    "from='localhost' id='x' version='1.0'>"
                    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:"
                    "ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>"
                    "</stream:features>");
    assert_int_equal(p.failed, 1);
    assert_int_equal(p.err, SCLIENT_ERR_NO_MECH);
    assert_non_null(strstr(p.desc, "PLAIN"));
    assert_non_null(strstr(p.desc, "not encrypted"));
    assert_false(client_sent(&p, "<auth"));
    assert_int_equal(sclient_state(p.cl), SCLIENT_CLOSING);
    feed_client(&p, "</stream:stream>");
    assert_int_equal(p.cl_closed, 1);
    assert_int_equal(p.failed, 1);
    pair_done(&p);
}

/* ------------------------------------------------- scripted tests */

#define S_HDR                                                                  \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "               \
    "xmlns:stream='http://etherx.jabber.org/streams' from='localhost' "        \
    "id='s1' version='1.0'>"
#define F_TLS                                                                  \
    "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"      \
    "<required/></starttls><unknown xmlns='urn:example:x'/>"                   \
    "</stream:features>"
#define PROCEED "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
#define F_PLAIN                                                                \
    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"   \
    "<mechanism>PLAIN</mechanism><mechanism>X-UNKNOWN</mechanism>"             \
    "</mechanisms><ver xmlns='urn:xmpp:features:rosterver'/>"                  \
    "</stream:features>"
#define SUCCESS "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
#define F_BIND_SESSION                                                         \
    "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"        \
    "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>"                   \
    "</stream:features>"
#define BIND_RESULT                                                            \
    "<iq type='result' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:"       \
    "xmpp-bind'><jid>juliet@localhost/abc</jid></bind></iq>"

static void scripted_init(struct pair *p, bool bm)
{
    sclient_config_t ccfg = cl_cfg("juliet@localhost", PASSWORD);
    pair_init(p, NULL, &ccfg, bm);
    sclient_start(p->cl);
}

/* The owner cannot queue bytes (out of memory, send_checked fails): the
 * client stream reports it and closes instead of going on without them. */
static int cl_send_ok;
static int c_send_checked(void *ud, const char *d, size_t n)
{
    if (cl_send_ok-- <= 0)
        return -1;
    c_send(ud, d, n);
    return 0;
}

static void test_send_failure_closes(void **state)
{
    (void)state;
    sclient_hooks_t h = cl_hooks;
    h.send_checked = c_send_checked;
    sclient_config_t ccfg = cl_cfg("juliet@localhost", PASSWORD);
    struct pair p;
    pair_init(&p, NULL, &ccfg, false);
    sclient_free(p.cl);
    p.cl = sclient_new(&ccfg, &h, &p);
    assert_non_null(p.cl);
    cl_send_ok = 1; /* the header goes out, <starttls/> does not */
    sclient_start(p.cl);
    assert_true(client_sent(&p, "<stream:stream"));
    feed_client(&p, S_HDR F_TLS);
    assert_false(client_sent(&p, "<starttls"));
    assert_int_equal(p.failed, 1);
    assert_string_equal(p.cond, "resource-constraint");
    assert_int_equal(p.cl_closed, 1);
    assert_int_equal(sclient_state(p.cl), SCLIENT_CLOSED);
    pair_done(&p);
}

static void test_no_starttls(void **state)
{
    (void)state;
    for (int bm = 0; bm < 2; bm++) {
        struct pair p;
        scripted_init(&p, bm);
        feed_client(&p, S_HDR F_PLAIN);
        assert_int_equal(p.failed, 1);
        assert_int_equal(p.err, SCLIENT_ERR_NO_TLS);
        assert_string_equal(p.desc, "the server does not offer TLS");
        assert_false(client_sent(&p, "<auth"));
        assert_true(client_sent(&p, "</stream:stream>"));
        feed_client(&p, "</stream:stream>");
        assert_int_equal(p.cl_closed, 1);
        assert_false(p.sent_after_close);
        pair_done(&p);
    }
}

static void test_starttls_failure(void **state)
{
    (void)state;
    for (int bm = 0; bm < 2; bm++) {
        struct pair p;
        scripted_init(&p, bm);
        feed_client(&p, S_HDR F_TLS);
        assert_true(client_sent(&p, "xml:lang='en'><starttls xmlns='urn:ietf:"
                                    "params:xml:ns:xmpp-tls'/>"));
        feed_client(&p, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
                        "</stream:stream>");
        assert_int_equal(p.failed, 1);
        assert_int_equal(p.err, SCLIENT_ERR_TLS);
        assert_int_equal(p.cl_closed, 1);
        assert_int_equal(p.cl_tls_started, 0);
        assert_false(p.sent_after_close);
        pair_done(&p);
    }
}

static void test_tls_handshake_fails(void **state)
{
    (void)state;
    struct pair p;
    scripted_init(&p, false);
    p.tls_fails = true;
    feed_client(&p, S_HDR F_TLS PROCEED);
    assert_int_equal(p.cl_tls_started, 1);
    assert_int_equal(p.failed, 1);
    assert_int_equal(p.err, SCLIENT_ERR_TLS);
    assert_int_equal(p.cl_closed, 1);
    /* No XML after a failed handshake. */
    assert_false(client_sent(&p, "</stream:stream>"));
    pair_done(&p);
}

/* The whole scripted PLAIN flow with a required session. */
static void test_scripted_plain_session(void **state)
{
    (void)state;
    for (int bm = 0; bm < 2; bm++) {
        struct pair p;
        scripted_init(&p, bm);
        /* Bytes after <proceed/> in the same read are plaintext sent
         * before TLS: they must be discarded, not parsed as the new
         * stream (this would otherwise be a features element with
         * mechanisms, or break the next header). */
        feed_client(&p, S_HDR F_TLS);
        /* One byte at a time there is no "same read" to discard. */
        feed_client(&p, bm ? PROCEED : PROCEED F_PLAIN "<junk");
        assert_int_equal(p.cl_tls_started, 1);
        assert_int_equal(p.failed, 0);
        assert_false(client_sent(&p, "<auth"));
        assert_int_equal(sclient_state(p.cl), SCLIENT_NEGOTIATING);
        /* 4-4: a new header over TLS. */
        const char *second = strstr(
            strstr(p.client_out.data, "<stream:stream") + 1, "<stream:stream");
        assert_non_null(second);
        feed_client(&p, S_HDR F_PLAIN);
        /* \0juliet\0r0m30 */
        assert_true(client_sent(&p, "<auth xmlns='urn:ietf:params:xml:ns:"
                                    "xmpp-sasl' mechanism='PLAIN'>"
                                    "AGp1bGlldAByMG0zMA==</auth>"));
        feed_client(&p, bm ? SUCCESS : SUCCESS "<bogus-after-success/>");
        assert_int_equal(p.failed, 0);
        assert_string_equal(sclient_mechanism(p.cl), "PLAIN");
        feed_client(&p, S_HDR F_BIND_SESSION);
        assert_true(client_sent(&p, "<iq type='set' id='bind_1'><bind "
                                    "xmlns='urn:ietf:params:xml:ns:xmpp-"
                                    "bind'/></iq>"));
        /* A stanza before the bind result is not delivered. */
        feed_client(&p, "<message from='x@y'/>" BIND_RESULT);
        assert_int_equal(p.ready, 0);
        assert_true(client_sent(&p, "<iq type='set' id='sess_1'><session "
                                    "xmlns='urn:ietf:params:xml:ns:xmpp-"
                                    "session'/></iq>"));
        feed_client(&p, "<iq type='result' id='sess_1'/>"
                        "<message from='romeo@localhost'><body>x</body>"
                        "</message><r xmlns='urn:xmpp:sm:3'/>");
        assert_int_equal(p.ready, 1);
        assert_string_equal(p.ready_jid, "juliet@localhost/abc");
        assert_int_equal(p.cl_nstanzas, 1);
        assert_int_equal(p.failed, 0);
        /* Whitespace keepalives are fine. */
        feed_client(&p, "  \n ");
        assert_int_equal(sclient_state(p.cl), SCLIENT_READY);
        sclient_close(p.cl);
        size_t len = p.client_out.len;
        sclient_close(p.cl);
        assert_int_equal(p.client_out.len, len);
        feed_client(&p, "<message/></stream:stream>");
        assert_int_equal(p.cl_nstanzas, 1);
        assert_int_equal(p.cl_closed, 1);
        assert_int_equal(p.failed, 0);
        assert_false(p.sent_after_close);
        pair_done(&p);
    }
}

static void test_optional_session_skipped(void **state)
{
    (void)state;
    struct pair p;
    scripted_init(&p, false);
    feed_client(&p, S_HDR F_TLS PROCEED);
    feed_client(&p, S_HDR F_PLAIN);
    feed_client(&p, SUCCESS);
    feed_client(&p, S_HDR "<stream:features><bind xmlns='urn:ietf:params:xml:"
                          "ns:xmpp-bind'/><session xmlns='urn:ietf:params:"
                          "xml:ns:xmpp-session'><optional/></session>"
                          "</stream:features>" BIND_RESULT);
    assert_int_equal(p.ready, 1);
    assert_false(client_sent(&p, "xmpp-session"));
    sclient_abort(p.cl);
    assert_int_equal(p.cl_closed, 1);
    sclient_abort(p.cl);
    assert_int_equal(p.cl_closed, 1);
    pair_done(&p);
}

static void expect_our_stream_error(const char *server, const char *cond)
{
    for (int bm = 0; bm < 2; bm++) {
        struct pair p;
        scripted_init(&p, bm);
        feed_client(&p, server);
        char want[160];
        snprintf(want, sizeof(want),
                 "<stream:error><%s xmlns='urn:ietf:params:xml:ns:xmpp-"
                 "streams'/></stream:error></stream:stream>",
                 cond);
        if (!client_sent(&p, want))
            fail_msg("expected %s, sent %s", cond, p.client_out.data);
        assert_int_equal(p.failed, 1);
        assert_int_equal(p.err, SCLIENT_ERR_PROTOCOL);
        feed_client(&p, "</stream:stream>");
        assert_int_equal(p.cl_closed, 1);
        assert_false(p.sent_after_close);
        pair_done(&p);
    }
}

static void test_bad_server_streams(void **state)
{
    (void)state;
    expect_our_stream_error("<stream:stream xmlns='jabber:client' "
                            "xmlns:stream='http://etherx.jabber.org/streams' "
                            "from='localhost' id='a' version='2.0'>",
                            "unsupported-version");
    expect_our_stream_error("<stream:stream xmlns='jabber:client' "
                            "xmlns:stream='http://etherx.jabber.org/streams' "
                            "from='localhost' id='a'>",
                            "unsupported-version");
    expect_our_stream_error(S_HDR "<stream:features><a></b>",
                            "not-well-formed");
    expect_our_stream_error(S_HDR "<!-- x -->", "restricted-xml");
    expect_our_stream_error("<stream:stream xmlns='jabber:server' "
                            "xmlns:stream='http://etherx.jabber.org/streams' "
                            "version='1.0'>",
                            "invalid-namespace");
    expect_our_stream_error(S_HDR "<message/>", "unsupported-stanza-type");
}

static void test_server_stream_error_scripted(void **state)
{
    (void)state;
    for (int bm = 0; bm < 2; bm++) {
        struct pair p;
        scripted_init(&p, bm);
        feed_client(&p, S_HDR "<stream:error><see-other-host xmlns='urn:ietf:"
                              "params:xml:ns:xmpp-streams'>other.example"
                              "</see-other-host><text xmlns='urn:ietf:params:"
                              "xml:ns:xmpp-streams'>moved</text>"
                              "</stream:error></stream:stream>");
        assert_int_equal(p.failed, 1);
        assert_int_equal(p.err, SCLIENT_ERR_STREAM);
        assert_string_equal(p.cond, "see-other-host");
        assert_string_equal(p.text, "moved");
        assert_int_equal(p.cl_closed, 1);
        assert_true(client_sent(&p, "</stream:stream>"));
        assert_false(p.sent_after_close);
        pair_done(&p);
    }
}

static void test_sasl_failure_scripted(void **state)
{
    (void)state;
    struct pair p;
    scripted_init(&p, false);
    feed_client(&p, S_HDR F_TLS PROCEED);
    feed_client(&p, S_HDR F_PLAIN);
    feed_client(&p, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                    "<account-disabled/><text>call us</text></failure>");
    assert_int_equal(p.failed, 1);
    assert_int_equal(p.err, SCLIENT_ERR_AUTH);
    assert_string_equal(p.cond, "account-disabled");
    assert_string_equal(p.text, "call us");
    assert_int_equal(sclient_state(p.cl), SCLIENT_CLOSING);
    feed_client(&p, "</stream:stream>");
    assert_int_equal(p.cl_closed, 1);
    pair_done(&p);

    /* Invalid base64 in a challenge. */
    scripted_init(&p, false);
    feed_client(&p, S_HDR F_TLS PROCEED);
    feed_client(&p, S_HDR F_PLAIN);
    feed_client(&p, "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                    "a b</challenge>");
    assert_int_equal(p.failed, 1);
    assert_int_equal(sclient_state(p.cl), SCLIENT_CLOSING);
    sclient_abort(p.cl);
    assert_int_equal(p.cl_closed, 1);
    pair_done(&p);
}

static void test_close_early(void **state)
{
    (void)state;
    struct pair p;
    sclient_config_t ccfg = cl_cfg("juliet@localhost", PASSWORD);
    pair_init(&p, NULL, &ccfg, false);
    /* Before the start there is no stream to close. */
    sclient_close(p.cl);
    assert_int_equal(p.cl_closed, 1);
    assert_int_equal(p.client_out.len, 0);
    pair_done(&p);

    /* During the handshake neither. */
    scripted_init(&p, false);
    feed_client(&p, S_HDR F_TLS);
    sclient_close(p.cl);
    assert_int_equal(sclient_state(p.cl), SCLIENT_CLOSING);
    feed_client(&p, PROCEED "</stream:stream>");
    assert_int_equal(p.cl_tls_started, 0);
    assert_int_equal(p.cl_closed, 1);
    assert_int_equal(p.failed, 0);
    pair_done(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_exact),
        cmocka_unit_test(test_full_flow),
        cmocka_unit_test(test_full_flow_bytewise),
        cmocka_unit_test(test_plus_tls_unique),
        cmocka_unit_test(test_mechanism_variants),
        cmocka_unit_test(test_wrong_password),
        cmocka_unit_test(test_bind_generated_and_conflict),
        cmocka_unit_test(test_stream_error_mid_negotiation),
        cmocka_unit_test(test_server_closes),
        cmocka_unit_test(test_plain_only_without_tls),
        cmocka_unit_test(test_no_starttls),
        cmocka_unit_test(test_starttls_failure),
        cmocka_unit_test(test_tls_handshake_fails),
        cmocka_unit_test(test_scripted_plain_session),
        cmocka_unit_test(test_optional_session_skipped),
        cmocka_unit_test(test_bad_server_streams),
        cmocka_unit_test(test_server_stream_error_scripted),
        cmocka_unit_test(test_sasl_failure_scripted),
        cmocka_unit_test(test_close_early),
        cmocka_unit_test(test_send_failure_closes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
