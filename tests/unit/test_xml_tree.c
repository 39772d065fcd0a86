/* Unit tests for the element tree (lib/xml/xml_tree.c) and the serializer
 * (lib/xml/xml_writer.c), written against lib/xml/xml.h. The round-trip
 * tests use the parser too: parse, serialize, parse again, compare. */
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
#define HDR                                                                    \
    "<stream:stream xmlns='jabber:client' xmlns:stream=" STREAMS_Q             \
    " to='example.com' version='1.0'>"
#define NS_DATA "jabber:x:data"
#define NS_TLS  "urn:ietf:params:xml:ns:xmpp-tls"

/* ------------------------------------------------------------ helpers */

static xml_tree_t *tree_new(void)
{
    xml_tree_t *t = xml_tree_new();
    assert_non_null(t);
    assert_non_null(t->arena);
    assert_null(t->root);
    return t;
}

static xml_node_t *el_new(xml_tree_t *t, xml_node_t *parent, const char *ns,
                          const char *name)
{
    xml_node_t *el = xml_element_new(t, parent, ns, name);
    assert_non_null(el);
    return el;
}

static void set_attr(xml_tree_t *t, xml_node_t *el, const char *ns,
                     const char *name, const char *value)
{
    assert_int_equal(xml_element_set_attr(t, el, ns, name, value), 0);
}

static void add_text(xml_tree_t *t, xml_node_t *el, const char *s)
{
    assert_int_equal(xml_element_add_text(t, el, s, strlen(s)), 0);
}

static char *to_string(const xml_node_t *el, const char *inherited)
{
    char *s = xml_to_string(el, inherited);
    assert_non_null(s);
    /* xml_serialize() gives the same bytes, appended to what is there. */
    buf_t b = BUF_INIT;
    assert_int_equal(buf_append_str(&b, "PRE"), 0);
    assert_int_equal(xml_serialize(el, inherited, &b), 0);
    assert_non_null(b.data);
    assert_memory_equal(b.data, "PRE", 3);
    assert_string_equal(b.data + 3, s);
    buf_free(&b);
    /* Never a comment, a processing instruction or a DTD. */
    assert_null(strstr(s, "<!--"));
    assert_null(strstr(s, "<?"));
    assert_null(strstr(s, "<!DOCTYPE"));
    assert_null(strstr(s, "<!"));
    return s;
}

static void swap_quotes(char *s)
{
    for (; *s; s++) {
        if (*s == '\'')
            *s = '"';
        else if (*s == '"')
            *s = '\'';
    }
}

/* got equals want, where want writes attributes with single quotes and the
 * serializer may use either quote character (want has no quote characters
 * in its text or values). */
static void assert_xml(const char *got, const char *want)
{
    if (strcmp(got, want) == 0)
        return;
    char *alt = strdup(want);
    assert_non_null(alt);
    swap_quotes(alt);
    bool ok = strcmp(got, alt) == 0;
    free(alt);
    if (!ok)
        fail_msg("serialized\n  got:  %s\n  want: %s", got, want);
}

static void assert_serializes(const xml_node_t *el, const char *inherited,
                              const char *want)
{
    char *s = to_string(el, inherited);
    assert_xml(s, want);
    free(s);
}

/* The value of attribute `name` in the first start tag of s, read back with
 * whichever quote the serializer used (still escaped). */
static char *raw_attr_value(const char *s, const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), " %s=", name);
    const char *p = strstr(s, key);
    assert_non_null(p);
    p += strlen(key);
    char q = *p++;
    assert_true(q == '\'' || q == '"');
    const char *e = strchr(p, q);
    assert_non_null(e);
    return strndup(p, (size_t)(e - p));
}

/* Parsing: the stanza fed inside a c2s stream header. */

typedef struct cap {
    xml_tree_t *header;
    xml_tree_t *el;
    int n_els;
} cap_t;

static void cb_start(void *ud, xml_tree_t *header)
{
    cap_t *c = ud;
    xml_tree_free(c->header);
    c->header = header;
}

static void cb_element(void *ud, xml_tree_t *el)
{
    cap_t *c = ud;
    c->n_els++;
    if (c->el == NULL)
        c->el = el;
    else
        xml_tree_free(el);
}

static void cb_end(void *ud)
{
    (void)ud;
}

static const xml_parser_cbs_t CBS = {cb_start, cb_element, cb_end};

/* Parses `header` + `stanza` (content ns not enforced), expects exactly one
 * element and returns its tree; frees the header unless asked for it. */
static xml_tree_t *parse_in(const char *header, const char *stanza,
                            xml_tree_t **header_out)
{
    cap_t c = {NULL, NULL, 0};
    xml_parser_t *p = xml_parser_new(NULL, &CBS, &c);
    assert_non_null(p);
    buf_t b = BUF_INIT;
    assert_int_equal(buf_append_str(&b, header), 0);
    assert_int_equal(buf_append_str(&b, stanza), 0);
    int rc = xml_parser_feed(p, b.data, b.len);
    if (rc != XML_OK || c.n_els != 1) {
        print_message("stanza: %s\n", stanza);
        fail_msg("parse: rc %d (%s), %d elements: %s", rc,
                 xml_error_condition(rc), c.n_els,
                 rc != XML_OK ? xml_parser_error_text(p) : "");
    }
    xml_parser_free(p);
    buf_free(&b);
    if (header_out != NULL)
        *header_out = c.header;
    else
        xml_tree_free(c.header);
    assert_non_null(c.el);
    return c.el;
}

static xml_tree_t *parse_one(const char *stanza)
{
    return parse_in(HDR, stanza, NULL);
}

