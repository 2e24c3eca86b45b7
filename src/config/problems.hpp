// Config diagnostics: every problem of every layer is collected, then reported together.
#pragma once

#include <string>
#include <vector>

#include "agentbox/config/model.hpp"

namespace agentbox::config {

struct Problem {
  Origin at;
  std::string line_text;  // the source line, when from a file
  std::string what;
  std::string note;  // "did you mean `allow`?", "expected ..."
};

class Problems {
 public:
  void add(Origin at, std::string line_text, std::string what, std::string note = {}) {
    list_.push_back({std::move(at), std::move(line_text), std::move(what), std::move(note)});
  }
  [[nodiscard]] bool empty() const { return list_.empty(); }
  [[nodiscard]] size_t size() const { return list_.size(); }
  // Blocks in file order: `file:line:col: what`, the line, a caret, then the note.
  // The first block has no "agentbox: error: " prefix (Error::render adds it).
  [[nodiscard]] std::string render() const;

 private:
  std::vector<Problem> list_;
};

}  // namespace agentbox::config
