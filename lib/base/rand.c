#include "base/rand.h"

#include <errno.h>
#include <sys/random.h>

#include "base/base64.h"

int rand_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int rand_id(char *out, size_t out_size, unsigned bits)
{
    unsigned char raw[64];
    size_t n = bits / 8;
    if (bits % 8 != 0 || n == 0 || n > sizeof(raw))
        return -1;
    if (rand_bytes(raw, n) < 0)
        return -1;
    return base64_encode(raw, n, BASE64_URL_NOPAD, out, out_size) < 0 ? -1 : 0;
}
