/* Unit tests for the XMPP stream parser (lib/xml/xml_parser.c), written
 * against the contract in lib/xml/xml.h and RFC 6120 (§4.9.3 stream error
 * conditions, §11 restricted XML). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "xml/xml.h"

#define STREAMS_Q "'http://etherx.jabber.org/streams'"

/* A c2s stream header as a client sends it, with the XML declaration. */
#define HDR_C2S                                                                \
    "<?xml version='1.0'?>"                                                    \
    "<stream:stream xmlns='jabber:client' xmlns:stream=" STREAMS_Q             \
    " to='example.com' from='juliet@example.com' version='1.0'"                \
    " xml:lang='en'>"

/* A short header: default ns, stream prefix, to, version (4 attributes and
 * namespace declarations in all). */
#define HDR                                                                    \
    "<stream:stream xmlns='jabber:client' xmlns:stream=" STREAMS_Q             \
    " to='example.com' version='1.0'>"

#define KiB 1024u
#define MiB (1024u * 1024u)

/* ------------------------------------------------------------ capture */

enum { MAX_HEADERS = 8 };

/* Records every event of one parser. */
typedef struct cap {
    xml_parser_t *p;
    xml_tree_t *headers[MAX_HEADERS];
    int n_headers;
    xml_tree_t **els;
    size_t n_els, cap_els;
    int n_ends;
    /* Behaviours. */
    bool stop_on_header;
    const char *stop_on_name; /* stop when an element of this name arrives */
    bool stop_on_end;
} cap_t;

static void cb_start(void *ud, xml_tree_t *header)
{
    cap_t *c = ud;
    assert_non_null(header);
    if (c->n_headers < MAX_HEADERS)
        c->headers[c->n_headers] = header;
    else
        xml_tree_free(header);
    c->n_headers++;
    if (c->stop_on_header)
        xml_parser_stop(c->p);
}

static void cb_element(void *ud, xml_tree_t *el)
{
    cap_t *c = ud;
    assert_non_null(el);
    assert_non_null(el->root);
    if (c->n_els == c->cap_els) {
        size_t ncap = c->cap_els ? c->cap_els * 2 : 16;
        xml_tree_t **n = realloc(c->els, ncap * sizeof(*n));
        assert_non_null(n);
        c->els = n;
        c->cap_els = ncap;
    }
    c->els[c->n_els++] = el;
    if (c->stop_on_name != NULL && el->root->name != NULL &&
        strcmp(el->root->name, c->stop_on_name) == 0)
        xml_parser_stop(c->p);
}

static void cb_end(void *ud)
{
    cap_t *c = ud;
    c->n_ends++;
    if (c->stop_on_end)
        xml_parser_stop(c->p);
}

static const xml_parser_cbs_t CBS = {cb_start, cb_element, cb_end};

static void cap_init(cap_t *c, const xml_parser_opts_t *opts)
{
    memset(c, 0, sizeof(*c));
    c->p = xml_parser_new(opts, &CBS, c);
    assert_non_null(c->p);
}

/* Frees the recorded trees (not the parser). */
static void cap_clear(cap_t *c)
{
    for (int i = 0; i < c->n_headers && i < MAX_HEADERS; i++)
        xml_tree_free(c->headers[i]);
    for (size_t i = 0; i < c->n_els; i++)
        xml_tree_free(c->els[i]);
    free(c->els);
    c->els = NULL;
    c->n_els = c->cap_els = 0;
    c->n_headers = 0;
    c->n_ends = 0;
}

static void cap_free(cap_t *c)
{
    cap_clear(c);
    xml_parser_free(c->p);
    c->p = NULL;
}

static xml_node_t *el_root(const cap_t *c, size_t i)
{
    assert_true(i < c->n_els);
    return c->els[i]->root;
}

/* ------------------------------------------------------------ feeding */

/* Feeds in chunks of `chunk` bytes (0: all at once); returns the first
 * result that is not XML_OK, or XML_OK. */
static int feed_chunked(xml_parser_t *p, const char *d, size_t len,
                        size_t chunk)
{
    if (chunk == 0)
        return xml_parser_feed(p, d, len);
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        int rc = xml_parser_feed(p, d + off, n);
        if (rc != XML_OK)
            return rc;
    }
    return XML_OK;
}

static int feed_str(xml_parser_t *p, const char *s)
{
    return xml_parser_feed(p, s, strlen(s));
}

static uint32_t rng_next(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* Feeds in pseudo-random chunks of 1..maxchunk bytes. */
static int feed_random(xml_parser_t *p, const char *d, size_t len,
                       uint32_t seed, size_t maxchunk)
{
    uint32_t s = seed ? seed : 1;
    size_t off = 0;
    while (off < len) {
        size_t n = 1 + rng_next(&s) % maxchunk;
        if (n > len - off)
            n = len - off;
        int rc = xml_parser_feed(p, d + off, n);
        if (rc != XML_OK)
            return rc;
        off += n;
    }
    return XML_OK;
}

/* Prints a document with the unprintable bytes escaped. */
static void print_doc(const char *what, const char *d, size_t len)
{
    buf_t b = BUF_INIT;
    for (size_t i = 0; i < len && i < 600; i++) {
        unsigned char ch = (unsigned char)d[i];
        if (ch >= 0x20 && ch < 0x7f) {
            buf_append(&b, &d[i], 1);
        } else {
            char tmp[8];
            snprintf(tmp, sizeof(tmp), "\\x%02X", ch);
            buf_append_str(&b, tmp);
        }
    }
    print_message("%s: \"%s\"%s\n", what, b.data ? b.data : "",
                  len > 600 ? "..." : "");
    buf_free(&b);
}

static const char *err_name(int rc)
{
    switch (rc) {
    case XML_OK:
        return "XML_OK";
    case XML_STOPPED:
        return "XML_STOPPED";
    case XML_ERR_NOMEM:
        return "XML_ERR_NOMEM";
    case XML_ERR_NOT_WELL_FORMED:
        return "XML_ERR_NOT_WELL_FORMED";
    case XML_ERR_RESTRICTED:
        return "XML_ERR_RESTRICTED";
    case XML_ERR_INVALID_NAMESPACE:
        return "XML_ERR_INVALID_NAMESPACE";
    case XML_ERR_BAD_NAMESPACE_PREFIX:
        return "XML_ERR_BAD_NAMESPACE_PREFIX";
    case XML_ERR_UNSUPPORTED_ENCODING:
        return "XML_ERR_UNSUPPORTED_ENCODING";
    case XML_ERR_TOO_LARGE:
        return "XML_ERR_TOO_LARGE";
    case XML_ERR_TOO_DEEP:
        return "XML_ERR_TOO_DEEP";
    case XML_ERR_TOO_MANY_ATTRS:
        return "XML_ERR_TOO_MANY_ATTRS";
    case XML_ERR_BAD_FORMAT:
        return "XML_ERR_BAD_FORMAT";
    case XML_ERR_CLOSED:
        return "XML_ERR_CLOSED";
    default:
        return "(unknown)";
    }
}

static void check_rc(int got, int want, const char *d, size_t len,
                     const char *how)
{
    if (got != want) {
        print_doc("input", d, len);
        fail_msg("%s: got %d %s, want %d %s", how, got, err_name(got), want,
                 err_name(want));
    }
}

/* Parses doc (one shot, 1-byte chunks, 5-byte chunks and random chunks) and
 * expects `err` with condition `cond` each time; then checks that the error
 * sticks, that no event follows it, and that the error has a text. */
static void expect_error_opts(const xml_parser_opts_t *opts, const char *d,
                              size_t len, int err, const char *cond)
{
    static const size_t chunks[] = {0, 1, 5, 1000};
    for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
        cap_t c;
        cap_init(&c, opts);
        int rc = chunks[k] == 1000 ? feed_random(c.p, d, len, 77, 13)
                                   : feed_chunked(c.p, d, len, chunks[k]);
        char how[64];
        snprintf(how, sizeof(how), "chunking %zu", chunks[k]);
        check_rc(rc, err, d, len, how);
        assert_string_equal(xml_error_condition(rc), cond);
        const char *text = xml_parser_error_text(c.p);
        assert_non_null(text);
        assert_true(strlen(text) > 0);

        /* The error sticks, and nothing more is delivered. */
        int nh = c.n_headers, ne = c.n_ends;
        size_t nel = c.n_els;
        check_rc(feed_str(c.p, "<message/>"), err, d, len, "later feed");
        check_rc(xml_parser_feed(c.p, "", 0), err, d, len, "empty feed");
        check_rc(feed_str(c.p, HDR "<presence/>"), err, d, len, "later header");
        assert_int_equal(c.n_headers, nh);
        assert_int_equal(c.n_els, nel);
        assert_int_equal(c.n_ends, ne);
        cap_free(&c);
    }
}

static void expect_error(const char *doc, int err, const char *cond)
{
    expect_error_opts(NULL, doc, strlen(doc), err, cond);
}

static void expect_error_len(const char *doc, size_t len, int err,
                             const char *cond)
{
    expect_error_opts(NULL, doc, len, err, cond);
}

/* Parses doc in one shot and 1-byte chunks and expects no error. */
static void expect_ok_opts(const xml_parser_opts_t *opts, const char *doc,
                           size_t n_els_want)
{
    static const size_t chunks[] = {0, 1};
    size_t len = strlen(doc);
    for (size_t k = 0; k < 2; k++) {
        cap_t c;
        cap_init(&c, opts);
        int rc = feed_chunked(c.p, doc, len, chunks[k]);
        check_rc(rc, XML_OK, doc, len, chunks[k] ? "1-byte" : "one shot");
        assert_int_equal(c.n_headers, 1);
        assert_int_equal(c.n_els, n_els_want);
        cap_free(&c);
    }
}

static void expect_ok(const char *doc, size_t n_els_want)
{
    expect_ok_opts(NULL, doc, n_els_want);
}

/* ------------------------------------------------------------ helpers */

static const xml_attr_t *find_attr(const xml_node_t *el, const char *ns,
                                   const char *name)
{
    for (const xml_attr_t *a = el->attrs; a != NULL; a = a->next) {
        bool ns_eq = (ns == NULL && a->ns == NULL) ||
                     (ns != NULL && a->ns != NULL && strcmp(ns, a->ns) == 0);
        if (ns_eq && strcmp(a->name, name) == 0)
            return a;
    }
    return NULL;
}

/* find_attr() that fails the test when the attribute is missing (and never
 * returns NULL, so that the compiler sees no null dereference after it). */
static const xml_attr_t *must_attr(const xml_node_t *el, const char *ns,
                                   const char *name)
{
    static const xml_attr_t none = {NULL, NULL, NULL, "", ""};
    const xml_attr_t *a = find_attr(el, ns, name);
    if (a == NULL) {
        fail_msg("no attribute {%s}%s", ns ? ns : "", name);
        return &none;
    }
    return a;
}

