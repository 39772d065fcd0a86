/* The XMPP stream parser: expat behind Starling's own interface.
 *
 * Two layers. A small scanner of our own looks at every byte first and hands
 * expat only complete markup: a start or end tag, a processing instruction
 * or a CDATA opener is held back until its closing '>' has arrived, while
 * character data passes straight through. That gives two guarantees that
 * expat alone does not:
 *
 *  - No quadratic re-parsing. Expat re-scans an incomplete token from its
 *    start on every call, so a large start tag fed in small pieces costs
 *    O(n^2) (CVE-2023-52425). Expat 2.6 and Debian 12's later security
 *    updates defer the re-scan instead, which can hold back a stanza whose
 *    last bytes have arrived. Since expat never sees an incomplete tag from
 *    us, we can switch that deferral off where it exists (detected at
 *    configure time) and still never re-parse.
 *  - Early, specific errors. Comments, DTDs and foreign processing
 *    instructions are refused with restricted-xml as soon as their first
 *    bytes are seen, and the element size limit is enforced on held-back
 *    bytes too, so memory stays bounded whatever the input.
 *
 * Expat then builds one element tree per top-level child of the stream. */
#include "xml/xml.h"

#include <expat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "starling_config.h"

/* Separates namespace URI, local name and prefix in names from expat. No
 * XML character data can contain U+0001, so no URI can either. */
#define NS_SEP '\x01'

/* Character data is handed to expat in pieces of at most this size, so
 * the size limit is checked at least this often within one large chunk. */
enum { TEXT_SEGMENT = 16 * 1024 };

enum scan_state {
    SC_TEXT,     /* character data (or prolog/epilog white space) */
    SC_LT,       /* just after '<' */
    SC_TAG,      /* inside a start or end tag */
    SC_TAG_SQ,   /* inside a '...' attribute value */
    SC_TAG_DQ,   /* inside a "..." attribute value */
    SC_PI,       /* inside <?xml ... ?> */
    SC_PI_Q,     /* inside <?xml ... ?>, just after '?' */
    SC_BANG,     /* after "<!" : CDATA opener expected */
    SC_CDATA,    /* inside a CDATA section */
    SC_CDATA_B1, /* inside CDATA, after ']' */
    SC_CDATA_B2, /* inside CDATA, after "]]" */
};

struct xml_parser {
    XML_Parser expat;
    xml_parser_cbs_t cbs;
    void *ud;
    char *content_ns; /* owned copy, or NULL */
    xml_limits_t limits;

    int error;           /* first error, sticky until reset */
    bool stop_requested; /* a callback called xml_parser_stop() */
    bool stopped;        /* the last feed stopped; reset is required */
    bool closed;         /* the peer's close tag has been parsed */
    char errtext[160];

    /* Scanner. */
    enum scan_state state;
    unsigned sub;  /* position within a multi-byte pattern (<?xml, <![CDATA[) */
    buf_t hold;    /* incomplete markup, starting at its '<' */
    bool at_start; /* nothing of this stream seen yet */

    /* Tree building. */
    unsigned depth;         /* 0 outside the root, 1 inside the stream */
    unsigned pending_decls; /* namespace declarations of the next start tag */
    char *root_default_ns;  /* default namespace declared on the header */
    xml_tree_t *tree;       /* the top-level element being built */
    xml_node_t *node;       /* its innermost open element */
    buf_t text;             /* character data not yet attached */
    unsigned long long engine_off; /* bytes handed to expat since reset */
    unsigned long long elem_start; /* engine offset of the open element */
    bool elem_open;

    xml_parser_stats_t stats;
};

static const char *const streams_ns = XML_NS_STREAMS;

/* ------------------------------------------------------------- errors */

const char *xml_strerror(int err)
{
    switch (err) {
    case XML_OK:
        return "no error";
    case XML_ERR_NOMEM:
        return "out of memory";
    case XML_ERR_NOT_WELL_FORMED:
        return "XML is not well-formed";
    case XML_ERR_RESTRICTED:
        return "XML feature not allowed in XMPP (RFC 6120 section 11)";
    case XML_ERR_INVALID_NAMESPACE:
        return "wrong stream or content namespace";
    case XML_ERR_BAD_NAMESPACE_PREFIX:
        return "unsupported or missing namespace prefix";
    case XML_ERR_UNSUPPORTED_ENCODING:
        return "encoding other than UTF-8";
    case XML_ERR_TOO_LARGE:
        return "element larger than the configured limit";
    case XML_ERR_TOO_DEEP:
        return "elements nested deeper than the configured limit";
    case XML_ERR_TOO_MANY_ATTRS:
        return "more attributes than the configured limit";
    case XML_ERR_BAD_FORMAT:
        return "XML that cannot be processed as an XMPP stream";
    case XML_ERR_CLOSED:
        return "data after the stream was closed";
    default:
        return "unknown error";
    }
}

