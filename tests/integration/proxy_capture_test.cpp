// Capture rules end to end, through the real `agentbox run` (as root and as the unprivileged
// user), against endpoints that mint credentials (tests/integration/data/minting.py): an OAuth
// refresh through a user's token file, STS AssumeRole with botocore (Debian's), IAM
// CreateAccessKey. The upstream's log is the oracle: the real values arrive there, the box (its
// output, its workspace) holds only placeholders, and the user's token file is rewritten
// atomically.
#include <fcntl.h>

#include "proxy_fixture.hpp"

namespace agentbox::it {
namespace {

const std::string kAccessOld = "sk-ant-oat01-AccessOldAAAA0123456789abcdefghijklmnopqrstuvwxyzAB";
const std::string kRefreshOld = "sk-ant-ort01-RefreshOldBBB0123456789abcdefghijklmnopqrstuvwxyzAB";
const std::string kAccessNew = "sk-ant-oat01-AccessNewCCCC0123456789abcdefghijklmnopqrstuvwxyzAB";
const std::string kRefreshNew = "sk-ant-ort01-RefreshNewDDD0123456789abcdefghijklmnopqrstuvwxyzAB";
const std::string kAwsKeyId = "AKIAIOSFODNN7EXAMPLE";
const std::string kAwsSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const std::string kStsKeyId = "ASIAQWERTYUIOPASDFGH";
const std::string kStsSecret = "Zx9yW8vU7tS6rQ5pO4nM3lK2jI1hG0fEdCbA+/9z";
const std::string kStsToken =
    "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDexampleSessionTokenValue0123456789"
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789==";
const std::string kIamSecret = "IamMintedSecretKey0123456789abcdefghijKL";

// `$(kReadField FILE NAME)`: the box's view of one field of the token file.
const std::string kReadField =
    "python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"oauth\"][sys.argv[2]])'";

class ProxyCaptureTest : public UpstreamFixture {
 protected:
  std::vector<std::string> hosts() const override {
    return {"api.example.test", "auth.example.test", "other.example.test", "sts.amazonaws.com",
            "iam.amazonaws.com"};
  }
  std::vector<std::string> secrets() const override {
    return {kAccessOld, kRefreshOld, kAccessNew, kRefreshNew, kAwsSecret,
            kStsKeyId,  kStsSecret,  kStsToken,  kIamSecret};
  }
  std::map<std::string, std::string> env() const override {
    return {{"REAL_AKID", kAwsKeyId}, {"REAL_AWS_SECRET", kAwsSecret}};
  }
  void prepare() override {
    write_file(up_ + "/minted.json",
               fmt::format(R"({{"refresh_old": "{}", "access_new": "{}", "refresh_new": "{}",
 "sts_key_id": "{}", "sts_secret": "{}", "sts_token": "{}", "iam_secret": "{}"}})",
                           kRefreshOld, kAccessNew, kRefreshNew, kStsKeyId, kStsSecret, kStsToken,
                           kIamSecret));
    // In a directory of the user's, as ~/.claude is: the new file is made beside the old one.
    const std::string dir = w_.root + "/login";
    ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
    ASSERT_EQ(::chown(dir.c_str(), w_.as.uid, w_.as.gid), 0);
    creds_ = dir + "/creds.json";
    write_file(creds_,
               fmt::format("{{\n  \"oauth\": {{\n    \"accessToken\": \"{}\",\n    "
                           "\"refreshToken\": \"{}\",\n    \"expiresAt\": 1\n  }}\n}}\n",
                           kAccessOld, kRefreshOld),
               0640);
    ASSERT_EQ(::chown(creds_.c_str(), w_.as.uid, w_.as.gid), 0);
  }
  std::string config() const override {
    return fmt::format(
        "[network]\n"
        "allow = [\"api.example.test\", \"auth.example.test\", \"other.example.test\",\n"
        "         \"sts.amazonaws.com\", \"iam.amazonaws.com\"]\n"
        "[[network.rule]]\n"
        "host = \"other.example.test\"\n"
        "[[token_file]]\n"
        "path = \"{}\"\n"
        "json_fields = [\"oauth.accessToken\", \"oauth.refreshToken\"]\n"
        "hosts = [\"api.example.test\", \"auth.example.test\"]\n"
        "capture = [\n"
        "  {{ host = \"auth.example.test\", method = \"POST\", path = \"/oauth/token\", "
        "json = \"access_token\", field = \"oauth.accessToken\" }},\n"
        "  {{ host = \"auth.example.test\", method = \"POST\", path = \"/oauth/token\", "
        "json = \"refresh_token\", field = \"oauth.refreshToken\" }},\n"
        "]\n"
        "[credentials.aws_key]\n"
        "env = \"AWS_ACCESS_KEY_ID\"\n"
        "from = \"env:REAL_AKID\"\n"
        "hosts = [\"sts.amazonaws.com\", \"iam.amazonaws.com\"]\n"
        "[credentials.aws_secret]\n"
        "env = \"AWS_SECRET_ACCESS_KEY\"\n"
        "from = \"env:REAL_AWS_SECRET\"\n"
        "hosts = [\"sts.amazonaws.com\", \"iam.amazonaws.com\"]\n"
        "inject = \"sigv4\"\n"
        "capture = [\n"
        "  {{ host = \"sts.amazonaws.com\", method = \"POST\", path = \"/\", xml = \"AccessKeyId\" "
        "}},\n"
        "  {{ host = \"sts.amazonaws.com\", method = \"POST\", path = \"/\", "
        "xml = \"SecretAccessKey\", inject = \"sigv4\" }},\n"
        "  {{ host = \"sts.amazonaws.com\", method = \"POST\", path = \"/\", xml = "
        "\"SessionToken\", "
        "inject = \"header:X-Amz-Security-Token\" }},\n"
        "]\n",
        creds_);
  }
  std::string creds_;
};

