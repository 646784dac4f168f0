# Embeds the kernels folder (*.cl) into the library as C strings, so an installed binary needs no
# source tree. p7_embed_kernels(<output.c> <files...>) adds a custom command that
# regenerates <output.c> whenever a kernel file changes.

set(P7_EMBED_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/P7EmbedKernelsScript.cmake)

function(p7_embed_kernels output)
  add_custom_command(
    OUTPUT ${output}
    COMMAND ${CMAKE_COMMAND} -DOUTPUT=${output} "-DINPUTS=${ARGN}" -P ${P7_EMBED_SCRIPT}
    DEPENDS ${ARGN} ${P7_EMBED_SCRIPT}
    COMMENT "Embedding OpenCL kernels"
    VERBATIM)
endfunction()
