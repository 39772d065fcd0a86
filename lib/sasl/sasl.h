/* sasl: the server side of SASL for XMPP (RFC 6120 §6), sans-I/O.
 *
 * Mechanisms: SCRAM-SHA-1, SCRAM-SHA-256 and their -PLUS variants
 * (RFC 5802, RFC 7677, channel binding tls-exporter RFC 9266 and tls-unique
 * RFC 5929), PLAIN (RFC 4616, only over TLS), EXTERNAL (RFC 4422 App. A,
 * with a TLS client certificate), and DIGEST-MD5 (RFC 2831, off by default;
 * RFC 6331 retired it) through GNU SASL.
 *
 * SCRAM is implemented here on OpenSSL primitives rather than through GNU
 * SASL, because XEP-0474 downgrade protection adds an attribute to the
 * server-first-message that becomes part of the AuthMessage, and GNU SASL
 * builds that message internally. The unit tests check this SCRAM against
 * GNU SASL's client.
 *
 * Account data is looked up asynchronously by the caller: a step that needs
 * it returns SASL_NEED_CREDENTIALS with the account name; the caller looks
 * the account up and calls sasl_server_set_credentials() and/or
 * sasl_server_set_digest_md5() (or sasl_server_set_unknown_user()), then
 * steps again with no input. PLAIN's
 * password check (PBKDF2) is slow on purpose: the step returns
 * SASL_NEED_PASSWORD_CHECK and the caller runs sasl_server_check_password()
 * on a worker thread, then sasl_server_password_checked() on the loop. */
#ifndef STARLING_SASL_SASL_H
#define STARLING_SASL_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"
#include "sasl/scram.h"

typedef enum sasl_mech {
    SASL_MECH_SCRAM_SHA256_PLUS,
    SASL_MECH_SCRAM_SHA256,
    SASL_MECH_SCRAM_SHA1_PLUS,
    SASL_MECH_SCRAM_SHA1,
    SASL_MECH_PLAIN,
    SASL_MECH_EXTERNAL,
    SASL_MECH_DIGEST_MD5,
    SASL_MECH_COUNT,
} sasl_mech_t;

/* "SCRAM-SHA-256-PLUS" etc. */
const char *sasl_mech_name(sasl_mech_t m);
/* The mechanism named, or -1 (RFC 6120 §6.4.2: invalid-mechanism). */
int sasl_mech_from_name(const char *name);

/* Channel binding types (XEP-0440 advertises them). */
typedef enum sasl_cb_type {
    SASL_CB_TLS_EXPORTER = 1 << 0,
    SASL_CB_TLS_UNIQUE = 1 << 1,
} sasl_cb_type_t;

/* Step results: >= 0 keeps going or succeeded; < 0 is a failure whose RFC
 * 6120 §6.5 condition sasl_condition() names. */
typedef enum sasl_result {
    SASL_SUCCESS = 0,             /* out: additional data for <success/> */
    SASL_CHALLENGE = 1,           /* out: the challenge */
    SASL_NEED_CREDENTIALS = 2,    /* look up sasl_server_authcid() */
    SASL_NEED_PASSWORD_CHECK = 3, /* PLAIN: check the password off-loop */
    SASL_F_ABORTED = -1,
    SASL_F_ACCOUNT_DISABLED = -2,
    SASL_F_CREDENTIALS_EXPIRED = -3,
    SASL_F_ENCRYPTION_REQUIRED = -4,
    SASL_F_INCORRECT_ENCODING = -5,
    SASL_F_INVALID_AUTHZID = -6,
    SASL_F_INVALID_MECHANISM = -7,
    SASL_F_MALFORMED_REQUEST = -8,
    SASL_F_MECHANISM_TOO_WEAK = -9,
    SASL_F_NOT_AUTHORIZED = -10,
    SASL_F_TEMPORARY_AUTH_FAILURE = -11,
} sasl_result_t;

/* "not-authorized" etc. for a failure; NULL for a non-failure. */
const char *sasl_condition(int result);

