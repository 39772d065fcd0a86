/* The c2s stream state machine fed from memory, without sockets: a fake
 * owner implements the hooks, records what the stream sends, and answers
 * asynchronous requests either at once or later. SCRAM exchanges are driven
 * by GNU SASL's client, so the server side meets software we did not write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <gsasl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "sasl/scram.h"
#include "stream/stanza.h"
#include "stream/stream.h"

#define HDR                                                                    \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "               \
    "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' "          \
    "version='1.0'>"

struct owner {
    stream_t *s;
    buf_t out;
    int tls_started;
    int closed;
    int lookups;
    bool async;        /* answer lookups later, not inside the hook */
    bool have_account; /* the looked-up account exists */
    scram_cred_t sha1, sha256;
    char last_resource[64];
    int binds;
    const char *bind_condition; /* answer binds with this failure */
    xml_tree_t *stanzas[8];
    int nstanzas;
    int auth_failures;
    unsigned failure_delay; /* what auth_failed answers */
};

static const char *hosts[] = {"localhost", "example.org"};
static unsigned char secret[32] = {1, 2, 3};

static void o_send(void *ud, const char *d, size_t n)
{
    struct owner *o = ud;
    buf_append(&o->out, d, n);
}

static void o_start_tls(void *ud)
{
    ((struct owner *)ud)->tls_started++;
}

static void o_close(void *ud)
{
    ((struct owner *)ud)->closed++;
}

static void o_lookup(void *ud, const char *domain, const char *node)
{
    struct owner *o = ud;
    o->lookups++;
    assert_string_equal(domain, "localhost");
    if (o->async)
        return;
    bool found = o->have_account && strcmp(node, "juliet") == 0;
    stream_sasl_account(o->s, found, &o->sha1, &o->sha256, NULL);
}

static void o_check_password(void *ud, sasl_server_t *sess)
{
    struct owner *o = ud;
    stream_sasl_password_checked(o->s, sasl_server_check_password(sess));
}

static unsigned o_auth_failed(void *ud)
{
    struct owner *o = ud;
    o->auth_failures++;
    return o->failure_delay;
}

static void o_bind(void *ud, const jid_t *user, const char *resource)
{
    struct owner *o = ud;
    o->binds++;
    assert_string_equal(user->node, "juliet");
    if (o->bind_condition != NULL) {
        stream_bind_done(o->s, NULL, o->bind_condition);
        return;
    }
    snprintf(o->last_resource, sizeof(o->last_resource), "%s",
             resource != NULL ? resource : "generated123");
    stream_bind_done(o->s, o->last_resource, NULL);
}

static void o_stanza(void *ud, xml_tree_t *t)
{
    struct owner *o = ud;
    assert_true(o->nstanzas < 8);
    o->stanzas[o->nstanzas++] = t;
}

static const stream_hooks_t hooks = {
    .send = o_send,
    .start_tls = o_start_tls,
    .close = o_close,
    .lookup_account = o_lookup,
    .check_password = o_check_password,
    .auth_failed = o_auth_failed,
    .bind = o_bind,
    .stanza = o_stanza,
};

