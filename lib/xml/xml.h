/* xml: Starling's XML layer for XMPP streams.
 *
 * Three parts, one header:
 *  - the element tree: nodes allocated from one arena per tree, freed in one
 *    call (xml_tree_free);
 *  - the stream parser: fed arbitrary chunks of a stream, it reports the
 *    stream header, then every top-level child of the stream as a complete
 *    tree, then the stream close; it enforces XMPP's restricted XML
 *    (RFC 6120 §11) and the configured size limits;
 *  - the serializer: writes trees back with every predefined-entity character
 *    escaped and namespace declarations only where they are needed.
 *
 * The parser is built on expat, but no expat type appears here, so the
 * engine can be replaced without touching callers. */
#ifndef STARLING_XML_XML_H
#define STARLING_XML_XML_H

#include <stdbool.h>
#include <stddef.h>

#include "base/arena.h"
#include "base/buf.h"

#define XML_NS_STREAMS "http://etherx.jabber.org/streams"
#define XML_NS_XML     "http://www.w3.org/XML/1998/namespace"
#define XML_NS_CLIENT  "jabber:client"
#define XML_NS_SERVER  "jabber:server"

/* ---------------------------------------------------------------- trees */

typedef enum xml_node_kind {
    XML_NODE_ELEMENT,
    XML_NODE_TEXT,
} xml_node_kind_t;

/* An attribute. `ns` is NULL for an unqualified attribute (the usual case);
 * xml:lang has ns XML_NS_XML and prefix "xml". Strings live in the arena. */
typedef struct xml_attr {
    struct xml_attr *next;
    const char *ns;
    const char *prefix; /* as received, or NULL */
    const char *name;   /* local name */
    const char *value;  /* decoded (entities replaced), NUL-terminated */
} xml_attr_t;

/* A node of a tree: an element or a run of character data. Adjacent
 * character data is merged into one text node by the parser. */
typedef struct xml_node {
    xml_node_kind_t kind;
    struct xml_node *parent;
    struct xml_node *next;       /* next sibling */
    struct xml_node *children;   /* first child (elements only) */
    struct xml_node *last_child; /* elements only */
    /* Elements: */
    const char *ns;     /* namespace URI; NULL when the element has none */
    const char *prefix; /* prefix as received, or NULL for the default ns */
    const char *name;   /* local name */
    xml_attr_t *attrs;  /* in document order */
    /* Text nodes: */
    const char *text; /* decoded, NUL-terminated (may contain no NUL) */
    size_t text_len;
} xml_node_t;

/* A tree owns its arena; every node, attribute and string of the tree is
 * allocated from it. `root` is NULL until an element is made root. */
typedef struct xml_tree {
    arena_t *arena;
    xml_node_t *root;
} xml_tree_t;

/* Makes an empty tree. Returns NULL when out of memory. */
xml_tree_t *xml_tree_new(void);

/* Frees the tree, its arena and every node in it. NULL is allowed. */
void xml_tree_free(xml_tree_t *t);

/* Creates an element in tree `t`. With parent == NULL it becomes t->root
 * (replacing any root); otherwise it is appended as parent's last child.
 * `ns` may be NULL (no namespace); `name` is a local name. Strings are
 * copied. Returns NULL when out of memory. */
xml_node_t *xml_element_new(xml_tree_t *t, xml_node_t *parent, const char *ns,
                            const char *name);

/* Sets (or replaces) an attribute; ns NULL means unqualified. value is
 * copied. Returns 0 or -1 when out of memory. */
int xml_element_set_attr(xml_tree_t *t, xml_node_t *el, const char *ns,
                         const char *name, const char *value);

/* Removes an attribute if present. */
void xml_element_remove_attr(xml_node_t *el, const char *ns, const char *name);
/* Takes node n out of its parent's children (its memory stays in the
 * tree's arena until the tree is freed). The root is not removed. */
void xml_node_detach(xml_node_t *n);

/* Appends character data (copied; len bytes, need not be NUL-terminated) as
 * a text child, merged with a text node that is already the last child.
 * Returns 0 or -1 when out of memory. */
