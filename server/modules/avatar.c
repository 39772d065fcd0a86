/* XEP-0398 User Avatar to vCard-Based Avatars Conversion, with the
 * XEP-0153 hash it implies:
 *  - an avatar published with XEP-0084 (the metadata node names an info
 *    without a url, whose data item is on the data node) becomes the
 *    account's vCard PHOTO (TYPE, BINVAL), the rest of the vCard kept;
 *  - the SHA-1 of the account's avatar (from that, or from a vCard set
 *    with a PHOTO) is injected into every available presence its sessions
 *    send, broadcast or directed, as <x xmlns='vcard-temp:x:update'>
 *    <photo>HASH</photo></x> — unless the client says "no avatar" itself
 *    (an empty <photo/>); an <x/> without <photo/> is replaced;
 *  - urn:xmpp:pep-vcard-conversion:0 on the account.
 * The hash of each account with a session is kept in memory, loaded from
 * the store (kind "avatar") while the session binds (the session is held,
 * so its first presence already carries it). The vCard-to-PEP direction
 * (a MAY) is not done. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "base/buf.h"
#include "base/xalloc.h"
#include "modules/modules.h"

#define NS_UPDATE  "vcard-temp:x:update"
#define NS_VCARD   "vcard-temp"
#define NS_PUBSUB  "http://jabber.org/protocol/pubsub"
#define NS_META    "urn:xmpp:avatar:metadata"
#define NS_DATA_AV "urn:xmpp:avatar:data"
#define NBUCKETS   256
#define MAX_PHOTO  (1 << 20)

typedef struct hash_entry {
    struct hash_entry *next;
    char *bare;
    char hash[41]; /* hex SHA-1, "" for none */
} hash_entry_t;

typedef struct avatar_state {
    store_t *store;
    hash_entry_t *buckets[NBUCKETS];
} avatar_state_t;

static hash_entry_t *entry_find(avatar_state_t *st, const char *bare)
{
    hash_entry_t *e = st->buckets[module_str_hash(bare) % NBUCKETS];
    while (e != NULL && strcmp(e->bare, bare) != 0)
        e = e->next;
    return e;
}

static hash_entry_t *entry_get(avatar_state_t *st, const char *bare)
{
    hash_entry_t *e = entry_find(st, bare);
    if (e == NULL) {
        e = xcalloc(1, sizeof(*e));
        e->bare = xstrdup(bare);
        size_t b = module_str_hash(bare) % NBUCKETS;
        e->next = st->buckets[b];
        st->buckets[b] = e;
    }
    return e;
}

static void *avatar_init(const module_env_t *env, bool *ok)
{
    avatar_state_t *st = xcalloc(1, sizeof(*st));
    st->store = env->store;
    *ok = true;
    return st;
}

static void avatar_fini(void *state)
{
    avatar_state_t *st = state;
    for (size_t i = 0; i < NBUCKETS; i++)
        while (st->buckets[i] != NULL) {
            hash_entry_t *e = st->buckets[i];
            st->buckets[i] = e->next;
            free(e->bare);
            free(e);
        }
    free(st);
}

/* Records the account's avatar hash, in memory and in the store. */
static void set_hash(avatar_state_t *st, const char *bare, const char *hash)
{
    hash_entry_t *e = entry_get(st, bare);
    snprintf(e->hash, sizeof(e->hash), "%s", hash);
    char node[JID_FORMAT_BUF];
    const char *domain;
    if (st->store != NULL &&
        module_split_bare(bare, node, sizeof(node), &domain))
        store_data_put(st->store, domain, node, "avatar", "", hash,
                       strlen(hash), NULL, NULL);
}

