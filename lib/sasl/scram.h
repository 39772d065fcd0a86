/* scram: SCRAM credentials (RFC 5802, RFC 7677) computed from a password,
 * and the password checks that PLAIN needs against them. No state, no I/O;
 * PBKDF2 is slow on purpose, so servers call these on a worker thread. */
#ifndef STARLING_SASL_SCRAM_H
#define STARLING_SASL_SCRAM_H

#include <stdbool.h>
#include <stddef.h>

typedef enum scram_hash {
    SCRAM_SHA1,
    SCRAM_SHA256,
} scram_hash_t;

enum {
    SCRAM_SALT_MAX = 64, /* longest salt kept (we make 16-byte salts) */
    SCRAM_KEY_MAX = 64,  /* room for any hash's output */
    SCRAM_SALT_LEN = 16, /* the salt scram_make() and fake salts use */
};

/* SCRAM credentials for one hash (RFC 5802 §3): what a server stores
 * instead of the password. Plain data, copied by value. */
typedef struct scram_cred {
    unsigned iterations;
    unsigned char salt[SCRAM_SALT_MAX];
    size_t salt_len;                         /* <= SCRAM_SALT_MAX */
    unsigned char stored_key[SCRAM_KEY_MAX]; /* H(ClientKey) */
    unsigned char server_key[SCRAM_KEY_MAX]; /* HMAC(SaltedPassword, ...) */
    size_t key_len; /* scram_key_len() of the hash: 20 (SHA-1) or 32 */
} scram_cred_t;

/* Key length in bytes: 20 or 32. */
size_t scram_key_len(scram_hash_t h);

/* SaslPrep (RFC 4013, stringprep via libidn) of a password, with the
 * stored-string rules RFC 5802 §2.2 asks for (unassigned code points are
 * refused). Returns a malloc'd string, or NULL when the password is not
 * allowed (prohibited or unassigned characters, invalid UTF-8) or memory
 * ran out. */
char *scram_saslprep(const char *password);

/* Fills out (salt, iterations, StoredKey, ServerKey) for `password` (not yet
 * SaslPrep'd) with a fresh random salt of SCRAM_SALT_LEN bytes. Returns 0,
 * or -1 when the password is refused by SaslPrep or is empty after it,
 * iterations is 0 or above INT_MAX, or the kernel gave no random bytes. */
int scram_make(scram_hash_t h, const char *password, unsigned iterations,
               scram_cred_t *out);

/* Like scram_make() with a given salt (1..SCRAM_SALT_MAX bytes): for test
 * vectors, for importing accounts, and for the password check. */
int scram_derive(scram_hash_t h, const char *password,
                 const unsigned char *salt, size_t salt_len,
                 unsigned iterations, scram_cred_t *out);

/* True when `password` matches the credentials (PLAIN over TLS against a
 * SCRAM-only store). Constant-time comparison. */
bool scram_check_password(scram_hash_t h, const scram_cred_t *cred,
                          const char *password);

/* A deterministic fake salt for an account that does not exist, so that a
 * SCRAM exchange for an unknown user looks like one for a known user
 * (RFC 5802 §9): HMAC-SHA-256(server_secret, domain "\0" node), truncated
 * to SCRAM_SALT_LEN. Returns 0, or -1 when OpenSSL failed (out of memory);
 * out is then zeroed and the exchange must fail with
 * temporary-auth-failure rather than show that salt. */
int scram_fake_salt(const unsigned char *server_secret, size_t secret_len,
                    const char *domain, const char *node,
                    unsigned char out[SCRAM_SALT_LEN]);

/* MD5(node ":" realm ":" password), what DIGEST-MD5 stores (RFC 2831
 * §2.1.2.1, the inner H({ username-value, ":", realm-value, ":", passwd })).
 * The strings are taken as UTF-8 bytes, unprepared, as GNU SASL's
 * DIGEST-MD5 hashes them. Returns 0, or -1 (out zeroed) when OpenSSL has
 * no MD5 (a FIPS-only configuration) or ran out of memory. */
int scram_digest_md5_hash(const char *node, const char *realm,
                          const char *password, unsigned char out[16]);

#endif
