/* starlingd: the Starling XMPP server.
 *
 * Until the client-to-server issue lands this entry point only reports its
 * version and that it cannot serve yet, so that `make run` says so plainly
 * instead of pretending to listen. */
#include <stdio.h>
#include <string.h>

#include "starling_config.h"

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("starlingd %s\n", STARLING_VERSION_STRING);
            return 0;
        }
    }
    fprintf(stderr,
            "starlingd %s: the server does not accept connections yet; "
            "client-to-server streams arrive with the c2s work (issue 3).\n",
            STARLING_VERSION_STRING);
    return 1;
}
