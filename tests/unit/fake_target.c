#include "fake_target.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "stream/stream.h"

/* Keeps a copy of the tree and a reference to the shared bytes, as a
 * connection's queue would. */
static bool fake_deliver(route_target_t *t, route_stanza_t *st)
{
    fake_target_t *f = (fake_target_t *)(void *)t;
    if (!f->keep_presence && strcmp(st->el->name, "presence") == 0)
        return true;
    assert_true(f->ngot < FAKE_MAX_GOT);
    xml_tree_t *copy = xml_tree_new();
    assert_non_null(copy);
    assert_non_null(xml_node_copy(copy, NULL, st->el));
    f->bytes[f->ngot] = rcbuf_ref(route_stanza_bytes(st));
    f->shared[f->ngot] = st->shared;
    f->got[f->ngot++] = copy;
    return true;
}

static void fake_kick(route_target_t *t, const char *condition)
{
    fake_target_t *f = (fake_target_t *)(void *)t;
    snprintf(f->kicked, sizeof(f->kicked), "%s", condition);
}

static void fake_pause(route_target_t *t, bool paused)
{
    fake_target_t *f = (fake_target_t *)(void *)t;
    f->paused += paused ? 1 : -1;
}

static const route_target_ops_t fake_ops = {
    .deliver = fake_deliver, .kick = fake_kick, .pause = fake_pause};

void fake_init(fake_target_t *f, unsigned long conn)
{
    memset(f, 0, sizeof(*f));
    f->t.ops = &fake_ops;
    f->t.conn = conn;
}

void fake_clear(fake_target_t *f)
{
    for (size_t i = 0; i < f->ngot; i++) {
        xml_tree_free(f->got[i]);
        rcbuf_unref(f->bytes[i]);
    }
    f->ngot = 0;
}

const xml_node_t *fake_got(const fake_target_t *f, size_t i)
{
    if (i >= f->ngot)
        fail_msg("stanza %zu asked for, %zu received", i, f->ngot);
    return f->got[i]->root;
}

void fake_bind(router_t *r, fake_target_t *f, const char *user,
               const char *resource)
{
    jid_t u;
    assert_int_equal(jid_parse(user, strlen(user), 0, &u), JID_OK);
    const char *cond = router_bind(r, &f->t, &u, resource);
    if (cond != NULL)
        fail_msg("bind %s/%s: %s", user, resource ? resource : "", cond);
    jid_clear(&u);
}

typedef struct cap {
    xml_tree_t *el;
    int n;
} cap_t;

static void cb_start(void *ud, xml_tree_t *header)
{
    (void)ud;
    xml_tree_free(header);
}

static void cb_element(void *ud, xml_tree_t *el)
{
    cap_t *c = ud;
    c->n++;
    if (c->el == NULL)
        c->el = el;
    else
        xml_tree_free(el);
}

static void cb_end(void *ud)
{
    (void)ud;
}

xml_tree_t *fake_parse(const char *xml)
{
    static const xml_parser_cbs_t cbs = {cb_start, cb_element, cb_end};
    static const char hdr[] =
        "<stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    cap_t c = {NULL, 0};
    xml_parser_t *p = xml_parser_new(NULL, &cbs, &c);
    assert_non_null(p);
    int rc = xml_parser_feed(p, hdr, strlen(hdr));
    if (rc == XML_OK)
        rc = xml_parser_feed(p, xml, strlen(xml));
    xml_parser_free(p);
    if (rc != XML_OK || c.n != 1)
        fail_msg("cannot parse %s (rc %d, %d elements)", xml, rc, c.n);
    return c.el;
}

void fake_send(router_t *r, fake_target_t *f, const char *xml)
{
    xml_tree_t *t = fake_parse(xml);
    char full[JID_FORMAT_BUF];
    assert_true(jid_format(&f->t.jid, false, full, sizeof(full)) >= 0);
    assert_int_equal(xml_element_set_attr(t, t->root, NULL, "from", full), 0);
    router_route(r, &f->t, t);
}

void fake_available(router_t *r, fake_target_t *f, int priority)
{
    char xml[96];
    snprintf(xml, sizeof(xml), "<presence><priority>%d</priority></presence>",
             priority);
    fake_send(r, f, xml);
}

const char *fake_error(const xml_node_t *el)
{
    const char *type = xml_element_attr(el, NULL, "type");
    if (type == NULL || strcmp(type, "error") != 0)
        return "";
    const xml_node_t *err = xml_element_child(el, NULL, "error");
    if (err == NULL)
        return "";
    const xml_node_t *c = xml_element_child(err, STREAM_NS_STANZAS, NULL);
    return c != NULL ? c->name : "";
}

const char *fake_attr(const xml_node_t *el, const char *name)
{
    const char *v = xml_element_attr(el, NULL, name);
    return v != NULL ? v : "";
}
