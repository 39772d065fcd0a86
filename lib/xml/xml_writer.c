/* The serializer. What Starling sends obeys RFC 6120 §11.1 (feature set 9-1):
 * no comments, processing instructions, DTDs or entity references other than
 * the predefined ones, and every character that maps to a predefined entity
 * is escaped — in character data and in attribute values alike. */
#include "xml/xml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Beyond the five predefined entities, a carriage return is written as a
 * character reference everywhere (a parser turns a raw one into a line
 * feed), and in attribute values so are line feed and tab (attribute value
 * normalization turns them into spaces): what we write parses back to the
 * same text. */
static int escape(const char *s, size_t len, buf_t *out, bool attr)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        const char *rep;
        switch (s[i]) {
        case '\r':
            rep = "&#13;";
            break;
        case '\n':
            if (!attr)
                continue;
            rep = "&#10;";
            break;
        case '\t':
            if (!attr)
                continue;
            rep = "&#9;";
            break;
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '\'':
            rep = "&apos;";
            break;
        case '"':
            rep = "&quot;";
            break;
        default:
            continue;
        }
        if (buf_append(out, s + start, i - start) < 0 ||
            buf_append_str(out, rep) < 0)
            return XML_ERR_NOMEM;
        start = i + 1;
    }
    return buf_append(out, s + start, len - start) < 0 ? XML_ERR_NOMEM : 0;
}

int xml_escape(const char *s, size_t len, buf_t *out)
{
    return escape(s, len, out, false);
}

int xml_escape_attr(const char *s, size_t len, buf_t *out)
{
    return escape(s, len, out, true);
}

/* Prefix bindings in scope while writing, innermost first. Bounded by the
 * tree's depth times its attribute count, both limited by the parser. */
struct ns_scope {
    const struct ns_scope *up;
    const char *prefix; /* NULL: the default namespace */
    const char *uri;    /* "" un-declares the default namespace */
    char gen[12];       /* storage for a generated prefix ("ns3") */
};

static const char *scope_lookup(const struct ns_scope *s, const char *prefix)
{
    for (; s != NULL; s = s->up) {
        if (prefix == NULL
                ? s->prefix == NULL
                : s->prefix != NULL && strcmp(s->prefix, prefix) == 0)
            return s->uri;
    }
    return NULL;
}

/* A prefix bound to uri in scope, or NULL. A prefix shadowed by an inner
 * binding to another URI does not count. */
static const char *scope_prefix_for(const struct ns_scope *s, const char *uri)
{
    for (const struct ns_scope *i = s; i != NULL; i = i->up) {
        if (i->prefix == NULL || strcmp(i->uri, uri) != 0)
            continue;
        const char *bound = scope_lookup(s, i->prefix);
        if (bound != NULL && strcmp(bound, uri) == 0)
            return i->prefix;
    }
    return NULL;
}

/* Declarations of one element live in a small array on the stack; an
 * element with many namespaced attributes gets a heap array instead. */
enum { STACK_DECLS = 8 };

struct writer {
    buf_t *out;
    /* A default namespace to declare on the outermost element even though
     * that element itself is prefixed (the stream header); NULL otherwise. */
    const char *declare_default;
};

static int put(struct writer *w, const char *s)
{
    return buf_append_str(w->out, s) < 0 ? XML_ERR_NOMEM : 0;
}

static int put_decl(struct writer *w, const char *prefix, const char *uri)
{
    int rc;
    if ((rc = put(w, prefix != NULL ? " xmlns:" : " xmlns")) < 0)
        return rc;
    if (prefix != NULL && (rc = put(w, prefix)) < 0)
        return rc;
    if ((rc = put(w, "='")) < 0 ||
        (rc = xml_escape_attr(uri, strlen(uri), w->out)) < 0)
        return rc;
    return put(w, "'");
}

static int write_element(struct writer *w, const xml_node_t *el,
                         const struct ns_scope *up, bool open_only);

/* Writes el's start tag (with the declarations it needs) and, unless
 * open_only, its content and end tag. The scope entries for this element's
 * declarations live on this stack frame; depth is bounded by the tree. */
static int write_element_with(struct writer *w, const xml_node_t *el,
                              const struct ns_scope *up, bool open_only,
                              struct ns_scope *decls, size_t max_decls);

static int write_element(struct writer *w, const xml_node_t *el,
                         const struct ns_scope *up, bool open_only)
{
    size_t need = 2;
    for (const xml_attr_t *a = el->attrs; a != NULL; a = a->next)
        need++;
    if (need <= STACK_DECLS) {
        struct ns_scope decls[STACK_DECLS];
        return write_element_with(w, el, up, open_only, decls, STACK_DECLS);
    }
    struct ns_scope *decls = malloc(need * sizeof(*decls));
    if (decls == NULL)
        return XML_ERR_NOMEM;
    int rc = write_element_with(w, el, up, open_only, decls, need);
    free(decls);
    return rc;
}

static int write_element_with(struct writer *w, const xml_node_t *el,
                              const struct ns_scope *up, bool open_only,
                              struct ns_scope *decls, size_t max_decls)
{
    size_t ndecls = 0;
    const struct ns_scope *scope = up;
    const char *el_prefix = NULL;
    int rc;

