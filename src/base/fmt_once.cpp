// fmt's out-of-line functions, compiled once for the whole program. Debian ships libfmt.so but no
// libfmt.a, and linking libfmt.so would bring libstdc++.so back into `agentbox`
// (docs/BENCHMARKS.md, "start-up"). fmt's header-only mode (FMT_HEADER_ONLY) avoids both, but then
// every translation unit that includes <fmt/core.h> parses and optimises all of fmt again: about 4
// s of CPU per unit at -O3, over half of the build (docs/BENCHMARKS.md, (19)). Instead the headers
// are used in their library mode and this file is the library: format-inl.h holds the definitions,
// and the explicit instantiations below are the templates format.h declares `extern` or uses
// without a definition (the ones fmt's own library build instantiates).
#include <fmt/format-inl.h>

FMT_BEGIN_NAMESPACE
namespace detail {

template FMT_API auto dragonbox::to_decimal(float x) noexcept -> dragonbox::decimal_fp<float>;
template FMT_API auto dragonbox::to_decimal(double x) noexcept -> dragonbox::decimal_fp<double>;

template FMT_API locale_ref::locale_ref(const std::locale& loc);
template FMT_API auto locale_ref::get<std::locale>() const -> std::locale;

template FMT_API auto thousands_sep_impl(locale_ref) -> thousands_sep_result<char>;
template FMT_API auto decimal_point_impl(locale_ref) -> char;
template FMT_API void buffer<char>::append(const char*, const char*);
template FMT_API void vformat_to(buffer<char>&, string_view,
                                 basic_format_args<FMT_BUFFER_CONTEXT(char)>, locale_ref);

template FMT_API auto thousands_sep_impl(locale_ref) -> thousands_sep_result<wchar_t>;
template FMT_API auto decimal_point_impl(locale_ref) -> wchar_t;
template FMT_API void buffer<wchar_t>::append(const wchar_t*, const wchar_t*);

}  // namespace detail
FMT_END_NAMESPACE
