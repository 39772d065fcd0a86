/* XEP-0114 component streams, the accepting (server) side. */
#include "stream/stream_component.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/rand.h"
#include "jid/jid.h"
#include "stream/stanza.h"
#include "stream/stream.h"
#include "stream/stream_internal.h"

typedef enum cstate {
    CS_WAIT_HEADER,
    CS_OPEN,   /* header answered: waiting for the handshake */
    CS_AUTHED, /* stanzas flow */
    CS_CLOSED, /* our close tag sent or the transport gone */
} cstate_t;

struct cstream {
    cstream_hooks_t hooks;
    void *ud;
    xml_parser_t *parser;
    xml_limits_t limits;
    cstate_t state;
    bool header_sent;
    bool close_called;
    bool send_failed;
    char id[32];
    char domain[JID_PART_BUF];
    bool has_domain;
    const char *error_sent;
};

static void call_close(cstream_t *cs)
{
    if (cs->close_called)
        return;
    cs->close_called = true;
    cs->state = CS_CLOSED;
    cs->hooks.close(cs->ud);
}

static int send_bytes_via(cstream_t *cs, const char *data, size_t len,
                          int (*send)(void *ud, const char *data, size_t len))
{
    if (cs->close_called || cs->send_failed)
        return -1;
    if (send(cs->ud, data, len) < 0) {
        cs->send_failed = true;
        if (cs->error_sent == NULL)
            cs->error_sent = "internal-server-error";
        call_close(cs);
        return -1;
    }
    return 0;
}

static int send_bytes(cstream_t *cs, const char *data, size_t len)
{
    return send_bytes_via(cs, data, len, cs->hooks.send);
}

/* Our header (XEP-0114 §3): the component's domain as 'from' once the
 * component named one of ours, a fresh id, no version (the protocol
 * predates RFC 6120 features). */
static void send_header(cstream_t *cs)
{
    if (rand_id(cs->id, sizeof(cs->id), 128) < 0) {
        call_close(cs);
        return;
    }
    buf_t b = BUF_INIT;
    int rc = buf_append_str(&b, "<?xml version='1.0'?><stream:stream "
                                "xmlns:stream='" XML_NS_STREAMS
                                "' xmlns='" XML_NS_COMPONENT "'");
    if (cs->has_domain) {
        rc |= buf_append_str(&b, " from='");
        rc |= xml_escape_attr(cs->domain, strlen(cs->domain), &b);
        rc |= buf_append_str(&b, "'");
    }
    rc |= buf_append_str(&b, " id='");
    rc |= buf_append_str(&b, cs->id);
    rc |= buf_append_str(&b, "'>");
    if (rc != 0) {
        buf_free(&b);
        call_close(cs);
        return;
    }
    cs->header_sent = true;
    send_bytes(cs, b.data, b.len);
    buf_free(&b);
}

static void fail(cstream_t *cs, const char *condition, const char *text)
{
    if (cs->state == CS_CLOSED)
        return;
    if (!cs->header_sent)
        send_header(cs);
    cs->error_sent = condition;
    buf_t b = BUF_INIT;
    if (stream_write_error(&b, condition, text) < 0 ||
        buf_append_str(&b, "</stream:stream>") < 0) {
        buf_free(&b);
        cs->error_sent = "resource-constraint";
        static const char oom[] =
            "<stream:error><resource-constraint xmlns='" STREAM_NS_STREAMS_ERR
            "'/></stream:error></stream:stream>";
        send_bytes(cs, oom, sizeof(oom) - 1);
    } else {
        send_bytes(cs, b.data, b.len);
        buf_free(&b);
    }
    /* The owner's transport flushes the error and lingers for the peer's
     * close (conn_close); nothing the peer sends now is read. */
    call_close(cs);
}

void cstream_handshake_digest(const char *id, const char *secret, char out[41])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[20];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
              EVP_DigestUpdate(ctx, id, strlen(id)) == 1 &&
              EVP_DigestUpdate(ctx, secret, strlen(secret)) == 1 &&
              EVP_DigestFinal_ex(ctx, md, NULL) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        /* No digest: a value no handshake (40 hex digits) can equal. */
        memset(out, 'x', 40);
        out[40] = '\0';
        return;
    }
    for (int i = 0; i < 20; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
}

