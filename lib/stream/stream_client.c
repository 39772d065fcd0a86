/* The initiating half of a client-to-server stream (RFC 6120 §4–§7).
 *
 * Life of a stream: our header → the server's header and features →
 * (STARTTLS → header → features) → SASL → header → features → bind →
 * (session) → stanzas → close. Each restart resets the XML parser; bytes
 * that followed <proceed/> or <success/> in the same read are discarded,
 * never parsed as part of the next stream (the server cannot have answered
 * a header we had not sent yet).
 *
 * Every ending goes the same way: hooks.failed at most once (unless we
 * closed on purpose), our close tag at most once and nothing after it,
 * hooks.close at most once and no hook after it. */
#include "stream/stream_client.h"
#include "stream/stream_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "stream/stream.h"

#define CLOSE_TAG "</stream:stream>"

/* Bounds on what the server's features make us keep. */
enum { MECHS_MAX = 32, CB_TYPES_MAX = 8 };

enum phase {
    PH_HEADER,   /* waiting for the server's header */
    PH_FEATURES, /* waiting for <stream:features/> */
    PH_STARTTLS, /* <starttls/> sent, waiting for <proceed/> */
    PH_SASL,     /* <auth/> sent */
    PH_BIND,     /* bind iq sent */
    PH_SESSION,  /* session iq sent */
    PH_DB_KEY,   /* s2s: waiting for the owner's dialback key */
    PH_DIALBACK, /* s2s: <db:result/> sent */
    PH_VERIFY,   /* s2s: <db:verify/> sent */
    PH_READY,
};

#define BIND_ID    "bind_1"
#define SESSION_ID "sess_1"

struct sclient {
    sclient_hooks_t hooks;
    void *ud;
    xml_parser_t *parser;

    jid_t jid;      /* as configured: node required, resource optional */
    char *password; /* NULL: EXTERNAL only */
    bool direct_tls;
    bool allow_plaintext;
    bool allow_plain;

    sclient_state_t state;
    enum phase phase;
    bool tls;
    bool authenticated;
    bool session_needed; /* the bind features asked for a session iq */
    bool in_feed;        /* inside xml_parser_feed(): reset must wait */
    bool need_reset;     /* restart the parser when the feed returns */
    bool send_failed;    /* hooks.send_checked failed: no more output */
    bool close_sent;     /* our close tag went out: nothing more may */
    bool close_called;   /* hooks.close ran: no hook may run again */
    bool failed_called;  /* hooks.failed ran (at most once) */

    /* Channel binding data of the current TLS connection. */
    unsigned char cb_exporter[64];
    size_t cb_exporter_len;
    unsigned char cb_unique[64];
    size_t cb_unique_len;
    bool have_client_cert;

    /* SASL. The features tree stays alive while the exchange runs: the
     * mechanism and channel-binding names given to sasl_client_choose()
     * point into it (XEP-0474 hashes them in a later step). */
    sasl_client_t *sasl;
    xml_tree_t *sasl_features;
    const char *mechs[MECHS_MAX];
    size_t mech_count;
    const char *cb_types[CB_TYPES_MAX];
    size_t cb_count;
    const char *mech_used; /* static name, after success */

    jid_t bound; /* the full JID once bound */

    /* s2s (sclient_new_s2s, sclient_new_s2s_verify) */
    bool s2s;
    bool verify; /* a verification stream */
    char *from, *to;
    char *vid, *vkey;
    bool have_cert, dialback, peer_cert_valid;
    bool db_offered; /* the features offered dialback */
    char stream_id[128];
};

/* ----------------------------------------------------------- output */

static void call_close(sclient_t *c);
static void report(sclient_t *c, int err, const char *cond, const char *text,
                   const char *desc);

static void send_bytes(sclient_t *c, const char *d, size_t n)
{
    /* RFC 6120 §4.4: nothing after our close tag; no hook after close. */
    if (c->close_sent || c->close_called || c->send_failed || n == 0)
        return;
    if (c->hooks.send_checked != NULL) {
        if (c->hooks.send_checked(c->ud, d, n) < 0) {
            /* The bytes could not be queued (out of memory): the stream
             * is broken, so it ends here rather than going on without
             * them (CONVENTIONS.md, out-of-memory policy). */
            c->send_failed = true;
            report(c, SCLIENT_ERR_PROTOCOL, "resource-constraint", NULL,
                   "out of memory");
            call_close(c);
        }
        return;
    }
    c->hooks.send(c->ud, d, n);
}

static void send_str(sclient_t *c, const char *s)
{
    send_bytes(c, s, strlen(s));
}

static void send_buf(sclient_t *c, const buf_t *b)
{
    send_bytes(c, b->data, b->len);
}

static void stop_parser(sclient_t *c)
{
    if (c->in_feed)
        xml_parser_stop(c->parser);
}

static void call_close(sclient_t *c)
{
    c->state = SCLIENT_CLOSED;
    stop_parser(c);
    if (c->close_called)
        return;
    c->close_called = true;
    c->hooks.close(c->ud);
}

static void report(sclient_t *c, int err, const char *cond, const char *text,
                   const char *desc)
{
    if (c->failed_called || c->close_called)
        return;
    c->failed_called = true;
    if (c->hooks.failed != NULL)
        c->hooks.failed(c->ud, err, cond, text, desc);
}

/* Our close tag, then waiting for the server's (RFC 6120 §4.4). */
static void send_close(sclient_t *c)
{
    if (c->state == SCLIENT_CLOSED)
        return;
    send_str(c, CLOSE_TAG);
    c->close_sent = true;
    c->state = SCLIENT_CLOSING;
}

