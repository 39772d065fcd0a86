/* client_reconnect_check: libstarling's `reconnect` option (RFC 6120 §3.3)
 * against a running starlingd (started by test_client_reconnect.py), using
 * only the public API of include/starling/client.h.
 *
 * Three clients: A = alice@localhost/r with reconnect, B = the same full
 * JID without it, C = bob@localhost/rc. The server's conflict policy is
 * "new wins" (RFC 6120 §7.7.2.2).
 *
 *   1. A and C connect; A sends initial presence (status "back") and
 *      round-trips an IQ to the server, so the presence has been handled.
 *   2. C sends a message to the bare JID alice@localhost and A receives it.
 *      (A bare-JID message goes only to resources that sent available
 *      presence — RFC 6121 §8.5.2.1.1 — so this is what proves presence
 *      below.)
 *   3. B connects as alice@localhost/r and the server kicks A with a
 *      `conflict` stream error. A reports no `disconnected`: after a
 *      backoff (0.5-1.5 s for the first retry) it reconnects by itself,
 *      `connected` fires a second time, with the same full JID, and its
 *      re-bind of resource "r" kicks B, whose `disconnected` reports
 *      STARLING_ERR_STREAM "conflict".
 *   4. A round-trips an IQ again; C's second bare-JID message reaches A:
 *      A re-sent its available presence on the new stream without being
 *      asked (had it not, C would get service-unavailable back).
 *   5. A, on the new stream, sends a message to C's full JID; C gets it.
 *   6. B connects again and kicks A again; while A waits to reconnect,
 *      starling_client_disconnect(A): `disconnected` follows with err NULL
 *      (client.h) and A does not come back (B stays connected for 2.5 s,
 *      longer than the first backoff).
 *   7. B and C disconnect politely (err NULL); no handle is left.
 *
 *   client_reconnect_check PORT CA_FILE  (passwords in ALICE_PW, BOB_PW)
 *
 * Exits 0 when every step passed; otherwise prints the failed step. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "starling/client.h"

#define A_JID "alice@localhost/r"

typedef struct check {
    uv_loop_t *loop;
    starling_client_t *a, *b, *c;
    char c_jid[256];
    int step;
    int failures;
    int a_connected; /* how many times A's `connected` fired */
    bool c_connected;
    bool b_connected, b_kicked;
    uint64_t b_connected_at, a_reconnected_at;
    bool a_stopped;   /* step 6: A's `disconnected` arrived */
    int phase;        /* step 6: see on_wait() */
    int disconnected; /* polite disconnects seen in step 7 */
    uv_timer_t deadline;
    uv_timer_t wait; /* step 6: pauses */
} check_t;

static void next_step(check_t *k);
static void on_wait(uv_timer_t *t);

static const char *who(const check_t *k, const starling_client_t *c)
{
    return c == k->a ? "A" : c == k->b ? "B" : "C";
}

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

/* Step 3 is done when A is back and B has been kicked, in either order. */
static void maybe_reconnected(check_t *k)
{
    if (k->step != 3 || k->a_connected != 2 || !k->b_kicked)
        return;
    const char *jid = starling_client_jid(k->a);
    uint64_t delay = k->a_reconnected_at - k->b_connected_at;
    fprintf(stderr, "     A reconnected %llu ms after B bound\n",
            (unsigned long long)delay);
    if (jid == NULL || strcmp(jid, A_JID) != 0)
        fail(k, "A is not alice@localhost/r after reconnecting");
    else if (starling_client_mechanism(k->a) == NULL)
        fail(k, "A has no SASL mechanism after reconnecting");
    else if (delay < 250)
        fail(k, "A reconnected without backing off");
    else if (delay > 6000)
        fail(k, "A took too long to reconnect");
    else
        pass(k, "A was kicked, reconnected silently and kicked B");
}

static void on_connected(starling_client_t *c, const char *jid, void *ud)
{
    check_t *k = ud;
    fprintf(stderr, "     %s connected as %s\n", who(k, c), jid);
    if (c == k->a) {
        k->a_connected++;
        if (strcmp(jid, A_JID) != 0) {
            fail(k, "A bound another JID");
            return;
        }
        if (k->a_connected == 2) {
            k->a_reconnected_at = uv_now(k->loop);
            if (!k->b_connected)
                fail(k, "A reconnected before B had bound");
            else
                maybe_reconnected(k);
            return;
        }
        if (k->a_connected > 2) {
            fail(k, "A connected more than twice");
            return;
        }
    } else if (c == k->b && k->step == 6) {
        /* A is being kicked; disconnect it once it is waiting to
         * reconnect (its JID is gone then). */
        k->b_connected_at = uv_now(k->loop);
        uv_timer_start(&k->wait, on_wait, 100, 0);
        return;
    } else if (c == k->b) {
        if (k->step != 3 || strcmp(jid, A_JID) != 0) {
            fail(k, "B connected out of turn or as another JID");
            return;
        }
        k->b_connected = true;
        k->b_connected_at = uv_now(k->loop);
        return;
    } else {
        snprintf(k->c_jid, sizeof(k->c_jid), "%s", jid);
        k->c_connected = true;
    }
    if (k->step == 1 && k->a_connected == 1 && k->c_connected) {
        if (starling_send_presence(k->a, NULL, STARLING_PRES_AVAILABLE, NULL,
                                   "back", 0) < 0) {
            fail(k, "send_presence");
            return;
        }
        next_step(k); /* the IQ round trip */
    }
}

