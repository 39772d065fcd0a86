/* The router with fake targets (tests/unit/fake_target.c): every
 * addressing rule of router.c, with the IM rules of server/im that decide
 * delivery to bare JIDs (the registry holds the core module only). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "fake_target.h"
#include "modules/modules.h"

typedef struct env {
    const char *hosts[2];
    router_config_t cfg;
    logger_t log;
    module_registry_t *mods;
    router_t *r;
    fake_target_t a, b1, b2, b3;
} env_t;

static int setup_with(void **state, router_conflict_t conflict,
                      unsigned max_resources)
{
    env_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -1;
    /* The IM rules and the roster module (presence: availability and
     * priority), without a store. */
    const module_desc_t *im[] = {&module_im, &module_roster};
    char err[128];
    e->log.level = LOG_ERROR;
    e->mods = module_registry_new(im, 2, NULL, NULL, NULL, NULL, &e->log, err,
                                  sizeof(err));
    if (e->mods == NULL)
        return -1;
    e->hosts[0] = "localhost";
    e->hosts[1] = "example.org";
    e->cfg = (router_config_t){.hosts = e->hosts,
                               .host_count = 2,
                               .conflict = conflict,
                               .max_resources = max_resources,
                               .modules = e->mods};
    e->r = router_new(&e->cfg, &e->log);
    if (e->r == NULL)
        return -1;
    fake_init(&e->a, 1);
    fake_init(&e->b1, 2);
    fake_init(&e->b2, 3);
    fake_init(&e->b3, 4);
    *state = e;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, ROUTER_CONFLICT_NEW_WINS, 3);
}

static int setup_old_wins(void **state)
{
    return setup_with(state, ROUTER_CONFLICT_OLD_WINS, 3);
}

static int teardown(void **state)
{
    env_t *e = *state;
    fake_target_t *all[] = {&e->a, &e->b1, &e->b2, &e->b3};
    for (size_t i = 0; i < 4; i++) {
        router_unbind(e->r, &all[i]->t);
        fake_clear(all[i]);
        jid_clear(&all[i]->t.jid);
    }
    /* Every session unbound: nothing left in the registry. */
    assert_int_equal(router_session_count(e->r), 0);
    router_free(e->r);
    module_registry_free(e->mods);
    free(e);
    return 0;
}

/* alice/a, and bob with resources b1, b2, b3. */
static void bind_all(env_t *e)
{
    fake_bind(e->r, &e->a, "alice@localhost", "a");
    fake_bind(e->r, &e->b1, "bob@localhost", "b1");
    fake_bind(e->r, &e->b2, "bob@localhost", "b2");
    fake_bind(e->r, &e->b3, "bob@localhost", "b3");
    assert_int_equal(router_session_count(e->r), 4);
}

static void expect_error(const fake_target_t *f, size_t i, const char *cond,
                         const char *from)
{
    const xml_node_t *el = fake_got(f, i);
    assert_string_equal(fake_error(el), cond);
    assert_string_equal(fake_attr(el, "from"), from);
}

/* ------------------------------------------------------------- rules */

static void test_malformed_to(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_send(e->r, &e->a,
              "<message to='a@b@c' id='m'><body>x</body></message>");
    assert_int_equal(e->a.ngot, 1);
    /* RFC 6120 §8.3.3.8: from our domain, not the malformed address. */
    expect_error(&e->a, 0, "jid-malformed", "localhost");
    assert_string_equal(fake_attr(fake_got(&e->a, 0), "to"),
                        "alice@localhost/a");
    fake_send(e->r, &e->a,
              "<iq type='get' id='i' to='@x'><q xmlns='urn:t'/></iq>");
    expect_error(&e->a, 1, "jid-malformed", "localhost");
}

