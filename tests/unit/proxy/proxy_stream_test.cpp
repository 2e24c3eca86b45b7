// ProxyHandler end to end, streams: keep-alive, resumption, SSE, the scrubber hold, pipelining,
// WebSocket, large transfers, 100-continue, an untrusted upstream, real clients (curl and python
// through a loopback acceptor handing sockets to ProxyHandler::serve) and hostile flows.
#include <gtest/gtest.h>

#include "agentbox/proxy/proxy_handler.hpp"
#include "proxy_test_util.hpp"
#include "testkit/skip.hpp"

namespace agentbox::proxy {
namespace {

using namespace testing;  // NOLINT: the test rig

TEST_F(ProxyHandlerTest, KeepAliveSeveralRequestsOneUpstreamConnection) {
  UniqueFd fd = open_flow(kApi);
  const auto bodies = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    std::vector<std::string> out;
    if (!c.handshake()) {
      return out;
    }
    for (int i = 0; i < 5; ++i) {
      c.send(get(kApi, "/r" + std::to_string(i), "Authorization: Bearer " + gh_ph_ + "\r\n"));
      out.push_back(c.response());
    }
    return out;
  });
  ASSERT_EQ(bodies.size(), 5u);
  for (const auto& b : bodies) {
    EXPECT_EQ(b.substr(0, 15), "HTTP/1.1 200 OK") << b;
  }
  const auto seen = servers_[kApi]->seen();
  ASSERT_EQ(seen.size(), 5u);
  for (const auto& s : seen) {
    EXPECT_EQ(header_of(s.head, "authorization"), std::string("Bearer ") + kRealGh);
  }
  EXPECT_EQ(servers_[kApi]->connections(), 1);
  EXPECT_EQ(handler_->counters().requests, 5u);
}

TEST_F(ProxyHandlerTest, UpstreamTlsSessionsAreResumed) {
  for (int i = 0; i < 3; ++i) {
    const auto r = request(kApi, get(kApi, "/n" + std::to_string(i)));
    EXPECT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << r;
    ASSERT_TRUE(pump_until(
        *loop_, [&] { return handler_->connection_count() == 0; }, 5s));
  }
  EXPECT_EQ(servers_[kApi]->connections(), 3);
  EXPECT_EQ(handler_->counters().upstream_resumed, 2u);  // every connection after the first
  EXPECT_EQ(servers_[kApi]->seen().size(), 3u);
}

TEST_F(ProxyHandlerTest, ServerSentEventsArriveIncrementally) {
  UniqueFd fd = open_flow(kApi);
  Upstream& server = *servers_[kApi];
  const auto r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    std::string got;
    if (!c.handshake()) {
      return got;
    }
    c.send(get(kApi, "/sse"));
    Stream s = c.stream();
    // The server sends the second event only once the client has the first: a proxy that
    // buffered the stream would never deliver it, and this read would time out.
    if (s.read_until(got, "data: one\n\n") == std::string::npos) {
      return "first event not delivered: " + got;
    }
    server.open_sse_gate();
    s.read_until(got, "0\r\n\r\n");
    return got;
  });
  EXPECT_NE(r.find("data: one\n\n"), std::string::npos) << r;
  EXPECT_NE(r.find("data: two\n\n"), std::string::npos) << r;
}

TEST_F(ProxyHandlerTest, HeldPrefixOfASecretIsReleasedAfterTheHold) {
  UniqueFd fd = open_flow(kApi);
  Upstream& server = *servers_[kApi];
  const auto r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    std::string got;
    if (!c.handshake()) {
      return got;
    }
    c.send(get(kApi, "/sse-g"));
    Stream s = c.stream();
    // "g" arrives, as its own chunk once released (or in the first chunk if never held).
    const bool arrived = s.read_until(got, "g\r\n") != std::string::npos;
    server.open_sse_gate();
    s.read_until(got, "0\r\n\r\n");
    return arrived ? got : "held forever: " + got;
  });
  EXPECT_NE(r.find("0\r\n\r\n"), std::string::npos) << r;
  EXPECT_EQ(r.find("held forever"), std::string::npos) << r;
  // The one-shot flush timer is gone once it fired: only the sweep timer is left.
  ASSERT_TRUE(pump_until(
      *loop_, [&] { return handler_->connection_count() == 0; }, 5s));
  EXPECT_EQ(loop_->watch_count(), 1u);
}

