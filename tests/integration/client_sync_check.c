/* client_sync_check: the blocking layer of libstarling (starling_sync_*)
 * against a running starlingd, as a script or a test would use it.
 *
 *   client_sync_check PORT CA_FILE   (passwords in ALICE_PW and BOB_PW)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "starling/client.h"

static int failures;

static void check(bool ok, const char *what, const starling_sync_t *s)
{
    const starling_error_t *e = s != NULL ? starling_sync_error(s) : NULL;
    fprintf(stderr, "%s %s%s%s\n", ok ? "ok  " : "FAIL", what,
            !ok && e ? ": " : "", !ok && e ? e->description : "");
    if (!ok)
        failures++;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%s", argv[1]);
    starling_client_opts_t o = {.server = server, .ca_file = argv[2]};

    o.jid = "alice@localhost/sync";
    o.password = "wrong";
    starling_sync_t *bad = starling_sync_connect(&o, 10000);
    const starling_error_t *e = starling_sync_error(bad);
    check(e != NULL && e->kind == STARLING_ERR_AUTH && e->condition &&
              strcmp(e->condition, "not-authorized") == 0,
          "a wrong password is an authentication error", NULL);
    starling_sync_close(bad);

    o.password = getenv("ALICE_PW");
    starling_sync_t *a = starling_sync_connect(&o, 10000);
    check(starling_sync_error(a) == NULL, "alice connects", a);
    o.jid = "bob@localhost/sync";
    o.password = getenv("BOB_PW");
    starling_sync_t *b = starling_sync_connect(&o, 10000);
    check(starling_sync_error(b) == NULL, "bob connects", b);

    check(starling_sync_send_message(a, "bob@localhost/sync", STARLING_MSG_CHAT,
                                     "hello, sync", 5000) == 0,
          "alice's message is taken", a);
    starling_sync_message_t m;
    int rc = starling_sync_wait_message(b, 5000, &m);
    check(rc == 0 && m.body && strcmp(m.body, "hello, sync") == 0 && m.from &&
              strcmp(m.from, "alice@localhost/sync") == 0 &&
              m.type == STARLING_MSG_CHAT,
          "bob receives it", b);
    starling_sync_message_clear(&m);

    check(starling_sync_send_message(a, "carol@localhost", STARLING_MSG_CHAT,
                                     "anyone?", 5000) < 0,
          "a message to an offline user is refused", NULL);

    char *res = NULL;
    rc = starling_sync_iq(a, NULL, false, "<query xmlns='urn:example:x'/>",
                          5000, &res);
    e = starling_sync_error(a);
    check(rc < 0 && e && e->condition &&
              strcmp(e->condition, "service-unavailable") == 0,
          "an unknown namespace at the server: service-unavailable", NULL);
    free(res);

    rc = starling_sync_wait_message(b, 200, &m);
    check(rc < 0 && starling_sync_error(b)->kind == STARLING_ERR_TIMEOUT,
          "waiting for a message that does not come times out", NULL);

    starling_sync_close(a);
    starling_sync_close(b);
    fprintf(stderr, failures ? "FAILED\n" : "all checks passed\n");
    return failures ? 1 : 0;
}