/* Negotiation failed on our side: tell the owner, then close the stream,
 * with a stream error of ours when `stream_cond` is given (RFC 6120
 * §4.9.1.2: error, then close tag). */
static void fail(sclient_t *c, int err, const char *cond, const char *text,
                 const char *desc, const char *stream_cond)
{
    if (c->state == SCLIENT_CLOSING || c->state == SCLIENT_CLOSED)
        return;
    report(c, err, cond, text, desc);
    if (c->state == SCLIENT_CLOSED)
        return; /* the failed hook aborted */
    if (stream_cond != NULL) {
        buf_t b = BUF_INIT;
        /* Out of memory: the close tag alone, never half an error. */
        if (stream_write_error(&b, stream_cond, NULL) == 0)
            send_buf(c, &b);
        buf_free(&b);
    }
    send_close(c);
}

/* Our stream header (RFC 6120 §4.7; feature set 3.3.1-1..4): from = our
 * bare JID, to = the server's domain, version 1.0, xml:lang. Written by
 * hand rather than through xml_serialize_header() so that the content
 * namespace comes first, as every example in RFC 6120 writes it. */
static void send_header_s2s(sclient_t *c);

static void send_header(sclient_t *c)
{
    if (c->s2s) {
        send_header_s2s(c);
        return;
    }
    buf_t b = BUF_INIT;
    char *from = jid_to_string(&c->jid, true);
    int rc = from == NULL;
    rc |= buf_append_str(
        &b, "<?xml version='1.0'?><stream:stream xmlns='" XML_NS_CLIENT
            "' xmlns:stream='" XML_NS_STREAMS "' from='");
    if (from != NULL)
        rc |= xml_escape_attr(from, strlen(from), &b);
    rc |= buf_append_str(&b, "' to='");
    rc |= xml_escape_attr(c->jid.domain, c->jid.domain_len, &b);
    rc |= buf_append_str(&b, "' version='1.0' xml:lang='en'>");
    free(from);
    if (rc != 0) {
        buf_free(&b);
        /* Nothing half-written went out: end without a close tag. */
        report(c, SCLIENT_ERR_PROTOCOL, "resource-constraint", NULL,
               "out of memory");
        call_close(c);
        return;
    }
    c->phase = PH_HEADER;
    send_buf(c, &b);
    buf_free(&b);
}

/* A new stream over the same transport (RFC 6120 §5.4.3.3, §6.4.6). */
static void restart(sclient_t *c)
{
    if (stream_parser_restart(c->parser, c->in_feed, &c->need_reset) != 0) {
        report(c, SCLIENT_ERR_PROTOCOL, NULL, NULL, "out of memory");
        call_close(c);
        return;
    }
    c->state = SCLIENT_NEGOTIATING;
    send_header(c);
}

/* ------------------------------------------------------------ header */

static void on_header(void *ud, xml_tree_t *t)
{
    sclient_t *c = ud;
    if (c->state != SCLIENT_NEGOTIATING || c->phase != PH_HEADER) {
        xml_tree_free(t);
        return;
    }
    /* RFC 6120 §4.7.5: we speak 1.0; a missing version is a pre-1.0
     * server, another major version one we do not know. */
    const char *version = xml_element_attr(t->root, NULL, "version");
    unsigned major = 0;
    int used = 0;
    bool ok = version != NULL &&
              sscanf(version, "%u.%*u%n", &major, &used) >= 1 &&
              used == (int)strlen(version) && major == 1;
    const char *id = xml_element_attr(t->root, NULL, "id");
    snprintf(c->stream_id, sizeof(c->stream_id), "%s", id != NULL ? id : "");
    xml_tree_free(t);
    if (!ok) {
        fail(c, SCLIENT_ERR_PROTOCOL, "unsupported-version", NULL,
             "the server does not speak XMPP 1.0", "unsupported-version");
        return;
    }
    c->phase = PH_FEATURES;
}

/* ---------------------------------------------------------- helpers */

/* Appends <name xmlns='sasl' [attrs]>base64</name>; empty data is "="
 * when `empty_as_eq` (an empty initial response, RFC 6120 §6.4.2). */
static int sasl_element(buf_t *b, const char *name, const char *mech,
                        const buf_t *data, bool has_data, bool empty_as_eq)
{
    int rc = buf_append_str(b, "<");
    rc |= buf_append_str(b, name);
    rc |= buf_append_str(b, " xmlns='" STREAM_NS_SASL "'");
    if (mech != NULL) {
        rc |= buf_append_str(b, " mechanism='");
        rc |= xml_escape_attr(mech, strlen(mech), b);
        rc |= buf_append_str(b, "'");
    }
    if (!has_data || (data->len == 0 && !empty_as_eq))
        return rc | buf_append_str(b, "/>");
    rc |= buf_append_str(b, ">");
    if (data->len == 0) {
        rc |= buf_append_str(b, "=");
    } else {
        size_t cap = base64_encoded_size(data->len);
        char *enc = malloc(cap);
        if (enc == NULL ||
            base64_encode(data->data, data->len, BASE64_STD, enc, cap) < 0)
            rc = -1;
        else
            rc |= buf_append_str(b, enc);
        free(enc);
    }
    rc |= buf_append_str(b, "</");
    rc |= buf_append_str(b, name);
    return rc | buf_append_str(b, ">");
}

static void sasl_end(sclient_t *c)
{
    sasl_client_free(c->sasl);
    c->sasl = NULL;
    xml_tree_free(c->sasl_features);
    c->sasl_features = NULL;
    c->mech_count = 0;
    c->cb_count = 0;
}

/* ---------------------------------------------------------- features */

