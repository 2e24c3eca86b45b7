// SigV4: AWS's published vectors, and requests signed by botocore (the Python SDK's signer) with a
// placeholder key, verified and re-signed by the proxy, compared with botocore's own signature
// under the real key.
#include "agentbox/cred/sigv4.hpp"

#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/wait.h>

#include <cstdlib>
#include <sstream>
#include <string>

#include "testkit/skip.hpp"

namespace agentbox::cred::sigv4 {
namespace {

constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
// A same-shape stand-in, as a placeholder for an AWS secret key would be.
constexpr const char* kPlaceholder = "Qx3bT9vLmN2pR7sK1wZ8yH4cF6gJ0dA5eU/tB+iO";
constexpr const char* kEmptySha =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

http::Request request(const std::string& method, const std::string& target,
                      std::vector<http::Header> headers) {
  http::Request r;
  r.method = method;
  r.target = target;
  r.headers = std::move(headers);
  return r;
}

// The IAM ListUsers example of the AWS SigV4 documentation.
http::Request iam_example() {
  return request("GET", "/?Action=ListUsers&Version=2010-05-08",
                 {{"Host", "iam.amazonaws.com"},
                  {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
                  {"X-Amz-Date", "20150830T123600Z"}});
}

Authorization iam_auth() {
  return Authorization{.access_key = "AKIDEXAMPLE",
                       .date = "20150830",
                       .region = "us-east-1",
                       .service = "iam",
                       .signed_headers = {"content-type", "host", "x-amz-date"}};
}

TEST(SigV4, AwsDocumentationVectors) {
  auto cr = canonical_request(iam_example(), iam_auth(), kEmptySha, UriStyle::kNormalized);
  ASSERT_TRUE(cr) << cr.error().message();
  EXPECT_EQ(sha256_hex(*cr), "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
  EXPECT_EQ(signature(kSecret, iam_auth(), "20150830T123600Z", *cr),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");

  // The test suite's get-vanilla.
  Authorization vanilla{.access_key = "AKIDEXAMPLE",
                        .date = "20150830",
                        .region = "us-east-1",
                        .service = "service",
                        .signed_headers = {"host", "x-amz-date"}};
  auto r =
      request("GET", "/", {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}});
  auto cr2 = canonical_request(r, vanilla, kEmptySha, UriStyle::kNormalized);
  ASSERT_TRUE(cr2);
  EXPECT_EQ(signature(kSecret, vanilla, "20150830T123600Z", *cr2),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

TEST(SigV4, PlaceholderSignatureIsVerifiedThenReplacedByTheRealOne) {
  http::Request r = iam_example();
  Authorization a = iam_auth();
  auto cr = canonical_request(r, a, kEmptySha, UriStyle::kNormalized);
  ASSERT_TRUE(cr);
  a.signature = signature(kPlaceholder, a, "20150830T123600Z", *cr);
  r.headers.push_back({"Authorization", a.render()});

  auto v = verify(r, kPlaceholder, kEmptySha);
  ASSERT_TRUE(v) << v.error().message();
  auto real = sign(r, *v, kSecret);
  ASSERT_TRUE(real) << real.error().message();
  EXPECT_EQ(*real,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date, "
            "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");

  // Signed with some other key (not the one the proxy gave the box): never re-signed.
  EXPECT_FALSE(verify(r, kSecret, kEmptySha));
  // A signed header changed after signing: the box's signature no longer covers the request.
  http::Request tampered = r;
  tampered.headers[0].value = "evil.example";
  EXPECT_FALSE(verify(tampered, kPlaceholder, kEmptySha));
}

TEST(SigV4, RefusesWhatItCannotResign) {
  http::Request r = iam_example();
  Authorization a = iam_auth();
  a.signature = std::string(64, 'a');
  r.headers.push_back({"Authorization", a.render()});

  http::Request streaming = r;
  streaming.headers.push_back({"x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"});
  auto s = verify(streaming, kPlaceholder);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("streaming"), std::string::npos);

  EXPECT_FALSE(verify(r, kPlaceholder)) << "no payload hash and no body hash";

  http::Request presigned = r;
  presigned.target += "&X-Amz-Signature=abc";
  EXPECT_FALSE(verify(presigned, kPlaceholder, kEmptySha));

  http::Request no_date = r;
  no_date.remove_header("X-Amz-Date");
  EXPECT_FALSE(verify(no_date, kPlaceholder, kEmptySha));

  http::Request twice = r;
  twice.headers.push_back({"authorization", a.render()});
  EXPECT_FALSE(verify(twice, kPlaceholder, kEmptySha));

  a.signed_headers.push_back("x-not-sent");
  EXPECT_FALSE(canonical_request(r, a, kEmptySha, UriStyle::kNormalized));
}

TEST(SigV4, ParsesAndRefusesAuthorizationValues) {
  auto ok = parse_authorization(
      "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s3/aws4_request,SignedHeaders=host;"
      "x-amz-date,Signature=" +
      std::string(64, '0'));
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->service, "s3");
  EXPECT_EQ(ok->signed_headers.size(), 2u);
  const std::string zeros(64, '0');
  for (const std::string& bad : std::vector<std::string>{
           "Bearer x",
           "AWS4-HMAC-SHA256",
           "AWS4-HMAC-SHA256 Credential=AKID/2015/us-east-1/s3/aws4_request, SignedHeaders=host, "
           "Signature=" +
               zeros,
           "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s3/aws4_request, "
           "SignedHeaders=Host, Signature=" +
               std::string(64, '0'),
           "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s3/aws4_request, "
           "SignedHeaders=host, Signature=XYZ",
           "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s3/aws4_request, "
           "SignedHeaders=host",
           "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s3/aws4_request, "
           "Credential=AKID/20150830/us-east-1/s3/aws4_request, SignedHeaders=host, "
           "Signature=" +
               zeros,
       }) {
    EXPECT_FALSE(parse_authorization(bad)) << bad;
  }
}

struct Case {
  std::string name;
  http::Request req;
  std::string body_sha;
  std::string expect;
};

std::vector<Case> parse_cases(const std::string& text) {
  std::vector<Case> out;
  std::istringstream in(text);
  std::string line;
  Case c;
  bool first = false;
  while (std::getline(in, line)) {
    if (line.rfind("REQ ", 0) == 0) {
      c = Case{.name = line.substr(4)};
      first = true;
    } else if (first) {
      size_t sp = line.find(' ');
      c.req.method = line.substr(0, sp);
      c.req.target = line.substr(sp + 1);
      first = false;
    } else if (line.rfind("H ", 0) == 0) {
      size_t colon = line.find(": ");
      c.req.headers.push_back({line.substr(2, colon - 2), line.substr(colon + 2)});
    } else if (line.rfind("BODYSHA ", 0) == 0) {
      c.body_sha = line.substr(8);
    } else if (line.rfind("EXPECT ", 0) == 0) {
      c.expect = line.substr(7);
    } else if (line == "END") {
      out.push_back(c);
    }
  }
  return out;
}

// A python with botocore: Debian's (python3-botocore, installed by scripts/install-deps) first.
std::string python_with_botocore() {
  for (const char* py : {"/usr/bin/python3", "python3"}) {
    std::string cmd = std::string(py) + " -c 'import botocore' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) {
      return py;
    }
  }
  return {};
}

TEST(SigV4, RequestsSignedByBotocoreAreResignedExactlyAsBotocoreWould) {
  std::string py = python_with_botocore();
  if (py.empty()) {
    testkit::skip("no python3 with botocore (scripts/install-deps installs python3-botocore)");
    return;
  }
  std::string cmd =
      py + " " + AGENTBOX_TEST_DATA + "/sigv4_botocore.py '" + kPlaceholder + "' '" + kSecret + "'";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string text;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
    text.append(buf, n);
  }
  ASSERT_EQ(::pclose(p), 0) << text;
  auto cases = parse_cases(text);
  ASSERT_EQ(cases.size(), 5u) << text;
  for (auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto v = verify(c.req, kPlaceholder, c.body_sha);
    ASSERT_TRUE(v) << v.error().message();
    if (c.name == "s3-put-odd-key") {
      EXPECT_EQ(v->style, UriStyle::kAsSent);  // S3 signs `//` and `%20` as sent
    } else if (c.name == "lambda-json-odd-path") {
      EXPECT_EQ(v->style, UriStyle::kNormalized);  // the others re-encode: `%20` -> `%2520`
    }
    auto real = sign(c.req, *v, kSecret);
    ASSERT_TRUE(real) << real.error().message();
    EXPECT_EQ(*real, c.expect);
  }
}

}  // namespace
}  // namespace agentbox::cred::sigv4
