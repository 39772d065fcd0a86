/* libFuzzer target: the XMPP stream parser, fed in chunks.
 *
 * Input layout: byte 0 picks the mode, byte 1 is a parameter, the rest is
 * the stream. Mode bits:
 *   0-2  chunking: one shot, 1 byte, fixed (param+1), random (seeded by
 *        param), split in two at param, random 1..4, random 1..64, 7 bytes
 *   3    content_ns jabber:client (else any)
 *   4    xml_parser_stop() after element number (param & 3) + 1, then reset
 *   5    xml_parser_stop() in the header callback, then reset
 *   6    after an error, reset and go on with the rest of the input
 *   7    small limits (else the defaults with 64 KiB elements)
 *
 * Properties checked (abort() on violation):
 *  - every complete element, serialized and parsed again inside a fresh
 *    stream, gives an equal tree (xml_node_equal), and its serialization
 *    holds no comment, PI or DTD; the header round-trips the same way
 *    through xml_serialize_open() and xml_serialize_header();
 *  - trees are well formed: parent and sibling links, merged non-empty
 *    text, depth and attribute count within the limits;
 *  - no callback runs after xml_parser_stop() in the same feed, after the
 *    stream close, or after an error;
 *  - an error sticks: later feeds return it; feed results are in range;
 *  - bytes reach the engine at most once and the bytes held back never
 *    exceed max_element_size.
 * Everything allocated is freed (LeakSanitizer runs at exit). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xml/xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STREAMS "http://etherx.jabber.org/streams"
#define HDR_CLIENT                                                             \
    "<stream:stream xmlns='jabber:client' xmlns:stream='" STREAMS              \
    "' version='1.0'>"
#define HDR_NONE "<stream:stream xmlns:stream='" STREAMS "' version='1.0'>"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            abort();                                                           \
    } while (0)

typedef struct fz {
    xml_parser_t *p;
    const char *content_ns;
    xml_limits_t limits;
    unsigned stop_after; /* stop after this many elements; 0: never */
    bool stop_on_header;
    unsigned n_headers;
    unsigned n_els;
    bool ended;       /* stream_end seen (until reset) */
    bool stop_called; /* we called xml_parser_stop() in this feed */
    bool in_feed;
    bool failed; /* the parser is in an error state (until reset) */
} fz_t;

/* ------------------------------------------------------- tree checks */

static void check_tree(const xml_node_t *el, const xml_limits_t *limits,
                       unsigned depth)
{
    CHECK(el->kind == XML_NODE_ELEMENT);
    CHECK(el->name != NULL && el->name[0] != '\0');
    CHECK(depth <= limits->max_depth);
    unsigned n_attrs = 0;
    for (const xml_attr_t *a = el->attrs; a != NULL; a = a->next) {
        CHECK(a->name != NULL && a->name[0] != '\0');
        CHECK(a->value != NULL);
        n_attrs++;
    }
    CHECK(n_attrs <= limits->max_attrs);
    const xml_node_t *prev = NULL;
    for (const xml_node_t *c = el->children; c != NULL; c = c->next) {
        CHECK(c->parent == el);
        if (c->kind == XML_NODE_TEXT) {
            /* Adjacent character data is merged, and never empty. */
            CHECK(prev == NULL || prev->kind != XML_NODE_TEXT);
            CHECK(c->text != NULL && c->text_len > 0);
            CHECK(c->text[c->text_len] == '\0');
            CHECK(strlen(c->text) == c->text_len);
            CHECK(c->children == NULL);
        } else {
            check_tree(c, limits, depth + 1);
        }
        prev = c;
    }
    CHECK(el->last_child == prev);
}

static bool contains(const char *s, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(s + i, needle, n) == 0)
            return true;
    return false;
}

static void check_output(const char *s, size_t len)
{
    CHECK(!contains(s, len, "<!--"));
    CHECK(!contains(s, len, "<?"));
    CHECK(!contains(s, len, "<!DOCTYPE"));
}

/* ----------------------------------------------- re-parse of one tree */

typedef struct sub {
    xml_tree_t *header;
    xml_tree_t *el;
    unsigned n_els;
} sub_t;

static void sub_start(void *ud, xml_tree_t *t)
{
    sub_t *s = ud;
    if (s->header != NULL)
        abort(); /* one header per stream */
    s->header = t;
}

static void sub_element(void *ud, xml_tree_t *t)
{
    sub_t *s = ud;
    s->n_els++;
    if (s->el == NULL)
        s->el = t;
    else
        xml_tree_free(t);
}

static void sub_end(void *ud)
{
    (void)ud;
}

static const xml_parser_cbs_t SUB_CBS = {sub_start, sub_element, sub_end};

