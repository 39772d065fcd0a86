/* sasl_scram: the server side of SCRAM (RFC 5802, RFC 7677) with channel
 * binding (RFC 9266 tls-exporter, RFC 5929 tls-unique) and the XEP-0474
 * downgrade-protection attribute, on OpenSSL primitives. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/base64.h"
#include "base/buf.h"
#include "base/rand.h"
#include "sasl/sasl_internal.h"

/* RFC 5802 §5.1 leaves the nonce length open; 24 random bytes (32 base64
 * characters) is what common servers send. */
#define SERVER_NONCE_BYTES 24

/* Mechanism names and channel-binding types in the XEP-0474 hash. */
#define DOWNGRADE_NAMES_MAX 32

#define PLUS_MECHS                                                             \
    (1u << SASL_MECH_SCRAM_SHA1_PLUS | 1u << SASL_MECH_SCRAM_SHA256_PLUS)

static const EVP_MD *md_of(scram_hash_t h)
{
    return h == SCRAM_SHA1 ? EVP_sha1() : EVP_sha256();
}

/* ------------------------------------------------------------ XEP-0474 */

/* i;octet (RFC 4790 §9.3) is a byte-wise comparison, which is what strcmp
 * does (it compares as unsigned char). */
static void sort_names(const char **v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        const char *x = v[i];
        size_t j = i;
        while (j > 0 && strcmp(v[j - 1], x) > 0) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

int sasl_downgrade_hash(scram_hash_t hash, const char *const *mechs, size_t n,
                        const char *const *cbs, size_t ncb, char *out_b64,
                        size_t size)
{
    const char *m[DOWNGRADE_NAMES_MAX];
    const char *c[DOWNGRADE_NAMES_MAX];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    int rc = -1;

    if (n > DOWNGRADE_NAMES_MAX || ncb > DOWNGRADE_NAMES_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        m[i] = mechs[i];
    for (size_t i = 0; i < ncb; i++)
        c[i] = cbs[i];
    sort_names(m, n);
    sort_names(c, ncb);

    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, md_of(hash), NULL) != 1)
        goto out;
    /* S = sorted mechanisms joined by %x1E, then (with XEP-0440) %x1F and
     * the sorted channel-binding types joined by %x1E. */
    for (size_t i = 0; i < n; i++)
        if ((i > 0 && EVP_DigestUpdate(ctx, "\x1e", 1) != 1) ||
            EVP_DigestUpdate(ctx, m[i], strlen(m[i])) != 1)
            goto out;
    if (ncb > 0 && EVP_DigestUpdate(ctx, "\x1f", 1) != 1)
        goto out;
    for (size_t i = 0; i < ncb; i++)
        if ((i > 0 && EVP_DigestUpdate(ctx, "\x1e", 1) != 1) ||
            EVP_DigestUpdate(ctx, c[i], strlen(c[i])) != 1)
            goto out;
    if (EVP_DigestFinal_ex(ctx, digest, &dlen) != 1)
        goto out;
    long len = base64_encode(digest, dlen, BASE64_STD, out_b64, size);
    if (len >= 0)
        rc = (int)len;
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* The h attribute for this exchange: what the stream advertised. */
static int downgrade_attr(const sasl_server_t *s, char *out, size_t size)
{
    const char *mechs[SASL_MECH_COUNT];
    const char *cbs[2];
    size_t n = 0, ncb = 0;

    for (int i = 0; i < SASL_MECH_COUNT; i++)
        if (s->advertised_mechs & 1u << i)
            mechs[n++] = sasl_mech_name((sasl_mech_t)i);
    if (s->advertised_cb & SASL_CB_TLS_EXPORTER)
        cbs[ncb++] = "tls-exporter";
    if (s->advertised_cb & SASL_CB_TLS_UNIQUE)
        cbs[ncb++] = "tls-unique";
    return sasl_downgrade_hash(s->hash, mechs, n, cbs, ncb, out, size);
}

/* --------------------------------------------------------------- parsing */

/* The end of the attribute value starting at p: the next ',' or end. */
const char *sasl_attr_end(const char *p, const char *end)
{
    const char *c = memchr(p, ',', (size_t)(end - p));
    return c != NULL ? c : end;
}

/* RFC 5802 §5.1 saslname: "=2C" stands for ',' and "=3D" for '='; any other
 * '=' is an error. Decodes [p, end) into out (room for end - p + 1 bytes,
 * NUL-terminated). Returns the decoded length, or -1. */
static long decode_saslname(const char *p, const char *end, char *out)
{
    size_t n = 0;
    if (p == end)
        return -1; /* saslname = 1*(...) */
    while (p < end) {
        if (*p == '=') {
            if (end - p < 3)
                return -1;
            if (p[1] == '2' && p[2] == 'C')
                out[n++] = ',';
            else if (p[1] == '3' && p[2] == 'D')
                out[n++] = '=';
            else
                return -1;
            p += 3;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    return (long)n;
}

/* RFC 5802 §7: printable = %x21-2B / %x2D-7E (no ','). */
bool sasl_nonce_ok(const char *p, const char *end)
{
    if (p == end)
        return false;
    for (; p < end; p++)
        if (*p < 0x21 || *p > 0x7e || *p == ',')
            return false;
    return true;
}

/* Extensions after the mandatory attributes: ',' ALPHA '=' 1*value-char.
 * They are allowed (RFC 5802 §5.1) and ignored. */
bool sasl_extensions_ok(const char *p, const char *end)
{
    while (p < end) {
        if (*p != ',' || end - p < 4)
            return false;
        p++;
        bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z');
        if (!alpha || p[1] != '=')
            return false;
        const char *v = p + 2;
        const char *ve = sasl_attr_end(v, end);
        if (ve == v)
            return false;
        p = ve;
    }
    return true;
}

/* RFC 5802 §7 cb-name = 1*(ALPHA / DIGIT / "." / "-"). */
static bool cb_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '-';
}

bool sasl_has_prefix(const char *p, const char *end, const char *pre)
{
    size_t n = strlen(pre);
    return (size_t)(end - p) >= n && memcmp(p, pre, n) == 0;
}

/* Selects the channel binding a -PLUS client asked for. RFC 5802 §6 wants
 * e=unsupported-channel-binding-type; RFC 6120 has no such condition, so it
 * is not-authorized. */
static int select_cb(sasl_server_t *s, const char *name, size_t len)
{
    unsigned type;
    const unsigned char *data;
    size_t dlen;

    if (len == 12 && memcmp(name, "tls-exporter", 12) == 0) {
        type = SASL_CB_TLS_EXPORTER;
        data = s->cb_exporter;
        dlen = s->cb_exporter_len;
    } else if (len == 10 && memcmp(name, "tls-unique", 10) == 0) {
        type = SASL_CB_TLS_UNIQUE;
        data = s->cb_unique;
        dlen = s->cb_unique_len;
    } else {
        return SASL_F_NOT_AUTHORIZED;
    }
    /* Without XEP-0440 the client guesses a type; with it, only the types
     * offered count. */
    if (data == NULL || (s->advertised_cb != 0 && !(s->advertised_cb & type)))
        return SASL_F_NOT_AUTHORIZED;
    s->cb_data = data;
    s->cb_len = dlen;
    return SASL_SUCCESS;
}

static char *strndup_(const char *p, size_t n)
{
    char *q = malloc(n + 1);
    if (q != NULL) {
        memcpy(q, p, n);
        q[n] = '\0';
    }
    return q;
}

int sasl_scram_first(sasl_server_t *s, const char *msg, size_t len)
{
    const char *p = msg, *end = msg + len;
    char flag;
    const char *cbname = NULL;
    size_t cbname_len = 0;
    const char *az = NULL, *az_end = NULL;

    s->plus = s->mech == SASL_MECH_SCRAM_SHA1_PLUS ||
              s->mech == SASL_MECH_SCRAM_SHA256_PLUS;
    s->hash =
        s->mech == SASL_MECH_SCRAM_SHA1 || s->mech == SASL_MECH_SCRAM_SHA1_PLUS
            ? SCRAM_SHA1
            : SCRAM_SHA256;

    /* RFC 5802 §7: every attribute is printable UTF-8, never NUL. */
    if (len == 0 || memchr(msg, '\0', len) != NULL)
        return SASL_F_MALFORMED_REQUEST;

    /* gs2-header = gs2-cbind-flag "," [ authzid ] "," */
    if (sasl_has_prefix(p, end, "n,") || sasl_has_prefix(p, end, "y,")) {
        flag = *p;
        p += 2;
    } else if (sasl_has_prefix(p, end, "p=")) {
        flag = 'p';
        cbname = p += 2;
        while (p < end && *p != ',') {
            if (!cb_name_char(*p))
                return SASL_F_MALFORMED_REQUEST;
            p++;
        }
        cbname_len = (size_t)(p - cbname);
        if (p == end || cbname_len == 0)
            return SASL_F_MALFORMED_REQUEST;
        p++;
    } else {
        return SASL_F_MALFORMED_REQUEST;
    }
    if (sasl_has_prefix(p, end, "a=")) {
        az = p + 2;
        az_end = sasl_attr_end(az, end);
        if (az_end == end)
            return SASL_F_MALFORMED_REQUEST;
        p = az_end + 1;
    } else if (p < end && *p == ',') {
        p++;
    } else {
        return SASL_F_MALFORMED_REQUEST;
    }
    const char *bare = p;
    size_t gs2_len = (size_t)(bare - msg);

    /* client-first-message-bare = [reserved-mext ","] username "," nonce
     * ["," extensions]. RFC 5802 §5.1: "m" is reserved and its presence
     * MUST fail the authentication. */
    if (!sasl_has_prefix(p, end, "n="))
        return SASL_F_MALFORMED_REQUEST;
    const char *user = p + 2;
    const char *user_end = sasl_attr_end(user, end);
    p = user_end;
    if (!sasl_has_prefix(p, end, ",r="))
        return SASL_F_MALFORMED_REQUEST;
    const char *cnonce = p + 3;
    const char *cnonce_end = sasl_attr_end(cnonce, end);
    if (!sasl_nonce_ok(cnonce, cnonce_end) ||
        !sasl_extensions_ok(cnonce_end, end))
        return SASL_F_MALFORMED_REQUEST;

    /* Decoded names are never longer than their encoding. */
    char *name = malloc(len + 1);
    if (name == NULL)
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    int rc = SASL_F_MALFORMED_REQUEST;
    long name_len = decode_saslname(user, user_end, name);
    if (name_len < 0)
        goto out;
    char *authzid = NULL;
    long az_len = 0;
    if (az != NULL) {
        authzid = name + name_len + 1;
        /* name's buffer holds both: the two encodings are disjoint parts
         * of the message. */
        az_len = decode_saslname(az, az_end, authzid);
        if (az_len < 0)
            goto out;
    }

    /* RFC 5802 §6: the channel-binding flag must match the mechanism. */
    if (s->plus && flag != 'p')
        goto out; /* -PLUS without binding: malformed */
    if (!s->plus && flag == 'p')
        goto out; /* binding data on a mechanism that has none */
    if (s->plus) {
        rc = select_cb(s, cbname, cbname_len);
        if (rc != SASL_SUCCESS)
            goto out;
    }
    /* RFC 5802 §6: "y" says the client could bind but believes the server
     * cannot. If we offered -PLUS, someone removed it on the way: a
     * downgrade. When -PLUS is not offered (configured off, e.g. for
     * clients that send "y" on plain SCRAM) the flag is honest. */
    if (flag == 'y' && (s->advertised_mechs & PLUS_MECHS)) {
        rc = SASL_F_NOT_AUTHORIZED;
        goto out;
    }

    /* RFC 5802 §5.1 asks for SaslPrep of the name; Nodeprep is a stricter
     * profile with the same mappings and normalization (and it refuses
     * every name SaslPrep would change into something else), and it gives
     * the account name we look up. A name it refuses is no account. */
    if (sasl_set_authcid(s, name, (size_t)name_len) < 0) {
        rc = SASL_F_NOT_AUTHORIZED;
        goto out;
    }
    if (authzid != NULL) {
        rc = sasl_check_authzid(s, authzid, (size_t)az_len);
        if (rc != SASL_SUCCESS)
            goto out;
    }

    s->gs2_header = strndup_(msg, gs2_len);
    s->gs2_len = gs2_len;
    s->client_first_bare = strndup_(bare, (size_t)(end - bare));
    s->nonce = strndup_(cnonce, (size_t)(cnonce_end - cnonce));
    if (s->gs2_header == NULL || s->client_first_bare == NULL ||
        s->nonce == NULL) {
        rc = SASL_F_TEMPORARY_AUTH_FAILURE;
        goto out;
    }
    s->state = SASL_ST_NEED_CRED;
    rc = SASL_NEED_CREDENTIALS;
out:
    free(name);
    return rc;
}

/* ---------------------------------------------------------- server-first */

/* The credentials the exchange runs on: the account's for this hash, or the
 * fake ones (unknown account, or none stored for this hash). */
static const scram_cred_t *active_cred(const sasl_server_t *s, bool *real)
{
    if (s->known && s->hash == SCRAM_SHA1 && s->have_sha1) {
        *real = true;
        return &s->sha1;
    }
    if (s->known && s->hash == SCRAM_SHA256 && s->have_sha256) {
        *real = true;
        return &s->sha256;
    }
    *real = false;
    return &s->fake;
}

int sasl_scram_server_first(sasl_server_t *s, buf_t *out)
{
    bool real;
    const scram_cred_t *c = active_cred(s, &real);
    unsigned char rnd[SERVER_NONCE_BYTES];
    char snonce[64], salt[128], h[128], iter[16];

    if (c->key_len != scram_key_len(s->hash))
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    if (rand_bytes(rnd, sizeof(rnd)) < 0 ||
        base64_encode(rnd, sizeof(rnd), BASE64_STD, snonce, sizeof(snonce)) <
            0 ||
        base64_encode(c->salt, c->salt_len, BASE64_STD, salt, sizeof(salt)) <
            0 ||
        downgrade_attr(s, h, sizeof(h)) < 0)
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    snprintf(iter, sizeof(iter), "%u", c->iterations);

    /* RFC 5802 §5.1: the server appends its nonce to the client's. */
    size_t cn = strlen(s->nonce), sn = strlen(snonce);
    char *nonce = malloc(cn + sn + 1);
    if (nonce == NULL)
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    memcpy(nonce, s->nonce, cn);
    memcpy(nonce + cn, snonce, sn + 1);
    free(s->nonce);
    s->nonce = nonce;

    /* server-first-message = nonce "," salt "," iteration-count
     * ["," extensions]; h is the XEP-0474 extension. */
    buf_t b = BUF_INIT;
    if (buf_append_str(&b, "r=") < 0 || buf_append_str(&b, nonce) < 0 ||
        buf_append_str(&b, ",s=") < 0 || buf_append_str(&b, salt) < 0 ||
        buf_append_str(&b, ",i=") < 0 || buf_append_str(&b, iter) < 0 ||
        buf_append_str(&b, ",h=") < 0 || buf_append_str(&b, h) < 0 ||
        buf_append(out, b.data, b.len) < 0) {
        buf_free(&b);
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    }
    s->server_first = b.data; /* NUL-terminated, owned from here */
    s->state = SASL_ST_WAIT_FINAL;
    return SASL_CHALLENGE;
}

/* ---------------------------------------------------------- client-final */

int sasl_scram_hmac(scram_hash_t h, const unsigned char *key, size_t keylen,
                    const void *data, size_t len, unsigned char *out)
{
    unsigned outlen = 0;
    if (HMAC(md_of(h), key, (int)keylen, data, len, out, &outlen) == NULL ||
        outlen != scram_key_len(h))
        return -1;
    return 0;
}

int sasl_scram_final(sasl_server_t *s, const char *msg, size_t len, buf_t *out)
{
    const char *end = msg + len;
    if (len == 0 || memchr(msg, '\0', len) != NULL)
        return SASL_F_MALFORMED_REQUEST;

    /* client-final-message = "c=" base64 "," "r=" nonce ["," extensions]
     * "," "p=" base64; the proof comes last (RFC 5802 §7). */
    if (!sasl_has_prefix(msg, end, "c="))
        return SASL_F_MALFORMED_REQUEST;
    const char *cb = msg + 2;
    const char *cb_end = sasl_attr_end(cb, end);
    if (!sasl_has_prefix(cb_end, end, ",r="))
        return SASL_F_MALFORMED_REQUEST;
    const char *r = cb_end + 3;
    const char *r_end = sasl_attr_end(r, end);
    /* The proof is the last attribute; whatever lies between the nonce and
     * it are extensions. */
    const char *proof = NULL;
    for (const char *q = end; q > r_end; q--) {
        if (q[-1] == ',') {
            proof = q;
            break;
        }
    }
    if (proof == NULL || !sasl_has_prefix(proof, end, "p=") ||
        !sasl_extensions_ok(r_end, proof - 1))
        return SASL_F_MALFORMED_REQUEST;
    const char *without_proof_end = proof - 1;
    proof += 2;

    size_t klen = scram_key_len(s->hash);
    unsigned char p_bytes[SASL_MSG_MAX / 4 * 3 + 3];
    size_t cb_b64 = (size_t)(cb_end - cb);
    size_t p_b64 = (size_t)(end - proof);
    unsigned char *cbind = malloc(cb_b64 / 4 * 3 + 1);
    if (cbind == NULL)
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    long cbind_len = base64_decode(cb, cb_b64, cbind, cb_b64 / 4 * 3 + 1);
    long plen = base64_decode(proof, p_b64, p_bytes, sizeof(p_bytes));
    int rc = SASL_F_MALFORMED_REQUEST;
    if (cbind_len < 0 || plen < 0 || (size_t)plen != klen)
        goto out;

    /* RFC 5802 §6/§7: c= is the gs2-header as the client sent it in its
     * first message, followed (for p=) by the channel-binding data of this
     * TLS connection. A mismatch is someone in the middle or a replay. */
    size_t want = s->gs2_len + (s->plus ? s->cb_len : 0);
    bool cb_ok = (size_t)cbind_len == want &&
                 memcmp(cbind, s->gs2_header, s->gs2_len) == 0 &&
                 (!s->plus || CRYPTO_memcmp(cbind + s->gs2_len, s->cb_data,
                                            s->cb_len) == 0);
    /* The nonce must be ours, whole: a client cannot choose it. */
    bool nonce_ok_ = (size_t)(r_end - r) == strlen(s->nonce) &&
                     memcmp(r, s->nonce, strlen(s->nonce)) == 0;

    /* AuthMessage := client-first-message-bare + "," +
     *                server-first-message + "," +
     *                client-final-message-without-proof (RFC 5802 §3). */
    buf_t am = BUF_INIT;
    if (buf_append_str(&am, s->client_first_bare) < 0 ||
        buf_append(&am, ",", 1) < 0 ||
        buf_append_str(&am, s->server_first) < 0 ||
        buf_append(&am, ",", 1) < 0 ||
        buf_append(&am, msg, (size_t)(without_proof_end - msg)) < 0) {
        buf_free(&am);
        rc = SASL_F_TEMPORARY_AUTH_FAILURE;
        goto out;
    }

    /* ClientSignature := HMAC(StoredKey, AuthMessage)
     * ClientKey := ClientProof XOR ClientSignature
     * the proof holds when H(ClientKey) == StoredKey.
     * The same work is done for fake credentials, so the time taken does
     * not tell an unknown account from a wrong password. */
    bool real;
    const scram_cred_t *c = active_cred(s, &real);
    unsigned char sig[SCRAM_KEY_MAX], key[SCRAM_KEY_MAX], stored[SCRAM_KEY_MAX];
    unsigned char server_sig[SCRAM_KEY_MAX];
    unsigned mdlen = 0;
    bool crypto_ok = sasl_scram_hmac(s->hash, c->stored_key, klen, am.data,
                                     am.len, sig) == 0 &&
                     sasl_scram_hmac(s->hash, c->server_key, klen, am.data,
                                     am.len, server_sig) == 0;
    buf_free(&am);
    if (!crypto_ok) {
        rc = SASL_F_TEMPORARY_AUTH_FAILURE;
        goto wipe;
    }
    for (size_t i = 0; i < klen; i++)
        key[i] = p_bytes[i] ^ sig[i];
    if (EVP_Digest(key, klen, stored, &mdlen, md_of(s->hash), NULL) != 1 ||
        mdlen != klen) {
        rc = SASL_F_TEMPORARY_AUTH_FAILURE;
        goto wipe;
    }
    bool proof_ok = CRYPTO_memcmp(stored, c->stored_key, klen) == 0;

    if (!(cb_ok && nonce_ok_ && proof_ok && real)) {
        rc = SASL_F_NOT_AUTHORIZED;
        goto wipe;
    }

    /* server-final-message = "v=" base64(ServerSignature). */
    char v[2 + SCRAM_KEY_MAX * 2] = "v=";
    if (base64_encode(server_sig, klen, BASE64_STD, v + 2, sizeof(v) - 2) < 0 ||
        buf_append_str(out, v) < 0) {
        rc = SASL_F_TEMPORARY_AUTH_FAILURE;
        goto wipe;
    }
    s->authenticated = true;
    rc = SASL_SUCCESS;
wipe:
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(sig, sizeof(sig));
    OPENSSL_cleanse(stored, sizeof(stored));
    OPENSSL_cleanse(server_sig, sizeof(server_sig));
out:
    free(cbind);
    return rc;
}
