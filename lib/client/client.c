/* libstarling's client: the public API of include/starling/client.h on top
 * of lib/net/connector (where to connect, and connecting), lib/net/conn
 * (the connection, with TLS as a layer) and the sans-I/O
 * lib/stream/stream_client (negotiation).
 *
 * One connection attempt at a time. A session pairs a connection with its
 * stream; it is freed when its connection is (conn_events.closed), so that
 * a reconnect never waits for the old one. Pending IQs live in a list with
 * deadlines checked by one timer. */
#include "starling/client.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "base/buf.h"
#include "base/rand.h"
#include "jid/jid.h"
#include "net/conn.h"
#include "net/connector.h"
#include "net/dns.h"
#include "net/tls.h"
#include "stream/stanza.h"
#include "stream/stream.h"
#include "stream/stream_client.h"
#include "xml/xml.h"

#define NS_ROSTER "jabber:iq:roster"

/* Per address tried; the next address (or target) follows. */
enum { CONNECT_TIMEOUT_MS = 30000 };

struct starling_stanza {
    const xml_node_t *el;
    xml_tree_t *tree;
};

struct pending_iq {
    struct pending_iq *next;
    char id[24];
    char *to; /* the addressee, to match the reply's 'from' */
    uint64_t deadline;
    starling_iq_cb cb;
    void *ud;
    /* roster get: decode the result into items */
    starling_roster_cb roster_cb;
};

struct session;

struct starling_client {
    uv_loop_t *loop;
    starling_client_events_t ev;
    void *ud;
    /* options, copied */
    char *jid_s, *password, *server, *dns_servers, *ca_file, *pin, *client_cert,
        *client_key;
    bool direct_tls, insecure, allow_plaintext, reconnect;
    unsigned iq_timeout_ms;
    jid_t jid;   /* as configured */
    char *bound; /* full JID once connected */

    tls_ctx_t *tls_ctx;
    dns_t *dns;
    connector_t *connector;
    struct session *conn; /* the current session, NULL between them */

    uv_timer_t *timer; /* IQ deadlines and reconnection; heap: async close */
    bool want_connected;
    unsigned attempts;
    char *last_presence; /* re-sent after a reconnect */
    struct pending_iq *iqs;
    unsigned long next_id;

    starling_error_t err; /* the failure being reported */
    char err_cond[64], err_text[256], err_desc[320];
    bool freeing;
};

/* One connection and the stream on it. Freed when the connection is. */
struct session {
    starling_client_t *c; /* NULL once the client let go of it */
    conn_t *conn;         /* NULL once freed */
    bool direct_tls;
    sclient_t *sc;
};

static void conn_drop(struct session *k);
static void fail_connection(starling_client_t *c, starling_error_kind_t kind,
                            const char *cond, const char *text,
                            const char *desc);

/* ----------------------------------------------------------- errors */

