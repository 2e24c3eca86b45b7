// The JVM's truststore (PKCS#12), encoded straight into its file (see trust_store.hpp).
//
// Theory of operation: the store's bytes are a fixed DER frame around one certificate bag per
// certificate, so they are written here without building OpenSSL's ASN.1 objects (which copied
// the ~170 KiB store five times in fresh pages: ~540 page faults per session). The system
// bundle is mapped, each of its certificate blocks is base64-decoded twice into one small
// buffer (once to size the frame, once to write it), and everything is streamed through a
// 16 KiB buffer into the file while the MAC is computed over the authenticated part. OpenSSL
// does only the MAC: the PKCS#12 key derivation and HMAC-SHA256.
#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>

#include <array>
#include <cstring>
#include <memory>

#include "agentbox/base/sys.hpp"
#include "agentbox/proxy/trust_store.hpp"

namespace agentbox::proxy {

namespace {

using std::string_view_literals::operator""sv;

// DER of the fixed parts (OIDs as full TLVs). RFC 7292 and the JDK's PKCS12KeyStore.
constexpr std::string_view kOidData =
    "\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01"sv;  // pkcs7-data
constexpr std::string_view kOidCertBag =
    "\x06\x0b\x2a\x86\x48\x86\xf7\x0d\x01\x0c\x0a\x01\x03"sv;  // pkcs-12 certBag
constexpr std::string_view kOidX509Cert =
    "\x06\x0a\x2a\x86\x48\x86\xf7\x0d\x01\x09\x16\x01"sv;  // x509Certificate
constexpr std::string_view kOidFriendlyName =
    "\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x09\x14"sv;  // friendlyName
// Oracle's trustedKeyUsage (2.16.840.1.113894.746875.1.1), whose value is anyExtendedKeyUsage:
// a certificate bag without a private key is a trusted entry for the JDK only with it.
constexpr std::string_view kTrustedKeyUsageAttr =
    "\x30\x16\x06\x0c\x60\x86\x48\x01\x86\xf9\x66\xad\xca\x7b\x01\x01"
    "\x31\x06\x06\x04\x55\x1d\x25\x00"sv;
constexpr std::string_view kSha256Alg =
    "\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00"sv;  // sha256, NULL parameters
constexpr std::string_view kVersion3 = "\x02\x01\x03"sv;
constexpr std::string_view kMacIterDer = "\x02\x02\x08\x00"sv;  // INTEGER 2048
static_assert(kTrustedKeyUsageAttr.size() == 24 && kSha256Alg.size() == 15 &&
              kMacIterDer.size() == 4);  // the NULs are part of them
constexpr int kMacIter = 2048;
constexpr size_t kSaltLen = 8;
constexpr size_t kMacLen = 32;
constexpr size_t kMaxBundle = 16u << 20;
constexpr std::string_view kSystemAlias = "agentbox-";
constexpr std::string_view kSessionAlias = "agentbox-session-";

// Bytes of a DER length: one below 128, else 0x80|count and the count bytes, big-endian.
constexpr size_t len_len(size_t n) {
  size_t k = 1;
  if (n > 0x7f) {
    for (; n > 0; n >>= 8) {
      ++k;
    }
  }
  return k;
}
// Bytes of a TLV whose contents are `n` bytes.
constexpr size_t tlv(size_t n) {
  return 1 + len_len(n) + n;
}

// The sizes of one certificate bag (SafeBag), outside in.
struct BagShape {
  size_t der = 0;       // the certificate
  size_t alias = 0;     // characters of its friendlyName
  size_t cert_bag = 0;  // CertBag SEQUENCE contents
  size_t fn_attr = 0;   // friendlyName Attribute SEQUENCE contents
  size_t attrs = 0;     // SET OF Attribute contents
  size_t bag = 0;       // SafeBag SEQUENCE contents
  [[nodiscard]] size_t total() const { return tlv(bag); }
};

BagShape bag_shape(size_t der, size_t alias) {
  BagShape s{.der = der, .alias = alias};
  s.cert_bag = kOidX509Cert.size() + tlv(tlv(der));
  s.fn_attr = kOidFriendlyName.size() + tlv(tlv(2 * alias));
  // DER orders a SET OF by encoding: trustedKeyUsage's (30 16 ...) sorts before friendlyName's
  // (30 25 ... for "agentbox-0"; longer names only grow it).
  s.attrs = kTrustedKeyUsageAttr.size() + tlv(s.fn_attr);
  s.bag = kOidCertBag.size() + tlv(tlv(s.cert_bag)) + tlv(s.attrs);
  return s;
}

// A read-only, pre-faulted map of a file (MAP_POPULATE: its pages are mapped by the one call,
// instead of a fault per 64 KiB as the encoder walks it).
class MappedFile {
 public:
  static base::Result<MappedFile> open(const std::string& path) {
    AGENTBOX_ASSIGN_OR_RETURN(base::UniqueFd fd, base::open_fd(path, O_RDONLY));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
      return base::Error::sys(errno, "fstat", path);
    }
    MappedFile m;
    if (st.st_size <= 0) {
      return m;
    }
    if (static_cast<size_t>(st.st_size) > kMaxBundle) {
      return base::Error::msg(fmt::format("`{}` is larger than {} MiB", path, kMaxBundle >> 20));
    }
    m.size_ = static_cast<size_t>(st.st_size);
    m.data_ = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd.get(), 0);
    if (m.data_ == MAP_FAILED) {
      m.data_ = nullptr;
      return base::Error::sys(errno, "mmap", path);
    }
    return m;
  }
  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr; }
  MappedFile& operator=(MappedFile&&) = delete;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (data_ != nullptr) {
      ::munmap(data_, size_);
    }
  }
  [[nodiscard]] std::string_view text() const {
    return data_ == nullptr ? std::string_view()
                            : std::string_view(static_cast<char*>(data_), size_);
  }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// One DER SEQUENCE spanning all of `der` (a certificate's outer shape; its inside is not read).
