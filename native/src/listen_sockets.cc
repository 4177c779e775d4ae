// Listening sockets that a process can hold without serving them (issue 11: no restart gap).
//
// `lars up` creates each service's listening TCP socket and bound UDP socket here, keeps the file
// descriptor, and hands a duplicate to every worker it starts (child stdio). The master never
// accepts or reads: it has no event-loop watcher on these descriptors. While a crashed worker is
// being replaced, the kernel keeps the socket: TCP clients queue in the listen backlog and UDP
// datagrams in the receive buffer, instead of being refused, and the replacement serves them.
//
//   listenTcp(host, port, backlog)    -> fd   socket + SO_REUSEADDR + bind + listen, CLOEXEC, non-blocking
//   bindUdp(host, port)               -> fd   socket + bind, CLOEXEC, non-blocking
//   setRecvBuffer(fd, bytes)          -> the SO_RCVBUF the kernel set (SO_RCVBUFFORCE when permitted,
//                                        so a root-run agent is not capped by net.core.rmem_max)
//   attachDatagramFilter(fd, maxLen)  -> classic BPF on a UDP socket: the kernel drops, before they take
//                                        any receive-buffer space or wake the process, datagrams that
//                                        are not exactly one Lars frame (8-byte header + msglen bytes)
//                                        or are longer than maxLen bytes
//   socketDrops(fd)                   -> datagrams the kernel dropped for this socket (SO_MEMINFO):
//                                        the filter's and a full receive buffer's
//   closeFd(fd)
//
// Errors are thrown as Error objects with `code` (errno name) and `syscall`, like lars_native.cc.
#include <napi.h>

#include "napi_errno.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

namespace lars_sockets {
namespace {

using lars_napi::ThrowErrno;
using lars_napi::ThrowType;

// A numeric IPv4 or IPv6 address and a port into a sockaddr; false when the host is not numeric.
bool Address(const std::string& host, int port, sockaddr_storage* out, socklen_t* len) {
  std::memset(out, 0, sizeof(*out));
  sockaddr_in* v4 = reinterpret_cast<sockaddr_in*>(out);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
    return true;
  }
  sockaddr_in6* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

bool HostPortArgs(const Napi::CallbackInfo& info, const char* usage, std::string* host, int* port) {
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    ThrowType(info.Env(), usage);
    return false;
  }
  *host = info[0].As<Napi::String>().Utf8Value();
  *port = info[1].As<Napi::Number>().Int32Value();
  if (*port < 0 || *port > 65535) {
    ThrowType(info.Env(), "port must be 0-65535");
    return false;
  }
  return true;
}

// socket() + bind() of a numeric address; -1 with a pending exception on failure.
int BoundSocket(Napi::Env env, const std::string& host, int port, int type, bool reuseAddr) {
  sockaddr_storage addr;
  socklen_t len = 0;
  if (!Address(host, port, &addr, &len)) {
    ThrowType(env, "host must be a numeric IPv4 or IPv6 address");
    return -1;
  }
  int fd = socket(addr.ss_family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    ThrowErrno(env, "socket", errno, host);
    return -1;
  }
  int one = 1;
  if (reuseAddr && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "setsockopt", err, "SO_REUSEADDR");
    return -1;
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "bind", err, host + ":" + std::to_string(port));
    return -1;
  }
  return fd;
}

Napi::Value ListenTcp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string host;
  int port = 0;
  if (!HostPortArgs(info, "listenTcp(host: string, port: number, backlog?: number)", &host, &port))
    return env.Undefined();
  int backlog = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : 511;
  // SO_REUSEADDR as libuv sets it, so a restarted master binds while old connections sit in TIME_WAIT.
  int fd = BoundSocket(env, host, port, SOCK_STREAM, true);
  if (fd < 0) return env.Undefined();
  if (listen(fd, backlog) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "listen", err, host + ":" + std::to_string(port));
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value BindUdp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string host;
  int port = 0;
  if (!HostPortArgs(info, "bindUdp(host: string, port: number)", &host, &port)) return env.Undefined();
  int fd = BoundSocket(env, host, port, SOCK_DGRAM, false);
  if (fd < 0) return env.Undefined();
  return Napi::Number::New(env, fd);
}

bool FdArg(const Napi::CallbackInfo& info, const char* usage, int* fd) {
  if (info.Length() < 1 || !info[0].IsNumber()) {
    ThrowType(info.Env(), usage);
    return false;
  }
  *fd = info[0].As<Napi::Number>().Int32Value();
  return true;
}