/* parse -> serialize (inherited jabber:client) -> parse gives an equal
 * tree, and serializing that again gives the same bytes. */
static void roundtrip(const char *stanza)
{
    xml_tree_t *t1 = parse_one(stanza);
    char *s1 = to_string(t1->root, XML_NS_CLIENT);
    xml_tree_t *t2 = parse_one(s1);
    if (!xml_node_equal(t1->root, t2->root)) {
        print_message("stanza:     %s\nserialized: %s\n", stanza, s1);
        fail_msg("round trip changed the tree");
    }
    assert_true(xml_node_equal(t2->root, t1->root));
    char *s2 = to_string(t2->root, XML_NS_CLIENT);
    if (strcmp(s1, s2) != 0) {
        print_message("stanza: %s\n", stanza);
        fail_msg("serialization not stable:\n  1: %s\n  2: %s", s1, s2);
    }
    /* Without an inherited namespace the stanza carries its own xmlns and
     * parses the same in a stream without a default namespace. */
    char *s3 = to_string(t1->root, NULL);
    xml_tree_t *t3 = parse_in(
        "<stream:stream xmlns:stream=" STREAMS_Q " version='1.0'>", s3, NULL);
    if (!xml_node_equal(t1->root, t3->root)) {
        print_message("stanza:     %s\nserialized: %s\n", stanza, s3);
        fail_msg("round trip (no inherited ns) changed the tree");
    }
    free(s1);
    free(s2);
    free(s3);
    xml_tree_free(t1);
    xml_tree_free(t2);
    xml_tree_free(t3);
}

/* Trees built with the API: serialize, parse back, compare. */
static void roundtrip_built(const xml_node_t *el)
{
    char *s = to_string(el, XML_NS_CLIENT);
    xml_tree_t *t = parse_one(s);
    if (!xml_node_equal(el, t->root)) {
        print_message("serialized: %s\n", s);
        fail_msg("built tree does not parse back equal");
    }
    free(s);
    xml_tree_free(t);
}

/* ------------------------------------------------------------- trees */

static void test_tree_new_free(void **state)
{
    (void)state;
    xml_tree_t *t = tree_new();
    xml_tree_free(t);
    xml_tree_free(NULL);
}

static void test_element_new_links(void **state)
{
    (void)state;
    xml_tree_t *t = tree_new();
    char name[16];
    strcpy(name, "message");
    xml_node_t *m = el_new(t, NULL, XML_NS_CLIENT, name);
    strcpy(name, "clobbered");
    assert_ptr_equal(t->root, m);
    assert_int_equal(m->kind, XML_NODE_ELEMENT);
    assert_string_equal(m->name, "message");
    assert_string_equal(m->ns, XML_NS_CLIENT);
    assert_null(m->prefix);
    assert_null(m->parent);
    assert_null(m->children);
    assert_null(m->last_child);
    assert_null(m->attrs);
    assert_null(m->next);

    xml_node_t *b = el_new(t, m, XML_NS_CLIENT, "body");
    xml_node_t *s = el_new(t, m, XML_NS_CLIENT, "subject");
    xml_node_t *x = el_new(t, m, NULL, "x");
    assert_ptr_equal(m->children, b);
    assert_ptr_equal(m->last_child, x);
    assert_ptr_equal(b->next, s);
    assert_ptr_equal(s->next, x);
    assert_null(x->next);
    assert_ptr_equal(b->parent, m);
    assert_ptr_equal(x->parent, m);
    assert_null(x->ns);
    assert_ptr_equal(t->root, m);

    /* A new element without a parent replaces the root. */
    xml_node_t *r = el_new(t, NULL, NULL, "iq");
    assert_ptr_equal(t->root, r);
    assert_null(r->parent);
    xml_tree_free(t);
}

static void test_attrs(void **state)
{
    (void)state;
    xml_tree_t *t = tree_new();
    xml_node_t *m = el_new(t, NULL, XML_NS_CLIENT, "message");
    char val[16];
    strcpy(val, "a@b");
    set_attr(t, m, NULL, "to", val);
    strcpy(val, "clobbered");
    set_attr(t, m, NULL, "type", "chat");
    set_attr(t, m, XML_NS_XML, "lang", "en");
    assert_string_equal(xml_element_attr(m, NULL, "to"), "a@b");
    assert_string_equal(xml_element_attr(m, NULL, "type"), "chat");
    assert_string_equal(xml_element_attr(m, XML_NS_XML, "lang"), "en");
    assert_null(xml_element_attr(m, NULL, "lang"));
    assert_null(xml_element_attr(m, "urn:other", "to"));
    assert_null(xml_element_attr(m, NULL, "from"));

    /* In the order set. */
    assert_string_equal(m->attrs->name, "to");
    assert_null(m->attrs->ns);
    assert_string_equal(m->attrs->next->name, "type");
    assert_string_equal(m->attrs->next->next->name, "lang");
    assert_string_equal(m->attrs->next->next->ns, XML_NS_XML);
    assert_null(m->attrs->next->next->next);

    /* Replacing keeps one attribute. */
    set_attr(t, m, NULL, "type", "groupchat");
    assert_string_equal(xml_element_attr(m, NULL, "type"), "groupchat");
    size_t n = 0;
    for (xml_attr_t *a = m->attrs; a; a = a->next)
        n++;
    assert_int_equal(n, 3);

    /* Same local name in another namespace is another attribute. */
    set_attr(t, m, "urn:x", "type", "other");
    assert_string_equal(xml_element_attr(m, NULL, "type"), "groupchat");
    assert_string_equal(xml_element_attr(m, "urn:x", "type"), "other");

    xml_element_remove_attr(m, NULL, "type");
    assert_null(xml_element_attr(m, NULL, "type"));
    assert_string_equal(xml_element_attr(m, "urn:x", "type"), "other");
    xml_element_remove_attr(m, NULL, "absent");
    xml_element_remove_attr(m, XML_NS_XML, "lang");
    assert_null(xml_element_attr(m, XML_NS_XML, "lang"));
    xml_element_remove_attr(m, NULL, "to");
    xml_element_remove_attr(m, "urn:x", "type");
    assert_null(m->attrs);
    xml_element_remove_attr(m, NULL, "to");

    set_attr(t, m, NULL, "id", "");
    assert_string_equal(xml_element_attr(m, NULL, "id"), "");
    xml_tree_free(t);
}

