// TOML values to JSON and back, for `persist.answers` (answers.hpp). toml11 types stay in config/.
#pragma once

#include <istream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <toml.hpp>

// toml11's parser is compiled once, in answers.cpp (~13 s of CPU at -O3 per unit that
// instantiates it; docs/BENCHMARKS.md, (19)); load.cpp only calls it.
extern template toml::value toml::parse<TOML11_DEFAULT_COMMENT_STRATEGY, std::unordered_map,
                                        std::vector>(std::istream&, const std::string&);

namespace agentbox::config {

// nullopt for a value JSON cannot say (a date or a time).
[[nodiscard]] std::optional<nlohmann::json> toml_to_json(const toml::value& v);
// nullopt for a JSON null (TOML has none).
[[nodiscard]] std::optional<toml::value> json_to_toml(const nlohmann::json& j);

}  // namespace agentbox::config
