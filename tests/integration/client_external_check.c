/* client_external_check: SASL EXTERNAL from libstarling (feature set 6-3,
 * XEP-0178) against a running starlingd that trusts a client CA (started
 * by test_client_external.py), using only include/starling/client.h.
 *
 * The client has a certificate and key and no password.
 *
 *   client_external_check PORT CA_FILE CERT KEY ok
 *       connects, the mechanism is EXTERNAL, the bound JID is
 *       alice@localhost/..., then a polite disconnect (err NULL).
 *   client_external_check PORT CA_FILE CERT KEY no-mechanism
 *       the certificate does not verify at the server, so EXTERNAL is not
 *       offered and, without a password, nothing else is usable:
 *       `disconnected` with STARLING_ERR_AUTH and a description, which is
 *       printed as "description: ..." for the caller to check.
 *
 * Either way the loop must end with every handle closed. Exits 0 when the
 * outcome was the expected one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "starling/client.h"

typedef struct check {
    uv_loop_t *loop;
    starling_client_t *c;
    bool expect_ok;
    bool connected;
    bool done;
    int failures;
    uv_timer_t deadline;
} check_t;

static void fail(check_t *k, const char *what)
{
    fprintf(stderr, "FAIL: %s\n", what);
    k->failures++;
    uv_stop(k->loop);
}

static void on_connected(starling_client_t *c, const char *jid, void *ud)
{
    check_t *k = ud;
    const char *mech = starling_client_mechanism(c);
    fprintf(stderr, "connected as %s with %s\n", jid, mech ? mech : "(none)");
    if (!k->expect_ok) {
        fail(k, "connected with a certificate the server must not trust");
        return;
    }
    if (mech == NULL || strcmp(mech, "EXTERNAL") != 0) {
        fail(k, "the mechanism is not EXTERNAL");
        return;
    }
    if (strncmp(jid, "alice@localhost/", 16) != 0 || jid[16] == '\0') {
        fail(k, "not bound as alice@localhost/<resource>");
        return;
    }
    const char *bound = starling_client_jid(c);
    if (bound == NULL || strcmp(bound, jid) != 0) {
        fail(k, "starling_client_jid() disagrees with `connected`");
        return;
    }
    k->connected = true;
    starling_client_disconnect(c);
}

static void on_disconnected(starling_client_t *c, const starling_error_t *err,
                            void *ud)
{
    check_t *k = ud;
    (void)c;
    if (err != NULL)
        fprintf(stderr, "disconnected: %s, condition %s\ndescription: %s\n",
                starling_error_kind_name(err->kind),
                err->condition ? err->condition : "(none)",
                err->description ? err->description : "(none)");
    else
        fprintf(stderr, "disconnected cleanly\n");
    if (k->expect_ok) {
        if (!k->connected || err != NULL)
            fail(k, "EXTERNAL login failed");
        else
            k->done = true;
    } else {
        if (err == NULL || err->kind != STARLING_ERR_AUTH)
            fail(k, "expected an authentication failure");
        else if (err->description == NULL || err->description[0] == '\0')
            fail(k, "the failure has no description");
        else if (starling_client_jid(c) != NULL)
            fail(k, "a JID is reported after a failed login");
        else
            k->done = true;
    }
    uv_stop(k->loop);
}

static void on_deadline(uv_timer_t *t)
{
    fail(t->data, "timed out");
}

int main(int argc, char **argv)
{
    if (argc != 6 ||
        (strcmp(argv[5], "ok") != 0 && strcmp(argv[5], "no-mechanism") != 0)) {
        fprintf(stderr, "usage: client_external_check PORT CA_FILE CERT KEY "
                        "ok|no-mechanism\n");
        return 2;
    }
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%s", argv[1]);
    check_t k;
    memset(&k, 0, sizeof(k));
    k.loop = uv_default_loop();
    k.expect_ok = strcmp(argv[5], "ok") == 0;
    starling_client_events_t ev = {.connected = on_connected,
                                   .disconnected = on_disconnected};
    starling_client_opts_t o = {.jid = "alice@localhost",
                                .password = NULL,
                                .server = server,
                                .ca_file = argv[2],
                                .client_cert = argv[3],
                                .client_key = argv[4]};
    starling_error_t err;
    k.c = starling_client_new(k.loop, &o, &ev, &k, &err);
    if (k.c == NULL) {
        fprintf(stderr, "client_new: %s\n", err.description);
        return 1;
    }
    uv_timer_init(k.loop, &k.deadline);
    k.deadline.data = &k;
    uv_timer_start(&k.deadline, on_deadline, 20000, 0);
    if (starling_client_connect(k.c) < 0) {
        fprintf(stderr, "FAIL: connect\n");
        return 1;
    }
    uv_run(k.loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&k.deadline, NULL);
    starling_client_free(k.c);
    uv_run(k.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(k.loop) != 0) {
        fprintf(stderr, "FAIL: handles left open on the loop\n");
        return 1;
    }
    if (k.failures == 0 && k.done) {
        fprintf(stderr, "all steps passed\n");
        return 0;
    }
    return 1;
}
