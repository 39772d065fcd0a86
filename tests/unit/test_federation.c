/* The router's federation path and the IM rules across servers, with a
 * fake remote (what server/s2s would send) and fake local sessions
 * (tests/unit/fake_target.c): stanzas for other domains go to the remote
 * with a 'from' of ours; stanzas from other servers reach local users, and
 * what the server answers goes back to the sender's server; rosters,
 * subscriptions, probes and presence broadcasts cross the boundary as RFC
 * 6121 says (§3.1, §4.2, §4.3). No store: rosters live in memory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "fake_target.h"
#include "modules/modules.h"
#include "s2s/s2s.h"

enum { REMOTE_MAX = 64 };

typedef struct env {
    const char *hosts[1];
    router_config_t cfg;
    logger_t log;
    module_registry_t *mods;
    router_t *r;
    router_remote_t remote;
    xml_tree_t *sent[REMOTE_MAX]; /* what went to other servers */
    char domain[REMOTE_MAX][64];
    size_t nsent;
    fake_target_t a;
} env_t;

static void remote_send(void *ud, xml_tree_t *tree, const char *domain)
{
    env_t *e = ud;
    assert_true(e->nsent < REMOTE_MAX);
    strncpy(e->domain[e->nsent], domain, sizeof(e->domain[0]) - 1);
    e->sent[e->nsent++] = tree;
}

static void sent_clear(env_t *e)
{
    for (size_t i = 0; i < e->nsent; i++)
        xml_tree_free(e->sent[i]);
    e->nsent = 0;
}

static const xml_node_t *sent(const env_t *e, size_t i)
{
    if (i >= e->nsent)
        fail_msg("remote stanza %zu asked for, %zu sent", i, e->nsent);
    return e->sent[i]->root;
}

static int setup(void **state)
{
    env_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -1;
    size_t n;
    const module_desc_t *const *all = modules_all(&n);
    bool on[64] = {0};
    for (size_t i = 0; i < n && i < 64; i++)
        on[i] = true;
    char err[128];
    e->log.level = LOG_ERROR;
    e->mods = module_registry_new(all, n, on, NULL, NULL, NULL, &e->log, err,
                                  sizeof(err));
    if (e->mods == NULL)
        return -1;
    e->hosts[0] = "localhost";
    e->cfg = (router_config_t){.hosts = e->hosts,
                               .host_count = 1,
                               .conflict = ROUTER_CONFLICT_NEW_WINS,
                               .max_resources = 8,
                               .modules = e->mods};
    e->r = router_new(&e->cfg, &e->log);
    if (e->r == NULL)
        return -1;
    e->remote = (router_remote_t){remote_send, e};
    router_set_remote(e->r, &e->remote);
    fake_init(&e->a, 1);
    e->a.keep_presence = true;
    fake_bind(e->r, &e->a, "alice@localhost", "phone");
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env_t *e = *state;
    router_unbind(e->r, &e->a.t);
    fake_clear(&e->a);
    jid_clear(&e->a.t.jid);
    sent_clear(e);
    router_free(e->r);
    module_registry_free(e->mods);
    free(e);
    return 0;
}

/* A stanza from another server, as server/s2s hands it over. */
static void from_remote(env_t *e, const char *xml)
{
    router_route_remote(e->r, fake_parse(xml));
}

/* The roster item of `jid` in the i-th stanza (a push or a result). */
static const xml_node_t *push_item(const xml_node_t *iq)
{
    const xml_node_t *q = xml_element_child(iq, "jabber:iq:roster", "query");
    assert_non_null(q);
    const xml_node_t *it = xml_element_child(q, "jabber:iq:roster", "item");
    assert_non_null(it);
    return it;
}

static void test_message_out(void **state)
{
    env_t *e = *state;
    fake_send(e->r, &e->a,
              "<message to='bob@Remote.Example' type='chat' id='m1'>"
              "<body>hi</body></message>");
    assert_int_equal(e->nsent, 1);
    assert_string_equal(e->domain[0], "remote.example");
    assert_string_equal(fake_attr(sent(e, 0), "from"), "alice@localhost/phone");
    assert_string_equal(fake_attr(sent(e, 0), "to"), "bob@remote.example");
    assert_int_equal(e->a.ngot, 0);
}

static void test_federation_off(void **state)
{
    env_t *e = *state;
    router_set_remote(e->r, NULL);
    fake_send(e->r, &e->a, "<message to='bob@remote.example' id='m1'/>");
    assert_int_equal(e->nsent, 0);
    assert_int_equal(e->a.ngot, 1);
    assert_string_equal(fake_error(fake_got(&e->a, 0)),
                        "remote-server-not-found");
}

