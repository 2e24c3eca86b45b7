// TLS channels over memory BIOs, their contexts, and the name agreement rule (tls_session.hpp).
#include "agentbox/proxy/tls_session.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <mutex>

#include "agentbox/base/sys.hpp"

namespace agentbox::proxy {

namespace {

// An alert received from the peer is queued as an SSL error whose reason is
// SSL_AD_REASON_OFFSET + the alert number (ssl/record: ssl3_read_bytes).
bool alert_refuses_certificate(unsigned long err) {
  if (err == 0 || ERR_GET_LIB(err) != ERR_LIB_SSL) {
    return false;
  }
  switch (ERR_GET_REASON(err) - SSL_AD_REASON_OFFSET) {
    case SSL3_AD_BAD_CERTIFICATE:
    case SSL3_AD_UNSUPPORTED_CERTIFICATE:
    case SSL3_AD_CERTIFICATE_REVOKED:
    case SSL3_AD_CERTIFICATE_EXPIRED:
    case SSL3_AD_CERTIFICATE_UNKNOWN:
    case TLS1_AD_UNKNOWN_CA:
      return true;
    default:
      return false;
  }
}

constexpr std::string_view kAlpnHttp11 = "\x08http/1.1";
constexpr std::string_view kAlpnH2First = "\x02h2\x08http/1.1";
constexpr const char* kTls13Suites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

base::Error ssl_error(std::string what) {
  if (auto detail = ossl::drain_errors(); !detail.empty()) {
    what += ": " + detail;
  }
  return base::Error::msg(std::move(what));
}

// Per-connection flag on a box-side SSL: the upstream picked h2, so h2 is answered (when offered).
int h2_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// ALPN on the box side: h2 when the upstream picked it (TlsChannel::answer_h2) and the box
// offered it, else http/1.1 if offered, otherwise no ALPN at all (our order wins).
int select_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  const std::string_view ours =
      SSL_get_ex_data(ssl, h2_index()) != nullptr ? kAlpnH2First : kAlpnHttp11;
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, reinterpret_cast<const unsigned char*>(ours.data()),
                            static_cast<unsigned>(ours.size()), in,
                            inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// The channel's BIO: reads from Wire::in, writes to Wire::out (both ByteBuffers), never blocks.
// Empty input is "retry later" until feed_eof(), then EOF, as a memory BIO with
// BIO_set_mem_eof_return(-1) would do, without the memory BIO's own copy of every byte.
struct WireBio {
  static TlsChannel::Wire& wire(BIO* b) { return *static_cast<TlsChannel::Wire*>(BIO_get_data(b)); }
  static int write_ex(BIO* b, const char* data, size_t n, size_t* written) {
    wire(b).out.append(std::string_view(data, n));
    *written = n;
    return 1;
  }
  static int read_ex(BIO* b, char* data, size_t n, size_t* got) {
    BIO_clear_retry_flags(b);
    auto& w = wire(b);
    if (w.record_left == 0) {
      w.record_left = whole_record(w);
    }
    if (w.in.empty() || w.record_left == 0) {
      *got = 0;
      if (!w.eof) {
        BIO_set_retry_read(b);
      } else if (!w.in.empty()) {
        w.record_left = w.in.size();  // truncated by EOF: OpenSSL reports it
        return read_ex(b, data, n, got);
      }
      return 0;
    }
    const size_t k = std::min({n, w.in.size(), w.record_left});
    std::memcpy(data, w.in.data(), k);
    w.in.consume(k);
    w.record_left -= k;
    *got = k;
    return 1;
  }
  // At a record boundary: the length of the record at the front of `in` when all of it is
  // there, else 0. OpenSSL (read-ahead off) asks for the 5-byte header, then the rest, and keeps
  // what it got of a record in its record buffer (~17 KiB, however little arrived) until the
  // record is complete; handing it whole records only keeps a stalled flow's partial record in
  // `in`. A header that is not TLS (a length past the largest record) is handed over as it is:
  // OpenSSL rejects it.
  static size_t whole_record(const TlsChannel::Wire& w) {
    constexpr size_t kHeader = 5;
    constexpr size_t kMaxRecord = kHeader + 16384 + 2048;  // TLS 1.2's ciphertext limit
    if (w.in.size() < kHeader) {
      return 0;
    }
    const auto* h = reinterpret_cast<const unsigned char*>(w.in.data());
    const size_t len = kHeader + ((size_t{h[3]} << 8) | h[4]);
    if (len > kMaxRecord) {
      return w.in.size();
    }
    return w.in.size() >= len ? len : 0;
  }
  static long ctrl(BIO* b, int cmd, long, void*) {
    switch (cmd) {
      case BIO_CTRL_FLUSH:
        return 1;
      case BIO_CTRL_PENDING:
        return static_cast<long>(wire(b).in.size());
      case BIO_CTRL_WPENDING:
        return static_cast<long>(wire(b).out.size());
      case BIO_CTRL_EOF:
        return wire(b).in.empty() ? 1 : 0;
      default:
        return 0;
    }
  }

