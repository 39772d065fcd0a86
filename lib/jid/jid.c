/* JID parsing and preparation (RFC 7622 §3 for the shape, RFC 3920bis §3 and
 * libidn's stringprep profiles for the preparation rules). See jid.h. */
#include "jid/jid.h"

#include <arpa/inet.h>
#include <idna.h>
#include <stdlib.h>
#include <string.h>
#include <stringprep.h>

/* RFC 1035 §2.3.4, checked on the ASCII form of each label. */
#define JID_LABEL_MAX 63

/* Nodeprep's own prohibited characters (RFC 3920 appendix A.5, libidn's
 * stringprep_xmpp_nodeprep_prohibit), besides space and controls. */
static const char node_prohibited[] = "\"&'/:<>@";

/* Strict UTF-8 (RFC 3629 §4): no overlong forms, no surrogates, nothing past
 * U+10FFFF. NUL is refused as well: libidn works on C strings, so an embedded
 * NUL would silently cut the part short. */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;

        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c < 0xC2) {
            return false;
        } else if (c < 0xE0) {
            need = 1;
        } else if (c < 0xF0) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c < 0xF5) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return false;
        }
        if (len - i - 1 < need)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= need; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return false;
        }
        i += need + 1;
    }
    return true;
}

static bool is_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] >= 0x80)
            return false;
    }
    return true;
}

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static int check_input(const char *in, size_t len)
{
    if (len > JID_MAX)
        return JID_ERR_TOO_LONG;
    if (len > 0 && in == NULL)
        return JID_ERR_EMPTY_DOMAIN;
    if (!utf8_valid((const unsigned char *)in, len))
        return JID_ERR_BAD_UTF8;
    return JID_OK;
}

static int map_stringprep_rc(int rc, int prep_err)
{
    switch (rc) {
    case STRINGPREP_OK:
        return JID_OK;
    case STRINGPREP_TOO_SMALL_BUFFER:
        return JID_ERR_TOO_LONG;
    case STRINGPREP_MALLOC_ERROR:
        return JID_ERR_NOMEM;
    case STRINGPREP_ICONV_ERROR:
        return JID_ERR_BAD_UTF8;
    default:
        return prep_err;
    }
}

/* Runs a libidn stringprep profile over `len` bytes of `in`, leaving the
 * result and a NUL in `out`, which has room for `cap` bytes in all. A result
 * that does not fit is JID_ERR_TOO_LONG. */
static int run_stringprep(const char *in, size_t len, unsigned flags,
                          const Stringprep_profile *profile, int prep_err,
                          char *out, size_t cap, size_t *out_len)
{
    /* RFC 3454 §7: unassigned code points are allowed in queries only. */
    Stringprep_profile_flags sflags =
        (flags & JID_STORED) ? STRINGPREP_NO_UNASSIGNED : 0;
    char *work = out;
    size_t work_cap = cap;
    size_t n = 0;
    int err;

    *out_len = 0;
    if (len >= cap) {
        /* Table B.1 maps some characters to nothing, so input longer than
         * the room can still prepare to something that fits: prepare it in
         * a bigger buffer before judging it. check_input() has bounded len
         * by JID_MAX. */
        work_cap = len + 1;
        work = malloc(work_cap);
        if (work == NULL)
            return JID_ERR_NOMEM;
    }
    memcpy(work, in, len);
    work[len] = '\0';
    err = map_stringprep_rc(stringprep(work, work_cap, sflags, profile),
                            prep_err);
    if (err == JID_OK) {
        n = strlen(work);
        if (n >= cap)
            err = JID_ERR_TOO_LONG;
        else if (work != out)
            memcpy(out, work, n + 1);
    }
    if (work != out)
        free(work);
    if (err == JID_OK)
        *out_len = n;
    return err;
}

