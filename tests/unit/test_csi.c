/* XEP-0352 for one session (server/c2s/csi.c): which stanzas an inactive
 * client gets at once, which wait and which are dropped, and how the
 * waiting ones collapse: the latest presence of each sender, the latest
 * state of each PEP item — never two different items into one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "c2s/csi.h"
#include "modules/module.h"

#define EV "http://jabber.org/protocol/pubsub#event"

static xml_tree_t *parse(const char *text)
{
    xml_tree_t *t = module_parse_doc(text, strlen(text));
    assert_non_null(t);
    return t;
}

static csi_class_t classify(const char *text)
{
    xml_tree_t *t = parse(text);
    csi_class_t c = csi_classify(t->root);
    xml_tree_free(t);
    return c;
}

static void hold(csi_t *c, const char *text)
{
    xml_tree_t *t = parse(text);
    rcbuf_t *b = rcbuf_new(text, strlen(text));
    csi_hold(c, t->root, b, true);
    rcbuf_unref(b);
    xml_tree_free(t);
}

/* The held stanzas' bytes, in order, joined by '|'. */
static void assert_held(csi_t *c, const char *want)
{
    size_t n;
    csi_entry_t *v = csi_take(c, &n);
    char got[2048] = "";
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            strcat(got, "|");
        strncat(got, rcbuf_data(v[i].bytes), rcbuf_len(v[i].bytes));
    }
    csi_entries_free(v, n);
    assert_string_equal(got, want);
}

static void test_classify(void **state)
{
    (void)state;
    assert_int_equal(classify("<presence xmlns='jabber:client' from='a@x/r'/>"),
                     CSI_HOLD);
    assert_int_equal(
        classify("<presence xmlns='jabber:client' type='subscribe'/>"),
        CSI_URGENT);
    assert_int_equal(classify("<message xmlns='jabber:client'><body>hi</body>"
                              "</message>"),
                     CSI_URGENT);
    assert_int_equal(
        classify("<message xmlns='jabber:client'><composing "
                 "xmlns='http://jabber.org/protocol/chatstates'/></message>"),
        CSI_DROP);
    assert_int_equal(classify("<message xmlns='jabber:client'><event xmlns='" EV
                              "'><items node='n'/></event></message>"),
                     CSI_HOLD);
    assert_int_equal(classify("<iq xmlns='jabber:client' type='get'/>"),
                     CSI_URGENT);
}

#define P(from, s)                                                             \
    "<presence xmlns='jabber:client' from='" from "'><status>" s               \
    "</status></presence>"
#define E(from, node, id, v)                                                   \
    "<message xmlns='jabber:client' from='" from "'><event xmlns='" EV         \
    "'><items node='" node "'><item id='" id "'>" v                            \
    "</item></items></event></message>"

static void test_collapse(void **state)
{
    (void)state;
    csi_t c = {.inactive = true};
    hold(&c, P("a@x/r", "1"));
    hold(&c, P("b@x/r", "1"));
    hold(&c, P("a@x/r", "2")); /* replaces a's 1, goes last */
    assert_held(&c, P("b@x/r", "1") "|" P("a@x/r", "2"));

    /* PEP: the same item of the same node of the same sender collapses;
     * another item (bookmarks: one per room), node or sender does not. */
    hold(&c, E("a@x", "urn:xmpp:avatar:metadata", "h1", "old"));
    hold(&c, E("a@x", "urn:xmpp:bookmarks:1", "room1@muc", "r1"));
    hold(&c, E("a@x", "urn:xmpp:bookmarks:1", "room2@muc", "r2"));
    hold(&c, E("b@x", "urn:xmpp:avatar:metadata", "h1", "b's"));
    hold(&c, E("a@x", "urn:xmpp:avatar:metadata", "h1", "new"));
    assert_held(&c,
                E("a@x", "urn:xmpp:bookmarks:1", "room1@muc", "r1") "|" E(
                    "a@x", "urn:xmpp:bookmarks:1", "room2@muc",
                    "r2") "|" E("b@x", "urn:xmpp:avatar:metadata", "h1",
                                "b's") "|" E("a@x", "urn:xmpp:avatar:metadata",
                                             "h1", "new"));

    /* A node and id that would read the same if simply joined are two
     * items; an event with two items is kept as it is. */
    hold(&c, E("a@x", "ab", "c", "1"));
    hold(&c, E("a@x", "a", "bc", "2"));
    const char *two = "<message xmlns='jabber:client' from='a@x'><event "
                      "xmlns='" EV "'><items node='ab'><item id='c'/>"
                      "<item id='d'/></items></event></message>";
    hold(&c, two);
    hold(&c, two);
    size_t n;
    csi_entry_t *v = csi_take(&c, &n);
    csi_entries_free(v, n);
    assert_int_equal(n, 4);
    csi_clear(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_collapse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
