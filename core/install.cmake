# `cmake --install <build>` puts libp7, its public headers, the optimizer plugins and a
# p7Config.cmake in place, so an outside project can do find_package(p7) and build an
# optimizer plugin (docs/examples/signsgd) or an app against libp7.
#
#   <prefix>/include/p7/*.h
#   <prefix>/lib/libp7.so*
#   <prefix>/lib/p7/plugins/lib{sgd,adam,ivon}.so   (the loader's last search place)
#   <prefix>/lib/cmake/p7/p7Config.cmake, p7ConfigVersion.cmake, p7Targets.cmake
include_guard(GLOBAL)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set_target_properties(p7_plugin PROPERTIES EXPORT_NAME plugin)

install(TARGETS p7 p7_plugin EXPORT p7Targets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/core/include/p7 DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
install(TARGETS sgd adam ivon LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/p7/plugins)

set(P7_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/p7)
install(EXPORT p7Targets NAMESPACE p7:: DESTINATION ${P7_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/core/p7Config.cmake.in
  ${PROJECT_BINARY_DIR}/p7Config.cmake
  INSTALL_DESTINATION ${P7_CMAKE_DIR}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR CMAKE_INSTALL_LIBDIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/p7ConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/p7Config.cmake ${PROJECT_BINARY_DIR}/p7ConfigVersion.cmake
  DESTINATION ${P7_CMAKE_DIR})