// A secret echoed back split at every offset across two upstream writes (so, mostly, across the
// proxy's reads): Content-Length bodies (scrubbed in place, a held prefix kept at the front of
// the read buffer) and chunked ones (decoded, then scrubbed), on one kept-alive connection each.
TEST_F(ProxyHandlerTest, SecretSplitAtEveryOffsetIsScrubbed) {
  const std::string value = std::string("Bearer ") + kRealGh;
  for (const std::string route : {"/split/", "/split-chunked/"}) {
    UniqueFd fd = open_flow(kApi);
    const auto responses = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
      BoxClient c(std::move(fd), kApi, session_ca_file_);
      std::vector<std::string> out;
      if (!c.handshake()) {
        return out;
      }
      for (size_t k = 0; k <= value.size(); ++k) {
        c.send(get(kApi, route + std::to_string(k), "Authorization: Bearer " + gh_ph_ + "\r\n"));
        out.push_back(c.response());
      }
      return out;
    });
    ASSERT_EQ(responses.size(), value.size() + 1) << route;
    for (size_t k = 0; k < responses.size(); ++k) {
      const auto& r = responses[k];
      EXPECT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << route << k << r;
      EXPECT_EQ(r.find(kRealGh), std::string::npos) << route << k << r;
      EXPECT_NE(r.find("uthorization: Bearer " + gh_ph_), std::string::npos) << route << k << r;
    }
  }
  EXPECT_EQ(servers_[kApi]->connections(), 2);
}

// A Basic value echoed back split inside it: base64("x-access-token:" + secret) contains the
// base64 of the secret's whole 3-byte groups (the user part is 15 bytes), itself a needle. Cut
// anywhere, the box gets the placeholder's Basic value whole (the shorter needle inside a held
// Basic prefix waits for it). Cut after the groups with a pause longer than the scrub hold, the
// held bytes go out when the hold expires, scanned as final: the secret's base64 is replaced
// (only the last bytes after its whole groups, which arrive later, cannot be recognised).
TEST_F(ProxyHandlerTest, BasicValueSplitInsideIsScrubbedWhole) {
  const std::string user = "x-access-token:";
  const std::string real_b64 = cred::base64_encode(user + kRealGit);
  const std::string ph_b64 = cred::base64_encode(user + git_ph_);
  const std::string secret = kRealGit;
  const std::string groups_b64 = cred::base64_encode(secret.substr(0, secret.size() / 3 * 3));
  ASSERT_NE(real_b64.find(groups_b64), std::string::npos);  // the premise of the test
  const std::string value = "Basic " + real_b64;
  const size_t groups_end = 6 + real_b64.find(groups_b64) + groups_b64.size();
  UniqueFd fd = open_flow(kGit);
  const auto responses = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kGit, session_ca_file_);
    std::vector<std::string> out;
    if (!c.handshake()) {
      return out;
    }
    const std::string auth = "Authorization: Basic " + ph_b64 + "\r\n";
    for (size_t k = 0; k <= value.size(); ++k) {
      c.send(get(kGit, "/split/" + std::to_string(k), auth));
      out.push_back(c.response());
    }
    for (size_t k = groups_end; k < value.size(); ++k) {
      c.send(get(kGit, "/split-slow/" + std::to_string(k), auth));
      out.push_back(c.response());
    }
    return out;
  });
  ASSERT_EQ(responses.size(), value.size() + 1 + (value.size() - groups_end));
  for (size_t i = 0; i < responses.size(); ++i) {
    const auto& r = responses[i];
    EXPECT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << i << r;
    EXPECT_EQ(r.find(groups_b64), std::string::npos) << i << r;
    EXPECT_EQ(r.find(real_b64), std::string::npos) << i << r;
    if (i <= value.size()) {
      EXPECT_NE(r.find("uthorization: Basic " + ph_b64 + "\r\n"), std::string::npos) << i << r;
    }
  }
}

TEST_F(ProxyHandlerTest, PipelinedRequestsAnsweredInOrder) {
  UniqueFd fd = open_flow(kApi);
  const auto r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    std::vector<std::string> out;
    if (!c.handshake()) {
      return out;
    }
    out.push_back(c.alpn());
    c.send(get(kApi, "/echo") + get(kApi, "/second") +
           get(kApi, "/third", "Connection: close\r\n"));
    for (int i = 0; i < 3; ++i) {
      out.push_back(c.response());
    }
    out.push_back(c.closed() ? "closed" : "open");
    return out;
  });
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[0], "http/1.1");  // offered h2 and http/1.1: the proxy speaks HTTP/1.1
  EXPECT_NE(r[1].find("GET /echo HTTP/1.1"), std::string::npos) << r[1];
  EXPECT_EQ(r[2].substr(0, 15), "HTTP/1.1 200 OK");
  EXPECT_EQ(r[3].substr(0, 15), "HTTP/1.1 200 OK");
  EXPECT_EQ(r[4], "closed");
  EXPECT_EQ(servers_[kApi]->seen().size(), 3u);
}

