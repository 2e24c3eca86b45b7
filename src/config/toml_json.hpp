// TOML values to JSON and back, for `persist.answers` (answers.hpp). toml11 types stay in config/.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <toml.hpp>

namespace agentbox::config {

// nullopt for a value JSON cannot say (a date or a time).
[[nodiscard]] std::optional<nlohmann::json> toml_to_json(const toml::value& v);
// nullopt for a JSON null (TOML has none).
[[nodiscard]] std::optional<toml::value> json_to_toml(const nlohmann::json& j);

}  // namespace agentbox::config
