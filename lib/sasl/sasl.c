/* sasl: the exchange state machine, PLAIN and EXTERNAL. SCRAM lives in
 * sasl_scram.c and DIGEST-MD5 in sasl_digest.c; they share struct
 * sasl_server through sasl_internal.h. */
#include "sasl/sasl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "base/rand.h"
#include "jid/jid.h"
#include "sasl/sasl_internal.h"

/* RFC 4616 §2: authcid and authzid are at most 255 octets in the
 * mechanism's own ABNF, but XMPP node names may reach 1023 bytes (RFC 7622
 * §3.3.1), and the password limit follows the same order of magnitude. */
#define PLAIN_AUTHCID_MAX  1023
#define PLAIN_PASSWORD_MAX 1024

/* RFC 7677 §4: the minimum iteration count for SCRAM-SHA-256. */
#define SCRAM_DEFAULT_ITERATIONS 4096

static const char *const mech_names[SASL_MECH_COUNT] = {
    [SASL_MECH_SCRAM_SHA256_PLUS] = "SCRAM-SHA-256-PLUS",
    [SASL_MECH_SCRAM_SHA256] = "SCRAM-SHA-256",
    [SASL_MECH_SCRAM_SHA1_PLUS] = "SCRAM-SHA-1-PLUS",
    [SASL_MECH_SCRAM_SHA1] = "SCRAM-SHA-1",
    [SASL_MECH_PLAIN] = "PLAIN",
    [SASL_MECH_EXTERNAL] = "EXTERNAL",
    [SASL_MECH_DIGEST_MD5] = "DIGEST-MD5",
};

const char *sasl_mech_name(sasl_mech_t m)
{
    if ((unsigned)m >= SASL_MECH_COUNT)
        return NULL;
    return mech_names[m];
}

int sasl_mech_from_name(const char *name)
{
    if (name == NULL)
        return -1;
    /* RFC 4422 §3.1: mechanism names are compared exactly; they are
     * registered in upper case. */
    for (int i = 0; i < SASL_MECH_COUNT; i++)
        if (strcmp(name, mech_names[i]) == 0)
            return i;
    return -1;
}

const char *sasl_condition(int result)
{
    switch (result) {
    case SASL_F_ABORTED:
        return "aborted";
    case SASL_F_ACCOUNT_DISABLED:
        return "account-disabled";
    case SASL_F_CREDENTIALS_EXPIRED:
        return "credentials-expired";
    case SASL_F_ENCRYPTION_REQUIRED:
        return "encryption-required";
    case SASL_F_INCORRECT_ENCODING:
        return "incorrect-encoding";
    case SASL_F_INVALID_AUTHZID:
        return "invalid-authzid";
    case SASL_F_INVALID_MECHANISM:
        return "invalid-mechanism";
    case SASL_F_MALFORMED_REQUEST:
        return "malformed-request";
    case SASL_F_MECHANISM_TOO_WEAK:
        return "mechanism-too-weak";
    case SASL_F_NOT_AUTHORIZED:
        return "not-authorized";
    case SASL_F_TEMPORARY_AUTH_FAILURE:
        return "temporary-auth-failure";
    default:
        return NULL;
    }
}

/* ------------------------------------------------------------ lifetime */

static void *memdup(const void *p, size_t n)
{
    void *q = malloc(n > 0 ? n : 1);
    if (q != NULL && n > 0)
        memcpy(q, p, n);
    return q;
}

