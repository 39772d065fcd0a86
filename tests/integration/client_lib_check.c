/* client_lib_check: drives the public libstarling API against a running
 * starlingd (started by test_client_lib.py) and checks what an embedding
 * program would rely on:
 *
 *   1. two clients connect (STARTTLS, SCRAM, bind) and report their JIDs;
 *   2. a chat message with subject and thread arrives intact;
 *   3. an IQ to a client that does not handle it comes back
 *      service-unavailable (the library answers for it, RFC 6120 §8.4);
 *   4. an IQ the receiver answers arrives as a result;
 *   5. an IQ that nobody answers times out (STARLING_ERR_TIMEOUT);
 *   6. an IQ to the server in an unknown namespace: service-unavailable;
 *   7. directed presence with show/status arrives;
 *   8. both stay silent for 3 s, past the server's idle and ping timeouts
 *      (1 s each in the test): the library answers the server's XEP-0199
 *      pings, so both are still connected and a ping to the server works;
 *   9. a polite disconnect reports no error.
 *
 *   client_lib_check PORT CA_FILE  (passwords in ALICE_PW and BOB_PW)
 *
 * Exits 0 when every step passed; otherwise prints the failed step. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "starling/client.h"

typedef struct check {
    uv_loop_t *loop;
    starling_client_t *alice, *bob;
    char alice_jid[256], bob_jid[256];
    int step;
    int failures;
    int disconnected;
    bool bob_answers; /* bob answers urn:example:echo */
    uv_timer_t deadline;
    uv_timer_t idle;
} check_t;

static void next_step(check_t *k);

static void fail(check_t *k, const char *what)
{
    fprintf(stderr, "FAIL step %d: %s\n", k->step, what);
    k->failures++;
    uv_stop(k->loop);
}

static void pass(check_t *k, const char *what)
{
    fprintf(stderr, "ok   step %d: %s\n", k->step, what);
    k->step++;
    next_step(k);
}

static void on_connected(starling_client_t *c, const char *jid, void *ud)
{
    check_t *k = ud;
    snprintf(c == k->alice ? k->alice_jid : k->bob_jid, 256, "%s", jid);
    if (k->alice_jid[0] && k->bob_jid[0] && k->step == 1) {
        if (starling_client_mechanism(k->alice) == NULL ||
            strncmp(starling_client_mechanism(k->alice), "SCRAM-", 6) != 0)
            fail(k, "alice did not use SCRAM");
        else
            pass(k, "both connected");
    }
}

static void on_disconnected(starling_client_t *c, const starling_error_t *err,
                            void *ud)
{
    check_t *k = ud;
    if (k->step != 9) {
        fprintf(stderr, "unexpected disconnect of %s: %s\n",
                c == k->alice ? "alice" : "bob",
                err && err->description ? err->description : "(clean)");
        fail(k, "disconnected");
        return;
    }
    if (err != NULL) {
        fail(k, "the polite disconnect reported an error");
        return;
    }
    if (++k->disconnected == 2) {
        k->step++;
        uv_stop(k->loop);
    }
}

static void on_message(starling_client_t *c, const starling_message_t *m,
                       void *ud)
{
    check_t *k = ud;
    if (c != k->bob || k->step != 2)
        return;
    if (m->type == STARLING_MSG_CHAT && m->body &&
        strcmp(m->body, "hi <bob> & co") == 0 && m->subject &&
        strcmp(m->subject, "subj") == 0 && m->thread &&
        strcmp(m->thread, "t-1") == 0 && m->from &&
        strcmp(m->from, k->alice_jid) == 0)
        pass(k, "message with body, subject and thread");
    else
        fail(k, "message arrived changed");
}

static void on_presence(starling_client_t *c, const starling_presence_t *p,
                        void *ud)
{
    check_t *k = ud;
    if (c != k->bob || k->step != 7)
        return;
    if (p->type == STARLING_PRES_AVAILABLE && p->show &&
        strcmp(p->show, "away") == 0 && p->status &&
        strcmp(p->status, "lunch") == 0)
        pass(k, "directed presence");
    else
        fail(k, "presence arrived changed");
}

static bool on_iq(starling_client_t *c, const starling_stanza_t *iq, void *ud)
{
    check_t *k = ud;
    if (c != k->bob || !k->bob_answers)
        return false;
    if (starling_stanza_child_text(iq, "urn:example:echo", "echo") != NULL) {
        starling_iq_reply(c, iq, "<echo xmlns='urn:example:echo'>back</echo>",
                          NULL, NULL);
        return true;
    }
    if (starling_stanza_child_text(iq, "urn:example:silent", "q") != NULL)
        return true; /* claims it and never answers: the sender times out */
    return false;
}

static void iq_unhandled(starling_client_t *c, const starling_stanza_t *r,
                         const starling_error_t *e, void *ud)
{
    check_t *k = ud;
    (void)c;
    (void)r;
    if (e != NULL && e->kind == STARLING_ERR_STANZA && e->condition &&
        strcmp(e->condition, "service-unavailable") == 0)
        pass(k, "unhandled IQ answered service-unavailable");
    else
        fail(k, "unhandled IQ: no service-unavailable");
}

static void iq_echo(starling_client_t *c, const starling_stanza_t *r,
                    const starling_error_t *e, void *ud)
{
    check_t *k = ud;
    (void)c;
    const char *txt =
        r != NULL ? starling_stanza_child_text(r, "urn:example:echo", "echo")
                  : NULL;
    if (e == NULL && txt != NULL && strcmp(txt, "back") == 0 &&
        strcmp(starling_stanza_attr(r, "type"), "result") == 0)
        pass(k, "IQ result from the receiver");
    else
        fail(k, "IQ result missing");
}