TEST_F(ProxyHandlerTest, WebSocketEchoAfterUpgrade) {
  UniqueFd fd = open_flow(kApi);
  const auto r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    std::string got;
    if (!c.handshake()) {
      return got;
    }
    c.send(get(kApi, "/ws",
               "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: "
               "13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    const std::string head = c.response();
    if (head.rfind("HTTP/1.1 101", 0) != 0) {
      return "no 101: " + head;
    }
    got = c.buffered();
    const std::string msg = "hello websocket";
    std::string frame = {static_cast<char>(0x81), static_cast<char>(0x80 | msg.size()), 1, 2, 3, 4};
    for (size_t i = 0; i < msg.size(); ++i) {
      frame += static_cast<char>(msg[i] ^ "\x01\x02\x03\x04"[i % 4]);
    }
    c.send(frame);
    Stream s = c.stream();
    if (!s.read_exact(got, 2 + msg.size())) {
      return "short echo: " + got;
    }
    return got.substr(2);
  });
  EXPECT_EQ(r, "hello websocket");
  EXPECT_NE(audit().find("switching protocols"), std::string::npos);
}

TEST_F(ProxyHandlerTest, LargeTransfersBothWaysWithChecksums) {
  constexpr uint64_t kSize = 48ull << 20;
  UniqueFd fd = open_flow(kApi);
  const auto r = while_pumping(
      *loop_,
      [&, fd = std::move(fd)]() mutable {
        BoxClient c(std::move(fd), kApi, session_ca_file_);
        std::pair<std::string, std::string> out;
        if (!c.handshake()) {
          return out;
        }
        c.send(get(kApi, "/big/" + std::to_string(kSize)));
        const std::string resp = c.response();
        const size_t body = resp.find("\r\n\r\n") + 4;
        out.first = sha256_hex(std::string_view(resp).substr(body));
        c.send("POST /upload HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: " +
               std::to_string(kSize) + "\r\n\r\n");
        std::string piece;
        for (uint64_t off = 0; off < kSize; off += piece.size()) {
          pattern(piece, off, static_cast<size_t>(std::min<uint64_t>(1 << 20, kSize - off)));
          c.send(piece);
        }
        out.second = c.response();
        return out;
      },
      120s);
  std::string all;
  pattern(all, 0, kSize);
  const std::string want = sha256_hex(all);
  EXPECT_EQ(r.first, want);
  EXPECT_NE(r.second.find(want + " " + std::to_string(kSize)), std::string::npos) << r.second;
}

// With a tiny buffer cap a single read puts rx far above it, and a callback ends on its round
// limit with the bytes all in our buffers and the box side written: no fd event would come.
// The flow must go on by itself (the EPOLLOUT kick), not wait for the 10-minute idle sweep.
TEST_F(ProxyHandlerTest, FlowAtTheRoundLimitGoesOn) {
  options_.buffer = 2048;
  make_handler();
  constexpr uint64_t kSize = 8ull << 20;
  UniqueFd fd = open_flow(kApi);
  const auto r = while_pumping(
      *loop_,
      [&, fd = std::move(fd)]() mutable {
        BoxClient c(std::move(fd), kApi, session_ca_file_);
        std::string sha;
        if (!c.handshake()) {
          return sha;
        }
        c.send(
            get(kApi, "/big/" + std::to_string(kSize), "Authorization: Bearer " + gh_ph_ + "\r\n"));
        const std::string resp = c.response();
        const size_t body = resp.find("\r\n\r\n") + 4;
        return resp.size() - body == kSize ? sha256_hex(std::string_view(resp).substr(body))
                                           : "short: " + std::to_string(resp.size() - body);
      },
      60s);
  std::string want;
  pattern(want, 0, kSize);
  EXPECT_EQ(r, sha256_hex(want));
}

TEST_F(ProxyHandlerTest, ExpectContinueAndChunkedUpload) {
  UniqueFd fd = open_flow(kApi);
  const auto r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    std::vector<std::string> out;
    if (!c.handshake()) {
      return out;
    }
    c.send(
        "POST /upload HTTP/1.1\r\nHost: api.example.test\r\nExpect: 100-continue\r\n"
        "Transfer-Encoding: chunked\r\n\r\n");
    out.push_back(c.response());  // 100 Continue, relayed from the upstream
    c.send("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    out.push_back(c.response());
    return out;
  });
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].substr(0, 12), "HTTP/1.1 100") << r[0];
  EXPECT_NE(r[1].find(sha256_hex("hello world") + " 11"), std::string::npos) << r[1];
}