bool der_sequence(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  long len = 0;
  int tag = 0;
  int cls = 0;
  const int r = ASN1_get_object(&p, &len, &tag, &cls, static_cast<long>(der.size()));
  return (r & 0x80) == 0 && r == V_ASN1_CONSTRUCTED && tag == V_ASN1_SEQUENCE &&
         cls == V_ASN1_UNIVERSAL &&
         p + len == reinterpret_cast<const unsigned char*>(der.data()) + der.size();
}

// The base64 alphabet's values; 64 for every other byte.
constexpr std::array<unsigned char, 256> kBase64 = [] {
  std::array<unsigned char, 256> t{};
  t.fill(64);
  constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < kAlphabet.size(); ++i) {
    t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<unsigned char>(i);
  }
  return t;
}();

// One `CERTIFICATE` block of PEM text, decoded into `der` (reused: no allocation per block once
// it is large enough) in one pass over the text that skips its line breaks: no copy without them
// first (that copy, a byte at a time, was two thirds of this function's time). False when the
// block is not base64 of exactly one DER SEQUENCE: a byte outside the alphabet, data after the
// `=` padding, more than two `=`, or a length that is not whole groups of four.
bool decode_block(std::string_view body, std::string* der) {
  der->resize(body.size() / 4 * 3 + 3);
  auto* out = reinterpret_cast<unsigned char*>(der->data());
  size_t n = 0;
  size_t chars = 0;
  size_t pad = 0;
  uint32_t group = 0;
  for (const char ch : body) {
    unsigned char v = kBase64[static_cast<unsigned char>(ch)];
    if (v == 64) {
      if (ch == '\n' || ch == '\r' || ch == ' ' || ch == '\t') {
        continue;
      }
      if (ch != '=') {
        return false;
      }
      v = 0;
      ++pad;
    } else if (pad != 0) {
      return false;
    }
    group = group << 6 | v;
    if (++chars % 4 == 0) {
      out[n++] = static_cast<unsigned char>(group >> 16);
      out[n++] = static_cast<unsigned char>(group >> 8);
      out[n++] = static_cast<unsigned char>(group);
      group = 0;
    }
  }
  if (chars == 0 || chars % 4 != 0 || pad > 2) {
    return false;
  }
  der->resize(n - pad);
  return der_sequence(*der);
}

// The bodies of the PEM text's `CERTIFICATE` blocks (other block types are skipped).
std::vector<std::string_view> cert_blocks(std::string_view text) {
  constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
  constexpr std::string_view kEnd = "-----END CERTIFICATE-----";
  std::vector<std::string_view> out;
  for (size_t pos = text.find(kBegin); pos != std::string_view::npos;
       pos = text.find(kBegin, pos)) {
    const size_t body = pos + kBegin.size();
    const size_t end = text.find(kEnd, body);
    if (end == std::string_view::npos) {
      break;
    }
    out.push_back(text.substr(body, end - body));
    pos = end + kEnd.size();
  }
  return out;
}

using MacPtr = std::unique_ptr<EVP_MAC, ossl::Deleter<EVP_MAC, EVP_MAC_free>>;
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, ossl::Deleter<EVP_MAC_CTX, EVP_MAC_CTX_free>>;