TEST_P(ProxyCaptureTest, OAuthRefreshGivesPlaceholdersAndRewritesTheTokenFile) {
  struct stat before {};
  ASSERT_EQ(::stat(creds_.c_str(), &before), 0);
  // Held open, the old file's inode stays alive: its number cannot be reused by the write-back's
  // temporary file, and its bytes show whether the file was rewritten in place.
  const std::string original = slurp(creds_);
  struct Fd {
    int fd;
    ~Fd() {
      if (fd >= 0) {
        ::close(fd);
      }
    }
  } old_fd{::open(creds_.c_str(), O_RDONLY | O_CLOEXEC)};
  ASSERT_GE(old_fd.fd, 0);
  const std::string out = w_.ws + "/oauth-out";
  Output r = box(fmt::format(
      "set -e; mkdir -p {1}; ref=$({2} {0} refreshToken); "
      "curl -sS -X POST https://auth.example.test/oauth/token -H 'Content-Type: application/json' "
      "-d \"{{\\\"grant_type\\\":\\\"refresh_token\\\",\\\"refresh_token\\\":\\\"$ref\\\"}}\" "
      "> {1}/token.json; cat {1}/token.json; echo; "
      "acc=$(python3 -c 'import json; print(json.load(open(\"{1}/token.json\"))"
      "[\"access_token\"])'); echo \"new=$acc\"; "
      "curl -sS https://api.example.test/echo/after -H \"Authorization: Bearer $acc\"; "
      "curl -sS https://other.example.test/echo/off -H \"Authorization: Bearer $acc\"; echo; "
      "cp {0} {1}/box-view.json; echo \"view=$({2} {0} accessToken)\"",
      creds_, out, kReadField));
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  ASSERT_FALSE(r.line_starting("new=").empty()) << r.out << r.err;
  const std::string ph = r.line_starting("new=").substr(4);
  ASSERT_EQ(ph.size(), kAccessNew.size()) << r.out;
  EXPECT_EQ(ph.substr(0, 13), "sk-ant-oat01-") << "the placeholder keeps the token's shape";
  const std::string s = seen();
  EXPECT_NE(s.find("TOKEN " + kRefreshOld), std::string::npos) << "refreshed upstream: " << s;
  EXPECT_NE(s.find("GET /echo/after Bearer " + kAccessNew), std::string::npos) << s;
  EXPECT_TRUE(r.has_line("you sent: Bearer " + ph)) << r.out;
  EXPECT_EQ(s.find("/echo/off"), std::string::npos) << "off-scope host reached: " << s;
  EXPECT_NE(r.out.find("credential " + creds_), std::string::npos) << "blocked: " << r.out;
  EXPECT_EQ(r.line_starting("view="), "view=" + ph) << "the box's copy shows the new placeholder";
  // The user's file: the new real values, formatting, mode and owner kept, a new inode (a
  // rename, never a partly written file).
  const std::string file = slurp(creds_);
  EXPECT_NE(file.find("\"accessToken\": \"" + kAccessNew + "\""), std::string::npos) << file;
  EXPECT_NE(file.find("\"refreshToken\": \"" + kRefreshNew + "\""), std::string::npos) << file;
  EXPECT_NE(file.find("\"expiresAt\": 1\n"), std::string::npos) << file;
  struct stat after {};
  ASSERT_EQ(::stat(creds_.c_str(), &after), 0);
  EXPECT_NE(after.st_ino, before.st_ino);
  std::string old_bytes(original.size() + 1, '\0');
  ssize_t n = ::pread(old_fd.fd, old_bytes.data(), old_bytes.size(), 0);
  ASSERT_GE(n, 0);
  old_bytes.resize(static_cast<size_t>(n));
  EXPECT_EQ(old_bytes, original) << "the user's file was written in place, not replaced";
  EXPECT_EQ(after.st_mode, before.st_mode);
  EXPECT_EQ(after.st_uid, before.st_uid);
  EXPECT_EQ(after.st_gid, before.st_gid);
  expect_tree_lacks(out, secrets(), "refresh_token");
  const std::string log = audit();
  EXPECT_NE(log.find(R"("type":"credential.capture")"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("type":"credential.write_back")"), std::string::npos) << log;
  EXPECT_EQ(log.find(R"("field":"oauth.accessToken","error")"), std::string::npos) << log;
  EXPECT_EQ(log.find(R"("field":"oauth.refreshToken","error")"), std::string::npos) << log;
}

TEST_P(ProxyCaptureTest, StsCredentialsArePlaceholdersAndReSignedWithTheRealOnes) {
  const std::string out = w_.ws + "/sts-out";
  Output r = box(fmt::format(
      "set -e; mkdir -p {0}; export AWS_DEFAULT_REGION=us-east-1; python3 -c '\n"
      "import botocore.session, json, sys\n"
      "ses = botocore.session.get_session()\n"
      "sts = ses.create_client(\"sts\", endpoint_url=\"https://sts.amazonaws.com\")\n"
      "c = sts.assume_role(RoleArn=\"arn:aws:iam::123456789012:role/r\", "
      "RoleSessionName=\"sess\")[\"Credentials\"]\n"
      "json.dump({{k: str(v) for k, v in c.items()}}, open(\"{0}/creds.json\", \"w\"))\n"
      "s2 = ses.create_client(\"sts\", endpoint_url=\"https://sts.amazonaws.com\", "
      "aws_access_key_id=c[\"AccessKeyId\"], aws_secret_access_key=c[\"SecretAccessKey\"], "
      "aws_session_token=c[\"SessionToken\"])\n"
      "print(\"caller\", s2.get_caller_identity()[\"Account\"])\n"
      "print(\"token=\" + c[\"SessionToken\"])\n'; "
      "tok=$(python3 -c 'import json; print(json.load(open(\"{0}/creds.json\"))"
      "[\"SessionToken\"])'); "
      "curl -sS https://other.example.test/echo/sts-off -H \"X-Amz-Security-Token: $tok\"; echo",
      out));
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(r.has_line("caller 123456789012")) << r.out << r.err;
  const std::string s = seen();
  EXPECT_NE(s.find("STS AssumeRole"), std::string::npos) << s;
  EXPECT_NE(s.find("STS-CALL AWS4-HMAC-SHA256 Credential=" + kStsKeyId + "/"), std::string::npos)
      << s;
  EXPECT_NE(s.find("TOKEN " + kStsToken), std::string::npos) << s;
  EXPECT_NE(s.find("SIGNATURE valid"), std::string::npos) << "re-signed with the real key: " << s;
  EXPECT_EQ(s.find("/echo/sts-off"), std::string::npos) << "off-scope host reached: " << s;
  ASSERT_FALSE(r.line_starting("token=").empty()) << r.out << r.err;
  const std::string tok = r.line_starting("token=").substr(6);
  ASSERT_EQ(tok.size(), kStsToken.size()) << r.out;
  expect_tree_lacks(out, secrets(), "AccessKeyId");
}

TEST_P(ProxyCaptureTest, IamCreateAccessKeyIsDeniedByDefault) {
  Output r =
      box("export AWS_DEFAULT_REGION=us-east-1; python3 -c '\n"
          "import botocore.session\n"
          "iam = botocore.session.get_session().create_client(\"iam\", "
          "endpoint_url=\"https://iam.amazonaws.com\")\n"
          "try:\n"
          "    iam.create_access_key(UserName=\"u\")\n"
          "    print(\"minted\")\n"
          "except Exception as e:\n"
          "    print(\"refused\", type(e).__name__)\n'");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("refused"), std::string::npos) << r.out << r.err;
  EXPECT_EQ(seen().find("IAM CreateAccessKey"), std::string::npos) << seen();
  EXPECT_NE(audit().find("would sign CreateAccessKey on iam.amazonaws.com"), std::string::npos)
      << audit();
}

INSTANTIATE_TEST_SUITE_P(As, ProxyCaptureTest, ::testing::Values("root", "user"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace agentbox::it
