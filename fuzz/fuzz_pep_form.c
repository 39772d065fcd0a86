/* libFuzzer target: the PEP node configuration parsers (server/modules/
 * pep_form.c) — the data forms a client submits in publish-options and
 * node_config, and the stored form read back.
 *
 * The input is split at the first 0xFF byte (never valid UTF-8): before
 * it, XML that is parsed as one element inside a jabber:client stream and,
 * when it parses, applied as a form of each FORM_TYPE; after it, a stored
 * configuration string for pep_config_read.
 *
 * Properties checked (abort() on violation): what pep_form_apply and
 * pep_config_read leave is in range (access one of the three, max_items
 * 1..PEP_MAX_ITEMS); writing a configuration and reading it back gives the
 * same configuration; nothing leaks or crashes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modules/pep_form.h"
#include "xml/xml.h"

static void check(const pep_node_config_t *c)
{
    if ((unsigned)c->access > PEP_ACCESS_WHITELIST || c->max_items < 1 ||
        c->max_items > PEP_MAX_ITEMS)
        abort();
    char buf[128];
    pep_node_config_t back;
    pep_config_write(c, buf, sizeof(buf));
    pep_config_read(buf, &back);
    if (back.access != c->access || back.max_items != c->max_items ||
        back.persist != c->persist || back.notify_retract != c->notify_retract)
        abort();
}

static void on_header(void *ud, xml_tree_t *header)
{
    (void)ud;
    xml_tree_free(header);
}

static void on_element(void *ud, xml_tree_t *el)
{
    xml_tree_t **out = ud;
    if (*out == NULL)
        *out = el;
    else
        xml_tree_free(el);
}

static void on_end(void *ud)
{
    (void)ud;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char header[] =
        "<stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    static const xml_parser_cbs_t cbs = {on_header, on_element, on_end};
    const uint8_t *ff = memchr(data, 0xFF, size);
    size_t xml_len = ff != NULL ? (size_t)(ff - data) : size;

    xml_tree_t *tree = NULL;
    xml_parser_t *p = xml_parser_new(NULL, &cbs, &tree);
    if (p == NULL)
        return 0;
    if (xml_parser_feed(p, header, sizeof(header) - 1) == XML_OK &&
        xml_parser_feed(p, (const char *)data, xml_len) == XML_OK &&
        tree != NULL) {
        const char *types[] = {FT_PUBLISH_OPTS, FT_NODE_CONFIG};
        for (size_t i = 0; i < 2; i++) {
            pep_node_config_t c = pep_node_defaults;
            unsigned named = 0;
            pep_form_apply(tree->root, types[i], &c, &named);
            if (named & ~15u)
                abort();
            check(&c);
        }
    }
    xml_tree_free(tree);
    xml_parser_free(p);

    if (ff != NULL) {
        size_t n = size - xml_len - 1;
        char *s = malloc(n + 1);
        if (s == NULL)
            return 0;
        memcpy(s, ff + 1, n);
        s[n] = '\0';
        pep_node_config_t c;
        pep_config_read(s, &c);
        check(&c);
        free(s);
    }
    return 0;
}
