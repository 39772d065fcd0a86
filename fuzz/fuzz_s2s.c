/* libFuzzer target: both halves of a server-to-server stream (lib/stream)
 * fed with what a peer server writes — headers, STARTTLS, SASL EXTERNAL,
 * dialback (<db:result/>, <db:verify/> and their answers) and stanzas.
 *
 * The input: a header byte, then the peer's writes separated by 0xFF
 * bytes (never valid UTF-8). Header byte:
 *   bit 0  the initiating half (sclient_new_s2s; bit 5: a verification
 *          stream) instead of the receiving half (stream_new_s2s_in)
 *   bit 1  TLS offered and required (the handshake "completes" at once
 *          after <proceed/>)
 *   bit 2  dialback on
 *   bit 3  the peer's certificate is valid for a.test (EXTERNAL)
 *   bit 4  dialback requests answered inside the hook (else after the
 *          feed)
 *   bit 6-7 the answer: valid, invalid, remote-server-not-found, valid
 *
 * Properties checked (abort() on violation):
 *  - receiving half: a stanza reaches the owner only as message, presence
 *    or iq in jabber:server, with a 'from' whose domain the stream
 *    authorized for its 'to' domain, and a 'to' at a served domain (b.test);
 *    dialback hooks get nameprep'd domains, 'to' served, a non-empty key;
 *  - both halves: nothing is sent after hooks->close, close runs at most
 *    once; the initiating half is ready at most once, and never after a
 *    failure;
 *  - everything the receiving half writes parses as one XMPP stream in
 *    jabber:server (restarted after <proceed/> and <success/>).
 * Everything allocated is freed (LeakSanitizer). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "jid/jid.h"
#include "stream/stream.h"
#include "stream/stream_client.h"
#include "xml/xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_s2s: %s\n", what);
    abort();
}

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            fail(#cond);                                                       \
    } while (0)

static const char *const HOSTS[] = {"b.test"};

typedef struct run {
    uint8_t flags;
    stream_t *in;
    sclient_t *out;
    bool closed, tls_asked, ready, failed;
    /* Dialback requests waiting for their answer (after the feed). */
    char pend_from[8][JID_PART_BUF], pend_to[8][JID_PART_BUF];
    size_t npend;
    /* What the receiving half wrote, parsed as the peer would. */
    xml_parser_t *check;
    bool check_restart;
} run_t;

static const char *answer(const run_t *r)
{
    switch (r->flags >> 6) {
    case 1:
        return "invalid";
    case 2:
        return "remote-server-not-found";
    default:
        return NULL;
    }
}

/* ----------------------------------------------- the output's parser */

static void on_check_header(void *ud, xml_tree_t *t)
{
    (void)ud;
    CHECK(t->root->ns != NULL && strcmp(t->root->ns, XML_NS_STREAMS) == 0);
    CHECK(xml_element_attr(t->root, NULL, "id") != NULL);
    xml_tree_free(t);
}

static void on_check_element(void *ud, xml_tree_t *t)
{
    run_t *r = ud;
    const xml_node_t *el = t->root;
    /* A restart follows these: the next bytes are a new header. */
    if ((el->ns != NULL && strcmp(el->ns, STREAM_NS_TLS) == 0 &&
         strcmp(el->name, "proceed") == 0) ||
        (el->ns != NULL && strcmp(el->ns, STREAM_NS_SASL) == 0 &&
         strcmp(el->name, "success") == 0)) {
        r->check_restart = true;
        xml_parser_stop(r->check);
    }
    xml_tree_free(t);
}

static void on_check_end(void *ud)
{
    (void)ud;
}

static void check_output(run_t *r, const char *data, size_t len)
{
    if (r->check == NULL)
        return;
    if (r->check_restart) {
        r->check_restart = false;
        CHECK(xml_parser_reset(r->check) == 0);
    }
    int rc = xml_parser_feed(r->check, data, len);
    /* Our output is always well-formed; an element after our close tag
     * would show as XML_ERR_CLOSED. */
    CHECK(rc >= 0);
}

/* ------------------------------------------------- receiving half */

static void in_send(void *ud, const char *d, size_t n)
{
    run_t *r = ud;
    CHECK(!r->closed);
    check_output(r, d, n);
}

static void in_start_tls(void *ud)
{
    run_t *r = ud;
    CHECK(!r->closed && !r->tls_asked);
    r->tls_asked = true;
}

static void in_close(void *ud)
{
    run_t *r = ud;
    CHECK(!r->closed);
    r->closed = true;
}

static void in_stanza(void *ud, xml_tree_t *t)
{
    run_t *r = ud;
    const xml_node_t *el = t->root;
    CHECK(!r->closed);
    CHECK(el->ns != NULL && strcmp(el->ns, XML_NS_SERVER) == 0);
    CHECK(strcmp(el->name, "message") == 0 ||
          strcmp(el->name, "presence") == 0 || strcmp(el->name, "iq") == 0);
    const char *from = xml_element_attr(el, NULL, "from");
    const char *to = xml_element_attr(el, NULL, "to");
    CHECK(from != NULL && to != NULL);
    jid_t f, tj;
    CHECK(jid_parse(from, strlen(from), 0, &f) == JID_OK);
    CHECK(jid_parse(to, strlen(to), 0, &tj) == JID_OK);
    CHECK(strcmp(tj.domain, "b.test") == 0);
    CHECK(stream_s2s_authorized(r->in, f.domain, tj.domain));
    jid_clear(&f);
    jid_clear(&tj);
    xml_tree_free(t);
}

static bool in_cert_valid(void *ud, const char *domain)
{
    run_t *r = ud;
    return (r->flags & 8) && strcmp(domain, "a.test") == 0;
}

