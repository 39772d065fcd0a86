/* sasl_internal: what the mechanism files of lib/sasl share, and what the
 * unit tests reach directly. Not for use outside lib/sasl and tests. */
#ifndef STARLING_SASL_SASL_INTERNAL_H
#define STARLING_SASL_SASL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "jid/jid.h"
#include "sasl/sasl.h"
#include "sasl/scram.h"

/* Every message a client sends is refused beyond this size: the longest
 * legitimate one (a SCRAM client-first with a 1023-byte escaped name and an
 * authzid) is far below it. */
#define SASL_MSG_MAX 8192

/* Where an exchange stands. Each step checks it first, so that a message out
 * of order is refused rather than interpreted. */
typedef enum sasl_state {
    SASL_ST_START,      /* nothing received yet */
    SASL_ST_WAIT_RESP,  /* DIGEST-MD5: challenge sent, response due */
    SASL_ST_NEED_CRED,  /* NEED_CREDENTIALS returned; no answer yet */
    SASL_ST_HAVE_CRED,  /* account answer known; step(NULL) goes on */
    SASL_ST_WAIT_FINAL, /* SCRAM: server-first sent */
    SASL_ST_NEED_CHECK, /* PLAIN: NEED_PASSWORD_CHECK returned */
    SASL_ST_CHECKED,    /* PLAIN: the check's result is known */
    SASL_ST_WAIT_ACK,   /* DIGEST-MD5: rspauth sent, empty response due */
    SASL_ST_DONE,       /* success or failure returned: nothing more */
} sasl_state_t;

/* One exchange. Owned by the connection that created it; every pointer
 * member is owned by the struct and freed by sasl_server_free(). */
struct sasl_server {
    sasl_mech_t mech;
    sasl_state_t state;

    /* Copies of sasl_server_params_t. */
    char *domain; /* prepared with nameprep when possible */
    unsigned advertised_mechs;
    unsigned advertised_cb;
    unsigned char *cb_exporter; /* NULL when not available */
    size_t cb_exporter_len;
    unsigned char *cb_unique; /* NULL when not available */
    size_t cb_unique_len;
    bool tls;
    char **cert_names;
    size_t cert_name_count;
    unsigned char *server_secret;
    size_t server_secret_len;
    unsigned scram_iterations;

    /* The nodeprep'd account name, valid from NEED_CREDENTIALS on. */
    char authcid[JID_PART_BUF];
    bool have_authcid;
    bool authenticated; /* sasl_server_username() answers */

    /* The account answer. `known` is false for an unknown account; the
     * exchange then runs on `fake` (or a random md5) and always fails at
     * its end, as it does for a known account without the credentials the
     * mechanism needs. */
    bool known;
    bool have_sha1, have_sha256, have_md5;
    scram_cred_t sha1, sha256, fake;
    unsigned char md5[16];

    /* SCRAM. */
    scram_hash_t hash;
    bool plus;
    char *gs2_header; /* the client's gs2-header, byte for byte */
    size_t gs2_len;
    const unsigned char *cb_data; /* points at cb_exporter or cb_unique */
    size_t cb_len;
    char *client_first_bare;
    char *nonce; /* client nonce, then client + server nonce */
    char *server_first;

    /* PLAIN: the password, wiped when freed. */
    char *password;
    bool password_ok;

    /* DIGEST-MD5 (sasl_digest.c). */
    void *gsasl;      /* Gsasl *, one per exchange */
    void *gsasl_sess; /* Gsasl_session * */
    char *response;   /* the client's digest-response, kept for gsasl */
    size_t response_len;
};

/* RFC 6120 §6.3.8 and our policy: an authorization identity is accepted only
 * when it names the account being authenticated, as the bare JID
 * authcid@domain. Returns SASL_SUCCESS or SASL_F_INVALID_AUTHZID. */
int sasl_check_authzid(const sasl_server_t *s, const char *authzid, size_t len);

/* Nodeprep (query rules) of an account name into s->authcid. Returns 0, or
 * -1 when the name cannot be an account (it is then refused with
 * not-authorized: no account by that name can exist). */
int sasl_set_authcid(sasl_server_t *s, const char *name, size_t len);

/* SCRAM steps (sasl_scram.c). */
int sasl_scram_first(sasl_server_t *s, const char *msg, size_t len);
int sasl_scram_server_first(sasl_server_t *s, buf_t *out);
int sasl_scram_final(sasl_server_t *s, const char *msg, size_t len, buf_t *out);

/* SCRAM message pieces (sasl_scram.c), shared by the server and the client
 * (sasl_client.c). [p, end) is the rest of a message. */
/* The end of the attribute value starting at p: the next ',' or end. */
const char *sasl_attr_end(const char *p, const char *end);
bool sasl_has_prefix(const char *p, const char *end, const char *pre);
/* RFC 5802 §7 nonce: 1*printable, no ','. */
bool sasl_nonce_ok(const char *p, const char *end);
/* RFC 5802 §5.1 extensions: *("," ALPHA "=" 1*value-char). */
bool sasl_extensions_ok(const char *p, const char *end);
/* HMAC with the SCRAM hash; out gets scram_key_len(h) bytes. 0 or -1. */
int sasl_scram_hmac(scram_hash_t h, const unsigned char *key, size_t keylen,
                    const void *data, size_t len, unsigned char *out);

/* DIGEST-MD5 steps (sasl_digest.c). */
int sasl_digest_start(sasl_server_t *s, buf_t *out);
int sasl_digest_response(sasl_server_t *s, const char *msg, size_t len);
int sasl_digest_verify(sasl_server_t *s, buf_t *out);
void sasl_digest_free(sasl_server_t *s);

/* XEP-0474 §Protocol: the downgrade-protection hash of the advertised
 * mechanism names and channel-binding types. Both lists are sorted here
 * (i;octet); ncb == 0 means XEP-0440 was not used and leaves out the %x1F
 * separator. Writes the base64 of the hash and a NUL into out_b64. Returns
 * the text length, or -1 (too many names, a buffer too small, OpenSSL
 * failed). */
int sasl_downgrade_hash(scram_hash_t hash, const char *const *mechs, size_t n,
                        const char *const *cbs, size_t ncb, char *out_b64,
                        size_t size);

#endif
