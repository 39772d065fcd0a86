/* The receiving half of a client-to-server stream (RFC 6120 §4–§8.1).
 *
 * Life of a stream: header → features → (STARTTLS → header → features) →
 * SASL → header → features → bind → stanzas → close. Each restart resets the
 * XML parser; bytes that followed <starttls/> or a SASL success in the same
 * read are discarded, never parsed as part of the next stream.
 *
 * Asynchronous answers (account lookup, password check, binding) may come
 * back from inside the hook that asked (tests do that) or later from the
 * loop; elements that arrive meanwhile wait in a short queue and are
 * processed in order when the answer is in. */
#include "stream/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "base/rand.h"
#include "stream/stanza.h"
#include "stream/stream_internal.h"

/* Elements that may wait for an asynchronous answer; a client that
 * pipelines more than this before negotiation ends is misbehaving. */
enum { QUEUE_MAX = 32 };

struct queued {
    struct queued *next;
    xml_tree_t *tree; /* NULL: the client's close tag */
};

enum waiting {
    WAIT_NONE,
    WAIT_ACCOUNT,  /* lookup_account */
    WAIT_PASSWORD, /* check_password */
    WAIT_BIND,     /* bind */
    WAIT_DELAY,    /* a SASL failure held back (auth_failed) */
    WAIT_PREAUTH,  /* an IQ before authentication (preauth_iq) */
};

/* IQs one stream may send before authenticating (in-band registration
 * needs two or three); more is a client probing. */
enum { PREAUTH_IQ_MAX = 16 };

struct stream {
    const stream_config_t *cfg;
    stream_hooks_t hooks;
    void *ud;
    xml_parser_t *parser;

    stream_state_t state;
    enum waiting waiting;
    bool header_sent; /* our header for the current stream */
    bool tls;
    bool authenticated;
    bool bound;
    bool in_feed;      /* inside xml_parser_feed(): reset must wait */
    bool need_reset;   /* restart the parser when the feed returns */
    bool close_called; /* hooks->close ran */
    bool lang_given;   /* the client's header carried xml:lang */

    char id[32];
    char lang[36];
    const char *domain;   /* the served host: one of cfg->hosts, or NULL */
    xml_tree_t *bind_req; /* the pending bind request (WAIT_BIND) */

    /* SASL */
    sasl_server_t *sasl;
    sasl_mech_t mech;
    bool sasl_expect_first; /* <challenge/> sent for an absent initial
                               response; the next <response/> is the first */
    unsigned auth_failures;
    unsigned preauth_iqs;
    uint32_t stanzas_in; /* from the bound client, mod 2^32 (XEP-0198) */
    unsigned advertised_mechs;
    unsigned advertised_cb;
    unsigned char cb_exporter[64];
    size_t cb_exporter_len;
    unsigned char cb_unique[64];
    size_t cb_unique_len;
    char **cert_names;
    size_t cert_name_count;
    buf_t held_failure; /* the <failure/> held back during WAIT_DELAY */

    jid_t user; /* bare JID once authenticated */
    jid_t full; /* full JID once bound */

    struct queued *queue_head, *queue_tail;
    size_t queue_len;

    const char *error_sent;
    bool send_failed; /* the owner could not queue bytes: no more output */

    /* s2s (stream_new_s2s_in) */
    bool s2s;
    char *peer;     /* the header's 'from', nameprep'd, or NULL */
    char *external; /* the domain SASL EXTERNAL authenticated, or NULL */
    struct s2s_pair *pairs;
    size_t npairs;
};

/* A (from, to) pair of domains that asked for dialback on this stream;
 * valid once the authoritative server said so. */
struct s2s_pair {
    char *from, *to;
    bool valid;
};

/* Dialback requests one stream may have (XEP-0220 multiplexing). */
enum { S2S_PAIRS_MAX = 64 };

static void process_element(stream_t *s, xml_tree_t *t);
static void process_queue(stream_t *s);

/* ----------------------------------------------------------- output */

static void call_close(stream_t *s)
{
    if (s->close_called)
        return;
    s->close_called = true;
    s->state = STREAM_CLOSED;
    s->hooks.close(s->ud);
}

/* Every byte for the peer goes through here. When the owner cannot queue
 * bytes (send_checked fails: out of memory), the stream is broken — a
 * stanza or part of an element is missing — so it sends nothing more and
 * closes (CONVENTIONS.md: the library never ignores a failed allocation).
 * Returns 0, or -1 when nothing can be sent any more. */
static int send_bytes(stream_t *s, const char *data, size_t len)
{
    if (s->state == STREAM_CLOSED || s->close_called || s->send_failed)
        return -1;
    if (len == 0)
        return 0;
    if (s->hooks.send_checked != NULL) {
        if (s->hooks.send_checked(s->ud, data, len) < 0) {
            s->send_failed = true;
            if (s->error_sent == NULL)
                s->error_sent = "internal-server-error";
            call_close(s);
            return -1;
        }
        return 0;
    }
    s->hooks.send(s->ud, data, len);
    return 0;
}

static void send_str(stream_t *s, const char *str)
{
    send_bytes(s, str, strlen(str));
}

static void send_buf(stream_t *s, const buf_t *b)
{
    send_bytes(s, b->data, b->len);
}

static void fail_stream(stream_t *s, const char *condition, const char *text);

/* Sends what was built in b, or — when building it ran out of memory
 * (rc < 0) — ends the stream with resource-constraint instead of sending a
 * truncated element. Frees b. Returns 0 when sent. */
static int send_built(stream_t *s, buf_t *b, int rc)
{
    if (rc < 0) {
        buf_free(b);
        fail_stream(s, "resource-constraint", NULL);
        return -1;
    }
    rc = send_bytes(s, b->data, b->len);
    buf_free(b);
    return rc;
}

static int send_tree(stream_t *s, const xml_node_t *el)
{
    buf_t b = BUF_INIT;
    return send_built(s, &b, xml_serialize(el, XML_NS_CLIENT, &b));
}

/* Our stream header (RFC 6120 §4.7): from = the served domain, to = the
 * client's JID when it gave one, a fresh unguessable id, version 1.0. */
static void send_header_s2s(stream_t *s, const char *to);

static void send_header(stream_t *s, const char *to)
{
    if (s->s2s) {
        send_header_s2s(s, to);
        return;
    }
    if (rand_id(s->id, sizeof(s->id), 128) < 0) {
        /* Without randomness there is no safe stream id; give up. */
        call_close(s);
        return;
    }
    xml_tree_t *t = xml_tree_new();
    xml_node_t *h =
        t != NULL ? xml_element_new(t, NULL, XML_NS_STREAMS, "stream") : NULL;
    buf_t b = BUF_INIT;
    if (h == NULL ||
        (s->domain != NULL &&
         xml_element_set_attr(t, h, NULL, "from", s->domain) < 0) ||
        (to != NULL && xml_element_set_attr(t, h, NULL, "to", to) < 0) ||
        xml_element_set_attr(t, h, NULL, "id", s->id) < 0 ||
        xml_element_set_attr(t, h, NULL, "version", "1.0") < 0 ||
        xml_element_set_attr(t, h, XML_NS_XML, "lang", s->lang) < 0 ||
        buf_append_str(&b, "<?xml version='1.0'?>") < 0 ||
        xml_serialize_header(h, XML_NS_CLIENT, &b) < 0) {
        xml_tree_free(t);
        buf_free(&b);
        call_close(s);
        return;
    }
    s->header_sent = true;
    send_buf(s, &b);
    buf_free(&b);
    xml_tree_free(t);
}

/* Ends the stream with an error (RFC 6120 §4.9.1): a header first if we
 * have not sent one, then the error, then our close tag. */
static void fail_stream(stream_t *s, const char *condition, const char *text)
{
    if (s->state == STREAM_CLOSING || s->state == STREAM_CLOSED)
        return;
    if (!s->header_sent)
        send_header(s, NULL);
    s->error_sent = condition;
    buf_t b = BUF_INIT;
    if (stream_write_error(&b, condition, text) < 0 ||
        buf_append_str(&b, "</stream:stream>") < 0) {
        /* Out of memory: the condition alone, from static text. */
        buf_free(&b);
        s->error_sent = "resource-constraint";
        send_str(
            s,
            "<stream:error><resource-constraint xmlns='" STREAM_NS_STREAMS_ERR
            "'/></stream:error></stream:stream>");
    } else {
        send_buf(s, &b);
        buf_free(&b);
    }
    if (s->state != STREAM_CLOSED)
        s->state = STREAM_CLOSING;
}

/* ---------------------------------------------------------- features */