static void test_text(void **state)
{
    (void)state;
    xml_tree_t *t = tree_new();
    xml_node_t *m = el_new(t, NULL, XML_NS_CLIENT, "message");
    xml_node_t *b = el_new(t, m, XML_NS_CLIENT, "body");
    assert_string_equal(xml_element_text(t, b), "");
    assert_string_equal(xml_element_text(t, m), "");

    /* Not NUL-terminated input: exactly len bytes are taken. */
    const char raw[] = {'h', 'e', 'l', 'l', 'o', 'X'};
    assert_int_equal(xml_element_add_text(t, b, raw, 5), 0);
    add_text(t, b, " w\xC3\xB6rld");
    /* Merged into one node. */
    assert_non_null(b->children);
    assert_int_equal(b->children->kind, XML_NODE_TEXT);
    assert_null(b->children->next);
    assert_ptr_equal(b->last_child, b->children);
    assert_ptr_equal(b->children->parent, b);
    assert_int_equal(b->children->text_len, strlen("hello w\xC3\xB6rld"));
    assert_string_equal(b->children->text, "hello w\xC3\xB6rld");
    assert_string_equal(xml_element_text(t, b), "hello w\xC3\xB6rld");
    assert_int_equal(xml_element_count_children(b), 0);

    /* Text around a child: two text nodes, concatenated by text(). */
    add_text(t, m, "ab");
    xml_node_t *x = el_new(t, m, "urn:x", "x");
    add_text(t, m, "cd");
    add_text(t, m, "ef");
    assert_int_equal(xml_element_count_children(m), 2);
    assert_string_equal(xml_element_text(t, m), "abcdef");
    assert_ptr_equal(x->next, m->last_child);
    assert_int_equal(m->last_child->kind, XML_NODE_TEXT);
    assert_int_equal(m->last_child->text_len, 4);
    assert_string_equal(m->last_child->text, "cdef");
    /* Text of a child is not the parent's text. */
    add_text(t, x, "zz");
    assert_string_equal(xml_element_text(t, m), "abcdef");
    xml_tree_free(t);
}

static void test_is_child_next_count(void **state)
{
    (void)state;
    xml_tree_t *t = tree_new();
    xml_node_t *q = el_new(t, NULL, "jabber:iq:roster", "query");
    add_text(t, q, " ");
    xml_node_t *i1 = el_new(t, q, "jabber:iq:roster", "item");
    add_text(t, q, " ");
    xml_node_t *g = el_new(t, q, "urn:other", "item");
    xml_node_t *i2 = el_new(t, q, "jabber:iq:roster", "item");
    xml_node_t *z = el_new(t, q, "jabber:iq:roster", "zzz");
    add_text(t, q, "tail");

    assert_true(xml_element_is(q, "jabber:iq:roster", "query"));
    assert_true(xml_element_is(q, NULL, "query"));
    assert_true(xml_element_is(q, "jabber:iq:roster", NULL));
    assert_true(xml_element_is(q, NULL, NULL));
    assert_false(xml_element_is(q, "jabber:iq:roster", "item"));
    assert_false(xml_element_is(q, "urn:other", "query"));
    /* A text node is not an element. */
    assert_false(xml_element_is(q->children, NULL, NULL));

    assert_int_equal(xml_element_count_children(q), 4);
    assert_ptr_equal(xml_element_child(q, "jabber:iq:roster", "item"), i1);
    assert_ptr_equal(xml_element_child(q, "urn:other", "item"), g);
    assert_ptr_equal(xml_element_child(q, NULL, "item"), i1);
    assert_ptr_equal(xml_element_child(q, NULL, NULL), i1);
    assert_ptr_equal(xml_element_child(q, NULL, "zzz"), z);
    assert_null(xml_element_child(q, NULL, "none"));
    assert_null(xml_element_child(q, "urn:none", NULL));

    assert_ptr_equal(xml_element_next(i1, "jabber:iq:roster", "item"), i2);
    assert_ptr_equal(xml_element_next(i1, NULL, "item"), g);
    assert_ptr_equal(xml_element_next(i1, NULL, NULL), g);
    assert_null(xml_element_next(i2, "jabber:iq:roster", "item"));
    assert_ptr_equal(xml_element_next(i2, NULL, NULL), z);
    assert_null(xml_element_next(z, NULL, NULL));

    xml_node_t *empty = el_new(t, q, NULL, "e");
    assert_int_equal(xml_element_count_children(empty), 0);
    assert_null(xml_element_child(empty, NULL, NULL));
    xml_tree_free(t);
}