static size_t count_attrs(const xml_node_t *el)
{
    size_t n = 0;
    for (const xml_attr_t *a = el->attrs; a != NULL; a = a->next)
        n++;
    return n;
}

static void assert_str_or_null(const char *got, const char *want)
{
    if (want == NULL)
        assert_null(got);
    else {
        assert_non_null(got);
        assert_string_equal(got, want);
    }
}

static void assert_el(const xml_node_t *el, const char *ns, const char *prefix,
                      const char *name)
{
    assert_non_null(el);
    assert_int_equal(el->kind, XML_NODE_ELEMENT);
    assert_str_or_null(el->ns, ns);
    assert_str_or_null(el->prefix, prefix);
    assert_string_equal(el->name, name);
}

/* el has exactly one child, a text node with this content. */
static void assert_only_text(const xml_node_t *el, const char *text)
{
    assert_non_null(el);
    const xml_node_t *t = el->children;
    assert_non_null(t);
    assert_int_equal(t->kind, XML_NODE_TEXT);
    assert_null(t->next);
    assert_int_equal(t->text_len, strlen(text));
    assert_memory_equal(t->text, text, strlen(text));
    assert_int_equal(t->text[t->text_len], '\0');
}

/* Namespace declarations are not attributes of the tree. */
static void assert_no_xmlns_attrs(const xml_node_t *el)
{
    for (const xml_attr_t *a = el->attrs; a != NULL; a = a->next) {
        assert_string_not_equal(a->name, "xmlns");
        if (a->prefix != NULL)
            assert_string_not_equal(a->prefix, "xmlns");
    }
}