static void test_message_in(void **state)
{
    env_t *e = *state;
    fake_available(e->r, &e->a, 0);
    fake_clear(&e->a);
    from_remote(e, "<message from='bob@remote.example/x' to='alice@localhost'"
                   " type='chat'><body>hello</body></message>");
    assert_int_equal(e->a.ngot, 1);
    assert_string_equal(fake_got(&e->a, 0)->name, "message");
    assert_string_equal(fake_attr(fake_got(&e->a, 0), "from"),
                        "bob@remote.example/x");
    assert_int_equal(e->nsent, 0);
}

/* An error for a remote sender goes back to its server, from our side. */
static void test_error_back(void **state)
{
    env_t *e = *state;
    from_remote(e, "<message from='bob@remote.example/x' to='alice@localhost'"
                   " type='groupchat' id='g'><body>x</body></message>");
    assert_int_equal(e->nsent, 1);
    assert_string_equal(e->domain[0], "remote.example");
    assert_string_equal(fake_error(sent(e, 0)), "service-unavailable");
    assert_string_equal(fake_attr(sent(e, 0), "to"), "bob@remote.example/x");
    assert_string_equal(fake_attr(sent(e, 0), "from"), "alice@localhost");
}

/* XEP-0199 to the server from another server: the result carries our
 * domain as 'from' and goes back. */