const char *xml_error_condition(int err)
{
    switch (err) {
    case XML_ERR_NOMEM:
        return "resource-constraint";
    case XML_ERR_NOT_WELL_FORMED:
    case XML_ERR_CLOSED:
        return "not-well-formed";
    case XML_ERR_RESTRICTED:
        return "restricted-xml";
    case XML_ERR_INVALID_NAMESPACE:
        return "invalid-namespace";
    case XML_ERR_BAD_NAMESPACE_PREFIX:
        return "bad-namespace-prefix";
    case XML_ERR_UNSUPPORTED_ENCODING:
        return "unsupported-encoding";
    case XML_ERR_TOO_LARGE:
    case XML_ERR_TOO_DEEP:
    case XML_ERR_TOO_MANY_ATTRS:
        return "policy-violation";
    case XML_ERR_BAD_FORMAT:
        return "bad-format";
    default:
        return "undefined-condition";
    }
}

void xml_limits_default(xml_limits_t *l)
{
    l->max_element_size = 256 * 1024;
    l->max_depth = 64;
    l->max_attrs = 64;
}

/* Records the first error with a description, and stops expat when called
 * from one of its handlers. */
static void fail(xml_parser_t *p, int err, const char *detail)
{
    if (p->error != XML_OK)
        return;
    p->error = err;
    snprintf(p->errtext, sizeof(p->errtext), "%s%s%s (byte %llu)",
             xml_strerror(err), detail != NULL ? ": " : "",
             detail != NULL ? detail : "", p->stats.bytes_fed);
}

static void fail_in_handler(xml_parser_t *p, int err, const char *detail)
{
    fail(p, err, detail);
    XML_StopParser(p->expat, XML_FALSE);
}

/* Maps an expat error to the XMPP condition that names it best. */
static int map_expat_error(enum XML_Error e)
{
    switch (e) {
    case XML_ERROR_NO_MEMORY:
        return XML_ERR_NOMEM;
    case XML_ERROR_UNDEFINED_ENTITY:
    case XML_ERROR_RECURSIVE_ENTITY_REF:
    case XML_ERROR_BINARY_ENTITY_REF:
    case XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF:
    case XML_ERROR_EXTERNAL_ENTITY_HANDLING:
    case XML_ERROR_NOT_STANDALONE:
    case XML_ERROR_ENTITY_DECLARED_IN_PE:
        /* RFC 6120 §11.1: only the five predefined entities exist. */
        return XML_ERR_RESTRICTED;
    case XML_ERROR_UNBOUND_PREFIX:
    case XML_ERROR_UNDECLARING_PREFIX:
    case XML_ERROR_RESERVED_PREFIX_XML:
    case XML_ERROR_RESERVED_PREFIX_XMLNS:
    case XML_ERROR_RESERVED_NAMESPACE_URI:
        return XML_ERR_BAD_NAMESPACE_PREFIX;
    case XML_ERROR_UNKNOWN_ENCODING:
    case XML_ERROR_INCORRECT_ENCODING:
        return XML_ERR_UNSUPPORTED_ENCODING;
    case XML_ERROR_JUNK_AFTER_DOC_ELEMENT:
        return XML_ERR_CLOSED;
    default:
        return XML_ERR_NOT_WELL_FORMED;
    }
}

/* ------------------------------------------------------- expat handlers */

/* Splits an expat name "uri SEP local SEP prefix" in place. */
static void split_name(char *s, const char **ns, const char **local,
                       const char **prefix)
{
    char *a = strchr(s, NS_SEP);
    if (a == NULL) {
        *ns = NULL;
        *local = s;
        *prefix = NULL;
        return;
    }
    *a = '\0';
    *ns = s;
    *local = a + 1;
    char *b = strchr(a + 1, NS_SEP);
    if (b != NULL) {
        *b = '\0';
        *prefix = b + 1;
    } else {
        *prefix = NULL;
    }
}

