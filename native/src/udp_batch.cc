// Batched UDP receive for the agent's API sockets (issue 17).
//
// Node's dgram allocates a 64 KiB backing store per datagram, formats the source address with
// inet_ntop and builds the rinfo object property by property: on a busy host that per-datagram
// overhead is most of the agent's CPU per request, and every extra microsecond is one more chance to
// be preempted mid-request. Here a readiness watcher (uv_poll on the socket) calls JavaScript once per
// wake-up; JavaScript then drains the socket with recvmmsg into one fixed buffer and answers with
// sendto, no objects per datagram on either side.
//
//   udpWatch(fd, callback)                 -> watcher   callback() on each readable wake-up
//   udpUnwatch(watcher)                                 stop; the callback is never called again
//   udpRecvBatch(fd, buf, slot, meta)      -> count     recvmmsg(MSG_DONTWAIT) into buf, `slot` bytes
//                                                       per datagram; meta[4i..4i+3] = length (-1 when
//                                                       truncated), IPv4 source (host order, int32),
//                                                       source port, 0; 0 when nothing is waiting
//   udpSendTo(fd, buf, offset, len, ip, port) -> bytes or -errno (EAGAIN: the send buffer is full)
//   udpLocalPort(fd)                       -> the bound port (getsockname)
//
// IPv4 only (the agent's API binds loopback or an IPv4 address); errors other than EAGAIN/EINTR are
// thrown with `code` and `syscall` like the rest of the addon.
#include <napi.h>
#include <uv.h>

#include "napi_errno.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <sys/socket.h>

namespace lars_udp {
namespace {

using lars_napi::ThrowErrno;
using lars_napi::ThrowType;

constexpr int kMaxBatch = 64;

struct Watcher {
  uv_poll_t poll;
  napi_env env = nullptr;
  napi_ref callback = nullptr;
  napi_async_context context = nullptr;
  bool stopped = false;
};

void OnClosed(uv_handle_t* handle) {
  delete static_cast<Watcher*>(handle->data);
}

// Closes the poll handle (the memory goes once libuv is done with it); with `release`, also the
// JavaScript references (not while the environment is being torn down: it frees them itself).
void Stop(Watcher* w, bool release) {
  if (w->stopped) return;
  w->stopped = true;
  uv_poll_stop(&w->poll);
  if (release) {
    if (w->callback != nullptr) napi_delete_reference(w->env, w->callback);
    if (w->context != nullptr) napi_async_destroy(w->env, w->context);
  }
  w->callback = nullptr;
  w->context = nullptr;
  // At environment teardown (a worker thread ending) Node may unload this addon before libuv runs
  // close callbacks, so none points into it then: the ~200-byte Watcher is left behind instead.
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), release ? OnClosed : nullptr);
}

// The environment is going away (a worker thread ending) with the watcher still on: stop it, or the
// thread's event loop would hold a handle nobody closes.
void OnEnvCleanup(void* arg) {
  Stop(static_cast<Watcher*>(arg), false);
}

// Plain N-API here, not node-addon-api: while a worker thread terminates, calls into JavaScript fail,
// and that must end the watching, not the process.
void OnReadable(uv_poll_t* handle, int status, int events) {
  (void)status;
  (void)events;
  Watcher* w = static_cast<Watcher*>(handle->data);
  if (w->stopped) return;
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn;
  napi_value global;
  napi_value result;
  napi_status st = napi_get_reference_value(env, w->callback, &fn);
  if (st == napi_ok) st = napi_get_global(env, &global);
  // make_callback: process.nextTick callbacks and promise jobs queued by the handler run afterwards,
  // as after any I/O callback.
  if (st == napi_ok) st = napi_make_callback(env, w->context, global, fn, 0, nullptr, &result);
  if (st == napi_pending_exception) {
    napi_value err;
    if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

Napi::Value Watch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
    ThrowType(env, "udpWatch(fd: number, callback: Function)");
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    ThrowType(env, "udpWatch: no event loop");
    return env.Undefined();
  }
  Watcher* w = new Watcher();
  w->env = env;
  int err = uv_poll_init(loop, &w->poll, fd);
  if (err != 0) {
    delete w;
    ThrowErrno(env, "uv_poll_init", -err, std::to_string(fd));
    return env.Undefined();
  }
  w->poll.data = w;
  napi_value name = Napi::String::New(env, "lars:udp");
  napi_create_reference(env, info[1], 1, &w->callback);
  napi_async_init(env, nullptr, name, &w->context);
  napi_add_env_cleanup_hook(env, OnEnvCleanup, w);
  err = uv_poll_start(&w->poll, UV_READABLE, OnReadable);
  if (err != 0) {
    napi_remove_env_cleanup_hook(env, OnEnvCleanup, w);
    Stop(w, true);
    ThrowErrno(env, "uv_poll_start", -err, std::to_string(fd));
    return env.Undefined();
  }
  return Napi::External<Watcher>::New(env, w);
}