static unsigned offered_mechs(const stream_t *s)
{
    unsigned m = s->cfg->mechs;
    bool cb = s->cb_exporter_len > 0 || s->cb_unique_len > 0;
    if (!s->tls) {
        /* RFC 6120 §13.9.4 and feature set 6-2: PLAIN only over TLS;
         * EXTERNAL needs a TLS client certificate. */
        m &= ~(1u << SASL_MECH_PLAIN | 1u << SASL_MECH_EXTERNAL);
    }
    if (!cb || !s->cfg->offer_plus)
        m &= ~(1u << SASL_MECH_SCRAM_SHA1_PLUS |
               1u << SASL_MECH_SCRAM_SHA256_PLUS);
    if (s->cert_name_count == 0)
        m &= ~(1u << SASL_MECH_EXTERNAL);
    return m;
}

/* RFC 6120 §5.3.1: TLS before SASL. After authentication STARTTLS is
 * refused (handle_starttls), so it is not offered either. */
static bool tls_pending(const stream_t *s)
{
    /* No STARTTLS inside direct TLS. */
    return !s->tls && !s->cfg->tls_direct && s->cfg->tls_available &&
           !s->authenticated;
}

static int offer_starttls(stream_t *s, const stream_feature_t *f, buf_t *b)
{
    (void)f;
    int rc = buf_append_str(b, "<starttls xmlns='" STREAM_NS_TLS "'>");
    if (s->cfg->tls_required)
        rc |= buf_append_str(b, "<required/>");
    return rc | buf_append_str(b, "</starttls>");
}

static int offer_mechanisms(stream_t *s, const stream_feature_t *f, buf_t *b)
{
    (void)f;
    unsigned m = offered_mechs(s);
    s->advertised_mechs = m;
    int rc = buf_append_str(b, "<mechanisms xmlns='" STREAM_NS_SASL "'>");
    for (int i = 0; i < SASL_MECH_COUNT; i++) {
        if (!(m & 1u << i))
            continue;
        rc |= buf_append_str(b, "<mechanism>");
        rc |= buf_append_str(b, sasl_mech_name((sasl_mech_t)i));
        rc |= buf_append_str(b, "</mechanism>");
    }
    return rc | buf_append_str(b, "</mechanisms>");
}

/* XEP-0440: the channel binding types we can do. */
static int offer_cb(stream_t *s, const stream_feature_t *f, buf_t *b)
{
    (void)f;
    if (!s->tls || (s->cb_exporter_len == 0 && s->cb_unique_len == 0))
        return 1;
    int rc = buf_append_str(b, "<sasl-channel-binding xmlns='" STREAM_NS_SASL_CB
                               "'>");
    if (s->cb_exporter_len > 0) {
        rc |= buf_append_str(b, "<channel-binding type='tls-exporter'/>");
        s->advertised_cb |= SASL_CB_TLS_EXPORTER;
    }
    if (s->cb_unique_len > 0) {
        rc |= buf_append_str(b, "<channel-binding type='tls-unique'/>");
        s->advertised_cb |= SASL_CB_TLS_UNIQUE;
    }
    return rc | buf_append_str(b, "</sasl-channel-binding>");
}

/* The RFC 3921 session feature is offered as optional (RFC 6121 dropped
 * it) for old clients that ask. */
static int offer_session(stream_t *s, const stream_feature_t *f, buf_t *b)
{
    (void)s;
    (void)f;
    return buf_append_str(b, "<session xmlns='" STREAM_NS_SESSION
                             "'><optional/></session>");
}

static void handle_starttls(stream_t *s, void *owner_ud,
                            const stream_feature_t *f, xml_tree_t *t);
static void handle_sasl(stream_t *s, void *owner_ud, const stream_feature_t *f,
                        xml_tree_t *t);

/* The built-in features, in the order they are offered. Bind and session
 * have no top-level elements: they are IQs (handle_iq_prebind,
 * handle_bound_iq). */
static const stream_feature_t builtin_features[] = {
    {STREAM_NS_TLS, "starttls", STREAM_FEAT_BEFORE_TLS, false, offer_starttls,
     handle_starttls, NULL},
    {STREAM_NS_SASL, "mechanisms", STREAM_FEAT_BEFORE_AUTH, false,
     offer_mechanisms, handle_sasl, NULL},
    {STREAM_NS_SASL_CB, "sasl-channel-binding", STREAM_FEAT_BEFORE_AUTH, false,
     offer_cb, NULL, NULL},
    {STREAM_NS_BIND, "bind", STREAM_FEAT_AFTER_AUTH, false, NULL, NULL, NULL},
    {STREAM_NS_SESSION, "session", STREAM_FEAT_AFTER_AUTH, false, offer_session,
     NULL, NULL},
};
enum { BUILTIN_COUNT = sizeof(builtin_features) / sizeof(builtin_features[0]) };

/* Which STREAM_FEAT_* bits apply to the features sent now. */
static unsigned feature_phase(const stream_t *s)
{
    if (s->authenticated)
        return s->bound ? 0 : STREAM_FEAT_AFTER_AUTH;
    unsigned when = 0;
    if (tls_pending(s))
        when |= STREAM_FEAT_BEFORE_TLS;
    /* RFC 6120 §5.3.1: when TLS is mandatory-to-negotiate, STARTTLS is the
     * only feature offered before it. */
    if (!(tls_pending(s) && s->cfg->tls_required))
        when |= STREAM_FEAT_BEFORE_AUTH;
    return when;
}

static int offer_feature(stream_t *s, const stream_feature_t *f, buf_t *b)
{
    if (f->offer != NULL)
        return f->offer(s, f, b);
    int rc = buf_append_str(b, "<");
    rc |= buf_append_str(b, f->name);
    rc |= buf_append_str(b, " xmlns='");
    rc |= xml_escape_attr(f->ns, strlen(f->ns), b);
    if (f->required)
        rc |= buf_append_str(b, "'><required/></") |
              buf_append_str(b, f->name) | buf_append_str(b, ">");
    else
        rc |= buf_append_str(b, "'/>");
    return rc;
}

static void send_features_s2s(stream_t *s);

static void send_features(stream_t *s)
{
    if (s->s2s) {
        send_features_s2s(s);
        return;
    }
    unsigned when = feature_phase(s);
    s->advertised_mechs = 0;
    s->advertised_cb = 0;
    buf_t b = BUF_INIT;
    int rc = buf_append_str(&b, "<stream:features>");
    for (size_t i = 0; i < BUILTIN_COUNT + s->cfg->feature_count; i++) {
        const stream_feature_t *f = i < BUILTIN_COUNT
                                        ? &builtin_features[i]
                                        : &s->cfg->features[i - BUILTIN_COUNT];
        if ((f->when & when) == 0)
            continue;
        size_t mark = b.len;
        int r = offer_feature(s, f, &b);
        if (r < 0)
            rc = -1;
        else if (r > 0)
            b.len = mark; /* nothing offered on this stream */
    }
    rc |= buf_append_str(&b, "</stream:features>");
    send_built(s, &b, rc);
}

/* ------------------------------------------------------------ header */

const char *stream_config_host(const stream_config_t *cfg, const char *domain)
{
    for (size_t i = 0; i < cfg->host_count; i++)
        if (strcmp(cfg->hosts[i], domain) == 0)
            return cfg->hosts[i];
    return NULL;
}