/* Creates an element named by expat (copied into t) with its attributes. */
static xml_node_t *make_element(xml_parser_t *p, xml_tree_t *t,
                                xml_node_t *parent, const XML_Char *name,
                                const XML_Char **atts)
{
    char *n = arena_strdup(t->arena, name);
    if (n == NULL)
        return NULL;
    const char *ns, *local, *prefix;
    split_name(n, &ns, &local, &prefix);
    xml_node_t *el = arena_alloc(t->arena, sizeof(*el));
    if (el == NULL)
        return NULL;
    memset(el, 0, sizeof(*el));
    el->kind = XML_NODE_ELEMENT;
    el->ns = ns;
    el->name = local;
    el->prefix = prefix;
    xml_attr_t **tail = &el->attrs;
    for (size_t i = 0; atts[i] != NULL; i += 2) {
        xml_attr_t *a = arena_alloc(t->arena, sizeof(*a));
        char *an = arena_strdup(t->arena, atts[i]);
        char *av = arena_strdup(t->arena, atts[i + 1]);
        if (a == NULL || an == NULL || av == NULL)
            return NULL;
        split_name(an, &a->ns, &a->name, &a->prefix);
        a->value = av;
        a->next = NULL;
        *tail = a;
        tail = &a->next;
    }
    (void)p;
    if (parent == NULL)
        t->root = el;
    else {
        el->parent = parent;
        if (parent->last_child != NULL)
            parent->last_child->next = el;
        else
            parent->children = el;
        parent->last_child = el;
    }
    return el;
}

/* Attaches pending character data to the open element. */
static int flush_text(xml_parser_t *p)
{
    if (p->text.len == 0)
        return 0;
    int rc = xml_element_add_text(p->tree, p->node, p->text.data, p->text.len);
    buf_reset(&p->text);
    return rc;
}

static void check_root(xml_parser_t *p, const xml_node_t *root)
{
    /* RFC 6120 §4.8.1 and §11.2: the stream element is qualified by the
     * streams namespace through a prefix (feature set 3.2-1, 3.2-2). */
    if (root->ns == NULL || strcmp(root->ns, streams_ns) != 0) {
        fail_in_handler(p, XML_ERR_INVALID_NAMESPACE,
                        "stream element not in the streams namespace");
        return;
    }
    if (root->prefix == NULL) {
        fail_in_handler(p, XML_ERR_BAD_NAMESPACE_PREFIX,
                        "streams namespace used without a prefix");
        return;
    }
    if (strcmp(root->name, "stream") != 0) {
        fail_in_handler(p, XML_ERR_BAD_FORMAT, "root element is not <stream>");
        return;
    }
    /* Feature set 3.2-4: a default namespace other than the streams one. */
    const char *def = p->root_default_ns;
    if (def != NULL && strcmp(def, streams_ns) == 0) {
        fail_in_handler(p, XML_ERR_INVALID_NAMESPACE,
                        "default namespace is the streams namespace");
        return;
    }
    if (p->content_ns != NULL &&
        (def == NULL || strcmp(def, p->content_ns) != 0)) {
        fail_in_handler(p, XML_ERR_INVALID_NAMESPACE,
                        "unsupported content namespace");
        return;
    }
}