Napi::Value Unwatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) {
    ThrowType(env, "udpUnwatch(watcher)");
    return env.Undefined();
  }
  Watcher* w = info[0].As<Napi::External<Watcher>>().Data();
  if (w == nullptr || w->stopped) return Napi::Boolean::New(env, false);
  napi_remove_env_cleanup_hook(env, OnEnvCleanup, w);
  Stop(w, true);
  return Napi::Boolean::New(env, true);
}

Napi::Value RecvBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsTypedArray() || !info[2].IsNumber() ||
      !info[3].IsTypedArray()) {
    ThrowType(env, "udpRecvBatch(fd: number, buf: Uint8Array, slot: number, meta: Int32Array)");
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Uint8Array buf = info[1].As<Napi::Uint8Array>();
  int slot = info[2].As<Napi::Number>().Int32Value();
  Napi::Int32Array meta = info[3].As<Napi::Int32Array>();
  if (slot <= 0) {
    ThrowType(env, "udpRecvBatch: slot must be positive");
    return env.Undefined();
  }
  size_t n = buf.ByteLength() / static_cast<size_t>(slot);
  if (n > meta.ElementLength() / 4) n = meta.ElementLength() / 4;
  if (n > static_cast<size_t>(kMaxBatch)) n = kMaxBatch;
  if (n == 0) return Napi::Number::New(env, 0);
  mmsghdr msgs[kMaxBatch];
  iovec iov[kMaxBatch];
  sockaddr_in from[kMaxBatch];
  std::memset(msgs, 0, sizeof(mmsghdr) * n);
  for (size_t i = 0; i < n; i++) {
    iov[i].iov_base = buf.Data() + i * static_cast<size_t>(slot);
    iov[i].iov_len = static_cast<size_t>(slot);
    msgs[i].msg_hdr.msg_name = &from[i];
    msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  int got;
  do {
    got = recvmmsg(fd, msgs, static_cast<unsigned int>(n), MSG_DONTWAIT, nullptr);
  } while (got < 0 && errno == EINTR);
  if (got < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, 0);
    ThrowErrno(env, "recvmmsg", errno, std::to_string(fd));
    return env.Undefined();
  }
  int32_t* m = meta.Data();
  for (int i = 0; i < got; i++) {
    bool truncated = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0 || from[i].sin_family != AF_INET;
    m[4 * i] = truncated ? -1 : static_cast<int32_t>(msgs[i].msg_len);
    m[4 * i + 1] = static_cast<int32_t>(ntohl(from[i].sin_addr.s_addr));
    m[4 * i + 2] = ntohs(from[i].sin_port);
    m[4 * i + 3] = 0;
  }
  return Napi::Number::New(env, got);
}

Napi::Value SendTo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6 || !info[0].IsNumber() || !info[1].IsTypedArray()) {
    ThrowType(env, "udpSendTo(fd, buf: Uint8Array, offset, len, ip, port)");
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Uint8Array buf = info[1].As<Napi::Uint8Array>();
  int64_t offset = info[2].As<Napi::Number>().Int64Value();
  int64_t len = info[3].As<Napi::Number>().Int64Value();
  uint32_t ip = info[4].As<Napi::Number>().Uint32Value();
  int port = info[5].As<Napi::Number>().Int32Value();
  if (offset < 0 || len < 0 || static_cast<uint64_t>(offset + len) > buf.ByteLength() || port < 0 || port > 65535) {
    ThrowType(env, "udpSendTo: range outside the buffer or bad port");
    return env.Undefined();
  }
  sockaddr_in to;
  std::memset(&to, 0, sizeof(to));
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  to.sin_addr.s_addr = htonl(ip);
  ssize_t sent;
  do {
    sent = sendto(fd, buf.Data() + offset, static_cast<size_t>(len), MSG_DONTWAIT,
                  reinterpret_cast<sockaddr*>(&to), sizeof(to));
  } while (sent < 0 && errno == EINTR);
  return Napi::Number::New(env, sent < 0 ? -errno : static_cast<double>(sent));
}

Napi::Value LocalPort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    ThrowType(env, "udpLocalPort(fd: number)");
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  sockaddr_storage a;
  socklen_t len = sizeof(a);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ThrowErrno(env, "getsockname", errno, std::to_string(fd));
    return env.Undefined();
  }
  int port = a.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port)
                                     : ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
  return Napi::Number::New(env, port);
}

}  // namespace

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("udpWatch", Napi::Function::New(env, Watch, "udpWatch"));
  exports.Set("udpUnwatch", Napi::Function::New(env, Unwatch, "udpUnwatch"));
  exports.Set("udpRecvBatch", Napi::Function::New(env, RecvBatch, "udpRecvBatch"));
  exports.Set("udpSendTo", Napi::Function::New(env, SendTo, "udpSendTo"));
  exports.Set("udpLocalPort", Napi::Function::New(env, LocalPort, "udpLocalPort"));
}

}  // namespace lars_udp