static void test_bad_iq(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_send(e->r, &e->a,
              "<iq type='get' to='localhost'><q xmlns='urn:t'/></iq>");
    fake_send(e->r, &e->a, "<iq id='1' type='fetch'><q xmlns='urn:t'/></iq>");
    fake_send(
        e->r, &e->a,
        "<iq id='2' type='get'><q xmlns='urn:t'/><q xmlns='urn:u'/></iq>");
    fake_send(e->r, &e->a, "<iq id='3' type='set'/>");
    fake_send(
        e->r, &e->a,
        "<iq id='4' type='result' to='bob@localhost/b1'><a xmlns='urn:a'/>"
        "<b xmlns='urn:b'/></iq>");
    assert_int_equal(e->a.ngot, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(fake_error(fake_got(&e->a, i)), "bad-request");
    assert_int_equal(e->b1.ngot, 0);
}

static void test_no_to_message(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_target_t a2;
    fake_init(&a2, 9);
    fake_bind(e->r, &a2, "alice@localhost", "a2");
    /* RFC 6120 §10.3.1: as if to the sender's bare JID; nobody available
     * yet: service-unavailable. */
    fake_send(e->r, &e->a, "<message type='chat'><body>x</body></message>");
    assert_int_equal(e->a.ngot, 1);
    expect_error(&e->a, 0, "service-unavailable", "localhost");
    fake_available(e->r, &a2, 1);
    fake_send(e->r, &e->a, "<message type='chat'><body>y</body></message>");
    assert_int_equal(a2.ngot, 1);
    assert_int_equal(e->a.ngot, 1);
    router_unbind(e->r, &a2.t);
    fake_clear(&a2);
    jid_clear(&a2.t.jid);
}

static void test_no_to_presence(void **state)
{
    env_t *e = *state;
    bind_all(e);
    e->b1.keep_presence = true;
    assert_false(e->b1.t.available);
    fake_available(e->r, &e->b1, 7);
    assert_true(e->b1.t.available);
    assert_int_equal(e->b1.t.priority, 7);
    /* RFC 6121 §4.7.2.3: out of range keeps 0. */
    fake_available(e->r, &e->b1, 300);
    assert_int_equal(e->b1.t.priority, 0);
    fake_send(e->r, &e->b1, "<presence><priority>-5</priority></presence>");
    assert_int_equal(e->b1.t.priority, -5);
    fake_send(e->r, &e->b1, "<presence type='unavailable'/>");
    assert_false(e->b1.t.available);
    /* RFC 6121 §4.2.2 / §4.5.2: each presence comes back to its sender
     * (with no contacts, to nobody else), 'to' its full JID. */
    assert_int_equal(e->b1.ngot, 4);
    static const char head[] = "<presence to='bob@localhost/b1'";
    for (size_t i = 0; i < 4; i++)
        assert_memory_equal(rcbuf_data(e->b1.bytes[i]), head, sizeof(head) - 1);
    assert_string_equal(fake_attr(fake_got(&e->b1, 3), "type"), "unavailable");
}

static void test_no_to_iq(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_send(e->r, &e->a,
              "<iq type='get' id='n1'><q xmlns='urn:none'><x/></q></iq>");
    assert_int_equal(e->a.ngot, 1);
    const xml_node_t *err = fake_got(&e->a, 0);
    assert_string_equal(fake_error(err), "service-unavailable");
    /* RFC 6120 §8.1.2.1: handled for the account, so no 'from'. */
    assert_null(xml_element_attr(err, NULL, "from"));
    assert_string_equal(fake_attr(err, "to"), "alice@localhost/a");
    assert_string_equal(fake_attr(err, "id"), "n1");
    assert_non_null(xml_element_child(err, "urn:none", "q"));
    /* Results and errors are consumed. */
    fake_send(e->r, &e->a, "<iq type='result' id='n2'/>");
    assert_int_equal(e->a.ngot, 1);
}

static void test_remote_domain(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_send(
        e->r, &e->a,
        "<message to='x@elsewhere.example' id='r'><body>x</body></message>");
    expect_error(&e->a, 0, "remote-server-not-found", "x@elsewhere.example");
    fake_send(e->r, &e->a, "<message type='error' to='x@elsewhere.example'/>");
    assert_int_equal(e->a.ngot, 1);
}

static void test_server_domain(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_send(
        e->r, &e->a,
        "<iq type='get' id='s1' to='example.org'><q xmlns='urn:none'/></iq>");
    expect_error(&e->a, 0, "service-unavailable", "example.org");
    assert_non_null(xml_element_child(fake_got(&e->a, 0), "urn:none", "q"));
    fake_send(e->r, &e->a, "<message to='localhost'><body>x</body></message>");
    expect_error(&e->a, 1, "service-unavailable", "localhost");
    /* domain/resource is the server too. */
    fake_send(
        e->r, &e->a,
        "<iq type='set' id='s2' to='localhost/x'><q xmlns='urn:none'/></iq>");
    expect_error(&e->a, 2, "service-unavailable", "localhost/x");
    /* Consumed: headline, groupchat, error messages; presence; results. */
    fake_send(e->r, &e->a, "<message type='headline' to='localhost'/>");
    fake_send(e->r, &e->a, "<message type='groupchat' to='localhost'/>");
    fake_send(e->r, &e->a, "<message type='error' to='localhost'/>");
    fake_send(e->r, &e->a, "<presence to='localhost'/>");
    fake_send(e->r, &e->a, "<iq type='result' id='s3' to='localhost'/>");
    assert_int_equal(e->a.ngot, 3);
}

static void test_bare_priorities(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_available(e->r, &e->b1, 1);
    fake_available(e->r, &e->b2, 5);
    fake_available(e->r, &e->b3, 5);
    /* RFC 6121 §8.5.2.1.1: the highest priority, all of them. */
    fake_send(
        e->r, &e->a,
        "<message type='chat' to='Bob@LocalHost'><body>x</body></message>");
    assert_int_equal(e->b1.ngot, 0);
    assert_int_equal(e->b2.ngot, 1);
    assert_int_equal(e->b3.ngot, 1);
    /* The prepared 'to' is what arrives. */
    assert_string_equal(fake_attr(fake_got(&e->b2, 0), "to"), "bob@localhost");
    assert_string_equal(fake_attr(fake_got(&e->b2, 0), "from"),
                        "alice@localhost/a");
    /* Normal is like chat. */
    fake_send(e->r, &e->a,
              "<message to='bob@localhost'><body>y</body></message>");
    assert_int_equal(e->b2.ngot, 2);
    assert_int_equal(e->b1.ngot, 0);
    assert_int_equal(e->a.ngot, 0);
}

static void test_bare_negative_priority(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_available(e->r, &e->b1, -1);
    fake_available(e->r, &e->b2, -128);
    /* §8.5.2.1.1: a negative priority never receives bare-JID messages;
     * with no other resource it is as if none were available. */
    fake_send(e->r, &e->a, "<message type='chat' to='bob@localhost' id='n'/>");
    assert_int_equal(e->b1.ngot + e->b2.ngot + e->b3.ngot, 0);
    expect_error(&e->a, 0, "service-unavailable", "bob@localhost");
    fake_available(e->r, &e->b3, 0);
    fake_send(e->r, &e->a, "<message type='chat' to='bob@localhost' id='n2'/>");
    assert_int_equal(e->b3.ngot, 1);
    assert_int_equal(e->b1.ngot + e->b2.ngot, 0);
}

static void test_bare_headline(void **state)
{
    env_t *e = *state;
    bind_all(e);
    /* §8.5.2.2.3: a headline to nobody available is dropped silently. */
    fake_send(e->r, &e->a, "<message type='headline' to='bob@localhost'/>");
    assert_int_equal(e->a.ngot, 0);
    fake_available(e->r, &e->b1, 0);
    fake_available(e->r, &e->b2, 3);
    fake_available(e->r, &e->b3, -1);
    /* §8.5.2.1.1: every non-negative resource. */
    fake_send(e->r, &e->a, "<message type='headline' to='bob@localhost'/>");
    assert_int_equal(e->b1.ngot, 1);
    assert_int_equal(e->b2.ngot, 1);
    assert_int_equal(e->b3.ngot, 0);
}

static void test_bare_groupchat_and_error(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_available(e->r, &e->b1, 0);
    /* §8.5.2.1.2 */
    fake_send(e->r, &e->a, "<message type='groupchat' to='bob@localhost'/>");
    expect_error(&e->a, 0, "service-unavailable", "bob@localhost");
    /* §8.5.2.1.4: errors are dropped. */
    fake_send(e->r, &e->a, "<message type='error' to='bob@localhost'/>");
    assert_int_equal(e->b1.ngot, 0);
    assert_int_equal(e->a.ngot, 1);
    /* Unknown account: like no resource. */
    fake_send(e->r, &e->a, "<message type='chat' to='nobody@localhost'/>");
    expect_error(&e->a, 1, "service-unavailable", "nobody@localhost");
}

static void test_bare_presence_and_iq(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_available(e->r, &e->b1, -3);
    e->b1.keep_presence = e->b2.keep_presence = true;
    /* Directed presence: every available resource, whatever its
     * priority. */
    fake_send(e->r, &e->a, "<presence to='bob@localhost'/>");
    assert_int_equal(e->b1.ngot, 1);
    assert_int_equal(e->b2.ngot, 0);
    /* RFC 6121 §3.1.3: a subscription request reaches the available
     * resources, from the requester's bare JID (§3.1.2). */
    fake_send(e->r, &e->a, "<presence type='subscribe' to='bob@localhost'/>");
    assert_int_equal(e->b1.ngot, 2);
    assert_int_equal(e->b2.ngot, 0);
    assert_string_equal(fake_attr(fake_got(&e->b1, 1), "from"),
                        "alice@localhost");
    assert_string_equal(fake_attr(fake_got(&e->b1, 1), "type"), "subscribe");
    /* §8.5.2.1.3: an IQ to a bare JID is the server's, for the account. */
    fake_send(
        e->r, &e->a,
        "<iq type='get' id='b' to='bob@localhost'><q xmlns='urn:none'/></iq>");
    assert_int_equal(e->b1.ngot, 2);
    expect_error(&e->a, 0, "service-unavailable", "bob@localhost");
    /* To one's own bare JID: from the bare JID (RFC 6120 §8.1.2.1). */
    fake_send(e->r, &e->a,
              "<iq type='get' id='o' to='alice@localhost'><q "
              "xmlns='urn:none'/></iq>");
    expect_error(&e->a, 1, "service-unavailable", "alice@localhost");
}

static void test_full_present(void **state)
{
    env_t *e = *state;
    bind_all(e);
    e->b2.keep_presence = true;
    /* §8.5.3.1: delivered whatever the availability and priority. */
    fake_send(e->r, &e->a, "<message type='groupchat' to='bob@localhost/b2'/>");
    fake_send(e->r, &e->a, "<presence to='bob@localhost/b2'/>");
    fake_send(
        e->r, &e->a,
        "<iq type='get' id='f' to='bob@localhost/b2'><q xmlns='urn:x'/></iq>");
    fake_send(e->r, &e->a, "<iq type='result' id='g' to='bob@localhost/b2'/>");
    assert_int_equal(e->b2.ngot, 4);
    assert_int_equal(e->b1.ngot + e->b3.ngot + e->a.ngot, 0);
    assert_string_equal(fake_attr(fake_got(&e->b2, 2), "from"),
                        "alice@localhost/a");
}

static void test_full_absent(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_available(e->r, &e->b1, 2);
    /* §8.5.3.2.1: a message goes to the bare JID's rules. */
    fake_send(e->r, &e->a, "<message type='chat' to='bob@localhost/gone'/>");
    assert_int_equal(e->b1.ngot, 1);
    /* ... but groupchat is an error. */
    fake_send(e->r, &e->a,
              "<message type='groupchat' to='bob@localhost/gone'/>");
    expect_error(&e->a, 0, "service-unavailable", "bob@localhost/gone");
    /* §8.5.3.2.2: IQ get/set: service-unavailable; result: consumed. */
    fake_send(e->r, &e->a,
              "<iq type='get' id='x' to='bob@localhost/gone'><q "
              "xmlns='urn:x'/></iq>");
    expect_error(&e->a, 1, "service-unavailable", "bob@localhost/gone");
    fake_send(e->r, &e->a,
              "<iq type='result' id='y' to='bob@localhost/gone'/>");
    /* §8.5.3.2.3: presence ignored. */
    fake_send(e->r, &e->a, "<presence to='bob@localhost/gone'/>");
    assert_int_equal(e->a.ngot, 2);
    assert_int_equal(e->b1.ngot, 1);
}

/* Serialize once: a headline to a bare JID with three available resources
 * is serialized one time, and the three connections queue the same
 * block. */
static void test_fanout_serialized_once(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_available(e->r, &e->b1, 0);
    fake_available(e->r, &e->b2, 0);
    fake_available(e->r, &e->b3, 5);
    unsigned long before = router_serializations(e->r);
    fake_send(e->r, &e->a,
              "<message type='headline' to='bob@localhost' id='h'>"
              "<body>news</body></message>");
    assert_int_equal(router_serializations(e->r) - before, 1);
    assert_int_equal(e->b1.ngot, 1);
    assert_int_equal(e->b2.ngot, 1);
    assert_int_equal(e->b3.ngot, 1);
    assert_ptr_equal(e->b1.bytes[0], e->b2.bytes[0]);
    assert_ptr_equal(e->b1.bytes[0], e->b3.bytes[0]);
    /* The three queues hold it; the router let go of its own reference. */
    assert_int_equal(rcbuf_refs(e->b1.bytes[0]), 3);
    assert_true(e->b1.shared[0] && e->b3.shared[0]);
    assert_non_null(strstr(rcbuf_data(e->b1.bytes[0]), "<body>news</body>"));
    assert_non_null(
        strstr(rcbuf_data(e->b1.bytes[0]), "from='alice@localhost/a'"));
    /* A chat message reaches only b3 (highest priority): not shared. */
    fake_send(e->r, &e->a, "<message type='chat' to='bob@localhost'/>");
    assert_int_equal(e->b3.ngot, 2);
    assert_false(e->b3.shared[1]);
    assert_int_equal(router_serializations(e->r) - before, 2);
}

/* A stanza handed back by a session that ended is routed again from the
 * server on behalf of its sender (issue: nothing queued is lost). */
static void test_requeue(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_available(e->r, &e->a, 0);
    fake_available(e->r, &e->b2, 1);
    /* b1 ended with a chat message for it still queued: another resource
     * takes it (§8.5.3.2.1), with alice's 'from' kept. */
    router_unbind(e->r, &e->b1.t);
    router_requeue(e->r, fake_parse("<message type='chat' id='m1' "
                                    "from='alice@localhost/a' "
                                    "to='bob@localhost/b1'><body>1</body>"
                                    "</message>"));
    assert_int_equal(e->b2.ngot, 1);
    assert_string_equal(fake_attr(fake_got(&e->b2, 0), "id"), "m1");
    assert_string_equal(fake_attr(fake_got(&e->b2, 0), "from"),
                        "alice@localhost/a");
    /* No resource of bob left: the sender gets service-unavailable. */
    router_unbind(e->r, &e->b2.t);
    router_unbind(e->r, &e->b3.t);
    router_requeue(e->r, fake_parse("<message type='chat' id='m2' "
                                    "from='alice@localhost/a' "
                                    "to='bob@localhost'/>"));
    assert_int_equal(e->a.ngot, 1);
    expect_error(&e->a, 0, "service-unavailable", "bob@localhost");
    assert_string_equal(fake_attr(fake_got(&e->a, 0), "id"), "m2");
    assert_string_equal(fake_attr(fake_got(&e->a, 0), "to"),
                        "alice@localhost/a");
    /* An IQ request gets its error too (§8.5.3.2.2). */
    router_requeue(e->r, fake_parse("<iq type='get' id='q1' "
                                    "from='alice@localhost/a' "
                                    "to='bob@localhost/b1'><query "
                                    "xmlns='urn:x'/></iq>"));
    assert_int_equal(e->a.ngot, 2);
    expect_error(&e->a, 1, "service-unavailable", "bob@localhost/b1");
    /* Dropped as the RFCs drop them: presence, errors, IQ results,
     * headlines to nobody. */
    router_requeue(e->r, fake_parse("<presence from='alice@localhost/a' "
                                    "to='bob@localhost/b1'/>"));
    router_requeue(e->r, fake_parse("<message type='error' id='e' "
                                    "from='alice@localhost/a' "
                                    "to='bob@localhost/b1'/>"));
    router_requeue(e->r, fake_parse("<iq type='result' id='r' "
                                    "from='alice@localhost/a' "
                                    "to='bob@localhost/b1'/>"));
    router_requeue(e->r, fake_parse("<message type='headline' "
                                    "from='alice@localhost/a' "
                                    "to='bob@localhost/b1'/>"));
    assert_int_equal(e->a.ngot, 2);
    /* The sender gone too: the error has nowhere to go and is dropped. */
    router_unbind(e->r, &e->a.t);
    router_requeue(e->r, fake_parse("<message type='chat' id='m3' "
                                    "from='alice@localhost/a' "
                                    "to='bob@localhost'/>"));
    assert_int_equal(e->a.ngot, 2);
    /* A message to one's own account (no 'to') goes back to that bare
     * JID. */
    fake_bind(e->r, &e->b1, "bob@localhost", "b1");
    fake_available(e->r, &e->b1, 0);
    router_requeue(e->r, fake_parse("<message type='chat' id='m4' "
                                    "from='bob@localhost/old'/>"));
    assert_int_equal(e->b1.ngot, 1);
    assert_string_equal(fake_attr(fake_got(&e->b1, 0), "to"), "bob@localhost");
}

static void test_conflict_new_wins(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_target_t n;
    fake_init(&n, 10);
    fake_bind(e->r, &n, "bob@localhost", "b1");
    /* RFC 6120 §7.7.2.2: the old session is unbound and kicked. */
    assert_string_equal(e->b1.kicked, "conflict");
    assert_null(e->b1.t.account);
    assert_int_equal(router_session_count(e->r), 4);
    fake_send(e->r, &e->a, "<message to='bob@localhost/b1'/>");
    assert_int_equal(n.ngot, 1);
    assert_int_equal(e->b1.ngot, 0);
    router_unbind(e->r, &n.t);
    fake_clear(&n);
    jid_clear(&n.t.jid);
}

static void test_conflict_old_wins(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_target_t n;
    fake_init(&n, 10);
    jid_t bob;
    assert_int_equal(jid_parse("bob@localhost", 13, 0, &bob), JID_OK);
    assert_string_equal(router_bind(e->r, &n.t, &bob, "b1"), "conflict");
    assert_string_equal(e->b1.kicked, "");
    assert_int_equal(router_session_count(e->r), 4);
    jid_clear(&bob);
    jid_clear(&n.t.jid);
}

static void test_max_resources(void **state)
{
    env_t *e = *state;
    bind_all(e); /* bob has 3 = max */
    fake_target_t n;
    fake_init(&n, 10);
    jid_t bob;
    assert_int_equal(jid_parse("bob@localhost", 13, 0, &bob), JID_OK);
    assert_string_equal(router_bind(e->r, &n.t, &bob, "b4"),
                        "resource-constraint");
    assert_string_equal(router_bind(e->r, &n.t, &bob, NULL),
                        "resource-constraint");
    /* Replacing an existing resource is not a new one. */
    assert_null(router_bind(e->r, &n.t, &bob, "b3"));
    assert_string_equal(e->b3.kicked, "conflict");
    /* A generated resource when there is room. */
    router_unbind(e->r, &e->b2.t);
    fake_target_t g;
    fake_init(&g, 11);
    assert_null(router_bind(e->r, &g.t, &bob, NULL));
    assert_true(strlen(g.t.jid.resource) > 0);
    assert_int_equal(router_session_count(e->r), 4);
    router_unbind(e->r, &n.t);
    router_unbind(e->r, &g.t);
    jid_clear(&n.t.jid);
    jid_clear(&g.t.jid);
    jid_clear(&bob);
}

static void test_find_and_resources(void **state)
{
    env_t *e = *state;
    bind_all(e);
    jid_t j;
    assert_int_equal(jid_parse("bob@localhost/b2", 16, 0, &j), JID_OK);
    assert_ptr_equal(router_find(e->r, &j), &e->b2.t);
    size_t n = 0;
    for (route_target_t *t = router_resources(e->r, &j); t != NULL;
         t = t->next_resource)
        n++;
    assert_int_equal(n, 3);
    jid_clear(&j);
    assert_int_equal(jid_parse("bob@localhost", 13, 0, &j), JID_OK);
    assert_null(router_find(e->r, &j));
    jid_clear(&j);
    assert_true(router_serves(e->r, "example.org"));
    assert_false(router_serves(e->r, "example.com"));
}

/* router_hold: a held session's stanzas wait, in order, until the last
 * hold is released; past 32 its input is paused; one that ends while held
 * has what it sent routed again, from the server. */
static void test_hold(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_available(e->r, &e->b1, 1);
    router_hold(e->r, &e->a.t);
    router_hold(e->r, &e->a.t);
    for (int i = 0; i < 40; i++) {
        char xml[96];
        snprintf(xml, sizeof(xml),
                 "<message type='chat' id='h%d' to='bob@localhost/b1'/>", i);
        fake_send(e->r, &e->a, xml);
    }
    assert_int_equal(e->b1.ngot, 0);
    assert_int_equal(e->a.paused, 1);
    assert_int_equal(e->a.t.held_count, 40);
    router_release(e->r, &e->a.t);
    assert_int_equal(e->b1.ngot, 0); /* one hold left */
    router_release(e->r, &e->a.t);
    assert_int_equal(e->a.paused, 0);
    assert_int_equal(e->a.t.held_count, 0);
    assert_int_equal(e->b1.ngot, 40);
    for (size_t i = 0; i < 40; i++) {
        char id[8];
        snprintf(id, sizeof(id), "h%zu", i);
        assert_string_equal(fake_attr(fake_got(&e->b1, i), "id"), id);
    }
    fake_clear(&e->b1);

    /* Ends while held: its holds go, what it queued is requeued from the
     * server (so it still reaches bob), and a late release is harmless. */
    router_hold(e->r, &e->a.t);
    fake_send(e->r, &e->a,
              "<message type='chat' id='late' to='bob@localhost'/>");
    assert_int_equal(e->b1.ngot, 0);
    router_unbind(e->r, &e->a.t);
    assert_int_equal(e->a.t.holds, 0);
    assert_int_equal(e->b1.ngot, 1);
    assert_string_equal(fake_attr(fake_got(&e->b1, 0), "id"), "late");
    router_release(e->r, &e->a.t);
}

/* router_write_begin: messages pass, anything else waits (with what comes
 * after it) until the writes end; past 256 under way messages wait too;
 * router_busy says so meanwhile. */
static void test_writes(void **state)
{
    env_t *e = *state;
    bind_all(e);
    fake_available(e->r, &e->b1, 1);
    router_write_begin(e->r, &e->a.t);
    assert_true(router_busy(&e->a.t));
    fake_send(e->r, &e->a,
              "<message type='chat' id='m1' to='bob@localhost/b1'/>");
    assert_int_equal(e->b1.ngot, 1);
    fake_send(
        e->r, &e->a,
        "<iq type='get' id='q1' to='bob@localhost/b1'><x xmlns='y'/></iq>");
    fake_send(e->r, &e->a,
              "<message type='chat' id='m2' to='bob@localhost/b1'/>");
    assert_int_equal(e->b1.ngot, 1); /* the IQ waits, and m2 behind it */
    assert_int_equal(e->a.t.held_count, 2);
    router_write_end(e->r, &e->a.t);
    assert_false(router_busy(&e->a.t));
    assert_int_equal(e->b1.ngot, 3);
    assert_string_equal(fake_attr(fake_got(&e->b1, 1), "id"), "q1");
    assert_string_equal(fake_attr(fake_got(&e->b1, 2), "id"), "m2");
    fake_clear(&e->b1);

    /* The bound: the 257th message waits until one write ends. */
    for (int i = 0; i < 256; i++)
        router_write_begin(e->r, &e->a.t);
    fake_send(e->r, &e->a,
              "<message type='chat' id='m3' to='bob@localhost/b1'/>");
    assert_int_equal(e->b1.ngot, 0);
    router_write_end(e->r, &e->a.t);
    assert_int_equal(e->b1.ngot, 1);
    /* Unbound with writes under way: they go, late ends are harmless. */
    router_unbind(e->r, &e->a.t);
    assert_false(router_busy(&e->a.t));
    router_write_end(e->r, &e->a.t);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_malformed_to),
        T(test_writes),
        T(test_bad_iq),
        T(test_no_to_message),
        T(test_no_to_presence),
        T(test_no_to_iq),
        T(test_remote_domain),
        T(test_server_domain),
        T(test_bare_priorities),
        T(test_bare_negative_priority),
        T(test_bare_headline),
        T(test_bare_groupchat_and_error),
        T(test_bare_presence_and_iq),
        T(test_full_present),
        T(test_full_absent),
        T(test_fanout_serialized_once),
        T(test_requeue),
        T(test_hold),
        T(test_conflict_new_wins),
        cmocka_unit_test_setup_teardown(test_conflict_old_wins, setup_old_wins,
                                        teardown),
        T(test_max_resources),
        T(test_find_and_resources),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