static void XMLCALL on_start(void *ud, const XML_Char *name,
                             const XML_Char **atts)
{
    xml_parser_t *p = ud;
    unsigned decls = p->pending_decls;
    p->pending_decls = 0;
    if (p->error != XML_OK || p->stop_requested)
        return;
    size_t natts = 0;
    while (atts[natts] != NULL)
        natts += 2;
    if (natts / 2 + decls > p->limits.max_attrs) {
        fail_in_handler(p, XML_ERR_TOO_MANY_ATTRS, NULL);
        return;
    }

    if (p->depth == 0) {
        xml_tree_t *t = xml_tree_new();
        if (t == NULL || make_element(p, t, NULL, name, atts) == NULL) {
            xml_tree_free(t);
            fail_in_handler(p, XML_ERR_NOMEM, NULL);
            return;
        }
        p->depth = 1;
        check_root(p, t->root);
        if (p->error != XML_OK) {
            xml_tree_free(t);
            return;
        }
        if (p->cbs.stream_start != NULL)
            p->cbs.stream_start(p->ud, t);
        else
            xml_tree_free(t);
        if (p->stop_requested)
            XML_StopParser(p->expat, XML_FALSE);
        return;
    }

    if (p->depth - 1 >= p->limits.max_depth) {
        fail_in_handler(p, XML_ERR_TOO_DEEP, NULL);
        return;
    }
    if (p->depth == 1) {
        p->tree = xml_tree_new();
        if (p->tree == NULL) {
            fail_in_handler(p, XML_ERR_NOMEM, NULL);
            return;
        }
        p->elem_open = true;
        p->elem_start = (unsigned long long)XML_GetCurrentByteIndex(p->expat);
        p->node = make_element(p, p->tree, NULL, name, atts);
        if (p->node != NULL && p->node->prefix == NULL && p->node->ns != NULL &&
            strcmp(p->node->ns, streams_ns) == 0) {
            /* Feature set 3.2-2: stream-level elements carry the prefix. */
            fail_in_handler(p, XML_ERR_BAD_NAMESPACE_PREFIX,
                            "streams namespace element without a prefix");
            return;
        }
    } else {
        if (flush_text(p) < 0) {
            fail_in_handler(p, XML_ERR_NOMEM, NULL);
            return;
        }
        p->node = make_element(p, p->tree, p->node, name, atts);
    }
    if (p->node == NULL) {
        fail_in_handler(p, XML_ERR_NOMEM, NULL);
        return;
    }
    p->depth++;
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    xml_parser_t *p = ud;
    (void)name;
    /* After a stop, expat may still report the end of an empty-element
     * tag whose start we already handled; nothing more is reported. */
    if (p->error != XML_OK || p->stop_requested)
        return;
    if (p->depth == 1) {
        /* The peer closed the stream. */
        p->depth = 0;
        p->closed = true;
        if (p->cbs.stream_end != NULL)
            p->cbs.stream_end(p->ud);
        /* Nothing may follow the close tag; stop expat here so that the
         * rest of the chunk is checked by our own post-close rule. */
        XML_StopParser(p->expat, XML_FALSE);
        return;
    }
    if (flush_text(p) < 0) {
        fail_in_handler(p, XML_ERR_NOMEM, NULL);
        return;
    }
    p->depth--;
    if (p->depth > 1) {
        p->node = p->node->parent;
        return;
    }
    xml_tree_t *t = p->tree;
    p->tree = NULL;
    p->node = NULL;
    p->elem_open = false;
    /* A large text buffer is not kept around between stanzas: idle
     * sessions hold no buffers. */
    if (p->text.cap > 4096)
        buf_free(&p->text);
    if (p->cbs.element != NULL)
        p->cbs.element(p->ud, t);
    else
        xml_tree_free(t);
    if (p->stop_requested)
        XML_StopParser(p->expat, XML_FALSE);
}

static bool all_space(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    xml_parser_t *p = ud;
    if (p->error != XML_OK || p->stop_requested)
        return;
    if (p->depth <= 1) {
        /* Between stanzas only white space may appear (RFC 6120 §11.7:
         * white space keepalives). */
        if (!all_space(s, (size_t)len))
            fail_in_handler(p, XML_ERR_BAD_FORMAT,
                            "character data at the stream level");
        return;
    }
    if (buf_append(&p->text, s, (size_t)len) < 0)
        fail_in_handler(p, XML_ERR_NOMEM, NULL);
}

static void XMLCALL on_ns_start(void *ud, const XML_Char *prefix,
                                const XML_Char *uri)
{
    xml_parser_t *p = ud;
    p->pending_decls++;
    if (p->depth != 0 || prefix != NULL || p->error != XML_OK)
        return;
    free(p->root_default_ns);
    p->root_default_ns = strdup(uri != NULL ? uri : "");
    if (p->root_default_ns == NULL)
        fail_in_handler(p, XML_ERR_NOMEM, NULL);
}

static void XMLCALL on_xmldecl(void *ud, const XML_Char *version,
                               const XML_Char *encoding, int standalone)
{
    xml_parser_t *p = ud;
    (void)version;
    (void)standalone;
    /* RFC 6120 §11.6: UTF-8 only. */
    if (encoding != NULL && strcasecmp(encoding, "UTF-8") != 0)
        fail_in_handler(p, XML_ERR_UNSUPPORTED_ENCODING, encoding);
}

static void XMLCALL on_comment(void *ud, const XML_Char *data)
{
    (void)data;
    fail_in_handler(ud, XML_ERR_RESTRICTED, "comment");
}

static void XMLCALL on_pi(void *ud, const XML_Char *target,
                          const XML_Char *data)
{
    (void)target;
    (void)data;
    fail_in_handler(ud, XML_ERR_RESTRICTED, "processing instruction");
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name,
                               const XML_Char *sysid, const XML_Char *pubid,
                               int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    fail_in_handler(ud, XML_ERR_RESTRICTED, "document type declaration");
}

