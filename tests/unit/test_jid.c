/* Unit tests for lib/jid: parsing, stringprep preparation, comparison and
 * formatting of JIDs, with vectors from RFC 3920bis / RFC 7622 cases. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <idna.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stringprep.h>

#include "jid/jid.h"

/* Parses a NUL-terminated JID with the given flags. */
static int parse(const char *s, unsigned flags, jid_t *j)
{
    return jid_parse(s, strlen(s), flags, j);
}

/* Asserts that `s` parses into the given parts (NULL = absent). */
static void expect_parts(const char *s, unsigned flags, const char *node,
                         const char *domain, const char *resource)
{
    jid_t j;
    int rc = parse(s, flags, &j);

    if (rc != JID_OK)
        fail_msg("%s: %s", s, jid_strerror(rc));
    if (node == NULL)
        assert_null(j.node);
    else
        assert_string_equal(j.node, node);
    assert_string_equal(j.domain, domain);
    if (resource == NULL)
        assert_null(j.resource);
    else
        assert_string_equal(j.resource, resource);
    assert_int_equal(j.node != NULL ? strlen(j.node) : 0, j.node_len);
    assert_int_equal(strlen(j.domain), j.domain_len);
    assert_int_equal(j.resource != NULL ? strlen(j.resource) : 0,
                     j.resource_len);
    jid_clear(&j);
}

/* Asserts that `s` fails with `err` and leaves a zeroed JID behind. */
static void expect_error(const char *s, size_t len, unsigned flags, int err)
{
    jid_t j;
    int rc = jid_parse(s, len, flags, &j);

    if (rc != err)
        fail_msg("\"%.*s\": got %d (%s), want %d (%s)", (int)len, s, rc,
                 jid_strerror(rc), err, jid_strerror(err));
    assert_null(j.node);
    assert_null(j.domain);
    assert_null(j.resource);
    assert_null(j.heap);
}

static void expect_err(const char *s, unsigned flags, int err)
{
    expect_error(s, strlen(s), flags, err);
}

/* Asserts that two strings parse to equal (or unequal) JIDs. */
static void expect_equal(const char *a, const char *b, bool full, bool bare)
{
    jid_t ja, jb;

    assert_int_equal(parse(a, 0, &ja), JID_OK);
    assert_int_equal(parse(b, 0, &jb), JID_OK);
    if (jid_equal(&ja, &jb) != full)
        fail_msg("jid_equal(%s, %s) != %d", a, b, full);
    if (jid_bare_equal(&ja, &jb) != bare)
        fail_msg("jid_bare_equal(%s, %s) != %d", a, b, bare);
    assert_true(jid_equal(&jb, &ja) == full);
    jid_clear(&ja);
    jid_clear(&jb);
}

/* A string of `n` copies of `unit`, malloc'd. */
static char *repeat(const char *unit, size_t n)
{
    size_t u = strlen(unit);
    char *s = malloc(u * n + 1);

    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * u, unit, u);
    s[u * n] = '\0';
    return s;
}

static char *concat3(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = malloc(la + lb + lc + 1);

    assert_non_null(s);
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, c, lc + 1);
    return s;
}

static void test_basic_parts(void **state)
{
    (void)state;
    expect_parts("juliet@example.com/balcony", 0, "juliet", "example.com",
                 "balcony");
    expect_parts("juliet@example.com", 0, "juliet", "example.com", NULL);
    expect_parts("example.com", 0, NULL, "example.com", NULL);
    expect_parts("example.com/foo", 0, NULL, "example.com", "foo");
    expect_parts("localhost", JID_STORED, NULL, "localhost", NULL);
    /* Resourceprep keeps spaces and every printable ASCII character. */
    expect_parts("a@b/ x \"&'<>:; ", 0, "a", "b", " x \"&'<>:; ");
}

/* RFC 7622 §3.1: the resource starts at the first '/', and the node ends at
 * the first '@' before it. */
static void test_separators(void **state)
{
    (void)state;
    expect_parts("a@b/c@d/e", 0, "a", "b", "c@d/e");
    expect_parts("b/c@d", 0, NULL, "b", "c@d");
    expect_parts("a@b//", 0, "a", "b", "/");
    expect_parts("a@b/@", 0, "a", "b", "@");
    /* A second '@' before the '/' lands in the domain, where it is refused. */
    expect_err("a@b@c", 0, JID_ERR_BAD_DOMAIN);
    expect_err("a@b@c/d", 0, JID_ERR_BAD_DOMAIN);
}

