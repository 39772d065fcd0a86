/* sasl_client: the client side of SASL for XMPP, sans-I/O. SCRAM is ours
 * on OpenSSL primitives (the XEP-0474 check needs the server-first message,
 * which GNU SASL's client keeps to itself); DIGEST-MD5 goes through GNU
 * SASL's client, on a context of its own per exchange as the server's
 * sasl_digest.c does. */
#include "sasl/sasl_client.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsasl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "base/base64.h"
#include "base/rand.h"
#include "sasl/sasl_internal.h"

/* RFC 5802 §5.1 leaves the nonce length open; 24 random bytes, as the
 * server sends. */
#define CLIENT_NONCE_BYTES 24

/* RFC 7677 §4 asks for at least 4096 iterations, but servers with fewer
 * exist and the count only protects their own store. The ceiling bounds
 * the CPU a hostile server can make us spend. */
#define SCRAM_ITERATIONS_MAX 10000000u

/* Longer names than XMPP allows (RFC 7622 §3.3.1, 1023 bytes) are refused
 * before anything is built from them. */
#define NAME_MAX_LEN     1023
#define PASSWORD_MAX_LEN 1024

/* The XEP-0474 hash text: base64 of at most a SHA-256 digest. */
#define DOWNGRADE_B64_MAX 64

typedef enum client_state {
    CL_START,         /* sasl_client_start() not yet called */
    CL_SENT,          /* PLAIN, EXTERNAL: initial response sent */
    CL_SCRAM_FIRST,   /* client-first sent, server-first due */
    CL_SCRAM_FINAL,   /* client-final sent, server-final due */
    CL_SCRAM_CHECKED, /* server-final verified as a challenge */
    CL_DIGEST,        /* DIGEST-MD5: challenges due */
    CL_DIGEST_DONE,   /* DIGEST-MD5: rspauth verified */
    CL_DONE,          /* success or failure returned: nothing more */
} client_state_t;

/* One exchange; owned by the connection that chose it. Every pointer member
 * is owned and freed (secrets wiped) by sasl_client_free(). */
struct sasl_client {
    sasl_mech_t mech;
    client_state_t state;

    char *authcid;  /* NULL for EXTERNAL */
    char *password; /* NULL for EXTERNAL */
    char *authzid;  /* NULL: none */
    char *domain;   /* DIGEST-MD5 only */

    /* SCRAM. */
    scram_hash_t hash;
    char cb_flag;           /* 'p', 'y' or 'n' (RFC 5802 §7 gs2-cbind-flag) */
    const char *cb_name;    /* for 'p': "tls-exporter" or "tls-unique" */
    unsigned char *cb_data; /* for 'p': this connection's binding data */
    size_t cb_len;
    /* The XEP-0474 hash of what the client saw advertised; empty when it
     * could not be computed (a check against it then fails). */
    char downgrade[DOWNGRADE_B64_MAX];
    char *gs2_header;
    char *client_first_bare;
    char nonce[CLIENT_NONCE_BYTES * 2];
    unsigned char server_sig[SCRAM_KEY_MAX]; /* expected in v= */

    /* DIGEST-MD5. */
    Gsasl *gsasl;
    Gsasl_session *gsasl_sess;
};

/* ------------------------------------------------------------- helpers */

static const EVP_MD *md_of(scram_hash_t h)
{
    return h == SCRAM_SHA1 ? EVP_sha1() : EVP_sha256();
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *oom = true;
    return d;
}