static void iq_timeout(starling_client_t *c, const starling_stanza_t *r,
                       const starling_error_t *e, void *ud)
{
    check_t *k = ud;
    (void)c;
    (void)r;
    if (e != NULL && e->kind == STARLING_ERR_TIMEOUT)
        pass(k, "unanswered IQ times out");
    else
        fail(k, "no timeout");
}

static void iq_server(starling_client_t *c, const starling_stanza_t *r,
                      const starling_error_t *e, void *ud)
{
    check_t *k = ud;
    (void)c;
    (void)r;
    if (e != NULL && e->condition &&
        strcmp(e->condition, "service-unavailable") == 0)
        pass(k, "server: unknown namespace is service-unavailable");
    else
        fail(k, "server IQ");
}

static void iq_ping(starling_client_t *c, const starling_stanza_t *r,
                    const starling_error_t *e, void *ud)
{
    check_t *k = ud;
    (void)c;
    if (e == NULL && r != NULL &&
        strcmp(starling_stanza_attr(r, "type"), "result") == 0)
        pass(k, "still connected after 3 s of silence (pings answered)");
    else
        fail(k, "ping to the server after the silence");
}

static void after_idle(uv_timer_t *t)
{
    check_t *k = t->data;
    if (starling_iq_send(k->alice, NULL, false, "<ping xmlns='urn:xmpp:ping'/>",
                         0, iq_ping, k) < 0)
        fail(k, "iq_send after the silence");
}

static void next_step(check_t *k)
{
    switch (k->step) {
    case 2:
        if (starling_send_message(k->alice, k->bob_jid, STARLING_MSG_CHAT,
                                  "hi <bob> & co", "subj", "t-1") < 0)
            fail(k, "send_message");
        break;
    case 3:
        if (starling_iq_send(k->alice, k->bob_jid, false,
                             "<query xmlns='urn:example:unknown'/>", 0,
                             iq_unhandled, k) < 0)
            fail(k, "iq_send");
        break;
    case 4:
        k->bob_answers = true;
        if (starling_iq_send(k->alice, k->bob_jid, true,
                             "<echo xmlns='urn:example:echo'>ping</echo>", 0,
                             iq_echo, k) < 0)
            fail(k, "iq_send");
        break;
    case 5:
        if (starling_iq_send(k->alice, k->bob_jid, false,
                             "<q xmlns='urn:example:silent'/>", 300, iq_timeout,
                             k) < 0)
            fail(k, "iq_send");
        break;
    case 6:
        if (starling_iq_send(k->alice, NULL, false,
                             "<query xmlns='urn:example:nobody'/>", 0,
                             iq_server, k) < 0)
            fail(k, "iq_send");
        break;
    case 7:
        if (starling_send_presence(k->alice, k->bob_jid,
                                   STARLING_PRES_AVAILABLE, "away", "lunch",
                                   0) < 0)
            fail(k, "send_presence");
        break;
    case 8:
        uv_timer_start(&k->idle, after_idle, 3000, 0);
        break;
    case 9:
        starling_client_disconnect(k->alice);
        starling_client_disconnect(k->bob);
        break;
    default:
        break;
    }
}

static void on_deadline(uv_timer_t *t)
{
    check_t *k = t->data;
    fail(k, "timed out");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: client_lib_check PORT CA_FILE\n");
        return 2;
    }
    /* As include/starling/client.h asks of every program: at the polite
     * disconnect the server may still be writing (alice's unavailable
     * presence to bob, RFC 6121 §4.6.3) as bob's connection closes. */
    signal(SIGPIPE, SIG_IGN);
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%s", argv[1]);
    check_t k;
    memset(&k, 0, sizeof(k));
    k.loop = uv_default_loop();
    k.step = 1;
    starling_client_events_t ev = {.connected = on_connected,
                                   .disconnected = on_disconnected,
                                   .message = on_message,
                                   .presence = on_presence,
                                   .iq = on_iq};
    starling_client_opts_t o = {.server = server, .ca_file = argv[2]};
    starling_error_t err;
    o.jid = "alice@localhost/lib";
    o.password = getenv("ALICE_PW");
    k.alice = starling_client_new(k.loop, &o, &ev, &k, &err);
    o.jid = "bob@localhost/lib";
    o.password = getenv("BOB_PW");
    k.bob = starling_client_new(k.loop, &o, &ev, &k, &err);
    if (k.alice == NULL || k.bob == NULL) {
        fprintf(stderr, "client_new: %s\n", err.description);
        return 1;
    }
    uv_timer_init(k.loop, &k.deadline);
    k.deadline.data = &k;
    uv_timer_init(k.loop, &k.idle);
    k.idle.data = &k;
    uv_timer_start(&k.deadline, on_deadline, 20000, 0);
    starling_client_connect(k.alice);
    starling_client_connect(k.bob);
    uv_run(k.loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&k.deadline, NULL);
    uv_close((uv_handle_t *)&k.idle, NULL);
    starling_client_free(k.alice);
    starling_client_free(k.bob);
    uv_run(k.loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(k.loop);
    if (rc != 0) {
        fprintf(stderr, "FAIL: handles left open on the loop\n");
        return 1;
    }
    if (k.failures == 0 && k.step == 10) {
        fprintf(stderr, "all steps passed\n");
        return 0;
    }
    fprintf(stderr, "FAIL: stopped at step %d\n", k.step);
    return 1;
}