static xml_node_t *build_sample(xml_tree_t *t, xml_node_t *parent)
{
    xml_node_t *m = el_new(t, parent, XML_NS_CLIENT, "message");
    set_attr(t, m, NULL, "to", "juliet@example.com");
    set_attr(t, m, NULL, "type", "chat");
    set_attr(t, m, XML_NS_XML, "lang", "en");
    xml_node_t *b = el_new(t, m, XML_NS_CLIENT, "body");
    add_text(t, b, "Wherefore art thou, Romeo? \xE2\x98\x83");
    xml_node_t *x = el_new(t, m, NS_DATA, "x");
    set_attr(t, x, NULL, "type", "form");
    xml_node_t *f = el_new(t, x, NS_DATA, "field");
    set_attr(t, f, NULL, "var", "a&b");
    add_text(t, x, "text between");
    el_new(t, m, NULL, "nons");
    return m;
}

static void test_copy(void **state)
{
    (void)state;
    xml_tree_t *src = tree_new();
    xml_node_t *m = build_sample(src, NULL);

    xml_tree_t *dst = tree_new();
    xml_node_t *c = xml_node_copy(dst, NULL, m);
    assert_non_null(c);
    assert_ptr_equal(dst->root, c);
    assert_null(c->parent);
    assert_true(xml_node_equal(m, c));

    /* A copy under a parent, of a subtree. */
    xml_node_t *wrap = el_new(dst, c, "urn:forward", "forwarded");
    xml_node_t *c2 = xml_node_copy(dst, wrap, m->children->next);
    assert_non_null(c2);
    assert_ptr_equal(c2->parent, wrap);
    assert_ptr_equal(wrap->children, c2);
    assert_true(xml_node_equal(c2, m->children->next));

    /* The copy does not depend on the source tree. */
    xml_tree_free(src);
    assert_string_equal(xml_element_attr(c, NULL, "to"), "juliet@example.com");
    assert_string_equal(xml_element_attr(c, XML_NS_XML, "lang"), "en");
    assert_string_equal(
        xml_element_text(dst, xml_element_child(c, NULL, "body")),
        "Wherefore art thou, Romeo? \xE2\x98\x83");
    assert_string_equal(
        xml_element_attr(xml_element_child(c2, NS_DATA, "field"), NULL, "var"),
        "a&b");
    char *s = to_string(c2, XML_NS_CLIENT);
    free(s);
    xml_tree_free(dst);
}

static void test_equal(void **state)
{
    (void)state;
    xml_tree_t *t = tree_new();
    xml_node_t *root = el_new(t, NULL, NULL, "root");
    xml_node_t *a = build_sample(t, root);
    xml_node_t *b = build_sample(t, root);
    assert_true(xml_node_equal(a, a));
    assert_true(xml_node_equal(a, b));

    /* Attribute order does not matter. */
    xml_node_t *c = el_new(t, root, XML_NS_CLIENT, "message");
    set_attr(t, c, XML_NS_XML, "lang", "en");
    set_attr(t, c, NULL, "type", "chat");
    set_attr(t, c, NULL, "to", "juliet@example.com");
    for (xml_node_t *n = a->children; n; n = n->next) {
        if (n->kind == XML_NODE_ELEMENT)
            assert_non_null(xml_node_copy(t, c, n));
    }
    assert_true(xml_node_equal(a, c));
    assert_true(xml_node_equal(c, a));

    /* Prefixes are not compared. */
    c->prefix = "cl";
    assert_true(xml_node_equal(a, c));
    c->prefix = NULL;

    /* A different attribute value, a missing or extra attribute, an
     * attribute in another namespace. */
    set_attr(t, c, NULL, "type", "normal");
    assert_false(xml_node_equal(a, c));
    set_attr(t, c, NULL, "type", "chat");
    assert_true(xml_node_equal(a, c));
    xml_element_remove_attr(c, NULL, "type");
    assert_false(xml_node_equal(a, c));
    assert_false(xml_node_equal(c, a));
    set_attr(t, c, "urn:x", "type", "chat");
    assert_false(xml_node_equal(a, c));
    xml_element_remove_attr(c, "urn:x", "type");
    set_attr(t, c, NULL, "type", "chat");
    set_attr(t, c, NULL, "id", "1");
    assert_false(xml_node_equal(a, c));
    assert_false(xml_node_equal(c, a));
    xml_element_remove_attr(c, NULL, "id");
    assert_true(xml_node_equal(a, c));

    /* Text differences, byte for byte. */
    xml_node_t *d = build_sample(t, root);
    add_text(t, xml_element_child(d, NULL, "body"), "!");
    assert_false(xml_node_equal(a, d));
    assert_false(xml_node_equal(d, a));
    xml_node_t *e = build_sample(t, root);
    add_text(t, e, " ");
    assert_false(xml_node_equal(a, e));

    /* Name, namespace, children. */
    xml_node_t *f1 = el_new(t, root, "urn:a", "x");
    xml_node_t *f2 = el_new(t, root, "urn:b", "x");
    xml_node_t *f3 = el_new(t, root, "urn:a", "y");
    xml_node_t *f4 = el_new(t, root, NULL, "x");
    xml_node_t *f5 = el_new(t, root, "urn:a", "x");
    assert_false(xml_node_equal(f1, f2));
    assert_false(xml_node_equal(f1, f3));
    assert_false(xml_node_equal(f1, f4));
    assert_false(xml_node_equal(f4, f1));
    assert_true(xml_node_equal(f1, f5));
    el_new(t, f5, "urn:a", "child");
    assert_false(xml_node_equal(f1, f5));
    el_new(t, f1, "urn:a", "child");
    assert_true(xml_node_equal(f1, f5));
    el_new(t, f1, "urn:a", "c1");
    el_new(t, f1, "urn:a", "c2");
    el_new(t, f5, "urn:a", "c2");
    el_new(t, f5, "urn:a", "c1");
    assert_false(xml_node_equal(f1, f5)); /* children order matters */
    xml_tree_free(t);
}