static void free_str_wiped(char *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

static bool is_scram(sasl_mech_t m)
{
    return m == SASL_MECH_SCRAM_SHA1 || m == SASL_MECH_SCRAM_SHA1_PLUS ||
           m == SASL_MECH_SCRAM_SHA256 || m == SASL_MECH_SCRAM_SHA256_PLUS;
}

static bool is_plus(sasl_mech_t m)
{
    return m == SASL_MECH_SCRAM_SHA1_PLUS || m == SASL_MECH_SCRAM_SHA256_PLUS;
}

/* ---------------------------------------------------------------- choice */

static bool offered(const sasl_client_params_t *p, sasl_mech_t m)
{
    const char *name = sasl_mech_name(m);
    for (size_t i = 0; i < p->server_mech_count; i++)
        if (p->server_mechs[i] != NULL && strcmp(p->server_mechs[i], name) == 0)
            return true;
    return false;
}

static bool cb_offered(const sasl_client_params_t *p, const char *type)
{
    for (size_t i = 0; i < p->server_cb_count; i++)
        if (p->server_cb != NULL && p->server_cb[i] != NULL &&
            strcmp(p->server_cb[i], type) == 0)
            return true;
    return false;
}

/* The channel binding a -PLUS mechanism would use, or NULL. With XEP-0440
 * only the types the server lists count, tls-exporter first (RFC 9266 §3:
 * tls-unique is unsafe without the extended master secret and undefined in
 * TLS 1.3); without it, RFC 9266 makes tls-exporter the default. */
static const char *pick_cb(const sasl_client_params_t *p,
                           const unsigned char **data, size_t *len)
{
    bool have_exp = p->cb_exporter != NULL && p->cb_exporter_len > 0;
    bool have_uni = p->cb_unique != NULL && p->cb_unique_len > 0;
    bool listed = p->server_cb_count > 0;

    if (!p->tls)
        return NULL;
    /* Without an XEP-0440 list, RFC 9266's default: tls-exporter on TLS
     * 1.3 and tls-unique on TLS 1.2. tls-unique data exists only on TLS
     * 1.2, so having it means this is TLS 1.2 (where servers such as
     * Prosody 0.12 bind with tls-unique and reject tls-exporter). */
    if (!listed && have_uni) {
        *data = p->cb_unique;
        *len = p->cb_unique_len;
        return "tls-unique";
    }
    if (have_exp && (!listed || cb_offered(p, "tls-exporter"))) {
        *data = p->cb_exporter;
        *len = p->cb_exporter_len;
        return "tls-exporter";
    }
    if (have_uni && (!listed || cb_offered(p, "tls-unique"))) {
        *data = p->cb_unique;
        *len = p->cb_unique_len;
        return "tls-unique";
    }
    return NULL;
}

/* NULL when m can be used, else why not. */
static const char *unusable(const sasl_client_params_t *p, sasl_mech_t m,
                            bool have_cb)
{
    bool have_pw = p->password != NULL;
    bool have_name = p->authcid != NULL && p->authcid[0] != '\0';

    if (m == SASL_MECH_EXTERNAL) {
        if (!p->tls || !p->have_client_cert)
            return "the server offers EXTERNAL, which needs a client "
                   "certificate on an encrypted stream";
        return NULL;
    }
    if (!have_pw)
        return "no password is configured and EXTERNAL is not possible";
    if (!have_name)
        return "no account name is configured";
    switch (m) {
    case SASL_MECH_SCRAM_SHA256_PLUS:
    case SASL_MECH_SCRAM_SHA1_PLUS:
        return have_cb ? NULL
                       : "the server offers SCRAM only with channel binding, "
                         "and this connection has no binding data it accepts";
    case SASL_MECH_PLAIN:
        if (!p->tls)
            return "the server offers only PLAIN and the stream is not "
                   "encrypted";
        return p->allow_plain ? NULL
                              : "the server offers only PLAIN, which is not "
                                "allowed";
    case SASL_MECH_DIGEST_MD5:
        if (p->domain == NULL || p->domain[0] == '\0')
            return "DIGEST-MD5 needs the server's domain";
        return p->allow_digest_md5 ? NULL
                                   : "the server offers only DIGEST-MD5, "
                                     "which is not allowed";
    default:
        return NULL;
    }
}

/* Strongest first. A password-less client with a certificate takes
 * EXTERNAL whatever else is offered; one with a password prefers SCRAM,
 * which also proves the server knows the credentials. */
static const sasl_mech_t order[] = {
    SASL_MECH_SCRAM_SHA256_PLUS, SASL_MECH_SCRAM_SHA1_PLUS,
    SASL_MECH_SCRAM_SHA256,      SASL_MECH_SCRAM_SHA1,
    SASL_MECH_EXTERNAL,          SASL_MECH_PLAIN,
    SASL_MECH_DIGEST_MD5,
};

static int choose(const sasl_client_params_t *p, const char **why,
                  const unsigned char **cb_data, size_t *cb_len,
                  const char **cb_name)
{
    *cb_name = pick_cb(p, cb_data, cb_len);
    const char *reason = NULL;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        sasl_mech_t m = order[i];
        if (!offered(p, m))
            continue;
        const char *no = unusable(p, m, *cb_name != NULL);
        if (no == NULL)
            return (int)m;
        /* The strongest mechanism's reason says most about the problem. */
        if (reason == NULL)
            reason = no;
    }
    *why = reason != NULL ? reason
                          : "the server offers no SASL mechanism we support";
    return -1;
}