sasl_server_t *sasl_server_new(sasl_mech_t m, const sasl_server_params_t *p)
{
    sasl_server_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->mech = m;
    s->state = SASL_ST_START;
    s->advertised_mechs = p->advertised_mechs;
    s->advertised_cb = p->advertised_cb;
    s->tls = p->tls;
    s->scram_iterations = p->scram_iterations != 0 ? p->scram_iterations
                                                   : SCRAM_DEFAULT_ITERATIONS;

    /* The domain is compared with prepared JIDs, so it is prepared too;
     * one that nameprep refuses is kept as given and simply matches no
     * authzid. */
    const char *dom = p->domain != NULL ? p->domain : "";
    char prepared[JID_PART_BUF];
    size_t plen;
    if (jid_prepare_domain(dom, strlen(dom), 0, prepared, &plen) == JID_OK)
        dom = prepared;
    s->domain = strdup(dom);
    if (s->domain == NULL)
        goto oom;

    if (p->cb_exporter != NULL && p->cb_exporter_len > 0) {
        s->cb_exporter = memdup(p->cb_exporter, p->cb_exporter_len);
        if (s->cb_exporter == NULL)
            goto oom;
        s->cb_exporter_len = p->cb_exporter_len;
    }
    if (p->cb_unique != NULL && p->cb_unique_len > 0) {
        s->cb_unique = memdup(p->cb_unique, p->cb_unique_len);
        if (s->cb_unique == NULL)
            goto oom;
        s->cb_unique_len = p->cb_unique_len;
    }
    if (p->server_secret != NULL && p->server_secret_len > 0) {
        s->server_secret = memdup(p->server_secret, p->server_secret_len);
        if (s->server_secret == NULL)
            goto oom;
        s->server_secret_len = p->server_secret_len;
    }
    if (p->cert_names != NULL && p->cert_name_count > 0) {
        s->cert_names = calloc(p->cert_name_count, sizeof(char *));
        if (s->cert_names == NULL)
            goto oom;
        s->cert_name_count = p->cert_name_count;
        for (size_t i = 0; i < p->cert_name_count; i++) {
            const char *n = p->cert_names[i] != NULL ? p->cert_names[i] : "";
            s->cert_names[i] = strdup(n);
            if (s->cert_names[i] == NULL)
                goto oom;
        }
    }
    return s;
oom:
    sasl_server_free(s);
    return NULL;
}

/* free() after wiping: the buffers held secrets or what derives from them. */
static void free_wiped(void *p, size_t n)
{
    if (p == NULL)
        return;
    OPENSSL_cleanse(p, n);
    free(p);
}

void sasl_server_free(sasl_server_t *s)
{
    if (s == NULL)
        return;
    sasl_digest_free(s);
    free(s->domain);
    free(s->cb_exporter);
    free(s->cb_unique);
    free_wiped(s->server_secret, s->server_secret_len);
    for (size_t i = 0; i < s->cert_name_count; i++)
        free(s->cert_names[i]);
    free(s->cert_names);
    free(s->gs2_header);
    free(s->client_first_bare);
    free(s->nonce);
    free(s->server_first);
    if (s->password != NULL)
        free_wiped(s->password, strlen(s->password));
    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
}

/* -------------------------------------------------------- identities */

int sasl_set_authcid(sasl_server_t *s, const char *name, size_t len)
{
    size_t out_len = 0;
    /* Query rules: an account created under stored rules prepares to the
     * same string, and a name with unassigned code points simply finds no
     * account. */
    if (len == 0 || len > JID_MAX ||
        jid_prepare_node(name, len, 0, s->authcid, &out_len) != JID_OK) {
        s->authcid[0] = '\0';
        return -1;
    }
    s->have_authcid = true;
    return 0;
}

int sasl_check_authzid(const sasl_server_t *s, const char *authzid, size_t len)
{
    jid_t j;
    if (jid_parse(authzid, len, 0, &j) != JID_OK)
        return SASL_F_INVALID_AUTHZID;
    /* No proxy authorization: the authzid may only repeat the identity the
     * credentials prove, as a bare JID (RFC 6120 §6.3.8). */
    bool ok = j.node != NULL && j.resource == NULL && s->have_authcid &&
              strcmp(j.node, s->authcid) == 0 &&
              strcmp(j.domain, s->domain) == 0;
    jid_clear(&j);
    return ok ? SASL_SUCCESS : SASL_F_INVALID_AUTHZID;
}

const char *sasl_server_authcid(const sasl_server_t *s)
{
    return s->have_authcid ? s->authcid : NULL;
}

const char *sasl_server_username(const sasl_server_t *s)
{
    return s->authenticated ? s->authcid : NULL;
}

/* ------------------------------------------------------ account answer */

/* A credential the SCRAM code can use without reading out of bounds. */
static bool cred_usable(const scram_cred_t *c, scram_hash_t h)
{
    return c->key_len == scram_key_len(h) && c->salt_len > 0 &&
           c->salt_len <= SCRAM_SALT_MAX && c->iterations > 0;
}

static bool is_scram(sasl_mech_t m)
{
    return m == SASL_MECH_SCRAM_SHA1 || m == SASL_MECH_SCRAM_SHA1_PLUS ||
           m == SASL_MECH_SCRAM_SHA256 || m == SASL_MECH_SCRAM_SHA256_PLUS;
}

/* The account setters may be combined (the stream passes whatever the
 * store has: SCRAM credentials and a DIGEST-MD5 hash) until the next step;
 * that step decides what the exchange runs on. */