static void start_sasl(sclient_t *c, xml_tree_t *t, const xml_node_t *mechs)
{
    const xml_node_t *feat = t->root;
    c->mech_count = 0;
    c->cb_count = 0;
    for (const xml_node_t *m =
             xml_element_child(mechs, STREAM_NS_SASL, "mechanism");
         m != NULL && c->mech_count < MECHS_MAX;
         m = xml_element_next(m, STREAM_NS_SASL, "mechanism")) {
        const char *name = xml_element_text(t, m);
        if (name != NULL && name[0] != '\0')
            c->mechs[c->mech_count++] = name;
    }
    /* XEP-0440: the channel binding types the server can do. */
    const xml_node_t *cbl =
        xml_element_child(feat, STREAM_NS_SASL_CB, "sasl-channel-binding");
    if (cbl != NULL) {
        for (const xml_node_t *b =
                 xml_element_child(cbl, STREAM_NS_SASL_CB, "channel-binding");
             b != NULL && c->cb_count < CB_TYPES_MAX;
             b = xml_element_next(b, STREAM_NS_SASL_CB, "channel-binding")) {
            const char *type = xml_element_attr(b, NULL, "type");
            if (type != NULL)
                c->cb_types[c->cb_count++] = type;
        }
    }
    sasl_client_params_t p = {
        .authcid = c->jid.node,
        .password = c->password,
        .domain = c->jid.domain,
        .authzid = NULL,
        .tls = c->tls,
        .have_client_cert = c->have_client_cert,
        .cb_exporter = c->cb_exporter_len > 0 ? c->cb_exporter : NULL,
        .cb_exporter_len = c->cb_exporter_len,
        .cb_unique = c->cb_unique_len > 0 ? c->cb_unique : NULL,
        .cb_unique_len = c->cb_unique_len,
        .server_mechs = c->mechs,
        .server_mech_count = c->mech_count,
        .server_cb = c->cb_count > 0 ? c->cb_types : NULL,
        .server_cb_count = c->cb_count,
        .allow_plain = c->allow_plain,
        .allow_digest_md5 = true,
    };
    c->sasl_features = t;
    const char *why = NULL;
    c->sasl = sasl_client_choose(&p, &why);
    if (c->sasl == NULL) {
        sasl_end(c);
        fail(c, SCLIENT_ERR_NO_MECH, NULL, NULL,
             why != NULL ? why : "out of memory", NULL);
        return;
    }
    buf_t data = BUF_INIT, b = BUF_INIT;
    bool has_data = false;
    int rc = sasl_client_start(c->sasl, &data, &has_data);
    if (rc < 0) {
        buf_free(&data);
        sasl_end(c);
        fail(c, SCLIENT_ERR_AUTH, NULL, NULL,
             "the SASL mechanism could not start (is the password valid?)",
             NULL);
        return;
    }
    const char *name = sasl_mech_name(sasl_client_mech(c->sasl));
    if (sasl_element(&b, "auth", name, &data, has_data, true) != 0) {
        buf_free(&data);
        buf_free(&b);
        sasl_end(c);
        fail(c, SCLIENT_ERR_PROTOCOL, NULL, NULL, "out of memory", NULL);
        return;
    }
    c->phase = PH_SASL;
    send_buf(c, &b);
    buf_free(&data);
    buf_free(&b);
}

static void send_bind(sclient_t *c)
{
    buf_t b = BUF_INIT;
    int rc = buf_append_str(&b, "<iq type='set' id='" BIND_ID "'>"
                                "<bind xmlns='" STREAM_NS_BIND "'");
    if (c->jid.resource != NULL) {
        rc |= buf_append_str(&b, "><resource>");
        rc |= xml_escape(c->jid.resource, c->jid.resource_len, &b);
        rc |= buf_append_str(&b, "</resource></bind></iq>");
    } else {
        /* RFC 6120 §7.6.1: an empty bind asks the server for a resource. */
        rc |= buf_append_str(&b, "/></iq>");
    }
    if (rc != 0) {
        buf_free(&b);
        fail(c, SCLIENT_ERR_PROTOCOL, NULL, NULL, "out of memory", NULL);
        return;
    }
    c->phase = PH_BIND;
    send_buf(c, &b);
    buf_free(&b);
}

static void handle_features_s2s(sclient_t *c, xml_tree_t *t);

static void handle_features(sclient_t *c, xml_tree_t *t)
{
    const xml_node_t *f = t->root;
    if (c->s2s &&
        (c->tls || (xml_element_child(f, STREAM_NS_TLS, "starttls") == NULL &&
                    c->allow_plaintext))) {
        handle_features_s2s(c, t);
        return;
    }
    if (!c->tls) {
        if (xml_element_child(f, STREAM_NS_TLS, "starttls") != NULL) {
            xml_tree_free(t);
            /* RFC 6120 §5.4.2.1: no whitespace around it either. */
            c->phase = PH_STARTTLS;
            send_str(c, "<starttls xmlns='" STREAM_NS_TLS "'/>");
            return;
        }
        if (!c->allow_plaintext) {
            xml_tree_free(t);
            /* Never fall back to plaintext silently. */
            fail(c, SCLIENT_ERR_NO_TLS, NULL, NULL,
                 "the server does not offer TLS", NULL);
            return;
        }
    }
    if (!c->authenticated) {
        const xml_node_t *mechs =
            xml_element_child(f, STREAM_NS_SASL, "mechanisms");
        if (mechs == NULL) {
            xml_tree_free(t);
            fail(c, SCLIENT_ERR_NO_MECH, NULL, NULL,
                 "the server offers no SASL authentication", NULL);
            return;
        }
        start_sasl(c, t, mechs); /* keeps or frees t */
        return;
    }
    if (xml_element_child(f, STREAM_NS_BIND, "bind") == NULL) {
        xml_tree_free(t);
        fail(c, SCLIENT_ERR_PROTOCOL, NULL, NULL,
             "the server offers no resource binding", "unsupported-feature");
        return;
    }
    /* RFC 3921 session establishment: only when the server does not mark
     * it optional (draft-cridland-xmpp-session). */
    const xml_node_t *sess = xml_element_child(f, STREAM_NS_SESSION, "session");
    c->session_needed =
        sess != NULL &&
        xml_element_child(sess, STREAM_NS_SESSION, "optional") == NULL;
    xml_tree_free(t);
    send_bind(c);
}