static void test_iq_to_server(void **state)
{
    env_t *e = *state;
    from_remote(e, "<iq from='remote.example' to='localhost' type='get'"
                   " id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert_int_equal(e->nsent, 1);
    assert_string_equal(fake_attr(sent(e, 0), "type"), "result");
    assert_string_equal(fake_attr(sent(e, 0), "id"), "p1");
    assert_string_equal(fake_attr(sent(e, 0), "to"), "remote.example");
    assert_string_equal(fake_attr(sent(e, 0), "from"), "localhost");
}

/* A server never relays: a remote stanza for another remote domain, or
 * claiming to come from us, is dropped. */
static void test_no_relay(void **state)
{
    env_t *e = *state;
    from_remote(e, "<message from='bob@remote.example' to='carol@third.example'"
                   " id='r'><body>x</body></message>");
    from_remote(e, "<message from='eve@localhost' to='alice@localhost'"
                   " id='r'><body>x</body></message>");
    assert_int_equal(e->nsent, 0);
    assert_int_equal(e->a.ngot, 0);
}

/* RFC 6121 §3.1.2 outbound to a remote contact, §3.1.5 its approval
 * coming back: the roster goes none+ask → to, with pushes. */
static void test_subscribe_remote(void **state)
{
    env_t *e = *state;
    fake_send(e->r, &e->a,
              "<iq type='get' id='r1'>"
              "<query xmlns='jabber:iq:roster'/></iq>");
    fake_clear(&e->a);
    fake_send(e->r, &e->a,
              "<presence to='bob@remote.example/x' type='subscribe'/>");
    assert_int_equal(e->nsent, 1);
    assert_string_equal(fake_attr(sent(e, 0), "type"), "subscribe");
    assert_string_equal(fake_attr(sent(e, 0), "from"), "alice@localhost");
    assert_string_equal(fake_attr(sent(e, 0), "to"), "bob@remote.example");
    assert_int_equal(e->a.ngot, 1); /* the push */
    const xml_node_t *it = push_item(fake_got(&e->a, 0));
    assert_string_equal(fake_attr(it, "jid"), "bob@remote.example");
    assert_string_equal(fake_attr(it, "subscription"), "none");
    assert_string_equal(fake_attr(it, "ask"), "subscribe");
    fake_clear(&e->a);
    sent_clear(e);

    from_remote(e, "<presence from='bob@remote.example'"
                   " to='alice@localhost' type='subscribed'/>");
    assert_int_equal(e->nsent, 0);
    /* A push; the subscribed is not delivered to an unavailable session
     * but the push is (it asked for the roster). */
    assert_true(e->a.ngot >= 1);
    it = push_item(fake_got(&e->a, 0));
    assert_string_equal(fake_attr(it, "subscription"), "to");
    assert_string_equal(fake_attr(it, "ask"), "");
    fake_clear(&e->a);

    /* Initial presence probes the remote contact from the bare JID. */
    fake_available(e->r, &e->a, 1);
    assert_int_equal(e->nsent, 1);
    assert_string_equal(fake_attr(sent(e, 0), "type"), "probe");
    assert_string_equal(fake_attr(sent(e, 0), "from"), "alice@localhost");
    assert_string_equal(fake_attr(sent(e, 0), "to"), "bob@remote.example");
}

/* RFC 6121 §3.1.3 inbound from a remote user, approved by the local user:
 * the approval goes back, then her presence (§3.1.5), later broadcasts
 * too, and a probe from that contact is answered. */
static void test_subscribed_by_remote(void **state)
{
    env_t *e = *state;
    fake_available(e->r, &e->a, 0);
    fake_clear(&e->a);
    from_remote(e, "<presence from='bob@remote.example/x'"
                   " to='alice@localhost' type='subscribe'/>");
    assert_int_equal(e->a.ngot, 1);
    assert_string_equal(fake_attr(fake_got(&e->a, 0), "type"), "subscribe");
    assert_string_equal(fake_attr(fake_got(&e->a, 0), "from"),
                        "bob@remote.example");
    fake_clear(&e->a);
    assert_int_equal(e->nsent, 0);

    fake_send(e->r, &e->a,
              "<presence to='bob@remote.example' type='subscribed'/>");
    assert_true(e->nsent >= 2);
    assert_string_equal(fake_attr(sent(e, 0), "type"), "subscribed");
    assert_string_equal(fake_attr(sent(e, 0), "from"), "alice@localhost");
    /* §3.1.5: then the user's current presence. */
    assert_string_equal(sent(e, 1)->name, "presence");
    assert_string_equal(fake_attr(sent(e, 1), "type"), "");
    assert_string_equal(fake_attr(sent(e, 1), "from"), "alice@localhost/phone");
    assert_string_equal(fake_attr(sent(e, 1), "to"), "bob@remote.example");
    sent_clear(e);

    /* A presence update is broadcast to the remote contact. */
    fake_send(e->r, &e->a, "<presence><show>away</show></presence>");
    assert_int_equal(e->nsent, 1);
    assert_string_equal(fake_attr(sent(e, 0), "to"), "bob@remote.example");
    assert_non_null(xml_element_child(sent(e, 0), NULL, "show"));
    sent_clear(e);

    /* A probe from the contact is answered with that presence. */
    from_remote(e, "<presence from='bob@remote.example' to='alice@localhost'"
                   " type='probe'/>");
    assert_int_equal(e->nsent, 1);
    assert_string_equal(fake_attr(sent(e, 0), "from"), "alice@localhost/phone");
    assert_string_equal(fake_attr(sent(e, 0), "to"), "bob@remote.example");
    assert_string_equal(fake_attr(sent(e, 0), "type"), "");
    sent_clear(e);

    /* Going offline: unavailable to the contact. */
    fake_send(e->r, &e->a, "<presence type='unavailable'/>");
    assert_int_equal(e->nsent, 1);
    assert_string_equal(fake_attr(sent(e, 0), "type"), "unavailable");
    assert_string_equal(fake_attr(sent(e, 0), "to"), "bob@remote.example");
}

/* §4.3.2: a probe from someone without a subscription reveals nothing. */
static void test_probe_unsubscribed(void **state)
{
    env_t *e = *state;
    fake_available(e->r, &e->a, 0);
    sent_clear(e);
    from_remote(e, "<presence from='eve@remote.example' to='alice@localhost'"
                   " type='probe'/>");
    assert_int_equal(e->nsent, 1);
    assert_string_equal(fake_attr(sent(e, 0), "type"), "unsubscribed");
    assert_string_equal(fake_attr(sent(e, 0), "from"), "alice@localhost");
    assert_string_equal(fake_attr(sent(e, 0), "to"), "eve@remote.example");
}

/* §4.6: directed presence to a remote JID goes there and is undone with
 * unavailable presence when the session goes away. */
static void test_directed_remote(void **state)
{
    env_t *e = *state;
    fake_available(e->r, &e->a, 0);
    sent_clear(e);
    fake_send(e->r, &e->a, "<presence to='room@muc.remote.example/nick'/>");
    assert_int_equal(e->nsent, 1);
    assert_string_equal(e->domain[0], "muc.remote.example");
    sent_clear(e);
    fake_send(e->r, &e->a, "<presence type='unavailable'/>");
    assert_int_equal(e->nsent, 1);
    assert_string_equal(fake_attr(sent(e, 0), "type"), "unavailable");
    assert_string_equal(fake_attr(sent(e, 0), "to"),
                        "room@muc.remote.example/nick");
}

/* XEP-0185 §3, the worked example. */
static void test_dialback_key(void **state)
{
    (void)state;
    static const char secret[] = "s3cr3tf0rd14lb4ck";
    char key[65];
    s2s_dialback_key((const unsigned char *)secret, sizeof(secret) - 1,
                     "xmpp.example.com", "example.org", "D60000229F", key);
    assert_string_equal(
        key,
        "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643");
    s2s_dialback_key((const unsigned char *)secret, sizeof(secret) - 1,
                     "xmpp.example.com", "example.org", "D60000229G", key);
    assert_string_not_equal(
        key,
        "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_message_out),
        T(test_federation_off),
        T(test_message_in),
        T(test_error_back),
        T(test_iq_to_server),
        T(test_no_relay),
        T(test_subscribe_remote),
        T(test_subscribed_by_remote),
        T(test_probe_unsubscribed),
        T(test_directed_remote),
        cmocka_unit_test(test_dialback_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