static void XMLCALL on_entity_decl(void *ud, const XML_Char *name, int is_pe,
                                   const XML_Char *value, int value_len,
                                   const XML_Char *base, const XML_Char *sysid,
                                   const XML_Char *pubid,
                                   const XML_Char *notation)
{
    (void)name, (void)is_pe, (void)value, (void)value_len, (void)base;
    (void)sysid, (void)pubid, (void)notation;
    fail_in_handler(ud, XML_ERR_RESTRICTED, "entity declaration");
}

static void XMLCALL on_skipped_entity(void *ud, const XML_Char *name, int is_pe)
{
    (void)name;
    (void)is_pe;
    fail_in_handler(ud, XML_ERR_RESTRICTED, "entity reference");
}

static void setup_expat(xml_parser_t *p)
{
    XML_Parser e = p->expat;
    XML_SetUserData(e, p);
    XML_SetReturnNSTriplet(e, 1);
    XML_SetElementHandler(e, on_start, on_end);
    XML_SetCharacterDataHandler(e, on_text);
    XML_SetStartNamespaceDeclHandler(e, on_ns_start);
    XML_SetXmlDeclHandler(e, on_xmldecl);
    XML_SetCommentHandler(e, on_comment);
    XML_SetProcessingInstructionHandler(e, on_pi);
    XML_SetStartDoctypeDeclHandler(e, on_doctype);
    XML_SetEntityDeclHandler(e, on_entity_decl);
    XML_SetSkippedEntityHandler(e, on_skipped_entity);
    XML_SetParamEntityParsing(e, XML_PARAM_ENTITY_PARSING_NEVER);
#if STARLING_HAVE_REPARSE_DEFERRAL
    /* Our scanner never hands expat an incomplete tag, so deferring the
     * re-parse buys nothing and could delay a complete stanza. */
    XML_SetReparseDeferralEnabled(e, XML_FALSE);
#endif
}

/* ------------------------------------------------------------- public */

static void parser_clear_stream(xml_parser_t *p)
{
    xml_tree_free(p->tree);
    p->tree = NULL;
    p->node = NULL;
    free(p->root_default_ns);
    p->root_default_ns = NULL;
    buf_free(&p->text);
    buf_free(&p->hold);
    p->error = XML_OK;
    p->errtext[0] = '\0';
    p->stop_requested = false;
    p->stopped = false;
    p->closed = false;
    p->state = SC_TEXT;
    p->sub = 0;
    p->at_start = true;
    p->depth = 0;
    p->pending_decls = 0;
    p->engine_off = 0;
    p->elem_start = 0;
    p->elem_open = false;
}

xml_parser_t *xml_parser_new(const xml_parser_opts_t *opts,
                             const xml_parser_cbs_t *cbs, void *ud)
{
    xml_parser_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    if (opts != NULL) {
        p->limits = opts->limits;
        if (opts->content_ns != NULL &&
            (p->content_ns = strdup(opts->content_ns)) == NULL) {
            free(p);
            return NULL;
        }
    } else {
        xml_limits_default(&p->limits);
    }
    if (cbs != NULL)
        p->cbs = *cbs;
    p->ud = ud;
    /* The encoding is fixed to UTF-8 (RFC 6120 §11.6); a declaration of
     * any other is refused by on_xmldecl. */
    p->expat = XML_ParserCreateNS("UTF-8", NS_SEP);
    if (p->expat == NULL) {
        free(p->content_ns);
        free(p);
        return NULL;
    }
    setup_expat(p);
    parser_clear_stream(p);
    return p;
}

void xml_parser_free(xml_parser_t *p)
{
    if (p == NULL)
        return;
    parser_clear_stream(p);
    XML_ParserFree(p->expat);
    free(p->content_ns);
    free(p);
}

int xml_parser_reset(xml_parser_t *p)
{
    parser_clear_stream(p);
    if (!XML_ParserReset(p->expat, "UTF-8"))
        return XML_ERR_NOMEM;
    setup_expat(p);
    return XML_OK;
}

void xml_parser_stop(xml_parser_t *p)
{
    p->stop_requested = true;
}

void xml_parser_set_limits(xml_parser_t *p, const xml_limits_t *limits)
{
    p->limits = *limits;
}

const char *xml_parser_error_text(const xml_parser_t *p)
{
    return p->errtext[0] != '\0' ? p->errtext : xml_strerror(p->error);
}