  static const BIO_METHOD* method() {
    static BIO_METHOD* m = [] {
      BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "agentbox wire");
      if (bm != nullptr) {
        BIO_meth_set_write_ex(bm, write_ex);
        BIO_meth_set_read_ex(bm, read_ex);
        BIO_meth_set_ctrl(bm, ctrl);
      }
      return bm;
    }();
    return m;
  }
};

// The system roots of an upstream context, read on its first certificate verification: parsing
// the ~140-certificate bundle costs ~50 ms of CPU (OpenSSL 3), which a session that intercepts
// nothing, or only resumes, never pays. Owned by the SSL_CTX (ex_data, freed with it).
struct LazyRoots {
  std::string bundle;
  std::once_flag once;
  bool loaded = false;
};

void free_lazy_roots(void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*idx*/,
                     long /*argl*/, void* /*argp*/) {
  delete static_cast<LazyRoots*>(ptr);
}

int lazy_roots_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_lazy_roots);
  return index;
}

// OpenSSL's own verification (X509_verify_cert, as without a callback), once the roots are in
// the context's store: the store is consulted when the chain is built, not before.
int verify_with_lazy_roots(X509_STORE_CTX* store_ctx, void* arg) {
  auto* roots = static_cast<LazyRoots*>(arg);
  std::call_once(roots->once, [&] {
    roots->loaded =
        X509_STORE_load_file(X509_STORE_CTX_get0_store(store_ctx), roots->bundle.c_str()) == 1;
  });
  if (!roots->loaded) {
    // Trusting nothing rather than something else: the chain cannot verify.
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_UNSPECIFIED);
    return 0;
  }
  return X509_verify_cert(store_ctx);
}

}  // namespace

base::Result<ossl::SslCtxPtr> make_box_ctx() {
  ossl::SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx || SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1) {
    return ssl_error("making the box-side TLS context");
  }
  SSL_CTX_set_alpn_select_cb(ctx.get(), select_alpn, nullptr);
  // AES-128-GCM first, and our order wins: both legs decrypt and re-encrypt every byte on one
  // thread, and AES-128 (10 rounds) is the cheaper of the two AES suites; all three are fully
  // secure. A client without AES-NI would prefer ChaCha20, but the box runs on this CPU.
  if (SSL_CTX_set_ciphersuites(ctx.get(), kTls13Suites) != 1) {
    return ssl_error("setting the box-side TLS 1.3 suites");
  }
  SSL_CTX_set_options(ctx.get(), SSL_OP_CIPHER_SERVER_PREFERENCE);
  // No session tickets or cache: every interception is its own short-lived session.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
  // Record buffers (~17 KiB each way) are freed whenever they are empty: an idle intercepted
  // flow keeps none (docs/PROXY.md, "Memory").
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  return ctx;
}

base::Status check_system_bundle(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return base::Error::msg(
        fmt::format("loading the system trust store `{}`: not a readable file", path));
  }
  return base::ok();
}

