// fmt's compiled part, built here from the packaged headers so that `agentbox` needs no
// libfmt.so and can link libstdc++ statically (start-up time: docs/BENCHMARKS.md, "start-up").
// Without FMT_HEADER_ONLY, format-inl.h defines fmt's out-of-line functions; the explicit
// instantiations below are the ones format.h declares `extern template` for fmt 9 (CMake uses this
// file only for 9.x and links the shared library otherwise).
#include <fmt/format-inl.h>

static_assert(FMT_VERSION >= 90000 && FMT_VERSION < 100000, "only for fmt 9 (see CMakeLists.txt)");

FMT_BEGIN_NAMESPACE
namespace detail {

template auto dragonbox::to_decimal(float x) noexcept -> dragonbox::decimal_fp<float>;
template auto dragonbox::to_decimal(double x) noexcept -> dragonbox::decimal_fp<double>;
template auto thousands_sep_impl(locale_ref) -> thousands_sep_result<char>;
template auto thousands_sep_impl(locale_ref) -> thousands_sep_result<wchar_t>;
template auto decimal_point_impl(locale_ref) -> char;
template auto decimal_point_impl(locale_ref) -> wchar_t;
template void buffer<char>::append(const char*, const char*);
template void buffer<wchar_t>::append(const wchar_t*, const wchar_t*);
template void vformat_to(buffer<char>&, string_view, basic_format_args<FMT_BUFFER_CONTEXT(char)>,
                         locale_ref);

}  // namespace detail
FMT_END_NAMESPACE
