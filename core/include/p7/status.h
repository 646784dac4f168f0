/* p7 status codes and error messages.
 *
 * Every public p7 function returns a p7_status. Zero is success. Negative values
 * from -1 to -999 are OpenCL's own codes, passed through unchanged (so a
 * CL_OUT_OF_RESOURCES from the driver reaches the caller as -5). p7's own codes
 * start at -2000, the way CLBlast extends OpenCL's codes from -1024.
 *
 * On failure p7 also records a message on the calling thread that says what went
 * wrong with context (op, shape, file, device). Read it with p7_last_error()
 * before the next p7 call on the same thread. p7 never prints and never aborts.
 */
#ifndef P7_STATUS_H
#define P7_STATUS_H

#include "p7/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum p7_status {
    P7_SUCCESS = 0,
    /* -1 .. -999: OpenCL error codes (CL_*), unchanged. */
    P7_ERROR_INVALID_ARGUMENT = -2000, /* a NULL pointer, a zero size, a bad flag */
    P7_ERROR_INVALID_SHAPE = -2001,    /* shapes that do not fit the op */
    P7_ERROR_NO_PLATFORM = -2002,      /* no OpenCL platform is installed */
    P7_ERROR_DEVICE_NOT_FOUND = -2003, /* a device spec matched no device */
    P7_ERROR_OUT_OF_MEMORY = -2004,    /* host or device memory exhausted */
    P7_ERROR_KERNEL_BUILD = -2005,     /* an OpenCL program failed to compile */
    P7_ERROR_KERNEL_NOT_FOUND = -2006, /* no embedded kernel file or kernel by that name */
    P7_ERROR_CLBLAST = -2007,          /* CLBlast returned an error */
    P7_ERROR_IO = -2008,               /* a file could not be read or written */
    P7_ERROR_FORMAT = -2009,           /* a file's content is not what was expected */
    P7_ERROR_UNSUPPORTED = -2010,      /* op/device/option combination not supported */
    P7_ERROR_CHECKSUM = -2011,         /* a digest did not match the expected value */
    P7_ERROR_STATE = -2012,            /* call out of order (e.g. use after close) */
    P7_ERROR_PLUGIN = -2013            /* an optimizer plugin could not be loaded or used */
} p7_status;

/* A fixed, human-readable name for a status code ("CL_OUT_OF_RESOURCES",
 * "P7_ERROR_INVALID_SHAPE", ...). Never NULL; unknown codes give "unknown status". */
P7_API const char *p7_status_string(p7_status status);

/* The message of the most recent failure on this thread; "" if none. The pointer
 * stays valid until the next p7 call on this thread. */
P7_API const char *p7_last_error(void);

/* Forget the current thread's message. */
P7_API void p7_clear_error(void);

#ifdef __cplusplus
}
#endif

#endif