base::Result<ossl::SslCtxPtr> make_upstream_ctx(const std::string& system_bundle,
                                                const std::vector<std::string>& extra_ca_files) {
  ossl::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx || SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1) {
    return ssl_error("making the upstream TLS context");
  }
  // The bundle is read on the first verification (LazyRoots); a missing one still fails here.
  AGENTBOX_TRY(check_system_bundle(system_bundle));
  auto* roots = new LazyRoots{.bundle = system_bundle};
  if (SSL_CTX_set_ex_data(ctx.get(), lazy_roots_index(), roots) != 1) {
    delete roots;
    return ssl_error("making the upstream TLS context");
  }
  SSL_CTX_set_cert_verify_callback(ctx.get(), verify_with_lazy_roots, roots);
  for (const auto& file : extra_ca_files) {
    if (SSL_CTX_load_verify_file(ctx.get(), file.c_str()) != 1) {
      return ssl_error("loading upstream CA file `" + file + "`");
    }
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  // Offered first (most servers follow the client's order in TLS 1.3); see make_box_ctx.
  if (SSL_CTX_set_ciphersuites(ctx.get(), kTls13Suites) != 1) {
    return ssl_error("setting the upstream TLS 1.3 suites");
  }
  const auto* alpn = reinterpret_cast<const unsigned char*>(kAlpnHttp11.data());
  if (SSL_CTX_set_alpn_protos(ctx.get(), alpn, static_cast<unsigned>(kAlpnHttp11.size())) != 0) {
    return ssl_error("setting upstream ALPN");
  }
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);  // as on the box side
  return ctx;
}

base::Status names_agree(std::string_view flow_name, const http::ClientHello& hello,
                         const http::Request* request) {
  if (hello.has_ech || hello.has_esni) {
    return base::Error::msg("encrypted ClientHello for `" + std::string(flow_name) +
                            "`: the name cannot be checked");
  }
  if (!hello.has_sni) {
    return base::Error::msg("TLS without SNI to `" + std::string(flow_name) + "`");
  }
  if (hello.sni != flow_name) {
    return base::Error::msg("SNI `" + hello.sni + "` does not match the connection's name `" +
                            std::string(flow_name) + "`");
  }
  if (request != nullptr && request->host != hello.sni) {
    return base::Error::msg("Host `" + std::string(request->header("host").value_or("")) +
                            "` does not match SNI `" + hello.sni + "` (domain fronting)");
  }
  return base::ok();
}

base::Result<TlsChannel> TlsChannel::make(SSL_CTX* ctx) {
  TlsChannel ch;
  ch.io_ = std::make_unique<Wire>();
  ch.ssl_.reset(SSL_new(ctx));
  const BIO_METHOD* method = WireBio::method();
  BIO* bio = method != nullptr && ch.ssl_ ? BIO_new(method) : nullptr;
  if (bio == nullptr) {
    return ssl_error("setting up a TLS channel");
  }
  BIO_set_data(bio, ch.io_.get());
  BIO_set_init(bio, 1);
  // One BIO both ways: SSL_set_bio takes our one reference (and up-refs for the second use).
  SSL_set_bio(ch.ssl_.get(), bio, bio);
  return ch;
}

base::Result<TlsChannel> TlsChannel::accept(SSL_CTX* ctx, const Leaf& leaf) {
  AGENTBOX_ASSIGN_OR_RETURN(auto ch, make(ctx));
  if (SSL_use_certificate(ch.ssl_.get(), leaf.cert.get()) != 1 ||
      SSL_use_PrivateKey(ch.ssl_.get(), leaf.key.get()) != 1) {
    return ssl_error("setting up TLS for `" + leaf.host + "`");
  }
  SSL_set_accept_state(ch.ssl_.get());
  return ch;
}

