/* sasl_digest: DIGEST-MD5 (RFC 2831; retired by RFC 6331, offered only
 * when configured for old clients) on GNU SASL's server.
 *
 * Each exchange creates its own Gsasl context: GNU SASL keeps mechanism
 * tables and callbacks in it, and a context shared between connections
 * would be mutable state shared between threads. gsasl_init() only
 * registers the built-in mechanisms, which is cheap next to the rest of a
 * login. No callback is installed: every property the mechanism asks for
 * is set before the step that needs it.
 *
 * GNU SASL parses and checks the response; we read the username (and
 * authzid, digest-uri, charset) out of it first, because the account must
 * be looked up before GNU SASL can check anything. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gsasl.h>

#include "sasl/sasl_internal.h"

/* -------------------------------------------------------------- parsing */

/* What we need from a digest-response (RFC 2831 §2.1.2). Each value is
 * unquoted into its own malloc'd string. */
typedef struct digest_fields {
    char *username;
    char *authzid;
    char *charset;
    char *digest_uri;
} digest_fields_t;

static void fields_free(digest_fields_t *f)
{
    free(f->username);
    free(f->authzid);
    free(f->charset);
    free(f->digest_uri);
}

static bool is_lws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* RFC 2616 §2.2 token characters, as RFC 2831 uses them for names. */
static bool is_token(char c)
{
    return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?={}", c) == NULL;
}

/* Parses `directive = token "=" (token | quoted-string)` list elements
 * separated by commas (RFC 2831 §7.1, #rule: empty elements and linear
 * white space allowed). Returns 0, or -1 on a syntax error or a directive
 * we use that appears twice. */
static int parse_response(const char *p, const char *end, digest_fields_t *f)
{
    while (p < end) {
        while (p < end && (is_lws(*p) || *p == ','))
            p++;
        if (p == end)
            break;
        const char *name = p;
        while (p < end && is_token(*p) && *p != '=')
            p++;
        size_t nlen = (size_t)(p - name);
        while (p < end && is_lws(*p))
            p++;
        if (nlen == 0 || p == end || *p != '=')
            return -1;
        p++;
        while (p < end && is_lws(*p))
            p++;

        /* The unquoted value is never longer than the quoted one. */
        char *val = malloc((size_t)(end - p) + 1);
        if (val == NULL)
            return -1;
        size_t vlen = 0;
        if (p < end && *p == '"') {
            p++;
            while (p < end && *p != '"') {
                if (*p == '\\' && p + 1 < end)
                    p++;
                val[vlen++] = *p++;
            }
            if (p == end) {
                free(val);
                return -1;
            }
            p++;
        } else {
            while (p < end && is_token(*p))
                val[vlen++] = *p++;
        }
        val[vlen] = '\0';
        while (p < end && is_lws(*p))
            p++;
        if (p < end && *p != ',') {
            free(val);
            return -1;
        }

        char **slot = NULL;
        if (nlen == 8 && strncasecmp(name, "username", 8) == 0)
            slot = &f->username;
        else if (nlen == 7 && strncasecmp(name, "authzid", 7) == 0)
            slot = &f->authzid;
        else if (nlen == 7 && strncasecmp(name, "charset", 7) == 0)
            slot = &f->charset;
        else if (nlen == 10 && strncasecmp(name, "digest-uri", 10) == 0)
            slot = &f->digest_uri;
        if (slot == NULL) {
            free(val);
            continue;
        }
        /* RFC 2831 §2.1.2: these directives MUST NOT occur more than once;
         * two usernames could make us look up one account and GNU SASL
         * check another. */
        if (*slot != NULL) {
            free(val);
            return -1;
        }
        *slot = val;
    }
    return 0;
}

/* RFC 2831 §2.1.2: digest-uri = serv-type "/" host ["/" serv-name]; for
 * XMPP serv-type is "xmpp" and host (and serv-name) our domain (RFC 6120
 * §6.3.6). The server SHOULD check it, so that a response computed for
 * another service cannot be replayed here. */
static bool digest_uri_ok(const sasl_server_t *s, const char *uri)
{
    if (strncmp(uri, "xmpp/", 5) != 0)
        return false;
    const char *host = uri + 5;
    const char *slash = strchr(host, '/');
    size_t hlen = slash != NULL ? (size_t)(slash - host) : strlen(host);
    size_t dlen = strlen(s->domain);
    if (hlen != dlen || strncasecmp(host, s->domain, dlen) != 0)
        return false;
    return slash == NULL || strcasecmp(slash + 1, s->domain) == 0;
}

static bool ascii_only(const char *p)
{
    for (; *p != '\0'; p++)
        if ((unsigned char)*p >= 0x80)
            return false;
    return true;
}

/* ---------------------------------------------------------------- steps */

