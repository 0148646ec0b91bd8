/*
 * libFuzzer target for the server's configuration file reader
 * (server/config.c): any bytes must give either a configuration or an error
 * naming file:line, never a crash or an overflow of the fixed-size fields.
 */

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("conf", 0);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64], err[512];
        struct srv_config cfg;
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        (void)srv_config_load(&cfg, "/var/lib/khien-server", path, NULL, err, sizeof(err));
    }
    close(fd);
    return 0;
}
