#include "base/log.h"

#include <stdarg.h>
#include <time.h>

const char *log_level_name(log_level_t l)
{
    switch (l) {
    case LOG_ERROR:
        return "error";
    case LOG_WARN:
        return "warn";
    case LOG_INFO:
        return "info";
    case LOG_DEBUG:
        return "debug";
    }
    return "?";
}

void log_write(const logger_t *lg, log_level_t level, unsigned long conn,
               const char *fmt, ...)
{
    FILE *out = lg->out != NULL ? lg->out : stderr;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03ldZ %-5s ",
                  ts.tv_nsec / 1000000, log_level_name(level));
    if (conn != 0 && n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, "[c%lu] ", conn);
    if (n < (int)sizeof(line)) {
        va_list ap;
        va_start(ap, fmt);
        n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
    }
    if (n >= (int)sizeof(line))
        n = (int)sizeof(line) - 1;
    /* One fwrite per line keeps lines whole when several threads log. */
    line[n] = '\n';
    fwrite(line, 1, (size_t)n + 1, out);
    fflush(out);
}