/* Parses hdr + body in a fresh parser with room to spare; aborts unless it
 * succeeds with exactly `want_els` elements. */
static void sub_parse(const char *content_ns, const xml_limits_t *limits,
                      const char *hdr, size_t hdr_len, const char *body,
                      size_t body_len, unsigned want_els, sub_t *out)
{
    xml_parser_opts_t o;
    memset(&o, 0, sizeof(o));
    o.content_ns = content_ns;
    xml_limits_default(&o.limits);
    /* The serialization may be longer than what was received (escaping,
     * namespace declarations moved onto the element), and may declare
     * namespaces the original inherited. */
    o.limits.max_element_size = 2 * (hdr_len + body_len) + 1024;
    o.limits.max_depth = limits->max_depth;
    o.limits.max_attrs = 2 * limits->max_attrs + 8;
    memset(out, 0, sizeof(*out));
    xml_parser_t *p = xml_parser_new(&o, &SUB_CBS, out);
    CHECK(p != NULL);
    int rc = xml_parser_feed(p, hdr, hdr_len);
    if (rc == XML_OK && body_len > 0)
        rc = xml_parser_feed(p, body, body_len);
    xml_parser_free(p);
    CHECK(rc == XML_OK);
    CHECK(out->header != NULL);
    CHECK(out->n_els == want_els);
}

static void roundtrip_element(const fz_t *f, const xml_node_t *el)
{
    const char *inherited = f->content_ns; /* the stream's default ns */
    buf_t b = BUF_INIT;
    CHECK(xml_serialize(el, inherited, &b) == 0);
    CHECK(b.data != NULL && b.len > 0);
    check_output(b.data, b.len);

    /* xml_to_string() gives the same bytes. */
    char *s = xml_to_string(el, inherited);
    CHECK(s != NULL);
    CHECK(strlen(s) == b.len && memcmp(s, b.data, b.len) == 0);
    free(s);

    const char *hdr = inherited != NULL ? HDR_CLIENT : HDR_NONE;
    sub_t r;
    sub_parse(inherited, &f->limits, hdr, strlen(hdr), b.data, b.len, 1, &r);
    CHECK(r.el != NULL && r.el->root != NULL);
    CHECK(xml_node_equal(el, r.el->root));
    CHECK(xml_node_equal(r.el->root, el));
    xml_tree_free(r.header);
    xml_tree_free(r.el);
    buf_free(&b);
}

static void roundtrip_header(const fz_t *f, const xml_node_t *root)
{
    CHECK(root->kind == XML_NODE_ELEMENT);
    CHECK(root->children == NULL);
    CHECK(root->ns != NULL && strcmp(root->ns, STREAMS) == 0);
    CHECK(strcmp(root->name, "stream") == 0);
    buf_t b = BUF_INIT;
    CHECK(xml_serialize_open(root, NULL, &b) == 0);
    CHECK(b.data != NULL && b.len > 2);
    check_output(b.data, b.len);
    CHECK(b.data[b.len - 1] == '>' && b.data[b.len - 2] != '/');
    sub_t r;
    sub_parse(NULL, &f->limits, b.data, b.len, NULL, 0, 0, &r);
    CHECK(xml_node_equal(root, r.header->root));
    xml_tree_free(r.header);

    /* As we would send it: declaring the content namespace, which a parser
     * requiring that namespace accepts. */
    if (f->content_ns != NULL) {
        buf_reset(&b);
        CHECK(xml_serialize_header(root, f->content_ns, &b) == 0);
        CHECK(b.data != NULL && b.len > 2);
        check_output(b.data, b.len);
        CHECK(b.data[b.len - 1] == '>' && b.data[b.len - 2] != '/');
        sub_parse(f->content_ns, &f->limits, b.data, b.len, NULL, 0, 0, &r);
        CHECK(xml_node_equal(root, r.header->root));
        xml_tree_free(r.header);
    }
    buf_free(&b);
}

/* ---------------------------------------------------------- callbacks */

static void on_start(void *ud, xml_tree_t *t)
{
    fz_t *f = ud;
    CHECK(f->in_feed && !f->stop_called && !f->failed);
    CHECK(t != NULL && t->root != NULL);
    CHECK(f->n_headers == 0 && !f->ended);
    f->n_headers++;
    check_tree(t->root, &f->limits, 0);
    roundtrip_header(f, t->root);
    xml_tree_free(t);
    if (f->stop_on_header) {
        f->stop_called = true;
        xml_parser_stop(f->p);
    }
}