/* Nodeprep (RFC 3920 appendix A). For ASCII the profile reduces to: fold
 * A-Z, refuse controls (table C.2.1), space (C.1.1) and the characters of
 * node_prohibited; nothing else in ASCII is mapped or prohibited, and bidi
 * rules cannot fire. That path skips libidn, which costs about a microsecond
 * per part; the unit tests check it against libidn for every ASCII byte. */
static int prep_node(const char *in, size_t len, unsigned flags, char *out,
                     size_t *out_len)
{
    int err;

    *out_len = 0;
    if (len == 0)
        return JID_ERR_EMPTY_NODE;
    if (is_ascii(in, len)) {
        if (len > JID_PART_MAX)
            return JID_ERR_TOO_LONG;
        for (size_t i = 0; i < len; i++) {
            char c = in[i];
            if ((unsigned char)c <= 0x20 || c == 0x7F ||
                memchr(node_prohibited, c, sizeof(node_prohibited) - 1))
                return JID_ERR_NODEPREP;
            out[i] = ascii_lower(c);
        }
        out[len] = '\0';
        *out_len = len;
        return JID_OK;
    }
    err = run_stringprep(in, len, flags, stringprep_xmpp_nodeprep,
                         JID_ERR_NODEPREP, out, JID_PART_BUF, out_len);
    if (err == JID_OK && *out_len == 0)
        err = JID_ERR_EMPTY_NODE;
    return err;
}

/* Resourceprep (RFC 3920 appendix B) keeps case and allows space; in
 * ASCII it only refuses controls (table C.2.1). */
static int prep_resource(const char *in, size_t len, unsigned flags, char *out,
                         size_t *out_len)
{
    int err;

    *out_len = 0;
    if (len == 0)
        return JID_ERR_EMPTY_RESOURCE;
    if (is_ascii(in, len)) {
        if (len > JID_PART_MAX)
            return JID_ERR_TOO_LONG;
        for (size_t i = 0; i < len; i++) {
            if ((unsigned char)in[i] < 0x20 || in[i] == 0x7F)
                return JID_ERR_RESOURCEPREP;
        }
        memcpy(out, in, len);
        out[len] = '\0';
        *out_len = len;
        return JID_OK;
    }
    err = run_stringprep(in, len, flags, stringprep_xmpp_resourceprep,
                         JID_ERR_RESOURCEPREP, out, JID_PART_BUF, out_len);
    if (err == JID_OK && *out_len == 0)
        err = JID_ERR_EMPTY_RESOURCE;
    return err;
}

/* Length of the label separator at p, or 0. IDNA2003 (RFC 3490 §3.1)
 * separates labels with U+002E, U+3002, U+FF0E and U+FF61; the input is
 * valid UTF-8, so the lead bytes cannot be continuation bytes. */
static size_t separator_len(const char *p, const char *end)
{
    const unsigned char *u = (const unsigned char *)p;

    if (*u == '.')
        return 1;
    if (end - p >= 3 && u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x82)
        return 3;
    if (end - p >= 3 && u[0] == 0xEF &&
        ((u[1] == 0xBC && u[2] == 0x8E) || (u[1] == 0xBD && u[2] == 0xA1)))
        return 3;
    return 0;
}

/* STD3 host name rules (RFC 1123 §2.1 via RFC 3490 §4.1 step 3) for an ASCII
 * label that is already lower case: letters, digits and hyphens, no hyphen at
 * either end, at most 63 bytes. */
static int check_ldh_label(const char *s, size_t len)
{
    if (len > JID_LABEL_MAX)
        return JID_ERR_TOO_LONG;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return JID_ERR_BAD_DOMAIN;
    }
    if (s[0] == '-' || s[len - 1] == '-')
        return JID_ERR_BAD_DOMAIN;
    return JID_OK;
}