void xml_parser_get_stats(const xml_parser_t *p, xml_parser_stats_t *out)
{
    *out = p->stats;
    out->buffered = p->hold.len;
}

/* Bytes of the open top-level element so far, counting `extra` bytes about
 * to be handed over and whatever markup is held back. */
static unsigned long long element_size(const xml_parser_t *p, size_t extra)
{
    if (p->elem_open)
        return p->engine_off + p->hold.len + extra - p->elem_start;
    return p->hold.len + extra;
}

/* Hands len bytes to expat. Returns XML_OK, XML_STOPPED or an error. */
static int engine_feed(xml_parser_t *p, const char *data, size_t len)
{
    if (len == 0)
        return XML_OK;
    /* Character data of the open element counts towards its size before
     * it is parsed, so that memory stays bounded. */
    if (p->elem_open && element_size(p, len) > p->limits.max_element_size) {
        fail(p, XML_ERR_TOO_LARGE, NULL);
        return p->error;
    }
    p->stats.engine_calls++;
    p->stats.engine_bytes += len;
    enum XML_Status st = XML_Parse(p->expat, data, (int)len, XML_FALSE);
    p->engine_off += len;
    if (st == XML_STATUS_ERROR) {
        if (p->error == XML_OK) {
            enum XML_Error e = XML_GetErrorCode(p->expat);
            if (e != XML_ERROR_ABORTED) {
                char detail[96];
                snprintf(detail, sizeof(detail), "%s at line %lu column %lu",
                         XML_ErrorString(e),
                         (unsigned long)XML_GetCurrentLineNumber(p->expat),
                         (unsigned long)XML_GetCurrentColumnNumber(p->expat));
                fail(p, map_expat_error(e), detail);
            }
        }
        if (p->error != XML_OK)
            return p->error;
        if (p->stop_requested) {
            p->stopped = true;
            return XML_STOPPED;
        }
        return XML_OK; /* stopped by on_end at the close tag */
    }
    if (p->elem_open && element_size(p, 0) > p->limits.max_element_size) {
        fail(p, XML_ERR_TOO_LARGE, NULL);
        return p->error;
    }
    return XML_OK;
}

/* Holds back len bytes of incomplete markup. */
static int hold_bytes(xml_parser_t *p, const char *data, size_t len)
{
    if (element_size(p, len) > p->limits.max_element_size) {
        fail(p, XML_ERR_TOO_LARGE, NULL);
        return p->error;
    }
    if (buf_append(&p->hold, data, len) < 0) {
        fail(p, XML_ERR_NOMEM, NULL);
        return p->error;
    }
    return XML_OK;
}

/* Hands over a complete markup token: the held-back part plus data[0..len). */
static int markup_complete(xml_parser_t *p, const char *data, size_t len)
{
    /* A whole tag that arrived in one piece counts against the limit too
     * (a huge start tag of a new element, or the stream header). */
    if (element_size(p, len) > p->limits.max_element_size) {
        fail(p, XML_ERR_TOO_LARGE, NULL);
        return p->error;
    }
    if (p->hold.len == 0)
        return engine_feed(p, data, len);
    int rc = hold_bytes(p, data, len);
    if (rc != XML_OK)
        return rc;
    /* The held bytes are handed over now; element_size() must not count
     * them twice, so take them out of the hold first. */
    buf_t token = p->hold;
    p->hold = (buf_t)BUF_INIT;
    rc = engine_feed(p, token.data, token.len);
    buf_free(&token);
    return rc;
}

static bool is_name_start(unsigned char c)
{
    return c == '_' || c == ':' || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || c >= 0x80;
}

/* After the close tag only white space may follow. */
static int after_close(xml_parser_t *p, const char *data, size_t len)
{
    if (!all_space(data, len)) {
        fail(p, XML_ERR_CLOSED, NULL);
        return p->error;
    }
    return XML_OK;
}

/* The chunk being scanned: bytes [seg, i) are scanned but neither handed
 * to expat nor held back yet. */
typedef struct scan {
    const char *data;
    size_t len;
    size_t i;   /* next byte to look at */
    size_t seg; /* start of the bytes not yet handed over or held */
} scan_t;

/* RFC 6120 §11.6: a UTF-16 or UTF-32 stream (byte order mark, or a NUL in
 * the first two bytes) is refused as such, rather than as malformed UTF-8. */
