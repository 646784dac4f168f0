# Finds p7's dependencies the CMake way. A missing one stops configuration with a
# message naming the Debian package that provides it.

function(p7_missing what package)
  message(FATAL_ERROR
    "p7: ${what} was not found.\n"
    "On Debian/Ubuntu install it with:\n"
    "    sudo apt-get install ${package}\n")
endfunction()

find_package(OpenCL QUIET)
if(NOT OpenCL_FOUND)
  p7_missing("the OpenCL ICD loader and headers" "ocl-icd-opencl-dev opencl-headers")
endif()

find_package(CLBlast QUIET CONFIG)
if(NOT CLBlast_FOUND)
  p7_missing("CLBlast" "libclblast-dev")
endif()

if(NOT CMAKE_DL_LIBS AND NOT CMAKE_SYSTEM_NAME STREQUAL "Linux")
  message(STATUS "p7: no separate libdl on this system")
endif()

find_package(PNG QUIET)
if(NOT PNG_FOUND)
  p7_missing("libpng (for the CIFAR-10 PNG importer)" "libpng-dev")
endif()

find_package(Threads REQUIRED)

if(P7_BUILD_TESTS)
  find_package(cmocka QUIET CONFIG)
  if(NOT cmocka_FOUND)
    p7_missing("cmocka (the test framework)" "libcmocka-dev")
  endif()
  if(NOT TARGET cmocka::cmocka)
    add_library(cmocka::cmocka INTERFACE IMPORTED)
    set_target_properties(cmocka::cmocka PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${CMOCKA_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "${CMOCKA_LIBRARIES}")
  endif()
endif()

if(P7_BUILD_BENCH)
  find_path(P7_CBLAS_INCLUDE cblas.h PATH_SUFFIXES openblas)
  find_library(P7_OPENBLAS_LIBRARY NAMES openblas)
  if(NOT P7_CBLAS_INCLUDE OR NOT P7_OPENBLAS_LIBRARY)
    p7_missing("OpenBLAS (the benchmark's CPU peer; the library does not need it)" "libopenblas-dev")
  endif()
endif()