/* A language tag as RFC 5646 shapes it, loosely: letters, digits, '-'. */
static bool lang_ok(const char *l)
{
    size_t n = strlen(l);
    if (n == 0 || n > 35)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = l[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

static void on_header(void *ud, xml_tree_t *t)
{
    stream_t *s = ud;
    const xml_node_t *h = t->root;
    if (s->state != STREAM_WAIT_HEADER) {
        xml_tree_free(t);
        return;
    }
    s->state = STREAM_OPEN;

    const char *lang = xml_element_attr(h, XML_NS_XML, "lang");
    if (!s->authenticated && !s->tls) {
        s->lang_given = lang != NULL && lang_ok(lang);
        snprintf(s->lang, sizeof(s->lang), "%s", s->lang_given ? lang : "en");
    }

    /* The client's JID, echoed as 'to' (RFC 6120 §4.7.2). */
    char *client_jid = NULL;
    const char *from = xml_element_attr(h, NULL, "from");
    if (from != NULL && s->s2s) {
        /* A server's domain (RFC 6120 §4.7.1): kept for EXTERNAL. */
        char d[JID_PART_BUF];
        if (jid_prepare_domain(from, strlen(from), 0, d, NULL) != JID_OK) {
            xml_tree_free(t);
            fail_stream(s, "invalid-from", "the 'from' is not a domain");
            return;
        }
        free(s->peer);
        s->peer = strdup(d);
        client_jid = strdup(d);
        if (s->peer == NULL || client_jid == NULL) {
            free(client_jid);
            xml_tree_free(t);
            fail_stream(s, "resource-constraint", NULL);
            return;
        }
    } else if (from != NULL) {
        jid_t j;
        if (jid_parse(from, strlen(from), 0, &j) != JID_OK) {
            xml_tree_free(t);
            fail_stream(s, "invalid-from", "the 'from' is not a valid JID");
            return;
        }
        client_jid = jid_to_string(&j, false);
        jid_clear(&j);
    }

    /* 'to' names the service (RFC 6120 §4.7.2 host-unknown). Without one,
     * a server with a single domain serves that. */
    const char *to = xml_element_attr(h, NULL, "to");
    char domain[JID_PART_BUF];
    size_t dlen = 0;
    const char *host = NULL;
    const char *cond = NULL;
    if (to == NULL) {
        if (s->cfg->host_count == 1)
            host = s->cfg->hosts[0];
        else
            cond = "host-unknown";
    } else if (jid_prepare_domain(to, strlen(to), 0, domain, &dlen) != JID_OK ||
               (host = stream_config_host(s->cfg, domain)) == NULL) {
        cond = "host-unknown";
    }
    if (cond == NULL && s->domain != NULL && s->domain != host)
        cond = "host-unknown"; /* a restart must name the same service */
    if (cond == NULL)
        s->domain = host;

    /* Starling speaks XMPP 1.0 only (RFC 6120 §4.7.5): no version means a
     * pre-1.0 peer; a higher major version is one we do not know. */
    const char *version = xml_element_attr(h, NULL, "version");
    if (cond == NULL) {
        unsigned major = 0;
        int used = 0;
        if (version == NULL || sscanf(version, "%u.%*u%n", &major, &used) < 1 ||
            used != (int)strlen(version) || major != 1)
            cond = "unsupported-version";
    }
    xml_tree_free(t);
    if (cond != NULL) {
        /* The error goes inside a header of ours (RFC 6120 §4.9.1.1). */
        send_header(s, client_jid);
        free(client_jid);
        fail_stream(s, cond, NULL);
        return;
    }
    send_header(s, client_jid);
    free(client_jid);
    if (s->state == STREAM_OPEN)
        send_features(s);
}

/* ------------------------------------------------------------ STARTTLS */

static void handle_starttls(stream_t *s, void *owner_ud,
                            const stream_feature_t *f, xml_tree_t *t)
{
    (void)owner_ud;
    (void)f;
    bool starttls = strcmp(t->root->name, "starttls") == 0;
    xml_tree_free(t);
    if (!starttls) {
        fail_stream(
            s,
            tls_pending(s) && s->cfg->tls_required ? "policy-violation"
                                                   : "unsupported-stanza-type",
            tls_pending(s) && s->cfg->tls_required ? "STARTTLS is required"
                                                   : NULL);
        return;
    }
    if (s->tls || !s->cfg->tls_available || s->authenticated) {
        /* RFC 6120 §5.4.2.2: failure, then the stream is closed. */
        send_str(s, "<failure xmlns='" STREAM_NS_TLS "'/></stream:stream>");
        s->state = STREAM_CLOSING;
        return;
    }
    /* RFC 6120 §5.4.2.3: no whitespace, nothing else after <proceed/>. */
    send_str(s, "<proceed xmlns='" STREAM_NS_TLS "'/>");
    if (s->state != STREAM_OPEN)
        return; /* the <proceed/> could not be queued */
    s->state = STREAM_TLS;
    s->header_sent = false;
    if (s->in_feed) {
        /* The reset waits for stream_tls_done(): bytes after <starttls/>
         * are dropped, and nothing is parsed until TLS is up. */
        xml_parser_stop(s->parser);
        s->need_reset = true;
    }
    s->hooks.start_tls(s->ud);
}

/* ---------------------------------------------------------------- SASL */

static void restart_stream(stream_t *s)
{
    s->state = STREAM_WAIT_HEADER;
    s->header_sent = false;
    if (stream_parser_restart(s->parser, s->in_feed, &s->need_reset) < 0) {
        call_close(s);
        return;
    }
    /* Whatever was queued belonged to the old stream. */
    while (s->queue_head != NULL) {
        struct queued *q = s->queue_head;
        s->queue_head = q->next;
        xml_tree_free(q->tree);
        free(q);
    }
    s->queue_tail = NULL;
    s->queue_len = 0;
}

static void sasl_done(stream_t *s)
{
    sasl_server_free(s->sasl);
    s->sasl = NULL;
    s->sasl_expect_first = false;
}

/* Sends a SASL failure answer, then applies RFC 6120 §6.4.5: a
 * configurable number of retries, then a stream error. */
static void sasl_failure_out(stream_t *s, buf_t *answer)
{
    send_buf(s, answer);
    buf_free(answer);
    unsigned max =
        s->cfg->max_auth_failures < 2 ? 2 : s->cfg->max_auth_failures;
    if (s->auth_failures >= max)
        fail_stream(s, "policy-violation",
                    "too many failed authentication attempts");
}

static void sasl_fail(stream_t *s, int result)
{
    const char *cond = sasl_condition(result);
    if (cond == NULL)
        cond = "not-authorized";
    sasl_done(s);
    buf_t b = BUF_INIT;
    int rc = buf_append_str(&b, "<failure xmlns='" STREAM_NS_SASL "'><");
    rc |= buf_append_str(&b, cond);
    rc |= buf_append_str(&b, "/></failure>");
    if (rc != 0) {
        buf_free(&b);
        fail_stream(s, "resource-constraint", NULL);
        return;
    }
    if (result == SASL_F_ABORTED) {
        /* RFC 6120 §6.4.4: an abort is not a failed attempt. */
        send_buf(s, &b);
        buf_free(&b);
        return;
    }
    s->auth_failures++;
    unsigned delay =
        s->hooks.auth_failed != NULL ? s->hooks.auth_failed(s->ud) : 0;
    if (delay > 0) {
        /* Hold the answer, and everything the client sends meanwhile (a
         * pipelined guess waits its turn). */
        buf_free(&s->held_failure);
        s->held_failure = b;
        s->waiting = WAIT_DELAY;
        return;
    }
    sasl_failure_out(s, &b);
}

/* Sends <success/> or <challenge/> with base64 data (RFC 6120 §6.4.2: an
 * element without text when there is no data). Returns 0, or -1 after
 * failing the stream for lack of memory. */
static int send_sasl_data(stream_t *s, const char *name, const buf_t *data)
{
    buf_t b = BUF_INIT;
    char *enc = NULL;
    int rc = buf_append_str(&b, "<");
    rc |= buf_append_str(&b, name);
    rc |= buf_append_str(&b, " xmlns='" STREAM_NS_SASL "'");
    if (data->len == 0) {
        rc |= buf_append_str(&b, "/>");
    } else {
        size_t cap = base64_encoded_size(data->len);
        enc = malloc(cap);
        if (enc == NULL ||
            base64_encode(data->data, data->len, BASE64_STD, enc, cap) < 0)
            rc = -1;
        else
            rc |= buf_append_str(&b, ">") | buf_append_str(&b, enc) |
                  buf_append_str(&b, "</") | buf_append_str(&b, name) |
                  buf_append_str(&b, ">");
    }
    free(enc);
    if (rc != 0) {
        buf_free(&b);
        fail_stream(s, "resource-constraint", NULL);
        return -1;
    }
    send_buf(s, &b);
    buf_free(&b);
    return 0;
}

static void sasl_succeed(stream_t *s, const buf_t *extra)
{
    const char *user = sasl_server_username(s->sasl);
    jid_t j;
    char tmp[JID_FORMAT_BUF];
    snprintf(tmp, sizeof(tmp), "%s@%s", user != NULL ? user : "", s->domain);
    if (user == NULL || jid_parse(tmp, strlen(tmp), 0, &j) != JID_OK) {
        sasl_fail(s, SASL_F_NOT_AUTHORIZED);
        return;
    }
    jid_clear(&s->user);
    s->user = j;
    sasl_done(s);
    if (send_sasl_data(s, "success", extra) < 0)
        return;
    s->authenticated = true;
    xml_parser_set_limits(s->parser, &s->cfg->limits);
    /* RFC 6120 §6.4.6: the client opens a new stream. */
    restart_stream(s);
}

/* Acts on a step's result. */
static void sasl_handle(stream_t *s, int rc, const buf_t *out)
{
    switch (rc) {
    case SASL_SUCCESS:
        sasl_succeed(s, out);
        return;
    case SASL_CHALLENGE:
        send_sasl_data(s, "challenge", out);
        return;
    case SASL_NEED_CREDENTIALS:
        s->waiting = WAIT_ACCOUNT;
        s->hooks.lookup_account(s->ud, s->domain, sasl_server_authcid(s->sasl));
        return;
    case SASL_NEED_PASSWORD_CHECK:
        s->waiting = WAIT_PASSWORD;
        s->hooks.check_password(s->ud, s->sasl);
        return;
    default:
        sasl_fail(s, rc);
        return;
    }
}

static void sasl_step(stream_t *s, const unsigned char *in, size_t len)
{
    buf_t out = BUF_INIT;
    int rc = sasl_server_step(s->sasl, in, len, &out);
    sasl_handle(s, rc, &out);
    buf_free(&out);
}

static sasl_server_params_t sasl_params(const stream_t *s)
{
    sasl_server_params_t p = {
        .domain = s->domain,
        .advertised_mechs = s->advertised_mechs,
        .advertised_cb = s->advertised_cb,
        .cb_exporter = s->cb_exporter_len ? s->cb_exporter : NULL,
        .cb_exporter_len = s->cb_exporter_len,
        .cb_unique = s->cb_unique_len ? s->cb_unique : NULL,
        .cb_unique_len = s->cb_unique_len,
        .tls = s->tls,
        .cert_names = (const char *const *)s->cert_names,
        .cert_name_count = s->cert_name_count,
        .server_secret = s->cfg->server_secret,
        .server_secret_len = s->cfg->server_secret_len,
        .scram_iterations = s->cfg->scram_iterations,
    };
    return p;
}

static void handle_sasl(stream_t *s, void *owner_ud, const stream_feature_t *f,
                        xml_tree_t *t)
{
    (void)owner_ud;
    (void)f;
    const xml_node_t *el = t->root;
    if (s->authenticated) {
        xml_tree_free(t);
        fail_stream(s, "policy-violation", "already authenticated");
        return;
    }
    if (strcmp(el->name, "abort") == 0) {
        xml_tree_free(t);
        sasl_fail(s, SASL_F_ABORTED);
        return;
    }
    unsigned char *data = NULL;
    bool present = false;
    long len = stream_sasl_decode(t, t->root, &data, &present);

    if (strcmp(el->name, "auth") == 0) {
        const char *name = xml_element_attr(el, NULL, "mechanism");
        int m = name != NULL ? sasl_mech_from_name(name) : -1;
        xml_tree_free(t);
        if (s->sasl != NULL) {
            free(data);
            sasl_fail(s, SASL_F_MALFORMED_REQUEST);
            return;
        }
        if (!s->tls && s->cfg->tls_available && s->cfg->tls_required) {
            free(data);
            sasl_fail(s, SASL_F_ENCRYPTION_REQUIRED);
            return;
        }
        if (m < 0 || !(s->advertised_mechs & 1u << m)) {
            free(data);
            /* PLAIN is known but withheld without TLS (RFC 6120 §6.5.4). */
            sasl_fail(s, m == SASL_MECH_PLAIN && !s->tls
                             ? SASL_F_ENCRYPTION_REQUIRED
                             : SASL_F_INVALID_MECHANISM);
            return;
        }
        if (len < 0) {
            sasl_fail(s, SASL_F_INCORRECT_ENCODING);
            return;
        }
        sasl_server_params_t p = sasl_params(s);
        s->mech = (sasl_mech_t)m;
        s->sasl = sasl_server_new(s->mech, &p);
        if (s->sasl == NULL) {
            free(data);
            sasl_fail(s, SASL_F_TEMPORARY_AUTH_FAILURE);
            return;
        }
        if (!present && s->mech != SASL_MECH_DIGEST_MD5) {
            /* No initial response: an empty challenge asks for it. */
            s->sasl_expect_first = true;
            send_str(s, "<challenge xmlns='" STREAM_NS_SASL "'/>");
            return;
        }
        sasl_step(s, data, (size_t)len);
        free(data);
        return;
    }
    if (strcmp(el->name, "response") == 0) {
        xml_tree_free(t);
        if (s->sasl == NULL) {
            free(data);
            sasl_fail(s, SASL_F_MALFORMED_REQUEST);
            return;
        }
        if (len < 0) {
            sasl_fail(s, SASL_F_INCORRECT_ENCODING);
            return;
        }
        s->sasl_expect_first = false;
        sasl_step(s, data, (size_t)len);
        free(data);
        return;
    }
    xml_tree_free(t);
    free(data);
    fail_stream(s, "unsupported-stanza-type", NULL);
}

/* ------------------------------------------------------------- binding */

/* Answers an IQ from the client with an error (RFC 6120 §8.3). The reply
 * carries no 'from': before binding the client has no JID to compare it
 * with, and RFC 6120 §8.1.2.1 lets the server leave it out. */
static void iq_error(stream_t *s, const xml_node_t *iq, const char *type,
                     const char *condition)
{
    xml_tree_t *r = stanza_error_reply(iq, type, condition, NULL);
    if (r == NULL) {
        fail_stream(s, "resource-constraint", NULL);
        return;
    }
    send_tree(s, r->root);
    xml_tree_free(r);
}

static void handle_bind(stream_t *s, xml_tree_t *t, const xml_node_t *bind)
{
    const xml_node_t *res = xml_element_child(bind, STREAM_NS_BIND, "resource");
    char prepared[JID_PART_BUF];
    const char *want = NULL;
    if (res != NULL) {
        const char *txt = xml_element_text(t, res);
        if (txt == NULL) {
            xml_tree_free(t);
            fail_stream(s, "resource-constraint", NULL);
            return;
        }
        size_t plen = 0;
        if (txt[0] != '\0') {
            /* RFC 6120 §7.7.2.1: a resource Resourceprep refuses. */
            if (jid_prepare_resource(txt, strlen(txt), 0, prepared, &plen) !=
                JID_OK) {
                iq_error(s, t->root, "modify", "bad-request");
                xml_tree_free(t);
                return;
            }
            want = prepared;
        }
    }
    /* Kept for the answer, which echoes the id (RFC 6120 §8.2.3). */
    xml_tree_free(s->bind_req);
    s->bind_req = t;
    s->waiting = WAIT_BIND;
    s->hooks.bind(s->ud, &s->user, want);
}

/* --------------------------------------------------------------- stanzas */

static bool is_stanza_name(const char *n)
{
    return strcmp(n, "message") == 0 || strcmp(n, "presence") == 0 ||
           strcmp(n, "iq") == 0;
}

/* RFC 6120 §8.1.2.1: the server validates or stamps 'from' on what a
 * client sends: absent, it becomes the full JID; present, it must be the
 * full JID or the bare JID of this session, else invalid-from. */
static bool stamp_from(stream_t *s, xml_tree_t *t)
{
    xml_node_t *el = t->root;
    const char *from = xml_element_attr(el, NULL, "from");
    char full[JID_FORMAT_BUF];
    if (from != NULL) {
        jid_t j;
        if (jid_parse(from, strlen(from), 0, &j) != JID_OK)
            return false;
        bool ok = jid_equal(&j, &s->full) ||
                  (jid_is_bare(&j) && jid_bare_equal(&j, &s->full));
        if (ok && jid_format(&j, false, full, sizeof(full)) >= 0)
            ok = xml_element_set_attr(t, el, NULL, "from", full) == 0;
        jid_clear(&j);
        return ok;
    }
    if (jid_format(&s->full, false, full, sizeof(full)) < 0)
        return false;
    return xml_element_set_attr(t, el, NULL, "from", full) == 0;
}

static void handle_stanza(stream_t *s, xml_tree_t *t)
{
    xml_node_t *el = t->root;
    if (!stamp_from(s, t)) {
        xml_tree_free(t);
        fail_stream(s, "invalid-from", NULL);
        return;
    }
    /* RFC 6120 §8.1.5: an outbound stanza without xml:lang gets the
     * stream's language. */
    if (s->lang_given && xml_element_attr(el, XML_NS_XML, "lang") == NULL)
        xml_element_set_attr(t, el, XML_NS_XML, "lang", s->lang);
    s->hooks.stanza(s->ud, t);
}

static void handle_iq_prebind(stream_t *s, xml_tree_t *t)
{
    const xml_node_t *el = t->root;
    const char *type = xml_element_attr(el, NULL, "type");
    const char *id = xml_element_attr(el, NULL, "id");
    const xml_node_t *bind = xml_element_child(el, STREAM_NS_BIND, "bind");
    if (bind != NULL && type != NULL && strcmp(type, "set") == 0 &&
        id != NULL && xml_element_count_children(el) == 1) {
        handle_bind(s, t, bind);
        return;
    }
    xml_tree_free(t);
    /* RFC 6120 §7.1: no stanzas before a resource is bound. */
    fail_stream(s, "not-authorized", "bind a resource first");
}

/* A stanza the stream answers itself once bound: through the owner's
 * send_stanza when it has one (stream management counts it), else as
 * negotiation bytes. Frees b. */
static void send_bound_stanza(stream_t *s, buf_t *b, int rc)
{
    if (rc < 0 || s->hooks.send_stanza == NULL) {
        send_built(s, b, rc);
        return;
    }
    if (s->state == STREAM_OPEN && !s->close_called)
        s->hooks.send_stanza(s->ud, b->data, b->len);
    buf_free(b);
}

static void handle_bound_iq(stream_t *s, xml_tree_t *t)
{
    const xml_node_t *el = t->root;
    const char *type = xml_element_attr(el, NULL, "type");
    const char *id = xml_element_attr(el, NULL, "id");
    const char *to = xml_element_attr(el, NULL, "to");
    bool to_server = to == NULL || strcmp(to, s->domain) == 0;
    if (to_server && type != NULL && strcmp(type, "set") == 0 && id != NULL &&
        xml_element_count_children(el) == 1) {
        if (xml_element_child(el, STREAM_NS_SESSION, "session") != NULL) {
            /* RFC 3921 session establishment: a no-op kept for old
             * clients. */
            buf_t b = BUF_INIT;
            int rc = buf_append_str(&b, "<iq type='result' id='");
            rc |= xml_escape_attr(id, strlen(id), &b);
            rc |= buf_append_str(&b, "'/>");
            send_bound_stanza(s, &b, rc);
            xml_tree_free(t);
            return;
        }
        if (xml_element_child(el, STREAM_NS_BIND, "bind") != NULL) {
            /* Binding a second resource to one stream (RFC 3920bis §8.5)
             * did not make it into RFC 6120; refuse it plainly. */
            xml_tree_t *r =
                stanza_error_reply(el, "cancel", "not-allowed", NULL);
            buf_t b = BUF_INIT;
            send_bound_stanza(
                s, &b,
                r != NULL ? xml_serialize(r->root, XML_NS_CLIENT, &b) : -1);
            xml_tree_free(r);
            xml_tree_free(t);
            return;
        }
    }
    handle_stanza(s, t);
}

/* The feature among entries [from, to) of builtin + configured whose
 * namespace is el's and that handles top-level elements, or NULL. */
static const stream_feature_t *
feature_for(const stream_t *s, const xml_node_t *el, size_t from, size_t to)
{
    if (el->ns == NULL)
        return NULL;
    for (size_t i = from; i < to; i++) {
        const stream_feature_t *f = i < BUILTIN_COUNT
                                        ? &builtin_features[i]
                                        : &s->cfg->features[i - BUILTIN_COUNT];
        if (f->handle != NULL && f->ns != NULL && strcmp(f->ns, el->ns) == 0)
            return f;
    }
    return NULL;
}

static void process_s2s(stream_t *s, xml_tree_t *t);

/* A stanza in the stream's content namespace (jabber:client, or
 * jabber:server on s2s); otherwise the stream ends (invalid-namespace for
 * the other one, unsupported-stanza-type for anything else) and t is
 * freed. */
static bool stanza_ns_ok(stream_t *s, xml_tree_t *t)
{
    const xml_node_t *el = t->root;
    const char *want = s->s2s ? XML_NS_SERVER : XML_NS_CLIENT;
    const char *other = s->s2s ? XML_NS_CLIENT : XML_NS_SERVER;
    bool stanza = is_stanza_name(el->name);
    if (stanza && el->ns != NULL && strcmp(el->ns, other) == 0) {
        xml_tree_free(t);
        fail_stream(s, "invalid-namespace",
                    s->s2s ? "jabber:client on a server stream"
                           : "jabber:server on a client stream");
        return false;
    }
    if (!stanza || el->ns == NULL || strcmp(el->ns, want) != 0) {
        xml_tree_free(t);
        fail_stream(s, "unsupported-stanza-type", NULL);
        return false;
    }
    return true;
}

static void process_element(stream_t *s, xml_tree_t *t)
{
    const xml_node_t *el = t->root;
    if (s->state != STREAM_OPEN) {
        xml_tree_free(t);
        return;
    }
    if (s->waiting != WAIT_NONE) {
        if (s->queue_len >= QUEUE_MAX) {
            xml_tree_free(t);
            fail_stream(s, "policy-violation", "too many pipelined elements");
            return;
        }
        struct queued *q = malloc(sizeof(*q));
        if (q == NULL) {
            xml_tree_free(t);
            fail_stream(s, "resource-constraint", NULL);
            return;
        }
        q->next = NULL;
        q->tree = t;
        if (s->queue_tail != NULL)
            s->queue_tail->next = q;
        else
            s->queue_head = q;
        s->queue_tail = q;
        s->queue_len++;
        return;
    }

    if (s->s2s) {
        process_s2s(s, t);
        return;
    }
    /* Top-level elements of the built-in features (STARTTLS, SASL) come
     * first: they are what negotiation is made of. */
    const stream_feature_t *f = feature_for(s, el, 0, BUILTIN_COUNT);
    if (f != NULL) {
        f->handle(s, s->ud, f, t);
        return;
    }
    if (!s->tls && s->cfg->tls_available && s->cfg->tls_required) {
        xml_tree_free(t);
        fail_stream(s, "policy-violation", "STARTTLS is required");
        return;
    }
    /* The owner's features: their handlers check the state they need. */
    f = feature_for(s, el, BUILTIN_COUNT,
                    BUILTIN_COUNT + s->cfg->feature_count);
    if (f != NULL) {
        f->handle(s, s->ud, f, t);
        return;
    }
    if (!stanza_ns_ok(s, t))
        return;
    if (!s->authenticated && strcmp(el->name, "iq") == 0 &&
        s->hooks.preauth_iq != NULL) {
        /* XEP-0077: registration (and what goes with it) before SASL. */
        if (++s->preauth_iqs > PREAUTH_IQ_MAX) {
            xml_tree_free(t);
            fail_stream(s, "policy-violation",
                        "too many requests before authentication");
            return;
        }
        s->waiting = WAIT_PREAUTH;
        if (s->hooks.preauth_iq(s->ud, s->domain, t))
            return;
        s->waiting = WAIT_NONE;
        xml_tree_free(t);
        fail_stream(s, "not-authorized", "authenticate first");
        return;
    }
    if (!s->authenticated) {
        xml_tree_free(t);
        fail_stream(s, "not-authorized", "authenticate first");
        return;
    }
    if (!s->bound) {
        if (strcmp(el->name, "iq") == 0)
            handle_iq_prebind(s, t);
        else {
            xml_tree_free(t);
            fail_stream(s, "not-authorized", "bind a resource first");
        }
        return;
    }
    s->stanzas_in++;
    if (strcmp(el->name, "iq") == 0)
        handle_bound_iq(s, t);
    else
        handle_stanza(s, t);
}

static void peer_closed(stream_t *s)
{
    /* RFC 6120 §4.4: answer the client's close tag with ours (unless we
     * closed first), then end the TCP connection. */
    if (s->state == STREAM_OPEN || s->state == STREAM_WAIT_HEADER)
        send_str(s, "</stream:stream>");
    call_close(s);
}

static void process_queue(stream_t *s)
{
    while (s->waiting == WAIT_NONE && s->queue_head != NULL &&
           s->state == STREAM_OPEN) {
        struct queued *q = s->queue_head;
        s->queue_head = q->next;
        if (s->queue_head == NULL)
            s->queue_tail = NULL;
        s->queue_len--;
        xml_tree_t *t = q->tree;
        free(q);
        if (t == NULL)
            peer_closed(s);
        else
            process_element(s, t);
    }
}

/* ----------------------------------------------------- server-to-server */

/* Our header on an s2s stream (RFC 6120 §4.7, XEP-0220 §2.1): jabber:server
 * with the dialback namespace declared, from = our domain, to = the peer's
 * domain when it gave one. Written by hand: the db prefix must be declared
 * on the root for the peer's parser. */
static void send_header_s2s(stream_t *s, const char *to)
{
    if (rand_id(s->id, sizeof(s->id), 128) < 0) {
        call_close(s);
        return;
    }
    buf_t b = BUF_INIT;
    int rc = buf_append_str(
        &b, "<?xml version='1.0'?><stream:stream xmlns='" XML_NS_SERVER
            "' xmlns:stream='" XML_NS_STREAMS "' xmlns:db='" STREAM_NS_DIALBACK
            "'");
    if (s->domain != NULL) {
        rc |= buf_append_str(&b, " from='");
        rc |= xml_escape_attr(s->domain, strlen(s->domain), &b);
        rc |= buf_append_str(&b, "'");
    }
    if (to != NULL) {
        rc |= buf_append_str(&b, " to='");
        rc |= xml_escape_attr(to, strlen(to), &b);
        rc |= buf_append_str(&b, "'");
    }
    rc |= buf_append_str(&b, " id='");
    rc |= buf_append_str(&b, s->id);
    rc |= buf_append_str(&b, "' version='1.0' xml:lang='en'>");
    if (rc != 0) {
        buf_free(&b);
        call_close(s);
        return;
    }
    s->header_sent = true;
    send_buf(s, &b);
    buf_free(&b);
}

static bool external_possible(stream_t *s)
{
    return s->tls && s->peer != NULL && s->hooks.peer_cert_valid != NULL &&
           s->hooks.peer_cert_valid(s->ud, s->peer);
}

static void send_features_s2s(stream_t *s)
{
    buf_t b = BUF_INIT;
    int rc = buf_append_str(&b, "<stream:features>");
    if (tls_pending(s))
        rc |= offer_starttls(s, NULL, &b);
    /* RFC 6120 §5.3.1: only STARTTLS while TLS is required and missing. */
    if (!(tls_pending(s) && s->cfg->tls_required)) {
        if (!s->authenticated && external_possible(s))
            rc |= buf_append_str(&b, "<mechanisms xmlns='" STREAM_NS_SASL
                                     "'><mechanism>EXTERNAL</mechanism>"
                                     "</mechanisms>");
        /* XEP-0220 §2.1: also after EXTERNAL, for more domains. */
        if (s->cfg->dialback)
            rc |= buf_append_str(&b, "<dialback xmlns='" STREAM_NS_DIALBACK_FEAT
                                     "'><errors/></dialback>");
    }
    rc |= buf_append_str(&b, "</stream:features>");
    send_built(s, &b, rc);
}

static void s2s_sasl_failure(stream_t *s, const char *condition)
{
    buf_t b = BUF_INIT;
    int rc = buf_append_str(&b, "<failure xmlns='" STREAM_NS_SASL "'><");
    rc |= buf_append_str(&b, condition);
    rc |= buf_append_str(&b, "/></failure>");
    send_built(s, &b, rc);
    if (++s->auth_failures >= 2)
        fail_stream(s, "policy-violation", "SASL EXTERNAL failed twice");
}

/* XEP-0178 §2: SASL EXTERNAL for a server, with an authorization identity
 * that is empty, "=" or the header's 'from'. */
static void handle_sasl_s2s(stream_t *s, xml_tree_t *t)
{
    const xml_node_t *el = t->root;
    if (strcmp(el->name, "auth") != 0 || s->authenticated) {
        bool abort_ = strcmp(el->name, "abort") == 0;
        xml_tree_free(t);
        if (abort_ && !s->authenticated)
            s2s_sasl_failure(s, "aborted");
        else
            fail_stream(s, "policy-violation", "unexpected SASL element");
        return;
    }
    const char *mech = xml_element_attr(el, NULL, "mechanism");
    if (mech == NULL || strcmp(mech, "EXTERNAL") != 0 ||
        !external_possible(s)) {
        const char *cond = mech == NULL || strcmp(mech, "EXTERNAL") != 0
                               ? "invalid-mechanism"
                               : "not-authorized";
        xml_tree_free(t);
        s2s_sasl_failure(s, cond);
        return;
    }
    unsigned char *authzid = NULL;
    long n = stream_sasl_decode(t, el, &authzid, NULL);
    xml_tree_free(t);
    if (n < 0) {
        s2s_sasl_failure(s, "incorrect-encoding");
        return;
    }
    bool ok = true;
    if (n > 0) {
        char d[JID_PART_BUF];
        ok = memchr(authzid, '\0', (size_t)n) == NULL &&
             jid_prepare_domain((const char *)authzid, (size_t)n, 0, d, NULL) ==
                 JID_OK &&
             strcmp(d, s->peer) == 0;
    }
    free(authzid);
    if (!ok) {
        s2s_sasl_failure(s, "invalid-authzid");
        return;
    }
    s->external = strdup(s->peer);
    if (s->external == NULL) {
        fail_stream(s, "resource-constraint", NULL);
        return;
    }
    send_str(s, "<success xmlns='" STREAM_NS_SASL "'/>");
    s->authenticated = true;
    xml_parser_set_limits(s->parser, &s->cfg->limits);
    restart_stream(s);
}

static struct s2s_pair *pair_find(const stream_t *s, const char *from,
                                  const char *to)
{
    for (size_t i = 0; i < s->npairs; i++)
        if (strcmp(s->pairs[i].from, from) == 0 &&
            strcmp(s->pairs[i].to, to) == 0)
            return &s->pairs[i];
    return NULL;
}

/* The pair, added when new; NULL when out of room or memory. */
static struct s2s_pair *pair_get(stream_t *s, const char *from, const char *to)
{
    struct s2s_pair *p = pair_find(s, from, to);
    if (p != NULL || s->npairs >= S2S_PAIRS_MAX)
        return p;
    struct s2s_pair *v = realloc(s->pairs, (s->npairs + 1) * sizeof(*v));
    if (v == NULL)
        return NULL;
    s->pairs = v;
    p = &v[s->npairs];
    p->from = strdup(from);
    p->to = strdup(to);
    p->valid = false;
    if (p->from == NULL || p->to == NULL) {
        free(p->from);
        free(p->to);
        return NULL;
    }
    s->npairs++;
    return p;
}

bool stream_s2s_authorized(const stream_t *s, const char *from_domain,
                           const char *to_domain)
{
    if (s->external != NULL && strcmp(s->external, from_domain) == 0 &&
        stream_config_host(s->cfg, to_domain) != NULL)
        return true;
    const struct s2s_pair *p = pair_find(s, from_domain, to_domain);
    return p != NULL && p->valid;
}

const char *stream_peer_domain(const stream_t *s)
{
    return s->peer;
}

/* <db:NAME from to [id] type='TYPE'>[<error type='cancel'><COND/></error>]
 * (XEP-0220 §2.4, §4). */
static void send_db(stream_t *s, const char *name, const char *from,
                    const char *to, const char *id, const char *type,
                    const char *error)
{
    buf_t b = BUF_INIT;
    int rc = buf_append_str(&b, "<db:");
    rc |= buf_append_str(&b, name);
    rc |= buf_append_str(&b, " xmlns:db='" STREAM_NS_DIALBACK "' from='");
    rc |= xml_escape_attr(from, strlen(from), &b);
    rc |= buf_append_str(&b, "' to='");
    rc |= xml_escape_attr(to, strlen(to), &b);
    if (id != NULL) {
        rc |= buf_append_str(&b, "' id='");
        rc |= xml_escape_attr(id, strlen(id), &b);
    }
    rc |= buf_append_str(&b, "' type='");
    rc |= buf_append_str(&b, type);
    if (error == NULL) {
        rc |= buf_append_str(&b, "'/>");
    } else {
        rc |= buf_append_str(&b, "'><error type='cancel'><");
        rc |= buf_append_str(&b, error);
        rc |=
            buf_append_str(&b, " xmlns='" STREAM_NS_STANZAS "'/></error></db:");
        rc |= buf_append_str(&b, name);
        rc |= buf_append_str(&b, ">");
    }
    send_built(s, &b, rc);
}

/* A domain attribute of a dialback element, nameprep'd into d. */
static bool db_domain(const char *v, char d[JID_PART_BUF])
{
    return v != NULL && v[0] != '\0' &&
           jid_prepare_domain(v, strlen(v), 0, d, NULL) == JID_OK;
}

/* XEP-0220: <db:result/> (a request to be checked) and <db:verify/> (a
 * question about a key of ours). */
static void handle_dialback(stream_t *s, xml_tree_t *t)
{
    const xml_node_t *el = t->root;
    bool result = strcmp(el->name, "result") == 0;
    bool verify = strcmp(el->name, "verify") == 0;
    if (!s->cfg->dialback || (!result && !verify) ||
        xml_element_attr(el, NULL, "type") != NULL) {
        /* Typed elements are answers: they belong on our outgoing
         * streams, never here. */
        xml_tree_free(t);
        fail_stream(s, "unsupported-stanza-type", NULL);
        return;
    }
    char from[JID_PART_BUF], to[JID_PART_BUF];
    const char *key = xml_element_text(t, el);
    const char *id = xml_element_attr(el, NULL, "id");
    if (!db_domain(xml_element_attr(el, NULL, "from"), from) ||
        !db_domain(xml_element_attr(el, NULL, "to"), to) || key == NULL ||
        key[0] == '\0' || (verify && (id == NULL || id[0] == '\0'))) {
        xml_tree_free(t);
        fail_stream(s, "improper-addressing",
                    "dialback needs 'from', 'to' and a key");
        return;
    }
    if (stream_config_host(s->cfg, to) == NULL) {
        /* XEP-0220 §2.4: not a domain of ours. */
        send_db(s, el->name, to, from, verify ? id : NULL, "error",
                "item-not-found");
        xml_tree_free(t);
        return;
    }
    if (verify) {
        s->hooks.dialback_verify(s->ud, from, to, id, key);
        xml_tree_free(t);
        return;
    }
    struct s2s_pair *p = pair_get(s, from, to);
    if (p == NULL) {
        xml_tree_free(t);
        fail_stream(s, "resource-constraint", "too many dialback requests");
        return;
    }
    s->hooks.dialback_result(s->ud, from, to, key);
    xml_tree_free(t);
}

void stream_dialback_result(stream_t *s, const char *from, const char *to,
                            const char *condition)
{
    if (s->state != STREAM_OPEN)
        return;
    struct s2s_pair *p = pair_find(s, from, to);
    if (p == NULL)
        return;
    if (condition == NULL) {
        if (!s->authenticated && s->external == NULL)
            xml_parser_set_limits(s->parser, &s->cfg->limits);
        p->valid = true;
        send_db(s, "result", to, from, NULL, "valid", NULL);
    } else if (strcmp(condition, "invalid") == 0) {
        p->valid = false;
        send_db(s, "result", to, from, NULL, "invalid", NULL);
    } else {
        p->valid = false;
        send_db(s, "result", to, from, NULL, "error", condition);
    }
}

void stream_dialback_verify_done(stream_t *s, const char *from, const char *to,
                                 const char *id, bool valid)
{
    if (s->state == STREAM_OPEN)
        send_db(s, "verify", to, from, id, valid ? "valid" : "invalid", NULL);
}

/* A stanza from the peer server: RFC 6120 §8.1.1.1 ('to' required),
 * §8.1.2.2 ('from' required and authenticated), §4.9.3.9, §10.1-5 of the
 * feature set. */
static void handle_s2s_stanza(stream_t *s, xml_tree_t *t)
{
    const xml_node_t *el = t->root;
    const char *from_s = xml_element_attr(el, NULL, "from");
    const char *to_s = xml_element_attr(el, NULL, "to");
    jid_t from = {0}, to = {0};
    const char *cond = NULL;
    if (s->external == NULL && s->npairs == 0)
        cond = "not-authorized";
    else if (from_s == NULL || to_s == NULL)
        cond = "improper-addressing";
    else if (jid_parse(from_s, strlen(from_s), 0, &from) != JID_OK)
        cond = "invalid-from";
    else if (jid_parse(to_s, strlen(to_s), 0, &to) != JID_OK)
        cond = "improper-addressing";
    else if (stream_config_host(s->cfg, to.domain) == NULL)
        cond = "host-unknown";
    else if (!stream_s2s_authorized(s, from.domain, to.domain))
        cond = "invalid-from";
    jid_clear(&from);
    jid_clear(&to);
    if (cond != NULL) {
        xml_tree_free(t);
        fail_stream(s, cond, NULL);
        return;
    }
    s->hooks.stanza(s->ud, t);
}

static void process_s2s(stream_t *s, xml_tree_t *t)
{
    const xml_node_t *el = t->root;
    if (el->ns != NULL && strcmp(el->ns, STREAM_NS_TLS) == 0) {
        handle_starttls(s, s->ud, NULL, t);
        return;
    }
    if (!s->tls && s->cfg->tls_required &&
        (s->cfg->tls_available || s->cfg->tls_direct)) {
        xml_tree_free(t);
        fail_stream(s, "policy-violation", "STARTTLS is required");
        return;
    }
    if (el->ns != NULL && strcmp(el->ns, STREAM_NS_SASL) == 0) {
        handle_sasl_s2s(s, t);
        return;
    }
    if (el->ns != NULL && strcmp(el->ns, STREAM_NS_DIALBACK) == 0) {
        handle_dialback(s, t);
        return;
    }
    if (stanza_ns_ok(s, t))
        handle_s2s_stanza(s, t);
}

/* --------------------------------------------------- parser callbacks */

static void on_element(void *ud, xml_tree_t *t)
{
    process_element(ud, t);
}

static void on_stream_end(void *ud)
{
    stream_t *s = ud;
    if (s->waiting != WAIT_NONE && s->state == STREAM_OPEN) {
        /* Close after the queued elements have been handled. */
        struct queued *q = malloc(sizeof(*q));
        if (q != NULL) {
            q->next = NULL;
            q->tree = NULL;
            if (s->queue_tail != NULL)
                s->queue_tail->next = q;
            else
                s->queue_head = q;
            s->queue_tail = q;
            s->queue_len++;
            return;
        }
    }
    peer_closed(s);
}

/* --------------------------------------------------------------- public */

static stream_t *stream_new(const stream_config_t *cfg, const stream_hooks_t *h,
                            void *ud, bool s2s)
{
    stream_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->cfg = cfg;
    s->hooks = *h;
    s->ud = ud;
    s->s2s = s2s;
    snprintf(s->lang, sizeof(s->lang), "en");
    xml_parser_opts_t po = {.content_ns = s2s ? XML_NS_SERVER : XML_NS_CLIENT,
                            .limits = cfg->limits_preauth};
    xml_parser_cbs_t cbs = {on_header, on_element, on_stream_end};
    s->parser = xml_parser_new(&po, &cbs, s);
    if (s->parser == NULL) {
        free(s);
        return NULL;
    }
    s->state = STREAM_WAIT_HEADER;
    return s;
}

stream_t *stream_new_c2s(const stream_config_t *cfg, const stream_hooks_t *h,
                         void *ud)
{
    return stream_new(cfg, h, ud, false);
}

stream_t *stream_new_s2s_in(const stream_config_t *cfg, const stream_hooks_t *h,
                            void *ud)
{
    return stream_new(cfg, h, ud, true);
}

static void free_cert_names(stream_t *s)
{
    for (size_t i = 0; i < s->cert_name_count; i++)
        free(s->cert_names[i]);
    free(s->cert_names);
    s->cert_names = NULL;
    s->cert_name_count = 0;
}

void stream_free(stream_t *s)
{
    if (s == NULL)
        return;
    while (s->queue_head != NULL) {
        struct queued *q = s->queue_head;
        s->queue_head = q->next;
        xml_tree_free(q->tree);
        free(q);
    }
    sasl_server_free(s->sasl);
    xml_parser_free(s->parser);
    buf_free(&s->held_failure);
    free_cert_names(s);
    xml_tree_free(s->bind_req);
    jid_clear(&s->user);
    jid_clear(&s->full);
    free(s->peer);
    free(s->external);
    for (size_t i = 0; i < s->npairs; i++) {
        free(s->pairs[i].from);
        free(s->pairs[i].to);
    }
    free(s->pairs);
    free(s);
}

void stream_feed(stream_t *s, const char *data, size_t len)
{
    if (s->state == STREAM_CLOSED || s->state == STREAM_TLS)
        return;
    if (s->cfg->tls_direct && !s->tls) {
        /* A direct-TLS transport (port 5223) reports its handshake before
         * the first byte; bytes without it were never encrypted and are
         * not parsed. */
        call_close(s);
        return;
    }
    if (s->need_reset) {
        xml_parser_reset(s->parser);
        s->need_reset = false;
    }
    s->in_feed = true;
    int rc = xml_parser_feed(s->parser, data, len);
    s->in_feed = false;
    if (s->need_reset && s->state != STREAM_TLS) {
        /* A SASL success inside the feed: the rest of the chunk was
         * discarded; the next byte starts the new stream. */
        xml_parser_reset(s->parser);
        s->need_reset = false;
    }
    if (rc < 0 && s->state != STREAM_CLOSED) {
        if (s->state == STREAM_CLOSING || rc == XML_ERR_CLOSED) {
            call_close(s);
            return;
        }
        fail_stream(s, xml_error_condition(rc),
                    xml_parser_error_text(s->parser));
    }
}

void stream_tls_done(stream_t *s, bool ok, const stream_tls_info_t *info)
{
    if (!ok) {
        call_close(s);
        return;
    }
    s->tls = true;
    if (info != NULL) {
        if (info->cb_exporter != NULL &&
            info->cb_exporter_len <= sizeof(s->cb_exporter)) {
            memcpy(s->cb_exporter, info->cb_exporter, info->cb_exporter_len);
            s->cb_exporter_len = info->cb_exporter_len;
        }
        if (info->cb_unique != NULL &&
            info->cb_unique_len <= sizeof(s->cb_unique)) {
            memcpy(s->cb_unique, info->cb_unique, info->cb_unique_len);
            s->cb_unique_len = info->cb_unique_len;
        }
        free_cert_names(s);
        if (info->cert_name_count > 0) {
            s->cert_names = calloc(info->cert_name_count, sizeof(char *));
            for (size_t i = 0;
                 s->cert_names != NULL && i < info->cert_name_count; i++) {
                s->cert_names[i] = strdup(info->cert_names[i]);
                if (s->cert_names[i] == NULL)
                    break;
                s->cert_name_count++;
            }
            if (s->cert_name_count != info->cert_name_count) {
                /* Out of memory: a partial list would silently change
                 * what EXTERNAL accepts. No XML stream runs yet, so the
                 * connection just ends (as for a failed handshake). */
                free_cert_names(s);
                call_close(s);
                return;
            }
        }
    }
    if (s->state == STREAM_TLS) {
        /* RFC 6120 §5.4.3.3: the client opens a new stream over TLS. */
        s->state = STREAM_WAIT_HEADER;
        s->header_sent = false;
        if (s->in_feed) {
            s->need_reset = true; /* the feed stopped at <starttls/> */
        } else {
            xml_parser_reset(s->parser);
            s->need_reset = false;
        }
    }
}

void stream_sasl_account(stream_t *s, bool found, const scram_cred_t *sha1,
                         const scram_cred_t *sha256,
                         const unsigned char *digest_md5)
{
    if (s->waiting != WAIT_ACCOUNT || s->sasl == NULL)
        return;
    s->waiting = WAIT_NONE;
    if (s->state != STREAM_OPEN)
        return;
    if (found) {
        sasl_server_set_credentials(s->sasl, sha1, sha256);
        if (digest_md5 != NULL)
            sasl_server_set_digest_md5(s->sasl, digest_md5);
    } else {
        sasl_server_set_unknown_user(s->sasl);
    }
    sasl_step(s, NULL, 0);
    process_queue(s);
}

void stream_sasl_lookup_failed(stream_t *s)
{
    if (s->waiting != WAIT_ACCOUNT)
        return;
    s->waiting = WAIT_NONE;
    if (s->state != STREAM_OPEN)
        return;
    sasl_fail(s, SASL_F_TEMPORARY_AUTH_FAILURE);
    process_queue(s);
}

void stream_sasl_password_checked(stream_t *s, bool ok)
{
    if (s->waiting != WAIT_PASSWORD || s->sasl == NULL)
        return;
    s->waiting = WAIT_NONE;
    if (s->state != STREAM_OPEN)
        return;
    sasl_server_password_checked(s->sasl, ok);
    sasl_step(s, NULL, 0);
    process_queue(s);
}

void stream_auth_delay_done(stream_t *s)
{
    if (s->waiting != WAIT_DELAY)
        return;
    s->waiting = WAIT_NONE;
    if (s->state != STREAM_OPEN) {
        buf_free(&s->held_failure);
        return;
    }
    buf_t b = s->held_failure;
    s->held_failure = (buf_t)BUF_INIT;
    sasl_failure_out(s, &b);
    process_queue(s);
}

void stream_preauth_done(stream_t *s, const xml_node_t *answer)
{
    if (s->waiting != WAIT_PREAUTH)
        return;
    s->waiting = WAIT_NONE;
    if (s->state != STREAM_OPEN)
        return;
    if (answer != NULL && send_tree(s, answer) < 0)
        return;
    process_queue(s);
}

void stream_bind_done(stream_t *s, const char *resource, const char *condition)
{
    if (s->waiting != WAIT_BIND)
        return;
    s->waiting = WAIT_NONE;
    if (s->state != STREAM_OPEN)
        return;
    xml_tree_t *req = s->bind_req;
    s->bind_req = NULL;
    const char *id = xml_element_attr(req->root, NULL, "id");
    if (resource == NULL) {
        const char *cond =
            condition != NULL ? condition : "internal-server-error";
        iq_error(s, req->root,
                 strcmp(cond, "resource-constraint") == 0 ? "wait" : "cancel",
                 cond);
        xml_tree_free(req);
        process_queue(s);
        return;
    }
    char full[JID_FORMAT_BUF];
    snprintf(full, sizeof(full), "%s@%s/%s", s->user.node, s->user.domain,
             resource);
    jid_t j;
    if (jid_parse(full, strlen(full), 0, &j) != JID_OK) {
        iq_error(s, req->root, "modify", "bad-request");
        xml_tree_free(req);
        process_queue(s);
        return;
    }
    jid_clear(&s->full);
    s->full = j;
    s->bound = true;
    buf_t b = BUF_INIT;
    int rc = buf_append_str(&b, "<iq type='result' id='");
    rc |= xml_escape_attr(id, strlen(id), &b);
    rc |= buf_append_str(&b, "'><bind xmlns='" STREAM_NS_BIND "'><jid>");
    rc |= xml_escape(full, strlen(full), &b);
    rc |= buf_append_str(&b, "</jid></bind></iq>");
    xml_tree_free(req);
    send_built(s, &b, rc);
    process_queue(s);
}

bool stream_send_element(stream_t *s, const xml_node_t *el)
{
    if (s->state != STREAM_OPEN || !s->bound)
        return false;
    return send_tree(s, el) == 0;
}

bool stream_send_raw(stream_t *s, const char *data, size_t len)
{
    if (s->state != STREAM_OPEN || !s->bound)
        return false;
    return send_bytes(s, data, len) == 0;
}

bool stream_send_nonza(stream_t *s, const char *data, size_t len)
{
    if (s->state != STREAM_OPEN)
        return false;
    return send_bytes(s, data, len) == 0;
}

void stream_error(stream_t *s, const char *condition, const char *text)
{
    if (s->state == STREAM_TLS) {
        /* Mid-handshake there is no XML stream to put an error on. */
        call_close(s);
        return;
    }
    fail_stream(s, condition, text);
}

void stream_close(stream_t *s)
{
    if (s->state == STREAM_CLOSING || s->state == STREAM_CLOSED)
        return;
    if (s->state == STREAM_TLS) {
        call_close(s);
        return;
    }
    if (!s->header_sent)
        send_header(s, NULL);
    send_str(s, "</stream:stream>");
    s->state = STREAM_CLOSING;
}

void stream_abort(stream_t *s)
{
    call_close(s);
}

stream_state_t stream_state(const stream_t *s)
{
    return s->state;
}

uint32_t stream_stanzas_in(const stream_t *s)
{
    return s->stanzas_in;
}

bool stream_is_bound(const stream_t *s)
{
    return s->bound;
}

bool stream_is_authenticated(const stream_t *s)
{
    return s->authenticated;
}

bool stream_is_tls(const stream_t *s)
{
    return s->tls;
}

void stream_set_owner(stream_t *s, void *ud)
{
    s->ud = ud;
}

const jid_t *stream_user(const stream_t *s)
{
    return s->authenticated ? &s->user : NULL;
}

bool stream_resume_bound(stream_t *s, const jid_t *full)
{
    if (!s->authenticated || s->bound || s->state != STREAM_OPEN ||
        s->waiting != WAIT_NONE || full->resource == NULL ||
        !jid_bare_equal(full, &s->user))
        return false;
    char buf[JID_FORMAT_BUF + JID_PART_BUF];
    jid_t j;
    if (jid_format(full, false, buf, sizeof(buf)) < 0 ||
        jid_parse(buf, strlen(buf), 0, &j) != JID_OK)
        return false;
    jid_clear(&s->full);
    s->full = j;
    s->bound = true;
    return true;
}

const jid_t *stream_jid(const stream_t *s)
{
    return s->bound ? &s->full : NULL;
}

const char *stream_id(const stream_t *s)
{
    return s->id;
}

const char *stream_error_sent(const stream_t *s)
{
    return s->error_sent;
}

const char *stream_lang(const stream_t *s)
{
    return s->lang;
}