/* ------------------------------------------------------------ STARTTLS */

static void handle_tls(sclient_t *c, xml_tree_t *t)
{
    bool proceed = strcmp(t->root->name, "proceed") == 0;
    bool failure = strcmp(t->root->name, "failure") == 0;
    xml_tree_free(t);
    if (c->phase != PH_STARTTLS || (!proceed && !failure)) {
        fail(c, SCLIENT_ERR_PROTOCOL, NULL, NULL,
             "unexpected STARTTLS element from the server",
             "unsupported-stanza-type");
        return;
    }
    if (failure) {
        /* RFC 6120 §5.4.2.2: the server closes the stream and the TCP
         * connection after this. */
        fail(c, SCLIENT_ERR_TLS, NULL, NULL, "the server refused STARTTLS",
             NULL);
        return;
    }
    /* Whatever followed <proceed/> in this read was sent before TLS and
     * must never be read as part of the encrypted stream. */
    c->state = SCLIENT_TLS;
    stop_parser(c);
    c->need_reset = true;
    c->hooks.start_tls(c->ud);
}

/* ---------------------------------------------------------------- SASL */

static void sasl_success(sclient_t *c, const unsigned char *d, size_t n)
{
    int rc = sasl_client_finish(c->sasl, d, n);
    if (rc != SASL_SUCCESS) {
        sasl_end(c);
        fail(c, SCLIENT_ERR_AUTH, NULL, NULL,
             "the server did not prove that it knows the password", NULL);
        return;
    }
    c->mech_used = sasl_mech_name(sasl_client_mech(c->sasl));
    sasl_end(c);
    c->authenticated = true;
    restart(c);
}

static void handle_sasl_s2s(sclient_t *c, xml_tree_t *t);

static void handle_sasl(sclient_t *c, xml_tree_t *t)
{
    const xml_node_t *el = t->root;
    if (c->s2s) {
        handle_sasl_s2s(c, t);
        return;
    }
    if (c->phase != PH_SASL || c->sasl == NULL) {
        xml_tree_free(t);
        fail(c, SCLIENT_ERR_PROTOCOL, NULL, NULL,
             "unexpected SASL element from the server",
             "unsupported-stanza-type");
        return;
    }
    if (strcmp(el->name, "failure") == 0) {
        const char *cond = stream_condition_of(el, STREAM_NS_SASL);
        const char *text = stream_text_of(t, el, STREAM_NS_SASL);
        char desc[160];
        snprintf(desc, sizeof(desc), "authentication failed (%s)",
                 cond != NULL ? cond : "no condition given");
        sasl_end(c);
        fail(c, SCLIENT_ERR_AUTH, cond, text, desc, NULL);
        xml_tree_free(t);
        return;
    }
    bool challenge = strcmp(el->name, "challenge") == 0;
    if (!challenge && strcmp(el->name, "success") != 0) {
        xml_tree_free(t);
        sasl_end(c);
        fail(c, SCLIENT_ERR_PROTOCOL, NULL, NULL,
             "unexpected SASL element from the server",
             "unsupported-stanza-type");
        return;
    }
    unsigned char *data = NULL;
    long len = stream_sasl_decode(t, el, &data, NULL);
    xml_tree_free(t);
    if (len < 0) {
        sasl_end(c);
        fail(c, SCLIENT_ERR_PROTOCOL, "incorrect-encoding", NULL,
             "the server's SASL data is not valid base64", "bad-format");
        return;
    }
    if (!challenge) {
        sasl_success(c, data, (size_t)len);
        free(data);
        return;
    }
    buf_t out = BUF_INIT, b = BUF_INIT;
    int rc = sasl_client_step(c->sasl, data, (size_t)len, &out);
    free(data);
    if (rc < 0) {
        buf_free(&out);
        sasl_end(c);
        /* The server's messages were wrong (a nonce that does not extend
         * ours, a downgrade detected by XEP-0474): do not go on. */
        fail(c, SCLIENT_ERR_AUTH, NULL, NULL,
             "the server's SASL challenge was refused", NULL);
        return;
    }
    if (sasl_element(&b, "response", NULL, &out, true, false) != 0) {
        buf_free(&out);
        buf_free(&b);
        sasl_end(c);
        fail(c, SCLIENT_ERR_PROTOCOL, NULL, NULL, "out of memory", NULL);
        return;
    }
    send_buf(c, &b);
    buf_free(&out);
    buf_free(&b);
}

/* ----------------------------------------------------- bind and session */

static void become_ready(sclient_t *c)
{
    c->phase = PH_READY;
    c->state = SCLIENT_READY;
    c->hooks.ready(c->ud, c->s2s ? NULL : &c->bound);
}

static void send_session(sclient_t *c)
{
    c->phase = PH_SESSION;
    send_str(c, "<iq type='set' id='" SESSION_ID
                "'><session xmlns='" STREAM_NS_SESSION "'/></iq>");
}

/* The answer to our bind or session iq; anything else before that is
 * dropped (RFC 6120 §7.1: the server sends no stanzas before binding). */