static void test_empty_parts(void **state)
{
    (void)state;
    expect_error("", 0, 0, JID_ERR_EMPTY_DOMAIN);
    expect_error(NULL, 0, 0, JID_ERR_EMPTY_DOMAIN);
    expect_err("@example.com", 0, JID_ERR_EMPTY_NODE);
    expect_err("@example.com/r", 0, JID_ERR_EMPTY_NODE);
    expect_err("a@", 0, JID_ERR_EMPTY_DOMAIN);
    expect_err("a@/r", 0, JID_ERR_EMPTY_DOMAIN);
    expect_err("/r", 0, JID_ERR_EMPTY_DOMAIN);
    expect_err("example.com/", 0, JID_ERR_EMPTY_RESOURCE);
    expect_err("a@example.com/", 0, JID_ERR_EMPTY_RESOURCE);
    expect_err("@", 0, JID_ERR_EMPTY_NODE);
    expect_err(".", 0, JID_ERR_EMPTY_DOMAIN);
    expect_err("a@.", 0, JID_ERR_EMPTY_DOMAIN);
    /* Parts that prepare to nothing (U+00AD SOFT HYPHEN, table B.1). */
    expect_err("\xC2\xAD@example.com", 0, JID_ERR_EMPTY_NODE);
    expect_err("a@example.com/\xC2\xAD\xC2\xAD", 0, JID_ERR_EMPTY_RESOURCE);
    expect_err("a@\xC2\xAD", 0, JID_ERR_BAD_DOMAIN);
}

static void test_case_folding(void **state)
{
    (void)state;
    expect_parts("Juliet@Example.COM/Balcony", 0, "juliet", "example.com",
                 "Balcony");
    expect_equal("Juliet@Example.COM", "juliet@example.com", true, true);
    expect_equal("JULIET@EXAMPLE.COM/r", "juliet@example.com/r", true, true);
    /* Resourceprep has no case folding. */
    expect_equal("a@b/R", "a@b/r", false, true);
    /* Non-ASCII case folding (table B.2). */
    expect_parts("\xC3\x84RGER@\xC3\x9C"
                 "BER.example",
                 0, "\xC3\xA4rger",
                 "\xC3\xBC"
                 "ber.example",
                 NULL);
    /* U+00DF LATIN SMALL LETTER SHARP S folds to "ss". */
    expect_parts("Stra\xC3\x9F"
                 "e@example.com",
                 0, "strasse", "example.com", NULL);
}

static void test_compatibility_characters(void **state)
{
    (void)state;
    /* Fullwidth "Ｊｕｌｉｅｔ" folds to "juliet" (NFKC, RFC 3454 §4). */
    expect_parts("\xEF\xBC\xAA\xEF\xBD\x95\xEF\xBD\x8C\xEF\xBD\x89\xEF\xBD\x85"
                 "\xEF\xBD\x94@example.com",
                 0, "juliet", "example.com", NULL);
    expect_equal("\xEF\xBC\xAA\xEF\xBD\x95\xEF\xBD\x8C\xEF\xBD\x89\xEF\xBD\x85"
                 "\xEF\xBD\x94@example.com",
                 "juliet@example.com", true, true);
    /* U+210C BLACK-LETTER CAPITAL H and U+2460 CIRCLED DIGIT ONE. */
    expect_parts("\xE2\x84\x8C\xE2\x91\xA0@example.com", 0, "h1", "example.com",
                 NULL);
    /* U+FB01 LATIN SMALL LIGATURE FI. */
    expect_parts("\xEF\xAC\x81nd@example.com", 0, "find", "example.com", NULL);
    /* A fullwidth domain "ＥＸＡＭＰＬＥ．ｃｏｍ" with a fullwidth dot. */
    expect_parts(
        "a@\xEF\xBC\xA5\xEF\xBC\xB8\xEF\xBC\xA1\xEF\xBC\xAD\xEF\xBC\xB0"
        "\xEF\xBC\xAC\xEF\xBC\xA5\xEF\xBC\x8E\xEF\xBD\x83\xEF\xBD\x8F"
        "\xEF\xBD\x8D",
        0, "a", "example.com", NULL);
    /* Resourceprep applies NFKC but no case folding. */
    expect_parts("a@b/\xEF\xBC\xB2\xEF\xAC\x81", 0, "a", "b", "Rfi");
    /* Characters mapped to nothing (table B.1) vanish. */
    expect_parts("ju\xC2\xADliet\xE2\x80\x8B@example.com", 0, "juliet",
                 "example.com", NULL);
}

