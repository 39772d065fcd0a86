/* libFuzzer target: the accepting half of an XEP-0114 component stream
 * (lib/stream/stream_component.c) fed with what a component writes.
 *
 * The input: a header byte, then the component's writes separated by 0xFF
 * bytes (never valid UTF-8). Header byte:
 *   bit 0  raw: the input is the whole stream, header and handshake
 *          included (the handshake can only fail, its id being random);
 *          otherwise a valid header for bot.test and the right handshake
 *          come first, and the input is what follows
 *   bit 1  the owner refuses the domain after the handshake (conflict)
 *   bit 2  every stanza is sent back to the component at once
 *
 * Properties checked (abort() on violation):
 *  - a stanza reaches the owner only after a valid handshake, as message,
 *    presence or iq in jabber:client, with a 'from' at bot.test and a 'to'
 *    that parses as a JID;
 *  - nothing is sent after hooks->close, which runs at most once;
 *  - everything the stream writes parses as one XML stream in
 *    jabber:component:accept.
 * Everything allocated is freed (LeakSanitizer). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jid/jid.h"
#include "stream/stream_component.h"
#include "xml/xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_component: %s\n", what);
    abort();
}

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            fail(#cond);                                                       \
    } while (0)

typedef struct run {
    uint8_t flags;
    cstream_t *cs;
    xml_parser_t *out; /* parses what the stream writes */
    bool closed;
    bool authed;
    unsigned stanzas;
} run_t;

static void out_header(void *ud, xml_tree_t *t)
{
    (void)ud;
    xml_tree_free(t);
}

static void out_element(void *ud, xml_tree_t *t)
{
    (void)ud;
    xml_tree_free(t);
}

static void out_end(void *ud)
{
    (void)ud;
}

static int h_send(void *ud, const char *data, size_t len)
{
    run_t *r = ud;
    CHECK(!r->closed);
    int rc = xml_parser_feed(r->out, data, len);
    CHECK(rc == XML_OK || rc == XML_ERR_NOMEM);
    return 0;
}

static void h_close(void *ud)
{
    run_t *r = ud;
    CHECK(!r->closed);
    r->closed = true;
}

static const char *h_secret(void *ud, const char *domain)
{
    (void)ud;
    return strcmp(domain, "bot.test") == 0 ? "s3cret" : NULL;
}

static const char *h_authenticated(void *ud, const char *domain)
{
    run_t *r = ud;
    CHECK(strcmp(domain, "bot.test") == 0);
    if (r->flags & 2)
        return "conflict";
    r->authed = true;
    return NULL;
}

static void h_stanza(void *ud, xml_tree_t *t)
{
    run_t *r = ud;
    const xml_node_t *el = t->root;
    CHECK(r->authed && !r->closed);
    CHECK(el->ns != NULL && strcmp(el->ns, XML_NS_CLIENT) == 0);
    CHECK(strcmp(el->name, "message") == 0 ||
          strcmp(el->name, "presence") == 0 || strcmp(el->name, "iq") == 0);
    const char *from = xml_element_attr(el, NULL, "from");
    const char *to = xml_element_attr(el, NULL, "to");
    CHECK(from != NULL && to != NULL);
    jid_t f, tj;
    CHECK(jid_parse(from, strlen(from), 0, &f) == JID_OK);
    CHECK(strcmp(f.domain, "bot.test") == 0);
    jid_clear(&f);
    CHECK(jid_parse(to, strlen(to), 0, &tj) == JID_OK);
    jid_clear(&tj);
    r->stanzas++;
    if (r->flags & 4)
        cstream_send_element(r->cs, el);
    xml_tree_free(t);
}

static const cstream_hooks_t hooks = {
    .send = h_send,
    .close = h_close,
    .secret = h_secret,
    .authenticated = h_authenticated,
    .stanza = h_stanza,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    run_t r = {.flags = data[0]};
    xml_limits_t pre = {16 * 1024, 16, 32}, lim = {64 * 1024, 32, 64};
    static const xml_parser_cbs_t cbs = {out_header, out_element, out_end};
    xml_parser_opts_t po = {.content_ns = XML_NS_COMPONENT, .limits = lim};
    r.out = xml_parser_new(&po, &cbs, &r);
    r.cs = cstream_new(&pre, &lim, &hooks, &r);
    if (r.out == NULL || r.cs == NULL) {
        cstream_free(r.cs);
        xml_parser_free(r.out);
        return 0;
    }
    if (!(r.flags & 1)) {
        static const char hdr[] =
            "<stream:stream xmlns='jabber:component:accept' "
            "xmlns:stream='http://etherx.jabber.org/streams' to='bot.test'>";
        cstream_feed(r.cs, hdr, sizeof(hdr) - 1);
        char digest[41], hs[80];
        cstream_handshake_digest(cstream_id(r.cs), "s3cret", digest);
        int n = snprintf(hs, sizeof(hs), "<handshake>%s</handshake>", digest);
        cstream_feed(r.cs, hs, (size_t)n);
        CHECK(r.closed || cstream_is_authenticated(r.cs) || (r.flags & 2));
    }
    size_t start = 1;
    for (size_t i = 1; i <= size; i++) {
        if (i == size || data[i] == 0xFF) {
            if (i > start && !r.closed)
                cstream_feed(r.cs, (const char *)data + start, i - start);
            start = i + 1;
        }
    }
    if (!r.closed)
        cstream_close(r.cs);
    CHECK(r.closed);
    cstream_free(r.cs);
    xml_parser_free(r.out);
    return 0;
}