/* --------------------------------------------------------- serializer */

static void test_escape(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    assert_int_equal(xml_escape("a&b<c>d'e\"f", 11, &b), 0);
    assert_string_equal(b.data, "a&amp;b&lt;c&gt;d&apos;e&quot;f");
    buf_reset(&b);
    assert_int_equal(xml_escape("&&<<", 2, &b), 0);
    assert_string_equal(b.data, "&amp;&amp;");
    buf_reset(&b);
    assert_int_equal(xml_escape("plain h\xC3\xA9llo", 12, &b), 0);
    assert_string_equal(b.data, "plain h\xC3\xA9llo");
    /* Appends. */
    assert_int_equal(xml_escape("<", 1, &b), 0);
    assert_string_equal(b.data, "plain h\xC3\xA9llo&lt;");
    /* Character data: CR as a reference, LF and TAB as they are. */
    buf_reset(&b);
    assert_int_equal(xml_escape("a\r\nb\tc\n", 7, &b), 0);
    assert_string_equal(b.data, "a&#13;\nb\tc\n");
    buf_free(&b);
}

static void test_escape_attr(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    assert_int_equal(xml_escape_attr("a&b<c>d'e\"f", 11, &b), 0);
    assert_string_equal(b.data, "a&amp;b&lt;c&gt;d&apos;e&quot;f");
    buf_reset(&b);
    assert_int_equal(xml_escape_attr("a\nb\tc\rd", 7, &b), 0);
    assert_null(strchr(b.data, '\n'));
    assert_null(strchr(b.data, '\t'));
    assert_null(strchr(b.data, '\r'));
    assert_true(strcmp(b.data, "a&#10;b&#9;c&#13;d") == 0 ||
                strcmp(b.data, "a&#xA;b&#x9;c&#xD;d") == 0);
    buf_free(&b);
}

/* xml_serialize_header() declares the content namespace on the stream
 * element, and what it writes opens a stream that our parser accepts with
 * that content namespace required. */
static void test_serialize_header(void **state)
{
    (void)state;
    static const struct {
        const char *prefix;
        const char *content_ns;
    } cases[] = {
        {NULL, XML_NS_CLIENT},
        {"stream", XML_NS_CLIENT},
        {NULL, XML_NS_SERVER},
        {"s", XML_NS_SERVER},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        xml_tree_t *t = tree_new();
        xml_node_t *h = el_new(t, NULL, XML_NS_STREAMS, "stream");
        if (cases[k].prefix != NULL)
            h->prefix = arena_strdup(t->arena, cases[k].prefix);
        set_attr(t, h, NULL, "from", "example.com");
        set_attr(t, h, NULL, "id", "++TR84Sm6A3hnt3Q065SnAbbk3Y=");
        set_attr(t, h, NULL, "to", "juliet@example.com");
        set_attr(t, h, NULL, "version", "1.0");
        set_attr(t, h, XML_NS_XML, "lang", "en");

        buf_t b = BUF_INIT;
        assert_int_equal(xml_serialize_header(h, cases[k].content_ns, &b), 0);
        assert_non_null(b.data);
        const char *s = b.data;
        char open[16];
        snprintf(open, sizeof(open), "<%s:stream ",
                 cases[k].prefix ? cases[k].prefix : "stream");
        assert_true(strncmp(s, open, strlen(open)) == 0);
        assert_int_equal(s[b.len - 1], '>');
        assert_true(s[b.len - 2] != '/');
        assert_null(strstr(s, "</"));
        assert_null(strstr(s, "<?"));
        char want[64];
        snprintf(want, sizeof(want), " xmlns='%s'", cases[k].content_ns);
        char want2[64];
        snprintf(want2, sizeof(want2), " xmlns=\"%s\"", cases[k].content_ns);
        assert_true(strstr(s, want) != NULL || strstr(s, want2) != NULL);

        /* It opens a stream that requires that content namespace. */
        xml_parser_opts_t o;
        memset(&o, 0, sizeof(o));
        xml_limits_default(&o.limits);
        o.content_ns = cases[k].content_ns;
        cap_t c = {NULL, NULL, 0};
        xml_parser_t *p = xml_parser_new(&o, &CBS, &c);
        assert_non_null(p);
        assert_int_equal(xml_parser_feed(p, b.data, b.len), XML_OK);
        assert_int_equal(xml_parser_feed(p, "<message/>", 10), XML_OK);
        assert_non_null(c.header);
        assert_true(xml_node_equal(h, c.header->root));
        assert_non_null(c.el);
        assert_string_equal(c.el->root->ns, cases[k].content_ns);
        xml_parser_free(p);
        xml_tree_free(c.header);
        xml_tree_free(c.el);
        buf_free(&b);
        xml_tree_free(t);
    }
}

static void test_serialize_escaping(void **state)
{
    (void)state;
    xml_tree_t *t = tree_new();
    xml_node_t *m = el_new(t, NULL, XML_NS_CLIENT, "body");
    add_text(t, m, "a&b<c>d'e\"f");
    char *s = to_string(m, XML_NS_CLIENT);
    assert_string_equal(s, "<body>a&amp;b&lt;c&gt;d&apos;e&quot;f</body>");
    free(s);

    xml_node_t *x = el_new(t, NULL, XML_NS_CLIENT, "message");
    set_attr(t, x, NULL, "id", "a&b<c>d'e\"f");
    s = to_string(x, XML_NS_CLIENT);
    char *v = raw_attr_value(s, "id");
    assert_string_equal(v, "a&amp;b&lt;c&gt;d&apos;e&quot;f");
    free(v);
    assert_true(strncmp(s, "<message id=", 12) == 0);
    assert_string_equal(s + strlen(s) - 2, "/>");
    free(s);

    /* Markup-looking text stays text. */
    xml_node_t *y = el_new(t, NULL, XML_NS_CLIENT, "body");
    add_text(t, y, "<!-- c --><?pi x?><!DOCTYPE x><![CDATA[x]]>");
    set_attr(t, y, NULL, "v", "<!-- c --><?pi?>");
    s = to_string(y, XML_NS_CLIENT);
    assert_null(strstr(s, "CDATA[x]]>"));
    free(s);
    roundtrip_built(y);
    xml_tree_free(t);
}