static bool answer_allowed(const sasl_server_t *s)
{
    return s->state == SASL_ST_NEED_CRED ||
           (s->state == SASL_ST_HAVE_CRED && s->known);
}

void sasl_server_set_credentials(sasl_server_t *s, const scram_cred_t *sha1,
                                 const scram_cred_t *sha256)
{
    if (!answer_allowed(s))
        return;
    s->known = true;
    s->state = SASL_ST_HAVE_CRED;
    if (sha1 != NULL && cred_usable(sha1, SCRAM_SHA1)) {
        s->sha1 = *sha1;
        s->have_sha1 = true;
    }
    if (sha256 != NULL && cred_usable(sha256, SCRAM_SHA256)) {
        s->sha256 = *sha256;
        s->have_sha256 = true;
    }
}

void sasl_server_set_digest_md5(sasl_server_t *s, const unsigned char hash[16])
{
    if (!answer_allowed(s))
        return;
    s->known = true;
    s->state = SASL_ST_HAVE_CRED;
    memcpy(s->md5, hash, sizeof(s->md5));
    s->have_md5 = true;
}

void sasl_server_set_unknown_user(sasl_server_t *s)
{
    if (s->state != SASL_ST_NEED_CRED)
        return;
    s->known = false;
    s->state = SASL_ST_HAVE_CRED;
}

/* Fake credentials of the shape real ones have (RFC 5802 §9): a salt that
 * is the same at every attempt for this name, the usual iteration count,
 * and random keys that no password matches. */
static int make_fake(sasl_server_t *s, scram_hash_t h)
{
    scram_cred_t *f = &s->fake;
    memset(f, 0, sizeof(*f));
    if (scram_fake_salt(s->server_secret, s->server_secret_len, s->domain,
                        s->authcid, f->salt) < 0)
        return -1;
    f->salt_len = SCRAM_SALT_LEN;
    f->iterations = s->scram_iterations;
    f->key_len = scram_key_len(h);
    if (rand_bytes(f->stored_key, f->key_len) < 0 ||
        rand_bytes(f->server_key, f->key_len) < 0) {
        memset(f, 0, sizeof(*f));
        return -1;
    }
    return 0;
}

/* Before the exchange goes on: an unknown account, or one without what
 * this mechanism needs, gets fake credentials, so that it fails exactly
 * where and how a wrong password does. Returns 0 or -1. */
static int prepare_fake(sasl_server_t *s)
{
    if (is_scram(s->mech)) {
        bool have = s->hash == SCRAM_SHA1 ? s->have_sha1 : s->have_sha256;
        return s->known && have ? 0 : make_fake(s, s->hash);
    }
    switch (s->mech) {
    case SASL_MECH_PLAIN:
        /* A known password is checked with PBKDF2-SHA-256 when the account
         * has it, so the fake check does that work. */
        if (s->known && (s->have_sha1 || s->have_sha256))
            return 0;
        return make_fake(s, SCRAM_SHA256);
    case SASL_MECH_DIGEST_MD5:
        /* A random hash, which no response matches. */
        if (s->known && s->have_md5)
            return 0;
        s->have_md5 = false;
        return rand_bytes(s->md5, sizeof(s->md5));
    default:
        return 0;
    }
}

/* --------------------------------------------------------------- PLAIN */

/* RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd. */
static int plain_first(sasl_server_t *s, const char *msg, size_t len)
{
    const char *nul1 = memchr(msg, '\0', len);
    if (nul1 == NULL)
        return SASL_F_MALFORMED_REQUEST;
    const char *authcid = nul1 + 1;
    size_t rest = len - (size_t)(authcid - msg);
    const char *nul2 = memchr(authcid, '\0', rest);
    if (nul2 == NULL)
        return SASL_F_MALFORMED_REQUEST;
    const char *pw = nul2 + 1;
    size_t authzid_len = (size_t)(nul1 - msg);
    size_t authcid_len = (size_t)(nul2 - authcid);
    size_t pw_len = len - (size_t)(pw - msg);

    /* Exactly two NULs, and authcid and passwd are 1*SAFE (RFC 4616 §2). */
    if (memchr(pw, '\0', pw_len) != NULL || authcid_len == 0 || pw_len == 0 ||
        authcid_len > PLAIN_AUTHCID_MAX || pw_len > PLAIN_PASSWORD_MAX)
        return SASL_F_MALFORMED_REQUEST;

    if (sasl_set_authcid(s, authcid, authcid_len) < 0)
        return SASL_F_NOT_AUTHORIZED;
    if (authzid_len > 0) {
        int rc = sasl_check_authzid(s, msg, authzid_len);
        if (rc != SASL_SUCCESS)
            return rc;
    }
    s->password = malloc(pw_len + 1);
    if (s->password == NULL)
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    memcpy(s->password, pw, pw_len);
    s->password[pw_len] = '\0';
    s->state = SASL_ST_NEED_CRED;
    return SASL_NEED_CREDENTIALS;
}