TEST_F(ProxyHandlerTest, UntrustedUpstreamAnswered502) {
  options_.upstream_ca.clear();  // the upstream's test CA is not trusted now
  make_handler();
  const auto r = request(kApi, get(kApi, "/"));
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 502") << r;
  EXPECT_NE(r.find("certificate verif"), std::string::npos) << r;
}

TEST_F(ProxyHandlerTest, CurlThroughInterception) {
  if (!have_tool("curl")) {
    testkit::skip("curl not installed");
    return;
  }
  Acceptor acc(*loop_, *handler_, kApi);
  const std::string connect_to = std::string(kApi) + ":443:127.0.0.1:" + std::to_string(acc.port());
  const auto r = while_pumping(*loop_, [&] {
    // Three URLs in one curl run: one connection, kept alive.
    return run_cmd("curl -sS --noproxy '*' --cacert " + session_ca_file_ + " --connect-to " +
                   connect_to + " -H 'Authorization: Bearer " + gh_ph_ +
                   "' https://api.example.test/echo https://api.example.test/a "
                   "https://api.example.test/b");
  });
  EXPECT_EQ(r.first, 0) << r.second;
  EXPECT_NE(r.second.find("Authorization: Bearer " + gh_ph_), std::string::npos) << r.second;
  EXPECT_EQ(r.second.find(kRealGh), std::string::npos) << r.second;
  EXPECT_EQ(acc.accepted(), 1);
  EXPECT_EQ(servers_[kApi]->connections(), 1);
  const auto seen = servers_[kApi]->seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(header_of(seen[2].head, "authorization"), std::string("Bearer ") + kRealGh);
}

TEST_F(ProxyHandlerTest, PythonThroughInterception) {
  if (!have_tool("python3")) {
    testkit::skip("python3 not installed");
    return;
  }
  Acceptor acc(*loop_, *handler_, kGit);
  // urllib with the session CA; the connection goes to the acceptor, SNI and Host stay the name.
  const std::string py =
      "import ssl,socket,http.client,base64\n"
      "ctx=ssl.create_default_context(cafile='" +
      session_ca_file_ +
      "')\n"
      "class C(http.client.HTTPSConnection):\n"
      "  def connect(self):\n"
      "    s=socket.create_connection(('127.0.0.1'," +
      std::to_string(acc.port()) +
      "))\n"
      "    self.sock=ctx.wrap_socket(s,server_hostname='git.example.test')\n"
      "c=C('git.example.test')\n"
      "tok=base64.b64encode(b'x-access-token:" +
      git_ph_ +
      "').decode()\n"
      "c.request('GET','/echo',headers={'Authorization':'Basic '+tok})\n"
      "r=c.getresponse();print(r.status);print(r.read().decode())\n";
  const std::string file = temp_file(py);
  const auto r = while_pumping(*loop_, [&] { return run_cmd("python3 " + file); });
  unlink(file.c_str());
  EXPECT_EQ(r.first, 0) << r.second;
  EXPECT_EQ(r.second.substr(0, 4), "200\n") << r.second;
  EXPECT_EQ(r.second.find(kRealGit), std::string::npos);
  const auto seen = servers_[kGit]->seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(header_of(seen[0].head, "authorization"),
            "Basic " + cred::base64_encode(std::string("x-access-token:") + kRealGit));
}

TEST_F(ProxyHandlerTest, HostileBytesNeverStopOtherFlows) {
  // Many flows of junk, half-closes and resets in parallel with one good request.
  std::vector<UniqueFd> junk;
  for (int i = 0; i < 40; ++i) {
    UniqueFd fd = open_flow(i % 2 == 0 ? kApi : kPlain, i % 2 == 0 ? 443 : 80);
    std::string bytes;
    pattern(bytes, static_cast<uint64_t>(i) * 977, 64 + static_cast<size_t>(i) * 37);
    if (i % 3 == 0) {
      bytes.insert(0, "\x16\x03\x01\xff\xff");  // a huge announced record
    } else if (i % 3 == 1) {
      bytes.insert(0, "GET / HTTP/1.1\r\nHost: ");
    }
    (void)::send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (i % 4 == 0) {
      (void)::shutdown(fd.get(), SHUT_WR);
    }
    if (i % 5 == 0) {
      fd.reset();
    }
    junk.push_back(std::move(fd));
  }
  const auto r = request(kApi, get(kApi, "/fine"));
  EXPECT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << r;
  junk.clear();
  EXPECT_TRUE(pump_until(
      *loop_, [&] { return handler_->connection_count() == 0; }, 5s))
      << handler_->connection_count();
  EXPECT_EQ(handler_->counters().internal_errors, 0u);
}

}  // namespace
}  // namespace agentbox::proxy
