# What `cmake --install` puts where, and the Debian package (`cmake --build build --target package`).
# Paths are relative to the prefix; the binary finds its profiles as ../share/agentbox/profiles
# (config::default_profile_dirs), so a build tree mirrors the installed layout for them.

# The build tree's copy of the shipped profiles, kept current at configure time (a new or edited
# profile re-runs the configure step through CONFIGURE_DEPENDS / configure_file's own dependency).
file(GLOB agentbox_profiles CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/profiles/*.toml)
file(REMOVE_RECURSE ${PROJECT_BINARY_DIR}/share/agentbox/profiles)
foreach(profile IN LISTS agentbox_profiles)
  get_filename_component(name ${profile} NAME)
  configure_file(${profile} ${PROJECT_BINARY_DIR}/share/agentbox/profiles/${name} COPYONLY)
endforeach()

# Completions come from the CLI definitions (`agentbox completion SHELL`): nothing to keep in sync.
set(completions ${PROJECT_BINARY_DIR}/share/completions)
add_custom_command(
  OUTPUT ${completions}/agentbox ${completions}/_agentbox ${completions}/agentbox.fish
  COMMAND ${CMAKE_COMMAND} -E make_directory ${completions}
  COMMAND agentbox completion bash > ${completions}/agentbox
  COMMAND agentbox completion zsh > ${completions}/_agentbox
  COMMAND agentbox completion fish > ${completions}/agentbox.fish
  DEPENDS agentbox
  COMMENT "Shell completions from the CLI definitions")
add_custom_target(completions ALL DEPENDS ${completions}/agentbox)

install(FILES ${agentbox_profiles} DESTINATION ${CMAKE_INSTALL_DATADIR}/agentbox/profiles)
# The seccomp profile a container around agentbox needs (deploy/README.md; doctor names its path).
install(FILES packaging/container/seccomp.json DESTINATION ${CMAKE_INSTALL_DATADIR}/agentbox
        RENAME container-seccomp.json)
# Man pages compressed as Debian installs them (gzip -n: no timestamp, the same bytes every build).
set(man_out ${PROJECT_BINARY_DIR}/share/man)
add_custom_command(
  OUTPUT ${man_out}/agentbox.1.gz ${man_out}/agentbox.toml.5.gz
  COMMAND ${CMAKE_COMMAND} -E make_directory ${man_out}
  COMMAND gzip -9nc ${PROJECT_SOURCE_DIR}/man/agentbox.1 > ${man_out}/agentbox.1.gz
  COMMAND gzip -9nc ${PROJECT_SOURCE_DIR}/man/agentbox.toml.5 > ${man_out}/agentbox.toml.5.gz
  DEPENDS man/agentbox.1 man/agentbox.toml.5
  COMMENT "Man pages")
add_custom_target(manpages ALL DEPENDS ${man_out}/agentbox.1.gz)
install(FILES ${man_out}/agentbox.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${man_out}/agentbox.toml.5.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES ${completions}/agentbox DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
install(FILES ${completions}/_agentbox DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions)
install(FILES ${completions}/agentbox.fish
        DESTINATION ${CMAKE_INSTALL_DATADIR}/fish/vendor_completions.d)
file(GLOB agentbox_docs ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES README.md ${agentbox_docs} DESTINATION ${CMAKE_INSTALL_DOCDIR})

# The AppArmor profile lives in /etc whatever the prefix; only the package installs it (its
# postinst loads it where AppArmor is active). `cmake --install` users follow the README's step.
option(AGENTBOX_PACKAGE "Configure for the Debian package (prefix /usr, AppArmor profile)" OFF)
if(AGENTBOX_PACKAGE)
  install(FILES packaging/apparmor/agentbox DESTINATION /etc/apparmor.d)
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME agentbox)
set(CPACK_PACKAGE_CONTACT "agentbox developers <agentbox@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "run coding agents in a box that holds no real secrets")
set(CPACK_PACKAGE_DESCRIPTION
    "agentbox runs a coding agent, a build or a CI job as the calling user, without root or a\n"
    "daemon, in new namespaces with Landlock and seccomp, a workspace-only filesystem, and a\n"
    "deny-by-default network served by its own TCP/IP stack and credential-injecting proxy.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "apparmor")
# Desktop notifications for approvals load libsystemd.so.0 with dlopen (dpkg-shlibdeps cannot see
# it): without it they stay off and `agentbox approve` works as always.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "libsystemd0")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/debian/postinst ${PROJECT_SOURCE_DIR}/packaging/debian/postrm
    ${PROJECT_SOURCE_DIR}/packaging/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