const char *starling_error_kind_name(starling_error_kind_t k)
{
    static const char *const names[] = {
        "no error",     "DNS",           "network",
        "TLS",          "certificate",   "authentication",
        "stream error", "stanza error",  "timeout",
        "protocol",     "configuration", "closed"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

static void set_err(starling_client_t *c, starling_error_kind_t kind,
                    const char *cond, const char *text, const char *desc)
{
    c->err.kind = kind;
    snprintf(c->err_cond, sizeof(c->err_cond), "%s", cond ? cond : "");
    snprintf(c->err_text, sizeof(c->err_text), "%s", text ? text : "");
    snprintf(c->err_desc, sizeof(c->err_desc), "%s", desc ? desc : "");
    c->err.condition = cond ? c->err_cond : NULL;
    c->err.text = text ? c->err_text : NULL;
    c->err.description = c->err_desc;
    c->err.type = NULL;
}

/* -------------------------------------------------------------- I/O */

static void conn_put(struct session *k, const char *data, size_t len)
{
    if (k->conn != NULL && conn_write(k->conn, data, len) == CONN_ERR_NOMEM &&
        k->c != NULL)
        fail_connection(k->c, STARLING_ERR_NETWORK, NULL, NULL,
                        "out of memory");
}

/* Lets go of the connection: in order (our queued bytes, TLS
 * close_notify), bounded in time, or at once. */
static void conn_close_now(struct session *k, bool orderly)
{
    if (k->conn == NULL || conn_closing(k->conn))
        return;
    if (orderly)
        conn_close(k->conn, 2000);
    else
        conn_abort(k->conn);
}

/* ------------------------------------------------------ stream hooks */

static void h_send(void *ud, const char *data, size_t len)
{
    conn_put(ud, data, len);
}

static void start_tls(struct session *k)
{
    starling_client_t *c = k->c;
    /* RFC 6125 §6: the certificate is checked against the XMPP domain,
     * never against an SRV target or an address. */
    if (conn_start_tls(k->conn, c->tls_ctx, c->jid.domain) != CONN_OK)
        fail_connection(c, STARLING_ERR_TLS, NULL, NULL, "cannot start TLS");
}

static void h_start_tls(void *ud)
{
    start_tls(ud);
}

static void h_close(void *ud)
{
    struct session *k = ud;
    starling_client_t *c = k->c;
    if (c != NULL && c->conn == k && c->err.kind == STARLING_ERR_NONE &&
        c->want_connected)
        set_err(c, STARLING_ERR_CLOSED, NULL, NULL,
                "the server closed the connection");
    conn_drop(k);
}

static void h_ready(void *ud, const jid_t *jid)
{
    struct session *k = ud;
    starling_client_t *c = k->c;
    free(c->bound);
    c->bound = jid_to_string(jid, false);
    c->attempts = 0;
    if (c->last_presence != NULL)
        conn_put(k, c->last_presence, strlen(c->last_presence));
    if (c->ev.connected != NULL)
        c->ev.connected(c, c->bound, c->ud);
}

static void send_tree(starling_client_t *c, const xml_node_t *el)
{
    if (c->conn == NULL || c->conn->sc == NULL)
        return;
    sclient_send(c->conn->sc, el);
}

static void reply_error(starling_client_t *c, const xml_node_t *el,
                        const char *type, const char *cond)
{
    /* RFC 6120 §8.3.1; the server stamps our 'from'. A reply that cannot
     * be built for want of memory is not sent: the requester times out. */
    xml_tree_t *t = stanza_error_reply(el, type, cond, NULL);
    if (t == NULL)
        return;
    xml_element_remove_attr(t->root, NULL, "from");
    send_tree(c, t->root);
    xml_tree_free(t);
}

static void fill_stanza_error(const xml_node_t *el, starling_error_t *e,
                              char *cond, size_t condlen)
{
    memset(e, 0, sizeof(*e));
    e->kind = STARLING_ERR_STANZA;
    const xml_node_t *er = xml_element_child(el, NULL, "error");
    snprintf(cond, condlen, "undefined-condition");
    if (er != NULL) {
        e->type = xml_element_attr(er, NULL, "type");
        for (const xml_node_t *ch = er->children; ch != NULL; ch = ch->next)
            if (xml_element_is(ch, STREAM_NS_STANZAS, NULL) &&
                strcmp(ch->name, "text") != 0) {
                snprintf(cond, condlen, "%s", ch->name);
                break;
            }
        const xml_node_t *tx = xml_element_child(er, STREAM_NS_STANZAS, "text");
        if (tx != NULL && tx->children != NULL &&
            tx->children->kind == XML_NODE_TEXT)
            e->text = tx->children->text;
    }
    e->condition = cond;
    e->description = "the recipient answered with an error";
}

static void roster_result(starling_client_t *c, struct pending_iq *p,
                          const xml_node_t *el, const starling_error_t *err,
                          xml_tree_t *t);

static void handle_iq(starling_client_t *c, xml_tree_t *t)
{
    const xml_node_t *el = t->root;
    const char *type = xml_element_attr(el, NULL, "type");
    const char *id = xml_element_attr(el, NULL, "id");
    if (type == NULL)
        return;
    if (strcmp(type, "result") == 0 || strcmp(type, "error") == 0) {
        for (struct pending_iq **pp = &c->iqs; *pp != NULL; pp = &(*pp)->next) {
            struct pending_iq *p = *pp;
            if (id == NULL || strcmp(p->id, id) != 0)
                continue;
            *pp = p->next;
            starling_error_t e, *ep = NULL;
            char cond[64];
            if (strcmp(type, "error") == 0) {
                fill_stanza_error(el, &e, cond, sizeof(cond));
                ep = &e;
            }
            starling_stanza_t st = {el, t};
            if (p->roster_cb != NULL)
                roster_result(c, p, el, ep, t);
            else if (p->cb != NULL)
                p->cb(c, ep == NULL ? &st : NULL, ep, p->ud);
            free(p->to);
            free(p);
            return;
        }
        return; /* a reply nobody waits for (timed out): dropped */
    }
    /* get/set addressed to us. A roster push comes from our own account
     * (RFC 6121 §2.1.6): acknowledge it and tell the application. */
    const xml_node_t *q = xml_element_child(el, NS_ROSTER, "query");
    const char *from = xml_element_attr(el, NULL, "from");
    bool own = from == NULL;
    if (from != NULL) {
        jid_t fj;
        if (jid_parse(from, strlen(from), 0, &fj) == JID_OK) {
            own = jid_bare_equal(&fj, &c->jid) && fj.resource == NULL;
            jid_clear(&fj);
        }
    }
    if (q != NULL && strcmp(type, "set") == 0 && own) {
        const xml_node_t *item = xml_element_child(q, NS_ROSTER, "item");
        if (item != NULL && c->ev.roster_push != NULL) {
            const char *groups[16];
            size_t ng = 0;
            for (const xml_node_t *g =
                     xml_element_child(item, NS_ROSTER, "group");
                 g != NULL && ng < 16;
                 g = xml_element_next(g, NS_ROSTER, "group"))
                groups[ng++] = xml_element_text(t, g);
            const char *ask = xml_element_attr(item, NULL, "ask");
            starling_roster_item_t it = {
                .jid = xml_element_attr(item, NULL, "jid"),
                .name = xml_element_attr(item, NULL, "name"),
                .subscription = xml_element_attr(item, NULL, "subscription"),
                .ask_subscribe = ask != NULL && strcmp(ask, "subscribe") == 0,
                .groups = groups,
                .group_count = ng};
            c->ev.roster_push(c, &it, c->ud);
        }
        starling_stanza_t st = {el, t};
        starling_iq_reply(c, &st, NULL, NULL, NULL);
        return;
    }
    starling_stanza_t st = {el, t};
    /* XEP-0199 §4.2: the server (or anyone) checking that we are there. */
    if (strcmp(type, "get") == 0 &&
        xml_element_child(el, "urn:xmpp:ping", "ping") != NULL) {
        starling_iq_reply(c, &st, NULL, NULL, NULL);
        return;
    }
    bool handled = c->ev.iq != NULL && c->ev.iq(c, &st, c->ud);
    /* RFC 6120 §8.4: every get/set gets an answer. */
    if (!handled)
        reply_error(c, el, "cancel", "service-unavailable");
}

static starling_msg_type_t msg_type(const char *t)
{
    if (t == NULL || strcmp(t, "normal") == 0)
        return STARLING_MSG_NORMAL;
    if (strcmp(t, "chat") == 0)
        return STARLING_MSG_CHAT;
    if (strcmp(t, "groupchat") == 0)
        return STARLING_MSG_GROUPCHAT;
    if (strcmp(t, "headline") == 0)
        return STARLING_MSG_HEADLINE;
    if (strcmp(t, "error") == 0)
        return STARLING_MSG_ERROR;
    return STARLING_MSG_NORMAL; /* RFC 6121 §5.2.2: unknown means normal */
}

static const char *child_text(xml_tree_t *t, const xml_node_t *el,
                              const char *name)
{
    const xml_node_t *ch = xml_element_child(el, el->ns, name);
    return ch != NULL ? xml_element_text(t, ch) : NULL;
}

static void h_stanza(void *ud, xml_tree_t *t)
{
    struct session *k = ud;
    starling_client_t *c = k->c;
    const xml_node_t *el = t->root;
    starling_stanza_t st = {el, t};
    if (strcmp(el->name, "iq") == 0) {
        handle_iq(c, t);
    } else if (strcmp(el->name, "message") == 0) {
        if (c->ev.message != NULL) {
            starling_message_t m = {
                .from = xml_element_attr(el, NULL, "from"),
                .to = xml_element_attr(el, NULL, "to"),
                .id = xml_element_attr(el, NULL, "id"),
                .type = msg_type(xml_element_attr(el, NULL, "type")),
                .body = child_text(t, el, "body"),
                .subject = child_text(t, el, "subject"),
                .thread = child_text(t, el, "thread"),
                .stanza = &st};
            c->ev.message(c, &m, c->ud);
        }
    } else if (strcmp(el->name, "presence") == 0) {
        if (c->ev.presence != NULL) {
            static const char *const types[] = {
                NULL,          "unavailable",  "subscribe", "subscribed",
                "unsubscribe", "unsubscribed", "probe",     "error"};
            const char *ty = xml_element_attr(el, NULL, "type");
            starling_presence_t p = {.from = xml_element_attr(el, NULL, "from"),
                                     .type = STARLING_PRES_AVAILABLE,
                                     .show = child_text(t, el, "show"),
                                     .status = child_text(t, el, "status"),
                                     .stanza = &st};
            for (int i = 1; ty != NULL && i < 8; i++)
                if (strcmp(ty, types[i]) == 0)
                    p.type = (starling_presence_type_t)i;
            const char *pr = child_text(t, el, "priority");
            p.priority = pr != NULL ? atoi(pr) : 0;
            c->ev.presence(c, &p, c->ud);
        }
    }
    xml_tree_free(t);
}

static void h_failed(void *ud, int err, const char *condition, const char *text,
                     const char *description)
{
    struct session *k = ud;
    starling_client_t *c = k->c;
    if (c == NULL || c->err.kind != STARLING_ERR_NONE)
        return;
    starling_error_kind_t kind = STARLING_ERR_PROTOCOL;
    switch (err) {
    case SCLIENT_ERR_STREAM:
        kind = STARLING_ERR_STREAM;
        break;
    case SCLIENT_ERR_AUTH:
    case SCLIENT_ERR_NO_MECH:
        kind = STARLING_ERR_AUTH;
        break;
    case SCLIENT_ERR_TLS:
    case SCLIENT_ERR_NO_TLS:
        kind = STARLING_ERR_TLS;
        break;
    case SCLIENT_ERR_BIND:
        kind = STARLING_ERR_STANZA;
        break;
    case SCLIENT_ERR_CLOSED:
        kind = STARLING_ERR_CLOSED;
        break;
    default:
        break;
    }
    set_err(c, kind, condition, text, description);
    /* An authentication failure will not heal by retrying. */
    if (kind == STARLING_ERR_AUTH)
        c->want_connected = false;
}

static const sclient_hooks_t hooks = {
    .send = h_send,
    .start_tls = h_start_tls,
    .close = h_close,
    .ready = h_ready,
    .stanza = h_stanza,
    .failed = h_failed,
};

/* ------------------------------------------------------------- input */

static bool pin_ok(starling_client_t *c, struct session *k)
{
    if (c->pin == NULL)
        return true;
    unsigned char h[32];
    char b64[64];
    if (tls_conn_peer_spki_sha256(conn_tls(k->conn), h) < 0 ||
        base64_encode(h, 32, BASE64_STD, b64, sizeof(b64)) < 0)
        return false;
    return strcmp(b64, c->pin) == 0;
}

static void on_conn_tls_done(void *ud, int status)
{
    struct session *k = ud;
    starling_client_t *c = k->c;
    if (c == NULL)
        return;
    if (status == CONN_ERR_TLS_VERIFY) {
        char d[300];
        snprintf(d, sizeof(d),
                 "the certificate of %s did not verify (%s); trust it with "
                 "--ca-file or --pin",
                 c->jid.domain, tls_conn_error_text(conn_tls(k->conn)));
        fail_connection(c, STARLING_ERR_CERTIFICATE, NULL, NULL, d);
        return;
    }
    if (status != CONN_OK) {
        char d[300];
        snprintf(d, sizeof(d), "TLS failed: %s",
                 tls_conn_error_text(conn_tls(k->conn)));
        fail_connection(c, STARLING_ERR_TLS, NULL, NULL, d);
        return;
    }
    if (!pin_ok(c, k)) {
        fail_connection(c, STARLING_ERR_CERTIFICATE, NULL, NULL,
                        "the server's public key does not match the pin");
        return;
    }
    unsigned char exp[32], uniq[64];
    int el = conn_cb_exporter(k->conn, exp, sizeof(exp));
    int ul = conn_cb_unique(k->conn, uniq, sizeof(uniq));
    sclient_tls_info_t info = {.cb_exporter = el > 0 ? exp : NULL,
                               .cb_exporter_len = el > 0 ? (size_t)el : 0,
                               .cb_unique = ul > 0 ? uniq : NULL,
                               .cb_unique_len = ul > 0 ? (size_t)ul : 0,
                               .have_client_cert = c->client_cert != NULL};
    sclient_tls_done(k->sc, true, &info);
    if (k->direct_tls && c->conn == k)
        sclient_start(k->sc);
}

static void on_conn_data(void *ud, const char *data, size_t len)
{
    struct session *k = ud;
    if (k->c != NULL)
        sclient_feed(k->sc, data, len);
}

static void on_conn_error(void *ud, int err)
{
    struct session *k = ud;
    starling_client_t *c = k->c;
    if (c == NULL) {
        conn_close_now(k, false);
        return;
    }
    switch (err) {
    case CONN_ERR_EOF:
        fail_connection(c, STARLING_ERR_NETWORK, NULL, NULL,
                        "the server closed the connection");
        break;
    case CONN_ERR_TLS_CLOSED:
        fail_connection(c, STARLING_ERR_CLOSED, NULL, NULL,
                        "the server ended TLS");
        break;
    case CONN_ERR_TLS: {
        char d[300];
        snprintf(d, sizeof(d), "TLS failed: %s",
                 tls_conn_error_text(conn_tls(k->conn)));
        fail_connection(c, STARLING_ERR_TLS, NULL, NULL, d);
        break;
    }
    default:
        fail_connection(c, STARLING_ERR_NETWORK, NULL, NULL,
                        conn_strerror(err));
        break;
    }
}

static void on_conn_closed(void *ud)
{
    struct session *k = ud;
    k->conn = NULL;
    if (k->c != NULL) {
        /* Closed under us (e.g. a write failed while closing). */
        conn_drop(k);
    }
    sclient_free(k->sc);
    free(k);
}

static const conn_events_t session_events = {
    .data = on_conn_data,
    .tls_done = on_conn_tls_done,
    .error = on_conn_error,
    .closed = on_conn_closed,
};

/* ------------------------------------------------------ connecting */

static void schedule_reconnect(starling_client_t *c);

/* The connection is gone: fail the IQs that waited, then either schedule
 * a reconnection or tell the application. The `disconnected` callback runs
 * last, so that it may free the client. */
static void report_disconnect(starling_client_t *c)
{
    bool clean = c->err.kind == STARLING_ERR_NONE;
    bool retry = c->want_connected && c->reconnect && !clean;
    while (c->iqs != NULL) {
        struct pending_iq *p = c->iqs;
        c->iqs = p->next;
        starling_error_t e = {.kind = STARLING_ERR_CLOSED,
                              .description = "the connection ended"};
        if (p->roster_cb != NULL)
            p->roster_cb(c, NULL, 0, NULL, &e, p->ud);
        else if (p->cb != NULL)
            p->cb(c, NULL, &e, p->ud);
        free(p->to);
        free(p);
    }
    free(c->bound);
    c->bound = NULL;
    if (retry) {
        memset(&c->err, 0, sizeof(c->err));
        schedule_reconnect(c);
        return;
    }
    starling_error_t e = c->err;
    memset(&c->err, 0, sizeof(c->err));
    if (c->ev.disconnected != NULL)
        c->ev.disconnected(c, clean ? NULL : &e, c->ud);
}

static void conn_drop(struct session *k)
{
    starling_client_t *c = k->c;
    k->c = NULL;
    conn_close_now(k, true);
    if (c == NULL || c->conn != k)
        return;
    c->conn = NULL;
    if (!c->freeing)
        report_disconnect(c);
}

static void fail_connection(starling_client_t *c, starling_error_kind_t kind,
                            const char *cond, const char *text,
                            const char *desc)
{
    if (c->err.kind == STARLING_ERR_NONE)
        set_err(c, kind, cond, text, desc);
    if (c->conn != NULL) {
        if (c->conn->sc != NULL)
            sclient_abort(c->conn->sc);
        if (c->conn != NULL)
            conn_drop(c->conn);
    } else if (!c->freeing) {
        report_disconnect(c);
    }
}

static void on_connected(void *ud, const connector_result_t *r)
{
    starling_client_t *c = ud;
    if (r->err == CONNECTOR_ERR_DNS) {
        char d[300];
        snprintf(d, sizeof(d), "cannot find the server of %s: %s",
                 c->jid.domain, dns_strerror(r->dns_err));
        fail_connection(c, STARLING_ERR_DNS, NULL, NULL, d);
        return;
    }
    if (r->err != CONNECTOR_OK) {
        char d[300];
        snprintf(d, sizeof(d), "cannot connect to any server of %s",
                 c->jid.domain);
        fail_connection(c, STARLING_ERR_NETWORK, NULL, NULL, d);
        return;
    }
    struct session *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        conn_abort(r->conn);
        fail_connection(c, STARLING_ERR_NETWORK, NULL, NULL, "out of memory");
        return;
    }
    k->c = c;
    k->conn = r->conn;
    k->direct_tls = r->direct_tls;
    conn_set_owner(k->conn, &session_events, k);
    c->conn = k;
    sclient_config_t sc = {.jid = c->jid_s,
                           .password = c->password,
                           .direct_tls = r->direct_tls,
                           .allow_plaintext = c->allow_plaintext,
                           .allow_plain = true};
    xml_limits_default(&sc.limits);
    k->sc = sclient_new(&sc, &hooks, k);
    if (k->sc == NULL) {
        fail_connection(c, STARLING_ERR_CONFIG, NULL, NULL, "cannot start");
        return;
    }
    conn_read_start(k->conn);
    if (k->direct_tls)
        start_tls(k);
    else
        sclient_start(k->sc);
}

static int start_attempt(starling_client_t *c)
{
    memset(&c->err, 0, sizeof(c->err));
    char *ascii = NULL;
    if (c->server == NULL &&
        jid_domain_to_ascii(c->jid.domain, &ascii) != JID_OK)
        return -1;
    connector_opts_t o = {.domain = ascii,
                          .server = c->server,
                          .direct_tls = c->direct_tls,
                          .connect_timeout_ms = CONNECT_TIMEOUT_MS};
    int rc = connector_start(c->connector, &o, on_connected, c);
    free(ascii);
    return rc;
}

static void on_timer(uv_timer_t *t);

static void arm_timer(starling_client_t *c)
{
    uint64_t now = uv_now(c->loop), next = UINT64_MAX;
    for (struct pending_iq *p = c->iqs; p != NULL; p = p->next)
        if (p->deadline < next)
            next = p->deadline;
    if (next != UINT64_MAX)
        uv_timer_start(c->timer, on_timer, next > now ? next - now : 0, 0);
}

static void on_reconnect(uv_timer_t *t)
{
    starling_client_t *c = t->data;
    if (c->want_connected && c->conn == NULL && start_attempt(c) < 0)
        fail_connection(c, STARLING_ERR_CONFIG, NULL, NULL,
                        "bad server address");
}

static void schedule_reconnect(starling_client_t *c)
{
    /* RFC 6120 §3.3: wait a random time, growing with each failure, so
     * that a server restart does not meet all its clients at once. */
    uint32_t r = 0;
    rand_bytes(&r, sizeof(r));
    unsigned ms = connector_backoff_ms(c->attempts, r);
    c->attempts++;
    uv_timer_start(c->timer, on_reconnect, ms, 0);
}

static void on_timer(uv_timer_t *t)
{
    starling_client_t *c = t->data;
    uint64_t now = uv_now(c->loop);
    for (struct pending_iq **pp = &c->iqs; *pp != NULL;) {
        struct pending_iq *p = *pp;
        if (p->deadline > now) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        starling_error_t e = {.kind = STARLING_ERR_TIMEOUT,
                              .description = "no answer in time"};
        if (p->roster_cb != NULL)
            p->roster_cb(c, NULL, 0, NULL, &e, p->ud);
        else if (p->cb != NULL)
            p->cb(c, NULL, &e, p->ud);
        free(p->to);
        free(p);
    }
    arm_timer(c);
}

/* ------------------------------------------------------------ public */

static char *dup_opt(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

starling_client_t *starling_client_new(uv_loop_t *loop,
                                       const starling_client_opts_t *o,
                                       const starling_client_events_t *ev,
                                       void *ud, starling_error_t *err)
{
    static const starling_error_t nomem = {.kind = STARLING_ERR_CONFIG,
                                           .description = "out of memory"};
    starling_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        if (err != NULL)
            *err = nomem;
        return NULL;
    }
    c->loop = loop;
    if (ev != NULL)
        c->ev = *ev;
    c->ud = ud;
    const char *why = NULL;
    if (o == NULL || o->jid == NULL ||
        jid_parse(o->jid, strlen(o->jid), 0, &c->jid) != JID_OK ||
        c->jid.node == NULL)
        why = "the JID must be user@domain[/resource]";
    else if (o->password == NULL && o->client_cert == NULL)
        why = "a password or a client certificate is needed";
    if (why == NULL) {
        c->jid_s = strdup(o->jid);
        c->password = dup_opt(o->password);
        c->server = dup_opt(o->server);
        c->dns_servers = dup_opt(o->dns_servers);
        c->ca_file = dup_opt(o->ca_file);
        c->pin = dup_opt(o->pin_sha256);
        c->client_cert = dup_opt(o->client_cert);
        c->client_key = dup_opt(o->client_key);
        c->direct_tls = o->direct_tls;
        c->insecure = o->insecure_tls;
        c->allow_plaintext = o->allow_plaintext;
        c->reconnect = o->reconnect;
        c->iq_timeout_ms = o->iq_timeout_ms ? o->iq_timeout_ms : 30000;
        char terr[300];
        tls_ctx_opts_t to = {.ca_file = c->ca_file,
                             .cert_file = c->client_cert,
                             .key_file = c->client_key,
                             .alpn = "xmpp-client",
                             .insecure = c->insecure};
        c->tls_ctx = tls_ctx_new_client(&to, terr, sizeof(terr));
        char derr[300];
        if (c->tls_ctx == NULL)
            why = "cannot use the CA file or the client certificate and key "
                  "(check the paths and that they are PEM)";
        else if ((c->dns = dns_new(loop, c->dns_servers, derr, sizeof(derr))) ==
                 NULL)
            why = "cannot use the DNS servers given (host:port,...)";
        else if ((c->connector = connector_new(loop, c->dns)) == NULL)
            why = "out of memory";
    }
    c->timer = malloc(sizeof(*c->timer));
    if (why == NULL && c->timer == NULL)
        why = "out of memory";
    if (why != NULL) {
        /* Every `why` is a string literal, so it outlives the client. */
        if (err != NULL) {
            *err = nomem;
            err->description = why;
        }
        free(c->timer);
        c->timer = NULL;
        starling_client_free(c);
        return NULL;
    }
    uv_timer_init(loop, c->timer);
    c->timer->data = c;
    return c;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

void starling_client_free(starling_client_t *c)
{
    if (c == NULL)
        return;
    c->freeing = true;
    if (c->conn != NULL) {
        struct session *k = c->conn;
        c->conn = NULL;
        k->c = NULL;
        conn_close_now(k, false);
    }
    connector_free(c->connector);
    while (c->iqs != NULL) {
        struct pending_iq *p = c->iqs;
        c->iqs = p->next;
        free(p->to);
        free(p);
    }
    if (c->timer != NULL)
        uv_close((uv_handle_t *)c->timer, on_timer_closed);
    dns_free(c->dns);
    tls_ctx_free(c->tls_ctx);
    jid_clear(&c->jid);
    free(c->jid_s);
    if (c->password != NULL) {
        memset(c->password, 0, strlen(c->password));
        free(c->password);
    }
    free(c->server);
    free(c->dns_servers);
    free(c->ca_file);
    free(c->pin);
    free(c->client_cert);
    free(c->client_key);
    free(c->bound);
    free(c->last_presence);
    free(c);
}

int starling_client_connect(starling_client_t *c)
{
    if (c->conn != NULL || connector_busy(c->connector))
        return -1;
    c->want_connected = true;
    c->attempts = 0;
    return start_attempt(c);
}

void starling_client_disconnect(starling_client_t *c)
{
    bool wanted = c->want_connected;
    c->want_connected = false;
    uv_timer_stop(c->timer);
    if (c->conn != NULL && c->conn->sc != NULL &&
        sclient_state(c->conn->sc) == SCLIENT_READY) {
        sclient_close(c->conn->sc);
        return; /* the server's close tag ends it (h_close) */
    }
    connector_cancel(c->connector);
    if (c->conn != NULL) {
        conn_drop(c->conn);
    } else if (wanted) {
        /* Waiting to reconnect, or looking the server up: no connection
         * to close, but `disconnected` follows all the same. */
        memset(&c->err, 0, sizeof(c->err));
        report_disconnect(c);
    }
}

const char *starling_client_jid(const starling_client_t *c)
{
    return c->bound;
}

const char *starling_client_mechanism(const starling_client_t *c)
{
    return c->conn != NULL && c->conn->sc != NULL
               ? sclient_mechanism(c->conn->sc)
               : NULL;
}

static bool ready(const starling_client_t *c)
{
    return c->conn != NULL && c->conn->sc != NULL &&
           sclient_state(c->conn->sc) == SCLIENT_READY;
}

static bool valid_jid(const char *s)
{
    jid_t j;
    if (s == NULL || jid_parse(s, strlen(s), 0, &j) != JID_OK)
        return false;
    jid_clear(&j);
    return true;
}

int starling_send_message(starling_client_t *c, const char *to,
                          starling_msg_type_t type, const char *body,
                          const char *subject, const char *thread)
{
    static const char *const types[] = {"normal", "chat", "groupchat",
                                        "headline", "error"};
    if (!ready(c) || !valid_jid(to) || (unsigned)type > STARLING_MSG_ERROR)
        return -1;
    xml_tree_t *t = xml_tree_new();
    xml_node_t *m =
        t ? xml_element_new(t, NULL, XML_NS_CLIENT, "message") : NULL;
    int rc = -1;
    if (m != NULL) {
        char id[24];
        rand_id(id, sizeof(id), 72);
        xml_element_set_attr(t, m, NULL, "to", to);
        xml_element_set_attr(t, m, NULL, "id", id);
        if (type != STARLING_MSG_NORMAL)
            xml_element_set_attr(t, m, NULL, "type", types[type]);
        const char *parts[3][2] = {
            {"subject", subject}, {"body", body}, {"thread", thread}};
        for (int i = 0; i < 3; i++) {
            if (parts[i][1] == NULL)
                continue;
            xml_node_t *e = xml_element_new(t, m, XML_NS_CLIENT, parts[i][0]);
            if (e != NULL)
                xml_element_add_text(t, e, parts[i][1], strlen(parts[i][1]));
        }
        rc = sclient_send(c->conn->sc, m) ? 0 : -1;
    }
    xml_tree_free(t);
    return rc;
}

int starling_send_presence(starling_client_t *c, const char *to,
                           starling_presence_type_t type, const char *show,
                           const char *status, int priority)
{
    static const char *const types[] = {
        NULL,          "unavailable",  "subscribe", "subscribed",
        "unsubscribe", "unsubscribed", "probe",     "error"};
    if (!ready(c) || (unsigned)type > STARLING_PRES_ERROR ||
        (to != NULL && !valid_jid(to)) ||
        (to == NULL && type > STARLING_PRES_UNAVAILABLE) || priority < -128 ||
        priority > 127)
        return -1;
    xml_tree_t *t = xml_tree_new();
    xml_node_t *p =
        t ? xml_element_new(t, NULL, XML_NS_CLIENT, "presence") : NULL;
    int rc = -1;
    if (p != NULL) {
        if (to != NULL)
            xml_element_set_attr(t, p, NULL, "to", to);
        if (types[type] != NULL)
            xml_element_set_attr(t, p, NULL, "type", types[type]);
        if (show != NULL) {
            xml_node_t *e = xml_element_new(t, p, XML_NS_CLIENT, "show");
            if (e != NULL)
                xml_element_add_text(t, e, show, strlen(show));
        }
        if (status != NULL) {
            xml_node_t *e = xml_element_new(t, p, XML_NS_CLIENT, "status");
            if (e != NULL)
                xml_element_add_text(t, e, status, strlen(status));
        }
        if (priority != 0 && type == STARLING_PRES_AVAILABLE) {
            char pr[8];
            snprintf(pr, sizeof(pr), "%d", priority);
            xml_node_t *e = xml_element_new(t, p, XML_NS_CLIENT, "priority");
            if (e != NULL)
                xml_element_add_text(t, e, pr, strlen(pr));
        }
        rc = sclient_send(c->conn->sc, p) ? 0 : -1;
        /* Broadcast presence is what a reconnect re-establishes. */
        if (rc == 0 && to == NULL) {
            free(c->last_presence);
            c->last_presence = type == STARLING_PRES_AVAILABLE
                                   ? xml_to_string(p, XML_NS_CLIENT)
                                   : NULL;
        }
    }
    xml_tree_free(t);
    return rc;
}

int starling_send_raw(starling_client_t *c, const char *xml)
{
    if (!ready(c) || xml == NULL)
        return -1;
    conn_put(c->conn, xml, strlen(xml));
    return 0;
}

/* Parses one element given as text (a child for an IQ) into tree t under
 * parent. Returns 0 or -1 when it is not one well-formed element. */
struct one_el {
    xml_tree_t *t;
    xml_node_t *parent;
    int count;
};

static void one_el_cb(void *ud, xml_tree_t *el)
{
    struct one_el *o = ud;
    if (o->count++ == 0)
        xml_node_copy(o->t, o->parent, el->root);
    xml_tree_free(el);
}

static int parse_child(xml_tree_t *t, xml_node_t *parent, const char *xml)
{
    struct one_el o = {t, parent, 0};
    xml_parser_cbs_t cbs = {NULL, one_el_cb, NULL};
    xml_parser_t *p = xml_parser_new(NULL, &cbs, &o);
    if (p == NULL)
        return -1;
    static const char head[] =
        "<stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams'>";
    int rc = xml_parser_feed(p, head, sizeof(head) - 1);
    if (rc == XML_OK)
        rc = xml_parser_feed(p, xml, strlen(xml));
    if (rc == XML_OK)
        rc = xml_parser_feed(p, "</stream:stream>", 16);
    xml_parser_free(p);
    return rc == XML_OK && o.count == 1 ? 0 : -1;
}

static struct pending_iq *iq_send(starling_client_t *c, const char *to,
                                  bool set, const char *child_xml,
                                  unsigned timeout_ms)
{
    if (!ready(c) || (to != NULL && !valid_jid(to)))
        return NULL;
    xml_tree_t *t = xml_tree_new();
    xml_node_t *iq = t ? xml_element_new(t, NULL, XML_NS_CLIENT, "iq") : NULL;
    struct pending_iq *p = calloc(1, sizeof(*p));
    if (iq == NULL || p == NULL ||
        (child_xml != NULL && parse_child(t, iq, child_xml) < 0)) {
        xml_tree_free(t);
        free(p);
        return NULL;
    }
    snprintf(p->id, sizeof(p->id), "sl%lu", ++c->next_id);
    p->to = to != NULL ? strdup(to) : NULL;
    xml_element_set_attr(t, iq, NULL, "type", set ? "set" : "get");
    xml_element_set_attr(t, iq, NULL, "id", p->id);
    if (to != NULL)
        xml_element_set_attr(t, iq, NULL, "to", to);
    sclient_send(c->conn->sc, iq);
    xml_tree_free(t);
    p->deadline =
        uv_now(c->loop) + (timeout_ms ? timeout_ms : c->iq_timeout_ms);
    p->next = c->iqs;
    c->iqs = p;
    arm_timer(c);
    return p;
}

int starling_iq_send(starling_client_t *c, const char *to, bool set,
                     const char *child_xml, unsigned timeout_ms,
                     starling_iq_cb cb, void *ud)
{
    struct pending_iq *p = iq_send(c, to, set, child_xml, timeout_ms);
    if (p == NULL)
        return -1;
    p->cb = cb;
    p->ud = ud;
    return 0;
}

int starling_iq_reply(starling_client_t *c, const starling_stanza_t *iq,
                      const char *child_xml, const char *error_type,
                      const char *condition)
{
    if (!ready(c))
        return -1;
    if (condition != NULL) {
        reply_error(c, iq->el, error_type ? error_type : "cancel", condition);
        return 0;
    }
    xml_tree_t *t = xml_tree_new();
    xml_node_t *r = t ? xml_element_new(t, NULL, XML_NS_CLIENT, "iq") : NULL;
    int rc = -1;
    if (r != NULL && (child_xml == NULL || parse_child(t, r, child_xml) == 0)) {
        const char *id = xml_element_attr(iq->el, NULL, "id");
        const char *from = xml_element_attr(iq->el, NULL, "from");
        xml_element_set_attr(t, r, NULL, "type", "result");
        if (id != NULL)
            xml_element_set_attr(t, r, NULL, "id", id);
        if (from != NULL)
            xml_element_set_attr(t, r, NULL, "to", from);
        rc = sclient_send(c->conn->sc, r) ? 0 : -1;
    }
    xml_tree_free(t);
    return rc;
}

static void roster_result(starling_client_t *c, struct pending_iq *p,
                          const xml_node_t *el, const starling_error_t *err,
                          xml_tree_t *t)
{
    if (err != NULL) {
        p->roster_cb(c, NULL, 0, NULL, err, p->ud);
        return;
    }
    const xml_node_t *q = xml_element_child(el, NS_ROSTER, "query");
    if (q == NULL) {
        /* RFC 6121 §2.6.3: an empty result means the cached roster is
         * current. */
        p->roster_cb(c, NULL, 0, NULL, NULL, p->ud);
        return;
    }
    size_t n = 0;
    for (const xml_node_t *i = xml_element_child(q, NS_ROSTER, "item");
         i != NULL; i = xml_element_next(i, NS_ROSTER, "item"))
        n++;
    starling_roster_item_t *items = calloc(n ? n : 1, sizeof(*items));
    const char **groups = calloc(n * 16 + 1, sizeof(char *));
    size_t k = 0;
    for (const xml_node_t *i = xml_element_child(q, NS_ROSTER, "item");
         items != NULL && groups != NULL && i != NULL;
         i = xml_element_next(i, NS_ROSTER, "item"), k++) {
        const char *ask = xml_element_attr(i, NULL, "ask");
        items[k].jid = xml_element_attr(i, NULL, "jid");
        items[k].name = xml_element_attr(i, NULL, "name");
        items[k].subscription = xml_element_attr(i, NULL, "subscription");
        items[k].ask_subscribe = ask != NULL && strcmp(ask, "subscribe") == 0;
        items[k].groups = groups + k * 16;
        for (const xml_node_t *g = xml_element_child(i, NS_ROSTER, "group");
             g != NULL && items[k].group_count < 16;
             g = xml_element_next(g, NS_ROSTER, "group"))
            groups[k * 16 + items[k].group_count++] = xml_element_text(t, g);
    }
    p->roster_cb(c, items, items != NULL && groups != NULL ? n : 0,
                 xml_element_attr(q, NULL, "ver"), NULL, p->ud);
    free(items);
    free(groups);
}

int starling_roster_get(starling_client_t *c, const char *ver,
                        starling_roster_cb cb, void *ud)
{
    buf_t b = BUF_INIT;
    buf_append_str(&b, "<query xmlns='" NS_ROSTER "'");
    if (ver != NULL) {
        buf_append_str(&b, " ver='");
        xml_escape_attr(ver, strlen(ver), &b);
        buf_append_str(&b, "'");
    }
    buf_append_str(&b, "/>");
    struct pending_iq *p = b.data ? iq_send(c, NULL, false, b.data, 0) : NULL;
    buf_free(&b);
    if (p == NULL)
        return -1;
    p->roster_cb = cb;
    p->ud = ud;
    return 0;
}

int starling_roster_set(starling_client_t *c, const char *jid, const char *name,
                        const char *const *groups, size_t ngroups,
                        starling_iq_cb cb, void *ud)
{
    if (!valid_jid(jid))
        return -1;
    buf_t b = BUF_INIT;
    buf_append_str(&b, "<query xmlns='" NS_ROSTER "'><item jid='");
    xml_escape_attr(jid, strlen(jid), &b);
    buf_append_str(&b, "'");
    if (name != NULL) {
        buf_append_str(&b, " name='");
        xml_escape_attr(name, strlen(name), &b);
        buf_append_str(&b, "'");
    }
    buf_append_str(&b, ">");
    for (size_t i = 0; i < ngroups; i++) {
        buf_append_str(&b, "<group>");
        xml_escape(groups[i], strlen(groups[i]), &b);
        buf_append_str(&b, "</group>");
    }
    buf_append_str(&b, "</item></query>");
    int rc = b.data ? starling_iq_send(c, NULL, true, b.data, 0, cb, ud) : -1;
    buf_free(&b);
    return rc;
}

int starling_roster_remove(starling_client_t *c, const char *jid,
                           starling_iq_cb cb, void *ud)
{
    if (!valid_jid(jid))
        return -1;
    buf_t b = BUF_INIT;
    buf_append_str(&b, "<query xmlns='" NS_ROSTER "'><item jid='");
    xml_escape_attr(jid, strlen(jid), &b);
    buf_append_str(&b, "' subscription='remove'/></query>");
    int rc = b.data ? starling_iq_send(c, NULL, true, b.data, 0, cb, ud) : -1;
    buf_free(&b);
    return rc;
}

const char *starling_stanza_name(const starling_stanza_t *s)
{
    return s->el->name;
}

const char *starling_stanza_attr(const starling_stanza_t *s, const char *name)
{
    return xml_element_attr(s->el, NULL, name);
}

const char *starling_stanza_child_text(const starling_stanza_t *s,
                                       const char *ns, const char *name)
{
    const xml_node_t *ch = xml_element_child(s->el, ns ? ns : s->el->ns, name);
    return ch != NULL ? xml_element_text(s->tree, ch) : NULL;
}

char *starling_stanza_to_string(const starling_stanza_t *s)
{
    return xml_to_string(s->el, XML_NS_CLIENT);
}