/* ------------------------------------------------------------ header */

static void on_header(void *ud, xml_tree_t *t)
{
    cstream_t *cs = ud;
    if (cs->state != CS_WAIT_HEADER) {
        xml_tree_free(t);
        return;
    }
    cs->state = CS_OPEN;
    const char *to = xml_element_attr(t->root, NULL, "to");
    const char *cond = NULL;
    if (to == NULL ||
        jid_prepare_domain(to, strlen(to), 0, cs->domain, NULL) != JID_OK ||
        cs->hooks.secret(cs->ud, cs->domain) == NULL)
        cond = "host-unknown";
    else
        cs->has_domain = true;
    xml_tree_free(t);
    send_header(cs);
    if (cond != NULL)
        fail(cs, cond, "no component of that name is configured here");
}

/* ------------------------------------------------------------ elements */

static void handshake(cstream_t *cs, xml_tree_t *t)
{
    if (cs->state == CS_AUTHED) {
        xml_tree_free(t);
        fail(cs, "policy-violation", "already authenticated");
        return;
    }
    const char *txt = xml_element_text(t, t->root);
    char given[41] = "";
    size_t n = txt != NULL ? strlen(txt) : 0;
    if (n == 40) {
        /* XEP-0114 asks for lowercase; uppercase hex is the same digest. */
        for (size_t i = 0; i < 40; i++) {
            char c = txt[i];
            given[i] = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c;
        }
        given[40] = '\0';
    }
    xml_tree_free(t);
    const char *secret = cs->hooks.secret(cs->ud, cs->domain);
    char want[41];
    cstream_handshake_digest(cs->id, secret != NULL ? secret : "", want);
    if (secret == NULL || n != 40 || CRYPTO_memcmp(want, given, 40) != 0) {
        fail(cs, "not-authorized", "wrong handshake");
        return;
    }
    const char *refused = cs->hooks.authenticated(cs->ud, cs->domain);
    if (refused != NULL) {
        fail(cs, refused, NULL);
        return;
    }
    cs->state = CS_AUTHED;
    xml_parser_set_limits(cs->parser, &cs->limits);
    static const char ok[] = "<handshake/>";
    send_bytes(cs, ok, sizeof(ok) - 1);
}

static bool is_stanza_name(const char *name)
{
    return strcmp(name, "message") == 0 || strcmp(name, "presence") == 0 ||
           strcmp(name, "iq") == 0;
}

/* XEP-0114 §3: 'from' and 'to' required, 'from' at the component's domain. */
static void stanza(cstream_t *cs, xml_tree_t *t)
{
    const xml_node_t *el = t->root;
    const char *from_s = xml_element_attr(el, NULL, "from");
    const char *to_s = xml_element_attr(el, NULL, "to");
    jid_t from = {0}, to = {0};
    const char *cond = NULL, *text = NULL;
    if (from_s == NULL || to_s == NULL) {
        cond = "improper-addressing";
        text = "a stanza needs 'from' and 'to'";
    } else if (jid_parse(from_s, strlen(from_s), 0, &from) != JID_OK ||
               strcmp(from.domain, cs->domain) != 0) {
        cond = "invalid-from";
        text = "'from' must be at the component's domain";
    } else if (jid_parse(to_s, strlen(to_s), 0, &to) != JID_OK) {
        cond = "improper-addressing";
        text = "'to' is not a valid JID";
    }
    jid_clear(&from);
    jid_clear(&to);
    if (cond != NULL) {
        xml_tree_free(t);
        fail(cs, cond, text);
        return;
    }
    stanza_to_client_ns(t->root, XML_NS_COMPONENT);
    cs->hooks.stanza(cs->ud, t);
}