/* Step 6, in phases: POLL until B's second session has kicked A (A's JID
 * is gone), then disconnect A; DISC waits for its `disconnected`; QUIET
 * makes sure that A stays away. */
enum { POLL, DISC, QUIET };

static void on_wait(uv_timer_t *t)
{
    check_t *k = t->data;
    if (k->step != 6)
        return;
    switch (k->phase) {
    case POLL:
        if (starling_client_jid(k->a) != NULL) {
            if (uv_now(k->loop) - k->b_connected_at > 3000)
                fail(k, "A was not kicked by B's second session");
            else
                uv_timer_start(&k->wait, on_wait, 50, 0);
            return;
        }
        fprintf(stderr, "     A kicked again; disconnecting it during the "
                        "backoff\n");
        k->phase = DISC;
        uv_timer_start(&k->wait, on_wait, 3000, 0);
        starling_client_disconnect(k->a); /* may report at once */
        return;
    case DISC:
        fail(k, "no `disconnected` after disconnect() during the backoff");
        return;
    default:
        if (k->a_connected != 2)
            fail(k, "A reconnected after starling_client_disconnect()");
        else
            pass(k, "disconnect() during the backoff: `disconnected`, no "
                    "reconnection");
    }
}

static void on_disconnected(starling_client_t *c, const starling_error_t *err,
                            void *ud)
{
    check_t *k = ud;
    if (c == k->b && k->step == 3 && k->b_connected && !k->b_kicked) {
        if (err == NULL || err->kind != STARLING_ERR_STREAM ||
            err->condition == NULL || strcmp(err->condition, "conflict") != 0 ||
            err->description == NULL) {
            fprintf(stderr, "B: %s / %s / %s\n",
                    err ? starling_error_kind_name(err->kind) : "(clean)",
                    err && err->condition ? err->condition : "-",
                    err && err->description ? err->description : "-");
            fail(k, "B was not kicked with a conflict stream error");
            return;
        }
        fprintf(stderr, "     B kicked: %s (%s)\n", err->condition,
                err->description);
        k->b_kicked = true;
        maybe_reconnected(k);
        return;
    }
    if (c == k->a && k->step == 6) {
        if (err != NULL) {
            fail(k, "disconnect() while reconnecting reported an error");
            return;
        }
        if (k->a_stopped) {
            fail(k, "A reported `disconnected` twice");
            return;
        }
        fprintf(stderr, "     A disconnected cleanly while reconnecting\n");
        k->a_stopped = true;
        k->phase = QUIET;
        /* Long enough for the first reconnection attempt (0.5-1.5 s) and
         * its negotiation: A must not come back. */
        uv_timer_start(&k->wait, on_wait, 2500, 0);
        return;
    }
    if (k->step != 7 || c == k->a) {
        fprintf(stderr, "unexpected disconnect of %s: %s %s (%s)\n", who(k, c),
                err ? starling_error_kind_name(err->kind) : "(clean)",
                err && err->condition ? err->condition : "",
                err && err->description ? err->description : "");
        fail(k, c == k->a ? "A reported `disconnected` although it "
                            "reconnects"
                          : "disconnected");
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
    if (m->type == STARLING_MSG_ERROR) {
        const char *cond = starling_stanza_child_text(
            m->stanza, "urn:ietf:params:xml:ns:xmpp-stanzas",
            "service-unavailable");
        fprintf(stderr, "%s got an error message from %s%s\n", who(k, c),
                m->from ? m->from : "?",
                cond != NULL ? " (service-unavailable)" : "");
        fail(k, k->step == 4 ? "A is not available after reconnecting: its "
                               "presence was not re-sent"
                             : "a message bounced");
        return;
    }
    if (c == k->a && (k->step == 2 || k->step == 4)) {
        const char *want = k->step == 2 ? "first" : "second";
        if (m->body == NULL || strcmp(m->body, want) != 0 || m->from == NULL ||
            strcmp(m->from, k->c_jid) != 0)
            fail(k, "A's bare-JID message arrived changed");
        else
            pass(k, k->step == 2 ? "A is available: bare-JID message arrived"
                                 : "A re-sent its presence: bare-JID message "
                                   "arrived after the reconnect");
        return;
    }
    if (c == k->c && k->step == 5) {
        if (m->type == STARLING_MSG_CHAT && m->body &&
            strcmp(m->body, "still here") == 0 && m->from &&
            strcmp(m->from, A_JID) == 0)
            pass(k, "A sends on the new stream");
        else
            fail(k, "A's message arrived changed");
        return;
    }
    fprintf(stderr, "%s: unexpected message from %s\n", who(k, c),
            m->from ? m->from : "?");
    fail(k, "unexpected message");
}

/* The server answered A's IQ: everything A sent before it (the presence)
 * has been handled. C sends to the bare JID. */
static void on_sync(starling_client_t *c, const starling_stanza_t *r,
                    const starling_error_t *e, void *ud)
{
    check_t *k = ud;
    (void)c;
    (void)r;
    if (e != NULL && e->kind != STARLING_ERR_STANZA) {
        fprintf(stderr, "sync IQ: %s\n", e->description);
        fail(k, "A's IQ to the server got no answer");
        return;
    }
    if (k->step == 1) {
        k->step = 2;
        fprintf(stderr, "ok   step 1: A and C connected, A sent presence\n");
    }
    if (starling_send_message(k->c, "alice@localhost", STARLING_MSG_CHAT,
                              k->step == 2 ? "first" : "second", NULL,
                              NULL) < 0)
        fail(k, "C: send_message");
}

static void next_step(check_t *k)
{
    switch (k->step) {
    case 1:
    case 4:
        if (starling_iq_send(k->a, NULL, false,
                             "<query xmlns='urn:example:sync'/>", 5000, on_sync,
                             k) < 0)
            fail(k, "A: iq_send");
        break;
    case 3:
        if (starling_client_connect(k->b) < 0)
            fail(k, "B: connect");
        break;
    case 5:
        if (starling_send_message(k->a, k->c_jid, STARLING_MSG_CHAT,
                                  "still here", NULL, NULL) < 0)
            fail(k, "A: send_message after reconnecting");
        break;
    case 6:
        if (starling_client_connect(k->b) < 0)
            fail(k, "B: connect again");
        break;
    case 7:
        starling_client_disconnect(k->b);
        starling_client_disconnect(k->c);
        break;
    default:
        break;
    }
}

static void on_deadline(uv_timer_t *t)
{
    check_t *k = t->data;
    fprintf(stderr, "(A connected %d times, B %s, B %s)\n", k->a_connected,
            k->b_connected ? "bound" : "not bound",
            k->b_kicked ? "kicked" : "not kicked");
    fail(k, "timed out");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: client_reconnect_check PORT CA_FILE\n");
        return 2;
    }
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%s", argv[1]);
    check_t k;
    memset(&k, 0, sizeof(k));
    k.loop = uv_default_loop();
    k.step = 1;
    starling_client_events_t ev = {.connected = on_connected,
                                   .disconnected = on_disconnected,
                                   .message = on_message};
    starling_client_opts_t o = {.server = server, .ca_file = argv[2]};
    starling_error_t err;
    o.jid = A_JID;
    o.password = getenv("ALICE_PW");
    o.reconnect = true;
    k.a = starling_client_new(k.loop, &o, &ev, &k, &err);
    o.reconnect = false;
    k.b = k.a ? starling_client_new(k.loop, &o, &ev, &k, &err) : NULL;
    o.jid = "bob@localhost/rc";
    o.password = getenv("BOB_PW");
    k.c = k.b ? starling_client_new(k.loop, &o, &ev, &k, &err) : NULL;
    if (k.c == NULL) {
        fprintf(stderr, "client_new: %s\n", err.description);
        return 1;
    }
    uv_timer_init(k.loop, &k.deadline);
    k.deadline.data = &k;
    uv_timer_start(&k.deadline, on_deadline, 20000, 0);
    uv_timer_init(k.loop, &k.wait);
    k.wait.data = &k;
    if (starling_client_connect(k.a) < 0 || starling_client_connect(k.c) < 0) {
        fprintf(stderr, "FAIL: connect\n");
        return 1;
    }
    uv_run(k.loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&k.deadline, NULL);
    uv_close((uv_handle_t *)&k.wait, NULL);
    starling_client_free(k.a);
    starling_client_free(k.b);
    starling_client_free(k.c);
    uv_run(k.loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(k.loop);
    if (rc != 0) {
        fprintf(stderr, "FAIL: handles left open on the loop\n");
        return 1;
    }
    if (k.failures == 0 && k.step == 8) {
        fprintf(stderr, "all steps passed\n");
        return 0;
    }
    fprintf(stderr, "FAIL: stopped at step %d\n", k.step);
    return 1;
}