static void on_element(void *ud, xml_tree_t *t)
{
    fz_t *f = ud;
    CHECK(f->in_feed && !f->stop_called && !f->failed);
    CHECK(t != NULL && t->root != NULL);
    CHECK(f->n_headers == 1 && !f->ended);
    CHECK(t->root->parent == NULL);
    f->n_els++;
    check_tree(t->root, &f->limits, 1);
    roundtrip_element(f, t->root);
    xml_tree_free(t);
    if (f->stop_after != 0 && f->n_els == f->stop_after) {
        f->stop_called = true;
        xml_parser_stop(f->p);
    }
}

static void on_end(void *ud)
{
    fz_t *f = ud;
    CHECK(f->in_feed && !f->stop_called && !f->failed);
    CHECK(f->n_headers == 1 && !f->ended);
    f->ended = true;
}

static const xml_parser_cbs_t CBS = {on_start, on_element, on_end};

/* -------------------------------------------------------------- driver */

static uint32_t rnd(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

static size_t next_chunk(unsigned mode, unsigned param, uint32_t *seed,
                         size_t off, size_t left)
{
    size_t n;
    switch (mode) {
    case 0:
        n = left;
        break;
    case 1:
        n = 1;
        break;
    case 2:
        n = (size_t)param + 1;
        break;
    case 3:
        n = 1 + rnd(seed) % ((size_t)param + 1);
        break;
    case 4:
        n = off < param ? (size_t)param - off : left;
        break;
    case 5:
        n = 1 + rnd(seed) % 4;
        break;
    case 6:
        n = 1 + rnd(seed) % 64;
        break;
    default:
        n = 7;
        break;
    }
    if (n == 0)
        n = 1;
    return n < left ? n : left;
}

static void restart(fz_t *f)
{
    CHECK(xml_parser_reset(f->p) == XML_OK);
    f->n_headers = 0;
    f->n_els = 0;
    f->ended = false;
    f->stop_called = false;
    f->failed = false;
    /* Stop only once per input, so that resets do not loop forever on the
     * same kind of stanza. */
    f->stop_after = 0;
    f->stop_on_header = false;
}

static bool valid_error(int rc)
{
    return rc >= XML_ERR_CLOSED && rc <= XML_ERR_NOT_WELL_FORMED;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const unsigned mode = data[0];
    const unsigned param = data[1];
    const char *in = (const char *)data + 2;
    size_t len = size - 2;

    fz_t f;
    memset(&f, 0, sizeof(f));
    xml_parser_opts_t o;
    memset(&o, 0, sizeof(o));
    xml_limits_default(&o.limits);
    if (mode & 0x80) {
        o.limits.max_element_size = 4096;
        o.limits.max_depth = 8;
        o.limits.max_attrs = 8;
    } else {
        o.limits.max_element_size = 64 * 1024;
    }
    o.content_ns = (mode & 0x08) ? XML_NS_CLIENT : NULL;
    f.content_ns = o.content_ns;
    f.limits = o.limits;
    f.stop_after = (mode & 0x10) ? (param & 3) + 1 : 0;
    f.stop_on_header = (mode & 0x20) != 0;
    f.p = xml_parser_new(&o, &CBS, &f);
    CHECK(f.p != NULL);

    uint32_t seed = param * 2654435761u + (uint32_t)len;
    size_t off = 0;
    unsigned resets = 0;
    while (off < len) {
        size_t n = next_chunk(mode & 7, param, &seed, off, len - off);
        f.in_feed = true;
        int rc = xml_parser_feed(f.p, in + off, n);
        f.in_feed = false;
        off += n;

        xml_parser_stats_t st;
        xml_parser_get_stats(f.p, &st);
        CHECK(st.engine_bytes <= st.bytes_fed);
        CHECK(st.buffered <= f.limits.max_element_size);

        if (rc == XML_OK) {
            CHECK(!f.stop_called);
            continue;
        }
        if (rc == XML_STOPPED) {
            CHECK(f.stop_called);
            restart(&f);
            continue;
        }
        /* An error: in range, not an allocation failure, with a text,
         * and sticky. */
        CHECK(valid_error(rc));
        CHECK(rc != XML_ERR_NOMEM);
        const char *cond = xml_error_condition(rc);
        CHECK(cond != NULL && cond[0] != '\0');
        const char *text = xml_parser_error_text(f.p);
        CHECK(text != NULL && text[0] != '\0');
        f.failed = true;
        f.in_feed = true;
        CHECK(xml_parser_feed(f.p, "<a/>", 4) == rc);
        CHECK(xml_parser_feed(f.p, "", 0) == rc);
        f.in_feed = false;
        if (!(mode & 0x40) || ++resets > 4)
            break;
        restart(&f);
    }
    xml_parser_free(f.p);
    return 0;
}