static void test_serialize_self_closing(void **state)
{
    (void)state;
    xml_tree_t *t = tree_new();
    xml_node_t *a = el_new(t, NULL, NULL, "a");
    assert_serializes(a, NULL, "<a/>");
    xml_node_t *m = el_new(t, NULL, XML_NS_CLIENT, "message");
    assert_serializes(m, XML_NS_CLIENT, "<message/>");
    el_new(t, m, XML_NS_CLIENT, "body");
    assert_serializes(m, XML_NS_CLIENT, "<message><body/></message>");
    add_text(t, m->children, "hi");
    assert_serializes(m, XML_NS_CLIENT, "<message><body>hi</body></message>");
    xml_tree_free(t);
}

static void test_serialize_namespaces(void **state)
{
    (void)state;
    xml_tree_t *t = tree_new();
    xml_node_t *m = el_new(t, NULL, XML_NS_CLIENT, "message");
    xml_node_t *b = el_new(t, m, XML_NS_CLIENT, "body");
    add_text(t, b, "hi");

    /* Same namespace as inherited: no xmlns anywhere. */
    assert_serializes(m, XML_NS_CLIENT, "<message><body>hi</body></message>");
    /* Nothing inherited: declared once, on the top. */
    assert_serializes(m, NULL,
                      "<message xmlns='jabber:client'><body>hi</body>"
                      "</message>");
    /* Another namespace inherited (an s2s stream). */
    assert_serializes(m, XML_NS_SERVER,
                      "<message xmlns='jabber:client'><body>hi</body>"
                      "</message>");

    /* A child in another namespace gets its declaration; its own children
     * in that namespace do not. */
    xml_node_t *x = el_new(t, m, NS_DATA, "x");
    el_new(t, x, NS_DATA, "field");
    assert_serializes(m, XML_NS_CLIENT,
                      "<message><body>hi</body><x xmlns='jabber:x:data'>"
                      "<field/></x></message>");
    /* Back to the outer namespace below it: declared again. */
    el_new(t, x, XML_NS_CLIENT, "body");
    assert_serializes(m, XML_NS_CLIENT,
                      "<message><body>hi</body><x xmlns='jabber:x:data'>"
                      "<field/><body xmlns='jabber:client'/></x></message>");

    /* No namespace under a default namespace: xmlns=''. */
    xml_tree_t *t2 = tree_new();
    xml_node_t *p = el_new(t2, NULL, XML_NS_CLIENT, "presence");
    xml_node_t *n = el_new(t2, p, NULL, "foo");
    el_new(t2, n, NULL, "bar");
    assert_serializes(p, XML_NS_CLIENT,
                      "<presence><foo xmlns=''><bar/></foo></presence>");
    assert_serializes(n, XML_NS_CLIENT, "<foo xmlns=''><bar/></foo>");
    assert_serializes(n, NULL, "<foo><bar/></foo>");
    roundtrip_built(p);
    xml_tree_free(t2);
    roundtrip_built(m);
    xml_tree_free(t);
}

static void test_serialize_xml_lang(void **state)
{
    (void)state;
    xml_tree_t *t = tree_new();
    xml_node_t *m = el_new(t, NULL, XML_NS_CLIENT, "message");
    set_attr(t, m, XML_NS_XML, "lang", "en");
    char *s = to_string(m, XML_NS_CLIENT);
    assert_xml(s, "<message xml:lang='en'/>");
    assert_null(strstr(s, "xmlns:xml"));
    free(s);
    roundtrip_built(m);
    xml_tree_free(t);
}

static void test_serialize_prefixes(void **state)
{
    (void)state;
    xml_tree_t *t = tree_new();
    xml_node_t *bar = el_new(t, NULL, "urn:x", "bar");
    bar->prefix = arena_strdup(t->arena, "foo");
    assert_serializes(bar, XML_NS_CLIENT, "<foo:bar xmlns:foo='urn:x'/>");
    xml_node_t *baz = el_new(t, bar, "urn:x", "baz");
    baz->prefix = bar->prefix;
    assert_serializes(bar, XML_NS_CLIENT,
                      "<foo:bar xmlns:foo='urn:x'><foo:baz/></foo:bar>");
    /* Under a prefixed element the default namespace is still the
     * inherited one. */
    el_new(t, bar, XML_NS_CLIENT, "plain");
    assert_serializes(bar, XML_NS_CLIENT,
                      "<foo:bar xmlns:foo='urn:x'><foo:baz/><plain/>"
                      "</foo:bar>");
    roundtrip_built(bar);
    xml_tree_free(t);

    /* The stream features as received. */
    xml_tree_t *f = parse_one("<stream:features><starttls xmlns='" NS_TLS
                              "'><required/></starttls></stream:features>");
    assert_serializes(f->root, XML_NS_CLIENT,
                      "<stream:features xmlns:stream=" STREAMS_Q
                      "><starttls xmlns='" NS_TLS "'><required/></starttls>"
                      "</stream:features>");
    xml_tree_free(f);

    /* Prefixed attributes keep a declared prefix. */
    xml_tree_t *pa = parse_one("<message xmlns:p='urn:p' p:x='1' x='2'/>");
    char *s = to_string(pa->root, XML_NS_CLIENT);
    assert_non_null(strstr(s, ":x="));
    assert_non_null(strstr(s, " x="));
    assert_non_null(strstr(s, "'urn:p'") ? strstr(s, "'urn:p'")
                                         : strstr(s, "\"urn:p\""));
    free(s);
    roundtrip_built(pa->root);
    xml_tree_free(pa);

    /* An attribute in a namespace without any prefix (built by the API):
     * the serializer must make one up. */
    xml_tree_t *t3 = tree_new();
    xml_node_t *m = el_new(t3, NULL, XML_NS_CLIENT, "message");
    set_attr(t3, m, "urn:attr", "x", "1");
    set_attr(t3, m, NULL, "x", "2");
    xml_node_t *ch = el_new(t3, m, "urn:el", "child");
    set_attr(t3, ch, "urn:attr", "y", "3");
    set_attr(t3, ch, "urn:el", "z", "4");
    roundtrip_built(m);
    xml_tree_free(t3);
}