static int check_first_bytes(xml_parser_t *p, const char *data, size_t len)
{
    if (!p->at_start || len == 0)
        return XML_OK;
    unsigned char c0 = (unsigned char)data[0];
    if (c0 == 0xFE || c0 == 0xFF || c0 == 0x00 ||
        (len > 1 && c0 == '<' && data[1] == '\0')) {
        fail(p, XML_ERR_UNSUPPORTED_ENCODING, "not UTF-8");
        return p->error;
    }
    p->at_start = false;
    return XML_OK;
}

/* Hands the scanned bytes [seg, end) to expat and moves past them. */
static int hand_over(xml_parser_t *p, scan_t *sc, size_t end)
{
    int rc = engine_feed(p, sc->data + sc->seg, end - sc->seg);
    sc->seg = end;
    return rc;
}

/* A complete markup token ends at byte i (its '>'): the held part plus
 * [seg, i] go to expat; scanning continues in `next`. */
static int token_done(xml_parser_t *p, scan_t *sc, enum scan_state next)
{
    int rc = markup_complete(p, sc->data + sc->seg, sc->i + 1 - sc->seg);
    sc->seg = sc->i + 1;
    p->state = next;
    return rc;
}

/* Character data streams through, in pieces of at most TEXT_SEGMENT; a '<'
 * starts markup. */
static int scan_text(xml_parser_t *p, scan_t *sc)
{
    const char *lt = memchr(sc->data + sc->i, '<', sc->len - sc->i);
    size_t end = lt != NULL ? (size_t)(lt - sc->data) : sc->len;
    if (end - sc->seg > TEXT_SEGMENT) {
        /* Hand long character data over in bounded pieces. */
        end = sc->seg + TEXT_SEGMENT;
        int rc = hand_over(p, sc, end);
        sc->i = end;
        return rc;
    }
    if (lt == NULL) {
        sc->i = sc->len; /* handed over at the end of the chunk */
        return XML_OK;
    }
    int rc = hand_over(p, sc, end);
    sc->i = end + 1;
    p->state = SC_LT;
    return rc;
}

/* The byte after '<' says what kind of markup this is. */
static int scan_lt(xml_parser_t *p, scan_t *sc)
{
    unsigned char c = (unsigned char)sc->data[sc->i++];
    if (c == '!') {
        p->state = SC_BANG;
        p->sub = 0;
    } else if (c == '?') {
        p->state = SC_PI;
        p->sub = 0;
    } else if (c == '/' || is_name_start(c)) {
        p->state = SC_TAG;
    } else {
        fail(p, XML_ERR_NOT_WELL_FORMED, "'<' not followed by a name");
        return p->error;
    }
    return XML_OK;
}

/* Inside a start or end tag: jump to the next byte that matters. */
static int scan_tag(xml_parser_t *p, scan_t *sc)
{
    const char *d = sc->data;
    size_t j = sc->i;
    while (j < sc->len && d[j] != '>' && d[j] != '\'' && d[j] != '"' &&
           d[j] != '<')
        j++;
    sc->i = j;
    if (j == sc->len)
        return XML_OK;
    int rc = XML_OK;
    if (d[j] == '<') {
        fail(p, XML_ERR_NOT_WELL_FORMED, "'<' inside a tag");
        rc = p->error;
    } else if (d[j] == '>') {
        rc = token_done(p, sc, SC_TEXT);
    } else {
        p->state = d[j] == '\'' ? SC_TAG_SQ : SC_TAG_DQ;
    }
    sc->i++;
    return rc;
}

/* Inside a quoted attribute value: up to the closing quote. */
static int scan_attr_value(xml_parser_t *p, scan_t *sc)
{
    char q = p->state == SC_TAG_SQ ? '\'' : '"';
    size_t j = sc->i;
    while (j < sc->len && sc->data[j] != q && sc->data[j] != '<')
        j++;
    sc->i = j;
    if (j == sc->len)
        return XML_OK;
    sc->i++;
    if (sc->data[j] == '<') {
        fail(p, XML_ERR_NOT_WELL_FORMED, "'<' in an attribute value");
        return p->error;
    }
    p->state = SC_TAG;
    return XML_OK;
}

/* RFC 6120 §11.1: the XML declaration is the only processing instruction
 * allowed; its target is exactly "xml". */
