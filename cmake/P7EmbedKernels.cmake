# Embeds the kernels folder (*.cl, *.clh) into the library as C strings, so an installed
# binary needs no source tree. p7_embed_kernels(<output.c> <header.h> <files...>) adds a
# custom command that regenerates both whenever a kernel file changes; the header
# declares one symbol per kernel file (p7_kernels_<stem>).

set(P7_EMBED_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/P7EmbedKernelsScript.cmake)

function(p7_embed_kernels output header)
  add_custom_command(
    OUTPUT ${output} ${header}
    COMMAND ${CMAKE_COMMAND} -DOUTPUT=${output} -DHEADER=${header} "-DINPUTS=${ARGN}" -P ${P7_EMBED_SCRIPT}
    DEPENDS ${ARGN} ${P7_EMBED_SCRIPT}
    COMMENT "Embedding OpenCL kernels"
    VERBATIM)
endfunction()
