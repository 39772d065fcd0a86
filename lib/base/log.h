/* log: one line per event on stderr, with time, level and connection id:
 *   2026-11-24T20:20:00.123Z info  [c42] bound alice@localhost/phone
 * The logger is a value owned by whoever configures it (the server), not a
 * global; a level change (SIGHUP) is a store into that value. */
#ifndef STARLING_BASE_LOG_H
#define STARLING_BASE_LOG_H

#include <stdio.h>

typedef enum log_level {
    LOG_ERROR,
    LOG_WARN,
    LOG_INFO,
    LOG_DEBUG,
} log_level_t;

typedef struct logger {
    log_level_t level;
    FILE *out; /* NULL: stderr */
} logger_t;

/* conn 0 means "not about one connection". */
void log_write(const logger_t *lg, log_level_t level, unsigned long conn,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define LOG(lg, lvl, conn, ...)                                                \
    do {                                                                       \
        if ((lg) != NULL && (lvl) <= (lg)->level)                              \
            log_write((lg), (lvl), (conn), __VA_ARGS__);                       \
    } while (0)

const char *log_level_name(log_level_t l);

#endif
