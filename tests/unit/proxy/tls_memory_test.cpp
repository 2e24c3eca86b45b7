// What a quiet or stalled intercepted flow keeps (docs/PROXY.md, "Memory"): OpenSSL is handed
// whole TLS records only, so a partial record waits in our input buffer sized to what arrived;
// an idle channel gives its record buffers back; a stalled flow's buffers shrink to its bytes.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <future>
#include <memory>

#include "agentbox/proxy/tls_session.hpp"
#include "proxy_test_util.hpp"

namespace agentbox::proxy::testing {
namespace {

// A client channel (the proxy's upstream side) and a server channel (its box side) that talk
// in memory: what one writes is moved into the other's input by hand.
class TlsPair : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = SessionCa::create({.hosts = {"*.example.test"}});
    ASSERT_TRUE(ca.has_value());
    ca_.emplace(std::move(*ca));
    ca_file_ = temp_file(ca_->pem());
    auto sctx = make_box_ctx();
    auto cctx = make_upstream_ctx(ca_file_, {});
    ASSERT_TRUE(sctx.has_value() && cctx.has_value());
    server_ctx_ = std::move(*sctx);
    client_ctx_ = std::move(*cctx);
    auto s = TlsChannel::accept(server_ctx_.get(), **ca_->leaf_for(kApi));
    auto c = TlsChannel::connect(client_ctx_.get(), kApi);
    ASSERT_TRUE(s.has_value() && c.has_value());
    server_.emplace(std::move(*s));
    client_.emplace(std::move(*c));
    for (int i = 0; i < 8 && !(client_->handshake_done() && server_->handshake_done()); ++i) {
      (void)client_->handshake();
      move(*client_, *server_);
      (void)server_->handshake();
      move(*server_, *client_);
    }
    ASSERT_TRUE(client_->handshake_done() && server_->handshake_done()) << client_->error();
  }
  void TearDown() override { unlink(ca_file_.c_str()); }

  static void move(TlsChannel& from, TlsChannel& to) {
    to.input().append(from.output().view());
    from.output().clear();
  }

  std::optional<SessionCa> ca_;
  std::string ca_file_;
  ossl::SslCtxPtr server_ctx_;
  ossl::SslCtxPtr client_ctx_;
  std::optional<TlsChannel> server_;
  std::optional<TlsChannel> client_;
};

// Records fed one byte at a time: until a record is whole its bytes stay in our input buffer
// (OpenSSL's ~17 KiB record buffer is not held for a partial record), and every record's
// plaintext comes out, in order, as soon as its last byte arrives.
TEST_F(TlsPair, PartialRecordWaitsInOurInputBuffer) {
  std::string sent;
  pattern(sent, 0, 40000);  // three records: 16384, 16384, 7232
  ASSERT_EQ(client_->write(sent), TlsChannel::Status::kDone);
  const std::string wire(client_->output().view());
  client_->output().clear();
  ByteBuffer plain;
  size_t held_max = 0;
  size_t records = 0;
  for (size_t i = 0; i < wire.size(); ++i) {
    const size_t before = plain.size();
    server_->input().append(std::string_view(wire).substr(i, 1));
    ASSERT_EQ(server_->read_into(plain), TlsChannel::Status::kWant) << server_->error();
    if (plain.size() != before) {
      ++records;
      EXPECT_TRUE(server_->input().empty()) << "at byte " << i;
    } else {
      held_max = std::max(held_max, server_->input().size());
    }
  }
  EXPECT_EQ(plain.view(), sent);
  EXPECT_EQ(records, 3u);
  // The largest partial record (all but one byte of a 16 KiB record) waited in our buffer.
  EXPECT_GT(held_max, size_t{16384});
}

// A partial record then EOF is an error (truncation), never "more later".
TEST_F(TlsPair, PartialRecordAtEofIsAnError) {
  ASSERT_EQ(client_->write("hello, upstream"), TlsChannel::Status::kDone);
  const std::string wire(client_->output().view());
  server_->input().append(std::string_view(wire).substr(0, wire.size() - 3));
  ByteBuffer plain;
  EXPECT_EQ(server_->read_into(plain), TlsChannel::Status::kWant);
  server_->feed_eof();
  EXPECT_EQ(server_->read_into(plain), TlsChannel::Status::kError);
  EXPECT_TRUE(plain.empty());
}

// A header whose length no TLS record may have is handed to OpenSSL at once, which refuses it:
// the channel must not wait for 64 KiB that will never make a record.
TEST_F(TlsPair, OversizedRecordHeaderIsRefusedAtOnce) {
  server_->input().append(std::string("\x17\x03\x03\xff\xff", 5) + std::string(100, 'x'));
  ByteBuffer plain;
  EXPECT_EQ(server_->read_into(plain), TlsChannel::Status::kError);
}