static void handle_negotiation_iq(sclient_t *c, xml_tree_t *t)
{
    const xml_node_t *el = t->root;
    const char *id = xml_element_attr(el, NULL, "id");
    const char *type = xml_element_attr(el, NULL, "type");
    const char *want = c->phase == PH_BIND ? BIND_ID : SESSION_ID;
    if (id == NULL || type == NULL || strcmp(id, want) != 0 ||
        (strcmp(type, "result") != 0 && strcmp(type, "error") != 0)) {
        xml_tree_free(t);
        return;
    }
    if (strcmp(type, "error") == 0) {
        const xml_node_t *err = xml_element_child(el, XML_NS_CLIENT, "error");
        const char *cond =
            err != NULL ? stream_condition_of(err, STREAM_NS_STANZAS) : NULL;
        const char *text =
            err != NULL ? stream_text_of(t, err, STREAM_NS_STANZAS) : NULL;
        char desc[160];
        snprintf(desc, sizeof(desc), "the server refused %s (%s)",
                 c->phase == PH_BIND ? "to bind the resource"
                                     : "to establish a session",
                 cond != NULL ? cond : "no condition given");
        fail(c, SCLIENT_ERR_BIND, cond, text, desc, NULL);
        xml_tree_free(t);
        return;
    }
    if (c->phase == PH_SESSION) {
        xml_tree_free(t);
        become_ready(c);
        return;
    }
    const xml_node_t *bind = xml_element_child(el, STREAM_NS_BIND, "bind");
    const xml_node_t *jn =
        bind != NULL ? xml_element_child(bind, STREAM_NS_BIND, "jid") : NULL;
    const char *txt = jn != NULL ? xml_element_text(t, jn) : NULL;
    jid_t j;
    /* RFC 6120 §7.6.1: the result carries the full JID bound. */
    if (txt == NULL || jid_parse(txt, strlen(txt), 0, &j) != JID_OK) {
        xml_tree_free(t);
        fail(c, SCLIENT_ERR_PROTOCOL, NULL, NULL,
             "the server's bind result holds no valid JID", "bad-format");
        return;
    }
    xml_tree_free(t);
    if (j.resource == NULL || j.node == NULL) {
        jid_clear(&j);
        fail(c, SCLIENT_ERR_PROTOCOL, NULL, NULL,
             "the server's bind result is not a full JID", "bad-format");
        return;
    }
    jid_clear(&c->bound);
    c->bound = j;
    if (c->session_needed)
        send_session(c);
    else
        become_ready(c);
}

/* ------------------------------------------------------- stream errors */

static void handle_stream_error(sclient_t *c, xml_tree_t *t)
{
    const xml_node_t *el = t->root;
    const char *cond = stream_condition_of(el, STREAM_NS_STREAMS_ERR);
    const char *text = stream_text_of(t, el, STREAM_NS_STREAMS_ERR);
    char desc[160];
    snprintf(desc, sizeof(desc), "stream error from the server (%s)",
             cond != NULL ? cond : "no condition given");
    report(c, SCLIENT_ERR_STREAM, cond, text, desc);
    xml_tree_free(t);
    /* RFC 6120 §4.9.1.1: the server closes after the error; answer with
     * our close tag (if the failed hook left the stream alive) and end. */
    if (c->state != SCLIENT_CLOSED)
        send_close(c);
    call_close(c);
}

/* ------------------------------------------------- parser callbacks */

static void handle_dialback_answer(sclient_t *c, xml_tree_t *t);

static bool is_stanza(const xml_node_t *el)
{
    return el->ns != NULL && strcmp(el->ns, XML_NS_CLIENT) == 0 &&
           (strcmp(el->name, "message") == 0 ||
            strcmp(el->name, "presence") == 0 || strcmp(el->name, "iq") == 0);
}

static void on_element(void *ud, xml_tree_t *t)
{
    sclient_t *c = ud;
    const xml_node_t *el = t->root;
    if (c->state != SCLIENT_NEGOTIATING && c->state != SCLIENT_READY) {
        xml_tree_free(t);
        return;
    }
    if (xml_element_is(el, XML_NS_STREAMS, "error")) {
        handle_stream_error(c, t);
        return;
    }
    if (c->s2s && xml_element_is(el, STREAM_NS_DIALBACK, NULL)) {
        handle_dialback_answer(c, t);
        return;
    }
    switch (c->phase) {
    case PH_DB_KEY:
    case PH_DIALBACK:
    case PH_VERIFY:
        break;
    case PH_FEATURES:
        if (xml_element_is(el, XML_NS_STREAMS, "features")) {
            handle_features(c, t);
            return;
        }
        break;
    case PH_STARTTLS:
        if (xml_element_is(el, STREAM_NS_TLS, NULL)) {
            handle_tls(c, t);
            return;
        }
        break;
    case PH_SASL:
        if (xml_element_is(el, STREAM_NS_SASL, NULL)) {
            handle_sasl(c, t);
            return;
        }
        break;
    case PH_BIND:
    case PH_SESSION:
        if (is_stanza(el)) {
            if (strcmp(el->name, "iq") == 0)
                handle_negotiation_iq(c, t);
            else
                xml_tree_free(t);
            return;
        }
        break;
    case PH_READY:
        /* Stanza-level rules (IQ answers, 'from' checks) are the
         * library's; here stanzas are only delivered. */
        if (is_stanza(el) && !c->s2s) {
            c->hooks.stanza(c->ud, t);
            return;
        }
        /* Extension elements at stream level (stream management and the
         * like) belong to layers not negotiated here: ignore them. */
        xml_tree_free(t);
        return;
    case PH_HEADER:
        break;
    }
    xml_tree_free(t);
    fail(c, SCLIENT_ERR_PROTOCOL, NULL, NULL,
         "the server sent an element out of order", "unsupported-stanza-type");
}