static void test_node_prohibited(void **state)
{
    static const char prohibited[] = "\"&'/:<>@ ";
    char buf[JID_PART_BUF];
    char in[8];
    (void)state;

    for (size_t i = 0; prohibited[i] != '\0'; i++) {
        snprintf(in, sizeof(in), "a%cb", prohibited[i]);
        assert_int_equal(jid_prepare_node(in, 3, 0, buf, NULL),
                         JID_ERR_NODEPREP);
        assert_string_equal(buf, "");
        /* Also alone, and also through the non-ASCII path of libidn. */
        assert_int_equal(jid_prepare_node(in + 1, 1, 0, buf, NULL),
                         JID_ERR_NODEPREP);
        snprintf(in, sizeof(in), "\xC3\xA9%c", prohibited[i]);
        assert_int_equal(jid_prepare_node(in, 3, 0, buf, NULL),
                         JID_ERR_NODEPREP);
    }
    /* Through jid_parse, where '@' and '/' would split instead. */
    expect_err("a\"b@example.com", 0, JID_ERR_NODEPREP);
    expect_err("a&b@example.com", 0, JID_ERR_NODEPREP);
    expect_err("a'b@example.com", 0, JID_ERR_NODEPREP);
    expect_err("a:b@example.com", 0, JID_ERR_NODEPREP);
    expect_err("a<b@example.com", 0, JID_ERR_NODEPREP);
    expect_err("a>b@example.com", 0, JID_ERR_NODEPREP);
    expect_err("a b@example.com", 0, JID_ERR_NODEPREP);
    expect_err("a\tb@example.com", 0, JID_ERR_NODEPREP);
    expect_err("a\x7f"
               "b@example.com",
               0, JID_ERR_NODEPREP);
    /* Fullwidth U+FF20 '＠' and U+FF0F '／' become '@' and '/' under NFKC
     * and are then prohibited. */
    expect_err("a\xEF\xBC\xA0"
               "b@example.com",
               0, JID_ERR_NODEPREP);
    expect_err("a\xEF\xBC\x8F"
               "b@example.com",
               0, JID_ERR_NODEPREP);
    /* U+00A0 NO-BREAK SPACE (C.1.2) and U+E000 private use (C.3). */
    expect_err("a\xC2\xA0"
               "b@example.com",
               0, JID_ERR_NODEPREP);
    expect_err("a\xEE\x80\x80"
               "b@example.com",
               0, JID_ERR_NODEPREP);
    /* The resource allows what the node does not, except controls. */
    expect_parts("a@b/\xEF\xBC\xA0", 0, "a", "b", "@");
    expect_err("a@b/x\ty", 0, JID_ERR_RESOURCEPREP);
    expect_err("a@b/x\xEE\x80\x80", 0, JID_ERR_RESOURCEPREP);
}

/* The ASCII shortcut must agree with libidn byte for byte. */
static void test_ascii_matches_libidn(void **state)
{
    char buf[JID_PART_BUF];
    char ref[64];
    (void)state;

    for (int c = 1; c < 0x80; c++) {
        char in[4] = {'x', (char)c, 'Y', '\0'};
        size_t n;
        int rc, want;

        strcpy(ref, in);
        want = stringprep_xmpp_nodeprep(ref, sizeof(ref));
        rc = jid_prepare_node(in, 3, 0, buf, &n);
        assert_int_equal(rc == JID_OK, want == STRINGPREP_OK);
        if (rc == JID_OK) {
            assert_string_equal(buf, ref);
            assert_int_equal(n, strlen(ref));
        }

        strcpy(ref, in);
        want = stringprep_xmpp_resourceprep(ref, sizeof(ref));
        rc = jid_prepare_resource(in, 3, JID_STORED, buf, &n);
        assert_int_equal(rc == JID_OK, want == STRINGPREP_OK);
        if (rc == JID_OK)
            assert_string_equal(buf, ref);

        /* Domains: nameprep, then ToASCII with the STD3 rules. */
        char *ascii = NULL;
        want = idna_to_ascii_8z(in, &ascii, IDNA_USE_STD3_ASCII_RULES);
        rc = jid_prepare_domain(in, 3, 0, buf, NULL);
        if ((rc == JID_OK) != (want == IDNA_SUCCESS))
            fail_msg("domain byte 0x%02x: jid %d, idna %d", c, rc, want);
        /* ToASCII leaves all-ASCII labels in their case. */
        if (rc == JID_OK && strcasecmp(buf, ascii) != 0)
            fail_msg("domain byte 0x%02x: %s vs %s", c, buf, ascii);
        free(ascii);
    }
}

