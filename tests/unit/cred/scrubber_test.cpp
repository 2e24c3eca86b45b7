// The scrubber's in-place form (the proxy's Content-Length path): a secret split at every offset
// across two reads, the held bytes carried at the front as the caller does.
#include "agentbox/cred/scrubber.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace agentbox::cred {
namespace {

// Feeds `text` in two reads cut at `split`, as http_exchange.cpp does with up.rx: the bytes
// the scrubber holds stay at the front of the buffer and are scanned again with the next read.
std::string two_reads(Scrubber& s, const std::string& text, size_t split) {
  std::string out;
  std::string buf = text.substr(0, split);
  size_t keep = s.scrub_in_place(buf, false);
  out += buf.substr(0, keep);
  buf.erase(0, keep);
  buf += text.substr(split);
  keep = s.scrub_in_place(buf, true);
  EXPECT_EQ(keep, buf.size());
  return out + buf;
}

TEST(ScrubberInPlace, SecretSplitAtEveryOffsetAcrossTwoReads) {
  const std::string secret = "sk-ant-api03-REALrealREALrealREAL";
  const std::string ph = "sk-ant-api03-PLACplacPLACplacPLAC";
  const std::string b64_secret = "c2stYW50LWFwaTAzLVJFQUxyZWFsUkVBTHJlYWxSRUFM";
  const std::string b64_ph = "c2stYW50LWFwaTAzLVBMQUNwbGFjUExBQ3BsYWNQTEFD";
  const std::string text = "{\"echo\":\"" + secret + "\",\"b64\":\"" + b64_secret + "\",\"s\":\"s";
  const std::string want = "{\"echo\":\"" + ph + "\",\"b64\":\"" + b64_ph + "\",\"s\":\"s";
  for (size_t split = 0; split <= text.size(); ++split) {
    Scrubber s(split % 2 == 0 ? 0 : Scrubber::kAnchoredFrom);  // both search paths
    s.add(secret, ph);
    s.add(b64_secret, b64_ph);
    EXPECT_EQ(two_reads(s, text, split), want) << split;
    EXPECT_EQ(s.replaced(), 2u) << split;
  }
}

TEST(ScrubberInPlace, HoldsOnlyAPossibleStartAndNothingWhenFinal) {
  Scrubber s;
  s.add("ghp_secretsecret", "ghp_placeholder0");
  std::string a = "data: x\n\n";
  EXPECT_EQ(s.scrub_in_place(a, false), a.size());  // nothing could start a secret: all final
  std::string b = "token ghp_sec";
  EXPECT_EQ(s.scrub_in_place(b, false), 6u);  // "ghp_sec" may continue as the secret
  EXPECT_EQ(s.scrub_in_place(b, true), b.size());
  std::string c = "ghp_secretsecret ghp_secretsecret";
  EXPECT_EQ(s.scrub_in_place(c, false), c.size());
  EXPECT_EQ(c, "ghp_placeholder0 ghp_placeholder0");
  Scrubber none;
  std::string d = "anything";
  EXPECT_EQ(none.scrub_in_place(d, false), d.size());
}

// A held tail that already holds a whole shorter needle, which a longer needle goes on to
// contain (the Basic form of user:secret contains the base64 of the secret): the shorter one
// waits with the tail, so the longer one is still replaced whole when the rest comes. (Before,
// the short one was replaced at once and the long one then went out with the secret's last
// bytes in it.)
TEST(ScrubberInPlace, ShorterNeedleInsideAHeldLongerOneWaits) {
  for (size_t split = 0; split <= 9; ++split) {
    Scrubber s(0);
    s.add("abc", "xyz");
    s.add("--abc--!!", "==pqr==??");
    EXPECT_EQ(two_reads(s, "--abc--!!", split), "==pqr==??") << split;
    Scrubber t(0);
    t.add("abc", "xyz");
    t.add("--abc--!!", "==pqr==??");
    EXPECT_EQ(two_reads(t, "--abc--!?", split), "--xyz--!?") << split;  // never completed
  }
}

// What the scrubber must produce: every needle, longest first, replaced left to right.
std::string reference(std::string text, std::vector<std::pair<std::string, std::string>> pairs) {
  std::stable_sort(pairs.begin(), pairs.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  for (const auto& [needle, repl] : pairs) {
    for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p)) {
      text.replace(p, needle.size(), repl);
      p += needle.size();
    }
  }
  return text;
}