static stream_config_t make_cfg(bool tls_available, bool tls_required)
{
    stream_config_t c;
    memset(&c, 0, sizeof(c));
    c.hosts = hosts;
    c.host_count = 2;
    c.tls_available = tls_available;
    c.tls_required = tls_required;
    c.mechs = 1u << SASL_MECH_SCRAM_SHA256_PLUS | 1u << SASL_MECH_SCRAM_SHA256 |
              1u << SASL_MECH_SCRAM_SHA1_PLUS | 1u << SASL_MECH_SCRAM_SHA1 |
              1u << SASL_MECH_PLAIN;
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

static void owner_init(struct owner *o, const stream_config_t *cfg)
{
    memset(o, 0, sizeof(*o));
    o->have_account = true;
    assert_int_equal(scram_make(SCRAM_SHA1, "r0m30", 4096, &o->sha1), 0);
    assert_int_equal(scram_make(SCRAM_SHA256, "r0m30", 4096, &o->sha256), 0);
    o->s = stream_new_c2s(cfg, &hooks, o);
    assert_non_null(o->s);
}

static void owner_done(struct owner *o)
{
    stream_free(o->s);
    buf_free(&o->out);
    for (int i = 0; i < o->nstanzas; i++)
        xml_tree_free(o->stanzas[i]);
}

static void feed(struct owner *o, const char *s)
{
    stream_feed(o->s, s, strlen(s));
}

static bool sent(const struct owner *o, const char *needle)
{
    return o->out.data != NULL && strstr(o->out.data, needle) != NULL;
}

static void clear(struct owner *o)
{
    buf_reset(&o->out);
}

/* A fake TLS handshake: the stream only needs to be told. */
static const unsigned char fake_exporter[32] = {
    9, 8, 7, 6,  5,  4,  3,  2,  1,  0,  1,  2,  3,  4,  5,  6,
    7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22};

static void do_starttls(struct owner *o)
{
    feed(o, HDR);
    feed(o, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert_true(sent(o, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"));
    assert_int_equal(o->tls_started, 1);
    stream_tls_info_t info = {.cb_exporter = fake_exporter,
                              .cb_exporter_len = sizeof(fake_exporter)};
    stream_tls_done(o->s, true, &info);
    clear(o);
    feed(o, HDR);
}

/* Extracts and decodes the base64 text of the first <tag ...>...</tag>. */
static char *sasl_payload(const struct owner *o, const char *tag)
{
    char open[64];
    snprintf(open, sizeof(open),
             "<%s xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>", tag);
    const char *p = strstr(o->out.data, open);
    if (p == NULL)
        return NULL;
    p += strlen(open);
    const char *e = strchr(p, '<');
    size_t n = (size_t)(e - p);
    char *dec = calloc(1, n + 1);
    long r = base64_decode(p, n, dec, n + 1);
    assert_true(r >= 0);
    return dec;
}

static void send_sasl(struct owner *o, const char *tag, const char *mech,
                      const char *data, size_t len)
{
    size_t cap = base64_encoded_size(len);
    char *enc = malloc(cap);
    base64_encode(data, len, BASE64_STD, enc, cap);
    char *msg = malloc(cap + 200);
    if (mech != NULL)
        sprintf(msg,
                "<%s xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                "mechanism='%s'>%s</%s>",
                tag, mech, len > 0 ? enc : "=", tag);
    else
        sprintf(msg, "<%s xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</%s>",
                tag, enc, tag);
    feed(o, msg);
    free(enc);
    free(msg);
}

/* Runs a SCRAM exchange with GNU SASL's client. Returns true on success. */
static bool scram_login(struct owner *o, const char *mech, const char *user,
                        const char *password)
{
    Gsasl *ctx;
    Gsasl_session *cs;
    assert_int_equal(gsasl_init(&ctx), GSASL_OK);
    assert_int_equal(gsasl_client_start(ctx, mech, &cs), GSASL_OK);
    gsasl_property_set(cs, GSASL_AUTHID, user);
    gsasl_property_set(cs, GSASL_PASSWORD, password);
    char b64cb[64];
    base64_encode(fake_exporter, sizeof(fake_exporter), BASE64_STD, b64cb,
                  sizeof(b64cb));
    /* GNU SASL's client refuses a non-PLUS mechanism when it holds
     * channel binding data, so it gets the data only for -PLUS. */
    if (strstr(mech, "-PLUS") != NULL)
        gsasl_property_set(cs, GSASL_CB_TLS_EXPORTER, b64cb);
    char *out;
    size_t outlen;
    int rc = gsasl_step(cs, NULL, 0, &out, &outlen);
    assert_int_equal(rc, GSASL_NEEDS_MORE);
    clear(o);
    send_sasl(o, "auth", mech, out, outlen);
    gsasl_free(out);
    bool ok = false;
    for (int round = 0; round < 4; round++) {
        char *ch = sasl_payload(o, "challenge");
        char *succ = sasl_payload(o, "success");
        if (succ != NULL) {
            rc = gsasl_step(cs, succ, strlen(succ), &out, &outlen);
            gsasl_free(out);
            ok = rc == GSASL_OK;
            free(succ);
            free(ch);
            break;
        }
        if (ch == NULL)
            break;
        rc = gsasl_step(cs, ch, strlen(ch), &out, &outlen);
        free(ch);
        if (rc != GSASL_NEEDS_MORE && rc != GSASL_OK)
            break;
        clear(o);
        send_sasl(o, "response", NULL, out, outlen);
        gsasl_free(out);
    }
    gsasl_finish(cs);
    gsasl_done(ctx);
    return ok;
}

/* ------------------------------------------------------------- tests */

static void test_header_and_features(void **state)
{
    (void)state;
    stream_config_t cfg = make_cfg(true, true);
    struct owner o;
    owner_init(&o, &cfg);
    feed(&o, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
             "xmlns:stream='http://etherx.jabber.org/streams' to='LocalHost' "
             "from='juliet@localhost' version='1.0' xml:lang='fr'>");
    /* RFC 6120 §4.7: from = served domain, to = client, id, version. */
    assert_true(sent(&o, "from='localhost'"));
    assert_true(sent(&o, "to='juliet@localhost'"));
    assert_true(sent(&o, "version='1.0'"));
    assert_true(sent(&o, "xml:lang='fr'"));
    assert_true(sent(&o, "xmlns='jabber:client'"));
    assert_true(strlen(stream_id(o.s)) >= 22);
    /* Only STARTTLS, marked required, before TLS (RFC 6120 §5.3.1). */
    assert_true(sent(&o, "<stream:features><starttls xmlns='urn:ietf:params:"
                         "xml:ns:xmpp-tls'><required/></starttls>"
                         "</stream:features>"));
    assert_false(sent(&o, "mechanisms"));
    owner_done(&o);
}

static void test_stream_ids_unique(void **state)
{
    (void)state;
    stream_config_t cfg = make_cfg(true, true);
    struct owner a, b;
    owner_init(&a, &cfg);
    owner_init(&b, &cfg);
    feed(&a, HDR);
    feed(&b, HDR);
    assert_string_not_equal(stream_id(a.s), stream_id(b.s));
    owner_done(&a);
    owner_done(&b);
}

static void expect_stream_error(const char *input, const char *condition)
{
    stream_config_t cfg = make_cfg(true, false);
    struct owner o;
    owner_init(&o, &cfg);
    feed(&o, input);
    char want[128];
    snprintf(want, sizeof(want),
             "<stream:error><%s xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>",
             condition);
    if (!sent(&o, want))
        fail_msg("input %s: expected %s, sent: %s", input, condition,
                 o.out.data ? o.out.data : "(nothing)");
    assert_true(sent(&o, "</stream:stream>"));
    assert_string_equal(stream_error_sent(o.s), condition);
    /* A header always precedes the error (RFC 6120 §4.9.1.1). */
    assert_non_null(strstr(o.out.data, "<stream:stream"));
    assert_true(strstr(o.out.data, "<stream:stream") <
                strstr(o.out.data, "<stream:error>"));
    /* The client's close tag ends it. */
    feed(&o, "</stream:stream>");
    assert_int_equal(o.closed, 1);
    owner_done(&o);
}

static void test_stream_errors(void **state)
{
    (void)state;
    expect_stream_error("<stream:stream xmlns='jabber:client' xmlns:stream="
                        "'http://etherx.jabber.org/streams' to='localhost'>",
                        "unsupported-version");
    expect_stream_error("<stream:stream xmlns='jabber:client' xmlns:stream="
                        "'http://etherx.jabber.org/streams' to='localhost' "
                        "version='2.0'>",
                        "unsupported-version");
    expect_stream_error(
        "<stream:stream xmlns='jabber:client' xmlns:stream="
        "'http://etherx.jabber.org/streams' to='nowhere.example' "
        "version='1.0'>",
        "host-unknown");
    expect_stream_error("<stream:stream xmlns='jabber:client' xmlns:stream="
                        "'http://etherx.jabber.org/streams' to='localhost' "
                        "from='a@b@c' version='1.0'>",
                        "invalid-from");
    expect_stream_error("<stream:stream xmlns='jabber:server' xmlns:stream="
                        "'http://etherx.jabber.org/streams' to='localhost' "
                        "version='1.0'>",
                        "invalid-namespace");
    expect_stream_error("<stream xmlns='http://etherx.jabber.org/streams'>",
                        "bad-namespace-prefix");
    expect_stream_error("<stream:foo xmlns:stream='http://etherx.jabber.org/"
                        "streams' xmlns='jabber:client'>",
                        "bad-format");
    expect_stream_error(HDR "<!-- hi -->", "restricted-xml");
    expect_stream_error(HDR "<a></b>", "not-well-formed");
    expect_stream_error("<?xml version='1.0' encoding='ISO-8859-1'?>",
                        "unsupported-encoding");
    expect_stream_error(HDR "<message><body>hi</body></message>",
                        "not-authorized");
    expect_stream_error(HDR "<foo xmlns='urn:example'/>",
                        "unsupported-stanza-type");
    /* Larger than the pre-authentication limit of 4096 bytes. */
    char big[6000];
    snprintf(big, sizeof(big), "%s<message><body>", HDR);
    memset(big + strlen(big), 'x', 5000);
    big[sizeof(big) - 1] = '\0';
    expect_stream_error(big, "policy-violation");
}

static void test_starttls_discards_trailing_bytes(void **state)
{
    (void)state;
    stream_config_t cfg = make_cfg(true, true);
    struct owner o;
    owner_init(&o, &cfg);
    feed(&o, HDR);
    /* Bytes after <starttls/> in the same read must never be parsed. */
    feed(&o, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
             "<message to='x@localhost'/>");
    assert_int_equal(o.tls_started, 1);
    assert_int_equal(stream_state(o.s), STREAM_TLS);
    stream_tls_done(o.s, true, NULL);
    clear(&o);
    feed(&o, HDR);
    assert_true(sent(&o, "<mechanisms"));
    assert_true(sent(&o, "<mechanism>PLAIN</mechanism>"));
    assert_null(stream_error_sent(o.s));
    owner_done(&o);
}

static void test_auth_before_tls(void **state)
{
    (void)state;
    stream_config_t cfg = make_cfg(true, true);
    struct owner o;
    owner_init(&o, &cfg);
    feed(&o, HDR "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                 "mechanism='SCRAM-SHA-1'>=</auth>");
    assert_true(sent(&o, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                         "<encryption-required/></failure>"));
    owner_done(&o);
}

static void test_plain_withheld_without_tls(void **state)
{
    (void)state;
    stream_config_t cfg = make_cfg(false, false);
    struct owner o;
    owner_init(&o, &cfg);
    feed(&o, HDR);
    assert_true(sent(&o, "<mechanism>SCRAM-SHA-256</mechanism>"));
    assert_false(sent(&o, "PLAIN"));
    assert_false(sent(&o, "-PLUS"));
    send_sasl(&o, "auth", "PLAIN", "\0juliet\0r0m30", 13);
    assert_true(sent(&o, "<encryption-required/>"));
    owner_done(&o);
}

static void test_scram_plus_login_bind_and_stamp(void **state)
{
    (void)state;
    stream_config_t cfg = make_cfg(true, true);
    struct owner o;
    owner_init(&o, &cfg);
    do_starttls(&o);
    assert_true(sent(&o, "<mechanism>SCRAM-SHA-256-PLUS</mechanism>"));
    /* XEP-0440 advertises the channel binding types. */
    assert_true(sent(&o, "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>"
                         "<channel-binding type='tls-exporter'/>"));
    assert_true(scram_login(&o, "SCRAM-SHA-256-PLUS", "juliet", "r0m30"));
    assert_true(stream_is_authenticated(o.s));
    clear(&o);
    feed(&o, HDR);
    assert_true(sent(&o, "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"));
    feed(&o, "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:"
             "xmpp-bind'><resource>balcony</resource></bind></iq>");
    assert_true(sent(&o, "<iq type='result' id='b1'><bind xmlns='urn:ietf:"
                         "params:xml:ns:xmpp-bind'><jid>juliet@localhost/"
                         "balcony</jid></bind></iq>"));
    assert_true(stream_is_bound(o.s));
    /* RFC 6120 §8.1.2.1: 'from' is stamped when absent. */
    feed(&o, "<message to='romeo@localhost'><body>hi</body></message>");
    assert_int_equal(o.nstanzas, 1);
    assert_string_equal(xml_element_attr(o.stanzas[0]->root, NULL, "from"),
                        "juliet@localhost/balcony");
    /* The bare JID is accepted as 'from'. */
    feed(&o, "<message from='Juliet@LOCALHOST' to='romeo@localhost'/>");
    assert_int_equal(o.nstanzas, 2);
    assert_string_equal(xml_element_attr(o.stanzas[1]->root, NULL, "from"),
                        "juliet@localhost");
    /* A spoofed 'from' ends the stream with invalid-from. */
    feed(&o, "<message from='romeo@localhost/x' to='juliet@localhost'/>");
    assert_string_equal(stream_error_sent(o.s), "invalid-from");
    owner_done(&o);
}

static void test_scram_variants(void **state)
{
    (void)state;
    const char *mechs[] = {"SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS",
                           "SCRAM-SHA-256-PLUS"};
    for (size_t i = 0; i < 4; i++) {
        stream_config_t cfg = make_cfg(true, true);
        struct owner o;
        owner_init(&o, &cfg);
        do_starttls(&o);
        if (!scram_login(&o, mechs[i], "juliet", "r0m30"))
            fail_msg("%s failed: %s", mechs[i], o.out.data);
        owner_done(&o);
    }
}

static void test_scram_failures(void **state)
{
    (void)state;
    stream_config_t cfg = make_cfg(true, true);
    struct owner o;
    owner_init(&o, &cfg);
    do_starttls(&o);
    /* Wrong password, then an unknown user: both not-authorized. */
    assert_false(scram_login(&o, "SCRAM-SHA-256", "juliet", "wrong"));
    assert_true(sent(&o, "<not-authorized/>"));
    o.have_account = false;
    assert_false(scram_login(&o, "SCRAM-SHA-256", "nobody", "x"));
    assert_true(sent(&o, "<not-authorized/>"));
    assert_int_equal(o.auth_failures, 2);
    /* RFC 6120 §6.4.5: after the third failure, a stream error. */
    assert_false(scram_login(&o, "SCRAM-SHA-256", "nobody", "x"));
    assert_string_equal(stream_error_sent(o.s), "policy-violation");
    owner_done(&o);
}

static void test_failure_held_back(void **state)
{
    (void)state;
    stream_config_t cfg = make_cfg(true, true);
    cfg.max_auth_failures = 5;
    struct owner o;
    owner_init(&o, &cfg);
    o.failure_delay = 500;
    do_starttls(&o);
    clear(&o);
    /* Two guesses in one packet: the first answer is held back, and the
     * second guess is not even looked at until the delay has passed. */
    feed(&o, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
             "AGp1bGlldAB3cm9uZw==</auth>"
             "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
             "AGp1bGlldAB3cm9uZw==</auth>");
    assert_int_equal(o.auth_failures, 1);
    assert_false(sent(&o, "failure"));
    stream_auth_delay_done(o.s);
    assert_true(sent(&o, "<not-authorized/>"));
    assert_int_equal(o.auth_failures, 2);
    clear(&o);
    stream_auth_delay_done(o.s);
    assert_true(sent(&o, "<not-authorized/>"));
    owner_done(&o);
}

static void test_sasl_conditions(void **state)
{
    (void)state;
    stream_config_t cfg = make_cfg(true, true);
    cfg.max_auth_failures = 5;
    struct owner o;
    owner_init(&o, &cfg);
    do_starttls(&o);
    clear(&o);
    feed(&o, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
             "mechanism='X-NOPE'>=</auth>");
    assert_true(sent(&o, "<invalid-mechanism/>"));
    clear(&o);
    feed(&o, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
             "mechanism='SCRAM-SHA-1'>!!!notbase64</auth>");
    assert_true(sent(&o, "<incorrect-encoding/>"));
    clear(&o);
    feed(&o,
         "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>AAAA</response>");
    assert_true(sent(&o, "<malformed-request/>"));
    clear(&o);
    feed(&o, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
             "mechanism='SCRAM-SHA-1'/>");
    /* No initial response: an empty challenge asks for it. */
    assert_true(
        sent(&o, "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"));
    feed(&o, "<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    assert_true(sent(&o, "<aborted/>"));
    assert_null(stream_error_sent(o.s));
    owner_done(&o);
}

static void test_plain_and_async_lookup(void **state)
{
    (void)state;
    stream_config_t cfg = make_cfg(true, true);
    struct owner o;
    owner_init(&o, &cfg);
    o.async = true;
    do_starttls(&o);
    clear(&o);
    send_sasl(&o, "auth", "PLAIN", "\0juliet\0r0m30", 13);
    assert_int_equal(o.lookups, 1);
    assert_false(sent(&o, "success"));
    /* Elements that arrive while the lookup runs wait their turn. */
    feed(&o, "<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    assert_false(sent(&o, "aborted"));
    stream_sasl_account(o.s, true, &o.sha1, &o.sha256, NULL);
    assert_true(
        sent(&o, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"));
    /* The queued abort belonged to the old stream and is gone. */
    assert_false(sent(&o, "aborted"));
    assert_true(stream_is_authenticated(o.s));
    owner_done(&o);
}

static void test_bind_variants(void **state)
{
    (void)state;
    stream_config_t cfg = make_cfg(true, true);
    struct owner o;
    owner_init(&o, &cfg);
    do_starttls(&o);
    assert_true(scram_login(&o, "SCRAM-SHA-1", "juliet", "r0m30"));
    clear(&o);
    feed(&o, HDR);
    /* Stanzas before binding are refused... but first a failed bind. */
    o.bind_condition = "conflict";
    feed(&o, "<iq type='set' id='b0'><bind xmlns='urn:ietf:params:xml:ns:"
             "xmpp-bind'><resource>r</resource></bind></iq>");
    /* stanza_error_reply(): the request's child kept (RFC 6120 §8.3.1),
     * then the error. */
    assert_true(sent(&o, "<iq type='error' id='b0'><bind xmlns='urn:ietf:"
                         "params:xml:ns:xmpp-bind'><resource>r</resource>"
                         "</bind><error type='cancel'><conflict xmlns='urn:"
                         "ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"));
    o.bind_condition = NULL;
    /* A resource that Resourceprep refuses (U+0007). */
    clear(&o);
    feed(&o,
         "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:"
         "xmpp-bind'><resource>a&#x2028;\xE2\x80\x8E</resource></bind></iq>");
    assert_true(sent(&o, "<bad-request") || sent(&o, "<jid>"));
    /* Server-generated resource. */
    clear(&o);
    feed(&o, "<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:"
             "xmpp-bind'/></iq>");
    if (!stream_is_bound(o.s))
        fail_msg("not bound: %s", o.out.data);
    assert_true(sent(&o, "<jid>juliet@localhost/generated123</jid>"));
    /* Legacy session establishment is answered. */
    clear(&o);
    feed(&o, "<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:"
             "xmpp-session'/></iq>");
    assert_true(sent(&o, "<iq type='result' id='s1'/>"));
    /* A second resource on the same stream is refused. */
    clear(&o);
    feed(&o, "<iq type='set' id='b3'><bind xmlns='urn:ietf:params:xml:ns:"
             "xmpp-bind'><resource>two</resource></bind></iq>");
    assert_true(sent(&o, "<not-allowed"));
    owner_done(&o);
}

/* A feature the owner registers through stream_config_t, as stream
 * management or CSI will: offered after authentication, its top-level
 * elements handled by its own function, without touching stream.c. */
struct fake_feature {
    int handled;
    char last_name[32];
    struct owner *owner_seen;
};

static void fake_handle(stream_t *s, void *owner_ud, const stream_feature_t *f,
                        xml_tree_t *t)
{
    struct fake_feature *ff = f->ud;
    ff->handled++;
    ff->owner_seen = owner_ud;
    snprintf(ff->last_name, sizeof(ff->last_name), "%s", t->root->name);
    if (!stream_is_bound(s)) {
        xml_tree_free(t);
        stream_error(s, "not-authorized", NULL);
        return;
    }
    xml_tree_free(t);
    const char *ans = "<pong xmlns='urn:test:feature'/>";
    assert_true(stream_send_nonza(s, ans, strlen(ans)));
}

static void login_bound(struct owner *o)
{
    do_starttls(o);
    assert_true(scram_login(o, "SCRAM-SHA-256", "juliet", "r0m30"));
    clear(o);
    feed(o, HDR);
}

static void bind_now(struct owner *o)
{
    feed(o, "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:"
            "xmpp-bind'/></iq>");
    assert_true(stream_is_bound(o->s));
}

static void test_owner_feature(void **state)
{
    (void)state;
    struct fake_feature ff = {0};
    stream_feature_t feats[] = {{
        .ns = "urn:test:feature",
        .name = "testfeat",
        .when = STREAM_FEAT_AFTER_AUTH,
        .required = true,
        .handle = fake_handle,
        .ud = &ff,
    }};
    stream_config_t cfg = make_cfg(true, true);
    cfg.features = feats;
    cfg.feature_count = 1;
    struct owner o;
    owner_init(&o, &cfg);
    /* Not offered before TLS or before authentication. */
    feed(&o, HDR);
    assert_true(sent(&o, "<starttls"));
    assert_false(sent(&o, "urn:test:feature"));
    stream_free(o.s);
    buf_free(&o.out);
    owner_init(&o, &cfg);
    do_starttls(&o);
    assert_true(sent(&o, "<mechanisms"));
    assert_false(sent(&o, "urn:test:feature"));
    assert_true(scram_login(&o, "SCRAM-SHA-256", "juliet", "r0m30"));
    clear(&o);
    feed(&o, HDR);
    /* Offered with bind and session, after the built-in features. */
    assert_true(sent(&o, "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                         "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'>"
                         "<optional/></session><testfeat xmlns='urn:test:"
                         "feature'><required/></testfeat></stream:features>"));
    bind_now(&o);
    clear(&o);
    feed(&o, "<ping xmlns='urn:test:feature'/>");
    assert_int_equal(ff.handled, 1);
    assert_string_equal(ff.last_name, "ping");
    assert_ptr_equal(ff.owner_seen, &o);
    assert_true(sent(&o, "<pong xmlns='urn:test:feature'/>"));
    assert_int_equal(o.closed, 0);
    assert_null(stream_error_sent(o.s));
    /* Stanzas still flow. */
    feed(&o, "<message to='romeo@localhost'><body>hi</body></message>");
    assert_int_equal(o.nstanzas, 1);
    /* A top-level element nobody registered is still refused. */
    clear(&o);
    feed(&o, "<ping xmlns='urn:test:other'/>");
    assert_int_equal(ff.handled, 1);
    assert_string_equal(stream_error_sent(o.s), "unsupported-stanza-type");
    assert_true(sent(&o, "<unsupported-stanza-type"));
    owner_done(&o);

    /* Without the registration the same element is unsupported. */
    stream_config_t plain = make_cfg(true, true);
    owner_init(&o, &plain);
    login_bound(&o);
    assert_false(sent(&o, "urn:test:feature"));
    bind_now(&o);
    feed(&o, "<ping xmlns='urn:test:feature'/>");
    assert_string_equal(stream_error_sent(o.s), "unsupported-stanza-type");
    owner_done(&o);
}

/* The owner cannot queue bytes (out of memory): the stream does not go on
 * as if they had been sent; it closes, and stream_send_*() say false. */
static int fail_after;
static int o_send_checked(void *ud, const char *d, size_t n)
{
    if (fail_after-- <= 0)
        return -1;
    o_send(ud, d, n);
    return 0;
}

static void test_send_failure_closes(void **state)
{
    (void)state;
    stream_hooks_t h = hooks;
    h.send_checked = o_send_checked;
    stream_config_t cfg = make_cfg(false, false);
    struct owner o;
    memset(&o, 0, sizeof(o));
    o.have_account = true;
    o.s = stream_new_c2s(&cfg, &h, &o);
    assert_non_null(o.s);
    fail_after = 1; /* the header goes out, the features do not */
    feed(&o, HDR);
    assert_true(sent(&o, "<stream:stream"));
    assert_false(sent(&o, "<stream:features"));
    assert_int_equal(o.closed, 1);
    assert_int_equal(stream_state(o.s), STREAM_CLOSED);
    assert_string_equal(stream_error_sent(o.s), "internal-server-error");
    assert_false(stream_send_nonza(o.s, "<x/>", 4));
    owner_done(&o);
}

/* stream_config_t.tls_direct (port 5223): no STARTTLS offered inside TLS;
 * bytes fed before the handshake was reported are never parsed. */
static void test_tls_direct(void **state)
{
    (void)state;
    stream_config_t cfg = make_cfg(true, true);
    cfg.tls_direct = true;
    struct owner o;
    owner_init(&o, &cfg);
    feed(&o, HDR);
    assert_int_equal(o.closed, 1);
    assert_int_equal(o.out.len, 0);
    owner_done(&o);

    owner_init(&o, &cfg);
    stream_tls_info_t info = {.cb_exporter = fake_exporter,
                              .cb_exporter_len = sizeof(fake_exporter)};
    stream_tls_done(o.s, true, &info);
    feed(&o, HDR);
    assert_false(sent(&o, "starttls"));
    assert_true(sent(&o, "<mechanism>SCRAM-SHA-256-PLUS</mechanism>"));
    assert_int_equal(o.closed, 0);
    owner_done(&o);
}

static void test_stanza_error_reply(void **state)
{
    (void)state;
    xml_tree_t *t = xml_tree_new();
    xml_node_t *iq = xml_element_new(t, NULL, "jabber:client", "iq");
    xml_element_set_attr(t, iq, NULL, "type", "get");
    xml_element_set_attr(t, iq, NULL, "id", "q1");
    xml_element_set_attr(t, iq, NULL, "from", "juliet@localhost/balcony");
    xml_element_set_attr(t, iq, NULL, "to", "romeo@localhost");
    xml_node_t *qe = xml_element_new(t, iq, "urn:x", "query");
    xml_element_add_text(t, qe, "a&b", 3);

    xml_tree_t *r =
        stanza_error_reply(iq, "cancel", "service-unavailable", NULL);
    assert_non_null(r);
    char *str = xml_to_string(r->root, "jabber:client");
    assert_string_equal(
        str, "<iq type='error' id='q1' to='juliet@localhost/balcony' "
             "from='romeo@localhost'><query xmlns='urn:x'>a&amp;b</query>"
             "<error type='cancel'><service-unavailable xmlns='urn:ietf:"
             "params:xml:ns:xmpp-stanzas'/></error></iq>");
    free(str);
    xml_tree_free(r);

    /* An explicit 'from' wins over the original 'to'. */
    r = stanza_error_reply(iq, "wait", "resource-constraint", "localhost");
    assert_string_equal(xml_element_attr(r->root, NULL, "from"), "localhost");
    assert_string_equal(xml_element_attr(r->root, NULL, "to"),
                        "juliet@localhost/balcony");
    xml_tree_free(r);

    /* Never an error in reply to an error (RFC 6120 §8.3.1), nor to
     * something that is not a stanza. */
    xml_element_set_attr(t, iq, NULL, "type", "error");
    assert_null(stanza_error_reply(iq, "cancel", "bad-request", NULL));
    assert_null(stanza_error_reply(qe, "cancel", "bad-request", NULL));
    xml_tree_free(t);
}

static void test_close_handshake(void **state)
{
    (void)state;
    stream_config_t cfg = make_cfg(true, true);
    struct owner o;
    owner_init(&o, &cfg);
    feed(&o, HDR);
    clear(&o);
    /* Client closes first: we answer with our close tag and close. */
    feed(&o, "</stream:stream>");
    assert_string_equal(o.out.data, "</stream:stream>");
    assert_int_equal(o.closed, 1);
    owner_done(&o);

    /* We close first: nothing after our close tag; the client's close tag
     * ends it. */
    owner_init(&o, &cfg);
    feed(&o, HDR);
    stream_error(o.s, "system-shutdown", NULL);
    assert_true(sent(&o, "<system-shutdown xmlns='urn:ietf:params:xml:ns:"
                         "xmpp-streams'/></stream:error></stream:stream>"));
    size_t len = o.out.len;
    stream_close(o.s);
    assert_int_equal(o.out.len, len);
    feed(&o, "<message/>");
    assert_int_equal(o.out.len, len);
    assert_int_equal(o.closed, 0);
    feed(&o, "</stream:stream>");
    assert_int_equal(o.closed, 1);
    assert_int_equal(o.out.len, len);
    owner_done(&o);
}

static void test_whitespace_keepalive(void **state)
{
    (void)state;
    stream_config_t cfg = make_cfg(true, true);
    struct owner o;
    owner_init(&o, &cfg);
    feed(&o, HDR);
    for (int i = 0; i < 10000; i++)
        feed(&o, " ");
    assert_null(stream_error_sent(o.s));
    assert_int_equal(stream_state(o.s), STREAM_OPEN);
    owner_done(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_and_features),
        cmocka_unit_test(test_stream_ids_unique),
        cmocka_unit_test(test_stream_errors),
        cmocka_unit_test(test_starttls_discards_trailing_bytes),
        cmocka_unit_test(test_auth_before_tls),
        cmocka_unit_test(test_plain_withheld_without_tls),
        cmocka_unit_test(test_scram_plus_login_bind_and_stamp),
        cmocka_unit_test(test_scram_variants),
        cmocka_unit_test(test_scram_failures),
        cmocka_unit_test(test_sasl_conditions),
        cmocka_unit_test(test_failure_held_back),
        cmocka_unit_test(test_plain_and_async_lookup),
        cmocka_unit_test(test_bind_variants),
        cmocka_unit_test(test_owner_feature),
        cmocka_unit_test(test_send_failure_closes),
        cmocka_unit_test(test_stanza_error_reply),
        cmocka_unit_test(test_tls_direct),
        cmocka_unit_test(test_close_handshake),
        cmocka_unit_test(test_whitespace_keepalive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