// Buffers the store's bytes into its file, feeding the MAC while `mac_on` (the authenticated
// safe: RFC 7292 section 4 computes the MAC over the authSafe's OCTET STRING contents).
class StoreWriter {
 public:
  StoreWriter(int fd, EVP_MAC_CTX* mac) : fd_(fd), mac_(mac) {}
  bool mac_on = false;

  void put(std::string_view bytes) {
    if (mac_on && EVP_MAC_update(mac_, reinterpret_cast<const unsigned char*>(bytes.data()),
                                 bytes.size()) != 1) {
      ok_ = false;
    }
    while (!bytes.empty()) {
      const size_t n = std::min(bytes.size(), buf_.size() - used_);
      std::memcpy(buf_.data() + used_, bytes.data(), n);
      used_ += n;
      bytes.remove_prefix(n);
      if (used_ == buf_.size()) {
        flush();
      }
    }
  }
  void header(unsigned char tag, size_t len) {
    std::array<char, 10> h{};
    size_t k = 0;
    h[k++] = static_cast<char>(tag);
    const size_t ll = len_len(len);
    if (ll == 1) {
      h[k++] = static_cast<char>(len);
    } else {
      h[k++] = static_cast<char>(0x80 | (ll - 1));
      for (size_t i = ll - 1; i > 0; --i) {
        h[k++] = static_cast<char>((len >> (8 * (i - 1))) & 0xff);
      }
    }
    put(std::string_view(h.data(), k));
  }
  void flush() {
    if (used_ > 0 && status_) {
      status_ = base::write_all(fd_, std::string_view(buf_.data(), used_));
    }
    used_ = 0;
  }
  [[nodiscard]] base::Status finish() {
    flush();
    if (!ok_) {
      return base::Error::msg(fmt::format("HMAC-SHA256: {}", ossl::drain_errors()));
    }
    return std::move(status_);
  }

 private:
  int fd_;
  EVP_MAC_CTX* mac_;
  std::array<char, 16384> buf_{};
  size_t used_ = 0;
  bool ok_ = true;
  base::Status status_ = base::ok();
};

// One trusted certificate bag (what PKCS12_add_cert, a friendlyName and the trust attribute make).
void put_bag(StoreWriter& w, const BagShape& s, std::string_view der, std::string_view alias) {
  w.header(0x30, s.bag);
  w.put(kOidCertBag);
  w.header(0xa0, tlv(s.cert_bag));
  w.header(0x30, s.cert_bag);
  w.put(kOidX509Cert);
  w.header(0xa0, tlv(s.der));
  w.header(0x04, s.der);
  w.put(der);
  w.header(0x31, s.attrs);
  w.put(kTrustedKeyUsageAttr);
  w.header(0x30, s.fn_attr);
  w.put(kOidFriendlyName);
  w.header(0x31, tlv(2 * s.alias));
  w.header(0x1e, 2 * s.alias);  // BMPString: UTF-16BE, and the aliases are ASCII
  for (char ch : alias) {
    const std::array<char, 2> u{'\0', ch};
    w.put(std::string_view(u.data(), u.size()));
  }
}

// A ContentInfo of type data holding SafeContents of `contents` bytes: its header, up to the bags.
size_t data_info(size_t contents) {
  return kOidData.size() + tlv(tlv(tlv(contents)));
}
void put_data_info_header(StoreWriter& w, size_t contents) {
  w.header(0x30, data_info(contents));
  w.put(kOidData);
  w.header(0xa0, tlv(tlv(contents)));
  w.header(0x04, tlv(contents));
  w.header(0x30, contents);
}

std::string alias_of(std::string_view prefix, size_t i) {
  return fmt::format("{}{}", prefix, i);
}

// The MAC key (RFC 7292 appendix B, the JDK's password) and an HMAC-SHA256 context keyed with it.
base::Result<MacCtxPtr> mac_context(std::string_view salt) {
  std::array<unsigned char, kMacLen> key{};
  MacPtr mac(EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_HMAC, nullptr));
  MacCtxPtr ctx(mac ? EVP_MAC_CTX_new(mac.get()) : nullptr);
  std::array<char, 7> digest{"SHA256"};
  const std::array<OSSL_PARAM, 2> params{
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest.data(), 0),
      OSSL_PARAM_construct_end()};
  if (!ctx ||
      PKCS12_key_gen_utf8(kJdkStorePassword, static_cast<int>(std::strlen(kJdkStorePassword)),
                          reinterpret_cast<unsigned char*>(const_cast<char*>(salt.data())),
                          static_cast<int>(salt.size()), PKCS12_MAC_ID, kMacIter,
                          static_cast<int>(key.size()), key.data(), EVP_sha256()) != 1 ||
      EVP_MAC_init(ctx.get(), key.data(), key.size(), params.data()) != 1) {
    return base::Error::msg(fmt::format("the truststore's MAC key: {}", ossl::drain_errors()));
  }
  return ctx;
}

}  // namespace