static void test_bidi(void **state)
{
    (void)state;
    /* A pure right-to-left (Hebrew) part is fine (RFC 3454 §6). */
    expect_parts("\xD7\xA2\xD7\x91\xD7\xA8\xD7\x99\xD7\xAA@example.com", 0,
                 "\xD7\xA2\xD7\x91\xD7\xA8\xD7\x99\xD7\xAA", "example.com",
                 NULL);
    expect_parts("a@b/\xD7\xA2\xD7\x91", 0, "a", "b", "\xD7\xA2\xD7\x91");
    /* Mixed L and RAL characters in one part are refused. */
    expect_err("a\xD7\xA2\xD7\x91@example.com", 0, JID_ERR_NODEPREP);
    expect_err("a@b/a\xD7\xA2\xD7\x91", 0, JID_ERR_RESOURCEPREP);
    /* An RAL part must start and end with an RAL character. */
    expect_err("\xD7\xA2\xD7\x91"
               "1@example.com",
               0, JID_ERR_NODEPREP);
    /* Domains are judged label by label, as IDNA does: an RTL label next
     * to an LTR one is fine, a label mixing both is not. */
    expect_parts("a@\xD7\xA2\xD7\x91\xD7\xA8\xD7\x99\xD7\xAA.example", 0, "a",
                 "\xD7\xA2\xD7\x91\xD7\xA8\xD7\x99\xD7\xAA.example", NULL);
    expect_err("a@x\xD7\xA2\xD7\x91.example", 0, JID_ERR_NAMEPREP);
    /* Arabic (U+0645 U+0635 U+0631) is RAL too. */
    expect_parts("\xD9\x85\xD8\xB5\xD8\xB1@example.com", 0,
                 "\xD9\x85\xD8\xB5\xD8\xB1", "example.com", NULL);
}

static void test_lengths(void **state)
{
    char *p1023 = repeat("a", 1023);
    char *p1024 = repeat("a", 1024);
    char *s;
    jid_t j;
    (void)state;

    /* 1023 bytes per part is the limit (RFC 7622 §3.1). */
    s = concat3(p1023, "@example.com/", p1023);
    expect_parts(s, 0, p1023, "example.com", p1023);
    free(s);
    s = concat3(p1024, "@example.com", "");
    expect_err(s, 0, JID_ERR_TOO_LONG);
    free(s);
    s = concat3("a@example.com/", p1024, "");
    expect_err(s, 0, JID_ERR_TOO_LONG);
    free(s);

    /* Domain: 16 labels of 63 bytes and 15 dots are 1023 bytes. */
    char *label = repeat("b", 63);
    char *dom = malloc(1100);
    assert_non_null(dom);
    dom[0] = '\0';
    for (int i = 0; i < 16; i++) {
        if (i > 0)
            strcat(dom, ".");
        strcat(dom, label);
    }
    assert_int_equal(strlen(dom), 1023);
    s = concat3(p1023, "@", dom);
    char *full = concat3(s, "/", p1023);
    free(s);
    /* The longest JID: exactly JID_MAX bytes. */
    assert_int_equal(strlen(full), JID_MAX);
    expect_parts(full, 0, p1023, dom, p1023);
    assert_int_equal(parse(full, 0, &j), JID_OK);
    char buf[JID_FORMAT_BUF];
    assert_int_equal(jid_format(&j, false, buf, sizeof(buf)), JID_MAX);
    assert_string_equal(buf, full);
    jid_clear(&j);
    free(full);
    /* One more byte in the domain is too long. */
    strcat(dom, "c");
    expect_err(dom, 0, JID_ERR_TOO_LONG);
    /* As is anything over JID_MAX, before any work is done. */
    char *huge = repeat("a", JID_MAX + 1);
    expect_err(huge, 0, JID_ERR_TOO_LONG);
    free(huge);
    free(dom);

    /* Labels: 63 bytes fine, 64 too long, in the ASCII form for IDN. */
    s = concat3(label, ".example", "");
    expect_parts(s, 0, NULL, s, NULL);
    free(s);
    s = concat3(label, "b.example", "");
    expect_err(s, 0, JID_ERR_TOO_LONG);
    free(s);
    /* 60 x "ü": 120 bytes of UTF-8, far over 63 bytes once in ACE form. */
    char *u = repeat("\xC3\xBC", 60);
    expect_err(u, 0, JID_ERR_TOO_LONG);
    free(u);
    free(label);

    /* Lengths count after preparation: U+3300 SQUARE APAATO (3 bytes)
     * becomes アパート (12 bytes) under NFKC. 85 of them are 1020 bytes. */
    char *sq = repeat("\xE3\x8C\x80", 85);
    s = concat3(sq, "abc", "@example.com");
    assert_int_equal(parse(s, 0, &j), JID_OK);
    assert_int_equal(j.node_len, 1023);
    jid_clear(&j);
    free(s);
    s = concat3(sq, "abcd", "@example.com");
    expect_err(s, 0, JID_ERR_TOO_LONG);
    free(s);
    s = concat3("a@b/", sq, "xyzw");
    expect_err(s, 0, JID_ERR_TOO_LONG);
    free(s);
    free(sq);

    /* And input over 1023 bytes that shrinks to fit is fine: soft hyphens
     * are mapped to nothing. */
    char *shy = repeat("\xC2\xAD", 100);
    s = concat3("a@b/", p1023, shy);
    assert_int_equal(parse(s, JID_STORED, &j), JID_OK);
    assert_int_equal(j.resource_len, 1023);
    assert_string_equal(j.resource, p1023);
    jid_clear(&j);
    free(s);
    s = concat3(shy, p1023, "@example.com");
    assert_int_equal(parse(s, 0, &j), JID_OK);
    assert_string_equal(j.node, p1023);
    jid_clear(&j);
    free(s);
    s = concat3(shy, p1024, "@example.com");
    expect_err(s, 0, JID_ERR_TOO_LONG);
    free(s);
    free(shy);

    free(p1023);
    free(p1024);
}