// After the handshake the client has read the server's session tickets; with
// SSL_MODE_RELEASE_BUFFERS alone it keeps its write buffer until it next writes. Released, the
// channel still works both ways (OpenSSL allocates again on the next record).
TEST_F(TlsPair, IdleChannelReleasesBuffersAndWorksAfter) {
  server_ctx_.reset();  // the channels hold their own references
  ByteBuffer plain;
  (void)client_->read_into(plain);
  EXPECT_TRUE(client_->release_buffers());
  EXPECT_TRUE(server_->release_buffers());
  ASSERT_EQ(client_->write("ping"), TlsChannel::Status::kDone);
  move(*client_, *server_);
  ASSERT_EQ(server_->read_into(plain), TlsChannel::Status::kWant);
  EXPECT_EQ(plain.view(), "ping");
  EXPECT_TRUE(server_->release_buffers());
  ASSERT_EQ(server_->write("pong"), TlsChannel::Status::kDone);
  move(*server_, *client_);
  ByteBuffer back;
  ASSERT_EQ(client_->read_into(back), TlsChannel::Status::kWant);
  EXPECT_EQ(back.view(), "pong");
}

TEST(ByteBufferShrink, KeepsTheBytesAndFreesTheRoom) {
  ByteBuffer b;
  b.append(std::string(100'000, 'a'));
  b.consume(60'000);
  b.append("tail");
  const size_t freed = b.shrink_to_fit();
  EXPECT_EQ(b.capacity(), 40'004u);
  EXPECT_GE(freed, size_t{60'000});
  EXPECT_TRUE(b.view() == std::string(40'000, 'a') + "tail");
  b.append("more");  // grows again as usual
  EXPECT_EQ(b.view().substr(40'004), "more");
  b.consume(b.size());
  b.shrink_to_fit();
  EXPECT_EQ(b.capacity(), 0u);
}

// A download the box stops reading: the flow stalls with up to its cap in our buffers. After a
// sweep the buffers take what their bytes need (not the room the burst grew), OpenSSL holds no
// record buffer, and once the box reads again every byte arrives.
TEST_F(ProxyHandlerTest, StalledFlowKeepsItsBytesNotItsRoom) {
  constexpr uint64_t kSize = 8ull << 20;
  UniqueFd fd = open_flow(kApi);
  std::optional<BoxClient> c;
  const bool sent = while_pumping(*loop_, [&] {
    c.emplace(std::move(fd), kApi, session_ca_file_);
    return c->handshake() && c->send(get(kApi, "/big/" + std::to_string(kSize)));
  });
  ASSERT_TRUE(sent) << c->error();
  // The box reads nothing: the flow fills what it may, then stalls for several sweeps (50 ms).
  const auto until = std::chrono::steady_clock::now() + 1500ms;
  (void)pump_until(
      *loop_, [&] { return std::chrono::steady_clock::now() > until; }, 3s);
  const BufferUse use = handler_->buffer_use();
  EXPECT_GT(use.bytes, size_t{64} * 1024);  // it is stalled with bytes held
  EXPECT_LE(use.capacity, use.bytes + size_t{8} * 1024) << "bytes " << use.bytes;
  EXPECT_GT(handler_->counters().released, 0u);
  const std::string resp = while_pumping(
      *loop_, [&] { return c->response(); }, 60s);
  const size_t body = resp.find("\r\n\r\n") + 4;
  ASSERT_EQ(resp.size() - body, kSize);
  std::string want;
  pattern(want, 0, kSize);
  EXPECT_EQ(sha256_hex(std::string_view(resp).substr(body)), sha256_hex(want));
}

// Interception slots (ProxyOptions::max_intercepted): an intercepted flow past the cap waits
// after its ClientHello, unread and without OpenSSL state, and starts once a slot frees. It is
// driven on threads: each client's handshake blocks until the proxy answers.
class SlotTest : public ProxyHandlerTest {
 protected:
  // A client whose handshake (blocking) runs on its own thread. The client is on the heap: the
  // thread keeps its address while the Client moves.
  struct Client {
    std::unique_ptr<BoxClient> box;
    std::future<bool> shook;  // declared last: joined before the client goes
  };
  Client start(const std::string& host) {
    Client c;
    c.box = std::make_unique<BoxClient>(open_flow(host), host, session_ca_file_);
    c.shook = std::async(std::launch::async, [b = c.box.get()] { return b->handshake(); });
    return c;
  }
  bool pump_for(const std::function<bool()>& done) { return pump_until(*loop_, done, 20s); }
  static bool ready(const std::future<bool>& f) {
    return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }
};

// Two slots, three flows: the third waits (audited, counted) with its ClientHello read and no
// SSL object, and completes its handshake and a request once the first flow closes.
TEST_F(SlotTest, FlowPastTheCapWaitsUntilOneEnds) {
  options_.max_intercepted = 2;
  options_.slot_stall = 60s;  // no eviction here
  make_handler();
  Client a = start(kApi);
  Client b = start(kDocs);
  ASSERT_TRUE(pump_for([&] { return ready(a.shook) && ready(b.shook); }));
  ASSERT_TRUE(a.shook.get() && b.shook.get());
  Client c = start(kApi);
  ASSERT_TRUE(pump_for([&] { return handler_->counters().slot_waits == 1; }));
  // Several sweeps (50 ms) and first-bytes timeouts (400 ms) pass: it still waits, not dropped.
  const auto until = std::chrono::steady_clock::now() + 800ms;
  (void)pump_until(
      *loop_, [&] { return std::chrono::steady_clock::now() > until; }, 3s);
  EXPECT_FALSE(ready(c.shook));
  EXPECT_EQ(handler_->counters().intercepted, 2u);
  EXPECT_NE(audit().find("\"proxy.wait\""), std::string::npos) << audit();
  a.box.reset();  // closes the first flow: its slot goes to the waiting one
  ASSERT_TRUE(pump_for([&] { return ready(c.shook); }));
  ASSERT_TRUE(c.shook.get()) << c.box->error();
  const std::string resp = while_pumping(*loop_, [&] {
    c.box->send(get(kApi, "/echo"));
    return c.box->response();
  });
  EXPECT_EQ(resp.rfind("HTTP/1.1 200", 0), 0u) << resp;
  EXPECT_EQ(handler_->counters().intercepted, 3u);
  EXPECT_EQ(handler_->counters().slot_evictions, 0u);
}

// One slot held by a flow that does nothing (handshake done, no request): a waiting flow ends
// it once it has been stalled for slot_stall, with a proxy.drop line naming why.
TEST_F(SlotTest, WaitingFlowEndsAStalledHolder) {
  options_.max_intercepted = 1;
  options_.slot_stall = 200ms;
  make_handler();
  Client a = start(kApi);
  ASSERT_TRUE(pump_for([&] { return ready(a.shook); }));
  ASSERT_TRUE(a.shook.get());
  Client c = start(kDocs);
  ASSERT_TRUE(pump_for([&] { return ready(c.shook); }));
  ASSERT_TRUE(c.shook.get()) << c.box->error();
  EXPECT_EQ(handler_->counters().slot_evictions, 1u);
  EXPECT_NE(audit().find("waited for an interception slot"), std::string::npos) << audit();
  const std::string resp = while_pumping(*loop_, [&] {
    c.box->send(get(kDocs, "/docs/a"));
    return c.box->response();
  });
  EXPECT_EQ(resp.rfind("HTTP/1.1 200", 0), 0u) << resp;
}

// A waiting flow that closes leaves the queue: the next flow takes the free slot at once.
TEST_F(SlotTest, WaiterThatClosesLeavesTheQueue) {
  options_.max_intercepted = 1;
  options_.slot_stall = 60s;
  make_handler();
  Client a = start(kApi);
  ASSERT_TRUE(pump_for([&] { return ready(a.shook); }));
  ASSERT_TRUE(a.shook.get());
  {
    UniqueFd fd = open_flow(kDocs);
    const int raw = fd.get();
    BoxClient w(std::move(fd), kDocs, session_ca_file_);
    auto shook = std::async(std::launch::async, [&w] { return w.handshake(); });
    ASSERT_TRUE(pump_for([&] { return handler_->counters().slot_waits == 1; }));
    ::shutdown(raw, SHUT_RDWR);  // its handshake fails; the flow closes while it waits
    ASSERT_TRUE(pump_for([&] { return ready(shook); }));
    EXPECT_FALSE(shook.get());
    ASSERT_TRUE(pump_for([&] { return handler_->connection_count() == 1; }));
  }
  a.box.reset();
  ASSERT_TRUE(pump_for([&] { return handler_->connection_count() == 0; }));
  Client c = start(kApi);
  ASSERT_TRUE(pump_for([&] { return ready(c.shook); }));
  EXPECT_TRUE(c.shook.get()) << c.box->error();
  EXPECT_EQ(handler_->counters().slot_waits, 1u);
}

}  // namespace
}  // namespace agentbox::proxy::testing