/* ------------------------------------------------------------- lifetime */

/* The XEP-0474 hash of what this client saw advertised, for the SCRAM hash
 * in use. Left empty when it cannot be computed (too many names). */
static void compute_downgrade(sasl_client_t *c, const sasl_client_params_t *p)
{
    c->downgrade[0] = '\0';
    if (p->server_cb_count > 0 && p->server_cb == NULL)
        return;
    for (size_t i = 0; i < p->server_mech_count; i++)
        if (p->server_mechs[i] == NULL)
            return;
    for (size_t i = 0; i < p->server_cb_count; i++)
        if (p->server_cb[i] == NULL)
            return;
    if (sasl_downgrade_hash(c->hash, p->server_mechs, p->server_mech_count,
                            p->server_cb, p->server_cb_count, c->downgrade,
                            sizeof(c->downgrade)) < 0)
        c->downgrade[0] = '\0';
}

static bool param_too_long(const sasl_client_params_t *p)
{
    return (p->authcid != NULL && strlen(p->authcid) > NAME_MAX_LEN) ||
           (p->authzid != NULL && strlen(p->authzid) > NAME_MAX_LEN) ||
           (p->domain != NULL && strlen(p->domain) > NAME_MAX_LEN) ||
           (p->password != NULL && strlen(p->password) > PASSWORD_MAX_LEN) ||
           p->cb_exporter_len > SASL_MSG_MAX / 4 ||
           p->cb_unique_len > SASL_MSG_MAX / 4;
}

sasl_client_t *sasl_client_choose(const sasl_client_params_t *p,
                                  const char **why)
{
    const char *dummy;
    const unsigned char *cb_data = NULL;
    size_t cb_len = 0;
    const char *cb_name = NULL;

    if (why == NULL)
        why = &dummy;
    *why = NULL;
    if (p->server_mech_count > 0 && p->server_mechs == NULL) {
        *why = "no mechanism list";
        return NULL;
    }
    if (param_too_long(p)) {
        *why = "an account name, password or binding is too long";
        return NULL;
    }
    int m = choose(p, why, &cb_data, &cb_len, &cb_name);
    if (m < 0)
        return NULL;

    sasl_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        *why = "out of memory";
        return NULL;
    }
    c->mech = (sasl_mech_t)m;
    c->state = CL_START;
    bool oom = false;
    c->authzid = dup_or_null(p->authzid, &oom);
    if (c->mech != SASL_MECH_EXTERNAL) {
        c->authcid = dup_or_null(p->authcid, &oom);
        c->password = dup_or_null(p->password, &oom);
    }
    if (c->mech == SASL_MECH_DIGEST_MD5)
        c->domain = dup_or_null(p->domain, &oom);

    if (is_scram(c->mech)) {
        c->hash = c->mech == SASL_MECH_SCRAM_SHA1 ||
                          c->mech == SASL_MECH_SCRAM_SHA1_PLUS
                      ? SCRAM_SHA1
                      : SCRAM_SHA256;
        bool could_bind =
            p->tls && ((p->cb_exporter != NULL && p->cb_exporter_len > 0) ||
                       (p->cb_unique != NULL && p->cb_unique_len > 0));
        if (is_plus(c->mech)) {
            c->cb_flag = 'p';
            c->cb_name = cb_name;
            c->cb_data = malloc(cb_len);
            if (c->cb_data == NULL)
                oom = true;
            else
                memcpy(c->cb_data, cb_data, cb_len);
            c->cb_len = cb_len;
        } else if (could_bind && !offered(p, SASL_MECH_SCRAM_SHA256_PLUS) &&
                   !offered(p, SASL_MECH_SCRAM_SHA1_PLUS)) {
            /* RFC 5802 §6: "y" tells a server that did offer -PLUS (and
             * had it stripped on the way) that we were downgraded. */
            c->cb_flag = 'y';
        } else {
            /* We cannot bind, or the server offers -PLUS with types we
             * cannot use: "y" would claim it offers none. */
            c->cb_flag = 'n';
        }
        compute_downgrade(c, p);
    }
    if (oom) {
        sasl_client_free(c);
        *why = "out of memory";
        return NULL;
    }
    return c;
}