static void test_idn_domains(void **state)
{
    char *ascii;
    jid_t j;
    (void)state;

    expect_parts("user@b\xC3\xBC"
                 "cher.example",
                 0, "user",
                 "b\xC3\xBC"
                 "cher.example",
                 NULL);
    expect_equal("user@B\xC3\x9C"
                 "CHER.Example",
                 "user@b\xC3\xBC"
                 "cher.example",
                 true, true);
    assert_int_equal(parse("user@b\xC3\xBC"
                           "cher.example",
                           0, &j),
                     JID_OK);
    assert_int_equal(jid_domain_to_ascii(j.domain, &ascii), JID_OK);
    assert_string_equal(ascii, "xn--bcher-kva.example");
    free(ascii);
    jid_clear(&j);

    assert_int_equal(jid_domain_to_ascii("example.com", &ascii), JID_OK);
    assert_string_equal(ascii, "example.com");
    free(ascii);
    assert_int_equal(jid_domain_to_ascii("", &ascii), JID_ERR_EMPTY_DOMAIN);
    assert_null(ascii);
    /* Hebrew label: ACE form from RFC 3492-style punycode. */
    assert_int_equal(jid_domain_to_ascii("\xD7\xA2\xD7\x91.example", &ascii),
                     JID_OK);
    assert_string_equal(ascii, "xn--5db7a.example");
    free(ascii);

    /* ACE labels are kept as written (IDNA2003 ToASCII accepts them). */
    expect_parts("xn--bcher-kva.example", 0, NULL, "xn--bcher-kva.example",
                 NULL);
    /* A non-ASCII label must not start with the ACE prefix. */
    expect_err("xn--b\xC3\xBC.example", 0, JID_ERR_BAD_DOMAIN);
    /* IDNA2003 label separators U+3002, U+FF0E, U+FF61 are dots. */
    expect_parts("example\xE3\x80\x82"
                 "com",
                 0, NULL, "example.com", NULL);
    expect_parts("a\xEF\xBC\x8E"
                 "b\xEF\xBD\xA1"
                 "c",
                 0, NULL, "a.b.c", NULL);
    /* But a dot produced by NFKC inside a label (U+2024) is refused. */
    expect_err("a\xE2\x80\xA4"
               "b.example",
               0, JID_ERR_BAD_DOMAIN);
    /* Unassigned code points in a label: queries only. */
    expect_parts("\xF0\x9F\x98\x80.example", 0, NULL,
                 "\xF0\x9F\x98\x80.example", NULL);
    expect_err("\xF0\x9F\x98\x80.example", JID_STORED, JID_ERR_NAMEPREP);
}

/* Label rules: nameprep lets ASCII controls, space and punctuation through,
 * so the STD3 rules (RFC 3490 §4.1 step 3) are checked on top. */