bool sasl_server_check_password(const sasl_server_t *s)
{
    if (s->mech != SASL_MECH_PLAIN || s->password == NULL)
        return false;
    if (s->known && s->have_sha256)
        return scram_check_password(SCRAM_SHA256, &s->sha256, s->password);
    if (s->known && s->have_sha1)
        return scram_check_password(SCRAM_SHA1, &s->sha1, s->password);
    /* Unknown account (or one without SCRAM credentials): the same PBKDF2
     * work on the fake credentials, whose random StoredKey nothing
     * matches, and the answer is no whatever it says. */
    if (s->fake.key_len != 0)
        (void)scram_check_password(SCRAM_SHA256, &s->fake, s->password);
    return false;
}

void sasl_server_password_checked(sasl_server_t *s, bool ok)
{
    if (s->state != SASL_ST_NEED_CHECK)
        return;
    /* Only a password checked against real credentials counts: an unknown
     * account, or one without SCRAM credentials, was checked against fake
     * ones, whatever the caller reports. */
    s->password_ok = ok && s->known && (s->have_sha1 || s->have_sha256);
    s->state = SASL_ST_CHECKED;
    /* The password is not needed any more. */
    free_wiped(s->password, strlen(s->password));
    s->password = NULL;
}

/* ------------------------------------------------------------ EXTERNAL */

/* Parses a certificate's XmppAddr; true when it is an account JID of our
 * domain (resource ignored: an account is what is authenticated). */
static bool cert_jid(const sasl_server_t *s, const char *name, jid_t *out)
{
    if (jid_parse(name, strlen(name), 0, out) != JID_OK)
        return false;
    if (out->node == NULL || strcmp(out->domain, s->domain) != 0) {
        jid_clear(out);
        return false;
    }
    return true;
}

/* RFC 4422 Appendix A and XEP-0178 §3: the message is the authzid, empty
 * for none; the identity is what the verified client certificate says. */
static int external_first(sasl_server_t *s, const char *msg, size_t len)
{
    if (s->cert_name_count == 0)
        return SASL_F_NOT_AUTHORIZED;
    if (memchr(msg, '\0', len) != NULL)
        return SASL_F_MALFORMED_REQUEST;

    char node[JID_PART_BUF];
    node[0] = '\0';
    if (len > 0) {
        jid_t want;
        if (jid_parse(msg, len, 0, &want) != JID_OK)
            return SASL_F_INVALID_AUTHZID;
        bool ok = want.node != NULL && want.resource == NULL &&
                  strcmp(want.domain, s->domain) == 0;
        for (size_t i = 0; ok && node[0] == '\0' && i < s->cert_name_count;
             i++) {
            jid_t c;
            if (!cert_jid(s, s->cert_names[i], &c))
                continue;
            if (jid_bare_equal(&c, &want))
                memcpy(node, c.node, c.node_len + 1);
            jid_clear(&c);
        }
        jid_clear(&want);
        /* XEP-0178 §3 (step 4.c): an authzid the certificate does not
         * vouch for is invalid-authzid. */
        if (node[0] == '\0')
            return SASL_F_INVALID_AUTHZID;
    } else {
        size_t found = 0;
        for (size_t i = 0; i < s->cert_name_count; i++) {
            jid_t c;
            if (!cert_jid(s, s->cert_names[i], &c))
                continue;
            /* The same account named twice is still one candidate. */
            if (found == 0 || strcmp(node, c.node) != 0) {
                found++;
                memcpy(node, c.node, c.node_len + 1);
            }
            jid_clear(&c);
        }
        /* XEP-0178 §3 (step 4.b): several candidates and no authzid to
         * choose between them is invalid-authzid; none is not-authorized
         * (step 4.c, no JID mapping). */
        if (found > 1)
            return SASL_F_INVALID_AUTHZID;
        if (found == 0)
            return SASL_F_NOT_AUTHORIZED;
    }
    /* The parsed node is already prepared; this only copies it. */
    if (sasl_set_authcid(s, node, strlen(node)) < 0)
        return SASL_F_NOT_AUTHORIZED;
    s->state = SASL_ST_NEED_CRED;
    return SASL_NEED_CREDENTIALS;
}

