// Token files: finding the values to mask and masking them (see token_file.hpp).
#include "agentbox/cred/token_file.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <regex>

#include "agentbox/cred/capture.hpp"  // declares json_field and set_json_field_text, defined here
#include "agentbox/http/text.hpp"

namespace agentbox::cred {

using http::detail::replace_all;

namespace {

constexpr size_t kMinSecret = 8;

// The value at a dotted path ("a.b.0.c"), or null.
const nlohmann::json* at_path(const nlohmann::json& root, std::string_view path) {
  const nlohmann::json* cur = &root;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('.', i);
    if (j == std::string_view::npos) {
      j = path.size();
    }
    std::string key(path.substr(i, j - i));
    if (cur->is_object()) {
      auto it = cur->find(key);
      if (it == cur->end()) {
        return nullptr;
      }
      cur = &*it;
    } else if (cur->is_array() && !key.empty() &&
               std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
               key.size() < 9 && std::stoul(key) < cur->size()) {
      cur = &(*cur)[std::stoul(key)];
    } else {
      return nullptr;
    }
    i = j + 1;
  }
  return cur;
}

void add_unique(std::vector<std::string>& out, std::string v) {
  if (std::find(out.begin(), out.end(), v) == out.end()) {
    out.push_back(std::move(v));
  }
}

// The value as it appears inside a JSON string literal (without the quotes).
std::string json_escaped(const std::string& v) {
  std::string d = nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return d.size() >= 2 ? d.substr(1, d.size() - 2) : d;
}

}  // namespace

base::Result<std::vector<std::string>> find_token_secrets(std::string_view text,
                                                          const TokenFileSpec& spec) {
  std::vector<std::string> out;
  if (!spec.json_fields.empty()) {
    nlohmann::json root = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (root.is_discarded()) {
      return base::Error::msg("the file is not JSON, but json_fields were given");
    }
    for (const auto& path : spec.json_fields) {
      const nlohmann::json* v = at_path(root, path);
      if (v != nullptr && v->is_string()) {
        add_unique(out, v->get<std::string>());
      }
    }
  }
  for (const auto& r : spec.regexes) {
    std::regex re;
    // std::regex reports a bad pattern by throwing; config validated it, this is the backstop.
    try {
      re = std::regex(r);
    } catch (const std::regex_error& e) {
      return base::Error::msg(fmt::format("`{}` is not a regular expression: {}", r, e.what()));
    }
    std::string s(text);
    for (auto it = std::sregex_iterator(s.begin(), s.end(), re); it != std::sregex_iterator();
         ++it) {
      if (it->size() > 1 && (*it)[1].matched) {
        add_unique(out, (*it)[1].str());
      }
    }
  }
  for (const auto& v : out) {
    if (v.size() < kMinSecret) {
      return base::Error::msg(fmt::format(
          "a value to mask is shorter than {} characters; a placeholder for it would collide with "
          "ordinary text",
          kMinSecret));
    }
  }
  return out;
}

std::string mask_token_text(std::string text,
                            const std::vector<std::pair<std::string, std::string>>& replacements) {
  for (const auto& [secret, placeholder] : replacements) {
    // Writers differ in what they escape: nlohmann and Python leave '/' alone, others write "\/".
    std::string esc = json_escaped(secret);
    std::string esc_ph = json_escaped(placeholder);
    std::string slashed = esc;
    std::string slashed_ph = esc_ph;
    replace_all(slashed, "/", "\\/");
    replace_all(slashed_ph, "/", "\\/");
    for (const auto& [from, to] :
         {std::pair{slashed, slashed_ph}, std::pair{esc, esc_ph}, std::pair{secret, placeholder}}) {
      if (!from.empty()) {
        replace_all(text, from, to);
      }
    }
  }
  return text;
}

}  // namespace agentbox::cred

namespace agentbox::cred {

base::Result<std::optional<std::string>> json_field(std::string_view text, std::string_view path) {
  nlohmann::json root = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return base::Error::msg("the response is not JSON");
  }
  const nlohmann::json* v = at_path(root, path);
  if (v == nullptr || !v->is_string()) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(v->get<std::string>());
}

base::Result<std::string> set_json_field_text(const std::string& text, std::string_view path,
                                              std::string_view value) {
  nlohmann::json root = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return base::Error::msg("the file is not JSON");
  }
  nlohmann::json* v = const_cast<nlohmann::json*>(at_path(root, path));
  if (v == nullptr || !v->is_string()) {
    return base::Error::msg(fmt::format("`{}` holds no string", path));
  }
  const std::string old = v->get<std::string>();
  // Keep the file's own formatting: replace the old value's spellings in the text, and check
  // that this changed exactly the field (an old value that is short or occurs elsewhere would
  // not); otherwise write the document back whole.
  std::string edited = text;
  if (old.size() >= kMinSecret) {
    edited = mask_token_text(std::move(edited), {{old, std::string(value)}});
  }
  *v = std::string(value);
  nlohmann::json check = nlohmann::json::parse(edited, nullptr, false);
  if (old.size() >= kMinSecret && !check.is_discarded() && check == root) {
    return edited;
  }
  return root.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace agentbox::cred
