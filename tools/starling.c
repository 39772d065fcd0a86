/* starling: placeholder entry point until its issue lands; says so and exits.
 */
#include <stdio.h>
#include <string.h>

#include "starling_config.h"

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("starling %s\n", STARLING_VERSION_STRING);
        return 0;
    }
    fprintf(stderr,
            "starling %s: no commands yet; they arrive with the %s issue.\n",
            STARLING_VERSION_STRING, "client");
    return 1;
}