static void test_domain_labels(void **state)
{
    static const char *const bad[] = {
        "a..b",
        "..",
        "a.b..",
        ".a",
        "exa_mple.com",
        "exa mple.com",
        "ex:ample.com",
        "ex!ample.com",
        "-a.com",
        "a-.com",
        "a.-b-.c",
        "a\tb",
        "[::1",
        "a[b]",
        "a\xEF\xBC\xA0"
        "b.com",
        "a\xEF\xBC\xBF"
        "b.com",        /* fullwidth '_' */
        "\xC2\xAD.com", /* a label that prepares to nothing */
        "example.com..",
        "example.com.\xE3\x80\x82",
    };
    jid_t j;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i], 0, &j);
        if (rc != JID_ERR_BAD_DOMAIN)
            fail_msg("%s: got %d (%s)", bad[i], rc, jid_strerror(rc));
    }
    /* RFC 7622 §3.2: one trailing dot is removed, whatever its form. */
    expect_parts("example.com.", 0, NULL, "example.com", NULL);
    expect_parts("a@example.com./r", 0, "a", "example.com", "r");
    expect_parts("example.com\xE3\x80\x82", 0, NULL, "example.com", NULL);
    expect_equal("a@example.com.", "a@example.com", true, true);
    expect_parts("a-b.c-d.e1", 0, NULL, "a-b.c-d.e1", NULL);
    expect_parts("1.2.3.256", 0, NULL, "1.2.3.256", NULL);
}

static void test_ip_literals(void **state)
{
    char *ascii;
    jid_t j;
    (void)state;

    expect_parts("user@192.0.2.1/r", 0, "user", "192.0.2.1", "r");
    expect_parts("user@[::1]/r", 0, "user", "[::1]", "r");
    expect_parts("[2001:DB8::1]", 0, NULL, "[2001:db8::1]", NULL);
    /* IPv6 is written canonically (RFC 5952), so equal addresses match. */
    expect_equal("a@[0:0:0:0:0:0:0:1]", "a@[::1]", true, true);
    expect_parts("[::FFFF:192.0.2.1]", 0, NULL, "[::ffff:192.0.2.1]", NULL);
    expect_parts("[::1].", 0, NULL, "[::1]", NULL);
    expect_err("[::1", 0, JID_ERR_BAD_DOMAIN);
    expect_err("[]", 0, JID_ERR_BAD_DOMAIN);
    expect_err("[", 0, JID_ERR_BAD_DOMAIN);
    expect_err("[zz::1]", 0, JID_ERR_BAD_DOMAIN);
    expect_err("[192.0.2.1]", 0, JID_ERR_BAD_DOMAIN);
    expect_err("[fe80::1%eth0]", 0, JID_ERR_BAD_DOMAIN);
    expect_err("[::1]x", 0, JID_ERR_BAD_DOMAIN);
    expect_err("[1:2:3:4:5:6:7:8:9:0:1:2:3:4:5:6:7:8:9:0:1:2:3:4:5]", 0,
               JID_ERR_BAD_DOMAIN);

    assert_true(jid_domain_is_ip("192.0.2.1"));
    assert_true(jid_domain_is_ip("[::1]"));
    assert_false(jid_domain_is_ip("example.com"));
    assert_false(jid_domain_is_ip("1.2.3.256"));
    assert_false(jid_domain_is_ip("[::1"));
    assert_false(jid_domain_is_ip(NULL));

    assert_int_equal(parse("a@[::1]", 0, &j), JID_OK);
    assert_int_equal(jid_domain_to_ascii(j.domain, &ascii), JID_OK);
    assert_string_equal(ascii, "[::1]");
    free(ascii);
    jid_clear(&j);
}

/* RFC 3454 §7: unassigned code points (here U+1F600, not in Unicode 3.2)
 * pass in queries and fail in stored strings. */
static void test_unassigned(void **state)
{
    char buf[JID_PART_BUF];
    (void)state;

    expect_parts("a@example.com/phone\xF0\x9F\x98\x80", 0, "a", "example.com",
                 "phone\xF0\x9F\x98\x80");
    expect_err("a@example.com/phone\xF0\x9F\x98\x80", JID_STORED,
               JID_ERR_RESOURCEPREP);
    expect_parts("\xF0\x9F\x98\x80@example.com", 0, "\xF0\x9F\x98\x80",
                 "example.com", NULL);
    expect_err("\xF0\x9F\x98\x80@example.com", JID_STORED, JID_ERR_NODEPREP);
    assert_int_equal(
        jid_prepare_node("\xF0\x9F\x98\x80", 4, JID_STORED, buf, NULL),
        JID_ERR_NODEPREP);
    /* Assigned non-ASCII characters are the same under both rules. */
    expect_parts("\xC3\xA9t\xC3\xA9@example.com", JID_STORED,
                 "\xC3\xA9t\xC3\xA9", "example.com", NULL);
}

