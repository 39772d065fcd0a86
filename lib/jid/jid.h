/* JIDs: parsing, preparation, comparison and formatting of XMPP addresses.
 *
 * A JID is [node@]domain[/resource] (RFC 7622 §3.1). Each part is prepared
 * with the stringprep profile the feature set requires (RFC 3920bis §3:
 * Nodeprep, Nameprep, Resourceprep, implemented by libidn). RFC 7622 replaces
 * stringprep with PRECIS; we follow the feature set, and the two agree on
 * nearly every address seen in practice.
 *
 * Two rule sets exist (RFC 3454 §7): "query" rules (flags 0) allow code points
 * unassigned in Unicode 3.2, so an address in a stanza may hold e.g. an emoji
 * resource; "stored" rules (JID_STORED) refuse them, for identifiers that are
 * created and kept, such as account names.
 *
 * Every error is a negative JID_ERR_* code; whoever received the address maps
 * any of them to the `jid-malformed` condition (RFC 6120 §8.3.3.8). */
#ifndef STARLING_JID_JID_H
#define STARLING_JID_JID_H

#include <stdbool.h>
#include <stddef.h>

#include "base/arena.h"

/* RFC 7622 §3.1: each part is at most 1023 bytes once prepared. */
#define JID_PART_MAX 1023
/* The longest JID: three full parts and the '@' and '/' separators. Longer
 * input is refused before any work is done. */
#define JID_MAX (3 * JID_PART_MAX + 2)
/* A buffer of this size holds any formatted JID and its NUL. */
#define JID_FORMAT_BUF (JID_MAX + 1)
/* A buffer of this size holds any prepared part and its NUL. */
#define JID_PART_BUF (JID_PART_MAX + 1)

/* Flags for jid_parse() and jid_prepare_*(). */
enum jid_flags {
    /* Stored-string rules: refuse code points unassigned in Unicode 3.2. */
    JID_STORED = 1u << 0,
};

enum jid_error {
    JID_OK = 0,
    JID_ERR_EMPTY_NODE = -1,     /* "@domain", or a node prepared to nothing */
    JID_ERR_EMPTY_DOMAIN = -2,   /* no domain at all */
    JID_ERR_EMPTY_RESOURCE = -3, /* "domain/", or a resource prepared to "" */
    JID_ERR_NODEPREP = -4,       /* Nodeprep refused the node */
    JID_ERR_NAMEPREP = -5,       /* Nameprep refused a domain label */
    JID_ERR_RESOURCEPREP = -6,   /* Resourceprep refused the resource */
    JID_ERR_BAD_DOMAIN = -7,     /* empty label, STD3 rules, bad IP literal */
    JID_ERR_TOO_LONG = -8, /* a part over 1023 bytes, or a label over 63 */
    JID_ERR_BAD_UTF8 = -9, /* not UTF-8, or holds a NUL byte */
    JID_ERR_NOMEM = -10,
    JID_ERR_BUFFER = -11, /* the caller's output buffer is too small */
};

/* A parsed JID holding its prepared parts (NUL-terminated UTF-8).
 *
 * node and resource are NULL when absent and never empty when present; domain
 * is never NULL in a parsed JID. The three parts live in one block: either
 * `heap` (malloc'd, released by jid_clear()) or an arena (heap is NULL, and
 * the parts die with the arena). A zeroed jid_t is "no JID" and may be
 * passed to jid_clear(). */
typedef struct jid {
    char *node;
    char *domain;
    char *resource;
    size_t node_len;
    size_t domain_len;
    size_t resource_len;
    void *heap;
} jid_t;

/* Parses and prepares `len` bytes of `s` (no NUL needed; NULL only when len
 * is 0) into `out`, whose parts are malloc'd in one block. On error `out` is
 * zeroed. */
int jid_parse(const char *s, size_t len, unsigned flags, jid_t *out);

/* As jid_parse(), with the parts allocated from `arena` (for addresses that
 * live as long as one stanza). jid_clear() is then optional. */
int jid_parse_arena(arena_t *arena, const char *s, size_t len, unsigned flags,
                    jid_t *out);

/* Frees a JID's malloc'd parts and zeroes it. NULL and zeroed JIDs are
 * allowed. */
void jid_clear(jid_t *j);

/* Makes a malloc'd copy of `src` into `dst` (with or without the resource). */
int jid_copy(jid_t *dst, const jid_t *src);
int jid_bare(jid_t *dst, const jid_t *src);

/* Comparisons of prepared JIDs: byte equality of the parts, so they are exact
 * only for JIDs that came from jid_parse(). */
bool jid_equal(const jid_t *a, const jid_t *b);
bool jid_bare_equal(const jid_t *a, const jid_t *b);
bool jid_is_bare(const jid_t *j);   /* no resource */
bool jid_is_domain(const jid_t *j); /* no node and no resource */

/* Length of the string form (without NUL), bare or full. */
size_t jid_format_len(const jid_t *j, bool bare);

/* Writes the string form and a NUL into `buf`; returns its length (>= 0), or
 * JID_ERR_BUFFER when `size` is too small (then buf holds "" if size > 0).
 * A buffer of JID_FORMAT_BUF bytes always suffices. */
int jid_format(const jid_t *j, bool bare, char *buf, size_t size);

/* Returns the string form in a new malloc'd string, or NULL when out of
 * memory. */
char *jid_to_string(const jid_t *j, bool bare);

/* Prepare one part on its own (resource binding, account names, a configured
 * host name). `out` receives the prepared part and a NUL and must hold
 * JID_PART_BUF bytes; `*out_len` (may be NULL) receives its length. Empty
 * input, or input that prepares to nothing, gives the part's EMPTY error.
 * jid_prepare_domain() accepts IP literals and strips one trailing dot, as
 * jid_parse() does. */
int jid_prepare_node(const char *in, size_t len, unsigned flags, char *out,
                     size_t *out_len);
int jid_prepare_domain(const char *in, size_t len, unsigned flags, char *out,
                       size_t *out_len);
int jid_prepare_resource(const char *in, size_t len, unsigned flags, char *out,
                         size_t *out_len);

/* Converts a prepared domain to the ASCII form DNS needs (IDNA ToASCII,
 * RFC 3490 §4.1): "bücher.example" gives "xn--bcher-kva.example". An IP
 * literal is returned unchanged, IPv6 with its brackets. `*out` is malloc'd;
 * the caller frees it. */
int jid_domain_to_ascii(const char *domain, char **out);

/* True when a prepared domain is an IP literal (dotted quad or [IPv6]). */
bool jid_domain_is_ip(const char *domain);

/* A static English description of a JID_ERR_* code. */
const char *jid_strerror(int err);

#endif
