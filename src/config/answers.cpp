// `persist.answers`: the profile's keys merged into the user's own settings file (answers.hpp).
#include "agentbox/config/answers.hpp"

#include <fmt/core.h>

#include <sstream>

#include "toml_json.hpp"

// The one instantiation of toml11's parser (toml_json.hpp).
template toml::value toml::parse<TOML11_DEFAULT_COMMENT_STRATEGY, std::unordered_map, std::vector>(
    std::istream&, const std::string&);

namespace agentbox::config {

using base::Error;
using base::Result;

namespace {

constexpr int kMaxDepth = 64;

std::string substitute(std::string s, const std::string& workspace) {
  static constexpr std::string_view kToken = "{workspace}";
  for (size_t at = s.find(kToken); at != std::string::npos;
       at = s.find(kToken, at + workspace.size())) {
    s.replace(at, kToken.size(), workspace);
  }
  return s;
}

nlohmann::json substituted(const nlohmann::json& j, const std::string& workspace) {
  if (j.is_string()) {
    return substitute(j.get<std::string>(), workspace);
  }
  if (j.is_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& e : j) {
      out.push_back(substituted(e, workspace));
    }
    return out;
  }
  if (j.is_object()) {
    nlohmann::json out = nlohmann::json::object();
    for (auto it = j.begin(); it != j.end(); ++it) {
      out[substitute(it.key(), workspace)] = substituted(it.value(), workspace);
    }
    return out;
  }
  return j;
}

// Objects merged key by key; anything else in `top` replaces what `into` had.
void merge_json(nlohmann::json& into, const nlohmann::json& top) {
  if (!into.is_object() || !top.is_object()) {
    into = top;
    return;
  }
  for (auto it = top.begin(); it != top.end(); ++it) {
    merge_json(into[it.key()], it.value());
  }
}

void merge_toml(toml::value& into, const toml::value& top) {
  if (!into.is_table() || !top.is_table()) {
    into = top;
    return;
  }
  for (const auto& [k, v] : top.as_table()) {
    auto& t = into.as_table();
    auto found = t.find(k);
    if (found == t.end()) {
      t.emplace(k, v);
    } else {
      merge_toml(found->second, v);
    }
  }
}

Result<std::string> merge_json_text(const std::string& existing, const nlohmann::json& answers) {
  nlohmann::json j = nlohmann::json::object();
  if (!existing.empty()) {
    j = nlohmann::json::parse(existing, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return Error::msg("not a JSON object");
    }
  }
  merge_json(j, answers);
  return j.dump(2) + "\n";
}

Result<std::string> merge_toml_text(const std::string& existing, const nlohmann::json& answers) {
  auto top = json_to_toml(answers);
  if (!top || !top->is_table()) {
    return Error::msg("the answers are not a TOML table");
  }
  toml::value doc{toml::table{}};
  try {
    if (!existing.empty()) {
      std::istringstream in(existing);
      doc = toml::parse(in, "existing");
    }
    merge_toml(doc, *top);
    return toml::format(doc);
  } catch (const std::exception& e) {
    std::string what = e.what();
    return Error::msg(fmt::format("not valid TOML: {}", what.substr(0, what.find('\n'))));
  }
}

}  // namespace

std::optional<nlohmann::json> toml_to_json(const toml::value& v) {
  switch (v.type()) {
    case toml::value_t::boolean:
      return nlohmann::json(v.as_boolean());
    case toml::value_t::integer:
      return nlohmann::json(v.as_integer());
    case toml::value_t::floating:
      return nlohmann::json(v.as_floating());
    case toml::value_t::string:
      return nlohmann::json(v.as_string().str);
    case toml::value_t::array: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& e : v.as_array()) {
        auto j = toml_to_json(e);
        if (!j) {
          return std::nullopt;
        }
        out.push_back(std::move(*j));
      }
      return out;
    }
    case toml::value_t::table: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& [k, e] : v.as_table()) {
        auto j = toml_to_json(e);
        if (!j) {
          return std::nullopt;
        }
        out[k] = std::move(*j);
      }
      return out;
    }
    case toml::value_t::empty:
    case toml::value_t::offset_datetime:
    case toml::value_t::local_datetime:
    case toml::value_t::local_date:
    case toml::value_t::local_time:
      return std::nullopt;
  }
  return std::nullopt;
}

namespace {

std::optional<toml::value> to_toml(const nlohmann::json& j, int depth) {
  if (depth > kMaxDepth) {
    return std::nullopt;
  }
  switch (j.type()) {
    case nlohmann::json::value_t::boolean:
      return toml::value(j.get<bool>());
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
      return toml::value(j.get<int64_t>());
    case nlohmann::json::value_t::number_float:
      return toml::value(j.get<double>());
    case nlohmann::json::value_t::string:
      return toml::value(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      toml::array out;
      for (const auto& e : j) {
        auto v = to_toml(e, depth + 1);
        if (!v) {
          return std::nullopt;
        }
        out.push_back(std::move(*v));
      }
      return toml::value(out);
    }
    case nlohmann::json::value_t::object: {
      toml::table out;
      for (auto it = j.begin(); it != j.end(); ++it) {
        auto v = to_toml(it.value(), depth + 1);
        if (!v) {
          return std::nullopt;
        }
        out.emplace(it.key(), std::move(*v));
      }
      return toml::value(out);
    }
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::binary:
    case nlohmann::json::value_t::discarded:
      return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace

std::optional<toml::value> json_to_toml(const nlohmann::json& j) {
  return to_toml(j, 0);
}

std::optional<AnswerFormat> answer_format(std::string_view path) {
  auto ends = [&](std::string_view ext) {
    return path.size() > ext.size() && path.substr(path.size() - ext.size()) == ext;
  };
  if (ends(".json")) {
    return AnswerFormat::kJson;
  }
  if (ends(".toml")) {
    return AnswerFormat::kToml;
  }
  return std::nullopt;
}

Result<std::string> merge_answers(AnswerFormat format, const std::string& existing,
                                  const std::string& answers, const std::string& workspace) {
  nlohmann::json top = nlohmann::json::parse(answers, nullptr, false);
  if (top.is_discarded() || !top.is_object()) {
    return Error::msg("the answers are not a JSON object");
  }
  top = substituted(top, workspace);
  switch (format) {
    case AnswerFormat::kJson:
      return merge_json_text(existing, top);
    case AnswerFormat::kToml:
      return merge_toml_text(existing, top);
  }
  return Error::msg("unknown format");
}

}  // namespace agentbox::config