int sasl_digest_start(sasl_server_t *s, buf_t *out)
{
    Gsasl *ctx = NULL;
    Gsasl_session *sess = NULL;
    char *o = NULL;
    size_t olen = 0;

    if (gsasl_init(&ctx) != GSASL_OK)
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    s->gsasl = ctx;
    if (gsasl_server_start(ctx, "DIGEST-MD5", &sess) != GSASL_OK)
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    s->gsasl_sess = sess;
    /* One realm, our domain, and authentication only: no integrity or
     * confidentiality layer (TLS provides those; RFC 6120 §6.3.5). */
    if (gsasl_property_set(sess, GSASL_REALM, s->domain) != GSASL_OK ||
        gsasl_property_set(sess, GSASL_QOPS, "qop-auth") != GSASL_OK)
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    int rc = gsasl_step(sess, NULL, 0, &o, &olen);
    if (rc != GSASL_NEEDS_MORE || buf_append(out, o, olen) < 0) {
        gsasl_free(o);
        return SASL_F_TEMPORARY_AUTH_FAILURE;
    }
    gsasl_free(o);
    s->state = SASL_ST_WAIT_RESP;
    return SASL_CHALLENGE;
}

int sasl_digest_response(sasl_server_t *s, const char *msg, size_t len)
{
    digest_fields_t f = {0};
    int rc = SASL_F_MALFORMED_REQUEST;

    if (len == 0 || memchr(msg, '\0', len) != NULL ||
        parse_response(msg, msg + len, &f) < 0 || f.username == NULL ||
        f.digest_uri == NULL)
        goto out;
    if (f.charset != NULL && strcasecmp(f.charset, "utf-8") != 0)
        goto out;
    /* RFC 2831 §2.1.2: without charset=utf-8 the name is ISO 8859-1. We do
     * not convert it; such a name is no account of ours. */
    rc = SASL_F_NOT_AUTHORIZED;
    if (f.charset == NULL && !ascii_only(f.username))
        goto out;
    if (!digest_uri_ok(s, f.digest_uri))
        goto out;
    if (sasl_set_authcid(s, f.username, strlen(f.username)) < 0)
        goto out;
    if (f.authzid != NULL) {
        rc = sasl_check_authzid(s, f.authzid, strlen(f.authzid));
        if (rc != SASL_SUCCESS)
            goto out;
    }
    s->response = malloc(len);
    if (s->response == NULL) {
        rc = SASL_F_TEMPORARY_AUTH_FAILURE;
        goto out;
    }
    memcpy(s->response, msg, len);
    s->response_len = len;
    s->state = SASL_ST_NEED_CRED;
    rc = SASL_NEED_CREDENTIALS;
out:
    fields_free(&f);
    return rc;
}

int sasl_digest_verify(sasl_server_t *s, buf_t *out)
{
    static const char hexd[] = "0123456789abcdef";
    char hex[33];
    char *o = NULL;
    size_t olen = 0;

    /* GNU SASL reads the stored hash as lower-case hex. An account without
     * one has a random hash here (prepare_fake()), which no response
     * matches. */
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = hexd[s->md5[i] >> 4];
        hex[2 * i + 1] = hexd[s->md5[i] & 15];
    }
    hex[32] = '\0';
    int rc = gsasl_property_set(s->gsasl_sess, GSASL_DIGEST_MD5_HASHED_PASSWORD,
                                hex);
    memset(hex, 0, sizeof(hex));
    if (rc != GSASL_OK)
        return SASL_F_TEMPORARY_AUTH_FAILURE;

    rc = gsasl_step(s->gsasl_sess, s->response, s->response_len, &o, &olen);
    int result;
    if (rc == GSASL_OK && s->known && s->have_md5) {
        /* The response-auth goes out as a challenge, which the client
         * acknowledges with an empty response (RFC 2831 §2.1.3, RFC 6120
         * §6.3.10 allows either; old clients expect this form). */
        if (buf_append(out, o, olen) < 0) {
            result = SASL_F_TEMPORARY_AUTH_FAILURE;
        } else {
            s->state = SASL_ST_WAIT_ACK;
            result = SASL_CHALLENGE;
        }
    } else if (rc == GSASL_OK || rc == GSASL_AUTHENTICATION_ERROR) {
        result = SASL_F_NOT_AUTHORIZED;
    } else if (rc == GSASL_MECHANISM_PARSE_ERROR) {
        result = SASL_F_MALFORMED_REQUEST;
    } else if (rc == GSASL_MALLOC_ERROR) {
        result = SASL_F_TEMPORARY_AUTH_FAILURE;
    } else {
        result = SASL_F_NOT_AUTHORIZED;
    }
    gsasl_free(o);
    return result;
}

void sasl_digest_free(sasl_server_t *s)
{
    if (s->gsasl_sess != NULL)
        gsasl_finish(s->gsasl_sess);
    if (s->gsasl != NULL)
        gsasl_done(s->gsasl);
    s->gsasl_sess = NULL;
    s->gsasl = NULL;
    free(s->response);
    s->response = NULL;
}