static int map_idna_rc(int rc)
{
    switch (rc) {
    case IDNA_SUCCESS:
        return JID_OK;
    case IDNA_STRINGPREP_ERROR:
        return JID_ERR_NAMEPREP;
    case IDNA_INVALID_LENGTH:
    /* libidn encodes into a 59-byte buffer (63 less "xn--"), so an ACE
     * label over 63 bytes shows up as a Punycode error. */
    case IDNA_PUNYCODE_ERROR:
        return JID_ERR_TOO_LONG;
    case IDNA_MALLOC_ERROR:
        return JID_ERR_NOMEM;
    default:
        return JID_ERR_BAD_DOMAIN;
    }
}

/* Prepares one non-empty label into `out` (room for `cap` bytes with the
 * NUL). Nameprep is applied per label, as IDNA does, so that its bidi rule
 * (RFC 3454 §6) judges each label alone: "example.עברית" is fine. */
static int prep_label(const char *in, size_t len, unsigned flags, char *out,
                      size_t cap, size_t *out_len)
{
    char *ascii = NULL;
    int idna_flags = IDNA_USE_STD3_ASCII_RULES;
    size_t n;
    int err;

    *out_len = 0;
    if (is_ascii(in, len)) {
        /* Nameprep maps nothing in ASCII but A-Z and prohibits nothing in
         * ASCII at all (not even controls or space), so STD3 decides. */
        if (len >= cap)
            return JID_ERR_TOO_LONG;
        for (size_t i = 0; i < len; i++)
            out[i] = ascii_lower(in[i]);
        out[len] = '\0';
        err = check_ldh_label(out, len);
        if (err == JID_OK)
            *out_len = len;
        return err;
    }
    err = run_stringprep(in, len, flags, stringprep_nameprep, JID_ERR_NAMEPREP,
                         out, cap, &n);
    if (err != JID_OK)
        return err;
    if (n == 0)
        return JID_ERR_BAD_DOMAIN;
    /* NFKC can turn e.g. U+2024 ONE DOT LEADER into '.', which would split
     * the label on the next parse; IDNA refuses such labels. */
    for (size_t i = 0; i < n; i++) {
        if (separator_len(out + i, out + n) != 0)
            return JID_ERR_BAD_DOMAIN;
    }
    if (is_ascii(out, n)) {
        err = check_ldh_label(out, n);
    } else {
        /* The ACE form decides the 63-byte limit, and ToASCII with
         * UseSTD3ASCIIRules refuses the ASCII that nameprep let through
         * (e.g. fullwidth '@' folded to '@'). */
        if (!(flags & JID_STORED))
            idna_flags |= IDNA_ALLOW_UNASSIGNED;
        err = map_idna_rc(idna_to_ascii_8z(out, &ascii, idna_flags));
        free(ascii);
    }
    if (err == JID_OK)
        *out_len = n;
    return err;
}

/* An IPv6 literal in brackets (RFC 7622 §3.2, RFC 3986 §3.2.2), written in
 * the canonical form of RFC 5952 so that equal addresses compare equal. */
static int prep_ipv6(const char *in, size_t len, char *out, size_t *out_len)
{
    char text[INET6_ADDRSTRLEN];
    unsigned char addr[16];
    size_t inner, n;

    if (len < 2 || in[len - 1] != ']' || len - 2 >= sizeof(text))
        return JID_ERR_BAD_DOMAIN;
    inner = len - 2;
    memcpy(text, in + 1, inner);
    text[inner] = '\0';
    if (inet_pton(AF_INET6, text, addr) != 1)
        return JID_ERR_BAD_DOMAIN;
    if (inet_ntop(AF_INET6, addr, text, sizeof(text)) == NULL)
        return JID_ERR_BAD_DOMAIN;
    n = strlen(text);
    out[0] = '[';
    memcpy(out + 1, text, n);
    out[n + 1] = ']';
    out[n + 2] = '\0';
    *out_len = n + 2;
    return JID_OK;
}

/* Nameprep per label, STD3 rules, label lengths (RFC 3920bis §3.2 and RFC
 * 3490). A dotted-quad IPv4 literal needs no case of its own: it is all
 * digits and dots, which this path leaves as they are. */
