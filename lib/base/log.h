/* log: one line per event on stderr, with time, level and connection id:
 *   2026-11-24T20:20:00.123Z info  [c42] bound alice@localhost/phone
 * The logger is a value owned by whoever configures it (the server), not a
 * global; a level change (SIGHUP) is log_set_level() on that value.
 *
 * Threads: any thread may log through a logger (the storage thread does).
 * log_write() formats into a local buffer and writes each line with one
 * fwrite, which stdio locks, so lines never interleave; the level is read
 * and written atomically. `out` is set before any thread starts and not
 * changed afterwards. */
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
    log_level_t level; /* after start: log_level() and log_set_level() */
    FILE *out;         /* NULL: stderr */
} logger_t;

/* conn 0 means "not about one connection". */
void log_write(const logger_t *lg, log_level_t level, unsigned long conn,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Relaxed is enough: a level change needs to be seen soon, not ordered
 * with anything else. */
static inline log_level_t log_level(const logger_t *lg)
{
    return __atomic_load_n(&lg->level, __ATOMIC_RELAXED);
}

static inline void log_set_level(logger_t *lg, log_level_t level)
{
    __atomic_store_n(&lg->level, level, __ATOMIC_RELAXED);
}

#define LOG(lg, lvl, conn, ...)                                                \
    do {                                                                       \
        if ((lg) != NULL && (lvl) <= log_level(lg))                            \
            log_write((lg), (lvl), (conn), __VA_ARGS__);                       \
    } while (0)

const char *log_level_name(log_level_t l);

#endif
