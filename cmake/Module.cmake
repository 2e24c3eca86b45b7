# agentbox_unity(TARGET [BATCH]): TARGET's sources compiled in batches of BATCH (default 8) when
# AGENTBOX_UNITY is on. File-local names (anonymous namespaces, statics) then share a translation
# unit with the rest of their batch, so they must differ within a target; a clash fails to compile.
function(agentbox_unity target)
  if(AGENTBOX_UNITY)
    set(batch 8)
    if(ARGC GREATER 1)
      set(batch ${ARGV1})
    endif()
    set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE ${batch})
    # g++ takes a .cpp included by the batch for a header, and then warns that a class of that
    # file with a member of an anonymous-namespace type (a pimpl's Impl) could be defined in two
    # units: true of headers, not of these files.
    target_compile_options(${target} PRIVATE $<$<CXX_COMPILER_ID:GNU>:-Wno-subobject-linkage>)
  endif()
endfunction()

# agentbox_module(NAME DEPS...): a static library from src/NAME/*.cpp, linked only to DEPS, so an
# arrow that points the wrong way fails to link. Sources are globbed so that adding a file needs no
# edit of a shared list.
function(agentbox_module name)
  cmake_parse_arguments(M "" "" "DEPS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  list(FILTER srcs EXCLUDE REGEX "_(test|fuzz|bench)\\.cpp$")
  if(srcs)
    add_library(agentbox_${name} STATIC ${srcs})
    target_include_directories(agentbox_${name} PUBLIC ${PROJECT_SOURCE_DIR}/include)
    target_link_libraries(agentbox_${name} PUBLIC ${M_DEPS})
    agentbox_unity(agentbox_${name})
  else()
    add_library(agentbox_${name} INTERFACE)
    target_include_directories(agentbox_${name} INTERFACE ${PROJECT_SOURCE_DIR}/include)
    target_link_libraries(agentbox_${name} INTERFACE ${M_DEPS})
  endif()
  add_library(agentbox::${name} ALIAS agentbox_${name})
endfunction()
