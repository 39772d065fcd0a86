/* im: what server/im (RFC 6121, always on) offers other modules. */
#ifndef STARLING_IM_IM_H
#define STARLING_IM_IM_H

#include "router/router.h"
#include "xml/xml.h"

/* The last available presence session t sent (with its 'from', no 'to'),
 * or NULL while it is not available. Valid until t sends presence again
 * or ends. */
const xml_node_t *im_session_presence(const route_target_t *t);

/* Whether a message of `type` (NULL: normal) with the local 'to' `to`
 * reaches session t by RFC 6121 §8.5 as server/im delivers it: a bound
 * full JID only itself; a bare JID (or an unbound full one) the available
 * resources of the highest non-negative priority, every non-negative one
 * for a headline. */
bool im_message_reaches(router_t *r, const jid_t *to, const route_target_t *t,
                        const char *type);

#endif