void sasl_client_free(sasl_client_t *c)
{
    if (c == NULL)
        return;
    if (c->gsasl_sess != NULL)
        gsasl_finish(c->gsasl_sess);
    if (c->gsasl != NULL)
        gsasl_done(c->gsasl);
    free(c->authcid);
    free_str_wiped(c->password);
    free(c->authzid);
    free(c->domain);
    free(c->cb_data);
    free(c->gs2_header);
    free(c->client_first_bare);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

sasl_mech_t sasl_client_mech(const sasl_client_t *c)
{
    return c->mech;
}

/* ---------------------------------------------------------------- SCRAM */

/* RFC 5802 §5.1 saslname: ',' and '=' are written "=2C" and "=3D". */
static int append_saslname(buf_t *b, const char *s)
{
    for (; *s != '\0'; s++) {
        int rc = *s == ','   ? buf_append(b, "=2C", 3)
                 : *s == '=' ? buf_append(b, "=3D", 3)
                             : buf_append(b, s, 1);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int scram_start(sasl_client_t *c, buf_t *out)
{
    unsigned char rnd[CLIENT_NONCE_BYTES];
    buf_t gs2 = BUF_INIT, bare = BUF_INIT;
    int rc = SASL_F_TEMPORARY_AUTH_FAILURE;

    if (rand_bytes(rnd, sizeof(rnd)) < 0 ||
        base64_encode(rnd, sizeof(rnd), BASE64_STD, c->nonce,
                      sizeof(c->nonce)) < 0)
        goto out;

    /* gs2-header = gs2-cbind-flag "," [ authzid ] "," */
    int e = 0;
    if (c->cb_flag == 'p')
        e |= buf_append_str(&gs2, "p=") | buf_append_str(&gs2, c->cb_name);
    else
        e |= buf_append(&gs2, &c->cb_flag, 1);
    e |= buf_append(&gs2, ",", 1);
    if (c->authzid != NULL && c->authzid[0] != '\0')
        e |= buf_append_str(&gs2, "a=") | append_saslname(&gs2, c->authzid);
    e |= buf_append(&gs2, ",", 1);

    /* client-first-message-bare = username "," nonce. The name goes as the
     * caller prepared it (nodeprep'd, which SaslPrep leaves unchanged). */
    e |= buf_append_str(&bare, "n=") | append_saslname(&bare, c->authcid) |
         buf_append_str(&bare, ",r=") | buf_append_str(&bare, c->nonce);
    if (e < 0 || buf_append(out, gs2.data, gs2.len) < 0 ||
        buf_append(out, bare.data, bare.len) < 0)
        goto out;
    c->gs2_header = gs2.data;
    c->client_first_bare = bare.data;
    gs2.data = bare.data = NULL;
    c->state = CL_SCRAM_FIRST;
    rc = 0;
out:
    buf_free(&gs2);
    buf_free(&bare);
    return rc;
}

/* A decimal iteration count in [1, SCRAM_ITERATIONS_MAX]; 0 when not. */
static unsigned parse_iterations(const char *p, const char *end)
{
    unsigned long v = 0;
    if (p == end || *p == '0')
        return 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > SCRAM_ITERATIONS_MAX)
            return 0;
    }
    return (unsigned)v;
}

/* The value of the attribute that [p, end) starts with when it starts
 * with `pre` (e.g. ",s="), with its end in *vend; NULL when it does not. */
static const char *attr(const char *p, const char *end, const char *pre,
                        const char **vend)
{
    if (!sasl_has_prefix(p, end, pre))
        return NULL;
    p += strlen(pre);
    *vend = sasl_attr_end(p, end);
    return p;
}

/* The value of extension `name` in [p, end) (",x=...,y=..."), or NULL. */
static const char *find_ext(const char *p, const char *end, char name,
                            const char **vend)
{
    while (p < end) {
        const char *v = p + 3; /* skip ",x=" (checked by extensions_ok) */
        const char *ve = sasl_attr_end(v, end);
        if (p[1] == name) {
            *vend = ve;
            return v;
        }
        p = ve;
    }
    return NULL;
}

/* SaltedPassword := Hi(Normalize(password), salt, i) (RFC 5802 §3), with
 * the SaslPrep the server used when it made the credentials. */
static int salted_password(const sasl_client_t *c, const unsigned char *salt,
                           size_t salt_len, unsigned iterations,
                           unsigned char *out)
{
    char *prep = scram_saslprep(c->password);
    if (prep == NULL)
        return -1;
    size_t plen = strlen(prep);
    int ok = plen > 0 && salt_len <= INT_MAX &&
             PKCS5_PBKDF2_HMAC(prep, (int)plen, salt, (int)salt_len,
                               (int)iterations, md_of(c->hash),
                               (int)scram_key_len(c->hash), out) == 1;
    free_str_wiped(prep);
    return ok ? 0 : -1;
}

/* The client-final message without proof, and the proof, for the
 * server-first message sf (nonce r, salt, iterations). */
static int scram_final(sasl_client_t *c, const char *sf, size_t sf_len,
                       const char *r, size_t r_len, const unsigned char *salt,
                       size_t salt_len, unsigned iterations, buf_t *out)
{
    size_t klen = scram_key_len(c->hash);
    /* Everything derived from the password, wiped in one go. */
    struct {
        unsigned char salted[SCRAM_KEY_MAX], client_key[SCRAM_KEY_MAX];
        unsigned char stored[SCRAM_KEY_MAX], sig[SCRAM_KEY_MAX];
        unsigned char server_key[SCRAM_KEY_MAX], proof[SCRAM_KEY_MAX];
    } k;
    unsigned mdlen = 0;
    buf_t cbind = BUF_INIT, msg = BUF_INIT, am = BUF_INIT;
    int rc = SASL_F_TEMPORARY_AUTH_FAILURE;

    /* c= is base64(gs2-header + channel-binding data for 'p'). */
    if (buf_append_str(&cbind, c->gs2_header) < 0 ||
        (c->cb_flag == 'p' && buf_append(&cbind, c->cb_data, c->cb_len) < 0))
        goto out;
    size_t b64cap = base64_encoded_size(cbind.len);
    if (buf_append_str(&msg, "c=") < 0 || buf_reserve(&msg, b64cap) < 0)
        goto out;
    long n = base64_encode(cbind.data, cbind.len, BASE64_STD,
                           msg.data + msg.len, msg.cap - msg.len);
    if (n < 0)
        goto out;
    msg.len += (size_t)n;
    if (buf_append_str(&msg, ",r=") < 0 || buf_append(&msg, r, r_len) < 0)
        goto out;

    /* AuthMessage := client-first-message-bare "," server-first-message ","
     * client-final-message-without-proof. */
    if (buf_append_str(&am, c->client_first_bare) < 0 ||
        buf_append(&am, ",", 1) < 0 || buf_append(&am, sf, sf_len) < 0 ||
        buf_append(&am, ",", 1) < 0 || buf_append(&am, msg.data, msg.len) < 0)
        goto out;

    /* ClientKey := HMAC(SaltedPassword, "Client Key"), StoredKey :=
     * H(ClientKey), ClientSignature := HMAC(StoredKey, AuthMessage),
     * ClientProof := ClientKey XOR ClientSignature; ServerSignature :=
     * HMAC(HMAC(SaltedPassword, "Server Key"), AuthMessage). */
    if (salted_password(c, salt, salt_len, iterations, k.salted) < 0) {
        /* A password SaslPrep refuses cannot be what the account has. */
        rc = SASL_F_NOT_AUTHORIZED;
        goto wipe;
    }
    scram_hash_t h = c->hash;
    if (sasl_scram_hmac(h, k.salted, klen, "Client Key", 10, k.client_key) ||
        EVP_Digest(k.client_key, klen, k.stored, &mdlen, md_of(h), NULL) != 1 ||
        mdlen != klen ||
        sasl_scram_hmac(h, k.stored, klen, am.data, am.len, k.sig) ||
        sasl_scram_hmac(h, k.salted, klen, "Server Key", 10, k.server_key) ||
        sasl_scram_hmac(h, k.server_key, klen, am.data, am.len, c->server_sig))
        goto wipe;
    for (size_t i = 0; i < klen; i++)
        k.proof[i] = k.client_key[i] ^ k.sig[i];
    char p64[SCRAM_KEY_MAX * 2];
    if (base64_encode(k.proof, klen, BASE64_STD, p64, sizeof(p64)) < 0 ||
        buf_append_str(&msg, ",p=") < 0 || buf_append_str(&msg, p64) < 0 ||
        buf_append(out, msg.data, msg.len) < 0)
        goto wipe;
    c->state = CL_SCRAM_FINAL;
    rc = SASL_CHALLENGE;
wipe:
    OPENSSL_cleanse(&k, sizeof(k));
out:
    buf_free(&cbind);
    buf_free(&msg);
    buf_free(&am);
    return rc;
}

static int scram_server_first(sasl_client_t *c, const char *sf, size_t len,
                              buf_t *out)
{
    const char *end = sf + len;

    /* server-first-message = [reserved-mext ","] nonce "," salt ","
     * iteration-count ["," extensions]. RFC 5802 §5.1: a mandatory
     * extension we do not know (m=) fails the exchange. */
    if (sasl_has_prefix(sf, end, "m="))
        return SASL_F_NOT_AUTHORIZED;
    const char *r_end = NULL, *s_end = NULL, *i_end = NULL;
    const char *r = attr(sf, end, "r=", &r_end);
    const char *s = r != NULL ? attr(r_end, end, ",s=", &s_end) : NULL;
    const char *i = s != NULL ? attr(s_end, end, ",i=", &i_end) : NULL;
    if (i == NULL || !sasl_nonce_ok(r, r_end) ||
        !sasl_extensions_ok(i_end, end))
        return SASL_F_MALFORMED_REQUEST;

    /* RFC 5802 §5.1: the nonce is ours with the server's appended; one that
     * is not (or adds nothing) is a replay or someone else's exchange. */
    size_t cn = strlen(c->nonce);
    if ((size_t)(r_end - r) <= cn || memcmp(r, c->nonce, cn) != 0)
        return SASL_F_NOT_AUTHORIZED;
    unsigned iterations = parse_iterations(i, i_end);
    if (iterations == 0)
        return SASL_F_NOT_AUTHORIZED;

    /* XEP-0474: h is the hash of what the server advertised. If it differs
     * from what we received, someone changed the list (stripped -PLUS,
     * say) on the way. A server without XEP-0474 sends no h. */
    const char *h_end = NULL;
    const char *h = find_ext(i_end, end, 'h', &h_end);
    if (h != NULL) {
        size_t hl = (size_t)(h_end - h);
        if (c->downgrade[0] == '\0' || hl != strlen(c->downgrade) ||
            CRYPTO_memcmp(h, c->downgrade, hl) != 0)
            return SASL_F_NOT_AUTHORIZED;
    }

    size_t s64 = (size_t)(s_end - s);
    unsigned char *salt = malloc(s64 / 4 * 3 + 3);
    if (salt == NULL)
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    long salt_len = base64_decode(s, s64, salt, s64 / 4 * 3 + 3);
    int rc = SASL_F_MALFORMED_REQUEST;
    if (salt_len > 0)
        rc = scram_final(c, sf, len, r, (size_t)(r_end - r), salt,
                         (size_t)salt_len, iterations, out);
    free(salt);
    return rc;
}

/* server-final-message = (server-error / verifier) ["," extensions]. */
static int scram_verify(sasl_client_t *c, const char *msg, size_t len)
{
    const char *end = msg + len;
    size_t klen = scram_key_len(c->hash);
    unsigned char v[SCRAM_KEY_MAX * 2];

    /* e= is the server refusing (RFC 5802 §7 server-error). */
    const char *p_end = NULL;
    const char *p = attr(msg, end, "v=", &p_end);
    if (p == NULL || (size_t)(p_end - p) > sizeof(v) / 3 * 4 ||
        !sasl_extensions_ok(p_end, end))
        return SASL_F_NOT_AUTHORIZED;
    long n = base64_decode(p, (size_t)(p_end - p), v, sizeof(v));
    if (n < 0 || (size_t)n != klen ||
        CRYPTO_memcmp(v, c->server_sig, klen) != 0)
        return SASL_F_NOT_AUTHORIZED;
    return SASL_SUCCESS;
}

/* ----------------------------------------------------------- DIGEST-MD5 */

static int digest_start(sasl_client_t *c)
{
    Gsasl_session *sess = NULL;

    if (gsasl_init(&c->gsasl) != GSASL_OK) {
        c->gsasl = NULL;
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    }
    if (gsasl_client_start(c->gsasl, "DIGEST-MD5", &sess) != GSASL_OK)
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    c->gsasl_sess = sess;
    /* RFC 6120 §6.3.6 (and RFC 2831 §2.1.2): digest-uri "xmpp/<domain>".
     * No callback is installed: every property is set here. */
    if (gsasl_property_set(sess, GSASL_AUTHID, c->authcid) != GSASL_OK ||
        gsasl_property_set(sess, GSASL_PASSWORD, c->password) != GSASL_OK ||
        gsasl_property_set(sess, GSASL_SERVICE, "xmpp") != GSASL_OK ||
        gsasl_property_set(sess, GSASL_HOSTNAME, c->domain) != GSASL_OK ||
        (c->authzid != NULL && c->authzid[0] != '\0' &&
         gsasl_property_set(sess, GSASL_AUTHZID, c->authzid) != GSASL_OK))
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    c->state = CL_DIGEST;
    return 0;
}

/* A challenge, or (at success) the rspauth sent as additional data. */
static int digest_step(sasl_client_t *c, const unsigned char *in, size_t len,
                       buf_t *out)
{
    char *o = NULL;
    size_t olen = 0;
    int rc = gsasl_step(c->gsasl_sess, (const char *)in, len, &o, &olen);
    int result;
    if (rc == GSASL_NEEDS_MORE) {
        result = buf_append(out, o, olen) < 0 ? SASL_F_TEMPORARY_AUTH_FAILURE
                                              : SASL_CHALLENGE;
    } else if (rc == GSASL_OK) {
        /* rspauth checked: the server knows the password. RFC 2831
         * §2.1.3: the answer is an empty response. */
        c->state = CL_DIGEST_DONE;
        result = SASL_CHALLENGE;
    } else if (rc == GSASL_MALLOC_ERROR) {
        result = SASL_F_TEMPORARY_AUTH_FAILURE;
    } else {
        result = SASL_F_NOT_AUTHORIZED;
    }
    if (o != NULL) {
        OPENSSL_cleanse(o, olen);
        gsasl_free(o);
    }
    return result;
}

/* ------------------------------------------------------------ the steps */

int sasl_client_start(sasl_client_t *c, buf_t *out, bool *has_data)
{
    int rc = 0;

    *has_data = false;
    if (c->state != CL_START) {
        rc = SASL_F_MALFORMED_REQUEST;
        goto out;
    }
    switch (c->mech) {
    case SASL_MECH_PLAIN: {
        /* RFC 4616 §2: [authzid] NUL authcid NUL passwd. */
        const char *az = c->authzid != NULL ? c->authzid : "";
        if (buf_append_str(out, az) < 0 || buf_append(out, "", 1) < 0 ||
            buf_append_str(out, c->authcid) < 0 || buf_append(out, "", 1) < 0 ||
            buf_append_str(out, c->password) < 0) {
            rc = SASL_F_TEMPORARY_AUTH_FAILURE;
            goto out;
        }
        *has_data = true;
        c->state = CL_SENT;
        break;
    }
    case SASL_MECH_EXTERNAL:
        /* RFC 4422 App. A: the authzid, empty for none. An empty initial
         * response is still one ("=" on the wire, RFC 6120 §6.4.2), which
         * saves the round trip of an empty challenge. */
        if (c->authzid != NULL && buf_append_str(out, c->authzid) < 0) {
            rc = SASL_F_TEMPORARY_AUTH_FAILURE;
            goto out;
        }
        *has_data = true;
        c->state = CL_SENT;
        break;
    case SASL_MECH_DIGEST_MD5:
        /* The server speaks first (RFC 2831 §2.1.1). */
        rc = digest_start(c);
        break;
    default:
        rc = scram_start(c, out);
        *has_data = rc == 0;
        break;
    }
out:
    if (rc < 0)
        c->state = CL_DONE;
    return rc;
}

static int dispatch_step(sasl_client_t *c, const unsigned char *in, size_t len,
                         buf_t *out)
{
    switch (c->state) {
    case CL_SCRAM_FIRST:
        if (memchr(in, '\0', len) != NULL)
            return SASL_F_MALFORMED_REQUEST;
        return scram_server_first(c, (const char *)in, len, out);
    case CL_SCRAM_FINAL: {
        /* Some servers send the server-final message as a challenge and
         * then an empty success (RFC 6120 §6.3.10 allows both forms). */
        int rc = scram_verify(c, (const char *)in, len);
        if (rc < 0)
            return rc;
        c->state = CL_SCRAM_CHECKED;
        return SASL_CHALLENGE;
    }
    case CL_DIGEST:
        return digest_step(c, in, len, out);
    default:
        /* PLAIN and EXTERNAL have nothing to answer; a challenge after the
         * mechanism's last message is out of order. */
        return SASL_F_MALFORMED_REQUEST;
    }
}

int sasl_client_step(sasl_client_t *c, const unsigned char *in, size_t len,
                     buf_t *out)
{
    static const unsigned char empty[1] = "";
    int rc;

    if (in == NULL) {
        in = empty;
        len = 0;
    }
    if (len > SASL_MSG_MAX)
        rc = SASL_F_MALFORMED_REQUEST;
    else
        rc = dispatch_step(c, in, len, out);
    if (rc < 0)
        c->state = CL_DONE;
    return rc;
}

int sasl_client_finish(sasl_client_t *c, const unsigned char *in, size_t len)
{
    static const unsigned char empty[1] = "";
    buf_t ignored = BUF_INIT;
    int rc;

    if (in == NULL) {
        in = empty;
        len = 0;
    }
    if (len > SASL_MSG_MAX) {
        rc = SASL_F_MALFORMED_REQUEST;
        goto out;
    }
    switch (c->state) {
    case CL_SENT:
        /* PLAIN and EXTERNAL define no additional data; there is nothing
         * to check in what the server says. */
        rc = SASL_SUCCESS;
        break;
    case CL_SCRAM_FINAL:
        /* An empty success here is a server that skipped its proof. */
        rc = scram_verify(c, (const char *)in, len);
        break;
    case CL_SCRAM_CHECKED:
    case CL_DIGEST_DONE:
        rc = len == 0 ? SASL_SUCCESS : SASL_F_NOT_AUTHORIZED;
        break;
    case CL_DIGEST:
        /* rspauth as additional data of <success/> (RFC 6120 §6.3.10).
         * Without it the server proved nothing. */
        rc = len == 0 ? SASL_F_NOT_AUTHORIZED
                      : digest_step(c, in, len, &ignored);
        if (rc == SASL_CHALLENGE)
            rc = c->state == CL_DIGEST_DONE ? SASL_SUCCESS
                                            : SASL_F_NOT_AUTHORIZED;
        break;
    default:
        /* Success before the mechanism got to its end: the server did not
         * prove anything (SCRAM before server-first, say). */
        rc = SASL_F_NOT_AUTHORIZED;
        break;
    }
out:
    buf_free(&ignored);
    c->state = CL_DONE;
    return rc;
}
