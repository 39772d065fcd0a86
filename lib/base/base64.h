/* base64: RFC 4648 encoding, with a strict decoder (SASL payloads must be
 * rejected with incorrect-encoding when they are not canonical base64). */
#ifndef STARLING_BASE_BASE64_H
#define STARLING_BASE_BASE64_H

#include <stddef.h>

typedef enum base64_variant {
    BASE64_STD,       /* + / with = padding (SASL, RFC 6120 §6.4.2) */
    BASE64_URL_NOPAD, /* - _ without padding (identifiers) */
} base64_variant_t;

/* Bytes needed to encode n bytes, including the NUL. */
size_t base64_encoded_size(size_t n);

/* Encodes n bytes into out (NUL-terminated). Returns the text length, or -1
 * when out_size is too small. */
long base64_encode(const void *in, size_t n, base64_variant_t v, char *out,
                   size_t out_size);

/* Decodes standard, padded base64 strictly: no white space, no characters
 * outside the alphabet, correct padding, zero unused bits. out must hold at
 * least len / 4 * 3 bytes. Returns the decoded length, or -1 when the input
 * is not valid base64. */
long base64_decode(const char *in, size_t len, void *out, size_t out_size);

#endif