static void test_bad_utf8(void **state)
{
    (void)state;
    expect_err("\xFF@example.com", 0, JID_ERR_BAD_UTF8);
    expect_err("a@example.com/\xC3", 0, JID_ERR_BAD_UTF8);
    expect_err("\xC0\xAF@example.com", 0, JID_ERR_BAD_UTF8);     /* overlong */
    expect_err("\xE0\x80\xAF@example.com", 0, JID_ERR_BAD_UTF8); /* overlong */
    expect_err("\xED\xA0\x80@example.com", 0, JID_ERR_BAD_UTF8); /* surrogate */
    expect_err("\xF4\x90\x80\x80@example.com", 0, JID_ERR_BAD_UTF8);
    expect_err("a@example.com/\x80", 0, JID_ERR_BAD_UTF8);
    /* An embedded NUL would cut the string short for libidn. */
    expect_error("a\0b@example.com", 15, 0, JID_ERR_BAD_UTF8);
    expect_error("a@example.com/x\0", 16, 0, JID_ERR_BAD_UTF8);
}

/* Input need not be NUL-terminated: only len bytes are read. */
static void test_length_bounded_input(void **state)
{
    static const char input[] = {'a', '@', 'b', '/', 'x', 'y', 'z'};
    jid_t j;
    (void)state;

    assert_int_equal(jid_parse(input, 5, 0, &j), JID_OK);
    assert_string_equal(j.resource, "x");
    jid_clear(&j);
    assert_int_equal(jid_parse(input, sizeof(input), 0, &j), JID_OK);
    assert_string_equal(j.resource, "xyz");
    jid_clear(&j);
    assert_int_equal(jid_parse(input, 3, 0, &j), JID_OK);
    assert_null(j.resource);
    jid_clear(&j);
}

static void test_compare(void **state)
{
    jid_t a, b, c, d;
    (void)state;

    expect_equal("a@b/c", "a@b/c", true, true);
    expect_equal("a@b/c", "a@b/d", false, true);
    expect_equal("a@b/c", "a@b", false, true);
    expect_equal("a@b", "b", false, false);
    expect_equal("b/a", "a@b", false, false);
    expect_equal("a@b", "a@c", false, false);
    expect_equal("b/c", "b/c", true, true);

    assert_int_equal(parse("Romeo@Montague.Example/Orchard", 0, &a), JID_OK);
    assert_false(jid_is_bare(&a));
    assert_false(jid_is_domain(&a));
    assert_int_equal(jid_copy(&b, &a), JID_OK);
    assert_true(jid_equal(&a, &b));
    assert_ptr_not_equal(a.domain, b.domain);
    assert_int_equal(jid_bare(&c, &a), JID_OK);
    assert_true(jid_is_bare(&c));
    assert_false(jid_is_domain(&c));
    assert_false(jid_equal(&a, &c));
    assert_true(jid_bare_equal(&a, &c));
    assert_string_equal(c.node, "romeo");
    assert_null(c.resource);
    assert_int_equal(parse("montague.example", 0, &d), JID_OK);
    assert_true(jid_is_domain(&d));
    assert_true(jid_is_bare(&d));
    assert_false(jid_bare_equal(&d, &a));
    jid_clear(&a);
    jid_clear(&b);
    jid_clear(&c);
    jid_clear(&d);
    /* Clearing twice, or clearing NULL, is harmless. */
    jid_clear(&d);
    jid_clear(NULL);
    /* Copies of an empty JID are refused. */
    assert_int_equal(jid_copy(&b, &a), JID_ERR_EMPTY_DOMAIN);
    assert_int_equal(jid_bare(&b, &a), JID_ERR_EMPTY_DOMAIN);
}