int xml_element_add_text(xml_tree_t *t, xml_node_t *el, const char *text,
                         size_t len);

/* Value of an attribute, or NULL. ns NULL looks up an unqualified one. */
const char *xml_element_attr(const xml_node_t *el, const char *ns,
                             const char *name);

/* True when el is an element with this namespace and local name; ns NULL or
 * name NULL match anything. */
bool xml_element_is(const xml_node_t *el, const char *ns, const char *name);

/* First child element matching (ns, name) as xml_element_is(), or NULL. */
xml_node_t *xml_element_child(const xml_node_t *el, const char *ns,
                              const char *name);

/* The next sibling element after `el` matching (ns, name), or NULL. */
xml_node_t *xml_element_next(const xml_node_t *el, const char *ns,
                             const char *name);

/* Number of child elements (text nodes are not counted). */
size_t xml_element_count_children(const xml_node_t *el);

/* The concatenated character data of el's direct text children: "" when
 * there is none. May allocate in t's arena (when there are several text
 * nodes); returns NULL only when out of memory. */
const char *xml_element_text(xml_tree_t *t, const xml_node_t *el);

/* Deep-copies src (an element from any tree) into tree t under parent
 * (NULL: as t's root). Returns the copy, or NULL when out of memory. */
xml_node_t *xml_node_copy(xml_tree_t *t, xml_node_t *parent,
                          const xml_node_t *src);

/* True when the two elements are equal: same namespace, local name,
 * attributes (as a set, compared by namespace, name and value) and children
 * in order, with text compared byte for byte. Prefixes are not compared. */
bool xml_node_equal(const xml_node_t *a, const xml_node_t *b);

/* ------------------------------------------------------------- errors */

typedef enum xml_error {
    XML_OK = 0,
    XML_ERR_NOMEM = -1,                /* resource-constraint */
    XML_ERR_NOT_WELL_FORMED = -2,      /* not-well-formed */
    XML_ERR_RESTRICTED = -3,           /* restricted-xml */
    XML_ERR_INVALID_NAMESPACE = -4,    /* invalid-namespace */
    XML_ERR_BAD_NAMESPACE_PREFIX = -5, /* bad-namespace-prefix */
    XML_ERR_UNSUPPORTED_ENCODING = -6, /* unsupported-encoding */
    XML_ERR_TOO_LARGE = -7,            /* policy-violation */
    XML_ERR_TOO_DEEP = -8,             /* policy-violation */
    XML_ERR_TOO_MANY_ATTRS = -9,       /* policy-violation */
    XML_ERR_BAD_FORMAT = -10,          /* bad-format */
    XML_ERR_CLOSED = -11,              /* data after the stream's close */
} xml_error_t;

/* A short English description of an error code. */
const char *xml_strerror(int err);

/* The RFC 6120 §4.9.3 stream error condition for an error code, e.g.
 * "restricted-xml"; "undefined-condition" for codes without one. */
const char *xml_error_condition(int err);

/* ------------------------------------------------------------- parser */

typedef struct xml_limits {
    size_t max_element_size; /* bytes of one top-level element, header too */
    unsigned max_depth;      /* element nesting below the stream root */
    unsigned
        max_attrs; /* attributes (and namespace declarations) on one element */
} xml_limits_t;

/* 256 KiB, depth 64, 64 attributes. */
void xml_limits_default(xml_limits_t *l);

/* Event callbacks. Each receives the `ud` given to xml_parser_new().
 * A callback may call xml_parser_stop(). */
typedef struct xml_parser_cbs {
    /* The stream header, as a tree whose root is the stream element (with
     * its attributes; it has no children). The callee owns the tree. */
    void (*stream_start)(void *ud, xml_tree_t *header);
    /* A complete top-level child of the stream. The callee owns the tree. */
    void (*element)(void *ud, xml_tree_t *el);
    /* The peer's closing stream tag. */
    void (*stream_end)(void *ud);
} xml_parser_cbs_t;

