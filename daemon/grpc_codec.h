// Decoding requests by hand, with bounded decompression.
//
// gRPC 1.51 inflates a whole compressed message before it checks
// max_receive_message_length: a 4 MB gzip bomb cost sheafd 4.9 GB. So the
// server turns gRPC's own decompression off
// (GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION = 0), every method that takes
// a request is a raw (ByteBuffer) method, and DecodeMessage inflates here,
// stopping at the limit: a bomb costs at most about the limit in memory and
// is answered with RESOURCE_EXHAUSTED.
#ifndef SHEAF_DAEMON_GRPC_CODEC_H_
#define SHEAF_DAEMON_GRPC_CODEC_H_

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>
#include <grpcpp/support/status.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace google::protobuf {
class MessageLite;
}

namespace sheaf::daemon {

// The message bytes of `in`, inflated if the sender compressed them (gzip
// or deflate), at most `max_bytes` of them. RESOURCE_EXHAUSTED past the
// limit, INVALID_ARGUMENT for corrupt compressed data or an unknown
// algorithm; `what` names the message in errors.
grpc::Status ReadMessageBytes(const grpc::ByteBuffer& in, size_t max_bytes, std::string_view what, std::string* out);

// What ReadMessageBytes does with compressed bytes: inflates `slices`
// (gzip: window_bits 16 + 15; deflate, i.e. zlib format: 15) into *out,
// never past max_bytes (RESOURCE_EXHAUSTED), INVALID_ARGUMENT if they are
// corrupt or truncated. Public for tests/fuzz/batch.cc.
grpc::Status Inflate(const std::vector<grpc::Slice>& slices, int window_bits, size_t max_bytes, std::string_view what,
                     std::string* out);

// ReadMessageBytes, then parses into *out (INVALID_ARGUMENT if the bytes
// are not that message).
grpc::Status DecodeMessage(const grpc::ByteBuffer& in, size_t max_bytes, std::string_view what,
                           google::protobuf::MessageLite* out);

// Serializes a response into a ByteBuffer (gRPC compresses it if the call
// asks for it; compression on the way out is not affected).
grpc::ByteBuffer EncodeMessage(const google::protobuf::MessageLite& message);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_GRPC_CODEC_H_