static void on_stream_end(void *ud)
{
    sclient_t *c = ud;
    if (c->state == SCLIENT_CLOSED)
        return;
    /* RFC 6120 §4.4: a close we did not start ends the session early. */
    if (c->state != SCLIENT_CLOSING)
        report(c, SCLIENT_ERR_CLOSED, NULL, NULL,
               "the server closed the stream");
    if (c->state != SCLIENT_CLOSED) {
        if (!c->close_sent)
            send_close(c);
        call_close(c);
    }
}

/* --------------------------------------------------------------- public */

/* The parser of the peer's stream: `limits` (any field 0: the defaults),
 * content namespace `ns`. Returns 0, or -1 when out of memory. */
static int make_parser(sclient_t *c, const xml_limits_t *limits, const char *ns)
{
    xml_parser_opts_t po = {.content_ns = ns, .limits = *limits};
    if (po.limits.max_element_size == 0 || po.limits.max_depth == 0 ||
        po.limits.max_attrs == 0)
        xml_limits_default(&po.limits);
    xml_parser_cbs_t cbs = {on_header, on_element, on_stream_end};
    c->parser = xml_parser_new(&po, &cbs, c);
    return c->parser != NULL ? 0 : -1;
}

sclient_t *sclient_new(const sclient_config_t *cfg, const sclient_hooks_t *h,
                       void *ud)
{
    if (cfg == NULL || cfg->jid == NULL || h == NULL)
        return NULL;
    sclient_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->hooks = *h;
    c->ud = ud;
    c->direct_tls = cfg->direct_tls;
    c->allow_plaintext = cfg->allow_plaintext;
    c->allow_plain = cfg->allow_plain;
    /* An account JID needs a localpart: it is the SASL authcid. */
    if (jid_parse(cfg->jid, strlen(cfg->jid), 0, &c->jid) != JID_OK ||
        c->jid.node == NULL) {
        jid_clear(&c->jid);
        free(c);
        return NULL;
    }
    if (cfg->password != NULL && (c->password = strdup(cfg->password)) == NULL)
        goto fail;
    if (make_parser(c, &cfg->limits, XML_NS_CLIENT) < 0)
        goto fail;
    c->state = SCLIENT_CONNECTING;
    return c;
fail:
    sclient_free(c);
    return NULL;
}

void sclient_free(sclient_t *c)
{
    if (c == NULL)
        return;
    sasl_end(c);
    xml_parser_free(c->parser);
    if (c->password != NULL) {
        /* Do not leave the password in freed memory. */
        volatile char *p = c->password;
        while (*p != '\0')
            *p++ = '\0';
        free(c->password);
    }
    jid_clear(&c->jid);
    jid_clear(&c->bound);
    free(c->from);
    free(c->to);
    free(c->vid);
    free(c->vkey);
    free(c);
}

void sclient_start(sclient_t *c)
{
    if (c->state != SCLIENT_CONNECTING)
        return;
    c->state = SCLIENT_NEGOTIATING;
    send_header(c);
}

void sclient_feed(sclient_t *c, const char *data, size_t len)
{
    /* Before our header the server has nothing to say (RFC 6120 §4.2);
     * during the handshake bytes belong to TLS, not to us. */
    if (c->state == SCLIENT_CONNECTING || c->state == SCLIENT_TLS ||
        c->state == SCLIENT_CLOSED || c->in_feed)
        return;
    if (c->need_reset) {
        c->need_reset = false;
        if (xml_parser_reset(c->parser) != 0) {
            report(c, SCLIENT_ERR_PROTOCOL, NULL, NULL, "out of memory");
            call_close(c);
            return;
        }
    }
    c->in_feed = true;
    int rc = xml_parser_feed(c->parser, data, len);
    c->in_feed = false;
    if (c->need_reset && c->state != SCLIENT_TLS &&
        c->state != SCLIENT_CLOSED) {
        /* A restart inside the feed: the rest of the chunk was dropped;
         * the next byte starts the server's new stream. */
        c->need_reset = false;
        if (xml_parser_reset(c->parser) != 0) {
            report(c, SCLIENT_ERR_PROTOCOL, NULL, NULL, "out of memory");
            call_close(c);
            return;
        }
    }
    if (rc < 0 && c->state != SCLIENT_CLOSED) {
        if (c->state == SCLIENT_CLOSING || rc == XML_ERR_CLOSED) {
            call_close(c);
            return;
        }
        /* RFC 6120 §4.9.1.2 (feature set 3.6-1, 9-2): our stream error
         * with the parser's condition, our close tag, and the end; the
         * parser cannot read the server's close tag any more. */
        char desc[200];
        snprintf(desc, sizeof(desc), "the server sent bad XML: %s",
                 xml_parser_error_text(c->parser));
        const char *cond = xml_error_condition(rc);
        fail(c, SCLIENT_ERR_PROTOCOL, cond, NULL, desc, cond);
        call_close(c);
    }
}