static void test_format(void **state)
{
    static const char *const vectors[][2] = {
        {"juliet@example.com/balcony", "juliet@example.com/balcony"},
        {"Juliet@Example.COM/Balcony", "juliet@example.com/Balcony"},
        {"example.com", "example.com"},
        {"example.com./x", "example.com/x"},
        {"a@b/c@d/e", "a@b/c@d/e"},
        {"\xEF\xBC\xAA"
         "uliet@B\xC3\x9C"
         "CHER.example/\xEF\xBC\xB2",
         "juliet@b\xC3\xBC"
         "cher.example/R"},
        {"x@[0::1]/y", "x@[::1]/y"},
        {"x@192.0.2.1", "x@192.0.2.1"},
    };
    char buf[JID_FORMAT_BUF];
    jid_t j, k;
    (void)state;

    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        const char *in = vectors[i][0], *want = vectors[i][1];
        assert_int_equal(parse(in, 0, &j), JID_OK);
        int n = jid_format(&j, false, buf, sizeof(buf));
        assert_int_equal(n, (int)strlen(want));
        assert_string_equal(buf, want);
        assert_int_equal(jid_format_len(&j, false), strlen(want));
        /* Round trip: the formatted form parses to the same JID. */
        assert_int_equal(parse(buf, JID_STORED, &k), JID_OK);
        assert_true(jid_equal(&j, &k));
        jid_clear(&k);
        char *s = jid_to_string(&j, false);
        assert_non_null(s);
        assert_string_equal(s, want);
        free(s);
        jid_clear(&j);
    }

    assert_int_equal(parse("a@b/c", 0, &j), JID_OK);
    assert_int_equal(jid_format(&j, true, buf, sizeof(buf)), 3);
    assert_string_equal(buf, "a@b");
    assert_int_equal(jid_format_len(&j, true), 3);
    char *s = jid_to_string(&j, true);
    assert_string_equal(s, "a@b");
    free(s);
    /* Exactly enough room, then one byte too few. */
    assert_int_equal(jid_format(&j, false, buf, 6), 5);
    assert_string_equal(buf, "a@b/c");
    assert_int_equal(jid_format(&j, false, buf, 5), JID_ERR_BUFFER);
    assert_string_equal(buf, "");
    assert_int_equal(jid_format(&j, false, buf, 0), JID_ERR_BUFFER);
    jid_clear(&j);
}

static void test_prepare_parts(void **state)
{
    char buf[JID_PART_BUF];
    size_t n;
    (void)state;

    assert_int_equal(jid_prepare_node("Juliet", 6, JID_STORED, buf, &n),
                     JID_OK);
    assert_string_equal(buf, "juliet");
    assert_int_equal(n, 6);
    assert_int_equal(jid_prepare_node("", 0, 0, buf, &n), JID_ERR_EMPTY_NODE);
    assert_int_equal(n, 0);
    assert_int_equal(
        jid_prepare_resource("Balcony\xEF\xBC\x81", 10, 0, buf, &n), JID_OK);
    assert_string_equal(buf, "Balcony!");
    assert_int_equal(jid_prepare_resource("", 0, 0, buf, NULL),
                     JID_ERR_EMPTY_RESOURCE);
    assert_int_equal(jid_prepare_domain("Example.COM.", 12, 0, buf, &n),
                     JID_OK);
    assert_string_equal(buf, "example.com");
    assert_int_equal(n, 11);
    assert_int_equal(jid_prepare_domain("a..b", 4, 0, buf, &n),
                     JID_ERR_BAD_DOMAIN);
    assert_string_equal(buf, "");
    assert_int_equal(n, 0);
    assert_int_equal(jid_prepare_domain("\xFF", 1, 0, buf, NULL),
                     JID_ERR_BAD_UTF8);
}

static void test_arena(void **state)
{
    arena_t *arena = arena_new(0);
    jid_t a, b;
    (void)state;

    assert_non_null(arena);
    assert_int_equal(jid_parse_arena(arena, "A@B/C", 5, 0, &a), JID_OK);
    assert_null(a.heap);
    assert_int_equal(parse("a@b/C", 0, &b), JID_OK);
    assert_true(jid_equal(&a, &b));
    jid_clear(&b);
    assert_int_equal(jid_parse_arena(arena, "@b", 2, 0, &b),
                     JID_ERR_EMPTY_NODE);
    /* jid_clear() is harmless on an arena JID. */
    jid_clear(&a);
    arena_free(arena);
    assert_int_equal(jid_parse_arena(NULL, "a@b", 3, 0, &a), JID_ERR_NOMEM);
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(jid_strerror(JID_OK), "success");
    for (int e = JID_ERR_BUFFER; e < 0; e++) {
        const char *s = jid_strerror(e);
        assert_non_null(s);
        assert_string_not_equal(s, jid_strerror(12345));
    }
    assert_string_equal(jid_strerror(JID_ERR_TOO_LONG), "part too long");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_parts),
        cmocka_unit_test(test_separators),
        cmocka_unit_test(test_empty_parts),
        cmocka_unit_test(test_case_folding),
        cmocka_unit_test(test_compatibility_characters),
        cmocka_unit_test(test_node_prohibited),
        cmocka_unit_test(test_ascii_matches_libidn),
        cmocka_unit_test(test_bidi),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_idn_domains),
        cmocka_unit_test(test_domain_labels),
        cmocka_unit_test(test_ip_literals),
        cmocka_unit_test(test_unassigned),
        cmocka_unit_test(test_bad_utf8),
        cmocka_unit_test(test_length_bounded_input),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_prepare_parts),
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
