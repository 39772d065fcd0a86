/* Element trees: construction, lookup, copy and comparison. Every node and
 * string of a tree lives in the tree's arena. */
#include "xml/xml.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

xml_tree_t *xml_tree_new(void)
{
    arena_t *a = arena_new(0);
    if (a == NULL)
        return NULL;
    xml_tree_t *t = arena_alloc(a, sizeof(*t));
    if (t == NULL) {
        arena_free(a);
        return NULL;
    }
    t->arena = a;
    t->root = NULL;
    return t;
}

void xml_tree_free(xml_tree_t *t)
{
    /* The tree struct itself lives in its arena. */
    if (t != NULL)
        arena_free(t->arena);
}

static void node_append(xml_node_t *parent, xml_node_t *n)
{
    n->parent = parent;
    if (parent->last_child != NULL)
        parent->last_child->next = n;
    else
        parent->children = n;
    parent->last_child = n;
}

xml_node_t *xml_element_new(xml_tree_t *t, xml_node_t *parent, const char *ns,
                            const char *name)
{
    xml_node_t *n = arena_alloc(t->arena, sizeof(*n));
    if (n == NULL)
        return NULL;
    memset(n, 0, sizeof(*n));
    n->kind = XML_NODE_ELEMENT;
    n->name = arena_strdup(t->arena, name);
    if (n->name == NULL)
        return NULL;
    if (ns != NULL && (n->ns = arena_strdup(t->arena, ns)) == NULL)
        return NULL;
    if (parent == NULL)
        t->root = n;
    else
        node_append(parent, n);
    return n;
}

static bool str_eq_opt(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static xml_attr_t *attr_find(const xml_node_t *el, const char *ns,
                             const char *name)
{
    for (xml_attr_t *a = el->attrs; a != NULL; a = a->next)
        if (strcmp(a->name, name) == 0 && str_eq_opt(a->ns, ns))
            return a;
    return NULL;
}

int xml_element_set_attr(xml_tree_t *t, xml_node_t *el, const char *ns,
                         const char *name, const char *value)
{
    char *v = arena_strdup(t->arena, value);
    if (v == NULL)
        return -1;
    xml_attr_t *a = attr_find(el, ns, name);
    if (a != NULL) {
        a->value = v;
        return 0;
    }
    a = arena_alloc(t->arena, sizeof(*a));
    if (a == NULL)
        return -1;
    a->next = NULL;
    a->value = v;
    a->name = arena_strdup(t->arena, name);
    a->ns = ns != NULL ? arena_strdup(t->arena, ns) : NULL;
    a->prefix = ns != NULL && strcmp(ns, XML_NS_XML) == 0 ? "xml" : NULL;
    if (a->name == NULL || (ns != NULL && a->ns == NULL))
        return -1;
    /* Keep document order: append. */
    xml_attr_t **pp = &el->attrs;
    while (*pp != NULL)
        pp = &(*pp)->next;
    *pp = a;
    return 0;
}

void xml_element_remove_attr(xml_node_t *el, const char *ns, const char *name)
{
    for (xml_attr_t **pp = &el->attrs; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0 && str_eq_opt((*pp)->ns, ns)) {
            *pp = (*pp)->next;
            return;
        }
    }
}

int xml_element_add_text(xml_tree_t *t, xml_node_t *el, const char *text,
                         size_t len)
{
    /* No empty text nodes: they would serialize to nothing and make a
     * round trip unequal. */
    if (len == 0)
        return 0;
    xml_node_t *last = el->last_child;
    if (last != NULL && last->kind == XML_NODE_TEXT) {
        if (len > SIZE_MAX - last->text_len - 1)
            return -1;
        char *s = arena_alloc(t->arena, last->text_len + len + 1);
        if (s == NULL)
            return -1;
        memcpy(s, last->text, last->text_len);
        memcpy(s + last->text_len, text, len);
        s[last->text_len + len] = '\0';
        last->text = s;
        last->text_len += len;
        return 0;
    }
    xml_node_t *n = arena_alloc(t->arena, sizeof(*n));
    if (n == NULL)
        return -1;
    memset(n, 0, sizeof(*n));
    n->kind = XML_NODE_TEXT;
    char *s = arena_strndup(t->arena, text, len);
    if (s == NULL)
        return -1;
    n->text = s;
    n->text_len = len;
    node_append(el, n);
    return 0;
}

const char *xml_element_attr(const xml_node_t *el, const char *ns,
                             const char *name)
{
    const xml_attr_t *a = attr_find(el, ns, name);
    return a != NULL ? a->value : NULL;
}

