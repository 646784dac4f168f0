/* Status names and the thread-local error message. */
#include <stdio.h>
#include <string.h>

#include "runtime/runtime.h"

static _Thread_local char p7_error_message[4096];

p7_status p7_fail(p7_status status, const char *fmt, ...)
{
    /* Formatted apart, then copied: a caller may pass p7_last_error() itself as an
     * argument, to add context to the message it replaces. */
    char message[sizeof p7_error_message];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    memcpy(p7_error_message, message, sizeof message);
    return status;
}

p7_status p7_fail_cl(cl_int err, const char *what)
{
    return p7_fail((p7_status)err, "%s: OpenCL error %d (%s)", what, (int)err,
                   p7_status_string((p7_status)err));
}

const char *p7_abbrev(const char *text)
{
    enum { KEEP = 160, HEAD = 100, TAIL = 57 };
    static _Thread_local char buffers[4][KEEP + 1];
    static _Thread_local unsigned next;
    if (!text) return "(null)";
    size_t n = strlen(text);
    if (n <= KEEP) return text;
    char *out = buffers[next++ % 4];
    memcpy(out, text, HEAD);
    memcpy(out + HEAD, "...", 3);
    memcpy(out + HEAD + 3, text + n - TAIL, TAIL);
    out[KEEP] = '\0';
    return out;
}

const char *p7_format_bytes(uint64_t bytes, char *buf, size_t size)
{
    const double mib = 1024.0 * 1024.0, gib = 1024.0 * mib;
    if (bytes >= (uint64_t)1 << 30) snprintf(buf, size, "%.2f GiB", (double)bytes / gib);
    else snprintf(buf, size, "%.1f MiB", (double)bytes / mib);
    return buf;
}

const char *p7_last_error(void) { return p7_error_message; }

void p7_clear_error(void) { p7_error_message[0] = '\0'; }

const char *p7_status_string(p7_status status)
{
    switch ((int)status) {
#define P7_NAME(code) case code: return #code;
    P7_NAME(P7_SUCCESS)
    P7_NAME(P7_ERROR_INVALID_ARGUMENT)
    P7_NAME(P7_ERROR_INVALID_SHAPE)
    P7_NAME(P7_ERROR_NO_PLATFORM)
    P7_NAME(P7_ERROR_DEVICE_NOT_FOUND)
    P7_NAME(P7_ERROR_OUT_OF_MEMORY)
    P7_NAME(P7_ERROR_KERNEL_BUILD)
    P7_NAME(P7_ERROR_KERNEL_NOT_FOUND)
    P7_NAME(P7_ERROR_CLBLAST)
    P7_NAME(P7_ERROR_IO)
    P7_NAME(P7_ERROR_FORMAT)
    P7_NAME(P7_ERROR_UNSUPPORTED)
    P7_NAME(P7_ERROR_CHECKSUM)
    P7_NAME(P7_ERROR_STATE)
    P7_NAME(P7_ERROR_PLUGIN)
    P7_NAME(CL_DEVICE_NOT_FOUND)
    P7_NAME(CL_DEVICE_NOT_AVAILABLE)
    P7_NAME(CL_COMPILER_NOT_AVAILABLE)
    P7_NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    P7_NAME(CL_OUT_OF_RESOURCES)
    P7_NAME(CL_OUT_OF_HOST_MEMORY)
    P7_NAME(CL_PROFILING_INFO_NOT_AVAILABLE)
    P7_NAME(CL_MEM_COPY_OVERLAP)
    P7_NAME(CL_IMAGE_FORMAT_MISMATCH)
    P7_NAME(CL_IMAGE_FORMAT_NOT_SUPPORTED)
    P7_NAME(CL_BUILD_PROGRAM_FAILURE)
    P7_NAME(CL_MAP_FAILURE)
    P7_NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET)
    P7_NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    P7_NAME(CL_COMPILE_PROGRAM_FAILURE)
    P7_NAME(CL_LINKER_NOT_AVAILABLE)
    P7_NAME(CL_LINK_PROGRAM_FAILURE)
    P7_NAME(CL_DEVICE_PARTITION_FAILED)
    P7_NAME(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
    P7_NAME(CL_INVALID_VALUE)
    P7_NAME(CL_INVALID_DEVICE_TYPE)
    P7_NAME(CL_INVALID_PLATFORM)
    P7_NAME(CL_INVALID_DEVICE)
    P7_NAME(CL_INVALID_CONTEXT)
    P7_NAME(CL_INVALID_QUEUE_PROPERTIES)
    P7_NAME(CL_INVALID_COMMAND_QUEUE)
    P7_NAME(CL_INVALID_HOST_PTR)
    P7_NAME(CL_INVALID_MEM_OBJECT)
    P7_NAME(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
    P7_NAME(CL_INVALID_IMAGE_SIZE)
    P7_NAME(CL_INVALID_SAMPLER)
    P7_NAME(CL_INVALID_BINARY)
    P7_NAME(CL_INVALID_BUILD_OPTIONS)
    P7_NAME(CL_INVALID_PROGRAM)
    P7_NAME(CL_INVALID_PROGRAM_EXECUTABLE)
    P7_NAME(CL_INVALID_KERNEL_NAME)
    P7_NAME(CL_INVALID_KERNEL_DEFINITION)
    P7_NAME(CL_INVALID_KERNEL)
    P7_NAME(CL_INVALID_ARG_INDEX)
    P7_NAME(CL_INVALID_ARG_VALUE)
    P7_NAME(CL_INVALID_ARG_SIZE)
    P7_NAME(CL_INVALID_KERNEL_ARGS)
    P7_NAME(CL_INVALID_WORK_DIMENSION)
    P7_NAME(CL_INVALID_WORK_GROUP_SIZE)
    P7_NAME(CL_INVALID_WORK_ITEM_SIZE)
    P7_NAME(CL_INVALID_GLOBAL_OFFSET)
    P7_NAME(CL_INVALID_EVENT_WAIT_LIST)
    P7_NAME(CL_INVALID_EVENT)
    P7_NAME(CL_INVALID_OPERATION)
    P7_NAME(CL_INVALID_GL_OBJECT)
    P7_NAME(CL_INVALID_BUFFER_SIZE)
    P7_NAME(CL_INVALID_MIP_LEVEL)
    P7_NAME(CL_INVALID_GLOBAL_WORK_SIZE)
    P7_NAME(CL_INVALID_PROPERTY)
#undef P7_NAME
    default: return "unknown status";
    }
}