static int scan_pi(xml_parser_t *p, scan_t *sc)
{
    unsigned char c = (unsigned char)sc->data[sc->i];
    int rc = XML_OK;
    if (p->state == SC_PI_Q) {
        if (c == '>')
            rc = token_done(p, sc, SC_TEXT);
        else if (c != '?')
            p->state = SC_PI;
    } else if (p->sub < 3) {
        if (c != (unsigned char)"xml"[p->sub]) {
            fail(p, XML_ERR_RESTRICTED, "processing instruction");
            rc = p->error;
        }
        p->sub++;
    } else if (p->sub == 3) {
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '?') {
            fail(p, XML_ERR_RESTRICTED, "processing instruction");
            rc = p->error;
        }
        p->sub++;
        if (c == '?')
            p->state = SC_PI_Q;
    } else if (c == '?') {
        p->state = SC_PI_Q;
    }
    sc->i++;
    return rc;
}

/* "<![CDATA[" is the only construct starting with "<!" that XMPP allows;
 * comments and DTD declarations are restricted. */
static int scan_bang(xml_parser_t *p, scan_t *sc)
{
    unsigned char c = (unsigned char)sc->data[sc->i];
    int rc = XML_OK;
    if (p->sub == 0 &&
        (c == '-' || c == 'D' || c == 'E' || c == 'A' || c == 'N')) {
        fail(p, XML_ERR_RESTRICTED,
             c == '-' ? "comment" : "document type declaration");
        rc = p->error;
    } else if (c != (unsigned char)"[CDATA["[p->sub]) {
        fail(p, XML_ERR_NOT_WELL_FORMED, "unknown markup after '<!'");
        rc = p->error;
    } else if (++p->sub == 7) {
        rc = token_done(p, sc, SC_CDATA);
    }
    sc->i++;
    return rc;
}

/* CDATA content is character data: it streams through, in bounded pieces
 * like any other text, up to and including its "]]>". */
static int scan_cdata(xml_parser_t *p, scan_t *sc)
{
    unsigned char c = (unsigned char)sc->data[sc->i++];
    if (c == ']')
        p->state = p->state == SC_CDATA ? SC_CDATA_B1 : SC_CDATA_B2;
    else if (c == '>' && p->state == SC_CDATA_B2)
        p->state = SC_TEXT;
    else
        p->state = SC_CDATA;
    if (sc->i - sc->seg >= TEXT_SEGMENT || p->state == SC_TEXT)
        return hand_over(p, sc, sc->i);
    return XML_OK;
}

/* One step of the scanner from byte i, by state. */
static int scan_step(xml_parser_t *p, scan_t *sc)
{
    switch (p->state) {
    case SC_TEXT:
        return scan_text(p, sc);
    case SC_LT:
        return scan_lt(p, sc);
    case SC_TAG:
        return scan_tag(p, sc);
    case SC_TAG_SQ:
    case SC_TAG_DQ:
        return scan_attr_value(p, sc);
    case SC_PI:
    case SC_PI_Q:
        return scan_pi(p, sc);
    case SC_BANG:
        return scan_bang(p, sc);
    case SC_CDATA:
    case SC_CDATA_B1:
    case SC_CDATA_B2:
        return scan_cdata(p, sc);
    }
    return XML_OK;
}

/* At the end of the chunk: character data goes to expat now; incomplete
 * markup is held back until its end arrives. */
static int finish_chunk(xml_parser_t *p, scan_t *sc)
{
    if (sc->seg >= sc->len)
        return XML_OK;
    switch (p->state) {
    case SC_TEXT:
    case SC_CDATA:
    case SC_CDATA_B1:
    case SC_CDATA_B2:
        return hand_over(p, sc, sc->len);
    default:
        return hold_bytes(p, sc->data + sc->seg, sc->len - sc->seg);
    }
}

int xml_parser_feed(xml_parser_t *p, const char *data, size_t len)
{
    if (p->error != XML_OK)
        return p->error;
    if (p->stopped)
        return XML_STOPPED;
    p->stats.bytes_fed += len;
    if (p->closed)
        return after_close(p, data, len);
    int rc = check_first_bytes(p, data, len);

    scan_t sc = {data, len, 0, 0};
    while (sc.i < len && rc == XML_OK) {
        rc = scan_step(p, &sc);
        if (rc == XML_OK && p->closed) {
            /* The close tag was parsed: only white space may follow. */
            rc = after_close(p, data + sc.i, len - sc.i);
            sc.seg = sc.i = len;
        }
    }
    if (rc == XML_OK)
        rc = finish_chunk(p, &sc);
    if (rc == XML_STOPPED)
        buf_free(&p->hold);
    else if (p->hold.len == 0 && p->hold.cap > 0)
        buf_free(&p->hold); /* an idle stream holds no buffer */
    return rc;
}