static void sha1_hex(const unsigned char *data, size_t len, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    out[0] = '\0';
    if (EVP_Digest(data, len, md, &n, EVP_sha1(), NULL) != 1)
        return;
    for (unsigned i = 0; i < n && i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* The decoded BINVAL of a PHOTO (white space removed, as vCards carry
 * line breaks), or NULL; *len its length. */
static unsigned char *decode_b64(const char *text, size_t *len)
{
    size_t n = strlen(text);
    if (n > MAX_PHOTO * 2)
        return NULL;
    char *clean = xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (text[i] != ' ' && text[i] != '\n' && text[i] != '\r' &&
            text[i] != '\t')
            clean[k++] = text[i];
    clean[k] = '\0';
    unsigned char *out = xmalloc(k / 4 * 3 + 3);
    long r = base64_decode(clean, k, out, k / 4 * 3 + 3);
    free(clean);
    if (r <= 0) {
        free(out);
        return NULL;
    }
    *len = (size_t)r;
    return out;
}

/* ------------------------------------------------------------ loading */

typedef struct load_req {
    avatar_state_t *st;
    router_t *router;
    jid_t who;
    unsigned long conn;
    char bare[JID_FORMAT_BUF];
} load_req_t;

static void on_loaded(void *ud, int err, const store_data_item_t *items,
                      size_t count)
{
    load_req_t *r = ud;
    hash_entry_t *e = entry_get(r->st, r->bare);
    if (err == STORE_OK && count > 0)
        snprintf(e->hash, sizeof(e->hash), "%.*s", (int)items[0].len,
                 items[0].value);
    route_target_t *t = router_find_conn(r->router, &r->who, r->conn);
    if (t != NULL)
        router_release(r->router, t);
    jid_clear(&r->who);
    free(r);
}

static module_result_t on_bound(module_call_t *c)
{
    avatar_state_t *st = c->state;
    char bare[JID_FORMAT_BUF], node[JID_FORMAT_BUF];
    const char *domain;
    if (st->store == NULL ||
        jid_format(&c->from->jid, true, bare, sizeof(bare)) < 0 ||
        entry_find(st, bare) != NULL ||
        !module_split_bare(bare, node, sizeof(node), &domain))
        return MODULE_PASS;
    load_req_t *r = xcalloc(1, sizeof(*r));
    r->st = st;
    r->router = c->router;
    if (jid_copy(&r->who, &c->from->jid) != JID_OK)
        xalloc_fail(sizeof(r->who));
    r->conn = c->from->conn;
    snprintf(r->bare, sizeof(r->bare), "%s", bare);
    router_hold(c->router, c->from);
    store_data_get(st->store, domain, node, "avatar", "", on_loaded, r);
    return MODULE_PASS;
}

/* ------------------------------------------------------------ presence */

/* Whether n is the element ns:name. */
static bool is_el(const xml_node_t *n, const char *ns, const char *name)
{
    return n != NULL && n->kind == XML_NODE_ELEMENT && n->ns != NULL &&
           strcmp(n->ns, ns) == 0 && strcmp(n->name, name) == 0;
}

/* The first child element ns:name of el, writable. */
static xml_node_t *child_mut(xml_node_t *el, const char *ns, const char *name)
{
    xml_node_t *ch = el->children;
    while (ch != NULL && !is_el(ch, ns, name))
        ch = ch->next;
    return ch;
}

static module_result_t on_presence(module_call_t *c)
{
    avatar_state_t *st = c->state;
    xml_node_t *el = c->tree->root;
    if (c->from->remote || c->from->account == NULL ||
        xml_element_attr(el, NULL, "type") != NULL)
        return MODULE_PASS;
    char bare[JID_FORMAT_BUF];
    if (jid_format(&c->from->jid, true, bare, sizeof(bare)) < 0)
        return MODULE_PASS;
    const hash_entry_t *e = entry_find(st, bare);
    if (e == NULL || e->hash[0] == '\0')
        return MODULE_PASS;
    xml_node_t *x = child_mut(el, NS_UPDATE, "x");
    const xml_node_t *photo =
        x != NULL ? xml_element_child(x, NS_UPDATE, "photo") : NULL;
    if (photo != NULL)
        return MODULE_PASS; /* the client's own word, empty or not */
    if (x == NULL && (x = xml_element_new(c->tree, el, NS_UPDATE, "x")) == NULL)
        xalloc_fail(64);
    xml_node_t *p = xml_element_new(c->tree, x, NS_UPDATE, "photo");
    if (p == NULL ||
        xml_element_add_text(c->tree, p, e->hash, strlen(e->hash)) < 0)
        xalloc_fail(64);
    return MODULE_PASS;
}

/* ------------------------------------------------------------ the IQs */

/* A vCard set by the account: its PHOTO's hash is the avatar's. */
static void vcard_set(avatar_state_t *st, const char *bare,
                      const xml_node_t *vcard, xml_tree_t *t)
{
    const xml_node_t *photo = xml_element_child(vcard, NS_VCARD, "PHOTO");
    const xml_node_t *bin =
        photo != NULL ? xml_element_child(photo, NS_VCARD, "BINVAL") : NULL;
    const char *text = bin != NULL ? xml_element_text(t, bin) : NULL;
    size_t len = 0;
    unsigned char *data = text != NULL ? decode_b64(text, &len) : NULL;
    char hash[41] = "";
    if (data != NULL)
        sha1_hex(data, len, hash);
    free(data);
    set_hash(st, bare, hash);
}

typedef struct convert_req {
    avatar_state_t *st;
    char bare[JID_FORMAT_BUF];
    char id[64];
    char type[64];
    char *b64; /* the avatar data, base64 */
} convert_req_t;

static void convert_free(convert_req_t *r)
{
    free(r->b64);
    free(r);
}

/* The stored vCard with its PHOTO replaced. */
static void on_vcard(void *ud, int err, const store_data_item_t *items,
                     size_t count)
{
    convert_req_t *r = ud;
    char node[JID_FORMAT_BUF];
    const char *domain;
    xml_tree_t *t = err == STORE_OK && count > 0
                        ? module_parse_doc(items[0].value, items[0].len)
                        : NULL;
    const xml_node_t *v =
        t != NULL && is_el(t->root, NS_VCARD, "vCard") ? t->root : NULL;
    /* Without the old PHOTO: the tree has no removal, so copy the rest. */
    xml_tree_t *out = xml_tree_new();
    xml_node_t *nv =
        out != NULL ? xml_element_new(out, NULL, NS_VCARD, "vCard") : NULL;
    if (nv == NULL)
        xalloc_fail(64);
    for (const xml_node_t *ch = v != NULL ? v->children : NULL; ch != NULL;
         ch = ch->next)
        if (!is_el(ch, NS_VCARD, "PHOTO") && xml_node_copy(out, nv, ch) == NULL)
            xalloc_fail(64);
    xml_node_t *ph = xml_element_new(out, nv, NS_VCARD, "PHOTO");
    xml_node_t *ty =
        ph != NULL ? xml_element_new(out, ph, NS_VCARD, "TYPE") : NULL;
    xml_node_t *bv =
        ty != NULL ? xml_element_new(out, ph, NS_VCARD, "BINVAL") : NULL;
    if (bv == NULL ||
        xml_element_add_text(out, ty, r->type, strlen(r->type)) < 0 ||
        xml_element_add_text(out, bv, r->b64, strlen(r->b64)) < 0)
        xalloc_fail(64);
    buf_t b = BUF_INIT;
    if (xml_serialize(nv, NULL, &b) != 0)
        xalloc_fail(64);
    if (module_split_bare(r->bare, node, sizeof(node), &domain))
        store_data_put(r->st->store, domain, node, "vcard", "", b.data, b.len,
                       NULL, NULL);
    buf_free(&b);
    xml_tree_free(out);
    xml_tree_free(t);
    set_hash(r->st, r->bare, r->id);
    convert_free(r);
}

/* The data item the metadata names. */
static void on_data(void *ud, int err, const store_data_item_t *items,
                    size_t count)
{
    convert_req_t *r = ud;
    char node[JID_FORMAT_BUF];
    const char *domain;
    xml_tree_t *t = err == STORE_OK && count > 0
                        ? module_parse_doc(items[0].value, items[0].len)
                        : NULL;
    const xml_node_t *d =
        t != NULL && is_el(t->root, NS_DATA_AV, "data") ? t->root : NULL;
    const char *text = d != NULL ? xml_element_text(t, d) : NULL;
    size_t len = 0;
    unsigned char *data = text != NULL ? decode_b64(text, &len) : NULL;
    char hash[41] = "";
    if (data != NULL)
        sha1_hex(data, len, hash);
    free(data);
    /* §3: the data must hash to the id it is published under. */
    if (hash[0] == '\0' || strcmp(hash, r->id) != 0 ||
        !module_split_bare(r->bare, node, sizeof(node), &domain)) {
        xml_tree_free(t);
        convert_free(r);
        return;
    }
    r->b64 = xstrdup(text);
    xml_tree_free(t);
    store_data_get(r->st->store, domain, node, "vcard", "", on_vcard, r);
}

static void metadata_published(avatar_state_t *st, const char *bare,
                               const xml_node_t *metadata)
{
    /* §3: the info without a url. */
    for (const xml_node_t *in = xml_element_child(metadata, NS_META, "info");
         in != NULL; in = xml_element_next(in, NS_META, "info")) {
        const char *id = xml_element_attr(in, NULL, "id");
        const char *type = xml_element_attr(in, NULL, "type");
        if (xml_element_attr(in, NULL, "url") != NULL || id == NULL ||
            strlen(id) != 40)
            continue;
        char node[JID_FORMAT_BUF];
        const char *domain;
        if (!module_split_bare(bare, node, sizeof(node), &domain))
            return;
        convert_req_t *r = xcalloc(1, sizeof(*r));
        r->st = st;
        snprintf(r->bare, sizeof(r->bare), "%s", bare);
        snprintf(r->id, sizeof(r->id), "%s", id);
        snprintf(r->type, sizeof(r->type), "%s",
                 type != NULL ? type : "image/png");
        store_data_get(st->store, domain, node, "pep/" NS_DATA_AV, id, on_data,
                       r);
        return;
    }
    /* An empty metadata: no avatar any more. */
    if (xml_element_child(metadata, NS_META, "info") == NULL)
        set_hash(st, bare, "");
}

/* Seen before the PEP and vCard modules handle the IQ (which stores it
 * first: the store runs requests in order, so what is read here after
 * comes after their writes). */
static module_result_t on_iq(module_call_t *c)
{
    avatar_state_t *st = c->state;
    const xml_node_t *el = c->tree->root;
    const char *type = xml_element_attr(el, NULL, "type");
    if (st->store == NULL || c->from->remote || type == NULL ||
        strcmp(type, "set") != 0)
        return MODULE_PASS;
    char bare[JID_FORMAT_BUF];
    if (jid_format(&c->from->jid, true, bare, sizeof(bare)) < 0)
        return MODULE_PASS;
    const xml_node_t *v = xml_element_child(el, NS_VCARD, "vCard");
    if (v != NULL) {
        vcard_set(st, bare, v, c->tree);
        return MODULE_PASS;
    }
    const xml_node_t *ps = xml_element_child(el, NS_PUBSUB, "pubsub");
    const xml_node_t *pub =
        ps != NULL ? xml_element_child(ps, NS_PUBSUB, "publish") : NULL;
    const char *node = pub != NULL ? xml_element_attr(pub, NULL, "node") : NULL;
    if (node == NULL || strcmp(node, NS_META) != 0)
        return MODULE_PASS;
    const xml_node_t *item = xml_element_child(pub, NS_PUBSUB, "item");
    const xml_node_t *md =
        item != NULL ? xml_element_child(item, NS_META, "metadata") : NULL;
    if (md != NULL)
        metadata_published(st, bare, md);
    return MODULE_PASS;
}

#define AVATAR_PRIORITY 25
static const module_hook_t avatar_hooks[] = {
    {MODULE_EV_SESSION_BOUND, AVATAR_PRIORITY, on_bound},
    {MODULE_EV_PRESENCE_ACCOUNT, AVATAR_PRIORITY, on_presence},
    {MODULE_EV_PRESENCE_BARE, AVATAR_PRIORITY, on_presence},
    {MODULE_EV_PRESENCE_FULL, AVATAR_PRIORITY, on_presence},
    {MODULE_EV_PRESENCE_REMOTE, AVATAR_PRIORITY, on_presence},
    {MODULE_EV_IQ_ACCOUNT, AVATAR_PRIORITY, on_iq},
    {0, 0, NULL},
};

static const char *const avatar_account_features[] = {
    "urn:xmpp:pep-vcard-conversion:0", NULL};

const module_desc_t module_avatar = {
    .name = "avatar",
    .default_on = true,
    .init = avatar_init,
    .fini = avatar_fini,
    .hooks = avatar_hooks,
    .account_features = avatar_account_features,
};