base::Status write_jdk_trust_store(const std::string& system_pem, const std::vector<X509*>& extra,
                                   const std::string& out_path, std::string_view salt) {
  AGENTBOX_ASSIGN_OR_RETURN(MappedFile pem, MappedFile::open(system_pem));
  // Pass one: which blocks are certificates, and their sizes.
  std::string der;
  std::vector<std::string_view> blocks;
  std::vector<BagShape> shapes;
  size_t system = 0;
  for (std::string_view body : cert_blocks(pem.text())) {
    if (decode_block(body, &der)) {
      blocks.push_back(body);
      shapes.push_back(bag_shape(der.size(), alias_of(kSystemAlias, blocks.size() - 1).size()));
      system += shapes.back().total();
    }
  }
  if (blocks.empty()) {
    return base::Error::msg(fmt::format("no PEM certificate in `{}`", system_pem))
        .hint("expected one or more -----BEGIN CERTIFICATE----- blocks");
  }
  std::vector<std::string> extra_der;
  size_t session = 0;
  for (X509* cert : extra) {
    unsigned char* out = nullptr;
    const int n = i2d_X509(cert, &out);
    if (n <= 0) {
      return base::Error::msg(fmt::format("encoding a certificate: {}", ossl::drain_errors()));
    }
    extra_der.emplace_back(reinterpret_cast<char*>(out), static_cast<size_t>(n));
    OPENSSL_free(out);
    shapes.push_back(
        bag_shape(extra_der.back().size(), alias_of(kSessionAlias, extra_der.size() - 1).size()));
    session += shapes.back().total();
  }

  std::array<char, kSaltLen> random_salt{};
  if (salt.empty()) {
    // The kernel's CSPRNG, not RAND_bytes: its public DRBG would be set up for these bytes alone.
    if (::getrandom(random_salt.data(), kSaltLen, 0) != static_cast<ssize_t>(kSaltLen)) {
      return base::Error::sys(errno, "getrandom", "the truststore's MAC salt");
    }
    salt = std::string_view(random_salt.data(), random_salt.size());
  }
  AGENTBOX_ASSIGN_OR_RETURN(MacCtxPtr mac, mac_context(salt));
  AGENTBOX_ASSIGN_OR_RETURN(
      base::UniqueFd fd, base::open_fd(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644));
  const size_t auth_safe = tlv(data_info(system)) + tlv(data_info(session));
  const size_t mac_data =
      tlv(kSha256Alg.size() + tlv(kMacLen)) + tlv(salt.size()) + kMacIterDer.size();
  const size_t outer = kOidData.size() + tlv(tlv(tlv(auth_safe)));
  StoreWriter w(fd.get(), mac.get());
  w.header(0x30, kVersion3.size() + tlv(outer) + tlv(mac_data));
  w.put(kVersion3);
  w.header(0x30, outer);
  w.put(kOidData);
  w.header(0xa0, tlv(tlv(auth_safe)));
  w.header(0x04, tlv(auth_safe));
  w.mac_on = true;
  w.header(0x30, auth_safe);
  put_data_info_header(w, system);
  for (size_t i = 0; i < blocks.size(); ++i) {  // pass two: decoded again, written
    (void)decode_block(blocks[i], &der);
    put_bag(w, shapes[i], der, alias_of(kSystemAlias, i));
  }
  put_data_info_header(w, session);
  for (size_t i = 0; i < extra_der.size(); ++i) {
    put_bag(w, shapes[blocks.size() + i], extra_der[i], alias_of(kSessionAlias, i));
  }
  w.mac_on = false;
  std::array<unsigned char, kMacLen> digest{};
  size_t digest_len = 0;
  if (EVP_MAC_final(mac.get(), digest.data(), &digest_len, digest.size()) != 1 ||
      digest_len != kMacLen) {
    return base::Error::msg(fmt::format("HMAC-SHA256: {}", ossl::drain_errors()));
  }
  w.header(0x30, mac_data);
  w.header(0x30, kSha256Alg.size() + tlv(kMacLen));
  w.put(kSha256Alg);
  w.header(0x04, kMacLen);
  w.put(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
  w.header(0x04, salt.size());
  w.put(salt);
  w.put(kMacIterDer);
  auto done = w.finish();
  if (!done) {
    return std::move(done).error().context(fmt::format("writing `{}`", out_path));
  }
  return base::ok();
}

}  // namespace agentbox::proxy