    /* The element's own name: keep it unprefixed when it can use the
     * default namespace, which is what XMPP peers expect of stanzas. A
     * received prefix is kept when the element had one (stream:features). */
    const char *el_ns = el->ns != NULL ? el->ns : "";
    if (el->prefix != NULL && el->ns != NULL) {
        const char *bound = scope_lookup(scope, el->prefix);
        el_prefix = el->prefix;
        if (bound == NULL || strcmp(bound, el->ns) != 0) {
            decls[ndecls] = (struct ns_scope){
                .up = scope, .prefix = el->prefix, .uri = el->ns};
            scope = &decls[ndecls++];
        }
        if (w->declare_default != NULL) {
            decls[ndecls] = (struct ns_scope){
                .up = scope, .prefix = NULL, .uri = w->declare_default};
            scope = &decls[ndecls++];
            w->declare_default = NULL;
        }
    } else {
        const char *def = scope_lookup(scope, NULL);
        if (def == NULL)
            def = "";
        if (strcmp(def, el_ns) != 0) {
            decls[ndecls] =
                (struct ns_scope){.up = scope, .prefix = NULL, .uri = el_ns};
            scope = &decls[ndecls++];
        }
    }

    /* Namespaced attributes need a prefix bound to their URI; xml: is
     * always bound and never declared. */
    for (const xml_attr_t *a = el->attrs; a != NULL; a = a->next) {
        if (a->ns == NULL || strcmp(a->ns, XML_NS_XML) == 0)
            continue;
        if (scope_prefix_for(scope, a->ns) != NULL)
            continue;
        if (ndecls >= max_decls)
            return XML_ERR_NOMEM; /* cannot happen: sized by the caller */
        struct ns_scope *d = &decls[ndecls++];
        *d = (struct ns_scope){.up = scope, .prefix = a->prefix, .uri = a->ns};
        if (d->prefix == NULL || strcmp(d->prefix, "xml") == 0 ||
            strcmp(d->prefix, "xmlns") == 0 ||
            scope_lookup(scope, d->prefix) != NULL) {
            /* A generated name is bound nowhere in scope yet, so it
             * neither collides with a declaration on this element nor
             * shadows one that an outer element made. */
            for (unsigned k = (unsigned)ndecls;; k++) {
                snprintf(d->gen, sizeof(d->gen), "ns%u", k);
                if (scope_lookup(scope, d->gen) == NULL)
                    break;
            }
            d->prefix = d->gen;
        }
        scope = d;
    }

    if ((rc = put(w, "<")) < 0)
        return rc;
    if (el_prefix != NULL &&
        ((rc = put(w, el_prefix)) < 0 || (rc = put(w, ":")) < 0))
        return rc;
    if ((rc = put(w, el->name)) < 0)
        return rc;
    for (size_t i = 0; i < ndecls; i++)
        if ((rc = put_decl(w, decls[i].prefix, decls[i].uri)) < 0)
            return rc;
    for (const xml_attr_t *a = el->attrs; a != NULL; a = a->next) {
        if ((rc = put(w, " ")) < 0)
            return rc;
        if (a->ns != NULL) {
            const char *p = strcmp(a->ns, XML_NS_XML) == 0
                                ? "xml"
                                : scope_prefix_for(scope, a->ns);
            if ((rc = put(w, p)) < 0 || (rc = put(w, ":")) < 0)
                return rc;
        }
        if ((rc = put(w, a->name)) < 0 || (rc = put(w, "='")) < 0 ||
            (rc = xml_escape_attr(a->value, strlen(a->value), w->out)) < 0 ||
            (rc = put(w, "'")) < 0)
            return rc;
    }
    if (open_only)
        return put(w, ">");
    if (el->children == NULL)
        return put(w, "/>");
    if ((rc = put(w, ">")) < 0)
        return rc;
    for (const xml_node_t *c = el->children; c != NULL; c = c->next) {
        if (c->kind == XML_NODE_TEXT)
            rc = xml_escape(c->text, c->text_len, w->out);
        else
            rc = write_element(w, c, scope, false);
        if (rc < 0)
            return rc;
    }
    if ((rc = put(w, "</")) < 0)
        return rc;
    if (el_prefix != NULL &&
        ((rc = put(w, el_prefix)) < 0 || (rc = put(w, ":")) < 0))
        return rc;
    if ((rc = put(w, el->name)) < 0)
        return rc;
    return put(w, ">");
}

static int serialize(const xml_node_t *el, const char *inherited_ns, buf_t *out,
                     bool open_only, const char *declare_default)
{
    struct writer w = {.out = out, .declare_default = declare_default};
    struct ns_scope base = {.up = NULL,
                            .prefix = NULL,
                            .uri = inherited_ns != NULL ? inherited_ns : ""};
    size_t mark = out->len;
    int rc = write_element(&w, el, &base, open_only);
    if (rc < 0 && out->data != NULL) {
        out->len = mark; /* leave the buffer as it was */
        out->data[mark] = '\0';
    }
    return rc;
}

int xml_serialize(const xml_node_t *el, const char *inherited_ns, buf_t *out)
{
    return serialize(el, inherited_ns, out, false, NULL);
}

int xml_serialize_open(const xml_node_t *el, const char *inherited_ns,
                       buf_t *out)
{
    return serialize(el, inherited_ns, out, true, NULL);
}

int xml_serialize_header(const xml_node_t *el, const char *content_ns,
                         buf_t *out)
{
    xml_node_t copy = *el;
    if (copy.prefix == NULL)
        copy.prefix = "stream";
    return serialize(&copy, NULL, out, true, content_ns);
}

char *xml_to_string(const xml_node_t *el, const char *inherited_ns)
{
    buf_t b = BUF_INIT;
    if (xml_serialize(el, inherited_ns, &b) < 0 || b.data == NULL) {
        buf_free(&b);
        return NULL;
    }
    return b.data;
}
