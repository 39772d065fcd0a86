#include "dnsmasq_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

extern char **environ;

#define DNSMASQ "/usr/sbin/dnsmasq"

unsigned short test_free_port(void)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        int t = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(t >= 0);
        struct sockaddr_in sa = {.sin_family = AF_INET};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(t, (struct sockaddr *)&sa, sizeof(sa)), 0);
        socklen_t len = sizeof(sa);
        assert_int_equal(getsockname(t, (struct sockaddr *)&sa, &len), 0);
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        assert_true(u >= 0);
        int ok = bind(u, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(u);
        close(t);
        if (ok)
            return ntohs(sa.sin_port);
    }
    fail_msg("no free loopback port");
    return 0;
}

bool test_tcp_port_open(unsigned short port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(s);
    return ok;
}

double test_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int dnsmasq_start(dnsmasq_t *d, const char *who, char *const *records,
                  size_t count, bool verbose)
{
    if (access(DNSMASQ, X_OK) != 0) {
        fprintf(stderr, "%s: %s is missing; run scripts/deps\n", who, DNSMASQ);
        return -1;
    }
    memset(d, 0, sizeof(*d));
    d->port = test_free_port();
    snprintf(d->servers, sizeof(d->servers), "127.0.0.1:%u", d->port);
    char port_arg[32];
    snprintf(port_arg, sizeof(port_arg), "--port=%u", d->port);
    char *fixed[] = {
        DNSMASQ,
        "--no-daemon",
        "--conf-file=/dev/null",
        "--pid-file=",
        port_arg,
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        /* Everything under .test is ours: unknown names are NXDOMAIN
         * instead of a refusal for want of an upstream server. */
        "--local=/test/",
    };
    enum { NFIXED = sizeof(fixed) / sizeof(fixed[0]) };
    char **argv = calloc(NFIXED + count + 2, sizeof(*argv));
    if (argv == NULL)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < NFIXED; i++)
        argv[n++] = fixed[i];
    for (size_t i = 0; i < count; i++)
        argv[n++] = records[i];
    if (verbose)
        argv[n++] = "--log-queries=extra";
    argv[n] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY,
                                     0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY,
                                     0);
    if (!verbose)
        posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null",
                                         O_WRONLY, 0);
    int rc = posix_spawn(&d->pid, DNSMASQ, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    free(argv);
    if (rc != 0) {
        fprintf(stderr, "%s: posix_spawn %s: %s\n", who, DNSMASQ, strerror(rc));
        return -1;
    }
    /* dnsmasq binds before it serves; a TCP connect tells us it is up. */
    double deadline = test_now_s() + 5.0;
    while (!test_tcp_port_open(d->port)) {
        int status;
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            fprintf(stderr, "%s: dnsmasq exited (status %d)\n", who, status);
            return -1;
        }
        if (test_now_s() > deadline) {
            fprintf(stderr, "%s: dnsmasq did not start\n", who);
            kill(d->pid, SIGKILL);
            waitpid(d->pid, NULL, 0);
            return -1;
        }
        usleep(10000);
    }
    return 0;
}

void dnsmasq_stop(dnsmasq_t *d)
{
    kill(d->pid, SIGTERM);
    waitpid(d->pid, NULL, 0);
}
