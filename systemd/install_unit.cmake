# Writes vtpmmgrd.service at install time (see CMakeLists.txt). Inputs:
# CMAKE_INSTALL_PREFIX (the install-time prefix), DESTDIR (environment),
# VTPM_SBINDIR (relative to the prefix, or absolute), VTPM_SYSTEMD_UNITDIR
# (empty: <prefix>/lib/systemd/system), VTPM_UNIT_TEMPLATE.
if(IS_ABSOLUTE "${VTPM_SBINDIR}")
  set(VTPM_SBINDIR_FULL "${VTPM_SBINDIR}")
else()
  set(VTPM_SBINDIR_FULL "${CMAKE_INSTALL_PREFIX}/${VTPM_SBINDIR}")
endif()
if(VTPM_SYSTEMD_UNITDIR STREQUAL "")
  set(VTPM_SYSTEMD_UNITDIR "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
endif()
set(VTPM_SBINDIR "${VTPM_SBINDIR_FULL}")
set(unit "$ENV{DESTDIR}${VTPM_SYSTEMD_UNITDIR}/vtpmmgrd.service")
configure_file("${VTPM_UNIT_TEMPLATE}" "${unit}" @ONLY)
message(STATUS "Installing: ${unit} (ExecStart=${VTPM_SBINDIR}/vtpmmgrd)")