Napi::Value SetRecvBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!FdArg(info, "setRecvBuffer(fd: number, bytes: number)", &fd)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsNumber()) {
    ThrowType(env, "setRecvBuffer(fd: number, bytes: number)");
    return env.Undefined();
  }
  int bytes = info[1].As<Napi::Number>().Int32Value();
  // FORCE needs CAP_NET_ADMIN; without it the plain option (capped at net.core.rmem_max) is used.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) != 0 &&
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) != 0) {
    ThrowErrno(env, "setsockopt", errno, "SO_RCVBUF");
    return env.Undefined();
  }
  int actual = 0;
  socklen_t len = sizeof(actual);
  if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &actual, &len) != 0) {
    ThrowErrno(env, "getsockopt", errno, "SO_RCVBUF");
    return env.Undefined();
  }
  return Napi::Number::New(env, actual);
}

// The filter sees the UDP header and the payload (the kernel runs socket filters on UDP datagrams
// with the data starting at the UDP header): payload byte i is at offset 8 + i. It keeps a datagram
// only when 16 <= length <= 8 + maxLen and the frame's little-endian msglen (payload bytes 4..7)
// equals length - 16, i.e. exactly one Lars frame (DESIGN §2).
Napi::Value AttachDatagramFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!FdArg(info, "attachDatagramFilter(fd: number, maxLen: number)", &fd)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsNumber()) {
    ThrowType(env, "attachDatagramFilter(fd: number, maxLen: number)");
    return env.Undefined();
  }
  uint32_t maxLen = info[1].As<Napi::Number>().Uint32Value();
  const uint8_t kAccept = 21;
  const uint8_t kDrop = 22;
  sock_filter code[] = {
      /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
      /* 1 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 16, 0, kDrop - 2),
      /* 2 */ BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, 8 + maxLen, kDrop - 3, 0),
      /* 3 */ BPF_STMT(BPF_ALU | BPF_SUB | BPF_K, 16),
      /* 4 */ BPF_STMT(BPF_ST, 0),
      /* 5 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 15),
      /* 6 */ BPF_STMT(BPF_ALU | BPF_LSH | BPF_K, 8),
      /* 7 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
      /* 8 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 14),
      /* 9 */ BPF_STMT(BPF_ALU | BPF_OR | BPF_X, 0),
      /* 10 */ BPF_STMT(BPF_ALU | BPF_LSH | BPF_K, 8),
      /* 11 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
      /* 12 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
      /* 13 */ BPF_STMT(BPF_ALU | BPF_OR | BPF_X, 0),
      /* 14 */ BPF_STMT(BPF_ALU | BPF_LSH | BPF_K, 8),
      /* 15 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
      /* 16 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 12),
      /* 17 */ BPF_STMT(BPF_ALU | BPF_OR | BPF_X, 0),
      /* 18 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
      /* 19 */ BPF_STMT(BPF_LD | BPF_MEM, 0),
      /* 20 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_X, 0, kAccept - 21, kDrop - 21),
      /* 21 */ BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
      /* 22 */ BPF_STMT(BPF_RET | BPF_K, 0),
  };
  sock_fprog prog;
  prog.len = sizeof(code) / sizeof(code[0]);
  prog.filter = code;
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) {
    ThrowErrno(env, "setsockopt", errno, "SO_ATTACH_FILTER");
    return env.Undefined();
  }
  return env.Undefined();
}

Napi::Value SocketDrops(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!FdArg(info, "socketDrops(fd: number)", &fd)) return env.Undefined();
  uint32_t mem[SK_MEMINFO_VARS];
  socklen_t len = sizeof(mem);
  if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) != 0 || len <= SK_MEMINFO_DROPS * sizeof(uint32_t)) {
    ThrowErrno(env, "getsockopt", errno == 0 ? ENOPROTOOPT : errno, "SO_MEMINFO");
    return env.Undefined();
  }
  return Napi::Number::New(env, mem[SK_MEMINFO_DROPS]);
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!FdArg(info, "closeFd(fd: number)", &fd)) return env.Undefined();
  if (close(fd) != 0) {
    ThrowErrno(env, "close", errno, std::to_string(fd));
    return env.Undefined();
  }
  return env.Undefined();
}

}  // namespace

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("listenTcp", Napi::Function::New(env, ListenTcp, "listenTcp"));
  exports.Set("bindUdp", Napi::Function::New(env, BindUdp, "bindUdp"));
  exports.Set("setRecvBuffer", Napi::Function::New(env, SetRecvBuffer, "setRecvBuffer"));
  exports.Set("attachDatagramFilter", Napi::Function::New(env, AttachDatagramFilter, "attachDatagramFilter"));
  exports.Set("socketDrops", Napi::Function::New(env, SocketDrops, "socketDrops"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
}

}  // namespace lars_sockets