static void check_domain(const char *d)
{
    char p[JID_PART_BUF];
    CHECK(jid_prepare_domain(d, strlen(d), 0, p, NULL) == JID_OK);
    CHECK(strcmp(p, d) == 0);
}

static void in_db_result(void *ud, const char *from, const char *to,
                         const char *key)
{
    run_t *r = ud;
    CHECK(!r->closed);
    check_domain(from);
    CHECK(strcmp(to, "b.test") == 0);
    CHECK(key[0] != '\0');
    if (r->flags & 16) {
        stream_dialback_result(r->in, from, to, answer(r));
    } else if (r->npend < 8) {
        snprintf(r->pend_from[r->npend], JID_PART_BUF, "%s", from);
        snprintf(r->pend_to[r->npend], JID_PART_BUF, "%s", to);
        r->npend++;
    }
}

static void in_db_verify(void *ud, const char *from, const char *to,
                         const char *id, const char *key)
{
    run_t *r = ud;
    CHECK(!r->closed);
    check_domain(from);
    CHECK(strcmp(to, "b.test") == 0);
    CHECK(id[0] != '\0' && key[0] != '\0');
    stream_dialback_verify_done(r->in, from, to, id, strcmp(key, "k") == 0);
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

/* ------------------------------------------------ initiating half */

static void out_send(void *ud, const char *d, size_t n)
{
    run_t *r = ud;
    (void)d;
    (void)n;
    CHECK(!r->closed);
}

static void out_ready(void *ud, const jid_t *jid)
{
    run_t *r = ud;
    CHECK(jid == NULL && !r->ready && !r->failed && !r->closed);
    r->ready = true;
}

static void out_stanza(void *ud, xml_tree_t *t)
{
    (void)ud;
    xml_tree_free(t);
    fail("a stanza reached the owner of an outgoing s2s stream");
}

static void out_failed(void *ud, int err, const char *cond, const char *text,
                       const char *desc)
{
    run_t *r = ud;
    (void)err;
    (void)cond;
    (void)text;
    CHECK(desc != NULL && !r->failed && !r->closed);
    r->failed = true;
}

static void out_db_key(void *ud, const char *stream_id)
{
    run_t *r = ud;
    CHECK(stream_id != NULL && !r->closed);
    sclient_s2s_dialback(r->out, "the-key");
}

static void out_verified(void *ud, bool valid)
{
    run_t *r = ud;
    (void)valid;
    CHECK(!r->closed);
}

static const sclient_hooks_t out_hooks = {
    .send = out_send,
    .start_tls = in_start_tls,
    .close = in_close,
    .ready = out_ready,
    .stanza = out_stanza,
    .failed = out_failed,
    .dialback_key = out_db_key,
    .dialback_verified = out_verified,
};

/* ------------------------------------------------------------ driver */

static void after_feed(run_t *r)
{
    if (r->tls_asked && !r->closed) {
        r->tls_asked = false;
        if (r->in != NULL) {
            stream_tls_done(r->in, true, NULL);
            r->check_restart = true;
        } else {
            sclient_tls_info_t info = {.have_client_cert = true,
                                       .peer_cert_valid = (r->flags & 8) != 0};
            sclient_tls_done(r->out, true, &info);
        }
    }
    for (size_t i = 0; r->in != NULL && i < r->npend && !r->closed; i++)
        stream_dialback_result(r->in, r->pend_from[i], r->pend_to[i],
                               answer(r));
    r->npend = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    run_t r = {.flags = data[0]};
    bool tls = (r.flags & 2) != 0;
    stream_config_t cfg = {0};
    cfg.hosts = HOSTS;
    cfg.host_count = 1;
    cfg.tls_available = tls;
    cfg.tls_required = tls;
    cfg.dialback = (r.flags & 4) != 0;
    cfg.max_auth_failures = 3;
    xml_limits_default(&cfg.limits);
    cfg.limits_preauth = cfg.limits;
    cfg.limits_preauth.max_element_size = 4096;
    if (r.flags & 1) {
        sclient_s2s_config_t oc = {.from = "a.test",
                                   .to = "b.test",
                                   .allow_plaintext = !tls,
                                   .have_cert = true,
                                   .dialback = (r.flags & 4) != 0};
        r.out = (r.flags & 32)
                    ? sclient_new_s2s_verify(&oc, "id1", "k", &out_hooks, &r)
                    : sclient_new_s2s(&oc, &out_hooks, &r);
        CHECK(r.out != NULL);
        sclient_start(r.out);
    } else {
        r.in = stream_new_s2s_in(&cfg, &in_hooks, &r);
        CHECK(r.in != NULL);
        static const xml_parser_cbs_t cbs = {on_check_header, on_check_element,
                                             on_check_end};
        xml_parser_opts_t po = {.content_ns = XML_NS_SERVER};
        xml_limits_default(&po.limits);
        r.check = xml_parser_new(&po, &cbs, &r);
        CHECK(r.check != NULL);
    }
    size_t pos = 1;
    while (pos < size && !r.closed) {
        size_t end = pos;
        while (end < size && data[end] != 0xFF)
            end++;
        if (end > pos) {
            if (r.in != NULL)
                stream_feed(r.in, (const char *)data + pos, end - pos);
            else
                sclient_feed(r.out, (const char *)data + pos, end - pos);
            after_feed(&r);
        }
        pos = end + 1;
    }
    if (r.in != NULL) {
        CHECK((stream_state(r.in) == STREAM_CLOSED) == r.closed);
        stream_abort(r.in);
        CHECK(r.closed);
        stream_free(r.in);
        xml_parser_free(r.check);
    } else {
        sclient_abort(r.out);
        sclient_free(r.out);
    }
    return 0;
}
