/* libFuzzer target for lib/jid.
 *
 * Every input is parsed under both rule sets. What parses must format, and
 * the formatted form must parse back to an equal JID that formats the same:
 * preparation is idempotent, and the string form never splits differently
 * from the parts it came from. The per-part functions are also checked
 * against libidn itself, which keeps the ASCII shortcuts in jid.c honest. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stringprep.h>

#include "jid/jid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_jid: %s\n", what);
        abort();
    }
}

static void check_round_trip(const jid_t *j, unsigned flags)
{
    char buf[JID_FORMAT_BUF], again[JID_FORMAT_BUF];
    jid_t k, bare;
    int n, rc;

    check(j->domain != NULL && j->domain_len > 0, "empty domain");
    check(j->node == NULL || (j->node_len > 0 && j->node_len <= JID_PART_MAX),
          "node length");
    check(j->domain_len <= JID_PART_MAX, "domain length");
    check(j->resource == NULL ||
              (j->resource_len > 0 && j->resource_len <= JID_PART_MAX),
          "resource length");

    n = jid_format(j, false, buf, sizeof(buf));
    check(n >= 0 && (size_t)n == jid_format_len(j, false), "format length");
    rc = jid_parse(buf, (size_t)n, flags, &k);
    if (rc != JID_OK) {
        fprintf(stderr, "re-parse of \"%s\" failed: %s\n", buf,
                jid_strerror(rc));
        abort();
    }
    check(jid_equal(j, &k), "re-parse differs");
    n = jid_format(&k, false, again, sizeof(again));
    check(n >= 0 && strcmp(buf, again) == 0, "format not idempotent");
    jid_clear(&k);

    check(jid_bare(&bare, j) == JID_OK, "jid_bare");
    check(jid_bare_equal(&bare, j) && jid_is_bare(&bare), "bare differs");
    n = jid_format(&bare, true, buf, sizeof(buf));
    check(n >= 0, "bare format");
    check(jid_parse(buf, (size_t)n, flags, &k) == JID_OK, "bare re-parse");
    check(jid_equal(&bare, &k), "bare re-parse differs");
    jid_clear(&k);
    jid_clear(&bare);
}

/* The node and resource shortcuts against libidn's own profiles. */
static void check_against_libidn(const uint8_t *data, size_t size,
                                 unsigned flags)
{
    Stringprep_profile_flags sflags =
        (flags & JID_STORED) ? STRINGPREP_NO_UNASSIGNED : 0;
    char out[JID_PART_BUF];
    char *ref;
    size_t n;
    int rc, want;

    if (size == 0 || size >= JID_PART_MAX || memchr(data, 0, size) != NULL)
        return;
    ref = malloc(4 * JID_PART_BUF);
    if (ref == NULL)
        return;

    memcpy(ref, data, size);
    ref[size] = '\0';
    want = stringprep(ref, 4 * JID_PART_BUF, sflags, stringprep_xmpp_nodeprep);
    rc = jid_prepare_node((const char *)data, size, flags, out, &n);
    if (rc == JID_OK)
        check(want == STRINGPREP_OK && strcmp(out, ref) == 0,
              "node differs from libidn");
    else if (rc == JID_ERR_NODEPREP)
        check(want != STRINGPREP_OK, "node refused, libidn accepts");

    memcpy(ref, data, size);
    ref[size] = '\0';
    want =
        stringprep(ref, 4 * JID_PART_BUF, sflags, stringprep_xmpp_resourceprep);
    rc = jid_prepare_resource((const char *)data, size, flags, out, &n);
    if (rc == JID_OK)
        check(want == STRINGPREP_OK && strcmp(out, ref) == 0,
              "resource differs from libidn");
    else if (rc == JID_ERR_RESOURCEPREP)
        check(want != STRINGPREP_OK, "resource refused, libidn accepts");
    free(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned flag_sets[] = {0, JID_STORED};
    const char *s = (const char *)data;
    jid_t j[2];
    int rc[2];

    for (int i = 0; i < 2; i++) {
        rc[i] = jid_parse(s, size, flag_sets[i], &j[i]);
        if (rc[i] == JID_OK)
            check_round_trip(&j[i], flag_sets[i]);
        else
            check(j[i].domain == NULL && j[i].heap == NULL,
                  "error left parts behind");
        check_against_libidn(data, size, flag_sets[i]);
    }
    /* Stored rules only refuse more: whatever they accept, query rules
     * accept the same way. */
    if (rc[1] == JID_OK)
        check(rc[0] == JID_OK && jid_equal(&j[0], &j[1]),
              "stored and query rules disagree");

    /* The arena variant gives the same result. */
    arena_t *arena = arena_new(0);
    if (arena != NULL) {
        jid_t a;
        int arc = jid_parse_arena(arena, s, size, 0, &a);
        check(arc == rc[0], "arena result differs");
        if (arc == JID_OK)
            check(jid_equal(&a, &j[0]), "arena parts differ");
        arena_free(arena);
    }

    if (rc[0] == JID_OK) {
        char *ascii = NULL;
        int arc = jid_domain_to_ascii(j[0].domain, &ascii);
        check(arc == JID_OK || arc == JID_ERR_NOMEM, "domain_to_ascii failed");
        free(ascii);
    }
    jid_clear(&j[0]);
    jid_clear(&j[1]);
    return 0;
}