static void on_element(void *ud, xml_tree_t *t)
{
    cstream_t *cs = ud;
    const xml_node_t *el = t->root;
    if (cs->state != CS_OPEN && cs->state != CS_AUTHED) {
        xml_tree_free(t);
        return;
    }
    bool ours = el->ns != NULL && (strcmp(el->ns, XML_NS_COMPONENT) == 0 ||
                                   strcmp(el->ns, XML_NS_CLIENT) == 0);
    if (ours && strcmp(el->name, "handshake") == 0) {
        handshake(cs, t);
        return;
    }
    if (!ours || !is_stanza_name(el->name)) {
        xml_tree_free(t);
        fail(cs, "unsupported-stanza-type", NULL);
        return;
    }
    if (cs->state != CS_AUTHED) {
        xml_tree_free(t);
        fail(cs, "not-authorized", "send the handshake first");
        return;
    }
    stanza(cs, t);
}

static void on_end(void *ud)
{
    cstream_t *cs = ud;
    /* RFC 6120 §4.4: answer the close tag with ours, then close. */
    if (cs->state == CS_OPEN || cs->state == CS_AUTHED) {
        static const char end[] = "</stream:stream>";
        send_bytes(cs, end, sizeof(end) - 1);
    }
    call_close(cs);
}

/* -------------------------------------------------------------- public */

cstream_t *cstream_new(const xml_limits_t *preauth, const xml_limits_t *limits,
                       const cstream_hooks_t *h, void *ud)
{
    cstream_t *cs = calloc(1, sizeof(*cs));
    if (cs == NULL)
        return NULL;
    cs->hooks = *h;
    cs->ud = ud;
    cs->limits = *limits;
    xml_parser_opts_t po = {.content_ns = XML_NS_COMPONENT, .limits = *preauth};
    xml_parser_cbs_t cbs = {on_header, on_element, on_end};
    cs->parser = xml_parser_new(&po, &cbs, cs);
    if (cs->parser == NULL) {
        free(cs);
        return NULL;
    }
    return cs;
}

void cstream_free(cstream_t *cs)
{
    if (cs == NULL)
        return;
    xml_parser_free(cs->parser);
    free(cs);
}

void cstream_feed(cstream_t *cs, const char *data, size_t len)
{
    if (cs->state == CS_CLOSED)
        return;
    int rc = xml_parser_feed(cs->parser, data, len);
    if (rc < 0 && cs->state != CS_CLOSED) {
        if (rc == XML_ERR_CLOSED) {
            call_close(cs);
            return;
        }
        fail(cs, xml_error_condition(rc), xml_parser_error_text(cs->parser));
    }
}

bool cstream_send_element(cstream_t *cs, const xml_node_t *el)
{
    if (cs->state != CS_AUTHED)
        return false;
    buf_t b = BUF_INIT;
    if (xml_serialize(el, XML_NS_CLIENT, &b) < 0) {
        buf_free(&b);
        fail(cs, "resource-constraint", NULL);
        return false;
    }
    int rc = send_bytes_via(
        cs, b.data, b.len,
        cs->hooks.send_stanza != NULL ? cs->hooks.send_stanza : cs->hooks.send);
    buf_free(&b);
    return rc == 0;
}

void cstream_error(cstream_t *cs, const char *condition, const char *text)
{
    fail(cs, condition, text);
}

void cstream_close(cstream_t *cs)
{
    if (cs->state == CS_CLOSED)
        return;
    if (!cs->header_sent)
        send_header(cs);
    static const char end[] = "</stream:stream>";
    send_bytes(cs, end, sizeof(end) - 1);
    call_close(cs);
}

void cstream_abort(cstream_t *cs)
{
    cs->send_failed = true; /* nothing more goes out */
    call_close(cs);
}

bool cstream_is_authenticated(const cstream_t *cs)
{
    return cs->state == CS_AUTHED;
}

bool cstream_is_open(const cstream_t *cs)
{
    return cs->state == CS_OPEN || cs->state == CS_AUTHED;
}

const char *cstream_domain(const cstream_t *cs)
{
    return cs->has_domain ? cs->domain : NULL;
}

const char *cstream_id(const cstream_t *cs)
{
    return cs->header_sent ? cs->id : "";
}

const char *cstream_error_sent(const cstream_t *cs)
{
    return cs->error_sent;
}
