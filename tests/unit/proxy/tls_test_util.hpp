// Test helpers: real ClientHellos made by OpenSSL, and hand-built ones for the edge cases.
#pragma once

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace agentbox::proxy::testing {

using Bytes = std::vector<std::byte>;

// The first flight of an OpenSSL client (its ClientHello records), made in memory.
inline Bytes openssl_client_hello(const std::string& sni, const std::vector<std::string>& alpn,
                                  int max_version = TLS1_3_VERSION) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_max_proto_version(ctx, max_version);
  SSL* ssl = SSL_new(ctx);
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rbio, wbio);
  if (!sni.empty()) {
    // SSL_set_tlsext_host_name() is a macro with a C cast; the call it expands to:
    SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(sni.c_str()));
  }
  std::string wire;
  for (const auto& p : alpn) {
    wire.push_back(static_cast<char>(p.size()));
    wire += p;
  }
  if (!wire.empty()) {
    SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(wire.data()),
                        static_cast<unsigned>(wire.size()));
  }
  SSL_set_connect_state(ssl);
  (void)SSL_do_handshake(ssl);
  char* data = nullptr;
  const long n = BIO_ctrl(wbio, BIO_CTRL_INFO, 0, &data);  // BIO_get_mem_data()
  Bytes out(reinterpret_cast<const std::byte*>(data), reinterpret_cast<const std::byte*>(data) + n);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return out;
}

inline void put8(Bytes& b, unsigned v) {
  b.push_back(static_cast<std::byte>(v & 0xff));
}
inline void put16(Bytes& b, unsigned v) {
  put8(b, v >> 8);
  put8(b, v);
}
inline void put24(Bytes& b, unsigned v) {
  put8(b, v >> 16);
  put16(b, v);
}
inline void put_str(Bytes& b, const std::string& s) {
  for (char c : s) {
    put8(b, static_cast<unsigned char>(c));
  }
}

struct Ext {
  unsigned type;
  Bytes data;
};

inline Ext sni_ext(const std::string& name, unsigned name_type = 0) {
  Bytes d;
  put16(d, static_cast<unsigned>(name.size() + 3));
  put8(d, name_type);
  put16(d, static_cast<unsigned>(name.size()));
  put_str(d, name);
  return {0, d};
}

// A ClientHello handshake message body with the given extensions.
inline Bytes hello_body(const std::vector<Ext>& exts) {
  Bytes b;
  put16(b, 0x0303);
  for (int i = 0; i < 32; ++i) {
    put8(b, static_cast<unsigned>(i));
  }
  put8(b, 0);   // session id
  put16(b, 2);  // cipher suites
  put16(b, 0x1301);
  put8(b, 1);  // compression
  put8(b, 0);
  Bytes e;
  for (const auto& x : exts) {
    put16(e, x.type);
    put16(e, static_cast<unsigned>(x.data.size()));
    e.insert(e.end(), x.data.begin(), x.data.end());
  }
  put16(b, static_cast<unsigned>(e.size()));
  b.insert(b.end(), e.begin(), e.end());
  return b;
}

// Wraps a body as handshake message and splits it into records of at most `chunk` bytes.
inline Bytes records(const Bytes& body, size_t chunk = 16384) {
  Bytes msg;
  put8(msg, 1);
  put24(msg, static_cast<unsigned>(body.size()));
  msg.insert(msg.end(), body.begin(), body.end());
  Bytes out;
  for (size_t off = 0; off < msg.size(); off += chunk) {
    const size_t n = std::min(chunk, msg.size() - off);
    put8(out, 22);
    put16(out, 0x0301);
    put16(out, static_cast<unsigned>(n));
    out.insert(out.end(), msg.begin() + static_cast<long>(off),
               msg.begin() + static_cast<long>(off + n));
  }
  return out;
}

}  // namespace agentbox::proxy::testing
