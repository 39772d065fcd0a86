/* XEP-0202 Entity Time for the server's domain: the time in UTC
 * (XEP-0082 DateTime with 'Z') and the offset +00:00 — the server's local
 * zone is nobody's business, and UTC is always right (§4). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "modules/modules.h"

#define NS_TIME "urn:xmpp:time"

static int add_text(xml_tree_t *t, xml_node_t *q, const char *name,
                    const char *text)
{
    xml_node_t *e = xml_element_new(t, q, NS_TIME, name);
    return e != NULL ? xml_element_add_text(t, e, text, strlen(text)) : -1;
}

static module_result_t entity_time(module_call_t *c, const xml_node_t *child)
{
    (void)child;
    struct timespec now;
    struct tm tm;
    char utc[40];
    if (clock_gettime(CLOCK_REALTIME, &now) < 0 ||
        gmtime_r(&now.tv_sec, &tm) == NULL ||
        strftime(utc, sizeof(utc), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        return MODULE_PASS;
    /* XEP-0082 §3.2: fractions of a second are allowed; milliseconds. */
    size_t n = strlen(utc);
    snprintf(utc + n, sizeof(utc) - n, ".%03ldZ", now.tv_nsec / 1000000);

    xml_tree_t *t;
    xml_node_t *iq = module_iq_result(c, &t);
    if (iq == NULL)
        return MODULE_PASS;
    xml_node_t *q = xml_element_new(t, iq, NS_TIME, "time");
    if (q == NULL || add_text(t, q, "tzo", "+00:00") < 0 ||
        add_text(t, q, "utc", utc) < 0) {
        xml_tree_free(t);
        return MODULE_PASS;
    }
    module_send(c, t);
    return MODULE_HANDLED;
}

static const module_iq_handler_t time_iq[] = {
    {MODULE_IQ_GET, NS_TIME, MODULE_TO_BIT(MODULE_TO_SERVER), entity_time},
    {0, NULL, 0, NULL},
};

static const char *const time_features[] = {NS_TIME, NULL};

const module_desc_t module_time = {
    .name = "time",
    .default_on = true,
    .iq = time_iq,
    .features = time_features,
};
