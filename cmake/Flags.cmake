# Warnings and hardening applied to every target of ours (not to imported ones).
set(AGENTBOX_WARNINGS -Wall -Wextra -Wshadow -Wformat=2 -Wold-style-cast -Wimplicit-fallthrough
    -Wnon-virtual-dtor -Wcast-align
    # Designated initializers (the house style for specs) legitimately omit defaulted members.
    -Wno-missing-field-initializers)
if(AGENTBOX_WERROR)
  list(APPEND AGENTBOX_WARNINGS -Werror)
  # g++ 12 at -O3 reports a false -Wrestrict inside std::string's operator+ (GCC PR 105329,
  # fixed in 13): kept visible as a warning, not an error, so a Release build can't fail on it.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    list(APPEND AGENTBOX_WARNINGS -Wno-error=restrict)
  endif()
endif()
add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:${AGENTBOX_WARNINGS}>")
add_compile_options(-fstack-protector-strong -fno-strict-aliasing)
if(NOT CMAKE_BUILD_TYPE STREQUAL "Debug" AND NOT AGENTBOX_SANITIZE)
  add_compile_definitions(_FORTIFY_SOURCE=2)
endif()
add_link_options(-Wl,-z,relro,-z,now)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)
include(CheckPIESupported)
check_pie_supported()
# Packed relative relocations (DT_RELR): a PIE's ~24,500 relative relocations (most of them the
# static OpenSSL's tables) take 8 bytes of a bitmap-coded .relr.dyn each word run instead of 24 of
# .rela.dyn each: 575 KB less that the dynamic linker reads, page by page, before `main` on every
# start (docs/BENCHMARKS.md, "start-up"). The binary stays a PIE (ASLR unchanged). binutils 2.38+
# and glibc 2.36+ (Debian 12); where the linker lacks it, the usual RELA.
include(CheckLinkerFlag)
check_linker_flag(CXX "-Wl,-z,pack-relative-relocs" AGENTBOX_LINKER_PACKS_RELOCS)
if(AGENTBOX_LINKER_PACKS_RELOCS)
  add_link_options(-Wl,-z,pack-relative-relocs)
endif()

if(AGENTBOX_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
if(AGENTBOX_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "AGENTBOX_FUZZ needs clang (CXX=clang++-14)")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
