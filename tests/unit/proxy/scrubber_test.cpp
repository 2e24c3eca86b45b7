// The scrubber's in-place form (the proxy's Content-Length path): a secret split at every offset
// across two reads, the held bytes carried at the front as the caller does.
#include "agentbox/proxy/scrubber.hpp"

#include <gtest/gtest.h>

#include <string>

namespace agentbox::proxy {
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
    Scrubber s;
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

}  // namespace
}  // namespace agentbox::proxy