/* Many attributes, each in its own namespace: every one gets a declared
 * prefix and the result parses back (with limits raised to fit). */
static void test_serialize_many_namespaced_attrs(void **state)
{
    (void)state;
    xml_tree_t *t = tree_new();
    xml_node_t *m = el_new(t, NULL, XML_NS_CLIENT, "message");
    for (int i = 0; i < 100; i++) {
        char ns[32], name[16];
        snprintf(ns, sizeof(ns), "urn:ns:%d", i);
        snprintf(name, sizeof(name), "a%d", i);
        set_attr(t, m, ns, name, "v");
    }
    buf_t b = BUF_INIT;
    assert_int_equal(xml_serialize(m, XML_NS_CLIENT, &b), 0);
    assert_non_null(b.data);
    size_t decls = 0;
    for (const char *p = b.data; (p = strstr(p, " xmlns:")) != NULL; p++)
        decls++;
    assert_int_equal(decls, 100);

    xml_parser_opts_t o;
    memset(&o, 0, sizeof(o));
    xml_limits_default(&o.limits);
    o.limits.max_attrs = 400;
    cap_t c = {NULL, NULL, 0};
    xml_parser_t *p = xml_parser_new(&o, &CBS, &c);
    assert_non_null(p);
    assert_int_equal(xml_parser_feed(p, HDR, strlen(HDR)), XML_OK);
    assert_int_equal(xml_parser_feed(p, b.data, b.len), XML_OK);
    assert_non_null(c.el);
    assert_true(xml_node_equal(m, c.el->root));
    xml_parser_free(p);
    xml_tree_free(c.header);
    xml_tree_free(c.el);
    buf_free(&b);
    xml_tree_free(t);
}

static void test_serialize_open(void **state)
{
    (void)state;
    xml_tree_t *h = NULL;
    xml_tree_t *el = parse_in("<?xml version='1.0'?><stream:stream"
                              " xmlns='jabber:client' xmlns:stream=" STREAMS_Q
                              " to='example.com' from='a@example.com'"
                              " version='1.0' xml:lang='en' id='s&amp;1'>",
                              "<presence/>", &h);
    assert_non_null(h);
    buf_t b = BUF_INIT;
    assert_int_equal(xml_serialize_open(h->root, NULL, &b), 0);
    assert_non_null(b.data);
    const char *s = b.data;
    assert_true(strncmp(s, "<stream:stream", 14) == 0);
    assert_true(b.len > 2);
    assert_int_equal(s[b.len - 1], '>');
    assert_true(s[b.len - 2] != '/');
    assert_null(strstr(s, "</"));
    assert_non_null(strstr(s, "xmlns:stream="));
    assert_non_null(strstr(s, "http://etherx.jabber.org/streams"));
    assert_non_null(strstr(s, " xml:lang="));
    assert_non_null(strstr(s, " to="));
    assert_non_null(strstr(s, " version="));
    char *id = raw_attr_value(s, "id");
    assert_string_equal(id, "s&amp;1");
    free(id);
    assert_null(strstr(s, "<?"));

    /* It parses back as an equal header. */
    xml_tree_t *h2 = NULL;
    xml_tree_t *el2 = parse_in(s, "<presence/>", &h2);
    assert_non_null(h2);
    assert_true(xml_node_equal(h->root, h2->root));

    /* Only the start tag, even when the element has children. */
    xml_tree_t *t = tree_new();
    xml_node_t *m = el_new(t, NULL, XML_NS_CLIENT, "message");
    el_new(t, m, XML_NS_CLIENT, "body");
    buf_reset(&b);
    assert_int_equal(xml_serialize_open(m, XML_NS_CLIENT, &b), 0);
    assert_string_equal(b.data, "<message>");
    buf_reset(&b);
    assert_int_equal(xml_serialize_open(m, NULL, &b), 0);
    assert_xml(b.data, "<message xmlns='jabber:client'>");

    xml_tree_free(t);
    buf_free(&b);
    xml_tree_free(h);
    xml_tree_free(h2);
    xml_tree_free(el);
    xml_tree_free(el2);
}

/* ----------------------------------------------------------- round trip */