typedef struct xml_parser_opts {
    /* The default namespace the stream header must declare (e.g.
     * XML_NS_CLIENT); NULL accepts any. A mismatch is invalid-namespace. */
    const char *content_ns;
    xml_limits_t limits;
} xml_parser_opts_t;

typedef struct xml_parser xml_parser_t;

/* Makes a parser; opts NULL means content_ns NULL and default limits.
 * Returns NULL when out of memory. */
xml_parser_t *xml_parser_new(const xml_parser_opts_t *opts,
                             const xml_parser_cbs_t *cbs, void *ud);

void xml_parser_free(xml_parser_t *p);

/* Feeds a chunk of the stream. Callbacks run from inside this call. Returns
 * XML_OK, XML_STOPPED when a callback called xml_parser_stop() (the rest of
 * the chunk is discarded: after STARTTLS or SASL success, bytes the peer
 * sent before our answer must never be read as the new stream), or a
 * negative xml_error_t. After an error every later feed returns that same
 * error until xml_parser_reset(). A complete element is always delivered
 * as soon as its last byte has been fed. */
enum { XML_STOPPED = 1 };
int xml_parser_feed(xml_parser_t *p, const char *data, size_t len);

/* Asks the running feed to return XML_STOPPED after this callback. */
void xml_parser_stop(xml_parser_t *p);

/* Forgets the current stream so that the next byte starts a new one (after
 * STARTTLS, after SASL success). Keeps options, limits and callbacks. Must
 * not be called from inside a callback. Returns 0 or XML_ERR_NOMEM. */
int xml_parser_reset(xml_parser_t *p);

/* Replaces the limits (e.g. larger stanzas once authenticated). */
void xml_parser_set_limits(xml_parser_t *p, const xml_limits_t *limits);

/* The error of the last failed feed, as a one-line human description with
 * the position where it was found (for logs and the stream error's text). */
const char *xml_parser_error_text(const xml_parser_t *p);

/* Counters, for tests and benchmarks. */
typedef struct xml_parser_stats {
    unsigned long long engine_calls; /* chunks handed to the XML engine */
    unsigned long long engine_bytes; /* bytes handed to the XML engine */
    unsigned long long bytes_fed;    /* bytes given to xml_parser_feed */
    size_t buffered;                 /* bytes held back right now */
} xml_parser_stats_t;

void xml_parser_get_stats(const xml_parser_t *p, xml_parser_stats_t *out);

/* --------------------------------------------------------- serializer */

/* Appends el (and its subtree) to out. `inherited_ns` is the default
 * namespace in scope where el is written (XML_NS_CLIENT inside a c2s
 * stream), so that el carries an xmlns only when its namespace differs.
 * Text and attribute values have & < > ' " escaped. Never writes comments,
 * processing instructions or DTDs. Returns 0 or XML_ERR_NOMEM. */
int xml_serialize(const xml_node_t *el, const char *inherited_ns, buf_t *out);

/* Writes only el's start tag, not self-closed (for a stream header).
 * Namespace declarations are as xml_serialize() would write them. */
int xml_serialize_open(const xml_node_t *el, const char *inherited_ns,
                       buf_t *out);

/* Writes a stream header's start tag (not self-closed) that declares
 * `content_ns` as the default namespace, as RFC 6120 §4.8 requires of the
 * header: <stream:stream xmlns='jabber:client' xmlns:stream='...' ...>.
 * el is the stream element (namespace XML_NS_STREAMS); its prefix is used,
 * "stream" when it has none. */
int xml_serialize_header(const xml_node_t *el, const char *content_ns,
                         buf_t *out);

/* Escapes len bytes of s as character data (& < > ' " and CR). */
int xml_escape(const char *s, size_t len, buf_t *out);

/* Escapes len bytes of s as an attribute value (also LF and TAB). */
int xml_escape_attr(const char *s, size_t len, buf_t *out);

/* Convenience: el serialized into a malloc'd NUL-terminated string (free()
 * it), or NULL when out of memory. */
char *xml_to_string(const xml_node_t *el, const char *inherited_ns);

#endif
