/* How much more host memory this process may take: what CPU devices (PoCL) need to
 * know, since their device buffers are host memory. Linux only; elsewhere nothing is
 * known and every check passes. */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "runtime/runtime.h"

/* MemAvailable from /proc/meminfo in bytes; 0 when unknown. */
static uint64_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) break;
    fclose(f);
    return (uint64_t)kib * 1024u;
}

/* Bytes of address space the process maps now (VmSize, /proc/self/statm); 0 when unknown. */
static uint64_t mapped_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long pages = 0;
    int ok = fscanf(f, "%llu", &pages) == 1;
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return ok && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
}

uint64_t p7_host_memory_headroom(char *limit, size_t size)
{
    uint64_t best = UINT64_MAX;
    if (limit && size) limit[0] = '\0';
    uint64_t avail = mem_available();
    if (avail) {
        best = avail;
        char b[32];
        if (limit && size)
            snprintf(limit, size, "the host's available memory (MemAvailable %s)", p7_format_bytes(avail, b, sizeof b));
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        uint64_t cap = (uint64_t)rl.rlim_cur, mapped = mapped_bytes();
        uint64_t left = cap > mapped ? cap - mapped : 0;
        if (left < best) {
            best = left;
            char b[2][32];
            if (limit && size)
                snprintf(limit, size, "the address-space limit (ulimit -v, %s) less the %s this process maps",
                         p7_format_bytes(cap, b[0], sizeof b[0]), p7_format_bytes(mapped, b[1], sizeof b[1]));
        }
    }
    return best;
}
