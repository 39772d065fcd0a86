#include "base/base64.h"

#include <stdint.h>

static const char std_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t base64_encoded_size(size_t n)
{
    return (n + 2) / 3 * 4 + 1;
}

long base64_encode(const void *in, size_t n, base64_variant_t v, char *out,
                   size_t out_size)
{
    const unsigned char *s = in;
    const char *a = v == BASE64_STD ? std_alpha : url_alpha;
    if (n > (SIZE_MAX - 1) / 4 * 3 - 3 || base64_encoded_size(n) > out_size)
        return -1;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t w = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        out[o++] = a[w >> 18 & 63];
        out[o++] = a[w >> 12 & 63];
        out[o++] = a[w >> 6 & 63];
        out[o++] = a[w & 63];
    }
    if (i < n) {
        uint32_t w = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            w |= (uint32_t)s[i + 1] << 8;
        out[o++] = a[w >> 18 & 63];
        out[o++] = a[w >> 12 & 63];
        if (i + 1 < n)
            out[o++] = a[w >> 6 & 63];
        else if (v == BASE64_STD)
            out[o++] = '=';
        if (v == BASE64_STD)
            out[o++] = '=';
    }
    out[o] = '\0';
    return (long)o;
}

static int dec(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long base64_decode(const char *in, size_t len, void *out, size_t out_size)
{
    unsigned char *d = out;
    if (len % 4 != 0 || len / 4 * 3 > out_size)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            if (c == '=' && i + 4 == len && k >= 2) {
                pad++;
                v[k] = 0;
                continue;
            }
            if (pad > 0) /* a character after padding */
                return -1;
            v[k] = dec(c);
            if (v[k] < 0)
                return -1;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
                     (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* Canonical encoding: the bits that padding drops must be zero. */
        if ((pad == 2 && (w & 0xFFFF) != 0) || (pad == 1 && (w & 0xFF) != 0))
            return -1;
        d[o++] = (unsigned char)(w >> 16);
        if (pad < 2)
            d[o++] = (unsigned char)(w >> 8);
        if (pad < 1)
            d[o++] = (unsigned char)w;
    }
    return (long)o;
}
