// Strict DNS hostname grammar for names read from the box (SNI, Host, :authority).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace agentbox::proxy {

// Returns the canonical form of `name` (ASCII lowercase, one trailing dot removed) when it is a
// strict LDH hostname: 1..253 octets, labels of 1..63 letters/digits/hyphens that neither start
// nor end with a hyphen, no empty label, and a last label that is not all digits (so IPv4
// literals and "1.2.3.4." are refused; RFC 6066 forbids literal addresses in SNI anyway).
// NUL, '_', '%', spaces, non-ASCII and every other byte are refused: names are compared by
// labels later, and a NUL once passed a peer's suffix check (see FIELD-NOTES "The proxy").
[[nodiscard]] std::optional<std::string> normalize_hostname(std::string_view name);

}  // namespace agentbox::proxy