void sclient_tls_done(sclient_t *c, bool ok, const sclient_tls_info_t *info)
{
    if (c->state == SCLIENT_CLOSED || c->state == SCLIENT_CLOSING)
        return;
    if (c->state != SCLIENT_TLS &&
        !(c->state == SCLIENT_CONNECTING && c->direct_tls))
        return;
    if (!ok) {
        /* RFC 6120 §5.4.3.2: no XML stream survives a failed handshake. */
        report(c, SCLIENT_ERR_TLS, NULL, NULL, "the TLS handshake failed");
        call_close(c);
        return;
    }
    c->tls = true;
    c->cb_exporter_len = 0;
    c->cb_unique_len = 0;
    c->have_client_cert = false;
    if (info != NULL) {
        if (info->cb_exporter != NULL &&
            info->cb_exporter_len <= sizeof(c->cb_exporter)) {
            memcpy(c->cb_exporter, info->cb_exporter, info->cb_exporter_len);
            c->cb_exporter_len = info->cb_exporter_len;
        }
        if (info->cb_unique != NULL &&
            info->cb_unique_len <= sizeof(c->cb_unique)) {
            memcpy(c->cb_unique, info->cb_unique, info->cb_unique_len);
            c->cb_unique_len = info->cb_unique_len;
        }
        c->have_client_cert = info->have_client_cert;
        c->peer_cert_valid = info->peer_cert_valid;
    }
    if (c->state == SCLIENT_TLS) {
        /* RFC 6120 §5.4.3.3: a new stream over TLS (feature set 4-4). */
        if (!c->in_feed) {
            c->need_reset = false;
            if (xml_parser_reset(c->parser) != 0) {
                report(c, SCLIENT_ERR_PROTOCOL, NULL, NULL, "out of memory");
                call_close(c);
                return;
            }
        }
        c->state = SCLIENT_NEGOTIATING;
        send_header(c);
    }
}

bool sclient_send(sclient_t *c, const xml_node_t *stanza)
{
    if (c->state != SCLIENT_READY)
        return false;
    buf_t b = BUF_INIT;
    bool ok = xml_serialize(stanza, XML_NS_CLIENT, &b) == 0;
    if (ok)
        send_buf(c, &b);
    buf_free(&b);
    return ok && !c->send_failed;
}

void sclient_close(sclient_t *c)
{
    switch (c->state) {
    case SCLIENT_NEGOTIATING:
    case SCLIENT_READY:
        send_close(c);
        return;
    case SCLIENT_CONNECTING:
    case SCLIENT_TLS:
        /* No XML stream is open to close. */
        call_close(c);
        return;
    case SCLIENT_CLOSING:
    case SCLIENT_CLOSED:
        return;
    }
}

void sclient_abort(sclient_t *c)
{
    call_close(c);
}

sclient_state_t sclient_state(const sclient_t *c)
{
    return c->state;
}

const jid_t *sclient_jid(const sclient_t *c)
{
    return c->phase == PH_READY && c->bound.domain != NULL ? &c->bound : NULL;
}

const char *sclient_mechanism(const sclient_t *c)
{
    return c->mech_used;
}

/* ------------------------------------------------------ server-to-server */

/* Our header on an s2s stream: jabber:server, the dialback namespace
 * declared, from our domain to theirs (RFC 6120 §4.7.1, XEP-0220 §2.1). */
static void send_header_s2s(sclient_t *c)
{
    buf_t b = BUF_INIT;
    int rc = buf_append_str(
        &b, "<?xml version='1.0'?><stream:stream xmlns='" XML_NS_SERVER
            "' xmlns:stream='" XML_NS_STREAMS "' xmlns:db='" STREAM_NS_DIALBACK
            "' from='");
    rc |= xml_escape_attr(c->from, strlen(c->from), &b);
    rc |= buf_append_str(&b, "' to='");
    rc |= xml_escape_attr(c->to, strlen(c->to), &b);
    rc |= buf_append_str(&b, "' version='1.0' xml:lang='en'>");
    if (rc != 0) {
        buf_free(&b);
        report(c, SCLIENT_ERR_PROTOCOL, "resource-constraint", NULL,
               "out of memory");
        call_close(c);
        return;
    }
    c->phase = PH_HEADER;
    send_buf(c, &b);
    buf_free(&b);
}

/* <db:NAME from to [id]>key</db:NAME>. */
static void send_db_request(sclient_t *c, const char *name, const char *id,
                            const char *key)
{
    buf_t b = BUF_INIT;
    int rc = buf_append_str(&b, "<db:");
    rc |= buf_append_str(&b, name);
    rc |= buf_append_str(&b, " from='");
    rc |= xml_escape_attr(c->from, strlen(c->from), &b);
    rc |= buf_append_str(&b, "' to='");
    rc |= xml_escape_attr(c->to, strlen(c->to), &b);
    if (id != NULL) {
        rc |= buf_append_str(&b, "' id='");
        rc |= xml_escape_attr(id, strlen(id), &b);
    }
    rc |= buf_append_str(&b, "'>");
    rc |= xml_escape(key, strlen(key), &b);
    rc |= buf_append_str(&b, "</db:");
    rc |= buf_append_str(&b, name);
    rc |= buf_append_str(&b, ">");
    if (rc != 0) {
        buf_free(&b);
        fail(c, SCLIENT_ERR_PROTOCOL, NULL, NULL, "out of memory", NULL);
        return;
    }
    send_buf(c, &b);
    buf_free(&b);
}

static void start_dialback(sclient_t *c)
{
    if (!c->dialback || !c->db_offered) {
        fail(c, SCLIENT_ERR_NO_MECH, NULL, NULL,
             c->dialback ? "the peer offers neither a usable SASL EXTERNAL "
                           "nor dialback"
                         : "the peer's certificate is not valid for its "
                           "domain and dialback is off",
             NULL);
        return;
    }
    c->phase = PH_DB_KEY;
    c->hooks.dialback_key(c->ud, c->stream_id);
}