static const char *const CORPUS[] = {
    "<message to='romeo@example.net' type='chat' id='k1'>"
    "<body>Art thou not Romeo, and a Montague?</body>"
    "<thread>e0ffe42b28561960c6b12b944a092794b9683a38</thread></message>",
    "<message><body>h\xC3\xA9llo \xE2\x98\x83 \xF0\x9F\x98\x80</body>"
    "<subject>\xE4\xB8\xAD\xE6\x96\x87</subject></message>",
    "<message><body>&lt;&gt;&amp;&apos;&quot; a>b'c\"d</body></message>",
    "<message id=\"a'b\" to='c&quot;d&lt;&gt;&amp;'/>",
    "<message xml:lang='en'><body xml:lang='fr'>x</body></message>",
    "<message><body>&#x263A;&#60;&#62;&#38;</body></message>",
    "<message><body><![CDATA[<tag> & ]] > ]]></body></message>",
    "<message>\n  <body>ws</body>\n  <subject> </subject>\n</message>",
    "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    "<resource>balcony</resource></bind></iq>",
    "<iq type='result' id='r'><query xmlns='jabber:iq:roster' ver='v'>"
    "<item jid='a@b' name='&lt;&gt;&amp;&apos;&quot;' subscription='both'>"
    "<group>g1</group><group>g2</group></item></query></iq>",
    "<presence><show>away</show><status>Out</status><priority>-1</priority>"
    "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1'"
    " node='http://x' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>",
    "<presence><x xmlns=''/><y xmlns=''><z/></y></presence>",
    "<stream:features><starttls xmlns='" NS_TLS "'><required/></starttls>"
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    "<mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism>"
    "</mechanisms></stream:features>",
    "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
    "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>Replaced"
    "</text></stream:error>",
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
    "AGp1bGlldAByMG0zMG15cjBtMzA=</auth>",
    "<foo:bar xmlns:foo='urn:x' foo:a='1' b='2'><foo:baz foo:c='3'/><plain/>"
    "<other xmlns='urn:y'><foo:deep/><inner/></other></foo:bar>",
    "<message><x xmlns='jabber:x:data' type='form'><field var='a'>"
    "<value>1</value></field></x><body>t</body></message>",
    "<message><a xmlns:p='urn:p'><p:b p:x='1'/></a><p2:c xmlns:p2='urn:p'/>"
    "</message>",
    "<message xmlns:p='urn:p' p:x='1' x='2'/>",
    "<c:message xmlns:c='jabber:client'><c:body>x</c:body><body/>"
    "</c:message>",
    "<db:result xmlns:db='jabber:server:dialback' from='a' to='b'>key"
    "</db:result>",
    "<message><forwarded xmlns='urn:xmpp:forward:0'><message"
    " xmlns='jabber:client' to='x'><body>inner</body></message></forwarded>"
    "</message>",
    "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
    "<message><body></body></message>",
    "<presence/>",
};

static void test_roundtrip_corpus(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(CORPUS) / sizeof(CORPUS[0]); i++)
        roundtrip(CORPUS[i]);
}

static void test_roundtrip_large_and_deep(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    buf_append_str(&b, "<message><body>");
    for (int i = 0; i < 2000; i++)
        buf_append_str(&b, "t\xC3\xA9xt &amp; &lt;more&gt; ");
    buf_append_str(&b, "</body></message>");
    roundtrip(b.data);

    buf_reset(&b);
    for (int i = 0; i < 60; i++)
        buf_append_str(&b, i % 2 ? "<a xmlns='urn:a' x='1'>" : "<b>");
    for (int i = 59; i >= 0; i--)
        buf_append_str(&b, i % 2 ? "</a>" : "</b>");
    roundtrip(b.data);

    buf_reset(&b);
    buf_append_str(&b, "<iq type='result' id='1'><query xmlns='q'>");
    for (int i = 0; i < 500; i++)
        buf_append_str(&b, "<item jid='a@b' n='&quot;'/>");
    buf_append_str(&b, "</query></iq>");
    roundtrip(b.data);
    buf_free(&b);
}

/* Character references to white space survive a round trip only if the
 * serializer writes them back as references: a raw CR in text is read as
 * LF (XML 1.0 §2.11), and raw TAB, CR, LF in an attribute value are read
 * as spaces (§3.3.3). */
static void test_roundtrip_whitespace_references(void **state)
{
    (void)state;
    roundtrip("<message><body>a&#13;b&#xD;&#10;c</body></message>");
    roundtrip("<message id='a&#10;b&#13;c&#9;d'/>");
    roundtrip("<message><body>line1\nline2\tx</body></message>");

    /* The same with trees built by the API. */
    xml_tree_t *t = tree_new();
    xml_node_t *m = el_new(t, NULL, XML_NS_CLIENT, "message");
    set_attr(t, m, NULL, "id", "a\nb\rc\td");
    xml_node_t *b = el_new(t, m, XML_NS_CLIENT, "body");
    add_text(t, b, "x\r\ny\rz\n");
    roundtrip_built(m);
    xml_tree_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_new_free),
        cmocka_unit_test(test_element_new_links),
        cmocka_unit_test(test_attrs),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_is_child_next_count),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_escape_attr),
        cmocka_unit_test(test_serialize_header),
        cmocka_unit_test(test_serialize_many_namespaced_attrs),
        cmocka_unit_test(test_serialize_escaping),
        cmocka_unit_test(test_serialize_self_closing),
        cmocka_unit_test(test_serialize_namespaces),
        cmocka_unit_test(test_serialize_xml_lang),
        cmocka_unit_test(test_serialize_prefixes),
        cmocka_unit_test(test_serialize_open),
        cmocka_unit_test(test_roundtrip_corpus),
        cmocka_unit_test(test_roundtrip_large_and_deep),
        cmocka_unit_test(test_roundtrip_whitespace_references),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
