/* OpenCL compilers write their diagnostics ("3 warnings generated.") straight to the
 * process's stderr, not only into the build log, so a user's console and a study's
 * console.log fill with them. While a program builds, file descriptor 2 points at a
 * temporary file; the text goes back to stderr only when the build failed (the log is
 * also in the error message) or P7_VERBOSE=1 asks for it. The window is process-wide:
 * another thread writing to stderr during a build is held back with the compiler's text
 * and shown or dropped with it, which is why builds are serialised here and kept short. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/runtime.h"

static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;

static int verbose(void)
{
    const char *v = getenv("P7_VERBOSE");
    return v && *v && strcmp(v, "0") != 0;
}

void p7_compiler_output_hold(p7_compiler_output *hold)
{
    pthread_mutex_lock(&hold_lock);
    hold->saved_fd = -1;
    hold->capture = NULL;
    if (verbose()) return;
    fflush(stderr);
    FILE *capture = tmpfile();
    int saved = capture ? dup(STDERR_FILENO) : -1;
    if (saved < 0 || dup2(fileno(capture), STDERR_FILENO) < 0) {
        /* Could not redirect: the compiler's text shows, nothing is lost. */
        if (saved >= 0) close(saved);
        if (capture) fclose(capture);
        return;
    }
    hold->saved_fd = saved;
    hold->capture = capture;
}

void p7_compiler_output_release(p7_compiler_output *hold, int show)
{
    if (hold->saved_fd >= 0) {
        fflush(stderr);
        dup2(hold->saved_fd, STDERR_FILENO);
        close(hold->saved_fd);
        if (show) {
            char buf[4096];
            size_t n;
            rewind(hold->capture);
            while ((n = fread(buf, 1, sizeof buf, hold->capture)) > 0) fwrite(buf, 1, n, stderr);
            fflush(stderr);
        }
        fclose(hold->capture);
    }
    hold->saved_fd = -1;
    hold->capture = NULL;
    pthread_mutex_unlock(&hold_lock);
}