base::Result<TlsChannel> TlsChannel::connect(SSL_CTX* ctx, const std::string& host,
                                             SSL_SESSION* resume) {
  AGENTBOX_ASSIGN_OR_RETURN(auto ch, make(ctx));
  if (resume != nullptr && SSL_set_session(ch.ssl_.get(), resume) != 1) {
    (void)ossl::drain_errors();  // not resumable: a full handshake instead
  }
  // SSL_set_tlsext_host_name() is a macro with a C cast; this is the call it expands to.
  if (SSL_ctrl(ch.ssl_.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(host.c_str())) != 1 ||
      SSL_set1_host(ch.ssl_.get(), host.c_str()) != 1) {
    return ssl_error("setting the upstream name `" + host + "`");
  }
  SSL_set_hostflags(ch.ssl_.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  SSL_set_connect_state(ch.ssl_.get());
  return ch;
}

void TlsChannel::feed(std::span<const std::byte> data) {
  io_->in.append(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
}

void TlsChannel::feed_eof() {
  io_->eof = true;
}

std::string TlsChannel::drain() {
  std::string out;
  drain_into(out);
  return out;
}

void TlsChannel::drain_into(std::string& out) {
  out.append(io_->out.view());
  io_->out.clear();
}

TlsChannel::Status TlsChannel::fail(int ret) {
  const int err = SSL_get_error(ssl_.get(), ret);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    return Status::kWant;
  }
  if (err == SSL_ERROR_ZERO_RETURN) {
    return Status::kClosed;
  }
  refused_certificate_ = refused_certificate_ || alert_refuses_certificate(ERR_peek_error());
  error_ = ossl::drain_errors();
  if (const long v = SSL_get_verify_result(ssl_.get()); v != X509_V_OK) {
    error_ = std::string("certificate verification failed: ") + X509_verify_cert_error_string(v) +
             (error_.empty() ? "" : "; " + error_);
  }
  if (error_.empty()) {
    error_ = err == SSL_ERROR_SYSCALL ? "connection closed without close_notify" : "TLS error";
  }
  return Status::kError;
}

TlsChannel::Status TlsChannel::handshake() {
  const int r = SSL_do_handshake(ssl_.get());
  return r == 1 ? Status::kDone : fail(r);
}

TlsChannel::Status TlsChannel::read(std::string& out) {
  ByteBuffer plain;
  const Status st = read_into(plain);
  out.append(plain.view());
  return st;
}

TlsChannel::Status TlsChannel::read_into(ByteBuffer& out) {
  constexpr size_t kRecord = 16384;  // SSL_read_ex returns at most one record's plaintext
  for (;;) {
    const auto space = out.prepare(kRecord);
    size_t n = 0;
    const int r = SSL_read_ex(ssl_.get(), space.data(), space.size(), &n);
    if (r != 1) {
      return fail(r);
    }
    out.commit(n);
  }
}

TlsChannel::Status TlsChannel::write(std::string_view data) {
  while (!data.empty()) {
    size_t n = 0;
    const int r = SSL_write_ex(ssl_.get(), data.data(), data.size(), &n);
    if (r != 1) {
      return fail(r);
    }
    data.remove_prefix(n);
  }
  return Status::kDone;
}

void TlsChannel::close() {
  (void)SSL_shutdown(ssl_.get());
}

bool TlsChannel::release_buffers() {
  return SSL_free_buffers(ssl_.get()) == 1;
}

bool TlsChannel::handshake_done() const {
  return SSL_is_init_finished(ssl_.get()) == 1;
}

void TlsChannel::offer_alpn(std::string_view wire) {
  if (SSL_set_alpn_protos(ssl_.get(), reinterpret_cast<const unsigned char*>(wire.data()),
                          static_cast<unsigned>(wire.size())) != 0) {
    (void)ossl::drain_errors();  // the context's http/1.1 stays offered
  }
}

void TlsChannel::answer_h2(bool h2) {
  (void)SSL_set_ex_data(ssl_.get(), h2_index(), h2 ? ssl_.get() : nullptr);
}

std::string TlsChannel::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int n = 0;
  SSL_get0_alpn_selected(ssl_.get(), &p, &n);
  return p != nullptr ? std::string(reinterpret_cast<const char*>(p), n) : std::string();
}

bool TlsChannel::resumed() const {
  return SSL_session_reused(ssl_.get()) == 1;
}

long TlsChannel::verify_result() const {
  return SSL_get_verify_result(ssl_.get());
}

base::Result<bool> pull(int fd, TlsChannel& channel, size_t max_bytes) {
  std::array<std::byte, 16384> buf{};
  size_t total = 0;
  while (total < max_bytes) {
    const ssize_t n = base::retry_eintr([&] { return ::read(fd, buf.data(), buf.size()); });
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return false;
      }
      return base::Error::sys(errno, "read", "TLS peer");
    }
    if (n == 0) {
      channel.feed_eof();
      return true;
    }
    channel.feed(std::span(buf).first(static_cast<size_t>(n)));
    total += static_cast<size_t>(n);
  }
  return false;
}

base::Status push(int fd, TlsChannel& channel, std::string& pending) {
  pending += channel.drain();
  while (!pending.empty()) {
    const ssize_t n =
        base::retry_eintr([&] { return ::send(fd, pending.data(), pending.size(), MSG_NOSIGNAL); });
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return base::ok();
      }
      return base::Error::sys(errno, "send", "TLS peer");
    }
    pending.erase(0, static_cast<size_t>(n));
  }
  return base::ok();
}

}  // namespace agentbox::proxy