// The one-pass anchored search looks at one 4-byte gram every (shortest needle - 3) bytes: a
// secret at every offset of a buffer (so at every position relative to that stride), whole and
// cut across two reads at every point, is caught, for a needle at the anchored minimum (8
// bytes), a long one, and one below the minimum (the memmem fallback); with the anchored scan
// on every buffer (anchored_from 0) and as the proxy uses it (memmem under 2 KiB).
TEST(ScrubberInPlace, SecretAtEveryOffsetAndEveryCut) {
  for (const size_t from : {size_t{0}, Scrubber::kAnchoredFrom}) {
    for (const auto& [needle, repl] : std::vector<std::pair<std::string, std::string>>{
             {"ghp_abcd", "ghp_WXYZ"},
             {"sk-ant-api03-" + std::string(80, 'r'), "sk-ant-api03-" + std::string(80, 'P')},
             {"tok", "TOK"}}) {
      for (size_t at = 0; at < 160; ++at) {
        const std::string text = std::string(at, 'x') + needle + std::string(37, 'y');
        const std::string want = std::string(at, 'x') + repl + std::string(37, 'y');
        Scrubber whole(from);
        whole.add(needle, repl);
        std::string buf = text;
        EXPECT_EQ(whole.scrub_in_place(buf, true), buf.size());
        EXPECT_EQ(buf, want) << needle << " at " << at << " from " << from;
        for (size_t cut = at; cut <= at + needle.size(); ++cut) {
          Scrubber s(from);
          s.add(needle, repl);
          EXPECT_EQ(two_reads(s, text, cut), want)
              << needle << " at " << at << " cut " << cut << " from " << from;
        }
      }
    }
  }
}

// A secret in a large buffer (the anchored scan as the proxy runs it on a 64 KiB read), at
// offsets around the stride and at both ends.
TEST(ScrubberInPlace, SecretInALargeRead) {
  const std::string needle = "sk-ant-api03-" + std::string(80, 'r');
  const std::string repl = "sk-ant-api03-" + std::string(80, 'P');
  std::string text(size_t{64} * 1024, 'z');
  for (const size_t at : {size_t{0}, size_t{1}, size_t{89}, size_t{90}, size_t{91}, size_t{40000},
                          text.size() - needle.size()}) {
    std::string buf = text;
    buf.replace(at, needle.size(), needle);
    Scrubber s;
    s.add(needle, repl);
    EXPECT_EQ(s.scrub_in_place(buf, true), buf.size());
    EXPECT_EQ(buf.find(needle), std::string::npos) << at;
    EXPECT_EQ(buf.substr(at, repl.size()), repl) << at;
    EXPECT_EQ(s.replaced(), 1u) << at;
  }
}

// Differential: random text seeded with needles (whole, overlapping, one inside another, near
// misses), cut into random reads as the proxy does, against the plain definition.
TEST(ScrubberInPlace, MatchesTheDefinitionOnRandomText) {
  std::mt19937_64 rng(20261127);
  const std::string secret = "sk-ant-api03-Zq9Zq9Zq9Zq9Zq9Zq9";
  const std::string placeholder = "sk-ant-api03-Pw1Pw1Pw1Pw1Pw1Pw1";
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {secret, placeholder},
      {"Basic:" + secret + ":end", "Basic:" + placeholder + ":end"},  // contains the secret
      {"ababababab", "cdcdcdcdcd"},                                   // overlaps itself
      {"Zq9Zq9Zq9Zq9", "Xx0Xx0Xx0Xx0"}};                              // inside the secret
  const std::vector<std::string> pieces = {
      secret,           "Basic:" + secret + ":end", "abababababab",
      "Zq9Zq9Zq9Zq9Zq", secret.substr(0, 20),       "sk-ant-api03-Zq9Zq9Zq9Zq9Zq9Zq8"};
  for (int round = 0; round < 300; ++round) {
    std::string text;
    while (text.size() < 3000) {
      if (rng() % 4 == 0) {
        text += pieces[rng() % pieces.size()];
      } else {
        const size_t k = rng() % 64;
        for (size_t i = 0; i < k; ++i) {
          text += "abZq9sk-"[rng() % 8];
        }
      }
    }
    Scrubber s(round % 2 == 0 ? 0 : Scrubber::kAnchoredFrom);
    for (const auto& [n, r] : pairs) {
      s.add(n, r);
    }
    // Random reads; held bytes stay at the front of the next read, as in http_exchange.cpp.
    std::string out;
    std::string buf;
    size_t off = 0;
    while (off < text.size()) {
      const size_t k = std::min(text.size() - off, static_cast<size_t>(1 + rng() % 700));
      buf += text.substr(off, k);
      off += k;
      const bool final = off == text.size();
      const size_t keep = s.scrub_in_place(buf, final);
      out += buf.substr(0, keep);
      buf.erase(0, keep);
    }
    const std::string ref = reference(text, pairs);
    size_t d = 0;
    while (d < out.size() && d < ref.size() && out[d] == ref[d])
      ++d;
    ASSERT_EQ(out, ref) << "round " << round << " at " << d << ": "
                        << out.substr(d > 40 ? d - 40 : 0, 100) << " vs "
                        << ref.substr(d > 40 ? d - 40 : 0, 100);
  }
}

}  // namespace
}  // namespace agentbox::cred