static int prep_domain(const char *in, size_t len, unsigned flags, char *out,
                       size_t *out_len)
{
    const char *p = in;
    const char *end = in + len;
    size_t o = 0;

    *out_len = 0;
    if (len == 0)
        return JID_ERR_EMPTY_DOMAIN;
    if (in[0] == '[') {
        /* RFC 7622 §3.2: a final dot is stripped whatever the domain. */
        return prep_ipv6(in, in[len - 1] == '.' ? len - 1 : len, out, out_len);
    }
    for (;;) {
        const char *q = p;
        size_t sep = 0;
        size_t n;
        int err;

        while (q < end && (sep = separator_len(q, end)) == 0)
            q++;
        if (q == p) {
            /* RFC 7622 §3.2: one final dot is removed; it names the DNS
             * root and is not part of the domain. Any other empty label
             * is an error. */
            if (q == end && o > 0)
                break;
            if (o == 0 && q + sep == end)
                return JID_ERR_EMPTY_DOMAIN;
            return JID_ERR_BAD_DOMAIN;
        }
        if (o > 0) {
            if (o + 1 >= JID_PART_BUF)
                return JID_ERR_TOO_LONG;
            out[o++] = '.';
        }
        err = prep_label(p, (size_t)(q - p), flags, out + o, JID_PART_BUF - o,
                         &n);
        if (err != JID_OK)
            return err;
        o += n;
        if (q == end)
            break;
        p = q + sep;
    }
    out[o] = '\0';
    *out_len = o;
    return JID_OK;
}

/* Lays the prepared parts out in one block: domain first, so the block
 * starts at j->domain; then node and resource when present. */
static int jid_build(jid_t *j, arena_t *arena, const char *node,
                     size_t node_len, const char *domain, size_t domain_len,
                     const char *resource, size_t resource_len)
{
    size_t total = domain_len + 1;
    char *block;

    memset(j, 0, sizeof(*j));
    if (node != NULL)
        total += node_len + 1;
    if (resource != NULL)
        total += resource_len + 1;
    if (arena != NULL) {
        block = arena_alloc(arena, total);
    } else {
        block = malloc(total);
        j->heap = block;
    }
    if (block == NULL)
        return JID_ERR_NOMEM;
    j->domain = block;
    j->domain_len = domain_len;
    memcpy(block, domain, domain_len);
    block[domain_len] = '\0';
    block += domain_len + 1;
    if (node != NULL) {
        j->node = block;
        j->node_len = node_len;
        memcpy(block, node, node_len);
        block[node_len] = '\0';
        block += node_len + 1;
    }
    if (resource != NULL) {
        j->resource = block;
        j->resource_len = resource_len;
        memcpy(block, resource, resource_len);
        block[resource_len] = '\0';
    }
    return JID_OK;
}

static int parse(arena_t *arena, const char *s, size_t len, unsigned flags,
                 jid_t *out)
{
    char node[JID_PART_BUF], domain[JID_PART_BUF], resource[JID_PART_BUF];
    size_t node_len = 0, domain_len = 0, resource_len = 0;
    const char *slash, *at, *dom;
    size_t head_len, dom_len;
    int err;

    memset(out, 0, sizeof(*out));
    if (len == 0)
        return JID_ERR_EMPTY_DOMAIN;
    err = check_input(s, len);
    if (err != JID_OK)
        return err;

    /* RFC 7622 §3.1: the resource is everything after the first '/', and
     * the node everything before the first '@' that precedes it; so the
     * resource may hold both '@' and '/'. */
    slash = memchr(s, '/', len);
    head_len = slash != NULL ? (size_t)(slash - s) : len;
    at = memchr(s, '@', head_len);
    dom = at != NULL ? at + 1 : s;
    dom_len = head_len - (size_t)(dom - s);

    if (at != NULL) {
        err = prep_node(s, (size_t)(at - s), flags, node, &node_len);
        if (err != JID_OK)
            return err;
    }
    err = prep_domain(dom, dom_len, flags, domain, &domain_len);
    if (err != JID_OK)
        return err;
    if (slash != NULL) {
        err = prep_resource(slash + 1, len - head_len - 1, flags, resource,
                            &resource_len);
        if (err != JID_OK)
            return err;
    }
    return jid_build(out, arena, at != NULL ? node : NULL, node_len, domain,
                     domain_len, slash != NULL ? resource : NULL, resource_len);
}