/* What the connection offers and knows; copied by sasl_server_new(). */
typedef struct sasl_server_params {
    const char *domain;               /* the stream's domain (authzid checks) */
    unsigned advertised_mechs;        /* bit (1 << sasl_mech_t) per mechanism
                                         offered in <mechanisms/> */
    unsigned advertised_cb;           /* sasl_cb_type_t bits offered with
                                         XEP-0440; 0 if not advertised */
    const unsigned char *cb_exporter; /* tls-exporter data, or NULL */
    size_t cb_exporter_len;
    const unsigned char *cb_unique; /* tls-unique data, or NULL */
    size_t cb_unique_len;
    bool tls; /* the stream is encrypted */
    /* EXTERNAL: XmppAddr identities of the verified client certificate. */
    const char *const *cert_names;
    size_t cert_name_count;
    /* For the fake salts of unknown users: a random secret that outlives
     * restarts (a salt must not change between attempts, RFC 5802 §9, and
     * without a secret anyone can compute it and so spot unknown names). */
    const unsigned char *server_secret;
    size_t server_secret_len;
    unsigned scram_iterations; /* for fake credentials; 0: 4096 */
} sasl_server_params_t;

typedef struct sasl_server sasl_server_t;

/* Starts an exchange with mechanism m. Returns NULL when out of memory.
 * A mechanism that was not advertised, or PLAIN without TLS, is refused by
 * the first step (invalid-mechanism, encryption-required). DIGEST-MD5 runs
 * on a GNU SASL context created for this exchange alone (no shared state,
 * so exchanges on different threads never meet). */
sasl_server_t *sasl_server_new(sasl_mech_t m, const sasl_server_params_t *p);
void sasl_server_free(sasl_server_t *s);

/* One step with the client's decoded data. The first step takes the
 * initial response, or the response to the empty challenge the caller sent
 * when <auth/> carried none (RFC 6120 §6.4.2); in may be NULL with len 0
 * for an empty response ("=") and to continue after credentials or a
 * password check. Output (challenge or success data, raw bytes) is appended
 * to out; an empty challenge or success leaves it untouched. Anything over
 * 8 KiB, or sent out of order, fails with malformed-request. Once a step
 * has returned SASL_SUCCESS or a failure, further steps fail. */
int sasl_server_step(sasl_server_t *s, const unsigned char *in, size_t len,
                     buf_t *out);

/* After SASL_NEED_CREDENTIALS: the nodeprep'd account name to look up in
 * the stream's domain (params->domain); NULL before. */
const char *sasl_server_authcid(const sasl_server_t *s);

/* The account answer, after SASL_NEED_CREDENTIALS and before the next
 * step; ignored at any other time. An account that exists gets
 * sasl_server_set_credentials() and/or sasl_server_set_digest_md5() (both
 * may be called, in either order: each adds what the store has); one that
 * does not gets sasl_server_set_unknown_user().
 *
 * Credentials for the mechanism's hash; either pointer may be NULL. An
 * account without what the mechanism needs (the SCRAM hash in use; for
 * PLAIN either hash, SHA-256 preferred; for DIGEST-MD5 the MD5 hash) fails
 * exactly like an unknown one. EXTERNAL needs nothing but existence.
 * Copied. */
void sasl_server_set_credentials(sasl_server_t *s, const scram_cred_t *sha1,
                                 const scram_cred_t *sha256);

/* The account's stored MD5(node ":" realm ":" password)
 * (scram_digest_md5_hash()), for DIGEST-MD5. Copied. */
void sasl_server_set_digest_md5(sasl_server_t *s, const unsigned char hash[16]);

/* No such account: the exchange goes on with fake credentials (a
 * deterministic salt) and fails with not-authorized at the end, so that an
 * observer cannot tell unknown accounts from wrong passwords. */
void sasl_server_set_unknown_user(sasl_server_t *s);

/* PLAIN, after SASL_NEED_PASSWORD_CHECK: thread-safe, touches nothing but
 * its arguments, so it can run on a worker thread (the loop must not touch
 * s meanwhile). For an unknown account it does the same PBKDF2 work on the
 * fake credentials and returns false, so the time taken tells nothing. */
bool sasl_server_check_password(const sasl_server_t *s);
/* Back on the loop: the result of that check. The next step (with no input)
 * returns SASL_SUCCESS or SASL_F_NOT_AUTHORIZED. */
void sasl_server_password_checked(sasl_server_t *s, bool ok);

/* After SASL_SUCCESS: the authenticated account (nodeprep'd localpart). */
const char *sasl_server_username(const sasl_server_t *s);

#endif