static void append_n(buf_t *b, char ch, size_t n)
{
    assert_int_equal(buf_reserve(b, n), 0);
    memset(b->data + b->len, ch, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void append_repeat(buf_t *b, const char *s, size_t times)
{
    for (size_t i = 0; i < times; i++)
        assert_int_equal(buf_append_str(b, s), 0);
}

/* ------------------------------------------------- the reference stream */

static const char STREAM1[] = HDR_C2S
    "<stream:features>"
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    "<mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-1</mechanism>"
    "</mechanisms></stream:features>"
    "\n  \t\r\n"
    "<message from='romeo@example.net/orchard' to='juliet@example.com'"
    " type='chat' id='m&amp;1' xml:lang='fr'>"
    "<body>h\xC3\xA9llo \xE2\x98\x83 \xF0\x9F\x98\x80 &lt;b&gt; &amp; "
    "&quot;q&quot; &apos;a&apos; &#x263A;&#60;x</body>"
    "<subject>s</subject><thread>t1</thread></message>"
    " "
    "<presence><show>away</show><status>a&gt;b'c\"d</status>"
    "<priority>5</priority>"
    "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1'"
    " node='http://x' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>"
    "\n"
    "<iq type='result' id='r&lt;1&gt;'><query xmlns='jabber:iq:roster'"
    " ver='v1'><item jid='nurse@example.com'"
    " name='N &amp; &quot;M&quot; &apos;&#x263A;' subscription='both'>"
    "<group>Friends</group></item></query></iq>"
    "<message to='x@y'><body>a<![CDATA[<not a tag> & ]] > ]]>b</body>"
    "</message>"
    "<foo:bar xmlns:foo='urn:x' foo:attr='1' plain='a>b'><foo:baz/>text"
    "<inner xmlns='urn:y'><deeper/></inner></foo:bar>"
    "    "
    "<message>\n  <body>hi</body>\n</message>"
    "\t"
    "</stream:stream>";

enum { STREAM1_ELS = 7 };

static void check_stream1(const cap_t *c)
{
    assert_int_equal(c->n_headers, 1);
    assert_int_equal(c->n_els, STREAM1_ELS);
    assert_int_equal(c->n_ends, 1);

    /* The header: the stream element with its attributes, no children. */
    const xml_node_t *h = c->headers[0]->root;
    assert_el(h, XML_NS_STREAMS, "stream", "stream");
    assert_null(h->children);
    assert_null(h->parent);
    assert_string_equal(xml_element_attr(h, NULL, "to"), "example.com");
    assert_string_equal(xml_element_attr(h, NULL, "from"),
                        "juliet@example.com");
    assert_string_equal(xml_element_attr(h, NULL, "version"), "1.0");
    assert_string_equal(xml_element_attr(h, XML_NS_XML, "lang"), "en");
    assert_null(xml_element_attr(h, NULL, "lang"));
    assert_str_or_null(must_attr(h, XML_NS_XML, "lang")->prefix, "xml");
    assert_null(must_attr(h, NULL, "to")->ns);
    assert_no_xmlns_attrs(h);
    assert_int_equal(count_attrs(h), 4);

    /* <stream:features> */
    const xml_node_t *f = el_root(c, 0);
    assert_el(f, XML_NS_STREAMS, "stream", "features");
    assert_null(f->parent);
    assert_int_equal(xml_element_count_children(f), 2);
    const xml_node_t *tls = f->children;
    assert_el(tls, "urn:ietf:params:xml:ns:xmpp-tls", NULL, "starttls");
    assert_ptr_equal(tls->parent, f);
    assert_no_xmlns_attrs(tls);
    assert_null(tls->attrs);
    assert_el(tls->children, "urn:ietf:params:xml:ns:xmpp-tls", NULL,
              "required");
    assert_null(tls->children->children);
    const xml_node_t *mechs = tls->next;
    assert_el(mechs, "urn:ietf:params:xml:ns:xmpp-sasl", NULL, "mechanisms");
    assert_ptr_equal(f->last_child, mechs);
    assert_int_equal(xml_element_count_children(mechs), 2);
    assert_only_text(mechs->children, "PLAIN");
    assert_only_text(mechs->children->next, "SCRAM-SHA-1");

    /* <message> with entities and multi-byte UTF-8 */
    const xml_node_t *m = el_root(c, 1);
    assert_el(m, XML_NS_CLIENT, NULL, "message");
    assert_no_xmlns_attrs(m);
    assert_int_equal(count_attrs(m), 5);
    assert_string_equal(xml_element_attr(m, NULL, "from"),
                        "romeo@example.net/orchard");
    assert_string_equal(xml_element_attr(m, NULL, "to"), "juliet@example.com");
    assert_string_equal(xml_element_attr(m, NULL, "type"), "chat");
    assert_string_equal(xml_element_attr(m, NULL, "id"), "m&1");
    assert_string_equal(xml_element_attr(m, XML_NS_XML, "lang"), "fr");
    /* Attributes in document order. */
    assert_string_equal(m->attrs->name, "from");
    assert_string_equal(m->attrs->next->name, "to");
    assert_int_equal(xml_element_count_children(m), 3);
    const xml_node_t *body = m->children;
    assert_el(body, XML_NS_CLIENT, NULL, "body");
    assert_only_text(body, "h\xC3\xA9llo \xE2\x98\x83 \xF0\x9F\x98\x80 <b> & "
                           "\"q\" 'a' \xE2\x98\xBA<x");
    assert_el(body->next, XML_NS_CLIENT, NULL, "subject");
    assert_only_text(body->next, "s");
    assert_el(body->next->next, XML_NS_CLIENT, NULL, "thread");
    assert_only_text(body->next->next, "t1");

    /* <presence> with raw > ' " in character data */
    const xml_node_t *pr = el_root(c, 2);
    assert_el(pr, XML_NS_CLIENT, NULL, "presence");
    assert_null(pr->attrs);
    assert_int_equal(xml_element_count_children(pr), 4);
    const xml_node_t *status = xml_element_child(pr, XML_NS_CLIENT, "status");
    assert_only_text(status, "a>b'c\"d");
    const xml_node_t *caps =
        xml_element_child(pr, "http://jabber.org/protocol/caps", "c");
    assert_el(caps, "http://jabber.org/protocol/caps", NULL, "c");
    assert_string_equal(xml_element_attr(caps, NULL, "ver"),
                        "QgayPKawpkPSDYmwT/WM94uAlu0=");
    assert_int_equal(count_attrs(caps), 3);

    /* <iq> with entities in attribute values */
    const xml_node_t *iq = el_root(c, 3);
    assert_el(iq, XML_NS_CLIENT, NULL, "iq");
    assert_string_equal(xml_element_attr(iq, NULL, "id"), "r<1>");
    const xml_node_t *q = xml_element_child(iq, "jabber:iq:roster", "query");
    assert_el(q, "jabber:iq:roster", NULL, "query");
    const xml_node_t *item = q->children;
    assert_el(item, "jabber:iq:roster", NULL, "item");
    assert_string_equal(xml_element_attr(item, NULL, "name"),
                        "N & \"M\" '\xE2\x98\xBA");
    assert_only_text(item->children, "Friends");

    /* CDATA merged with the surrounding text into one node */
    const xml_node_t *m2 = el_root(c, 4);
    assert_el(m2, XML_NS_CLIENT, NULL, "message");
    assert_only_text(m2->children, "a<not a tag> & ]] > b");

    /* Prefixed elements and attributes */
    const xml_node_t *fb = el_root(c, 5);
    assert_el(fb, "urn:x", "foo", "bar");
    assert_no_xmlns_attrs(fb);
    assert_int_equal(count_attrs(fb), 2);
    const xml_attr_t *fa = must_attr(fb, "urn:x", "attr");
    assert_str_or_null(fa->prefix, "foo");
    assert_string_equal(fa->value, "1");
    assert_string_equal(xml_element_attr(fb, "urn:x", "attr"), "1");
    assert_null(xml_element_attr(fb, NULL, "attr"));
    assert_string_equal(xml_element_attr(fb, NULL, "plain"), "a>b");
    const xml_node_t *baz = fb->children;
    assert_el(baz, "urn:x", "foo", "baz");
    const xml_node_t *txt = baz->next;
    assert_non_null(txt);
    assert_int_equal(txt->kind, XML_NODE_TEXT);
    assert_int_equal(txt->text_len, 4);
    assert_memory_equal(txt->text, "text", 4);
    const xml_node_t *inner = txt->next;
    assert_el(inner, "urn:y", NULL, "inner");
    assert_null(inner->next);
    assert_el(inner->children, "urn:y", NULL, "deeper");

    /* Whitespace inside a stanza is character data and is kept. */
    const xml_node_t *m3 = el_root(c, 6);
    assert_el(m3, XML_NS_CLIENT, NULL, "message");
    const xml_node_t *w1 = m3->children;
    assert_non_null(w1);
    assert_int_equal(w1->kind, XML_NODE_TEXT);
    assert_int_equal(w1->text_len, 3);
    assert_memory_equal(w1->text, "\n  ", 3);
    assert_el(w1->next, XML_NS_CLIENT, NULL, "body");
    assert_only_text(w1->next, "hi");
    assert_non_null(w1->next->next);
    assert_int_equal(w1->next->next->kind, XML_NODE_TEXT);
    assert_int_equal(w1->next->next->text_len, 1);
    assert_null(w1->next->next->next);
}

/* ---------------------------------------------------------- the tests */

static void test_defaults_and_conditions(void **state)
{
    (void)state;
    xml_limits_t l;
    xml_limits_default(&l);
    assert_int_equal(l.max_element_size, 256 * KiB);
    assert_int_equal(l.max_depth, 64);
    assert_int_equal(l.max_attrs, 64);

    assert_string_equal(xml_error_condition(XML_ERR_NOMEM),
                        "resource-constraint");
    assert_string_equal(xml_error_condition(XML_ERR_NOT_WELL_FORMED),
                        "not-well-formed");
    assert_string_equal(xml_error_condition(XML_ERR_RESTRICTED),
                        "restricted-xml");
    assert_string_equal(xml_error_condition(XML_ERR_INVALID_NAMESPACE),
                        "invalid-namespace");
    assert_string_equal(xml_error_condition(XML_ERR_BAD_NAMESPACE_PREFIX),
                        "bad-namespace-prefix");
    assert_string_equal(xml_error_condition(XML_ERR_UNSUPPORTED_ENCODING),
                        "unsupported-encoding");
    assert_string_equal(xml_error_condition(XML_ERR_TOO_LARGE),
                        "policy-violation");
    assert_string_equal(xml_error_condition(XML_ERR_TOO_DEEP),
                        "policy-violation");
    assert_string_equal(xml_error_condition(XML_ERR_TOO_MANY_ATTRS),
                        "policy-violation");
    assert_string_equal(xml_error_condition(XML_ERR_BAD_FORMAT), "bad-format");
    assert_string_equal(xml_error_condition(-999), "undefined-condition");
    assert_non_null(xml_error_condition(XML_ERR_CLOSED));

    for (int e = XML_ERR_CLOSED; e <= XML_STOPPED; e++) {
        const char *s = xml_strerror(e);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
    }
    assert_non_null(xml_strerror(-999));
}

static void test_events_one_shot(void **state)
{
    (void)state;
    cap_t c;
    cap_init(&c, NULL);
    int rc = feed_chunked(c.p, STREAM1, strlen(STREAM1), 0);
    check_rc(rc, XML_OK, STREAM1, strlen(STREAM1), "one shot");
    check_stream1(&c);
    cap_free(&c);
}

static void test_events_with_content_ns(void **state)
{
    (void)state;
    xml_parser_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.content_ns = XML_NS_CLIENT;
    xml_limits_default(&opts.limits);
    cap_t c;
    cap_init(&c, &opts);
    int rc = feed_chunked(c.p, STREAM1, strlen(STREAM1), 0);
    check_rc(rc, XML_OK, STREAM1, strlen(STREAM1), "one shot");
    check_stream1(&c);
    cap_free(&c);
}

/* Compares the trees of two captures: equal by xml_node_equal and
 * serialized to the same bytes. */
static void assert_same_events(const cap_t *a, const cap_t *b)
{
    assert_int_equal(a->n_headers, b->n_headers);
    assert_int_equal(a->n_els, b->n_els);
    assert_int_equal(a->n_ends, b->n_ends);
    for (int i = 0; i < a->n_headers && i < MAX_HEADERS; i++)
        assert_true(xml_node_equal(a->headers[i]->root, b->headers[i]->root));
    for (size_t i = 0; i < a->n_els; i++) {
        assert_true(xml_node_equal(a->els[i]->root, b->els[i]->root));
        char *sa = xml_to_string(a->els[i]->root, XML_NS_CLIENT);
        char *sb = xml_to_string(b->els[i]->root, XML_NS_CLIENT);
        assert_non_null(sa);
        assert_non_null(sb);
        assert_string_equal(sa, sb);
        free(sa);
        free(sb);
    }
}

static void test_events_chunked_same_as_one_shot(void **state)
{
    (void)state;
    size_t len = strlen(STREAM1);
    cap_t ref;
    cap_init(&ref, NULL);
    check_rc(feed_chunked(ref.p, STREAM1, len, 0), XML_OK, STREAM1, len,
             "one shot");
    check_stream1(&ref);

    static const size_t sizes[] = {1, 2, 3, 4, 7, 13, 64, 100};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        cap_t c;
        cap_init(&c, NULL);
        int rc = feed_chunked(c.p, STREAM1, len, sizes[k]);
        check_rc(rc, XML_OK, STREAM1, len, "fixed chunks");
        check_stream1(&c);
        assert_same_events(&ref, &c);
        cap_free(&c);
    }
    for (uint32_t seed = 1; seed <= 40; seed++) {
        cap_t c;
        cap_init(&c, NULL);
        int rc =
            feed_random(c.p, STREAM1, len, seed * 2654435761u, 1 + seed % 17);
        check_rc(rc, XML_OK, STREAM1, len, "random chunks");
        check_stream1(&c);
        assert_same_events(&ref, &c);
        cap_free(&c);
    }
    cap_free(&ref);
}

/* The stanzas of a stream, repeated with whitespace keepalives in between,
 * fed byte by byte. */
static void test_whitespace_keepalives_make_no_elements(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    buf_append_str(&b, HDR);
    for (int i = 0; i < 50; i++) {
        append_n(&b, ' ', (size_t)i);
        buf_append_str(&b, "\n");
        buf_append_str(&b, "<presence/>");
        buf_append_str(&b, " \t\r\n ");
    }
    cap_t c;
    cap_init(&c, NULL);
    check_rc(feed_chunked(c.p, b.data, b.len, 1), XML_OK, b.data, b.len,
             "1-byte");
    assert_int_equal(c.n_els, 50);
    for (size_t i = 0; i < c.n_els; i++) {
        assert_el(c.els[i]->root, XML_NS_CLIENT, NULL, "presence");
        assert_null(c.els[i]->root->children);
    }
    /* Keepalives alone, in their own chunks. */
    for (int i = 0; i < 20; i++)
        check_rc(feed_str(c.p, " "), XML_OK, " ", 1, "keepalive");
    check_rc(feed_str(c.p, "\n\n\n"), XML_OK, "\n", 1, "keepalive");
    assert_int_equal(c.n_els, 50);
    check_rc(feed_str(c.p, "</stream:stream>"), XML_OK, "", 0, "close");
    assert_int_equal(c.n_ends, 1);
    cap_free(&c);
    buf_free(&b);
}

static void test_namespaces_c2s(void **state)
{
    (void)state;
    const char *doc =
        "<stream:stream xmlns='jabber:client' xmlns:stream=" STREAMS_Q
        " version='1.0'>"
        "<message><body>x</body></message>"
        "<stream:features/>"
        "<stream:error><not-well-formed"
        " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
        "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"
        "<foo:bar xmlns:foo='urn:x'><foo:baz/><plain/></foo:bar>"
        "<message xmlns='jabber:client'/>"
        "<message xmlns:x='urn:unused'/>";
    cap_t c;
    cap_init(&c, NULL);
    check_rc(feed_str(c.p, doc), XML_OK, doc, strlen(doc), "one shot");
    assert_int_equal(c.n_headers, 1);
    assert_int_equal(c.n_els, 7);
    assert_el(c.headers[0]->root, XML_NS_STREAMS, "stream", "stream");
    assert_el(el_root(&c, 0), XML_NS_CLIENT, NULL, "message");
    assert_el(el_root(&c, 0)->children, XML_NS_CLIENT, NULL, "body");
    assert_el(el_root(&c, 1), XML_NS_STREAMS, "stream", "features");
    assert_null(el_root(&c, 1)->children);
    assert_el(el_root(&c, 2), XML_NS_STREAMS, "stream", "error");
    assert_el(el_root(&c, 2)->children, "urn:ietf:params:xml:ns:xmpp-streams",
              NULL, "not-well-formed");
    assert_el(el_root(&c, 3), XML_NS_CLIENT, NULL, "iq");
    assert_el(el_root(&c, 3)->children, "urn:xmpp:ping", NULL, "ping");
    assert_el(el_root(&c, 4), "urn:x", "foo", "bar");
    assert_el(el_root(&c, 4)->children, "urn:x", "foo", "baz");
    /* The default namespace of the stream still applies inside. */
    assert_el(el_root(&c, 4)->children->next, XML_NS_CLIENT, NULL, "plain");
    assert_el(el_root(&c, 5), XML_NS_CLIENT, NULL, "message");
    assert_null(el_root(&c, 5)->attrs);
    assert_el(el_root(&c, 6), XML_NS_CLIENT, NULL, "message");
    assert_null(el_root(&c, 6)->attrs);
    cap_free(&c);
}

/* A server-to-server stream: jabber:server and a dialback prefix declared
 * on the header, used by the stanzas. */
static void test_namespaces_s2s(void **state)
{
    (void)state;
    const char *doc =
        "<?xml version='1.0' encoding='UTF-8'?>"
        "<stream:stream xmlns='jabber:server' xmlns:stream=" STREAMS_Q
        " xmlns:db='jabber:server:dialback' to='b.example' from='a.example'"
        " version='1.0'>"
        "<db:result from='a.example' to='b.example'>s3cr3tf0rd14lb4ck"
        "</db:result>"
        "<message from='a@a.example' to='b@b.example'><body>x</body>"
        "</message>";
    xml_parser_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.content_ns = XML_NS_SERVER;
    xml_limits_default(&opts.limits);
    cap_t c;
    cap_init(&c, &opts);
    check_rc(feed_chunked(c.p, doc, strlen(doc), 1), XML_OK, doc, strlen(doc),
             "1-byte");
    assert_int_equal(c.n_els, 2);
    const xml_node_t *h = c.headers[0]->root;
    assert_el(h, XML_NS_STREAMS, "stream", "stream");
    assert_no_xmlns_attrs(h);
    assert_int_equal(count_attrs(h), 3);
    assert_el(el_root(&c, 0), "jabber:server:dialback", "db", "result");
    assert_only_text(el_root(&c, 0), "s3cr3tf0rd14lb4ck");
    assert_string_equal(xml_element_attr(el_root(&c, 0), NULL, "from"),
                        "a.example");
    assert_el(el_root(&c, 1), XML_NS_SERVER, NULL, "message");
    cap_free(&c);

    /* opts NULL: any content namespace is accepted. */
    expect_ok(doc, 2);
}

/* A complete element is delivered by the feed that brings its last byte. */
static void test_immediate_delivery(void **state)
{
    (void)state;
    cap_t c;
    cap_init(&c, NULL);
    check_rc(feed_str(c.p, HDR), XML_OK, HDR, strlen(HDR), "header");
    assert_int_equal(c.n_headers, 1);

    check_rc(feed_str(c.p, "<presence/>"), XML_OK, "", 0, "presence");
    assert_int_equal(c.n_els, 1);

    check_rc(feed_str(c.p, "<message><body>hi</body></message>"), XML_OK, "", 0,
             "message");
    assert_int_equal(c.n_els, 2);

    /* Everything but the last byte, then the last byte. */
    check_rc(feed_str(c.p, "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/>"
                           "</iq"),
             XML_OK, "", 0, "iq");
    assert_int_equal(c.n_els, 2);
    check_rc(feed_str(c.p, ">"), XML_OK, "", 0, ">");
    assert_int_equal(c.n_els, 3);
    assert_el(el_root(&c, 2), XML_NS_CLIENT, NULL, "iq");

    /* A self-closed stanza whose last byte comes alone. */
    check_rc(feed_str(c.p, "<presence type='unavailable'/"), XML_OK, "", 0,
             "presence");
    assert_int_equal(c.n_els, 3);
    check_rc(feed_str(c.p, ">"), XML_OK, "", 0, ">");
    assert_int_equal(c.n_els, 4);

    /* A 100 KiB body as one big chunk, then "</message>" alone. */
    const size_t body = 100 * KiB;
    buf_t b = BUF_INIT;
    buf_append_str(&b, "<message to='a@b'><body>");
    append_n(&b, 'x', body);
    buf_append_str(&b, "</body>");
    check_rc(xml_parser_feed(c.p, b.data, b.len), XML_OK, "", 0, "big");
    assert_int_equal(c.n_els, 4);
    check_rc(feed_str(c.p, "</message>"), XML_OK, "", 0, "</message>");
    assert_int_equal(c.n_els, 5);
    assert_int_equal(el_root(&c, 4)->children->children->text_len, body);

    /* The same in 1-byte chunks, then "</message>" as one chunk. */
    check_rc(feed_chunked(c.p, b.data, b.len, 1), XML_OK, "", 0, "1-byte");
    assert_int_equal(c.n_els, 5);
    check_rc(feed_str(c.p, "</message>"), XML_OK, "", 0, "</message>");
    assert_int_equal(c.n_els, 6);
    const xml_node_t *bd = el_root(&c, 5)->children;
    assert_el(bd, XML_NS_CLIENT, NULL, "body");
    assert_non_null(bd->children);
    assert_int_equal(bd->children->kind, XML_NODE_TEXT);
    assert_null(bd->children->next);
    assert_int_equal(bd->children->text_len, body);

    /* The same in 1-byte chunks up to the last byte. */
    buf_append_str(&b, "</message");
    check_rc(feed_chunked(c.p, b.data, b.len, 1), XML_OK, "", 0, "1-byte");
    assert_int_equal(c.n_els, 6);
    check_rc(feed_str(c.p, ">"), XML_OK, "", 0, ">");
    assert_int_equal(c.n_els, 7);

    /* The close tag is delivered at once too. */
    check_rc(feed_str(c.p, "</stream:stream>"), XML_OK, "", 0, "close");
    assert_int_equal(c.n_ends, 1);
    buf_free(&b);
    cap_free(&c);
}

static void test_header_delivered_byte_by_byte(void **state)
{
    (void)state;
    static const char hdr[] = HDR_C2S;
    cap_t c;
    cap_init(&c, NULL);
    size_t len = strlen(hdr);
    for (size_t i = 0; i + 1 < len; i++) {
        check_rc(xml_parser_feed(c.p, &hdr[i], 1), XML_OK, hdr, len, "1-byte");
        assert_int_equal(c.n_headers, 0);
    }
    check_rc(xml_parser_feed(c.p, &hdr[len - 1], 1), XML_OK, hdr, len,
             "last byte");
    assert_int_equal(c.n_headers, 1);
    cap_free(&c);
}

/* Each byte reaches the engine once, and an incomplete tag is held back and
 * handed over whole, so that a huge attribute fed byte by byte is not
 * re-parsed from its beginning at every byte. */
static void test_no_reparse_huge_attribute(void **state)
{
    (void)state;
    xml_parser_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    xml_limits_default(&opts.limits);
    opts.limits.max_element_size = MiB;
    cap_t c;
    cap_init(&c, &opts);
    check_rc(feed_str(c.p, HDR), XML_OK, HDR, strlen(HDR), "header");

    buf_t b = BUF_INIT;
    buf_append_str(&b, "<message to='");
    append_n(&b, 'a', 200 * KiB);
    buf_append_str(&b, "' id='x>y'><body>b</body></message>");
    xml_parser_stats_t st;
    for (size_t i = 0; i < b.len; i++) {
        int rc = xml_parser_feed(c.p, b.data + i, 1);
        if (rc != XML_OK)
            fail_msg("byte %zu: %d %s", i, rc, err_name(rc));
        xml_parser_get_stats(c.p, &st);
        if (st.engine_bytes > st.bytes_fed)
            fail_msg("byte %zu: engine_bytes %llu > bytes_fed %llu", i,
                     st.engine_bytes, st.bytes_fed);
        if (st.buffered > MiB)
            fail_msg("byte %zu: buffered %zu", i, st.buffered);
    }
    assert_int_equal(c.n_els, 1);
    assert_int_equal(strlen(xml_element_attr(el_root(&c, 0), NULL, "to")),
                     200 * KiB);
    assert_string_equal(xml_element_attr(el_root(&c, 0), NULL, "id"), "x>y");
    xml_parser_get_stats(c.p, &st);
    assert_int_equal(st.bytes_fed, strlen(HDR) + b.len);
    assert_int_equal(st.engine_bytes, st.bytes_fed);
    if (st.engine_calls >= 100)
        fail_msg("engine_calls %llu for %zu bytes fed one at a time",
                 st.engine_calls, b.len);
    buf_free(&b);
    cap_free(&c);
}

static void test_no_reparse_huge_text(void **state)
{
    (void)state;
    xml_parser_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    xml_limits_default(&opts.limits);
    opts.limits.max_element_size = MiB;
    cap_t c;
    cap_init(&c, &opts);
    check_rc(feed_str(c.p, HDR), XML_OK, HDR, strlen(HDR), "header");

    buf_t b = BUF_INIT;
    buf_append_str(&b, "<message><body>");
    append_repeat(&b, "t\xC3\xA9xt ", 200 * KiB / 6);
    buf_append_str(&b, "</body></message>");
    xml_parser_stats_t st;
    for (size_t i = 0; i < b.len; i++) {
        int rc = xml_parser_feed(c.p, b.data + i, 1);
        if (rc != XML_OK)
            fail_msg("byte %zu: %d %s", i, rc, err_name(rc));
        xml_parser_get_stats(c.p, &st);
        if (st.engine_bytes > st.bytes_fed)
            fail_msg("byte %zu: engine_bytes %llu > bytes_fed %llu", i,
                     st.engine_bytes, st.bytes_fed);
        if (st.buffered > MiB)
            fail_msg("byte %zu: buffered %zu", i, st.buffered);
    }
    assert_int_equal(c.n_els, 1);
    size_t tlen =
        b.len - strlen("<message><body>") - strlen("</body></message>");
    const xml_node_t *tn = el_root(&c, 0)->children->children;
    assert_non_null(tn);
    assert_int_equal(tn->kind, XML_NODE_TEXT);
    assert_null(tn->next);
    assert_int_equal(tn->text_len, tlen);
    assert_memory_equal(tn->text, b.data + strlen("<message><body>"), tlen);
    xml_parser_get_stats(c.p, &st);
    assert_int_equal(st.bytes_fed, strlen(HDR) + b.len);
    assert_int_equal(st.engine_bytes, st.bytes_fed);
    buf_free(&b);
    cap_free(&c);
}

/* ---------------------------------------------------- restricted XML */

#define BILLION_LAUGHS                                                         \
    "<?xml version='1.0'?>"                                                    \
    "<!DOCTYPE lolz ["                                                         \
    "<!ENTITY lol 'lol'>"                                                      \
    "<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"      \
    "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>"  \
    "<!ENTITY lol4 '&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;'>"  \
    "<!ENTITY lol5 '&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;'>"  \
    "<!ENTITY lol6 '&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;'>"  \
    "<!ENTITY lol7 '&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;'>"  \
    "<!ENTITY lol8 '&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;'>"  \
    "<!ENTITY lol9 '&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;'>"  \
    "]>" HDR "<message><body>&lol9;</body></message>"

static void test_restricted_comments(void **state)
{
    (void)state;
    expect_error("<!-- c -->" HDR, XML_ERR_RESTRICTED, "restricted-xml");
    expect_error("<?xml version='1.0'?><!-- c -->" HDR, XML_ERR_RESTRICTED,
                 "restricted-xml");
    expect_error(HDR "<!-- c -->", XML_ERR_RESTRICTED, "restricted-xml");
    expect_error(HDR "<presence/> <!-- c --> <presence/>", XML_ERR_RESTRICTED,
                 "restricted-xml");
    expect_error(HDR "<message><!-- c --></message>", XML_ERR_RESTRICTED,
                 "restricted-xml");
    expect_error(HDR "<message><body>a<!-- c -->b</body></message>",
                 XML_ERR_RESTRICTED, "restricted-xml");
}

static void test_restricted_processing_instructions(void **state)
{
    (void)state;
    expect_error("<?foo bar?>" HDR, XML_ERR_RESTRICTED, "restricted-xml");
    expect_error("<?xml version='1.0'?><?xml-stylesheet href='a'?>" HDR,
                 XML_ERR_RESTRICTED, "restricted-xml");
    expect_error(HDR "<?foo bar?>", XML_ERR_RESTRICTED, "restricted-xml");
    expect_error(HDR "<message><?foo bar?></message>", XML_ERR_RESTRICTED,
                 "restricted-xml");
    expect_error(HDR "<message><body>a<?foo?>b</body></message>",
                 XML_ERR_RESTRICTED, "restricted-xml");
}

static void test_xml_declaration_accepted(void **state)
{
    (void)state;
    expect_ok("<?xml version='1.0'?>" HDR "<presence/>", 1);
    expect_ok("<?xml version=\"1.0\"?>" HDR "<presence/>", 1);
    expect_ok("<?xml version='1.0' encoding='UTF-8'?>" HDR "<presence/>", 1);
    expect_ok("<?xml version='1.0' encoding='utf-8'?>" HDR "<presence/>", 1);
    expect_ok("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" HDR "<presence/>",
              1);
    /* Without a declaration at all. */
    expect_ok(HDR "<presence/>", 1);
}

static void test_restricted_doctype_and_entities(void **state)
{
    (void)state;
    expect_error("<!DOCTYPE stream:stream>" HDR, XML_ERR_RESTRICTED,
                 "restricted-xml");
    expect_error("<?xml version='1.0'?><!DOCTYPE stream:stream"
                 " [<!ELEMENT stream:stream ANY>]>" HDR,
                 XML_ERR_RESTRICTED, "restricted-xml");
    expect_error("<!DOCTYPE stream SYSTEM 'http://example.com/x.dtd'>" HDR,
                 XML_ERR_RESTRICTED, "restricted-xml");
    expect_error("<!DOCTYPE x [<!ENTITY foo 'bar'>]>" HDR
                 "<message>&foo;</message>",
                 XML_ERR_RESTRICTED, "restricted-xml");
    expect_error(BILLION_LAUGHS, XML_ERR_RESTRICTED, "restricted-xml");
}

static void test_restricted_undefined_entity(void **state)
{
    (void)state;
    expect_error(HDR "<message><body>&foo;</body></message>",
                 XML_ERR_RESTRICTED, "restricted-xml");
    expect_error(HDR "<message to='&foo;'/>", XML_ERR_RESTRICTED,
                 "restricted-xml");
    expect_error(HDR "<message to='a&foo;b'><body/></message>",
                 XML_ERR_RESTRICTED, "restricted-xml");
}

/* ---------------------------------------------------------- malformed */

static void test_malformed_structure(void **state)
{
    (void)state;
    const char *nwf = "not-well-formed";
    expect_error(HDR "<message></body>", XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<message><body></message></body>",
                 XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<message></stream:stream>", XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<a b='1' b='2'/>", XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<message><x b='1' c='' b='2'/></message>",
                 XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<a b=1/>", XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<a b/>", XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<a b='x<y'/>", XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<message><body>x]]>y</body></message>",
                 XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<1message/>", XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<message><body>a & b</body></message>",
                 XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<message><body>a &amp b</body></message>",
                 XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<message><body>&#0;</body></message>",
                 XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<message><body>&#x1;</body></message>",
                 XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<message><body>&#xD800;</body></message>",
                 XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<message><body>&#xFFFE;</body></message>",
                 XML_ERR_NOT_WELL_FORMED, nwf);
}

static void test_malformed_characters(void **state)
{
    (void)state;
    const char *nwf = "not-well-formed";
#define BODY(bytes) HDR "<message><body>a" bytes "b</body></message>"
    expect_error(BODY("\x01"), XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(BODY("\x1F"), XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(BODY("\x0B"), XML_ERR_NOT_WELL_FORMED, nwf);
    static const char with_nul[] = BODY("\0");
    expect_error_len(with_nul, sizeof(with_nul) - 1, XML_ERR_NOT_WELL_FORMED,
                     nwf);
    /* U+FFFE and U+FFFF are not XML characters. */
    expect_error(BODY("\xEF\xBF\xBE"), XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(BODY("\xEF\xBF\xBF"), XML_ERR_NOT_WELL_FORMED, nwf);
    /* Invalid UTF-8: overlong, lone continuation, truncated, surrogate,
     * beyond U+10FFFF, bytes that never appear. */
    expect_error(BODY("\xC0\x80"), XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(BODY("\xC1\xBF"), XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(BODY("\xE0\x80\xAF"), XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(BODY("\x80"), XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(BODY("\xBF"), XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(BODY("\xE2\x98"), XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(BODY("\xF0\x9F\x98"), XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(BODY("\xED\xA0\x80"), XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(BODY("\xED\xBF\xBF"), XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(BODY("\xF5\x80\x80\x80"), XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(BODY("\xF4\x90\x80\x80"), XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(BODY("\xFE"), XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(BODY("\xFF"), XML_ERR_NOT_WELL_FORMED, nwf);
#undef BODY
    /* The same in an attribute value and in a name. */
    expect_error(HDR "<message to='\xC0\x80'/>", XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<message to='a\x80'/>", XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<message to='\xED\xA0\x80'/>", XML_ERR_NOT_WELL_FORMED,
                 nwf);
    expect_error(HDR "<message to='\x01'/>", XML_ERR_NOT_WELL_FORMED, nwf);
    expect_error(HDR "<mess\x80"
                     "age/>",
                 XML_ERR_NOT_WELL_FORMED, nwf);
}

/* RFC 6120 leaves the escaping of > ' " in character data to the sender;
 * a receiver accepts them raw. */
static void test_raw_gt_quotes_accepted(void **state)
{
    (void)state;
    const char *doc = HDR "<message id=\"a'b>\" to='c\"d'>"
                          "<body>a>b'c\"d ]] >> ]</body></message>";
    static const size_t chunks[] = {0, 1};
    for (size_t k = 0; k < 2; k++) {
        cap_t c;
        cap_init(&c, NULL);
        check_rc(feed_chunked(c.p, doc, strlen(doc), chunks[k]), XML_OK, doc,
                 strlen(doc), "chunks");
        assert_int_equal(c.n_els, 1);
        const xml_node_t *m = el_root(&c, 0);
        assert_string_equal(xml_element_attr(m, NULL, "id"), "a'b>");
        assert_string_equal(xml_element_attr(m, NULL, "to"), "c\"d");
        assert_only_text(m->children, "a>b'c\"d ]] >> ]");
        cap_free(&c);
    }
}

/* --------------------------------------------------------- namespaces */

static void test_invalid_namespace(void **state)
{
    (void)state;
    expect_error("<stream:stream xmlns='jabber:client'"
                 " xmlns:stream='urn:wrong' version='1.0'>",
                 XML_ERR_INVALID_NAMESPACE, "invalid-namespace");
    expect_error("<stream:stream xmlns='jabber:client'"
                 " xmlns:stream='http://etherx.jabber.org/streams/'"
                 " version='1.0'>",
                 XML_ERR_INVALID_NAMESPACE, "invalid-namespace");

    xml_parser_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.content_ns = XML_NS_CLIENT;
    xml_limits_default(&opts.limits);
    const char *server = "<stream:stream xmlns='jabber:server'"
                         " xmlns:stream=" STREAMS_Q " version='1.0'>";
    expect_error_opts(&opts, server, strlen(server), XML_ERR_INVALID_NAMESPACE,
                      "invalid-namespace");
    const char *none =
        "<stream:stream xmlns:stream=" STREAMS_Q " version='1.0'>";
    expect_error_opts(&opts, none, strlen(none), XML_ERR_INVALID_NAMESPACE,
                      "invalid-namespace");
    const char *other = "<stream:stream xmlns='urn:other'"
                        " xmlns:stream=" STREAMS_Q " version='1.0'>";
    expect_error_opts(&opts, other, strlen(other), XML_ERR_INVALID_NAMESPACE,
                      "invalid-namespace");

    /* The right one is accepted, and without content_ns anything is. */
    expect_ok_opts(&opts, HDR "<presence/>", 1);
    expect_ok(server, 0);
    expect_ok(none, 0);
}

static void test_bad_namespace_prefix(void **state)
{
    (void)state;
    const char *bnp = "bad-namespace-prefix";
    expect_error("<stream xmlns=" STREAMS_Q " version='1.0'>",
                 XML_ERR_BAD_NAMESPACE_PREFIX, bnp);
    expect_error(HDR "<foo:bar/>", XML_ERR_BAD_NAMESPACE_PREFIX, bnp);
    expect_error(HDR "<message><foo:bar/></message>",
                 XML_ERR_BAD_NAMESPACE_PREFIX, bnp);
    expect_error(HDR "<message foo:attr='1'/>", XML_ERR_BAD_NAMESPACE_PREFIX,
                 bnp);
    expect_error(HDR "<features xmlns=" STREAMS_Q "/>",
                 XML_ERR_BAD_NAMESPACE_PREFIX, bnp);
    /* The stream prefix used without a declaration. */
    expect_error("<stream:stream xmlns='jabber:client' version='1.0'>",
                 XML_ERR_BAD_NAMESPACE_PREFIX, bnp);
}

static void test_bad_format_root(void **state)
{
    (void)state;
    expect_error("<stream:foo xmlns:stream=" STREAMS_Q
                 " xmlns='jabber:client'>",
                 XML_ERR_BAD_FORMAT, "bad-format");
    expect_error("<stream:features xmlns:stream=" STREAMS_Q
                 " xmlns='jabber:client'>",
                 XML_ERR_BAD_FORMAT, "bad-format");
}

/* ----------------------------------------------------------- encoding */

static void utf16(buf_t *out, const char *ascii, bool big_endian)
{
    for (const char *s = ascii; *s; s++) {
        char two[2];
        two[big_endian ? 0 : 1] = 0;
        two[big_endian ? 1 : 0] = *s;
        buf_append(out, two, 2);
    }
}

static void test_unsupported_encoding(void **state)
{
    (void)state;
    const char *ue = "unsupported-encoding";
    expect_error("<?xml version='1.0' encoding='ISO-8859-1'?>" HDR,
                 XML_ERR_UNSUPPORTED_ENCODING, ue);
    expect_error("<?xml version='1.0' encoding='UTF-16'?>" HDR,
                 XML_ERR_UNSUPPORTED_ENCODING, ue);

    for (int be = 0; be <= 1; be++) {
        buf_t b = BUF_INIT;
        buf_append(&b, be ? "\xFE\xFF" : "\xFF\xFE", 2);
        utf16(&b, "<?xml version='1.0'?>" HDR, be != 0);
        expect_error_len(b.data, b.len, XML_ERR_UNSUPPORTED_ENCODING, ue);
        buf_reset(&b);
        buf_append(&b, be ? "\xFE\xFF" : "\xFF\xFE", 2);
        utf16(&b, HDR, be != 0);
        expect_error_len(b.data, b.len, XML_ERR_UNSUPPORTED_ENCODING, ue);
        buf_free(&b);
    }
}

/* ------------------------------------------------------------- limits */

static void opts_with(xml_parser_opts_t *o, size_t size, unsigned depth,
                      unsigned attrs)
{
    memset(o, 0, sizeof(*o));
    xml_limits_default(&o->limits);
    if (size)
        o->limits.max_element_size = size;
    if (depth)
        o->limits.max_depth = depth;
    if (attrs)
        o->limits.max_attrs = attrs;
}

static void test_limit_size_whole_element(void **state)
{
    (void)state;
    xml_parser_opts_t o;
    opts_with(&o, 1024, 0, 0);

    buf_t b = BUF_INIT;
    /* About 900 bytes: accepted. */
    buf_append_str(&b, HDR "<message><body>");
    append_n(&b, 'x', 870);
    buf_append_str(&b, "</body></message>");
    expect_ok_opts(&o, b.data, 1);

    /* About 2000 bytes: refused. */
    buf_reset(&b);
    buf_append_str(&b, HDR "<message><body>");
    append_n(&b, 'x', 2000);
    buf_append_str(&b, "</body></message>");
    expect_error_opts(&o, b.data, b.len, XML_ERR_TOO_LARGE, "policy-violation");

    /* The same amount spread over many small children. */
    buf_reset(&b);
    buf_append_str(&b, HDR "<iq type='result' id='1'><query xmlns='q'>");
    append_repeat(&b, "<item jid='a@b'/>", 100);
    buf_append_str(&b, "</query></iq>");
    expect_error_opts(&o, b.data, b.len, XML_ERR_TOO_LARGE, "policy-violation");

    /* Whitespace before a stanza is not part of it. */
    buf_reset(&b);
    buf_append_str(&b, HDR);
    append_n(&b, ' ', 1000);
    buf_append_str(&b, "<message><body>");
    append_n(&b, 'x', 800);
    buf_append_str(&b, "</body></message>");
    append_n(&b, '\n', 1000);
    buf_append_str(&b, "<message><body>");
    append_n(&b, 'x', 800);
    buf_append_str(&b, "</body></message>");
    expect_ok_opts(&o, b.data, 2);

    /* Many stanzas, each under the limit, far more than it in total. */
    buf_reset(&b);
    buf_append_str(&b, HDR);
    for (int i = 0; i < 500; i++) {
        buf_append_str(&b, "<message to='a@b'><body>");
        append_n(&b, 'y', 500);
        buf_append_str(&b, "</body></message>");
    }
    cap_t c;
    cap_init(&c, &o);
    check_rc(feed_chunked(c.p, b.data, b.len, 4096), XML_OK, "", 0,
             "many stanzas");
    assert_int_equal(c.n_els, 500);
    cap_free(&c);

    buf_free(&b);
}

/* A stanza that is one big self-closed tag, complete in one chunk. */
static void test_limit_size_self_closed(void **state)
{
    (void)state;
    xml_parser_opts_t o;
    opts_with(&o, 1024, 0, 0);
    buf_t b = BUF_INIT;
    buf_append_str(&b, HDR "<message to='");
    append_n(&b, 'a', 2000);
    buf_append_str(&b, "'/>");
    expect_error_opts(&o, b.data, b.len, XML_ERR_TOO_LARGE, "policy-violation");
    /* Fed as header, then the stanza as one chunk. */
    cap_t c;
    cap_init(&c, &o);
    check_rc(feed_str(c.p, HDR), XML_OK, HDR, strlen(HDR), "header");
    check_rc(feed_str(c.p, b.data + strlen(HDR)), XML_ERR_TOO_LARGE, b.data,
             b.len, "stanza in one chunk");
    assert_int_equal(c.n_els, 0);
    cap_free(&c);
    buf_free(&b);
}

/* max_element_size applies to the stream header too. */
static void test_limit_size_header(void **state)
{
    (void)state;
    xml_parser_opts_t o;
    opts_with(&o, 1024, 0, 0);
    buf_t b = BUF_INIT;
    buf_append_str(
        &b,
        "<stream:stream xmlns='jabber:client' xmlns:stream=" STREAMS_Q " to='");
    append_n(&b, 'h', 2000);
    buf_append_str(&b, "' version='1.0'>");
    expect_error_opts(&o, b.data, b.len, XML_ERR_TOO_LARGE, "policy-violation");
    buf_free(&b);
}

/* Feeds `head`, then `unit` over and over in `chunk`-byte pieces (never
 * completing anything), and checks that the feed fails with one of the two
 * errors no later than `limit + slack` bytes into the element, that the
 * memory held stays under the limit, and that the error sticks. */
static void endless(const char *head, const char *unit, size_t limit,
                    size_t chunk, size_t total, int err, int err2)
{
    xml_parser_opts_t o;
    opts_with(&o, limit, 0, 0);
    cap_t c;
    cap_init(&c, &o);
    check_rc(feed_str(c.p, HDR), XML_OK, HDR, strlen(HDR), "header");

    /* The unit repeated, long enough to take any chunk at any phase. */
    size_t ulen = strlen(unit);
    buf_t pat = BUF_INIT;
    while (pat.len < chunk + ulen)
        buf_append_str(&pat, unit);

    size_t hlen = strlen(head);
    int rc = xml_parser_feed(c.p, head, hlen);
    size_t fed = hlen;
    int first = rc;
    size_t first_at = rc != XML_OK ? fed : 0;
    xml_parser_stats_t st;
    while (fed < total) {
        const char *d = pat.data + (fed - hlen) % ulen;
        rc = xml_parser_feed(c.p, d, chunk);
        fed += chunk;
        xml_parser_get_stats(c.p, &st);
        if (st.buffered > limit)
            fail_msg("buffered %zu > limit %zu after %zu bytes of %s%s...",
                     st.buffered, limit, fed, head, unit);
        if (first == XML_OK && rc != XML_OK) {
            first = rc;
            first_at = fed;
        } else if (first != XML_OK && rc != first) {
            fail_msg("later feed returned %d %s, first error %d %s", rc,
                     err_name(rc), first, err_name(first));
        }
    }
    if (first != err && first != err2)
        fail_msg("endless %s%s...: got %d %s, want %s", head, unit, first,
                 err_name(first), err_name(err));
    if (first_at > limit + 2 * chunk + ulen)
        fail_msg("endless %s%s...: error only after %zu bytes (limit %zu)",
                 head, unit, first_at, limit);
    assert_int_equal(c.n_els, 0);
    buf_free(&pat);
    cap_free(&c);
}

static void test_limit_size_never_closed(void **state)
{
    (void)state;
    const size_t L = 4096;
    /* An endless attribute value inside one start tag. */
    endless("<message to='", "a", L, 64, 64 * KiB, XML_ERR_TOO_LARGE,
            XML_ERR_TOO_LARGE);
    endless("<message to='", "a", L, 1, 16 * KiB, XML_ERR_TOO_LARGE,
            XML_ERR_TOO_LARGE);
    endless("<message to=\"", "a>'", L, 100, 64 * KiB, XML_ERR_TOO_LARGE,
            XML_ERR_TOO_LARGE);
    /* An endless name, and endless attributes. */
    endless("<message", "a", L, 64, 64 * KiB, XML_ERR_TOO_LARGE,
            XML_ERR_TOO_LARGE);
    endless("<message ", "a", L, 64, 64 * KiB, XML_ERR_TOO_LARGE,
            XML_ERR_TOO_LARGE);
    /* An endless text node. */
    endless("<message><body>", "b", L, 64, 64 * KiB, XML_ERR_TOO_LARGE,
            XML_ERR_TOO_LARGE);
    endless("<message><body>", "b", L, 1, 16 * KiB, XML_ERR_TOO_LARGE,
            XML_ERR_TOO_LARGE);
    endless("<message><body>", "&amp;", L, 64, 64 * KiB, XML_ERR_TOO_LARGE,
            XML_ERR_TOO_LARGE);
    /* Endless whitespace inside a stanza is part of it. */
    endless("<message>", " ", L, 64, 64 * KiB, XML_ERR_TOO_LARGE,
            XML_ERR_TOO_LARGE);
    /* An endless CDATA section. */
    endless("<message><body><![CDATA[", "c>", L, 64, 64 * KiB,
            XML_ERR_TOO_LARGE, XML_ERR_TOO_LARGE);
    /* A never-closed element with complete children. */
    endless("<message>", "<x/>", L, 64, 64 * KiB, XML_ERR_TOO_LARGE,
            XML_ERR_TOO_LARGE);
    endless("<message>", "<x a='1'>t</x>", L, 100, 64 * KiB, XML_ERR_TOO_LARGE,
            XML_ERR_TOO_LARGE);
    /* An endless comment or PI: refused either as restricted or as too
     * large, but refused and bounded. */
    endless("<message><!--", "c", L, 64, 64 * KiB, XML_ERR_TOO_LARGE,
            XML_ERR_RESTRICTED);
    endless("<?pi ", "c", L, 64, 64 * KiB, XML_ERR_TOO_LARGE,
            XML_ERR_RESTRICTED);
}

/* Builds exactly `limit` bytes of one unfinished top-level element: `head`,
 * then `unit` as often as it fits, then `pad` bytes up to the limit. Fed in
 * `step`-byte pieces (0: one piece), none of that is an error; the single
 * byte `next` after it crosses the limit and is (issue 7 item 8: the limit
 * holds at the byte that crosses it). */
static void crossing(const char *head, const char *unit, char pad, size_t limit,
                     size_t step, char next)
{
    xml_parser_opts_t o;
    opts_with(&o, limit, 0, 0);
    cap_t c;
    cap_init(&c, &o);
    check_rc(feed_str(c.p, HDR), XML_OK, HDR, strlen(HDR), "header");
    buf_t b = BUF_INIT;
    buf_append_str(&b, head);
    while (b.len + strlen(unit) <= limit)
        buf_append_str(&b, unit);
    append_n(&b, pad, limit - b.len);
    assert_int_equal(b.len, limit);
    size_t n = step == 0 ? b.len : step;
    for (size_t off = 0; off < b.len; off += n) {
        size_t k = b.len - off < n ? b.len - off : n;
        int rc = xml_parser_feed(c.p, b.data + off, k);
        if (rc != XML_OK)
            fail_msg("%s%s... limit %zu step %zu: %s after %zu bytes", head,
                     unit, limit, step, err_name(rc), off + k);
    }
    int rc = xml_parser_feed(c.p, &next, 1);
    if (rc != XML_ERR_TOO_LARGE)
        fail_msg("%s%s... limit %zu step %zu: byte %zu gave %s", head, unit,
                 limit, step, limit + 1, err_name(rc));
    assert_string_equal(xml_error_condition(rc), "policy-violation");
    assert_int_equal(c.n_els, 0);
    buf_free(&b);
    cap_free(&c);
}

static void test_limit_size_exact_crossing(void **state)
{
    (void)state;
    static const size_t limits[] = {16384, 262144};
    static const size_t steps[] = {0, 1, 1000, 4096, 16384};
    for (size_t l = 0; l < 2; l++) {
        for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
            size_t L = limits[l], st = steps[k];
            if (st == 1 && L > 16384)
                continue; /* byte by byte: the small limit is enough */
            /* Text streamed to expat in pieces. */
            crossing("<message><body>", "x", 'x', L, st, 'x');
            /* One long start tag, held back until its '>'. */
            crossing("<message to='", "a", 'a', L, st, 'a');
            crossing("<message ", "a", 'a', L, st, 'a');
            /* Complete nested children; the crossing byte is text, or the
             * '<' of a next child that is held back. */
            crossing("<message>", "<x a='1'><y>t</y></x>", ' ', L, st, ' ');
            crossing("<message>", "<x a='1'><y>t</y></x>", ' ', L, st, '<');
            /* CDATA content. */
            crossing("<message><body><![CDATA[", "c", 'c', L, st, 'c');
        }
    }
}

/* 10 MiB of one attribute value in 4 KiB chunks with the default limit:
 * the feed fails once the limit is crossed and memory stays bounded. */
static void test_limit_memory_bounded(void **state)
{
    (void)state;
    endless("<message to='", "a", 256 * KiB, 4 * KiB, 10 * MiB,
            XML_ERR_TOO_LARGE, XML_ERR_TOO_LARGE);
    endless("<message><body>", "b", 256 * KiB, 4 * KiB, 10 * MiB,
            XML_ERR_TOO_LARGE, XML_ERR_TOO_LARGE);
}

/* Whitespace keepalives between stanzas never count against the limit. */
static void test_limit_keepalives(void **state)
{
    (void)state;
    static const size_t limits[] = {256 * KiB, 1024};
    for (size_t k = 0; k < 2; k++) {
        xml_parser_opts_t o;
        opts_with(&o, limits[k], 0, 0);
        cap_t c;
        cap_init(&c, &o);
        check_rc(feed_str(c.p, HDR "<presence/>"), XML_OK, HDR, strlen(HDR),
                 "header");
        char *spaces = malloc(4 * KiB);
        assert_non_null(spaces);
        memset(spaces, ' ', 4 * KiB);
        for (int i = 0; i < 256; i++) {
            spaces[i % 4096] = (i & 1) ? '\n' : ' ';
            int rc = xml_parser_feed(c.p, spaces, 4 * KiB);
            if (rc != XML_OK)
                fail_msg("keepalive chunk %d: %d %s", i, rc, err_name(rc));
            xml_parser_stats_t st;
            xml_parser_get_stats(c.p, &st);
            if (st.buffered > limits[k])
                fail_msg("buffered %zu", st.buffered);
        }
        /* And byte by byte. */
        for (int i = 0; i < 4096; i++)
            check_rc(xml_parser_feed(c.p, " ", 1), XML_OK, " ", 1, "space");
        check_rc(feed_str(c.p, "<message><body>x</body></message>"), XML_OK, "",
                 0, "message");
        assert_int_equal(c.n_els, 2);
        free(spaces);
        cap_free(&c);
    }
}

static void nest(buf_t *b, unsigned depth)
{
    for (unsigned i = 0; i < depth; i++)
        buf_append_str(b, i == 0 ? "<message>" : "<x>");
    for (unsigned i = depth; i > 0; i--)
        buf_append_str(b, i == 1 ? "</message>" : "</x>");
}

static void test_limit_depth(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    /* Default 64: a stanza nested 64 deep (counting itself) passes. */
    buf_append_str(&b, HDR);
    nest(&b, 64);
    expect_ok(b.data, 1);
    buf_reset(&b);
    buf_append_str(&b, HDR);
    nest(&b, 65);
    expect_error_len(b.data, b.len, XML_ERR_TOO_DEEP, "policy-violation");

    xml_parser_opts_t o;
    opts_with(&o, 0, 3, 0);
    expect_ok_opts(&o, HDR "<a><b><c/></b></a><a>t<b>t<c>t</c>t</b></a>", 2);
    const char *deep = HDR "<a><b><c><d/></c></b></a>";
    expect_error_opts(&o, deep, strlen(deep), XML_ERR_TOO_DEEP,
                      "policy-violation");

    /* Endless nesting fails as soon as the limit is crossed. */
    cap_t c;
    cap_init(&c, NULL);
    check_rc(feed_str(c.p, HDR), XML_OK, "", 0, "header");
    int rc = XML_OK;
    int i;
    for (i = 0; i < 10000 && rc == XML_OK; i++)
        rc = feed_str(c.p, "<a>");
    check_rc(rc, XML_ERR_TOO_DEEP, "<a><a><a>...", 12, "endless nesting");
    if (i > 66)
        fail_msg("too deep reported only at depth %d", i);
    cap_free(&c);
    buf_free(&b);
}

static void attrs_el(buf_t *b, const char *name, unsigned n_attrs,
                     unsigned n_decls)
{
    buf_append_str(b, "<");
    buf_append_str(b, name);
    for (unsigned i = 0; i < n_decls; i++) {
        char tmp[64];
        snprintf(tmp, sizeof(tmp), " xmlns:p%u='urn:p%u'", i, i);
        buf_append_str(b, tmp);
    }
    for (unsigned i = 0; i < n_attrs; i++) {
        char tmp[64];
        snprintf(tmp, sizeof(tmp), " a%u='%u'", i, i);
        buf_append_str(b, tmp);
    }
    buf_append_str(b, "/>");
}

static void test_limit_attrs(void **state)
{
    (void)state;
    xml_parser_opts_t o;
    opts_with(&o, 0, 0, 8);
    buf_t b = BUF_INIT;

    buf_append_str(&b, HDR);
    attrs_el(&b, "message", 8, 0);
    buf_append_str(&b, "<message>");
    attrs_el(&b, "x", 6, 2);
    buf_append_str(&b, "</message>");
    expect_ok_opts(&o, b.data, 2);

    buf_reset(&b);
    buf_append_str(&b, HDR);
    attrs_el(&b, "message", 9, 0);
    expect_error_opts(&o, b.data, b.len, XML_ERR_TOO_MANY_ATTRS,
                      "policy-violation");

    /* Namespace declarations count. */
    buf_reset(&b);
    buf_append_str(&b, HDR);
    attrs_el(&b, "message", 7, 2);
    expect_error_opts(&o, b.data, b.len, XML_ERR_TOO_MANY_ATTRS,
                      "policy-violation");

    /* Nested elements too. */
    buf_reset(&b);
    buf_append_str(&b, HDR "<message>");
    attrs_el(&b, "x", 9, 0);
    buf_append_str(&b, "</message>");
    expect_error_opts(&o, b.data, b.len, XML_ERR_TOO_MANY_ATTRS,
                      "policy-violation");

    /* And the header. */
    const char *hdr9 =
        "<stream:stream xmlns='jabber:client' xmlns:stream=" STREAMS_Q
        " to='a' from='b' version='1.0' id='c'"
        " xml:lang='en' a='1' b='2'>";
    expect_error_opts(&o, hdr9, strlen(hdr9), XML_ERR_TOO_MANY_ATTRS,
                      "policy-violation");
    buf_free(&b);
}

/* xml_parser_set_limits() changes the limits of a running stream. */
static void test_set_limits(void **state)
{
    (void)state;
    buf_t big = BUF_INIT;
    buf_append_str(&big, "<message><body>");
    append_n(&big, 'z', 3000);
    buf_append_str(&big, "</body></message>");

    /* Raised after the header (as after authentication). */
    xml_parser_opts_t o;
    opts_with(&o, 1024, 0, 0);
    cap_t c;
    cap_init(&c, &o);
    check_rc(feed_str(c.p, HDR), XML_OK, "", 0, "header");
    xml_limits_t l;
    xml_limits_default(&l);
    l.max_element_size = 64 * KiB;
    xml_parser_set_limits(c.p, &l);
    check_rc(xml_parser_feed(c.p, big.data, big.len), XML_OK, big.data, big.len,
             "raised limit");
    assert_int_equal(c.n_els, 1);

    /* Lowered again. */
    l.max_element_size = 1024;
    xml_parser_set_limits(c.p, &l);
    check_rc(xml_parser_feed(c.p, big.data, big.len), XML_ERR_TOO_LARGE,
             big.data, big.len, "lowered limit");
    assert_int_equal(c.n_els, 1);

    /* Limits survive a reset. */
    assert_int_equal(xml_parser_reset(c.p), 0);
    check_rc(feed_str(c.p, HDR), XML_OK, "", 0, "header");
    check_rc(xml_parser_feed(c.p, big.data, big.len), XML_ERR_TOO_LARGE,
             big.data, big.len, "after reset");
    cap_free(&c);

    /* Depth and attributes. */
    cap_init(&c, NULL);
    check_rc(feed_str(c.p, HDR), XML_OK, "", 0, "header");
    xml_limits_default(&l);
    l.max_depth = 2;
    l.max_attrs = 2;
    xml_parser_set_limits(c.p, &l);
    check_rc(feed_str(c.p, "<a x='1' y='2'><b/></a>"), XML_OK, "", 0, "ok");
    check_rc(feed_str(c.p, "<a><b><c/></b></a>"), XML_ERR_TOO_DEEP, "", 0,
             "deep");
    cap_free(&c);

    cap_init(&c, NULL);
    check_rc(feed_str(c.p, HDR), XML_OK, "", 0, "header");
    xml_parser_set_limits(c.p, &l);
    check_rc(feed_str(c.p, "<a x='1' y='2' z='3'/>"), XML_ERR_TOO_MANY_ATTRS,
             "", 0, "attrs");
    cap_free(&c);
    buf_free(&big);
}

/* ------------------------------------------- errors, stop and reset */

static void test_error_sticks_then_reset(void **state)
{
    (void)state;
    cap_t c;
    cap_init(&c, NULL);
    check_rc(feed_str(c.p, HDR "<presence/>"), XML_OK, "", 0, "header");
    check_rc(xml_parser_feed(c.p, "", 0), XML_OK, "", 0, "empty feed");
    int rc = feed_str(c.p, "<message></body>");
    check_rc(rc, XML_ERR_NOT_WELL_FORMED, "", 0, "mismatch");
    const char *text = xml_parser_error_text(c.p);
    assert_non_null(text);
    assert_true(strlen(text) > 0);
    for (int i = 0; i < 5; i++) {
        check_rc(feed_str(c.p, "<presence/>"), XML_ERR_NOT_WELL_FORMED, "", 0,
                 "sticky");
        check_rc(xml_parser_feed(c.p, "", 0), XML_ERR_NOT_WELL_FORMED, "", 0,
                 "sticky empty");
    }
    assert_int_equal(c.n_els, 1);

    assert_int_equal(xml_parser_reset(c.p), 0);
    check_rc(feed_str(c.p, HDR_C2S "<message><body>x</body></message>"), XML_OK,
             "", 0, "after reset");
    assert_int_equal(c.n_headers, 2);
    assert_int_equal(c.n_els, 2);
    assert_el(el_root(&c, 1), XML_NS_CLIENT, NULL, "message");

    /* Reset mid-element: the partial element is forgotten. */
    check_rc(feed_str(c.p, "<message><body>abc"), XML_OK, "", 0, "partial");
    assert_int_equal(xml_parser_reset(c.p), 0);
    check_rc(feed_str(c.p, HDR "<presence/>"), XML_OK, "", 0, "after reset");
    assert_int_equal(c.n_headers, 3);
    assert_int_equal(c.n_els, 3);
    assert_el(el_root(&c, 2), XML_NS_CLIENT, NULL, "presence");

    /* Reset in the middle of a start tag. */
    check_rc(feed_str(c.p, "<message to='abc"), XML_OK, "", 0, "partial");
    assert_int_equal(xml_parser_reset(c.p), 0);
    check_rc(feed_str(c.p, HDR "<presence/>"), XML_OK, "", 0, "after reset");
    assert_int_equal(c.n_headers, 4);
    assert_int_equal(c.n_els, 4);
    cap_free(&c);

    /* Free with a partial element buffered. */
    cap_init(&c, NULL);
    check_rc(feed_str(c.p, HDR "<message to='abc"), XML_OK, "", 0, "partial");
    cap_free(&c);
}

static void test_reset_keeps_content_ns(void **state)
{
    (void)state;
    xml_parser_opts_t o;
    opts_with(&o, 0, 0, 0);
    o.content_ns = XML_NS_CLIENT;
    cap_t c;
    cap_init(&c, &o);
    check_rc(feed_str(c.p, HDR), XML_OK, "", 0, "header");
    assert_int_equal(xml_parser_reset(c.p), 0);
    check_rc(
        feed_str(c.p,
                 "<stream:stream xmlns='jabber:server' xmlns:stream=" STREAMS_Q
                 " version='1.0'>"),
        XML_ERR_INVALID_NAMESPACE, "", 0, "after reset");
    cap_free(&c);
}

static void test_stop_in_element_callback(void **state)
{
    (void)state;
    cap_t c;
    cap_init(&c, NULL);
    c.stop_on_name = "starttls";
    check_rc(feed_str(c.p, HDR "<stream:features><starttls xmlns="
                               "'urn:ietf:params:xml:ns:xmpp-tls'/>"
                               "</stream:features>"),
             XML_OK, "", 0, "features");
    assert_int_equal(c.n_els, 1);

    int rc = feed_str(c.p, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
                           "<message><body>injected</body></message>");
    check_rc(rc, XML_STOPPED, "", 0, "stop");
    assert_int_equal(c.n_els, 2);
    assert_string_equal(el_root(&c, 1)->name, "starttls");

    /* The new stream after the TLS handshake. */
    c.stop_on_name = NULL;
    assert_int_equal(xml_parser_reset(c.p), 0);
    check_rc(feed_str(c.p, HDR_C2S "<message/>"), XML_OK, "", 0, "after reset");
    assert_int_equal(c.n_headers, 2);
    assert_int_equal(c.n_els, 3);
    assert_string_equal(el_root(&c, 2)->name, "message");
    assert_int_equal(c.n_ends, 0);
    cap_free(&c);

    /* Stop with bytes held back of an incomplete tag. */
    cap_init(&c, NULL);
    c.stop_on_name = "starttls";
    check_rc(feed_str(c.p, HDR "<starttls/><message to='x"), XML_STOPPED, "", 0,
             "stop");
    assert_int_equal(c.n_els, 1);
    c.stop_on_name = NULL;
    assert_int_equal(xml_parser_reset(c.p), 0);
    check_rc(feed_str(c.p, HDR "<presence/>"), XML_OK, "", 0, "after reset");
    assert_int_equal(c.n_els, 2);
    assert_string_equal(el_root(&c, 1)->name, "presence");
    cap_free(&c);

    /* Stop fed byte by byte: the stop comes with the last byte. */
    cap_init(&c, NULL);
    c.stop_on_name = "success";
    const char *s = HDR "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";
    size_t len = strlen(s);
    for (size_t i = 0; i + 1 < len; i++)
        check_rc(xml_parser_feed(c.p, s + i, 1), XML_OK, s, len, "1-byte");
    check_rc(xml_parser_feed(c.p, s + len - 1, 1), XML_STOPPED, s, len, "last");
    assert_int_equal(c.n_els, 1);
    cap_free(&c);
}

static void test_stop_in_header_callback(void **state)
{
    (void)state;
    cap_t c;
    cap_init(&c, NULL);
    c.stop_on_header = true;
    check_rc(feed_str(c.p, HDR "<message/><presence/>"), XML_STOPPED, "", 0,
             "stop");
    assert_int_equal(c.n_headers, 1);
    assert_int_equal(c.n_els, 0);
    c.stop_on_header = false;
    assert_int_equal(xml_parser_reset(c.p), 0);
    check_rc(feed_str(c.p, HDR "<presence/>"), XML_OK, "", 0, "after reset");
    assert_int_equal(c.n_headers, 2);
    assert_int_equal(c.n_els, 1);
    cap_free(&c);
}

/* The header alone in the chunk: the feed still reports the stop. */
static void test_stop_in_header_callback_header_alone(void **state)
{
    (void)state;
    cap_t c;
    cap_init(&c, NULL);
    c.stop_on_header = true;
    check_rc(feed_str(c.p, HDR), XML_STOPPED, HDR, strlen(HDR), "stop");
    assert_int_equal(c.n_headers, 1);
    c.stop_on_header = false;
    assert_int_equal(xml_parser_reset(c.p), 0);
    check_rc(feed_str(c.p, HDR "<presence/>"), XML_OK, "", 0, "after reset");
    assert_int_equal(c.n_headers, 2);
    assert_int_equal(c.n_els, 1);
    cap_free(&c);

    /* A self-closed stream element: its end must not be reported after a
     * stop in the header callback either. */
    cap_init(&c, NULL);
    c.stop_on_header = true;
    check_rc(feed_str(c.p, "<stream:stream xmlns='jabber:client'"
                           " xmlns:stream=" STREAMS_Q " version='1.0'/>"),
             XML_STOPPED, "", 0, "stop");
    assert_int_equal(c.n_headers, 1);
    assert_int_equal(c.n_ends, 0);
    cap_free(&c);
}

static void test_stop_in_end_callback(void **state)
{
    (void)state;
    cap_t c;
    cap_init(&c, NULL);
    c.stop_on_end = true;
    check_rc(feed_str(c.p, HDR "<presence/>"), XML_OK, "", 0, "stanza");
    check_rc(feed_str(c.p, "</stream:stream>  "), XML_STOPPED, "", 0, "stop");
    assert_int_equal(c.n_ends, 1);
    c.stop_on_end = false;
    assert_int_equal(xml_parser_reset(c.p), 0);
    check_rc(feed_str(c.p, HDR "<presence/>"), XML_OK, "", 0, "after reset");
    assert_int_equal(c.n_headers, 2);
    assert_int_equal(c.n_els, 2);
    cap_free(&c);
}

static void test_data_after_close(void **state)
{
    (void)state;
    cap_t c;
    cap_init(&c, NULL);
    int rc = feed_str(c.p, HDR "<presence/></stream:stream><message/>");
    check_rc(rc, XML_ERR_CLOSED, "", 0, "same chunk");
    assert_int_equal(c.n_ends, 1);
    assert_int_equal(c.n_els, 1);
    check_rc(feed_str(c.p, "<message/>"), XML_ERR_CLOSED, "", 0, "sticky");
    cap_free(&c);

    cap_init(&c, NULL);
    check_rc(feed_str(c.p, HDR "</stream:stream>"), XML_OK, "", 0, "close");
    assert_int_equal(c.n_ends, 1);
    check_rc(feed_str(c.p, "<message/>"), XML_ERR_CLOSED, "", 0, "after");
    check_rc(feed_str(c.p, "<message/>"), XML_ERR_CLOSED, "", 0, "sticky");
    assert_int_equal(c.n_els, 0);
    /* A reset allows a new stream. */
    assert_int_equal(xml_parser_reset(c.p), 0);
    check_rc(feed_str(c.p, HDR "<message/>"), XML_OK, "", 0, "reset");
    assert_int_equal(c.n_els, 1);
    cap_free(&c);

    /* A second header after the close. */
    cap_init(&c, NULL);
    check_rc(feed_chunked(c.p, HDR "</stream:stream>" HDR,
                          strlen(HDR "</stream:stream>" HDR), 1),
             XML_ERR_CLOSED, "", 0, "second header");
    assert_int_equal(c.n_headers, 1);
    cap_free(&c);
}

static void test_stats_counts(void **state)
{
    (void)state;
    cap_t c;
    cap_init(&c, NULL);
    xml_parser_stats_t st;
    xml_parser_get_stats(c.p, &st);
    assert_int_equal(st.bytes_fed, 0);
    assert_int_equal(st.engine_bytes, 0);
    assert_int_equal(st.buffered, 0);
    size_t len = strlen(STREAM1);
    check_rc(feed_chunked(c.p, STREAM1, len, 3), XML_OK, STREAM1, len, "3");
    xml_parser_get_stats(c.p, &st);
    assert_int_equal(st.bytes_fed, len);
    assert_int_equal(st.engine_bytes, len);
    assert_int_equal(st.buffered, 0);
    assert_true(st.engine_calls > 0);
    cap_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_conditions),
        cmocka_unit_test(test_events_one_shot),
        cmocka_unit_test(test_events_with_content_ns),
        cmocka_unit_test(test_events_chunked_same_as_one_shot),
        cmocka_unit_test(test_whitespace_keepalives_make_no_elements),
        cmocka_unit_test(test_namespaces_c2s),
        cmocka_unit_test(test_namespaces_s2s),
        cmocka_unit_test(test_immediate_delivery),
        cmocka_unit_test(test_header_delivered_byte_by_byte),
        cmocka_unit_test(test_no_reparse_huge_attribute),
        cmocka_unit_test(test_no_reparse_huge_text),
        cmocka_unit_test(test_restricted_comments),
        cmocka_unit_test(test_restricted_processing_instructions),
        cmocka_unit_test(test_xml_declaration_accepted),
        cmocka_unit_test(test_restricted_doctype_and_entities),
        cmocka_unit_test(test_restricted_undefined_entity),
        cmocka_unit_test(test_malformed_structure),
        cmocka_unit_test(test_malformed_characters),
        cmocka_unit_test(test_raw_gt_quotes_accepted),
        cmocka_unit_test(test_invalid_namespace),
        cmocka_unit_test(test_bad_namespace_prefix),
        cmocka_unit_test(test_bad_format_root),
        cmocka_unit_test(test_unsupported_encoding),
        cmocka_unit_test(test_limit_size_whole_element),
        cmocka_unit_test(test_limit_size_self_closed),
        cmocka_unit_test(test_limit_size_header),
        cmocka_unit_test(test_limit_size_never_closed),
        cmocka_unit_test(test_limit_size_exact_crossing),
        cmocka_unit_test(test_limit_memory_bounded),
        cmocka_unit_test(test_limit_keepalives),
        cmocka_unit_test(test_limit_depth),
        cmocka_unit_test(test_limit_attrs),
        cmocka_unit_test(test_set_limits),
        cmocka_unit_test(test_error_sticks_then_reset),
        cmocka_unit_test(test_reset_keeps_content_ns),
        cmocka_unit_test(test_stop_in_element_callback),
        cmocka_unit_test(test_stop_in_header_callback),
        cmocka_unit_test(test_stop_in_header_callback_header_alone),
        cmocka_unit_test(test_stop_in_end_callback),
        cmocka_unit_test(test_data_after_close),
        cmocka_unit_test(test_stats_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