int jid_parse(const char *s, size_t len, unsigned flags, jid_t *out)
{
    return parse(NULL, s, len, flags, out);
}

int jid_parse_arena(arena_t *arena, const char *s, size_t len, unsigned flags,
                    jid_t *out)
{
    if (arena == NULL) {
        memset(out, 0, sizeof(*out));
        return JID_ERR_NOMEM;
    }
    return parse(arena, s, len, flags, out);
}

void jid_clear(jid_t *j)
{
    if (j == NULL)
        return;
    free(j->heap);
    memset(j, 0, sizeof(*j));
}

int jid_copy(jid_t *dst, const jid_t *src)
{
    if (src->domain == NULL) {
        memset(dst, 0, sizeof(*dst));
        return JID_ERR_EMPTY_DOMAIN;
    }
    return jid_build(dst, NULL, src->node, src->node_len, src->domain,
                     src->domain_len, src->resource, src->resource_len);
}

int jid_bare(jid_t *dst, const jid_t *src)
{
    if (src->domain == NULL) {
        memset(dst, 0, sizeof(*dst));
        return JID_ERR_EMPTY_DOMAIN;
    }
    return jid_build(dst, NULL, src->node, src->node_len, src->domain,
                     src->domain_len, NULL, 0);
}

static bool part_equal(const char *a, size_t a_len, const char *b, size_t b_len)
{
    if (a == NULL || b == NULL)
        return a == b;
    return a_len == b_len && memcmp(a, b, a_len) == 0;
}

bool jid_bare_equal(const jid_t *a, const jid_t *b)
{
    return part_equal(a->node, a->node_len, b->node, b->node_len) &&
           part_equal(a->domain, a->domain_len, b->domain, b->domain_len);
}

bool jid_equal(const jid_t *a, const jid_t *b)
{
    return jid_bare_equal(a, b) && part_equal(a->resource, a->resource_len,
                                              b->resource, b->resource_len);
}

bool jid_is_bare(const jid_t *j)
{
    return j->resource == NULL;
}

bool jid_is_domain(const jid_t *j)
{
    return j->node == NULL && j->resource == NULL;
}

size_t jid_format_len(const jid_t *j, bool bare)
{
    size_t n = j->domain_len;

    if (j->node != NULL)
        n += j->node_len + 1;
    if (!bare && j->resource != NULL)
        n += j->resource_len + 1;
    return n;
}

int jid_format(const jid_t *j, bool bare, char *buf, size_t size)
{
    size_t n = jid_format_len(j, bare);
    size_t o = 0;

    if (n >= size) {
        if (size > 0)
            buf[0] = '\0';
        return JID_ERR_BUFFER;
    }
    if (j->node != NULL) {
        memcpy(buf, j->node, j->node_len);
        o = j->node_len;
        buf[o++] = '@';
    }
    if (j->domain != NULL) {
        memcpy(buf + o, j->domain, j->domain_len);
        o += j->domain_len;
    }
    if (!bare && j->resource != NULL) {
        buf[o++] = '/';
        memcpy(buf + o, j->resource, j->resource_len);
        o += j->resource_len;
    }
    buf[o] = '\0';
    /* n <= JID_MAX for any JID built here, so it fits an int. */
    return (int)o;
}