bool xml_element_is(const xml_node_t *el, const char *ns, const char *name)
{
    if (el == NULL || el->kind != XML_NODE_ELEMENT)
        return false;
    if (name != NULL && strcmp(el->name, name) != 0)
        return false;
    if (ns != NULL && (el->ns == NULL || strcmp(el->ns, ns) != 0))
        return false;
    return true;
}

xml_node_t *xml_element_child(const xml_node_t *el, const char *ns,
                              const char *name)
{
    for (xml_node_t *c = el->children; c != NULL; c = c->next)
        if (xml_element_is(c, ns, name))
            return c;
    return NULL;
}

xml_node_t *xml_element_next(const xml_node_t *el, const char *ns,
                             const char *name)
{
    for (xml_node_t *c = el->next; c != NULL; c = c->next)
        if (xml_element_is(c, ns, name))
            return c;
    return NULL;
}

size_t xml_element_count_children(const xml_node_t *el)
{
    size_t n = 0;
    for (const xml_node_t *c = el->children; c != NULL; c = c->next)
        if (c->kind == XML_NODE_ELEMENT)
            n++;
    return n;
}

const char *xml_element_text(xml_tree_t *t, const xml_node_t *el)
{
    const xml_node_t *only = NULL;
    size_t total = 0, count = 0;
    for (const xml_node_t *c = el->children; c != NULL; c = c->next) {
        if (c->kind != XML_NODE_TEXT)
            continue;
        only = c;
        total += c->text_len;
        count++;
    }
    if (count == 0)
        return "";
    if (count == 1)
        return only->text;
    char *s = arena_alloc(t->arena, total + 1);
    if (s == NULL)
        return NULL;
    size_t off = 0;
    for (const xml_node_t *c = el->children; c != NULL; c = c->next) {
        if (c->kind != XML_NODE_TEXT)
            continue;
        memcpy(s + off, c->text, c->text_len);
        off += c->text_len;
    }
    s[off] = '\0';
    return s;
}

xml_node_t *xml_node_copy(xml_tree_t *t, xml_node_t *parent,
                          const xml_node_t *src)
{
    if (src->kind == XML_NODE_TEXT) {
        if (parent == NULL)
            return NULL;
        if (xml_element_add_text(t, parent, src->text, src->text_len) < 0)
            return NULL;
        return parent->last_child;
    }
    xml_node_t *n = xml_element_new(t, parent, src->ns, src->name);
    if (n == NULL)
        return NULL;
    if (src->prefix != NULL &&
        (n->prefix = arena_strdup(t->arena, src->prefix)) == NULL)
        return NULL;
    for (const xml_attr_t *a = src->attrs; a != NULL; a = a->next)
        if (xml_element_set_attr(t, n, a->ns, a->name, a->value) < 0)
            return NULL;
    for (const xml_node_t *c = src->children; c != NULL; c = c->next)
        if (xml_node_copy(t, n, c) == NULL)
            return NULL;
    return n;
}

static size_t attr_count(const xml_node_t *el)
{
    size_t n = 0;
    for (const xml_attr_t *a = el->attrs; a != NULL; a = a->next)
        n++;
    return n;
}

bool xml_node_equal(const xml_node_t *a, const xml_node_t *b)
{
    if (a->kind != b->kind)
        return false;
    if (a->kind == XML_NODE_TEXT)
        return a->text_len == b->text_len &&
               memcmp(a->text, b->text, a->text_len) == 0;
    if (strcmp(a->name, b->name) != 0 || !str_eq_opt(a->ns, b->ns))
        return false;
    if (attr_count(a) != attr_count(b))
        return false;
    /* Attribute names are unique within an element, so equal counts plus
     * every attribute of a found in b means the sets are equal. */
    for (const xml_attr_t *x = a->attrs; x != NULL; x = x->next) {
        const xml_attr_t *y = attr_find(b, x->ns, x->name);
        if (y == NULL || strcmp(x->value, y->value) != 0)
            return false;
    }
    const xml_node_t *ca = a->children, *cb = b->children;
    for (; ca != NULL && cb != NULL; ca = ca->next, cb = cb->next)
        if (!xml_node_equal(ca, cb))
            return false;
    return ca == NULL && cb == NULL;
}

void xml_node_detach(xml_node_t *n)
{
    xml_node_t *parent = n->parent;
    if (parent == NULL)
        return;
    xml_node_t *prev = NULL;
    for (xml_node_t *c = parent->children; c != NULL; prev = c, c = c->next) {
        if (c != n)
            continue;
        if (prev != NULL)
            prev->next = n->next;
        else
            parent->children = n->next;
        if (parent->last_child == n)
            parent->last_child = prev;
        n->next = NULL;
        n->parent = NULL;
        return;
    }
}
