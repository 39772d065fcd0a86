/* im: what server/im (RFC 6121, always on) offers other modules. */
#ifndef STARLING_IM_IM_H
#define STARLING_IM_IM_H

#include "router/router.h"
#include "xml/xml.h"

/* The last available presence session t sent (with its 'from', no 'to'),
 * or NULL while it is not available. Valid until t sends presence again
 * or ends. */
const xml_node_t *im_session_presence(const route_target_t *t);

#endif
