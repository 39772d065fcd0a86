/* sasl_client: the client side of SASL for XMPP (RFC 6120 §6), sans-I/O.
 *
 * Mechanisms, strongest first: SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS,
 * SCRAM-SHA-256, SCRAM-SHA-1 (RFC 5802, RFC 7677; channel binding
 * tls-exporter RFC 9266 or tls-unique RFC 5929 chosen from the server's
 * XEP-0440 list; XEP-0474 downgrade protection checked), EXTERNAL (RFC 4422
 * App. A, with a TLS client certificate), PLAIN (RFC 4616, only over TLS),
 * DIGEST-MD5 (RFC 2831, through GNU SASL, only when the server offers
 * nothing better — feature set 6-4).
 *
 * The caller gives what the server advertised and what the connection
 * knows; sasl_client_choose() picks the mechanism; then the exchange runs
 * step by step on decoded challenge data. */
#ifndef STARLING_SASL_SASL_CLIENT_H
#define STARLING_SASL_SASL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"
#include "sasl/sasl.h"

typedef struct sasl_client_params {
    const char *authcid;   /* the account's localpart, e.g. "juliet" */
    const char *password;  /* NULL: only EXTERNAL can work */
    const char *domain;    /* the server's domain (DIGEST-MD5 digest-uri) */
    const char *authzid;   /* NULL: none (the usual case) */
    bool tls;              /* the stream is encrypted */
    bool have_client_cert; /* a client certificate was presented */
    /* Channel binding data of this TLS connection, NULL when unavailable. */
    const unsigned char *cb_exporter;
    size_t cb_exporter_len;
    const unsigned char *cb_unique;
    size_t cb_unique_len;
    /* What the server advertised: mechanism names (as received, any order)
     * and XEP-0440 channel-binding types (NULL with count 0 when the server
     * sent no <sasl-channel-binding/>). Used for the choice and for the
     * XEP-0474 hash. */
    const char *const *server_mechs;
    size_t server_mech_count;
    const char *const *server_cb;
    size_t server_cb_count;
    /* The policy switches. The recommended setting is true for both; a
     * zero-initialized struct leaves them false (PLAIN and DIGEST-MD5
     * refused). */
    bool allow_plain;      /* PLAIN over TLS when nothing better */
    bool allow_digest_md5; /* DIGEST-MD5 only if nothing better */
} sasl_client_params_t;

typedef struct sasl_client sasl_client_t;

/* Picks the strongest mechanism both sides support under the rules above
 * and prepares it. With a password: SCRAM (-PLUS first, SHA-256 first),
 * then EXTERNAL (certificate and TLS), PLAIN (TLS, allow_plain),
 * DIGEST-MD5 (allow_digest_md5). Without one: EXTERNAL only. Everything
 * in p is copied; nothing needs to outlive the call. Returns NULL when
 * there is none (*why, when why is not NULL, gets a one-line reason, e.g.
 * "the server offers only PLAIN and the stream is not encrypted", or "out
 * of memory"). */
sasl_client_t *sasl_client_choose(const sasl_client_params_t *p,
                                  const char **why);
void sasl_client_free(sasl_client_t *c);

sasl_mech_t sasl_client_mech(const sasl_client_t *c);

/* The initial response for <auth/> (appended to out). Returns 0, or a
 * negative sasl_result_t. `*has_data` false means "no initial response"
 * (the <auth/> element is sent empty: DIGEST-MD5); true with nothing
 * appended (EXTERNAL without authzid) is an empty initial response, "="
 * on the wire (RFC 6120 §6.4.2). Once only. */
int sasl_client_start(sasl_client_t *c, buf_t *out, bool *has_data);

/* One step with a decoded <challenge/> (in may be NULL for an empty one).
 * Returns SASL_CHALLENGE with the response appended to out (nothing
 * appended: an empty response, e.g. after DIGEST-MD5's rspauth or a SCRAM
 * server-final sent as a challenge), or a negative sasl_result_t:
 * SASL_F_NOT_AUTHORIZED when the server's messages are wrong (a nonce that
 * does not extend ours, an XEP-0474 hash that does not match what was
 * advertised, a mandatory extension, an iteration count of 0 or above
 * 10,000,000, a wrong server signature), SASL_F_MALFORMED_REQUEST when
 * they cannot be parsed, are over 8 KiB or come out of order. After a
 * failure the caller sends <abort/>; further steps fail. */
int sasl_client_step(sasl_client_t *c, const unsigned char *in, size_t len,
                     buf_t *out);

/* The decoded data of <success/> (in may be NULL when there is none):
 * SCRAM verifies the server signature (unless a challenge carried it
 * already), DIGEST-MD5 its rspauth. Returns SASL_SUCCESS, or
 * SASL_F_NOT_AUTHORIZED when the server did not prove knowledge of the
 * credentials (including a success that comes before the mechanism's
 * end); the stream must then not be trusted. Ends the exchange. */
int sasl_client_finish(sasl_client_t *c, const unsigned char *in, size_t len);

#endif