/* ---------------------------------------------------------------- steps */

static int first_step(sasl_server_t *s, const char *msg, size_t len, buf_t *out)
{
    if ((unsigned)s->mech >= SASL_MECH_COUNT)
        return SASL_F_INVALID_MECHANISM;
    /* RFC 6120 §6.5.4: PLAIN sends the password itself, so never without
     * TLS. Checked before the advertisement so the client learns why. */
    if (s->mech == SASL_MECH_PLAIN && !s->tls)
        return SASL_F_ENCRYPTION_REQUIRED;
    /* RFC 6120 §6.4.2: only an offered mechanism may be used. The stream
     * checks this too; here it keeps e.g. DIGEST-MD5 off when disabled. */
    if (!(s->advertised_mechs & 1u << s->mech))
        return SASL_F_INVALID_MECHANISM;

    switch (s->mech) {
    case SASL_MECH_PLAIN:
        return plain_first(s, msg, len);
    case SASL_MECH_EXTERNAL:
        return external_first(s, msg, len);
    case SASL_MECH_DIGEST_MD5:
        /* RFC 2831 §2.1: the server speaks first; an initial response
         * would be "subsequent authentication", which we do not offer. */
        if (len > 0)
            return SASL_F_MALFORMED_REQUEST;
        return sasl_digest_start(s, out);
    default:
        return sasl_scram_first(s, msg, len);
    }
}

/* step(NULL) after the account answer. */
static int continue_step(sasl_server_t *s, buf_t *out)
{
    /* Without fake credentials the exchange cannot go on unnoticed; the
     * failure is the server's (out of memory, no randomness). */
    if (prepare_fake(s) < 0)
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    if (is_scram(s->mech))
        return sasl_scram_server_first(s, out);
    switch (s->mech) {
    case SASL_MECH_PLAIN:
        s->state = SASL_ST_NEED_CHECK;
        return SASL_NEED_PASSWORD_CHECK;
    case SASL_MECH_EXTERNAL:
        if (!s->known)
            return SASL_F_NOT_AUTHORIZED;
        s->authenticated = true;
        return SASL_SUCCESS;
    case SASL_MECH_DIGEST_MD5:
        return sasl_digest_verify(s, out);
    default:
        return SASL_F_MALFORMED_REQUEST;
    }
}

static int dispatch(sasl_server_t *s, const char *msg, size_t len, buf_t *out)
{
    switch (s->state) {
    case SASL_ST_START:
        return first_step(s, msg, len, out);
    case SASL_ST_WAIT_RESP:
        return sasl_digest_response(s, msg, len);
    case SASL_ST_HAVE_CRED:
        /* The caller continues with no input; data here would be a client
         * message the exchange did not ask for. */
        if (len > 0)
            return SASL_F_MALFORMED_REQUEST;
        return continue_step(s, out);
    case SASL_ST_WAIT_FINAL:
        return sasl_scram_final(s, msg, len, out);
    case SASL_ST_CHECKED:
        if (len > 0)
            return SASL_F_MALFORMED_REQUEST;
        if (!s->password_ok)
            return SASL_F_NOT_AUTHORIZED;
        s->authenticated = true;
        return SASL_SUCCESS;
    case SASL_ST_WAIT_ACK:
        /* RFC 2831 §2.1.3: the client answers rspauth with an empty
         * response. */
        if (len > 0)
            return SASL_F_MALFORMED_REQUEST;
        s->authenticated = true;
        return SASL_SUCCESS;
    case SASL_ST_NEED_CRED:
    case SASL_ST_NEED_CHECK:
    case SASL_ST_DONE:
    default:
        /* A client message while we wait for the account or the password
         * check, or after the outcome: out of order. */
        return SASL_F_MALFORMED_REQUEST;
    }
}

int sasl_server_step(sasl_server_t *s, const unsigned char *in, size_t len,
                     buf_t *out)
{
    static const char empty[1] = "";
    const char *msg = in != NULL ? (const char *)in : empty;
    if (in == NULL)
        len = 0;

    int rc;
    if (len > SASL_MSG_MAX)
        rc = SASL_F_MALFORMED_REQUEST;
    else
        rc = dispatch(s, msg, len, out);

    /* A failure or success ends the exchange: later steps are refused, and
     * the username is only ever answered after success. */
    if (rc < 0) {
        s->authenticated = false;
        s->state = SASL_ST_DONE;
    } else if (rc == SASL_SUCCESS) {
        s->state = SASL_ST_DONE;
    }
    return rc;
}