/* Features after TLS (or on a plaintext stream allowed for tests). */
static void handle_features_s2s(sclient_t *c, xml_tree_t *t)
{
    const xml_node_t *f = t->root;
    c->db_offered =
        xml_element_child(f, STREAM_NS_DIALBACK_FEAT, "dialback") != NULL;
    if (c->verify) {
        /* XEP-0220 §2.3.1: the question needs no authentication. */
        xml_tree_free(t);
        c->phase = PH_VERIFY;
        send_db_request(c, "verify", c->vid, c->vkey);
        return;
    }
    if (c->authenticated) {
        xml_tree_free(t);
        become_ready(c);
        return;
    }
    bool external = false;
    const xml_node_t *mechs =
        xml_element_child(f, STREAM_NS_SASL, "mechanisms");
    for (const xml_node_t *m =
             mechs != NULL
                 ? xml_element_child(mechs, STREAM_NS_SASL, "mechanism")
                 : NULL;
         m != NULL; m = xml_element_next(m, STREAM_NS_SASL, "mechanism")) {
        const char *name = xml_element_text(t, m);
        if (name != NULL && strcmp(name, "EXTERNAL") == 0)
            external = true;
    }
    xml_tree_free(t);
    if (external && c->have_cert && c->peer_cert_valid && c->tls) {
        /* XEP-0178 §2: the authorization identity "=" (our 'from'). */
        c->phase = PH_SASL;
        send_str(c, "<auth xmlns='" STREAM_NS_SASL
                    "' mechanism='EXTERNAL'>=</auth>");
        return;
    }
    start_dialback(c);
}

static void handle_sasl_s2s(sclient_t *c, xml_tree_t *t)
{
    bool success = strcmp(t->root->name, "success") == 0;
    bool failure = strcmp(t->root->name, "failure") == 0;
    xml_tree_free(t);
    if (c->phase != PH_SASL || (!success && !failure)) {
        fail(c, SCLIENT_ERR_PROTOCOL, NULL, NULL,
             "unexpected SASL element from the peer",
             "unsupported-stanza-type");
        return;
    }
    if (failure) {
        /* XEP-0178 §3: dialback may still prove us. */
        start_dialback(c);
        return;
    }
    c->mech_used = "EXTERNAL";
    c->authenticated = true;
    restart(c);
}

/* <db:result type/> on our stream, or <db:verify type/> on a verification
 * stream (XEP-0220 §2.4, §2.3.3). */
static void handle_dialback_answer(sclient_t *c, xml_tree_t *t)
{
    const xml_node_t *el = t->root;
    const char *type = xml_element_attr(el, NULL, "type");
    bool result = strcmp(el->name, "result") == 0 && c->phase == PH_DIALBACK;
    bool verify = strcmp(el->name, "verify") == 0 && c->phase == PH_VERIFY;
    if ((!result && !verify) || type == NULL) {
        xml_tree_free(t);
        fail(c, SCLIENT_ERR_PROTOCOL, NULL, NULL,
             "unexpected dialback element from the peer",
             "unsupported-stanza-type");
        return;
    }
    bool valid = strcmp(type, "valid") == 0;
    if (verify) {
        xml_tree_free(t);
        c->phase = PH_READY;
        c->hooks.dialback_verified(c->ud, valid);
        return;
    }
    if (valid) {
        xml_tree_free(t);
        become_ready(c);
        return;
    }
    const xml_node_t *err = xml_element_child(el, NULL, "error");
    if (err == NULL)
        err = xml_element_child(el, STREAM_NS_DIALBACK, "error");
    const char *cond =
        err != NULL ? stream_condition_of(err, STREAM_NS_STANZAS) : NULL;
    char desc[160];
    snprintf(desc, sizeof(desc), "dialback refused by %s (%s%s%s)", c->to, type,
             cond != NULL ? ": " : "", cond != NULL ? cond : "");
    fail(c, SCLIENT_ERR_DIALBACK, cond != NULL ? cond : type, NULL, desc, NULL);
    xml_tree_free(t);
}

static sclient_t *new_s2s(const sclient_s2s_config_t *cfg,
                          const sclient_hooks_t *h, void *ud)
{
    if (cfg == NULL || cfg->from == NULL || cfg->to == NULL || h == NULL)
        return NULL;
    sclient_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->hooks = *h;
    c->ud = ud;
    c->s2s = true;
    c->direct_tls = cfg->direct_tls;
    c->allow_plaintext = cfg->allow_plaintext;
    c->have_cert = cfg->have_cert;
    c->dialback = cfg->dialback && h->dialback_key != NULL;
    c->from = strdup(cfg->from);
    c->to = strdup(cfg->to);
    if (c->from == NULL || c->to == NULL)
        goto fail;
    if (make_parser(c, &cfg->limits, XML_NS_SERVER) < 0)
        goto fail;
    c->state = SCLIENT_CONNECTING;
    return c;
fail:
    sclient_free(c);
    return NULL;
}

sclient_t *sclient_new_s2s(const sclient_s2s_config_t *cfg,
                           const sclient_hooks_t *h, void *ud)
{
    return new_s2s(cfg, h, ud);
}

sclient_t *sclient_new_s2s_verify(const sclient_s2s_config_t *cfg,
                                  const char *id, const char *key,
                                  const sclient_hooks_t *h, void *ud)
{
    if (id == NULL || key == NULL || h == NULL || h->dialback_verified == NULL)
        return NULL;
    sclient_t *c = new_s2s(cfg, h, ud);
    if (c == NULL)
        return NULL;
    c->verify = true;
    c->vid = strdup(id);
    c->vkey = strdup(key);
    if (c->vid == NULL || c->vkey == NULL) {
        sclient_free(c);
        return NULL;
    }
    return c;
}

void sclient_s2s_dialback(sclient_t *c, const char *key)
{
    if (c->phase != PH_DB_KEY || c->state != SCLIENT_NEGOTIATING)
        return;
    c->phase = PH_DIALBACK;
    send_db_request(c, "result", NULL, key);
}

const char *sclient_stream_id(const sclient_t *c)
{
    return c->stream_id;
}
