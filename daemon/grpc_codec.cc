#include "daemon/grpc_codec.h"

#include <fmt/format.h>
#include <google/protobuf/message_lite.h>
#include <grpc/byte_buffer.h>
#include <grpcpp/support/proto_buffer_writer.h>
#include <zlib.h>

#include <vector>

namespace grpc::internal {

// Declared (not defined) by gRPC as a friend of ByteBuffer: the one way to
// read a received buffer's compression algorithm, which gRPC leaves in the
// C buffer when it does not decompress.
class GrpcByteBufferPeer {
 public:
  explicit GrpcByteBufferPeer(ByteBuffer* buffer) : buffer_(buffer) {}
  grpc_compression_algorithm compression() const {
    grpc_byte_buffer* c = buffer_->c_buffer();
    return c == nullptr ? GRPC_COMPRESS_NONE : c->data.raw.compression;
  }

 private:
  ByteBuffer* buffer_;
};

}  // namespace grpc::internal

namespace sheaf::daemon {
namespace {

grpc::Status TooLarge(std::string_view what, size_t max_bytes) {
  return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      fmt::format("{} is larger than {} bytes after decompression; send smaller batches "
                                  "(or raise sheafd's --max-recv-message-bytes)",
                                  what, max_bytes));
}

}  // namespace

grpc::Status Inflate(const std::vector<grpc::Slice>& slices, int window_bits, size_t max_bytes, std::string_view what,
                     std::string* out) {
  z_stream zs{};
  if (inflateInit2(&zs, window_bits) != Z_OK) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "zlib could not start");
  }
  char chunk[64 * 1024];
  int rc = Z_OK;
  for (size_t i = 0; i < slices.size() && rc != Z_STREAM_END; ++i) {
    zs.next_in = const_cast<Bytef*>(slices[i].begin());
    zs.avail_in = static_cast<uInt>(slices[i].size());
    // Until this slice is consumed and no output is pending (a full output
    // chunk may mean more is waiting).
    do {
      zs.next_out = reinterpret_cast<Bytef*>(chunk);
      zs.avail_out = sizeof(chunk);
      rc = inflate(&zs, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
        inflateEnd(&zs);
        out->clear();
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, fmt::format("{} is not valid compressed data", what));
      }
      const size_t produced = sizeof(chunk) - zs.avail_out;
      if (out->size() + produced > max_bytes) {
        inflateEnd(&zs);
        out->clear();
        return TooLarge(what, max_bytes);
      }
      out->append(chunk, produced);
    } while (rc == Z_OK && (zs.avail_in > 0 || zs.avail_out == 0));
  }
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) {
    out->clear();  // as on every error: no half message for a caller to use
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, fmt::format("{} is truncated compressed data", what));
  }
  return grpc::Status::OK;
}

grpc::Status ReadMessageBytes(const grpc::ByteBuffer& in, size_t max_bytes, std::string_view what, std::string* out) {
  out->clear();
  const grpc_compression_algorithm algorithm =
      grpc::internal::GrpcByteBufferPeer(const_cast<grpc::ByteBuffer*>(&in)).compression();
  std::vector<grpc::Slice> slices;
  if (in.Length() > 0 && !in.Dump(&slices).ok()) {
    return grpc::Status(grpc::StatusCode::INTERNAL, fmt::format("could not read {}", what));
  }
  switch (algorithm) {
    case GRPC_COMPRESS_NONE:
      if (in.Length() > max_bytes) return TooLarge(what, max_bytes);
      out->reserve(in.Length());
      for (const grpc::Slice& s : slices) out->append(reinterpret_cast<const char*>(s.begin()), s.size());
      return grpc::Status::OK;
    case GRPC_COMPRESS_GZIP:
      return Inflate(slices, 16 + MAX_WBITS, max_bytes, what, out);
    case GRPC_COMPRESS_DEFLATE:
      return Inflate(slices, MAX_WBITS, max_bytes, what, out);
    default:
      return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                          fmt::format("{} uses compression algorithm {}, which sheafd does not accept; use gzip", what,
                                      static_cast<int>(algorithm)));
  }
}

grpc::Status DecodeMessage(const grpc::ByteBuffer& in, size_t max_bytes, std::string_view what,
                           google::protobuf::MessageLite* out) {
  std::string bytes;
  if (auto s = ReadMessageBytes(in, max_bytes, what, &bytes); !s.ok()) return s;
  if (!out->ParseFromString(bytes)) {
    // The decoding views (ingest_decode.proto) read the public messages.
    std::string type = out->GetTypeName();
    if (type.starts_with("sheaf.v1.decode.")) type = "sheaf.v1." + type.substr(16);
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        fmt::format("{} ({} bytes) is not a valid {}", what, bytes.size(), type));
  }
  return grpc::Status::OK;
}

grpc::ByteBuffer EncodeMessage(const google::protobuf::MessageLite& message) {
  grpc::ByteBuffer buffer;
  grpc::ProtoBufferWriter writer(&buffer, grpc::kProtoBufferWriterMaxBufferLength, message.ByteSizeLong());
  message.SerializeToZeroCopyStream(&writer);
  return buffer;
}

}  // namespace sheaf::daemon