char *jid_to_string(const jid_t *j, bool bare)
{
    size_t n = jid_format_len(j, bare);
    char *s = malloc(n + 1);

    if (s != NULL && jid_format(j, bare, s, n + 1) < 0) {
        free(s);
        s = NULL;
    }
    return s;
}

typedef int (*prep_fn)(const char *in, size_t len, unsigned flags, char *out,
                       size_t *out_len);

static int prepare_part(prep_fn prep, const char *in, size_t len,
                        unsigned flags, char *out, size_t *out_len)
{
    size_t n = 0;
    int err = check_input(in, len);

    if (err == JID_OK)
        err = prep(in, len, flags, out, &n);
    /* A failed preparation may have written part of a result. */
    if (err != JID_OK) {
        out[0] = '\0';
        n = 0;
    }
    if (out_len != NULL)
        *out_len = n;
    return err;
}

int jid_prepare_node(const char *in, size_t len, unsigned flags, char *out,
                     size_t *out_len)
{
    return prepare_part(prep_node, in, len, flags, out, out_len);
}

int jid_prepare_domain(const char *in, size_t len, unsigned flags, char *out,
                       size_t *out_len)
{
    return prepare_part(prep_domain, in, len, flags, out, out_len);
}

int jid_prepare_resource(const char *in, size_t len, unsigned flags, char *out,
                         size_t *out_len)
{
    return prepare_part(prep_resource, in, len, flags, out, out_len);
}

bool jid_domain_is_ip(const char *domain)
{
    unsigned char addr[16];
    char text[INET6_ADDRSTRLEN];
    size_t len;

    if (domain == NULL)
        return false;
    len = strlen(domain);
    if (len >= 2 && domain[0] == '[' && domain[len - 1] == ']') {
        if (len - 2 >= sizeof(text))
            return false;
        memcpy(text, domain + 1, len - 2);
        text[len - 2] = '\0';
        return inet_pton(AF_INET6, text, addr) == 1;
    }
    return inet_pton(AF_INET, domain, addr) == 1;
}

int jid_domain_to_ascii(const char *domain, char **out)
{
    char *ascii = NULL;
    int err;

    *out = NULL;
    if (domain == NULL || domain[0] == '\0')
        return JID_ERR_EMPTY_DOMAIN;
    if (jid_domain_is_ip(domain) || is_ascii(domain, strlen(domain))) {
        *out = strdup(domain);
        return *out != NULL ? JID_OK : JID_ERR_NOMEM;
    }
    /* The domain was accepted under whichever rules applied when it was
     * parsed, so unassigned code points are let through here. */
    err = map_idna_rc(idna_to_ascii_8z(
        domain, &ascii, IDNA_ALLOW_UNASSIGNED | IDNA_USE_STD3_ASCII_RULES));
    if (err == JID_OK) {
        /* Copied so that callers free with free(), whatever allocator the
         * library uses. */
        *out = strdup(ascii);
        if (*out == NULL)
            err = JID_ERR_NOMEM;
    }
    free(ascii);
    return err;
}

const char *jid_strerror(int err)
{
    switch (err) {
    case JID_OK:
        return "success";
    case JID_ERR_EMPTY_NODE:
        return "empty node";
    case JID_ERR_EMPTY_DOMAIN:
        return "empty domain";
    case JID_ERR_EMPTY_RESOURCE:
        return "empty resource";
    case JID_ERR_NODEPREP:
        return "node refused by nodeprep";
    case JID_ERR_NAMEPREP:
        return "domain refused by nameprep";
    case JID_ERR_RESOURCEPREP:
        return "resource refused by resourceprep";
    case JID_ERR_BAD_DOMAIN:
        return "invalid domain";
    case JID_ERR_TOO_LONG:
        return "part too long";
    case JID_ERR_BAD_UTF8:
        return "invalid UTF-8";
    case JID_ERR_NOMEM:
        return "out of memory";
    case JID_ERR_BUFFER:
        return "buffer too small";
    default:
        return "unknown JID error";
    }
}
